"""Pickling and deep copies (DESIGN R16): auth objects of both libraries and their
``sharing()`` views, the built-in refreshers, the appliers and the stores.

A copy gets fresh locks, no flight and zero stats, and keeps the credentials, the version
and the expiry. What cannot be pickled (a lambda refresher, a transport with a connection
pool) is a ``TypeError`` naming the part, with no secret in it. A real
``ProcessPoolExecutor`` (spawn) receives a pickled auth and refreshes against a server in
this process.
"""

from __future__ import annotations

import copy
import functools
import multiprocessing
import pickle
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from servers import OAuthServer

import httpx_refresh as hr

SECRET = "client-secret-value-1234"
ACCESS = "access-token-value-5678"
REFRESH = "refresh-token-value-9012"
WAIT = 10.0


def _pickled(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


@pytest.fixture(params=["pickle", "deepcopy"])
def clone(request: pytest.FixtureRequest) -> Callable[[Any], Any]:
    """Copy an object through a pickle round trip or ``copy.deepcopy``."""
    return _pickled if request.param == "pickle" else copy.deepcopy


# -- refreshers module-level, so that they pickle by reference --------------------------------


_CALLS: list[str] = []
_HOLD = threading.Event()


_HELD: list[bool] = []  # [True] while the next call is to be held
_HOLDING = threading.Event()  # set by a held call once it is running


def _refresher(*, credentials: Any, **_: Any) -> dict[str, Any]:
    """Counts calls; the first call after _HELD is armed holds until _HOLD is set (sync
    refreshers run in a worker thread, so the caller's thread cannot tell)."""
    if _HELD and _HELD.pop():
        _HOLDING.set()
        _HOLD.wait(WAIT)
        _CALLS.append("held")
    else:
        _CALLS.append("free")
    return {"access_token": f"{credentials['access_token']}+", "expires_in": 3600}


def _token_endpoint(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"access_token": "new-access-token", "expires_in": 60})


def _flavours() -> list[Any]:
    flavours: list[Any] = [pytest.param(hr.RefreshAuth, id="httpx")]
    try:
        from httpx_refresh.httpx2 import RefreshAuth as RefreshAuth2
    except ImportError:  # pragma: no cover - the httpx2 extra is missing
        return flavours
    return [
        *flavours,
        pytest.param(RefreshAuth2, id="httpx2"),
        pytest.param(lambda *a, **k: RefreshAuth2.sharing(hr.RefreshAuth(*a, **k)), id="sharing"),
    ]


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", _flavours())
def test_r16_auth_copy_keeps_credentials_and_version_with_fresh_state(
    make: Callable[..., Any], clone: Callable[[Any], Any]
) -> None:
    """R16: the copy has the credentials, version and expiry; zero stats; a refresh of its own
    works and leaves the original alone."""
    _CALLS.clear()
    auth = make(
        {"access_token": ACCESS, "refresh_token": REFRESH},
        _refresher,
        connector_parameters={"client_secret": SECRET},
        leeway=12.0,
        advisory=300.0,
        refresh_on=(401, 419),
        retry=hr.RetryPolicy(attempts=2),
    )
    auth.refresh()
    assert auth.stats.refreshes == 1

    copied = clone(auth)

    assert type(copied) is type(auth)
    assert copied._control is not auth._control
    assert copied.version == auth.version == 1
    assert dict(copied.credentials) == dict(auth.credentials)
    assert copied.expires_at == auth.expires_at
    assert copied.stats == hr.RefreshStats()
    assert copied._decisions.leeway == 12.0
    assert copied._decisions.advisory == 300.0
    assert copied._refresh_on == (401, 419)
    assert copied._retry == hr.RetryPolicy(attempts=2)
    assert copied._connector_parameters == {"client_secret": SECRET}
    copied.refresh()
    assert copied.version == 2
    assert copied.stats.refreshes == 1
    assert auth.version == 1
    assert auth.stats.refreshes == 1
    assert len(_CALLS) == 2


def test_r16_shallow_copy_is_a_fresh_auth_over_the_same_parts() -> None:
    """R16: ``copy.copy``: fresh flight state and stats, the same refresher and store."""
    store = hr.MemoryStore({"access_token": ACCESS})
    auth = hr.RefreshAuth(store, _refresher)
    auth.refresh()

    copied = copy.copy(auth)

    assert type(copied) is hr.RefreshAuth
    assert copied._control is not auth._control
    assert copied._refresher is auth._refresher
    assert copied._store is store
    assert copied.version == 1
    assert copied.stats == hr.RefreshStats()
    with httpx.HTTPTransport() as transport:  # parts that do not pickle are shared, not copied
        grant = hr.OAuth2Refresh("https://auth.example.com/token", transport=transport)
        assert copy.copy(grant)._transport is transport


def test_r16_sharing_views_copied_together_stay_one_auth(clone: Callable[[Any], Any]) -> None:
    """R16: an auth and its httpx2 view, copied together, are again two views of one auth."""
    httpx2_flavour = pytest.importorskip("httpx_refresh.httpx2")
    auth = hr.RefreshAuth({"access_token": ACCESS}, _refresher)
    view = httpx2_flavour.RefreshAuth.sharing(auth)

    copied, copied_view = clone((auth, view))

    assert type(copied) is hr.RefreshAuth
    assert type(copied_view) is httpx2_flavour.RefreshAuth
    assert copied.__dict__ is copied_view.__dict__
    assert copied.__dict__ is not auth.__dict__


def test_r16_auth_copied_during_a_flight_has_no_flight(clone: Callable[[Any], Any]) -> None:
    """R16: a copy taken while a refresh runs (held in another thread) refreshes at once."""
    _CALLS.clear()
    _HOLD.clear()
    _HOLDING.clear()
    _HELD[:] = [True]
    auth = hr.RefreshAuth({"access_token": ACCESS}, _refresher)
    thread = threading.Thread(target=auth.refresh, name="held", daemon=True)
    thread.start()
    assert _HOLDING.wait(WAIT)  # the flight runs and its refresher is held
    assert auth._control._flight is not None
    try:
        copied = clone(auth)
        started = time.monotonic()
        copied.refresh()
        assert time.monotonic() - started < WAIT / 2
        assert copied.version == 1
        assert copied.stats.refreshes == 1
    finally:
        _HOLD.set()
        thread.join(WAIT)
    assert auth.version == 1
    assert auth.stats.refreshes == 1
    assert sorted(_CALLS) == ["free", "held"]


@pytest.mark.parametrize("grant", [hr.OAuth2Refresh, hr.ClientCredentialsRefresh])
def test_r16_refresher_copies(grant: type[Any], clone: Callable[[Any], Any]) -> None:
    """R16: the built-in refreshers copy with their settings and (picklable) transports; the
    copy exchanges tokens."""
    refresher = grant(
        "https://auth.example.com/token",
        client_id="client",
        client_secret=SECRET,
        client_auth="body",
        scope=["a", "b"],
        extra={"audience": "api"},
        timeout=3.0,
        transport=httpx.MockTransport(_token_endpoint),
    )
    refresher(credentials={"refresh_token": REFRESH})  # builds its TLS context

    copied = clone(refresher)

    assert type(copied) is grant
    assert repr(copied) == repr(refresher)
    assert (copied.token_url, copied.client_id, copied._client_secret) == (
        refresher.token_url,
        "client",
        SECRET,
    )
    assert (copied.scope, copied.extra, copied.timeout) == ("a b", {"audience": "api"}, 3.0)
    assert copied(credentials={"refresh_token": REFRESH})["access_token"] == "new-access-token"


def _appliers() -> dict[str, Any]:
    # Made in the test, not at import: the spawned process imports this module.
    return {
        "bearer": hr.bearer(),
        "bearer-custom": hr.bearer("token", header="X-Token", scheme=""),
        "headers": hr.headers({"Authorization": "Token {access_token}", "X-Tenant": "{tenant}"}),
        "query_param": hr.query_param("pickled_api_key"),
    }


_APPLIED = {"access_token": ACCESS, "token": ACCESS, "tenant": "t1"}


def _apply(applier: Any) -> tuple[list[tuple[str, str]], str, bool]:
    """Apply to a request: its headers, its URL, and whether httpx's log hides the key."""
    from httpx_refresh import _redact

    request = httpx.Request("GET", "https://api.example.com/")
    applier(request, _APPLIED)
    return (
        list(request.headers.items()),
        str(request.url),
        "pickled_api_key" in _redact._redactor.names,
    )


@pytest.mark.integration
def test_r16_appliers_copy_and_pickle_into_a_new_process() -> None:
    """R16: appliers deep-copy, and unpickled in a new process they write the same request;
    query_param's name is redacted from httpx's log line there too."""
    appliers = _appliers()
    expected = {name: _apply(applier) for name, applier in appliers.items()}
    for name, applier in appliers.items():
        assert _apply(copy.deepcopy(applier)) == expected[name]
        assert repr(copy.deepcopy(applier)) == repr(applier) == repr(_pickled(applier))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = {name: pool.submit(_apply, a) for name, a in appliers.items()}
        got = {name: future.result(timeout=60) for name, future in results.items()}
    assert {name: value[:2] for name, value in got.items()} == {
        name: value[:2] for name, value in expected.items()
    }
    assert got["query_param"][2]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_r16_auth_and_appliers_pickle_with_every_protocol(protocol: int) -> None:
    """R16: an auth with each applier, a retry policy and a bound-method refresher pickles
    with every pickle protocol (0 and 1 used to fail with "a class that defines __slots__
    without defining __getstate__", naming no part), and the copy applies the same headers;
    an applier's cache of the last token does not travel."""
    for name, applier in _appliers().items():
        _apply(applier)  # fills the applier's cache of the last token
        auth = hr.RefreshAuth(
            {"access_token": ACCESS, "refresh_token": REFRESH},
            functools.partial(_refresher),
            apply=applier,
            retry=hr.RetryPolicy(attempts=2),
        )
        copied = pickle.loads(pickle.dumps(auth, protocol=protocol))
        assert getattr(copied._applier, "_checked", None) in (None, (None, "", ""))
        assert _apply(copied._applier)[:2] == _apply(applier)[:2], name
        assert repr(copied._applier) == repr(applier)
        assert copied.credentials == auth.credentials


def test_r16_memory_store_copy_is_a_store_of_its_own(clone: Callable[[Any], Any]) -> None:
    """R16: a MemoryStore copy has the credentials and version, its own lock and data."""
    store = hr.MemoryStore({"access_token": ACCESS})
    store.save({"access_token": "second"}, expected_version=1)
    held = store.acquire(1.0)
    try:
        copied = clone(store)
        copied.release(copied.acquire(1.0))  # not the original's (held) lock
    finally:
        store.release(held)
    loaded = copied.load()
    assert loaded is not None
    assert loaded.version == 2
    assert loaded.credentials["access_token"] == "second"
    copied.save({"access_token": "third"}, expected_version=2)
    original = store.load()
    assert original is not None
    assert original.version == 2
    empty = clone(hr.MemoryStore())
    assert empty.load() is None


def test_r16_file_store_copies_by_path(tmp_path: Path, clone: Callable[[Any], Any]) -> None:
    """R16: a FileStore copy is the same file with its own lock."""
    path = tmp_path / "credentials.json"
    store = hr.FileStore(path)
    store.save({"access_token": ACCESS}, expected_version=None)
    token = store.acquire(1.0)  # held while copying
    store.release(token)

    copied = clone(store)

    assert type(copied) is hr.FileStore
    assert copied.path == path
    assert copied._filelock is not store._filelock
    copied.release(copied.acquire(1.0))
    loaded = copied.load()
    assert loaded is not None
    assert loaded.version == 1


@pytest.mark.parametrize("given", ["url", "client"])
def test_r16_redis_store_copies_by_url_or_client_settings(
    redis_url: str, given: str, clone: Callable[[Any], Any]
) -> None:
    """R16: a RedisStore copy talks to the same Redis and key (rebuilt from the URL, or from
    the given client's connection settings), with clients of its own."""
    import uuid

    import redis
    import redis.asyncio

    key = f"test:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    aclient = redis.asyncio.Redis.from_url(redis_url)
    store = hr.RedisStore(
        redis_url if given == "url" else client, key, lock_ttl=7.0, async_client=aclient
    )
    try:
        store.save({"access_token": ACCESS}, expected_version=None)
        copied = clone(store)
        assert type(copied) is hr.RedisStore
        assert copied.key == key
        assert copied._lock_ttl == 7.0
        assert copied._client is not store._client
        assert copied._client is not client
        assert copied._async_client is not None
        assert copied._async_client is not aclient
        copied.release(copied.acquire(1.0))
        loaded = copied.load()
        assert loaded is not None
        assert loaded.credentials == {"access_token": ACCESS}

        async def async_load() -> Any:
            try:
                return await copied.aload()
            finally:
                await copied._async_client.aclose()

        assert anyio.run(async_load) == loaded
        copied.close()
    finally:
        store.close()
        client.close()


# -- clear errors ------------------------------------------------------------------------------


def _no_secret(message: str) -> None:
    for secret in (SECRET, ACCESS, REFRESH):
        assert secret not in message


def test_r16_unpicklable_refresher_and_hook_are_named() -> None:
    """R16: a lambda refresher or on_refresh: a TypeError naming the part, never a secret."""
    credentials = {"access_token": ACCESS, "refresh_token": REFRESH}
    auth = hr.RefreshAuth(credentials, lambda **_: {}, connector_parameters={"s": SECRET})
    with pytest.raises(TypeError, match=r"^RefreshAuth's refresher .*<lambda> cannot be pickled"):
        pickle.dumps(auth)
    hooked = hr.RefreshAuth(credentials, _refresher, on_refresh=lambda credentials: None)
    with pytest.raises(TypeError, match=r"^RefreshAuth's on_refresh .*<lambda> cannot be") as info:
        pickle.dumps(hooked)
    _no_secret(str(info.value))
    assert copy.deepcopy(hooked).credentials == credentials  # a deep copy may keep a lambda


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_r16_unpicklable_transport_is_named(how: str) -> None:
    """R16: a transport with a connection pool (locks): a TypeError naming the refresher and
    the transport, with no secret."""
    with httpx.HTTPTransport() as transport:
        refresher = hr.OAuth2Refresh(
            "https://auth.example.com/token",
            client_id="client",
            client_secret=SECRET,
            transport=transport,
        )
        auth = hr.RefreshAuth({"access_token": ACCESS, "refresh_token": REFRESH}, refresher)
        with pytest.raises(TypeError) as info:
            pickle.dumps(auth) if how == "pickle" else copy.deepcopy(auth)
    message = str(info.value)
    assert message.startswith("RefreshAuth's refresher OAuth2Refresh cannot be")
    assert "OAuth2Refresh's transport HTTPTransport cannot be" in message
    assert "mappingproxy" not in message
    _no_secret(message)


def test_r16_ssl_context_verify_is_named() -> None:
    """R16: ``verify=ssl.SSLContext``: the error names ``verify``."""
    refresher = hr.ClientCredentialsRefresh(
        "https://auth.example.com/token",
        client_id="client",
        client_secret=SECRET,
        verify=ssl.create_default_context(),
    )
    with pytest.raises(TypeError, match=r"^ClientCredentialsRefresh's verify SSLContext") as info:
        pickle.dumps(refresher)
    _no_secret(str(info.value))


def test_r16_redis_store_with_a_credential_provider_is_refused(redis_url: str) -> None:
    """R16: a client whose connection cannot be described by settings: a clear TypeError."""
    import redis

    provider = redis.UsernamePasswordCredentialProvider("user", SECRET)
    client = redis.Redis(host="127.0.0.1", port=1, credential_provider=provider)
    store = hr.RedisStore(client, "test:provider")
    with pytest.raises(
        TypeError, match=r"^RedisStore's client cannot be pickled: .*credential_provider"
    ):
        pickle.dumps(store)
    client.close()


def test_r16_connection_is_refused_clearly() -> None:
    """R16: a connector's Connection (and its auth) cannot be pickled: a TypeError that says
    to connect again in the other process."""
    spec = Path(__file__).parent.parent / "examples" / "connectors" / "acme-oauth" / "spec.yml"
    connection = hr.load_connector(spec).connect(
        connector_parameters={
            "clientId": "client",
            "clientSecret": SECRET,
            "apiBaseUri": "https://api.example.com",
        },
        credentials={"access_token": ACCESS, "refresh_token": REFRESH},
    )
    for value, how in (
        (connection, pickle.dumps),
        (connection, copy.deepcopy),
        (connection.auth, pickle.dumps),
    ):
        with pytest.raises(TypeError, match=r"Connection 'Acme CRM' cannot be pickled") as info:
            how(value)
        _no_secret(str(info.value))


# -- across processes ----------------------------------------------------------------------------


def _worker(auth: hr.RefreshAuth, url: str, flavour: str, count: int) -> dict[str, Any]:
    """In a spawned process: ``count`` concurrent GETs through the unpickled auth."""
    before = {"version": auth.version, "stats": auth.stats == hr.RefreshStats()}
    statuses: list[int] = []
    if flavour == "sync":
        with httpx.Client(auth=auth, timeout=WAIT) as client:

            def one() -> None:
                statuses.append(client.get(f"{url}/api/items").status_code)

            threads = [threading.Thread(target=one) for _ in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
    else:

        async def main() -> None:
            async with (
                httpx.AsyncClient(auth=auth, timeout=WAIT) as client,
                anyio.create_task_group() as group,
            ):
                for _ in range(count):

                    async def one() -> None:
                        statuses.append((await client.get(f"{url}/api/items")).status_code)

                    group.start_soon(one)

        anyio.run(main, backend=flavour)
    stats = auth.stats
    return {
        "before": before,
        "statuses": statuses,
        "refreshes": stats.refreshes,
        "version": auth.version,
    }


@pytest.mark.integration
@pytest.mark.parametrize("flavour", ["sync", "asyncio", "trio"])
def test_r16_process_pool_receives_a_pickled_auth(
    run_server: Callable[[Any], str], flavour: str
) -> None:
    """R16: a spawned ProcessPoolExecutor worker gets the auth (credentials expired), sends 10
    concurrent requests to a server in this process: exactly one token-endpoint call, ten API
    calls with the new token, stats counted from zero in the worker."""
    server = OAuthServer()
    url = run_server(server.app)
    credentials = server.initial_credentials(expires_at=time.time() - 60)
    auth = hr.RefreshAuth(
        credentials, hr.OAuth2Refresh(f"{url}/token", client_id="client", client_secret=SECRET)
    )
    auth.update_credentials(credentials)  # version 1, to see that it carries over
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        report = pool.submit(_worker, auth, url, flavour, 10).result(timeout=60)
    assert report["before"] == {"version": 1, "stats": True}
    assert report["statuses"] == [200] * 10
    assert report["refreshes"] == 1
    assert report["version"] == 2
    assert server.token_calls == 1
    hits = server.hits
    assert len(hits) == 10
    assert {hit.gen for hit in hits} == {1}
    assert auth.version == 1
    assert auth.stats == hr.RefreshStats()


@pytest.mark.integration
@pytest.mark.parametrize("flavour", ["sync", "asyncio", "trio"])
def test_r16_process_pool_workers_share_a_pickled_file_store_auth(
    run_server: Callable[[Any], str], tmp_path: Path, flavour: str
) -> None:
    """R16: two spawned workers get the same pickled FileStore-backed auth (a rotating,
    single-use refresh token; credentials expired) and send 10 requests each: the store
    travels as its path, so the workers refresh once between them (the other adopts)."""
    server = OAuthServer(rotate=True, single_use=True)
    url = run_server(server.app)
    store = hr.FileStore(tmp_path / "credentials.json")
    store.save(server.initial_credentials(expires_at=time.time() - 60), expected_version=None)
    auth = hr.RefreshAuth(
        store, hr.OAuth2Refresh(f"{url}/token", client_id="client", client_secret=SECRET)
    )
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_worker, auth, url, flavour, 10) for _ in range(2)]
        reports = [future.result(timeout=60) for future in futures]
    assert [report["statuses"] for report in reports] == [[200] * 10] * 2
    assert sorted(report["refreshes"] for report in reports) == [0, 1]
    assert server.token_calls == 1
    assert {hit.gen for hit in server.hits} == {1}
    stored = store.load()
    assert stored is not None
    assert stored.version == 2
