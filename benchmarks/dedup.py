"""Single-flight under a 401 storm: refresher calls for N concurrent rejected requests.

DESIGN "Targets": refresher calls for N concurrent rejected requests, N = 10 ... 10,000:
exactly 1 (rule R5).

The API is an ``httpx.MockTransport`` that answers 401 to the old access token and 200
to the new one. Its handler for the old token holds every request until all N have
arrived (bounded by ``--timeout``), so all N are really in flight with the old token
before the first 401 comes back. The refresher (async for the task variant, sync for
the thread variant) takes ``--refresh-latency`` seconds, like a token endpoint.

Variants: N async tasks sharing one ``httpx.AsyncClient`` (asyncio, optionally trio),
and N threads sharing one ``httpx.Client``.

Prints a Markdown table and exits 1 if any run misses the target (refresher calls != 1)
or is inconsistent (a request that did not end in 200, replays != N, deduplicated !=
N - 1, a barrier that timed out).

Run: ``python benchmarks/dedup.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import functools
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

import httpx_refresh as hr

OLD = "old-token"
NEW = "new-token"
URL = "https://api.example.test/resource"


@dataclass
class Row:
    """The figures of one run."""

    mode: str
    n: int
    refresher_calls: int
    refreshes: int
    replays: int
    deduplicated: int
    failures: int
    ok_responses: int
    old_arrivals: int
    new_arrivals: int
    errors: list[str]
    wall_s: float
    after_401_s: float

    @property
    def problems(self) -> list[str]:
        """Why this run misses the target or is inconsistent (empty if it is fine)."""
        n = self.n
        found = []
        if self.refresher_calls != 1:
            found.append(f"refresher ran {self.refresher_calls} times (target exactly 1)")
        checks = (
            ("stats.refreshes", self.refreshes, 1),
            ("stats.replays", self.replays, n),
            ("stats.deduplicated", self.deduplicated, n - 1),
            ("stats.failures", self.failures, 0),
            ("responses 200", self.ok_responses, n),
            ("API requests with the old token", self.old_arrivals, n),
            ("API requests with the new token", self.new_arrivals, n),
        )
        for name, got, want in checks:
            if got != want:
                found.append(f"{name} = {got}, expected {want}")
        if self.errors:
            kinds = sorted(set(self.errors))
            found.append(f"{len(self.errors)} request errors: {', '.join(kinds[:3])}")
        return found


def _error_name(exc: BaseException) -> str:
    return type(exc).__name__


# -- async tasks on one AsyncClient --------------------------------------------------


async def run_tasks(n: int, latency: float, arrival_limit: float, mode: str) -> Row:
    """Send ``n`` concurrent GETs with an expired-by-rejection token through one AsyncClient."""
    old_arrivals = 0
    new_arrivals = 0
    refresher_calls = 0
    all_in = anyio.Event()
    released_at = 0.0

    async def api(request: httpx.Request) -> httpx.Response:
        nonlocal old_arrivals, new_arrivals, released_at
        authorization = request.headers.get("authorization")
        if authorization == f"Bearer {NEW}":
            new_arrivals += 1
            return httpx.Response(200)
        if authorization == f"Bearer {OLD}":
            old_arrivals += 1
            if old_arrivals == n:
                released_at = time.perf_counter()
                all_in.set()
            # Hold the 401 until every request is in flight (bounded).
            with anyio.fail_after(arrival_limit):
                await all_in.wait()
            return httpx.Response(401)
        return httpx.Response(400)

    async def refresher(**_: Any) -> dict[str, Any]:
        nonlocal refresher_calls
        refresher_calls += 1
        await anyio.sleep(latency)
        return {"access_token": NEW}

    auth = hr.RefreshAuth({"access_token": OLD, "refresh_token": "r"}, refresher)
    ok = 0
    errors: list[str] = []

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal ok
        try:
            response = await client.get(URL)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(_error_name(exc))
            return
        if response.status_code == 200:
            ok += 1
        else:
            errors.append(f"HTTP {response.status_code}")

    transport = httpx.MockTransport(api)
    async with httpx.AsyncClient(transport=transport, auth=auth) as client:
        started = time.perf_counter()
        with anyio.fail_after(arrival_limit * 2 + latency + 30):
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(one, client)
        finished = time.perf_counter()
    stats = auth.stats
    return Row(
        mode=mode,
        n=n,
        refresher_calls=refresher_calls,
        refreshes=stats.refreshes,
        replays=stats.replays,
        deduplicated=stats.deduplicated,
        failures=stats.failures,
        ok_responses=ok,
        old_arrivals=old_arrivals,
        new_arrivals=new_arrivals,
        errors=errors,
        wall_s=finished - started,
        after_401_s=finished - released_at if released_at else float("nan"),
    )


# -- threads on one sync Client -------------------------------------------------------


def run_threads(n: int, latency: float, timeout: float) -> Row:
    """Send ``n`` concurrent GETs from ``n`` threads sharing one sync Client."""
    lock = threading.Lock()
    counts = {"old": 0, "new": 0, "calls": 0, "ok": 0}
    errors: list[str] = []
    all_in = threading.Event()
    released: list[float] = []

    def api(request: httpx.Request) -> httpx.Response:
        authorization = request.headers.get("authorization")
        if authorization == f"Bearer {NEW}":
            with lock:
                counts["new"] += 1
            return httpx.Response(200)
        if authorization == f"Bearer {OLD}":
            with lock:
                counts["old"] += 1
                if counts["old"] == n:
                    released.append(time.perf_counter())
                    all_in.set()
            # Hold the 401 until every request is in flight (bounded).
            if not all_in.wait(timeout):
                raise TimeoutError(f"only {counts['old']} of {n} requests arrived")
            return httpx.Response(401)
        return httpx.Response(400)

    def refresher(**_: Any) -> dict[str, Any]:
        with lock:
            counts["calls"] += 1
        time.sleep(latency)
        return {"access_token": NEW}

    auth = hr.RefreshAuth({"access_token": OLD, "refresh_token": "r"}, refresher)

    def one(client: httpx.Client) -> None:
        try:
            response = client.get(URL)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            with lock:
                errors.append(_error_name(exc))
            return
        with lock:
            if response.status_code == 200:
                counts["ok"] += 1
            else:
                errors.append(f"HTTP {response.status_code}")

    with httpx.Client(transport=httpx.MockTransport(api), auth=auth) as client:
        threads = [threading.Thread(target=one, args=(client,), daemon=True) for _ in range(n)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout * 2 + latency + 30
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        finished = time.perf_counter()
        stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        errors.extend(["thread still blocked"] * stuck)
    stats = auth.stats
    return Row(
        mode="threads, sync Client",
        n=n,
        refresher_calls=counts["calls"],
        refreshes=stats.refreshes,
        replays=stats.replays,
        deduplicated=stats.deduplicated,
        failures=stats.failures,
        ok_responses=counts["ok"],
        old_arrivals=counts["old"],
        new_arrivals=counts["new"],
        errors=errors,
        wall_s=finished - started,
        after_401_s=finished - released[0] if released else float("nan"),
    )


# -- main ------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


def _table(rows: list[Row]) -> str:
    head = (
        "| variant | N | refresher calls | replays | deduplicated | failures | 200s "
        "| wall ms | after 401s ms | target met |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        met = "yes" if not row.problems else "**NO**"
        lines.append(
            f"| {row.mode} | {row.n:,} | {row.refresher_calls} | {row.replays:,} "
            f"| {row.deduplicated:,} | {row.failures} | {row.ok_responses:,} "
            f"| {row.wall_s * 1000:,.0f} | {row.after_401_s * 1000:,.0f} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0: every run met the target)."""
    parser = argparse.ArgumentParser(
        description=(
            "Refresher calls for N concurrent requests that all get 401 "
            "(DESIGN target: exactly 1). Async tasks on one AsyncClient and threads on "
            "one sync Client, through httpx.MockTransport."
        )
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[10, 100, 1_000, 10_000],
        help="N for the async-task variant (default: 10,100,1000,10000)",
    )
    parser.add_argument(
        "--thread-sizes",
        type=_sizes,
        default=[10, 100, 200],
        help="N for the thread variant (default: 10,100,200)",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio", "both"),
        default="both",
        help="event loop(s) for the async-task variant (default: both)",
    )
    parser.add_argument(
        "--refresh-latency",
        type=float,
        default=0.02,
        metavar="SECONDS",
        help="how long the refresher takes, like a token round trip (default: 0.02)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long the API waits for all N requests to arrive (default: 30)",
    )
    args = parser.parse_args(argv)

    backends = ("asyncio", "trio") if args.backend == "both" else (args.backend,)
    rows: list[Row] = []
    for backend in backends:
        for n in args.sizes:
            mode = f"tasks, AsyncClient ({backend})"
            run = functools.partial(run_tasks, n, args.refresh_latency, args.timeout, mode)
            rows.append(anyio.run(run, backend=backend))
    for n in args.thread_sizes:
        rows.append(run_threads(n, args.refresh_latency, args.timeout))

    print("## Single-flight: refresher calls for N concurrent 401s (target: exactly 1)\n")
    print(_table(rows))
    print(
        f"\nrefresher latency {args.refresh_latency * 1000:g} ms; every request was held "
        "at the API until all N had arrived with the old token. 'after 401s' = from the "
        "moment all N were in flight to the last response."
    )
    failed = [row for row in rows if row.problems]
    for row in failed:
        print(f"\nMISSED: {row.mode}, N={row.n}: " + "; ".join(row.problems))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
