"""JavaScript connector methods run under Node.js (issue 8): the docs example end to end,
module formats, argument names, makeApiClient once per version, test with apiClient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from jsconnectors import (
    CLIENT_SECRET,
    PARAMETERS,
    TokenServer,
    copy_docs_example,
    counting_node,
    get_from_threads,
    require_node,
    write_connector,
)

import httpx_refresh as hr

pytestmark = pytest.mark.integration

STALE = {"accessToken": "stale", "tenant": "acme", "region": "eu", "scopes": ["read"]}


@pytest.fixture
def server(run_server: Any) -> tuple[TokenServer, str]:
    state = TokenServer()
    return state, run_server(state.app())


# -- the Integration.app docs example ----------------------------------------------------------


@pytest.mark.anyio
async def test_docs_example_one_node_run_for_50_concurrent_401s(
    server: tuple[TokenServer, str], tmp_path: Path
) -> None:
    """The docs' JavaScript refreshCredentials (axios, HTTP Basic from connectorParameters)
    runs unchanged: 50 concurrent requests rejected with 401 cause exactly one Node run and
    one token-endpoint call, every request then succeeds, and the merged credentials keep
    every other key (DESIGN R5, R8)."""
    state, base = server
    node, runs = counting_node(tmp_path / "bin")
    connector = hr.load_connector(copy_docs_example(tmp_path, base), node=node)
    connection = connector.connect(connector_parameters=PARAMETERS, credentials=STALE)
    statuses: list[int] = []
    async with connection.async_client() as client:

        async def one() -> None:
            statuses.append((await client.get("/me")).status_code)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for _ in range(50):
                    group.start_soon(one)
    assert statuses == [200] * 50
    assert state.token_calls == 1
    assert state.bad_client_auth == 0
    assert state.bodies == ["grant_type=client_credentials"]
    assert runs() == 1
    assert dict(connection.credentials) == {**STALE, "accessToken": "tok-1"}
    assert connection.auth.stats.refreshes == 1


def test_docs_example_sync_threads_one_node_run(
    server: tuple[TokenServer, str], tmp_path: Path
) -> None:
    """The same from a sync client in 16 threads released together: one Node run (R5, R14)."""
    state, base = server
    node, runs = counting_node(tmp_path / "bin")
    connection = hr.load_connector(copy_docs_example(tmp_path, base), node=node).connect(
        connector_parameters=PARAMETERS, credentials=STALE
    )
    with connection.client() as client:
        statuses = get_from_threads(client, "/me", 16)
    assert statuses == [200] * 16
    assert (state.token_calls, runs()) == (1, 1)
    assert dict(connection.credentials) == {**STALE, "accessToken": "tok-1"}


def test_docs_example_throws_when_no_token(
    server: tuple[TokenServer, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The example throws when the token response has no token: a RefreshError that names
    the file and the line of the throw and its type, never its message; the credentials
    stay as they were and the 401 goes back to the caller as an error."""
    state, base = server
    state.mode = "empty"
    example = copy_docs_example(tmp_path, base)
    connection = hr.load_connector(example).connect(
        connector_parameters=PARAMETERS, credentials=STALE
    )
    with connection.client() as client, pytest.raises(hr.RefreshError) as caught:
        client.get("/me")
    message = str(caught.value)
    assert message == f"refreshCredentials in {example}/auth/refresh-credentials.js:19 threw Error"
    assert not caught.value.transient
    assert "no access token" not in message
    assert state.token_calls == 1
    assert dict(connection.credentials) == STALE
    assert CLIENT_SECRET not in caplog.text


# -- module formats and the argument object ---------------------------------------------------

SPEC_CC = """
name: Formats
auth:
  type: client-credentials
  makeApiClient:
    type: mapping
    mapping:
      baseUri: {base}
      headers:
        Authorization:
          $concat: ['Bearer ', {{$var: credentials.accessToken}}]
  refreshCredentials:
    implementationType: javascript
    {where}
"""

REFRESH_BODY = """
  const {{ clientId, clientSecret }} = connectorParameters
  const basic = Buffer.from(`${{clientId}}:${{clientSecret}}`).toString('base64')
  const response = await fetch('{base}/oauth/token', {{
    method: 'POST',
    headers: {{
      Authorization: `Basic ${{basic}}`,
      'Content-Type': 'application/x-www-form-urlencoded',
    }},
    body: 'grant_type=client_credentials',
  }})
  const data = await response.json()
  return {{ accessToken: data.access_token }}
"""

FORMATS = {
    "esm-default": (
        "auth/refresh-credentials.js",
        "export default async function refreshCredentials({{ connectorParameters }}) {{"
        + REFRESH_BODY
        + "}}\n",
    ),
    "esm-mjs": (
        "auth/refresh-credentials.mjs",
        "export default async ({{ connectorParameters }}) => {{" + REFRESH_BODY + "}}\n",
    ),
    "cjs-module-exports": (
        "auth/refresh-credentials.js",
        "module.exports = async function ({{ connectorParameters }}) {{" + REFRESH_BODY + "}}\n",
    ),
    "cjs-named-exports": (
        "auth/refresh-credentials.cjs",
        "exports.refreshCredentials = async function ({{ connectorParameters }}) {{"
        + REFRESH_BODY
        + "}}\n",
    ),
    "esm-named-export": (
        "auth/refresh-credentials.js",
        "export async function refreshCredentials({{ connectorParameters }}) {{"
        + REFRESH_BODY
        + "}}\n",
    ),
}


@pytest.mark.parametrize("form", sorted(FORMATS))
def test_module_formats(form: str, server: tuple[TokenServer, str], tmp_path: Path) -> None:
    """ES modules (default or named export, .js or .mjs) and CommonJS (module.exports,
    exports.<method>, .js or .cjs) all run; the file is found by filePath."""
    state, base = server
    require_node()
    path, source = FORMATS[form]
    root = write_connector(
        tmp_path / form,
        SPEC_CC.format(base=base, where=f"filePath: {path}"),
        {path: source.format(base=base)},
    )
    connection = hr.load_connector(root).connect(
        connector_parameters=PARAMETERS, credentials={"accessToken": "stale"}
    )
    with connection.client() as client:
        assert client.get("/me").status_code == 200
    assert state.token_calls == 1
    assert connection.credentials["accessToken"] == "tok-1"


@pytest.mark.anyio
async def test_inline_code_es_module_imports_from_connector_node_modules(
    server: tuple[TokenServer, str], tmp_path: Path
) -> None:
    """``type: javascript`` + ``code:`` inline: an ES module whose ``import axios from
    'axios'`` resolves from the connector folder's node_modules."""
    state, base = server
    example = copy_docs_example(tmp_path, base)
    source = (example / "auth" / "refresh-credentials.js").read_text()
    (example / "auth" / "refresh-credentials.js").unlink()
    indented = "".join(f"      {line}\n" for line in source.splitlines())
    spec = (
        (example / "spec.yml")
        .read_text()
        .replace(
            "  refreshCredentials:\n    implementationType: javascript\n",
            f"  refreshCredentials:\n    type: javascript\n    code: |\n{indented}",
        )
    )
    (example / "spec.yml").write_text(spec)
    connection = hr.load_connector(example).connect(
        connector_parameters=PARAMETERS, credentials=STALE
    )
    async with connection.async_client() as client:
        assert (await client.get("/me")).status_code == 200
    assert state.token_calls == 1
    assert dict(connection.credentials) == {**STALE, "accessToken": "tok-1"}


def test_inline_code_commonjs(server: tuple[TokenServer, str], tmp_path: Path) -> None:
    """Inline CommonJS (``module.exports =`` with ``require``) runs too."""
    state, base = server
    require_node()
    body = REFRESH_BODY.format(base=base).replace("\n", "\n      ")
    code = (
        "const assert = require('node:assert')\n      "
        "module.exports = async function ({ connectorParameters }) {\n      "
        "  assert.ok(connectorParameters.clientId)" + body + "}\n"
    )
    root = write_connector(
        tmp_path / "inline-cjs", SPEC_CC.format(base=base, where=f"code: |\n      {code}")
    )
    connection = hr.load_connector(root).connect(
        connector_parameters=PARAMETERS, credentials={"accessToken": "stale"}
    )
    assert connection.auth.refresh()["accessToken"] == "tok-1"
    assert state.token_calls == 1


ARGS_SPEC = """
name: Arguments
auth:
  type: client-credentials
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.invalid
  getCredentialsFromConnectionParameters:
    type: javascript
    code: |
      export default async function (args) {
        return { initialKeys: Object.keys(args).sort(), apiKey: args.connectionParameters.apiKey,
                 same: args.connectionInput.apiKey === args.connectionParameters.apiKey }
      }
  refreshCredentials:
    type: javascript
    code: |
      export default async function (args) {
        return {
          keys: Object.keys(args).sort(),
          hasGet: typeof args.apiClient.get === 'function',
          region: args.connectorParameters.region,
          previous: args.credentials.apiKey,
          argv: process.argv.join(' ').includes(args.credentials.apiKey),
          env: JSON.stringify(process.env).includes(args.credentials.apiKey),
        }
      }
"""


def test_argument_object_uses_javascript_names_and_stdin_only(tmp_path: Path) -> None:
    """The argument object has the JavaScript names (credentials, connectorParameters,
    connectionParameters, connectionInput, apiClient) and the values reach Node on stdin,
    never on its command line or in its environment (issue 8 item 2)."""
    require_node()
    root = write_connector(tmp_path / "args", ARGS_SPEC)
    connection = hr.load_connector(root).connect(
        connector_parameters={"region": "eu"}, connection_parameters={"apiKey": "key-6d1e"}
    )
    assert dict(connection.credentials) == {
        "initialKeys": [  # no credentials yet; an apiClient, as python methods get one
            "apiClient",
            "connectionInput",
            "connectionParameters",
            "connectorParameters",
            "externalApiClient",
        ],
        "apiKey": "key-6d1e",
        "same": True,
    }
    refreshed = connection.auth.refresh()
    assert refreshed["keys"] == [
        "apiClient",
        "connectionInput",
        "connectionParameters",
        "connectorParameters",
        "credentials",
        "externalApiClient",
    ]
    assert refreshed["hasGet"] is True
    assert refreshed["region"] == "eu"
    assert refreshed["previous"] == "key-6d1e"
    assert (refreshed["argv"], refreshed["env"]) == (False, False)


def test_node_path_is_run_without_a_shell(server: tuple[TokenServer, str], tmp_path: Path) -> None:
    """Node is started from an argument list, never through a shell: a node path with
    spaces, quotes and ``;`` still runs, and nothing in it is executed as a command."""
    _, base = server
    odd = tmp_path / "dir with space; touch pwned; 'q'"
    node, runs = counting_node(odd)
    root = write_connector(
        tmp_path / "shell",
        SPEC_CC.format(base=base, where="filePath: auth/refresh-credentials.js"),
        {"auth/refresh-credentials.js": FORMATS["esm-default"][1].format(base=base)},
    )
    connection = hr.load_connector(root, node=node).connect(
        connector_parameters=PARAMETERS, credentials={"accessToken": "stale"}
    )
    assert connection.auth.refresh()["accessToken"] == "tok-1"
    assert runs() == 1
    assert not (Path.cwd() / "pwned").exists()
    assert not (root / "pwned").exists()


# -- makeApiClient, getOAuthConfig, getCredentialsFromRefreshTokenResponse ----------------------

JS_CLIENT_SPEC = """
name: JS client
auth:
  type: oauth2
  makeApiClient:
    implementationType: javascript
  getOAuthConfig:
    implementationType: javascript
  getCredentialsFromRefreshTokenResponse:
    implementationType: javascript
"""

JS_CLIENT_FILES = {
    "auth/make-api-client.js": """
        export default function makeApiClient({ credentials, connectorParameters }) {
          return {
            baseUri: connectorParameters.base,
            headers: {
              Authorization: `Bearer ${credentials.access_token}`,
              'X-Tenant': credentials.tenant,
            },
            query: { v: '2' },
          }
        }
    """,
    "auth/get-oauth-config.js": """
        export default async ({ connectorParameters }) => ({
          clientId: connectorParameters.clientId,
          clientSecret: connectorParameters.clientSecret,
          tokenUri: `${connectorParameters.base}/oauth/token`,
          clientAuthLocation: 'headers',
        })
    """,
    "auth/get-credentials-from-refresh-token-response.js": """
        module.exports = async ({ tokenResponse, credentials }) => ({
          tenant: credentials.tenant,
          fromResponse: tokenResponse.access_token.toUpperCase(),
        })
    """,
}


@pytest.mark.anyio
async def test_javascript_make_api_client_runs_once_per_credentials_version(
    server: tuple[TokenServer, str], tmp_path: Path
) -> None:
    """A JavaScript makeApiClient runs once per credentials version, never per request
    (issue 8 item 3): once at connect, once more for the refreshed version (inside the
    refresh, before the waiting requests go out), and not at all for 30 requests. The
    oauth2 refresh uses the JavaScript getOAuthConfig and
    getCredentialsFromRefreshTokenResponse (one Node run each)."""
    state, base = server
    node, runs = counting_node(tmp_path / "bin")
    root = write_connector(tmp_path / "js-client", JS_CLIENT_SPEC, JS_CLIENT_FILES)
    connection = hr.load_connector(root, node=node).connect(
        connector_parameters={**PARAMETERS, "base": base},
        credentials={"access_token": "stale", "refresh_token": "rt-0", "tenant": "acme"},
    )
    assert runs() == 1  # makeApiClient for the first version
    assert connection.base_url == base
    async with connection.async_client() as client:
        statuses: list[int] = []

        async def one() -> None:
            response = await client.get("/me")
            statuses.append(response.status_code)
            assert response.json()["query"] == {"v": "2"}

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(one)
        assert statuses == [200] * 20
        # getOAuthConfig + getCredentialsFromRefreshTokenResponse + makeApiClient (new version)
        assert runs() == 4
        for _ in range(30):
            assert (await client.get("/me")).status_code == 200
    assert runs() == 4
    assert state.token_calls == 1
    assert state.bodies == ["grant_type=refresh_token&refresh_token=rt-0"]
    assert connection.credentials["fromResponse"] == "TOK-1"
    assert connection.credentials["tenant"] == "acme"
    assert connection.credentials["refresh_token"] == "rt-1"


def test_javascript_make_api_client_sync_threads_once(
    server: tuple[TokenServer, str], tmp_path: Path
) -> None:
    """From sync clients in 12 threads: still one makeApiClient run per version."""
    state, base = server
    node, runs = counting_node(tmp_path / "bin")
    root = write_connector(tmp_path / "js-client", JS_CLIENT_SPEC, JS_CLIENT_FILES)
    connection = hr.load_connector(root, node=node).connect(
        connector_parameters={**PARAMETERS, "base": base},
        credentials={"access_token": "stale", "refresh_token": "rt-0", "tenant": "acme"},
    )
    with connection.client() as client:
        statuses = get_from_threads(client, "/me", 12)
    assert statuses == [200] * 12
    assert (state.token_calls, runs()) == (1, 4)


# -- test with apiClient ------------------------------------------------------------------------

TEST_SPEC = """
name: JS test
auth:
  type: client-credentials
  makeApiClient:
    type: mapping
    mapping:
      baseUri: {base}
      headers:
        Authorization:
          $concat: ['Bearer ', {{$var: credentials.accessToken}}]
  refreshCredentials:
    implementationType: javascript
    filePath: auth/refresh-credentials.js
  test:
    implementationType: javascript
"""


def _test_connection(base: str, tmp_path: Path, test_source: str, name: str = "t") -> hr.Connection:
    root = write_connector(
        tmp_path / name,
        TEST_SPEC.format(base=base),
        {
            "auth/refresh-credentials.js": FORMATS["esm-default"][1].format(base=base),
            "auth/test.js": test_source,
        },
    )
    return hr.load_connector(root).connect(
        connector_parameters=PARAMETERS, credentials={"accessToken": "stale", "keep": 1}
    )


def test_test_method_api_client_goes_through_the_connection(
    server: tuple[TokenServer, str], tmp_path: Path
) -> None:
    """``test`` gets an apiClient built from makeApiClient: its GET is rejected with 401,
    the connection refreshes once (the JavaScript refresh) and replays, and the test
    passes on the response data."""
    state, base = server
    connection = _test_connection(
        base,
        tmp_path,
        """
        export default async function test({ apiClient }) {
          const me = await apiClient.get('/me', { page: 2 })
          return me.id === 7 && me.query.page === '2'
        }
        """,
    )
    assert connection.test() is True
    assert state.token_calls == 1
    assert dict(connection.credentials) == {"accessToken": "tok-1", "keep": 1}


@pytest.mark.anyio
async def test_test_method_api_client_verbs_and_bodies(
    server: tuple[TokenServer, str], tmp_path: Path
) -> None:
    """apiClient get/post/put/patch/delete: JSON, text and form bodies, query, headers,
    and returnFullResponse, through the connection's client (``atest``)."""
    state, base = server
    connection = _test_connection(
        base,
        tmp_path,
        """
        export default async function test({ apiClient }) {
          const got = await apiClient.get('/echo', { a: 1 })
          const posted = await apiClient.post('/echo', { x: [1, 2] })
          const put = await apiClient.put('/echo', 'plain text')
          const patched = await apiClient.patch('/echo', new URLSearchParams({ k: 'v w' }),
                                                { headers: { 'X-Extra': 'yes' } })
          const deleted = await apiClient.delete('/echo', { id: 'z' }, { returnFullResponse: true })
          return got.method === 'GET' && got.query.a === '1'
            && posted.method === 'POST' && JSON.parse(posted.body).x[1] === 2
            && posted.type === 'application/json'
            && put.method === 'PUT' && put.body === 'plain text'
            && put.type.startsWith('text/plain')
            && patched.body === 'k=v+w' && patched.type === 'application/x-www-form-urlencoded'
            && patched.header === 'yes'
            && deleted.statusCode === 200 && deleted.data.method === 'DELETE'
            && deleted.data.query.id === 'z'
            && deleted.headers['content-type'] === 'application/json'
        }
        """,
    )
    assert await connection.atest() is True
    assert state.token_calls == 1


def test_test_method_failing_request_and_falsy_result(
    server: tuple[TokenServer, str], tmp_path: Path
) -> None:
    """An apiClient request answered 403 throws in JavaScript: the test fails (False) with
    the status in the reason; a falsy return fails too."""
    state, base = server
    throwing = _test_connection(
        base,
        tmp_path,
        "export default async ({ apiClient }) => {\n"
        "  await apiClient.get('/forbidden'); return true }\n",
        "throws",
    )
    outcome = throwing._test_outcome()
    assert outcome == (
        False,
        f"test in {tmp_path}/throws/auth/test.js:2 threw ApiError (HTTP 403, forbidden)",
    )
    falsy = _test_connection(base, tmp_path, "export default async () => 0\n", "falsy")
    assert falsy._test_outcome() == (
        False,
        f"test in {tmp_path}/falsy/auth/test.js returned a number",
    )
    assert state.token_calls == 0  # neither request needed a token


def test_test_method_transport_error_reaches_the_caller(tmp_path: Path) -> None:
    """When an apiClient request cannot be sent, test() raises the httpx error (as the
    documented ``httpx.HTTPError``) and Node is stopped."""
    require_node()
    base = "http://127.0.0.1:9"  # discard port: connection refused
    connection = _test_connection(
        base, tmp_path, "export default async ({ apiClient }) => apiClient.get('/me')\n"
    )
    with pytest.raises(httpx.ConnectError):
        connection.test()


# -- command line -------------------------------------------------------------------------------


def test_cli_check_loads_javascript_methods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``httpx-refresh check`` loads every javascript method under Node.js without calling
    it: exit 0 and the Node.js used when all load; exit 3 naming the file for a missing
    package, a missing default export, or a missing Node.js (HTTPX_REFRESH_NODE)."""
    from httpx_refresh._cli import main

    node = require_node()
    root = write_connector(
        tmp_path / "c",
        SPEC_CC.format(base="https://api.example.com", where="filePath: auth/r.js")
        + "  test:\n    implementationType: javascript\n",
        {
            "auth/r.js": "export default async () => { throw new Error('never called') }\n",
            "auth/test.js": "module.exports = async () => true\n",
        },
    )
    assert main(["check", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"refreshCredentials                       javascript ({root}/auth/r.js)" in out
    assert out.endswith(f"  javascript methods load under Node.js: {node}\n")
    (root / "auth" / "r.js").write_text("import x from 'no-such-package'\nexport default x\n")
    (root / "auth" / "test.js").write_text("module.exports = { test: 1 }\n")
    assert main(["check", str(root)]) == 3
    out = capsys.readouterr().out
    assert (
        f"  javascript problem: {root}/auth/r.js: cannot find the module 'no-such-package'" in out
    )
    assert (
        f"  javascript problem: {root}/auth/test.js: the module's default export is an object"
        in out
    )
    monkeypatch.setenv("HTTPX_REFRESH_NODE", str(tmp_path / "nowhere"))
    assert main(["check", str(root)]) == 3
    out = capsys.readouterr().out
    assert "  javascript methods cannot run: " in out
    assert f"({str(tmp_path / 'nowhere')!r} from HTTPX_REFRESH_NODE)" in out


def test_cli_test_command_runs_the_javascript_test(
    server: tuple[TokenServer, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``httpx-refresh test`` runs a javascript test: exit 0 when it passes (after one
    refresh through the JavaScript refreshCredentials), 1 with the reason when it throws."""
    import json

    from httpx_refresh._cli import main

    state, base = server
    parameters, credentials = tmp_path / "parameters.json", tmp_path / "credentials.json"
    parameters.write_text(json.dumps(PARAMETERS))
    credentials.write_text(json.dumps({"accessToken": "stale"}))
    connection_args = ["--connector-parameters", str(parameters), "--credentials", str(credentials)]
    good = _test_connection(
        base, tmp_path, "export default async ({ apiClient }) => (await apiClient.get('/me')).id\n"
    )
    assert main(["test", str(good.connector.path), *connection_args]) == 0
    assert capsys.readouterr().out == "test passed\n"
    assert state.token_calls == 1
    bad = _test_connection(
        base,
        tmp_path,
        "export default async ({ apiClient }) => apiClient.get('/forbidden')\n",
        "bad",
    )
    assert main(["test", str(bad.connector.path), *connection_args]) == 1
    # No line: the throw happens in apiClient, and the method returned the promise
    # without awaiting it, so no frame of test.js is on the stack.
    assert capsys.readouterr().out == (
        f"test failed: test in {tmp_path}/bad/auth/test.js threw ApiError (HTTP 403, forbidden)\n"
    )
