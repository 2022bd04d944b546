"""R10 retries: tenacity policy, Retry-After, bounded attempts, no retry of permanent errors."""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

import httpx_refresh as hr
from httpx_refresh._oauth2 import _retry_after
from httpx_refresh._retry import is_transient

TOKEN_URL = "https://idp.test/token"


@pytest.fixture
def no_waits() -> Iterator[None]:
    """Backoff waits off for one test (the documented switch), back on afterwards."""
    hr.set_testing(True)
    yield
    hr.set_testing(False)


class TokenEndpoint:
    """A MockTransport token endpoint answering from a script, counting calls."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls += 1
            index = min(self.calls, len(self.answers)) - 1
        return self.answers[index]


def ok(token: str = "A2") -> httpx.Response:
    return httpx.Response(200, json={"access_token": token, "refresh_token": "R2"})


def api(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200 if request.headers["Authorization"] == "Bearer A2" else 401)


def make_auth(endpoint: TokenEndpoint, **kwargs: Any) -> hr.RefreshAuth:
    grant = hr.OAuth2Refresh(
        TOKEN_URL,
        client_id="c",
        client_secret="s",
        transport=httpx.MockTransport(endpoint),
        async_transport=httpx.MockTransport(endpoint),
    )
    return hr.RefreshAuth({"access_token": "A1", "refresh_token": "R1"}, grant, **kwargs)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (hr.RefreshError("x", transient=True), True),
        (hr.RefreshError("x"), False),
        (hr.ReauthorizationRequired("x"), False),
        (httpx.ConnectError("x"), True),
        (httpx.ReadTimeout("x"), True),
        (TimeoutError(), True),
        (ValueError("x"), False),
    ],
)
def test_R10_transient_classification(error: BaseException, transient: bool) -> None:
    """R10: which failures may succeed when tried again."""
    assert is_transient(error) is transient


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"attempts": 0}, "attempts"),
        ({"timeout": -1}, "timeout"),
        ({"wait_max": float("inf")}, "wait_max"),
        ({"wait_jitter": float("nan")}, "wait_jitter"),
    ],
)
def test_R10_bad_retry_policy_is_rejected(kwargs: dict[str, Any], name: str) -> None:
    """Bad input: a clear ValueError naming the option."""
    with pytest.raises(ValueError, match=name):
        hr.RetryPolicy(**kwargs)


def test_R10_retry_after_header_parsing() -> None:
    """RFC 9110 10.2.3: delta-seconds or an HTTP-date; anything else is ignored."""
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    cases = {"7": 7.0, "garbage": None, "-3": None}
    for value, expected in cases.items():
        assert _retry_after(httpx.Response(503, headers={"Retry-After": value})) == expected
    assert 25 <= (_retry_after(httpx.Response(503, headers={"Retry-After": future})) or 0) <= 31
    assert _retry_after(httpx.Response(503)) is None


def test_R10_sync_endpoint_failing_twice_then_recovering(no_waits: None) -> None:
    """R10: 503, 503, then 200: one flight of exactly 3 token calls; 16 threads all succeed."""
    endpoint = TokenEndpoint(httpx.Response(503), httpx.Response(503), ok())
    auth = make_auth(endpoint)
    results: list[int] = []
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        threads = [
            threading.Thread(
                target=lambda: results.append(client.get("http://api.test/").status_code)
            )
            for _ in range(16)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert results == [200] * 16
    assert endpoint.calls == 3
    assert auth.stats.refreshes == 1
    assert auth.credentials["refresh_token"] == "R2"


@pytest.mark.anyio
async def test_R10_async_endpoint_failing_twice_then_recovering(no_waits: None) -> None:
    """R10: 500, 429, then 200: one flight of exactly 3 token calls; 100 tasks all succeed."""
    endpoint = TokenEndpoint(httpx.Response(500), httpx.Response(429), ok())
    auth = make_auth(endpoint)
    results: list[int] = []
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:

        async def get() -> None:
            results.append((await client.get("http://api.test/")).status_code)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(get)
    assert results == [200] * 100
    assert endpoint.calls == 3
    assert auth.stats.refreshes == 1


@pytest.mark.anyio
async def test_R10_attempts_are_bounded_and_every_waiter_gets_the_same_error(
    no_waits: None,
) -> None:
    """R10: an endpoint that stays down: exactly ``attempts`` calls, then every one of the
    50 waiters gets the same transient RefreshError; credentials unchanged; during the
    cooldown 20 more requests fail at once without a token call; after it (endpoint back)
    one request recovers with exactly one more call."""
    now = [1_000_000.0]
    endpoint = TokenEndpoint(httpx.Response(503))
    auth = make_auth(endpoint, retry=hr.RetryPolicy(attempts=4, cooldown=5.0), clock=lambda: now[0])
    errors: list[hr.RefreshError] = []
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:

        async def get() -> None:
            try:
                await client.get("http://api.test/")
            except hr.RefreshError as exc:
                errors.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(get)
        assert endpoint.calls == 4
        assert len(errors) == 50
        assert {(type(e), str(e), e.transient, e.status_code) for e in errors} == {
            (hr.RefreshError, "token endpoint answered 503", True, 503)
        }
        assert dict(auth.credentials) == {"access_token": "A1", "refresh_token": "R1"}
        errors.clear()
        endpoint.answers = [ok()]
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(get)
        assert len(errors) == 20
        assert endpoint.calls == 4  # cooling down: no new flight
        now[0] += 5.0
        assert (await client.get("http://api.test/")).status_code == 200
    assert endpoint.calls == 5


def test_R10_permanent_errors_are_not_retried(no_waits: None) -> None:
    """R10: 400 invalid_grant is permanent: exactly 1 token call, ReauthorizationRequired."""
    endpoint = TokenEndpoint(httpx.Response(400, json={"error": "invalid_grant"}))
    auth = make_auth(endpoint)
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client,
        pytest.raises(hr.ReauthorizationRequired),
    ):
        client.get("http://api.test/")
    assert endpoint.calls == 1


async def cools_down_60_s(
    client: httpx.AsyncClient, endpoint: TokenEndpoint, now: list[float]
) -> None:
    """After a failed refresh whose Retry-After is 60 s or more: at +59 s the request fails
    fast without a token call; at +60 s one token call, and the request succeeds."""
    calls = endpoint.calls
    now[0] += 59
    with pytest.raises(hr.RefreshError):
        await client.get("http://api.test/")
    assert endpoint.calls == calls
    now[0] += 1
    assert (await client.get("http://api.test/")).status_code == 200
    assert endpoint.calls == calls + 1


@pytest.mark.anyio
async def test_R10_retry_after_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    """R10 + R15: the wait before the next attempt is the server's Retry-After (0 s here);
    a Retry-After longer than ``wait_max`` (3600 s) is not cut short by a retry: the refresh
    fails and the cooldown honours it up to 60 s (no token call for 59 s; one after 60 s).
    Each retry logs a WARNING."""
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    now = [1_000_000.0]
    endpoint = TokenEndpoint(
        httpx.Response(503, headers={"Retry-After": "0"}),
        httpx.Response(429, headers={"Retry-After": "3600"}),
        ok(),
    )
    auth = make_auth(
        endpoint, retry=hr.RetryPolicy(wait_max=0.3, wait_initial=5.0), clock=lambda: now[0]
    )
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
        with anyio.fail_after(5):
            with pytest.raises(hr.RefreshError) as caught:
                await client.get("http://api.test/")
            assert caught.value.retry_after == 3600
            assert endpoint.calls == 2
            await cools_down_60_s(client, endpoint, now)
    waits = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert waits == ["refresh attempt 1 failed (RefreshError); retrying in 0.00 s"]
    assert endpoint.calls == 3


@pytest.mark.anyio
async def test_R10_retry_stops_before_the_time_budget_is_spent(no_waits: None) -> None:
    """R10: no new attempt starts once ``timeout`` seconds have passed since the first
    (a slow endpoint: each attempt takes 0.3 s, budget 0.5 s, 10 attempts allowed)."""
    calls: list[float] = []

    async def slow(**_: Any) -> dict[str, Any]:
        calls.append(time.monotonic())
        await anyio.sleep(0.3)
        raise hr.RefreshError("down", transient=True)

    auth = hr.RefreshAuth(
        {"access_token": "A1"}, slow, retry=hr.RetryPolicy(attempts=10, timeout=0.5)
    )
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
        with anyio.fail_after(5), pytest.raises(hr.RefreshError):
            await client.get("http://api.test/")
    assert len(calls) == 2


def test_R10_set_testing_removes_the_waits() -> None:
    """The documented switch: with ``set_testing(True)`` a policy that would wait 100 s
    between attempts finishes at once (attempts still happen)."""
    endpoint = TokenEndpoint(httpx.Response(503), ok())
    auth = make_auth(endpoint, retry=hr.RetryPolicy(wait_initial=100.0, wait_max=100.0))
    hr.set_testing(True)
    try:
        started = time.monotonic()
        with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
            assert client.get("http://api.test/").status_code == 200
        assert time.monotonic() - started < 50  # far below the 100 s wait it skipped
    finally:
        hr.set_testing(False)
    assert endpoint.calls == 2


def test_R10_cooldown_serves_a_still_valid_token_and_honours_retry_after(no_waits: None) -> None:
    """R10: a failed proactive refresh falls back to the still-valid token (the request
    succeeds); requests inside the leeway keep going with it (no token call) until the
    cooldown, lengthened by Retry-After (20 s), ends; an expired token fails fast with the
    last error instead."""
    now = [1_000_000.0]
    endpoint = TokenEndpoint(httpx.Response(503, headers={"Retry-After": "20"}))
    grant = hr.OAuth2Refresh(TOKEN_URL, client_id="c", transport=httpx.MockTransport(endpoint))
    auth = hr.RefreshAuth(
        {"access_token": "A2", "refresh_token": "R1", "expires_at": now[0] + 25},
        grant,
        leeway=30,
        retry=hr.RetryPolicy(attempts=1, cooldown=5.0),
        clock=lambda: now[0],
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        # The proactive refresh fails; the token is still valid, so the request goes out.
        assert client.get("http://api.test/").status_code == 200
        assert endpoint.calls == 1
        for _ in range(5):
            now[0] += 3.0  # 15 s: past the 5 s cooldown, inside Retry-After's 20 s
            assert client.get("http://api.test/").status_code == 200
        assert endpoint.calls == 1
        now[0] += 15.0  # expired now, cooldown over: one new refresh attempt
        with pytest.raises(hr.RefreshError):
            client.get("http://api.test/")
        assert endpoint.calls == 2
        with pytest.raises(hr.RefreshError, match="503"):  # expired + cooling: fail fast
            client.get("http://api.test/")
        assert endpoint.calls == 2


@pytest.mark.anyio
async def test_R10_failed_proactive_refresh_falls_back_for_every_waiter(no_waits: None) -> None:
    """R10: 40 tasks inside the leeway of a still-valid token; the one refresh fails
    transiently (2 attempts): all 40 requests go out with the valid token and succeed,
    and the token endpoint saw exactly 2 calls."""
    endpoint = TokenEndpoint(httpx.Response(500))
    grant = hr.OAuth2Refresh(
        TOKEN_URL, client_id="c", async_transport=httpx.MockTransport(endpoint)
    )
    auth = hr.RefreshAuth(
        {"access_token": "A2", "refresh_token": "R1", "expires_at": time.time() + 20},
        grant,
        leeway=30,
        retry=hr.RetryPolicy(attempts=2),
    )
    results: list[int] = []
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:

        async def get() -> None:
            results.append((await client.get("http://api.test/")).status_code)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(get)
    assert results == [200] * 40
    assert endpoint.calls == 2
    assert auth.credentials["refresh_token"] == "R1"


def test_R7_native_asyncio_cancellation_of_the_owner_keeps_the_rotated_token() -> None:
    """R7 (asyncio): the owner is cancelled natively (``task.cancel()``, as
    ``asyncio.wait_for`` / ``asyncio.timeout`` do, which anyio's shield does not stop)
    while the token exchange runs: the exchange still completes, the rotated refresh
    token is merged, the waiters get 200, and no cooldown is left behind."""
    import asyncio

    async def main() -> None:
        started = asyncio.Event()
        release = asyncio.Event()
        calls: list[int] = []

        async def rotate(**_: Any) -> dict[str, Any]:
            calls.append(1)
            started.set()
            await release.wait()
            return {"access_token": "A2", "refresh_token": "R2"}

        auth = hr.RefreshAuth({"access_token": "A1", "refresh_token": "R1"}, rotate)
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
            owner = asyncio.create_task(client.get("http://api.test/owner"))
            await asyncio.wait_for(started.wait(), 5)
            waiters = [asyncio.create_task(client.get("http://api.test/w")) for _ in range(10)]
            await asyncio.sleep(0)  # let the waiters join the flight
            owner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await owner
            release.set()
            responses = await asyncio.wait_for(asyncio.gather(*waiters), 5)
            assert [r.status_code for r in responses] == [200] * 10
            assert auth.credentials["refresh_token"] == "R2"
            assert (await client.get("http://api.test/later")).status_code == 200
        assert calls == [1]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("failure", "calls"),
    [
        (httpx.ReadTimeout("lost"), 1),  # may have been processed: a rotated token
        (httpx.RemoteProtocolError("lost"), 1),
        (httpx.ConnectError("refused"), 3),  # never reached the server: safe to retry
    ],
)
def test_R10_refresh_token_grant_is_not_retried_when_the_request_may_have_arrived(
    no_waits: None, failure: Exception, calls: int
) -> None:
    """R10 + R7: a refresh_token request whose response was lost after it was sent is not
    retried within the flight (the server may have rotated the token already); a
    connection that never opened is."""
    seen: list[int] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        raise failure

    grant = hr.OAuth2Refresh(TOKEN_URL, client_id="c", transport=httpx.MockTransport(endpoint))
    auth = hr.RefreshAuth({"access_token": "A1", "refresh_token": "R1"}, grant)
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client,
        pytest.raises(hr.RefreshError) as caught,
    ):
        client.get("http://api.test/")
    assert caught.value.transient
    assert len(seen) == calls


def test_R10_raise_for_status_503_in_a_custom_refresher_is_transient(no_waits: None) -> None:
    """R10: a custom refresher's ``raise_for_status()`` on 503 is a transient failure: it is
    retried (3 attempts) and then cools down instead of storming the endpoint."""
    seen: list[int] = []

    def custom(**_: Any) -> dict[str, Any]:
        seen.append(1)
        request = httpx.Request("POST", TOKEN_URL)
        httpx.Response(503, request=request).raise_for_status()
        return {}

    auth = hr.RefreshAuth({"access_token": "A1"}, custom)
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        for _ in range(5):
            with pytest.raises(hr.RefreshError) as caught:
                client.get("http://api.test/")
            assert caught.value.transient
    assert len(seen) == 3


def test_C19_token_endpoint_always_invalid_grant(run_server: Any) -> None:
    """C19 (R10): the token endpoint always answers 400 invalid_grant: 1 GET, then 5 more:
    the token endpoint sees exactly 1 call in total; the later GETs fail fast with
    ReauthorizationRequired (no request reaches the API) until the credentials are
    replaced, after which requests work again."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    seen = {"token": 0, "api": 0}
    valid = {"A-new"}

    async def token(request: Request) -> JSONResponse:
        seen["token"] += 1
        return JSONResponse({"error": "invalid_grant"}, status_code=400)

    async def resource(request: Request) -> Response:
        seen["api"] += 1
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return Response(status_code=200 if bearer in valid else 401)

    url = run_server(
        Starlette(routes=[Route("/token", token, methods=["POST"]), Route("/api", resource)])
    )
    grant = hr.OAuth2Refresh(f"{url}/token", client_id="c", client_secret="s")
    auth = hr.RefreshAuth({"access_token": "A-old", "refresh_token": "R-old"}, grant)
    with httpx.Client(auth=auth, timeout=10) as client:
        with pytest.raises(hr.ReauthorizationRequired) as first:
            client.get(f"{url}/api")
        assert first.value.oauth_error == "invalid_grant"
        assert seen == {"token": 1, "api": 1}
        for _ in range(5):
            with pytest.raises(hr.ReauthorizationRequired):
                client.get(f"{url}/api")
        assert seen == {"token": 1, "api": 1}
        auth.update_credentials({"access_token": "A-new", "refresh_token": "R-new"})
        assert client.get(f"{url}/api").status_code == 200
    assert seen == {"token": 1, "api": 2}


# -- token-refresh failures reported against other libraries ---------------------------------


def bad_gateway() -> httpx.Response:
    """A gateway's 502 page (a new response each time: one is read only once)."""
    return httpx.Response(
        502,
        content=b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        headers={"Content-Type": "text/html"},
    )


def test_foyoux_aligo_105_bad_gateway_html_page_is_retried_not_reauthorization_sync(
    no_waits: None,
) -> None:
    """foyoux/aligo#105: a gateway's 502 HTML page on the token request made the client ask
    the user to log in again, though the refresh token was fine (the next run refreshed
    without a new login). R10: a 5xx is transient, whatever its body. One 502 then a token:
    2 token calls within one refresh, the request succeeds after 1 replay. Three 502s (all
    attempts): a transient ``RefreshError`` (never ``ReauthorizationRequired``), and once the
    cooldown is over the next request refreshes and succeeds: nothing was marked dead."""
    endpoint = TokenEndpoint(bad_gateway(), ok())
    auth = make_auth(endpoint)
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        assert client.get("http://api.test/").status_code == 200
    assert endpoint.calls == 2
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=1, deduplicated=0, failures=0)

    now = [1_000_000.0]
    endpoint = TokenEndpoint(bad_gateway(), bad_gateway(), bad_gateway(), ok())
    auth = make_auth(endpoint, retry=hr.RetryPolicy(attempts=3, cooldown=5.0), clock=lambda: now[0])
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        with pytest.raises(hr.RefreshError) as caught:
            client.get("http://api.test/")
        assert type(caught.value) is hr.RefreshError
        assert (caught.value.status_code, caught.value.transient) == (502, True)
        assert endpoint.calls == 3
        now[0] += 6.0
        assert client.get("http://api.test/").status_code == 200
    assert endpoint.calls == 4


@pytest.mark.anyio
async def test_foyoux_aligo_105_bad_gateway_html_page_is_retried_not_reauthorization_async(
    no_waits: None,
) -> None:
    """foyoux/aligo#105: as the sync case (one 502 HTML page, then a token), through
    AsyncClient on asyncio and trio: 2 token calls in one refresh, 1 replay, 200."""
    endpoint = TokenEndpoint(bad_gateway(), ok())
    auth = make_auth(endpoint)
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
        with anyio.fail_after(10):
            assert (await client.get("http://api.test/")).status_code == 200
    assert endpoint.calls == 2
    assert auth.stats == hr.RefreshStats(refreshes=1, replays=1, deduplicated=0, failures=0)


async def rate_limited_then_cools_down(retry_after: str) -> hr.RefreshError:
    """The token endpoint answers 429 with ``retry_after`` (a wait beyond ``wait_max``),
    then a token. The refresh fails after 1 token call with a transient RefreshError (no
    retry within the flight), the cooldown lasts 60 s (:func:`cools_down_60_s`), then the
    request succeeds: 2 token calls in all. Returns the first error."""
    now = [1_000_000.0]
    endpoint = TokenEndpoint(httpx.Response(429, headers={"Retry-After": retry_after}), ok())
    auth = make_auth(endpoint, clock=lambda: now[0])
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
        with anyio.fail_after(5):
            with pytest.raises(hr.RefreshError) as caught:
                await client.get("http://api.test/")
            assert (caught.value.status_code, caught.value.transient) == (429, True)
            assert endpoint.calls == 1
            await cools_down_60_s(client, endpoint, now)
    assert endpoint.calls == 2
    return caught.value


@pytest.mark.anyio
@pytest.mark.parametrize(
    "retry_after",
    ["9" * 400, "1" + "0" * 30, "Fri, 31 Dec 9999 23:59:59 GMT"],
    ids=["400-digits", "1e30-seconds", "year-9999"],
)
async def test_atlassian_api_atlassian_python_api_1602_huge_retry_after_cools_down_60_s(
    retry_after: str,
) -> None:
    """atlassian-api/atlassian-python-api#1602: a ``Retry-After`` with a very large value
    crashed the client with ``OverflowError`` instead of backing off. R10: the refresh fails
    with a transient ``RefreshError`` after 1 token call (the wait is beyond ``wait_max``, so
    no retry within the flight), requests fail fast for the cooldown, which honours
    Retry-After only up to 60 s: at +59 s no token call, at +60 s one, and it succeeds."""
    error = await rate_limited_then_cools_down(retry_after)
    assert error.retry_after is not None
    assert error.retry_after > 60


@pytest.mark.anyio
async def test_lidge_jun_opencodex_4046_retry_after_http_date_from_the_token_endpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """lidge-jun/opencodex#4046: the token request's retry loop ignored a ``Retry-After``
    given as an HTTP-date (RFC 9110 section 10.2.3) and retried at once, into the same
    rate limit. Here the token endpoint answers 429 with ``Retry-After`` one hour ahead as an
    IMF-fixdate: no retry within the flight (1 token call, no "retrying" log), the error
    carries the wait (about 3600 s), and the cooldown honours it up to 60 s."""
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    error = await rate_limited_then_cools_down(
        email.utils.formatdate(time.time() + 3600, usegmt=True)
    )
    assert error.retry_after is not None
    assert 3590 < error.retry_after <= 3600
    assert [r for r in caplog.records if "retrying in" in r.getMessage()] == []
