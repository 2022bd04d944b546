"""Memory per idle ``RefreshAuth``, measured with tracemalloc.

DESIGN "Targets": memory per idle ``RefreshAuth``: <= 4 KiB.

Method: with tracemalloc on, build N small credentials dicts (the baseline: what the
application holds anyway), then N ``RefreshAuth`` objects over them sharing one
refresher, and divide the growth of traced memory by N. Everything measured is kept
alive, and the list that holds the objects is allocated before the baseline, so only
the objects themselves count. One ``RefreshAuth`` is built and used before measuring,
so one-time costs (imports, caches) are not charged to the N objects.

Rows:

- ``new``: each auth just constructed (target applies);
- ``after one request``: each of the same auths has then served one request on the
  fresh-token path through a shared ``httpx.Client`` over ``httpx.MockTransport``,
  and is idle again (target applies: whatever it keeps after use is idle memory too);
- ``new, own OAuth2Refresh``: each auth with its own ``OAuth2Refresh`` refresher,
  informational (the refresher is not part of the auth).

Then the biggest contributors, in bytes per auth, of the ``new`` row and of what one
request adds, by the httpx_refresh source line that caused each allocation (the
innermost frame inside httpx_refresh; "outside httpx_refresh" when there is none, e.g.
the instance and its ``__dict__`` allocated by the constructor call itself). These
come from a second pass with full tracebacks over ``--sample`` objects (slower).

Exits 1 if a targeted row is above 4 KiB per auth.

Run: ``python benchmarks/memory.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import gc
import linecache
import sys
import tracemalloc
from collections import defaultdict
from typing import Any

import httpx

import httpx_refresh as hr

TARGET_BYTES = 4 * 1024
URL = "https://api.example.test/resource"
PACKAGE_MARK = "httpx_refresh"


def credentials(index: int) -> dict[str, Any]:
    """Small, realistic-shaped credentials (distinct strings per connection)."""
    return {
        "access_token": f"at-{index:08d}",
        "refresh_token": f"rt-{index:08d}",
        "expires_in": 3600,
    }


def refresher(**_: Any) -> dict[str, Any]:
    """A shared refresher; never called here."""
    raise AssertionError("the refresher must not run in this benchmark")


def api(request: httpx.Request) -> httpx.Response:
    """The mock API: 200 for any request that carries a bearer token."""
    ok = request.headers.get("authorization", "").startswith("Bearer at-")
    return httpx.Response(200 if ok else 400)


def traced() -> int:
    """Currently traced bytes after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def contributors(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, count: int, top: int
) -> list[tuple[str, str, float]]:
    """Group the growth by the innermost httpx_refresh frame; return (where, what, bytes/auth)."""
    grouped: dict[tuple[str, str], int] = defaultdict(int)
    for stat in after.compare_to(before, "traceback"):
        if stat.size_diff <= 0:
            continue
        frames = list(stat.traceback)  # oldest first
        innermost = frames[-1]
        ours = next((f for f in reversed(frames) if PACKAGE_MARK in f.filename), None)
        if ours is None:
            where = "outside httpx_refresh"
            source = (
                f"{_short(innermost.filename)}:{innermost.lineno}: "
                + linecache.getline(innermost.filename, innermost.lineno).strip()
            )
        else:
            where = f"{_short(ours.filename)}:{ours.lineno}"
            source = linecache.getline(ours.filename, ours.lineno).strip()
            if ours is not innermost:
                source += f"  [allocated in {_short(innermost.filename)}:{innermost.lineno}]"
        grouped[(where, source)] += stat.size_diff
    ranked = sorted(grouped.items(), key=lambda item: item[1], reverse=True)
    return [(where, what, size / count) for (where, what), size in ranked[:top] if size >= count]


def _short(filename: str) -> str:
    parts = filename.replace("\\", "/").split("/")
    if PACKAGE_MARK in parts:
        return "/".join(parts[parts.index(PACKAGE_MARK) :])
    return "/".join(parts[-2:])


def take() -> tracemalloc.Snapshot:
    """A tracemalloc snapshot after a full collection."""
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )


def use_all(client: httpx.Client, auths: list[Any]) -> None:
    """Send one request through each auth (fresh-token path); drop the responses."""
    for auth in auths:
        status = client.get(URL, auth=auth).status_code
        if status != 200:
            raise SystemExit(f"the mock API rejected a request ({status})")


def print_contributors(title: str, rows: list[tuple[str, str, float]]) -> None:
    """Print one contributors table."""
    print(f"\n### {title}, bytes per auth\n")
    print("| bytes | where (innermost httpx_refresh line) | source |")
    print("|---:|---|---|")
    for where, what, size in rows:
        print(f"| {size:,.0f} | {where} | `{what.replace('|', '/')}` |")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0: every targeted row met the target)."""
    parser = argparse.ArgumentParser(
        description=(
            "Memory per idle RefreshAuth with small credentials, by tracemalloc, net of the "
            "credentials dicts themselves (DESIGN target: <= 4 KiB)."
        )
    )
    parser.add_argument("-n", type=int, default=10_000, help="objects to create (default 10000)")
    parser.add_argument("--top", type=int, default=12, help="contributors to list (default 12)")
    parser.add_argument(
        "--sample",
        type=int,
        default=1_000,
        help="objects traced with full tracebacks for the contributors (default 1000)",
    )
    args = parser.parse_args(argv)
    n = args.n
    if n < 1 or args.sample < 1:
        parser.error("-n and --sample must be >= 1")

    client = httpx.Client(transport=httpx.MockTransport(api))
    # Warm up: imports, lazy attributes and caches are paid once, before measuring.
    warm = hr.RefreshAuth(credentials(-1), refresher)
    client.get(URL, auth=warm)
    hr.RefreshAuth(credentials(-2), hr.OAuth2Refresh(URL, client_id="c", client_secret="s"))
    del warm

    # Pass 1, totals: one frame per trace (fast), N objects.
    tracemalloc.start(1)
    dicts: list[Any] = [None] * n
    auths: list[Any] = [None] * n
    start = traced()
    for i in range(n):
        dicts[i] = credentials(i)
    with_dicts = traced()
    for i in range(n):
        auths[i] = hr.RefreshAuth(dicts[i], refresher)
    with_auths = traced()
    use_all(client, auths)
    after_use = traced()
    auths = [None] * n
    own_base = traced()
    for i in range(n):
        grant = hr.OAuth2Refresh(URL, client_id=f"client-{i}", client_secret=f"secret-{i:08d}")
        auths[i] = hr.RefreshAuth(dicts[i], grant)
    with_own = traced()
    tracemalloc.stop()
    del auths

    # Pass 2, contributors: full tracebacks (slow), fewer objects.
    m = min(n, args.sample)
    tracemalloc.start(25)
    sample: list[Any] = [None] * m
    snapshot_0 = take()
    for i in range(m):
        sample[i] = hr.RefreshAuth(dicts[i], refresher)
    snapshot_1 = take()
    use_all(client, sample)
    snapshot_2 = take()
    tracemalloc.stop()
    top_new = contributors(snapshot_0, snapshot_1, m, args.top)
    top_use = contributors(snapshot_1, snapshot_2, m, args.top)
    del snapshot_0, snapshot_1, snapshot_2, sample
    client.close()

    dict_bytes = (with_dicts - start) / n
    rows = [
        ("new", (with_auths - with_dicts) / n, True),
        ("after one request", (after_use - with_dicts) / n, True),
        ("new, own OAuth2Refresh (informational)", (with_own - own_base) / n, False),
    ]
    print("## Memory per idle RefreshAuth (target <= 4 KiB)\n")
    print("| RefreshAuth | bytes per auth | KiB per auth | target <= 4 KiB |")
    print("|---|---:|---:|---|")
    for label, size, targeted in rows:
        met = ("yes" if size <= TARGET_BYTES else "**NO**") if targeted else "n/a"
        print(f"| {label} | {size:,.0f} | {size / 1024:.2f} | {met} |")
    print(
        f"\nN = {n:,}; baseline: the credentials dicts alone, {dict_bytes:,.0f} bytes each "
        "(3 keys, short strings), not counted above. Shared refresher unless noted."
    )
    print_contributors(f"Biggest contributors of row 'new' (sample of {m:,})", top_new)
    print_contributors(
        f"What one request adds (row 'after one request' minus 'new', sample of {m:,})", top_use
    )
    missed = [label for label, size, targeted in rows if targeted and size > TARGET_BYTES]
    for label in missed:
        print(f"\nMISSED: {label}: above {TARGET_BYTES} bytes per RefreshAuth")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
