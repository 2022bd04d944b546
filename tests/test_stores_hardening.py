"""Adversarial tests of the credential stores (issue 5) and of RefreshAuth over them.

Cancellation around the store lock (R7), a Redis lock that expires during a slow refresh
(compare-and-set, R5 across processes), ``update_credentials`` racing a refresh or meeting
a store that is down, sync and async clients over auth objects sharing one store, stores
that misbehave (wrong types, foreign exceptions, an acquire that never returns, a release
that raises), secrets in errors, reprs and logs, FileStore and RedisStore edge cases.

Secrets never reach assertion messages: tokens are compared into booleans first.
"""

from __future__ import annotations

import datetime
import json
import logging
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

import httpx_refresh as hr

GRANT = {"access_token": "AT-one-abcdef", "refresh_token": "RT-one-abcdef", "expires_in": 3600}
NEW_GRANT = {"access_token": "AT-new-abcdef", "refresh_token": "RT-new-abcdef", "expires_in": 3600}
URL = "https://api.example.com/x"


class Provider:
    """A rotating token endpoint and an API behind one MockTransport (thread-safe).

    Refresh tokens are single-use: presenting a rotated-away one is ``invalid_grant``.
    """

    def __init__(self, grant: dict[str, Any] = GRANT) -> None:
        self.lock = threading.Lock()
        self.refreshes: list[int] = []
        self.access = {grant["access_token"]}
        self.refresh_token = grant["refresh_token"]
        self.counter = 1
        self.rejected = 0

    def refresher(self, *, credentials: Any, **_: Any) -> dict[str, Any]:
        with self.lock:
            if credentials.get("refresh_token") != self.refresh_token:
                self.reject()
            self.refreshes.append(self.counter)  # the generation used, not the token
            self.counter += 1
            self.refresh_token = f"RT-{self.counter}-abcdef"
            self.access = {f"AT-{self.counter}-abcdef"}
            return {
                "access_token": f"AT-{self.counter}-abcdef",
                "refresh_token": self.refresh_token,
                "expires_in": 3600,
            }

    def reject(self) -> None:
        """Raise invalid_grant from a frame without credentials (pytest prints the last
        frame's arguments)."""
        raise hr.ReauthorizationRequired("reused refresh token", oauth_error="invalid_grant")

    def api(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        with self.lock:
            ok = token in self.access
            if not ok:
                self.rejected += 1
        return httpx.Response(200 if ok else 401)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.api)


class Wrapped:
    """A store that delegates to ``inner``, with switches for faults and a spy on the lock.

    ``down``: names of operations ("load", "save", "acquire", "release") that raise StoreError.
    ``on_acquire``: called when an (a)acquire starts; ``on_release``: after a release.
    """

    def __init__(
        self,
        inner: Any,
        on_acquire: Callable[[], None] | None = None,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self.down: set[str] = set()
        self.on_acquire = on_acquire
        self.on_release = on_release

    def _check(self, operation: str) -> None:
        if operation in self.down:
            raise hr.StoreError(f"{operation} is down (test)", path="wrapped")

    def load(self) -> Any:
        self._check("load")
        return self.inner.load()

    def save(self, credentials: Any, *, expected_version: Any, force: bool = False) -> int:
        self._check("save")
        return int(self.inner.save(credentials, expected_version=expected_version, force=force))

    def acquire(self, wait: float) -> object:
        if self.on_acquire is not None:
            self.on_acquire()
        self._check("acquire")
        return self.inner.acquire(wait)

    def release(self, token: object) -> None:
        self._check("release")
        self.inner.release(token)
        if self.on_release is not None:
            self.on_release()

    async def aload(self) -> Any:
        self._check("load")
        return await self.inner.aload()

    async def asave(self, credentials: Any, *, expected_version: Any, force: bool = False) -> int:
        self._check("save")
        return int(
            await self.inner.asave(credentials, expected_version=expected_version, force=force)
        )

    async def aacquire(self, wait: float) -> object:
        if self.on_acquire is not None:
            self.on_acquire()
        self._check("acquire")
        return await self.inner.aacquire(wait)

    async def arelease(self, token: object) -> None:
        self._check("release")
        await self.inner.arelease(token)
        if self.on_release is not None:
            self.on_release()


def check(ok: bool, what: str = "credentials as expected") -> None:
    """Assert ``ok`` without showing the compared values (they are tokens)."""
    assert ok, what


def lock_is_free(store: Any) -> bool:
    """Whether the store's lock can be taken now (and give it back)."""
    try:
        token = store.acquire(1.0)
    except hr.StoreError:
        return False
    store.release(token)
    return True


def secrets_in(text: str, *grants: dict[str, Any]) -> bool:
    return any(
        value in text
        for grant in grants
        for key, value in grant.items()
        if key != "expires_in" and isinstance(value, str)
    )


# -- R7: cancellation around the store lock ----------------------------------------------------


@pytest.mark.anyio
async def test_R7_cancel_while_the_owner_waits_for_the_store_lock(
    make_store: Any, anyio_backend: str
) -> None:
    """R7: another holder has the store lock; ten requests need a refresh and are cancelled
    while their flight's owner waits for that lock. Once the holder lets go, the flight
    (shielded) takes the lock, refreshes exactly once, saves and releases: the lock is
    free afterwards, and a later request works without another refresh."""
    holder = make_store()
    holder.save(GRANT, expected_version=None)
    provider = Provider()
    provider.access = set()  # the stored access token is revoked: every request gets a 401
    entered = anyio.Event()
    unlocked = anyio.Event()
    store = Wrapped(make_store(), on_acquire=entered.set, on_release=unlocked.set)
    auth = hr.RefreshAuth(store, provider.refresher)
    held = holder.acquire(5)
    released = False
    scope = anyio.CancelScope()
    finished: list[str] = []
    try:
        async with httpx.AsyncClient(auth=auth, transport=provider.transport()) as client:

            async def one() -> None:
                await client.get(URL)
                finished.append("completed")  # must not happen: cancelled first

            async def requests() -> None:
                with scope:
                    async with anyio.create_task_group() as inner:
                        for _ in range(10):
                            inner.start_soon(one)

            with anyio.fail_after(20):
                async with anyio.create_task_group() as group:
                    group.start_soon(requests)
                    await entered.wait()  # the owner is now waiting for the held lock
                    scope.cancel()
                    holder.release(held)
                    released = True
                await unlocked.wait()  # the shielded flight went on, saved and unlocked
                response = await client.get(URL)
    finally:
        if not released:
            holder.release(held)
    # The waiters are cancelled on both backends; on trio the owner's own request runs
    # shielded with its flight (R7), so once the flight is done it may still complete.
    assert len(finished) <= (1 if anyio_backend == "trio" else 0)
    assert response.status_code == 200
    assert provider.refreshes == [1]
    assert auth.stats.refreshes == 1
    stored = make_store().load()
    assert stored.version == 2
    check(stored.credentials["refresh_token"] == "RT-2-abcdef")
    assert lock_is_free(make_store())


@pytest.mark.anyio
async def test_R7_cancel_while_the_refresher_runs_the_rotated_token_is_saved(
    make_store: Any,
) -> None:
    """R7 + R9: the requests are cancelled while the refresher runs; the flight is shielded,
    so the rotated token is still merged, saved to the store (version 2) and the lock is
    released."""
    make_store().save(GRANT, expected_version=None)
    provider = Provider()
    provider.access = set()
    started = anyio.Event()
    proceed = anyio.Event()
    unlocked = anyio.Event()

    async def refresher(*, credentials: Any, **_: Any) -> dict[str, Any]:
        started.set()
        await proceed.wait()
        return provider.refresher(credentials=credentials)

    auth = hr.RefreshAuth(Wrapped(make_store(), on_release=unlocked.set), refresher)
    scope = anyio.CancelScope()
    async with httpx.AsyncClient(auth=auth, transport=provider.transport()) as client:

        async def requests() -> None:
            with scope:
                async with anyio.create_task_group() as inner:
                    for _ in range(10):
                        inner.start_soon(client.get, URL)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(requests)
                await started.wait()
                scope.cancel()
                proceed.set()
            await unlocked.wait()
            response = await client.get(URL)
    assert response.status_code == 200
    assert provider.refreshes == [1]
    stored = make_store().load()
    assert stored.version == 2
    check(stored.credentials["refresh_token"] == "RT-2-abcdef")
    assert lock_is_free(make_store())


# -- R5 across processes: a Redis lock that expires during a slow refresh ----------------------


def test_R5_redis_lock_expires_during_a_slow_refresh_the_late_save_is_refused(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """R5 across processes, compare-and-set: auth A's refresh outlives its lock (lock_ttl 1 s);
    auth B takes the expired lock, refreshes and saves version 2. A's save (expected version
    1) is refused with StoreError, the store holds exactly B's credentials, A's release of the
    expired lock only logs a warning, and A keeps its own result in memory (R9); A's next
    refresh adopts B's stored credentials without calling the token endpoint."""
    key = f"test:{uuid.uuid4().hex}"
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    a_started = threading.Event()
    b_saved = threading.Event()
    calls: list[str] = []

    def slow(*, credentials: Any, **_: Any) -> dict[str, Any]:
        calls.append("A")
        a_started.set()
        assert b_saved.wait(10)  # B could only get the lock after A's expired
        return {"access_token": "AT-a-abcdef", "refresh_token": "RT-a-abcdef"}

    def fast(*, credentials: Any, **_: Any) -> dict[str, Any]:
        calls.append("B")
        return {"access_token": "AT-b-abcdef", "refresh_token": "RT-b-abcdef"}

    with (
        hr.RedisStore(redis_url, key, lock_ttl=1) as store_a,
        hr.RedisStore(redis_url, key, lock_ttl=1) as store_b,
    ):
        store_a.save(GRANT, expected_version=None)
        auth_a = hr.RefreshAuth(store_a, slow)
        auth_b = hr.RefreshAuth(store_b, fast)
        outcome: list[BaseException | None] = []

        def run_a() -> None:
            try:
                auth_a.refresh()
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - checked below
                outcome.append(exc)

        thread = threading.Thread(target=run_a)
        thread.start()
        try:
            assert a_started.wait(10)
            auth_b.refresh()  # waits for A's lock to expire (about 1 s)
        finally:
            b_saved.set()
            thread.join(15)
        assert not thread.is_alive()
        assert len(outcome) == 1
        assert isinstance(outcome[0], hr.StoreError)
        assert "changed meanwhile" in str(outcome[0])
        assert outcome[0].path == f"redis:{key}"
        stored = store_b.load()
        assert stored.version == 2
        check(stored.credentials["refresh_token"] == "RT-b-abcdef")
        check(stored.credentials["access_token"] == "AT-b-abcdef")
        check(auth_a.credentials["refresh_token"] == "RT-a-abcdef")  # R9: kept in memory
        assert any("not released" in r.getMessage() for r in caplog.records)
        auth_a.refresh()  # finds version 2 in the store: adopts it
        assert calls == ["A", "B"]
        check(auth_a.credentials["refresh_token"] == "RT-b-abcdef")
        assert lock_is_free(store_a)


@pytest.mark.anyio
async def test_R5_redis_lock_expires_during_a_slow_async_refresh(
    redis_url: str, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As above with async refreshes in one event loop (redis.asyncio on asyncio, worker
    threads on trio): the refused save is a StoreError and the expired lock's release
    raises nothing."""
    import redis.asyncio

    key = f"test:{uuid.uuid4().hex}"
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    a_started = anyio.Event()
    b_saved = anyio.Event()

    async def slow(*, credentials: Any, **_: Any) -> dict[str, Any]:
        a_started.set()
        await b_saved.wait()
        return {"access_token": "AT-a-abcdef", "refresh_token": "RT-a-abcdef"}

    async def fast(*, credentials: Any, **_: Any) -> dict[str, Any]:
        return {"access_token": "AT-b-abcdef", "refresh_token": "RT-b-abcdef"}

    async_client = redis.asyncio.Redis.from_url(redis_url) if anyio_backend == "asyncio" else None
    store_a = hr.RedisStore(redis_url, key, lock_ttl=1, async_client=async_client)
    store_b = hr.RedisStore(redis_url, key, lock_ttl=1, async_client=async_client)
    try:
        store_a.save(GRANT, expected_version=None)
        auth_a = hr.RefreshAuth(store_a, slow)
        auth_b = hr.RefreshAuth(store_b, fast)
        outcome: list[BaseException | None] = []

        async def run_a() -> None:
            try:
                await auth_a.arefresh()
                outcome.append(None)
            except Exception as exc:  # noqa: BLE001 - checked below
                outcome.append(exc)

        with anyio.fail_after(15):
            async with anyio.create_task_group() as group:
                group.start_soon(run_a)
                await a_started.wait()
                try:
                    await auth_b.arefresh()
                finally:
                    b_saved.set()
        assert len(outcome) == 1
        assert isinstance(outcome[0], hr.StoreError)
        assert "changed meanwhile" in str(outcome[0])
        stored = await store_b.aload()
        assert stored.version == 2
        check(stored.credentials["refresh_token"] == "RT-b-abcdef")
        check(auth_a.credentials["refresh_token"] == "RT-a-abcdef")
        assert any("not released" in r.getMessage() for r in caplog.records)
        await auth_a.arefresh()
        check(auth_a.credentials["refresh_token"] == "RT-b-abcdef")
        assert auth_a.stats.refreshes == 1
    finally:
        store_a.close()
        store_b.close()
        if async_client is not None:
            await async_client.aclose()


# -- update_credentials ------------------------------------------------------------------------


def test_update_credentials_racing_a_refresh_in_another_auth(make_store: Any) -> None:
    """Auth A refreshes (holding the store lock) while the user reconnects through auth B:
    B's write-through waits for the lock (it never lands in the middle of A's save), then
    replaces whatever A stored; the store ends with the new grant, and A's next flight
    adopts it without calling the token endpoint."""
    make_store().save(GRANT, expected_version=None)
    provider = Provider()
    started = threading.Event()
    proceed = threading.Event()

    def refresher(*, credentials: Any, **_: Any) -> dict[str, Any]:
        started.set()
        assert proceed.wait(10)
        return provider.refresher(credentials=credentials)

    auth_a = hr.RefreshAuth(make_store(), refresher)
    auth_b = hr.RefreshAuth(make_store(), provider.refresher)
    outcome: list[BaseException | None] = []
    updated = threading.Event()

    def run_a() -> None:
        try:
            auth_a.refresh()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    def run_b() -> None:
        auth_b.update_credentials(NEW_GRANT)
        updated.set()

    thread_a = threading.Thread(target=run_a)
    thread_a.start()
    assert started.wait(10)
    thread_b = threading.Thread(target=run_b)
    thread_b.start()
    try:
        assert not updated.wait(0.3)  # B waits while A holds the lock
    finally:
        proceed.set()
        thread_a.join(15)
        thread_b.join(15)
    assert not thread_a.is_alive()
    assert not thread_b.is_alive()
    assert updated.is_set()
    assert outcome == [None]  # A's refresh and save went through first
    stored = make_store().load()
    assert stored.version == 3  # A's save (2), then B's forced write (3)
    check(stored.credentials == NEW_GRANT)
    check(dict(auth_b.credentials) == NEW_GRANT)
    auth_a.refresh()
    check(dict(auth_a.credentials) == NEW_GRANT)  # adopted, not refreshed
    assert provider.refreshes == [1]
    assert lock_is_free(make_store())


def test_update_credentials_when_the_store_is_down(make_store: Any) -> None:
    """The store cannot be written: update_credentials raises StoreError, and the in-memory
    credentials are the new grant all the same. Once the store is back, the next refresh
    starts from the new grant (not the older stored one) and saves version 2."""
    make_store().save(GRANT, expected_version=None)
    provider = Provider(NEW_GRANT)
    store = Wrapped(make_store())
    auth = hr.RefreshAuth(store, provider.refresher)
    store.down = {"save"}
    with pytest.raises(hr.StoreError, match="down"):
        auth.update_credentials(NEW_GRANT)
    check(dict(auth.credentials) == NEW_GRANT)
    assert auth.version == 1
    check(make_store().load().credentials == GRANT)  # nothing written
    store.down = set()
    auth.refresh()
    assert provider.refreshes == [1]
    stored = make_store().load()
    assert stored.version == 2
    check(stored.credentials["refresh_token"] == "RT-2-abcdef")


def test_update_credentials_is_not_overwritten_by_a_concurrent_file_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FileStore's compare-and-set is atomic only under its lock. Auth A (another process: its
    own FileStore object) refreshed, checked the stored version and is writing (fsync takes a
    while) when the user reconnects through auth B: the new grant must end up in the file,
    not be overwritten by A's refresh of the old grant."""
    from httpx_refresh import _stores

    path = tmp_path / "credentials.json"
    hr.FileStore(path).save(GRANT, expected_version=None)
    original = _stores.write_json_atomic
    in_write = threading.Event()
    go = threading.Event()
    writer: list[threading.Thread] = []

    def slow_write(target: Path, data: Any) -> None:
        if threading.current_thread() is writer[0]:
            in_write.set()
            assert go.wait(10)
            original(target, data)
        else:
            original(target, data)
            go.set()

    monkeypatch.setattr(_stores, "write_json_atomic", slow_write)
    provider = Provider()
    auth_a = hr.RefreshAuth(hr.FileStore(path), provider.refresher)
    # If update_credentials takes the store lock, A is let go as soon as B asks for it.
    auth_b = hr.RefreshAuth(Wrapped(hr.FileStore(path), on_acquire=go.set), provider.refresher)
    outcome: list[BaseException | None] = []

    def run_a() -> None:
        try:
            auth_a.refresh()
            outcome.append(None)
        except hr.HttpxRefreshError as exc:
            outcome.append(exc)

    writer.append(threading.Thread(target=run_a))
    writer[0].start()
    try:
        assert in_write.wait(10)
        auth_b.update_credentials(NEW_GRANT)
    finally:
        go.set()
        writer[0].join(15)
    assert not writer[0].is_alive()
    check(dict(auth_b.credentials) == NEW_GRANT)
    check(hr.FileStore(path).load().credentials == NEW_GRANT)


# -- R5/R6: sync and async clients over auth objects sharing one store --------------------------


@pytest.fixture(params=["memory", "file-one-object", "file-two-objects", "redis"])
def shared_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Two store handles on one location, for two auth objects of one process."""
    kind = request.param
    if kind == "memory":
        store = hr.MemoryStore()
        yield store, store
    elif kind == "file-one-object":
        store = hr.FileStore(tmp_path / "credentials.json")
        yield store, store
    elif kind == "file-two-objects":
        yield hr.FileStore(tmp_path / "c.json"), hr.FileStore(tmp_path / "c.json")
    else:
        url = request.getfixturevalue("redis_url")
        key = f"test:{uuid.uuid4().hex}"
        with hr.RedisStore(url, key) as first, hr.RedisStore(url, key) as second:
            yield first, second


@pytest.mark.anyio
async def test_R5_sync_threads_and_async_tasks_over_two_auths_sharing_one_store(
    shared_stores: tuple[Any, Any],
) -> None:
    """R5 + R6: two RefreshAuth objects over one store location (also one FileStore object
    shared by both, as one MemoryStore is), each used at once by sync clients in 3 threads and
    by an async client in 8 tasks. Every first request is rejected; the refresher is held
    until all 22 are waiting. Exactly one token-endpoint call, every request ends 200, both
    auths hold the rotated token, no deadlock (bounded)."""
    first, second = shared_stores
    first.save(GRANT, expected_version=None)
    provider = Provider()
    provider.access = set()
    workers = 2 * (3 + 8)
    all_rejected = threading.Event()
    real_api = provider.api

    def api(request: httpx.Request) -> httpx.Response:
        response = real_api(request)
        with provider.lock:
            if provider.rejected >= workers:
                all_rejected.set()
        return response

    def refresher(*, credentials: Any, **_: Any) -> dict[str, Any]:
        all_rejected.wait(10)  # real contention: every worker is waiting by now
        return provider.refresher(credentials=credentials)

    transport = httpx.MockTransport(api)
    auths = [hr.RefreshAuth(first, refresher), hr.RefreshAuth(second, refresher)]
    statuses: list[int | str] = []

    def sync_worker(auth: hr.RefreshAuth) -> None:
        with httpx.Client(auth=auth, transport=transport) as client:
            for _ in range(3):
                try:
                    statuses.append(client.get(URL).status_code)
                except hr.HttpxRefreshError as exc:
                    statuses.append(type(exc).__name__)

    threads = [threading.Thread(target=sync_worker, args=(a,)) for a in auths for _ in range(3)]
    clients = [httpx.AsyncClient(auth=a, transport=transport) for a in auths]

    async def async_worker(client: httpx.AsyncClient) -> None:
        for _ in range(3):
            try:
                statuses.append((await client.get(URL)).status_code)
            except hr.HttpxRefreshError as exc:
                statuses.append(type(exc).__name__)

    try:
        for thread in threads:
            thread.start()
        with anyio.fail_after(25):
            async with anyio.create_task_group() as group:
                for client in clients:
                    for _ in range(8):
                        group.start_soon(async_worker, client)
            for thread in threads:
                await anyio.to_thread.run_sync(thread.join, 10)
    finally:
        for client in clients:
            await client.aclose()
    assert not any(thread.is_alive() for thread in threads)
    assert statuses == [200] * (workers * 3)
    assert provider.refreshes == [1]
    assert sum(auth.stats.refreshes for auth in auths) == 1
    check({auth.credentials["refresh_token"] for auth in auths} == {"RT-2-abcdef"})
    check(second.load().credentials["refresh_token"] == "RT-2-abcdef")
    assert lock_is_free(first)


def test_file_store_one_object_shared_by_threads_is_a_real_lock(tmp_path: Path) -> None:
    """The lock of one FileStore object used from several threads (two auth objects sharing
    it, as they share a MemoryStore) excludes: 4 threads x 25 locked read-modify-writes
    give exactly version 101, and the lock is never held twice at once."""
    store = hr.FileStore(tmp_path / "credentials.json")
    store.save({"n": 0}, expected_version=None)
    inside = [0]
    overlaps: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait(10)
        for _ in range(25):
            token = store.acquire(10)
            try:
                inside[0] += 1
                if inside[0] != 1:
                    overlaps.append(inside[0])
                loaded = store.load()
                store.save({"n": loaded.credentials["n"] + 1}, expected_version=loaded.version)
            except hr.StoreError as exc:
                errors.append(exc)
            finally:
                inside[0] -= 1
                store.release(token)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert overlaps == []
    assert errors == []
    loaded = store.load()
    assert (loaded.version, loaded.credentials["n"]) == (101, 100)


def test_file_store_objects_on_one_path_in_threads(tmp_path: Path) -> None:
    """FileStore objects on one path, one per thread, exclude each other: 4 threads x 25
    locked read-modify-writes give exactly version 101, no refused save."""
    path = tmp_path / "credentials.json"
    stores = [hr.FileStore(path) for _ in range(4)]
    stores[0].save({"n": 0}, expected_version=None)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(store: hr.FileStore) -> None:
        start.wait(10)
        for _ in range(25):
            try:
                token = store.acquire(10)
            except hr.StoreError as exc:
                errors.append(exc)
                continue
            try:
                loaded = store.load()
                store.save({"n": loaded.credentials["n"] + 1}, expected_version=loaded.version)
            except hr.StoreError as exc:
                errors.append(exc)
            finally:
                store.release(token)

    threads = [threading.Thread(target=worker, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    loaded = hr.FileStore(path).load()
    assert (loaded.version, loaded.credentials["n"]) == (101, 100)


# -- stores that misbehave ----------------------------------------------------------------------


class WrongLoad(hr.MemoryStore):
    """load() returns a plain dict (not Stored)."""

    def load(self) -> Any:
        return dict(GRANT)


def test_store_load_returning_a_wrong_type_at_construction_is_a_typed_error() -> None:
    """A custom store whose load() returns a dict instead of Stored: RefreshAuth says so with
    an httpx-refresh error (StoreError), not an AttributeError from deep inside."""
    with pytest.raises(hr.HttpxRefreshError):
        hr.RefreshAuth(WrongLoad(GRANT), Provider().refresher)


@pytest.mark.anyio
async def test_store_load_returning_a_wrong_type_mid_flight(make_store: Any) -> None:
    """load() breaks after construction (returns a list): ten waiting requests all get a typed
    error quickly, none hangs, the refresher never runs, the in-memory credentials stay."""
    make_store().save(GRANT, expected_version=None)
    provider = Provider()
    provider.access = set()

    class Broken(Wrapped):
        async def aload(self) -> Any:
            return ["not", "stored"]

    store = Broken(make_store())
    auth = hr.RefreshAuth(store, provider.refresher)
    errors: list[BaseException] = []
    async with httpx.AsyncClient(auth=auth, transport=provider.transport()) as client:

        async def one() -> None:
            try:
                await client.get(URL)
            except Exception as exc:  # noqa: BLE001 - checked below
                errors.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for _ in range(10):
                    group.start_soon(one)
    assert len(errors) == 10
    assert all(isinstance(exc, (hr.StoreError, hr.RefreshError)) for exc in errors)
    assert provider.refreshes == []
    check(dict(auth.credentials) == GRANT)
    assert lock_is_free(make_store())


@pytest.mark.anyio
async def test_store_save_raising_a_foreign_exception(make_store: Any) -> None:
    """save() raises RuntimeError whose message holds the new token: every waiter gets a
    RefreshError whose message is scrubbed; the rotated credentials stay in memory (R9)
    and the lock is released."""
    make_store().save(GRANT, expected_version=None)
    provider = Provider()
    provider.access = set()

    class Exploding(Wrapped):
        async def asave(
            self, credentials: Any, *, expected_version: Any, force: bool = False
        ) -> int:
            raise RuntimeError(f"cannot store {credentials['access_token']}")

    auth = hr.RefreshAuth(Exploding(make_store()), provider.refresher)
    errors: list[BaseException] = []
    async with httpx.AsyncClient(auth=auth, transport=provider.transport()) as client:

        async def one() -> None:
            try:
                await client.get(URL)
            except Exception as exc:  # noqa: BLE001 - checked below
                errors.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for _ in range(10):
                    group.start_soon(one)
    assert len(errors) == 10
    assert all(isinstance(exc, hr.RefreshError) for exc in errors)
    assert not any("AT-2-abcdef" in str(exc) + repr(exc) for exc in errors)
    check(auth.credentials["refresh_token"] == "RT-2-abcdef")
    assert provider.refreshes == [1]
    assert make_store().load().version == 1
    assert lock_is_free(make_store())


@pytest.mark.anyio
async def test_store_release_raising_does_not_escape_as_a_foreign_error() -> None:
    """release() raises RuntimeError after the refresh and save succeeded: no foreign
    exception reaches any caller (the RedisStore logs a failed release; a custom store's
    failure should at least be typed), and the new credentials are stored."""
    store = hr.MemoryStore(GRANT)

    class BadRelease(Wrapped):
        async def arelease(self, token: object) -> None:
            await self.inner.arelease(token)
            raise RuntimeError("release exploded")

    provider = Provider()
    provider.access = set()
    auth = hr.RefreshAuth(BadRelease(store), provider.refresher)
    outcomes: list[object] = []
    async with httpx.AsyncClient(auth=auth, transport=provider.transport()) as client:

        async def one() -> None:
            try:
                outcomes.append((await client.get(URL)).status_code)
            except Exception as exc:  # noqa: BLE001 - checked below
                outcomes.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(one)
    foreign = [
        o for o in outcomes if isinstance(o, Exception) and not isinstance(o, hr.HttpxRefreshError)
    ]
    assert [type(o).__name__ for o in foreign] == []
    assert provider.refreshes == [1]
    check(store.load().credentials["refresh_token"] == "RT-2-abcdef")
    assert lock_is_free(store)


@pytest.mark.anyio
async def test_store_acquire_that_never_returns_is_bounded(anyio_backend: str) -> None:
    """aacquire() ignores its ``wait`` and never returns (but can be cancelled, as any await
    can; a store blocking a worker thread cannot be interrupted, like a sync refresher).
    Waiters give up after the flight limit (refresh_timeout 0.1 s, one attempt: 10.1 s) with
    a RefreshError; the request that owns the flight must not hang either: it gets a
    StoreError ("did not answer") before the test lifts the hang (2 s after the limit)."""
    stop = threading.Event()
    entered = anyio.Event()

    class Hanging(hr.MemoryStore):
        async def aacquire(self, wait: float) -> object:
            entered.set()
            await anyio.to_thread.run_sync(stop.wait, 60, abandon_on_cancel=True)
            raise hr.StoreError("the test lifted the hang", path="hanging")

    provider = Provider()
    provider.access = set()
    auth = hr.RefreshAuth(
        Hanging(GRANT),
        provider.refresher,
        refresh_timeout=0.1,
        retry=hr.RetryPolicy(attempts=1, cooldown=0),
    )
    limit = 0.1 + 10.0
    owner_done = anyio.Event()
    outcomes: dict[str, Any] = {}
    async with httpx.AsyncClient(auth=auth, transport=provider.transport()) as client:

        async def owner() -> None:
            try:
                await client.get(URL)
                outcomes["owner"] = "response"
            except Exception as exc:  # noqa: BLE001 - checked below
                outcomes["owner"] = exc
            owner_done.set()

        async def waiter(index: int) -> None:
            try:
                await client.get(URL)
            except Exception as exc:  # noqa: BLE001 - checked below
                outcomes[f"waiter{index}"] = exc

        async with anyio.create_task_group() as group:
            group.start_soon(owner)
            await entered.wait()  # the owner's flight is stuck in aacquire
            for index in range(3):
                group.start_soon(waiter, index)
            with anyio.move_on_after(limit + 2):
                await owner_done.wait()
            finished_before_the_lift = owner_done.is_set()
            stop.set()  # lift the hang in any case (a shielded owner cannot be cancelled)
    waiters = [outcomes.get(f"waiter{i}") for i in range(3)]
    # Typed, never a hang: their own wait limit (RefreshError) or the flight's error.
    assert all(isinstance(w, (hr.RefreshError, hr.StoreError)) for w in waiters)
    assert finished_before_the_lift
    assert isinstance(outcomes["owner"], hr.StoreError)
    assert "did not answer" in str(outcomes["owner"])


# -- R7 with a store: a late result of a sync refresher -----------------------------------------


@pytest.mark.anyio
async def test_R7_late_sync_refresher_result_is_saved_to_the_store() -> None:
    """A sync refresher under an async client outlives refresh_timeout (the request gets a
    RefreshError), then returns a rotated token: it is kept in memory (R7), and it must also
    reach the store, or another process sharing it refreshes with the rotated-away token
    (invalid_grant: the grant dies)."""
    store = hr.MemoryStore(GRANT)
    provider = Provider()
    provider.access = set()
    proceed = threading.Event()
    late = threading.Event()

    def slow(*, credentials: Any, **_: Any) -> dict[str, Any]:
        assert proceed.wait(10)
        return provider.refresher(credentials=credentials)

    auth = hr.RefreshAuth(
        store,
        slow,
        refresh_timeout=0.2,
        retry=hr.RetryPolicy(attempts=1, cooldown=0),
        on_refresh=lambda credentials: late.set(),
    )
    async with httpx.AsyncClient(auth=auth, transport=provider.transport()) as client:
        with anyio.fail_after(10), pytest.raises(hr.RefreshError):
            await client.get(URL)
    # Another "process", already running with the old credentials (it loaded version 1).
    other = hr.RefreshAuth(store, provider.refresher)
    proceed.set()
    assert await anyio.to_thread.run_sync(late.wait, 10)
    check(auth.credentials["refresh_token"] == "RT-2-abcdef")
    assert store.load().version == 2  # the late result reached the store
    try:  # it must adopt, not present the used refresh token
        other.refresh()
        outcome = "adopted"
    except hr.ReauthorizationRequired:
        outcome = "refreshed with the rotated-away token: invalid_grant"
    assert outcome == "adopted"
    assert provider.refreshes == [1]
    check(other.credentials["refresh_token"] == "RT-2-abcdef")


# -- R10 with a store: a proactive refresh whose store is down ----------------------------------


def test_R10_proactive_refresh_with_the_store_down_keeps_the_valid_token() -> None:
    """R10: the token is inside the leeway but still valid; the proactive refresh cannot take
    the store lock (Redis down: StoreError). As for any transient refresh failure, the
    request goes out with the still-valid token instead of failing."""
    grant = {**GRANT, "expires_at": time.time() + 10}
    grant.pop("expires_in")
    store = Wrapped(hr.MemoryStore(grant))
    store.down = {"acquire"}
    provider = Provider(grant)
    auth = hr.RefreshAuth(store, provider.refresher, leeway=30)
    with httpx.Client(auth=auth, transport=provider.transport()) as client:
        response = client.get(URL)
    assert response.status_code == 200
    assert provider.refreshes == []


# -- secrets ------------------------------------------------------------------------------------


def test_no_secret_in_store_errors_reprs_or_debug_logs(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No token, refresh token or Redis password in StoreError messages, store and Stored
    reprs, or any log record (DEBUG, every logger) across store failures."""
    caplog.set_level(logging.DEBUG)
    password = "hunter2-redis-password"
    collected: list[str] = []

    def record(exc: BaseException) -> None:
        collected.extend([str(exc), repr(exc), str(getattr(exc, "path", ""))])

    # FileStore: conflict, unwritable value, corrupt file.
    path = tmp_path / "credentials.json"
    file_store = hr.FileStore(path)
    file_store.save(GRANT, expected_version=None)
    for call in (
        lambda: file_store.save(NEW_GRANT, expected_version=None),
        lambda: file_store.save({**NEW_GRANT, "when": datetime.datetime.now()}, expected_version=1),
    ):
        with pytest.raises(hr.StoreError) as caught:
            call()
        record(caught.value)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"access_token": "AT-one-abcdef", ')
    with pytest.raises(hr.StoreError) as caught:
        hr.FileStore(corrupt).load()
    record(caught.value)
    collected.append(repr(file_store) + repr(file_store.load()))
    # RedisStore: down (password in the URL), wrong type, conflict.
    with hr.RedisStore(f"redis://:{password}@127.0.0.1:9/0", "k") as down:
        collected.append(repr(down))
        for call in (down.load, lambda: down.save(GRANT, expected_version=None)):
            with pytest.raises(hr.StoreError) as caught:
                call()
            record(caught.value)
    key = f"test:{uuid.uuid4().hex}"
    with hr.RedisStore(redis_url, key) as redis_store:
        redis_store.save(GRANT, expected_version=None)
        with pytest.raises(hr.StoreError) as caught:
            redis_store.save(NEW_GRANT, expected_version=None)
        record(caught.value)
        collected.append(repr(redis_store) + repr(redis_store.load()))
    # RefreshAuth: the save is refused after a refresh (logs at every level).
    store = Wrapped(hr.MemoryStore(GRANT))
    provider = Provider()
    provider.access = set()
    store.down = {"save"}
    auth = hr.RefreshAuth(store, provider.refresher)
    with (
        httpx.Client(auth=auth, transport=provider.transport()) as client,
        pytest.raises(hr.StoreError) as caught,
    ):
        client.get(URL)
    record(caught.value)
    collected.append(repr(auth))
    formatter = logging.Formatter("%(name)s %(message)s")
    collected.extend(formatter.format(r) for r in caplog.records)
    rotated = {"access_token": "AT-2-abcdef", "refresh_token": "RT-2-abcdef"}
    text = "\n".join(collected)
    leaked = secrets_in(text, GRANT, NEW_GRANT, rotated) or password in text
    check(not leaked, "a secret is in an error, a repr or a log record")


# -- FileStore edge cases -----------------------------------------------------------------------


def test_file_store_existing_0644_file_becomes_0600(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(GRANT))
    path.chmod(0o644)
    hr.FileStore(path).save(NEW_GRANT, expected_version=0)
    assert path.stat().st_mode & 0o777 == 0o600
    check(hr.FileStore(path).load().credentials == NEW_GRANT)


def test_file_store_through_a_symlink_never_leaves_new_secrets_readable(tmp_path: Path) -> None:
    """The credentials path is a symlink to a 0644 file: after a save, the new credentials are
    in no file that group or others can read."""
    target = tmp_path / "target.json"
    target.write_text(json.dumps(GRANT))
    target.chmod(0o644)
    link = tmp_path / "credentials.json"
    link.symlink_to(target)
    store = hr.FileStore(link)
    check(store.load().credentials == GRANT)
    store.save(NEW_GRANT, expected_version=0)
    check(store.load().credentials == NEW_GRANT)
    for entry in tmp_path.iterdir():
        if entry.is_file() and "AT-new-abcdef" in entry.read_text():
            assert entry.stat().st_mode & 0o077 == 0, entry.name


def test_file_store_dangling_symlink_and_directory(tmp_path: Path) -> None:
    """A dangling symlink reads as an empty store and is replaced by a 0600 file; a directory
    at the path is a StoreError naming the path (construction and save), left alone."""
    link = tmp_path / "credentials.json"
    link.symlink_to(tmp_path / "missing.json")
    store = hr.FileStore(link)
    assert store.load() is None
    store.save(GRANT, expected_version=None)
    assert stat.S_ISREG(link.lstat().st_mode)
    assert link.stat().st_mode & 0o777 == 0o600
    directory = tmp_path / "dir.json"
    directory.mkdir()
    with pytest.raises(hr.StoreError) as caught:
        hr.RefreshAuth(hr.FileStore(directory), Provider().refresher)
    assert caught.value.path == str(directory)
    with pytest.raises(hr.StoreError):
        hr.FileStore(directory).save(GRANT, expected_version=None, force=True)
    assert directory.is_dir()


def test_file_store_very_large_credentials(tmp_path: Path) -> None:
    big = {**GRANT, "blob": "x" * 4_000_000, "nested": {"list": list(range(10_000))}}
    store = hr.FileStore(tmp_path / "credentials.json")
    assert store.save(big, expected_version=None) == 1
    check(store.load().credentials == big)


def test_file_store_refresher_returning_a_datetime(tmp_path: Path) -> None:
    """A refresher returns a datetime (not JSON): the caller gets StoreError (not a TypeError),
    the file keeps the old complete credentials, no temporary file is left, and the rotated
    token stays in memory (R9)."""
    path = tmp_path / "credentials.json"
    store = hr.FileStore(path)
    store.save(GRANT, expected_version=None)
    before = path.read_text()
    provider = Provider()

    def refresher(**kwargs: Any) -> dict[str, Any]:
        return {**provider.refresher(**kwargs), "issued": datetime.datetime.now()}

    auth = hr.RefreshAuth(store, refresher)
    with pytest.raises(hr.StoreError, match="cannot write"):
        auth.refresh()
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "credentials.json",
        "credentials.json.lock",
    ]
    check(auth.credentials["refresh_token"] == "RT-2-abcdef")


# -- RedisStore edge cases ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param({"version": "1", "credentials": "{not json"}, id="not-json"),
        pytest.param({"version": "one", "credentials": "{}"}, id="version-not-int"),
        pytest.param({"version": "1", "credentials": "[1, 2]"}, id="credentials-list"),
        pytest.param({"version": "1"}, id="credentials-missing"),
        pytest.param("a plain string", id="wrongtype"),
    ],
)
def test_redis_malformed_data_is_a_store_error_with_the_key(redis_url: str, setup: Any) -> None:
    import redis

    key = f"test:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    try:
        if isinstance(setup, dict):
            client.hset(key, mapping=setup)
        else:
            client.set(key, setup)
        with hr.RedisStore(client, key) as store:
            with pytest.raises(hr.StoreError) as caught:
                store.load()
            assert caught.value.path == f"redis:{key}"
            assert key in str(caught.value)
            with pytest.raises(hr.StoreError) as caught:
                hr.RefreshAuth(store, Provider().refresher)
            assert key in str(caught.value)
            if setup == "a plain string" or setup.get("version") == "one":
                with pytest.raises(hr.StoreError) as caught:
                    store.save(GRANT, expected_version=1)
                assert key in str(caught.value)
    finally:
        client.delete(key)
        client.close()


def test_redis_given_client_is_not_closed_but_an_owned_one_is(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    closed: list[int] = []
    original = redis.Redis.close

    def spy(self: Any) -> None:
        closed.append(id(self))
        original(self)

    monkeypatch.setattr(redis.Redis, "close", spy)
    client = redis.Redis.from_url(redis_url)
    with hr.RedisStore(client, f"test:{uuid.uuid4().hex}") as store:
        store.load()
    assert id(client) not in closed
    assert client.ping()
    client.close()
    closed.clear()
    # Other clients may be garbage-collected (and closed) meanwhile: look for this one.
    with hr.RedisStore(redis_url, f"test:{uuid.uuid4().hex}") as owned:
        owned.load()
        own_client = id(owned._client)
        assert own_client not in closed
    assert closed.count(own_client) == 1
