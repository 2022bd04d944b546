"""Case C22: no secret in logs, reprs or error messages; token parameters only in POST bodies.

A real token endpoint and API (Starlette under uvicorn on 127.0.0.1, via the ``run_server``
fixture) record what they receive. DEBUG logging is on for ``httpx_refresh``, ``httpx`` and
``httpcore``. A refresh that succeeds and a variant where the token endpoint rejects it with
400 run through the sync client and the async client (asyncio and trio), with client
authentication by HTTP Basic and in the body. Standards: RFC 6749 sections 2.3.1 and 6,
RFC 6750 section 2.3 (no tokens in URLs). Rules: DESIGN "no secret", R13, R15.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import anyio
import httpcore
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import httpx_refresh as hr

CLIENT_ID = "leak-test-client"
# '+', '%', ':', '/' and a space: form encoding and Basic encoding both change its spelling.
CLIENT_SECRET = "cs+S3cr%t:/ q7Zr4Wx9"
OLD_ACCESS = "oldAT-Kq83nZpL0vYt"
OLD_REFRESH = "oldRT-Wm27xHcB5jQe"
NEW_ACCESS = "newAT-Ud61sFgR9kPa"
NEW_REFRESH = "newRT-Tz45yMvN2hLc"
SECRETS = {
    "client secret": CLIENT_SECRET,
    "old access token": OLD_ACCESS,
    "old refresh token": OLD_REFRESH,
    "new access token": NEW_ACCESS,
    "new refresh token": NEW_REFRESH,
}


def spellings(value: str) -> set[str]:
    """The ways a secret may be written into text: raw, URL-encoded, form-encoded."""
    return {value, quote(value, safe=""), quote_plus(value, safe=""), quote(value)}


def leaked(*texts: str) -> list[str]:
    """The names (never the values) of the secrets found in ``texts``."""
    return sorted(
        {
            name
            for name, value in SECRETS.items()
            for spelling in spellings(value)
            for text in texts
            if spelling in text
        }
    )


class Provider:
    """An OAuth 2.0 token endpoint with rotation, and an API, recording what they receive."""

    def __init__(self, *, reject: bool) -> None:
        self.reject = reject
        self.valid_access = NEW_ACCESS
        self.token_calls: list[dict[str, Any]] = []
        self.api_calls: list[dict[str, Any]] = []

    async def token(self, request: Request) -> Response:
        body = (await request.body()).decode("ascii")
        form = parse_qs(body, keep_blank_values=True)
        self.token_calls.append(
            {
                "method": request.method,
                "query": request.url.query,
                "form": form,
                "authorization": request.headers.get("authorization"),
                "content_type": request.headers.get("content-type"),
            }
        )
        if self.reject:
            # Some providers echo the token they reject; the library must redact it.
            refresh_token = form.get("refresh_token", [""])[0]
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": f"refresh token {refresh_token} is expired or revoked",
                },
                status_code=400,
            )
        if form.get("refresh_token") != [OLD_REFRESH]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(
            {
                "access_token": NEW_ACCESS,
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": NEW_REFRESH,
            }
        )

    async def api(self, request: Request) -> Response:
        self.api_calls.append(
            {"query": request.url.query, "authorization": request.headers.get("authorization")}
        )
        if request.headers.get("authorization") == f"Bearer {self.valid_access}":
            return JSONResponse({"items": [1, 2, 3]})
        return JSONResponse(
            {"error": "invalid_token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/oauth/token", self.token, methods=["GET", "POST"]),
                Route("/api/items", self.api),
            ]
        )


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    # httpx and httpcore, or httpx2 and httpcore2 when the suite runs on httpx2
    for name in ("httpx_refresh", httpx.__name__, httpcore.__name__):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def make_auth(base_url: str, client_auth: str) -> tuple[hr.RefreshAuth, hr.OAuth2Refresh]:
    refresher = hr.OAuth2Refresh(
        f"{base_url}/oauth/token",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client_auth=client_auth,  # type: ignore[arg-type]
        scope="read write",
    )
    auth = hr.RefreshAuth(
        {"access_token": OLD_ACCESS, "refresh_token": OLD_REFRESH, "token_type": "Bearer"},
        refresher,
    )
    return auth, refresher


def error_texts(error: BaseException) -> list[str]:
    """``str()``, ``repr()`` and the formatted traceback of an error and its whole chain."""
    texts = ["".join(traceback.format_exception(type(error), error, error.__traceback__))]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return texts


def public_objects(auth: hr.RefreshAuth, refresher: hr.OAuth2Refresh) -> list[Any]:
    return [
        auth,
        refresher,
        auth.stats,
        hr.bearer(),
        hr.headers({"Authorization": "Bearer {access_token}", "X-Tenant": "{tenant}"}),
        hr.query_param("api_key"),
        hr.ClientCredentialsRefresh(
            "https://auth.example.com/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        ),
    ]


def check_logs(logs: pytest.LogCaptureFixture, *, rejected: bool) -> None:
    names = {record.name.split(".")[0] for record in logs.records}
    # The capture is live: the refresh was logged, and so were httpx's own requests.
    assert "httpx_refresh" in names
    assert httpx.__name__ in names
    levels = {r.levelno for r in logs.records if r.name == "httpx_refresh"}
    assert (logging.ERROR if rejected else logging.INFO) in levels
    texts = [logs.text]
    for record in logs.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts += error_texts(record.exc_info[1])
    assert leaked(*texts) == []


def check_server(provider: Provider, client_auth: str) -> None:
    """The token parameters travelled in the POST body, never in a query string."""
    assert len(provider.token_calls) == 1
    call = provider.token_calls[0]
    assert call["method"] == "POST"
    assert call["query"] == ""
    assert call["content_type"] == "application/x-www-form-urlencoded"
    form = call["form"]
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == [OLD_REFRESH]
    assert form["scope"] == ["read write"]
    if client_auth == "body":
        assert form["client_id"] == [CLIENT_ID]
        assert form["client_secret"] == [CLIENT_SECRET]
        assert call["authorization"] is None
    else:
        assert "client_secret" not in form
        raw = f"{quote_plus(CLIENT_ID, safe='')}:{quote_plus(CLIENT_SECRET, safe='')}"
        assert call["authorization"] == "Basic " + base64.b64encode(raw.encode()).decode()
    for api_call in provider.api_calls:
        assert api_call["query"] == ""


def check_outcome(
    provider: Provider,
    auth: hr.RefreshAuth,
    refresher: hr.OAuth2Refresh,
    errors: list[BaseException],
    *,
    rejected: bool,
) -> None:
    if rejected:
        assert len(errors) == 2  # the rejected refresh, then the fail-fast error
        assert all(isinstance(error, hr.ReauthorizationRequired) for error in errors)
        assert len(provider.api_calls) == 1
        assert auth.credentials["refresh_token"] == OLD_REFRESH
    else:
        assert errors == []
        assert [call["authorization"] for call in provider.api_calls] == [
            f"Bearer {OLD_ACCESS}",
            f"Bearer {NEW_ACCESS}",
            f"Bearer {NEW_ACCESS}",
        ]
        assert auth.credentials["refresh_token"] == NEW_REFRESH
    texts = [repr(obj) for obj in public_objects(auth, refresher)]
    for error in errors:
        texts += error_texts(error)
    assert leaked(*texts) == []


OUTCOMES = ["refreshed", "rejected"]
CLIENT_AUTH = ["basic", "body"]


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("client_auth", CLIENT_AUTH)
def test_C22_no_secret_leaks_sync(
    run_server: Callable[[Any], str],
    debug_logs: pytest.LogCaptureFixture,
    client_auth: str,
    outcome: str,
) -> None:
    """C22 (sync client): no client secret, refresh token or access token (old or new) in any
    log record, repr or error; token parameters only in the POST body."""
    rejected = outcome == "rejected"
    provider = Provider(reject=rejected)
    base_url = run_server(provider.app())
    auth, refresher = make_auth(base_url, client_auth)
    errors: list[BaseException] = []
    with httpx.Client(auth=auth, base_url=base_url, timeout=10) as client:
        for _ in range(2):
            try:
                assert client.get("/api/items").status_code == 200
            except hr.HttpxRefreshError as exc:
                errors.append(exc)
    check_server(provider, client_auth)
    check_outcome(provider, auth, refresher, errors, rejected=rejected)
    check_logs(debug_logs, rejected=rejected)


@pytest.mark.anyio
@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("client_auth", CLIENT_AUTH)
async def test_C22_no_secret_leaks_async(
    run_server: Callable[[Any], str],
    debug_logs: pytest.LogCaptureFixture,
    client_auth: str,
    outcome: str,
) -> None:
    """C22 (AsyncClient on asyncio and trio): as the sync case."""
    rejected = outcome == "rejected"
    provider = Provider(reject=rejected)
    base_url = run_server(provider.app())
    auth, refresher = make_auth(base_url, client_auth)
    errors: list[BaseException] = []
    with anyio.fail_after(20):
        async with httpx.AsyncClient(auth=auth, base_url=base_url, timeout=10) as client:
            for _ in range(2):
                try:
                    assert (await client.get("/api/items")).status_code == 200
                except hr.HttpxRefreshError as exc:
                    errors.append(exc)
    check_server(provider, client_auth)
    check_outcome(provider, auth, refresher, errors, rejected=rejected)
    check_logs(debug_logs, rejected=rejected)


@pytest.mark.anyio
async def test_C22_refresher_exception_message_is_scrubbed(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    """C22: a custom refresher whose exception message quotes the refresh token and the client
    secret reaches the caller as a RefreshError without them, and the log stays clean."""

    def refresher(
        *,
        credentials: dict[str, Any],
        connector_parameters: dict[str, Any],
        connection_parameters: dict[str, Any],
    ) -> dict[str, Any]:
        raise ValueError(
            f"cannot refresh {credentials['refresh_token']} "
            f"with {connector_parameters['client_secret']}"
        )

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401)

    auth = hr.RefreshAuth(
        {"access_token": OLD_ACCESS, "refresh_token": OLD_REFRESH},
        refresher,
        connector_parameters={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    with anyio.fail_after(10):
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
            with pytest.raises(hr.RefreshError) as info:
                await client.get("https://api.example.com/items")
    error = info.value
    assert "ValueError" in str(error)
    assert leaked(str(error), repr(error), repr(auth)) == []
    records = [r for r in debug_logs.records if r.name == "httpx_refresh"]
    assert records
    assert leaked(debug_logs.text, *(r.getMessage() for r in records)) == []


def test_C22_query_param_value_is_redacted_in_httpx_log(caplog: pytest.LogCaptureFixture) -> None:
    """C22: with ``hr.query_param``, httpx's own ``HTTP Request: ...`` INFO line shows
    ``[redacted]`` for that parameter, and other query parameters as they are."""
    caplog.set_level(logging.INFO, logger=httpx.__name__)
    token = "qp-secret-token-" + "x" * 16
    auth = hr.RefreshAuth({"access_token": token}, lambda **_: {}, apply=hr.query_param("key"))
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["key"])
        return httpx.Response(200)

    with httpx.Client(auth=auth, transport=httpx.MockTransport(handler)) as client:
        client.get("https://api.example.com/items", params={"page": "2"})
    assert seen == [token]  # the request itself still carries it
    lines = [record.getMessage() for record in caplog.records if record.name == httpx.__name__]
    assert len(lines) == 1
    assert token not in lines[0]
    assert "key=%5Bredacted%5D" in lines[0]
    assert "page=2" in lines[0]


# -- depictio/depictio#104: a token with a line break -------------------------------------------


class LineBreakProvider:
    """A token endpoint whose new access token ends in ``suffix`` (a newline, or CR LF and a
    header line), and an API that accepts only ``Bearer NEW_ACCESS`` and records what came."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.token_calls = 0
        self.api_calls: list[tuple[str | None, str | None]] = []

    async def token(self, request: Request) -> Response:
        self.token_calls += 1
        return JSONResponse({"access_token": NEW_ACCESS + self.suffix, "token_type": "Bearer"})

    async def api(self, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        self.api_calls.append((authorization, request.headers.get("x-injected")))
        ok = authorization == f"Bearer {NEW_ACCESS}"
        return JSONResponse({"ok": ok}, status_code=200 if ok else 401)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/oauth/token", self.token, methods=["POST"]),
                Route("/api/items", self.api),
            ]
        )


def line_break_run(flavour: str, url: str) -> tuple[hr.RefreshAuth, list[Any]]:
    auth, _ = make_auth(url, "basic")
    outcomes: list[Any] = []

    def get(client: httpx.Client) -> None:
        try:
            outcomes.append(client.get(f"{url}/api/items").status_code)
        except (hr.HttpxRefreshError, httpx.HTTPError) as exc:  # checked for secrets below
            outcomes.append(exc)

    async def aget(client: httpx.AsyncClient) -> None:
        try:
            outcomes.append((await client.get(f"{url}/api/items")).status_code)
        except (hr.HttpxRefreshError, httpx.HTTPError) as exc:
            outcomes.append(exc)

    if flavour == "sync":
        with httpx.Client(auth=auth) as client:
            get(client)
            get(client)
    else:

        async def main() -> None:
            with anyio.fail_after(15):
                async with httpx.AsyncClient(auth=auth) as client:
                    await aget(client)
                    await aget(client)

        anyio.run(main, backend=flavour)
    return auth, outcomes


@pytest.mark.parametrize("flavour", ["sync", "asyncio", "trio"])
def test_depictio_depictio_104_token_ending_in_a_newline_is_sent_without_it(
    flavour: str, run_server: Callable[[Any], str]
) -> None:
    """depictio/depictio#104: a bearer token ending in ``\\n`` made httpx raise
    ``LocalProtocolError: Illegal header value b'Bearer eyJ...\\n'``: the request failed and
    the whole token went into the error and the log. Leading and trailing whitespace is no
    part of a header value (RFC 9110 section 5.5), so the applier drops it: after the refresh,
    the replay and the next request go out with the bare token and succeed (1 token call,
    3 API calls: the rejected one, the replay, the next)."""
    provider = LineBreakProvider("\n")
    url = run_server(provider.app())
    auth, outcomes = line_break_run(flavour, url)
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert leaked(*[text for error in errors for text in error_texts(error)]) == []
    assert outcomes == [200, 200]
    assert provider.token_calls == 1
    assert provider.api_calls == [
        (f"Bearer {OLD_ACCESS}", None),
        (f"Bearer {NEW_ACCESS}", None),
        (f"Bearer {NEW_ACCESS}", None),
    ]
    assert auth.stats.replays == 1


@pytest.mark.parametrize("flavour", ["sync", "asyncio", "trio"])
def test_depictio_depictio_104_token_with_an_inner_line_break_is_refused_unquoted(
    flavour: str, run_server: Callable[[Any], str]
) -> None:
    """depictio/depictio#104, the worse spelling: a token holding CR LF and a header line.
    Sent as is it would inject a header (or make httpx quote the token in its error). The
    token response is refused as malformed (a ``RefreshError`` that says why, never the
    value; nothing merged: such a token would fail every request until it expired, with no
    401 to trigger the next refresh). No replay, no injected header: the API sees the old
    token twice (the second request, rejected too, gets the same error in the cooldown
    without a second token call)."""
    provider = LineBreakProvider("\r\nX-Injected: yes")
    url = run_server(provider.app())
    auth, outcomes = line_break_run(flavour, url)
    assert [type(outcome).__name__ for outcome in outcomes] == ["RefreshError"] * 2
    assert auth.version == 0
    assert "control character" in str(outcomes[0])
    assert leaked(*[text for error in outcomes for text in error_texts(error)]) == []
    assert provider.token_calls == 1
    assert provider.api_calls == [(f"Bearer {OLD_ACCESS}", None)] * 2
