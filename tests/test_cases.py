"""Field cases from CASES.md as integration tests against real servers on 127.0.0.1.

Covered here: C01, C02, C03, C05, C06, C07, C10, C11, C12, C13, C16, C20 (C18, C19, C22
and C23 live elsewhere). Every test runs a Starlette app (``servers.OAuthServer``)
under uvicorn through the ``run_server`` fixture and asserts exact counts of what the
server saw: token-endpoint calls, the refresh tokens presented (by generation: 0 is
the initial grant, +1 per refresh), and the bearer token generation and body size of
every API request. Async tests run on asyncio and trio; thread tests share one
``httpx.Client``. Every test is bounded (``anyio.fail_after`` or thread joins with a
timeout), and servers hold requests on events, never on sleeps.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from servers import SHARED_CLIENT_LIMITS, FakeClock, Gate, Hit, OAuthServer, wait_event

import httpx_refresh as hr

pytestmark = pytest.mark.integration

CLIENT_ID = "cases-client"
CLIENT_SECRET = "cases-client-secret-0123456789"
TIMEOUT = 15.0  # s: bound for every test body


def oauth(base_url: str) -> hr.OAuth2Refresh:
    """The built-in refresh_token refresher against the test server's token endpoint."""
    return hr.OAuth2Refresh(
        base_url + "/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, timeout=10.0
    )


def run_threads(targets: list[Callable[[], None]], timeout: float = TIMEOUT) -> None:
    """Run each target in its own thread; fail if one is still running after ``timeout`` s.

    The first exception raised in a thread is re-raised here.
    """
    errors: list[BaseException] = []

    def guard(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guard(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(thread.is_alive() for thread in threads)
    assert stuck == 0, f"{stuck} of {len(threads)} threads still blocked after {timeout} s"
    if errors:
        raise errors[0]


def gens(hits: list[Hit]) -> list[int | None]:
    return [hit.gen for hit in hits]


def no_secret_in_logs(caplog: pytest.LogCaptureFixture, server: OAuthServer) -> None:
    secrets = [*server.issued_secrets(), CLIENT_SECRET]
    for record in caplog.records:
        text = record.getMessage()
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"log record from {record.name} holds a secret"


# -- C01 ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_C01_fifty_gets_on_expired_token_share_one_rotating_refresh(
    run_server: Callable[[Any], str],
) -> None:
    """C01 (R2, R5, R8): 50 concurrent GETs through one AsyncClient with an expired token.

    The token endpoint rotates refresh tokens (a reused one is rejected and revokes
    everything) and takes 200 ms. Exactly one token-endpoint call; all 50 get 200 with
    the new access token; the credentials hold the rotated refresh token.
    """
    server = OAuthServer(latency=0.2, rotate=True, single_use=True)
    url = run_server(server.app)
    auth = hr.RefreshAuth(server.initial_credentials(expires_at=time.time() - 60), oauth(url))
    results: list[tuple[int, int | None]] = []

    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:

        async def get() -> None:
            response = await client.get("/api")
            results.append((response.status_code, response.json()["gen"]))

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(get)

    assert server.token_calls == 1
    assert server.presented == [0]
    assert results == [(200, 1)] * 50
    assert gens(server.hits) == [1] * 50, "a request went out with the expired token"
    held = server.describe(auth.credentials)
    assert (held["refresh_gen"], held["refresh_current"]) == (1, True), "rotated token kept"
    assert auth.stats.refreshes == 1
    assert auth.stats.replays == 0


# -- C02 ---------------------------------------------------------------------------------

C02_N = 10


def c02_server() -> tuple[OAuthServer, Gate]:
    """Single-use rotating refresh tokens; the API holds every generation-0 POST until
    all ten have arrived, then rejects them with 401 (so all ten really race)."""
    server = OAuthServer(rotate=True, single_use=True)
    gate = Gate(C02_N)

    async def hold_rejections(hit: Hit) -> int | None:
        if hit.gen == 0 and not await gate.arrive():
            return 504
        return None

    server.hooks["/api"] = hold_rejections
    return server, gate


@pytest.mark.anyio
async def test_C02_ten_rejected_posts_present_old_refresh_token_once(
    run_server: Callable[[Any], str],
) -> None:
    """C02 (R4, R5, R12): ten concurrent POSTs all get 401; reusing the refresh token
    would be answered ``invalid_grant`` and revoke everything.

    The old refresh token is sent exactly once; all ten are replayed with their full
    body and get 200.
    """
    server, gate = c02_server()
    url = run_server(server.app)
    auth = hr.RefreshAuth(server.initial_credentials(revoked=True), oauth(url))
    results: dict[int, tuple[int, int | None, int]] = {}

    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:

        async def post(i: int) -> None:
            response = await client.post("/api", json={"item": i, "pad": "x" * i})
            data = response.json()
            results[i] = (response.status_code, data["gen"], data["size"])

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                for i in range(C02_N):
                    tg.start_soon(post, i)

    assert gate.count == C02_N
    assert server.token_calls == 1
    assert server.presented == [0]
    sizes = {
        i: len(httpx.Request("POST", url, json={"item": i, "pad": "x" * i}).content)
        for i in range(C02_N)
    }
    assert results == {i: (200, 1, sizes[i]) for i in range(C02_N)}
    hits = server.hits
    assert sorted((h.gen, h.status) for h in hits) == [(0, 401)] * C02_N + [(1, 200)] * C02_N
    assert sorted(h.size for h in hits if h.gen == 1) == sorted(sizes.values())
    held = server.describe(auth.credentials)
    assert (held["refresh_gen"], held["refresh_current"]) == (1, True)
    assert auth.stats.refreshes == 1
    assert auth.stats.replays == C02_N


@pytest.mark.anyio
async def test_C02_refresher_raising_after_100ms_fails_all_ten_fast_then_recovers(
    run_server: Callable[[Any], str],
) -> None:
    """C02 variant (R5, R10): the refresher raises after 100 ms.

    All ten rejected POSTs fail quickly (well under 1 s) with the same typed error,
    none hangs, the refresher ran once for all ten, and a later request tries again
    and succeeds (the failure was not permanent) once the cooldown (R10: one flight per
    backoff period) has passed; inside it, a request fails fast without a refresher call.
    """
    server, gate = c02_server()
    url = run_server(server.app)
    real = oauth(url)
    lock = threading.Lock()
    calls: list[float] = []

    async def flaky(**kwargs: Any) -> dict[str, Any]:
        with lock:
            calls.append(time.perf_counter())
            first = len(calls) == 1
        if first:
            await anyio.sleep(0.1)  # the refresher's own latency before it fails
            raise RuntimeError("token service exploded")
        return await real.acall(**kwargs)

    skew = [0.0]
    auth = hr.RefreshAuth(
        server.initial_credentials(revoked=True), flaky, clock=lambda: time.time() + skew[0]
    )
    errors: dict[int, hr.RefreshError] = {}
    elapsed: dict[int, float] = {}

    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:

        async def post(i: int) -> None:
            started = time.perf_counter()
            try:
                await client.post("/api", json={"item": i})
            except hr.RefreshError as exc:
                errors[i] = exc
            finally:
                elapsed[i] = time.perf_counter() - started

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                for i in range(C02_N):
                    tg.start_soon(post, i)

        assert gate.count == C02_N
        assert sorted(errors) == list(range(C02_N)), "every rejected POST gets the error"
        kinds = {(type(e), str(e), e.transient, e.oauth_error) for e in errors.values()}
        assert len(kinds) == 1, kinds
        assert not any(isinstance(e, hr.ReauthorizationRequired) for e in errors.values())
        assert len(calls) == 1, "the refresher runs once for all ten"
        assert max(elapsed.values()) < 1.0, elapsed
        assert server.token_calls == 0
        assert auth.stats.failures == 1

        with anyio.fail_after(TIMEOUT), pytest.raises(hr.RefreshError):
            await client.post("/api", json={"item": "cooling"})
        assert len(calls) == 1, "no new refresh inside the cooldown"
        skew[0] = hr.RetryPolicy().cooldown  # the cooldown has passed
        with anyio.fail_after(TIMEOUT):
            later = await client.post("/api", json={"item": "later"})
    assert later.status_code == 200
    assert later.json()["gen"] == 1
    assert len(calls) == 2
    assert server.token_calls == 1
    assert server.presented == [0]


# -- C03 ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_C03_late_401_for_replaced_token_replays_without_second_refresh(
    run_server: Callable[[Any], str],
) -> None:
    """C03 (R5): A and B are both sent with token gen 0 (revoked at the server).

    The server answers B's 401 only once A has arrived, and A's 401 only after B's
    replay arrived with the refreshed token, so A's rejection is a late 401 for an
    already-replaced token. A is replayed with the new token, no second refresh, and
    the credentials are never cleared.
    """
    server = OAuthServer(rotate=True, single_use=True)
    a_arrived = threading.Event()
    new_token_seen = threading.Event()

    async def order(hit: Hit) -> int | None:
        if hit.gen == 0 and hit.query == "who=a":
            a_arrived.set()
            return None if await wait_event(new_token_seen) else 504
        if hit.gen == 0 and hit.query == "who=b":
            return None if await wait_event(a_arrived) else 504
        if hit.gen == 1:
            new_token_seen.set()
        return None

    server.hooks["/api"] = order
    url = run_server(server.app)
    auth = hr.RefreshAuth(server.initial_credentials(revoked=True, expires_in=3600), oauth(url))
    results: dict[str, tuple[int, int | None]] = {}

    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:

        async def get(who: str) -> None:
            response = await client.get("/api", params={"who": who})
            results[who] = (response.status_code, response.json()["gen"])

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(get, "a")
                tg.start_soon(get, "b")

    assert results == {"a": (200, 1), "b": (200, 1)}
    assert server.token_calls == 1
    assert server.presented == [0]
    assert [(h.query, h.gen, h.status) for h in server.hits] == [
        ("who=b", 0, 401),
        ("who=b", 1, 200),
        ("who=a", 0, 401),
        ("who=a", 1, 200),
    ]
    assert None not in gens(server.hits), "a request went out without credentials"
    held = server.describe(auth.credentials)
    assert (held["access_gen"], held["refresh_gen"], held["refresh_current"]) == (1, 1, True)
    assert auth.stats.refreshes == 1
    assert auth.stats.replays == 2


# -- C05 ---------------------------------------------------------------------------------

C05_THREADS = 32


def c05_auth(server: OAuthServer, url: str, clock: FakeClock) -> hr.RefreshAuth:
    return hr.RefreshAuth(
        server.initial_credentials(expires_at=clock() + 100),
        oauth(url),
        apply=hr.headers({"Authorization": "Bearer {access_token}", "X-Tenant": "{tenant}"}),
        clock=clock,
    )


def c05_server(**options: Any) -> tuple[OAuthServer, threading.Event]:
    """Token responses carry ``tenant`` alongside the access token; the API records the
    pair; ``warm`` is set once the API has seen two requests per thread."""
    server = OAuthServer(
        latency=0.2,
        revoke_old=False,
        token_extra=lambda gen: {"tenant": f"tenant-{gen}"},
        **options,
    )
    warm = threading.Event()
    lock = threading.Lock()
    count = [0]

    async def count_hits(hit: Hit) -> None:
        with lock:
            count[0] += 1
            if count[0] >= 2 * C05_THREADS:
                warm.set()

    server.hooks["/api"] = count_hits
    return server, warm


def test_C05_threads_crossing_expiry_one_refresh_one_snapshot_per_request(
    run_server: Callable[[Any], str],
) -> None:
    """C05 (R1, R5): 32 threads share one ``httpx.Client`` while the clock crosses expiry.

    The credentials put two fields on a request (access token and ``X-Tenant``); the
    refresh (200 ms) replaces both. The threads loop until the injected clock has been
    moved past expiry (with requests in flight), then send two more each. Exactly one
    refresh; every request's token and tenant come from the same generation; every
    thread's last two requests carry the new generation.
    """
    clock = FakeClock()
    server, warm = c05_server()
    url = run_server(server.app)
    auth = c05_auth(server, url, clock)
    crossed = threading.Event()
    start = threading.Barrier(C05_THREADS)
    per_thread: dict[int, list[tuple[int, int | None]]] = {}

    with httpx.Client(auth=auth, base_url=url, timeout=10, limits=SHARED_CLIENT_LIMITS) as client:

        def worker(i: int) -> Callable[[], None]:
            def run() -> None:
                start.wait(TIMEOUT)
                seen: list[tuple[int, int | None]] = []
                while not crossed.is_set():
                    response = client.get("/api")
                    seen.append((response.status_code, response.json()["gen"]))
                for _ in range(2):
                    response = client.get("/api")
                    seen.append((response.status_code, response.json()["gen"]))
                per_thread[i] = seen

            return run

        def cross() -> None:
            try:
                assert warm.wait(TIMEOUT), "the threads never got going"
                clock.advance(1000)
            finally:
                crossed.set()

        run_threads([worker(i) for i in range(C05_THREADS)] + [cross])

    assert server.token_calls == 1
    assert server.presented == [0]
    hits = server.hits
    mixed = [(h.gen, h.tenant) for h in hits if h.tenant != f"tenant-{h.gen}"]
    assert mixed == [], "a request carried headers from two credential versions"
    responses = [r for seen in per_thread.values() for r in seen]
    assert len(per_thread) == C05_THREADS
    assert len(responses) == len(hits)
    assert {status for status, _ in responses} == {200}
    assert all(seen[-2:] == [(200, 1), (200, 1)] for seen in per_thread.values())
    assert auth.stats.refreshes == 1
    assert auth.stats.replays == 0


def test_C05_failed_refresh_reaches_every_thread_none_blocks(
    run_server: Callable[[Any], str],
) -> None:
    """C05 variant (R5, R10): the refresh fails (``invalid_grant`` after 200 ms).

    Every one of the 32 threads gets ``ReauthorizationRequired`` on its first request
    after the expiry, none blocks, and the token endpoint sees exactly one call.
    """
    clock = FakeClock()
    server, warm = c05_server(token_error=(400, {"error": "invalid_grant"}))
    url = run_server(server.app)
    auth = c05_auth(server, url, clock)
    crossed = threading.Event()
    start = threading.Barrier(C05_THREADS)
    errors: dict[int, hr.ReauthorizationRequired] = {}

    with httpx.Client(auth=auth, base_url=url, timeout=10, limits=SHARED_CLIENT_LIMITS) as client:

        def worker(i: int) -> Callable[[], None]:
            def run() -> None:
                start.wait(TIMEOUT)
                while not crossed.is_set():
                    assert client.get("/api").status_code == 200
                try:
                    client.get("/api")
                except hr.ReauthorizationRequired as exc:
                    errors[i] = exc

            return run

        def cross() -> None:
            try:
                assert warm.wait(TIMEOUT), "the threads never got going"
                clock.advance(1000)
            finally:
                crossed.set()

        run_threads([worker(i) for i in range(C05_THREADS)] + [cross])

    assert sorted(errors) == list(range(C05_THREADS))
    assert {e.oauth_error for e in errors.values()} == {"invalid_grant"}
    assert server.token_calls == 1
    assert auth.stats.refreshes == 0
    held = server.describe(auth.credentials)
    assert (held["access_gen"], held["refresh_gen"]) == (0, 0), "credentials unchanged"


# -- C06 ---------------------------------------------------------------------------------

#: Largest tolerated ticker stall (largest gap between ticks minus the 10 ms period):
#: the ~50 ms of CASES.md, no extra tolerance. See the C06 docstring for measured values.
C06_MAX_STALL = 0.05
C06_TICK = 0.01


@pytest.mark.anyio
@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_C06_refresh_never_stalls_the_event_loop(
    run_server: Callable[[Any], str], flavour: str
) -> None:
    """C06 (R6, R14): a 200 ms token call must not block the event loop.

    Two requests need a refresh (expired token) while a 10 ms ticker runs in the same
    loop. Both finish in 0.2-0.5 s with one token call, and the ticker's largest gap
    minus its 10 ms period (the stall) stays under ~50 ms. ``flavour`` "async" uses
    ``OAuth2Refresh`` (its ``acall``); "sync" wraps its blocking ``__call__`` in a plain
    function, which must run in a worker thread.

    No extra tolerance: the bound is the case's. Measured on the shared 2-core machine
    (other helpers' runs in parallel), 22 runs: largest gap 11-49 ms for "async",
    11-25 ms for "sync"; durations 206-283 ms. With both cores saturated by two extra
    busy processes, "async" reached 60-83 ms and failed 2 runs of 3, "sync" stayed
    <= 27 ms. The difference is the library's: ``OAuth2Refresh.acall`` builds a new
    ``httpx.AsyncClient`` per refresh, and its SSL context (``load_verify_locations``)
    blocks the loop ~25 ms each time (~90 ms the first time in a process). With a
    cached SSL context (patched copy), "async" stayed at 11-15 ms under the same load.
    (The server shares this process, so its thread also competes for the GIL.)
    """
    server = OAuthServer(latency=0.2, rotate=True, single_use=True)
    url = run_server(server.app)
    real = oauth(url)

    def blocking_refresher(**kwargs: Any) -> dict[str, Any]:
        return real(**kwargs)

    refresher = real if flavour == "async" else blocking_refresher
    auth = hr.RefreshAuth(server.initial_credentials(expires_at=time.time() - 60), refresher)
    gaps: list[float] = []
    durations: list[float] = []
    results: list[tuple[int, int | None]] = []
    stop = anyio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await anyio.sleep(C06_TICK)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:

        async def get() -> None:
            started = time.perf_counter()
            response = await client.get("/api")
            durations.append(time.perf_counter() - started)
            results.append((response.status_code, response.json()["gen"]))

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                async with anyio.create_task_group() as requests:
                    requests.start_soon(get)
                    requests.start_soon(get)
                stop.set()

    stall = max(gaps) - C06_TICK
    print(
        f"C06 {flavour}: durations {[round(d * 1000) for d in durations]} ms, "
        f"largest ticker gap {max(gaps) * 1000:.1f} ms over {len(gaps)} ticks"
    )
    assert results == [(200, 1), (200, 1)]
    assert server.token_calls == 1
    assert all(0.2 <= d <= 0.5 for d in durations), durations
    assert stall <= C06_MAX_STALL, f"event loop stalled {stall * 1000:.1f} ms"


# -- C07 ---------------------------------------------------------------------------------


def c07_server() -> tuple[OAuthServer, threading.Event, threading.Event, list[int | None]]:
    """``/hang`` holds every request until ``release`` is set; ``arrived`` tells it came."""
    server = OAuthServer(rotate=True, single_use=True)
    arrived = threading.Event()
    release = threading.Event()
    hang_gens: list[int | None] = []

    async def hang(hit: Hit) -> int | None:
        hang_gens.append(hit.gen)
        arrived.set()
        await wait_event(release, 30)
        return None

    server.hooks["/hang"] = hang
    return server, arrived, release, hang_gens


async def c07_second_request(client: httpx.AsyncClient) -> tuple[httpx.Response, float]:
    """Send a GET from a new task, bounded by 1 s; return it and its duration."""
    box: dict[str, Any] = {}

    async def second() -> None:
        started = time.perf_counter()
        with anyio.fail_after(1.0):
            box["response"] = await client.get("/api")
        box["elapsed"] = time.perf_counter() - started

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
    return box["response"], box["elapsed"]


@pytest.mark.anyio
async def test_C07_cancel_request_hanging_at_api_then_next_request_is_fast(
    run_server: Callable[[Any], str], caplog: pytest.LogCaptureFixture
) -> None:
    """C07 (R6, R7): cancel a request whose flow is suspended while the API hangs.

    Request 1 starts with an expired token (so it went through a refresh) and hangs at
    ``/hang``; it is cancelled there. Then the server revokes its token and another
    task sends request 2, which needs a reactive refresh: it completes in under 1 s,
    with no lock error and nothing stuck (unraisable errors fail the test).
    """
    server, arrived, release, hang_gens = c07_server()
    url = run_server(server.app)
    auth = hr.RefreshAuth(server.initial_credentials(expires_at=time.time() - 60), oauth(url))
    caplog.set_level(logging.DEBUG)
    try:
        async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:
            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as tg:
                    scope = anyio.CancelScope()

                    async def first() -> None:
                        with scope:
                            await client.get("/hang")
                        assert scope.cancelled_caught

                    tg.start_soon(first)
                    assert await anyio.to_thread.run_sync(arrived.wait, TIMEOUT)
                    scope.cancel()
                gc.collect()  # finalize anything the cancelled flow left behind, now
                server.revoke_access()
                response, elapsed = await c07_second_request(client)
    finally:
        release.set()

    assert response.status_code == 200
    assert response.json()["gen"] == 2
    assert elapsed < 1.0
    assert server.token_calls == 2
    assert server.presented == [0, 1]
    assert hang_gens == [1], "request 1 went out after its refresh"
    assert [(h.gen, h.status) for h in server.hits if h.path == "/api"] == [(1, 401), (2, 200)]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    no_secret_in_logs(caplog, server)


@pytest.mark.anyio
async def test_C07_connect_error_then_next_request_is_fast(
    run_server: Callable[[Any], str], caplog: pytest.LogCaptureFixture
) -> None:
    """C07 variant (R6, R7): the transport raises ``ConnectError`` while the flow is suspended.

    Request 1 (expired token, so it refreshed first) goes to a port where nothing
    listens and fails with a real ``httpx.ConnectError``. Then another task sends a
    request through a second client sharing the same auth; the server has revoked the
    token, so it needs a reactive refresh; it completes in under 1 s.
    """
    server = OAuthServer(rotate=True, single_use=True)
    url = run_server(server.app)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    auth = hr.RefreshAuth(server.initial_credentials(expires_at=time.time() - 60), oauth(url))
    caplog.set_level(logging.DEBUG)

    async with (
        httpx.AsyncClient(auth=auth, base_url=dead_url, timeout=5) as dead,
        httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client,
    ):
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:

                async def first() -> None:
                    with pytest.raises(httpx.ConnectError):
                        await dead.get("/api")

                tg.start_soon(first)
            gc.collect()
            server.revoke_access()
            response, elapsed = await c07_second_request(client)

    assert response.status_code == 200
    assert response.json()["gen"] == 2
    assert elapsed < 1.0
    assert server.token_calls == 2
    assert server.presented == [0, 1]
    assert [(h.gen, h.status) for h in server.hits] == [(1, 401), (2, 200)]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    no_secret_in_logs(caplog, server)


@pytest.mark.anyio
async def test_C07_cancel_request_while_its_refresh_runs_keeps_the_rotated_token(
    run_server: Callable[[Any], str], caplog: pytest.LogCaptureFixture
) -> None:
    """C07, suspended in the refresh (R7): cancel the request whose refresh is running.

    Request 1 (expired token) starts a refresh; the token endpoint holds it. Request 1
    is cancelled, then request 2 is sent from another task and the token endpoint is
    released. The exchange was shielded, so its rotated refresh token is kept: request 2
    gets 200 with the new token in under 1 s, and the token endpoint saw exactly one
    call (a second call would reuse the single-use refresh token).
    """
    server = OAuthServer(rotate=True, single_use=True)
    server.token_hold = threading.Event()
    url = run_server(server.app)
    auth = hr.RefreshAuth(server.initial_credentials(expires_at=time.time() - 60), oauth(url))
    caplog.set_level(logging.DEBUG)
    box: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:
            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as tg:
                    scope = anyio.CancelScope()

                    async def first() -> None:
                        with scope:
                            await client.get("/api")
                        box["first_cancelled"] = scope.cancelled_caught

                    async def second() -> None:
                        box["second"] = await c07_second_request(client)

                    tg.start_soon(first)
                    assert await anyio.to_thread.run_sync(server.token_arrived.wait, TIMEOUT)
                    scope.cancel()
                    tg.start_soon(second)
                    server.token_hold.set()
                gc.collect()
    finally:
        server.token_hold.set()

    response, elapsed = box["second"]
    assert box["first_cancelled"] is True
    assert (response.status_code, response.json()["gen"]) == (200, 1)
    assert elapsed < 1.0
    assert server.token_calls == 1
    assert server.presented == [0]
    held = server.describe(auth.credentials)
    assert (held["refresh_gen"], held["refresh_current"]) == (1, True), "rotated token kept"
    assert [(h.gen, h.status) for h in server.hits] == [(1, 200)]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    no_secret_in_logs(caplog, server)


# -- C10 ---------------------------------------------------------------------------------

C10_CHUNKS = (b"a" * 3413, b"b" * 3413, b"c" * 3414)
C10_SIZE = sum(map(len, C10_CHUNKS))  # 10 KiB


async def c10_abody() -> AsyncIterator[bytes]:
    for chunk in C10_CHUNKS:
        yield chunk


def c10_body() -> Iterator[bytes]:
    yield from C10_CHUNKS


def c10_setup(run_server: Callable[[Any], str], buffer: bool) -> tuple[OAuthServer, str, Any]:
    server = OAuthServer(rotate=True, single_use=True)
    url = run_server(server.app)
    auth = hr.RefreshAuth(server.initial_credentials(revoked=True), oauth(url), buffer_body=buffer)
    return server, url, auth


def c10_check(server: OAuthServer, auth: hr.RefreshAuth, buffer: bool, outcome: Any) -> None:
    assert C10_SIZE == 10240
    assert server.token_calls == 1, "the refresh happens before giving up"
    assert auth.stats.refreshes == 1
    if buffer:
        assert outcome == (200, 1, C10_SIZE)
        assert [(h.gen, h.size) for h in server.hits] == [(0, C10_SIZE), (1, C10_SIZE)]
    else:
        assert isinstance(outcome, hr.RequestNotReplayable)
        assert [(h.gen, h.size) for h in server.hits] == [(0, C10_SIZE)], (
            "a generator body must never be replayed (it would be empty or short)"
        )


@pytest.mark.anyio
@pytest.mark.parametrize("buffer", [False, True], ids=["stream", "buffer_body"])
async def test_C10_generator_body_is_never_replayed_short_async(
    run_server: Callable[[Any], str], buffer: bool
) -> None:
    """C10 (R12), AsyncClient: POST ``content=`` an async generator of 3 chunks (10 KiB).

    The first POST is read in full and rejected. Without buffering: exactly one
    refresh, then ``RequestNotReplayable``, and the server never sees a second (empty
    or short) body. With ``buffer_body=True``: the replay carries the full 10 KiB.
    """
    server, url, auth = c10_setup(run_server, buffer)
    outcome: Any
    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            try:
                response = await client.post("/upload", content=c10_abody())
                outcome = (response.status_code, response.json()["gen"], response.json()["size"])
            except hr.RequestNotReplayable as exc:
                outcome = exc
    c10_check(server, auth, buffer, outcome)


@pytest.mark.parametrize("buffer", [False, True], ids=["stream", "buffer_body"])
def test_C10_generator_body_is_never_replayed_short_sync(
    run_server: Callable[[Any], str], buffer: bool
) -> None:
    """C10 (R12), ``httpx.Client``: the same with a sync generator (see the async test)."""
    server, url, auth = c10_setup(run_server, buffer)
    box: dict[str, Any] = {}

    def post() -> None:
        with httpx.Client(auth=auth, base_url=url, timeout=10) as client:
            try:
                response = client.post("/upload", content=c10_body())
                box["outcome"] = (
                    response.status_code,
                    response.json()["gen"],
                    response.json()["size"],
                )
            except hr.RequestNotReplayable as exc:
                box["outcome"] = exc

    run_threads([post])
    c10_check(server, auth, buffer, box["outcome"])


# -- C11 ---------------------------------------------------------------------------------

C11_SIZE = 1024 * 1024


@pytest.fixture
def upload_file(tmp_path: Any) -> tuple[str, str]:
    """A 1 MiB file on disk with varied content; returns (path, sha256)."""
    data = os.urandom(C11_SIZE)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    return str(path), hashlib.sha256(data).hexdigest()


def c11_setup(run_server: Callable[[Any], str]) -> tuple[OAuthServer, str, hr.RefreshAuth]:
    server = OAuthServer(rotate=True, single_use=True)
    url = run_server(server.app)
    return server, url, hr.RefreshAuth(server.initial_credentials(revoked=True), oauth(url))


def c11_check(server: OAuthServer, data: dict[str, Any], sha256: str) -> None:
    assert data == {"gen": 1, "size": data["size"], "file_size": C11_SIZE, "file_sha256": sha256}
    hits = server.hits
    assert [(h.gen, h.status, h.file_size) for h in hits] == [
        (0, 401, C11_SIZE),
        (1, 200, C11_SIZE),
    ]
    assert hits[0].size == hits[1].size > C11_SIZE
    assert {h.file_sha256 for h in hits} == {sha256}
    assert server.token_calls == 1


@pytest.mark.anyio
async def test_C11_multipart_file_from_disk_replays_in_full_async(
    run_server: Callable[[Any], str], upload_file: tuple[str, str]
) -> None:
    """C11 (R12), AsyncClient: a multipart upload of a 1 MiB file opened from disk is
    rejected once; the replay carries the full 1 MiB (same bytes, same hash)."""
    path, sha256 = upload_file
    server, url, auth = c11_setup(run_server)
    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:
        with anyio.fail_after(TIMEOUT), open(path, "rb") as file:  # noqa: ASYNC230
            response = await client.post("/upload", files={"upload": file})
    assert response.status_code == 200
    c11_check(server, response.json(), sha256)


def test_C11_multipart_file_from_disk_replays_in_full_sync(
    run_server: Callable[[Any], str], upload_file: tuple[str, str]
) -> None:
    """C11 (R12), ``httpx.Client`` (in a thread, bounded): same as the async test."""
    path, sha256 = upload_file
    server, url, auth = c11_setup(run_server)
    box: dict[str, httpx.Response] = {}

    def upload() -> None:
        with httpx.Client(auth=auth, base_url=url, timeout=10) as client, open(path, "rb") as f:
            box["response"] = client.post("/upload", files={"upload": f})

    run_threads([upload])
    assert box["response"].status_code == 200
    c11_check(server, box["response"].json(), sha256)


# -- C12 ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("expires_in", ["3600", "3600.0", " 3600 ", "abc"])
async def test_C12_expires_in_as_string(
    run_server: Callable[[Any], str], caplog: pytest.LogCaptureFixture, expires_in: str
) -> None:
    """C12 (R2): the token endpoint returns ``expires_in`` as a string.

    After a refresh at t0 (injected clock), requests go out at t0+10 s and t0+3,700 s;
    the API rejects tokens older than 3,600 s. Numeric strings give an expiry of
    t0+3,600 and a proactive refresh before the +3,700 s request (no 401 seen).
    ``"abc"`` logs a warning (without secrets), leaves the expiry unknown, and falls
    back to the 401: one reactive refresh and a replay. Never a crash, never "never
    expires".
    """
    clock = FakeClock()
    server = OAuthServer(expires_in=expires_in, clock=clock, api_lifetime=3600)
    url = run_server(server.app)
    auth = hr.RefreshAuth(server.initial_credentials(), oauth(url), clock=clock)
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    numeric = expires_in.strip() != "abc"
    t0 = clock()

    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            await auth.arefresh()
            assert server.token_calls == 1
            if numeric:
                assert auth.expires_at == pytest.approx(t0 + 3600)
                stored = float(auth.credentials["expires_at"])
                assert stored == pytest.approx(t0 + 3600), "absolute expiry persisted"
            else:
                assert auth.expires_at is None
            clock.advance(10)
            early = await client.get("/api")
            assert (early.status_code, early.json()["gen"]) == (200, 1)
            assert server.token_calls == 1
            clock.advance(3690)
            late = await client.get("/api")

    assert (late.status_code, late.json()["gen"]) == (200, 2)
    assert server.token_calls == 2
    assert server.presented == [0, 0]
    statuses = [(h.gen, h.status) for h in server.hits]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    if numeric:
        assert statuses == [(1, 200), (2, 200)], "the refresh before +3,700 s was proactive"
        assert auth.expires_at == pytest.approx(t0 + 3700 + 3600)
        assert warnings == []
    else:
        assert statuses == [(1, 200), (1, 401), (2, 200)], "fallback: refresh on the 401"
        assert auth.expires_at is None
        assert warnings, "an unparseable expires_in is logged"
        assert all("expires_in" in r.getMessage() for r in warnings)
    no_secret_in_logs(caplog, server)


# -- C13 ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_C13a_refresh_without_expiry_uses_token_until_401(
    run_server: Callable[[Any], str],
) -> None:
    """C13 (a) (R2, R8): the refresh response has no expiry at all.

    The initial credentials had ``expires_in`` (an old expiry); the refresh returns a
    new access token without one, so the old expiry must be dropped. Five requests
    spread over a simulated year all use the new token without another refresh and
    without error; once the API rejects it (401), one reactive refresh follows.
    """
    clock = FakeClock()
    server = OAuthServer(expires_in=None)
    url = run_server(server.app)
    auth = hr.RefreshAuth(server.initial_credentials(expires_in=3600), oauth(url), clock=clock)
    assert auth.expires_at == pytest.approx(clock() + 3600)

    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            await auth.arefresh()
            assert auth.expires_at is None
            keys = set(auth.credentials)
            assert not {"expires_in", "expires_at"} & keys, "the old expiry was dropped"
            statuses = []
            for step in (1, 3600, 7200, 86400, 365 * 86400):
                clock.advance(step)
                response = await client.get("/api")
                statuses.append((response.status_code, response.json()["gen"]))
            assert statuses == [(200, 1)] * 5
            assert server.token_calls == 1
            server.revoke_access()
            after = await client.get("/api")

    assert (after.status_code, after.json()["gen"]) == (200, 2)
    assert server.token_calls == 2
    assert [(h.gen, h.status) for h in server.hits] == [(1, 200)] * 5 + [(1, 401), (2, 200)]


@pytest.mark.anyio
async def test_C13b_no_expiry_single_use_refresh_token_no_refresh_before_first_request(
    run_server: Callable[[Any], str],
) -> None:
    """C13 (b) (R2): initial credentials with no expiry, single-use refresh tokens.

    One request goes out with the stored token and no refresh happens first (a
    needless refresh would burn the single-use refresh token).
    """
    server = OAuthServer(rotate=True, single_use=True)
    url = run_server(server.app)
    credentials = server.initial_credentials()
    keys = set(credentials)
    assert not {"expires_in", "expires_at"} & keys
    auth = hr.RefreshAuth(credentials, oauth(url))

    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            response = await client.get("/api")

    assert (response.status_code, response.json()["gen"]) == (200, 0)
    assert server.token_calls == 0
    assert [(h.gen, h.status) for h in server.hits] == [(0, 200)]
    held = server.describe(auth.credentials)
    assert (held["access_gen"], held["refresh_gen"], held["refresh_current"]) == (0, 0, True)
    assert auth.stats.refreshes == 0


# -- C16 ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("rotate", [False, True], ids=["keeps-R1", "R2-replaces-R1"])
async def test_C16_partial_refresh_response_merges_over_two_expiry_cycles(
    run_server: Callable[[Any], str], rotate: bool
) -> None:
    """C16 (R8): the refresh returns only ``{"access_token", "expires_in": 60}``.

    Over two expiry cycles (injected clock), the refresh token and every other key
    (``scope``, ``token_type``, custom fields) survive, and the second refresh presents
    R1 again. Variant: the response also carries a new refresh token, which replaces
    R1, and the second refresh presents R2 (the server rejects reuse of R1).
    """
    clock = FakeClock()
    server = OAuthServer(
        expires_in=60, token_type=None, rotate=rotate, single_use=rotate, clock=clock
    )
    url = run_server(server.app)
    extra: dict[str, Any] = {
        "scope": "read write",
        "realmId": "4620816365",
        "instance_url": "https://eu.example",
    }
    auth = hr.RefreshAuth(
        server.initial_credentials(expires_in=60, **extra), oauth(url), clock=clock
    )
    results = []

    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            for _ in range(2):
                clock.advance(100)  # past expiry (60 s, leeway clamped to 30 s)
                response = await client.get("/api")
                results.append((response.status_code, response.json()["gen"]))
                assert auth.expires_at == pytest.approx(clock() + 60)

    assert results == [(200, 1), (200, 2)]
    assert server.token_calls == 2
    assert server.presented == ([0, 1] if rotate else [0, 0])
    credentials = auth.credentials
    kept = {key: credentials.get(key) for key in [*extra, "token_type"]}
    assert kept == {**extra, "token_type": "Bearer"}
    held = server.describe(credentials)
    assert (held["refresh_gen"], held["refresh_current"]) == (2 if rotate else 0, True)
    assert [(h.gen, h.status) for h in server.hits] == [(1, 200), (2, 200)]


# -- C20 ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_C20_always_401_refreshes_once_and_does_not_loop(
    run_server: Callable[[Any], str],
) -> None:
    """C20 (R4, R11): ``/admin`` answers 401 whatever the token; refresh works.

    The first GET gets one refresh and one replay, then the 401 goes back to the
    caller. A second GET 1 s later (injected clock) is answered 401 without another
    refresh (within ``min_refresh_interval``, default 5 s).
    """
    clock = FakeClock()
    server = OAuthServer(rotate=True, single_use=True)

    async def forbidden(hit: Hit) -> int:
        return 401

    server.hooks["/admin"] = forbidden
    url = run_server(server.app)
    auth = hr.RefreshAuth(server.initial_credentials(), oauth(url), clock=clock)

    async with httpx.AsyncClient(auth=auth, base_url=url, timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            first = await client.get("/admin")
            assert first.status_code == 401
            assert server.token_calls == 1
            assert [(h.gen, h.status) for h in server.hits] == [(0, 401), (1, 401)]
            clock.advance(1)
            second = await client.get("/admin")

    assert second.status_code == 401
    assert server.token_calls == 1
    assert [(h.gen, h.status) for h in server.hits] == [(0, 401), (1, 401), (1, 401)]
    assert auth.stats.refreshes == 1
    assert auth.stats.replays == 1
