"""The example connectors in examples/connectors/, end to end against the demo provider.

Issue 4 item 7: OAuth 2.0 with refresh-token rotation (acme-oauth), an API key exchanged for
a short-lived session token by a python refreshCredentials (session-token), and machine to
machine client credentials (m2m-client-credentials). Each runs real HTTP on 127.0.0.1; the
access tokens are revoked on the server (no sleeping) to make the next requests need a refresh.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import httpx_refresh as hr
from httpx_refresh._demo import DemoProvider, connect_grant

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "connectors"
CONCURRENCY = 30


@pytest.fixture
def provider() -> Iterator[tuple[DemoProvider, str]]:
    demo = DemoProvider(ttl=3600, token_latency=0.05)
    with demo as url:
        yield demo, url


def connect(name: str, demo: DemoProvider, url: str, **options: Any) -> hr.Connection:
    connector = hr.load_connector(EXAMPLES / name)
    if name == "acme-oauth":
        return connector.connect(
            connector_parameters={
                "clientId": demo.client_id,
                "clientSecret": demo.client_secret,
                "apiBaseUri": url,
            },
            credentials=connect_grant(url),
            **options,
        )
    if name == "session-token":
        return connector.connect(
            connector_parameters={"apiBaseUri": url},
            connection_parameters={"apiKey": demo.api_key},
            **options,
        )
    return connector.connect(
        connection_parameters={
            "clientId": demo.client_id,
            "clientSecret": demo.client_secret,
            "baseUri": url,
        },
        **options,
    )


# name -> the provider's token_calls key that counts its refreshes, and whether the first
# request fetches a token first (no access_token in the initial credentials).
CASES = {
    "acme-oauth": ("refresh_token", False),
    "session-token": ("session", True),
    "m2m-client-credentials": ("client_credentials", True),
}


async def _burst(client: Any, path: str = "/api/items") -> list[int]:
    statuses: list[int] = []

    async def one() -> None:
        statuses.append((await client.get(path)).status_code)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for _ in range(CONCURRENCY):
                group.start_soon(one)
    return statuses


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(CASES))
async def test_example_connector_async(name: str, provider: tuple[DemoProvider, str]) -> None:
    """30 concurrent requests, then every access token revoked, then 30 more: exactly one
    token call per needed refresh, every request 200, and the connector's own test passes."""
    demo, url = provider
    grant, fetches_first = CASES[name]
    saved: list[dict[str, Any]] = []
    connection = connect(name, demo, url, on_refresh=saved.append)
    async with connection.async_client() as client:
        assert await _burst(client) == [200] * CONCURRENCY
        assert demo.counters().token_calls.get(grant, 0) == (1 if fetches_first else 0)
        demo.revoke_access_tokens()
        assert await _burst(client) == [200] * CONCURRENCY
    expected = 2 if fetches_first else 1
    assert demo.counters().token_calls.get(grant, 0) == expected
    assert connection.auth.stats.refreshes == expected
    assert len(saved) == expected
    assert saved[-1]["access_token"] == connection.credentials["access_token"]
    if name == "acme-oauth":
        assert demo.refresh_token_state(connection.credentials["refresh_token"]) == "active"
        assert connection.credentials["tokenType"] == "Bearer"  # getCredentialsFromRefresh...
    assert await connection.atest() is True


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_connector_sync_threads(name: str, provider: tuple[DemoProvider, str]) -> None:
    """The same with one httpx.Client shared by 30 threads crossing a revocation."""
    demo, url = provider
    grant, fetches_first = CASES[name]
    connection = connect(name, demo, url)
    statuses: list[int] = []
    lock = threading.Lock()
    with connection.client() as client:
        client.get("/api/items").raise_for_status()
        demo.revoke_access_tokens()
        start = threading.Barrier(CONCURRENCY)

        def one() -> None:
            start.wait(timeout=10)
            status = client.get("/api/items").status_code
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=one) for _ in range(CONCURRENCY)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
    assert statuses == [200] * CONCURRENCY
    assert demo.counters().token_calls.get(grant, 0) == (2 if fetches_first else 1)
    assert connection.test() is True


def test_session_token_403_handler_triggers_refresh(provider: tuple[DemoProvider, str]) -> None:
    """The API answers an expired session with 403 SESSION_EXPIRED (no 401): the spec's
    access_token_expired response handler turns it into exactly one refresh and a replay."""
    demo, url = provider
    connection = connect("session-token", demo, url)
    with connection.client() as client:
        client.get("/api/items").raise_for_status()
        before = demo.counters()
        demo.revoke_access_tokens()
        response = client.post("/api/echo", content=b"x" * 1000)
    assert response.status_code == 200
    assert response.json() == {"received": 1000}
    after = demo.counters().since(before)
    assert after.token_calls.get("session", 0) == 1
    assert after.api_unauthorized == 1  # the one 403 before the replay
    assert connection.auth.stats.replays == 1


def test_session_token_wrong_key_needs_reconnect(provider: tuple[DemoProvider, str]) -> None:
    demo, url = provider
    connector = hr.load_connector(EXAMPLES / "session-token")
    connection = connector.connect(
        connector_parameters={"apiBaseUri": url}, connection_parameters={"apiKey": "wrong"}
    )
    with connection.client() as client:
        with pytest.raises(hr.ReauthorizationRequired, match="API key was rejected"):
            client.get("/api/items")
        with pytest.raises(hr.ReauthorizationRequired):  # fails fast afterwards
            client.get("/api/items")
    assert demo.counters().token_calls.get("session", 0) == 1
