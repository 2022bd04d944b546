"""A sync app: 16 threads share one httpx.Client whose credentials refresh themselves.

The app keeps its OAuth 2.0 credentials in a JSON file. At start it loads them (or, the first
time, gets a grant from the demo provider's ``/dev/connect``, as if the user had just connected
the app). ``RefreshAuth`` refreshes the access token once for all 16 threads whenever it is
about to expire or is rejected, and its ``on_refresh`` hook writes the merged credentials to the
file before the waiting requests go on, so the rotated refresh token survives a crash or a
restart: run the script twice and the second run carries on with the saved grant.

Run the provider in one terminal and this script in another::

    httpx-refresh demo --serve
    python examples/sync_threads.py

Exit status 0 when every request succeeded and the file holds the current credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

import httpx_refresh as hr

# The defaults of `httpx-refresh demo --serve`.
DEFAULT_URL = "http://127.0.0.1:8765"
DEFAULT_CLIENT_ID = "demo-client"
DEFAULT_CLIENT_SECRET = "demo+secret:42%"
DEFAULT_STORE = Path(tempfile.gettempdir()) / "httpx-refresh-sync-threads.json"


def load_credentials(path: Path) -> dict[str, Any] | None:
    """Return the saved credentials, or ``None`` if there are none yet."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def save_credentials(path: Path, credentials: dict[str, Any]) -> None:
    """Write ``credentials`` atomically (a reader never sees half a file), readable by us only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(credentials, file)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def connect(url: str, client_id: str, client_secret: str) -> dict[str, Any]:
    """Get a new grant, as if the user had just connected the app (demo provider only)."""
    try:
        response = httpx.post(
            f"{url}/dev/connect",
            data={"client_id": client_id, "client_secret": client_secret},
            timeout=10,
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise SystemExit(
            f"could not connect at {url}/dev/connect ({type(exc).__name__}); "
            "is `httpx-refresh demo --serve` running, with this client id and secret?"
        ) from None
    return dict(response.json())


def main(argv: list[str] | None = None) -> int:
    """Run the app; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"provider (default {DEFAULT_URL})")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE,
        help=f"JSON file holding the credentials (default {DEFAULT_STORE})",
    )
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20, help="requests per thread")
    parser.add_argument("--pause", type=float, default=0.15, help="seconds between requests")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")

    credentials = load_credentials(args.store)
    if credentials is None:
        credentials = connect(url, args.client_id, args.client_secret)
        save_credentials(args.store, credentials)
        print(f"connected: new grant saved to {args.store}")
    else:
        print(f"loaded the saved grant from {args.store}")

    saves = 0
    saves_lock = threading.Lock()

    def persist(merged: dict[str, Any]) -> None:
        # on_refresh: runs once per refresh, before the requests waiting for it go on.
        nonlocal saves
        save_credentials(args.store, merged)
        with saves_lock:
            saves += 1

    auth = hr.RefreshAuth(
        credentials,
        hr.OAuth2Refresh(
            f"{url}/token", client_id=args.client_id, client_secret=args.client_secret
        ),
        on_refresh=persist,
    )
    limits = httpx.Limits(max_connections=args.threads, max_keepalive_connections=args.threads)
    outcomes: Counter[str] = Counter()
    outcomes_lock = threading.Lock()

    with httpx.Client(base_url=url, auth=auth, limits=limits, timeout=30) as client:
        try:
            client.get("/api/items").raise_for_status()
        except hr.ReauthorizationRequired:
            # The saved grant is dead (e.g. the provider restarted): the user reconnects.
            print("the saved grant was rejected: reconnecting")
            auth.update_credentials(connect(url, args.client_id, args.client_secret))
            save_credentials(args.store, dict(auth.credentials))

        def work(_: int) -> None:
            for _ in range(args.requests):
                try:
                    response = client.get("/api/items")
                    outcome = (
                        "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
                    )
                except (httpx.HTTPError, hr.HttpxRefreshError) as exc:
                    outcome = type(exc).__name__
                with outcomes_lock:
                    outcomes[outcome] += 1
                time.sleep(args.pause)

        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(work, range(args.threads)))
        elapsed = time.perf_counter() - started

    stats = auth.stats
    saved = load_credentials(args.store) or {}
    in_sync = saved.get("refresh_token") == auth.credentials.get("refresh_token")
    failed = sum(n for outcome, n in outcomes.items() if outcome != "ok")
    print(
        f"{args.threads} threads x {args.requests} requests in {elapsed:.1f} s: "
        f"{outcomes['ok']} ok, {failed} failed"
        + "".join(f" ({outcome} x{n})" for outcome, n in outcomes.items() if outcome != "ok")
    )
    print(
        f"refreshes: {stats.refreshes}, replays: {stats.replays} "
        f"({stats.rejected_replays} rejected again), deduplicated waiters: {stats.deduplicated}, "
        f"credentials version: {auth.version}"
    )
    print(
        f"saved {saves} time(s) to {args.store}; the file holds the current refresh token: "
        f"{'yes' if in_sync else 'NO'}"
    )
    return 0 if failed == 0 and in_sync else 1


if __name__ == "__main__":
    raise SystemExit(main())
