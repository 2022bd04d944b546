"""The demo workload: requests through one ``RefreshAuth`` across expiries and a revocation."""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TextIO

import anyio
import httpx

from .. import _lib
from .._auth import RefreshAuth, auth_class
from .._oauth2 import OAuth2Refresh

if TYPE_CHECKING:
    pass

from ._provider import (
    CONNECTIONS_PER_CLIENT,
    DEFAULT_PORT,
    DEFAULT_TOKEN_LATENCY,
    DEFAULT_TTL,
    ECHO_EVERY,
    PROGRESS_PERIOD,
    REQUEST_TIMEOUT,
    RUN_SPAN_TTLS,
    DemoProvider,
    ProviderCounters,
    _client_form,
    connect_grant,
    require_server,
    token_active,
)

__all__ = [
    "DemoOptions",
    "DemoReport",
    "RevocationTimer",
    "Schedule",
    "allowed_token_calls",
    "default_leeway",
    "format_report",
    "plan_schedule",
    "refresh_interval",
    "run_demo",
    "serve_forever",
    "verdict",
]

# -- the workload ---------------------------------------------------------------------------


def default_leeway() -> float:
    """Return ``RefreshAuth``'s default ``leeway`` in seconds (read from its signature)."""
    default = inspect.signature(RefreshAuth).parameters["leeway"].default
    return float(default)


def refresh_interval(ttl: float, leeway: float) -> float:
    """Seconds between proactive refreshes of a token that lives ``ttl`` seconds (DESIGN R2).

    A refresh happens ``leeway`` seconds before expiry, the leeway clamped to half the
    lifetime, so the interval is ``ttl - min(leeway, ttl / 2)``.
    """
    return ttl - min(leeway, ttl / 2)


#: The calibrated token lifetime is at least this many times the p99 latency of a burst of
#: ``concurrency`` requests: the clamped leeway (half the lifetime) then covers 2.5 times the
#: worst queueing the machine showed, and the requests, spread over 3.6 lifetimes, come at
#: about half the rate that it sustained.
CALIBRATION_FACTOR = 5.0


def calibrated_ttl(burst_p99: float) -> float:
    """The demo's default token lifetime on a machine where ``concurrency`` simultaneous
    requests took ``burst_p99`` seconds (p99): ``DEFAULT_TTL``, or
    ``CALIBRATION_FACTOR * burst_p99`` rounded up to half a second when that is longer.

    A 2 s token is refreshed 1 s before expiry (R2's clamp); on a machine so busy that
    requests queue for a second between ``RefreshAuth`` and the API, every token would
    expire in transit. Real tokens live minutes to hours; the demo compresses time, and
    scaling its clock to the machine keeps the ratio of latency to lifetime realistic.
    """
    return max(DEFAULT_TTL, math.ceil(CALIBRATION_FACTOR * burst_p99 * 2) / 2)


def allowed_token_calls(span: float, interval: float, revocations: int) -> int:
    """The most token-endpoint calls a correct client makes in ``span`` seconds.

    One per started refresh period of ``interval`` seconds, plus one per revocation of the
    access tokens. ``span`` counts from the moment the grant was obtained.
    """
    return math.ceil(span / interval) + revocations


@dataclass(frozen=True, slots=True)
class Schedule:
    """When each request may start, and when the revocation becomes due (seconds from the start).

    Attributes:
        offsets: the earliest start of request ``i``: evenly spaced over ``RUN_SPAN_TTLS``
            token lifetimes, so the run lasts as long whatever the machine speed.
        revoke_after: the middle of the run; the access tokens get revoked at the first moment
            after it that is halfway between two refreshes (see :class:`RevocationTimer`).
        revoke_by: revoke at this offset at the latest, even if no refresh was seen.
    """

    offsets: tuple[float, ...]
    revoke_after: float
    revoke_by: float


def plan_schedule(requests: int, ttl: float, interval: float) -> Schedule:
    """Spread ``requests`` evenly over ``RUN_SPAN_TTLS * ttl`` seconds; revoke near the middle.

    Args:
        requests: how many requests.
        ttl: access-token lifetime in seconds.
        interval: the effective refresh interval in seconds (:func:`refresh_interval`).
    """
    span = RUN_SPAN_TTLS * ttl
    offsets = tuple(i * span / requests for i in range(requests))
    middle = span / 2
    return Schedule(offsets, middle, min(middle + 2 * interval, span))


class RevocationTimer:
    """Pick the moment of the mid-run revocation: halfway between two refreshes.

    Revoking while a refresh is under way, or just after one, could catch a request that was
    sent with the previous token, rejected, and then replayed with the just-minted token that
    the revocation also killed: its one replay (DESIGN R4) would fail through no fault of the
    client. Halfway between refreshes every request in flight carries the current token, so
    the revocation causes a clean 401 storm that one refresh resolves.

    Args:
        schedule: the run's schedule.
        interval: the effective refresh interval in seconds.
        version: returns the credentials version (``RefreshAuth.version``).
        start: the run's start, ``time.perf_counter()`` seconds.
    """

    def __init__(
        self, schedule: Schedule, interval: float, version: Callable[[], int], start: float
    ) -> None:
        self._schedule = schedule
        self._interval = interval
        self._version = version
        self._start = start
        self._seen = version()
        self._changed = start  # when the version last changed (start: the grant is fresh)

    def wait(self, now: float) -> float | None:
        """Return ``None`` if it is time to revoke, else the seconds to wait before asking again."""
        version = self._version()
        if version != self._seen:
            self._seen, self._changed = version, now
        poll = self._interval / 20
        after = self._start + self._schedule.revoke_after
        if now < after:
            return min(poll, after - now)
        if now >= self._start + self._schedule.revoke_by:
            return None
        since = now - self._changed
        if 0.45 * self._interval <= since <= 0.6 * self._interval:
            return None
        if since < 0.45 * self._interval:
            return 0.5 * self._interval - since
        return poll  # wait for the next refresh


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Parameters of one demo run (the ``httpx-refresh demo`` options).

    Attributes:
        requests: how many requests to send.
        concurrency: tasks (async) or threads (sync) sending them; also the number of
            connections.
        ttl: access-token lifetime in seconds; ``None``: calibrated to the machine
            (:func:`calibrated_ttl`: ``DEFAULT_TTL``, or longer where a burst of
            ``concurrency`` requests takes long enough that such short tokens would expire
            in transit).
        sync: a thread pool sharing one ``httpx.Client`` instead of ``httpx.AsyncClient``.
        backend: the anyio backend of the async run (``"asyncio"`` or ``"trio"``).
        token_latency: seconds the token endpoint waits before answering.
        reject_refreshes: the provider answers every refresh with ``invalid_grant``.
        progress: show a progress line on stderr.
        clients: async only: how many ``httpx.AsyncClient`` share the one ``RefreshAuth``,
            the connections split evenly between their pools; default: one per
            ``CONNECTIONS_PER_CLIENT`` connections.
        library: ``"httpx"`` or ``"httpx2"``: the HTTP library of the clients (and of the
            ``RefreshAuth`` flavour and the token requests); ``None``: httpx if installed.
    """

    requests: int = 2000
    concurrency: int = 200
    ttl: float | None = None
    sync: bool = False
    backend: str = "asyncio"
    token_latency: float = DEFAULT_TOKEN_LATENCY
    reject_refreshes: bool = False
    progress: bool = True
    clients: int | None = None
    library: str | None = None

    def client_count(self) -> int:
        """How many clients share the ``RefreshAuth``: always 1 with ``sync``."""
        if self.sync:
            return 1
        if self.clients is None:
            return math.ceil(self.concurrency / CONNECTIONS_PER_CLIENT)
        return max(1, min(self.clients, self.concurrency))


@dataclass(frozen=True, slots=True)
class DemoReport:
    """The figures of one demo run; :func:`verdict` judges them, :func:`format_report` prints them.

    Times are in seconds. ``unauthorized``, ``token_calls``, ``invalid_grant`` and
    ``revocations`` are the provider's counters during the run; ``rejected_replays``,
    ``second_replays`` and ``rejection_reasons`` what ``RefreshAuth`` saw (DESIGN R4).
    """

    mode: str
    requests: int
    concurrency: int
    ttl: float
    leeway: float
    successes: int
    failures: int
    failure_reasons: Mapping[str, int]
    unauthorized: int
    token_calls: int
    invalid_grant: int
    revocations: int
    refreshes: int
    replays: int
    deduplicated: int
    span: float  # from the grant to the end of the run
    wall: float  # the run itself
    p50: float
    p99: float
    final_refresh_token: Literal["accepted", "rejected", "missing"]
    rejected_replays: int = 0  # auth.stats: replays rejected again, the 401 went to the caller
    second_replays: int = 0  # auth.stats: replays sent once more (token expired in transit)
    #: likely reasons of the rejected replays (``"expired"``, ``"superseded"``, ``"fresh"``,
    #: ``"unknown"``), from the library's log records; second replays included
    rejection_reasons: Mapping[str, int] = field(default_factory=dict)
    load_average: float | None = None  # 1-minute load average at the end (os.getloadavg)
    burst_p99: float | None = None  # calibration: p99 latency of a burst (None: --ttl given)

    @property
    def interval(self) -> float:
        """The effective refresh interval (``refresh_interval(ttl, leeway)``)."""
        return refresh_interval(self.ttl, self.leeway)

    @property
    def refresh_periods(self) -> int:
        """Refresh periods started during the span."""
        return math.ceil(self.span / self.interval)

    @property
    def allowed_token_calls(self) -> int:
        """One token call per refresh period plus one per revocation."""
        return allowed_token_calls(self.span, self.interval, self.revocations)

    @property
    def expiries(self) -> int:
        """Whole token lifetimes (ttl) the run spanned."""
        return math.floor(self.span / self.ttl)


def verdict(report: DemoReport) -> list[str]:
    """Return why the run failed (one sentence per reason), or an empty list if it passed."""
    reasons = []
    if report.failures:
        top = ", ".join(f"{reason} x{n}" for reason, n in _top(report.failure_reasons))
        reasons.append(f"{report.failures} of {report.requests} requests failed ({top})")
    if report.rejected_replays:
        reasons.append(_rejection_cause(report))
    if report.token_calls > report.allowed_token_calls:
        reasons.append(
            f"{report.token_calls} token-endpoint calls, more than the {report.allowed_token_calls}"
            f" allowed ({report.refresh_periods} refresh periods of {report.interval:g} s"
            f" + {report.revocations} revocation(s)): refreshes were not deduplicated"
        )
    if report.invalid_grant and not report.failures:
        reasons.append(
            f"the token endpoint answered invalid_grant {report.invalid_grant} time(s): "
            "a refresh token was used twice"
        )
    if report.final_refresh_token != "accepted":
        reasons.append(
            f"the final credentials' refresh token is {report.final_refresh_token} "
            "by the provider: the rotated refresh token was lost"
            if report.final_refresh_token == "rejected"
            else "the final credentials have no refresh token"
        )
    return reasons


def _rejection_cause(report: DemoReport) -> str:
    """Name the likely cause of rejected replays, and the options to change (DESIGN R4)."""
    why = report.rejection_reasons
    aged = why.get("expired", 0) + why.get("superseded", 0)
    counts = ", ".join(f"{reason} x{n}" for reason, n in _top(why, 4))
    head = (
        f"{report.rejected_replays} requests were rejected after their replay"
        + (f" (likely reasons, all rejected replays: {counts})" if counts else "")
        + ": "
    )
    if aged * 2 < sum(why.values()):
        return head + "the API rejected fresh tokens; this is not a token-lifetime problem"
    load = (
        ""
        if report.load_average is None
        else f" (load average {report.load_average:.1f} on {os.cpu_count() or 1} CPUs)"
    )
    return head + (
        f"the token expired in transit: requests took {_ms(report.p50)} (median) and "
        f"{_ms(report.p99)} (p99) against {report.ttl:g} s tokens, refreshed "
        f"{report.ttl - report.interval:g} s before expiry; the machine may be overloaded"
        f"{load}; try a lower --concurrency (now {report.concurrency}) or a longer --ttl "
        f"(now {report.ttl:g})"
    )


def _top(reasons: Mapping[str, int], n: int = 3) -> list[tuple[str, int]]:
    return sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:n]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def format_report(report: DemoReport) -> str:
    """Render a :class:`DemoReport` as the demo's table (no secret is ever shown)."""
    rows: list[tuple[str, str, str]] = [
        ("requests", str(report.requests), f"concurrency {report.concurrency}"),
        ("successes", str(report.successes), ""),
        ("failures", str(report.failures), ""),
        ("401s seen (server)", str(report.unauthorized), f"replays {report.replays} (auth.stats)"),
        (
            "rejected replays",
            str(report.rejected_replays),
            f"auth.stats; {report.second_replays} replayed once more after their token "
            "expired in transit",
        ),
        (
            "token-endpoint calls",
            str(report.token_calls),
            f"allowed {report.allowed_token_calls}: {report.refresh_periods} refresh periods"
            f" of {report.interval:g} s + {report.revocations} revocation(s)",
        ),
        (
            "token expiries spanned",
            str(report.expiries),
            f"ttl {report.ttl:g} s; refresh {report.ttl - report.interval:g} s before expiry "
            f"(leeway {report.leeway:g} s, clamped to half the ttl); "
            f"{report.span:.2f} s since the grant",
        ),
        ("revocations", str(report.revocations), "all access tokens, mid-run"),
        (
            "deduplicated waiters",
            str(report.deduplicated),
            f"auth.stats; refreshes {report.refreshes}",
        ),
        ("wall time", f"{report.wall:.2f} s", ""),
        ("latency p50 / p99", f"{_ms(report.p50)} / {_ms(report.p99)}", ""),
        ("final refresh token", report.final_refresh_token, "by the provider (introspection)"),
    ]
    lines = [
        f"httpx-refresh demo: {report.requests} requests at concurrency {report.concurrency}, "
        f"ttl {report.ttl:g} s",
        f"  client: {report.mode}",
    ]
    if report.burst_p99 is not None:
        lines.append(
            f"  ttl {report.ttl:g} s: calibrated, {CALIBRATION_FACTOR:g} x the p99 latency "
            f"({_ms(report.burst_p99)}) of a burst of {report.concurrency} requests, at least "
            f"{DEFAULT_TTL:g} s (--ttl to set it)"
        )
    for label, value, note in rows:
        lines.append(f"  {label:<24}{value:>20}  {note}".rstrip())
    for reason, n in _top(report.failure_reasons, 5):
        lines.append(f"  failed: {reason} x{n}")
    if report.expiries < 3 or report.revocations < 1:
        lines.append(
            "  note: this run was too short to span 3 token expiries and a revocation "
            "(it needs more than one request)"
        )
    return "\n".join(lines) + "\n"


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when it is empty)."""
    if not ordered:
        return 0.0
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _describe(exc: BaseException) -> str:
    """A failure's kind, never its message (which could hold a URL or a token)."""
    return type(exc).__name__


def _payload(i: int) -> bytes:
    return b"x" * (256 + i % 100)


def _check(response: httpx.Response, expected: int | None) -> str | None:
    """Return why ``response`` is a failure, or ``None`` if it is a success."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    if expected is not None and response.json().get("received") != expected:
        return "echo body length mismatch"
    return None


@dataclass
class _Run:
    """Shared state of one run: the request counter, results and progress output."""

    options: DemoOptions
    schedule: Schedule
    interval: float
    provider: DemoProvider
    base: ProviderCounters
    err: TextIO
    label: str
    start: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_index: int = 0
    done: int = 0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    failures: Counter[str] = field(default_factory=Counter)
    shown: int = 0  # length of the last progress line

    def take(self) -> int | None:
        with self.lock:
            if self.next_index >= self.options.requests or self.stop.is_set():
                return None
            index, self.next_index = self.next_index, self.next_index + 1
            return index

    def delay(self, index: int) -> float:
        return self.start + self.schedule.offsets[index] - time.perf_counter()

    def record(self, latency: float, problem: str | None) -> None:
        with self.lock:
            self.done += 1
            self.latencies.append(latency)
            if problem is None:
                self.ok += 1
            else:
                self.failures[problem] += 1

    def note_failure(self, problem: str) -> None:
        with self.lock:
            self.failures[problem] += 1

    def show_progress(self) -> None:
        if not self.options.progress:
            return
        counters = self.provider.counters().since(self.base)
        with self.lock:
            done, failed = self.done, sum(self.failures.values())
        line = (
            f"{self.label}: {done}/{self.options.requests} requests, {failed} failed, "
            f"{counters.api_unauthorized} 401s, {counters.token_calls_total} token calls, "
            f"{time.perf_counter() - self.start:.1f} s"
        )
        self.err.write("\r" + line.ljust(self.shown))
        self.err.flush()
        self.shown = len(line)

    def end_progress(self) -> None:
        if self.options.progress and self.shown:
            self.show_progress()
            self.err.write("\n")
            self.err.flush()


async def _drive_async(run: _Run, url: str, auth: Any, http: Any) -> None:
    concurrency = run.options.concurrency
    finished = anyio.Event()
    async with contextlib.AsyncExitStack() as stack:
        clients = await _open_clients(stack, url, run.options, http, auth=auth)
        admin = await stack.enter_async_context(
            http.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT)
        )

        async def revoke() -> None:
            timer = RevocationTimer(run.schedule, run.interval, lambda: auth.version, run.start)
            while True:  # a timer that polls auth.version a few times per refresh period
                wait = timer.wait(time.perf_counter())
                if wait is None:
                    break
                await anyio.sleep(wait)
            try:
                response = await admin.post("/admin/revoke", data=_demo_client_form(run))
                response.raise_for_status()
            except http.HTTPError as exc:
                run.note_failure(f"revocation: {_describe(exc)}")

        async def ticker() -> None:
            while not finished.is_set():
                run.show_progress()
                with anyio.move_on_after(PROGRESS_PERIOD):
                    await finished.wait()

        async def worker(client: httpx.AsyncClient) -> None:
            while (index := run.take()) is not None:
                delay = run.delay(index)
                if delay > 0:
                    await anyio.sleep(delay)
                started = time.perf_counter()
                try:
                    if index % ECHO_EVERY == ECHO_EVERY - 1:
                        payload = _payload(index)
                        response = await client.post("/api/echo", content=payload)
                        problem = _check(response, len(payload))
                    else:
                        problem = _check(await client.get("/api/items"), None)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                    problem = _describe(exc)
                run.record(time.perf_counter() - started, problem)

        async with anyio.create_task_group() as outer:
            outer.start_soon(ticker)
            async with anyio.create_task_group() as workers:
                workers.start_soon(revoke)
                for number in range(concurrency):
                    workers.start_soon(worker, clients[number % len(clients)])
            finished.set()


async def _open_clients(
    stack: contextlib.AsyncExitStack, url: str, options: DemoOptions, http: Any, **kwargs: Any
) -> list[Any]:
    """The run's ``AsyncClient``s, the connections split evenly between their pools."""
    return [
        await stack.enter_async_context(
            http.AsyncClient(
                base_url=url,
                limits=http.Limits(max_connections=size, max_keepalive_connections=size),
                timeout=REQUEST_TIMEOUT,
                **kwargs,
            )
        )
        for size in _shards(options.concurrency, options.client_count())
    ]


def _shards(concurrency: int, clients: int) -> list[int]:
    """Split ``concurrency`` connections over ``clients`` pools as evenly as possible."""
    return [concurrency // clients + (n < concurrency % clients) for n in range(clients)]


def _drive_sync(run: _Run, url: str, auth: Any, http: Any) -> None:
    concurrency = run.options.concurrency
    limits = http.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    finished = threading.Event()
    with (
        http.Client(base_url=url, auth=auth, limits=limits, timeout=REQUEST_TIMEOUT) as client,
        http.Client(base_url=url, timeout=REQUEST_TIMEOUT) as admin,
    ):

        def revoke() -> None:
            timer = RevocationTimer(run.schedule, run.interval, lambda: auth.version, run.start)
            while (wait := timer.wait(time.perf_counter())) is not None:
                if finished.wait(wait):
                    return
            try:
                response = admin.post("/admin/revoke", data=_demo_client_form(run))
                response.raise_for_status()
            except http.HTTPError as exc:
                run.note_failure(f"revocation: {_describe(exc)}")

        def ticker() -> None:
            while not finished.wait(PROGRESS_PERIOD):
                run.show_progress()

        def worker() -> None:
            while (index := run.take()) is not None:
                delay = run.delay(index)
                if delay > 0 and run.stop.wait(delay):  # pacing: the request's planned start
                    return
                started = time.perf_counter()
                try:
                    if index % ECHO_EVERY == ECHO_EVERY - 1:
                        payload = _payload(index)
                        response = client.post("/api/echo", content=payload)
                        problem = _check(response, len(payload))
                    else:
                        problem = _check(client.get("/api/items"), None)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                    problem = _describe(exc)
                run.record(time.perf_counter() - started, problem)

        helpers = [
            threading.Thread(target=revoke, name="demo-revoke", daemon=True),
            threading.Thread(target=ticker, name="demo-progress", daemon=True),
        ]
        for thread in helpers:
            thread.start()
        pool = ThreadPoolExecutor(concurrency, thread_name_prefix="demo-worker")
        try:
            for future in [pool.submit(worker) for _ in range(concurrency)]:
                future.result()
        finally:  # also on Ctrl-C: workers stop taking requests, then the pool drains
            run.stop.set()
            finished.set()
            pool.shutdown(wait=True)
            for thread in helpers:
                thread.join(timeout=REQUEST_TIMEOUT)


def _demo_client_form(run: _Run) -> dict[str, str]:
    return _client_form(run.provider.client_id, run.provider.client_secret)


#: Lifetime of the token that the calibration burst uses (it must not expire meanwhile).
CALIBRATION_TOKEN_TTL = 3600.0


def _burst_p99(url: str, token: str, options: DemoOptions, http: Any) -> float:
    """Calibration: the p99 latency of ``concurrency`` simultaneous ``GET /api/items`` with a
    valid token, through clients set up as the run's are (its second round, connections open)."""
    headers = {"Authorization": f"Bearer {token}"}
    if options.sync:
        latencies = _burst_sync(url, headers, options.concurrency, http)
    else:
        latencies = anyio.run(_burst_async, url, headers, options, http, backend=options.backend)
    return _percentile(sorted(latencies), 0.99)


def _burst_sync(url: str, headers: dict[str, str], concurrency: int, http: Any) -> list[float]:
    limits = http.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with (
        http.Client(
            base_url=url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT
        ) as client,
        ThreadPoolExecutor(concurrency, thread_name_prefix="demo-burst") as pool,
    ):

        def one(_: int) -> float:
            started = time.perf_counter()
            client.get("/api/items").raise_for_status()
            return time.perf_counter() - started

        latencies: list[float] = []
        for _round in range(2):  # the first round opens the connections
            latencies = list(pool.map(one, range(concurrency)))
    return latencies


async def _burst_async(
    url: str, headers: dict[str, str], options: DemoOptions, http: Any
) -> list[float]:
    latencies: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = await _open_clients(stack, url, options, http, headers=headers)

        async def one(client: Any, record: bool) -> None:
            started = time.perf_counter()
            (await client.get("/api/items")).raise_for_status()
            if record:
                latencies.append(time.perf_counter() - started)

        for record in (False, True):  # the first round opens the connections
            async with anyio.create_task_group() as group:
                for number in range(options.concurrency):
                    group.start_soon(one, clients[number % len(clients)], record)
    return latencies


class _RejectionLog(logging.Handler):
    """Counts the library's rejected-replay records by likely reason during a demo run.

    The verdict summarises them, so they are not printed one by one; any other WARNING of
    the library still reaches stderr when logging is not configured (``logging.lastResort``).
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        reason = getattr(record, "replay_reason", None)
        if isinstance(reason, str):
            self.reasons[reason] += 1
        elif record.levelno >= logging.WARNING and not logging.getLogger().handlers:
            last = logging.lastResort
            if last is not None:
                last.handle(record)


@contextlib.contextmanager
def _counting_rejections() -> Iterator[_RejectionLog]:
    logger = logging.getLogger("httpx_refresh")
    handler = _RejectionLog()
    level = logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.DEBUG):  # the storm's later records log at DEBUG
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run_demo(
    options: DemoOptions | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the demo: start a provider, drive requests through ``RefreshAuth``, judge the result.

    Prints a progress line on ``err`` while it runs, then the table (:func:`format_report`)
    and the verdict on ``out``.

    Args:
        options: the run's parameters (default: :class:`DemoOptions` defaults).
        out: where the table goes (default ``sys.stdout``).
        err: where progress goes (default ``sys.stderr``).

    Returns:
        0 when every request succeeded, the token endpoint saw no more calls than allowed
        and the final refresh token is still accepted; 1 otherwise.

    Raises:
        DemoUnavailable: the ``demo`` extra is not installed.
    """
    options = options or DemoOptions()
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    require_server()
    leeway = default_leeway()
    http = _lib.default() if options.library is None else _lib.load(options.library)
    name = _lib.name_of(http)
    if options.sync:
        label = f"sync, {options.concurrency} threads sharing one {name}.Client"
    else:
        clients = options.client_count()
        label = f"async ({options.backend}), " + (
            f"one {name}.AsyncClient"
            if clients == 1
            else f"{clients} {name}.AsyncClients sharing one RefreshAuth"
        )
    provider = DemoProvider(
        ttl=options.ttl or CALIBRATION_TOKEN_TTL,
        token_latency=options.token_latency,
        reject_refreshes=options.reject_refreshes,
    )
    with provider as url:
        client_id, client_secret = provider.client_id, provider.client_secret
        burst_p99: float | None = None
        ttl = options.ttl
        if ttl is None:
            calibration = connect_grant(url, client_id=client_id, client_secret=client_secret)
            burst_p99 = _burst_p99(url, calibration["access_token"], options, http)
            ttl = calibrated_ttl(burst_p99)
            provider.ttl = ttl  # the tokens issued from now on
        interval = refresh_interval(ttl, leeway)
        schedule = plan_schedule(options.requests, ttl, interval)
        grant = connect_grant(url, client_id=client_id, client_secret=client_secret)
        granted = time.perf_counter()
        base = provider.counters()
        auth = auth_class(http)(
            grant,
            OAuth2Refresh(f"{url}/token", client_id=client_id, client_secret=client_secret),
        )
        short = "sync" if options.sync else f"async/{options.backend}"
        run = _Run(options, schedule, interval, provider, base, err, short)
        run.start = time.perf_counter()
        try:
            with _counting_rejections() as rejections:
                if options.sync:
                    _drive_sync(run, url, auth, http)
                else:
                    anyio.run(_drive_async, run, url, auth, http, backend=options.backend)
        finally:
            run.end_progress()
        ended = time.perf_counter()
        counters = provider.counters().since(base)
        refresh_token = auth.credentials.get("refresh_token")
        final: Literal["accepted", "rejected", "missing"] = "missing"
        if isinstance(refresh_token, str) and refresh_token:
            accepted = token_active(
                url, refresh_token, client_id=client_id, client_secret=client_secret
            )
            final = "accepted" if accepted else "rejected"
    stats = auth.stats
    latencies = sorted(run.latencies)
    report = DemoReport(
        mode=label,
        requests=options.requests,
        concurrency=options.concurrency,
        ttl=ttl,
        leeway=leeway,
        successes=run.ok,
        failures=sum(run.failures.values()),
        failure_reasons=MappingProxyType(dict(run.failures)),
        unauthorized=counters.api_unauthorized,
        token_calls=counters.token_calls_total,
        invalid_grant=counters.invalid_grant,
        revocations=counters.revocations,
        refreshes=stats.refreshes,
        replays=stats.replays,
        deduplicated=stats.deduplicated,
        span=ended - granted,
        wall=ended - run.start,
        p50=_percentile(latencies, 0.50),
        p99=_percentile(latencies, 0.99),
        final_refresh_token=final,
        rejected_replays=stats.rejected_replays,
        second_replays=stats.second_replays,
        rejection_reasons=MappingProxyType(dict(rejections.reasons)),
        load_average=_load_average(),
        burst_p99=burst_p99,
    )
    out.write(format_report(report))
    reasons = verdict(report)
    if reasons:
        out.write("FAILED:\n" + "".join(f"  - {reason}\n" for reason in reasons))
        out.flush()
        return 1
    out.write(
        f"OK: {report.requests} requests, {report.token_calls} token-endpoint calls "
        f"(at most {report.allowed_token_calls} allowed), no failures, "
        "the latest refresh token is the one the provider accepts\n"
    )
    out.flush()
    return 0


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return None


class _Stop(Exception):
    """SIGTERM while serving."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def serve_forever(
    *,
    port: int = DEFAULT_PORT,
    ttl: float = DEFAULT_TTL,
    token_latency: float = DEFAULT_TOKEN_LATENCY,
    out: TextIO | None = None,
) -> int:
    """Run only the provider on 127.0.0.1:``port`` until Ctrl-C (or SIGTERM); for the examples.

    Prints the base URL, the client id and secret (demo values) and how to run the examples.

    Returns:
        0 after a clean stop; 1 if the port cannot be bound.

    Raises:
        DemoUnavailable: the ``demo`` extra is not installed.
    """
    out = out if out is not None else sys.stdout
    require_server()
    provider = DemoProvider(ttl=ttl, token_latency=token_latency, port=port)
    try:
        url = provider.start()
    except OSError as exc:
        out.write(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; try --port\n")
        return 1
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()
    try:
        if in_main:
            previous = signal.signal(signal.SIGTERM, _raise_stop)
        out.write(
            f"httpx-refresh demo provider at {url} (ttl {ttl:g} s, token latency "
            f"{token_latency * 1000:g} ms)\n"
            f"  token endpoint  {url}/token\n"
            f"  client id       {provider.client_id}\n"
            f"  client secret   {provider.client_secret}\n"
            f"  API             {url}/api/items, {url}/api/echo\n"
            f"  new grant       POST {url}/dev/connect (client credentials in the body)\n"
            f"  API key         {provider.api_key} (POST {url}/session for a session token)\n"
            f"try:  python examples/sync_threads.py --url {url}\n"
            f"      python examples/async_script.py --url {url}\n"
            "Ctrl-C to stop\n"
        )
        out.flush()
        with contextlib.suppress(KeyboardInterrupt, _Stop):
            # Wake up twice a second: a SIGINT that the kernel delivers to another thread
            # (uvicorn's) only sets Python's flag, and a wait without a timeout would never
            # return to run the handler (seen as a hung Ctrl-C under load).
            never = threading.Event()
            while not never.wait(0.5):
                pass
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        provider.stop()
    counters = provider.counters()
    out.write(
        f"stopped: {counters.token_calls_total} token-endpoint calls, "
        f"{counters.api_successes} API successes, {counters.api_unauthorized} 401s\n"
    )
    out.flush()
    return 0
