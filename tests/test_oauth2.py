"""Unit tests for ``OAuth2Refresh`` and ``ClientCredentialsRefresh`` via ``httpx.MockTransport``.

Each grant test runs three times: the sync client (``transport=``) and the async client
(``async_transport=``) on asyncio and on trio. Standards: RFC 6749 sections 2.3.1 (client
authentication), 4.4 (client credentials), 5.1 / 5.2 (token and error responses), 6 (refresh).
Rules: DESIGN R8, R10, R13, R16 (``timeout`` bounds the whole exchange, against a real
token endpoint on 127.0.0.1 that drips its body); case C18 end to end through ``RefreshAuth``.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import anyio
import httpx
import pytest
from servers import FakeClock, OAuthServer, get_every
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import httpx_refresh as hr

TOKEN_URL = "https://auth.example.com/oauth/token"
API_URL = "https://api.example.com/items"
CLIENT_ID = "client-7f3a"
CLIENT_SECRET = "cs-9d8c7b6a5f4e"
ACCESS_1 = "at-one-4f2c9a7d1e"
ACCESS_2 = "at-two-8b3e6d0c5a"
REFRESH_1 = "rt-one-2d9f7c4b1a"
REFRESH_2 = "rt-two-6e1a3b8f0d"
CREDENTIALS = {"access_token": ACCESS_1, "refresh_token": REFRESH_1, "token_type": "Bearer"}
SECRETS = {
    "CLIENT_SECRET": CLIENT_SECRET,
    "ACCESS_1": ACCESS_1,
    "ACCESS_2": ACCESS_2,
    "REFRESH_1": REFRESH_1,
    "REFRESH_2": REFRESH_2,
}

Handler = Callable[[httpx.Request], httpx.Response]
Invoke = Callable[..., dict[str, Any]]


class TokenEndpoint:
    """A MockTransport handler that records every request it receives."""

    def __init__(self, respond: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self._respond = respond or (
            lambda request: httpx.Response(
                200,
                json={
                    "access_token": ACCESS_2,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "refresh_token": REFRESH_2,
                },
            )
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request)

    def form(self, index: int = 0) -> dict[str, list[str]]:
        body = self.requests[index].content.decode("ascii")
        return parse_qs(body, keep_blank_values=True, strict_parsing=True)


def make(cls: type[Any], endpoint: TokenEndpoint, **kwargs: Any) -> Any:
    return cls(
        kwargs.pop("token_url", TOKEN_URL),
        transport=httpx.MockTransport(endpoint),
        async_transport=httpx.MockTransport(endpoint),
        **kwargs,
    )


@pytest.fixture(params=["sync", "asyncio", "trio"])
def invoke(request: pytest.FixtureRequest) -> Invoke:
    """Run a refresher through its sync client, or its async client on asyncio / trio."""
    flavour = request.param

    def run(refresher: Any, **kwargs: Any) -> dict[str, Any]:
        if flavour == "sync":
            return dict(refresher(**kwargs))

        async def main() -> dict[str, Any]:
            with anyio.fail_after(10):
                return dict(await refresher.acall(**kwargs))

        return anyio.run(main, backend=flavour)

    return run


def assert_no_secret(*texts: str) -> None:
    """Fail naming the secrets found, never printing their values."""
    leaked = sorted({name for name, value in SECRETS.items() for text in texts if value in text})
    assert leaked == []


# -- the request -----------------------------------------------------------------------


def test_refresh_token_grant_sends_exact_form_fields(invoke: Invoke) -> None:
    """RFC 6749 section 6: one POST with grant_type, refresh_token, scope and extra fields,
    form-encoded, client authenticated by HTTP Basic (so no client fields in the body)."""
    endpoint = TokenEndpoint()
    refresher = make(
        hr.OAuth2Refresh,
        endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        scope=["read", "write"],
        extra={"audience": "https://api.example.com", "resource": "r1"},
    )
    result = invoke(refresher, credentials=CREDENTIALS)
    assert result["access_token"] == ACCESS_2
    assert len(endpoint.requests) == 1
    sent = endpoint.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == TOKEN_URL
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.headers["accept"] == "application/json"
    assert endpoint.form() == {
        "grant_type": ["refresh_token"],
        "refresh_token": [REFRESH_1],
        "scope": ["read write"],
        "audience": ["https://api.example.com"],
        "resource": ["r1"],
    }


def test_refresh_token_grant_without_scope_or_extra_sends_only_grant_fields(
    invoke: Invoke,
) -> None:
    """RFC 6749 section 6: scope is optional and not sent when not configured."""
    endpoint = TokenEndpoint()
    invoke(
        make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
        credentials=CREDENTIALS,
    )
    assert endpoint.form() == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH_1]}


def test_client_credentials_grant_sends_exact_form_fields(invoke: Invoke) -> None:
    """RFC 6749 section 4.4: grant_type=client_credentials, scope, extra; never a refresh token,
    even when the credentials hold one."""
    endpoint = TokenEndpoint(
        lambda r: httpx.Response(200, json={"access_token": ACCESS_2, "expires_in": 60})
    )
    refresher = make(
        hr.ClientCredentialsRefresh,
        endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client_auth="body",
        scope="read",
        extra={"audience": "api"},
    )
    result = invoke(refresher, credentials={"refresh_token": REFRESH_1})
    assert result == {"access_token": ACCESS_2, "expires_in": 60}
    assert endpoint.form() == {
        "grant_type": ["client_credentials"],
        "scope": ["read"],
        "audience": ["api"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }


def test_client_credentials_grant_needs_no_credentials(invoke: Invoke) -> None:
    """RFC 6749 section 4.4 / DESIGN R2: a connection with no token yet can fetch one."""
    endpoint = TokenEndpoint()
    refresher = make(
        hr.ClientCredentialsRefresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    assert invoke(refresher, credentials={})["access_token"] == ACCESS_2
    assert endpoint.form() == {"grant_type": ["client_credentials"]}
    assert endpoint.requests[0].headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize("cls", [hr.OAuth2Refresh, hr.ClientCredentialsRefresh])
def test_client_auth_basic_form_urlencodes_id_and_secret(invoke: Invoke, cls: type[Any]) -> None:
    """RFC 6749 section 2.3.1: id and secret are form-urlencoded, then joined with ':' and
    base64-encoded; a secret with '+', '%', ':' and a space reaches the server intact."""
    client_id = "my app:1"
    secret = "s3c+r%t:with space"
    endpoint = TokenEndpoint()
    invoke(make(cls, endpoint, client_id=client_id, client_secret=secret), credentials=CREDENTIALS)
    header = endpoint.requests[0].headers["authorization"]
    scheme, _, encoded = header.partition(" ")
    assert scheme == "Basic"
    raw = base64.b64decode(encoded, validate=True).decode("utf-8")
    assert raw == "my+app%3A1:s3c%2Br%25t%3Awith+space"
    assert raw.count(":") == 1
    encoded_id, _, encoded_secret = raw.partition(":")
    assert unquote_plus(encoded_id) == client_id
    assert unquote_plus(encoded_secret) == secret
    form = endpoint.form()
    assert "client_id" not in form
    assert "client_secret" not in form


def test_client_auth_body_sends_client_fields_and_no_authorization(invoke: Invoke) -> None:
    """RFC 6749 section 2.3.1: ``client_auth="body"`` sends client_id / client_secret as form
    fields (the form encoding carries special characters) and no Authorization header."""
    secret = "s3c+r%t:with space"
    endpoint = TokenEndpoint()
    refresher = make(
        hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=secret, client_auth="body"
    )
    invoke(refresher, credentials=CREDENTIALS)
    sent = endpoint.requests[0]
    assert "authorization" not in sent.headers
    assert endpoint.form() == {
        "grant_type": ["refresh_token"],
        "refresh_token": [REFRESH_1],
        "client_id": [CLIENT_ID],
        "client_secret": [secret],
    }


@pytest.mark.parametrize(
    "parameters",
    [
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
    ],
    ids=["snake", "camel"],
)
@pytest.mark.parametrize("client_auth", ["basic", "body"])
def test_client_id_and_secret_from_connector_parameters(
    invoke: Invoke, parameters: dict[str, str], client_auth: str
) -> None:
    """The client id / secret default to ``connector_parameters`` at call time."""
    endpoint = TokenEndpoint()
    refresher = make(hr.OAuth2Refresh, endpoint, client_auth=client_auth)
    invoke(refresher, credentials=CREDENTIALS, connector_parameters=parameters)
    sent = endpoint.requests[0]
    form = endpoint.form()
    if client_auth == "basic":
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        assert sent.headers["authorization"] == f"Basic {expected}"
        assert "client_secret" not in form
    else:
        assert form["client_id"] == [CLIENT_ID]
        assert form["client_secret"] == [CLIENT_SECRET]
        assert "authorization" not in sent.headers


def test_constructor_arguments_win_over_connector_parameters(invoke: Invoke) -> None:
    """Explicit client_id / client_secret are used even when connector parameters differ."""
    endpoint = TokenEndpoint()
    refresher = make(
        hr.OAuth2Refresh,
        endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client_auth="body",
    )
    invoke(
        refresher,
        credentials=CREDENTIALS,
        connector_parameters={"client_id": "other", "client_secret": "other-secret"},
    )
    form = endpoint.form()
    assert form["client_id"] == [CLIENT_ID]
    assert form["client_secret"] == [CLIENT_SECRET]


@pytest.mark.parametrize("client_auth", ["basic", "body"])
def test_R13_nothing_secret_in_the_url(invoke: Invoke, client_auth: str) -> None:
    """R13 / C22: the token request is a POST whose URL holds no secret and no query string."""
    endpoint = TokenEndpoint()
    refresher = make(
        hr.OAuth2Refresh,
        endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client_auth=client_auth,
        extra={"audience": "api"},
    )
    invoke(refresher, credentials=CREDENTIALS)
    sent = endpoint.requests[0]
    assert sent.method == "POST"
    assert sent.url.query == b""
    url = str(sent.url)
    assert_no_secret(url, unquote_plus(url))


def test_R13_token_endpoint_redirect_is_not_followed(invoke: Invoke) -> None:
    """R13 / C23 (b): a 307 from the token endpoint is a RefreshError; exactly 1 request,
    the POST is never re-sent to the redirect target."""
    endpoint = TokenEndpoint(
        lambda r: httpx.Response(307, headers={"Location": "https://evil.example.net/token"})
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.RefreshError) as info:
        invoke(refresher, credentials=CREDENTIALS)
    assert type(info.value) is hr.RefreshError
    assert info.value.status_code == 307
    assert info.value.transient is False
    assert len(endpoint.requests) == 1
    assert endpoint.requests[0].url.host == "auth.example.com"
    assert_no_secret(str(info.value), repr(info.value))


# -- the response ----------------------------------------------------------------------


def test_token_response_fields_returned_with_string_expires_in_kept(invoke: Invoke) -> None:
    """RFC 6749 section 5.1: every field is returned as sent (``expires_in: "3600"`` is kept
    for RefreshAuth to parse, DESIGN R2)."""
    body = {
        "access_token": ACCESS_2,
        "token_type": "bearer",
        "expires_in": "3600",
        "scope": "read",
        "instance_url": "https://eu.example.com",
    }
    endpoint = TokenEndpoint(lambda r: httpx.Response(200, json=body))
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert invoke(refresher, credentials=CREDENTIALS) == body


def test_token_response_form_urlencoded_is_accepted(invoke: Invoke) -> None:
    """Some providers answer ``application/x-www-form-urlencoded``; it parses like JSON."""
    endpoint = TokenEndpoint(
        lambda r: httpx.Response(
            200,
            content=f"access_token={ACCESS_2}&token_type=bearer&expires_in=3600&scope=a+b".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert invoke(refresher, credentials=CREDENTIALS) == {
        "access_token": ACCESS_2,
        "token_type": "bearer",
        "expires_in": "3600",
        "scope": "a b",
    }


def test_token_response_json_without_json_content_type_is_accepted(invoke: Invoke) -> None:
    """A JSON body labelled ``text/plain`` (seen in the wild) still parses."""
    endpoint = TokenEndpoint(
        lambda r: httpx.Response(
            200,
            content=b'{"access_token": "' + ACCESS_2.encode() + b'"}',
            headers={"Content-Type": "text/plain"},
        )
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert invoke(refresher, credentials=CREDENTIALS) == {"access_token": ACCESS_2}


BOM_BODIES = {  # content type, Python codec of the body ("utf-8-sig" writes the BOM)
    "utf-8-bom": ("application/json", "utf-8-sig"),
    "utf-8-bom-charset": ("application/json; charset=utf-8", "utf-8-sig"),
    "utf-8-bom-text-plain": ("text/plain", "utf-8-sig"),
    "utf-16-bom": ("application/json", "utf-16"),
    "utf-16-le": ("application/json", "utf-16-le"),
    "utf-32-bom": ("application/json", "utf-32"),
    "form-utf-8-bom": ("application/x-www-form-urlencoded", "utf-8-sig"),
}


@pytest.mark.parametrize(("content_type", "codec"), BOM_BODIES.values(), ids=BOM_BODIES.keys())
def test_token_response_with_a_byte_order_mark_or_in_utf16_is_parsed(
    invoke: Invoke, content_type: str, codec: str
) -> None:
    """Issue 15 item 1: a token response that starts with a UTF-8 byte order mark (some
    Microsoft / .NET endpoints) parses as ``httpx.Response.json()`` parses it (RFC 8259
    section 8.1), as do UTF-16 / UTF-32 JSON; it used to be refused ("not a JSON object")
    and its rotated refresh token was lost."""
    fields = {"access_token": ACCESS_2, "refresh_token": REFRESH_2, "expires_in": "3600"}
    if content_type.startswith("application/x-www-form-urlencoded"):
        text = "&".join(f"{key}={value}" for key, value in fields.items())
    else:
        text = json.dumps(fields)
    content = text.encode(codec)
    endpoint = TokenEndpoint(
        lambda r: httpx.Response(200, content=content, headers={"Content-Type": content_type})
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert invoke(refresher, credentials=CREDENTIALS) == fields
    assert len(endpoint.requests) == 1


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16"])
def test_R10_error_response_with_a_byte_order_mark_keeps_its_oauth_error(
    invoke: Invoke, codec: str
) -> None:
    """Issue 15 item 1 / RFC 6749 section 5.2: an error body with a byte order mark is read
    too, so ``invalid_grant`` is permanent (it used to be an anonymous 400)."""
    content = json.dumps({"error": "invalid_grant"}).encode(codec)
    endpoint = TokenEndpoint(
        lambda r: httpx.Response(400, content=content, headers={"Content-Type": "application/json"})
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.ReauthorizationRequired) as info:
        invoke(refresher, credentials=CREDENTIALS)
    assert info.value.oauth_error == "invalid_grant"
    assert info.value.status_code == 400


# -- error mapping (RFC 6749 section 5.2) -------------------------------------------------------


def _respond(status: int, body: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status)
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    return handler


@pytest.mark.parametrize(
    ("status", "body", "oauth_error"),
    [
        (400, {"error": "invalid_grant"}, "invalid_grant"),
        (400, {"error": "invalid_grant", "error_description": "Token revoked"}, "invalid_grant"),
        (401, {"error": "invalid_client"}, "invalid_client"),
        (400, {"error": "invalid_client"}, "invalid_client"),
        (400, {"error": "unauthorized_client"}, "unauthorized_client"),
        (401, None, None),
        (401, b"", None),
        (200, {"error": "invalid_grant"}, "invalid_grant"),
        (200, {"token_type": "bearer"}, None),
        (200, {"access_token": ""}, None),
    ],
)
def test_R10_permanent_errors_raise_reauthorization_required(
    invoke: Invoke, status: int, body: Any, oauth_error: str | None
) -> None:
    """R10 / RFC 6749 section 5.2: invalid_grant, invalid_client, unauthorized_client, a 401
    and a 2xx without ``access_token`` mean the user must reconnect."""
    endpoint = TokenEndpoint(_respond(status, body))
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.ReauthorizationRequired) as info:
        invoke(refresher, credentials=CREDENTIALS)
    error = info.value
    assert error.oauth_error == oauth_error
    assert error.status_code == status
    assert error.transient is False
    assert len(endpoint.requests) == 1
    assert_no_secret(str(error), repr(error))


@pytest.mark.parametrize(
    ("status", "body", "oauth_error"),
    [
        (400, {"error": "invalid_request"}, "invalid_request"),
        (400, {"error": "invalid_scope"}, "invalid_scope"),
        (400, {"error": "unsupported_grant_type"}, "unsupported_grant_type"),
        (400, None, None),
        (403, None, None),
        (404, b"not found", None),
    ],
)
def test_R10_other_client_errors_are_non_transient_refresh_errors(
    invoke: Invoke, status: int, body: Any, oauth_error: str | None
) -> None:
    """R10: other 4xx answers fail the refresh without retrying, but are not "reconnect"."""
    endpoint = TokenEndpoint(_respond(status, body))
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.RefreshError) as info:
        invoke(refresher, credentials=CREDENTIALS)
    assert type(info.value) is hr.RefreshError
    assert info.value.transient is False
    assert info.value.oauth_error == oauth_error
    assert info.value.status_code == status


@pytest.mark.parametrize(
    ("status", "body", "oauth_error"),
    [
        (408, None, None),
        (429, None, None),
        (500, None, None),
        (502, b"<html>bad gateway</html>", None),
        (503, None, None),
        (500, {"error": "server_error"}, "server_error"),
        (400, {"error": "server_error"}, "server_error"),
        (400, {"error": "temporarily_unavailable"}, "temporarily_unavailable"),
        (200, {"error": "temporarily_unavailable"}, "temporarily_unavailable"),
    ],
)
def test_R10_transient_errors_are_marked_transient(
    invoke: Invoke, status: int, body: Any, oauth_error: str | None
) -> None:
    """R10: 408, 429, 5xx, ``server_error`` and ``temporarily_unavailable`` are transient."""
    endpoint = TokenEndpoint(_respond(status, body))
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.RefreshError) as info:
        invoke(refresher, credentials=CREDENTIALS)
    assert type(info.value) is hr.RefreshError
    assert info.value.transient is True
    assert info.value.oauth_error == oauth_error
    assert info.value.status_code == status


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("peer closed"),
    ],
    ids=["connect", "read-timeout", "protocol"],
)
def test_R10_network_errors_are_transient(invoke: Invoke, exc: Exception) -> None:
    """R10: network errors and timeouts become a transient RefreshError (httpx translated)."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    endpoint = TokenEndpoint(fail)
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.RefreshError) as info:
        invoke(refresher, credentials=CREDENTIALS)
    assert type(info.value) is hr.RefreshError
    assert info.value.transient is True
    assert info.value.status_code is None
    assert_no_secret(str(info.value), repr(info.value))


NOT_AN_OBJECT = {
    "html": b"<html>OK</html>",
    "text": b"not json",
    "array": b"[1, 2]",
    "string": b'"token"',
    "empty": b"",
    "nested-too-deep": b"[" * 200_000 + b"]" * 200_000,  # 400 KB: under the size limit
}


@pytest.mark.parametrize("content", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
def test_R10_2xx_without_a_json_object_is_a_refresh_error(invoke: Invoke, content: bytes) -> None:
    """A 200 whose body is not a JSON object is a (non-permanent) RefreshError; JSON nested
    deeper than Python can parse too (its ``RecursionError`` used to escape)."""
    endpoint = TokenEndpoint(
        lambda r: httpx.Response(200, content=content, headers={"Content-Type": "text/html"})
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.RefreshError) as info:
        invoke(refresher, credentials=CREDENTIALS)
    assert type(info.value) is hr.RefreshError
    assert info.value.status_code == 200


@pytest.mark.parametrize(
    "credentials",
    [{"access_token": ACCESS_1}, {"access_token": ACCESS_1, "refresh_token": ""}, {}],
    ids=["missing", "empty", "nothing"],
)
def test_R10_no_refresh_token_raises_without_any_http_call(
    invoke: Invoke, credentials: dict[str, Any]
) -> None:
    """R10: credentials without a refresh token cannot be refreshed: ReauthorizationRequired,
    and the token endpoint is never called."""
    endpoint = TokenEndpoint()
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.ReauthorizationRequired):
        invoke(refresher, credentials=credentials)
    assert endpoint.requests == []


def test_error_description_is_scrubbed_of_secrets(invoke: Invoke) -> None:
    """An ``error_description`` echoing the refresh token or the client secret is redacted."""
    description = f"refresh token {REFRESH_1} revoked for client secret {CLIENT_SECRET}"
    endpoint = TokenEndpoint(
        _respond(400, {"error": "invalid_grant", "error_description": description})
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.ReauthorizationRequired) as info:
        invoke(refresher, credentials=CREDENTIALS)
    assert "revoked" in str(info.value)
    assert_no_secret(str(info.value), repr(info.value))


def test_long_error_description_leaks_no_part_of_a_secret(invoke: Invoke) -> None:
    """A long ``error_description`` is cut; the cut must not leave part of a secret behind
    (redact first, then truncate). No 8-character piece of the refresh token may remain."""
    description = "x" * 190 + REFRESH_1 + " was revoked"
    endpoint = TokenEndpoint(
        _respond(400, {"error": "invalid_grant", "error_description": description})
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.ReauthorizationRequired) as info:
        invoke(refresher, credentials=CREDENTIALS)
    texts = (str(info.value), repr(info.value))
    pieces = {REFRESH_1[start : start + 8] for start in range(len(REFRESH_1) - 7)}
    leaked = sum(piece in text for piece in pieces for text in texts)
    assert leaked == 0, "part of the refresh token leaked into the error"


# -- construction and repr ---------------------------------------------------------------


@pytest.mark.parametrize("url", ["/oauth/token", "ftp://auth.example.com/token", "auth.example"])
def test_token_url_must_be_absolute_http(url: str) -> None:
    """The token URL must be an absolute http(s) URL."""
    with pytest.raises(ValueError, match="token_url"):
        hr.OAuth2Refresh(url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


def test_client_auth_must_be_basic_or_body() -> None:
    """``client_auth`` is ``"basic"`` or ``"body"``."""
    with pytest.raises(ValueError, match="client_auth"):
        hr.ClientCredentialsRefresh(TOKEN_URL, client_auth="post")  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf"), "2", True])
def test_R16_timeout_must_be_a_positive_finite_number(timeout: Any) -> None:
    """``timeout`` is a finite number of seconds > 0 (it sets one deadline)."""
    with pytest.raises(ValueError, match="timeout"):
        hr.OAuth2Refresh(TOKEN_URL, timeout=timeout)


@pytest.mark.parametrize("cls", [hr.OAuth2Refresh, hr.ClientCredentialsRefresh])
def test_repr_hides_the_client_secret(cls: type[Any]) -> None:
    """No ``repr()`` holds a client secret."""
    refresher = cls(TOKEN_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    text = repr(refresher)
    assert cls.__name__ in text
    assert CLIENT_SECRET not in text
    assert CLIENT_ID in text


# -- C18 end to end through RefreshAuth --------------------------------------------------------


class Api:
    """A MockTransport API that accepts only ``ACCESS_2`` and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if request.headers.get("authorization") == f"Bearer {ACCESS_2}":
            return httpx.Response(200, json={"ok": True})
        return httpx.Response(401, json={"error": "invalid_token"})


C18_VARIANTS = {
    "400": (400, {"error": "invalid_grant", "error_description": f"{REFRESH_1} is revoked"}),
    "200": (200, {"error": "invalid_grant"}),
}


@pytest.fixture(params=sorted(C18_VARIANTS))
def c18_endpoint(request: pytest.FixtureRequest) -> TokenEndpoint:
    """The C18 token endpoint: 400 ``invalid_grant``, or 200 with that body."""
    status, body = C18_VARIANTS[request.param]
    return TokenEndpoint(_respond(status, body))


def c18_auth(endpoint: TokenEndpoint, credentials: dict[str, Any]) -> hr.RefreshAuth:
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    return hr.RefreshAuth(dict(credentials), refresher)


def _check_c18(
    error: hr.ReauthorizationRequired, auth: hr.RefreshAuth, endpoint: TokenEndpoint, api: Api
) -> None:
    assert error.oauth_error == "invalid_grant"
    assert_no_secret(str(error), repr(error), repr(auth), repr(auth.stats))
    assert dict(auth.credentials) == CREDENTIALS
    assert auth.version == 0
    assert len(endpoint.requests) == 1
    assert api.calls == 1  # the rejected request only: no replay
    assert auth.stats.replays == 0
    assert auth.stats.refreshes == 0


def test_C18_invalid_grant_sync(c18_endpoint: TokenEndpoint) -> None:
    """C18: a rejected request whose refresh gets ``invalid_grant`` (400, or 200 with that body)
    raises ReauthorizationRequired with ``oauth_error``, no secret, credentials unchanged,
    no replay (sync client)."""
    endpoint = c18_endpoint
    auth = c18_auth(endpoint, CREDENTIALS)
    api = Api()
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client,
        pytest.raises(hr.ReauthorizationRequired) as info,
    ):
        client.get(API_URL)
    _check_c18(info.value, auth, endpoint, api)


@pytest.mark.anyio
async def test_C18_invalid_grant_async(c18_endpoint: TokenEndpoint) -> None:
    """C18: as the sync case, through AsyncClient on asyncio and trio."""
    endpoint = c18_endpoint
    auth = c18_auth(endpoint, CREDENTIALS)
    api = Api()
    with anyio.fail_after(10):
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
            with pytest.raises(hr.ReauthorizationRequired) as info:
                await client.get(API_URL)
    _check_c18(info.value, auth, endpoint, api)


@pytest.mark.anyio
async def test_C18_invalid_grant_on_proactive_refresh_sends_nothing_to_the_api(
    c18_endpoint: TokenEndpoint,
) -> None:
    """C18: when the refresh is needed before sending (no access token), the API is never
    called and the credentials stay as they were."""
    endpoint = c18_endpoint
    credentials = {"refresh_token": REFRESH_1, "realmId": "42"}
    auth = c18_auth(endpoint, credentials)
    api = Api()
    with anyio.fail_after(10):
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
            with pytest.raises(hr.ReauthorizationRequired) as info:
                await client.get(API_URL)
    assert info.value.oauth_error == "invalid_grant"
    assert_no_secret(str(info.value), repr(info.value))
    assert api.calls == 0
    assert dict(auth.credentials) == credentials
    assert len(endpoint.requests) == 1


def test_C18_success_path_for_contrast() -> None:
    """C18 contrast: with a working token endpoint the same request is replayed once and the
    rotated refresh token is merged (R8), so the C18 assertions above can fail."""
    endpoint = TokenEndpoint()
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    auth = hr.RefreshAuth(dict(CREDENTIALS), refresher)
    api = Api()
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        assert client.get(API_URL).status_code == 200
    assert api.calls == 2
    assert auth.stats.replays == 1
    assert auth.credentials["refresh_token"] == REFRESH_2
    assert auth.credentials["access_token"] == ACCESS_2


# -- token-refresh failures reported against other libraries ---------------------------------
# Each test reproduces one public report (named in its docstring) against a real server on
# 127.0.0.1 or a MockTransport, with exact counts of token calls, API calls and replays.


def each_get(
    flavour: str, auth: hr.RefreshAuth, steps: list[tuple[Callable[[], Any], str]]
) -> list[Any]:
    """Send one GET per step, in order, through a sync client or an async one (asyncio or trio);
    each step's callable runs first. Returns each response's status, or the exception raised."""
    outcomes: list[Any] = []
    if flavour == "sync":
        with httpx.Client(auth=auth) as client:
            for before, url in steps:
                before()
                try:
                    outcomes.append(client.get(url).status_code)
                except hr.HttpxRefreshError as exc:
                    outcomes.append(exc)
        return outcomes

    async def main() -> None:
        with anyio.fail_after(15):
            async with httpx.AsyncClient(auth=auth) as client:
                for before, url in steps:
                    before()
                    try:
                        outcomes.append((await client.get(url)).status_code)
                    except hr.HttpxRefreshError as exc:
                        outcomes.append(exc)

    anyio.run(main, backend=flavour)
    return outcomes


FLAVOURS = ["sync", "asyncio", "trio"]


def nothing() -> None:
    """A step with nothing to do before its request."""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_frappe_frappe_26266_empty_refresh_token_keeps_the_old_one(
    flavour: str, run_server: Callable[[Any], str]
) -> None:
    """frappe/frappe#26266: a provider that does not rotate answers a refresh with
    ``"refresh_token": ""``; storing that empty string broke the second refresh. RFC 6749
    section 6 (the server MAY issue a new refresh token) and appendix A.17 (a refresh token
    has at least one character): an empty one is no new token, so the old one is kept.

    Two expiry cycles against a real token endpoint: both refreshes present refresh token
    generation 0; 2 token calls, 2 replays, every request ends in 200."""
    server = OAuthServer(token_extra=lambda gen: {"refresh_token": ""} if gen else {})
    url = run_server(server.app)
    auth = hr.RefreshAuth(
        server.initial_credentials(revoked=True),
        hr.OAuth2Refresh(f"{url}/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
    )
    outcomes = each_get(flavour, auth, [(nothing, f"{url}/a"), (server.revoke_access, f"{url}/b")])
    assert outcomes == [200, 200]
    assert server.token_calls == 2
    assert server.presented == [0, 0]
    assert [(hit.path, hit.gen, hit.status) for hit in server.hits] == [
        ("/a", 0, 401),
        ("/a", 1, 200),
        ("/b", 1, 401),
        ("/b", 2, 200),
    ]
    described = server.describe(auth.credentials)
    assert (described["refresh_gen"], described["refresh_current"]) == (0, True)
    assert auth.stats == hr.RefreshStats(refreshes=2, replays=2, deduplicated=0, failures=0)


class NonJsonEndpoint:
    """What a gateway in front of a token endpoint answers: an HTML page, not JSON."""

    PAGE = b"<html><body><h1>400 Bad Request</h1><p>nginx</p></body></html>"


@pytest.mark.parametrize(
    ("status", "content_type"),
    [(400, "text/html"), (404, "text/html; charset=iso-8859-1"), (400, "application/json")],
    ids=["400-html", "404-ingress-default-backend", "400-html-labelled-json"],
)
def test_evoila_meho_1711_non_json_error_page_from_the_token_endpoint_is_a_refresh_error(
    invoke: Invoke, status: int, content_type: str
) -> None:
    """evoila/meho#1711: authlib decodes a token endpoint's 4xx body as JSON before handling
    the error, so an ingress or proxy HTML page escapes as ``json.JSONDecodeError`` instead of
    the library's own error. Here: a ``RefreshError`` (not permanent: no OAuth error code was
    given, so nothing says the grant is dead; not transient: a 4xx), after exactly one token
    call, with the status in the message and no part of the page."""
    endpoint = TokenEndpoint(
        lambda request: httpx.Response(
            status, content=NonJsonEndpoint.PAGE, headers={"Content-Type": content_type}
        )
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.RefreshError) as info:
        invoke(refresher, credentials=CREDENTIALS)
    error = info.value
    assert type(error) is hr.RefreshError
    assert (error.status_code, error.transient, error.oauth_error) == (status, False, None)
    assert str(status) in str(error)
    assert "html" not in str(error).lower()
    assert len(endpoint.requests) == 1


class ForwardProxy:
    """A plain-HTTP forward proxy on 127.0.0.1 that answers for every origin itself.

    A client that uses it sends the absolute URL as the request target (RFC 9112 section
    3.2.2); the proxy records the request and answers as the token endpoint would.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, str | None, dict[str, list[str]]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        with self.lock:
            self.seen.append(
                (scope["method"], scope["path"], headers.get("host"), parse_qs(body.decode()))
            )
        payload = b'{"access_token": "%s", "token_type": "Bearer", "expires_in": 60}' % (
            ACCESS_2.encode()
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})


PROXY_VARIABLES = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


def _check_proxied(proxy: ForwardProxy, fields: dict[str, Any]) -> None:
    assert fields["access_token"] == ACCESS_2
    assert len(proxy.seen) == 1
    method, target, host, form = proxy.seen[0]
    assert (method, target, host) == ("POST", "http://token.invalid/oauth/token", "token.invalid")
    assert form["grant_type"] == ["refresh_token"]


def test_n8n_io_n8n_36996_token_request_goes_through_the_environment_proxy(
    invoke: Invoke, run_server: Callable[[Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """n8n-io/n8n#36996: OAuth2 token refreshes bypassed ``HTTP(S)_PROXY``, so where egress
    must go through a forward proxy every background refresh timed out. The built-in
    refreshers' own client honours the environment's proxy settings like any httpx client
    (``trust_env``): the token endpoint here does not resolve, and the one token request
    reaches it through the proxy."""
    proxy = ForwardProxy()
    url = run_server(proxy)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("http_proxy", url)
    refresher = hr.OAuth2Refresh(
        "http://token.invalid/oauth/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    _check_proxied(proxy, invoke(refresher, credentials=CREDENTIALS))


def test_requests_requests_oauthlib_235_token_request_through_a_configured_proxy(
    invoke: Invoke, run_server: Callable[[Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests/requests-oauthlib#235: tokens could not be refreshed through a proxy that
    was configured in code rather than in the environment. Here the proxy is given with the
    refresher's transports (``httpx.HTTPTransport(proxy=...)``), no proxy variable is set,
    and the one token request goes through it, from the sync and the async client."""
    proxy = ForwardProxy()
    url = run_server(proxy)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    refresher = hr.OAuth2Refresh(
        "http://token.invalid/oauth/token",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        transport=httpx.HTTPTransport(proxy=url),
        async_transport=httpx.AsyncHTTPTransport(proxy=url),
    )
    _check_proxied(proxy, invoke(refresher, credentials=CREDENTIALS))


class SameOriginProvider:
    """One origin for the API (``/api/...``) and its token endpoint (``/token``), as in a
    self-hosted service; records the Authorization scheme every request arrived with."""

    def __init__(self, token_status: int, token_body: dict[str, str] | None = None) -> None:
        self.token_status = token_status
        self.token_body = token_body
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []

    async def token(self, request: Request) -> Response:
        self._record(request)
        if self.token_status != 200:
            if self.token_body is None:
                return Response(status_code=self.token_status)
            return JSONResponse(self.token_body, status_code=self.token_status)
        return JSONResponse({"access_token": ACCESS_2, "expires_in": 3600})

    async def api(self, request: Request) -> Response:
        self._record(request)
        if request.headers.get("authorization") == f"Bearer {ACCESS_2}":
            return JSONResponse({"ok": True})
        return JSONResponse({"error": "invalid_token"}, status_code=401)

    def _record(self, request: Request) -> None:
        scheme = request.headers.get("authorization", "none").split(" ")[0]
        with self.lock:
            self.seen.append((request.url.path, scheme))

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token", self.token, methods=["POST"]),
                Route("/api/{rest:path}", self.api, methods=["GET"]),
            ]
        )


@pytest.mark.parametrize("body", [{"error": "unauthorized"}, None], ids=["custom-code", "no-body"])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_vaadin_vaadin_connect_335_401_from_the_token_endpoint_is_permanent(
    flavour: str, body: dict[str, str] | None, run_server: Callable[[Any], str]
) -> None:
    """vaadin/vaadin-connect#335: the token endpoint answered the refresh with 401
    ``{"error": "unauthorized"}`` and the client asked for a new token again and again. A 401
    from the token endpoint rejects the client or its grant whatever the code (RFC 6749
    section 5.2 names ``invalid_client``; this server used its own word), so: exactly one
    token call, carrying the client's Basic authentication and never a bearer token, although
    the token endpoint shares the API's origin (inside the auth's ``origins``); the request
    fails with ``ReauthorizationRequired``, and the next three fail fast without reaching the
    server (a plain ``RefreshError`` would let one more token call through per cooldown)."""
    provider = SameOriginProvider(token_status=401, token_body=body)
    url = run_server(provider.app())
    auth = hr.RefreshAuth(
        dict(CREDENTIALS),
        hr.OAuth2Refresh(f"{url}/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
        origins=[url],
        retry=hr.RetryPolicy(cooldown=0.0),
    )
    outcomes = each_get(flavour, auth, [(nothing, f"{url}/api/{i}") for i in range(4)])
    assert [type(outcome).__name__ for outcome in outcomes] == ["ReauthorizationRequired"] * 4
    assert {outcome.status_code for outcome in outcomes} == {401}
    assert provider.seen == [("/api/0", "Bearer"), ("/token", "Basic")]
    assert auth.stats.refreshes == 0
    assert dict(auth.credentials) == CREDENTIALS


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_supabase_community_supabase_kt_1132_token_request_never_goes_through_the_auth(
    flavour: str, run_server: Callable[[Any], str]
) -> None:
    """supabase-community/supabase-kt#1132: the refresh request was sent through the
    authenticated client, which saw the expired token, refreshed again, and recursed until
    the stack overflowed. Here the token endpoint shares the API's origin (inside the auth's
    ``origins``) and the stored token is already expired: one proactive refresh whose token
    request carries the client's Basic authentication only, then the request with the new
    token; 1 token call, 1 API call, nothing recursive."""
    provider = SameOriginProvider(token_status=200)
    url = run_server(provider.app())
    auth = hr.RefreshAuth(
        {**CREDENTIALS, "expires_at": 1_000_000_000},
        hr.OAuth2Refresh(f"{url}/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
        origins=[url],
    )
    assert each_get(flavour, auth, [(nothing, f"{url}/api/x")]) == [200]
    assert provider.seen == [("/token", "Basic"), ("/api/x", "Bearer")]
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=0, deduplicated=0, failures=0)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_openrelik_openrelik_server_70_refresh_token_kept_with_a_newline_still_refreshes(
    flavour: str, run_server: Callable[[Any], str]
) -> None:
    """openrelik/openrelik-server#70: a refresh token saved to an environment variable and a
    config file picked up spaces and a newline, and the server refused it. RFC 6749 appendix
    A.17: a refresh token is visible characters only, so what surrounds it is not part of
    it: the token endpoint receives the bare token (generation 0, accepted), 1 token call,
    the request succeeds after 1 replay; without the stripping it would answer
    ``invalid_grant`` and the connection would need reauthorization for nothing."""
    server = OAuthServer()
    url = run_server(server.app)
    credentials = server.initial_credentials(revoked=True)
    credentials["refresh_token"] = f" {credentials['refresh_token']}\r\n"
    auth = hr.RefreshAuth(
        credentials,
        hr.OAuth2Refresh(f"{url}/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
    )
    assert each_get(flavour, auth, [(nothing, f"{url}/a")]) == [200]
    assert server.token_calls == 1
    assert server.presented == [0]
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=1, deduplicated=0, failures=0)


# -- a real token endpoint that sends a byte order mark (RFC 8259 section 8.1) ---------------------


def _rotating_run(
    run_server: Callable[[Any], str], flavour: str, count: int, **options: Any
) -> tuple[OAuthServer, hr.RefreshAuth, list[int]]:
    """An OAuth2Refresh auth on a real server rotating single-use refresh tokens (more
    ``OAuthServer`` options in ``options``), expired at start; ``count`` GETs of ``/api``
    1 s apart on an injected clock. Returns the server, the auth and the statuses."""
    clock = FakeClock()
    server = OAuthServer(rotate=True, single_use=True, clock=clock, **options)
    url = run_server(server.app)
    refresher = hr.OAuth2Refresh(f"{url}/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    auth = hr.RefreshAuth(
        server.initial_credentials(expires_at=clock() - 1), refresher, clock=clock
    )
    statuses = get_every(
        flavour,
        (
            lambda: httpx.Client(auth=auth, base_url=url, timeout=10),
            lambda: httpx.AsyncClient(auth=auth, base_url=url, timeout=10),
        ),
        "/api",
        count=count,
        clock=clock,
    )
    return server, auth, statuses


def test_byte_order_mark_token_responses_with_rotation_through_two_refreshes(
    run_server: Callable[[Any], str], client_flavour: str
) -> None:
    """Issue 15 item 1 (R2, R8) on a real server on 127.0.0.1: the token endpoint rotates
    single-use refresh tokens and starts every JSON body with a UTF-8 byte order mark.
    Over two expiry cycles (injected clock): exactly 2 token calls, the second presents
    the rotated refresh token, no ``invalid_grant``, every request 200, no replay. It used
    to fail the first refresh ("not a JSON object"), losing the rotated refresh token."""
    # t = 0 (expired: refresh), ..., t = 30 (inside the leeway: refresh), ... 49
    server, auth, statuses = _rotating_run(run_server, client_flavour, 50, bom=True, expires_in=60)
    assert statuses == [200] * 50
    assert server.token_calls == 2
    assert server.presented == [0, 1]
    state = server.describe(auth.credentials)
    assert (state["access_gen"], state["refresh_gen"], state["refresh_current"]) == (2, 2, True)
    assert auth.stats.replays == 0
    assert auth.stats.failures == 0


# -- R16: timeout bounds the whole token exchange, body included -------------------------------

DRIP_INTERVAL = 0.5  # seconds between two body bytes
DRIP_BYTES = 40  # 20 s of dripping
TOKEN_TIMEOUT = 2.0
BOUND = 6.0  # seconds: well under the 20 s drip (not a tight timing)


class DripEndpoint:
    """ASGI token endpoint that answers 200 and its headers at once, then drips a valid
    token response one byte every 0.5 s for 20 s (until the client goes away)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        head = b'{"access_token": "dripped-token"'
        self.body = head + b" " * (DRIP_BYTES - len(head) - 1) + b"}"  # valid JSON at the end

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        message = await receive()
        while message["type"] == "http.request" and message.get("more_body"):
            message = await receive()
        if message["type"] == "http.disconnect":
            return
        with self.lock:
            self.calls += 1
        length = str(len(self.body)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async with anyio.create_task_group() as tg:

            async def until_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(until_disconnect)
            for index in range(DRIP_BYTES):
                await anyio.sleep(DRIP_INTERVAL)  # the fault itself: a slow server
                more = index < DRIP_BYTES - 1
                await send(
                    {
                        "type": "http.response.body",
                        "body": self.body[index : index + 1],
                        "more_body": more,
                    }
                )
            tg.cancel_scope.cancel()


def _check_overrun(error: BaseException, elapsed: float, bound: float = BOUND) -> None:
    assert type(error) is hr.RefreshError, repr(error)
    assert error.transient is True
    assert f"exceeded its timeout of {TOKEN_TIMEOUT:g} s" in str(error)
    assert elapsed < bound, f"the token request took {elapsed:.1f} s"
    assert_no_secret(str(error), repr(error))


@pytest.mark.parametrize("cls", [hr.OAuth2Refresh, hr.ClientCredentialsRefresh])
def test_R16_timeout_bounds_a_dripping_body(
    invoke: Invoke, cls: type[Any], run_server: Callable[[Any], str]
) -> None:
    """R16: a token endpoint that sends its headers, then one body byte every 0.5 s for
    20 s: ``timeout=2`` ends the exchange after about 2 s (sync client, and async client
    on asyncio and trio) with a transient RefreshError; exactly one request was sent. A
    refresh_token request is marked not to be re-sent at once (the server may have used
    the token), a client_credentials one may be retried."""
    endpoint = DripEndpoint()
    url = run_server(endpoint)
    refresher = cls(
        f"{url}/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, timeout=TOKEN_TIMEOUT
    )
    started = time.monotonic()
    with pytest.raises(hr.RefreshError) as info:
        invoke(refresher, credentials=CREDENTIALS)
    _check_overrun(info.value, time.monotonic() - started)
    assert info.value.no_retry is (cls is hr.OAuth2Refresh)
    with endpoint.lock:
        assert endpoint.calls == 1


class HeaderDrip:
    """A raw TCP token endpoint that answers a status line, then one more header line every
    0.1 s for as long as the client listens (headers never end). Each recv of the client
    returns within 0.1 s, so no per-operation network timeout ever fires."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        self.calls = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.calls += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not self.stop.wait(0.1):  # the fault itself: a slow server
                    conn.sendall(b"X-A: b\r\n")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.server.close()


@pytest.mark.parametrize("cls", [hr.OAuth2Refresh, hr.ClientCredentialsRefresh])
def test_R16_timeout_bounds_endless_response_headers(invoke: Invoke, cls: type[Any]) -> None:
    """R16: a token endpoint that sends a status line and then one header line every 0.1 s,
    never ending its headers: ``timeout=2`` ends the exchange after about 2 s (the sync
    client used to wait until h11's header size limit, minutes later) with a transient
    RefreshError; exactly one request was sent."""
    endpoint = HeaderDrip()
    try:
        refresher = cls(
            f"http://127.0.0.1:{endpoint.port}/token",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            timeout=TOKEN_TIMEOUT,
        )
        started = time.monotonic()
        with pytest.raises(hr.RefreshError) as info:
            invoke(refresher, credentials=CREDENTIALS)
        _check_overrun(info.value, time.monotonic() - started)
        assert info.value.no_retry is (cls is hr.OAuth2Refresh)
        assert endpoint.calls == 1
    finally:
        endpoint.close()


#: grant -> (refresher class, retry policy, token requests per refresh)
DRIP_GRANTS: dict[str, tuple[type[Any], hr.RetryPolicy, int]] = {
    # The default policy: a refresh_token request that went out is not sent again at once.
    "refresh_token": (hr.OAuth2Refresh, hr.RetryPolicy(), 1),
    # Two attempts, each bounded by timeout.
    "client_credentials": (
        hr.ClientCredentialsRefresh,
        hr.RetryPolicy(attempts=2, wait_initial=0, wait_jitter=0),
        2,
    ),
}


# -- odd token responses: malformed is not "reconnect", labels are not trusted -------------------


@pytest.mark.parametrize(
    "access_token", [["at"], {"value": "at"}, 1.5, True], ids=["list", "object", "float", "bool"]
)
def test_R10_access_token_that_is_not_a_string_is_malformed_not_reauthorization(
    invoke: Invoke, access_token: Any
) -> None:
    """R10: a 200 whose ``access_token`` is a list, an object, a float or a bool is a
    malformed token response (RefreshError: cooldown, tried again), not a verdict on the
    grant. It used to raise ReauthorizationRequired: the connection was declared dead and
    the user sent to reconnect over a provider's serialisation bug."""
    body = {"access_token": access_token, "refresh_token": REFRESH_2, "expires_in": 3600}
    endpoint = TokenEndpoint(_respond(200, body))
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.RefreshError) as info:
        invoke(refresher, credentials=CREDENTIALS)
    assert type(info.value) is hr.RefreshError
    assert info.value.transient is False
    assert info.value.status_code == 200
    assert_no_secret(str(info.value), repr(info.value))


def test_R10_integer_access_token_is_its_decimal_string(invoke: Invoke) -> None:
    """RFC 6749 section 5.1: a JSON integer access token is taken as the string it spells
    (the appliers send it so); it used to raise ReauthorizationRequired."""
    endpoint = TokenEndpoint(_respond(200, {"access_token": 7301992, "refresh_token": REFRESH_2}))
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    fields = invoke(refresher, credentials=CREDENTIALS)
    assert fields == {"access_token": "7301992", "refresh_token": REFRESH_2}


UNSENDABLE = {
    "nul": (b'{"access_token": "at-\\u0000-x", "expires_in": 3600}', "application/json"),
    "lf": (b'{"access_token": "at-\\n-x", "expires_in": 3600}', "application/json"),
    "lone-surrogate": (b'{"access_token": "at-\\ud800-x", "expires_in": 3600}', "application/json"),
    "form-nul": (b"access_token=at-%00-x&expires_in=3600", "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize(("content", "content_type"), UNSENDABLE.values(), ids=UNSENDABLE.keys())
def test_R10_access_token_that_cannot_be_sent_is_refused(
    invoke: Invoke, content: bytes, content_type: str
) -> None:
    """R1 / R10: an access token with a control character or a lone surrogate could never
    go into a header, so no request would ever reach the API to be rejected and trigger
    the next refresh: merged, it failed every request for its lifetime (for ever, with no
    expiry). The token response is malformed instead (RefreshError), nothing is merged."""
    endpoint = TokenEndpoint(
        lambda r: httpx.Response(200, content=content, headers={"Content-Type": content_type})
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(hr.RefreshError) as info:
        invoke(refresher, credentials=CREDENTIALS)
    assert type(info.value) is hr.RefreshError
    assert "at-" not in str(info.value)


MISLABELLED = {
    "form-as-json": (b"access_token=%s&refresh_token=%s&expires_in=3600", "application/json"),
    "bom-form-as-json": (
        b"\xef\xbb\xbfaccess_token=%s&refresh_token=%s&expires_in=3600",
        "application/json",
    ),
    "form-as-text": (b"access_token=%s&refresh_token=%s&expires_in=3600", "text/plain"),
    "json-as-form": (
        b'{"access_token": "%s", "refresh_token": "%s", "expires_in": "3600"}',
        "application/x-www-form-urlencoded",
    ),
}


class DripCase:
    """A ``RefreshAuth`` whose refresher's token endpoint drips, and an API that rejects."""

    def __init__(self, run_server: Callable[[Any], str], grant: str) -> None:
        cls, policy, self.calls = DRIP_GRANTS[grant]
        self.endpoint = DripEndpoint()
        url = run_server(self.endpoint)
        refresher = cls(
            f"{url}/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, timeout=TOKEN_TIMEOUT
        )
        self.auth = hr.RefreshAuth(dict(CREDENTIALS), refresher, retry=policy)
        self.api = Api()
        self.bound = self.calls * TOKEN_TIMEOUT + BOUND - TOKEN_TIMEOUT
        self.started = time.monotonic()

    def check(self, error: BaseException) -> None:
        _check_overrun(error, time.monotonic() - self.started, self.bound)
        with self.endpoint.lock:
            assert self.endpoint.calls == self.calls
        assert dict(self.auth.credentials) == CREDENTIALS
        assert (self.api.calls, self.auth.stats.failures) == (1, 1)


@pytest.mark.parametrize("grant", sorted(DRIP_GRANTS))
def test_R16_timeout_bounds_a_dripping_body_sync_client(
    run_server: Callable[[Any], str], grant: str
) -> None:
    """R16 through ``RefreshAuth`` and ``httpx.Client``: the rejected request's refresh
    fails after about ``timeout`` s per attempt, not the 20 s drip; exact token requests;
    nothing merged."""
    case = DripCase(run_server, grant)
    with (
        httpx.Client(auth=case.auth, transport=httpx.MockTransport(case.api)) as client,
        pytest.raises(hr.RefreshError) as info,
    ):
        client.get(API_URL)
    case.check(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize("grant", sorted(DRIP_GRANTS))
async def test_R16_timeout_bounds_a_dripping_body_async_client(
    run_server: Callable[[Any], str], grant: str
) -> None:
    """R16: as the sync client case, through ``httpx.AsyncClient`` on asyncio and trio."""
    case = DripCase(run_server, grant)
    with anyio.fail_after(case.bound * 2):
        async with httpx.AsyncClient(
            auth=case.auth, transport=httpx.MockTransport(case.api)
        ) as client:
            with pytest.raises(hr.RefreshError) as info:
                await client.get(API_URL)
    case.check(info.value)


@pytest.mark.parametrize(("template", "content_type"), MISLABELLED.values(), ids=MISLABELLED.keys())
def test_R8_mislabelled_token_response_is_read_and_keeps_the_rotated_refresh_token(
    invoke: Invoke, template: bytes, content_type: str
) -> None:
    """R8 / R10: the Content-Type says which format to try first, not the only one. A form
    labelled JSON or text/plain (the old Facebook Graph API) used to be "not a JSON
    object", and a JSON body labelled as a form a ReauthorizationRequired ("without an
    access_token"): the server had issued the token and rotated the refresh token,
    and both were thrown away."""
    content = template % (ACCESS_2.encode(), REFRESH_2.encode())
    endpoint = TokenEndpoint(
        lambda r: httpx.Response(200, content=content, headers={"Content-Type": content_type})
    )
    refresher = make(hr.OAuth2Refresh, endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    fields = invoke(refresher, credentials=CREDENTIALS)
    assert fields == {"access_token": ACCESS_2, "refresh_token": REFRESH_2, "expires_in": "3600"}


def test_R2_expires_in_that_means_never_refreshes_once_through_rotation(
    run_server: Callable[[Any], str], client_flavour: str
) -> None:
    """R2 on a real server on 127.0.0.1 (single-use rotating refresh tokens): ``expires_in:
    1e12`` ("does not expire"). 60 requests 1 s apart (injected clock): exactly 1 token
    call, every request 200. The stored ``now + 1e12`` used to read back as milliseconds
    (2001): the token counted as expired and was refreshed again every
    ``min_refresh_interval`` (12 token calls)."""
    server, auth, statuses = _rotating_run(run_server, client_flavour, 60, expires_in=1e12)
    assert statuses == [200] * 60
    assert server.token_calls == 1
    assert auth.stats.failures == 0
