"""Per-request client-side cost of ``RefreshAuth`` on the fresh-token path.

DESIGN "Targets": per-request client-side cost on the fresh-token path vs a static
``Authorization`` header (httpx.MockTransport): <= 1.05x.

- baseline: an ``httpx.Client`` / ``httpx.AsyncClient`` over ``httpx.MockTransport``
  with a static ``Authorization: Bearer ...`` client header and no auth;
- measured: the same kind of client with ``auth=RefreshAuth(...)`` holding a fresh
  token whose expiry is known and far away (so the R2 expiry check runs on every
  request) and no static header.

Both send the same GET to the same handler, which checks that the expected
``Authorization`` header arrived (a mismatch fails the run). The two variants are
interleaved: each round times one block of sequential requests per variant (order
alternating between rounds) with ``time.perf_counter_ns`` and the garbage collector
paused, after a warm-up. The figure is the median of the per-round ratios
(measured / baseline); the table also gives the median microseconds per request of
each variant and the spread (10th-90th percentile of rounds, and the medians of
each independent repeat).

Also printed, for diagnosis: the auth flow alone, driven by hand without a client
(``RefreshAuth.sync_auth_flow`` vs the no-op ``httpx.Auth``), in microseconds.

Exits 1 if a ratio exceeds the target (then a cProfile summary of where the
measured variant spends time is printed too), or if a check fails.

Run: ``python benchmarks/overhead.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

import httpx_refresh as hr

TOKEN = "benchmark-access-token"
HEADER = f"Bearer {TOKEN}"
URL = "https://api.example.test/resource"
TARGET = 1.05


class Api:
    """The mock API: 200 when the expected Authorization header arrived, else 400."""

    def __init__(self) -> None:
        self.mismatches = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != HEADER:
            self.mismatches += 1
            return httpx.Response(400)
        return httpx.Response(200)


class Refresher:
    """Counts calls; the fresh-token path must never call it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        return {"access_token": TOKEN, "expires_in": 86_400}


def make_auth(refresher: Refresher) -> hr.RefreshAuth:
    """A RefreshAuth with a fresh token that expires in 24 h (known expiry and lifetime)."""
    return hr.RefreshAuth(
        {"access_token": TOKEN, "refresh_token": "benchmark-refresh-token", "expires_in": 86_400},
        refresher,
    )


@dataclass
class Result:
    """Per-round microseconds per request for both variants, for one flavour."""

    flavour: str
    baseline_us: list[float]
    measured_us: list[float]
    repeat_ratios: list[float]

    @property
    def ratios(self) -> list[float]:
        return [m / b for b, m in zip(self.baseline_us, self.measured_us, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# -- timing -------------------------------------------------------------------------


def _time_sync(client: httpx.Client, count: int) -> float:
    """Microseconds per request for ``count`` sequential GETs (GC paused)."""
    get = client.get
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(count):
            get(URL)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / count / 1000


async def _time_async(client: httpx.AsyncClient, count: int) -> float:
    get = client.get
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(count):
            await get(URL)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / count / 1000


def _interleave(
    time_a: Callable[[], float],
    time_b: Callable[[], float],
    rounds: int,
    out_a: list[float],
    out_b: list[float],
) -> None:
    for index in range(rounds):
        if index % 2 == 0:
            out_a.append(time_a())
            out_b.append(time_b())
        else:
            out_b.append(time_b())
            out_a.append(time_a())


def bench_sync(args: argparse.Namespace, checks: list[str]) -> Result:
    """Interleaved A/B on sync clients."""
    api = Api()
    refresher = Refresher()
    auth = make_auth(refresher)
    baseline = httpx.Client(transport=httpx.MockTransport(api), headers={"Authorization": HEADER})
    measured = httpx.Client(transport=httpx.MockTransport(api), auth=auth)
    result = Result("sync httpx.Client", [], [], [])
    with baseline, measured:
        _time_sync(baseline, args.warmup)
        _time_sync(measured, args.warmup)
        for _ in range(args.repeats):
            start = len(result.baseline_us)
            _interleave(
                lambda: _time_sync(baseline, args.requests),
                lambda: _time_sync(measured, args.requests),
                args.rounds,
                result.baseline_us,
                result.measured_us,
            )
            result.repeat_ratios.append(statistics.median(result.ratios[start:]))
    _check(checks, result.flavour, api, refresher, auth)
    return result


def bench_async(args: argparse.Namespace, backend: str, checks: list[str]) -> Result:
    """Interleaved A/B on async clients, in one event loop of ``backend``."""
    api = Api()
    refresher = Refresher()
    auth = make_auth(refresher)
    result = Result(f"async httpx.AsyncClient ({backend})", [], [], [])

    async def main() -> None:
        baseline = httpx.AsyncClient(
            transport=httpx.MockTransport(api), headers={"Authorization": HEADER}
        )
        measured = httpx.AsyncClient(transport=httpx.MockTransport(api), auth=auth)
        async with baseline, measured:
            await _time_async(baseline, args.warmup)
            await _time_async(measured, args.warmup)
            for _ in range(args.repeats):
                start = len(result.baseline_us)
                for index in range(args.rounds):
                    pair: list[Callable[[], Awaitable[float]]] = [
                        lambda: _time_async(baseline, args.requests),
                        lambda: _time_async(measured, args.requests),
                    ]
                    first, second = pair if index % 2 == 0 else pair[::-1]
                    a = await first()
                    b = await second()
                    baseline_us, measured_us = (a, b) if index % 2 == 0 else (b, a)
                    result.baseline_us.append(baseline_us)
                    result.measured_us.append(measured_us)
                result.repeat_ratios.append(statistics.median(result.ratios[start:]))

    anyio.run(main, backend=backend)
    _check(checks, result.flavour, api, refresher, auth)
    return result


def _check(
    checks: list[str], flavour: str, api: Api, refresher: Refresher, auth: hr.RefreshAuth
) -> None:
    if api.mismatches:
        checks.append(f"{flavour}: {api.mismatches} requests arrived without the expected header")
    if refresher.calls:
        checks.append(f"{flavour}: the refresher ran {refresher.calls} times on the fresh path")
    if auth.expires_at is None or auth.expires_at < time.time() + 3_600:
        checks.append(f"{flavour}: the token's expiry is not known and far, R2 did not run")
    stats = auth.stats
    if stats.refreshes or stats.replays or stats.failures:
        checks.append(f"{flavour}: unexpected activity on the fresh path: {stats}")


# -- the auth flow alone (diagnosis) ------------------------------------------------


def flow_alone(count: int, rounds: int) -> tuple[float, float]:
    """Median microseconds per request of driving each auth flow by hand (no client)."""
    auth = make_auth(Refresher())
    noop = httpx.Auth()
    request = httpx.Request("GET", URL)
    response = httpx.Response(200, request=request)

    def drive(flow_of: Callable[[httpx.Request], Any]) -> float:
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for _ in range(count):
                flow = flow_of(request)
                next(flow)
                try:
                    flow.send(response)
                except StopIteration:
                    continue
            elapsed = time.perf_counter_ns() - start
        finally:
            gc.enable()
        return elapsed / count / 1000

    drive(noop.sync_auth_flow)
    drive(auth.sync_auth_flow)
    base: list[float] = []
    measured: list[float] = []
    _interleave(
        lambda: drive(noop.sync_auth_flow),
        lambda: drive(auth.sync_auth_flow),
        rounds,
        base,
        measured,
    )
    return statistics.median(base), statistics.median(measured)


def profile_measured(count: int) -> str:
    """cProfile the measured sync variant; return the top httpx_refresh entries."""
    auth = make_auth(Refresher())
    client = httpx.Client(transport=httpx.MockTransport(Api()), auth=auth)
    with client:
        for _ in range(200):
            client.get(URL)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            client.get(URL)
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats("httpx_refresh|_models.py.*(__setitem__)", 25)
    return out.getvalue()


# -- main -----------------------------------------------------------------------------


def _table(results: list[Result]) -> str:
    lines = [
        "| client | baseline µs/req | RefreshAuth µs/req | ratio (median of rounds) "
        "| rounds p10-p90 | repeat medians | target <= 1.05 |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for result in results:
        ratios = result.ratios
        repeats = ", ".join(f"{value:.3f}" for value in result.repeat_ratios)
        met = "yes" if result.ratio <= TARGET else "**NO**"
        lines.append(
            f"| {result.flavour} | {statistics.median(result.baseline_us):.1f} "
            f"| {statistics.median(result.measured_us):.1f} | {result.ratio:.3f} "
            f"| {_percentile(ratios, 0.1):.3f}-{_percentile(ratios, 0.9):.3f} "
            f"| {repeats} | {met} |"
        )
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0: every ratio met the target)."""
    parser = argparse.ArgumentParser(
        description=(
            "Per-request client-side cost of RefreshAuth with a fresh token vs a static "
            "Authorization header, through httpx.MockTransport (DESIGN target: <= 1.05x)."
        )
    )
    parser.add_argument("--rounds", type=_positive, default=20, help="A/B rounds per repeat")
    parser.add_argument(
        "--requests", type=_positive, default=200, help="requests per variant per round"
    )
    parser.add_argument(
        "--repeats", type=_positive, default=3, help="independent repeats (run-to-run spread)"
    )
    parser.add_argument("--warmup", type=_positive, default=500, help="warm-up requests")
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio", "both", "none"),
        default="both",
        help="event loop(s) for the async variant (default: both)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="always print a cProfile summary of the RefreshAuth variant",
    )
    args = parser.parse_args(argv)

    checks: list[str] = []
    results = [bench_sync(args, checks)]
    backends = {"both": ("asyncio", "trio"), "none": ()}.get(args.backend, (args.backend,))
    for backend in backends:
        results.append(bench_async(args, backend, checks))

    per_round = args.requests
    print("## Fresh-token path: RefreshAuth vs a static Authorization header (target <= 1.05x)\n")
    print(_table(results))
    print(
        f"\n{args.repeats} repeats x {args.rounds} interleaved rounds x {per_round} sequential "
        f"requests per variant, after {args.warmup} warm-up requests; GC paused while timing."
    )
    noop_us, auth_us = flow_alone(2_000, 10)
    print(
        f"\nAuth flow alone (no client, driven by hand): httpx.Auth no-op {noop_us:.2f} µs, "
        f"RefreshAuth {auth_us:.2f} µs, difference {auth_us - noop_us:.2f} µs per request."
    )
    missed = [result for result in results if result.ratio > TARGET]
    if missed or args.profile:
        print("\n### cProfile of the RefreshAuth variant (sync, 3,000 requests)\n")
        print("```\n" + profile_measured(3_000).strip() + "\n```")
    for problem in checks:
        print(f"\nCHECK FAILED: {problem}")
    for result in missed:
        print(f"\nMISSED: {result.flavour}: ratio {result.ratio:.3f} > {TARGET}")
    return 1 if missed or checks else 0


if __name__ == "__main__":
    sys.exit(main())
