"""The demo: its OAuth 2.0 provider, the ``httpx-refresh demo`` command, and the examples.

The provider runs for real on 127.0.0.1 (uvicorn in a thread); the examples and
``demo --serve`` run as subprocesses with bounded timeouts.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import httpx_refresh as hr
from httpx_refresh import _demo
from httpx_refresh._cli import main
from httpx_refresh._demo import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DemoProvider,
    DemoReport,
    RevocationTimer,
    allowed_token_calls,
    calibrated_ttl,
    default_leeway,
    plan_schedule,
    refresh_interval,
    verdict,
)

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUBPROCESS_TIMEOUT = 60
CLIENT = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}


def basic(client_id: str, client_secret: str) -> str:
    """RFC 6749 section 2.3.1 Basic credentials, built independently of the library."""
    from urllib.parse import quote_plus

    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture
def provider() -> Iterator[DemoProvider]:
    """A running provider with a 1 s ttl and no artificial latency."""
    instance = DemoProvider(ttl=1)
    with instance:
        yield instance


def refresh(url: str, refresh_token: str) -> httpx.Response:
    return httpx.post(
        f"{url}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers={"Authorization": basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)},
    )


def items(url: str, token: str | None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{url}/api/items", headers=headers)


# -- the provider ------------------------------------------------------------------------


def test_provider_token_responses_follow_rfc6749_5_1(provider: DemoProvider) -> None:
    """/dev/connect and refreshes answer RFC 6749 section 5.1 fields, Cache-Control: no-store."""
    url = provider.url
    connected = httpx.post(f"{url}/dev/connect", data=CLIENT)
    assert connected.status_code == 200
    assert connected.headers["cache-control"] == "no-store"
    grant = connected.json()
    assert grant["token_type"] == "Bearer"
    assert grant["expires_in"] == 1
    assert isinstance(grant["expires_in"], int)
    assert grant["access_token"]
    assert grant["refresh_token"]

    refreshed = refresh(url, grant["refresh_token"])
    assert refreshed.status_code == 200
    assert refreshed.headers["cache-control"] == "no-store"
    body = refreshed.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["access_token"] != grant["access_token"]
    assert body["refresh_token"] != grant["refresh_token"]
    assert items(url, body["access_token"]).status_code == 200
    counters = provider.counters()
    assert dict(counters.token_calls) == {"refresh_token": 1}
    assert counters.connects == 1


def test_provider_rotates_refresh_tokens(provider: DemoProvider) -> None:
    """Each refresh token works once: after use it is 'used', its successor 'active'."""
    r0 = provider.connect()["refresh_token"]
    r1 = refresh(provider.url, r0).json()["refresh_token"]
    r2 = refresh(provider.url, r1).json()["refresh_token"]
    assert provider.refresh_token_state(r0) == "used"
    assert provider.refresh_token_state(r1) == "used"
    assert provider.refresh_token_state(r2) == "active"
    assert provider.counters().invalid_grant == 0


def test_provider_reuse_of_a_rotated_refresh_token_revokes_the_grant(
    provider: DemoProvider,
) -> None:
    """Reusing a rotated-away refresh token answers invalid_grant and kills the whole family."""
    url = provider.url
    r0 = provider.connect()["refresh_token"]
    first = refresh(url, r0).json()
    a1, r1 = first["access_token"], first["refresh_token"]
    assert items(url, a1).status_code == 200

    reused = refresh(url, r0)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert reused.headers["cache-control"] == "no-store"
    # The legitimate holder's tokens died with the grant.
    assert provider.refresh_token_state(r1) == "revoked"
    assert refresh(url, r1).json()["error"] == "invalid_grant"
    assert items(url, a1).status_code == 401
    assert provider.counters().invalid_grant == 2
    # Another grant of the same client is untouched.
    other = provider.connect()
    assert refresh(url, other["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    ("how", "status", "error"),
    [
        ("basic-urlencoded", 200, None),
        ("body", 200, None),
        ("basic-raw", 401, "invalid_client"),  # the secret's '+' decodes to a space
        ("wrong-secret", 401, "invalid_client"),
        ("none", 401, "invalid_client"),
        ("both", 400, "invalid_request"),
    ],
)
def test_provider_client_authentication_rfc6749_2_3_1(
    provider: DemoProvider, how: str, status: int, error: str | None
) -> None:
    """Basic needs id and secret form-urlencoded before base64; body fields work; not both."""
    form: dict[str, str] = {"grant_type": "client_credentials"}
    headers: dict[str, str] = {}
    if how == "basic-urlencoded":
        headers["Authorization"] = basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
    elif how == "basic-raw":
        raw = f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    elif how == "body":
        form.update(CLIENT)
    elif how == "wrong-secret":
        form.update(client_id=DEFAULT_CLIENT_ID, client_secret="nope")
    elif how == "both":
        headers["Authorization"] = basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
        form.update(CLIENT)
    response = httpx.post(f"{provider.url}/token", data=form, headers=headers)
    assert response.status_code == status
    if error is None:
        body = response.json()
        assert "refresh_token" not in body  # client_credentials issues no refresh token
        assert items(provider.url, body["access_token"]).status_code == 200
    else:
        assert response.json()["error"] == error
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Basic ")
    assert dict(provider.counters().token_calls) == {"client_credentials": 1}


@pytest.mark.parametrize(
    ("content", "content_type", "error"),
    [
        ("grant_type=password", "application/x-www-form-urlencoded", "unsupported_grant_type"),
        ("scope=x", "application/x-www-form-urlencoded", "invalid_request"),  # no grant_type
        ("grant_type=refresh_token", "application/x-www-form-urlencoded", "invalid_request"),
        (
            "grant_type=refresh_token&grant_type=refresh_token",
            "application/x-www-form-urlencoded",
            "invalid_request",  # RFC 6749 section 3.2: no parameter twice
        ),
        ('{"grant_type": "client_credentials"}', "application/json", "invalid_request"),
    ],
)
def test_provider_rejects_malformed_token_requests_rfc6749_5_2(
    provider: DemoProvider, content: str, content_type: str, error: str
) -> None:
    """Malformed token requests answer 400 with the RFC 6749 section 5.2 error code."""
    response = httpx.post(
        f"{provider.url}/token",
        content=content,
        headers={
            "Content-Type": content_type,
            "Authorization": basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"
    assert provider.counters().token_calls_total == 1


def test_provider_api_requires_a_valid_unexpired_bearer_token() -> None:
    """401 with a Bearer challenge (error="invalid_token" when a token was sent); expiry counts."""
    now = [1000.0]
    with DemoProvider(ttl=10, clock=lambda: now[0]) as url:
        provider_token = httpx.post(f"{url}/dev/connect", data=CLIENT).json()["access_token"]
        missing = items(url, None)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="httpx-refresh demo"'
        bad = items(url, "not-a-token")
        assert bad.status_code == 401
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]
        assert items(url, provider_token).status_code == 200
        echo = httpx.post(
            f"{url}/api/echo",
            content=b"x" * 1234,
            headers={"Authorization": f"Bearer {provider_token}"},
        )
        assert echo.json() == {"received": 1234}
        now[0] += 9.9
        assert items(url, provider_token).status_code == 200
        now[0] += 0.1
        expired = items(url, provider_token)
        assert expired.status_code == 401
        assert 'error="invalid_token"' in expired.headers["www-authenticate"]


def test_provider_admin_revoke_kills_access_tokens_only(provider: DemoProvider) -> None:
    """POST /admin/revoke revokes every access token; refresh tokens keep working."""
    url = provider.url
    grants = [provider.connect() for _ in range(3)]
    assert httpx.post(f"{url}/admin/revoke").status_code == 401  # needs client auth
    response = httpx.post(f"{url}/admin/revoke", data=CLIENT)
    assert response.json() == {"revoked": 3}
    assert all(items(url, g["access_token"]).status_code == 401 for g in grants)
    fresh = refresh(url, grants[0]["refresh_token"]).json()["access_token"]
    assert items(url, fresh).status_code == 200
    counters = provider.counters()
    assert (counters.revocations, counters.api_unauthorized, counters.api_successes) == (1, 3, 1)


def test_provider_introspection_rfc7662(provider: DemoProvider) -> None:
    """/introspect tells active tokens from used ones without consuming them."""
    url = provider.url
    grant = provider.connect()

    def active(token: str) -> bool:
        return bool(
            httpx.post(f"{url}/introspect", data={"token": token, **CLIENT}).json()["active"]
        )

    assert active(grant["refresh_token"])
    assert active(grant["access_token"])
    assert active(grant["refresh_token"])  # asking twice did not use it
    refresh(url, grant["refresh_token"])
    assert not active(grant["refresh_token"])
    assert not active("unknown")


def test_provider_token_latency_delays_the_token_endpoint_only() -> None:
    """token_latency applies to POST /token, not to the API."""
    with DemoProvider(ttl=5, token_latency=0.3) as url:
        grant = httpx.post(f"{url}/dev/connect", data=CLIENT).json()
        token_call = refresh(url, grant["refresh_token"])
        assert token_call.elapsed.total_seconds() >= 0.3
        api_call = items(url, token_call.json()["access_token"])
        assert api_call.elapsed.total_seconds() < 0.3


def test_provider_repr_hides_the_client_secret(provider: DemoProvider) -> None:
    """No secret in repr() (DESIGN: no secret in reprs)."""
    assert DEFAULT_CLIENT_SECRET not in repr(provider)
    assert "***" in repr(provider)


# -- the pure parts of the demo ---------------------------------------------------------


def test_R2_refresh_interval_uses_the_clamped_default_leeway() -> None:
    """R2: the expiry period is ttl minus the leeway clamped to half the ttl."""
    leeway = inspect_default_leeway()
    assert default_leeway() == leeway
    assert refresh_interval(2.0, leeway) == 2.0 - min(leeway, 1.0)
    assert refresh_interval(2.0, 30.0) == 1.0
    assert refresh_interval(100.0, 30.0) == 70.0
    assert allowed_token_calls(7.2, 1.0, 1) == 9
    assert allowed_token_calls(7.0, 1.0, 0) == 7


def inspect_default_leeway() -> float:
    import inspect

    return float(inspect.signature(hr.RefreshAuth).parameters["leeway"].default)


@pytest.mark.parametrize(
    ("burst_p99", "ttl"), [(0.0, 2.0), (0.4, 2.0), (0.41, 2.5), (1.0, 5.0), (1.9133, 10.0)]
)
def test_R4_calibrated_ttl_is_5x_the_burst_p99_at_least_2s(burst_p99: float, ttl: float) -> None:
    """R4 (demo): the default token lifetime is DEFAULT_TTL (2 s) on a machine that answers a
    burst of ``concurrency`` requests within 0.4 s (p99), else 5 x that, rounded up to 0.5 s:
    the clamped leeway (half the lifetime) covers 2.5 x the worst queueing seen."""
    assert calibrated_ttl(burst_p99) == ttl


def test_plan_schedule_spreads_requests_over_3_6_ttl() -> None:
    """Requests are evenly paced over 3.6 ttl (at least 3 expiries); revocation mid-run."""
    schedule = plan_schedule(2000, 2.0, 1.0)
    assert len(schedule.offsets) == 2000
    assert schedule.offsets[0] == 0.0
    assert list(schedule.offsets) == sorted(schedule.offsets)
    assert 7.19 < schedule.offsets[-1] < 7.2
    assert schedule.revoke_after == pytest.approx(3.6)
    assert schedule.revoke_after < schedule.revoke_by <= 7.2


def test_revocation_timer_waits_for_the_middle_of_a_refresh_period() -> None:
    """The revocation lands halfway between refreshes, never right after one."""
    schedule = plan_schedule(100, 2.0, 1.0)  # revoke after 3.6 s, by 5.6 s
    version = [0]
    timer = RevocationTimer(schedule, 1.0, lambda: version[0], start=0.0)
    assert timer.wait(1.0) == pytest.approx(0.05)  # before the middle: poll
    version[0] = 3
    assert timer.wait(3.3) is not None  # refresh seen at 3.3
    assert timer.wait(3.6) == pytest.approx(0.2)  # 0.3 s after it: wait until 0.5 s
    assert timer.wait(3.8) is None  # halfway: revoke
    timer = RevocationTimer(schedule, 1.0, lambda: version[0], start=0.0)
    version[0] = 4
    assert timer.wait(2.9) is not None  # refresh seen at 2.9
    assert timer.wait(3.65) == pytest.approx(0.05)  # 0.75 s after it: wait for the next one
    version[0] = 5
    assert timer.wait(4.0) == pytest.approx(0.5)
    assert timer.wait(4.5) is None
    stuck = RevocationTimer(schedule, 1.0, lambda: 0, start=0.0)
    assert stuck.wait(3.7) is not None  # 3.7 s since the last refresh: wait
    assert stuck.wait(5.6) is None  # but not past revoke_by


def report(**changes: Any) -> DemoReport:
    fields: dict[str, Any] = {
        "mode": "test",
        "requests": 100,
        "concurrency": 10,
        "ttl": 2.0,
        "leeway": 30.0,
        "successes": 100,
        "failures": 0,
        "failure_reasons": {},
        "unauthorized": 10,
        "token_calls": 9,
        "invalid_grant": 0,
        "revocations": 1,
        "refreshes": 9,
        "replays": 10,
        "deduplicated": 50,
        "span": 7.5,
        "wall": 7.4,
        "p50": 0.001,
        "p99": 0.1,
        "final_refresh_token": "accepted",
    }
    fields.update(changes)
    return DemoReport(**fields)


def test_verdict_passes_a_clean_run_at_the_bound() -> None:
    """8 periods of 1 s + 1 revocation allow exactly 9 token calls."""
    assert report().allowed_token_calls == 9
    assert verdict(report()) == []


def test_R5_verdict_fails_one_token_call_over_the_bound() -> None:
    """R5: one call more than one per refresh period plus one per revocation is a failure."""
    (reason,) = verdict(report(token_calls=10))
    assert "10 token-endpoint calls, more than the 9 allowed" in reason


def test_verdict_fails_failed_requests_and_a_lost_refresh_token() -> None:
    """Failed requests, reused refresh tokens and a rejected final refresh token each fail."""
    reasons = verdict(
        report(
            successes=97,
            failures=3,
            failure_reasons={"HTTP 401": 3},
            final_refresh_token="rejected",
        )
    )
    assert len(reasons) == 2
    assert "3 of 100 requests failed (HTTP 401 x3)" in reasons[0]
    assert "rotated refresh token was lost" in reasons[1]
    (reason,) = verdict(report(invalid_grant=1))
    assert "invalid_grant" in reason


# -- the command ----------------------------------------------------------------------


SMALL = ["--requests", "200", "--concurrency", "20", "--ttl", "1"]


def parse_table(text: str) -> dict[str, str]:
    """Read the demo's table: a 24-column label, then a right-aligned 20-column value."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("  ") and len(line) >= 46 and line[2] != " ":
            rows[line[2:26].strip()] = line[26:46].strip()
    return rows


def check_clean_run(out: str) -> dict[str, str]:
    rows = parse_table(out)
    assert rows["requests"] == "200"
    assert rows["successes"] == "200"
    assert rows["failures"] == "0"
    calls = re.search(r"token-endpoint calls\s+(\d+)\s+allowed (\d+): (\d+) refresh periods", out)
    assert calls is not None, out
    used, allowed, periods = (int(n) for n in calls.groups())
    # ttl 1 s, interval 0.5 s, ~3.6 s span: ~8 periods; at least one refresh per 2 periods.
    assert 3 <= used <= allowed == periods + 1
    assert int(rows["revocations"]) == 1
    assert int(rows["token expiries spanned"]) >= 3
    assert int(rows["401s seen (server)"]) >= 1  # the revocation caused a 401 storm
    assert rows["final refresh token"].startswith("accepted")
    assert "OK:" in out
    assert "FAILED" not in out
    assert DEFAULT_CLIENT_SECRET not in out
    return rows


@pytest.mark.parametrize(
    ("backend", "clients"), [("asyncio", "1"), ("asyncio", "4"), ("trio", "1")]
)
def test_R5_demo_async_end_to_end(
    backend: str, clients: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """R5/R2: the async demo passes: no failure, token calls within one per period + revocation."""
    code = main(["demo", *SMALL, "--backend", backend, "--clients", clients, "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    check_clean_run(out)
    name = httpx.__name__  # httpx2 when the suite runs on it
    expected = f"one {name}.AsyncClient" if clients == "1" else f"4 {name}.AsyncClients"
    assert f"async ({backend}), {expected}" in out
    assert err == ""  # --no-progress


def test_R5_demo_sync_threads_end_to_end(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """R5: the --sync demo (20 threads, one httpx.Client) passes, with a progress line
    when stderr is a terminal."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code = main(["demo", *SMALL, "--sync"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    check_clean_run(out)
    assert f"sync, 20 threads sharing one {httpx.__name__}.Client" in out
    assert err.startswith("\rsync: ")
    assert err.endswith("\n")
    assert "200/200 requests, 0 failed" in err
    assert DEFAULT_CLIENT_SECRET not in err


def test_demo_shows_no_progress_line_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A log file gets the table only, not one endless carriage-return line."""
    code = main(["demo", *SMALL, "--sync"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    check_clean_run(out)
    assert err == ""


def test_R10_demo_with_a_provider_rejecting_refreshes_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """R10: every refresh rejected: the run fails, says why, and the token endpoint saw 1 call."""
    code = main(["demo", *SMALL, "--reject-refreshes", "--no-progress"])
    out, _ = capsys.readouterr()
    assert code == 1
    rows = parse_table(out)
    assert int(rows["failures"]) > 0
    assert re.search(r"token-endpoint calls\s+1\s", out)  # later requests fail fast
    assert "FAILED:" in out
    assert re.search(r"requests failed \(ReauthorizationRequired x\d+\)", out)


def test_R4_demo_default_ttl_is_calibrated_to_the_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """R4 (demo): without --ttl the demo measures a burst of --concurrency requests first,
    says so, and runs with the lifetime it chose (2 s, or longer on a busy machine)."""
    code = main(["demo", "--requests", "200", "--concurrency", "20", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    check_clean_run(out)
    line = re.search(
        r"\n  ttl ([\d.]+) s: calibrated, 5 x the p99 latency \(([\d.]+) ms\) of a burst of 20 "
        r"requests, at least 2 s \(--ttl to set it\)\n",
        out,
    )
    assert line is not None, out
    ttl, burst = float(line[1]), float(line[2]) / 1000
    assert ttl == pytest.approx(calibrated_ttl(burst), abs=0.5)  # the table rounds to 0.1 ms
    assert f"at concurrency 20, ttl {ttl:g} s\n" in out


def test_R4_demo_failing_on_tokens_expired_in_transit_names_the_cause_and_the_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """R4: 0.1 ms tokens expire before any request reaches the API, so every request fails
    after its two replays (the second because the first one's token expired in transit):
    the demo counts the rejected replays, names the likely cause with the load average and
    the options to change, and prints no log line of its own on stderr."""
    tiny = ["--ttl", "0.0001", "--requests", "20", "--concurrency", "5", "--token-latency", "0"]
    code = main(["demo", *tiny, "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1, out
    rows = parse_table(out)
    assert (rows["failures"], rows["rejected replays"]) == ("20", "20")
    assert "auth.stats; 20 replayed once more after their token expired in transit" in out
    assert "  - 20 of 20 requests failed (HTTP 401 x20)\n" in out
    cause = re.search(
        r"  - 20 requests were rejected after their replay \(likely reasons, all rejected "
        r"replays: expired x40\): the token expired in transit: requests took [\d.]+ ms "
        r"\(median\) and [\d.]+ ms \(p99\) against 0\.0001 s tokens, refreshed 5e-05 s "
        r"before expiry; the machine may be overloaded \(load average [\d.]+ on \d+ CPUs\); "
        r"try a lower --concurrency \(now 5\) or a longer --ttl \(now 0\.0001\)\n",
        out,
    )
    assert cause is not None, out
    assert err == ""


def test_R4_verdict_says_fresh_tokens_rejected_is_not_a_lifetime_problem() -> None:
    """R4: replays rejected with fresh tokens are named as such, without blaming the load."""
    reasons = verdict(
        report(
            successes=98,
            failures=2,
            failure_reasons={"HTTP 401": 2},
            rejected_replays=2,
            rejection_reasons={"fresh": 2},
        )
    )
    assert reasons[1] == (
        "2 requests were rejected after their replay (likely reasons, all rejected replays: "
        "fresh x2): the API rejected fresh tokens; this is not a token-lifetime problem"
    )


def test_demo_without_the_demo_extra_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without uvicorn the demo says how to install it and exits 2."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["demo"]) == 2
    assert main(["demo", "--serve"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'httpx-refresh[demo]'" in err
    assert "uvicorn" in err


def test_importing_the_package_and_cli_does_not_need_the_demo_extra() -> None:
    """`import httpx_refresh` (and the CLI module) work with uvicorn and starlette missing."""
    code = (
        "import sys; sys.modules['uvicorn'] = None; sys.modules['starlette'] = None\n"
        "import httpx_refresh, httpx_refresh._cli, httpx_refresh._demo\n"
        "raise SystemExit(httpx_refresh._cli.main(['demo']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'httpx-refresh[demo]'" in result.stderr


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        ([], 2),
        (["--version"], 0),
        (["demo", "--help"], 0),
        (["demo", "--requests", "0"], 2),
        (["demo", "--ttl", "0"], 2),
        (["demo", "--ttl", "nan"], 2),
        (["demo", "--port", "8000"], 2),
        (["demo", "--sync", "--clients", "3"], 2),
        (["nope"], 2),
    ],
)
def test_cli_usage(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    """main() returns exit codes instead of raising SystemExit."""
    assert main(argv) == code
    capsys.readouterr()


# -- the examples, as subprocesses -------------------------------------------------------


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def test_R9_example_sync_threads_persists_rotated_tokens(tmp_path: Path) -> None:
    """R9: 16 threads, on_refresh writes the JSON file; a second run resumes the saved grant."""
    store = tmp_path / "credentials.json"
    provider = DemoProvider(ttl=1, token_latency=0.05)
    with provider as url:
        provider_args = ["--url", url, "--store", str(store), "--requests", "12", "--pause", "0.2"]
        first = run_example("sync_threads.py", *provider_args)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "connected: new grant saved" in first.stdout
        assert "192 ok, 0 failed" in first.stdout
        assert "the file holds the current refresh token: yes" in first.stdout
        saved = json.loads(store.read_text())
        assert provider.refresh_token_state(saved["refresh_token"]) == "active"

        second = run_example("sync_threads.py", *provider_args)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "loaded the saved grant" in second.stdout
        saved_again = json.loads(store.read_text())
        assert saved_again["refresh_token"] != saved["refresh_token"]
        assert provider.refresh_token_state(saved_again["refresh_token"]) == "active"
        assert store.stat().st_mode & 0o777 == 0o600
    counters = provider.counters()
    assert counters.connects == 1  # the second run never reconnected
    assert counters.invalid_grant == 0  # no refresh token was ever used twice
    assert counters.token_calls["refresh_token"] >= 2  # each run crossed an expiry
    for output in (first.stdout + first.stderr, second.stdout + second.stderr):
        assert saved["refresh_token"] not in output
        assert DEFAULT_CLIENT_SECRET not in output


def test_R10_example_sync_threads_reconnects_when_the_saved_grant_is_dead(tmp_path: Path) -> None:
    """R10: a saved grant the provider does not know fails once, then the app reconnects."""
    store = tmp_path / "credentials.json"
    store.write_text(
        json.dumps({"access_token": "at_old", "refresh_token": "rt_old", "expires_at": 1})
    )
    provider = DemoProvider(ttl=30)  # the new grant needs no refresh during the run
    with provider as url:
        result = run_example(
            "sync_threads.py", "--url", url, "--store", str(store), "--threads", "4",
            "--requests", "3", "--pause", "0",
        )  # fmt: skip
        saved = json.loads(store.read_text())
        assert provider.refresh_token_state(saved["refresh_token"]) == "active"
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the saved grant was rejected: reconnecting" in result.stdout
    assert "12 ok, 0 failed" in result.stdout
    counters = provider.counters()
    assert (counters.invalid_grant, counters.connects) == (1, 1)
    assert dict(counters.token_calls) == {"refresh_token": 1}


def test_R5_example_async_script_one_token_call_per_refresh() -> None:
    """R5/R2: the client-credentials script: every refresh was exactly one token-endpoint call,
    and every token was replaced before it expired (no 401). Tokens live 3 s (refreshed
    1.5 s before expiry): with 1 s tokens a loaded machine delayed requests past the 0.5 s
    margin, and the API rightly rejected some."""
    provider = DemoProvider(ttl=3, token_latency=0.05)
    with provider as url:
        result = run_example("async_script.py", "--url", url, "--seconds", "4")
    counters = provider.counters()
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\d+ requests \(50 at a time\) in [\d.]+ s: \d+ ok, 0 failed", result.stdout)
    match = re.search(r"refreshes: (\d+), deduplicated waiters: (\d+)", result.stdout)
    assert match is not None, result.stdout
    refreshes, deduplicated = int(match.group(1)), int(match.group(2))
    assert refreshes >= 2  # the first token, then at least one after an expiry
    assert dict(counters.token_calls) == {"client_credentials": refreshes}
    assert deduplicated >= 49  # the 49 other requests of the first round joined the flight
    assert counters.api_unauthorized == 0


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_demo_serve_runs_the_provider_for_the_examples() -> None:
    """`demo --serve` prints its URL and client, serves an example, and stops on Ctrl-C."""
    server = subprocess.Popen(
        [sys.executable, "-m", "httpx_refresh", "demo", "--serve", "--port", "0", "--ttl", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As in a terminal: a shell ignores SIGINT in commands it runs in the background
        # (CI runs one pass of the suite that way), and the child would inherit that.
        preexec_fn=_default_sigint,
    )
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline()]
        while banner[-1] and not banner[-1].startswith("Ctrl-C"):
            banner.append(server.stdout.readline())
        match = re.match(r"httpx-refresh demo provider at (http://127\.0\.0\.1:\d+) ", banner[0])
        assert match is not None, banner
        url = match.group(1)
        example = run_example("async_script.py", "--url", url, "--seconds", "1.5")
        assert example.returncode == 0, example.stdout + example.stderr
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert server.returncode == 0, err
    assert f"  client id       {DEFAULT_CLIENT_ID}\n" in banner
    assert f"  client secret   {DEFAULT_CLIENT_SECRET}\n" in banner
    assert re.search(r"stopped: [1-9]\d* token-endpoint calls, [1-9]\d* API successes", out)


def test_demo_module_exports() -> None:
    """The provider and the runner are reachable for tests and benchmarks."""
    assert {"DemoProvider", "ProviderCounters", "run_demo", "serve_forever"} <= set(_demo.__all__)
