"""httpx2 hardening (issue 9): mixed-library single flight under threads and tasks,
cancellation during an httpx2 refresh, the token-request library of a refresher given a
transport, transient httpx2 network errors, httpx2 URLs as origins, generator bodies,
query-credential redaction in httpx2's logger, and a FileStore shared across flavours."""

from __future__ import annotations

import logging
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
from httpx_refresh._retry import is_transient

pytestmark = pytest.mark.integration


@dataclass
class Provider:
    """Rotating refresh_token grant and an API that wants the newest token."""

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
        if form.get("refresh_token") != f"rt-{self.issued}":
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        self.issued += 1
        return JSONResponse(
            {"access_token": self.token, "refresh_token": f"rt-{self.issued}", "expires_in": 3600}
        )

    async def api(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"ok": True})

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


def _auth(cls: Any, base: str, credentials: Any = None, **options: Any) -> Any:
    return cls(
        credentials or {"access_token": "stale", "refresh_token": "rt-0"},
        hr.OAuth2Refresh(f"{base}/token", client_id="app", client_secret="s3cret"),
        **options,
    )


def test_R5_R14_sync_threads_and_async_tasks_of_both_libraries_one_refresh(
    provider: tuple[Provider, str],
) -> None:
    """R5/R14: httpx and httpx2 sync clients in 8 threads each plus an event loop thread
    running 10 httpx and 10 httpx2 async tasks, all on one RefreshAuth and its sharing()
    view, released together: exactly one token-endpoint call, one shared stats."""
    state, base = provider
    state.release = threading.Event()
    auth = _auth(hr.RefreshAuth, base)
    view = hr2.RefreshAuth.sharing(auth)
    statuses: list[int] = []
    lock = threading.Lock()

    def record(status: int) -> None:
        with lock:
            statuses.append(status)

    def sync_one(client: Any) -> None:
        record(client.get(f"{base}/api").status_code)

    async def async_all() -> None:
        async with httpx.AsyncClient(auth=auth) as one, httpx2.AsyncClient(auth=view) as two:

            async def get(client: Any) -> None:
                record((await client.get(f"{base}/api")).status_code)

            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    for _ in range(10):
                        group.start_soon(get, one)
                        group.start_soon(get, two)

    with httpx.Client(auth=auth) as c1, httpx2.Client(auth=view) as c2:
        threads = [threading.Thread(target=sync_one, args=(c,)) for c in [c1, c2] * 8]
        threads.append(threading.Thread(target=anyio.run, args=(async_all,)))
        for thread in threads:
            thread.start()
        assert state.hit.wait(20)
        state.release.set()
        for thread in threads:
            thread.join(timeout=40)
        assert not any(thread.is_alive() for thread in threads)
    assert statuses == [200] * 36
    assert len(state.agents) == 1
    assert auth.stats.refreshes == view.stats.refreshes == 1
    assert auth.stats is view.stats or auth.stats == view.stats


@pytest.mark.anyio
async def test_R7_httpx2_cancelled_during_refresh_keeps_rotated_token(
    provider: tuple[Provider, str],
) -> None:
    """R7: an httpx2 request cancelled while its refresh is at the token endpoint: the
    rotated token is kept, so the next request works without a second token call."""
    state, base = provider
    state.release = threading.Event()
    auth = _auth(hr2.RefreshAuth, base)
    async with httpx2.AsyncClient(auth=auth) as client:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(client.get, f"{base}/api")
                await anyio.to_thread.run_sync(state.hit.wait, 20.0)
                group.cancel_scope.cancel()
                state.release.set()
            response = await client.get(f"{base}/api")
    assert response.status_code == 200
    assert state.agents == ["python-httpx2"]
    assert auth.credentials["refresh_token"] == "rt-1"


class _MyHttpx2Transport(httpx2.MockTransport):
    """A user's own transport class (its module is not httpx2's)."""


def test_refresher_transport_subclass_decides_the_library() -> None:
    """OAuth2Refresh given an httpx2 transport (a user subclass of httpx2.MockTransport),
    used from an httpx client: the token request must go out with httpx2 (the library of
    the transport) and the refresh succeed, consistently."""
    calls: list[str] = []

    def token(request: Any) -> Any:
        calls.append(type(request).__module__.split(".")[0])
        return httpx2.Response(200, json={"access_token": "at-1", "refresh_token": "rt-1"})

    def api(request: httpx.Request) -> httpx.Response:
        ok = request.headers.get("authorization") == "Bearer at-1"
        return httpx.Response(200 if ok else 401)

    refresher = hr.OAuth2Refresh(
        "https://idp.example/token", client_id="app", transport=_MyHttpx2Transport(token)
    )
    auth = hr.RefreshAuth({"access_token": "stale", "refresh_token": "rt-0"}, refresher)
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        assert client.get("https://api.example/x").status_code == 200
    assert calls == ["httpx2"]


def test_R10_httpx2_network_error_is_transient_and_retried() -> None:
    """R10: a ConnectError from the httpx2 token request is transient and retried within
    the flight: exactly 2 token calls, the request succeeds."""
    calls: list[int] = []

    def token(request: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise httpx2.ConnectError("refused", request=request)
        return httpx2.Response(200, json={"access_token": "at-1", "refresh_token": "rt-1"})

    def api(request: Any) -> Any:
        ok = request.headers.get("authorization") == "Bearer at-1"
        return httpx2.Response(200 if ok else 401)

    assert is_transient(httpx2.ReadTimeout("slow"))
    hr.set_testing(True)
    try:
        refresher = hr.OAuth2Refresh(
            "https://idp.example/token", client_id="app", transport=httpx2.MockTransport(token)
        )
        auth = hr2.RefreshAuth({"access_token": "stale", "refresh_token": "rt-0"}, refresher)
        with httpx2.Client(auth=auth, transport=httpx2.MockTransport(api)) as client:
            assert client.get("https://api.example/x").status_code == 200
    finally:
        hr.set_testing(False)
    assert len(calls) == 2


@pytest.mark.parametrize("cls", ["httpx", "httpx2"])
def test_R13_origins_given_as_httpx2_urls(cls: str) -> None:
    """R13: origins given as httpx2.URL objects are accepted by both flavours and scope
    credentials to that origin only."""
    seen: list[str | None] = []

    def handler(request: Any) -> Any:
        seen.append(request.headers.get("authorization"))
        return httpx2.Response(200)

    auth_cls = hr2.RefreshAuth if cls == "httpx2" else hr.RefreshAuth
    auth = auth_cls(
        {"access_token": "tok"},
        lambda **_: {"access_token": "tok2"},
        origins=[httpx2.URL("https://api.example")],
    )
    view = hr2.RefreshAuth.sharing(auth)
    with httpx2.Client(auth=view, transport=httpx2.MockTransport(handler)) as client:
        client.get("https://api.example/x")
        client.get("https://other.example/x")
    assert seen == ["Bearer tok", None]


def test_R12_httpx2_sync_generator_body_not_replayable(provider: tuple[Provider, str]) -> None:
    """R12: an httpx2 sync request with a generator body rejected with 401 raises
    RequestNotReplayable (after the one refresh), never resends a partial body."""
    state, base = provider
    auth = _auth(hr2.RefreshAuth, base)

    def body() -> Any:
        yield b"once"

    with httpx2.Client(auth=auth) as client, pytest.raises(hr.RequestNotReplayable):
        client.post(f"{base}/api", content=body())
    assert state.agents == ["python-httpx2"]
    assert auth.credentials["refresh_token"] == "rt-1"


def test_query_credentials_redacted_in_httpx2_logger(caplog: pytest.LogCaptureFixture) -> None:
    """No secret in logs: query_param credentials are redacted in httpx2's INFO line."""

    def handler(request: Any) -> Any:
        return httpx2.Response(200)

    auth = hr2.RefreshAuth(
        {"access_token": "SECRET-q-123"},
        lambda **_: {"access_token": "SECRET-q-456"},
        apply=hr.query_param("api_key"),
    )
    with (
        caplog.at_level(logging.INFO, logger="httpx2"),
        httpx2.Client(auth=auth, transport=httpx2.MockTransport(handler)) as client,
    ):
        client.get("https://api.example/x?a=1")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("httpx2")]
    assert lines
    assert "api_key=" in lines[0]
    assert "SECRET-q" not in caplog.text


def test_R14_filestore_shared_by_httpx_and_httpx2_auths(
    provider: tuple[Provider, str], tmp_path: Any
) -> None:
    """R14: separate httpx and httpx2 RefreshAuths on one FileStore: after the httpx one
    refreshed (rotation), the httpx2 one, rejected with its stale token, merges the stored
    credentials instead of presenting the consumed refresh token: one token call."""
    state, base = provider
    path = tmp_path / "creds.json"
    seed = hr.FileStore(path)
    first = _auth(hr.RefreshAuth, base, credentials=seed)
    assert first.credentials == {}
    first.update_credentials({"access_token": "stale", "refresh_token": "rt-0"})
    second = _auth(hr2.RefreshAuth, base, credentials=hr.FileStore(path))
    assert second.credentials["refresh_token"] == "rt-0"
    with httpx.Client(auth=first) as one, httpx2.Client(auth=second) as two:
        assert one.get(f"{base}/api").status_code == 200
        assert two.get(f"{base}/api").status_code == 200
    assert state.agents == ["python-httpx"]
    assert second.credentials["refresh_token"] == "rt-1"
