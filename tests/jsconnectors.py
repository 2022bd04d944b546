"""Helpers for the JavaScript-method tests: Node.js, the docs example, a token server.

``.ci/run`` runs ``npm ci`` in ``tests/js/docs-example`` and sets
``HTTPX_REFRESH_REQUIRE_NODE=1``, so there these tests fail instead of skipping when Node.js
or the example's ``node_modules`` is missing.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DOCS_EXAMPLE = Path(__file__).parent / "js" / "docs-example"
EXAMPLE_HOST = "https://api.example.com"
CLIENT_ID = "docs-client"
CLIENT_SECRET = "docs-client-secret-8f3a"  # a secret: must never show in messages or logs
PARAMETERS = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}


def require_node() -> str:
    """The ``node`` on PATH; skip (or fail under ``HTTPX_REFRESH_REQUIRE_NODE=1``) without it."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("HTTPX_REFRESH_REQUIRE_NODE") == "1":
            pytest.fail("Node.js is required here (HTTPX_REFRESH_REQUIRE_NODE=1)")
        pytest.skip("Node.js is not installed (CI installs it)")
    return node


def require_docs_modules() -> Path:
    """The docs example's ``node_modules`` (``npm ci`` there); skip or fail without it."""
    require_node()
    modules = DOCS_EXAMPLE / "node_modules"
    if not (modules / "axios").is_dir():
        if os.environ.get("HTTPX_REFRESH_REQUIRE_NODE") == "1":
            pytest.fail(f"run npm ci in {DOCS_EXAMPLE} (HTTPX_REFRESH_REQUIRE_NODE=1)")
        pytest.skip(f"axios is not installed in {DOCS_EXAMPLE} (run npm ci there)")
    return modules


def get_from_threads(client: Any, path: str, count: int) -> list[int]:
    """GET ``path`` from ``count`` threads released together; the statuses (bounded waits)."""
    barrier = threading.Barrier(count)
    statuses: list[int] = []

    def one() -> None:
        barrier.wait(timeout=10)
        statuses.append(client.get(path).status_code)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return statuses


def counting_node(directory: Path) -> tuple[Path, Callable[[], int]]:
    """A ``node`` that counts its runs (one line per process in a file), then is node."""
    real = require_node()
    directory.mkdir(parents=True, exist_ok=True)
    counter = directory / "node-runs"
    counter.write_text("")
    wrapper = directory / "node"
    wrapper.write_text(f'#!/bin/sh\necho run >> "{counter}"\nexec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return wrapper, lambda: len(counter.read_text().splitlines())


def copy_docs_example(destination: Path, base_url: str) -> Path:
    """The docs example in ``destination``, its ``https://api.example.com`` made ``base_url``.

    Nothing else in the files changes; ``node_modules`` is linked, not copied.
    """
    modules = require_docs_modules()
    target = destination / "docs-example"
    shutil.copytree(DOCS_EXAMPLE, target, ignore=shutil.ignore_patterns("node_modules"))
    (target / "node_modules").symlink_to(modules.resolve(), target_is_directory=True)
    for path in target.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix in (".js", ".yml"):
            path.write_text(path.read_text().replace(EXAMPLE_HOST, base_url))
    return target


def write_connector(root: Path, spec: str, files: dict[str, str] | None = None) -> Path:
    """A connector folder: ``spec.yml`` and method files (dedented)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "spec.yml").write_text(textwrap.dedent(spec))
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@dataclass
class TokenServer:
    """A token endpoint (HTTP Basic client auth) and an API that wants its latest token.

    ``mode``: ``ok`` (a new ``tok-N`` each call), ``empty`` (200 without a token),
    ``unavailable`` (503, Retry-After 0), ``invalid_grant`` (400).
    """

    mode: str = "ok"
    token_calls: int = 0
    api_calls: int = 0
    bodies: list[str] = field(default_factory=list)
    bad_client_auth: int = 0
    hit: threading.Event = field(default_factory=threading.Event)  # set on each token call
    release: threading.Event | None = None  # when set: the token call waits for it

    @property
    def token(self) -> str:
        return f"tok-{self.token_calls}"

    async def token_endpoint(self, request: Request) -> Response:
        self.token_calls += 1
        self.bodies.append((await request.body()).decode())
        self.hit.set()
        if self.release is not None:
            await anyio.to_thread.run_sync(self.release.wait, 20.0)
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            self.bad_client_auth += 1
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if self.mode == "empty":
            return JSONResponse({"token_type": "bearer"})
        if self.mode == "unavailable":
            return JSONResponse(
                {"error": "temporarily_unavailable"}, status_code=503, headers={"Retry-After": "0"}
            )
        if self.mode == "invalid_grant":
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(
            {
                "access_token": self.token,
                "refresh_token": f"rt-{self.token_calls}",
                "expires_in": 3600,
            }
        )

    async def me(self, request: Request) -> Response:
        self.api_calls += 1
        if self.token_calls == 0 or request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"id": 7, "name": "Ada", "query": dict(request.query_params)})

    async def echo(self, request: Request) -> Response:
        if self.token_calls == 0 or request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse(
            {
                "method": request.method,
                "body": (await request.body()).decode(),
                "type": request.headers.get("content-type"),
                "query": dict(request.query_params),
                "header": request.headers.get("x-extra"),
            }
        )

    async def forbidden(self, request: Request) -> Response:
        return JSONResponse({"error": "forbidden"}, status_code=403)

    def app(self) -> Any:
        return Starlette(
            routes=[
                Route("/oauth/token", self.token_endpoint, methods=["POST"]),
                Route("/me", self.me),
                Route("/echo", self.echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
                Route("/forbidden", self.forbidden),
            ]
        )
