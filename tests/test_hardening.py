"""Inputs and corner cases found by trying to break the library (R2, R12, R13, C22)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

import httpx_refresh as hr
from httpx_refresh._credentials import parse_expires_at, parse_expires_in

SECRET_RT = "SECRET-RT-4242"


def refresher(**_: Any) -> dict[str, Any]:
    return {"access_token": "A2"}


@pytest.mark.parametrize("value", [10**400, "1" * 400, -(10**400)], ids=["int", "str", "negative"])
def test_R2_huge_expires_in_is_unknown_not_a_crash(value: object) -> None:
    """R2: an expires_in too large for a float is treated as unknown."""
    assert parse_expires_in(value) is None


@pytest.mark.parametrize(
    "value",
    [10**400, "9" * 400, 1_700_000_000_000_000, "1969-12-31T00:00:00Z", "0001-01-01"],
    ids=["huge-int", "huge-str", "microseconds", "before-1970", "year-1"],
)
def test_R2_unusable_expires_at_is_unknown(value: object) -> None:
    """R2: huge numbers, microseconds and dates before 1970 are not accepted as expiry."""
    assert parse_expires_at(value) is None


def test_R2_refresh_returning_a_huge_expires_in_keeps_the_rotated_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R2 + R7: a refresh whose expires_in cannot be parsed still merges its rotated
    refresh token (expiry unknown, a warning logged)."""
    caplog.set_level(logging.WARNING, logger="httpx_refresh")

    def rotate(**_: Any) -> dict[str, Any]:
        return {"access_token": "A2", "refresh_token": "R2", "expires_in": 10**400}

    auth = hr.RefreshAuth({"refresh_token": "R1"}, rotate)
    with httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c:
        assert c.get("http://api.test/").status_code == 200
    assert auth.credentials["refresh_token"] == "R2"
    assert auth.expires_at is None
    assert any("expires_in is not a number" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"refresh_on": "401"}, TypeError),
        ({"refresh_on": 401}, TypeError),
        ({"refresh_on": []}, ValueError),
        ({"refresh_on": [401, "403"]}, ValueError),
        ({"refresh_on": [42]}, ValueError),
        ({"leeway": float("nan")}, ValueError),
        ({"leeway": float("inf")}, ValueError),
        ({"leeway": -1}, ValueError),
        ({"refresh_timeout": float("nan")}, ValueError),
        ({"min_refresh_interval": -0.5}, ValueError),
    ],
)
def test_bad_options_are_rejected_at_construction(kwargs: dict[str, Any], error: type) -> None:
    """Bad input gets a clear, typed error at once, naming the option."""
    with pytest.raises(error, match=next(iter(kwargs))):
        hr.RefreshAuth({"access_token": "A1"}, refresher, **kwargs)


def test_C22_error_field_that_is_not_an_oauth_code_is_not_shown() -> None:
    """C22: a token endpoint that puts a secret in the ``error`` field itself (not a valid
    RFC 6749 error code) does not get it into the message, ``oauth_error`` or the log."""

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": f"refresh token {SECRET_RT} is unknown"})

    grant = hr.OAuth2Refresh(
        "https://idp.test/token", client_id="c", transport=httpx.MockTransport(token_endpoint)
    )
    with pytest.raises(hr.RefreshError) as caught:
        grant(credentials={"refresh_token": SECRET_RT})
    assert caught.value.oauth_error is None
    assert SECRET_RT not in f"{caught.value} {caught.value!r}"


@pytest.mark.anyio
async def test_R12_async_file_body_is_not_replayed_empty(tmp_path: Any) -> None:
    """R12: an async file (anyio) as ``content=`` cannot be rewound synchronously: the
    refresh happens, then RequestNotReplayable, never an empty replay."""
    path = tmp_path / "body.bin"
    path.write_bytes(b"x" * 100_000)
    received: list[int] = []

    async def api(request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        received.append(len(body))
        ok = request.headers["Authorization"] == "Bearer A2"
        return httpx.Response(200 if ok else 401)

    auth = hr.RefreshAuth({"access_token": "A1"}, refresher)
    async with (
        httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client,
        await anyio.open_file(path, "rb") as file,
    ):
        with pytest.raises(hr.RequestNotReplayable):
            await client.post("http://api.test/upload", content=file)
    assert received == [100_000]
    assert auth.stats.refreshes == 1


def test_R13_401_from_another_origin_after_a_redirect_does_not_refresh() -> None:
    """R13: when a followed redirect ends at another origin that answers 401, our
    credentials were not the ones rejected: no refresh, no replay, the 401 goes back."""
    calls: list[int] = []

    def counting(**_: Any) -> dict[str, Any]:
        calls.append(1)
        return {"access_token": "A2"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.test":
            return httpx.Response(302, headers={"Location": "https://elsewhere.test/x"})
        return httpx.Response(401)

    auth = hr.RefreshAuth({"access_token": "A1"}, counting)
    with httpx.Client(
        auth=auth, transport=httpx.MockTransport(handler), follow_redirects=True
    ) as client:
        response = client.get("https://api.test/start")
    assert response.status_code == 401
    assert calls == []
    assert auth.stats.replays == 0


def test_rejected_response_is_read_before_the_refresh_so_its_connection_is_free(
    run_server: Any,
) -> None:
    """A request waiting for a refresh does not hold its pool connection: a refresher that
    uses the same client (a real server, a pool of one connection) reaches the token
    endpoint instead of timing out on the pool."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def token(request: Request) -> JSONResponse:
        return JSONResponse({"access_token": "A2"})

    async def data(request: Request) -> Response:
        ok = request.headers.get("Authorization") == "Bearer A2"
        return Response(b"x" * 100_000, status_code=200 if ok else 401)

    url = run_server(
        Starlette(routes=[Route("/token", token, methods=["POST"]), Route("/data", data)])
    )
    box: dict[str, httpx.Client] = {}

    def same_client(**_: Any) -> dict[str, Any]:
        return dict(box["client"].post(f"{url}/token").json())

    auth = hr.RefreshAuth({"access_token": "A1"}, same_client)
    with httpx.Client(
        auth=auth,
        limits=httpx.Limits(max_connections=1),
        timeout=httpx.Timeout(10.0, pool=2.0),
    ) as client:
        box["client"] = client
        assert client.get(f"{url}/data").status_code == 200
    assert auth.stats.refreshes == 1


@pytest.mark.anyio
async def test_R10_huge_token_response_is_refused_without_reading_it_all() -> None:
    """A token endpoint answering with a body over 1 MiB: RefreshError, nothing merged."""

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "A2", "padding": "x" * (2 * 1024 * 1024)})

    grant = hr.OAuth2Refresh(
        "https://idp.test/token",
        client_id="c",
        transport=httpx.MockTransport(token_endpoint),
        async_transport=httpx.MockTransport(token_endpoint),
    )
    with pytest.raises(hr.RefreshError, match="over 1024 KiB"):
        grant(credentials={"refresh_token": "R1"})
    with pytest.raises(hr.RefreshError, match="over 1024 KiB"):
        await grant.acall(credentials={"refresh_token": "R1"})


@pytest.mark.parametrize("returned", [{"access_token": ""}, {"access_token": None}, {}])
def test_R10_refresh_leaving_no_usable_token_is_permanent(returned: dict[str, Any]) -> None:
    """R10: a refresher result that leaves the credentials without a usable access token
    raises ReauthorizationRequired (and nothing is merged)."""
    auth = hr.RefreshAuth({"refresh_token": "R1"}, lambda **_: returned)
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c,
        pytest.raises(hr.ReauthorizationRequired, match="no usable 'access_token'"),
    ):
        c.get("http://api.test/")
    assert dict(auth.credentials) == {"refresh_token": "R1"}


@pytest.mark.anyio
async def test_R6_sync_wait_inside_the_loop_running_the_refresh_fails_fast() -> None:
    """R6: a sync call (``auth.refresh()``) made inside the event loop whose task is running
    the refresh would block that loop until the timeout; it fails at once instead, and the
    refresh completes."""
    started = anyio.Event()
    release = anyio.Event()

    async def slow(**_: Any) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {"access_token": "A2"}

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if request.headers["Authorization"] == "Bearer A2" else 401)

    auth = hr.RefreshAuth({"access_token": "A1"}, slow, refresh_timeout=20)
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                responses: list[int] = []

                async def get() -> None:
                    responses.append((await client.get("http://api.test/")).status_code)

                tg.start_soon(get)
                await started.wait()
                with pytest.raises(hr.RefreshError, match="use the async client"):
                    auth.refresh()
                release.set()
    assert responses == [200]
    assert auth.stats.refreshes == 1


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_R7_interrupted_wait_on_a_refresher_keeps_its_result(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """R7: a sync client's thread interrupted (KeyboardInterrupt) while its refresher runs
    (an async one on the private loop; a sync one in the worker thread it is waited on
    in, R16): the interrupt propagates, and the rotated refresh token the refresher still
    obtains is merged and persisted, not lost."""
    release = threading.Event()
    persisted = threading.Event()

    async def rotate_async(**_: Any) -> dict[str, Any]:
        await anyio.to_thread.run_sync(release.wait, 5)
        return {"access_token": "A2", "refresh_token": "R2"}

    def rotate_sync(**_: Any) -> dict[str, Any]:
        release.wait(5)
        return {"access_token": "A2", "refresh_token": "R2"}

    rotate = rotate_async if kind == "async" else rotate_sync
    original_join = threading.Thread.join

    def interrupted_join(self: threading.Thread, timeout: float | None = None) -> None:
        if self.name.startswith("httpx-refresh-"):  # the refresher's thread
            release.set()
            raise KeyboardInterrupt
        original_join(self, timeout)

    monkeypatch.setattr(threading.Thread, "join", interrupted_join)
    auth = hr.RefreshAuth(
        {"refresh_token": "R1"}, rotate, on_refresh=lambda credentials: persisted.set()
    )
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c,
        pytest.raises(KeyboardInterrupt),
    ):
        c.get("http://api.test/")
    assert persisted.wait(5)
    assert auth.credentials["refresh_token"] == "R2"
