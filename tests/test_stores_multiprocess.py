"""Credential stores across real processes (issue 5; DESIGN R5 across processes, R9).

Every worker is a separate Python process (``multiprocessing`` "spawn") with its own
``RefreshAuth(store, OAuth2Refresh(...))`` and its own ``httpx.AsyncClient``, talking to a real
:class:`~httpx_refresh._demo.DemoProvider` (refresh-token rotation with reuse detection: a
second refresh with the same refresh token would revoke the grant). Workers report through
JSON files; the parent releases them together through a ``Barrier`` so they really race.

Secrets never reach assertion messages: tokens are compared into booleans first.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
import pytest

import httpx_refresh as hr
from httpx_refresh._demo import DemoProvider, connect_grant

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock are POSIX"),
]

SPAWN = multiprocessing.get_context("spawn")
REQUESTS = 50  # concurrent requests per worker process
READY_TIMEOUT = 60.0  # spawning several interpreters on 2 cores
RUN_TIMEOUT = 30.0  # one worker's requests, refresh included
LOCK_TTL = 2.0  # RedisStore lock expiry in the dead-holder test


# -- worker processes (module level: "spawn" imports this module in the child) -------------------


def _store(spec: dict[str, Any]) -> Any:
    if spec["kind"] == "file":
        return hr.FileStore(spec["path"])
    return hr.RedisStore(spec["url"], spec["key"], lock_ttl=spec.get("lock_ttl", 30.0))


def _write_result(path: str, data: dict[str, Any]) -> None:
    temporary = f"{path}.tmp"
    Path(temporary).write_text(json.dumps(data), encoding="utf-8")
    os.replace(temporary, path)


async def _send(auth: hr.RefreshAuth, url: str, count: int) -> list[Any]:
    """``count`` concurrent GETs; each outcome is a status or a StoreError's details."""
    outcomes: list[Any] = [None] * count

    async def one(client: httpx.AsyncClient, index: int) -> None:
        try:
            outcomes[index] = (await client.get(f"{url}/api/items")).status_code
        except hr.StoreError as exc:
            outcomes[index] = {"error": "StoreError", "message": str(exc), "path": exc.path}
        except hr.HttpxRefreshError as exc:
            outcomes[index] = {"error": type(exc).__name__, "message": str(exc), "path": None}

    with anyio.fail_after(RUN_TIMEOUT):
        async with (
            httpx.AsyncClient(auth=auth, timeout=RUN_TIMEOUT) as client,
            anyio.create_task_group() as group,
        ):
            for index in range(count):
                group.start_soon(one, client, index)
    return outcomes


def _client_worker(job: dict[str, Any], barrier: Any) -> None:
    """A process with its own RefreshAuth on the shared store.

    Builds everything, waits at the barrier twice (ready, then go: the parent may act in
    between), sends ``job["requests"]`` concurrent GETs and writes what happened to
    ``job["result"]``.
    """
    try:
        store = _store(job["store"])
        auth = hr.RefreshAuth(
            store,
            hr.OAuth2Refresh(
                f"{job['url']}/token",
                client_id=job["client_id"],
                client_secret=job["client_secret"],
            ),
        )
    except BaseException:
        barrier.abort()
        raise
    barrier.wait(READY_TIMEOUT)  # ready
    barrier.wait(READY_TIMEOUT)  # go
    limits = None
    if job.get("file_size_limit") is not None:
        # The disk refuses writes beyond a few bytes (EFBIG, SIGXFSZ ignored): the store's
        # temporary file cannot be written. Works for root too, unlike chmod.
        import resource

        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (job["file_size_limit"], limits[1]))
    try:
        outcomes = anyio.run(_send, auth, job["url"], job["requests"], backend=job["backend"])
        # Then, optionally, more requests with whatever credentials the process kept.
        then = anyio.run(_send, auth, job["url"], job.get("then", 0), backend=job["backend"])
    finally:
        if limits is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    _write_result(
        job["result"],
        {
            "outcomes": outcomes,
            "then": then,
            "done_at": time.time(),
            "refresh_token": auth.credentials.get("refresh_token"),
            "access_token": auth.credentials.get("access_token"),
            "refreshes": auth.stats.refreshes,
        },
    )


def _lock_holder(spec: dict[str, Any], result: str, acquired: Any) -> None:
    """Take the store's lock directly, say so, and stay until SIGKILLed."""
    store = _store(spec)
    store.acquire(10)
    _write_result(result, {"acquired_at": time.time()})
    acquired.set()
    time.sleep(120)  # the test SIGKILLs this process long before


def _blob(seq: int) -> str:
    """~200 KB of credentials data determined by ``seq`` (so a torn write is detectable)."""
    return hashlib.sha256(str(seq).encode()).hexdigest() * 3200


def _save_loop(path: str, seq: int) -> None:
    """Save ever newer, large credentials (from ``seq`` on) as fast as possible until SIGKILLed."""
    store = hr.FileStore(path)
    while True:
        store.save(
            {"access_token": f"at-{seq}", "seq": seq, "blob": _blob(seq)},
            expected_version=None,
            force=True,
        )
        seq += 1


# -- the parent's side -------------------------------------------------------------------------


class _Workers:
    """Start client workers together; ``ready()``, act, ``go()``, ``results()``."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = jobs
        self.barrier = SPAWN.Barrier(len(jobs) + 1)
        self.processes = [
            SPAWN.Process(target=_client_worker, args=(job, self.barrier), daemon=True)
            for job in jobs
        ]

    def start(self) -> _Workers:
        for process in self.processes:
            process.start()
        return self

    def ready(self) -> None:
        self.barrier.wait(READY_TIMEOUT)

    def go(self) -> None:
        self.barrier.wait(READY_TIMEOUT)

    def results(self) -> list[dict[str, Any]]:
        deadline = time.monotonic() + RUN_TIMEOUT + 15
        for process in self.processes:
            process.join(max(deadline - time.monotonic(), 0.1))
        codes = [process.exitcode for process in self.processes]
        assert codes == [0] * len(codes), f"worker exit codes {codes}"
        return [json.loads(Path(job["result"]).read_text(encoding="utf-8")) for job in self.jobs]

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join(10)
            process.close()


@contextlib.contextmanager
def _workers(jobs: list[dict[str, Any]]) -> Iterator[_Workers]:
    workers = _Workers(jobs).start()
    try:
        yield workers
    finally:
        workers.stop()


@pytest.fixture
def provider() -> Iterator[tuple[DemoProvider, str]]:
    """A real provider: 1 h access tokens, 200 ms token endpoint, rotation + reuse detection."""
    demo = DemoProvider(ttl=3600, token_latency=0.2)
    with demo as url:
        yield demo, url


@pytest.fixture(params=["file", "redis"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Where the shared credentials live: a FileStore path or a RedisStore key of its own."""
    if request.param == "file":
        return {"kind": "file", "path": str(tmp_path / "credentials.json")}
    url = request.getfixturevalue("redis_url")
    return {"kind": "redis", "url": url, "key": f"httpx-refresh-test:{uuid.uuid4()}"}


def _drop_key(url: str, key: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.delete(key, f"{key}:lock")
    client.close()


@pytest.fixture(autouse=True)
def _drop_redis_keys(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    spec = request.node.funcargs.get("store_spec")
    if spec and spec["kind"] == "redis":
        _drop_key(spec["url"], spec["key"])


def _expired_grant(url: str) -> dict[str, Any]:
    """A fresh grant whose access token the client must consider expired (needs a refresh)."""
    grant = connect_grant(url)
    grant.pop("expires_in", None)
    grant["expires_at"] = time.time() - 600
    return grant


def _job(
    store: dict[str, Any],
    demo: DemoProvider,
    url: str,
    result: Path,
    backend: str,
    requests: int = REQUESTS,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "store": store,
        "url": url,
        "client_id": demo.client_id,
        "client_secret": demo.client_secret,
        "result": str(result),
        "backend": backend,
        "requests": requests,
        **extra,
    }


def _refresh_calls(demo: DemoProvider) -> int:
    return demo.counters().token_calls.get("refresh_token", 0)


def _lock_held(spec: dict[str, Any]) -> bool:
    """Whether another process holds the store's lock (probed without waiting)."""
    probe = _store(spec)
    try:
        token = probe.acquire(0)
    except hr.StoreError:
        return True
    probe.release(token)
    return False


# -- 1. four processes, one refresh -------------------------------------------------------------


def test_R5_four_processes_share_one_refresh_through_the_store(
    provider: tuple[DemoProvider, str],
    store_spec: dict[str, Any],
    anyio_backend: str,
    tmp_path: Path,
) -> None:
    """R5 across processes: 4 processes x 50 concurrent requests, stored token expired.

    Exactly 1 refresh_token call at the provider; all 200 requests get 200; every process
    ends with the same rotated refresh token, which the provider says is active and the
    store holds.
    """
    demo, url = provider
    grant = _expired_grant(url)
    _store(store_spec).save(grant, expected_version=None)
    jobs = [
        _job(store_spec, demo, url, tmp_path / f"worker{i}.json", anyio_backend) for i in range(4)
    ]
    with _workers(jobs) as workers:
        workers.ready()
        workers.go()
        results = workers.results()

    outcomes = [outcome for result in results for outcome in result["outcomes"]]
    errors = [outcome for outcome in outcomes if not isinstance(outcome, int)]
    assert errors == []
    assert outcomes == [200] * 4 * REQUESTS
    assert _refresh_calls(demo) == 1
    assert sum(result["refreshes"] for result in results) == 1
    assert demo.counters().invalid_grant == 0

    tokens = {result["refresh_token"] for result in results}
    same_token = len(tokens) == 1
    assert same_token, f"the processes ended with {len(tokens)} different refresh tokens"
    (token,) = tokens
    rotated = token != grant["refresh_token"]
    assert rotated, "the processes kept the original refresh token"
    assert demo.refresh_token_state(token) == "active"
    assert demo.refresh_token_state(grant["refresh_token"]) == "used"
    stored = _store(store_spec).load()
    assert stored is not None
    store_holds_it = stored.credentials.get("refresh_token") == token
    assert store_holds_it, "the store does not hold the rotated refresh token"
    assert stored.version == 2  # the grant saved above, then exactly one save


# -- 2. a lock holder dies ---------------------------------------------------------------------


def test_R5_lock_holder_killed_other_process_refreshes(
    provider: tuple[DemoProvider, str],
    store_spec: dict[str, Any],
    anyio_backend: str,
    tmp_path: Path,
) -> None:
    """A process holding the store's lock is SIGKILLed; another process's refresh completes.

    FileStore: at once (the OS releases the flock with the dead process). RedisStore: once
    the lock expires (``lock_ttl`` = 2 s), not before it and not much later.
    """
    demo, url = provider
    spec = dict(store_spec, lock_ttl=LOCK_TTL)
    grant = _expired_grant(url)
    _store(spec).save(grant, expected_version=None)

    holder_result = tmp_path / "holder.json"
    acquired = SPAWN.Event()
    holder = SPAWN.Process(
        target=_lock_holder, args=(spec, str(holder_result), acquired), daemon=True
    )
    job = _job(spec, demo, url, tmp_path / "worker.json", anyio_backend)
    holder.start()
    try:
        with _workers([job]) as workers:
            assert acquired.wait(READY_TIMEOUT), "the holder did not take the lock"
            acquired_at = json.loads(holder_result.read_text(encoding="utf-8"))["acquired_at"]
            assert _lock_held(spec)
            workers.ready()
            workers.go()
            assert _refresh_calls(demo) == 0  # nobody refreshed behind the holder's back
            assert holder.pid is not None
            os.kill(holder.pid, signal.SIGKILL)
            killed_at = time.time()
            holder.join(10)
            assert holder.exitcode == -signal.SIGKILL
            (result,) = workers.results()
    finally:
        if holder.is_alive():
            holder.kill()
        holder.join(10)

    assert result["outcomes"] == [200] * REQUESTS
    assert _refresh_calls(demo) == 1
    assert demo.counters().invalid_grant == 0
    done_at = result["done_at"]
    if spec["kind"] == "file":
        assert done_at - killed_at < 3.0, "the flock of the dead process was not released"
    else:
        # Honoured until it expired, then taken over promptly.
        assert done_at >= acquired_at + LOCK_TTL - 0.1
        assert done_at - (acquired_at + LOCK_TTL) < 3.0
    stored = _store(spec).load()
    assert stored is not None
    store_holds_it = stored.credentials.get("refresh_token") == result["refresh_token"]
    assert store_holds_it, "the store does not hold the worker's rotated refresh token"
    assert demo.refresh_token_state(result["refresh_token"]) == "active"


# -- 3. a writer dies mid-write ------------------------------------------------------------------


def test_R9_file_store_survives_sigkill_while_writing(tmp_path: Path) -> None:
    """FileStore writes are atomic: a writer SIGKILLed at random moments (20 times, ~200 KB
    credentials saved in a tight loop) always leaves valid JSON holding one complete
    credentials dict, old or new; ``FileStore(path).load()`` never raises.
    """
    rng = random.Random(5)
    path = tmp_path / "credentials.json"
    hr.FileStore(path).save(
        {"access_token": "at-0", "seq": 0, "blob": _blob(0)}, expected_version=None
    )
    version = 1  # always seq + 1: every save adds one to both
    for _ in range(20):
        writer = SPAWN.Process(target=_save_loop, args=(str(path), version), daemon=True)
        writer.start()
        try:
            target = version + rng.randint(1, 8)
            deadline = time.monotonic() + READY_TIMEOUT
            while True:  # wait until the writer has saved a few times, reading meanwhile
                stored = hr.FileStore(path).load()
                assert stored is not None
                last_read = stored.version
                if last_read >= target:
                    break
                assert writer.is_alive(), "the writer died on its own"
                assert time.monotonic() < deadline, "the writer makes no progress"
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.01))  # a random moment inside the write loop
            assert writer.pid is not None
            os.kill(writer.pid, signal.SIGKILL)
            writer.join(10)
            assert writer.exitcode == -signal.SIGKILL
        finally:
            if writer.is_alive():
                writer.kill()
            writer.join(10)
            writer.close()

        document = json.loads(path.read_text(encoding="utf-8"))  # valid JSON
        stored = hr.FileStore(path).load()
        assert stored is not None
        assert document["version"] == stored.version
        seq = stored.credentials["seq"]
        assert stored.version == seq + 1
        assert stored.version >= last_read  # old or new, never older than seen
        complete = stored.credentials == {
            "access_token": f"at-{seq}",
            "seq": seq,
            "blob": _blob(seq),
        }
        assert complete, f"torn credentials at version {stored.version}"
        assert path.stat().st_mode & 0o777 == 0o600
        version = stored.version


# -- 4. store failures ------------------------------------------------------------------------


class _TcpProxy:
    """A TCP forwarder to Redis that can be closed, as if Redis went away (port closed)."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._mutex = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            with self._mutex:
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the blocked accept() (Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._mutex:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _close_proxy(proxy: _TcpProxy) -> None:
    proxy.close()
    with pytest.raises(ConnectionRefusedError):  # the port is really closed now
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()


def _modes_ignored(directory: Path) -> bool:
    """Whether this user (root) may write into a 0o500 directory anyway."""
    directory.chmod(0o500)
    try:
        return os.access(directory, os.W_OK)
    finally:
        directory.chmod(0o700)


def _redis_user_without_hset(url: str) -> tuple[str, Callable[[], None]]:
    """A Redis ACL user that may lock and read but not write the hash (HSET denied)."""
    import redis

    user, password = f"httpx-refresh-ro-{uuid.uuid4().hex}", uuid.uuid4().hex
    admin = redis.Redis.from_url(url)
    admin.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        categories=["+@all"],
        commands=["-hset"],
        keys=["*"],
        channels=["*"],
    )
    parts = urlsplit(url)
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"

    def drop() -> None:
        admin.acl_deluser(user)
        admin.close()

    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), drop


@pytest.mark.parametrize("how", ["file-readonly-dir", "file-lock-path-blocked", "redis-went-away"])
def test_R9_store_unusable_when_refresh_needed_raises_store_error(
    provider: tuple[DemoProvider, str],
    anyio_backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    how: str,
) -> None:
    """The store cannot be locked when a refresh is needed (directory not writable, lock
    path unusable, Redis gone): every request that needs the refresh gets ``StoreError``
    naming the path / key, and no refresh runs (the grant's refresh token stays active).
    """
    demo, url = provider
    grant = _expired_grant(url)
    directory = tmp_path / "store"
    directory.mkdir()
    path = directory / "credentials.json"
    cleanups: list[Callable[[], None]] = [lambda: directory.chmod(0o700)]
    if how == "redis-went-away":
        redis_url = request.getfixturevalue("redis_url")
        key = f"httpx-refresh-test:{uuid.uuid4()}"
        hr.RedisStore(redis_url, key).save(grant, expected_version=None)
        cleanups.append(functools.partial(_drop_key, redis_url, key))
        upstream = urlsplit(redis_url)
        proxy = _TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 6379)
        cleanups.append(proxy.close)
        spec: dict[str, Any] = {"kind": "redis", "url": f"redis://127.0.0.1:{proxy.port}/0"}
        spec["key"] = key
        where = f"redis:{key}"
        act = functools.partial(_close_proxy, proxy)
    else:
        spec = {"kind": "file", "path": str(path)}
        where = str(path)
        hr.FileStore(path).save(grant, expected_version=None)
        if how == "file-readonly-dir":
            if _modes_ignored(directory):
                pytest.skip("running as root: a 0o500 directory stays writable")
            act = lambda: directory.chmod(0o500)  # noqa: E731
        else:  # something else (a directory) sits where the lock file goes
            act = Path(f"{path}.lock").mkdir
    job = _job(spec, demo, url, tmp_path / "worker.json", anyio_backend, requests=10)
    try:
        with _workers([job]) as workers:
            workers.ready()
            act()  # the store breaks after RefreshAuth loaded it
            workers.go()
            (result,) = workers.results()
    finally:
        for cleanup in cleanups:
            cleanup()

    outcomes = result["outcomes"]
    kinds = [outcome["error"] if isinstance(outcome, dict) else outcome for outcome in outcomes]
    assert kinds == ["StoreError"] * 10
    assert all(where in outcome["path"] and where in outcome["message"] for outcome in outcomes)
    assert _refresh_calls(demo) == 0
    assert demo.refresh_token_state(grant["refresh_token"]) == "active"
    kept = result["refresh_token"] == grant["refresh_token"]
    assert kept, "the worker's credentials changed although no refresh ran"


@pytest.mark.parametrize("how", ["file-readonly-dir", "file-write-refused", "redis-hset-denied"])
def test_R9_save_fails_after_refresh_rotated_token_kept_in_memory(
    provider: tuple[DemoProvider, str],
    anyio_backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    how: str,
) -> None:
    """R9: the refresh succeeds but the store refuses the save (directory not writable, the
    disk refuses the write, Redis denies HSET). The requests get ``StoreError`` naming the
    path / key; the process keeps the NEW rotated refresh token in memory (the provider says
    it is active) and its later requests succeed without another refresh; the store still
    holds the old grant.
    """
    demo, url = provider
    grant = _expired_grant(url)
    directory = tmp_path / "store"
    directory.mkdir()
    path = directory / "credentials.json"
    cleanups: list[Callable[[], None]] = [lambda: directory.chmod(0o700)]
    extra: dict[str, Any] = {}
    act: Callable[[], None] = lambda: None  # noqa: E731
    if how == "redis-hset-denied":
        redis_url = request.getfixturevalue("redis_url")
        key = f"httpx-refresh-test:{uuid.uuid4()}"
        hr.RedisStore(redis_url, key).save(grant, expected_version=None)
        limited_url, drop_user = _redis_user_without_hset(redis_url)
        cleanups.append(drop_user)
        cleanups.append(functools.partial(_drop_key, redis_url, key))
        spec: dict[str, Any] = {"kind": "redis", "url": limited_url, "key": key}
        where = f"redis:{key}"
        check_spec: dict[str, Any] = {"kind": "redis", "url": redis_url, "key": key}
    else:
        spec = check_spec = {"kind": "file", "path": str(path)}
        where = str(path)
        hr.FileStore(path).save(grant, expected_version=None)
        if how == "file-readonly-dir":
            if _modes_ignored(directory):
                pytest.skip("running as root: a 0o500 directory stays writable")
            store = hr.FileStore(path)
            store.release(store.acquire(1))  # the lock file exists; only new files fail
            act = lambda: directory.chmod(0o500)  # noqa: E731
        else:
            extra["file_size_limit"] = 64  # the document is several hundred bytes
    job = _job(
        spec, demo, url, tmp_path / "worker.json", anyio_backend, requests=10, then=10, **extra
    )
    try:
        with _workers([job]) as workers:
            workers.ready()
            act()
            workers.go()
            (result,) = workers.results()
        stored = _store(check_spec).load()
    finally:
        for cleanup in cleanups:
            cleanup()

    outcomes = result["outcomes"]
    kinds = [outcome["error"] if isinstance(outcome, dict) else outcome for outcome in outcomes]
    assert kinds == ["StoreError"] * 10
    assert all(where in outcome["path"] and where in outcome["message"] for outcome in outcomes)
    assert _refresh_calls(demo) == 1
    new_token = result["refresh_token"]
    rotated = new_token != grant["refresh_token"]
    assert rotated, "the rotated refresh token was lost from memory"
    assert demo.refresh_token_state(new_token) == "active"
    assert result["then"] == [200] * 10  # the process goes on with the rotated token
    assert _refresh_calls(demo) == 1
    assert stored is not None
    store_unchanged = stored.credentials == grant and stored.version == 1
    assert store_unchanged, "the failed save changed the store"


def test_R9_corrupt_file_store_error_at_construction_file_unchanged(tmp_path: Path) -> None:
    """A credentials file that is not valid JSON: ``RefreshAuth`` construction raises
    ``StoreError`` naming the path, and the file is left byte for byte as it was.
    """
    path = tmp_path / "credentials.json"
    corrupt = b'{"access_token": "at-x", "refresh_token": "rt-'  # cut short
    path.write_bytes(corrupt)
    before = os.stat(path)
    with pytest.raises(hr.StoreError) as caught:
        hr.RefreshAuth(hr.FileStore(path), hr.OAuth2Refresh("http://127.0.0.1:9/token"))
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert "rt-" not in str(caught.value)
    assert path.read_bytes() == corrupt
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.json"]


def test_R9_redis_closed_port_store_error_at_construction() -> None:
    """A RedisStore pointing at a closed port: ``RefreshAuth`` construction (which loads the
    credentials) raises ``StoreError`` naming the key, within a bounded time.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]  # closed when the block ends
    key = f"httpx-refresh-test:{uuid.uuid4()}"
    started = time.monotonic()
    with pytest.raises(hr.StoreError) as caught:
        hr.RefreshAuth(
            hr.RedisStore(f"redis://127.0.0.1:{port}/0", key),
            hr.OAuth2Refresh("http://127.0.0.1:9/token"),
        )
    assert caught.value.path == f"redis:{key}"
    assert key in str(caught.value)
    assert time.monotonic() - started < 15
