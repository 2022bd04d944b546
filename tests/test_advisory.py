"""R3: the advisory window: one request refreshes, the others keep the valid token."""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import httpx
import pytest

import httpx_refresh as hr

T0 = 1_000_000.0


class Api:
    """Accepts A1 and A2; records which token each request carried."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        with self.lock:
            self.seen.append(token)
        return httpx.Response(200 if token in ("A1", "A2") else 401)


def credentials() -> dict[str, Any]:
    # Expires in 200 s: inside a 300 s advisory window, outside the 30 s leeway.
    return {"access_token": "A1", "refresh_token": "R1", "expires_at": T0 + 200}


@pytest.mark.anyio
async def test_R3_one_request_refreshes_the_others_do_not_wait() -> None:
    """R3: 50 concurrent requests inside the advisory window: exactly one runs the refresh
    (which completes only after the 49 others have finished with the still-valid token),
    then goes out with the new token."""
    api = Api()
    done = 0
    others_done = anyio.Event()
    calls: list[int] = []

    async def refresher(**_: Any) -> dict[str, Any]:
        calls.append(1)
        with anyio.fail_after(5):
            await others_done.wait()
        return {"access_token": "A2", "expires_in": 3600}

    auth = hr.RefreshAuth(credentials(), refresher, leeway=30, advisory=300, clock=lambda: T0)
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:

        async def get() -> None:
            nonlocal done
            assert (await client.get("http://api.test/")).status_code == 200
            done += 1
            if done == 49:
                others_done.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(get)
    assert calls == [1]
    assert sorted(api.seen) == ["A1"] * 49 + ["A2"]
    assert api.seen[-1] == "A2"
    assert auth.credentials["access_token"] == "A2"
    assert auth.stats.refreshes == 1


def test_R3_one_thread_refreshes_the_others_do_not_wait() -> None:
    """R3 with threads: 16 threads inside the advisory window; the refresher blocks until
    the 15 others have finished with the still-valid token."""
    api = Api()
    others_done = threading.Event()
    lock = threading.Lock()
    done = [0]
    calls: list[int] = []

    def refresher(**_: Any) -> dict[str, Any]:
        calls.append(1)
        assert others_done.wait(5)
        return {"access_token": "A2", "expires_in": 3600}

    auth = hr.RefreshAuth(credentials(), refresher, leeway=30, advisory=300, clock=lambda: T0)
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:

        def get() -> None:
            assert client.get("http://api.test/").status_code == 200
            with lock:
                done[0] += 1
                if done[0] == 15:
                    others_done.set()

        threads = [threading.Thread(target=get) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert done[0] == 16
    assert calls == [1]
    assert sorted(api.seen) == ["A1"] * 15 + ["A2"]


@pytest.mark.anyio
async def test_R3_failed_advisory_refresh_is_logged_and_the_token_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R3: a failed advisory refresh is logged (WARNING), the request succeeds with the
    still-valid token, credentials are unchanged, and the cooldown keeps the next requests
    from refreshing again at once."""
    caplog.set_level(logging.WARNING, logger="httpx_refresh")
    api = Api()
    calls: list[int] = []

    async def refresher(**_: Any) -> dict[str, Any]:
        calls.append(1)
        raise hr.RefreshError("token endpoint down", transient=True)

    auth = hr.RefreshAuth(
        credentials(),
        refresher,
        leeway=30,
        advisory=300,
        retry=hr.RetryPolicy(attempts=1),
        clock=lambda: T0,
    )
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
        for _ in range(5):
            assert (await client.get("http://api.test/")).status_code == 200
    assert calls == [1]
    assert api.seen == ["A1"] * 5
    assert dict(auth.credentials) == credentials()
    assert any("advisory refresh of version 0 failed" in r.getMessage() for r in caplog.records)


def test_R3_outside_the_window_nothing_happens_and_bad_values_are_rejected() -> None:
    """R3: a token expiring in 400 s is outside a 300 s window (no refresh); a negative or
    infinite window is a ValueError."""
    calls: list[int] = []

    def refresher(**_: Any) -> dict[str, Any]:
        calls.append(1)
        return {"access_token": "A2"}

    auth = hr.RefreshAuth(
        {"access_token": "A1", "expires_at": T0 + 400}, refresher, advisory=300, clock=lambda: T0
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(Api())) as client:
        assert client.get("http://api.test/").status_code == 200
    assert calls == []
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="advisory"):
            hr.RefreshAuth({"access_token": "A1"}, refresher, advisory=bad)


def test_R3_permanent_failure_of_an_advisory_refresh_keeps_serving_the_valid_token() -> None:
    """R3 + R10: an advisory refresh rejected permanently (invalid_grant) does not block
    requests while the token is still valid; once the token must be refreshed (mandatory
    window, after the cooldown), the dead grant is found and every request fails fast."""
    now = [T0]
    calls: list[int] = []

    def refresher(**_: Any) -> dict[str, Any]:
        calls.append(1)
        raise hr.ReauthorizationRequired("grant revoked", oauth_error="invalid_grant")

    auth = hr.RefreshAuth(
        credentials(),
        refresher,
        leeway=30,
        advisory=300,
        retry=hr.RetryPolicy(attempts=1, cooldown=5),
        clock=lambda: now[0],
    )
    api = Api()
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        for _ in range(10):
            assert client.get("http://api.test/").status_code == 200
        assert calls == [1]
        now[0] += 175.0  # 25 s before expiry: inside the mandatory leeway, cooldown over
        with pytest.raises(hr.ReauthorizationRequired):
            client.get("http://api.test/")
        assert calls == [1, 1]
        with pytest.raises(hr.ReauthorizationRequired):
            client.get("http://api.test/")
        assert calls == [1, 1]
    assert api.seen == ["A1"] * 10


def test_R3_expires_at_only_tokens_shorter_than_the_window_do_not_refresh_every_request() -> None:
    """R3 + R2: a provider giving only an absolute ``expires_at`` 100 s away, with a 300 s
    advisory window: the window is clamped to 3/4 of that lifetime (75 s), so requests in
    the first 25 s refresh nothing, and the next refresh comes after them."""
    now = [T0]
    calls: list[int] = []

    def refresher(**_: Any) -> dict[str, Any]:
        calls.append(1)
        return {"access_token": f"A{len(calls)}", "expires_at": now[0] + 100}

    auth = hr.RefreshAuth(
        {"refresh_token": "R1"},
        refresher,
        advisory=300,
        min_refresh_interval=0,
        clock=lambda: now[0],
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c:
        for _ in range(25):  # 0 .. 24 s after the first refresh
            assert c.get("http://api.test/").status_code == 200
            now[0] += 1.0
        assert calls == [1]
        now[0] += 1.0  # 26 s: inside the clamped 75 s window
        assert c.get("http://api.test/").status_code == 200
    assert calls == [1, 1]
