"""R13 / case C23: credentials never follow a redirect to another origin."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import httpx_refresh as hr

TOKENS = {"old": "OLD-ACCESS-TOKEN-0001", "new": "NEW-ACCESS-TOKEN-0002"}


class Elsewhere:
    """Another origin: records every header and query it receives."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], str]] = []
        self.lock = threading.Lock()

    async def landing(self, request: Request) -> Response:
        with self.lock:
            self.seen.append((dict(request.headers), request.url.query))
        return Response("landed")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/landing", self.landing)])

    def leaked(self) -> list[str]:
        return [
            token
            for token in TOKENS.values()
            for headers, query in self.seen
            if token in query or any(token in value for value in headers.values())
        ]


def api_app(elsewhere_url: str, reject_first: bool) -> Starlette:
    """The API: answers 401 to the old token (first try), then redirects to another origin,
    or to a same-origin page that checks the headers arrived."""

    async def start(request: Request) -> Response:
        token = request.headers.get("X-Api-Key", "")
        if reject_first and token != TOKENS["new"]:
            return Response(status_code=401)
        return RedirectResponse(f"{elsewhere_url}/landing?api_key={token}&keep=1", 302)

    async def same(request: Request) -> Response:
        return RedirectResponse("/here", 302)

    async def here(request: Request) -> JSONResponse:
        return JSONResponse({"key": request.headers.get("X-Api-Key")})

    return Starlette(routes=[Route("/start", start), Route("/same", same), Route("/here", here)])


def make_auth(reject_first: bool) -> hr.RefreshAuth:
    def refresher(**_: Any) -> dict[str, Any]:
        return {"access_token": TOKENS["new"]}

    start = TOKENS["old"] if reject_first else TOKENS["new"]
    return hr.RefreshAuth(
        {"access_token": start, "tenant": "TENANT-SECRET-9"},
        refresher,
        apply=hr.headers({"X-Api-Key": "{access_token}", "X-Tenant": "{tenant}"}),
    )


@pytest.mark.parametrize("reject_first", [False, True], ids=["first-try", "on-replay"])
def test_C23a_cross_origin_redirect_carries_no_credentials_sync(
    run_server: Any, reject_first: bool
) -> None:
    """C23 (a), R13, sync: the API answers 302 to another origin (on the first try, or on
    the replay after a refresh): that origin receives no credential header or query value;
    other headers and parameters are untouched."""
    elsewhere = Elsewhere()
    other = run_server(elsewhere.app())
    url = run_server(api_app(other, reject_first))
    auth = make_auth(reject_first)
    with httpx.Client(
        auth=auth, follow_redirects=True, event_hooks={"request": [auth.redirect_guard]}
    ) as client:
        response = client.get(f"{url}/start", headers={"X-Trace": "t-1"})
    assert response.text == "landed"
    assert len(elsewhere.seen) == 1
    headers, query = elsewhere.seen[0]
    assert elsewhere.leaked() == []
    assert "x-api-key" not in headers
    assert "x-tenant" not in headers
    assert headers["x-trace"] == "t-1"
    assert query == "keep=1"
    assert auth.stats.refreshes == (1 if reject_first else 0)


@pytest.mark.anyio
@pytest.mark.parametrize("reject_first", [False, True], ids=["first-try", "on-replay"])
async def test_C23a_cross_origin_redirect_carries_no_credentials_async(
    run_server: Any, reject_first: bool
) -> None:
    """C23 (a), R13, async (asyncio and trio): as the sync case, with ``aredirect_guard``."""
    elsewhere = Elsewhere()
    other = run_server(elsewhere.app())
    url = run_server(api_app(other, reject_first))
    auth = make_auth(reject_first)
    async with httpx.AsyncClient(
        auth=auth, follow_redirects=True, event_hooks={"request": [auth.aredirect_guard]}
    ) as client:
        with anyio.fail_after(10):
            response = await client.get(f"{url}/start")
    assert response.text == "landed"
    assert elsewhere.leaked() == []
    assert elsewhere.seen[0][1] == "keep=1"


def test_R13_same_origin_redirect_keeps_the_credentials(run_server: Any) -> None:
    """R13: a redirect within the same origin keeps the credentials (the guard only acts
    when the origin changes)."""
    url = run_server(api_app("http://unused.invalid", reject_first=False))
    auth = make_auth(reject_first=False)
    with httpx.Client(
        auth=auth, follow_redirects=True, event_hooks={"request": [auth.redirect_guard]}
    ) as client:
        assert client.get(f"{url}/same").json() == {"key": TOKENS["new"]}


def test_C23b_token_endpoint_redirect_is_not_followed(run_server: Any) -> None:
    """C23 (b): the token endpoint answers 307 to another origin: the refresh POST is not
    re-sent there; the refresh fails cleanly with a RefreshError and nothing is merged."""
    elsewhere = Elsewhere()
    other = run_server(elsewhere.app())

    async def token(request: Request) -> Response:
        return RedirectResponse(f"{other}/landing", 307)

    url = run_server(Starlette(routes=[Route("/token", token, methods=["POST"])]))
    grant = hr.OAuth2Refresh(f"{url}/token", client_id="c", client_secret="CLIENT-SECRET-77")
    auth = hr.RefreshAuth(
        {"refresh_token": "REFRESH-TOKEN-88"}, grant, retry=hr.RetryPolicy(attempts=1)
    )
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c,
        pytest.raises(hr.RefreshError, match="redirect"),
    ):
        c.get("http://api.test/")
    assert elsewhere.seen == []
    assert dict(auth.credentials) == {"refresh_token": "REFRESH-TOKEN-88"}


def _hop_transport(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            return httpx.Response(302, headers={"Location": "http://b.test/2?next=http://a.test/x"})
        seen.append(request)
        return httpx.Response(200)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("token", ["abc1234", 12345678901], ids=["short-token", "numeric-token"])
def test_R13_guard_strips_what_the_applier_wrote_whatever_its_value(token: object) -> None:
    """R13: the guard strips the headers the applier wrote, even for a short or numeric
    credential and a derived value (base64), and leaves the client's own headers and the
    Location's other query values alone."""
    import base64

    def signed(request: httpx.Request, credentials: Any) -> None:
        raw = str(credentials["access_token"]).encode()
        request.headers["X-Api-Key"] = str(credentials["access_token"])
        request.headers["X-Sig"] = base64.b64encode(raw).decode()

    seen: list[httpx.Request] = []
    auth = hr.RefreshAuth(
        {"access_token": token, "format": "application/json"},
        lambda **_: {},
        apply=signed,
    )
    with httpx.Client(
        auth=auth,
        transport=_hop_transport(seen),
        follow_redirects=True,
        event_hooks={"request": [auth.redirect_guard]},
    ) as client:
        client.get("http://a.test/1", headers={"Accept": "application/json"})
    (hop,) = seen
    assert "x-api-key" not in hop.headers
    assert "x-sig" not in hop.headers
    assert hop.headers["accept"] == "application/json"
    assert hop.url.params["next"] == "http://a.test/x"
    assert "httpx_refresh.applied" not in hop.extensions


class SlashTokenEndpoint:
    """A token endpoint that only answers at ``/o/token/``; ``/o/token`` answers 301 there,
    as Django's APPEND_SLASH does. Records every request as (method, path, form)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, str]] = []

    async def record(self, request: Request) -> str:
        body = (await request.body()).decode()
        with self.lock:
            self.seen.append((request.method, request.url.path, body))
        return body

    async def no_slash(self, request: Request) -> Response:
        await self.record(request)
        return RedirectResponse("/o/token/", 301)

    async def slash(self, request: Request) -> Response:
        body = await self.record(request)
        if request.method != "POST" or "grant_type=refresh_token" not in body:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        return JSONResponse({"access_token": TOKENS["new"], "expires_in": 3600})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/o/token", self.no_slash, methods=["GET", "POST"]),
                Route("/o/token/", self.slash, methods=["GET", "POST"]),
            ]
        )


def _slash_get(flavour: str, auth: hr.RefreshAuth) -> Any:
    def api(request: httpx.Request) -> httpx.Response:
        ok = request.headers.get("Authorization") == f"Bearer {TOKENS['new']}"
        return httpx.Response(200 if ok else 401)

    try:
        if flavour == "sync":
            with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
                return client.get("http://api.test/").status_code

        async def main() -> int:
            with anyio.fail_after(15):
                async with httpx.AsyncClient(
                    auth=auth, transport=httpx.MockTransport(api)
                ) as client:
                    return (await client.get("http://api.test/")).status_code

        return anyio.run(main, backend=flavour)
    except hr.RefreshError as exc:
        return exc


@pytest.mark.parametrize("flavour", ["sync", "asyncio", "trio"])
def test_freelawproject_courtlistener_7927_token_endpoint_301_is_not_followed_as_a_get(
    flavour: str, run_server: Any
) -> None:
    """freelawproject/courtlistener#7927: the token endpoint 301-redirects ``POST /o/token``
    to ``/o/token/``; a client following it re-issued the refresh as a GET without a body,
    the grant failed, and every credential died an hour after authorization. R13: the token
    request never follows a redirect. With the slashless URL: one POST, nothing at
    ``/o/token/`` (no bodiless GET), a ``RefreshError`` naming the redirect, not a
    ``ReauthorizationRequired`` (nothing says the grant is dead), nothing merged. With the
    URL as the server publishes it (trailing slash kept, not normalized): one POST there,
    and the request succeeds after one replay."""
    endpoint = SlashTokenEndpoint()
    url = run_server(endpoint.app())
    credentials = {"access_token": TOKENS["old"], "refresh_token": "REFRESH-TOKEN-7927"}

    def auth(token_url: str) -> hr.RefreshAuth:
        grant = hr.OAuth2Refresh(token_url, client_id="c", client_secret="CLIENT-SECRET-77")
        return hr.RefreshAuth(dict(credentials), grant, retry=hr.RetryPolicy(attempts=1))

    slashless = auth(f"{url}/o/token")
    error = _slash_get(flavour, slashless)
    assert type(error) is hr.RefreshError
    assert (error.status_code, error.transient) == (301, False)
    assert "redirect" in str(error)
    assert [(method, path) for method, path, _ in endpoint.seen] == [("POST", "/o/token")]
    assert dict(slashless.credentials) == credentials

    published = auth(f"{url}/o/token/")
    assert _slash_get(flavour, published) == 200
    assert [(method, path) for method, path, _ in endpoint.seen[1:]] == [("POST", "/o/token/")]
    assert "refresh_token=REFRESH-TOKEN-7927" in endpoint.seen[1][2]
    assert published.stats == hr.RefreshStats(refreshes=1, replays=1, deduplicated=0, failures=0)


@pytest.mark.parametrize("flavour", ["sync", "asyncio", "trio"])
def test_R13_replay_redirected_to_another_origin_and_rejected_there_is_not_ours(
    flavour: str,
) -> None:
    """R13 + R4/R5: a 401 is refreshed and replayed; the replay is redirected to another
    origin, which answers 401 after a slow hop (the replayed token is past its expiry by
    then). That rejection is not the API's verdict on our token: the caller gets it, with
    no second refresh, no second replay and no rejected replay counted (it used to refresh
    version 1 as well and replay once more)."""
    now = [1_000_000.0]
    issued: list[str] = []
    seen: list[tuple[str, str | None]] = []

    def refresher(*, credentials: Any, **_: Any) -> dict[str, Any]:
        issued.append(f"A{len(issued) + 1}")
        return {"access_token": issued[-1], "expires_in": 3600}

    def api(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("Authorization")))
        if request.url.host == "other.example.com":
            now[0] += 7200  # the hop took long: the replayed token expired meanwhile
            return httpx.Response(401)
        if request.headers.get("Authorization") == "Bearer A0":
            return httpx.Response(401)
        return httpx.Response(302, headers={"Location": "https://other.example.com/x"})

    auth = hr.RefreshAuth(
        {"access_token": "A0"},
        refresher,
        origins=["https://api.example.com"],
        clock=lambda: now[0],
    )
    transport = httpx.MockTransport(api)
    if flavour == "sync":
        with httpx.Client(auth=auth, transport=transport, follow_redirects=True) as client:
            response = client.get("https://api.example.com/items")
    else:

        async def main() -> httpx.Response:
            async with httpx.AsyncClient(
                auth=auth, transport=transport, follow_redirects=True
            ) as client:
                with anyio.fail_after(10):
                    return await client.get("https://api.example.com/items")

        response = anyio.run(main, backend=flavour)
    assert response.status_code == 401
    assert response.url.host == "other.example.com"
    assert issued == ["A1"]
    assert seen == [
        ("api.example.com", "Bearer A0"),
        ("api.example.com", "Bearer A1"),
        ("other.example.com", None),
    ]
    stats = auth.stats
    assert (stats.refreshes, stats.replays, stats.second_replays) == (1, 1, 0)
    assert stats.rejected_replays == 0
