"""Trying to break JavaScript connector methods (issue 8): concurrency, cancellation and
timeouts (no orphan Node process, no lost token), misbehaving JavaScript, apiClient misuse,
bad specs, and secrets that must never show (DESIGN R5-R7, R13, R14, C22)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from jsconnectors import require_node, write_connector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import httpx_refresh as hr

SECRET = "sekret-credential-4b1c"  # a credential: must never show anywhere
PARAM_SECRET = "param-secret-9d2e"  # a connectorParameters secret: likewise
STALE = "stale-token"


# -- a server whose token endpoint and makeApiClient hook can be held -------------------------


@dataclass
class Server:
    """A token endpoint, an API wanting the latest token, and hooks to hold calls.

    ``hold_token`` / ``hold_mac``: when set, ``/oauth/token`` / ``/mac`` (called by the
    JavaScript makeApiClient for a refreshed version) set ``token_hit`` / ``mac_hit`` and
    wait (at most 20 s) until the event is set.
    """

    token_calls: int = 0
    api_calls: int = 0
    mac_calls: int = 0
    authorizations: list[str | None] = field(default_factory=list)
    token_hit: threading.Event = field(default_factory=threading.Event)
    mac_hit: threading.Event = field(default_factory=threading.Event)
    hold_token: threading.Event | None = None
    hold_mac: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(default_factory=threading.Condition)
    seen: list[tuple[str | None, dict[str, str]]] = field(default_factory=list)  # at /echo

    def wait_mac_calls(self, count: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until ``/mac`` has been called ``count`` times."""
        with self.changed:
            return self.changed.wait_for(lambda: self.mac_calls >= count, timeout)

    def wait_api_calls(self, count: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until ``/me`` has been called ``count`` times."""
        with self.changed:
            return self.changed.wait_for(lambda: self.api_calls >= count, timeout)

    @property
    def token(self) -> str:
        return f"tok-{self.token_calls}"

    async def token_endpoint(self, request: Request) -> Response:
        with self.lock:
            self.token_calls += 1
            token = self.token
        self.token_hit.set()
        if self.hold_token is not None:
            await anyio.to_thread.run_sync(self.hold_token.wait, 20.0)
        return JSONResponse({"access_token": token, "expires_in": 3600})

    async def mac(self, request: Request) -> Response:
        with self.changed:
            self.mac_calls += 1
            self.changed.notify_all()
        self.mac_hit.set()
        if self.hold_mac is not None:
            await anyio.to_thread.run_sync(self.hold_mac.wait, 20.0)
        return JSONResponse({})

    async def me(self, request: Request) -> Response:
        with self.changed:
            self.api_calls += 1
            self.authorizations.append(request.headers.get("authorization"))
            self.changed.notify_all()
        if self.token_calls == 0 or request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"ok": True})

    async def echo(self, request: Request) -> Response:
        body = await request.body()
        self.seen.append((request.headers.get("authorization"), dict(request.query_params)))
        return JSONResponse(
            {
                "method": request.method,
                "query": dict(request.query_params),
                "length": len(body),
                "authorization": request.headers.get("authorization"),
                "extra": request.headers.get("x-extra"),
            }
        )

    async def big(self, request: Request) -> Response:
        size = int(request.query_params.get("size", "0"))
        return JSONResponse({"blob": "y" * size})

    def app(self) -> Any:
        return Starlette(
            routes=[
                Route("/oauth/token", self.token_endpoint, methods=["POST"]),
                Route("/me", self.me),
                Route("/mac", self.mac),
                Route("/echo", self.echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
                Route("/big", self.big),
            ]
        )


@pytest.fixture
def server(run_server: Any) -> tuple[Server, str]:
    state = Server()
    return state, run_server(state.app())


# -- connectors -------------------------------------------------------------------------------

# Every run appends "<method> <pid>" to connectorParameters.log: the tests count runs and
# check afterwards that no Node process is left.
JS_SPEC = """
name: Hardening
auth:
  type: client-credentials
  makeApiClient:
    {client}
  refreshCredentials:
    implementationType: javascript
    filePath: auth/refresh-credentials.js
"""
MAPPING_CLIENT = """type: mapping
    mapping:
      baseUri: {$var: connectorParameters.base}
      headers:
        Authorization:
          $concat: ['Bearer ', {$var: credentials.accessToken}]"""
JS_CLIENT = "implementationType: javascript"

MAKE_API_CLIENT = """
import { appendFileSync } from 'node:fs'

export default async function makeApiClient({ credentials, connectorParameters }) {
  appendFileSync(connectorParameters.log, `makeApiClient ${process.pid}\\n`)
  const { base, holdMac, busyMs } = connectorParameters
  if (credentials.accessToken !== 'stale-token') {
    if (busyMs) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, busyMs)
    if (holdMac) await fetch(`${base}/mac`)
  }
  return { baseUri: base, headers: { Authorization: `Bearer ${credentials.accessToken}` } }
}
"""

REFRESH = """
import { appendFileSync } from 'node:fs'

export default async function refreshCredentials({ connectorParameters }) {
  appendFileSync(connectorParameters.log, `refreshCredentials ${process.pid}\\n`)
  const response = await fetch(`${connectorParameters.base}/oauth/token`, { method: 'POST' })
  const data = await response.json()
  return { accessToken: data.access_token }
}
"""


@dataclass
class Runs:
    """The Node runs of a connector, from the log its methods append to."""

    log: Path

    def of(self, method: str) -> int:
        return sum(1 for line in self.lines() if line.split()[0] == method)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def pids(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines()]

    def assert_all_gone(self) -> None:
        """Every Node process that ran a method has exited (and was reaped)."""
        for pid in self.pids():
            assert not _alive(pid), f"node process {pid} is still running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie counts as gone only if it is not ours to reap; ours are reaped by the library.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def js_connector(
    tmp_path: Path,
    *,
    client: str = MAPPING_CLIENT,
    refresh: str = REFRESH,
    files: dict[str, str] | None = None,
    name: str = "c",
) -> tuple[Path, Runs]:
    require_node()
    root = tmp_path / name
    root.mkdir(parents=True)
    (root / "spec.yml").write_text(JS_SPEC.format(client=client).lstrip())
    (root / "auth").mkdir()
    (root / "auth" / "refresh-credentials.js").write_text(refresh)
    if client == JS_CLIENT:
        (root / "auth" / "make-api-client.js").write_text(MAKE_API_CLIENT)
    for relative, text in (files or {}).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root, Runs(tmp_path / f"{name}-runs.log")


def parameters(base: str, runs: Runs, **more: Any) -> dict[str, Any]:
    return {"base": base, "log": str(runs.log), "clientSecret": PARAM_SECRET, **more}


class Heartbeat:
    """The longest time the event loop did not run a 5 ms ticker (R6: never blocked)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = anyio.Event()

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Tick until stopped; start it with ``await group.start(heartbeat.run)``."""
        last = time.monotonic()
        task_status.started()
        while not self._stop.is_set():
            with anyio.move_on_after(0.005):
                await self._stop.wait()
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now

    def stop(self) -> None:
        self._stop.set()


# -- R6: a javascript makeApiClient never runs inside the event loop --------------------------


@pytest.mark.integration
@pytest.mark.anyio
async def test_R6_R5_adopted_credentials_do_not_run_make_api_client_in_the_event_loop(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """Two connections share a FileStore (DESIGN R5, R6): A refreshes through the
    JavaScript refreshCredentials; B's 401 then adopts A's stored credentials without a
    refresh. B's JavaScript makeApiClient for the adopted version (here 1.2 s of work)
    must not run synchronously inside B's event loop: a 5 ms ticker keeps ticking, and
    exactly one token call and one refresh Node run happen between them."""
    state, base = server
    root, runs = js_connector(tmp_path, client=JS_CLIENT)
    store = hr.FileStore(tmp_path / "store.json")
    store.save({"accessToken": STALE}, expected_version=None)
    connector = hr.load_connector(root)
    params = parameters(base, runs, busyMs=1200)
    a = connector.connect(connector_parameters=params, credentials=store)
    b = connector.connect(connector_parameters=params, credentials=store)
    assert runs.of("makeApiClient") == 2  # one per connection, at connect()
    with anyio.fail_after(30):
        control = Heartbeat()  # A's own refresh runs makeApiClient inside the flight
        async with a.async_client() as client, anyio.create_task_group() as group:
            await group.start(control.run)
            assert (await client.get("/me")).status_code == 200
            control.stop()
        assert control.longest < 0.5, "the event loop was blocked in A's refresh"
        assert (state.token_calls, runs.of("refreshCredentials")) == (1, 1)
        heartbeat = Heartbeat()
        async with b.async_client() as client, anyio.create_task_group() as group:
            await group.start(heartbeat.run)
            response = await client.get("/me")
            heartbeat.stop()
    assert response.status_code == 200
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 1)
    assert b.credentials["accessToken"] == "tok-1"
    assert runs.of("makeApiClient") == 4  # + A's new version, + B's adopted version
    assert heartbeat.longest < 0.5, f"the event loop was blocked for {heartbeat.longest:.2f} s"
    runs.assert_all_gone()


@pytest.mark.integration
@pytest.mark.anyio
async def test_R6_update_credentials_then_async_request_does_not_block_the_loop(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """``update_credentials`` makes a new version without a refresh; the first async
    request with it needs the JavaScript makeApiClient settings. Running them (1.2 s of
    work) must not block the event loop (DESIGN R6): a 5 ms ticker keeps ticking. One
    makeApiClient run for the new version, none per request."""
    state, base = server
    root, runs = js_connector(tmp_path, client=JS_CLIENT)
    connection = hr.load_connector(root).connect(
        connector_parameters=parameters(base, runs, busyMs=1200),
        credentials={"accessToken": STALE},
    )
    state.token_calls = 5  # the API accepts tok-5
    connection.auth.update_credentials({"accessToken": "tok-5"})
    heartbeat = Heartbeat()
    with anyio.fail_after(30):
        async with connection.async_client() as client, anyio.create_task_group() as group:
            await group.start(heartbeat.run)
            statuses = [(await client.get("/me")).status_code for _ in range(3)]
            heartbeat.stop()
    assert statuses == [200, 200, 200]
    assert runs.of("makeApiClient") == 2  # connect(), then once for the new version
    assert heartbeat.longest < 0.5, f"the event loop was blocked for {heartbeat.longest:.2f} s"
    runs.assert_all_gone()


def _release_after_second_mac_call(state: Server) -> threading.Thread:
    """Release ``/mac`` once it is called a second time, or after at most 2 s (a second
    makeApiClient run reaches it within about 0.1 s)."""
    assert state.hold_mac is not None
    hold = state.hold_mac

    def release() -> None:
        state.wait_mac_calls(2, 2.0)
        hold.set()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


@pytest.mark.integration
@pytest.mark.anyio
async def test_R14_sync_request_during_async_flight_makes_no_second_make_api_client_run(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """An async request's flight refreshes (JavaScript refreshCredentials) and runs the
    JavaScript makeApiClient for the new version; while that run is in progress, a sync
    request from a thread on the same connection must not start a second makeApiClient
    Node run for the same version (README: once per credentials version; DESIGN R14:
    both flavours share one auth object and get one refresh per version)."""
    state, base = server
    state.hold_mac = threading.Event()
    root, runs = js_connector(tmp_path, client=JS_CLIENT)
    connection = hr.load_connector(root).connect(
        connector_parameters=parameters(base, runs, holdMac=True),
        credentials={"accessToken": STALE},
    )
    statuses: list[int] = []

    def sync_request() -> None:
        with connection.client() as client:
            statuses.append(client.get("/me").status_code)

    releaser = _release_after_second_mac_call(state)
    thread = threading.Thread(target=sync_request)
    with anyio.fail_after(30):
        async with connection.async_client() as client, anyio.create_task_group() as group:

            async def async_request() -> None:
                statuses.append((await client.get("/me")).status_code)

            group.start_soon(async_request)
            # The flight's makeApiClient for tok-1 is running (held in its fetch).
            assert await anyio.to_thread.run_sync(state.mac_hit.wait, 20.0)
            thread.start()
        await anyio.to_thread.run_sync(thread.join, 20.0)
    releaser.join(10)
    assert statuses == [200, 200]
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 1)
    assert state.mac_calls == 1, "makeApiClient ran twice for the same credentials version"
    assert runs.of("makeApiClient") == 2  # connect(), then once for tok-1
    runs.assert_all_gone()


@pytest.mark.integration
@pytest.mark.anyio
async def test_R6_R14_async_request_during_async_flight_neither_blocks_nor_reruns(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """The same with two async tasks: while the flight's makeApiClient for the new version
    runs, a second task's request takes the new (published) version. It must neither
    block the event loop (R6) nor start a second makeApiClient Node run for that version."""
    state, base = server
    state.hold_mac = threading.Event()
    root, runs = js_connector(tmp_path, client=JS_CLIENT)
    connection = hr.load_connector(root).connect(
        connector_parameters=parameters(base, runs, holdMac=True),
        credentials={"accessToken": STALE},
    )
    statuses: list[int] = []
    heartbeat = Heartbeat()
    releaser = _release_after_second_mac_call(state)
    with anyio.fail_after(30):
        async with connection.async_client() as client, anyio.create_task_group() as group:

            async def request() -> None:
                statuses.append((await client.get("/me")).status_code)

            group.start_soon(request)
            assert await anyio.to_thread.run_sync(state.mac_hit.wait, 20.0)
            await group.start(heartbeat.run)
            await request()
            heartbeat.stop()
    releaser.join(10)
    assert statuses == [200, 200]
    assert state.token_calls == 1
    assert state.mac_calls == 1, "makeApiClient ran twice for the same credentials version"
    assert heartbeat.longest < 0.5, f"the event loop was blocked for {heartbeat.longest:.2f} s"
    runs.assert_all_gone()


# -- R5, R14: one Node run per version under real contention ----------------------------------


@pytest.mark.integration
@pytest.mark.anyio
@pytest.mark.parametrize("client_kind", ["mapping", "javascript"])
async def test_R5_100_concurrent_async_requests_one_javascript_refresh(
    server: tuple[Server, str], tmp_path: Path, client_kind: str
) -> None:
    """100 concurrent async requests rejected with 401 (DESIGN R5): exactly one
    refreshCredentials Node run and one token call; with a JavaScript makeApiClient,
    exactly one more makeApiClient run (the new version), none per request."""
    state, base = server
    root, runs = js_connector(
        tmp_path, client=JS_CLIENT if client_kind == "javascript" else MAPPING_CLIENT
    )
    connection = hr.load_connector(root).connect(
        connector_parameters=parameters(base, runs), credentials={"accessToken": STALE}
    )
    statuses: list[int] = []
    with anyio.fail_after(60):
        async with connection.async_client() as client:

            async def one() -> None:
                statuses.append((await client.get("/me")).status_code)

            async with anyio.create_task_group() as group:
                for _ in range(100):
                    group.start_soon(one)
    assert statuses == [200] * 100
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 1)
    assert connection.auth.stats.refreshes == 1
    assert runs.of("makeApiClient") == (2 if client_kind == "javascript" else 0)
    runs.assert_all_gone()


@pytest.mark.integration
@pytest.mark.anyio
@pytest.mark.parametrize("client_kind", ["mapping", "javascript"])
async def test_R14_sync_threads_and_async_tasks_at_once_one_refresh(
    server: tuple[Server, str], tmp_path: Path, client_kind: str
) -> None:
    """20 sync threads and 40 async tasks share one connection and are all rejected at
    once (the token endpoint is held until every one of them has been answered 401):
    exactly one JavaScript refresh Node run and one token call for all of them (DESIGN
    R14); with a JavaScript makeApiClient, one run for the new version."""
    state, base = server
    state.hold_token = threading.Event()
    root, runs = js_connector(
        tmp_path, client=JS_CLIENT if client_kind == "javascript" else MAPPING_CLIENT
    )
    connection = hr.load_connector(root).connect(
        connector_parameters=parameters(base, runs), credentials={"accessToken": STALE}
    )
    threads_n, tasks_n = 20, 40
    statuses: list[int] = []
    barrier = threading.Barrier(threads_n + 1)
    sync_client = connection.client()

    def sync_one() -> None:
        barrier.wait(timeout=20)
        statuses.append(sync_client.get("/me").status_code)

    threads = [threading.Thread(target=sync_one) for _ in range(threads_n)]

    def release_when_all_rejected() -> None:
        state.wait_api_calls(threads_n + tasks_n, 20.0)
        state.hold_token.set()  # type: ignore[union-attr]

    with anyio.fail_after(60):
        async with connection.async_client() as client:

            async def async_one() -> None:
                statuses.append((await client.get("/me")).status_code)

            for thread in threads:
                thread.start()
            releaser = threading.Thread(target=release_when_all_rejected)
            releaser.start()
            async with anyio.create_task_group() as group:
                await anyio.to_thread.run_sync(barrier.wait, 20)
                for _ in range(tasks_n):
                    group.start_soon(async_one)
            for thread in threads:
                await anyio.to_thread.run_sync(thread.join, 30)
            await anyio.to_thread.run_sync(releaser.join, 30)
    sync_client.close()
    assert statuses == [200] * (threads_n + tasks_n)
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 1)
    assert runs.of("makeApiClient") == (2 if client_kind == "javascript" else 0)
    runs.assert_all_gone()


# -- R7: cancellation and timeouts leave no Node process and lose no token --------------------


@pytest.mark.integration
@pytest.mark.anyio
async def test_R7_all_callers_cancelled_during_make_api_client(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """Ten requests wait on a flight whose JavaScript makeApiClient (for the refreshed
    version) is running; all ten are cancelled (DESIGN R7). The flight finishes anyway:
    the refreshed token is kept, makeApiClient ran once for it, no Node process is left,
    and the next request uses the token without a refresh or another Node run."""
    state, base = server
    state.hold_mac = threading.Event()
    done = threading.Event()
    root, runs = js_connector(tmp_path, client=JS_CLIENT)
    connection = hr.load_connector(root).connect(
        connector_parameters=parameters(base, runs, holdMac=True),
        credentials={"accessToken": STALE},
        on_refresh=lambda credentials: done.set(),
    )
    with anyio.fail_after(30):
        async with connection.async_client() as client:
            scopes = [anyio.CancelScope() for _ in range(10)]
            async with anyio.create_task_group() as group:

                async def request(scope: anyio.CancelScope) -> None:
                    with scope:
                        await client.get("/me")

                for scope in scopes:
                    group.start_soon(request, scope)
                assert await anyio.to_thread.run_sync(state.mac_hit.wait, 20.0)
                for scope in scopes:
                    scope.cancel()
                state.hold_mac.set()
            assert all(scope.cancelled_caught for scope in scopes)
            assert await anyio.to_thread.run_sync(done.wait, 20.0)
            assert (await client.get("/me")).status_code == 200
    assert connection.credentials["accessToken"] == "tok-1"
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 1)
    assert (state.mac_calls, runs.of("makeApiClient")) == (1, 2)
    runs.assert_all_gone()


@pytest.mark.integration
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_R7_asyncio_task_cancel_of_the_owner_keeps_the_rotated_token(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """asyncio's own ``task.cancel()`` on the request that owns the flight, while the
    JavaScript refresh waits for the token endpoint (DESIGN R7): the Node run completes
    (the token is kept), a second waiting request is answered 200, no process is left."""
    import asyncio

    state, base = server
    state.hold_token = threading.Event()
    root, runs = js_connector(tmp_path)
    connection = hr.load_connector(root).connect(
        connector_parameters=parameters(base, runs), credentials={"accessToken": STALE}
    )
    async with connection.async_client() as client:
        owner = asyncio.ensure_future(client.get("/me"))
        assert await anyio.to_thread.run_sync(state.token_hit.wait, 20.0)
        waiter = asyncio.ensure_future(client.get("/me"))
        assert await anyio.to_thread.run_sync(state.wait_api_calls, 2, 20.0)
        owner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await owner
        state.hold_token.set()
        response = await asyncio.wait_for(waiter, 20)
    assert response.status_code == 200
    assert connection.credentials["accessToken"] == "tok-1"
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 1)
    runs.assert_all_gone()


HANGING_REFRESH = """
import { appendFileSync, existsSync } from 'node:fs'

export default async function refreshCredentials({ connectorParameters }) {
  appendFileSync(connectorParameters.log, `refreshCredentials ${process.pid}\\n`)
  if (existsSync(connectorParameters.hang)) {
    setInterval(() => {}, 1000)
    await new Promise(() => {})
  }
  const response = await fetch(`${connectorParameters.base}/oauth/token`, { method: 'POST' })
  return { accessToken: (await response.json()).access_token }
}
"""


@pytest.mark.integration
@pytest.mark.anyio
async def test_R7_refresh_timeout_shorter_than_node_timeout_leaves_node_to_its_own_timeout(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """A JavaScript refresh that never returns, with ``refresh_timeout`` (1 s) shorter
    than ``node_timeout`` (3 s): the callers get a RefreshError after about 1 s, but the
    Node process is not killed then (it may already hold a rotated refresh token: R7); it
    is killed and reaped at ``node_timeout``. Once the method behaves, the next request
    refreshes and succeeds (nothing is poisoned)."""
    state, base = server
    hang = tmp_path / "hang"
    hang.write_text("")
    root, runs = js_connector(tmp_path, refresh=HANGING_REFRESH)
    connection = hr.load_connector(root, node_timeout=3).connect(
        connector_parameters=parameters(base, runs, hang=str(hang)),
        credentials={"accessToken": STALE},
        refresh_timeout=1.0,
        retry=hr.RetryPolicy(attempts=1, cooldown=0),
    )
    started = time.monotonic()
    errors: list[BaseException] = []
    with anyio.fail_after(30):
        async with connection.async_client() as client:

            async def one() -> None:
                try:
                    await client.get("/me")
                except hr.RefreshError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(one)
            failed_after = time.monotonic() - started
            assert failed_after < 2.5  # refresh_timeout, not node_timeout
            assert len(errors) == 5
            assert runs.of("refreshCredentials") == 1
            assert any(_alive(pid) for pid in runs.pids())  # left to its own timeout
            while any(_alive(pid) for pid in runs.pids()):  # killed at node_timeout
                assert time.monotonic() - started < 15, "node outlived node_timeout"
                await anyio.sleep(0.05)
            runs.assert_all_gone()
            hang.unlink()
            assert (await client.get("/me")).status_code == 200
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 2)
    assert connection.credentials["accessToken"] == "tok-1"
    runs.assert_all_gone()


@pytest.mark.integration
def test_R7_sync_client_refresh_timeout_leaves_node_to_its_own_timeout(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """The same from a sync client (the JavaScript refresh runs on a private loop): a
    RefreshError after ``refresh_timeout``, the Node process left to ``node_timeout`` (not
    killed at ``refresh_timeout``: R7), then gone; the next call works."""
    state, base = server
    hang = tmp_path / "hang"
    hang.write_text("")
    root, runs = js_connector(tmp_path, refresh=HANGING_REFRESH)
    connection = hr.load_connector(root, node_timeout=3).connect(
        connector_parameters=parameters(base, runs, hang=str(hang)),
        credentials={"accessToken": STALE},
        refresh_timeout=1.0,
        retry=hr.RetryPolicy(attempts=1, cooldown=0),
    )
    started = time.monotonic()
    with connection.client() as client:
        with pytest.raises(hr.RefreshError):
            client.get("/me")
        assert time.monotonic() - started < 2.5  # refresh_timeout, not node_timeout
        assert any(_alive(pid) for pid in runs.pids())  # left to its own timeout
        while any(_alive(pid) for pid in runs.pids()):  # killed at node_timeout
            assert time.monotonic() - started < 15, "node outlived node_timeout"
            time.sleep(0.05)
        runs.assert_all_gone()
        hang.unlink()
        assert client.get("/me").status_code == 200
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 2)
    runs.assert_all_gone()


@pytest.mark.integration
def test_R5_two_connections_sharing_a_file_store_refresh_once_from_threads(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """Two connections (JavaScript refreshCredentials and makeApiClient) share a
    FileStore; 10 threads on each are rejected at once (the token endpoint is held until
    all 20 have been answered 401). Between them: exactly one token call and one
    refreshCredentials Node run; the other connection adopts (DESIGN R5), and
    makeApiClient runs once per connection and version (4 in all)."""
    state, base = server
    state.hold_token = threading.Event()
    root, runs = js_connector(tmp_path, client=JS_CLIENT)
    store = hr.FileStore(tmp_path / "store.json")
    store.save({"accessToken": STALE}, expected_version=None)
    connector = hr.load_connector(root)
    connections = [
        connector.connect(connector_parameters=parameters(base, runs), credentials=store)
        for _ in range(2)
    ]
    clients = [connection.client() for connection in connections]
    statuses: list[int] = []
    barrier = threading.Barrier(20)

    def one(client: httpx.Client) -> None:
        barrier.wait(timeout=20)
        statuses.append(client.get("/me").status_code)

    threads = [threading.Thread(target=one, args=(clients[i % 2],)) for i in range(20)]
    for thread in threads:
        thread.start()
    assert state.wait_api_calls(20, 20.0)
    state.hold_token.set()
    for thread in threads:
        thread.join(30)
    for client in clients:
        client.close()
    assert not any(thread.is_alive() for thread in threads)
    assert statuses == [200] * 20
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 1)
    assert [c.credentials["accessToken"] for c in connections] == ["tok-1", "tok-1"]
    assert runs.of("makeApiClient") == 4
    runs.assert_all_gone()


# -- misbehaving JavaScript --------------------------------------------------------------------

START = {"accessToken": SECRET, "keep": "me"}


def misbehaving(
    tmp_path: Path,
    body: str,
    *,
    imports: str = "",
    base: str = "https://api.invalid",
    files: dict[str, str] | None = None,
    **load: Any,
) -> tuple[hr.Connection, Runs, str]:
    """A connection whose JavaScript refreshCredentials logs its pid, then runs ``body``."""
    source = (
        "import { appendFileSync } from 'node:fs'\n"
        + imports
        + "\nexport default async function refreshCredentials(args) {\n"
        + "  const { credentials, connectorParameters } = args\n"
        + "  appendFileSync(connectorParameters.log, `refreshCredentials ${process.pid}\\n`)\n"
        + body
        + "\n}\n"
    )
    root, runs = js_connector(tmp_path, refresh=source, files=files)
    connection = hr.load_connector(root, **load).connect(
        connector_parameters=parameters(base, runs), credentials=dict(START)
    )
    return connection, runs, f"{root}/auth/refresh-credentials.js"


def test_megabytes_of_output_are_discarded_without_deadlock(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """5 MiB each through console.log, process.stdout.write, process.stderr.write and
    console.error (with the credential in it): no deadlock, the result arrives, and none
    of it reaches the test's stdout or stderr (README: what the connector prints is
    discarded)."""
    connection, runs, _ = misbehaving(
        tmp_path,
        """
  const chunk = `${credentials.accessToken} `.repeat(1 << 16)
  for (let i = 0; i < 4; i++) {
    console.log(chunk); process.stdout.write(chunk); process.stderr.write(chunk)
    console.error(chunk)
  }
  return { printed: true }
""",
    )
    assert connection.auth.refresh()["printed"] is True
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err
    runs.assert_all_gone()


@pytest.mark.parametrize(
    ("imports", "body"),
    [
        pytest.param(
            "import { writeSync } from 'node:fs'",
            "  writeSync(1, 'progress: 50%\\n')\n  return { a: 1 }",
            id="fs.writeSync(1)",
        ),
        pytest.param(
            "import { spawnSync } from 'node:child_process'",
            "  spawnSync('sh', ['-c', 'echo hello'], { stdio: 'inherit' })\n  return { a: 1 }",
            id="child-stdio-inherit",
        ),
        pytest.param(
            "import { writeSync } from 'node:fs'",
            "  writeSync(1, JSON.stringify({ t: 'result', value: { forged: 1 } }) + '\\n')\n"
            "  return { a: 1 }",
            id="forged-protocol-line",
        ),
    ],
)
def test_output_on_the_real_stdout_does_not_break_the_protocol(
    tmp_path: Path, imports: str, body: str
) -> None:
    """Output that bypasses ``process.stdout`` and reaches file descriptor 1 (a direct
    ``fs.writeSync(1, ...)``, a child process with inherited stdio) is output like any
    other (README: what the connector prints is discarded): the method's return value is
    the result, never a SpecError about the protocol, and never a line the method
    forged."""
    connection, runs, _ = misbehaving(tmp_path, body, imports=imports)
    refreshed = connection.auth.refresh()
    assert sorted(refreshed) == ["a", "accessToken", "keep"]  # no "forged"
    assert refreshed["a"] == 1
    runs.assert_all_gone()


@pytest.mark.parametrize("ending", ["returns", "times-out"])
def test_child_process_does_not_outlive_the_call(tmp_path: Path, ending: str) -> None:
    """A child process the method starts (not detached) and leaves running is stopped with
    Node when the call ends, whether the method returns or is killed at ``node_timeout``
    (no process leaked by a JavaScript call)."""
    child_file = tmp_path / "child-pid"
    hang = "  await new Promise(() => {})\n" if ending == "times-out" else ""
    connection, runs, _ = misbehaving(
        tmp_path,
        f"""
  const child = spawn('sleep', ['60'], {{ stdio: 'ignore' }})
  writeFileSync({str(child_file)!r}, String(child.pid))
{hang}  return {{ a: 1 }}
""",
        imports="import { spawn } from 'node:child_process'\n"
        "import { writeFileSync } from 'node:fs'",
        node_timeout=2,
    )
    try:
        if ending == "returns":
            assert connection.auth.refresh()["a"] == 1
        else:
            with pytest.raises(hr.SpecError, match="did not finish within 2 s"):
                connection.auth.refresh()
        runs.assert_all_gone()
        child = int(child_file.read_text())
        assert not _alive(child), "the method's child process outlived the Node.js call"
    finally:
        if child_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child_file.read_text()), 9)


def test_method_reading_stdin_itself_fails_fast(tmp_path: Path) -> None:
    """A method that reads stdin itself (``readFileSync(0)``) gets an error, not the
    protocol: a RefreshError well before ``node_timeout``, and no process left."""
    connection, runs, file = misbehaving(
        tmp_path,
        "  readFileSync(0)\n  return { a: 1 }",
        imports="import { readFileSync } from 'node:fs'",
        node_timeout=10,
    )
    started = time.monotonic()
    with pytest.raises((hr.RefreshError, hr.SpecError)) as caught:
        connection.auth.refresh()
    assert time.monotonic() - started < 8
    assert str(caught.value).startswith(f"refreshCredentials in {file}")
    assert SECRET not in str(caught.value)
    assert dict(connection.credentials) == START
    runs.assert_all_gone()


def test_exit_code_set_then_normal_return(tmp_path: Path) -> None:
    """``process.exitCode = 1`` and then a normal return: the result counts."""
    connection, runs, _ = misbehaving(tmp_path, "  process.exitCode = 1\n  return { a: 1 }")
    assert connection.auth.refresh() == {**START, "a": 1}
    runs.assert_all_gone()


def test_infinite_synchronous_loop_is_killed_at_node_timeout(tmp_path: Path) -> None:
    """``while (true) {}`` (the event loop never turns): killed at ``node_timeout``, a
    SpecError that says so, the credentials as they were, no process left."""
    connection, runs, file = misbehaving(tmp_path, "  while (true) {}", node_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(hr.SpecError) as caught:
        connection.auth.refresh()
    assert time.monotonic() - started < 10
    assert str(caught.value) == (
        f"{file}: refreshCredentials did not finish within 1.5 s; Node.js was stopped"
    )
    assert dict(connection.credentials) == START
    assert runs.of("refreshCredentials") == 1
    runs.assert_all_gone()


def test_unhandled_rejection_after_returning_keeps_the_result(tmp_path: Path) -> None:
    """A promise rejected (with the credential as its message) after the method returned
    does not replace the result."""
    connection, runs, _ = misbehaving(
        tmp_path,
        "  setTimeout(() => Promise.reject(new Error(credentials.accessToken)), 0)\n"
        "  return { a: 1 }",
    )
    assert connection.auth.refresh() == {**START, "a": 1}
    runs.assert_all_gone()


def test_unhandled_rejection_before_returning_is_a_refresh_error(tmp_path: Path) -> None:
    """A promise rejected and never handled while the method still runs: a RefreshError
    naming the file and the type, without the message (the credential)."""
    connection, runs, file = misbehaving(
        tmp_path,
        "  Promise.reject(new TypeError(credentials.accessToken))\n"
        "  await new Promise((resolve) => setTimeout(resolve, 100))\n"
        "  return { a: 1 }",
    )
    with pytest.raises(hr.RefreshError) as caught:
        connection.auth.refresh()
    assert str(caught.value) == f"refreshCredentials in {file} threw TypeError"
    assert dict(connection.credentials) == START
    runs.assert_all_gone()


HELPERS = {
    "auth/helper.mjs": "export const suffix = '-esm'\n",
    "auth/helper.cjs": "module.exports = { suffix: '-cjs' }\n",
    "lib/shared.mjs": "export const suffix = '-inline-esm'\n",
    "lib/shared.cjs": "module.exports = { suffix: '-inline-cjs' }\n",
}
MODULE_SHAPES = {
    "esm-js-file": (
        "filePath: auth/refresh-credentials.js",
        "auth/refresh-credentials.js",
        "import { suffix } from './helper.mjs'\n"
        "export default async () => ({ shape: 'js' + suffix })\n",
        "js-esm",
    ),
    "cjs-js-file": (
        "filePath: auth/refresh-credentials.js",
        "auth/refresh-credentials.js",
        "const { suffix } = require('./helper.cjs')\n"
        "module.exports = async () => ({ shape: 'js' + suffix })\n",
        "js-cjs",
    ),
    "esm-file-top-level-await": (
        "filePath: auth/refresh-credentials.mjs",
        "auth/refresh-credentials.mjs",
        "import { suffix } from './helper.mjs'\n"
        "const prefix = await Promise.resolve('tla')\n"
        "export default async () => ({ shape: prefix + suffix })\n",
        "tla-esm",
    ),
    "cjs-file": (
        "filePath: auth/refresh-credentials.cjs",
        "auth/refresh-credentials.cjs",
        "const { suffix } = require('./helper.cjs')\n"
        "module.exports = async () => ({ shape: 'cjs' + suffix })\n",
        "cjs-cjs",
    ),
    "inline-esm-top-level-await": (
        "type: javascript\n    code: |\n"
        "      import { suffix } from './lib/shared.mjs'\n"
        "      const prefix = await Promise.resolve('tla')\n"
        "      export default async () => ({ shape: prefix + suffix })\n",
        None,
        None,
        "tla-inline-esm",
    ),
    "inline-cjs": (
        "type: javascript\n    code: |\n"
        "      const { suffix } = require('./lib/shared.cjs')\n"
        "      module.exports = async () => ({ shape: 'cjs' + suffix })\n",
        None,
        None,
        "cjs-inline-cjs",
    ),
}


# A CommonJS .js file under "type": "module" is an ES module to Node.js itself (not a case).
SHAPE_CASES = [
    (shape, package_type)
    for shape in sorted(MODULE_SHAPES)
    for package_type in (None, "module", "commonjs")
    if not (shape == "cjs-js-file" and package_type == "module")
]


@pytest.mark.parametrize(("shape", "package_type"), SHAPE_CASES)
def test_relative_imports_top_level_await_and_package_type(
    tmp_path: Path, shape: str, package_type: str | None
) -> None:
    """Methods that import a sibling file (relative to the method's file; for inline
    code, to the connector folder), ES modules with top-level await, and CommonJS, with
    no package.json, ``"type": "module"`` or ``"type": "commonjs"`` (what ``npm init``
    writes) in the connector: README, "ES modules and CommonJS both load"."""
    require_node()
    stub, path, source, expected = MODULE_SHAPES[shape]
    spec = (
        "name: Shapes\nauth:\n  type: client-credentials\n  makeApiClient:\n"
        "    type: mapping\n    mapping:\n      baseUri: https://api.invalid\n"
        f"  refreshCredentials:\n    {'implementationType: javascript' if path else ''}"
        f"\n    {stub}\n"
    )
    files = dict(HELPERS)
    if path is not None and source is not None:
        files[path] = source
    if package_type is not None:
        files["package.json"] = json.dumps({"name": "shapes", "type": package_type})
    root = write_connector(tmp_path / "c", spec, files)
    connection = hr.load_connector(root).connect(credentials={"accessToken": "x"})
    assert connection.auth.refresh()["shape"] == expected


def test_unicode_credentials_and_results_round_trip(tmp_path: Path) -> None:
    """Non-ASCII credentials reach JavaScript intact, and a result with accents, emoji,
    U+2028/U+2029 (line separators to some readers) and escapes comes back intact."""
    connection, runs, _ = misbehaving(
        tmp_path,
        "  return { echo: credentials.name, made: 'tök-😀\\u2028\\u2029\\r\\n\\u0022\\\\', "
        "length: [...credentials.name].length }",
    )
    connection.auth.update_credentials({**START, "name": "Zoë 😀 中文 \u2028"})
    refreshed = connection.auth.refresh()
    assert refreshed["echo"] == "Zoë 😀 中文 \u2028"
    assert refreshed["made"] == 'tök-😀\u2028\u2029\r\n"\\'
    assert refreshed["length"] == len("Zoë 😀 中文 \u2028")
    runs.assert_all_gone()


def test_proto_keys_round_trip_without_prototype_pollution(tmp_path: Path) -> None:
    """A result with a ``__proto__`` key (from JSON.parse) is plain data: merged as a key,
    given back to the next JavaScript call as its own property, never polluting
    ``Object.prototype`` there."""
    connection, runs, _ = misbehaving(
        tmp_path,
        """
  if (Object.prototype.hasOwnProperty.call(credentials, '__proto__')) {
    return { polluted: String(({}).polluted), own: credentials.__proto__.polluted }
  }
  return JSON.parse('{"__proto__": {"polluted": "yes"}, "accessToken": "a"}')
""",
    )
    first = connection.auth.refresh()
    assert first["__proto__"] == {"polluted": "yes"}
    second = connection.auth.refresh()
    assert (second["polluted"], second["own"]) == ("undefined", "yes")
    runs.assert_all_gone()


RETURNED = {
    "null": "null or undefined",
    "undefined": "null or undefined",
    "[]": "an array",
    "42": "a number",
}


@pytest.mark.parametrize("value", sorted(RETURNED))
def test_result_that_is_not_an_object_merges_nothing(tmp_path: Path, value: str) -> None:
    """A refresh resolving to null, undefined, an array or a number is a SpecError naming
    the file and what it returned in JavaScript terms; nothing is merged."""
    connection, runs, file = misbehaving(tmp_path, f"  return {value}")
    with pytest.raises(hr.SpecError) as caught:
        connection.auth.refresh()
    assert str(caught.value) == (
        f"{file}: refreshCredentials returned {RETURNED[value]}, expected an object (its keys "
        "are merged into the credentials)"
    )
    assert dict(connection.credentials) == START
    runs.assert_all_gone()


def test_result_over_16_mib_is_a_spec_error_and_node_is_stopped(tmp_path: Path) -> None:
    """A 20 MB result is a SpecError (more than 16 MiB at once), in bounded time, with the
    Node process (blocked writing it) stopped; 10 MB comes through."""
    big, runs, file = misbehaving(tmp_path, "  return { blob: 'x'.repeat(20 * 1024 * 1024) }")
    started = time.monotonic()
    with pytest.raises(hr.SpecError) as caught:
        big.auth.refresh()
    assert str(caught.value) == f"{file}: refreshCredentials sent more than 16 MiB at once"
    assert time.monotonic() - started < 15
    runs.assert_all_gone()
    fits, runs, _ = misbehaving(
        tmp_path / "fits", "  return { blob: 'x'.repeat(10 * 1024 * 1024) }"
    )
    assert len(fits.auth.refresh()["blob"]) == 10 * 1024 * 1024
    runs.assert_all_gone()


# -- C22: no secret in any message, repr, log line or output ----------------------------------


def _assert_no_secret(*texts: str) -> None:
    """No text holds a secret (which texts do is reported by position, never shown)."""
    __tracebackhide__ = True  # the arguments (the texts) must not show in a failure report
    leaking = [i for i, text in enumerate(texts) if SECRET in text or PARAM_SECRET in text]
    assert not leaking, f"a secret shows in the texts at positions {leaking}"


THROWS = {
    "message": "  throw new Error(`bad ${credentials.accessToken}`)",
    "code": "  throw Object.assign(new Error('no'), { code: credentials.accessToken })",
    "name": "  const e = new Error('no'); e.name = credentials.accessToken; throw e",
    "status": (
        "  throw { status: credentials.accessToken, statusCode: connectorParameters.clientSecret }"
    ),
    "parameter-code": (
        "  throw Object.assign(new Error('no'), { code: connectorParameters.clientSecret })"
    ),
    # `throw await response.json()`: a parsed body whose "constructor" is data
    "parsed-body": (
        "  throw JSON.parse(JSON.stringify({ constructor: { name: credentials.accessToken } }))"
    ),
    "unhandled-rejection": (
        "  Promise.reject({ code: credentials.accessToken })\n"
        "  await new Promise((resolve) => setTimeout(resolve, 100))\n  return {}"
    ),
}


@pytest.mark.parametrize("how", sorted(THROWS))
def test_C22_thrown_values_never_show_a_secret(
    tmp_path: Path,
    how: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Whatever the method throws, however a credential or a connectorParameters secret
    sits in it (message, ``code``, ``name``, ``status``, a parsed body's fields, an
    unhandled rejection), the RefreshError (its str, repr and context), the log at DEBUG
    and the test's output never contain the secret (CASES C22); nothing is merged."""
    caplog.set_level(logging.DEBUG)
    connection, runs, file = misbehaving(tmp_path, THROWS[how])
    with pytest.raises(hr.RefreshError) as caught:
        connection.auth.refresh()
    error = caught.value
    assert str(error).startswith(f"refreshCredentials in {file}")
    captured = capfd.readouterr()
    _assert_no_secret(
        str(error),
        repr(error),
        repr(error.__context__),
        repr(error.__cause__),
        caplog.text,
        captured.out,
        captured.err,
        repr(connection),
    )
    assert dict(connection.credentials) == START
    runs.assert_all_gone()


@pytest.mark.parametrize(
    ("credential", "body"),
    [
        ("ESEKRETTOKENX", "  throw Object.assign(new Error('no'), { code: credentials.token })"),
        (
            "sekret_lower_token",
            "  throw { response: { status: 400, data: { error: credentials.token } } }",
        ),
        (
            "ERR_SEKRET_TOKEN_77",
            "  const e = new Error('no'); e.code = `${credentials.token}`; throw e",
        ),
    ],
    ids=["E-code-shaped", "oauth-error-shaped", "ERR_-code-shaped"],
)
def test_C22_credentials_shaped_like_error_codes_never_show(
    tmp_path: Path, credential: str, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Credentials that look like the error codes the runner lets through (an ``E...`` or
    ``ERR_...`` code, a lowercase OAuth error) thrown as the code or OAuth error: the
    RefreshError and the log still never contain them (CASES C22)."""
    caplog.set_level(logging.DEBUG)
    connection, runs, file = misbehaving(tmp_path, body)
    connection.auth.update_credentials({"token": credential})
    with pytest.raises(hr.RefreshError) as caught:
        connection.auth.refresh()
    assert str(caught.value).startswith(f"refreshCredentials in {file}")
    texts = [str(caught.value), repr(caught.value), caplog.text, repr(caught.value.__context__)]
    assert not [i for i, text in enumerate(texts) if credential in text], "a credential shows"
    runs.assert_all_gone()


def test_C22_make_api_client_throwing_at_connect_never_shows_a_secret(tmp_path: Path) -> None:
    """A JavaScript makeApiClient that throws an error whose ``code`` is the credential:
    connect() fails with a SpecError naming the file, without the secret (CASES C22)."""
    require_node()
    root = write_connector(
        tmp_path / "c",
        "name: X\nauth:\n  type: client-credentials\n  makeApiClient:\n"
        "    implementationType: javascript\n",
        {
            "auth/make-api-client.js": (
                "export default ({ credentials }) => {\n"
                "  throw Object.assign(new Error('no'), { code: credentials.accessToken })\n}\n"
            )
        },
    )
    with pytest.raises(hr.SpecError) as caught:
        hr.load_connector(root).connect(credentials=dict(START))
    assert str(caught.value).startswith(f"makeApiClient in {root}/auth/make-api-client.js:2")
    _assert_no_secret(str(caught.value), repr(caught.value), repr(caught.value.__context__))


@pytest.mark.integration
@pytest.mark.anyio
async def test_C22_a_whole_javascript_flow_shows_no_secret(
    server: tuple[Server, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A JavaScript makeApiClient and refreshCredentials (both printing the credential and
    the client secret), 20 concurrent requests, a refresh, then a failing refresh: no
    log line (httpx_refresh and httpx at DEBUG), repr or output shows a secret."""
    caplog.set_level(logging.DEBUG)
    state, base = server
    refresh = REFRESH.replace(
        "  const response",
        "  console.log(args.credentials.accessToken, connectorParameters.clientSecret)\n"
        "  if (connectorParameters.fail) throw new Error(args.credentials.accessToken)\n"
        "  const response",
    ).replace("refreshCredentials({ connectorParameters })", "refreshCredentials(args)")
    refresh = refresh.replace(
        "export default async function refreshCredentials(args) {",
        (
            "export default async function refreshCredentials(args) {\n"
            "  const { connectorParameters } = args"
        ),
    )
    root, runs = js_connector(tmp_path, client=JS_CLIENT, refresh=refresh)
    connector = hr.load_connector(root)
    connection = connector.connect(
        connector_parameters=parameters(base, runs), credentials={"accessToken": SECRET}
    )
    async with connection.async_client() as client:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(client.get, "/me")
    assert connection.credentials["accessToken"] == "tok-1"
    failing = connector.connect(
        connector_parameters=parameters(base, runs, fail=True), credentials={"accessToken": SECRET}
    )
    with pytest.raises(hr.RefreshError) as caught:
        await failing.auth.arefresh()
    captured = capfd.readouterr()
    _assert_no_secret(
        caplog.text,
        captured.out,
        captured.err,
        repr(connector),
        repr(connection),
        repr(failing),
        repr(failing.auth),
        repr(connector.runtime),
        str(caught.value),
        repr(caught.value),
    )
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 2)
    runs.assert_all_gone()


# -- apiClient misuse --------------------------------------------------------------------------

API_SPEC = """
name: Api
auth:
  type: client-credentials
  makeApiClient:
    {client}
  refreshCredentials:
    implementationType: javascript
    filePath: auth/refresh-credentials.js
  test:
    implementationType: javascript
"""
API_JS_CLIENT = """
export default ({ credentials, connectorParameters }) => ({
  baseUri: connectorParameters.base,
  headers: { Authorization: `Bearer ${credentials.accessToken}` },
  query: { key: credentials.accessToken },
})
"""


def api_connection(
    tmp_path: Path, base: str, test_source: str, *, client: str = MAPPING_CLIENT, **load: Any
) -> tuple[hr.Connection, Runs]:
    """A connection whose JavaScript ``test`` is ``test_source``; it logs its pid."""
    require_node()
    root = tmp_path / "api"
    runs = Runs(tmp_path / "api-runs.log")
    files = {
        "auth/refresh-credentials.js": REFRESH,
        "auth/test.js": "import { appendFileSync } from 'node:fs'\n" + test_source,
    }
    if client == JS_CLIENT:
        files["auth/make-api-client.js"] = API_JS_CLIENT
    write_connector(root, API_SPEC.format(client=client), files)
    connection = hr.load_connector(root, **load).connect(
        connector_parameters=parameters(base, runs), credentials={"accessToken": SECRET}
    )
    return connection, runs


LOG_TEST = "  appendFileSync(connectorParameters.log, `test ${process.pid}\\n`)\n"


@pytest.mark.integration
@pytest.mark.parametrize("client", ["mapping", "javascript"])
@pytest.mark.parametrize("method", ["test", "refreshCredentials"])
def test_R13_api_client_absolute_url_elsewhere_gets_no_credentials(
    server: tuple[Server, str], run_server: Any, tmp_path: Path, client: str, method: str
) -> None:
    """apiClient given an absolute URL on another origin (from ``test``, whose apiClient
    is the connection's client, and from refreshCredentials, whose apiClient is a plain
    client): what the other origin receives carries neither the makeApiClient header nor
    its query credential (DESIGN R13: credentials only go to the origin of baseUri)."""
    _, base = server
    elsewhere = Server()
    other = run_server(elsewhere.app())
    source = (
        "export default async ({ apiClient, connectorParameters }) => {\n"
        + LOG_TEST
        + f"  const got = await apiClient.post('{other}/echo', {{ a: 1 }},"
        + " { query: { q: 1 } })\n"
        + "  return got.method === 'POST' ? { ok: true } : null\n}\n"
    )
    connection, runs = api_connection(
        tmp_path, base, source, client=JS_CLIENT if client == "javascript" else MAPPING_CLIENT
    )
    if method == "test":
        assert connection.test() is True
    else:
        (connection.connector.path.parent / "auth" / "refresh-credentials.js").write_text(
            "import { appendFileSync } from 'node:fs'\n" + source
        )
        assert connection.auth.refresh()["ok"] is True
    assert elsewhere.seen == [(None, {"q": "1"})]
    runs.assert_all_gone()


@pytest.mark.integration
@pytest.mark.anyio
async def test_api_client_200_concurrent_requests_each_get_their_own_answer(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """``Promise.all`` of 200 apiClient requests from ``test`` (the first ones rejected
    with 401 by /me): every promise gets the answer to its own request, and the
    connection refreshes once (one JavaScript refresh run)."""
    state, base = server
    connection, runs = api_connection(
        tmp_path,
        base,
        "export default async ({ apiClient, connectorParameters }) => {\n"
        + LOG_TEST
        + "  const me = await Promise.all(Array.from({ length: 20 }, () => apiClient.get('/me')))\n"
        "  const got = await Promise.all(\n"
        "    Array.from({ length: 200 }, (_, i) => apiClient.get('/echo', { i })))\n"
        "  return me.every((m) => m.ok) && got.every((g, i) => g.query.i === String(i))\n}\n",
    )
    with anyio.fail_after(60):
        assert await connection.atest() is True
    assert (state.token_calls, runs.of("refreshCredentials")) == (1, 1)
    assert runs.of("test") == 1
    runs.assert_all_gone()


@pytest.mark.integration
def test_api_client_large_bodies_both_ways_at_once(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """Two apiClient requests at once, one fetching a 4 MB answer while the other sends a
    4 MB body: no deadlock between the two pipes; both complete."""
    _, base = server
    connection, runs = api_connection(
        tmp_path,
        base,
        "export default async ({ apiClient, connectorParameters }) => {\n"
        + LOG_TEST
        + "  const [big, sent] = await Promise.all([\n"
        "    apiClient.get('/big', { size: 4000000 }),\n"
        "    apiClient.post('/echo', 'z'.repeat(4000000))])\n"
        "  return big.blob.length === 4000000 && sent.length === 4000000\n}\n",
        node_timeout=15,
    )
    started = time.monotonic()
    assert connection._test_outcome()[0] is True
    assert time.monotonic() - started < 10
    runs.assert_all_gone()


@pytest.mark.integration
def test_api_client_body_over_16_mib_is_a_spec_error(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """An apiClient request whose body is over 16 MiB: a SpecError that says so, in
    bounded time, and Node is stopped."""
    _, base = server
    connection, runs = api_connection(
        tmp_path,
        base,
        "export default async ({ apiClient, connectorParameters }) => {\n"
        + LOG_TEST
        + "  await apiClient.post('/echo', 'z'.repeat(20 * 1024 * 1024))\n  return true\n}\n",
    )
    started = time.monotonic()
    with pytest.raises(hr.SpecError, match="test sent more than 16 MiB at once"):
        connection.test()
    assert time.monotonic() - started < 15
    runs.assert_all_gone()


@pytest.mark.integration
def test_api_client_used_after_the_method_returned(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """apiClient calls the method starts and does not wait for (one before returning, one
    from a timer after): the returned value is the result; no process is left."""
    _, base = server
    connection, runs = api_connection(
        tmp_path,
        base,
        "export default async ({ apiClient, connectorParameters }) => {\n"
        + LOG_TEST
        + "  apiClient.get('/echo', { when: 'before' }).catch(() => {})\n"
        "  setTimeout(() => apiClient.get('/echo', { when: 'after' }).catch(() => {}), 0)\n"
        "  return 'done'\n}\n",
    )
    assert connection._test_outcome() == (
        True,
        f"test in {connection.connector.path.parent}/auth/test.js returned a string",
    )
    runs.assert_all_gone()


@pytest.mark.integration
@pytest.mark.anyio
async def test_R7_cancelled_atest_stops_node_and_later_tests_work(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    """``atest()`` cancelled while its apiClient request is in progress (held by the
    server): the Node process is stopped before the cancellation completes; the next
    ``atest()`` passes."""
    state, base = server
    state.hold_mac = threading.Event()
    connection, runs = api_connection(
        tmp_path,
        base,
        "export default async ({ apiClient, connectorParameters }) => {\n"
        + LOG_TEST
        + "  await apiClient.get('/mac')\n  return true\n}\n",
    )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            scope = anyio.CancelScope()

            async def run() -> None:
                with scope:
                    await connection.atest()

            group.start_soon(run)
            assert await anyio.to_thread.run_sync(state.mac_hit.wait, 20.0)
            scope.cancel()
        assert scope.cancelled_caught
        runs.assert_all_gone()
        state.hold_mac.set()
        assert await connection.atest() is True
    assert runs.of("test") == 2
    runs.assert_all_gone()


# -- bad specs ---------------------------------------------------------------------------------

BAD_STUB = """
name: Bad
auth:
  type: client-credentials
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.invalid
  refreshCredentials:
{stub}
"""


@pytest.mark.parametrize(
    "code", ["''", "'   '", "42", "[a, b]", "{a: 1}", "null", "true", "", "|\n      \n"]
)
def test_inline_code_that_is_not_javascript_source(tmp_path: Path, code: str) -> None:
    """``code:`` empty, blank, or not a string: a SpecError at load naming the spec line
    and the key, before any Node run."""
    root = write_connector(
        tmp_path / "c", BAD_STUB.format(stub=f"    type: javascript\n    code: {code}")
    )
    with pytest.raises(hr.SpecError) as caught:
        hr.load_connector(root)
    assert str(caught.value) == (
        f"{root}/spec.yml:11 (auth.refreshCredentials.code): "
        "code: must be the javascript source (a string)"
    )


def test_file_paths_leading_out_or_not_files(tmp_path: Path) -> None:
    """filePath outside the folder (relative, absolute, through a symbolic link), a
    discovered ``auth/refresh-credentials.js`` that links out (or whose ``auth/`` does),
    and a ``.js`` that is a directory: each a SpecError at load."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "refresh-credentials.js").write_text("export default async () => ({})\n")
    cases: dict[str, tuple[str, str]] = {}

    def case(name: str, stub: str, expected: str, setup: Any = None) -> None:
        root = tmp_path / name
        root.mkdir()
        (root / "spec.yml").write_text(BAD_STUB.format(stub=stub))
        if setup is not None:
            setup(root)
        cases[name] = (str(root), expected)

    js = "    implementationType: javascript\n"
    case("relative", js + "    filePath: ../outside/refresh-credentials.js", "is outside")
    case("absolute", js + f"    filePath: {outside}/refresh-credentials.js", "is outside")
    case(
        "link",
        js + "    filePath: link.js",
        "is outside",
        lambda root: (root / "link.js").symlink_to(outside / "refresh-credentials.js"),
    )

    def linked_file(root: Path) -> None:
        (root / "auth").mkdir()
        (root / "auth" / "refresh-credentials.js").symlink_to(outside / "refresh-credentials.js")

    case("linked-file", js, "leads outside the connector directory", linked_file)
    case(
        "linked-auth",
        js,
        "leads outside the connector directory",
        lambda root: (root / "auth").symlink_to(outside, target_is_directory=True),
    )
    case(
        "directory",
        js + "    filePath: auth/dir.js",
        "not found",
        lambda root: (root / "auth" / "dir.js").mkdir(parents=True),
    )
    case(
        "discovered-directory",
        js,
        "has no body",
        lambda root: (root / "auth" / "refresh-credentials.js").mkdir(parents=True),
    )
    for name, (root, expected) in cases.items():
        with pytest.raises(hr.SpecError) as caught:
            hr.load_connector(root)
        assert str(caught.value).startswith(f"{root}/spec.yml:"), name
        assert expected in str(caught.value), name


def test_unreadable_method_file(tmp_path: Path) -> None:
    """A method file the process cannot read: a SpecError naming the file (not a
    missing-package message, not a hang)."""
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    connection, _, file = misbehaving(tmp_path, "  return {}")
    Path(file).chmod(0)
    with pytest.raises(hr.SpecError) as caught:
        connection.auth.refresh()
    assert str(caught.value).startswith(file)
    assert "npm ci" not in str(caught.value)


@pytest.mark.parametrize("missing", ["sibling-import", "method-file-removed"])
def test_missing_file_is_not_reported_as_a_missing_package(tmp_path: Path, missing: str) -> None:
    """A relative import of a sibling file that does not exist (a typo), or the method's
    own file removed after load: a SpecError naming the file, which must not tell the
    user to install packages (npm ci cannot help: README, failures say what happened)."""
    if missing == "sibling-import":
        connection, _, file = misbehaving(
            tmp_path, "  return helper()", imports="import helper from './helpr.mjs'"
        )
    else:
        connection, _, file = misbehaving(tmp_path, "  return {}")
        Path(file).unlink()
    with pytest.raises(hr.SpecError) as caught:
        connection.auth.refresh()
    message = str(caught.value)
    assert message.startswith(file)
    assert "npm ci" not in message
    assert ("helpr.mjs" if missing == "sibling-import" else "refresh-credentials.js") in message
    assert dict(connection.credentials) == START


def test_deeply_nested_result_is_a_spec_error(tmp_path: Path) -> None:
    """A result nested 3000 arrays deep (JSON.stringify manages it; Python's JSON decoder
    does not) is a SpecError naming the file, like any result Python cannot take,
    not a RecursionError wrapped as "refresher raised"; no process is left."""
    connection, runs, file = misbehaving(
        tmp_path, "  let v = []\n  for (let i = 0; i < 3000; i++) v = [v]\n  return { deep: v }"
    )
    with pytest.raises(hr.SpecError) as caught:
        connection.auth.refresh()
    assert str(caught.value).startswith(file)
    assert dict(connection.credentials) == START
    runs.assert_all_gone()
