"""``os.fork()`` while another thread refreshes (DESIGN R16).

The parent starts a refresh in a thread and holds its refresher on an event; then it
forks. The refresh exists only in the parent: the child must not wait for it (the old
behaviour: ``refresh_timeout`` times the attempts, 110 s, then an error) but refresh at
once, or adopt the newer credentials its store holds. Afterwards the parent's own
refresh completes normally.

The child runs plain code with an ``httpx.MockTransport`` (the parent's threads, servers
included, do not exist in it), reports over a pipe as JSON and leaves with ``os._exit``.
Tokens are compared into booleans in the child; no token value is reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

import httpx_refresh as hr

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()"),
    # Forking while threads run is what these tests are about; Python 3.12+ warns about it.
    pytest.mark.filterwarnings(
        "ignore:This process .* is multi-threaded, use of fork\\(\\) may lead to deadlocks"
        ":DeprecationWarning"
    ),
]

CHILD_BOUND = 10.0  # s the parent waits for the child's report (the old code: 110 s)
PARENT_TOKEN = "parent-token-after-refresh"
CHILD_TOKEN = "child-token-after-refresh"


class Refresher:
    """Counts calls per process; in the parent, holds each call until ``release``."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def _result(self) -> dict[str, Any]:
        self.calls += 1
        token = PARENT_TOKEN if os.getpid() == self.parent else CHILD_TOKEN
        return {"access_token": token, "expires_in": 3600}

    def __call__(self, **_: Any) -> dict[str, Any]:
        if os.getpid() == self.parent:
            self.started.set()
            self.release.wait(CHILD_BOUND * 2)
        return self._result()


class AsyncRefresher(Refresher):
    """The same as an async refresher (a sync client runs it on a private event loop)."""

    async def __call__(self, **_: Any) -> dict[str, Any]:  # type: ignore[override]
        if os.getpid() == self.parent:
            self.started.set()
            await anyio.to_thread.run_sync(self.release.wait, CHILD_BOUND * 2)
        return self._result()


def _api(request: httpx.Request) -> httpx.Response:
    """The child's API: 200 for a token a refresh produced, 401 otherwise."""
    ok = request.headers.get("Authorization") in (f"Bearer {CHILD_TOKEN}", f"Bearer {PARENT_TOKEN}")
    return httpx.Response(200 if ok else 401)


def _fork(child: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fork; run ``child`` in the child and return its report, or fail after CHILD_BOUND s."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read)
            started = time.monotonic()
            report = child()
            report["elapsed"] = time.monotonic() - started
            os.write(write, json.dumps(report).encode())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            code = 1
            os.write(write, json.dumps({"error": repr(getattr(exc, "exceptions", exc))}).encode())
        finally:
            os._exit(code)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], CHILD_BOUND)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the child did not report within {CHILD_BOUND} s")
        data = b""
        while chunk := os.read(read, 65536):
            data += chunk
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    report: dict[str, Any] = json.loads(data)
    assert "error" not in report, report
    return report


def _refreshing_in_thread(auth: hr.RefreshAuth, refresher: Refresher) -> threading.Thread:
    thread = threading.Thread(target=auth.refresh, daemon=True)
    thread.start()
    assert refresher.started.wait(CHILD_BOUND)
    return thread


def _finish_parent(auth: hr.RefreshAuth, refresher: Refresher, thread: threading.Thread) -> None:
    refresher.release.set()
    thread.join(CHILD_BOUND)
    assert not thread.is_alive()
    assert refresher.calls == 1
    assert auth.credentials["access_token"] == PARENT_TOKEN
    assert auth.stats.refreshes == 1


def _child_sync(auth: hr.RefreshAuth, refresher: Refresher) -> dict[str, Any]:
    with httpx.Client(auth=auth, transport=httpx.MockTransport(_api)) as client:
        status = client.get("https://api.example.com/items").status_code
    return {
        "status": status,
        "calls": refresher.calls,
        "child_token": auth.credentials.get("access_token") == CHILD_TOKEN,
        "parent_token": auth.credentials.get("access_token") == PARENT_TOKEN,
    }


def _child_async(auth: hr.RefreshAuth, refresher: Refresher, backend: str) -> dict[str, Any]:
    async def main() -> list[int]:
        statuses: list[int] = []
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(_api)) as client:

            async def one() -> None:
                statuses.append((await client.get("https://api.example.com/items")).status_code)

            async with anyio.create_task_group() as group:
                for _ in range(5):  # contention in the child too: still one refresh
                    group.start_soon(one)
        return statuses

    statuses = anyio.run(main, backend=backend)
    return {
        "status": statuses,
        "calls": refresher.calls,
        "child_token": auth.credentials.get("access_token") == CHILD_TOKEN,
        "parent_token": auth.credentials.get("access_token") == PARENT_TOKEN,
    }


def _auth(refresher: Refresher, credentials: Any = None) -> hr.RefreshAuth:
    return hr.RefreshAuth(
        credentials if credentials is not None else {"access_token": "old", "refresh_token": "r1"},
        refresher,
        retry=hr.RetryPolicy(attempts=1),
    )


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync_refresher", "async_refresher"])
def test_r16_fork_sync_child_refreshes_at_once(asynchronous: bool) -> None:
    """R16: a sync client in the child refreshes at once (an async refresher runs on a private
    loop of the child's own); the parent's flight then completes with its one refresh."""
    refresher = (AsyncRefresher if asynchronous else Refresher)(os.getpid())
    auth = _auth(refresher)
    thread = _refreshing_in_thread(auth, refresher)

    report = _fork(lambda: _child_sync(auth, refresher))

    assert report["status"] == 200
    assert report["calls"] == 1
    assert report["child_token"]
    assert report["elapsed"] < CHILD_BOUND
    _finish_parent(auth, refresher, thread)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync_refresher", "async_refresher"])
def test_r16_fork_async_child_refreshes_at_once(anyio_backend: str, asynchronous: bool) -> None:
    """R16: an AsyncClient (asyncio, trio) in the child, 5 requests at once: one refresh."""
    refresher = (AsyncRefresher if asynchronous else Refresher)(os.getpid())
    auth = _auth(refresher)
    thread = _refreshing_in_thread(auth, refresher)

    report = _fork(lambda: _child_async(auth, refresher, anyio_backend))

    assert report["status"] == [200] * 5
    assert report["calls"] == 1
    assert report["child_token"]
    _finish_parent(auth, refresher, thread)


def _shared_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A new handle on one store location (a FileStore, or a RedisStore with an async client)."""
    if kind == "file":
        return hr.FileStore(tmp_path / "credentials.json")
    import redis.asyncio

    url = request.getfixturevalue("redis_url")
    # Unique to this test run, the same for every handle of one test: tmp_path's name
    # alone repeats in every pytest session, and CI's two passes share one Redis.
    key = f"test:fork:{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]}"
    return hr.RedisStore(url, key, async_client=redis.asyncio.Redis.from_url(url))


@pytest.mark.parametrize("store_kind", ["file", "redis"])
@pytest.mark.parametrize("kind", ["sync", "asyncio", "trio"])
def test_r16_fork_child_adopts_the_stored_credentials(
    request: pytest.FixtureRequest, tmp_path: Path, store_kind: str, kind: str
) -> None:
    """R16: with a FileStore or RedisStore, the parent's refresh holds the store's lock when the
    child forks. The child's store objects are its own (filelock refuses an inherited lock;
    a redis.asyncio client is rebuilt), it waits for the parent's save and adopts those
    credentials without calling the refresher."""
    first, store, last = (_shared_store(store_kind, request, tmp_path) for _ in range(3))
    request.addfinalizer(
        lambda: [getattr(s, "close", lambda: None)() for s in (first, store, last)]
    )
    first.save({"access_token": "old", "refresh_token": "r1"}, expected_version=None)
    refresher = Refresher(os.getpid())
    auth = _auth(refresher, store)
    thread = _refreshing_in_thread(auth, refresher)

    def child() -> dict[str, Any]:
        if kind == "sync":
            return _child_sync(auth, refresher)
        return _child_async(auth, refresher, kind)

    releaser = threading.Timer(0.2, refresher.release.set)  # the parent's save, a bit later
    releaser.start()
    try:
        report = _fork(child)
    finally:
        releaser.cancel()
    statuses = report["status"] if isinstance(report["status"], list) else [report["status"]]
    assert statuses == [200] * len(statuses)
    assert report["calls"] == 0
    assert report["parent_token"]
    _finish_parent(auth, refresher, thread)
    stored = last.load()
    assert stored is not None
    assert stored.version == 2


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX")
def test_r16_fork_memory_store_lock_is_fresh() -> None:
    """R16: a MemoryStore whose lock a parent thread holds at fork time is usable in the
    child (the holder does not exist there)."""
    store = hr.MemoryStore({"access_token": "old", "refresh_token": "r1"})
    token = store.acquire(1.0)
    try:
        report = _fork(lambda: {"token": store.release(store.acquire(1.0)) is None})
    finally:
        store.release(token)
    assert report["token"]


@pytest.mark.parametrize("kind", ["sync", "asyncio", "trio"])
def test_r16_fork_while_an_abandoned_refresher_still_runs(kind: str) -> None:
    """R16 + R7: the parent's refresher outlived ``refresh_timeout`` and still runs in an
    abandoned worker thread (the parent's next flight would wait for it) when the process
    forks. That thread does not exist in the child: the child refreshes at once instead of
    waiting for a late result that can never come. The parent then keeps its late result."""
    refresher = Refresher(os.getpid())
    auth = hr.RefreshAuth(
        {"access_token": "old", "refresh_token": "r1"},
        refresher,
        refresh_timeout=CHILD_BOUND / 4,
        retry=hr.RetryPolicy(attempts=1, cooldown=0.0),
    )
    auth._refresh_timeout = 0.2  # the first call is abandoned at once
    with pytest.raises(hr.RefreshError):
        auth.refresh()
    assert refresher.started.is_set()
    auth._refresh_timeout = CHILD_BOUND / 4  # the child's own refresh gets its time

    def child() -> dict[str, Any]:
        if kind == "sync":
            return _child_sync(auth, refresher)
        return _child_async(auth, refresher, kind)

    try:
        report = _fork(child)
    finally:
        refresher.release.set()
    statuses = report["status"] if isinstance(report["status"], list) else [report["status"]]
    assert statuses == [200] * len(statuses)
    assert report["calls"] == 1
    assert report["child_token"]
    assert report["elapsed"] < CHILD_BOUND / 4
    assert auth.refresh()["access_token"] == PARENT_TOKEN  # waits for, and keeps, the late result
    assert refresher.calls == 1
