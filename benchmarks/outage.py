"""Token endpoint down at 1,000 req/s: token-endpoint calls and flights per backoff period.

DESIGN "Targets": token-endpoint calls while it is down, per backoff period, at 1,000
req/s: <= 1 (rule R10). A *flight* is one refresh with its retries (``RetryPolicy``);
after a flight fails transiently no new flight starts for ``cooldown`` seconds, so the
backoff period is the cooldown.

A real token endpoint (``POST /token``, RFC 6749 section 6) and a protected API
(``GET /api``) run with uvicorn + Starlette on 127.0.0.1 in a thread. The token endpoint
answers 503 for ``--outage`` seconds, then 200 with a new access token. The client
starts with an access token that has already expired, so every request needs a refresh
before it is sent. An ``httpx.AsyncClient`` with one ``RefreshAuth`` (``OAuth2Refresh``)
sends ``--rate`` GET requests per second (paced on an absolute schedule, at most
``--concurrency`` outstanding) through the outage and ``--after`` seconds past recovery.

The token endpoint records the time of every call. Calls are grouped into flights by
their gaps: a gap no longer than the longest retry wait of the policy (plus
``--slack``) is inside one flight, a longer one starts the next flight. The figure
checked is the most flights that start inside any window of ``cooldown`` seconds while
the endpoint is down (target <= 1); the mean over the outage is shown as well. The
grouping is cross-checked with ``auth.stats`` (failed + successful flights) and with
the policy's attempt limit.

With ``--baseline`` (default off) the same run is repeated with ``cooldown=0``
(informational, not checked): what the endpoint sees without the cooldown.

Prints a Markdown table; exits 1 when flights per cooldown period exceed 1, when no
request succeeds after recovery, or when a sanity check fails (a request that started
after the first successful refresh failed, more than one successful refresh, the
grouping disagreeing with ``auth.stats``, a flight with more calls than attempts).

Run: ``python benchmarks/outage.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import httpx_refresh as hr
from httpx_refresh._demo import serve_asgi

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"


# -- server --------------------------------------------------------------------------


class Endpoint:
    """The token endpoint and API state, shared between the uvicorn thread and the driver."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down = True
        self.retry_after: float | None = None
        self._token = secrets.token_urlsafe(16)  # never the client's initial token
        self.token_calls: list[tuple[float, int]] = []  # (monotonic s, status)
        self.api_ok = 0
        self.api_rejected = 0

    async def token(self, request: Request) -> Response:
        now = time.monotonic()
        await request.body()
        with self._lock:
            if self.down:
                self.token_calls.append((now, 503))
                headers = (
                    {} if self.retry_after is None else {"Retry-After": f"{self.retry_after:g}"}
                )
                return JSONResponse(
                    {"error": "temporarily_unavailable"}, status_code=503, headers=headers
                )
            self.token_calls.append((now, 200))
            self._token = secrets.token_urlsafe(16)
            token = self._token
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": 3600},
            headers={"Cache-Control": "no-store"},
        )

    async def api(self, request: Request) -> Response:
        given = request.headers.get("authorization", "")
        with self._lock:
            ok = given == f"Bearer {self._token}"
            if ok:
                self.api_ok += 1
            else:
                self.api_rejected += 1
        if ok:
            return Response(b"ok")
        return Response(
            status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token", self.token, methods=["POST"]),
                Route("/api", self.api, methods=["GET"]),
            ]
        )


serve = serve_asgi


# -- driving ---------------------------------------------------------------------------


@dataclass
class Sent:
    """One request: start and end (monotonic s) and how it ended."""

    start: float
    end: float = 0.0
    outcome: str = "unfinished"  # "ok", "status <n>", or an exception class name


@dataclass
class Run:
    """Everything one run recorded."""

    cooldown: float
    policy: hr.RetryPolicy
    t0: float = 0.0
    recovered_at: float = 0.0
    stop_at: float = 0.0
    requests: list[Sent] = field(default_factory=list)
    token_calls: list[tuple[float, int]] = field(default_factory=list)
    stats: hr.RefreshStats | None = None
    skipped: int = 0
    unfinished: int = 0
    api_rejected: int = 0


async def drive(args: argparse.Namespace, cooldown: float) -> Run:
    endpoint = Endpoint()
    endpoint.retry_after = args.retry_after
    policy = hr.RetryPolicy(
        attempts=args.attempts,
        timeout=args.retry_timeout,
        wait_initial=args.wait_initial,
        wait_max=args.wait_max,
        wait_jitter=args.wait_jitter,
        cooldown=cooldown,
    )
    run = Run(cooldown=cooldown, policy=policy)
    with serve(endpoint.app()) as base:
        auth = hr.RefreshAuth(
            {
                "access_token": secrets.token_urlsafe(16),
                "refresh_token": secrets.token_urlsafe(16),
                "expires_at": time.time() - 60,  # expired: every request needs a refresh
            },
            hr.OAuth2Refresh(
                f"{base}/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, timeout=5.0
            ),
            retry=policy,
        )
        # httpcore's pool does work proportional to connections x queued requests
        # (encode/httpcore#1035), and the waiters of a flight are released all at once:
        # spread the connections over several clients sharing the one RefreshAuth.
        limits = httpx.Limits(
            max_connections=args.connections, max_keepalive_connections=args.connections
        )
        clients = [
            httpx.AsyncClient(auth=auth, limits=limits, timeout=30.0) for _ in range(args.clients)
        ]
        limiter = anyio.Semaphore(args.concurrency)
        first_ok: list[float] = []
        pending = [0]
        idle = anyio.Event()
        stopping = [False]

        async def one(client: httpx.AsyncClient, sent: Sent) -> None:
            try:
                response = await client.get(f"{base}/api")
                ok = response.status_code == 200
                sent.outcome = "ok" if ok else f"status {response.status_code}"
            except Exception as exc:  # noqa: BLE001 - recorded by class name
                sent.outcome = type(exc).__name__
                ok = False
            finally:
                sent.end = time.monotonic()
                limiter.release()
                pending[0] -= 1
                if stopping[0] and not pending[0]:
                    idle.set()
            if ok and run.recovered_at and not first_ok:
                first_ok.append(sent.end)

        async with anyio.create_task_group() as tg:
            t0 = run.t0 = time.monotonic()
            recover_at = t0 + args.outage
            # Recovery must show within a cooldown plus one whole flight.
            deadline = recover_at + cooldown + args.retry_timeout + args.wait_max + 10.0
            launched = 0
            while True:
                now = time.monotonic()
                if endpoint.down and now >= recover_at:
                    with endpoint._lock:
                        endpoint.down = False
                    run.recovered_at = time.monotonic()
                if (first_ok and now >= first_ok[0] + args.after) or now >= deadline:
                    break
                due = int((now - t0) * args.rate) + 1
                while launched < due:
                    launched += 1
                    try:
                        limiter.acquire_nowait()
                    except anyio.WouldBlock:
                        run.skipped += 1  # the concurrency bound: this slot is not sent
                        continue
                    sent = Sent(time.monotonic())
                    run.requests.append(sent)
                    pending[0] += 1
                    tg.start_soon(one, clients[launched % len(clients)], sent)
                await anyio.sleep(0.001)
            run.stop_at = time.monotonic()
            stopping[0] = True
            if pending[0]:
                with anyio.move_on_after(args.grace):
                    await idle.wait()
            run.unfinished = sum(not r.end for r in run.requests)
            tg.cancel_scope.cancel()
        for client in clients:
            await client.aclose()
        run.stats = auth.stats
    with endpoint._lock:
        run.token_calls = list(endpoint.token_calls)
        run.api_rejected = endpoint.api_rejected
    return run


# -- analysis --------------------------------------------------------------------------


def max_gap_in_flight(
    policy: hr.RetryPolicy, slack: float, retry_after: float | None = None
) -> float:
    """The longest pause between two calls of one flight, plus ``slack`` for round trips."""
    if policy.attempts < 2:
        return slack
    longest = min(policy.wait_initial * 2.0 ** (policy.attempts - 2), policy.wait_max)
    longest += policy.wait_jitter
    if retry_after is not None:  # honoured up to wait_max instead of the backoff
        longest = max(longest, min(retry_after, policy.wait_max))
    return longest + slack


def flights_of(calls: list[tuple[float, int]], gap: float) -> list[list[tuple[float, int]]]:
    """Group token-endpoint calls (sorted by time) into flights by gaps of at most ``gap``."""
    flights: list[list[tuple[float, int]]] = []
    for call in sorted(calls):
        if flights and call[0] - flights[-1][-1][0] <= gap:
            flights[-1].append(call)
        else:
            flights.append([call])
    return flights


def most_in_window(starts: list[float], window: float) -> int:
    """The most ``starts`` inside any half-open window ``[t, t + window)``."""
    best, lo = 0, 0
    for hi, start in enumerate(starts):
        while start - starts[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Figures:
    """The table's figures for one run, and what went wrong."""

    rows: list[tuple[str, str]]
    problems: list[str]
    flights_per_period: int


def analyse(run: Run, args: argparse.Namespace, *, checked: bool) -> Figures:
    period = args.cooldown  # the backoff period the target speaks of
    rec = run.recovered_at
    gap = max_gap_in_flight(run.policy, args.slack, args.retry_after)
    flights = flights_of(run.token_calls, gap)
    outage_flights = [f for f in flights if f[0][0] < rec]
    starts = [f[0][0] for f in outage_flights]
    per_window = most_in_window(starts, period)
    outage_s = rec - run.t0
    periods = outage_s / period
    outage_calls = [c for c in run.token_calls if c[0] < rec]
    ok_calls = [c for c in run.token_calls if c[1] == 200]

    during = [r for r in run.requests if r.start < rec]
    after = [r for r in run.requests if r.start >= rec]
    failed = [r for r in during if r.outcome != "ok"]
    fast = [r for r in failed if r.end - r.start < args.fast]
    slow = [r for r in failed if r.end - r.start >= args.fast]
    ok_after = sorted(
        (r for r in run.requests if r.outcome == "ok" and r.end >= rec), key=lambda r: r.end
    )
    first_ok = ok_after[0].end - rec if ok_after else None
    refreshed_at = ok_calls[0][0] if ok_calls else None
    after_refresh = [
        r for r in run.requests if refreshed_at is not None and r.start > refreshed_at + 0.05
    ]
    after_refresh_ok = sum(r.outcome == "ok" for r in after_refresh)
    kinds = sorted({r.outcome for r in failed})
    early_ok = sum(r.outcome == "ok" and r.end < rec for r in run.requests)
    stats = run.stats
    flights_stats = (stats.failures + stats.refreshes) if stats else -1

    def ms(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{statistics.median(values) * 1e3:.2f} / {pct(values, 0.99) * 1e3:.2f}"

    def rate(part: int, whole: int) -> str:
        return f"{part}/{whole} ({100 * part / whole:.1f} %)" if whole else "0/0"

    if run.cooldown == 0:
        # Without a cooldown the next flight starts right after the last one failed: gaps
        # cannot separate them, so count flights with auth.stats instead.
        failed_flights = stats.failures if stats else 0
        flight_rows = [
            ("flights during outage (calls per flight)", f"{failed_flights} (from auth.stats)"),
            (f"flights per backoff period, max in any {period:g} s window (target <= 1)", "n/a"),
            (f"flights per backoff period ({period:g} s), mean", f"{failed_flights / periods:.2f}"),
            ("flight starts, s after outage began", "n/a"),
        ]
    else:
        flight_rows = [
            (
                "flights during outage (calls per flight)",
                f"{len(outage_flights)} ({', '.join(str(len(f)) for f in outage_flights)})",
            ),
            (
                f"flights per backoff period, max in any {period:g} s window (target <= 1)",
                f"{per_window}",
            ),
            (
                f"flights per backoff period ({period:g} s), mean",
                f"{len(outage_flights) / periods:.2f}",
            ),
            (
                "flight starts, s after outage began",
                ", ".join(f"{s - run.t0:.2f}" for s in starts) or "-",
            ),
        ]
    rows = [
        (
            "requests sent (total; during outage; after recovery)",
            f"{len(run.requests)}; {len(during)}; {len(after)}",
        ),
        (
            "achieved rate, req/s (during outage; after recovery)",
            f"{len(during) / outage_s:.0f}; {len(after) / max(run.stop_at - rec, 1e-9):.0f}",
        ),
        (
            "slots skipped at the concurrency bound; unfinished at the end",
            f"{run.skipped}; {run.unfinished}",
        ),
        (
            "requests started during outage that failed",
            f"{rate(len(failed), len(during))} [{', '.join(kinds) or '-'}]",
        ),
        (
            f"  fast-fail (< {args.fast * 1e3:g} ms): count; median / p99 ms",
            f"{len(fast)}; {ms([r.end - r.start for r in fast])}",
        ),
        (
            "  waited on a flight, then failed: count; median / p99 ms",
            f"{len(slow)}; {ms([r.end - r.start for r in slow])}",
        ),
        ("requests that succeeded before recovery (expect 0)", f"{early_ok}"),
        (
            "token-endpoint calls (total; during outage)",
            f"{len(run.token_calls)}; {len(outage_calls)}",
        ),
        (
            f"token-endpoint calls per backoff period ({period:g} s), mean",
            f"{len(outage_calls) / periods:.2f}",
        ),
        *flight_rows,
        (
            "auth.stats: failed flights + refreshes",
            f"{stats.failures} + {stats.refreshes}" if stats else "-",
        ),
        ("successful token-endpoint calls (expect 1)", f"{len(ok_calls)}"),
        (
            "recovery -> first successful request, s",
            "never" if first_ok is None else f"{first_ok:.3f}",
        ),
        (
            "recovery -> successful refresh, s",
            "never" if refreshed_at is None else f"{refreshed_at - rec:.3f}",
        ),
        (
            "success rate, requests started after recovery",
            rate(sum(r.outcome == "ok" for r in after), len(after)),
        ),
        (
            "success rate, requests started after the refresh",
            rate(after_refresh_ok, len(after_refresh)),
        ),
    ]

    problems: list[str] = []
    if checked:
        if per_window > 1:
            problems.append(
                f"{per_window} flights started within {period:g} s while the endpoint was down "
                "(target <= 1)"
            )
        if first_ok is None:
            problems.append("no request succeeded after the endpoint recovered")
        if len(ok_calls) != 1:
            problems.append(f"{len(ok_calls)} successful token-endpoint calls, expected 1")
        if after_refresh_ok != len(after_refresh):
            problems.append(
                f"{len(after_refresh) - after_refresh_ok} requests failed after the "
                "successful refresh"
            )
        if run.unfinished:
            problems.append(
                f"{run.unfinished} requests had not finished {args.grace:g} s after the end"
            )
        if early_ok:
            problems.append("a request succeeded while the token endpoint was down")
    if run.cooldown > 0 and flights_stats != len(flights):
        problems.append(
            f"grouping found {len(flights)} flights but auth.stats counts {flights_stats} "
            f"(gap threshold {gap:.2f} s; try --slack)"
        )
    if run.cooldown > 0 and any(len(f) > run.policy.attempts for f in flights):
        problems.append(
            f"a flight made more than {run.policy.attempts} calls (overlapping flights?)"
        )
    if checked and period <= gap:
        problems.append(
            f"cooldown {period:g} s is not longer than the in-flight gap threshold {gap:.2f} s: "
            "flights cannot be told apart"
        )
    return Figures(rows, problems, per_window)


def table(columns: list[str], figures: list[Figures]) -> str:
    lines = ["| figure | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for i, (name, _) in enumerate(figures[0].rows):
        lines.append(f"| {name} | " + " | ".join(f.rows[i][1] for f in figures) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Token endpoint down (503) under ~1,000 req/s of requests with an expired "
        "token: token-endpoint calls and flights per backoff period (DESIGN target <= 1).",
    )
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="requests per second (default 1000)"
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=10.0,
        help="seconds the token endpoint answers 503 (default 10)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=8,
        help="httpx.AsyncClients sharing the one RefreshAuth (default 8)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds to wait for outstanding requests at the end (default 10)",
    )
    parser.add_argument(
        "--after",
        type=float,
        default=3.0,
        help="seconds to keep sending after the first successful request once the endpoint "
        "is back (default 3)",
    )
    parser.add_argument(
        "--cooldown",
        type=float,
        default=5.0,
        help="RetryPolicy.cooldown, the backoff period, s (default 5)",
    )
    parser.add_argument("--attempts", type=int, default=3, help="RetryPolicy.attempts (default 3)")
    parser.add_argument(
        "--wait-initial", type=float, default=0.5, help="RetryPolicy.wait_initial, s (default 0.5)"
    )
    parser.add_argument(
        "--wait-max", type=float, default=5.0, help="RetryPolicy.wait_max, s (default 5)"
    )
    parser.add_argument(
        "--wait-jitter", type=float, default=0.5, help="RetryPolicy.wait_jitter, s (default 0.5)"
    )
    parser.add_argument(
        "--retry-timeout", type=float, default=10.0, help="RetryPolicy.timeout, s (default 10)"
    )
    parser.add_argument(
        "--retry-after",
        type=float,
        default=None,
        help="send this Retry-After with each 503 (default none)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=4000, help="most requests outstanding (default 4000)"
    )
    parser.add_argument(
        "--connections", type=int, default=4, help="max_connections per client (default 4)"
    )
    parser.add_argument(
        "--fast",
        type=float,
        default=0.05,
        help="a failure faster than this is a fast-fail, s (default 0.05)",
    )
    parser.add_argument(
        "--slack",
        type=float,
        default=0.3,
        help="round-trip allowance when grouping calls into flights, s (default 0.3)",
    )
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also run with cooldown=0 for comparison (informational; default off)",
    )
    args = parser.parse_args()
    if args.cooldown <= 0:
        parser.error("--cooldown must be > 0 (it is the backoff period measured)")
    if args.rate <= 0 or args.outage <= 0 or args.after <= 0:
        parser.error("--rate, --outage and --after must be > 0")

    shape = hr.RetryPolicy(
        attempts=args.attempts,
        wait_initial=args.wait_initial,
        wait_max=args.wait_max,
        wait_jitter=args.wait_jitter,
    )
    print(
        f"outage {args.outage:g} s at {args.rate:g} req/s, "
        f"then {args.after:g} s past the first success; "
        f"RetryPolicy(attempts={args.attempts}, wait_initial={args.wait_initial:g}, "
        f"wait_max={args.wait_max:g}, wait_jitter={args.wait_jitter:g}, "
        f"timeout={args.retry_timeout:g}), backoff period = cooldown = {args.cooldown:g} s; "
        f"calls grouped into flights by gaps <= "
        f"{max_gap_in_flight(shape, args.slack, args.retry_after):.2f} s\n",
        flush=True,
    )
    columns = [f"cooldown={args.cooldown:g} s"]
    results = [analyse(anyio.run(drive, args, args.cooldown), args, checked=True)]
    if args.baseline:
        columns.append("baseline cooldown=0 (not checked)")
        results.append(analyse(anyio.run(drive, args, 0.0), args, checked=False))
    print(table(columns, results))
    problems = [f"{col}: {p}" for col, f in zip(columns, results, strict=True) for p in f.problems]
    if problems:
        print("\nFAIL:\n" + "\n".join(f"- {p}" for p in problems))
        return 1
    print(
        f"\nOK: {results[0].flights_per_period} flight per {args.cooldown:g} s backoff period "
        "(target <= 1)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
