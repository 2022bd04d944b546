"""httpx2 (the maintained fork of httpx), issue 9: ``httpx_refresh.httpx2.RefreshAuth`` is
accepted by httpx2 clients and behaves as the httpx one (one decision core); built-in
refreshers call the token endpoint with the library of the client that needed the
refresh; an httpx RefreshAuth and its httpx2 view share one single flight.

``.ci/run`` installs httpx2 and sets ``HTTPX_REFRESH_REQUIRE_HTTPX2=1``, so there these
tests fail instead of skipping when httpx2 is missing.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import httpx_refresh as hr

if os.environ.get("HTTPX_REFRESH_REQUIRE_HTTPX2") == "1":
    import httpx2
else:
    httpx2 = pytest.importorskip("httpx2")

from httpx_refresh import httpx2 as hr2

pytestmark = pytest.mark.integration


@dataclass
class Provider:
    """A token endpoint (refresh_token grant, rotation) and an API that wants the newest
    token; it records which library (User-Agent) each token request came from."""

    issued: int = 0
    agents: list[str] = field(default_factory=list)
    hit: threading.Event = field(default_factory=threading.Event)
    release: threading.Event | None = None

    @property
    def token(self) -> str:
        return f"at-{self.issued}"

    async def token_endpoint(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        self.agents.append(request.headers.get("user-agent", "").split("/")[0])
        self.hit.set()
        if self.release is not None:
            await anyio.to_thread.run_sync(self.release.wait, 20.0)
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != (
            f"rt-{self.issued}"
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        self.issued += 1
        return JSONResponse(
            {
                "access_token": self.token,
                "refresh_token": f"rt-{self.issued}",
                "token_type": "Bearer",
                "expires_in": 3600,
            }
        )

    async def api(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"ok": True, "body": (await request.body()).decode()})

    def app(self) -> Any:
        return Starlette(
            routes=[
                Route("/token", self.token_endpoint, methods=["POST"]),
                Route("/api", self.api, methods=["GET", "POST"]),
            ]
        )


@pytest.fixture
def provider(run_server: Any) -> tuple[Provider, str]:
    state = Provider()
    return state, run_server(state.app())


async def _storm(state: Provider, clients: list[Any], url: str, each: int) -> list[int]:
    """``each`` GETs from every client at once; the token endpoint (``state.release`` set
    by the caller) answers only once the refresh has reached it. The statuses."""
    statuses: list[int] = []

    async def get(client: Any) -> None:
        statuses.append((await client.get(url)).status_code)

    assert state.release is not None
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for _ in range(each):
                for client in clients:
                    group.start_soon(get, client)
            await anyio.to_thread.run_sync(state.hit.wait, 20.0)
            state.release.set()
    return statuses


def _auth(cls: Any, base: str, **options: Any) -> Any:
    return cls(
        {"access_token": "stale", "refresh_token": "rt-0", "scope": "read"},
        hr.OAuth2Refresh(f"{base}/token", client_id="app", client_secret="s3cret"),
        **options,
    )


def test_httpx2_client_accepts_only_the_httpx2_flavour(provider: tuple[Provider, str]) -> None:
    """httpx2 clients take ``httpx_refresh.httpx2.RefreshAuth`` (an ``httpx2.Auth``); the
    httpx one is not an ``httpx2.Auth`` (httpx2 refuses it), which is why the flavour
    exists."""
    _, base = provider
    auth = _auth(hr2.RefreshAuth, base)
    assert isinstance(auth, httpx2.Auth)
    assert not isinstance(auth, httpx.Auth)
    assert not isinstance(_auth(hr.RefreshAuth, base), httpx2.Auth)
    with httpx2.Client(auth=auth) as client:
        assert client.get(f"{base}/api").status_code == 200
    # The repr says which library an auth is for (passing the wrong one to a client is
    # the usual mistake: the client's TypeError shows this repr).
    assert repr(auth).startswith("<RefreshAuth (httpx2) version=")
    assert repr(hr.RefreshAuth.sharing(auth)).startswith("<RefreshAuth (httpx) version=")


@pytest.mark.anyio
async def test_R5_httpx2_async_50_concurrent_401s_one_refresh_with_httpx2(
    provider: tuple[Provider, str],
) -> None:
    """50 concurrent httpx2 requests with a stale token: exactly one token-endpoint call,
    made with httpx2 (the library of the client that needed it), every request replayed
    and successful, the other credential keys kept (DESIGN R5, R8)."""
    state, base = provider
    auth = _auth(hr2.RefreshAuth, base)
    statuses: list[int] = []
    async with httpx2.AsyncClient(auth=auth) as client:

        async def one() -> None:
            statuses.append((await client.get(f"{base}/api")).status_code)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for _ in range(50):
                    group.start_soon(one)
    assert statuses == [200] * 50
    assert state.agents == ["python-httpx2"]
    assert auth.stats.refreshes == 1
    assert auth.stats.deduplicated == 49
    assert auth.credentials["scope"] == "read"
    assert auth.credentials["refresh_token"] == "rt-1"


def test_R5_R14_httpx2_sync_threads_one_refresh(provider: tuple[Provider, str]) -> None:
    """16 threads on one ``httpx2.Client``, released together: one refresh (httpx2)."""
    state, base = provider
    auth = _auth(hr2.RefreshAuth, base)
    barrier = threading.Barrier(16)
    statuses: list[int] = []
    with httpx2.Client(auth=auth) as client:

        def one() -> None:
            barrier.wait(timeout=10)
            statuses.append(client.get(f"{base}/api").status_code)

        threads = [threading.Thread(target=one) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert statuses == [200] * 16
    assert state.agents == ["python-httpx2"]


@pytest.mark.anyio
async def test_R14_httpx_and_httpx2_clients_share_one_flight(
    provider: tuple[Provider, str],
) -> None:
    """An httpx RefreshAuth and its httpx2 view (``sharing``): 20 httpx and 20 httpx2
    requests rejected at once get exactly one token-endpoint call between them, and both
    see the same credentials and stats afterwards."""
    state, base = provider
    state.release = threading.Event()
    auth = _auth(hr.RefreshAuth, base)
    view = hr2.RefreshAuth.sharing(auth)
    assert isinstance(view, httpx2.Auth)
    assert hr.RefreshAuth.sharing(view).credentials is auth.credentials
    async with httpx.AsyncClient(auth=auth) as one, httpx2.AsyncClient(auth=view) as two:
        statuses = await _storm(state, [one, two], f"{base}/api", 20)
    assert statuses == [200] * 40
    assert len(state.agents) == 1
    assert auth.stats.refreshes == view.stats.refreshes == 1
    assert view.credentials["access_token"] == auth.credentials["access_token"] == "at-1"


def test_token_request_library_follows_the_caller(provider: tuple[Provider, str]) -> None:
    """One refresher shared by both flavours: the token request goes out with httpx when
    an httpx client needed the refresh, and with httpx2 when an httpx2 client did."""
    state, base = provider
    auth = _auth(hr.RefreshAuth, base)
    view = hr2.RefreshAuth.sharing(auth)
    with httpx2.Client(auth=view) as two, httpx.Client(auth=auth) as one:
        assert two.get(f"{base}/api").status_code == 200
        state.issued += 1  # the provider moves on: the API wants at-2 (a new grant)
        auth.update_credentials({"access_token": "stale", "refresh_token": "rt-2"})
        assert one.get(f"{base}/api").status_code == 200
    assert state.agents == ["python-httpx2", "python-httpx"]


@pytest.mark.anyio
async def test_R12_httpx2_bodies_replay_or_raise(provider: tuple[Provider, str]) -> None:
    """An httpx2 request body is replayed exactly after the refresh; a generator body
    (not re-readable) raises RequestNotReplayable after the refresh (DESIGN R12)."""
    state, base = provider
    auth = _auth(hr2.RefreshAuth, base)
    async with httpx2.AsyncClient(auth=auth) as client:
        response = await client.post(f"{base}/api", content=b"exact bytes")
        assert response.json()["body"] == "exact bytes"
        auth.update_credentials({"access_token": "stale", "refresh_token": "rt-1"})

        async def stream() -> Any:
            yield b"once"

        with pytest.raises(hr.RequestNotReplayable):
            await client.post(f"{base}/api", content=stream())
    assert state.issued == 2


def test_R13_httpx2_origins_and_redirect_guard(run_server: Any) -> None:
    """``origins=`` works with httpx2 URLs (other origins get nothing), and the redirect
    guard strips credentials from a cross-origin redirect of an httpx2 client (R13)."""
    seen: list[str | None] = []

    async def echo(request: Request) -> Response:
        seen.append(request.headers.get("authorization"))
        return JSONResponse({})

    other = run_server(Starlette(routes=[Route("/x", echo)]))

    async def bounce(request: Request) -> Response:
        return Response(status_code=302, headers={"location": f"{other}/x"})

    home = run_server(Starlette(routes=[Route("/r", bounce), Route("/x", echo)]))
    auth = hr2.RefreshAuth(
        {"access_token": "token-1"}, lambda **_: {"access_token": "token-2"}, origins=[home]
    )
    with httpx2.Client(
        auth=auth, follow_redirects=True, event_hooks={"request": [auth.redirect_guard]}
    ) as client:
        client.get(f"{home}/x")
        client.get(f"{other}/x")
        client.get(f"{home}/r")
    assert seen == ["Bearer token-1", None, None]


SPEC = """
name: Provider
auth:
  type: oauth2
  getOAuthConfig:
    type: mapping
    mapping:
      clientId: app
      clientSecret: s3cret
      authorizeUri: {base}/authorize
      tokenUri: {base}/token
  makeApiClient:
    type: mapping
    mapping:
      baseUri: {base}
      headers:
        Authorization:
          $concat: ['Bearer ', {{$var: credentials.access_token}}]
"""


@pytest.mark.anyio
async def test_connection_clients_of_both_libraries_share_one_refresh(
    provider: tuple[Provider, str], tmp_path: Any
) -> None:
    """A connector connection builds httpx2 clients (``library="httpx2"``) as well as
    httpx ones; 20 requests from each, rejected together, get exactly one token call, and
    ``auth_for("httpx2")`` is an ``httpx2.Auth`` sharing the connection's state."""
    state, base = provider
    state.release = threading.Event()
    (tmp_path / "spec.yml").write_text(SPEC.format(base=base))
    connection = hr.load_connector(tmp_path).connect(
        credentials={"access_token": "stale", "refresh_token": "rt-0", "tenant": "t1"}
    )
    assert isinstance(connection.auth_for("httpx2"), httpx2.Auth)
    assert connection.auth_for("httpx") is connection.auth
    async with (
        connection.async_client() as one,
        connection.async_client(library="httpx2") as two,
    ):
        assert isinstance(two, httpx2.AsyncClient)
        statuses = await _storm(state, [one, two], "/api", 20)
    assert statuses == [200] * 40
    assert len(state.agents) == 1
    assert connection.auth.stats.refreshes == 1
    assert connection.credentials["tenant"] == "t1"
    with connection.client(library="httpx2") as client:
        assert isinstance(client, httpx2.Client)
        assert client.get("/api").status_code == 200


def test_connection_client_rate_limit_retry_with_httpx2(run_server: Any, tmp_path: Any) -> None:
    """The connection's 429 retry wraps an httpx2 transport too: one 429 (Retry-After 0),
    then the same request succeeds."""
    calls: list[int] = []

    async def limited(request: Request) -> Response:
        calls.append(1)
        if len(calls) == 1:
            return JSONResponse({}, status_code=429, headers={"Retry-After": "0"})
        return JSONResponse({"ok": True})

    base = run_server(Starlette(routes=[Route("/api", limited)]))
    (tmp_path / "spec.yml").write_text(SPEC.format(base=base))
    connection = hr.load_connector(tmp_path).connect(
        credentials={"access_token": "good", "refresh_token": "rt-0"}
    )
    with connection.client(library="httpx2") as client:
        response = client.get("/api")
    assert (response.status_code, len(calls)) == (200, 2)


def test_unknown_library_is_a_value_error(provider: tuple[Provider, str], tmp_path: Any) -> None:
    """``library=`` takes ``"httpx"`` or ``"httpx2"``."""
    _, base = provider
    (tmp_path / "spec.yml").write_text(SPEC.format(base=base))
    connection = hr.load_connector(tmp_path).connect(credentials={"access_token": "a"})
    with pytest.raises(ValueError, match="httpx, httpx2"):
        connection.client(library="requests")


def test_demo_runs_on_httpx2() -> None:
    """``httpx-refresh demo --library httpx2``: httpx2 clients, the httpx2 RefreshAuth and
    httpx2 token requests; the run passes its own checks (exit 0)."""
    import io

    from httpx_refresh._demo import DemoOptions, run_demo

    out = io.StringIO()
    options = DemoOptions(requests=300, concurrency=30, library="httpx2", progress=False)
    assert run_demo(options, out=out, err=io.StringIO()) == 0
    report = out.getvalue()
    assert "2 httpx2.AsyncClients sharing one RefreshAuth" in report
    assert "OK: 300 requests" in report


def test_compare_benchmark_runs_on_httpx2(tmp_path: Any) -> None:
    """``benchmarks/compare.py --library httpx2 --quick``: every strategy runs on httpx2
    (httpx_refresh through httpx_refresh.httpx2) and httpx_refresh meets its count
    targets (exit 0; timing is not a test: --no-cost-target)."""
    import json
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "compare.py"
    out = tmp_path / "compare-httpx2.json"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            *("--library", "httpx2", "--quick", "--no-cost-target", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    document = json.loads(out.read_text())
    assert document["library"] == "httpx2"
    storms = [
        cell
        for cell in document["cells"]
        if cell["strategy"] == "httpx_refresh" and cell["scenario"] == "storm"
    ]
    assert storms
    assert all(cell["token_calls"] == 1 and cell["failures"] == 0 for cell in storms)
