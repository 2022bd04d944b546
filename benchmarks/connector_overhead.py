"""Per-request client-side cost of a connector-spec connection on the fresh-token path.

The same method as ``overhead.py`` (interleaved A/B rounds over ``httpx.MockTransport``,
GC paused, median of per-round ratios), with a connector whose ``makeApiClient`` puts
``Authorization: Bearer <access_token>`` on each request:

- baseline: ``httpx.Client`` with that header as a static client header, no auth;
- ``connection.auth``: ``httpx.Client(auth=connection.auth)`` (the spec's applier,
  evaluated once per credentials version, plus the per-request origin check);
- ``connection.client()``: the connection's own client, which also wraps the transport
  for 429 retries and installs the redirect guard.

Both measured rows must deliver the expected header on every request (checked), and the
refresher must never run. The DESIGN target (<= 1.05x) is stated for ``RefreshAuth``; the
table shows where a connection stands against it. Exits 1 if a check fails (not on a ratio).

Run: ``python benchmarks/connector_overhead.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

import httpx
from overhead import HEADER, TARGET, TOKEN, Api, _interleave, _percentile, _positive, _time_sync

import httpx_refresh as hr

SPEC = """
name: Benchmark
auth:
  type: oauth2
  getOAuthConfig:
    type: mapping
    mapping:
      clientId: benchmark
      tokenUri: https://auth.example.test/token
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.example.test
      headers:
        Authorization: {$concat: ["Bearer ", {$var: credentials.access_token}]}
"""


def bench(args: argparse.Namespace, checks: list[str]) -> list[tuple[str, list[float]]]:
    """Interleaved rounds: baseline vs each connection variant; return per-round µs."""
    with tempfile.TemporaryDirectory() as directory:
        spec = Path(directory) / "spec.yml"
        spec.write_text(textwrap.dedent(SPEC), encoding="utf-8")
        connector = hr.load_connector(spec)
    connection = connector.connect(
        credentials={"access_token": TOKEN, "refresh_token": "r", "expires_in": 86_400}
    )
    api = Api()
    baseline = httpx.Client(transport=httpx.MockTransport(api), headers={"Authorization": HEADER})
    with_auth = httpx.Client(transport=httpx.MockTransport(api), auth=connection.auth)
    full = connection.client(transport=httpx.MockTransport(api))
    rows: list[tuple[str, list[float]]] = [
        ("static header (baseline)", []),
        ("httpx.Client(auth=connection.auth)", []),
        ("connection.client()", []),
    ]
    with baseline, with_auth, full:
        for client in (baseline, with_auth, full):
            _time_sync(client, args.warmup)
        for _ in range(args.repeats):
            _interleave(
                lambda: _time_sync(baseline, args.requests),
                lambda: _time_sync(with_auth, args.requests),
                args.rounds,
                rows[0][1],
                rows[1][1],
            )
            extra: list[float] = []
            _interleave(
                lambda: _time_sync(baseline, args.requests),
                lambda: _time_sync(full, args.requests),
                args.rounds,
                extra,
                rows[2][1],
            )
            rows[0][1].extend(extra)
    if api.mismatches:
        checks.append(f"{api.mismatches} requests arrived without the expected header")
    stats = connection.auth.stats
    if stats.refreshes or stats.replays or stats.failures:
        checks.append(f"unexpected activity on the fresh path: {stats}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 1 if a check failed, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=_positive, default=20, help="A/B rounds per repeat")
    parser.add_argument(
        "--requests", type=_positive, default=200, help="requests per variant per round"
    )
    parser.add_argument("--repeats", type=_positive, default=3, help="independent repeats")
    parser.add_argument("--warmup", type=_positive, default=500, help="warm-up requests")
    args = parser.parse_args(argv)
    checks: list[str] = []
    rows = bench(args, checks)
    base = rows[0][1]
    half = len(base) // 2
    # Each measured row was interleaved with its own half of the baseline rounds.
    pairs = {rows[1][0]: base[:half], rows[2][0]: base[half:]}
    print("## Fresh-token path through a connector connection (sync, MockTransport)\n")
    print("| client | baseline µs/req | measured µs/req | ratio (median of rounds) | p10-p90 |")
    print("|---|---:|---:|---:|---|")
    for name, measured in rows[1:]:
        baseline = pairs[name]
        ratios = [m / b for b, m in zip(baseline, measured, strict=True)]
        print(
            f"| {name} | {statistics.median(baseline):.1f} | {statistics.median(measured):.1f} "
            f"| {statistics.median(ratios):.3f} "
            f"| {_percentile(ratios, 0.1):.3f}-{_percentile(ratios, 0.9):.3f} |"
        )
    print(
        f"\n{args.repeats} repeats x {args.rounds} rounds x {args.requests} requests per "
        f"variant; the RefreshAuth target is <= {TARGET}x."
    )
    for problem in checks:
        print(f"\nCHECK FAILED: {problem}")
    return 1 if checks else 0


if __name__ == "__main__":
    sys.exit(main())
