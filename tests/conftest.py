"""Shared fixtures: anyio backends and real ASGI servers on 127.0.0.1."""

from __future__ import annotations

import os

if os.environ.get("HTTPX_REFRESH_TEST_LIBRARY") == "httpx2":
    # The whole suite against httpx2: every `import httpx` (tests and library alike)
    # resolves to httpx2 from here on (httpx2's own alias_httpx; it refuses if httpx was
    # imported before). The side-by-side tests of both libraries are test_httpx2.py.
    import httpx2

    httpx2.alias_httpx()

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from httpx_refresh._demo import serve_asgi


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return str(request.param)


@pytest.fixture(params=["sync", "asyncio", "trio"])
def client_flavour(request: pytest.FixtureRequest) -> str:
    """A sync ``httpx.Client``, or an ``httpx.AsyncClient`` on asyncio or on trio (for tests
    that run their own loop with ``anyio.run``, e.g. through ``servers.get_every``)."""
    return str(request.param)


def serve(app: Any) -> AbstractContextManager[str]:
    """Run ``app`` (ASGI) with uvicorn on 127.0.0.1 on a free port; yield its base URL.

    The server runs in a daemon thread with its own event loop, so it answers while
    the test blocks (sync clients, threads) or runs its own loop (asyncio or trio).
    """
    return serve_asgi(app)


@pytest.fixture
def run_server() -> Iterator[Callable[[Any], str]]:
    """Start ASGI apps on 127.0.0.1 for the duration of a test: ``base_url = run_server(app)``."""
    stack: list[Any] = []

    def start(app: Any) -> str:
        cm = serve(app)
        url = cm.__enter__()
        stack.append(cm)
        return url

    yield start
    while stack:
        stack.pop().__exit__(None, None, None)


# -- a real Redis ------------------------------------------------------------------------------
# .ci/run starts redis-server on a free port and exports HTTPX_REFRESH_REDIS_URL, and sets
# HTTPX_REFRESH_REQUIRE_REDIS=1 so that the Redis tests fail there instead of skipping. Locally,
# a redis-server on PATH is started for the session; without one, the Redis tests skip.


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real Redis server on 127.0.0.1 (see the comment above)."""
    import os
    import shutil
    import subprocess
    import time

    url = os.environ.get("HTTPX_REFRESH_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("HTTPX_REFRESH_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is required here (HTTPX_REFRESH_REQUIRE_REDIS=1)")
        pytest.skip("redis-server is not installed (CI installs and starts it)")
    import redis

    port = _free_port()
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("redis-server did not start within 10 s")
            time.sleep(0.05)
    client.close()
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(params=["memory", "file", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Callable[[], Any]]:
    """A factory of handles on one empty credential store location of one kind (a new object
    per call, except for MemoryStore, which is one object: it cannot be shared otherwise)."""
    import uuid

    import httpx_refresh as hr

    kind = request.param
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        key = f"test:{uuid.uuid4().hex}"
        made: list[hr.RedisStore] = []

        def make() -> hr.RedisStore:
            made.append(hr.RedisStore(url, key))
            return made[-1]

        yield make
        for store in made:
            store.close()
        return
    if kind == "file":
        path = tmp_path / "credentials.json"
        yield lambda: hr.FileStore(path)
        return
    shared = hr.MemoryStore()
    yield lambda: shared
