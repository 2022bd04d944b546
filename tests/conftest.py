"""Shared fixtures: anyio backends and real ASGI servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from httpx_refresh._demo import serve_asgi


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
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
