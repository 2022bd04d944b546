"""The connector-spec commands: ``httpx-refresh check``, ``request`` and ``test``.

They run against the example connectors in ``examples/connectors`` and a real
:class:`DemoProvider` on 127.0.0.1: mostly in-process through ``_cli.main`` (output
captured with ``capsys``), plus a few real ``python -m httpx_refresh`` subprocesses with a
60 s timeout. Each test checks the exit code documented in ``_cli_spec``'s docstring
(0 ok, 1 HTTP >= 400 or test failed, 2 usage, 3 invalid spec, 4 reconnect, 5 error),
what was printed, and that no secret (client secret, API key, access or refresh token)
nor a ``Traceback`` reached stdout or stderr (DESIGN: no credential value in any message).
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import httpx_refresh as hr
from httpx_refresh._cli import main
from httpx_refresh._demo import DemoProvider, connect_grant, token_active

pytestmark = pytest.mark.integration

CONNECTORS = Path(__file__).resolve().parents[1] / "examples" / "connectors"
ACME = CONNECTORS / "acme-oauth"
SESSION = CONNECTORS / "session-token"
M2M = CONNECTORS / "m2m-client-credentials"
SUBPROCESS_TIMEOUT = 60
#: A long access-token lifetime: no expiry happens during a test unless it asks for one.
LONG_TTL = 300


# -- helpers -----------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """Run ``httpx-refresh ARGV`` in-process; return (exit code, stdout, stderr)."""
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_subprocess(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m httpx_refresh ARGV`` as a real process (bounded by a timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "httpx_refresh", *(str(arg) for arg in argv)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        cwd=cwd,
    )


def assert_clean(text: str, secrets: Iterable[str | None]) -> None:
    """No secret substring and no traceback in ``text`` (the secret itself is never shown)."""
    __tracebackhide__ = True  # pytest would print this frame's arguments: the secrets
    assert "Traceback" not in text, text
    for index, secret in enumerate(secrets):
        leaked = bool(secret) and str(secret) in text
        assert not leaked, f"secret #{index} appears in the output"  # the value is not shown


def write_json(path: Path, data: Any, *, mode: int = 0o600) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    path.chmod(mode)
    return path


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def refresh_calls(provider: DemoProvider, before: Any) -> int:
    return provider.counters().since(before).token_calls.get("refresh_token", 0)


def closed_port_url() -> str:
    """The URL of a 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def acme_parameters(
    directory: Path, provider: DemoProvider, url: str, *, suffix: str = "json"
) -> Path:
    """The acme-oauth connector parameters file (``.json`` or ``.yml``)."""
    data = {
        "clientId": provider.client_id,
        "clientSecret": provider.client_secret,
        "apiBaseUri": url,
    }
    path = directory / f"connector.{suffix}"
    if suffix == "json":
        return write_json(path, data)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def expired(grant: dict[str, Any]) -> dict[str, Any]:
    """The grant as stored credentials whose access token expired a minute ago."""
    credentials = {k: v for k, v in grant.items() if k != "expires_in"}
    credentials["expires_at"] = time.time() - 60
    return credentials


def grant_secrets(provider: DemoProvider, *grants: dict[str, Any]) -> list[str | None]:
    secrets: list[str | None] = [provider.client_secret, provider.api_key]
    for grant in grants:
        secrets += [grant.get("access_token"), grant.get("refresh_token")]
    return secrets


@pytest.fixture
def testing_mode() -> Iterator[None]:
    """Drop retry waits (attempts still happen) for runs whose refresh retries."""
    hr.set_testing(True)
    try:
        yield
    finally:
        hr.set_testing(False)


def echo_app() -> Starlette:
    """Answers every request with what it received (never the Authorization header)."""

    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": [[k, v] for k, v in request.query_params.multi_items()],
                "x_custom": request.headers.getlist("x-custom"),
                "x_other": request.headers.get("x-other"),
                "content_type": request.headers.get("content-type"),
                "authorized": request.headers.get("authorization", "").startswith("Bearer "),
                "body": body.decode("utf-8"),
            }
        )

    return Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST", "PUT"])])


def fake_acme(directory: Path, base_url: str) -> tuple[Path, Path, str]:
    """acme-oauth files for a server that is not the provider: an unexpired fake token."""
    token = "at_fake_" + "x" * 24
    parameters = write_json(
        directory / "connector.json",
        {"clientId": "demo-client", "clientSecret": "fake+secret:99%", "apiBaseUri": base_url},
    )
    credentials = write_json(
        directory / "credentials.json",
        {"access_token": token, "refresh_token": "rt_fake_" + "y" * 24, "token_type": "Bearer"},
    )
    return parameters, credentials, token


# -- check ---------------------------------------------------------------------------------

EXPECTED_CHECK = {
    "acme-oauth": (
        "oauth2",
        ["makeApiClient", "getOAuthConfig", "getCredentialsFromRefreshTokenResponse", "test"],
    ),
    "session-token": (
        "client-credentials",
        ["makeApiClient", "refreshCredentials", "getCredentialsFromConnectionParameters", "test"],
    ),
    "m2m-client-credentials": (
        "client-credentials",
        ["makeApiClient", "refreshCredentials", "getCredentialsFromConnectionParameters", "test"],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CHECK))
def test_check_example_exit0_names_auth_type_and_methods(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """``check`` on each example: exit 0; the auth type and every method are listed."""
    auth_type, methods = EXPECTED_CHECK[name]
    code, out, err = cli(capsys, "check", CONNECTORS / name)
    assert code == 0, err
    assert "valid connector spec" in out
    assert f"auth: {auth_type}" in out
    listed = {
        line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.strip()
    }
    assert set(methods) <= listed, out
    assert_clean(out + err, [])


def test_check_subprocess_exit0() -> None:
    """``python -m httpx_refresh check`` as a real process: exit 0, auth type and methods."""
    result = run_subprocess("check", ACME / "spec.yml", cwd=CONNECTORS)
    assert result.returncode == 0, result.stderr
    assert "auth: oauth2" in result.stdout
    for method in EXPECTED_CHECK["acme-oauth"][1]:
        assert method in result.stdout
    assert_clean(result.stdout + result.stderr, [])


# -- request: refresh once, persist atomically ---------------------------------------------


@pytest.mark.parametrize("suffix", ["json", "yml"])
@pytest.mark.parametrize("how", ["expired", "revoked"])
def test_request_acme_refreshes_once_and_persists_rotated_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str, how: str
) -> None:
    """``request`` with acme-oauth after the access token died (expired per ``expires_at``,
    or revoked at the provider): exactly 1 refresh_token call, exit 0, the body printed;
    the credentials file is replaced atomically (new inode, no temp file left) with the
    rotated refresh token the provider holds active, mode 0600 (it was 0644)."""
    provider = DemoProvider(ttl=1 if how == "expired" else LONG_TTL)
    with provider as url:
        grant = connect_grant(url)
        parameters = acme_parameters(tmp_path, provider, url, suffix=suffix)
        stored = expired(grant) if how == "expired" else dict(grant)
        credentials = write_json(tmp_path / "credentials.json", stored, mode=0o644)
        if how == "revoked":
            assert provider.revoke_access_tokens() == 1
        inode = credentials.stat().st_ino
        before = provider.counters()

        code, out, err = cli(
            capsys,
            "request",
            ACME,
            "--connector-parameters",
            parameters,
            "--credentials",
            credentials,
            "GET",
            "/api/items",
        )

        assert code == 0, err
        assert refresh_calls(provider, before) == 1
        assert out.startswith("HTTP 200")
        assert '"name": "item 1"' in out
        saved = read_json(credentials)
        new_refresh = saved["refresh_token"]
        assert new_refresh != grant["refresh_token"]
        assert saved["access_token"] != grant["access_token"]
        assert provider.refresh_token_state(new_refresh) == "active"
        assert provider.refresh_token_state(grant["refresh_token"]) == "used"
        assert file_mode(credentials) == 0o600
        assert credentials.stat().st_ino != inode  # replaced by rename, not rewritten in place
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [parameters.name, credentials.name]
        )
        assert "credentials written to" in err
        assert str(credentials) in err
        assert "refreshes: 1" in err
        assert f"replays: {0 if how == 'expired' else 1}" in err  # proactive vs on the 401
        assert_clean(out + err, grant_secrets(provider, grant, saved))


@pytest.mark.parametrize(
    ("rejected", "line"),
    [(0, "refreshes: 1, replays: 2\n"), (1, "refreshes: 1, replays: 2 (1 rejected again)\n")],
)
def test_R4_request_summary_shows_rejected_replays(rejected: int, line: str) -> None:
    """R4 / R15: the summary of ``httpx-refresh request`` says when a replay was rejected
    again (the caller got the 401), and stays as it was otherwise."""
    import io
    from types import SimpleNamespace

    from httpx_refresh._cli_spec import _summary

    stats = hr.RefreshStats(1, 2, 0, 0, rejected_replays=rejected)
    err = io.StringIO()
    _summary(SimpleNamespace(auth=SimpleNamespace(stats=stats)), None, err)
    assert err.getvalue() == line


def test_request_acme_subprocess_refreshes_once(tmp_path: Path) -> None:
    """The same refresh-and-persist as a real ``python -m httpx_refresh request`` process."""
    provider = DemoProvider(ttl=1)
    with provider as url:
        grant = connect_grant(url)
        parameters = acme_parameters(tmp_path, provider, url)
        credentials = write_json(tmp_path / "credentials.json", expired(grant))
        before = provider.counters()
        result = run_subprocess(
            "request",
            ACME,
            "--connector-parameters",
            parameters,
            "--credentials",
            credentials,
            "GET",
            "/api/items",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert refresh_calls(provider, before) == 1
        saved = read_json(credentials)
        assert provider.refresh_token_state(saved["refresh_token"]) == "active"
        assert file_mode(credentials) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["connector.json", "credentials.json"]
        assert "HTTP 200" in result.stdout
        assert "credentials written to" in result.stderr
        assert_clean(result.stdout + result.stderr, grant_secrets(provider, grant, saved))


def test_request_acme_fresh_token_no_refresh_file_untouched(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A valid token: 0 refresh calls, the credentials file is neither rewritten nor
    announced as written."""
    provider = DemoProvider(ttl=LONG_TTL)
    with provider as url:
        grant = connect_grant(url)
        parameters = acme_parameters(tmp_path, provider, url)
        credentials = write_json(tmp_path / "credentials.json", grant)
        content = credentials.read_bytes()
        before = provider.counters()
        code, out, err = cli(
            capsys,
            "request",
            ACME,
            "--connector-parameters",
            parameters,
            "--credentials",
            credentials,
            "GET",
            "/api/items",
        )
        assert code == 0, err
        assert refresh_calls(provider, before) == 0
        assert credentials.read_bytes() == content
        assert "written" not in err
        assert_clean(out + err, grant_secrets(provider, grant))


# -- request: body, parameters, headers -------------------------------------------------------


def acme_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str | Path
) -> tuple[int, str, str, DemoProvider, dict[str, Any]]:
    """Run ``request`` with acme-oauth and a fresh grant on a long-ttl provider."""
    provider = DemoProvider(ttl=LONG_TTL)
    with provider as url:
        grant = connect_grant(url)
        parameters = acme_parameters(tmp_path, provider, url)
        credentials = write_json(tmp_path / "credentials.json", grant)
        code, out, err = cli(
            capsys,
            "request",
            ACME,
            "--connector-parameters",
            parameters,
            "--credentials",
            credentials,
            *args,
        )
    return code, out, err, provider, grant


def printed_json(out: str) -> Any:
    status, _, body = out.partition("\n")
    assert status.startswith("HTTP "), out
    return json.loads(body)


def test_request_post_json_data_to_echo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--data '{"a": 1}'`` is sent as a JSON body: /api/echo reports its exact length."""
    code, out, err, provider, grant = acme_request(
        capsys, tmp_path, "POST", "/api/echo", "--data", '{"a": 1}'
    )
    expected = len(httpx.Request("POST", "http://x", json={"a": 1}).content)
    assert code == 0, err
    assert out.startswith("HTTP 200")
    assert printed_json(out) == {"received": expected}
    assert_clean(out + err, grant_secrets(provider, grant))


@pytest.mark.parametrize(
    "content",
    [b'{"b": [1, 2, 3]}', b"plain text, not JSON\n\x00\x01"],
    ids=["json-file", "raw-file"],
)
def test_request_post_data_from_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    """``--data @FILE``: a JSON file is sent as JSON, other bytes as they are."""
    body = tmp_path / "body.bin"
    body.write_bytes(content)
    try:
        length = len(httpx.Request("POST", "http://x", json=json.loads(content)).content)
    except ValueError:
        length = len(content)
    code, out, err, provider, grant = acme_request(
        capsys, tmp_path, "POST", "/api/echo", "--data", f"@{body}"
    )
    assert code == 0, err
    assert printed_json(out) == {"received": length}
    assert_clean(out + err, grant_secrets(provider, grant))


def test_request_params_headers_and_body_reach_the_server(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    run_server: Callable[[Any], str],
) -> None:
    """``--param`` (repeatable, ``=`` in the value kept), ``--header`` (trimmed, repeatable)
    and a plain-text ``--data`` arrive as given, with the connection's bearer token."""
    base = run_server(echo_app())
    parameters, credentials, token = fake_acme(tmp_path, base)
    code, out, err = cli(
        capsys,
        "request",
        ACME,
        "--connector-parameters",
        parameters,
        "--credentials",
        credentials,
        "PUT",
        "/things/7",
        "--param",
        "tag=a",
        "--param",
        "tag=b c",
        "--param",
        "expr=x=1",
        "--header",
        "X-Custom: hello world ",
        "--header",
        "X-Custom:second",
        "--header",
        "X-Other:  v:1",
        "--data",
        "not json",
    )
    assert code == 0, err
    echoed = printed_json(out)
    assert echoed["method"] == "PUT"
    assert echoed["path"] == "/things/7"
    assert echoed["query"] == [["tag", "a"], ["tag", "b c"], ["expr", "x=1"]]
    assert echoed["x_custom"] == ["hello world", "second"]
    assert echoed["x_other"] == "v:1"
    assert echoed["body"] == "not json"
    assert echoed["authorized"] is True
    assert_clean(out + err, [token, "fake+secret:99%"])


def test_request_json_data_content_type(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    run_server: Callable[[Any], str],
) -> None:
    """A JSON ``--data`` goes out as ``application/json`` with the same value."""
    base = run_server(echo_app())
    parameters, credentials, token = fake_acme(tmp_path, base)
    code, out, err = cli(
        capsys,
        "request",
        ACME,
        "--connector-parameters",
        parameters,
        "--credentials",
        credentials,
        "post",
        "/x",
        "--data",
        '{"a": 1}',
    )
    assert code == 0, err
    echoed = printed_json(out)
    assert echoed["method"] == "POST"
    assert echoed["content_type"] == "application/json"
    assert json.loads(echoed["body"]) == {"a": 1}
    assert_clean(out + err, [token, "fake+secret:99%"])


# -- exit 1 -------------------------------------------------------------------------------------


def test_exit1_for_404_without_refresh(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """GET /nonexistent -> 404, not a refresh trigger: exit 1, status printed, 0 refreshes."""
    provider = DemoProvider(ttl=LONG_TTL)
    with provider as url:
        grant = connect_grant(url)
        parameters = acme_parameters(tmp_path, provider, url)
        credentials = write_json(tmp_path / "credentials.json", grant)
        before = provider.counters()
        code, out, err = cli(
            capsys,
            "request",
            ACME,
            "--connector-parameters",
            parameters,
            "--credentials",
            credentials,
            "GET",
            "/nonexistent",
        )
        assert code == 1, err
        assert out.startswith("HTTP 404")
        assert refresh_calls(provider, before) == 0
        assert "refreshes: 0" in err
        assert_clean(out + err, grant_secrets(provider, grant))


# -- exit 2: usage errors --------------------------------------------------------------------


USAGE_CASES = [
    "missing-parameters-file",
    "parameters-not-an-object",
    "parameters-not-json",
    "oauth2-without-credentials",
    "oauth2-credentials-file-missing",
    "credentials-not-an-object",
    "unknown-auth-option",
    "malformed-header",
    "malformed-param",
    "missing-required-parameter",
    "missing-data-file",
    "negative-timeout",
    "nan-timeout",
    "spec-path-missing",
    "relative-path-without-base-uri",
]


@pytest.mark.parametrize("case", USAGE_CASES)
def test_exit2_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str) -> None:
    """Usage errors exit 2 with one ``httpx-refresh:`` line on stderr, nothing on stdout,
    nothing sent, no secret and no traceback."""
    secret = "s3cret+value:77%"
    token = "at_usage_" + "z" * 24
    refresh = "rt_usage_" + "w" * 24
    server = closed_port_url()  # nothing is sent for a usage error
    good = {"clientId": "demo-client", "clientSecret": secret, "apiBaseUri": server}
    parameters = write_json(tmp_path / "connector.json", good)
    credentials = write_json(
        tmp_path / "credentials.json", {"access_token": token, "refresh_token": refresh}
    )
    extra: list[str | Path] = []
    if case == "missing-parameters-file":
        parameters = tmp_path / "nope.json"
    elif case == "parameters-not-an-object":
        write_json(parameters, [good])
    elif case == "parameters-not-json":
        parameters.write_text(f'{{"clientSecret": "{secret}", ', encoding="utf-8")
    elif case == "credentials-not-an-object":
        write_json(credentials, [token, refresh])
    elif case == "unknown-auth-option":
        extra = ["--auth-option", "nope"]
    elif case == "malformed-header":
        extra = ["--header", f"Authorization Bearer {token}"]  # colon forgotten
    elif case == "malformed-param":
        extra = ["--param", "=value"]
    elif case == "missing-required-parameter":
        write_json(parameters, {"clientId": "demo-client", "apiBaseUri": server})
    elif case == "missing-data-file":
        extra = ["--data", f"@{tmp_path / 'no-body.json'}"]
    elif case == "negative-timeout":
        extra = ["--timeout", "-1"]
    elif case == "nan-timeout":
        extra = ["--timeout", "nan"]
    spec_path: Path = ACME
    if case == "spec-path-missing":
        spec_path = tmp_path / "no-such-connector"
    elif case == "relative-path-without-base-uri":
        spec_path = tmp_path / "spec.yml"
        spec_path.write_text(
            "auth:\n  type: client-credentials\n  makeApiClient:\n    type: mapping\n"
            "    mapping:\n      headers: {X-Key: {$var: credentials.key}}\n",
            encoding="utf-8",
        )
    argv: list[str | Path] = ["request", spec_path, "--connector-parameters", parameters]
    if case == "oauth2-credentials-file-missing":
        argv += ["--credentials", tmp_path / "absent.json"]
    elif case != "oauth2-without-credentials":
        argv += ["--credentials", credentials]
    code, out, err = cli(capsys, *argv, "GET", "/api/items", *extra)
    assert code == 2, err
    assert out == ""
    assert err.startswith(("httpx-refresh: ", "usage: httpx-refresh"))
    assert_clean(out + err, [secret, token, refresh])
    expected = {
        "oauth2-credentials-file-missing": "absent.json does not exist",
        "negative-timeout": "must be a positive number of seconds",
        "nan-timeout": "must be a positive number of seconds",
        "spec-path-missing": "no such spec file or connector directory",
        "relative-path-without-base-uri": "gives no baseUri: pass a full URL",
    }.get(case)
    if expected is not None:
        assert expected in err


# -- exit 3: invalid spec ---------------------------------------------------------------------

BROKEN_SPEC = """\
name: Broken
auth:
  type: oauth2
  getOAuthConfig:
    type: mapping
    mapping:
      clientId: x
      tokenUri: http://127.0.0.1:9/token
  makeApiClient:
    type: mapping
    mapping:
      baseUri: {$nosuchformula: 1}
"""


@pytest.mark.parametrize("command", ["check", "request", "test"])
def test_exit3_invalid_spec_names_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """A spec with an unknown formula: exit 3; stderr names the file, line 12 and the key."""
    spec = tmp_path / "broken" / "spec.yml"
    spec.parent.mkdir()
    spec.write_text(BROKEN_SPEC, encoding="utf-8")
    argv: list[str | Path] = [command, spec.parent]
    if command == "request":
        argv += ["GET", "/x"]
    code, out, err = cli(capsys, *argv)
    assert code == 3, err
    assert out == ""
    assert "invalid spec" in err
    assert f"{spec}:12" in err
    assert "baseUri" in err
    assert_clean(out + err, [])


def test_exit3_yaml_syntax_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A spec that is not YAML at all: exit 3, no traceback."""
    spec = tmp_path / "spec.yml"
    spec.write_text("name: x\nauth: [unclosed\n", encoding="utf-8")
    code, out, err = cli(capsys, "check", spec)
    assert code == 3, err
    assert str(spec) in err
    assert_clean(out + err, [])


# -- exit 4: reconnect needed --------------------------------------------------------------------


def test_exit4_session_token_wrong_api_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """session-token with a wrong API key: refreshCredentials raises
    ReauthorizationRequired -> exit 4; exactly 1 /session call; no credentials file written."""
    wrong = "wrong-api-key-" + "q" * 16
    provider = DemoProvider(ttl=LONG_TTL)
    with provider as url:
        parameters = write_json(tmp_path / "connector.json", {"apiBaseUri": url})
        connection = write_json(tmp_path / "connection.json", {"apiKey": wrong})
        credentials = tmp_path / "credentials.json"
        before = provider.counters()
        code, out, err = cli(
            capsys,
            "request",
            SESSION,
            "--connector-parameters",
            parameters,
            "--connection-parameters",
            connection,
            "--credentials",
            credentials,
            "GET",
            "/api/items",
        )
        assert code == 4, err
        assert "reconnect" in err
        assert provider.counters().since(before).token_calls.get("session", 0) == 1
        assert not credentials.exists()
        assert_clean(out + err, [wrong, provider.api_key, provider.client_secret])


def test_exit4_acme_refresh_rejected(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """acme-oauth, expired token, the provider answers invalid_grant: exit 4 after exactly
    1 refresh_token call (permanent, not retried); the credentials file is left as it was."""
    provider = DemoProvider(ttl=1, reject_refreshes=True)
    with provider as url:
        grant = connect_grant(url)
        parameters = acme_parameters(tmp_path, provider, url)
        credentials = write_json(tmp_path / "credentials.json", expired(grant))
        content = credentials.read_bytes()
        before = provider.counters()
        code, out, err = cli(
            capsys,
            "request",
            ACME,
            "--connector-parameters",
            parameters,
            "--credentials",
            credentials,
            "GET",
            "/api/items",
        )
        assert code == 4, err
        assert "reconnect" in err
        assert refresh_calls(provider, before) == 1
        assert credentials.read_bytes() == content
        assert_clean(out + err, grant_secrets(provider, grant))


def test_exit4_subprocess_no_traceback(tmp_path: Path) -> None:
    """The reconnect case as a real process: exit 4, no traceback, no secret (logging's
    last-resort handler writes warnings to stderr there)."""
    provider = DemoProvider(ttl=1, reject_refreshes=True)
    with provider as url:
        grant = connect_grant(url)
        parameters = acme_parameters(tmp_path, provider, url)
        credentials = write_json(tmp_path / "credentials.json", expired(grant))
        result = run_subprocess(
            "request",
            ACME,
            "--connector-parameters",
            parameters,
            "--credentials",
            credentials,
            "GET",
            "/api/items",
            cwd=tmp_path,
        )
        assert result.returncode == 4, result.stderr
        assert_clean(result.stdout + result.stderr, grant_secrets(provider, grant))


# -- exit 5: the server is down -------------------------------------------------------------------


def test_exit5_api_server_down(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """acme-oauth with apiBaseUri on a closed port and a valid-looking token: the request
    cannot be sent -> exit 5, nothing on stdout."""
    down = closed_port_url()
    parameters, credentials, token = fake_acme(tmp_path, down)
    code, out, err = cli(
        capsys,
        "request",
        ACME,
        "--connector-parameters",
        parameters,
        "--credentials",
        credentials,
        "GET",
        "/api/items",
    )
    assert code == 5, err
    assert out == ""
    assert err.startswith("httpx-refresh: ")
    assert f"(to {down})" in err  # where it tried, never the path or query
    assert_clean(out + err, [token, "fake+secret:99%", read_json(credentials)["refresh_token"]])


@pytest.mark.usefixtures("testing_mode")
def test_exit5_refresh_server_down(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """session-token with apiBaseUri on a closed port: the session refresh fails for a
    transient reason (retried without waits) -> exit 5; no credentials file is written."""
    api_key = "key-" + "k" * 20
    parameters = write_json(tmp_path / "connector.json", {"apiBaseUri": closed_port_url()})
    connection = write_json(tmp_path / "connection.json", {"apiKey": api_key})
    credentials = tmp_path / "credentials.json"
    code, out, err = cli(
        capsys,
        "request",
        SESSION,
        "--connector-parameters",
        parameters,
        "--connection-parameters",
        connection,
        "--credentials",
        credentials,
        "GET",
        "/api/items",
    )
    assert code == 5, err
    assert out == ""
    assert not credentials.exists()
    assert_clean(out + err, [api_key])


# -- session token: the credentials file is created -------------------------------------------


def test_session_token_creates_credentials_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """session-token with no credentials file yet: exactly 1 /session call before the
    request (R2), exit 0, the file is created with the active session token, mode 0600,
    no temp file left; neither the API key nor the session token is printed."""
    provider = DemoProvider(ttl=LONG_TTL)
    with provider as url:
        parameters = write_json(tmp_path / "connector.json", {"apiBaseUri": url})
        connection = write_json(tmp_path / "connection.json", {"apiKey": provider.api_key})
        credentials = tmp_path / "credentials.json"
        before = provider.counters()
        code, out, err = cli(
            capsys,
            "request",
            SESSION,
            "--connector-parameters",
            parameters,
            "--connection-parameters",
            connection,
            "--credentials",
            credentials,
            "GET",
            "/api/items",
        )
        assert code == 0, err
        delta = provider.counters().since(before)
        assert delta.token_calls.get("session", 0) == 1
        assert delta.api_unauthorized == 0
        assert out.startswith("HTTP 200")
        assert '"name": "item 1"' in out
        saved = read_json(credentials)
        assert token_active(url, saved["access_token"])
        assert file_mode(credentials) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["connector.json", "connection.json", "credentials.json"]
        )
        assert "credentials written to" in err
        assert_clean(out + err, [provider.api_key, saved["access_token"]])


# -- test ---------------------------------------------------------------------------------------


def test_test_command_acme_passes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``test`` with acme-oauth (rest-api-mapping test): exit 0, "test passed", no refresh."""
    provider = DemoProvider(ttl=LONG_TTL)
    with provider as url:
        grant = connect_grant(url)
        parameters = acme_parameters(tmp_path, provider, url)
        credentials = write_json(tmp_path / "credentials.json", grant)
        before = provider.counters()
        code, out, err = cli(
            capsys, "test", ACME, "--connector-parameters", parameters, "--credentials", credentials
        )
        assert code == 0, err
        assert out == "test passed\n"
        assert refresh_calls(provider, before) == 0
        assert_clean(out + err, grant_secrets(provider, grant))


def test_test_command_session_token_passes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``test`` with session-token (python test): exit 0, "test passed", 1 /session call."""
    provider = DemoProvider(ttl=LONG_TTL)
    with provider as url:
        parameters = write_json(tmp_path / "connector.json", {"apiBaseUri": url})
        connection = write_json(tmp_path / "connection.json", {"apiKey": provider.api_key})
        before = provider.counters()
        code, out, err = cli(
            capsys,
            "test",
            SESSION,
            "--connector-parameters",
            parameters,
            "--connection-parameters",
            connection,
        )
        assert code == 0, err
        assert out == "test passed\n"
        assert provider.counters().since(before).token_calls.get("session", 0) == 1
        assert_clean(out + err, [provider.api_key, provider.client_secret])


def test_test_command_m2m_passes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``test`` with m2m-client-credentials (async python refresher, rest test): exit 0,
    exactly 1 client_credentials call."""
    provider = DemoProvider(ttl=LONG_TTL)
    with provider as url:
        connection = write_json(
            tmp_path / "connection.json",
            {
                "clientId": provider.client_id,
                "clientSecret": provider.client_secret,
                "baseUri": url,
            },
        )
        before = provider.counters()
        code, out, err = cli(capsys, "test", M2M, "--connection-parameters", connection)
        assert code == 0, err
        assert out == "test passed\n"
        delta = provider.counters().since(before)
        assert delta.token_calls.get("client_credentials", 0) == 1
        assert_clean(out + err, [provider.client_secret])


def test_test_command_subprocess_session_token(tmp_path: Path) -> None:
    """``test`` as a real process (session-token): exit 0 "test passed", credentials
    file created 0600."""
    provider = DemoProvider(ttl=LONG_TTL)
    with provider as url:
        parameters = write_json(tmp_path / "connector.json", {"apiBaseUri": url})
        connection = write_json(tmp_path / "connection.json", {"apiKey": provider.api_key})
        credentials = tmp_path / "credentials.json"
        result = run_subprocess(
            "test",
            SESSION,
            "--connector-parameters",
            parameters,
            "--connection-parameters",
            connection,
            "--credentials",
            credentials,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "test passed\n"
        assert file_mode(credentials) == 0o600
        saved = read_json(credentials)
        assert_clean(result.stdout + result.stderr, [provider.api_key, saved["access_token"]])


def test_test_command_failing_exit1(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    run_server: Callable[[Any], str],
) -> None:
    """acme-oauth's test needs a non-empty item list: a server answering 200 with no items
    fails it -> exit 1 "test failed", no secret printed."""

    async def items(request: Request) -> JSONResponse:
        return JSONResponse({"items": []})

    base = run_server(Starlette(routes=[Route("/api/items", items)]))
    parameters, credentials, token = fake_acme(tmp_path, base)
    code, out, err = cli(
        capsys, "test", ACME, "--connector-parameters", parameters, "--credentials", credentials
    )
    assert code == 1, err
    assert out == "test failed: responseMapping was false for HTTP 200 from GET /api/items\n"
    assert_clean(out + err, [token, "fake+secret:99%", read_json(credentials)["refresh_token"]])
