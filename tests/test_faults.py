"""R10 fault injection: a real token endpoint on 127.0.0.1 failing in every common way.

Each fault is driven through ``hr.OAuth2Refresh`` against a Starlette token endpoint
served by uvicorn (the ``run_server`` fixture), with 100 concurrent tasks (asyncio and
trio) or 32 threads sharing one ``httpx.Client``. The credentials start expired (by an
injected clock), so every request needs the same refresh. The token endpoint holds its
first answer until every other request has joined the flight (``auth.stats``), so all
of them really wait on one refresh. Then each test checks:

- the exact number of token-endpoint calls (counted by the app under a lock);
- every waiter got the same typed error (type, ``str``, ``.transient``, ``.oauth_error``,
  ``.status_code``), or every waiter succeeded;
- ``auth.credentials`` is unchanged by a failed refresh (R8);
- nothing hangs (``anyio.fail_after``, thread joins with timeouts);
- fail fast afterwards (R10): during the cooldown (transient) or until
  ``update_credentials`` (permanent), requests fail at once without a token call;
- recovery: once the endpoint works again, a later request succeeds with exactly one
  more token call (after moving the fake clock past the cooldown, or after
  ``update_credentials``).
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
import httpx
import pytest
from servers import SHARED_CLIENT_LIMITS, OAuthServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import httpx_refresh as hr

TASKS = 100
THREADS = 32
LIMIT = 15.0  # seconds: no single phase of a test may take longer
START = 1_000_000.0  # fake epoch seconds
CLIENT_SECRET = "client-secret-0xC0FFEE"
REFRESH_TOKEN = "refresh-token-0xDEADBEEF"
ACCESS_TOKEN = "access-token-0xA1A1A1"
NEW_REFRESH_TOKEN = "refresh-token-0xR1bR1b"
POLICY = hr.RetryPolicy(attempts=3, wait_max=0.5, cooldown=5.0)
HTML = "<!doctype html><html><body><h1>Service unavailable</h1></body></html>"


@pytest.fixture(autouse=True)
def no_waits() -> Iterator[None]:
    """Backoff waits off (the documented switch), back on after each test."""
    hr.set_testing(True)
    yield
    hr.set_testing(False)


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


# -- the token endpoint and the API, one Starlette app ---------------------------------


def answer(kind: str) -> Response:
    """The token endpoint's response for one scripted ``kind``."""
    if kind == "ok":
        body = {"access_token": "A2", "refresh_token": "R2", "expires_in": 3600}
        return JSONResponse(body | {"token_type": "Bearer"})
    if kind == "500":
        return Response(status_code=500)
    if kind == "503-retry-after":
        return Response(status_code=503, headers={"Retry-After": "1"})
    if kind == "429":
        return Response(status_code=429)
    if kind == "malformed-json":
        return Response('{"access_token": "A2", "expi', media_type="application/json")
    if kind == "html-200":
        return Response(HTML, media_type="text/html")
    if kind == "html-500":
        return Response(HTML, status_code=500, media_type="text/html")
    if kind == "no-access-token":
        return JSONResponse({"token_type": "Bearer", "expires_in": 3600})
    if kind == "invalid_grant":
        return JSONResponse({"error": "invalid_grant"}, status_code=400)
    if kind == "invalid_client":
        return JSONResponse({"error": "invalid_client"}, status_code=401)
    raise AssertionError(f"unknown answer {kind!r}")


class TokenServer:
    """A token endpoint answering from a script (the last answer repeats), and an API.

    ``calls`` counts token-endpoint requests under a lock. When armed with
    ``hold=True`` the first call of the phase waits on ``gate`` (in a worker thread,
    so the server keeps serving) until the test opens it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.api_calls = 0
        self.refresh_tokens: list[str] = []
        self.script = ["ok"]
        self.phase_calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.app = Starlette(
            routes=[Route("/token", self.token, methods=["POST"]), Route("/api", self.api)]
        )

    def arm(self, *script: str, hold: bool = False) -> None:
        with self.lock:
            self.script = list(script)
            self.phase_calls = 0
            self.gate = threading.Event()
            if not hold:
                self.gate.set()

    async def token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        with self.lock:
            self.calls += 1
            self.phase_calls += 1
            self.refresh_tokens.append(form.get("refresh_token", ""))
            kind = self.script[min(self.phase_calls, len(self.script)) - 1]
            gate = self.gate if self.phase_calls == 1 else None
        if gate is not None:
            await anyio.to_thread.run_sync(gate.wait, LIMIT)
        return answer(kind)

    async def api(self, request: Request) -> Response:
        with self.lock:
            self.api_calls += 1
        ok = request.headers.get("Authorization") == "Bearer A2"
        return Response(status_code=200 if ok else 401)


class CountingTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """A real HTTP transport that counts token requests and can hold the first one.

    For the connection-refused fault, where no server can count. ``close`` is a
    no-op (the refresher closes its client after every call); the test closes the
    real transports at the end.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.gate = threading.Event()
        self.sync = httpx.HTTPTransport()
        self.async_ = httpx.AsyncHTTPTransport()

    def _count(self) -> bool:
        with self.lock:
            self.calls += 1
            return self.calls == 1

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._count():
            self.gate.wait(LIMIT)
        return self.sync.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._count():
            await anyio.to_thread.run_sync(self.gate.wait, LIMIT)
        return await self.async_.handle_async_request(request)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


# -- the faults ----------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One fault and what every waiter must see.

    ``error`` is ``None`` when the refresh recovers within the flight. ``cooldown`` is
    how far the clock must move before a new flight may start (transient failures);
    ``None`` for permanent failures (only ``update_credentials`` helps).
    """

    script: tuple[str, ...]
    calls: int
    error: type[hr.RefreshError] | None
    transient: bool = False
    oauth_error: str | None = None
    status_code: int | None = None
    cooldown: float | None = None
    policy: hr.RetryPolicy = POLICY


FAULTS = {
    # A connection that never opened is safe to retry: all 3 attempts, then the cooldown.
    "connection-refused": Fault(("refused",), 3, hr.RefreshError, True, None, None, 5.0),
    "500": Fault(("500",), 3, hr.RefreshError, True, None, 500, 5.0),
    # Retry-After (1 s) beyond wait_max (0.5 s): no retry; the cooldown (0.25 s) is
    # lengthened to the Retry-After.
    "503-retry-after": Fault(
        ("503-retry-after",),
        1,
        hr.RefreshError,
        True,
        None,
        503,
        1.0,
        hr.RetryPolicy(attempts=3, wait_max=0.5, cooldown=0.25),
    ),
    "429": Fault(("429",), 3, hr.RefreshError, True, None, 429, 5.0),
    "html-500": Fault(("html-500",), 3, hr.RefreshError, True, None, 500, 5.0),
    # A 200 whose body is not a JSON object: not retried; R10 still allows at most one
    # flight per backoff period while the endpoint keeps failing.
    "malformed-json-200": Fault(("malformed-json",), 1, hr.RefreshError, False, None, 200, 5.0),
    "html-200": Fault(("html-200",), 1, hr.RefreshError, False, None, 200, 5.0),
    "no-access-token-200": Fault(
        ("no-access-token",), 1, hr.ReauthorizationRequired, False, None, 200
    ),
    "invalid_grant-400": Fault(
        ("invalid_grant",), 1, hr.ReauthorizationRequired, False, "invalid_grant", 400
    ),
    "invalid_client-401": Fault(
        ("invalid_client",), 1, hr.ReauthorizationRequired, False, "invalid_client", 401
    ),
    # 500, then 503 with Retry-After 1 s (within this policy's wait_max, so retried; no
    # wait under set_testing), then 200: one flight of 3 calls, everyone succeeds.
    "fails-twice-then-recovers": Fault(
        ("500", "503-retry-after", "ok"), 3, None, policy=hr.RetryPolicy(wait_max=2.0)
    ),
}


def signature(error: object) -> tuple[Any, ...]:
    assert isinstance(error, hr.RefreshError), repr(error)
    return (type(error), str(error), error.transient, error.oauth_error, error.status_code)


def expected_signature(fault: Fault, message: str) -> tuple[Any, ...]:
    return (fault.error, message, fault.transient, fault.oauth_error, fault.status_code)


def no_secret(error: BaseException) -> None:
    text = f"{error!s} {error!r}"
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, ACCESS_TOKEN, NEW_REFRESH_TOKEN):
        assert secret not in text


class Setup:
    """The server, the auth under test and where its token requests go."""

    def __init__(self, run_server: Callable[[Any], str], fault: Fault) -> None:
        self.fault = fault
        self.server = TokenServer()
        self.url = run_server(self.server.app)
        self.clock = FakeClock()
        self.counter: CountingTransport | None = None
        self.refused: socket.socket | None = None
        kwargs: dict[str, Any] = {}
        if fault.script == ("refused",):
            # Bound but not listening: every connection attempt is refused.
            self.refused = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.refused.bind(("127.0.0.1", 0))
            port = self.refused.getsockname()[1]
            token_url = f"http://127.0.0.1:{port}/token"
            self.counter = CountingTransport()
            kwargs = {"transport": self.counter, "async_transport": self.counter}
        else:
            token_url = f"{self.url}/token"
            self.server.arm(*fault.script, hold=True)
        self.grant = hr.OAuth2Refresh(
            token_url, client_id="client", client_secret=CLIENT_SECRET, **kwargs
        )
        self.initial = {
            "access_token": ACCESS_TOKEN,
            "refresh_token": REFRESH_TOKEN,
            "expires_at": START - 60,  # expired: every request needs a refresh first
            "tenant": "t-1",
        }
        self.auth = hr.RefreshAuth(self.initial, self.grant, retry=fault.policy, clock=self.clock)
        self.api = f"{self.url}/api"

    @property
    def calls(self) -> int:
        """Token-endpoint calls so far (attempts, for the refused port)."""
        if self.counter is not None:
            return self.counter.calls
        with self.server.lock:
            return self.server.calls

    def release(self) -> None:
        """Let the held first token request go on."""
        if self.counter is not None:
            self.counter.gate.set()
        else:
            self.server.gate.set()

    def heal(self) -> None:
        """Make the token endpoint work again (for the refused port: point at the server)."""
        self.server.arm("ok")
        if self.counter is not None:
            self.counter.gate.set()
            self.grant.token_url = f"{self.url}/token"

    def close(self) -> None:
        if self.counter is not None:
            self.counter.sync.close()
        if self.refused is not None:
            self.refused.close()

    def check_outcomes(self, outcomes: list[BaseException | int], size: int) -> None:
        """Every waiter: the same typed error, or 200; credentials as they should be."""
        fault = self.fault
        assert len(outcomes) == size
        assert self.calls == fault.calls
        if fault.error is None:
            assert outcomes == [200] * size
            assert self.auth.credentials["access_token"] == "A2"
            assert self.auth.credentials["refresh_token"] == "R2"
            assert self.auth.stats.refreshes == 1
            return
        assert all(isinstance(o, BaseException) for o in outcomes), outcomes
        signatures = {signature(o) for o in outcomes if isinstance(o, BaseException)}
        assert len(signatures) == 1, signatures
        (got,) = signatures
        assert got == expected_signature(fault, got[1])
        if fault.status_code is not None:
            assert str(fault.status_code) in got[1]
        for outcome in outcomes:
            assert isinstance(outcome, BaseException)
            no_secret(outcome)
        assert dict(self.auth.credentials) == self.initial  # R8: a failed refresh merges nothing
        assert self.auth.stats.refreshes == 0
        assert self.auth.stats.failures == 1
        with self.server.lock:
            assert self.server.api_calls == 0  # nothing went out with the expired token

    def check_recovered(self, calls_before: int) -> None:
        assert self.calls == calls_before + 1
        assert self.auth.credentials["access_token"] == "A2"
        assert self.auth.credentials["refresh_token"] == "R2"
        assert self.auth.credentials["tenant"] == "t-1"  # R8: other keys survive


# -- async: 100 tasks on asyncio and trio -------------------------------------------


async def joined(auth: hr.RefreshAuth, waiters: int) -> None:
    """Return once ``waiters`` requests have joined the flight in progress (R5)."""
    while True:  # the library offers no event for this; poll its counter
        if auth.stats.deduplicated >= waiters:
            return
        await anyio.sleep(0.005)


async def outcome_async(client: httpx.AsyncClient, url: str) -> BaseException | int:
    try:
        return (await client.get(url)).status_code
    except hr.HttpxRefreshError as exc:
        return exc


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(FAULTS))
async def test_R10_fault_async_100_waiters(name: str, run_server: Callable[[Any], str]) -> None:
    """R10 + R5 + R8: one fault of the token endpoint (see ``FAULTS``) while 100 tasks
    wait on one refresh: exact token calls, one shared typed error (or all 200),
    credentials unchanged, fail fast afterwards, and recovery once the endpoint works."""
    fault = FAULTS[name]
    setup = Setup(run_server, fault)
    auth = setup.auth
    outcomes: list[BaseException | int] = []
    try:
        async with httpx.AsyncClient(auth=auth, timeout=LIMIT) as client:

            async def one() -> None:
                outcomes.append(await outcome_async(client, setup.api))

            with anyio.fail_after(LIMIT):
                async with anyio.create_task_group() as tg:
                    for _ in range(TASKS):
                        tg.start_soon(one)
                    await joined(auth, TASKS - 1)
                    setup.release()
            setup.check_outcomes(outcomes, TASKS)
            if fault.error is None:
                with anyio.fail_after(LIMIT):
                    assert (await client.get(setup.api)).status_code == 200
                assert setup.calls == fault.calls  # a fresh token: no further token call
                return
            first = signature(outcomes[0])
            setup.heal()
            calls = setup.calls
            with anyio.fail_after(LIMIT):
                # Fail fast: no new flight during the cooldown / while the grant is dead.
                setup.clock.now = START + (fault.cooldown or 3600.0) - 0.1
                later = await outcome_async(client, setup.api)
                assert isinstance(later, hr.RefreshError), later
                assert signature(later) == first
                assert setup.calls == calls
                if fault.cooldown is not None:
                    setup.clock.now = START + fault.cooldown  # the cooldown is over
                else:
                    auth.update_credentials(setup.initial | {"refresh_token": NEW_REFRESH_TOKEN})
                assert (await client.get(setup.api)).status_code == 200
            setup.check_recovered(calls)
            if fault.cooldown is None:
                assert setup.server.refresh_tokens[-1] == NEW_REFRESH_TOKEN
    finally:
        if setup.counter is not None:
            await setup.counter.async_.aclose()
        setup.close()


# -- sync: 32 threads sharing one httpx.Client ---------------------------------------


def outcome_sync(client: httpx.Client, url: str) -> BaseException | int:
    try:
        return client.get(url).status_code
    except hr.HttpxRefreshError as exc:
        return exc


@pytest.mark.parametrize("name", list(FAULTS))
def test_R10_fault_sync_32_threads(name: str, run_server: Callable[[Any], str]) -> None:
    """R10 + R5 + R8: the same faults with 32 threads sharing one ``httpx.Client``."""
    fault = FAULTS[name]
    setup = Setup(run_server, fault)
    auth = setup.auth
    outcomes: list[BaseException | int] = []
    lock = threading.Lock()
    try:
        with httpx.Client(auth=auth, timeout=LIMIT, limits=SHARED_CLIENT_LIMITS) as client:
            barrier = threading.Barrier(THREADS)

            def one() -> None:
                barrier.wait(LIMIT)
                got = outcome_sync(client, setup.api)
                with lock:
                    outcomes.append(got)

            threads = [threading.Thread(target=one, daemon=True) for _ in range(THREADS)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + LIMIT
            while auth.stats.deduplicated < THREADS - 1:  # all joined the one flight
                assert time.monotonic() < deadline, "the threads did not join one flight"
                time.sleep(0.005)
            setup.release()
            for thread in threads:
                thread.join(LIMIT)
            assert not any(thread.is_alive() for thread in threads), "a thread hangs"
            setup.check_outcomes(outcomes, THREADS)
            if fault.error is None:
                assert client.get(setup.api).status_code == 200
                assert setup.calls == fault.calls
                return
            first = signature(outcomes[0])
            setup.heal()
            calls = setup.calls
            setup.clock.now = START + (fault.cooldown or 3600.0) - 0.1
            later = outcome_sync(client, setup.api)
            assert isinstance(later, hr.RefreshError), later
            assert signature(later) == first
            assert setup.calls == calls
            if fault.cooldown is not None:
                setup.clock.now = START + fault.cooldown
            else:
                auth.update_credentials(setup.initial | {"refresh_token": NEW_REFRESH_TOKEN})
            assert client.get(setup.api).status_code == 200
            setup.check_recovered(calls)
            if fault.cooldown is None:
                assert setup.server.refresh_tokens[-1] == NEW_REFRESH_TOKEN
    finally:
        setup.close()


# -- R16: refresh_timeout bounds every waiter, the sync owner included -----------------


REFRESH_TIMEOUT = 3.0
WAITERS = 8
BOUND = REFRESH_TIMEOUT + 5.0  # seconds from the first request: generous, far below LIMIT


class BlockedRefresher:
    """A refresher that blocks (on an event, not a sleep) until the test releases it, then
    returns rotated credentials. ``kind``: a sync function, or an async function that
    blocks its own event loop (so cancelling it cannot stop it)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.lock = threading.Lock()
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def _run(self) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
        self.entered.set()
        self.release.wait(LIMIT)
        return {"access_token": "A2", "refresh_token": NEW_REFRESH_TOKEN, "expires_in": 3600}

    def sync(self, **_: Any) -> dict[str, Any]:
        return self._run()

    async def blocking_async(self, **_: Any) -> dict[str, Any]:
        return self._run()  # never yields to its loop

    @property
    def refresher(self) -> Callable[..., Any]:
        return self.sync if self.kind == "sync" else self.blocking_async


async def joined_or_fail(auth: hr.RefreshAuth, waiters: int) -> None:
    with anyio.fail_after(LIMIT):
        await joined(auth, waiters)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "async-blocking-its-loop"])
async def test_R16_refresh_timeout_bounds_sync_and_async_waiters_keeps_the_late_result(
    kind: str,
) -> None:
    """R16 + R7: a refresher that blocks is owned by a sync caller (a thread of a shared
    ``httpx.Client``); 8 threads and 8 tasks (asyncio, trio) wait on that one refresh.
    With ``refresh_timeout=3`` every one of them gets a transient RefreshError after about
    3 s, not when the refresher returns. When it does return, later, its rotated refresh
    token is merged and persisted (exactly 1 refresher call), and requests use it."""
    blocked = BlockedRefresher(kind)
    persisted = threading.Event()
    saved: list[dict[str, Any]] = []

    def on_refresh(credentials: dict[str, Any]) -> None:
        saved.append(credentials)
        persisted.set()

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if request.headers["Authorization"] == "Bearer A2" else 401)

    initial = {"access_token": ACCESS_TOKEN, "refresh_token": REFRESH_TOKEN}
    auth = hr.RefreshAuth(
        initial, blocked.refresher, refresh_timeout=REFRESH_TIMEOUT, on_refresh=on_refresh
    )
    thread_outcomes: list[BaseException | int] = []
    task_outcomes: list[BaseException | int] = []
    lock = threading.Lock()
    started = time.monotonic()
    transport = httpx.MockTransport(api)
    with httpx.Client(auth=auth, transport=transport) as client:
        async with httpx.AsyncClient(auth=auth, transport=transport) as aclient:

            def one() -> None:
                got = outcome_sync(client, "http://api.test/")
                with lock:
                    thread_outcomes.append(got)

            threads = [threading.Thread(target=one, daemon=True) for _ in range(WAITERS)]
            for thread in threads:
                thread.start()
            try:
                # A thread owns the flight, the other 7 join it; then 8 tasks join it too.
                assert await anyio.to_thread.run_sync(blocked.entered.wait, LIMIT)
                await joined_or_fail(auth, WAITERS - 1)

                async def task() -> None:
                    task_outcomes.append(await outcome_async(aclient, "http://api.test/"))

                with anyio.fail_after(BOUND - (time.monotonic() - started)):
                    async with anyio.create_task_group() as tg:
                        for _ in range(WAITERS):
                            tg.start_soon(task)
                        await joined(auth, 2 * WAITERS - 1)
                for thread in threads:
                    await anyio.to_thread.run_sync(
                        thread.join, max(BOUND - (time.monotonic() - started), 0.0)
                    )
                assert not any(thread.is_alive() for thread in threads), "a sync caller hangs"
                assert time.monotonic() - started < BOUND
            finally:
                blocked.release.set()
            outcomes = thread_outcomes + task_outcomes
            assert len(outcomes) == 2 * WAITERS
            assert len({signature(o) for o in outcomes}) == 1, outcomes
            error = outcomes[0]
            assert isinstance(error, hr.RefreshError)
            assert error.transient
            no_secret(error)
            assert auth.stats.failures == 1

            # The refresher returns later: its rotated credentials are kept (R7).
            assert await anyio.to_thread.run_sync(persisted.wait, LIMIT)
            assert auth.credentials["refresh_token"] == NEW_REFRESH_TOKEN
            assert auth.credentials["access_token"] == "A2"
            assert saved[-1]["refresh_token"] == NEW_REFRESH_TOKEN
            with anyio.fail_after(LIMIT):
                assert (await aclient.get("http://api.test/")).status_code == 200
            sync_get = functools.partial(client.get, "http://api.test/")
            assert (await anyio.to_thread.run_sync(sync_get)).status_code == 200
    assert blocked.calls == 1


@pytest.mark.parametrize("caller", ["sync", "asyncio", "trio"])
def test_R7_next_flight_waits_for_the_abandoned_refresher_of_its_version(caller: str) -> None:
    """R7 + R5: a sync refresher outlives ``refresh_timeout`` and is abandoned in its worker
    thread (still holding the refresh token it presented). The next flight of that version
    (no cooldown) must not present the same refresh token again while it runs: it waits for
    the abandoned one (within its own deadline) and adopts its late result. Exactly one
    refresher call; the rotated refresh token is kept."""
    blocked = BlockedRefresher("sync")
    auth = hr.RefreshAuth(
        {"access_token": ACCESS_TOKEN, "refresh_token": REFRESH_TOKEN},
        blocked.refresher,
        refresh_timeout=0.2,
        retry=hr.RetryPolicy(attempts=1, cooldown=0.0),
    )
    with pytest.raises(hr.RefreshError) as first:
        auth.refresh()
    assert first.value.transient
    assert blocked.entered.is_set()
    auth._refresh_timeout = LIMIT  # the next flight's own deadline: long enough to wait
    outcome: list[Any] = []

    def second() -> None:
        try:
            if caller == "sync":
                outcome.append(auth.refresh())
            else:
                outcome.append(anyio.run(auth.arefresh, backend=caller))
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + LIMIT
        while auth._control._flight is None and thread.is_alive():  # the second flight began
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        blocked.release.set()
    thread.join(LIMIT)
    assert not thread.is_alive()
    assert blocked.calls == 1
    assert len(outcome) == 1
    assert not isinstance(outcome[0], BaseException), outcome
    assert outcome[0]["refresh_token"] == NEW_REFRESH_TOKEN
    assert auth.credentials["refresh_token"] == NEW_REFRESH_TOKEN
    assert auth.version == 1


def test_R7_late_result_after_update_credentials_is_dropped(tmp_path: Any) -> None:
    """R7 + R16: a sync refresher outlives ``refresh_timeout``; meanwhile the user reconnects
    (``update_credentials``). Its late result must not overwrite the user's credentials, in
    memory or in the FileStore, nor reach ``on_refresh``; and the next refresh, of the new
    version, does not wait for the abandoned one of the old version."""
    blocked = BlockedRefresher("sync")
    store = hr.FileStore(tmp_path / "credentials.json")
    store.save(
        {"access_token": ACCESS_TOKEN, "refresh_token": REFRESH_TOKEN}, expected_version=None
    )
    hooked: list[dict[str, Any]] = []
    auth = hr.RefreshAuth(
        store,
        blocked.refresher,
        refresh_timeout=0.2,
        on_refresh=hooked.append,
        retry=hr.RetryPolicy(attempts=1, cooldown=0.0),
    )
    with pytest.raises(hr.RefreshError):
        auth.refresh()
    abandoned = auth._control._abandoned
    assert abandoned is not None
    user = {"access_token": "user-access", "refresh_token": "user-refresh"}
    auth.update_credentials(user)
    blocked.release.set()
    assert abandoned[1].wait(LIMIT)  # the late result has been handled
    assert dict(auth.credentials) == user
    assert auth.version == 1
    stored = store.load()
    assert stored is not None
    assert stored.credentials == user
    assert hooked == []
    started = time.monotonic()
    assert auth.refresh()["refresh_token"] == NEW_REFRESH_TOKEN  # a refresh of version 1
    assert time.monotonic() - started < LIMIT / 2
    assert blocked.calls == 2


def test_R3_no_advisory_refresh_while_an_abandoned_refresher_of_its_version_runs() -> None:
    """R3 + R7: a refresher of the current version outlived ``refresh_timeout`` and still
    runs. A request inside the advisory window (its token still valid) neither starts a
    second refresh with the same refresh token nor waits for the abandoned one: it goes out
    at once with the valid token."""
    blocked = BlockedRefresher("sync")
    auth = hr.RefreshAuth(
        {"access_token": ACCESS_TOKEN, "refresh_token": REFRESH_TOKEN, "expires_at": START + 200},
        blocked.refresher,
        refresh_timeout=0.2,
        advisory=300.0,
        retry=hr.RetryPolicy(attempts=1, cooldown=0.0),
        clock=lambda: START,
    )
    with pytest.raises(hr.RefreshError):
        auth.refresh()
    auth._refresh_timeout = LIMIT
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200)

    try:
        with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
            started = time.monotonic()
            assert client.get("http://api.test/").status_code == 200
            assert time.monotonic() - started < LIMIT / 2
    finally:
        blocked.release.set()
    assert seen == [f"Bearer {ACCESS_TOKEN}"]
    assert blocked.calls == 1


@pytest.mark.anyio
async def test_R7_R16_async_token_exchange_past_refresh_timeout_keeps_the_rotated_token(
    run_server: Callable[[Any], str],
) -> None:
    """R7 + R16 on a real server on 127.0.0.1: an ``httpx.AsyncClient`` (asyncio, trio) owns
    a refresh whose token endpoint (single-use rotating refresh tokens) answers only after
    ``refresh_timeout=1`` has passed. The caller gets a transient RefreshError after about
    1 s; the token exchange is not cancelled: the server's answer (the rotated refresh
    token) is merged and persisted when it comes, so the next request uses it with no
    second token call. Cancelling the exchange lost that token and the next refresh got
    ``invalid_grant`` (grant revoked)."""
    server = OAuthServer(rotate=True, single_use=True)
    server.token_hold = threading.Event()
    url = run_server(server.app)
    persisted = threading.Event()
    saved: list[dict[str, Any]] = []

    def on_refresh(credentials: dict[str, Any]) -> None:
        saved.append(credentials)
        persisted.set()

    auth = hr.RefreshAuth(
        server.initial_credentials(revoked=True),
        hr.OAuth2Refresh(f"{url}/token", client_id="app", client_secret=CLIENT_SECRET),
        refresh_timeout=1.0,
        on_refresh=on_refresh,
        retry=hr.RetryPolicy(attempts=1),
    )
    async with httpx.AsyncClient(auth=auth, base_url=url) as client:
        started = time.monotonic()
        try:
            with anyio.fail_after(LIMIT), pytest.raises(hr.RefreshError) as info:
                await client.get("/api")
            assert time.monotonic() - started < LIMIT / 2
            assert info.value.transient
            no_secret(info.value)
            assert server.token_arrived.is_set()
        finally:
            server.token_hold.set()  # the token endpoint answers now, after the timeout
        assert await anyio.to_thread.run_sync(persisted.wait, LIMIT)
        state = server.describe(auth.credentials)
        assert (state["access_gen"], state["refresh_gen"], state["refresh_current"]) == (
            1,
            1,
            True,
        )
        assert server.describe(saved[-1])["refresh_gen"] == 1
        with anyio.fail_after(LIMIT):
            assert (await client.get("/api")).status_code == 200
    assert server.token_calls == 1
    assert server.presented == [0]
    assert auth.stats.failures == 1
