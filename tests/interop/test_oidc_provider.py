"""Interop with the real, certified OpenID Provider ``oidc-provider`` (v9, Node.js), issue 7.

The provider (``provider.mjs``) issues opaque access tokens that live 3 s, rotates refresh
tokens (a used one is consumed; presenting it again revokes the grant), has
``clockTolerance: 0``, and serves ``/api/items`` which rejects expired or revoked tokens
with 401 ``WWW-Authenticate: Bearer error="invalid_token"``. Token-endpoint calls are counted
by the provider itself (``grant.success`` / ``grant.error`` events), so "exactly one refresh"
is what the server saw, not what the library believes.

Every scenario runs with the sync client and with the async client on asyncio and trio.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
import pytest

import httpx_refresh as hr

if TYPE_CHECKING:
    from conftest import OIDCProvider

pytestmark = pytest.mark.integration

REFRESH = "refresh_token"
CONCURRENCY = 50


# -- helpers ---------------------------------------------------------------------------------


def _refresher(provider: OIDCProvider, client: str) -> hr.OAuth2Refresh:
    return hr.OAuth2Refresh(provider.token_url, **provider.client_kwargs(client))  # type: ignore[arg-type]


def _expired(tokens: Mapping[str, Any]) -> dict[str, Any]:
    """The token response with an expiry already in the past (proactive refresh, R2)."""
    return {**tokens, "expires_at": time.time() - 1}


def _unknown_expiry(tokens: Mapping[str, Any]) -> dict[str, Any]:
    """The token response without expiry fields: only a 401 can reveal expiry (R4)."""
    return {k: v for k, v in tokens.items() if k not in ("expires_in", "expires_at")}


def _check_refreshed(
    provider: OIDCProvider, client: str, tokens: Mapping[str, Any], auth: hr.RefreshAuth
) -> None:
    """The credentials hold a new access token, a rotated refresh token and a future expiry."""
    current = auth.credentials
    # Compared into booleans so that a failure never prints a token.
    new_access = current["access_token"] != tokens["access_token"]
    rotated = current["refresh_token"] != tokens["refresh_token"]
    assert new_access, "the access token was not replaced"
    assert rotated, "the rotated refresh token was not kept"
    assert float(current["expires_at"]) > time.time()
    assert provider.introspect(client, current["access_token"])["active"] is True


def _check_items(response: httpx.Response, provider: OIDCProvider, client: str) -> None:
    assert response.status_code == 200, response.status_code
    body = response.json()
    assert body["client_id"] == provider.clients[client]["client_id"]
    assert body["account"] == "test-user"
    assert body["kind"] == "AccessToken"


# -- R2 / client authentication: authorization code -> proactive refresh -> replay ------------


@pytest.mark.parametrize("client", ["basic", "post"])
def test_R2_auth_code_then_proactive_refresh_sync(oidc_provider: OIDCProvider, client: str) -> None:
    """R2 with both client auth methods: an expired token is refreshed once before sending.

    ``basic`` uses client_secret_basic with a secret containing ``+``, ``%`` and ``:``
    (RFC 6749 section 2.3.1 encoding); ``post`` uses client_secret_post.
    """
    tokens = oidc_provider.authorize(client)
    before = oidc_provider.count("success", REFRESH, client)
    auth = hr.RefreshAuth(_expired(tokens), _refresher(oidc_provider, client))
    with httpx.Client(auth=auth, base_url=oidc_provider.issuer, timeout=10) as http:
        response = http.get("/api/items")
    _check_items(response, oidc_provider, client)
    assert oidc_provider.count("success", REFRESH, client) == before + 1
    assert auth.stats.refreshes == 1
    assert auth.stats.failures == 0
    _check_refreshed(oidc_provider, client, tokens, auth)


@pytest.mark.anyio
@pytest.mark.parametrize("client", ["basic", "post"])
async def test_R2_auth_code_then_proactive_refresh_async(
    oidc_provider: OIDCProvider, client: str
) -> None:
    """R2 with both client auth methods on asyncio and trio (see the sync test)."""
    tokens = await anyio.to_thread.run_sync(oidc_provider.authorize, client)
    before = await anyio.to_thread.run_sync(oidc_provider.count, "success", REFRESH, client)
    auth = hr.RefreshAuth(_expired(tokens), _refresher(oidc_provider, client))
    with anyio.fail_after(30):
        async with httpx.AsyncClient(auth=auth, base_url=oidc_provider.issuer, timeout=10) as http:
            response = await http.get("/api/items")
    _check_items(response, oidc_provider, client)
    assert (
        await anyio.to_thread.run_sync(oidc_provider.count, "success", REFRESH, client)
        == before + 1
    )
    assert auth.stats.refreshes == 1
    await anyio.to_thread.run_sync(_check_refreshed, oidc_provider, client, tokens, auth)


def test_basic_secret_needs_form_urlencoding_control(oidc_provider: OIDCProvider) -> None:
    """Control for the ``basic`` tests: the ``+%:`` secret sent without RFC 6749 2.3.1
    form-urlencoding is rejected by the provider, so those tests do exercise the encoding."""
    tokens = oidc_provider.authorize("basic")
    settings = oidc_provider.clients["basic"]
    response = httpx.post(
        oidc_provider.token_url,
        data={"grant_type": REFRESH, "refresh_token": tokens["refresh_token"]},
        auth=httpx.BasicAuth(settings["client_id"], settings["client_secret"]),
        timeout=10,
    )
    assert response.status_code == 401, response.status_code
    assert response.json()["error"] == "invalid_client"


# -- R4: a real expiry seen only through the resource server's 401 ----------------------------


def test_R4_real_expiry_401_refresh_replay_sync(oidc_provider: OIDCProvider) -> None:
    """R4: with unknown expiry, the provider's 401 (token really expired) triggers exactly one
    refresh and one replay, which succeeds."""
    tokens = oidc_provider.authorize("post")
    oidc_provider.wait_until_rejected("post", tokens["access_token"])
    before = oidc_provider.count("success", REFRESH, "post")
    auth = hr.RefreshAuth(_unknown_expiry(tokens), _refresher(oidc_provider, "post"))
    with httpx.Client(auth=auth, base_url=oidc_provider.issuer, timeout=10) as http:
        response = http.get("/api/items")
    _check_items(response, oidc_provider, "post")
    assert oidc_provider.count("success", REFRESH, "post") == before + 1
    assert (auth.stats.refreshes, auth.stats.replays) == (1, 1)
    _check_refreshed(oidc_provider, "post", tokens, auth)


@pytest.mark.anyio
async def test_R4_real_expiry_401_refresh_replay_async(oidc_provider: OIDCProvider) -> None:
    """R4 on asyncio and trio (see the sync test)."""
    tokens = await anyio.to_thread.run_sync(oidc_provider.authorize, "basic")
    await anyio.to_thread.run_sync(
        oidc_provider.wait_until_rejected, "basic", tokens["access_token"]
    )
    before = await anyio.to_thread.run_sync(oidc_provider.count, "success", REFRESH, "basic")
    auth = hr.RefreshAuth(_unknown_expiry(tokens), _refresher(oidc_provider, "basic"))
    with anyio.fail_after(30):
        async with httpx.AsyncClient(auth=auth, base_url=oidc_provider.issuer, timeout=10) as http:
            response = await http.get("/api/items")
    _check_items(response, oidc_provider, "basic")
    assert (
        await anyio.to_thread.run_sync(oidc_provider.count, "success", REFRESH, "basic")
        == before + 1
    )
    assert (auth.stats.refreshes, auth.stats.replays) == (1, 1)


# -- R5: 50 concurrent requests across a real expiry -> exactly one refresh_token grant --------


def _check_session_alive_sync(
    provider: OIDCProvider, client: str, auth: hr.RefreshAuth, before: int, errors: int
) -> None:
    """The final rotated refresh token still works: one more refresh succeeds and is used."""
    auth.refresh()
    assert provider.count("success", REFRESH, client) == before + 2
    assert provider.count("error", REFRESH, client) == errors
    with httpx.Client(auth=auth, base_url=provider.issuer, timeout=10) as http:
        _check_items(http.get("/api/items"), provider, client)
    assert auth.stats.refreshes == 2


def test_R5_fifty_threads_across_expiry_one_refresh(oidc_provider: OIDCProvider) -> None:
    """R5: 50 threads hit a really expired token at once; the provider sees exactly one
    refresh_token grant (a second would present a consumed refresh token and revoke the
    grant), every request succeeds, and the final refresh token still works."""
    tokens = oidc_provider.authorize("basic")
    oidc_provider.wait_until_rejected("basic", tokens["access_token"])
    before = oidc_provider.count("success", REFRESH, "basic")
    errors_before = oidc_provider.count("error", REFRESH, "basic")
    auth = hr.RefreshAuth(_unknown_expiry(tokens), _refresher(oidc_provider, "basic"))
    barrier = threading.Barrier(CONCURRENCY, timeout=30)
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    with httpx.Client(
        auth=auth,
        base_url=oidc_provider.issuer,
        timeout=30,
        limits=httpx.Limits(max_connections=CONCURRENCY),
    ) as http:

        def worker() -> None:
            try:
                barrier.wait()
                status = http.get("/api/items").status_code
            except Exception as exc:  # noqa: BLE001  (collected and asserted below)
                with lock:
                    errors.append(exc)
                return
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads), "a request hung"
    assert errors == []
    assert statuses == [200] * CONCURRENCY
    assert oidc_provider.count("success", REFRESH, "basic") == before + 1
    assert auth.stats.refreshes == 1
    _check_session_alive_sync(oidc_provider, "basic", auth, before, errors_before)


@pytest.mark.anyio
async def test_R5_fifty_tasks_across_expiry_one_refresh(oidc_provider: OIDCProvider) -> None:
    """R5 on asyncio and trio: 50 tasks, exactly one refresh_token grant at the provider,
    every request succeeds, and the final refresh token still works."""
    tokens = await anyio.to_thread.run_sync(oidc_provider.authorize, "post")
    await anyio.to_thread.run_sync(
        oidc_provider.wait_until_rejected, "post", tokens["access_token"]
    )
    before = await anyio.to_thread.run_sync(oidc_provider.count, "success", REFRESH, "post")
    errors = await anyio.to_thread.run_sync(oidc_provider.count, "error", REFRESH, "post")
    auth = hr.RefreshAuth(_unknown_expiry(tokens), _refresher(oidc_provider, "post"))
    statuses: list[int] = []
    with anyio.fail_after(60):
        async with httpx.AsyncClient(
            auth=auth,
            base_url=oidc_provider.issuer,
            timeout=30,
            limits=httpx.Limits(max_connections=CONCURRENCY),
        ) as http:
            start = anyio.Event()

            async def worker() -> None:
                await start.wait()
                statuses.append((await http.get("/api/items")).status_code)

            async with anyio.create_task_group() as group:
                for _ in range(CONCURRENCY):
                    group.start_soon(worker)
                await anyio.wait_all_tasks_blocked()
                start.set()
    assert statuses == [200] * CONCURRENCY
    assert (
        await anyio.to_thread.run_sync(oidc_provider.count, "success", REFRESH, "post")
        == before + 1
    )
    assert auth.stats.refreshes == 1
    with anyio.fail_after(30):
        await auth.arefresh()
    await anyio.to_thread.run_sync(
        _check_session_alive_after_arefresh, oidc_provider, auth, before, errors
    )


def _check_session_alive_after_arefresh(
    provider: OIDCProvider, auth: hr.RefreshAuth, before: int, errors: int
) -> None:
    assert provider.count("success", REFRESH, "post") == before + 2
    assert provider.count("error", REFRESH, "post") == errors
    with httpx.Client(auth=auth, base_url=provider.issuer, timeout=10) as http:
        _check_items(http.get("/api/items"), provider, "post")
    assert auth.stats.refreshes == 2


# -- client credentials ------------------------------------------------------------------------


def _cc_refresher(provider: OIDCProvider, client: str) -> hr.ClientCredentialsRefresh:
    return hr.ClientCredentialsRefresh(
        provider.token_url,
        **provider.client_kwargs(client),  # type: ignore[arg-type]
        scope="api",
    )


def _check_cc(response: httpx.Response, provider: OIDCProvider, client: str) -> None:
    assert response.status_code == 200, response.status_code
    body = response.json()
    assert body["kind"] == "ClientCredentials"
    assert body["client_id"] == provider.clients[client]["client_id"]
    # The provider grants "api" only when the request asked for it.
    assert body["scope"] == "api"


@pytest.mark.parametrize("client", ["basic", "post"])
def test_R2_client_credentials_fetched_and_refetched_sync(
    oidc_provider: OIDCProvider, client: str
) -> None:
    """R2: no token -> one client_credentials grant before sending; an expired one -> exactly
    one more, with the same parameters (scope=api)."""
    grant = "client_credentials"
    before = oidc_provider.count("success", grant, client)
    auth = hr.RefreshAuth({}, _cc_refresher(oidc_provider, client))
    with httpx.Client(auth=auth, base_url=oidc_provider.issuer, timeout=10) as http:
        _check_cc(http.get("/api/items"), oidc_provider, client)
        assert oidc_provider.count("success", grant, client) == before + 1
        first = auth.credentials["access_token"]
        assert auth.credentials["scope"] == "api"
        auth.update_credentials(_expired(auth.credentials))
        _check_cc(http.get("/api/items"), oidc_provider, client)
    assert oidc_provider.count("success", grant, client) == before + 2
    replaced = auth.credentials["access_token"] != first
    assert replaced, "the client-credentials token was not re-fetched"
    assert auth.credentials["scope"] == "api"
    assert auth.stats.refreshes == 2


@pytest.mark.anyio
async def test_R2_client_credentials_fetched_and_refetched_async(
    oidc_provider: OIDCProvider,
) -> None:
    """R2 for client credentials on asyncio and trio (see the sync test)."""
    grant = "client_credentials"
    before = await anyio.to_thread.run_sync(oidc_provider.count, "success", grant, "basic")
    auth = hr.RefreshAuth({}, _cc_refresher(oidc_provider, "basic"))
    with anyio.fail_after(30):
        async with httpx.AsyncClient(auth=auth, base_url=oidc_provider.issuer, timeout=10) as http:
            _check_cc(await http.get("/api/items"), oidc_provider, "basic")
            first = auth.credentials["access_token"]
            auth.update_credentials(_expired(auth.credentials))
            _check_cc(await http.get("/api/items"), oidc_provider, "basic")
    assert (
        await anyio.to_thread.run_sync(oidc_provider.count, "success", grant, "basic") == before + 2
    )
    replaced = auth.credentials["access_token"] != first
    assert replaced, "the client-credentials token was not re-fetched"
    assert auth.stats.refreshes == 2


# -- R10: a revoked grant -> ReauthorizationRequired, then no more token calls ------------------


def _secrets(provider: OIDCProvider, client: str, tokens: Mapping[str, Any]) -> list[str]:
    return [
        provider.clients[client]["client_secret"],
        tokens["access_token"],
        tokens["refresh_token"],
    ]


def test_R10_revoked_grant_reauthorization_required_sync(oidc_provider: OIDCProvider) -> None:
    """R10: after the refresh token is revoked (RFC 7009, which revokes the grant and its
    access tokens), a request raises ReauthorizationRequired(invalid_grant) after exactly one
    refresh attempt; later requests fail fast without calling the token endpoint."""
    tokens = oidc_provider.authorize("basic")
    oidc_provider.revoke("basic", tokens["refresh_token"])
    errors = oidc_provider.count("error", REFRESH, "basic")
    successes = oidc_provider.count("success", REFRESH, "basic")
    auth = hr.RefreshAuth(tokens, _refresher(oidc_provider, "basic"))
    with httpx.Client(auth=auth, base_url=oidc_provider.issuer, timeout=10) as http:
        with pytest.raises(hr.ReauthorizationRequired) as first:
            http.get("/api/items")
        with pytest.raises(hr.ReauthorizationRequired):
            http.get("/api/items")
    assert first.value.oauth_error == "invalid_grant"
    assert oidc_provider.count("error", REFRESH, "basic") == errors + 1
    assert oidc_provider.count("success", REFRESH, "basic") == successes
    shown = str(first.value) + repr(first.value)
    leaked = [
        i for i, secret in enumerate(_secrets(oidc_provider, "basic", tokens)) if secret in shown
    ]
    assert leaked == [], "a secret (by index) appears in the error"


@pytest.mark.anyio
async def test_R10_revoked_grant_reauthorization_required_async(
    oidc_provider: OIDCProvider,
) -> None:
    """R10 on asyncio and trio (see the sync test)."""
    tokens = await anyio.to_thread.run_sync(oidc_provider.authorize, "post")
    await anyio.to_thread.run_sync(oidc_provider.revoke, "post", tokens["refresh_token"])
    errors = await anyio.to_thread.run_sync(oidc_provider.count, "error", REFRESH, "post")
    auth = hr.RefreshAuth(tokens, _refresher(oidc_provider, "post"))
    with anyio.fail_after(30):
        async with httpx.AsyncClient(auth=auth, base_url=oidc_provider.issuer, timeout=10) as http:
            with pytest.raises(hr.ReauthorizationRequired) as first:
                await http.get("/api/items")
            with pytest.raises(hr.ReauthorizationRequired):
                await http.get("/api/items")
    assert first.value.oauth_error == "invalid_grant"
    assert (
        await anyio.to_thread.run_sync(oidc_provider.count, "error", REFRESH, "post") == errors + 1
    )
    shown = str(first.value) + repr(first.value)
    leaked = [
        i for i, secret in enumerate(_secrets(oidc_provider, "post", tokens)) if secret in shown
    ]
    assert leaked == [], "a secret (by index) appears in the error"


# -- the same through a connector spec ---------------------------------------------------------

SPEC = """\
name: oidc-provider interop
key: oidc-provider-interop
auth:
  type: oauth2
  getOAuthConfig:
    type: mapping
    mapping:
      clientId: {$var: connectorParameters.clientId}
      clientSecret: {$var: connectorParameters.clientSecret}
      authorizeUri: {$concat: [{$var: connectorParameters.issuer}, /auth]}
      tokenUri: {$concat: [{$var: connectorParameters.issuer}, /token]}
      clientAuthLocation: headers
      scopes: [openid, offline_access, api]
  makeApiClient:
    type: mapping
    mapping:
      baseUri: {$var: connectorParameters.issuer}
      headers:
        Authorization: {$concat: ["Bearer ", {$var: credentials.access_token}]}
        Accept: application/json
"""


def _connection(
    tmp_path: Path, provider: OIDCProvider, credentials: Mapping[str, Any]
) -> hr.Connection:
    (tmp_path / "spec.yml").write_text(SPEC, encoding="utf-8")
    connector = hr.load_connector(tmp_path / "spec.yml")
    settings = provider.clients["basic"]
    return connector.connect(
        connector_parameters={
            "clientId": settings["client_id"],
            "clientSecret": settings["client_secret"],
            "issuer": provider.issuer,
        },
        credentials=credentials,
    )


def test_spec_oauth2_connector_refreshes_against_oidc_provider_sync(
    oidc_provider: OIDCProvider, tmp_path: Path
) -> None:
    """A connector spec (oauth2, clientAuthLocation: headers with the ``+%:`` secret,
    makeApiClient Bearer header) refreshes an expired token once and replays (R2)."""
    tokens = oidc_provider.authorize("basic")
    before = oidc_provider.count("success", REFRESH, "basic")
    connection = _connection(tmp_path, oidc_provider, _expired(tokens))
    with connection.client(timeout=10) as http:
        response = http.get("/api/items")
    _check_items(response, oidc_provider, "basic")
    assert oidc_provider.count("success", REFRESH, "basic") == before + 1
    assert connection.auth.stats.refreshes == 1
    _check_refreshed(oidc_provider, "basic", tokens, connection.auth)


@pytest.mark.anyio
async def test_spec_oauth2_connector_real_expiry_async(
    oidc_provider: OIDCProvider, tmp_path: Path
) -> None:
    """The connector on asyncio and trio: the provider's 401 for a really expired token
    (unknown expiry) triggers exactly one refresh and a replay (R4)."""
    tokens = await anyio.to_thread.run_sync(oidc_provider.authorize, "basic")
    await anyio.to_thread.run_sync(
        oidc_provider.wait_until_rejected, "basic", tokens["access_token"]
    )
    before = await anyio.to_thread.run_sync(oidc_provider.count, "success", REFRESH, "basic")
    connection = _connection(tmp_path, oidc_provider, _unknown_expiry(tokens))
    with anyio.fail_after(30):
        async with connection.async_client(timeout=10) as http:
            response = await http.get("/api/items")
    _check_items(response, oidc_provider, "basic")
    assert (
        await anyio.to_thread.run_sync(oidc_provider.count, "success", REFRESH, "basic")
        == before + 1
    )
    assert (connection.auth.stats.refreshes, connection.auth.stats.replays) == (1, 1)
