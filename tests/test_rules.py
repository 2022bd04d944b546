"""Behaviour rules R1-R15 end to end: the real ``RefreshAuth`` driven by real httpx clients.

Sync (``httpx.Client``, threads) and async (``httpx.AsyncClient`` on asyncio and trio) cases
sit side by side. The protected API is an ``httpx.MockTransport`` where that is enough, and a
real server on 127.0.0.1 (``run_server``) where the rule involves the network: bodies on the
wire (R12), a sync and an async client sharing one auth at the same time (R6, R14).

Every wait is bounded (``anyio.fail_after``, joins and event waits with ``WAIT``); no test
sleeps to let things settle. A few refreshers and hooks sleep ``LATENCY`` on purpose: that is
the token endpoint's (or the store's) latency, which keeps a flight open while requests pile up.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import pytest
from servers import FakeClock, OAuthServer, get_every
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import httpx_refresh as hr

API = "http://api.test"
WAIT = 30.0  # seconds: the bound of every wait, join and fail_after in this file
LATENCY = 0.05  # seconds: simulated latency of a token endpoint or a credentials store
CREDS = {"access_token": "A1", "refresh_token": "R1"}


# -- a fake provider: the protected API and the token endpoint's state --------------------


@dataclass(frozen=True)
class Call:
    """One request as the API saw it."""

    path: str
    token: str
    length: int
    digest: str


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Provider:
    """Token state shared by the fake API and the fake refresher (thread-safe).

    The API answers 200 (JSON ``token``, ``length``, ``sha256`` of the body) when the bearer
    token is accepted, else ``reject_status``; paths under ``/admin`` reject every token.
    ``issue()`` is the token endpoint: access token ``A<n>``, refresh token ``R<n>``, and the
    API then accepts only the new access token (the old one is revoked).
    """

    def __init__(self, *accepted: str, reject_status: int = 401) -> None:
        self.lock = threading.Lock()
        self.accepted = set(accepted)
        self.reject_status = reject_status
        self.generation = 1
        self.calls: list[Call] = []
        self.rejections = 0
        self.issued = 0
        self.refresh_tokens_used: list[Any] = []
        self.on_rejection: Callable[[int], None] | None = None

    def revoke_all(self) -> None:
        with self.lock:
            self.accepted = set()

    def accept(self, token: str) -> None:
        with self.lock:
            self.accepted.add(token)

    def issue(self, credentials: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        with self.lock:
            self.issued += 1
            self.generation += 1
            n = self.generation
            self.refresh_tokens_used.append(credentials.get("refresh_token"))
            self.accepted = {f"A{n}"}
        return {"access_token": f"A{n}", "refresh_token": f"R{n}", **extra}

    def refresher(self, flavor: str = "sync", **extra: Any) -> Callable[..., Any]:
        """A refresher of the given flavour that calls :meth:`issue`."""
        if flavor == "sync":

            def refresh(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
                return self.issue(credentials, **extra)

            return refresh

        async def arefresh(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
            await anyio.lowlevel.checkpoint()
            return self.issue(credentials, **extra)

        return arefresh

    def answer(self, path: str, authorization: str | None, body: bytes) -> tuple[int, Any]:
        token = (authorization or "").removeprefix("Bearer ")
        with self.lock:
            self.calls.append(Call(path, token, len(body), sha(body)))
            ok = token in self.accepted and not path.startswith("/admin")
            if not ok:
                self.rejections += 1
                rejections = self.rejections
        if not ok:
            if self.on_rejection is not None:
                self.on_rejection(rejections)
            return self.reject_status, {"error": "invalid_token", "attempt": len(self.calls)}
        return 200, {"token": token, "length": len(body), "sha256": sha(body)}

    def mock(self, request: httpx.Request) -> httpx.Response:
        """``httpx.MockTransport`` handler (sync; also serves an AsyncClient)."""
        status, payload = self.answer(
            request.url.path, request.headers.get("Authorization"), request.content
        )
        return httpx.Response(status, json=payload)

    def app(self) -> Starlette:
        """The same API as a real ASGI app, for ``run_server``."""

        async def resource(request: Request) -> Response:
            body = await request.body()
            status, payload = self.answer(
                request.url.path, request.headers.get("authorization"), body
            )
            return JSONResponse(payload, status_code=status)

        return Starlette(routes=[Route("/{path:path}", resource, methods=["GET", "POST"])])

    def notify_after(self, count: int, event: Any) -> None:
        """Set ``event`` when ``count`` more requests have been rejected."""
        target = self.rejections + count

        def check(rejections: int) -> None:
            if rejections == target:
                event.set()

        self.on_rejection = check

    def seen(self) -> list[tuple[str, str]]:
        return [(call.path, call.token) for call in self.calls]


class Clock:
    """An injectable clock (epoch seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingLock:
    """A ``threading.Lock`` stand-in that counts its acquisitions exactly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acquisitions = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self.acquisitions += 1
        return got

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> CountingLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def mock_client(handler: Callable[..., Any], auth: httpx.Auth) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler), auth=auth)


def mock_aclient(handler: Callable[..., Any], auth: httpx.Auth) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth)


def run_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; return each result or error."""
    outcomes: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def target(index: int) -> None:
        try:
            barrier.wait(WAIT)
            outcomes[index] = work(index)
        except Exception as exc:  # noqa: BLE001 - the test inspects every outcome
            outcomes[index] = exc

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + WAIT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return outcomes


async def gather(count: int, work: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """Run ``work(i)`` in ``count`` concurrent tasks; return each result or error."""
    outcomes: list[Any] = [None] * count

    async def one(index: int) -> None:
        try:
            outcomes[index] = await work(index)
        except Exception as exc:  # noqa: BLE001 - the test inspects every outcome
            outcomes[index] = exc

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for index in range(count):
                tg.start_soon(one, index)
    return outcomes


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Block until ``predicate()`` holds (bounded); for sync refreshers and threads."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.001)


async def await_until(predicate: Callable[[], bool], what: str) -> None:
    """Wait in the current task until ``predicate()`` holds (bounded)."""
    try:
        with anyio.fail_after(WAIT):
            while not predicate():  # noqa: ASYNC110 - library state with no event to wait on
                await anyio.sleep(0.001)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


def outcome(value: Any) -> Any:
    """A response as ``(status, token)``, an error as its type name: readable in assertions."""
    if isinstance(value, httpx.Response):
        token = value.json().get("token") if value.status_code == 200 else None
        return (value.status_code, token)
    return type(value).__name__


def library_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "httpx_refresh" and r.levelno == level]


# -- R1 attach: one snapshot per request ---------------------------------------------------


class TenantApi:
    """R1 API: token and tenant must come from one version; A1 expires at request ``expire_at``."""

    PAIRS: ClassVar[dict[str, str]] = {"Bearer A1": "T1", "Bearer A2": "T2"}

    def __init__(self, expire_at: int) -> None:
        self.lock = threading.Lock()
        self.expire_at = expire_at
        self.accepted = {"Bearer A1"}
        self.seen: list[tuple[str | None, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        pair = (request.headers.get("Authorization"), request.headers.get("X-Tenant"))
        with self.lock:
            self.seen.append(pair)
            if len(self.seen) == self.expire_at:
                self.accepted.discard("Bearer A1")
            ok = pair[0] in self.accepted
        return httpx.Response(200 if ok else 401)

    def issue(self) -> dict[str, Any]:
        with self.lock:
            self.accepted.add("Bearer A2")
        return {"access_token": "A2", "tenant": "T2"}

    def mixes(self) -> list[tuple[str | None, str | None]]:
        return [pair for pair in self.seen if self.PAIRS.get(pair[0] or "") != pair[1]]


def tenant_auth(refresher: Callable[..., Any]) -> hr.RefreshAuth:
    return hr.RefreshAuth(
        {"access_token": "A1", "tenant": "T1", "refresh_token": "R1"},
        refresher,
        apply=hr.headers({"Authorization": "Bearer {access_token}", "X-Tenant": "{tenant}"}),
    )


def test_R1_32_threads_crossing_a_refresh_never_send_a_mix() -> None:
    """R1: 32 threads cross a refresh that replaces token and tenant; no request mixes them."""
    api = TenantApi(expire_at=100)
    seen_by_refresher: list[str] = []

    def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        seen_by_refresher.append(credentials["tenant"])
        time.sleep(LATENCY)
        return api.issue()

    auth = tenant_auth(refresher)
    with mock_client(api, auth) as client:
        outcomes = run_threads(
            32, lambda i: [client.get(f"{API}/t/{i}/{j}").status_code for j in range(10)]
        )
    assert outcomes == [[200] * 10] * 32
    assert api.mixes() == []
    assert ("Bearer A1", "T1") in api.seen
    assert ("Bearer A2", "T2") in api.seen
    assert seen_by_refresher == ["T1"]
    assert dict(auth.credentials) == {"access_token": "A2", "tenant": "T2", "refresh_token": "R1"}


@pytest.mark.anyio
async def test_R1_200_tasks_crossing_a_refresh_never_send_a_mix() -> None:
    """R1: 200 tasks cross a refresh that replaces token and tenant; no request mixes them."""
    api = TenantApi(expire_at=200)
    seen_by_refresher: list[str] = []

    async def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        seen_by_refresher.append(credentials["tenant"])
        await anyio.sleep(LATENCY)
        return api.issue()

    auth = tenant_auth(refresher)

    async def work(i: int) -> list[int]:
        return [(await client.get(f"{API}/t/{i}/{j}")).status_code for j in range(3)]

    async with mock_aclient(api, auth) as client:
        outcomes = await gather(200, work)
    assert outcomes == [[200] * 3] * 200
    assert api.mixes() == []
    assert ("Bearer A1", "T1") in api.seen
    assert ("Bearer A2", "T2") in api.seen
    assert seen_by_refresher == ["T1"]
    assert dict(auth.credentials) == {"access_token": "A2", "tenant": "T2", "refresh_token": "R1"}


# -- R2 proactive ----------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_R2_proactive_refresh_at_the_leeway_sync(flavor: str) -> None:
    """R2: with a known expiry, refresh before sending once ``now >= expires_at - leeway``."""
    clock = Clock()
    start = clock.now
    provider = Provider("A1")
    auth = hr.RefreshAuth(
        {**CREDS, "expires_in": 3600}, provider.refresher(flavor), leeway=30, clock=clock
    )
    with mock_client(provider.mock, auth) as client:
        assert outcome(client.get(API)) == (200, "A1")
        clock.now = start + 3600 - 30 - 0.001
        assert outcome(client.get(API)) == (200, "A1")
        assert provider.issued == 0
        clock.now = start + 3600 - 30
        assert outcome(client.get(API)) == (200, "A2")
    assert provider.issued == 1
    assert provider.rejections == 0  # refreshed before sending, not after a 401
    assert [call.token for call in provider.calls] == ["A1", "A1", "A2"]
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=0, deduplicated=0, failures=0)


@pytest.mark.anyio
@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_R2_proactive_refresh_at_the_leeway_async(flavor: str) -> None:
    """R2: with a known expiry, 20 tasks inside the leeway share one refresh before sending."""
    clock = Clock()
    start = clock.now
    provider = Provider("A1")
    auth = hr.RefreshAuth(
        {**CREDS, "expires_in": 3600}, provider.refresher(flavor), leeway=30, clock=clock
    )
    async with mock_aclient(provider.mock, auth) as client:
        assert outcome(await client.get(API)) == (200, "A1")
        clock.now = start + 3600 - 30 - 0.001
        assert outcome(await client.get(API)) == (200, "A1")
        assert provider.issued == 0
        clock.now = start + 3600 - 30
        outcomes = await gather(20, lambda i: client.get(f"{API}/{i}"))
    assert [outcome(o) for o in outcomes] == [(200, "A2")] * 20
    assert provider.issued == 1
    assert provider.rejections == 0
    assert auth.stats.refreshes == 1


UNKNOWN_EXPIRY = {
    "none": {},
    "bad-expires-at": {"expires_at": "next tuesday"},
    "bad-expires-in": {"expires_in": "soon"},
}


@pytest.mark.parametrize("expiry", UNKNOWN_EXPIRY.values(), ids=UNKNOWN_EXPIRY.keys())
def test_R2_unknown_expiry_never_refreshes_before_a_401_sync(
    expiry: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """R2: unknown (or unparseable) expiry never refreshes proactively, even years later."""
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    clock = Clock()
    start = clock.now
    provider = Provider("A1")
    auth = hr.RefreshAuth({**CREDS, **expiry}, provider.refresher(), clock=clock)
    assert auth.expires_at is None
    if expiry:
        assert library_records(caplog, logging.WARNING), "an unparseable expiry is logged"
    with mock_client(provider.mock, auth) as client:
        for years in (0, 1, 10):
            clock.now = start + years * 365 * 86400
            assert outcome(client.get(API)) == (200, "A1")
        assert provider.issued == 0
        provider.revoke_all()
        assert outcome(client.get(API)) == (200, "A2")
    assert provider.issued == 1
    assert [call.token for call in provider.calls] == ["A1", "A1", "A1", "A1", "A2"]


@pytest.mark.anyio
@pytest.mark.parametrize("expiry", UNKNOWN_EXPIRY.values(), ids=UNKNOWN_EXPIRY.keys())
async def test_R2_unknown_expiry_never_refreshes_before_a_401_async(
    expiry: dict[str, Any],
) -> None:
    """R2: unknown (or unparseable) expiry never refreshes proactively, even years later."""
    clock = Clock()
    start = clock.now
    provider = Provider("A1")
    auth = hr.RefreshAuth({**CREDS, **expiry}, provider.refresher("async"), clock=clock)
    async with mock_aclient(provider.mock, auth) as client:
        for years in (0, 1, 10):
            clock.now = start + years * 365 * 86400
            assert outcome(await client.get(API)) == (200, "A1")
        assert provider.issued == 0
        provider.revoke_all()
        assert outcome(await client.get(API)) == (200, "A2")
    assert provider.issued == 1
    assert [call.token for call in provider.calls] == ["A1", "A1", "A1", "A1", "A2"]


NO_TOKEN = {
    "refresh-token-only": {"refresh_token": "R1"},
    "empty-token": {"access_token": "", "refresh_token": "R1"},
    "none-token": {"access_token": None, "refresh_token": "R1"},
    "nothing": {},
}


@pytest.mark.parametrize("credentials", NO_TOKEN.values(), ids=NO_TOKEN.keys())
def test_R2_no_access_token_refreshes_before_the_first_request_sync(
    credentials: dict[str, Any],
) -> None:
    """R2: with no usable token, 8 threads share one refresh and never send unauthenticated."""
    provider = Provider()

    def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        time.sleep(LATENCY)
        return provider.issue(credentials)

    auth = hr.RefreshAuth(credentials, refresher)
    with mock_client(provider.mock, auth) as client:
        outcomes = run_threads(8, lambda i: client.get(f"{API}/{i}"))
    assert [outcome(o) for o in outcomes] == [(200, "A2")] * 8
    assert [call.token for call in provider.calls] == ["A2"] * 8
    assert provider.issued == 1
    assert provider.rejections == 0


@pytest.mark.anyio
@pytest.mark.parametrize("credentials", NO_TOKEN.values(), ids=NO_TOKEN.keys())
async def test_R2_no_access_token_refreshes_before_the_first_request_async(
    credentials: dict[str, Any],
) -> None:
    """R2: with no usable token, 20 tasks share one refresh and never send unauthenticated."""
    provider = Provider()

    async def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        await anyio.sleep(LATENCY)
        return provider.issue(credentials)

    auth = hr.RefreshAuth(credentials, refresher)
    async with mock_aclient(provider.mock, auth) as client:
        outcomes = await gather(20, lambda i: client.get(f"{API}/{i}"))
    assert [outcome(o) for o in outcomes] == [(200, "A2")] * 20
    assert [call.token for call in provider.calls] == ["A2"] * 20
    assert provider.issued == 1
    assert provider.rejections == 0


@pytest.mark.parametrize("expires_in", [600, "600", " 600.0 "])
def test_R2_refresh_giving_only_expires_in_stores_expires_at_sync(expires_in: Any) -> None:
    """R2: after a refresh that gave only ``expires_in``, ``expires_at`` is stored and persisted.

    The persisted credentials stay meaningful after a restart: 590 s later a new auth built
    from them refreshes before sending.
    """
    clock = Clock()
    provider = Provider()
    saved: list[dict[str, Any]] = []
    auth = hr.RefreshAuth(
        {"refresh_token": "R1"},
        provider.refresher(expires_in=expires_in),
        clock=clock,
        on_refresh=saved.append,
    )
    with mock_client(provider.mock, auth) as client:
        assert outcome(client.get(API)) == (200, "A2")
    refreshed_at = clock.now
    assert auth.credentials["expires_at"] == pytest.approx(refreshed_at + 600)
    assert auth.expires_at == pytest.approx(refreshed_at + 600)
    assert len(saved) == 1
    assert saved[0]["expires_at"] == auth.credentials["expires_at"]

    clock.now = refreshed_at + 590
    restarted = hr.RefreshAuth(saved[0], provider.refresher(expires_in=600), clock=clock)
    with mock_client(provider.mock, restarted) as client:
        assert outcome(client.get(API)) == (200, "A3")
    assert provider.issued == 2
    assert provider.rejections == 0


@pytest.mark.anyio
@pytest.mark.parametrize("expires_in", [600, "600"])
async def test_R2_refresh_giving_only_expires_in_stores_expires_at_async(expires_in: Any) -> None:
    """R2: after a refresh that gave only ``expires_in``, ``expires_at`` is stored and persisted."""
    clock = Clock()
    provider = Provider()
    saved: list[dict[str, Any]] = []

    async def hook(credentials: dict[str, Any]) -> None:
        saved.append(credentials)

    auth = hr.RefreshAuth(
        {"refresh_token": "R1"},
        provider.refresher("async", expires_in=expires_in),
        clock=clock,
        on_refresh=hook,
    )
    async with mock_aclient(provider.mock, auth) as client:
        assert outcome(await client.get(API)) == (200, "A2")
        assert auth.credentials["expires_at"] == pytest.approx(clock.now + 600)
        assert saved[0]["expires_at"] == auth.credentials["expires_at"]
        clock.now += 569
        assert outcome(await client.get(API)) == (200, "A2")
        clock.now += 1  # now == expires_at - leeway
        assert outcome(await client.get(API)) == (200, "A3")
    assert provider.issued == 2
    assert provider.rejections == 0


# -- R4 reactive -----------------------------------------------------------------------------


def test_R4_a_rejected_request_is_replayed_exactly_once_sync() -> None:
    """R4: a 401 triggers one refresh and exactly one replay."""
    provider = Provider()
    auth = hr.RefreshAuth(CREDS, provider.refresher())
    with mock_client(provider.mock, auth) as client:
        response = client.get(f"{API}/items")
    assert outcome(response) == (200, "A2")
    assert provider.seen() == [("/items", "A1"), ("/items", "A2")]
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=1, deduplicated=0, failures=0)


@pytest.mark.anyio
async def test_R4_a_rejected_request_is_replayed_exactly_once_async() -> None:
    """R4: a 401 triggers one refresh and exactly one replay."""
    provider = Provider()
    auth = hr.RefreshAuth(CREDS, provider.refresher("async"))
    async with mock_aclient(provider.mock, auth) as client:
        response = await client.get(f"{API}/items")
    assert outcome(response) == (200, "A2")
    assert provider.seen() == [("/items", "A1"), ("/items", "A2")]
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=1, deduplicated=0, failures=0)


REJECTED_ONCE = hr.RefreshStats(
    refreshes=1, replays=1, deduplicated=0, failures=0, rejected_replays=1, second_replays=0
)


def check_fresh_rejection(caplog: pytest.LogCaptureFixture, url: str) -> None:
    """R4: one WARNING: the replayed token was fresh, likely not a token problem."""
    (warning,) = library_records(caplog, logging.WARNING)
    message = warning.getMessage()
    assert message.startswith(f"replay of GET {url}/admin rejected again with 401 ")
    assert "the token has an unknown expiry and no newer one exists" in message
    assert "not a token problem" in message
    assert "A1" not in message
    assert "A2" not in message


def test_R4_rejected_replay_goes_back_to_the_caller_sync(
    run_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """R4: if the replay is rejected too, the caller gets that (second) 401: no loop; it is
    counted (``rejected_replays``) and logged at WARNING with its likely reason."""
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    provider = Provider()
    url = run_server(provider.app())
    auth = hr.RefreshAuth(CREDS, provider.refresher())
    with httpx.Client(base_url=url, auth=auth) as client:
        response = client.get("/admin")
    assert response.status_code == 401
    assert response.json()["attempt"] == 2
    assert response.request.headers["Authorization"] == "Bearer A2"
    assert provider.seen() == [("/admin", "A1"), ("/admin", "A2")]
    assert auth.stats == REJECTED_ONCE
    check_fresh_rejection(caplog, url)


@pytest.mark.anyio
async def test_R4_rejected_replay_goes_back_to_the_caller_async(
    run_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """R4: if the replay is rejected too, the caller gets that (second) 401: no loop; it is
    counted (``rejected_replays``) and logged at WARNING with its likely reason."""
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    provider = Provider()
    url = run_server(provider.app())
    auth = hr.RefreshAuth(CREDS, provider.refresher("async"))
    async with httpx.AsyncClient(base_url=url, auth=auth) as client:
        response = await client.get("/admin")
    assert response.status_code == 401
    assert response.json()["attempt"] == 2
    assert response.request.headers["Authorization"] == "Bearer A2"
    assert provider.seen() == [("/admin", "A1"), ("/admin", "A2")]
    assert auth.stats == REJECTED_ONCE
    check_fresh_rejection(caplog, url)


# R4 on a real token endpoint (tests/servers.py): the replay's token expires in transit.


async def get_with(flavor: str, url: str, auth: hr.RefreshAuth, path: str) -> httpx.Response:
    """GET ``path`` through a sync client (in a worker thread) or an async one."""
    if flavor == "sync":

        def get() -> httpx.Response:
            with httpx.Client(base_url=url, auth=auth, timeout=WAIT) as client:
                return client.get(path)

        return await anyio.to_thread.run_sync(get)
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=WAIT) as client:
        return await client.get(path)


@pytest.mark.anyio
@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize("slow_replays", [1, 2])
async def test_R4_replay_whose_token_expired_in_transit_gets_one_more_replay(
    run_server: Any, caplog: pytest.LogCaptureFixture, flavor: str, slow_replays: int
) -> None:
    """R4 / R5 / R11: 1 s tokens (leeway clamped to 0.5 s); the API answers the replay 1.5 s
    later (injected clock), after its token expired: the request gets exactly one more
    replay with the next token. With one slow replay that one succeeds: 2 token calls, 2
    replays, 0 rejected. With every replay slow the second rejection goes back to the
    caller: 2 token calls (one per version), 2 replays, 1 rejected replay, never a third.
    One WARNING per version, saying the token expired in transit."""
    from servers import FakeClock, Hit, OAuthServer

    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    clock = FakeClock()
    server = OAuthServer(rotate=True, single_use=True, expires_in=1, clock=clock)

    async def slow(hit: Hit) -> int | None:
        if hit.gen is None or not 1 <= hit.gen <= slow_replays:
            return None  # the revoked first token, or a replay answered in time
        clock.advance(1.5)  # the replay took 1.5 s: its token expired meanwhile
        return 401

    server.hooks["/slow"] = slow
    url = run_server(server.app)
    auth = hr.RefreshAuth(
        server.initial_credentials(revoked=True),
        hr.OAuth2Refresh(f"{url}/token", client_id="c", client_secret="s"),
        clock=clock,
    )
    with anyio.fail_after(WAIT):
        response = await get_with(flavor, url, auth, "/slow")
    assert response.status_code == (200 if slow_replays == 1 else 401)
    assert server.token_calls == 2
    assert server.presented == [0, 1]
    statuses = [(1, 401), (2, 200)] if slow_replays == 1 else [(1, 401), (2, 401)]
    assert [(h.gen, h.status) for h in server.hits] == [(0, 401), *statuses]
    assert auth.stats == hr.RefreshStats(
        refreshes=2,
        replays=2,
        deduplicated=0,
        failures=0,
        rejected_replays=slow_replays - 1,
        second_replays=1,
    )
    messages = [r.getMessage() for r in library_records(caplog, logging.WARNING)]
    assert len(messages) == slow_replays
    for version, message in enumerate(messages, start=1):
        assert f"(credentials version {version}, the replay took 1.50 s, 0.50 s after" in message
        assert "the token likely expired in transit" in message
    assert "replaying it once more" in messages[0]
    if slow_replays == 2:
        assert "the response goes back to the caller" in messages[1]


@pytest.mark.anyio
@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_R4_R11_C20_always_401_with_a_fresh_token_is_one_refresh_and_one_replay(
    run_server: Any, caplog: pytest.LogCaptureFixture, flavor: str
) -> None:
    """R4 / R11 / C20 on a real token endpoint: ``/admin`` answers 401 whatever the token
    (1 h tokens): exactly 1 refresh and 1 replay, counted as a rejected replay, one WARNING
    saying the token was fresh (likely not a token problem); a second GET does not refresh."""
    from servers import Hit, OAuthServer

    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    server = OAuthServer(rotate=True, single_use=True, expires_in=3600)

    async def forbidden(hit: Hit) -> int:
        return 401

    server.hooks["/admin"] = forbidden
    url = run_server(server.app)
    auth = hr.RefreshAuth(
        server.initial_credentials(),
        hr.OAuth2Refresh(f"{url}/token", client_id="c", client_secret="s"),
    )
    with anyio.fail_after(WAIT):
        first = await get_with(flavor, url, auth, "/admin")
        second = await get_with(flavor, url, auth, "/admin")
    assert (first.status_code, second.status_code) == (401, 401)
    assert server.token_calls == 1
    assert [(h.gen, h.status) for h in server.hits] == [(0, 401), (1, 401), (1, 401)]
    assert auth.stats == REJECTED_ONCE
    (warning,) = library_records(caplog, logging.WARNING)
    message = warning.getMessage()
    assert "(credentials version 1, the replay took " in message
    assert "the token was fresh and no newer one exists" in message
    assert "not a token problem" in message
    assert "not refreshed again for 5 s" in message


REFRESH_ON_403 = {
    "statuses": (401, 403),
    "predicate": lambda response: response.status_code in (401, 403),
}


def test_R4_403_passes_through_by_default_sync() -> None:
    """R4: a 403 does not trigger a refresh unless configured."""
    provider = Provider(reject_status=403)
    auth = hr.RefreshAuth(CREDS, provider.refresher())
    with mock_client(provider.mock, auth) as client:
        assert client.get(API).status_code == 403
    assert provider.issued == 0
    assert provider.seen() == [("/", "A1")]


@pytest.mark.parametrize("refresh_on", REFRESH_ON_403.values(), ids=REFRESH_ON_403.keys())
def test_R4_403_refreshes_when_refresh_on_includes_it_sync(refresh_on: Any) -> None:
    """R4: with 403 in ``refresh_on`` (statuses or predicate), a 403 refreshes and replays."""
    provider = Provider(reject_status=403)
    auth = hr.RefreshAuth(CREDS, provider.refresher(), refresh_on=refresh_on)
    with mock_client(provider.mock, auth) as client:
        assert outcome(client.get(API)) == (200, "A2")
    assert provider.issued == 1
    assert provider.seen() == [("/", "A1"), ("/", "A2")]


@pytest.mark.anyio
async def test_R4_403_passes_through_by_default_async() -> None:
    """R4: a 403 does not trigger a refresh unless configured."""
    provider = Provider(reject_status=403)
    auth = hr.RefreshAuth(CREDS, provider.refresher("async"))
    async with mock_aclient(provider.mock, auth) as client:
        assert (await client.get(API)).status_code == 403
    assert provider.issued == 0
    assert provider.seen() == [("/", "A1")]


@pytest.mark.anyio
@pytest.mark.parametrize("refresh_on", REFRESH_ON_403.values(), ids=REFRESH_ON_403.keys())
async def test_R4_403_refreshes_when_refresh_on_includes_it_async(refresh_on: Any) -> None:
    """R4: with 403 in ``refresh_on`` (statuses or predicate), a 403 refreshes and replays."""
    provider = Provider(reject_status=403)
    auth = hr.RefreshAuth(CREDS, provider.refresher("async"), refresh_on=refresh_on)
    async with mock_aclient(provider.mock, auth) as client:
        assert outcome(await client.get(API)) == (200, "A2")
    assert provider.issued == 1
    assert provider.seen() == [("/", "A1"), ("/", "A2")]


# -- R5 single-flight ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("count", [10, 1_000, 10_000])
async def test_R5_n_concurrent_rejected_requests_run_the_refresher_once_async(count: int) -> None:
    """R5: N tasks all rejected with the same token: exactly 1 refresher call, N replays.

    The refresher holds the flight open until the API has rejected all N requests.
    """
    provider = Provider()
    all_rejected = anyio.Event()
    provider.notify_after(count, all_rejected)

    async def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        await all_rejected.wait()
        return provider.issue(credentials)

    auth = hr.RefreshAuth(CREDS, refresher)
    async with mock_aclient(provider.mock, auth) as client:
        outcomes = await gather(count, lambda i: client.get(f"{API}/{i}"))
    assert sum(outcome(o) == (200, "A2") for o in outcomes) == count
    assert provider.issued == 1
    assert provider.rejections == count
    assert len(provider.calls) == 2 * count
    assert auth.stats == hr.RefreshStats(
        refreshes=1, replays=count, deduplicated=count - 1, failures=0
    )


def test_R5_64_threads_rejected_at_once_run_the_refresher_once() -> None:
    """R5: 64 threads all rejected with the same token: exactly 1 refresher call, 64 replays."""
    provider = Provider()
    all_rejected = threading.Event()
    provider.notify_after(64, all_rejected)

    def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        if not all_rejected.wait(WAIT):
            raise RuntimeError("not all 64 requests were rejected")
        return provider.issue(credentials)

    auth = hr.RefreshAuth(CREDS, refresher)
    with mock_client(provider.mock, auth) as client:
        outcomes = run_threads(64, lambda i: client.get(f"{API}/{i}"))
    assert [outcome(o) for o in outcomes] == [(200, "A2")] * 64
    assert provider.issued == 1
    assert provider.refresh_tokens_used == ["R1"]
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=64, deduplicated=63, failures=0)


def test_R5_late_401_for_a_replaced_version_replays_without_a_refresh_sync() -> None:
    """R5 (C03 shape): A is sent with T1 and rejected only after B's 401 produced T2.

    A is replayed with T2 and the refresher is not called again.
    """
    provider = Provider()
    a_arrived = threading.Event()
    release_a = threading.Event()

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/a" and request.headers["Authorization"] == "Bearer A1":
            a_arrived.set()
            assert release_a.wait(WAIT)
        return provider.mock(request)

    auth = hr.RefreshAuth(CREDS, provider.refresher())
    with mock_client(api, auth) as client:
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(a=client.get(f"{API}/a")))
        thread.start()
        assert a_arrived.wait(WAIT)
        assert outcome(client.get(f"{API}/b")) == (200, "A2")
        assert provider.issued == 1
        release_a.set()
        thread.join(WAIT)
        assert not thread.is_alive()
    assert outcome(result["a"]) == (200, "A2")
    assert provider.issued == 1
    assert provider.seen() == [("/b", "A1"), ("/b", "A2"), ("/a", "A1"), ("/a", "A2")]
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=2, deduplicated=1, failures=0)


@pytest.mark.anyio
async def test_R5_late_401_for_a_replaced_version_replays_without_a_refresh_async() -> None:
    """R5 (C03 shape): A is sent with T1 and rejected only after B's 401 produced T2.

    A is replayed with T2 and the refresher is not called again.
    """
    provider = Provider()
    a_arrived = anyio.Event()
    release_a = anyio.Event()

    async def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/a" and request.headers["Authorization"] == "Bearer A1":
            a_arrived.set()
            await release_a.wait()
        return provider.mock(request)

    auth = hr.RefreshAuth(CREDS, provider.refresher("async"))
    result: dict[str, Any] = {}
    async with mock_aclient(api, auth) as client:

        async def send_a() -> None:
            result["a"] = await client.get(f"{API}/a")

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send_a)
                await a_arrived.wait()
                assert outcome(await client.get(f"{API}/b")) == (200, "A2")
                assert provider.issued == 1
                release_a.set()
    assert outcome(result["a"]) == (200, "A2")
    assert provider.issued == 1
    assert provider.seen() == [("/b", "A1"), ("/b", "A2"), ("/a", "A1"), ("/a", "A2")]
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=2, deduplicated=1, failures=0)


# -- R6 locks and event loops ----------------------------------------------------------------


@pytest.mark.parametrize(
    "backends",
    [("asyncio", "trio"), ("trio", "asyncio"), ("asyncio", "asyncio"), ("trio", "trio")],
    ids="-then-".join,
)
def test_R6_one_auth_from_two_event_loops_one_after_another(backends: tuple[str, str]) -> None:
    """R6: one auth, two event loops in turn, 100 concurrent rejected requests in each.

    Exactly one refresh per loop; nothing from the first loop breaks the second.
    """
    provider = Provider()
    current: dict[str, Any] = {}

    async def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        with anyio.fail_after(WAIT):
            await current["all_rejected"].wait()
        return provider.issue(credentials)

    auth = hr.RefreshAuth(CREDS, refresher)

    async def storm() -> list[Any]:
        current["all_rejected"] = event = anyio.Event()
        provider.notify_after(100, event)
        provider.revoke_all()
        async with mock_aclient(provider.mock, auth) as client:
            return await gather(100, lambda i: client.get(f"{API}/{i}"))

    for loop_number, backend in enumerate(backends, start=1):
        outcomes = anyio.run(storm, backend=backend)
        token = f"A{loop_number + 1}"
        assert [outcome(o) for o in outcomes] == [(200, token)] * 100, backend
        assert provider.issued == loop_number
        assert auth.stats == hr.RefreshStats(
            refreshes=loop_number,
            replays=100 * loop_number,
            deduplicated=99 * loop_number,
            failures=0,
        )


@pytest.mark.anyio
async def test_R6_R14_sync_and_async_clients_share_one_refresh_per_version(
    run_server: Any,
) -> None:
    """R6, R14: a sync Client (16 threads) and an AsyncClient (48 tasks) share one auth.

    Two rounds; in each the server revokes the token and all 64 requests are rejected
    before the refresh ends. Round 1: a task owns the flight (the sync refresher runs in a
    worker thread; 16 threads wait on it). Round 2: a thread owns it (48 tasks wait on a
    flight finished in another thread). Exactly one refresh per version.
    """
    provider = Provider("A1")
    url = run_server(provider.app())
    n_threads, n_tasks = 16, 48
    current: dict[str, threading.Event] = {}
    refresher_threads: list[threading.Thread] = []

    def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        refresher_threads.append(threading.current_thread())
        current["started"].set()
        if not current["all_rejected"].wait(WAIT):
            raise RuntimeError("not every request was rejected")
        return provider.issue(credentials)

    auth = hr.RefreshAuth(CREDS, refresher)
    loop_thread = threading.current_thread()
    with httpx.Client(base_url=url, auth=auth) as sync_client:
        async with httpx.AsyncClient(base_url=url, auth=auth) as async_client:
            for round_number, first in ((1, "async"), (2, "sync")):
                current["started"] = started = threading.Event()
                current["all_rejected"] = all_rejected = threading.Event()
                provider.notify_after(n_threads + n_tasks, all_rejected)
                provider.revoke_all()
                thread_outcomes: list[Any] = [None] * n_threads
                task_outcomes: list[Any] = []

                def work(index: int, out: list[Any] = thread_outcomes) -> None:
                    try:
                        out[index] = sync_client.get(f"/sync/{index}")
                    except Exception as exc:  # noqa: BLE001
                        out[index] = exc

                threads = [
                    threading.Thread(target=work, args=(i,), daemon=True) for i in range(n_threads)
                ]

                async def run_tasks(out: list[Any] = task_outcomes) -> None:
                    out.extend(await gather(n_tasks, lambda k: async_client.get(f"/async/{k}")))

                async with anyio.create_task_group() as tg:
                    if first == "async":
                        tg.start_soon(run_tasks)
                        await anyio.to_thread.run_sync(started.wait, WAIT)
                        for thread in threads:
                            thread.start()
                    else:
                        for thread in threads:
                            thread.start()
                        await anyio.to_thread.run_sync(started.wait, WAIT)
                        tg.start_soon(run_tasks)
                for thread in threads:
                    await anyio.to_thread.run_sync(thread.join, WAIT)
                assert not any(thread.is_alive() for thread in threads)
                token = f"A{round_number + 1}"
                assert [outcome(o) for o in thread_outcomes] == [(200, token)] * n_threads
                assert [outcome(o) for o in task_outcomes] == [(200, token)] * n_tasks
                assert provider.issued == round_number
                # R14: a worker thread, not the loop's nor a client's; a sync owner too runs
                # it in a worker thread, which it waits on at most refresh_timeout (R16).
                owner_thread = refresher_threads[-1]
                assert owner_thread is not loop_thread
                assert owner_thread not in threads
    assert len(refresher_threads) == 2
    assert auth.stats == hr.RefreshStats(refreshes=2, replays=128, deduplicated=126, failures=0)


def test_R6_fast_path_takes_no_lock_sync() -> None:
    """R6: fresh-token requests (8 threads x 25) never acquire the control's mutex."""
    provider = Provider("A1")
    auth = hr.RefreshAuth(CREDS, provider.refresher())
    counting = CountingLock()
    auth._control._mutex = counting  # type: ignore[assignment]
    with mock_client(provider.mock, auth) as client:
        outcomes = run_threads(8, lambda i: [outcome(client.get(f"{API}/{i}")) for _ in range(25)])
        assert outcomes == [[(200, "A1")] * 25] * 8
        assert counting.acquisitions == 0
        provider.revoke_all()  # the check above can fail: a refresh does take the mutex
        assert outcome(client.get(API)) == (200, "A2")
        assert counting.acquisitions > 0


@pytest.mark.anyio
async def test_R6_fast_path_takes_no_lock_async() -> None:
    """R6: 200 concurrent fresh-token requests never acquire the control's mutex."""
    provider = Provider("A1")
    auth = hr.RefreshAuth(CREDS, provider.refresher("async"))
    counting = CountingLock()
    auth._control._mutex = counting  # type: ignore[assignment]
    async with mock_aclient(provider.mock, auth) as client:
        outcomes = await gather(200, lambda i: client.get(f"{API}/{i}"))
        assert [outcome(o) for o in outcomes] == [(200, "A1")] * 200
        assert counting.acquisitions == 0
        provider.revoke_all()
        assert outcome(await client.get(API)) == (200, "A2")
        assert counting.acquisitions > 0


# -- R7 cancellation -------------------------------------------------------------------------


class Gate:
    """A refresher that blocks until released, in either flavour (sync: in a worker thread)."""

    def __init__(self, provider: Provider, flavor: str) -> None:
        self.provider = provider
        self.flavor = flavor
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.async_release = anyio.Event() if flavor == "async" else None

    def refresher(self) -> Callable[..., Any]:
        if self.flavor == "sync":

            def refresh(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
                self.started.set()
                if not self.release.wait(WAIT):
                    raise RuntimeError("never released")
                result = self.provider.issue(credentials)
                self.finished.set()
                return result

            return refresh

        async def arefresh(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
            self.started.set()
            assert self.async_release is not None
            await self.async_release.wait()
            result = self.provider.issue(credentials)
            self.finished.set()
            return result

        return arefresh

    def open(self) -> None:
        """Let the refresher finish."""
        self.release.set()
        if self.async_release is not None:
            self.async_release.set()

    async def wait_started(self) -> None:
        await await_until(self.started.is_set, "the refresher started")


def checkpointing(provider: Provider) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """An async API handler with a checkpoint, so a cancelled request is cancelled there."""

    async def api(request: httpx.Request) -> httpx.Response:
        await anyio.lowlevel.checkpoint()
        return provider.mock(request)

    return api


@pytest.mark.anyio
@pytest.mark.parametrize("flavor", ["async", "sync"])
async def test_R7_cancelling_the_owner_keeps_the_rotated_refresh_token(
    flavor: str, caplog: pytest.LogCaptureFixture
) -> None:
    """R7: cancel the task that started a refresh while the refresher runs.

    The refresh completes, its rotated refresh token is kept, the 5 waiters are released
    with the new token, and a later request works without another refresh.
    """
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    provider = Provider()
    gate = Gate(provider, flavor)
    auth = hr.RefreshAuth(CREDS, gate.refresher())
    owner_scope = anyio.CancelScope()
    results: dict[Any, Any] = {}
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(checkpointing(provider)), auth=auth
    ) as client:

        async def owner() -> None:
            with owner_scope:
                results["owner"] = await client.get(f"{API}/owner")

        async def waiter(index: int) -> None:
            results[index] = await client.get(f"{API}/waiter/{index}")

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(owner)
                await gate.wait_started()
                for index in range(5):
                    tg.start_soon(waiter, index)
                await await_until(lambda: auth.stats.deduplicated == 5, "5 waiters joined")
                owner_scope.cancel()
                await anyio.lowlevel.checkpoint()
                assert not gate.finished.is_set()  # the refresh is still running
                gate.open()
        assert owner_scope.cancelled_caught
        assert "owner" not in results
        assert [outcome(results[i]) for i in range(5)] == [(200, "A2")] * 5
        assert gate.finished.is_set()
        assert dict(auth.credentials) == {"access_token": "A2", "refresh_token": "R2"}
        assert outcome(await client.get(f"{API}/later")) == (200, "A2")
    assert provider.issued == 1
    assert provider.refresh_tokens_used == ["R1"]
    stats = auth.stats
    assert (stats.refreshes, stats.deduplicated, stats.failures) == (1, 5, 0)
    assert library_records(caplog, logging.WARNING) == []
    assert library_records(caplog, logging.ERROR) == []


@pytest.mark.anyio
async def test_R7_cancelling_waiting_tasks_leaves_nothing_stuck(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R7: cancel 10 tasks waiting on a flight: they leave at once, nothing stays locked.

    The owner still completes, later requests (20 at once) work without another refresh,
    and no lock error ("not holding this lock") or warning appears anywhere.
    """
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    provider = Provider()
    gate = Gate(provider, "async")
    auth = hr.RefreshAuth(CREDS, gate.refresher())
    waiters_scope = anyio.CancelScope()
    waiters_gone = anyio.Event()
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(checkpointing(provider)), auth=auth
    ) as client:

        async def owner() -> None:
            results["owner"] = await client.get(f"{API}/owner")

        async def waiters() -> None:
            with waiters_scope:
                async with anyio.create_task_group() as inner:
                    for index in range(10):
                        inner.start_soon(client.get, f"{API}/waiter/{index}")
            waiters_gone.set()

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(owner)
                await gate.wait_started()
                tg.start_soon(waiters)
                await await_until(lambda: auth.stats.deduplicated == 10, "10 waiters joined")
                waiters_scope.cancel()
                with anyio.fail_after(1):
                    await waiters_gone.wait()
                assert not gate.finished.is_set()  # they left while the refresh still ran
                gate.open()
        assert waiters_scope.cancelled_caught
        assert outcome(results["owner"]) == (200, "A2")
        later = await gather(20, lambda i: client.get(f"{API}/later/{i}"))
        assert [outcome(o) for o in later] == [(200, "A2")] * 20
    assert provider.issued == 1
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=1, deduplicated=10, failures=0)
    assert library_records(caplog, logging.WARNING) == []
    assert library_records(caplog, logging.ERROR) == []


# -- R8 merge --------------------------------------------------------------------------------

RICH = {
    "access_token": "A1",
    "refresh_token": "R1",
    "scope": "read write",
    "instance_url": "https://eu.example.com",
    "expires_in": 3600,
}


def merge_refresher(flavor: str, provider: Provider) -> Callable[..., Any]:
    """Returns a new token, ``None`` for refresh_token and scope, and one new key."""

    def result(credentials: Mapping[str, Any]) -> dict[str, Any]:
        issued = provider.issue(credentials)
        return {"access_token": issued["access_token"], "refresh_token": None, "scope": None}

    if flavor == "sync":
        return lambda *, credentials, **_: result(credentials)

    async def arefresh(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        return result(credentials)

    return arefresh


EXPECTED_AFTER_MERGE = {
    "access_token": "A2",
    "refresh_token": "R1",
    "scope": "read write",
    "instance_url": "https://eu.example.com",
}


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_R8_merge_keeps_old_values_for_none_and_absent_keys_sync(flavor: str) -> None:
    """R8: ``None`` keeps the old value, absent keys stay, a new token drops the old expiry."""
    provider = Provider()
    saved: list[dict[str, Any]] = []
    auth = hr.RefreshAuth(RICH, merge_refresher(flavor, provider), on_refresh=saved.append)
    with mock_client(provider.mock, auth) as client:
        assert outcome(client.get(API)) == (200, "A2")
        assert dict(auth.credentials) == EXPECTED_AFTER_MERGE
        assert auth.expires_at is None
        provider.revoke_all()
        assert outcome(client.get(API)) == (200, "A3")
    assert provider.refresh_tokens_used == ["R1", "R1"]  # the kept refresh token is used again
    assert saved == [EXPECTED_AFTER_MERGE, {**EXPECTED_AFTER_MERGE, "access_token": "A3"}]


@pytest.mark.anyio
@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_R8_merge_keeps_old_values_for_none_and_absent_keys_async(flavor: str) -> None:
    """R8: ``None`` keeps the old value, absent keys stay, a new token drops the old expiry."""
    provider = Provider()
    auth = hr.RefreshAuth(RICH, merge_refresher(flavor, provider))
    async with mock_aclient(provider.mock, auth) as client:
        assert outcome(await client.get(API)) == (200, "A2")
        assert dict(auth.credentials) == EXPECTED_AFTER_MERGE
        provider.revoke_all()
        assert outcome(await client.get(API)) == (200, "A3")
    assert provider.refresh_tokens_used == ["R1", "R1"]


def raise_(error: Exception) -> Any:
    raise error


FAILURES: dict[str, Callable[[], Any]] = {
    "raises": lambda: raise_(RuntimeError("token endpoint exploded")),
    "reauthorization": lambda: raise_(
        hr.ReauthorizationRequired("grant revoked", oauth_error="invalid_grant")
    ),
    "not-a-mapping": lambda: ["access_token", "A2"],
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_R8_a_failed_refresh_merges_nothing_sync(failure: Callable[[], Any]) -> None:
    """R8: when the refresh fails, the credentials and version stay exactly as they were."""
    provider = Provider()
    hooked: list[Any] = []

    def refresher(**_: Any) -> Any:
        return failure()

    auth = hr.RefreshAuth(RICH, refresher, on_refresh=hooked.append)
    before = dict(auth.credentials)
    with mock_client(provider.mock, auth) as client, pytest.raises(hr.RefreshError):
        client.get(API)
    assert dict(auth.credentials) == before
    assert auth.version == 0
    assert hooked == []
    assert provider.seen() == [("/", "A1")]  # no replay
    assert auth.stats == hr.RefreshStats(refreshes=0, replays=0, deduplicated=0, failures=1)


@pytest.mark.anyio
@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
async def test_R8_a_failed_refresh_merges_nothing_async(failure: Callable[[], Any]) -> None:
    """R8: when the refresh fails, the credentials and version stay exactly as they were."""
    provider = Provider()

    async def refresher(**_: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        return failure()

    auth = hr.RefreshAuth(RICH, refresher)
    before = dict(auth.credentials)
    async with mock_aclient(provider.mock, auth) as client:
        outcomes = await gather(10, lambda i: client.get(f"{API}/{i}"))
    assert all(isinstance(o, hr.RefreshError) for o in outcomes), [outcome(o) for o in outcomes]
    assert dict(auth.credentials) == before
    assert auth.version == 0
    assert provider.issued == 0


# -- R9 persist ------------------------------------------------------------------------------


def hook_of(flavor: str, calls: list[dict[str, Any]], error: Exception | None = None) -> Any:
    """An ``on_refresh`` hook with store latency that records its call when it *ends*."""
    if flavor == "sync":

        def hook(credentials: dict[str, Any]) -> None:
            time.sleep(LATENCY)
            calls.append(credentials)
            if error is not None:
                raise error

        return hook

    async def ahook(credentials: dict[str, Any]) -> None:
        await anyio.sleep(LATENCY)
        calls.append(credentials)
        if error is not None:
            raise error

    return ahook


MERGED = {"access_token": "A2", "refresh_token": "R2", "scope": "read"}


@pytest.mark.parametrize("hook_flavor", ["sync", "async"])
def test_R9_on_refresh_completes_before_waiters_are_released_sync(hook_flavor: str) -> None:
    """R9: 8 threads; no request carries the new token before the hook has returned."""
    provider = Provider()
    hooked: list[dict[str, Any]] = []
    hook_done_when_seen: list[bool] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer A2":
            hook_done_when_seen.append(len(hooked) == 1)
        return provider.mock(request)

    all_rejected = threading.Event()
    provider.notify_after(8, all_rejected)

    def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        assert all_rejected.wait(WAIT)
        return provider.issue(credentials)

    auth = hr.RefreshAuth(
        {**CREDS, "scope": "read"}, refresher, on_refresh=hook_of(hook_flavor, hooked)
    )
    with mock_client(api, auth) as client:
        outcomes = run_threads(8, lambda i: client.get(f"{API}/{i}"))
    assert [outcome(o) for o in outcomes] == [(200, "A2")] * 8
    assert hook_done_when_seen == [True] * 8
    assert hooked == [MERGED]
    assert type(hooked[0]) is dict


@pytest.mark.anyio
@pytest.mark.parametrize("hook_flavor", ["sync", "async"])
async def test_R9_on_refresh_completes_before_waiters_are_released_async(hook_flavor: str) -> None:
    """R9: 50 tasks; no request carries the new token before the hook has returned."""
    provider = Provider()
    hooked: list[dict[str, Any]] = []
    hook_done_when_seen: list[bool] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer A2":
            hook_done_when_seen.append(len(hooked) == 1)
        return provider.mock(request)

    all_rejected = anyio.Event()
    provider.notify_after(50, all_rejected)

    async def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        await all_rejected.wait()
        return provider.issue(credentials)

    auth = hr.RefreshAuth(
        {**CREDS, "scope": "read"}, refresher, on_refresh=hook_of(hook_flavor, hooked)
    )
    async with mock_aclient(api, auth) as client:
        outcomes = await gather(50, lambda i: client.get(f"{API}/{i}"))
    assert [outcome(o) for o in outcomes] == [(200, "A2")] * 50
    assert hook_done_when_seen == [True] * 50
    assert hooked == [MERGED]


@pytest.mark.parametrize("hook_flavor", ["sync", "async"])
def test_R9_failing_hook_keeps_credentials_and_reaches_every_caller_sync(
    hook_flavor: str, caplog: pytest.LogCaptureFixture
) -> None:
    """R9: the hook raises: all 8 callers of that flight get its error (as a RefreshError
    caused by it, message scrubbed of secrets), it is logged, and
    the new credentials stay in memory (a later request uses them without a refresh)."""
    caplog.set_level(logging.INFO, logger="httpx_refresh")
    provider = Provider()
    hooked: list[dict[str, Any]] = []
    auth: hr.RefreshAuth

    def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        wait_until(lambda: auth.stats.deduplicated == 7, "7 waiters joined the flight")
        return provider.issue(credentials)

    auth = hr.RefreshAuth(
        CREDS, refresher, on_refresh=hook_of(hook_flavor, hooked, OSError("disk full"))
    )
    with mock_client(provider.mock, auth) as client:
        outcomes = run_threads(8, lambda i: client.get(f"{API}/{i}"))
        assert [outcome(o) for o in outcomes] == ["RefreshError"] * 8
        assert all(str(o) == "on_refresh hook raised OSError: disk full" for o in outcomes)
        assert all(isinstance(o.__cause__, OSError) for o in outcomes)
        assert dict(auth.credentials) == {"access_token": "A2", "refresh_token": "R2"}
        assert auth.version == 1
        assert outcome(client.get(f"{API}/later")) == (200, "A2")
    assert provider.issued == 1
    assert len(hooked) == 1
    errors = library_records(caplog, logging.ERROR)
    assert len(errors) == 1
    assert "on_refresh" in errors[0].getMessage()
    assert "OSError" in errors[0].getMessage()


@pytest.mark.anyio
@pytest.mark.parametrize("hook_flavor", ["sync", "async"])
async def test_R9_failing_hook_keeps_credentials_and_reaches_every_caller_async(
    hook_flavor: str, caplog: pytest.LogCaptureFixture
) -> None:
    """R9: the hook raises: all 20 callers of that flight get its error (as a RefreshError
    caused by it), it is logged, and
    the new credentials stay in memory (a later request uses them without a refresh)."""
    caplog.set_level(logging.INFO, logger="httpx_refresh")
    provider = Provider()
    hooked: list[dict[str, Any]] = []
    auth: hr.RefreshAuth

    async def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        await await_until(lambda: auth.stats.deduplicated == 19, "19 waiters joined the flight")
        return provider.issue(credentials)

    auth = hr.RefreshAuth(
        CREDS, refresher, on_refresh=hook_of(hook_flavor, hooked, OSError("disk full"))
    )
    async with mock_aclient(provider.mock, auth) as client:
        outcomes = await gather(20, lambda i: client.get(f"{API}/{i}"))
        assert [outcome(o) for o in outcomes] == ["RefreshError"] * 20
        assert all(isinstance(o.__cause__, OSError) for o in outcomes)
        assert dict(auth.credentials) == {"access_token": "A2", "refresh_token": "R2"}
        assert auth.version == 1
        assert outcome(await client.get(f"{API}/later")) == (200, "A2")
    assert provider.issued == 1
    assert len(hooked) == 1
    errors = library_records(caplog, logging.ERROR)
    assert len(errors) == 1
    assert "on_refresh" in errors[0].getMessage()


# -- R11 no refresh storms -------------------------------------------------------------------


def test_R11_rejected_replay_stops_refreshing_that_version_for_the_interval_sync() -> None:
    """R11: after a rejected replay, that version's rejections go back without a refresh
    for ``min_refresh_interval`` (5 s); after it, they refresh again."""
    clock = Clock()
    provider = Provider()
    auth = hr.RefreshAuth(CREDS, provider.refresher(), clock=clock, min_refresh_interval=5)
    with mock_client(provider.mock, auth) as client:
        assert client.get(f"{API}/admin").status_code == 401
        assert provider.issued == 1
        assert provider.seen() == [("/admin", "A1"), ("/admin", "A2")]

        clock.now += 1
        outcomes = run_threads(8, lambda i: client.get(f"{API}/admin/{i}").status_code)
        assert outcomes == [401] * 8
        assert provider.issued == 1
        assert len(provider.calls) == 2 + 8  # one send each, no replay
        clock.now += 3.9
        assert client.get(f"{API}/admin").status_code == 401
        assert provider.issued == 1

        clock.now += 0.2  # 5.1 s after the rejected replay
        assert client.get(f"{API}/admin").status_code == 401
        assert provider.issued == 2
        assert provider.seen()[-2:] == [("/admin", "A2"), ("/admin", "A3")]
    assert auth.stats.refreshes == 2
    assert auth.stats.replays == 2


@pytest.mark.anyio
async def test_R11_rejected_replay_stops_refreshing_that_version_for_the_interval_async() -> None:
    """R11: after a rejected replay, that version's rejections go back without a refresh
    for ``min_refresh_interval`` (5 s); after it, they refresh again."""
    clock = Clock()
    provider = Provider()
    auth = hr.RefreshAuth(CREDS, provider.refresher("async"), clock=clock)
    async with mock_aclient(provider.mock, auth) as client:
        assert (await client.get(f"{API}/admin")).status_code == 401
        assert provider.issued == 1
        clock.now += 4.9
        outcomes = await gather(20, lambda i: client.get(f"{API}/admin/{i}"))
        assert [o.status_code for o in outcomes] == [401] * 20
        assert provider.issued == 1
        assert len(provider.calls) == 2 + 20
        clock.now += 0.2
        assert (await client.get(f"{API}/admin")).status_code == 401
        assert provider.issued == 2
        # and the new version is guarded in turn
        assert (await client.get(f"{API}/admin")).status_code == 401
        assert provider.issued == 2
    assert auth.stats.replays == 2


# -- R12 bodies (real server) ----------------------------------------------------------------

BODIES: dict[str, dict[str, Any]] = {
    "bytes": {"content": bytes(range(256)) * 400},
    "form": {"data": {"name": "Zoë", "items": ["1", "2"], "blob": "x" * 5000}},
    "json": {"json": {"numbers": list(range(2000)), "text": "ü" * 100}},
}


def encoded(**body: Any) -> bytes:
    return httpx.Request("POST", "http://x/", **body).read()


def assert_replayed_in_full(provider: Provider, expected: bytes) -> None:
    assert [(c.token, c.length, c.digest) for c in provider.calls] == [
        ("A1", len(expected), sha(expected)),
        ("A2", len(expected), sha(expected)),
    ]


@pytest.mark.parametrize("kind", BODIES)
def test_R12_in_memory_bodies_replay_in_full_sync(kind: str, run_server: Any) -> None:
    """R12: bytes, form and JSON bodies are replayed byte for byte."""
    provider = Provider()
    url = run_server(provider.app())
    auth = hr.RefreshAuth(CREDS, provider.refresher())
    with httpx.Client(base_url=url, auth=auth) as client:
        response = client.post("/upload", **BODIES[kind])
    assert response.status_code == 200
    assert_replayed_in_full(provider, encoded(**BODIES[kind]))


@pytest.mark.anyio
@pytest.mark.parametrize("kind", BODIES)
async def test_R12_in_memory_bodies_replay_in_full_async(kind: str, run_server: Any) -> None:
    """R12: bytes, form and JSON bodies are replayed byte for byte."""
    provider = Provider()
    url = run_server(provider.app())
    auth = hr.RefreshAuth(CREDS, provider.refresher("async"))
    async with httpx.AsyncClient(base_url=url, auth=auth) as client:
        response = await client.post("/upload", **BODIES[kind])
    assert response.status_code == 200
    assert_replayed_in_full(provider, encoded(**BODIES[kind]))


@pytest.mark.parametrize("opener", ["disk", "bytesio"])
def test_R12_seekable_file_as_content_replays_in_full_sync(
    opener: str, tmp_path: Path, run_server: Any
) -> None:
    """R12: a seekable file passed as ``content=`` (1 MB) is rewound and replayed in full."""
    provider = Provider()
    url = run_server(provider.app())
    data = bytes(range(256)) * 4096
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    auth = hr.RefreshAuth(CREDS, provider.refresher())
    with (
        path.open("rb") if opener == "disk" else io.BytesIO(data) as file,
        httpx.Client(base_url=url, auth=auth) as client,
    ):
        response = client.post("/upload", content=file)
    assert response.status_code == 200
    assert response.json()["length"] == len(data)
    assert_replayed_in_full(provider, data)


def multipart_request_body(path: Path, boundary: str) -> bytes:
    with path.open("rb") as file:
        return httpx.Request(
            "POST",
            "http://x/",
            files={"upload": ("upload.bin", file, "application/octet-stream")},
            data={"note": "hello"},
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        ).read()


def test_R12_multipart_with_a_seekable_file_replays_in_full_sync(
    tmp_path: Path, run_server: Any
) -> None:
    """R12: a multipart upload of a file opened from disk replays in full."""
    provider = Provider()
    url = run_server(provider.app())
    path = tmp_path / "upload.bin"
    path.write_bytes(bytes(range(256)) * 1024)
    headers = {"Content-Type": "multipart/form-data; boundary=rules-boundary"}
    auth = hr.RefreshAuth(CREDS, provider.refresher())
    with path.open("rb") as file, httpx.Client(base_url=url, auth=auth) as client:
        response = client.post(
            "/upload",
            files={"upload": ("upload.bin", file, "application/octet-stream")},
            data={"note": "hello"},
            headers=headers,
        )
    assert response.status_code == 200
    assert_replayed_in_full(provider, multipart_request_body(path, "rules-boundary"))


@pytest.mark.anyio
async def test_R12_multipart_with_a_seekable_file_replays_in_full_async(
    tmp_path: Path, run_server: Any
) -> None:
    """R12: a multipart upload of a file opened from disk replays in full."""
    provider = Provider()
    url = run_server(provider.app())
    path = tmp_path / "upload.bin"
    path.write_bytes(bytes(range(256)) * 1024)
    headers = {"Content-Type": "multipart/form-data; boundary=rules-boundary"}
    auth = hr.RefreshAuth(CREDS, provider.refresher("async"))
    with path.open("rb") as file:
        async with httpx.AsyncClient(base_url=url, auth=auth) as client:
            response = await client.post(
                "/upload",
                files={"upload": ("upload.bin", file, "application/octet-stream")},
                data={"note": "hello"},
                headers=headers,
            )
    assert response.status_code == 200
    assert_replayed_in_full(provider, multipart_request_body(path, "rules-boundary"))


CHUNKS = [b"a" * 4000, b"b" * 4000, b"c" * 2240]  # 10 KB in 3 chunks


def chunks() -> Iterator[bytes]:
    yield from CHUNKS


async def achunks() -> AsyncIterator[bytes]:
    for chunk in CHUNKS:
        await anyio.lowlevel.checkpoint()
        yield chunk


@pytest.mark.parametrize("buffer_body", [False, True], ids=["plain", "buffered"])
def test_R12_generator_body_after_a_refresh_sync(buffer_body: bool, run_server: Any) -> None:
    """R12: a generator body is never replayed short: the refresh happens, then
    RequestNotReplayable; with ``buffer_body=True`` the full 10 KB is replayed."""
    provider = Provider()
    url = run_server(provider.app())
    auth = hr.RefreshAuth(CREDS, provider.refresher(), buffer_body=buffer_body)
    whole = b"".join(CHUNKS)
    with httpx.Client(base_url=url, auth=auth) as client:
        if buffer_body:
            assert client.post("/upload", content=chunks()).status_code == 200
            assert_replayed_in_full(provider, whole)
        else:
            with pytest.raises(hr.RequestNotReplayable) as caught:
                client.post("/upload", content=chunks())
            assert "A1" not in str(caught.value)
            assert "A2" not in str(caught.value)
            assert [(c.token, c.length) for c in provider.calls] == [("A1", len(whole))]
    assert provider.issued == 1
    assert auth.version == 1
    assert auth.credentials["access_token"] == "A2"


@pytest.mark.anyio
@pytest.mark.parametrize("buffer_body", [False, True], ids=["plain", "buffered"])
async def test_R12_generator_body_after_a_refresh_async(buffer_body: bool, run_server: Any) -> None:
    """R12: an async generator body is never replayed short: the refresh happens, then
    RequestNotReplayable; with ``buffer_body=True`` the full 10 KB is replayed."""
    provider = Provider()
    url = run_server(provider.app())
    auth = hr.RefreshAuth(CREDS, provider.refresher("async"), buffer_body=buffer_body)
    whole = b"".join(CHUNKS)
    async with httpx.AsyncClient(base_url=url, auth=auth) as client:
        if buffer_body:
            assert (await client.post("/upload", content=achunks())).status_code == 200
            assert_replayed_in_full(provider, whole)
        else:
            with pytest.raises(hr.RequestNotReplayable):
                await client.post("/upload", content=achunks())
            assert [(c.token, c.length) for c in provider.calls] == [("A1", len(whole))]
    assert provider.issued == 1
    assert auth.version == 1


# -- R14 sync and async refreshers -----------------------------------------------------------


@pytest.mark.anyio
async def test_R14_sync_refresher_from_async_client_runs_in_a_worker_thread() -> None:
    """R14: a blocking sync refresher runs off the loop's thread; the loop keeps running.

    The refresher blocks until a ticker task on the loop has ticked 10 times after the
    refresher started: if the refresher blocked the loop, that could never happen.
    """
    provider = Provider()
    loop_thread = threading.get_ident()
    started = threading.Event()
    ticked = threading.Event()
    refresher_threads: list[int] = []

    def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        refresher_threads.append(threading.get_ident())
        started.set()
        if not ticked.wait(5):
            raise RuntimeError("the event loop stalled while the refresher blocked")
        return provider.issue(credentials)

    async def ticker() -> None:
        ticks = 0
        while True:
            await anyio.sleep(0.002)
            if started.is_set():
                ticks += 1
                if ticks == 10:
                    ticked.set()

    auth = hr.RefreshAuth(CREDS, refresher)
    async with mock_aclient(provider.mock, auth) as client:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                outcomes = await gather(10, lambda i: client.get(f"{API}/{i}"))
                tg.cancel_scope.cancel()
    assert [outcome(o) for o in outcomes] == [(200, "A2")] * 10
    assert len(refresher_threads) == 1
    assert refresher_threads[0] != loop_thread
    assert ticked.is_set()


def test_R14_async_refresher_from_sync_client_runs_on_a_private_loop() -> None:
    """R14: an async refresher works from a sync Client, in the main thread and from 8
    threads at once (one refresh for all of them)."""
    provider = Provider()
    loops: list[tuple[bool, Any]] = []
    callers: set[int] = set()  # threads inside client.get() right now (idents are reused)

    async def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        # current_token() raises unless an event loop runs this coroutine
        loops.append((threading.get_ident() in callers, anyio.lowlevel.current_token()))
        await anyio.sleep(LATENCY)
        return provider.issue(credentials)

    auth = hr.RefreshAuth(CREDS, refresher)

    def call(path: str) -> httpx.Response:
        callers.add(threading.get_ident())
        try:
            return client.get(f"{API}{path}")
        finally:
            callers.discard(threading.get_ident())

    with mock_client(provider.mock, auth) as client:
        assert outcome(call("/")) == (200, "A2")
        provider.revoke_all()
        outcomes = run_threads(8, lambda i: call(f"/{i}"))
    assert [outcome(o) for o in outcomes] == [(200, "A3")] * 8
    assert len(loops) == 2
    assert [on_caller_thread for on_caller_thread, _ in loops] == [False, False]
    assert provider.issued == 2


@pytest.mark.anyio
async def test_R14_async_refresher_from_sync_client_inside_a_running_loop() -> None:
    """R14: the private loop works even when the calling thread already runs a loop."""
    provider = Provider()
    auth = hr.RefreshAuth(CREDS, provider.refresher("async"))
    with mock_client(provider.mock, auth) as client:
        assert outcome(client.get(API)) == (200, "A2")
    assert provider.issued == 1


# -- R15 observability -----------------------------------------------------------------------

INFO_LINE = re.compile(
    r"refreshed credentials \((?P<reason>\w+)\): version (?P<old>\d+) -> (?P<new>\d+) "
    r"in (?P<ms>\d+) ms, flight size (?P<size>\d+)"
)
LONG = {
    "access_token": "at-0123456789abcdef-first",
    "refresh_token": "rt-fedcba9876543210-first",
}


def test_R15_info_per_refresh_with_duration_version_and_flight_size_sync(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R15: one INFO per refresh: reason, versions, duration, flight size (8 threads)."""
    caplog.set_level(logging.DEBUG, logger="httpx_refresh")
    accepted: set[str] = set()
    auth: hr.RefreshAuth

    def api(request: httpx.Request) -> httpx.Response:
        ok = request.headers["Authorization"].removeprefix("Bearer ") in accepted
        return httpx.Response(200 if ok else 401)

    def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        wait_until(lambda: auth.stats.deduplicated == 7, "7 waiters joined the flight")
        time.sleep(LATENCY)
        accepted.add("at-second-0123456789abcdef")
        return {"access_token": "at-second-0123456789abcdef", "refresh_token": "rt-second-xyz"}

    auth = hr.RefreshAuth(LONG, refresher)
    with mock_client(api, auth) as client:
        outcomes = run_threads(8, lambda i: client.get(f"{API}/{i}").status_code)
    assert outcomes == [200] * 8
    infos = library_records(caplog, logging.INFO)
    assert len(infos) == 1
    match = INFO_LINE.search(infos[0].getMessage())
    assert match is not None, infos[0].getMessage()
    assert match["reason"] == "reactive"
    assert (match["old"], match["new"], match["size"]) == ("0", "1", "8")
    assert int(match["ms"]) >= LATENCY * 1000
    for secret in (*LONG.values(), "at-second-0123456789abcdef", "rt-second-xyz"):
        assert secret not in caplog.text
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=8, deduplicated=7, failures=0)


@pytest.mark.anyio
async def test_R15_info_per_refresh_with_duration_version_and_flight_size_async(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R15: one INFO per refresh (two refreshes, 30 tasks each), exact stats."""
    caplog.set_level(logging.INFO, logger="httpx_refresh")
    provider = Provider()
    auth: hr.RefreshAuth
    target = [29]

    async def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        await await_until(lambda: auth.stats.deduplicated == target[0], "waiters joined")
        return provider.issue(credentials)

    auth = hr.RefreshAuth(CREDS, refresher)
    async with mock_aclient(provider.mock, auth) as client:
        for _ in range(2):
            provider.revoke_all()
            outcomes = await gather(30, lambda i: client.get(f"{API}/{i}"))
            assert [o.status_code for o in outcomes] == [200] * 30
            target[0] += 29
    infos = [INFO_LINE.search(r.getMessage()) for r in library_records(caplog, logging.INFO)]
    assert [(m["old"], m["new"], m["size"]) for m in infos if m] == [
        ("0", "1", "30"),
        ("1", "2", "30"),
    ]
    assert len(infos) == 2
    assert auth.stats == hr.RefreshStats(refreshes=2, replays=60, deduplicated=58, failures=0)


def reauth_refresher(flavor: str, calls: list[int]) -> Callable[..., Any]:
    def fail() -> Any:
        calls.append(1)
        raise hr.ReauthorizationRequired("grant revoked", oauth_error="invalid_grant")

    if flavor == "sync":
        return lambda **_: fail()

    async def afail(**_: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        return fail()

    return afail


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_R15_error_log_on_reauthorization_required_sync(
    flavor: str, caplog: pytest.LogCaptureFixture
) -> None:
    """R15: a permanent failure logs one ERROR, without secrets; stats count one failure."""
    caplog.set_level(logging.DEBUG, logger="httpx_refresh")
    provider = Provider()
    calls: list[int] = []
    auth = hr.RefreshAuth(LONG, reauth_refresher(flavor, calls))
    with mock_client(provider.mock, auth) as client, pytest.raises(hr.ReauthorizationRequired):
        client.get(API)
    errors = library_records(caplog, logging.ERROR)
    assert len(errors) == 1
    assert "reauthorization" in errors[0].getMessage()
    for secret in LONG.values():
        assert secret not in caplog.text
    assert library_records(caplog, logging.INFO) == []
    assert auth.stats == hr.RefreshStats(refreshes=0, replays=0, deduplicated=0, failures=1)


@pytest.mark.anyio
async def test_R15_error_log_on_reauthorization_required_async(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R15: a permanent failure logs one ERROR for the flight (20 tasks), without secrets."""
    caplog.set_level(logging.DEBUG, logger="httpx_refresh")
    provider = Provider()
    calls: list[int] = []
    auth = hr.RefreshAuth(LONG, reauth_refresher("async", calls))
    async with mock_aclient(provider.mock, auth) as client:
        outcomes = await gather(20, lambda i: client.get(f"{API}/{i}"))
    assert all(isinstance(o, hr.ReauthorizationRequired) for o in outcomes)
    assert calls == [1]
    assert len(library_records(caplog, logging.ERROR)) == 1
    for secret in LONG.values():
        assert secret not in caplog.text
    assert auth.stats.failures == 1
    assert auth.stats.refreshes == 0


# -- forced refresh and update_credentials ---------------------------------------------------


def test_forced_refresh_is_single_flight_sync() -> None:
    """R5: ``auth.refresh()`` from 8 threads at once runs the refresher once; a later call
    refreshes again even though the token is fresh."""
    provider = Provider("A1")
    auth: hr.RefreshAuth

    def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        wait_until(lambda: auth.stats.deduplicated == 7, "7 callers joined the flight")
        return provider.issue(credentials)

    auth = hr.RefreshAuth(CREDS, refresher)
    results = run_threads(8, lambda i: dict(auth.refresh()))
    assert results == [{"access_token": "A2", "refresh_token": "R2"}] * 8
    assert provider.issued == 1
    assert auth.version == 1
    refresher_again = provider.refresher()
    auth2 = hr.RefreshAuth(CREDS, refresher_again)
    assert auth2.refresh()["access_token"] == "A3"
    assert auth2.refresh()["access_token"] == "A4"
    assert auth2.version == 2


@pytest.mark.anyio
async def test_forced_refresh_is_single_flight_async() -> None:
    """R5: ``await auth.arefresh()`` from 50 tasks at once runs the refresher once, and a
    request rejected meanwhile joins that same flight."""
    provider = Provider()
    auth: hr.RefreshAuth

    async def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        await await_until(lambda: auth.stats.deduplicated == 50, "50 callers joined")
        return provider.issue(credentials)

    auth = hr.RefreshAuth(CREDS, refresher)
    async with mock_aclient(provider.mock, auth) as client:

        async def work(index: int) -> Any:
            if index == 0:
                return outcome(await client.get(API))
            return dict(await auth.arefresh())

        results = await gather(51, work)
    assert results[0] == (200, "A2")
    assert results[1:] == [{"access_token": "A2", "refresh_token": "R2"}] * 50
    assert provider.issued == 1
    assert auth.version == 1


def test_update_credentials_clears_reauthorization_required_sync() -> None:
    """R10 via update_credentials: after ReauthorizationRequired every request and forced
    refresh fails fast (no refresher call, nothing sent) until ``update_credentials``."""
    provider = Provider()
    calls: list[int] = []
    auth = hr.RefreshAuth(CREDS, reauth_refresher("sync", calls))
    with mock_client(provider.mock, auth) as client:
        with pytest.raises(hr.ReauthorizationRequired):
            client.get(API)
        assert calls == [1]
        sent = len(provider.calls)
        outcomes = run_threads(8, lambda i: client.get(f"{API}/{i}"))
        assert all(isinstance(o, hr.ReauthorizationRequired) for o in outcomes)
        assert all(o.oauth_error == "invalid_grant" for o in outcomes)
        with pytest.raises(hr.ReauthorizationRequired):
            auth.refresh()
        assert calls == [1]
        assert len(provider.calls) == sent  # failed fast: nothing was sent

        version = auth.version
        provider.accept("A9")
        auth.update_credentials({"access_token": "A9", "refresh_token": "R9"})
        assert auth.version == version + 1
        assert outcome(client.get(API)) == (200, "A9")
    assert calls == [1]


@pytest.mark.anyio
async def test_update_credentials_clears_reauthorization_required_async() -> None:
    """R10 via update_credentials: after ReauthorizationRequired every request fails fast
    until ``update_credentials``; afterwards refreshes run again."""
    provider = Provider()
    calls: list[int] = []
    auth = hr.RefreshAuth(CREDS, reauth_refresher("async", calls))
    async with mock_aclient(provider.mock, auth) as client:
        with pytest.raises(hr.ReauthorizationRequired):
            await client.get(API)
        sent = len(provider.calls)
        outcomes = await gather(20, lambda i: client.get(f"{API}/{i}"))
        assert all(isinstance(o, hr.ReauthorizationRequired) for o in outcomes)
        with pytest.raises(hr.ReauthorizationRequired):
            await auth.arefresh()
        assert calls == [1]
        assert len(provider.calls) == sent

        provider.accept("A9")
        auth.update_credentials({"access_token": "A9", "refresh_token": "R9"})
        assert auth.version == 1
        assert outcome(await client.get(API)) == (200, "A9")
        provider.revoke_all()  # the refresher runs again (and fails again)
        with pytest.raises(hr.ReauthorizationRequired):
            await client.get(API)
    assert calls == [1, 1]


# -- R2 / R11: a provider that hands out already-expiring tokens ----------------------


@pytest.mark.parametrize(
    "expiry",
    [{"expires_in": 0}, {"expires_in": -5}, {"expires_in": "0"}, {"expires_at": 999_000.0}],
    ids=["0", "-5", "str-0", "past-expires_at"],
)
def test_R2_token_expiring_at_issue_is_an_unknown_expiry(
    expiry: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    """R2: a refresh that returns ``expires_in <= 0`` (a token that does not expire, for
    several providers) or an absolute expiry already past on arrival (clock skew) has an
    unknown expiry: no proactive refresh ever (this used to refresh every
    ``min_refresh_interval``: 120 token calls in 10 minutes at 1 request/s), a 401
    refreshes once and replays once; at most one log line per refresh result."""
    caplog.set_level(logging.DEBUG, logger="httpx_refresh")
    now = [1_000_000.0]
    calls: list[int] = []

    def refresher(**_: object) -> dict[str, object]:
        calls.append(1)
        return {"access_token": f"T{len(calls)}", **expiry}

    sent: list[str] = []
    revoked: set[str] = set()

    def api(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["Authorization"])
        return httpx.Response(401 if request.headers["Authorization"] in revoked else 200)

    auth = hr.RefreshAuth(
        {"refresh_token": "R"}, refresher, clock=lambda: now[0], min_refresh_interval=5.0
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        for _ in range(600):  # no access token: one refresh, then 10 minutes at 1 request/s
            assert client.get("http://api.test/").status_code == 200
            now[0] += 1.0
        assert len(calls) == 1
        revoked.add("Bearer T1")  # the provider ends the token: a 401, one refresh, one replay
        assert client.get("http://api.test/").status_code == 200
        assert client.get("http://api.test/").status_code == 200
    assert len(calls) == 2
    assert sent == ["Bearer T1"] * 601 + ["Bearer T2"] * 2
    assert auth.stats.replays == 1
    assert auth.stats.refreshes == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == (2 if "expires_at" in expiry else 0)  # one per refresh result


# -- R2: expiry on the client's own clock, against a real server (issue 15 items 2, 3) -----

SKEW = {  # skew (server clock minus client clock, s), expires_in sent?, token calls, replays
    "ahead-120": (-120.0, True, 4, 0),
    "behind-120": (120.0, True, 4, 0),
    "in-sync": (0.0, True, 4, 0),
    "ahead-120-expires_at-only": (-120.0, False, 2, 1),
    "behind-120-expires_at-only": (120.0, False, 2, 1),
}


@pytest.mark.parametrize(("skew", "with_expires_in", "calls", "replays"), SKEW.values(), ids=SKEW)
def test_R2_one_refresh_per_token_lifetime_whatever_the_clock_skew(
    run_server: Callable[[Any], str],
    client_flavour: str,
    caplog: pytest.LogCaptureFixture,
    skew: float,
    with_expires_in: bool,
    calls: int,
    replays: int,
) -> None:
    """R2 (issue 15 item 2): a real token endpoint on 127.0.0.1 whose clock is ``skew``
    seconds off the client's issues 60 s tokens (rotating, single use) with ``expires_in:
    60`` and its own absolute ``expires_at``; its API rejects a token 60 s after issue.
    One request per second for 120 s (injected clock). ``expires_in`` counts on the
    client's clock and wins: refreshes at 0, 30, 60 and 90 s (leeway 30 s), whatever the
    skew; the client clock 120 s ahead used to make 24 token calls. With only
    ``expires_at``, a client clock ahead sees it past on arrival (clock skew, one WARNING
    per refresh result): the token is refreshed when rejected, once per lifetime; a client
    clock behind uses the token until the rejection."""
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    clock = FakeClock()
    start = clock()

    def server_clock() -> float:
        return clock() + skew

    server = OAuthServer(
        rotate=True,
        single_use=True,
        expires_in=60 if with_expires_in else None,
        token_extra=lambda gen: {"expires_at": server_clock() + 60},
        clock=server_clock,
        api_lifetime=60,
    )
    url = run_server(server.app)
    refresher = hr.OAuth2Refresh(f"{url}/token", client_id="cid", client_secret="csecret")
    saved: list[dict[str, Any]] = []
    auth = hr.RefreshAuth(
        server.initial_credentials(expires_at=clock() - 1),
        refresher,
        clock=clock,
        on_refresh=lambda credentials: saved.append(dict(credentials)),
    )
    statuses = get_every(
        client_flavour,
        (
            lambda: httpx.Client(auth=auth, base_url=url, timeout=10),
            lambda: httpx.AsyncClient(auth=auth, base_url=url, timeout=10),
        ),
        "/api",
        count=120,
        clock=clock,
    )
    assert statuses == [200] * 120
    assert server.token_calls == calls
    assert server.presented == list(range(calls))
    assert auth.stats.replays == replays
    assert auth.stats.failures == 0
    if with_expires_in:  # merged and persisted: the client-clock expiry of the t = 90 s token
        assert saved[-1]["expires_at"] == pytest.approx(start + 90 + 60)
        assert auth.expires_at == pytest.approx(start + 90 + 60)
    skewed = [r for r in caplog.records if "clock skew" in r.getMessage()]
    assert len(skewed) == (calls if skew < 0 and not with_expires_in else 0)


@pytest.mark.parametrize("expires_in", [0, "0"])
def test_R2_expires_in_zero_from_a_real_token_endpoint_refreshes_on_rejection_only(
    run_server: Callable[[Any], str],
    client_flavour: str,
    caplog: pytest.LogCaptureFixture,
    expires_in: object,
) -> None:
    """R2 (issue 15 item 3): a real token endpoint on 127.0.0.1 that answers
    ``expires_in: 0`` ("does not expire") and rotates single-use refresh tokens. Ten
    minutes at one request per second (injected clock): 1 token call (the initial
    credentials are expired), then none until the API rejects the token, then exactly one
    refresh and one replay; nothing logged at WARNING. It used to make 120 token calls; the
    merged credentials hold no ``expires_at``."""
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    clock = FakeClock()
    server = OAuthServer(rotate=True, single_use=True, expires_in=expires_in, clock=clock)
    url = run_server(server.app)
    refresher = hr.OAuth2Refresh(f"{url}/token", client_id="cid", client_secret="csecret")
    auth = hr.RefreshAuth(
        server.initial_credentials(expires_at=clock() - 1), refresher, clock=clock
    )
    clients = (
        lambda: httpx.Client(auth=auth, base_url=url, timeout=10),
        lambda: httpx.AsyncClient(auth=auth, base_url=url, timeout=10),
    )
    statuses = get_every(client_flavour, clients, "/api", count=600, clock=clock)
    assert statuses == [200] * 600
    assert server.token_calls == 1
    assert "expires_at" not in auth.credentials
    assert auth.expires_at is None
    server.revoke_access()
    statuses = get_every(client_flavour, clients, "/api", count=2, clock=clock)
    assert statuses == [200, 200]
    assert server.token_calls == 2
    assert server.presented == [0, 1]
    assert auth.stats.replays == 1
    assert [r.getMessage() for r in caplog.records] == []


def _dotnet(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.1234567Z", time.gmtime(when))


EXPIRY_FORMATS = {  # how the token endpoint writes its expires_at; token calls in 240 s
    "dotnet-7-digits": (_dotnet, 3),
    "offset-without-colon": (lambda t: time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(t)), 3),
    "lowercase-t-z": (lambda t: time.strftime("%Y-%m-%dt%H:%M:%Sz", time.gmtime(t)), 3),
    "space-9-digits": (lambda t: time.strftime("%Y-%m-%d %H:%M:%S.123456789", time.gmtime(t)), 3),
    "rfc-1123": (lambda t: time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t)), 3),
    "rfc-850": (lambda t: time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(t)), 3),
    "asctime": (lambda t: time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(t)), 3),
    "unparseable": (lambda t: f"in {int(t)} ticks", 1),
}


@pytest.mark.parametrize(("write", "calls"), EXPIRY_FORMATS.values(), ids=EXPIRY_FORMATS)
def test_R2_expires_at_as_providers_write_it_drives_the_proactive_refresh(
    client_flavour: str,
    caplog: pytest.LogCaptureFixture,
    write: Callable[[float], str],
    calls: int,
) -> None:
    """R2 (issue 15 item 9): a token endpoint (MockTransport) that gives only an absolute
    ``expires_at`` 120 s ahead, written as .NET does (7 fraction digits), with ``+0000``,
    lowercase, a space, or as an HTTP-date (RFC 1123, RFC 850, asctime). One request per
    second for 240 s: refreshes at 0, ~90 and ~180 s, the same on Python 3.10 and 3.11+.
    An unparseable value is logged without the value (one WARNING per refresh result) and
    the expiry is unknown: no proactive refresh, no crash."""
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    clock = FakeClock(start=1_796_666_400.0)  # 2026-12-07T18:00:00Z
    issued: list[str] = []

    def token(request: httpx.Request) -> httpx.Response:
        issued.append(write(clock() + 120))
        return httpx.Response(
            200, json={"access_token": f"A{len(issued)}", "expires_at": issued[-1]}
        )

    def handler(request: httpx.Request) -> httpx.Response:
        return token(request) if request.url.path == "/token" else httpx.Response(200)

    refresher = hr.OAuth2Refresh(
        "https://auth.test/token",
        client_id="cid",
        transport=httpx.MockTransport(handler),
        async_transport=httpx.MockTransport(handler),
    )
    auth = hr.RefreshAuth({"refresh_token": "R1"}, refresher, clock=clock)
    clients = (
        lambda: httpx.Client(auth=auth, transport=httpx.MockTransport(handler)),
        lambda: httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(handler)),
    )
    statuses = get_every(client_flavour, clients, f"{API}/x", count=240, clock=clock)
    assert statuses == [200] * 240
    assert len(issued) == calls
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == (calls if calls == 1 else 0)
    assert not [w for w in warnings if any(value in w for value in issued)], "a value was logged"


# -- R7 / R10: a refresher that hangs past its timeout -----------------------------------


@pytest.mark.anyio
async def test_R7_sync_refresher_past_timeout_fails_the_flight_and_its_late_result_is_kept() -> (
    None
):
    """R7 + R10: a sync refresher used from an AsyncClient that outlives ``refresh_timeout``:
    the waiting requests get a transient RefreshError after the timeout (nothing hangs);
    when the refresher finally returns, its rotated refresh token is merged and persisted
    (it is not lost), and the next request uses it without another refresh."""
    release = threading.Event()
    persisted = threading.Event()
    calls: list[int] = []
    saved: list[dict[str, object]] = []

    def refresher(**_: object) -> dict[str, object]:
        calls.append(1)
        assert release.wait(10)
        return {"access_token": "A2", "refresh_token": "R2", "expires_in": 3600}

    def on_refresh(credentials: dict[str, object]) -> None:
        saved.append(credentials)
        persisted.set()

    def api(request: httpx.Request) -> httpx.Response:
        ok = request.headers["Authorization"] == "Bearer A2"
        return httpx.Response(200 if ok else 401)

    auth = hr.RefreshAuth(
        {"access_token": "A1", "refresh_token": "R1"},
        refresher,
        refresh_timeout=0.3,
        on_refresh=on_refresh,
    )
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
        errors: list[BaseException] = []

        async def get() -> None:
            try:
                await client.get("http://api.test/")
            except hr.RefreshError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(get)
        assert len(errors) == 20
        assert all(isinstance(e, hr.RefreshError) and e.transient for e in errors)
        assert auth.credentials["refresh_token"] == "R1"  # nothing merged yet
        release.set()
        assert await anyio.to_thread.run_sync(persisted.wait, 5)
        assert auth.credentials["refresh_token"] == "R2"
        assert saved[-1]["refresh_token"] == "R2"
        response = await client.get("http://api.test/")
        assert response.status_code == 200
    assert len(calls) == 1


def test_R10_hung_sync_refresher_does_not_block_later_refreshes_forever() -> None:
    """R10: a sync refresher that hangs keeps its own thread (its owner waits for it up to
    ``refresh_timeout``, R16), but once the flight is older than its limit (every attempt
    and wait, plus 10 s) the next request that needs a refresh starts a new one instead of
    joining the stuck flight."""
    release = threading.Event()
    started = threading.Event()
    calls: list[int] = []

    def refresher(**_: object) -> dict[str, object]:
        calls.append(1)
        if len(calls) == 1:
            started.set()
            release.wait(30)
        return {"access_token": f"A{len(calls) + 1}", "expires_in": 3600}

    auth = hr.RefreshAuth({"access_token": "A1", "expires_at": 1}, refresher, refresh_timeout=30)
    client = httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    stuck = threading.Thread(target=lambda: client.get("http://api.test/"), daemon=True)
    stuck.start()
    try:
        assert started.wait(5)
        # The flight is not stuck yet: a second request waits for it and times out.
        flight = auth._control._flight
        assert flight is not None
        with pytest.raises(hr.RefreshError, match="timed out"):
            auth._control.wait_sync(flight, 0.05)
        flight.started -= auth._control._stuck_after + 1  # as if it had run that long
        assert client.get("http://api.test/").status_code == 200
        assert len(calls) == 2
        assert auth.credentials["access_token"] == "A3"
    finally:
        release.set()
        stuck.join(5)
        client.close()


def test_R9_hook_error_quoting_a_token_is_scrubbed() -> None:
    """R9 + C22: a hook whose error message quotes the new token reaches the caller as a
    RefreshError with the token redacted and without the raw error attached."""

    def refresher(**_: object) -> dict[str, object]:
        return {"access_token": "NEW-ACCESS-TOKEN-123", "refresh_token": "NEW-REFRESH-456"}

    def hook(credentials: dict[str, object]) -> None:
        raise ValueError(f"cannot save {credentials['refresh_token']}")

    auth = hr.RefreshAuth({"refresh_token": "OLD-REFRESH-789"}, refresher, on_refresh=hook)
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c,
        pytest.raises(hr.RefreshError) as caught,
    ):
        c.get("http://api.test/")
    text = f"{caught.value} {caught.value!r}"
    assert "NEW-REFRESH-456" not in text
    assert "[redacted]" in text
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_R2_short_but_valid_lifetime_is_still_refreshed_proactively() -> None:
    """R2: the R11 floor applies only to tokens already due on arrival; a refreshed token
    with a 1 s lifetime is refreshed proactively at half its lifetime, never after a 401."""
    now = [2_000_000.0]
    calls: list[int] = []

    def refresher(**_: object) -> dict[str, object]:
        calls.append(1)
        return {"access_token": f"T{len(calls)}", "expires_in": 1}

    def api(request: httpx.Request) -> httpx.Response:
        expected = f"Bearer T{len(calls)}"
        return httpx.Response(200 if request.headers["Authorization"] == expected else 401)

    auth = hr.RefreshAuth({"refresh_token": "R"}, refresher, clock=lambda: now[0])
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        for _ in range(6):  # refresh at t=0, then every 0.5 s (leeway clamped to 0.5 s)
            assert client.get("http://api.test/").status_code == 200
            now[0] += 0.6
    assert len(calls) == 6
    assert auth.stats.replays == 0


# -- token-refresh failures reported against other libraries ---------------------------------


@pytest.mark.parametrize("second", ["asyncio", "trio"])
def test_unstructured_io_unstructured_python_client_339_loop_closed_during_a_refresh(
    second: str,
) -> None:
    """Unstructured-IO/unstructured-python-client#339: a token exchange tied to the event loop
    of one ``asyncio.run()`` broke the next exchange in a later ``asyncio.run()`` (the lock was
    bound to the closed loop). Harder here (R6, R7): the first ``asyncio.run()`` ends, and
    closes its loop, while a refresh is still in flight on it (the request task is cancelled
    by the shutdown). A second event loop (asyncio or trio) must neither wait on that dead
    flight nor touch the closed loop: its request refreshes once and succeeds at once.
    Refresher calls: 2 (the abandoned one, then one for the new loop); 1 replay."""
    calls: list[str] = []
    started: dict[str, Any] = {}

    async def refresher(*, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        calls.append(credentials["access_token"])
        if len(calls) == 1:
            started["event"].set()
            await anyio.sleep_forever()  # still in flight when the first loop closes
        return {"access_token": "A2", "expires_in": 3600}

    def api(request: httpx.Request) -> httpx.Response:
        ok = request.headers.get("Authorization") == "Bearer A2"
        return httpx.Response(200 if ok else 401)

    auth = hr.RefreshAuth(dict(CREDS), refresher)

    async def first() -> None:
        started["event"] = asyncio.Event()
        async with mock_aclient(api, auth) as client:
            started["task"] = asyncio.ensure_future(client.get(f"{API}/first"))
            await asyncio.wait_for(started["event"].wait(), WAIT)
        # Return with the request task and its refresh in flight: asyncio.run() cancels
        # what is left, then closes the loop.

    asyncio.run(first())
    assert calls == ["A1"]

    async def then() -> int:
        with anyio.fail_after(5):
            async with mock_aclient(api, auth) as client:
                return (await client.get(f"{API}/second")).status_code

    assert anyio.run(then, backend=second) == 200
    assert calls == ["A1", "A1"]
    assert auth.credentials["access_token"] == "A2"
    assert auth.stats.replays == 1
    assert auth.stats.refreshes == 1


class DripApi:
    """An API whose answer to the new token streams in two chunks; the second is sent only
    once the client has received the first (``release``), else ``LATE`` after 5 s."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.seen: list[str] = []

    async def data(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "")
        with self.lock:
            self.seen.append(token)
        if token != "Bearer A2":
            return JSONResponse({"error": "invalid_token"}, status_code=401)

        async def body() -> AsyncIterator[bytes]:
            yield b"first;"
            released = await anyio.to_thread.run_sync(self.release.wait, 5.0)
            yield b"second" if released else b"LATE"

        return StreamingResponse(body())

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/data", self.data)])


def stream_auth() -> hr.RefreshAuth:
    return hr.RefreshAuth(dict(CREDS), lambda **_: {"access_token": "A2"})


def test_encode_httpx_1256_client_stream_is_authenticated_and_streams_the_replay_sync(
    run_server: Any,
) -> None:
    """encode/httpx#1256: ``Client.stream()`` did not apply the client's auth. R4 with a
    streamed response: the auth applies inside ``client.stream()``, the 401 leads to one
    refresh and one replay, and the replay's body reaches the caller as it arrives, not read
    ahead by the auth (the server sends its second chunk only after the caller has the
    first): ``first;second``, 2 API calls, 1 refresh."""
    api = DripApi()
    url = run_server(api.app())
    auth = stream_auth()
    with (
        httpx.Client(auth=auth, timeout=WAIT) as client,
        client.stream("GET", f"{url}/data") as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()
        first = next(chunks)
        api.release.set()
        body = first + b"".join(chunks)
    assert body == b"first;second"
    assert api.seen == ["Bearer A1", "Bearer A2"]
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=1, deduplicated=0, failures=0)


@pytest.mark.anyio
async def test_encode_httpx_1256_client_stream_is_authenticated_and_streams_the_replay_async(
    run_server: Any,
) -> None:
    """encode/httpx#1256: as the sync case, with ``AsyncClient.stream()`` on asyncio and trio."""
    api = DripApi()
    url = run_server(api.app())
    auth = stream_auth()
    with anyio.fail_after(WAIT):
        async with (
            httpx.AsyncClient(auth=auth, timeout=WAIT) as client,
            client.stream("GET", f"{url}/data") as response,
        ):
            assert response.status_code == 200
            body = b""
            async for chunk in response.aiter_raw():
                body += chunk
                api.release.set()
    assert body == b"first;second"
    assert api.seen == ["Bearer A1", "Bearer A2"]
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=1, deduplicated=0, failures=0)
