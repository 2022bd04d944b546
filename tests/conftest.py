"""Shared fixtures: anyio backends and real ASGI servers on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return str(request.param)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` (ASGI) with uvicorn on 127.0.0.1 on a free port; yield its base URL.

    The server runs in a daemon thread with its own event loop, so it answers while
    the test blocks (sync clients, threads) or runs its own loop (asyncio or trio).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_keep_alive=30,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start within 10 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


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
