"""JavaScript methods that fail (issue 8 item 2): each failure is a RefreshError or a
SpecError that names the file and says what happened, with no secret in it, and the
credentials are left as they were."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from jsconnectors import (
    CLIENT_SECRET,
    PARAMETERS,
    TokenServer,
    copy_docs_example,
    counting_node,
    require_node,
    write_connector,
)

import httpx_refresh as hr

SECRET = "sekret-credential-4b1c"
START = {"accessToken": SECRET, "keep": "me"}

SPEC = """
name: Failing
auth:
  type: client-credentials
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.invalid
  refreshCredentials:
    implementationType: javascript
    filePath: auth/refresh-credentials.js
"""


def _connection(tmp_path: Path, source: str, **load: Any) -> tuple[hr.Connection, str]:
    require_node()
    root = write_connector(tmp_path / "c", SPEC, {"auth/refresh-credentials.js": source})
    connection = hr.load_connector(root, **load).connect(
        connector_parameters=PARAMETERS, credentials=dict(START)
    )
    return connection, f"{root}/auth/refresh-credentials.js"


def _refresh_error(connection: hr.Connection, kind: type[Exception]) -> str:
    with pytest.raises(kind) as caught:
        connection.auth.refresh()
    message = str(caught.value)
    assert SECRET not in message
    assert CLIENT_SECRET not in message
    assert dict(connection.credentials) == START  # nothing merged, nothing cleared
    return message


def test_thrown_error_names_file_line_and_type_never_the_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A thrown error (its message holds the credential) becomes a permanent RefreshError
    naming the file, the line and the type; neither the message nor the connector's
    console.log output (the secret) shows in the error, the log or the test's output."""
    connection, file = _connection(
        tmp_path,
        """
        export default async function ({ credentials, connectorParameters }) {
          console.log('refreshing', credentials.accessToken, connectorParameters.clientSecret)
          process.stdout.write(`raw ${credentials.accessToken}\\n`)
          throw new TypeError(`bad token ${credentials.accessToken}`)
        }
        """,
    )
    message = _refresh_error(connection, hr.RefreshError)
    assert message == f"refreshCredentials in {file}:5 threw TypeError"
    captured = capfd.readouterr()
    for text in (caplog.text, captured.out, captured.err):
        assert SECRET not in text
        assert CLIENT_SECRET not in text


def test_thrown_non_error_value(tmp_path: Path) -> None:
    """``throw 'a string'`` (no stack): the type and the file, no line, no value."""
    connection, file = _connection(
        tmp_path,
        "export default async ({ credentials }) => { throw credentials.accessToken }\n",
    )
    assert _refresh_error(connection, hr.RefreshError) == (
        f"refreshCredentials in {file} threw string"
    )


def test_non_json_results(tmp_path: Path) -> None:
    """A result JSON cannot hold (a BigInt, a cycle) is a SpecError naming the file."""
    connection, file = _connection(tmp_path, "export default async () => ({ accessToken: 10n })\n")
    message = _refresh_error(connection, hr.SpecError)
    assert message.startswith(f"{file}: refreshCredentials returned a value that is not JSON")
    cyclic, file = _connection(
        tmp_path / "2", "export default async () => { const a = {}; a.self = a; return a }\n"
    )
    assert "not JSON (TypeError)" in _refresh_error(cyclic, hr.SpecError)


@pytest.mark.parametrize(
    ("returned", "described"),
    [("'tok'", "a string"), ("undefined", "null or undefined"), ("[1]", "an array")],
)
def test_result_that_is_not_an_object(tmp_path: Path, returned: str, described: str) -> None:
    """A refresh that returns no object to merge is a SpecError in JavaScript terms."""
    connection, file = _connection(tmp_path, f"export default async () => {returned}\n")
    assert _refresh_error(connection, hr.SpecError) == (
        f"{file}: refreshCredentials returned {described}, expected an object (its keys are "
        "merged into the credentials)"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("export const helper = 1\n", "the module has no default export"),
        ("export default 42\n", "the module's default export is a number, not a function"),
        (
            "module.exports = { other: () => 1 }\n",
            "the module's default export is an object, not a function",
        ),
    ],
)
def test_missing_default_export(tmp_path: Path, source: str, expected: str) -> None:
    """No function to call is a SpecError that says so and names the file."""
    connection, file = _connection(tmp_path, source)
    message = _refresh_error(connection, hr.SpecError)
    assert message.startswith(f"{file}: {expected}")


@pytest.mark.parametrize(
    ("source", "line", "detail"),
    [
        ("const a = 1\n\nexport defualt async function () {}\n", 3, "Unexpected token 'export'"),
        ("const a = 1\nmodule.exports = async function ( {\n", 3, "Unexpected end of input"),
        ("export default async () => {\n  return {\n}\n", 4, "Unexpected end of input"),
    ],
)
def test_syntax_error_names_file_and_line(
    tmp_path: Path, source: str, line: int, detail: str
) -> None:
    """A file Node cannot parse (ES module or CommonJS) is a SpecError naming the file,
    the line and Node's description."""
    connection, file = _connection(tmp_path, source)
    assert _refresh_error(connection, hr.SpecError) == (
        f"{file}:{line}: javascript syntax error: {detail}"
    )


def test_syntax_error_in_an_imported_sibling(tmp_path: Path) -> None:
    """The method file parses but a module it imports does not: said so, not blamed on
    the method file's line."""
    require_node()
    root = write_connector(
        tmp_path / "c",
        SPEC,
        {
            "auth/refresh-credentials.js": "import h from './helper.mjs'\nexport default h\n",
            "auth/helper.mjs": "export default async ( => 1\n",
        },
    )
    connection = hr.load_connector(root).connect(
        connector_parameters=PARAMETERS, credentials=dict(START)
    )
    assert _refresh_error(connection, hr.SpecError) == (
        f"{root}/auth/refresh-credentials.js: a module this file imports has a javascript "
        "syntax error (the file itself parses)"
    )


def test_missing_package(tmp_path: Path) -> None:
    """``import x from 'a-package'`` that is not installed: says which, and npm ci."""
    connection, file = _connection(
        tmp_path, "import x from 'not-installed-pkg'\nexport default async () => x\n"
    )
    message = _refresh_error(connection, hr.SpecError)
    assert message == (
        f"{file}: cannot find the module 'not-installed-pkg': install the connector's "
        "packages (npm ci in the connector folder)"
    )


def test_error_thrown_while_importing(tmp_path: Path) -> None:
    """Top-level code that throws while the module loads: a SpecError with the line."""
    connection, file = _connection(
        tmp_path, "\nthrow new RangeError(process.argv[0])\nexport default async () => ({})\n"
    )
    assert _refresh_error(connection, hr.SpecError) == (
        f"{file}:2: loading the javascript module threw RangeError"
    )


def test_process_exit_before_returning(tmp_path: Path) -> None:
    """``process.exit(4)`` in the method: Node exited before returning, with the status."""
    connection, file = _connection(tmp_path, "export default async () => { process.exit(4) }\n")
    message = _refresh_error(connection, hr.SpecError)
    assert message.startswith(f"{file}: Node.js exited (status 4) before refreshCredentials")


def test_timeout_kills_node(tmp_path: Path) -> None:
    """A method that never returns is stopped after ``node_timeout`` seconds: a SpecError
    that says so, well before the refresh's own 30 s limit, and the process is gone."""
    pid_file = tmp_path / "pid"
    connection, file = _connection(
        tmp_path,
        f"""
        import {{ writeFileSync }} from 'node:fs'
        export default async function () {{
          writeFileSync({str(pid_file)!r}, String(process.pid))
          setInterval(() => {{}}, 1000)
          await new Promise(() => {{}})
        }}
        """,
        node_timeout=1.5,
    )
    started = time.monotonic()
    message = _refresh_error(connection, hr.SpecError)
    assert time.monotonic() - started < 15
    assert message == f"{file}: refreshCredentials did not finish within 1.5 s; Node.js was stopped"
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_node(tmp_path: Path) -> None:
    """No Node.js at the configured path: a SpecError naming the method's file."""
    connection, file = _connection(tmp_path, "export default async () => ({})\n")
    connection.connector.runtime.node = str(tmp_path / "no-such-node")
    message = _refresh_error(connection, hr.SpecError)
    assert message.startswith(f"{file}: this method is javascript and runs under Node.js")
    assert "was not found" in message


def test_missing_node_for_make_api_client_fails_at_connect(tmp_path: Path) -> None:
    """A JavaScript makeApiClient without Node: connect() fails with the SpecError."""
    root = write_connector(
        tmp_path / "c",
        """
        name: No node
        auth:
          type: client-credentials
          makeApiClient:
            implementationType: javascript
        """,
        {"auth/make-api-client.js": "export default () => ({ baseUri: 'https://x.invalid' })\n"},
    )
    connector = hr.load_connector(root, node=tmp_path / "missing-node")
    with pytest.raises(hr.SpecError) as caught:
        connector.connect(credentials={"token": SECRET})
    assert str(caught.value).startswith(
        f"{root}/auth/make-api-client.js: this method is javascript"
    )
    assert SECRET not in str(caught.value)


def test_node_timeout_must_be_positive(tmp_path: Path) -> None:
    """``node_timeout`` <= 0 is a ValueError at load time."""
    root = write_connector(tmp_path / "c", SPEC, {"auth/refresh-credentials.js": "\n"})
    with pytest.raises(ValueError, match="node_timeout"):
        hr.load_connector(root, node_timeout=0)


@pytest.mark.integration
def test_transient_http_failure_is_retried_then_permanent_one_is_not(
    run_server: Any, tmp_path: Path
) -> None:
    """The docs example against a token endpoint answering 503 (axios throws with the
    status): a transient RefreshError, retried per the policy (exactly ``attempts`` Node
    runs and token calls); ``invalid_grant`` is ReauthorizationRequired at once."""
    state = TokenServer(mode="unavailable")
    base = run_server(state.app())
    node, runs = counting_node(tmp_path / "bin")
    connection = hr.load_connector(copy_docs_example(tmp_path, base), node=node).connect(
        connector_parameters=PARAMETERS,
        credentials=dict(START),
        retry=hr.RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.01, wait_jitter=0),
    )
    with pytest.raises(hr.RefreshError) as caught:
        connection.auth.refresh()
    assert caught.value.transient
    assert caught.value.status_code == 503
    assert "threw AxiosError" in str(caught.value)
    assert (state.token_calls, runs()) == (3, 3)
    state.mode = "invalid_grant"
    state.token_calls = 0
    connection.auth.update_credentials(dict(START))
    with pytest.raises(hr.ReauthorizationRequired) as permanent:
        connection.auth.refresh()
    assert permanent.value.oauth_error == "invalid_grant"
    assert state.token_calls == 1
    assert dict(connection.credentials) == START


@pytest.mark.integration
@pytest.mark.anyio
async def test_cancelled_caller_keeps_the_refreshed_token(run_server: Any, tmp_path: Path) -> None:
    """A request cancelled while the JavaScript refresh runs (DESIGN R7): the refresh
    completes anyway (it is shielded), its credentials are kept, and the next request
    uses them without another Node run."""
    state = TokenServer(release=threading.Event())
    base = run_server(state.app())
    node, runs = counting_node(tmp_path / "bin")
    connection = hr.load_connector(copy_docs_example(tmp_path, base), node=node).connect(
        connector_parameters=PARAMETERS, credentials=dict(START)
    )
    async with connection.async_client() as client:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                scope = anyio.CancelScope()

                async def request() -> None:
                    with scope:
                        await client.get("/me")  # 401, then the refresh; cancelled in it

                group.start_soon(request)
                # Node is running the refresh and its POST has reached the token endpoint.
                await anyio.to_thread.run_sync(state.hit.wait, 20.0)
                assert (runs(), connection.auth.stats.refreshes) == (1, 0)
                scope.cancel()
                # The token endpoint answers only now (on trio the cancelled request
                # returns once the shielded flight is done; on asyncio at once).
                state.release.set()
        assert scope.cancelled_caught
        with anyio.fail_after(20):
            assert (await client.get("/me")).status_code == 200  # joins or follows it
    assert (state.token_calls, runs()) == (1, 1)
    assert connection.credentials["accessToken"] == "tok-1"
    assert connection.credentials["keep"] == "me"


def test_typescript_needs_a_node_that_strips_types(tmp_path: Path) -> None:
    """A ``.ts`` method under a Node.js older than 22.6 (no type stripping): a SpecError
    that names the file and the version found; on 22.6 or later it runs."""
    import subprocess

    node = require_node()
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major, minor = (int(part) for part in version.stdout.strip().lstrip("v").split(".")[:2])
    root = write_connector(
        tmp_path / "ts",
        SPEC.replace("auth/refresh-credentials.js", "auth/refresh-credentials.ts"),
        {
            "auth/refresh-credentials.ts": (
                "export default async function (args: { credentials: { keep: string } })"
                ": Promise<{ typed: string }> {\n  return { typed: args.credentials.keep }\n}\n"
            )
        },
    )
    connection = hr.load_connector(root).connect(
        connector_parameters=PARAMETERS, credentials=dict(START)
    )
    if (major, minor) >= (22, 6):
        assert connection.auth.refresh()["typed"] == "me"
        return
    message = _refresh_error(connection, hr.SpecError)
    assert message == (
        f"{root}/auth/refresh-credentials.ts: a TypeScript method needs Node.js 22.6 or later, "
        f"which strips types (found {major}.{minor}): upgrade Node.js or compile the file to .js"
    )


def test_relative_connector_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_connector("relative/dir")`` (Node runs in the connector folder, so the method's
    path must not stay relative): the method runs."""
    require_node()
    write_connector(
        tmp_path / "conns" / "c",
        SPEC,
        {"auth/refresh-credentials.js": "export default async () => ({ accessToken: 'new' })\n"},
    )
    monkeypatch.chdir(tmp_path)
    connection = hr.load_connector("conns/c").connect(
        connector_parameters=PARAMETERS, credentials=dict(START)
    )
    assert connection.auth.refresh()["accessToken"] == "new"
    inline = write_connector(
        tmp_path / "conns" / "inline",
        SPEC.replace(
            "    filePath: auth/refresh-credentials.js\n",
            "    code: |\n      export default async () => ({ accessToken: 'inline' })\n",
        ).replace("implementationType: javascript", "type: javascript"),
    )
    assert inline.is_dir()
    connection = hr.load_connector("conns/inline").connect(
        connector_parameters=PARAMETERS, credentials=dict(START)
    )
    assert connection.auth.refresh()["accessToken"] == "inline"


@pytest.mark.parametrize("package_type", ["commonjs", None])
def test_es_module_file_in_a_commonjs_package(tmp_path: Path, package_type: str | None) -> None:
    """``npm init`` writes ``"type": "commonjs"``; an Integration.app method file written as
    an ES module (``import`` / ``export default``) still loads, and so does a sibling ES
    module it imports; the connector's CommonJS packages are untouched."""
    require_node()
    package = {"name": "c", "version": "1.0.0"}
    if package_type is not None:
        package["type"] = package_type
    root = write_connector(
        tmp_path / "c",
        SPEC,
        {
            "package.json": json.dumps(package),
            "auth/refresh-credentials.js": (
                "import { token } from './helper.js'\n"
                "import path from 'node:path'\n"
                "export default async () => ({ accessToken: token(), sep: path.sep })\n"
            ),
            "auth/helper.js": "export const token = () => 'from-esm-helper'\n",
        },
    )
    connection = hr.load_connector(root).connect(
        connector_parameters=PARAMETERS, credentials=dict(START)
    )
    assert connection.auth.refresh()["accessToken"] == "from-esm-helper"


def test_node_that_is_not_node(tmp_path: Path) -> None:
    """``node=`` pointing at another program: says the runner did not start, not that the
    method ended the process."""
    import sys

    connection, file = _connection(
        tmp_path, "export default async () => ({})\n", node=sys.executable
    )
    assert _refresh_error(connection, hr.SpecError) == (
        f"{file}: {sys.executable} did not start the httpx-refresh runner (it exited with "
        "status 2): is it Node.js 20 or later?"
    )
