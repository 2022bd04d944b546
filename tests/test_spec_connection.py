"""Connector specs at run time: makeApiClient, response handlers, refreshers, clients, test.

Issue 4 items 3-5; DESIGN "Connector specs", R1, R5, R10, R13.
"""

from __future__ import annotations

import base64
import json
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import anyio
import httpx
import pytest
from servers import FakeClock, OAuthServer, get_every

import httpx_refresh as hr

API = "https://api.example.com"
TOKEN_URL = "https://auth.example.com/oauth/token"


def write_spec(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root``; return the spec.yml path."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root / "spec.yml"


OAUTH_SPEC = """
name: Example
auth:
  type: oauth2
  getOAuthConfig:
    type: mapping
    mapping:
      clientId: {$var: connectorParameters.clientId}
      clientSecret: {$var: connectorParameters.clientSecret}
      tokenUri: https://auth.example.com/oauth/token
      clientAuthLocation: {$firstNotEmpty: [{$var: connectorParameters.where}, headers]}
      noRefreshToken: {$firstNotEmpty: [{$var: connectorParameters.noRefreshToken}, false]}
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.example.com/v2
      headers:
        Authorization: {$concat: ["Bearer ", {$var: credentials.access_token}]}
        X-Tenant: {$var: credentials.tenant}
      query:
        locale: {$var: connectionParameters.locale}
"""

PARAMS = {"clientId": "cid", "clientSecret": "csecret-value"}


class FakeProvider:
    """A token endpoint and an API behind one MockTransport (thread-safe counters)."""

    def __init__(self, *, token_delay: float = 0.0, form_as_text: bool = False) -> None:
        self.lock = threading.Lock()
        # Token responses as the old Facebook Graph API sent them: a form in text/plain.
        self.form_as_text = form_as_text
        self.token_calls: list[httpx.Request] = []
        self.api_calls: list[httpx.Request] = []
        self.valid = {"A1"}
        self.counter = 1
        self.token_delay = token_delay
        self.api_handler: Callable[[httpx.Request], httpx.Response | None] | None = None

    def token(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.token_calls.append(request)
            self.counter += 1
            access = f"A{self.counter}"
            self.valid = {access}
        fields = {
            "access_token": access,
            "refresh_token": f"R{self.counter}",
            "expires_in": 3600,
            "token_type": "Bearer",
        }
        if self.form_as_text:
            return httpx.Response(
                200, text=urlencode(fields), headers={"Content-Type": "text/plain"}
            )
        return httpx.Response(200, json=fields)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            if self.token_delay:
                time.sleep(self.token_delay)
            return self.token(request)
        with self.lock:  # a copy: a replay re-sends (and mutates) the same request object
            self.api_calls.append(
                httpx.Request(request.method, request.url, headers=request.headers.copy())
            )
        if self.api_handler is not None:
            answer = self.api_handler(request)
            if answer is not None:
                return answer
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.valid:
            return httpx.Response(401, json={"error": "invalid_token"})
        return httpx.Response(200, json={"ok": True, "token": token})


@pytest.fixture(autouse=True)
def _no_backoff() -> Any:
    hr.set_testing(True)
    yield
    hr.set_testing(False)


def oauth_connection(
    tmp_path: Path, provider: FakeProvider, *, spec: str = OAUTH_SPEC, **params: Any
) -> tuple[hr.Connection, Any]:
    connector = hr.load_connector(write_spec(tmp_path, {"spec.yml": spec}))
    connection = connector.connect(
        connector_parameters={**PARAMS, **params},
        connection_parameters={"locale": "fr"},
        credentials={"access_token": "A1", "refresh_token": "R1", "tenant": "t1"},
    )
    # The built-in oauth2 refresher's own HTTP goes to the same fake provider.
    return connection, provider


def _patch_token_transport(monkeypatch: pytest.MonkeyPatch, provider: FakeProvider) -> None:
    """Route OAuth2Refresh's own requests (token endpoint) to ``provider``."""
    original_init = hr.OAuth2Refresh.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("transport", httpx.MockTransport(provider))
        kwargs.setdefault("async_transport", httpx.MockTransport(provider))
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(hr.OAuth2Refresh, "__init__", init)


# -- makeApiClient -------------------------------------------------------------------------


def test_make_api_client_headers_query_and_base_url(tmp_path: Path) -> None:
    """baseUri becomes base_url; headers and query come from one credentials snapshot (R1)."""
    provider = FakeProvider()
    connection, _ = oauth_connection(tmp_path, provider)
    assert connection.base_url == f"{API}/v2"
    with connection.client(transport=httpx.MockTransport(provider)) as client:
        response = client.get("/items")
    assert response.status_code == 200
    sent = provider.api_calls[-1]
    assert str(sent.url) == f"{API}/v2/items?locale=fr"
    assert sent.headers["authorization"] == "Bearer A1"
    assert sent.headers["x-tenant"] == "t1"


def test_make_api_client_reevaluated_after_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh shows up in every header at once: the replay carries the new token and the
    tenant the refresh returned, never a mix (R1)."""
    provider = FakeProvider()
    _patch_token_transport(monkeypatch, provider)
    spec = OAUTH_SPEC.replace(
        "  makeApiClient:",
        "  getCredentialsFromRefreshTokenResponse:\n"
        "    type: mapping\n"
        "    mapping:\n"
        "      tenant: {$concat: [t-, {$var: tokenResponse.refresh_token}]}\n"
        "  makeApiClient:",
    )
    connection, _ = oauth_connection(tmp_path, provider, spec=spec)
    provider.valid = set()  # A1 is rejected: 401, refresh, replay
    with connection.client(transport=httpx.MockTransport(provider)) as client:
        response = client.get("/items")
    assert response.status_code == 200
    assert len(provider.token_calls) == 1
    first, replay = provider.api_calls
    assert (first.headers["authorization"], first.headers["x-tenant"]) == ("Bearer A1", "t1")
    assert (replay.headers["authorization"], replay.headers["x-tenant"]) == ("Bearer A2", "t-R2")
    assert connection.credentials["refresh_token"] == "R2"
    assert connection.credentials["tenant"] == "t-R2"


def test_credentials_only_go_to_the_origin_of_base_uri(tmp_path: Path) -> None:
    """R13: a request to another origin through the same client carries no credentials."""
    provider = FakeProvider()
    connection, _ = oauth_connection(tmp_path, provider)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        client.get("https://elsewhere.example.org/x")
        client.get("http://api.example.com/v2/plain-http")  # other scheme, other origin
        client.get("/inside")
    outside, plain, inside = seen
    for request in (outside, plain):
        assert "authorization" not in request.headers
        assert "x-tenant" not in request.headers
        assert "locale" not in request.url.params
    assert inside.headers["authorization"] == "Bearer A1"


def test_cross_origin_redirect_strips_custom_headers(tmp_path: Path) -> None:
    """C23 / R13 for connections: client() installs the redirect guard, so a custom header
    written by makeApiClient does not follow a redirect to another origin."""
    provider = FakeProvider()
    connection, _ = oauth_connection(tmp_path, provider)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.example.com":
            return httpx.Response(302, headers={"Location": "https://cdn.example.net/file"})
        return httpx.Response(200)

    with connection.client(transport=httpx.MockTransport(handler), follow_redirects=True) as c:
        assert c.get("/download").status_code == 200
    first, hop = seen
    assert first.headers["x-tenant"] == "t1"
    assert "x-tenant" not in hop.headers
    assert "authorization" not in hop.headers
    assert "locale" not in hop.url.params


def test_basic_auth_base_url_alias_and_args_wrapper(tmp_path: Path) -> None:
    """makeApiClient ``auth: {username, password}`` is HTTP Basic (RFC 7617); ``baseUrl`` and
    the ``args:`` wrapper are accepted."""
    spec = """
    auth:
      type: client-credentials
      makeApiClient:
        type: mapping
        mapping:
          args:
            baseUrl: https://api.example.com
            auth:
              username: {$var: credentials.user}
              password: {$var: credentials.password}
    """
    connector = hr.load_connector(write_spec(tmp_path, {"spec.yml": spec}))
    connection = connector.connect(connection_parameters={"user": "ann", "password": "p:w d"})
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        client.get("/me")
    expected = "Basic " + base64.b64encode(b"ann:p:w d").decode()
    assert seen[0].headers["authorization"] == expected
    assert str(seen[0].url) == "https://api.example.com/me"


def test_client_rejects_auth_and_keeps_user_hooks(tmp_path: Path) -> None:
    provider = FakeProvider()
    connection, _ = oauth_connection(tmp_path, provider)
    with pytest.raises(TypeError, match="auth"):
        connection.client(auth=httpx.BasicAuth("a", "b"))
    calls: list[str] = []
    with connection.client(
        transport=httpx.MockTransport(provider),
        event_hooks={
            "request": [lambda r: calls.append("req")],
            "response": [lambda r: calls.append("res")],
        },
    ) as client:
        client.get("/x")
    assert calls == ["req", "res"]


# -- response handlers -------------------------------------------------------------------

HANDLER_SPEC = """
auth:
  type: client-credentials
  refreshCredentials:
    type: mapping
    mapping:
      access_token: {$concat: [{$var: credentials.access_token}, "+"]}
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.example.com
      headers:
        Authorization: {$concat: ["Bearer ", {$var: credentials.access_token}]}
      responseHandlers:
        - match:
            $eval: {$var: response.data.error.code}
            is: SESSION_EXPIRED
          error: {key: access_token_expired, message: session expired}
        - match:
            $eval: {$var: response.data.error.code}
            is: ACCOUNT_CLOSED
          error: {key: connection_is_defunct}
        - match:
            $and:
              - $eval: {$var: response.statusCode}
                is: 503
              - $eval: {$var: response.headers.x-reason}
                is: throttled
          error: {key: rate_limit_exceeded}
"""


def handler_connection(tmp_path: Path, **options: Any) -> hr.Connection:
    connector = hr.load_connector(write_spec(tmp_path, {"spec.yml": HANDLER_SPEC}))
    return connector.connect(connection_parameters={"access_token": "T"}, **options)


def test_access_token_expired_handler_triggers_one_refresh_and_replay(tmp_path: Path) -> None:
    """A 403 matched by an ``access_token_expired`` handler refreshes like a 401: exactly one
    refresh, one replay with the new credentials."""
    connection = handler_connection(tmp_path)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"]
        seen.append(token)
        if token == "Bearer T":
            return httpx.Response(403, json={"error": {"code": "SESSION_EXPIRED"}})
        return httpx.Response(200, json={"ok": 1})

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        response = client.get("/x")
    assert response.status_code == 200
    assert seen == ["Bearer T", "Bearer T+"]
    assert connection.auth.stats.refreshes == 1
    assert connection.auth.stats.replays == 1


def test_other_403_is_returned_without_refresh(tmp_path: Path) -> None:
    connection = handler_connection(tmp_path)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"error": {"code": "FORBIDDEN"}})

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        assert client.get("/x").status_code == 403
    assert connection.auth.stats.refreshes == 0


def test_connection_is_defunct_raises_and_fails_fast(tmp_path: Path) -> None:
    """``connection_is_defunct`` raises ReauthorizationRequired; later requests fail fast
    without reaching the API, until update_credentials."""
    connection = handler_connection(tmp_path)
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(400, json={"error": {"code": "ACCOUNT_CLOSED"}})
        return httpx.Response(200)

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(hr.ReauthorizationRequired, match="defunct") as caught:
            client.get("/x")
        assert caught.value.status_code == 400
        with pytest.raises(hr.ReauthorizationRequired):
            client.get("/y")
        assert len(calls) == 1
        connection.auth.update_credentials({"access_token": "NEW"})
        assert client.get("/z").status_code == 200
    assert len(calls) == 2
    assert connection.auth.stats.refreshes == 0


@pytest.mark.anyio
async def test_connection_is_defunct_async(tmp_path: Path) -> None:
    connection = handler_connection(tmp_path)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"code": "ACCOUNT_CLOSED"}})

    async with connection.async_client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(hr.ReauthorizationRequired):
            await client.get("/x")


def test_429_retried_honouring_retry_after_bounded(tmp_path: Path) -> None:
    """429 is sent again after Retry-After, at most ``attempts`` times; then the 429 is
    returned to the caller (bounded)."""
    hr.set_testing(False)
    connection = handler_connection(
        tmp_path, rate_limit_retry=hr.RetryPolicy(attempts=3, wait_max=1.0, wait_jitter=0)
    )
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        return httpx.Response(429, headers={"Retry-After": "0"}, json={})

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        response = client.get("/x")
    assert response.status_code == 429
    assert len(times) == 3
    assert connection.auth.stats.refreshes == 0


def test_429_retry_after_beyond_cap_is_returned_at_once(tmp_path: Path) -> None:
    connection = handler_connection(tmp_path, rate_limit_retry=hr.RetryPolicy(wait_max=5.0))
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, headers={"Retry-After": "120"})

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        assert client.get("/x").status_code == 429
    assert len(calls) == 1


@pytest.mark.anyio
async def test_rate_limit_handler_then_success_async(tmp_path: Path) -> None:
    """A response matched by ``rate_limit_exceeded`` is retried; the POST body is re-sent in
    full; the second answer goes back to the caller."""
    connection = handler_connection(tmp_path)
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if len(bodies) == 1:
            return httpx.Response(503, headers={"X-Reason": "throttled"})
        return httpx.Response(201)

    async with connection.async_client(transport=httpx.MockTransport(handler)) as client:
        response = await client.post("/x", json={"n": 1})
    assert response.status_code == 201
    assert bodies == [b'{"n":1}', b'{"n":1}'] or bodies == [b'{"n": 1}', b'{"n": 1}']


def test_rate_limit_not_retried_for_streaming_body(tmp_path: Path) -> None:
    connection = handler_connection(tmp_path)
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        calls.append(request)
        return httpx.Response(429, headers={"Retry-After": "0"})

    def body() -> Any:
        yield b"chunk"

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        assert client.post("/x", content=body()).status_code == 429
    assert len(calls) == 1


def test_rate_limit_retry_can_be_turned_off(tmp_path: Path) -> None:
    connection = handler_connection(tmp_path, rate_limit_retry=hr.RetryPolicy(attempts=1))
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429)

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        assert client.get("/x").status_code == 429
    assert len(calls) == 1


# -- oauth2 -------------------------------------------------------------------------------


@pytest.mark.parametrize(("where", "basic"), [("headers", True), ("body", False)])
def test_oauth2_refresh_uses_get_oauth_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, basic: bool
) -> None:
    """The standard refresh_token grant (RFC 6749 section 6) with tokenUri, clientId,
    clientSecret and clientAuthLocation from getOAuthConfig."""
    provider = FakeProvider()
    _patch_token_transport(monkeypatch, provider)
    connection, _ = oauth_connection(tmp_path, provider, where=where)
    provider.valid = set()
    with connection.client(transport=httpx.MockTransport(provider)) as client:
        assert client.get("/x").status_code == 200
    (call,) = provider.token_calls
    form = parse_qs(call.content.decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == ["R1"]
    if basic:
        expected = "Basic " + base64.b64encode(b"cid:csecret-value").decode()
        assert call.headers["authorization"] == expected
        assert "client_secret" not in form
    else:
        assert "authorization" not in call.headers
        assert form["client_id"] == ["cid"]
        assert form["client_secret"] == ["csecret-value"]


def test_oauth2_no_refresh_token_means_reconnect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = FakeProvider()
    _patch_token_transport(monkeypatch, provider)
    connection, _ = oauth_connection(tmp_path, provider, noRefreshToken=True)
    provider.valid = set()
    with (
        connection.client(transport=httpx.MockTransport(provider)) as client,
        pytest.raises(hr.ReauthorizationRequired, match="noRefreshToken"),
    ):
        client.get("/x")
    assert provider.token_calls == []


def test_refresh_credentials_overrides_oauth2_standard_refresh(tmp_path: Path) -> None:
    spec = OAUTH_SPEC.replace(
        "  makeApiClient:",
        "  refreshCredentials:\n"
        "    type: mapping\n"
        "    mapping: {access_token: OVERRIDE, tenant: t9}\n"
        "  makeApiClient:",
    )
    provider = FakeProvider()
    connection, _ = oauth_connection(tmp_path, provider, spec=spec)
    provider.valid = {"OVERRIDE"}
    with connection.client(transport=httpx.MockTransport(provider)) as client:
        assert client.get("/x").status_code == 200
    assert provider.token_calls == []
    assert connection.credentials["access_token"] == "OVERRIDE"
    assert connection.credentials["refresh_token"] == "R1"  # R8: absent keys stay


@pytest.mark.anyio
async def test_oauth2_single_flight_across_50_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R5 through a connection: 50 concurrent rejected requests, exactly 1 token call."""
    provider = FakeProvider(token_delay=0.05)
    _patch_token_transport(monkeypatch, provider)
    connection, _ = oauth_connection(tmp_path, provider)
    provider.valid = set()
    statuses: list[int] = []
    async with connection.async_client(transport=httpx.MockTransport(provider)) as client:

        async def one() -> None:
            statuses.append((await client.get("/x")).status_code)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for _ in range(50):
                    group.start_soon(one)
    assert statuses == [200] * 50
    assert len(provider.token_calls) == 1
    assert connection.credentials["refresh_token"] == "R2"


# -- client-credentials, python methods ---------------------------------------------------


def test_client_credentials_from_connection_parameters_mapping(tmp_path: Path) -> None:
    spec = """
    auth:
      type: client-credentials
      getCredentialsFromConnectionParameters:
        type: mapping
        mapping:
          apiKey: {$var: connectionInput.key}
          region: {$var: connectionParameters.region}
      makeApiClient:
        type: mapping
        mapping:
          baseUri:
            $tpl:
              template: "https://{region}.example.com"
              values: {region: {$var: credentials.region}}
          headers: {X-Api-Key: {$var: credentials.apiKey}}
    """
    connector = hr.load_connector(write_spec(tmp_path, {"spec.yml": spec}))
    connection = connector.connect(connection_parameters={"key": "k1", "region": "eu"})
    assert dict(connection.credentials) == {"apiKey": "k1", "region": "eu"}
    assert connection.base_url == "https://eu.example.com"
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401 if len(seen) == 1 else 200)

    # No refreshCredentials: a rejection means the key is dead (and no proactive refresh
    # before the first request: there is no access_token to wait for).
    with (
        connection.client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(hr.ReauthorizationRequired, match="refreshCredentials"),
    ):
        client.get("/x")
    assert seen[0].headers["x-api-key"] == "k1"
    assert len(seen) == 1


PY_SPEC = """
auth:
  type: client-credentials
  refreshCredentials:
    implementationType: python
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.example.com
      headers:
        Authorization: {$concat: ["Bearer ", {$var: credentials.access_token}]}
"""


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_python_refresh_credentials_with_api_client(tmp_path: Path, flavour: str) -> None:
    """A python refreshCredentials gets exactly the keywords it accepts; ``api_client`` is a
    plain client on baseUri (no refresh of its own); sync and async functions both work
    from a sync client; no access_token yet means it runs before the first request (R2)."""
    if flavour == "sync":
        source = """
        RECEIVED = []

        def refresh_credentials(credentials, api_client):
            RECEIVED.append((sorted(credentials), type(api_client).__name__))
            response = api_client.post("/session", json={"key": credentials["apiKey"]})
            return {"access_token": response.json()["token"], "expires_in": 600}
        """
    else:
        source = """
        RECEIVED = []

        async def refresh_credentials(credentials, api_client):
            RECEIVED.append((sorted(credentials), type(api_client).__name__))
            response = await api_client.post("/session", json={"key": credentials["apiKey"]})
            return {"access_token": response.json()["token"], "expires_in": 600}
        """
    spec_path = write_spec(tmp_path, {"spec.yml": PY_SPEC, "auth/refresh-credentials.py": source})
    connector = hr.load_connector(spec_path)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/session":
            assert json.loads(request.content) == {"key": "K"}
            return httpx.Response(200, json={"token": "S1"})
        if request.headers.get("authorization") == "Bearer S1":
            return httpx.Response(200)
        return httpx.Response(401)

    async def handle(self: Any, request: httpx.Request) -> httpx.Response:
        return handler(request)

    with pytest.MonkeyPatch.context() as patch:
        # Both the connection's client and the plain api_client use the default transports.
        patch.setattr(httpx.HTTPTransport, "handle_request", lambda self, r: handler(r))
        patch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", handle)
        connection = connector.connect(connection_parameters={"apiKey": "K"})
        with connection.client() as client:
            assert client.get("/items").status_code == 200
    assert [r.url.path for r in seen] == ["/session", "/items"]
    assert "authorization" not in seen[0].headers  # no access_token yet
    assert connection.credentials["access_token"] == "S1"
    assert connection.auth.stats.refreshes == 1
    module = connector._spec.top.methods["refreshCredentials"].function.function.__globals__  # type: ignore[union-attr]
    expected_client = "Client" if flavour == "sync" else "AsyncClient"
    assert module["RECEIVED"] == [(["apiKey"], expected_client)]


def test_javascript_methods_run_under_node(tmp_path: Path) -> None:
    """Issue 8 (issue 4 made this a SpecError): a connector whose refreshCredentials and
    test are javascript connects, refreshes (the result merged) and passes its test."""
    from jsconnectors import require_node

    require_node()
    spec = """
    auth:
      type: client-credentials
      refreshCredentials:
        implementationType: javascript
      makeApiClient:
        type: mapping
        mapping: {baseUri: https://api.example.com}
      test:
        implementationType: javascript
    """
    path = write_spec(
        tmp_path,
        {
            "spec.yml": spec,
            "auth/refresh-credentials.js": (
                "export default async function ({ credentials }) {\n"
                "  return { n: (credentials.n || 0) + 1 }\n}\n"
            ),
            "auth/test.js": (
                "export default async function ({ credentials }) {\n"
                "  return credentials.n === 1\n}\n"
            ),
        },
    )
    connection = hr.load_connector(path).connect(connection_parameters={"apiKey": "k"})
    assert connection.test() is False
    assert dict(connection.auth.refresh()) == {"apiKey": "k", "n": 1}
    assert connection.test() is True


# -- test / atest -------------------------------------------------------------------------

TEST_SPEC = (
    OAUTH_SPEC
    + """
  test:
    type: rest-api-mapping
    mapping:
      path: /users/{id}
      method: get
      requestMapping:
        pathParameters: {id: {$var: credentials.tenant}}
        query: {fields: id}
      responseMapping:
        $eval: {$var: response.data.id}
        isNotEmpty: true
"""
)


def _test_handler(answer: dict[str, Any], status: int = 200) -> Any:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=answer)

    return handler, seen


def test_rest_api_mapping_test_passes_and_fails(tmp_path: Path) -> None:
    connector = hr.load_connector(write_spec(tmp_path, {"spec.yml": TEST_SPEC}))
    connection = connector.connect(
        connector_parameters=PARAMS,
        connection_parameters={"locale": "fr"},
        credentials={"access_token": "A1", "refresh_token": "R1", "tenant": "t 1"},
    )
    handler, seen = _test_handler({"id": 7})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx.HTTPTransport, "handle_request", lambda self, request: handler(request))
        assert connection.test() is True
        failing, _ = _test_handler({"name": "no id"})
        patch.setattr(httpx.HTTPTransport, "handle_request", lambda self, request: failing(request))
        assert connection.test() is False
        server_error, _ = _test_handler({"id": 7}, status=500)
        patch.setattr(
            httpx.HTTPTransport, "handle_request", lambda self, request: server_error(request)
        )
        assert connection.test() is False
    request = seen[0]
    assert request.url.raw_path == b"/v2/users/t%201?fields=id&locale=fr"
    assert request.url.params["fields"] == "id"
    assert request.headers["authorization"] == "Bearer A1"


@pytest.mark.anyio
async def test_rest_api_mapping_atest(tmp_path: Path) -> None:
    connector = hr.load_connector(write_spec(tmp_path, {"spec.yml": TEST_SPEC}))
    connection = connector.connect(
        connector_parameters=PARAMS,
        credentials={"access_token": "A1", "refresh_token": "R1", "tenant": "t1"},
    )
    handler, seen = _test_handler({"id": 7})

    async def handle(self: Any, request: httpx.Request) -> httpx.Response:
        return handler(request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", handle)
        assert await connection.atest() is True
    assert seen[0].url.path == "/v2/users/t1"


@pytest.mark.anyio
@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_python_test_method_sync_and_async(tmp_path: Path, flavour: str) -> None:
    prefix = "async " if flavour == "async" else ""
    call = "await " if flavour == "async" else ""
    source = f"""
    {prefix}def test(api_client, connection_parameters):
        response = {call}api_client.get("/me")
        return response.status_code == 200 and connection_parameters["expect"] == "ok"
    """
    spec = PY_SPEC.replace(
        "  refreshCredentials:\n    implementationType: python\n",
        "  test:\n    implementationType: python\n",
    )
    connector = hr.load_connector(write_spec(tmp_path, {"spec.yml": spec, "auth/test.py": source}))
    connection = connector.connect(
        connection_parameters={"expect": "ok"}, credentials={"access_token": "A"}
    )
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async def handle(self: Any, request: httpx.Request) -> httpx.Response:
        return respond(request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", handle)
        patch.setattr(httpx.HTTPTransport, "handle_request", lambda self, r: respond(r))
        assert await connection.atest() is True
        assert await anyio.to_thread.run_sync(connection.test) is True
    assert [r.headers["authorization"] for r in seen] == ["Bearer A", "Bearer A"]
    assert [str(r.url) for r in seen] == ["https://api.example.com/me"] * 2


def test_no_test_method_is_a_spec_error(tmp_path: Path) -> None:
    provider = FakeProvider()
    connection, _ = oauth_connection(tmp_path, provider)
    with pytest.raises(hr.SpecError, match="no test method"):
        connection.test()


def test_connect_rejects_an_unknown_keyword(tmp_path: Path) -> None:
    """A misspelt keyword is named by connect(), not by RefreshAuth deep inside."""
    connector = hr.load_connector(write_spec(tmp_path, {"spec.yml": OAUTH_SPEC}))
    with pytest.raises(
        TypeError, match="connect\\(\\) got an unexpected keyword argument 'connector_params'"
    ):
        connector.connect(connector_params=PARAMS, credentials={"access_token": "A"})
    with pytest.raises(TypeError, match="'apply'"):  # set from makeApiClient
        connector.connect(connector_parameters=PARAMS, credentials={}, apply=hr.bearer())
    connection = connector.connect(
        connector_parameters=PARAMS, credentials={"access_token": "A"}, leeway=5.0
    )
    assert connection.auth.version == 0


# -- a real token endpoint that sends a byte order mark (issue 15 item 1) ---------------------

# OAUTH_SPEC with the token endpoint and the API on a real server, and a
# getCredentialsFromRefreshTokenResponse that reads the token response.
BOM_SPEC = (
    OAUTH_SPEC.replace(
        "tokenUri: https://auth.example.com/oauth/token",
        "tokenUri: {$concat: [{$var: connectorParameters.server}, /token]}",
    )
    .replace("baseUri: https://api.example.com/v2", "baseUri: {$var: connectorParameters.server}")
    .replace(
        "  makeApiClient:",
        "  getCredentialsFromRefreshTokenResponse:\n"
        "    type: mapping\n"
        "    mapping: {tenant: {$var: tokenResponse.tenant}}\n"
        "  makeApiClient:",
    )
)


def _rotating_run(
    tmp_path: Path,
    run_server: Callable[[Any], str],
    flavour: str,
    count: int,
    **options: Any,
) -> tuple[OAuthServer, hr.Connection, list[int]]:
    """A BOM_SPEC connection to a real server rotating single-use refresh tokens (more
    ``OAuthServer`` options in ``options``), expired at start; ``count`` GETs of ``/api``
    1 s apart on an injected clock. Returns the server, the connection and the statuses."""
    clock = FakeClock()
    server = OAuthServer(
        rotate=True,
        single_use=True,
        clock=clock,
        token_extra=lambda gen: {"tenant": f"tenant-{gen}"},
        **options,
    )
    url = run_server(server.app)
    connector = hr.load_connector(write_spec(tmp_path, {"spec.yml": BOM_SPEC}))
    connection = connector.connect(
        connector_parameters={**PARAMS, "server": url},
        credentials=server.initial_credentials(expires_at=clock() - 1),
        clock=clock,
    )
    statuses = get_every(
        flavour,
        (lambda: connection.client(timeout=10), lambda: connection.async_client(timeout=10)),
        "/api",
        count=count,
        clock=clock,
    )
    return server, connection, statuses


def test_oauth2_byte_order_mark_token_responses_with_rotation(
    tmp_path: Path, run_server: Callable[[Any], str], client_flavour: str
) -> None:
    """Issue 15 item 1 through a connector (the standard oauth2 refresh of a spec and its
    getCredentialsFromRefreshTokenResponse), on a real server on 127.0.0.1 that rotates
    single-use refresh tokens and starts its JSON bodies with a UTF-8 byte order mark.
    Two expiry cycles: exactly 2 token calls, the second with the rotated refresh token,
    no invalid_grant, the mapping saw the token response. It used to fail the first one."""
    # refreshes at t = 0 (expired) and t = 30 (inside the leeway)
    server, connection, statuses = _rotating_run(
        tmp_path, run_server, client_flavour, 50, bom=True, expires_in=60
    )
    assert statuses == [200] * 50
    assert server.token_calls == 2
    assert server.presented == [0, 1]
    state = server.describe(connection.credentials)
    assert (state["access_gen"], state["refresh_gen"], state["refresh_current"]) == (2, 2, True)
    assert connection.credentials["tenant"] == "tenant-2"
    assert connection.auth.stats.failures == 0


def test_oauth2_expires_in_that_means_never_refreshes_once(
    tmp_path: Path, run_server: Callable[[Any], str], client_flavour: str
) -> None:
    """R2 through a connector's standard oauth2 refresh, on a real server on 127.0.0.1 that
    rotates single-use refresh tokens and answers ``expires_in: 1e12`` ("never"): 60
    requests 1 s apart (injected clock), exactly 1 token call. The stored ``now + 1e12``
    used to read back as milliseconds (2001) and the token was refreshed again every
    ``min_refresh_interval`` (12 token calls)."""
    server, connection, statuses = _rotating_run(
        tmp_path, run_server, client_flavour, 60, expires_in=1e12
    )
    assert statuses == [200] * 60
    assert server.token_calls == 1
    assert connection.credentials["tenant"] == "tenant-1"


def test_oauth2_form_token_response_labelled_text_keeps_the_rotated_refresh_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client_flavour: str
) -> None:
    """R8 / R10 through a connector: the token endpoint's form body labelled ``text/plain``
    is read (a rejected request: 1 token call, the replay is 200, the rotated ``R2`` is
    kept). It used to fail as "not a JSON object" after the server had rotated the
    refresh token, so the next refresh presented a consumed one."""
    provider = FakeProvider(form_as_text=True)
    _patch_token_transport(monkeypatch, provider)
    connection, _ = oauth_connection(tmp_path, provider)
    provider.valid = set()
    transport = httpx.MockTransport(provider)
    if client_flavour == "sync":
        with connection.client(transport=transport) as client:
            status = client.get("/x").status_code
    else:

        async def main() -> int:
            with anyio.fail_after(10):
                async with connection.async_client(transport=transport) as client:
                    return (await client.get("/x")).status_code

        status = anyio.run(main, backend=client_flavour)
    assert status == 200
    assert len(provider.token_calls) == 1
    assert connection.credentials["refresh_token"] == "R2"
    assert connection.credentials["access_token"] == "A2"
