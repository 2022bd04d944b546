"""Credential stores (issue 5): MemoryStore, FileStore, RedisStore, and RefreshAuth over them.

The store contract (load, compare-and-set save, lock) is checked for every store; then the
cross-process single-flight logic (R5 across processes, R9) with two RefreshAuth objects
sharing one store in this process, which is what two processes do (the multi-process tests
are in test_stores_multiprocess.py).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import httpx_refresh as hr

GRANT = {"access_token": "A1", "refresh_token": "R1", "expires_in": 3600}


# -- the store contract ----------------------------------------------------------------------


def test_load_save_and_compare_and_set(make_store: Any) -> None:
    store = make_store()
    assert store.load() is None
    assert store.save(GRANT, expected_version=None) == 1
    loaded = store.load()
    assert loaded.credentials == GRANT
    assert loaded.version == 1
    assert make_store().load().credentials == GRANT  # another handle sees it
    assert store.save({**GRANT, "access_token": "A2"}, expected_version=1) == 2
    with pytest.raises(hr.StoreError, match="changed meanwhile"):
        store.save({**GRANT, "access_token": "stale"}, expected_version=1)
    with pytest.raises(hr.StoreError, match="changed meanwhile"):
        store.save({**GRANT, "access_token": "stale"}, expected_version=None)
    assert store.load().credentials["access_token"] == "A2"  # the refused saves wrote nothing
    assert store.save({"access_token": "forced"}, expected_version=None, force=True) == 3
    assert store.load().credentials == {"access_token": "forced"}


def test_lock_excludes_and_times_out(make_store: Any) -> None:
    store, other = make_store(), make_store()
    token = store.acquire(5)
    result: list[Any] = []

    def contend() -> None:
        try:
            result.append(other.acquire(0.2))
        except hr.StoreError as exc:
            result.append(exc)

    thread = threading.Thread(target=contend)
    thread.start()
    thread.join(10)
    assert isinstance(result[0], hr.StoreError)
    assert "could not take the lock" in str(result[0])
    store.release(token)
    second = other.acquire(5)  # free again
    other.release(second)


@pytest.mark.anyio
async def test_async_operations(make_store: Any) -> None:
    store = make_store()
    assert await store.aload() is None
    assert await store.asave(GRANT, expected_version=None) == 1
    token = await store.aacquire(5)
    with pytest.raises(hr.StoreError):
        await make_store().aacquire(0.1)
    await store.arelease(token)
    assert (await store.aload()).credentials == GRANT


def test_reprs_hold_no_secret(make_store: Any) -> None:
    store = make_store()
    store.save(GRANT, expected_version=None)
    text = repr(store) + repr(store.load())
    assert "A1" not in text
    assert "R1" not in text


# -- FileStore specifics -----------------------------------------------------------------------


def test_file_store_is_atomic_and_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    store = hr.FileStore(path)
    store.save(GRANT, expected_version=None)
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert data == {"httpx_refresh_store": 1, "version": 1, "credentials": GRANT}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.json"]  # no temp left


def test_file_store_reads_a_plain_credentials_file_as_version_0(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(GRANT))
    store = hr.FileStore(path)
    loaded = store.load()
    assert (loaded.credentials, loaded.version) == (GRANT, 0)
    assert store.save({**GRANT, "access_token": "A2"}, expected_version=0) == 1


@pytest.mark.parametrize(
    "content", ['{"access_token": "A1", ', "[1, 2]", '{"httpx_refresh_store": 1, "version": 0}']
)
def test_corrupt_file_is_a_store_error_and_left_alone(tmp_path: Path, content: str) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(content)
    with pytest.raises(hr.StoreError) as caught:
        hr.RefreshAuth(hr.FileStore(path), lambda **_: {})
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert path.read_text() == content  # never silently replaced
    with pytest.raises(hr.StoreError):
        hr.FileStore(path).save(GRANT, expected_version=None, force=False)
    assert path.read_text() == content


def test_unwritable_directory_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = hr.FileStore(blocker / "credentials.json")  # a path under a file: never writable
    with pytest.raises(hr.StoreError, match="cannot"):
        store.save(GRANT, expected_version=None)


def test_redis_down_is_a_store_error() -> None:
    with hr.RedisStore("redis://127.0.0.1:9/0", "some-key") as store:
        with pytest.raises(hr.StoreError, match="redis:some-key"):
            store.load()
        with pytest.raises(hr.StoreError):
            store.save(GRANT, expected_version=None)
        with pytest.raises(hr.StoreError):
            store.acquire(0.1)


# -- RefreshAuth over a store ------------------------------------------------------------------


class Provider:
    """A rotating token endpoint and an API behind one MockTransport (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refreshes: list[str] = []
        self.access = {"A1"}
        self.refresh_token = "R1"
        self.counter = 1

    def refresher(self, *, credentials: Any, **_: Any) -> dict[str, Any]:
        with self.lock:
            if credentials.get("refresh_token") != self.refresh_token:
                raise hr.ReauthorizationRequired(
                    "reused refresh token", oauth_error="invalid_grant"
                )
            self.refreshes.append(credentials["refresh_token"])
            self.counter += 1
            self.refresh_token = f"R{self.counter}"
            self.access = {f"A{self.counter}"}
            return {
                "access_token": f"A{self.counter}",
                "refresh_token": self.refresh_token,
                "expires_in": 3600,
            }

    def api(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        with self.lock:
            ok = token in self.access
        return httpx.Response(200 if ok else 401)


def test_fresh_path_never_touches_the_store(tmp_path: Path) -> None:
    class Counting(hr.MemoryStore):
        calls = 0

        def load(self) -> Any:
            Counting.calls += 1
            return super().load()

    store = Counting(GRANT)
    provider = Provider()
    auth = hr.RefreshAuth(store, provider.refresher)
    assert Counting.calls == 1  # the initial load
    with httpx.Client(auth=auth, transport=httpx.MockTransport(provider.api)) as client:
        for _ in range(20):
            assert client.get("https://api.example.com/x").status_code == 200
    assert Counting.calls == 1
    assert provider.refreshes == []


def test_R5_two_auths_one_store_refresh_once_and_adopt(make_store: Any) -> None:
    """Process A refreshes and saves; process B, whose token is rejected next, takes the lock,
    sees the newer stored credentials and adopts them without calling the refresher
    (a second refresh would present the rotated-away R1)."""
    make_store().save(GRANT, expected_version=None)
    provider = Provider()
    first = hr.RefreshAuth(make_store(), provider.refresher)
    second = hr.RefreshAuth(make_store(), provider.refresher)
    provider.access = set()  # A1 revoked: both get a 401
    transport = httpx.MockTransport(provider.api)
    with (
        httpx.Client(auth=first, transport=transport) as a,
        httpx.Client(auth=second, transport=transport) as b,
    ):
        assert a.get("https://api.example.com/x").status_code == 200
        assert b.get("https://api.example.com/x").status_code == 200
    assert provider.refreshes == ["R1"]
    assert first.credentials["refresh_token"] == second.credentials["refresh_token"] == "R2"
    assert second.stats.refreshes == 0  # adopted
    stored = make_store().load()
    assert stored.credentials["refresh_token"] == "R2"
    assert stored.version == 2


@pytest.mark.anyio
async def test_R5_many_auths_racing_on_one_store_async(make_store: Any) -> None:
    """Eight auth objects (as eight processes would), 20 tasks each, all rejected at once:
    exactly one refresher call; every auth ends with the rotated token."""
    make_store().save(GRANT, expected_version=None)
    provider = Provider()
    auths = [hr.RefreshAuth(make_store(), provider.refresher) for _ in range(8)]
    provider.access = set()
    statuses: list[int] = []
    transport = httpx.MockTransport(provider.api)

    async def one(client: httpx.AsyncClient) -> None:
        statuses.append((await client.get("https://api.example.com/x")).status_code)

    clients = [httpx.AsyncClient(auth=auth, transport=transport) for auth in auths]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for client in clients:
                for _ in range(20):
                    group.start_soon(one, client)
    for client in clients:
        await client.aclose()
    assert statuses == [200] * 160
    assert provider.refreshes == ["R1"]
    assert {auth.credentials["refresh_token"] for auth in auths} == {"R2"}
    assert make_store().load().credentials["refresh_token"] == "R2"


def test_empty_store_starts_empty_and_first_refresh_saves(make_store: Any) -> None:
    """An empty store: no credentials (a client-credentials refresher fetches the first
    token before the first request, R2) and the result is saved as version 1."""
    calls: list[int] = []

    def fetch(**_: Any) -> dict[str, Any]:
        calls.append(1)
        return {"access_token": "C1", "expires_in": 3600}

    store = make_store()
    auth = hr.RefreshAuth(store, fetch)
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200)

    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        client.get("https://api.example.com/x")
    assert calls == [1]
    assert seen == ["Bearer C1"]
    assert make_store().load().credentials["access_token"] == "C1"
    assert make_store().load().version == 1


def test_R9_save_failure_keeps_the_rotated_token_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh succeeded but the store cannot be written (the disk is full): callers get
    StoreError with the path, and the rotated token stays in memory (never lost in this
    process); the file keeps the old complete credentials."""
    path = tmp_path / "credentials.json"
    store = hr.FileStore(path)
    store.save(GRANT, expected_version=None)
    before = path.read_text()
    provider = Provider()
    auth = hr.RefreshAuth(store, provider.refresher)
    provider.access = set()

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("httpx_refresh._stores.write_json_atomic", disk_full)
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(provider.api)) as client,
        pytest.raises(hr.StoreError, match="cannot write") as caught,
    ):
        client.get("https://api.example.com/x")
    assert caught.value.path == str(path)
    assert auth.credentials["refresh_token"] == "R2"
    assert provider.refreshes == ["R1"]
    assert path.read_text() == before


def test_update_credentials_writes_through(make_store: Any) -> None:
    make_store().save(GRANT, expected_version=None)
    auth = hr.RefreshAuth(make_store(), Provider().refresher)
    auth.update_credentials({"access_token": "N1", "refresh_token": "NR1"})
    stored = make_store().load()
    assert stored.credentials == {"access_token": "N1", "refresh_token": "NR1"}
    assert stored.version == 2


def test_connector_connect_accepts_a_store(tmp_path: Path) -> None:
    (tmp_path / "spec.yml").write_text(
        "auth:\n"
        "  type: client-credentials\n"
        "  refreshCredentials:\n"
        "    type: mapping\n"
        "    mapping: {access_token: FRESH, expires_in: 3600}\n"
        "  makeApiClient:\n"
        "    type: mapping\n"
        "    mapping:\n"
        "      baseUri: https://api.example.com\n"
        "      headers: {Authorization: {$concat: ['Bearer ', {$var: credentials.access_token}]}}\n"
    )
    store = hr.FileStore(tmp_path / "credentials.json")
    connection = hr.load_connector(tmp_path).connect(credentials=store)
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200)

    with connection.client(transport=httpx.MockTransport(api)) as client:
        client.get("/x")
    assert seen == ["Bearer FRESH"]
    assert store.load().credentials["access_token"] == "FRESH"


@pytest.mark.anyio
async def test_redis_asyncio_client_is_used_on_asyncio(redis_url: str, anyio_backend: str) -> None:
    """With ``async_client`` (redis.asyncio) the async methods use it on asyncio; on trio they
    fall back to the sync client in a worker thread. Same contract either way, and two auth
    objects over it still refresh once."""
    import redis.asyncio

    key = f"test:{uuid.uuid4().hex}"
    async_client = redis.asyncio.Redis.from_url(redis_url) if anyio_backend == "asyncio" else None
    try:
        store = hr.RedisStore(redis_url, key, async_client=async_client)
        assert await store.aload() is None
        assert await store.asave(GRANT, expected_version=None) == 1
        with pytest.raises(hr.StoreError, match="changed meanwhile"):
            await store.asave(GRANT, expected_version=None)
        token = await store.aacquire(5)
        with (
            hr.RedisStore(redis_url, key) as other,
            pytest.raises(hr.StoreError, match="could not take the lock"),
        ):
            await other.aacquire(0.1)
        await store.arelease(token)
        provider = Provider()
        auths = [hr.RefreshAuth(store, provider.refresher) for _ in range(3)]
        provider.access = set()
        transport = httpx.MockTransport(provider.api)
        statuses: list[int] = []

        async def one(auth: hr.RefreshAuth) -> None:
            async with httpx.AsyncClient(auth=auth, transport=transport) as client:
                statuses.append((await client.get("https://api.example.com/x")).status_code)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for auth in auths:
                    group.start_soon(one, auth)
        assert statuses == [200, 200, 200]
        assert provider.refreshes == ["R1"]
        assert (await store.aload()).credentials["refresh_token"] == "R2"
    finally:
        store.close()
        if async_client is not None:
            await async_client.aclose()


def test_R9_after_a_failed_save_the_next_refresh_uses_the_newer_memory_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save failed (disk full) after a refresh rotated R1 -> R2. Later the token is rejected
    again: the next flight must refresh from R2 (in memory) and not adopt the older stored
    R1 (which the provider would refuse, killing the grant); this time the save works."""
    path = tmp_path / "credentials.json"
    store = hr.FileStore(path)
    store.save(GRANT, expected_version=None)
    provider = Provider()
    auth = hr.RefreshAuth(store, provider.refresher, min_refresh_interval=0)
    transport = httpx.MockTransport(provider.api)
    provider.access = set()
    original = hr._stores.write_json_atomic  # type: ignore[attr-defined]

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    with httpx.Client(auth=auth, transport=transport) as client:
        monkeypatch.setattr("httpx_refresh._stores.write_json_atomic", disk_full)
        with pytest.raises(hr.StoreError):
            client.get("https://api.example.com/x")
        monkeypatch.setattr("httpx_refresh._stores.write_json_atomic", original)
        provider.access = set()  # A2 revoked too
        assert client.get("https://api.example.com/x").status_code == 200
    assert provider.refreshes == ["R1", "R2"]
    assert auth.credentials["refresh_token"] == "R3"
    assert hr.FileStore(path).load().credentials["refresh_token"] == "R3"


def test_file_store_sweeps_a_dead_writers_temporary_files(tmp_path: Path) -> None:
    """A writer killed mid-save leaves ``.credentials.json.*.tmp`` (holding credentials); the
    next save deletes those older than a minute, and leaves a fresh one (a live writer's)."""
    path = tmp_path / "credentials.json"
    old = tmp_path / ".credentials.json.abc.tmp"
    fresh = tmp_path / ".credentials.json.def.tmp"
    old.write_text('{"access_token": "leftover"}')
    fresh.write_text("{}")
    os.utime(old, (1, 1))
    hr.FileStore(path).save(GRANT, expected_version=None)
    assert not old.exists()
    assert fresh.exists()
