"""An async script: machine-to-machine calls with the client-credentials grant.

The script starts with no token at all. ``ClientCredentialsRefresh`` fetches one before the
first request (RFC 6749 section 4.4) and a new one whenever it is about to expire; however many
requests are waiting at that moment, the token endpoint sees one call.

Run the provider in one terminal and this script in another::

    httpx-refresh demo --serve
    python examples/async_script.py

Exit status 0 when every request succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import httpx

import httpx_refresh as hr

# The defaults of `httpx-refresh demo --serve`.
DEFAULT_URL = "http://127.0.0.1:8765"
DEFAULT_CLIENT_ID = "demo-client"
DEFAULT_CLIENT_SECRET = "demo+secret:42%"


async def fetch(client: httpx.AsyncClient) -> str:
    """GET one resource; return ``"ok"`` or what went wrong."""
    try:
        response = await client.get("/api/items")
    except (httpx.HTTPError, hr.HttpxRefreshError) as exc:
        return type(exc).__name__
    return "ok" if response.status_code == 200 else f"HTTP {response.status_code}"


async def run(args: argparse.Namespace) -> int:
    """Send rounds of concurrent requests for ``args.seconds``; return the exit status."""
    url = args.url.rstrip("/")
    auth = hr.RefreshAuth(
        {},  # no token yet: the first request fetches one
        hr.ClientCredentialsRefresh(
            f"{url}/token",
            client_id=args.client_id,
            client_secret=args.client_secret,
            client_auth="body",
        ),
    )
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=30) as client:
        while time.perf_counter() - started < args.seconds:
            results = await asyncio.gather(*(fetch(client) for _ in range(args.concurrency)))
            outcomes.update(results)
            await asyncio.sleep(args.pause)
    elapsed = time.perf_counter() - started
    stats = auth.stats
    failed = sum(n for outcome, n in outcomes.items() if outcome != "ok")
    print(
        f"{sum(outcomes.values())} requests ({args.concurrency} at a time) in {elapsed:.1f} s: "
        f"{outcomes['ok']} ok, {failed} failed"
        + "".join(f" ({outcome} x{n})" for outcome, n in outcomes.items() if outcome != "ok")
    )
    print(
        f"refreshes: {stats.refreshes}, deduplicated waiters: {stats.deduplicated}, "
        f"replays: {stats.replays} ({stats.rejected_replays} rejected again)"
    )
    return 0 if failed == 0 and outcomes["ok"] > 0 else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the script under asyncio; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"provider (default {DEFAULT_URL})")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--concurrency", type=int, default=50, help="requests per round")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to run")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between rounds")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
