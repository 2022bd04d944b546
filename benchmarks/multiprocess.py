"""Cross-process single-flight through a credential store, and the store's fresh-path cost.

DESIGN R5 across processes: however many processes share a store, one refresh. And the
fresh-token path never touches the store, so a store costs nothing per request.

1. Expired grant, P processes x C concurrent requests. A ``DemoProvider`` (real sockets
   on 127.0.0.1, token endpoint latency 100 ms) issues a fresh grant per row; it is
   stored with an ``expires_at`` in the past in a ``FileStore`` (temporary directory) or
   a ``RedisStore`` (``--redis-url``, ``HTTPX_REFRESH_REDIS_URL``, or a ``redis-server``
   started on a free port if one is on PATH; otherwise the Redis rows are skipped). P
   processes (spawn) each build ``RefreshAuth(store, OAuth2Refresh(...))`` and an
   ``httpx.AsyncClient`` (asyncio), report ready, and wait for one shared start signal;
   then each sends C GETs to ``/api/items`` at once. Every process must refresh before
   sending, so each one's single flight takes the store's lock; the first refreshes and
   saves, the others reload and adopt. Columns: token-endpoint calls (provider counters;
   target exactly 1), refresher runs summed over the processes' ``auth.stats``, successes
   (200), failures, the store version afterwards, the spread of the processes' release
   times and the wall time from the start signal to the last response.

2. Fresh-token path with a store vs a mapping, in one process: interleaved rounds (the
   order rotating between rounds) of sequential GETs through ``httpx.MockTransport``,
   with ``RefreshAuth(mapping, ...)`` vs ``RefreshAuth(store, ...)`` for ``MemoryStore``,
   ``FileStore`` (and ``RedisStore`` when a server is available), all holding a token
   that expires in 24 h; GC paused while timing. The figure is the median of the
   per-round ratios store / mapping; it should be ~1.00. Sync ``httpx.Client`` and
   ``httpx.AsyncClient`` on asyncio. Informational: no ratio target.

Exits 1 if a row had token-endpoint calls != 1 or any failure, or a check fails: a
process that did not report, refresher runs != token calls, a store version other
than 2 after the row, an ``invalid_grant``; on the fresh path a request without the
expected header, a refresher call, any refresh activity, or any store operation after
construction (counted by a subclass of each store).

Run: ``python benchmarks/multiprocess.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
from overhead import _time_async, _time_sync

import httpx_refresh as hr
from httpx_refresh._demo import DemoProvider, connect_grant

REDIS_ENV = "HTTPX_REFRESH_REDIS_URL"
TOKEN_LATENCY = 0.1  # seconds the demo token endpoint waits before answering
FRESH_TOKEN = "benchmark-access-token"
FRESH_HEADER = f"Bearer {FRESH_TOKEN}"
GIVEN_DOWN = "the given Redis server did not answer"


# -- part 1: P processes x C requests on an expired grant ------------------------------


@dataclass(frozen=True)
class StoreSpec:
    """How a worker process opens the row's store (picklable)."""

    kind: str  # "file" or "redis"
    where: str  # the file path, or the Redis URL
    key: str = ""  # the Redis key

    def open(self) -> hr.FileStore | hr.RedisStore:
        if self.kind == "file":
            return hr.FileStore(self.where)
        return hr.RedisStore(self.where, self.key)


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process needs (picklable)."""

    index: int
    store: StoreSpec
    base_url: str
    client_id: str
    client_secret: str
    concurrency: int
    timeout: float


def worker(spec: WorkerSpec, start: Any, messages: Any) -> None:
    """One process: build the auth and client, report ready, wait for the start, send C GETs.

    Puts ``("ready", index)`` then ``("done", index, result)`` on ``messages``; failures
    are reported by exception type only (no message can carry a secret).
    """
    result: dict[str, Any] = {"successes": 0, "failures": Counter(), "error": None}
    try:
        auth = hr.RefreshAuth(
            spec.store.open(),
            hr.OAuth2Refresh(
                f"{spec.base_url}/token",
                client_id=spec.client_id,
                client_secret=spec.client_secret,
            ),
        )
        anyio.run(_worker_main, spec, auth, start, messages, result, backend="asyncio")
        stats = auth.stats
        result["refreshes"] = stats.refreshes
        result["replays"] = stats.replays
        result["refresh_failures"] = stats.failures
    except Exception as exc:  # noqa: BLE001 - reported to the parent by type
        result["error"] = type(exc).__name__
        messages.put(("ready", spec.index))  # never leave the parent waiting for it
    messages.put(("done", spec.index, result))


async def _worker_main(
    spec: WorkerSpec, auth: hr.RefreshAuth, start: Any, messages: Any, result: dict[str, Any]
) -> None:
    limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=None)
    url = f"{spec.base_url}/api/items"
    failures: Counter[str] = result["failures"]

    async def get(client: httpx.AsyncClient) -> None:
        try:
            response = await client.get(url)
        except Exception as exc:  # noqa: BLE001 - counted by type
            failures[type(exc).__name__] += 1
            return
        if response.status_code == 200:
            result["successes"] += 1
        else:
            failures[f"HTTP {response.status_code}"] += 1

    async with httpx.AsyncClient(auth=auth, limits=limits, timeout=spec.timeout) as client:
        messages.put(("ready", spec.index))
        released = await anyio.to_thread.run_sync(start.wait, spec.timeout)
        result["released"] = time.monotonic()
        if not released:
            result["error"] = "start signal never came"
            return
        with anyio.fail_after(spec.timeout):
            async with anyio.create_task_group() as tasks:
                for _ in range(spec.concurrency):
                    tasks.start_soon(get, client)
        result["ended"] = time.monotonic()


@dataclass
class Row:
    """The figures of one P x C run."""

    store: str
    processes: int
    concurrency: int
    token_calls: int = 0
    refresher_runs: int = 0
    successes: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    store_version: int | None = None
    release_spread_ms: float = float("nan")
    wall_ms: float = float("nan")
    problems: list[str] = field(default_factory=list)


def run_row(
    provider: DemoProvider,
    base_url: str,
    spec: StoreSpec,
    label: str,
    processes: int,
    args: argparse.Namespace,
) -> Row:
    """Store a fresh, expired grant, run P workers released together, collect the figures."""
    row = Row(label, processes, args.concurrency)
    store = spec.open()
    grant = connect_grant(base_url)
    grant.pop("expires_in", None)
    grant["expires_at"] = time.time() - 60  # expired: every process must refresh first
    store.save(grant, expected_version=None, force=True)

    context = multiprocessing.get_context("spawn")
    start = context.Event()
    messages = context.Queue()
    workers = [
        context.Process(
            target=worker,
            args=(
                WorkerSpec(
                    index,
                    spec,
                    base_url,
                    provider.client_id,
                    provider.client_secret,
                    args.concurrency,
                    args.timeout,
                ),
                start,
                messages,
            ),
            daemon=True,
        )
        for index in range(processes)
    ]
    before = provider.counters()
    for process in workers:
        process.start()
    results: dict[int, dict[str, Any]] = {}
    ready: set[int] = set()
    started_at = 0.0
    deadline = time.monotonic() + args.timeout + 60.0  # spawning P interpreters is slow
    try:
        while len(results) < processes:
            try:
                message = messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if message[0] == "ready":
                ready.add(message[1])
                if len(ready) == processes and not start.is_set():
                    started_at = time.monotonic()
                    start.set()
            else:
                results[message[1]] = message[2]
    finally:
        for process in workers:
            process.join(timeout=10.0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5.0)
    after = provider.counters().since(before)

    row.token_calls = after.token_calls_total
    missing = processes - len(results)
    if missing:
        row.problems.append(f"{missing} of {processes} processes did not report in time")
    released, ended = [], []
    for index, result in sorted(results.items()):
        if result["error"]:
            row.problems.append(f"process {index} failed: {result['error']}")
        row.successes += result["successes"]
        row.failures.update(result["failures"])
        row.refresher_runs += result.get("refreshes", 0)
        if "released" in result:
            released.append(result["released"])
        if "ended" in result:
            ended.append(result["ended"])
    if released:
        row.release_spread_ms = (max(released) - min(released)) * 1000
    if ended and len(ended) == processes and started_at:
        row.wall_ms = (max(ended) - started_at) * 1000
    stored = store.load()
    row.store_version = None if stored is None else stored.version

    if row.token_calls != 1:
        row.problems.append(f"token endpoint called {row.token_calls} times (target exactly 1)")
    if row.failures or row.successes != processes * args.concurrency:
        kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(row.failures.items()))
        row.problems.append(
            f"{row.successes} of {processes * args.concurrency} requests succeeded"
            + (f"; failures: {kinds}" if kinds else "")
        )
    if row.refresher_runs != row.token_calls:
        row.problems.append(
            f"refresher runs in auth.stats ({row.refresher_runs}) != token calls "
            f"({row.token_calls})"
        )
    if row.store_version != 2:
        row.problems.append(f"store version {row.store_version} afterwards, expected 2 (one save)")
    if after.invalid_grant:
        row.problems.append(f"{after.invalid_grant} invalid_grant answers (a reused refresh token)")
    return row


def _rows_table(rows: list[Row]) -> str:
    lines = [
        "| store | P | C | token-endpoint calls (target 1) | refresher runs (auth.stats) "
        "| successes | failures | store version after | release spread ms | wall ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        calls = f"{row.token_calls}" if row.token_calls == 1 else f"**{row.token_calls}**"
        failures = sum(row.failures.values())
        lines.append(
            f"| {row.store} | {row.processes} | {row.concurrency} | {calls} "
            f"| {row.refresher_runs} | {row.successes} | "
            f"{failures if not failures else f'**{failures}**'} | {row.store_version} "
            f"| {row.release_spread_ms:.1f} | {row.wall_ms:.0f} |"
        )
    return "\n".join(lines)


# -- Redis ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def redis_url(args: argparse.Namespace) -> Iterator[tuple[str | None, str]]:
    """Yield ``(url or None, how)``: the given server, one started here, or none."""
    try:
        import redis  # noqa: F401
    except ImportError:
        yield None, "redis-py is not installed"
        return
    given = args.redis_url or os.environ.get(REDIS_ENV)
    if given:
        yield (given, "given") if _ping(given) else (None, GIVEN_DOWN)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None, "no --redis-url, no $" + REDIS_ENV + ", and no redis-server on PATH"
        return
    port = _free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10.0
        while not _ping(url):  # readiness of another process: nothing to wait on but polls
            if server.poll() is not None or time.monotonic() > deadline:
                yield None, "redis-server did not start"
                return
            time.sleep(0.05)
        yield url, f"redis-server {port} started for this run"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5.0)


def _drop_redis_keys(url: str, keys: list[str]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        if keys:
            client.delete(*keys, *(f"{key}:lock" for key in keys))
    finally:
        client.close()


# -- part 2: fresh-path cost, store vs mapping ----------------------------------------


class Api:
    """The mock API: 200 when the expected Authorization header arrived, else 400."""

    def __init__(self) -> None:
        self.mismatches = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != FRESH_HEADER:
            self.mismatches += 1
            return httpx.Response(400)
        return httpx.Response(200)


class Refresher:
    """Counts calls; the fresh-token path must never call it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        return {"access_token": FRESH_TOKEN, "expires_in": 86_400}


class _Counting:
    """Mixin for a store: counts every operation (the fresh path must do none)."""

    operations = 0

    def load(self) -> Any:
        self.operations += 1
        return super().load()  # type: ignore[misc]

    def save(self, *args: Any, **kwargs: Any) -> Any:
        self.operations += 1
        return super().save(*args, **kwargs)  # type: ignore[misc]

    def acquire(self, wait: float) -> Any:
        self.operations += 1
        return super().acquire(wait)  # type: ignore[misc]

    def release(self, token: object) -> Any:
        self.operations += 1
        return super().release(token)  # type: ignore[misc]

    async def aload(self) -> Any:
        self.operations += 1
        return await super().aload()  # type: ignore[misc]

    async def asave(self, *args: Any, **kwargs: Any) -> Any:
        self.operations += 1
        return await super().asave(*args, **kwargs)  # type: ignore[misc]

    async def aacquire(self, wait: float) -> Any:
        self.operations += 1
        return await super().aacquire(wait)  # type: ignore[misc]

    async def arelease(self, token: object) -> Any:
        self.operations += 1
        return await super().arelease(token)  # type: ignore[misc]


class CountingMemoryStore(_Counting, hr.MemoryStore):
    """``MemoryStore`` that counts its operations."""


class CountingFileStore(_Counting, hr.FileStore):
    """``FileStore`` that counts its operations."""


class CountingRedisStore(_Counting, hr.RedisStore):
    """``RedisStore`` that counts its operations."""


def _fresh_credentials() -> dict[str, Any]:
    return {
        "access_token": FRESH_TOKEN,
        "refresh_token": "benchmark-refresh-token",
        "expires_in": 86_400,
        "expires_at": time.time() + 86_400,
    }


@dataclass
class Variant:
    """One auth under test on the fresh path."""

    name: str
    auth: hr.RefreshAuth
    refresher: Refresher
    store: _Counting | None
    operations_after_init: int
    us: list[float] = field(default_factory=list)


def make_variants(directory: Path, redis: str | None) -> list[Variant]:
    """The mapping baseline first, then one variant per store; all hold a fresh token."""
    stores: list[tuple[str, _Counting | None]] = [("mapping", None)]
    memory = CountingMemoryStore(_fresh_credentials())
    stores.append(("MemoryStore", memory))
    file_store = CountingFileStore(directory / f"fresh-{uuid.uuid4().hex}.json")
    file_store.save(_fresh_credentials(), expected_version=None)
    stores.append(("FileStore", file_store))
    if redis is not None:
        redis_store = CountingRedisStore(redis, f"httpx-refresh-bench:{uuid.uuid4().hex}")
        redis_store.save(_fresh_credentials(), expected_version=None)
        stores.append(("RedisStore", redis_store))
    variants = []
    for name, store in stores:
        refresher = Refresher()
        source: Any = _fresh_credentials() if store is None else store
        auth = hr.RefreshAuth(source, refresher)
        operations = 0 if store is None else store.operations
        variants.append(Variant(name, auth, refresher, store, operations))
    return variants


def _rotated(index: int, count: int) -> list[int]:
    """Round ``index``'s order of ``count`` variants: rotated, reversed every other round."""
    order = [(index // 2 + offset) % count for offset in range(count)]
    return order if index % 2 == 0 else order[::-1]


def fresh_sync(args: argparse.Namespace, variants: list[Variant], api: Api) -> None:
    clients = [httpx.Client(transport=httpx.MockTransport(api), auth=v.auth) for v in variants]
    try:
        for client in clients:
            _time_sync(client, args.warmup)
        for index in range(args.rounds):
            for which in _rotated(index, len(variants)):
                variants[which].us.append(_time_sync(clients[which], args.requests))
    finally:
        for client in clients:
            client.close()


def fresh_async(args: argparse.Namespace, variants: list[Variant], api: Api) -> None:
    async def main() -> None:
        clients = [
            httpx.AsyncClient(transport=httpx.MockTransport(api), auth=v.auth) for v in variants
        ]
        try:
            for client in clients:
                await _time_async(client, args.warmup)
            for index in range(args.rounds):
                for which in _rotated(index, len(variants)):
                    us = await _time_async(clients[which], args.requests)
                    variants[which].us.append(us)
        finally:
            for client in clients:
                await client.aclose()

    anyio.run(main, backend="asyncio")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def bench_fresh(
    args: argparse.Namespace,
    directory: Path,
    redis: str | None,
    flavour: str,
    run: Callable[[argparse.Namespace, list[Variant], Api], None],
    checks: list[str],
) -> list[str]:
    """Interleaved rounds of every variant; table lines for ``flavour``; checks appended."""
    api = Api()
    variants = make_variants(directory, redis)
    run(args, variants, api)
    if api.mismatches:
        checks.append(f"{flavour}: {api.mismatches} requests arrived without the expected header")
    baseline = variants[0]
    lines = []
    for variant in variants:
        where = f"{flavour}, {variant.name}"
        if variant.refresher.calls:
            checks.append(f"{where}: the refresher ran {variant.refresher.calls} times")
        stats = variant.auth.stats
        if stats.refreshes or stats.replays or stats.failures or stats.deduplicated:
            checks.append(f"{where}: refresh activity on the fresh path: {stats}")
        expires_at = variant.auth.expires_at
        if expires_at is None or expires_at < time.time() + 3_600:
            checks.append(f"{where}: the token's expiry is not known and far, R2 did not run")
        touched = 0
        if variant.store is not None:
            touched = variant.store.operations - variant.operations_after_init
            if touched:
                checks.append(f"{where}: {touched} store operations on the fresh path")
        if variant is baseline:
            ratio_text, spread = "1 (baseline)", ""
        else:
            ratios = [s / b for s, b in zip(variant.us, baseline.us, strict=True)]
            ratio_text = f"{statistics.median(ratios):.3f}"
            spread = f"{_percentile(ratios, 0.1):.3f}-{_percentile(ratios, 0.9):.3f}"
        lines.append(
            f"| {flavour} | {variant.name} | {statistics.median(variant.us):.1f} "
            f"| {ratio_text} | {spread} | {touched if variant.store is not None else '-'} |"
        )
    if redis is not None:
        keys = [v.store.key for v in variants if isinstance(v.store, CountingRedisStore)]
        _drop_redis_keys(redis, keys)
    return lines


# -- main -----------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of integers >= 1")
    return values


def _stores(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values or set(values) - {"file", "redis"}:
        raise argparse.ArgumentTypeError("a comma-separated list of: file, redis")
    return values


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0: every row met the target)."""
    parser = argparse.ArgumentParser(
        description=(
            "Cross-process single-flight: P processes x C concurrent requests on an expired "
            "grant held in a FileStore / RedisStore (target: exactly 1 token-endpoint call), "
            "and the fresh-path cost of RefreshAuth over a store vs over a mapping."
        )
    )
    parser.add_argument(
        "--processes",
        type=_counts,
        default=[2, 4, 8],
        help="process counts, comma-separated (default 2,4,8)",
    )
    parser.add_argument(
        "--concurrency", type=_positive, default=50, help="concurrent GETs per process (50)"
    )
    parser.add_argument(
        "--stores",
        type=_stores,
        default=["file", "redis"],
        help="stores for the multi-process rows, comma-separated (default file,redis)",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help=f"Redis server for RedisStore (default ${REDIS_ENV}, else a redis-server started "
        "on a free port if one is on PATH, else the Redis rows are skipped)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds a process waits for the start signal, and for its requests (30)",
    )
    parser.add_argument(
        "--rounds", type=_positive, default=20, help="fresh path: interleaved rounds (20)"
    )
    parser.add_argument(
        "--requests",
        type=_positive,
        default=200,
        help="fresh path: sequential requests per variant per round (200)",
    )
    parser.add_argument(
        "--warmup", type=_positive, default=300, help="fresh path: warm-up requests (300)"
    )
    args = parser.parse_args(argv)

    checks: list[str] = []
    rows: list[Row] = []
    notes: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="httpx-refresh-bench-") as temp,
        redis_url(args) as (redis, how),
    ):
        directory = Path(temp)
        if redis is None and how == GIVEN_DOWN:
            checks.append(f"Redis: {how}")
        if redis is None:
            notes.append(f"Redis rows skipped: {how}.")
        else:
            notes.append(f"Redis: {how}.")

        provider = DemoProvider(ttl=3600, token_latency=TOKEN_LATENCY)
        with provider as base_url:
            for kind in args.stores:
                if kind == "redis" and redis is None:
                    continue
                for processes in args.processes:
                    if kind == "file":
                        spec = StoreSpec("file", str(directory / f"row-{uuid.uuid4().hex}.json"))
                        label = "FileStore"
                    else:
                        assert redis is not None
                        key = f"httpx-refresh-bench:{uuid.uuid4().hex}"
                        spec = StoreSpec("redis", redis, key)
                        label = "RedisStore"
                    rows.append(run_row(provider, base_url, spec, label, processes, args))
                    if kind == "redis":
                        assert redis is not None
                        _drop_redis_keys(redis, [spec.key])

        fresh_lines = bench_fresh(args, directory, redis, "sync Client", fresh_sync, checks)
        fresh_lines += bench_fresh(
            args, directory, redis, "AsyncClient (asyncio)", fresh_async, checks
        )

    print(
        "## Expired grant in a store: P processes x C concurrent requests "
        "(target: exactly 1 token-endpoint call)\n"
    )
    print(_rows_table(rows))
    print(
        f"\nDemoProvider on 127.0.0.1, token endpoint latency {TOKEN_LATENCY * 1000:.0f} ms; "
        "processes spawned, released together by one event; one AsyncClient (asyncio) per "
        "process; wall time from the start signal to the last response. " + " ".join(notes)
    )
    print("\n## Fresh-token path: RefreshAuth over a store vs over a mapping (expected ~1.00)\n")
    print(
        "| client | credentials | µs/req (median) | ratio store / mapping (median of rounds) "
        "| rounds p10-p90 | store operations while timing |"
    )
    print("|---|---|---:|---:|---|---:|")
    print("\n".join(fresh_lines))
    print(
        f"\n{args.rounds} interleaved rounds (order rotating) x {args.requests} sequential "
        f"requests per variant, after {args.warmup} warm-up requests; httpx.MockTransport; "
        "GC paused while timing; token expires in 24 h."
    )

    failed = False
    for row in rows:
        for problem in row.problems:
            failed = True
            print(f"\nMISSED: {row.store}, P={row.processes}, C={row.concurrency}: {problem}")
    for problem in checks:
        print(f"\nCHECK FAILED: {problem}")
    return 1 if failed or checks else 0


if __name__ == "__main__":
    sys.exit(main())
