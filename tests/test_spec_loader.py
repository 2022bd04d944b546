"""Loading connector specs (DESIGN "Connector specs"): layouts, options, schemas, methods.

Real spec directories are written to ``tmp_path`` and loaded with ``hr.load_connector``;
requests go through ``connection.client(transport=httpx.MockTransport(...))`` (the
connection wraps that transport), so what a spec does is observed on the wire.
"""

from __future__ import annotations

import base64
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

import httpx_refresh as hr
from httpx_refresh._spec._methods import snake_case

API = "https://api.example.com"


def write(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text, dedented) under ``root``; return ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def send(connection: hr.Connection, path: str = "/items") -> httpx.Request:
    """Send one GET through the connection's sync client; return the request sent."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        assert client.get(path).status_code == 200
    assert len(seen) == 1
    return seen[0]


async def asend(connection: hr.Connection, path: str = "/items") -> httpx.Request:
    """Send one GET through the connection's async client; return the request sent."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    async with connection.async_client(transport=httpx.MockTransport(handler)) as client:
        assert (await client.get(path)).status_code == 200
    assert len(seen) == 1
    return seen[0]


def wire(request: httpx.Request) -> tuple[str, dict[str, str]]:
    """The URL and the headers of a request, for comparing what two specs sent."""
    return str(request.url), dict(request.headers)


def module_of(path: Path) -> ModuleType:
    """The module the library imported for the python method file ``path``."""
    target = path.resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file is not None and Path(file).resolve() == target:
            return module
    raise AssertionError(f"{path} was not imported")


# -- the three layouts ------------------------------------------------------------------

CLIENT_BODY = """
baseUri: https://api.example.com/v1
headers:
  Authorization: {$concat: ["Bearer ", {$var: credentials.access_token}]}
  X-Client: {$var: connectorParameters.clientName}
query:
  region: {$firstNotEmpty: [{$var: connectionInput.region}, eu]}
"""
CREDENTIALS_BODY = """
apiKey: {$var: connectionParameters.apiKey}
"""
REFRESH_PY = """
def refresh_credentials(credentials):
    return {"access_token": "S-" + credentials["apiKey"], "expires_in": 600}
"""
TEST_BODY = """
path: /me
method: get
responseMapping:
  $eval: {$var: response.data.ok}
  is: true
"""
SCHEMA = """
  ui:
    schema:
      type: object
      required: [apiKey]
      properties:
        apiKey: {type: string}
"""


def indent(text: str, spaces: int) -> str:
    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * spaces)


FILE_LAYOUT = {
    "spec.yml": f"""
name: Layouts
auth:
  type: client-credentials
{SCHEMA.strip(chr(10))}
  getCredentialsFromConnectionParameters:
    implementationType: mapping
    filePath: methods/credentials.yml
  refreshCredentials:
    implementationType: python
    filePath: methods/refresh.py
  makeApiClient:
    implementationType: mapping
    filePath: methods/client.yml
  test:
    implementationType: rest-api-mapping
    filePath: methods/check.yml
""",
    "methods/credentials.yml": CREDENTIALS_BODY,
    "methods/refresh.py": REFRESH_PY,
    "methods/client.yml": CLIENT_BODY,
    "methods/check.yml": TEST_BODY,
}

DEFAULT_NAMES_LAYOUT = {
    "spec.yml": f"""
name: Layouts
auth:
  type: client-credentials
{SCHEMA.strip(chr(10))}
  getCredentialsFromConnectionParameters:
    implementationType: mapping
  refreshCredentials:
    implementationType: python
  makeApiClient:
    implementationType: mapping
  test:
    implementationType: rest-api-mapping
""",
    "auth/get-credentials-from-connection-parameters.map.yml": CREDENTIALS_BODY,
    "auth/refresh-credentials.py": REFRESH_PY,
    "auth/make-api-client.map.yml": CLIENT_BODY,
    "auth/test.rest.yml": TEST_BODY,
}

INLINE_LAYOUT = {
    "spec.yml": f"""
name: Layouts
auth:
  type: client-credentials
{SCHEMA.strip(chr(10))}
  getCredentialsFromConnectionParameters:
    type: mapping
    mapping:
{indent(CREDENTIALS_BODY, 6)}
  refreshCredentials:
    type: mapping
    mapping:
      access_token: {{$concat: ["S-", {{$var: credentials.apiKey}}]}}
      expires_in: 600
  makeApiClient:
    type: mapping
    mapping:
{indent(CLIENT_BODY, 6)}
  test:
    type: rest-api-mapping
    mapping:
{indent(TEST_BODY, 6)}
""",
}

LAYOUTS = {"file": FILE_LAYOUT, "default-names": DEFAULT_NAMES_LAYOUT, "inline": INLINE_LAYOUT}
EXPECTED_URL = "https://api.example.com/v1/items?region=eu"


def connect_layout(root: Path) -> hr.Connection:
    connector = hr.load_connector(root)
    return connector.connect(
        connector_parameters={"clientName": "acme"}, connection_parameters={"apiKey": "K1"}
    )


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_send_the_same_request(tmp_path: Path, layout: str) -> None:
    """DESIGN "Connector specs": the filePath, default-name and inline layouts behave alike.

    Each: credentials from connection parameters, one refresh (python or mapping) before
    the first request, then makeApiClient's base URI, headers and query on the wire.
    """
    connection = connect_layout(write(tmp_path / layout, LAYOUTS[layout]))
    request = send(connection)
    assert str(request.url) == EXPECTED_URL
    assert request.headers["authorization"] == "Bearer S-K1"
    assert request.headers["x-client"] == "acme"
    assert connection.auth.stats.refreshes == 1
    credentials = dict(connection.credentials)
    assert isinstance(credentials.pop("expires_at"), float)  # stamped from expires_in
    assert credentials == {"apiKey": "K1", "access_token": "S-K1", "expires_in": 600}


def test_layouts_are_equivalent_on_the_wire(tmp_path: Path) -> None:
    """The three layouts produce byte-identical URLs and headers."""
    sent = {
        name: wire(send(connect_layout(write(tmp_path / name, files))))
        for name, files in LAYOUTS.items()
    }
    assert sent["file"] == sent["default-names"] == sent["inline"]
    assert sent["file"][0] == EXPECTED_URL


@pytest.mark.anyio
@pytest.mark.parametrize("layout", list(LAYOUTS))
async def test_layouts_send_the_same_request_async(tmp_path: Path, layout: str) -> None:
    """The layouts through the async client (asyncio and trio)."""
    connection = connect_layout(write(tmp_path / layout, LAYOUTS[layout]))
    request = await asend(connection)
    assert str(request.url) == EXPECTED_URL
    assert request.headers["authorization"] == "Bearer S-K1"
    assert request.headers["x-client"] == "acme"
    assert connection.auth.stats.refreshes == 1


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_run_the_same_test_method(
    tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rest-api-mapping ``test`` from each layout sends GET /me and reads the answer."""
    connection = connect_layout(write(tmp_path / layout, LAYOUTS[layout]))
    seen: list[httpx.Request] = []
    answer = {"ok": True}

    def handler(self: Any, request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handler)
    assert connection.test() is True
    answer["ok"] = False
    assert connection.test() is False
    assert [str(r.url) for r in seen] == ["https://api.example.com/v1/me?region=eu"] * 2
    assert {r.headers["authorization"] for r in seen} == {"Bearer S-K1"}


def test_default_file_names_in_describe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without filePath the bodies are auth/<kebab-method>.<ext> (shown by describe())."""
    write(tmp_path / "conn", DEFAULT_NAMES_LAYOUT)
    monkeypatch.chdir(tmp_path)
    (variant,) = hr.load_connector("conn").describe()["variants"]
    assert variant["methods"] == {
        "makeApiClient": "mapping (conn/auth/make-api-client.map.yml)",
        "refreshCredentials": "python (conn/auth/refresh-credentials.py)",
        "getCredentialsFromConnectionParameters": (
            "mapping (conn/auth/get-credentials-from-connection-parameters.map.yml)"
        ),
        "test": "rest-api-mapping (conn/auth/test.rest.yml)",
    }


def test_missing_default_file_names_the_expected_file(tmp_path: Path) -> None:
    """No filePath and no file at the default name: a SpecError naming that file."""
    files = dict(DEFAULT_NAMES_LAYOUT)
    del files["auth/refresh-credentials.py"]
    write(tmp_path, files)
    with pytest.raises(hr.SpecError, match=r"auth/refresh-credentials\.py") as caught:
        hr.load_connector(tmp_path)
    assert caught.value.key == "auth.refreshCredentials"


# -- where the spec is, and what else it holds ----------------------------------------

MINIMAL = """
name: Minimal
key: minimal
auth:
  type: client-credentials
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.example.com
      headers:
        X-Key: {$var: credentials.apiKey}
"""


def test_load_by_directory_or_spec_path(tmp_path: Path) -> None:
    """load_connector takes the directory or the spec.yml path (str or Path)."""
    write(tmp_path, {"spec.yml": MINIMAL})
    loaded = [
        hr.load_connector(tmp_path),
        hr.load_connector(str(tmp_path)),
        hr.load_connector(tmp_path / "spec.yml"),
        hr.load_connector(str(tmp_path / "spec.yml")),
    ]
    assert {c.path for c in loaded} == {tmp_path / "spec.yml"}
    assert {(c.name, c.key, c.auth_type) for c in loaded} == {
        ("Minimal", "minimal", "client-credentials")
    }
    sent = [send(c.connect(connection_parameters={"apiKey": "k"})) for c in loaded]
    assert {(str(r.url), r.headers["x-key"]) for r in sent} == {(f"{API}/items", "k")}


def test_load_spec_yaml_and_missing_spec(tmp_path: Path) -> None:
    """spec.yaml is found too; a directory without a spec is a SpecError."""
    write(tmp_path / "a", {"spec.yaml": MINIMAL})
    assert hr.load_connector(tmp_path / "a").path == tmp_path / "a" / "spec.yaml"
    (tmp_path / "empty").mkdir()
    with pytest.raises(hr.SpecError, match=r"no spec\.yml"):
        hr.load_connector(tmp_path / "empty")


def test_unused_top_level_keys_are_accepted(tmp_path: Path) -> None:
    """Integration.app exports carry keys the library does not use: they load."""
    spec = """
        name: Export
        key: export-1
        appUuid: 8d1c2f9e-0000-4000-8000-000000000001
        logoUri: https://static.example.com/logo.png
        apiDocsUri: https://docs.example.com
        categories: [CRM, Sales]
        version: 1.0.1
        description: An exported connector
        api:
          type: openapi
          path: api/openapi.yml
        udm:
          contacts:
            rootCollection: {key: contacts}
        dataCollections:
          contacts: {filePath: data/contacts.yml}
        operations: []
        events: {}
        """
    body = textwrap.dedent(MINIMAL).split("key: minimal\n", 1)[1]
    write(tmp_path, {"spec.yml": textwrap.dedent(spec) + body})
    connector = hr.load_connector(tmp_path)
    assert (connector.name, connector.key) == ("Export", "export-1")
    request = send(connector.connect(connection_parameters={"apiKey": "k"}))
    assert request.headers["x-key"] == "k"


def test_name_defaults_to_key_then_directory(tmp_path: Path) -> None:
    """``name`` falls back to ``key``, then to the directory name."""
    body = textwrap.dedent(MINIMAL).split("key: minimal\n", 1)[1]
    write(tmp_path / "keyed", {"spec.yml": "key: the-key\n" + body})
    write(tmp_path / "bare-dir", {"spec.yml": body})
    assert hr.load_connector(tmp_path / "keyed").name == "the-key"
    assert hr.load_connector(tmp_path / "bare-dir").name == "bare-dir"
    assert hr.load_connector(tmp_path / "bare-dir").key is None


# -- required parameters ------------------------------------------------------------------


def test_ui_schema_required_connection_parameter(tmp_path: Path) -> None:
    """``ui.schema.required``: connect() without the parameter raises ValueError naming it."""
    connector = hr.load_connector(write(tmp_path, FILE_LAYOUT))
    for given in ({}, {"apiKey": ""}, {"apiKey": None}, {"other": "x"}):
        with pytest.raises(ValueError, match=r"missing required connection parameter: apiKey$"):
            connector.connect(connector_parameters={"clientName": "a"}, connection_parameters=given)


def test_input_schema_required_names_every_missing_parameter(tmp_path: Path) -> None:
    """``inputSchema.required`` works like ``ui.schema``; every missing name is listed."""
    spec = textwrap.dedent(MINIMAL).replace(
        "  type: client-credentials\n",
        "  type: client-credentials\n"
        "  inputSchema:\n"
        "    type: object\n"
        "    required: [clientId, clientSecret, apiKey]\n",
    )
    connector = hr.load_connector(write(tmp_path, {"spec.yml": spec}))
    with pytest.raises(ValueError, match=r"connection parameter: clientId, clientSecret$"):
        connector.connect(connection_parameters={"apiKey": "k"})
    connection = connector.connect(
        connection_parameters={"apiKey": "k", "clientId": "i", "clientSecret": "s"}
    )
    assert send(connection).headers["x-key"] == "k"


def test_required_connection_parameters_not_checked_with_credentials(tmp_path: Path) -> None:
    """With credentials given, the connection parameters are not needed."""
    connector = hr.load_connector(write(tmp_path, FILE_LAYOUT))
    connection = connector.connect(
        connector_parameters={"clientName": "a"},
        credentials={"apiKey": "K9", "access_token": "T9"},
    )
    assert send(connection).headers["authorization"] == "Bearer T9"


@pytest.mark.parametrize("where", ["top", "auth"])
def test_parameters_schema_required_connector_parameter(tmp_path: Path, where: str) -> None:
    """``parametersSchema.required`` (top level or in auth) for connector parameters."""
    schema = "parametersSchema:\n  type: object\n  required: [clientName]\n"
    body = textwrap.dedent(MINIMAL)
    if where == "top":
        spec = schema + body
    else:
        spec = body.replace("auth:\n", "auth:\n" + textwrap.indent(schema, "  "))
    connector = hr.load_connector(write(tmp_path, {"spec.yml": spec}))
    with pytest.raises(ValueError, match=r"missing required connector parameter: clientName$"):
        connector.connect(connection_parameters={"apiKey": "k"})
    with pytest.raises(ValueError, match="clientName"):
        connector.connect(connector_parameters={"clientName": ""}, credentials={"apiKey": "k"})
    connection = connector.connect(
        connector_parameters={"clientName": "n"}, connection_parameters={"apiKey": "k"}
    )
    assert send(connection).headers["x-key"] == "k"


# -- auth.options ---------------------------------------------------------------------------

OPTIONS_SPEC = """
name: Options
auth:
  title: Top level
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.example.com
      auth:
        username: {$var: credentials.user}
        password: {$var: credentials.password}
  options:
    apiKey:
      type: client-credentials
      title: API key
      enabled:
        $eval: {$var: connectorParameters.mode}
        is: key
      ui:
        schema:
          required: [apiKey]
      makeApiClient:
        type: mapping
        mapping:
          baseUri: https://api.example.com
          headers:
            X-API-Key: {$var: credentials.apiKey}
    basic:
      type: client-credentials
      enabled:
        $or:
          - $eval: {$var: connectorParameters.mode}
            is: basic
          - $eval: {$var: connectorParameters.mode}
            isEmpty: true
      inputSchema:
        required: [user, password]
    never:
      type: client-credentials
      enabled: false
    oauth:
      type: oauth2
      title: OAuth
      enabled: true
      getOAuthConfig:
        type: mapping
        mapping:
          tokenUri: https://auth.example.com/token
          clientId: {$var: connectorParameters.clientId}
      makeApiClient:
        type: mapping
        mapping:
          baseUri: https://api.example.com
          headers:
            Authorization: {$concat: ["Bearer ", {$var: credentials.access_token}]}
    legacy:
      type: oauth1
      enabled: true
"""

BASIC = {"user": "u", "password": "p"}
BASIC_HEADER = "Basic " + base64.b64encode(b"u:p").decode()


@pytest.fixture
def options_connector(tmp_path: Path) -> hr.Connector:
    return hr.load_connector(write(tmp_path, {"spec.yml": OPTIONS_SPEC}))


def test_options_listed(options_connector: hr.Connector) -> None:
    """Without a top-level type: auth_type is None and the options are listed in order."""
    assert options_connector.auth_type is None
    assert options_connector.options == ("apiKey", "basic", "never", "oauth", "legacy")


def test_auth_option_picks_the_option(options_connector: hr.Connector) -> None:
    """``connect(auth_option=...)`` uses that option and its own makeApiClient."""
    connection = options_connector.connect(
        auth_option="apiKey",
        connector_parameters={"mode": "key"},
        connection_parameters={"apiKey": "K"},
    )
    assert (connection.auth_option, connection.auth_type) == ("apiKey", "client-credentials")
    request = send(connection)
    assert request.headers["x-api-key"] == "K"
    assert "authorization" not in request.headers


def test_disabled_option_is_refused(options_connector: hr.Connector) -> None:
    """An option whose ``enabled`` formula is false (or ``enabled: false``) is a ValueError."""
    with pytest.raises(ValueError, match=r"auth option 'apiKey' is not enabled"):
        options_connector.connect(
            auth_option="apiKey",
            connector_parameters={"mode": "basic"},
            connection_parameters={"apiKey": "K"},
        )
    with pytest.raises(ValueError, match=r"auth option 'never' is not enabled"):
        options_connector.connect(auth_option="never", connection_parameters=BASIC)


def test_first_enabled_option_is_chosen_and_inherits_make_api_client(
    options_connector: hr.Connector,
) -> None:
    """No top-level type: the first enabled option; without its own makeApiClient it
    uses the top level's (basic auth here)."""
    connection = options_connector.connect(
        connector_parameters={"mode": "basic"}, connection_parameters=BASIC
    )
    assert connection.auth_option == "basic"
    request = send(connection)
    assert request.headers["authorization"] == BASIC_HEADER
    assert "x-api-key" not in request.headers
    # mode unset: "basic" is enabled through its isEmpty branch
    assert options_connector.connect(connection_parameters=BASIC).auth_option == "basic"
    # mode key: apiKey comes first and is enabled
    first = options_connector.connect(
        connector_parameters={"mode": "key"}, connection_parameters={"apiKey": "K"}
    )
    assert first.auth_option == "apiKey"


def test_first_enabled_skips_disabled_options(options_connector: hr.Connector) -> None:
    """apiKey, basic and never disabled: the next enabled option (oauth) is chosen."""
    connection = options_connector.connect(
        connector_parameters={"mode": "other", "clientId": "cid"},
        credentials={"access_token": "A1", "refresh_token": "R1"},
    )
    assert (connection.auth_option, connection.auth_type) == ("oauth", "oauth2")
    assert send(connection).headers["authorization"] == "Bearer A1"


def test_option_uses_its_own_input_schema(options_connector: hr.Connector) -> None:
    """The chosen option's required connection parameters are enforced."""
    with pytest.raises(ValueError, match=r"missing required connection parameter: password$"):
        options_connector.connect(auth_option="basic", connection_parameters={"user": "u"})
    with pytest.raises(ValueError, match=r"missing required connection parameter: apiKey$"):
        options_connector.connect(auth_option="apiKey", connector_parameters={"mode": "key"})


def test_unknown_option_key(options_connector: hr.Connector) -> None:
    """An unknown ``auth_option`` is a ValueError listing the known ones."""
    with pytest.raises(ValueError, match=r"unknown auth option 'nope'") as caught:
        options_connector.connect(auth_option="nope", connection_parameters=BASIC)
    assert "apiKey, basic, never, oauth, legacy" in str(caught.value)


def test_unsupported_option_type(options_connector: hr.Connector) -> None:
    """An enabled oauth1 option loads but cannot connect (a SpecError naming it)."""
    with pytest.raises(hr.SpecError, match="oauth1") as caught:
        options_connector.connect(auth_option="legacy", connection_parameters=BASIC)
    assert caught.value.key == "auth.options.legacy"


TOP_AND_OPTION_SPEC = """
auth:
  type: client-credentials
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.example.com
      headers:
        X-Top: {$var: credentials.apiKey}
  options:
    alt:
      enabled: {$var: connectorParameters.altEnabled}
      makeApiClient:
        type: mapping
        mapping:
          baseUri: https://alt.example.com
          headers:
            X-Alt: {$var: credentials.apiKey}
"""


def test_top_level_type_is_the_default_and_options_inherit_it(tmp_path: Path) -> None:
    """With a top-level type, connect() uses it; an option without type inherits it."""
    connector = hr.load_connector(write(tmp_path, {"spec.yml": TOP_AND_OPTION_SPEC}))
    assert connector.auth_type == "client-credentials"
    top = connector.connect(
        connector_parameters={"altEnabled": True}, connection_parameters={"apiKey": "k"}
    )
    assert (top.auth_option, top.auth_type) == (None, "client-credentials")
    request = send(top)
    assert (str(request.url), request.headers["x-top"]) == (f"{API}/items", "k")
    alt = connector.connect(
        auth_option="alt",
        connector_parameters={"altEnabled": True},
        connection_parameters={"apiKey": "k"},
    )
    assert (alt.auth_option, alt.auth_type) == ("alt", "client-credentials")
    request = send(alt)
    assert str(request.url) == "https://alt.example.com/items"
    assert request.headers["x-alt"] == "k"
    assert "x-top" not in request.headers
    with pytest.raises(ValueError, match="not enabled"):
        connector.connect(auth_option="alt", connection_parameters={"apiKey": "k"})


def test_no_enabled_option(tmp_path: Path) -> None:
    """Only disabled options and no top-level type: connect() raises ValueError."""
    spec = """
    auth:
      makeApiClient:
        type: mapping
        mapping: {baseUri: "https://api.example.com"}
      options:
        a: {type: client-credentials, enabled: false}
        b:
          type: client-credentials
          enabled: {$eval: {$var: connectorParameters.on}, is: true}
    """
    connector = hr.load_connector(write(tmp_path, {"spec.yml": spec}))
    with pytest.raises(ValueError, match="no auth option is enabled"):
        connector.connect()
    assert connector.connect(connector_parameters={"on": True}).auth_option == "b"


@pytest.mark.anyio
async def test_options_async(options_connector: hr.Connector) -> None:
    """The chosen option's makeApiClient through the async client."""
    basic = options_connector.connect(connection_parameters=BASIC)
    assert (await asend(basic)).headers["authorization"] == BASIC_HEADER
    key = options_connector.connect(
        auth_option="apiKey",
        connector_parameters={"mode": "key"},
        connection_parameters={"apiKey": "K"},
    )
    assert (await asend(key)).headers["x-api-key"] == "K"


# -- not-supported --------------------------------------------------------------------------

NOT_SUPPORTED_SPEC = """
auth:
  type: client-credentials
  refreshCredentials:
    implementationType: not-supported
  getCredentialsFromConnectionParameters:
    implementationType: not-supported
  test:
    implementationType: not-supported
  makeApiClient:
    implementationType: mapping
    filePath: client.yml
"""


def test_not_supported_method_is_absent(tmp_path: Path) -> None:
    """``implementationType: not-supported``: the method is absent (no file needed)."""
    write(
        tmp_path,
        {
            "spec.yml": NOT_SUPPORTED_SPEC,
            "client.yml": """
            baseUri: https://api.example.com
            headers: {X-Key: {$var: credentials.k}}
            """,
        },
    )
    connector = hr.load_connector(tmp_path)
    (variant,) = connector.describe()["variants"]
    assert list(variant["methods"]) == ["makeApiClient"]
    connection = connector.connect(connection_parameters={"k": "v"})
    # no getCredentialsFromConnectionParameters: the parameters are the credentials
    assert dict(connection.credentials) == {"k": "v"}
    with pytest.raises(hr.SpecError, match="no test method"):
        connection.test()
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401)

    # no refreshCredentials: a rejection means the user must reconnect
    with (
        connection.client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(hr.ReauthorizationRequired),
    ):
        client.get("/items")
    assert len(calls) == 1
    assert connection.auth.stats.refreshes == 0


def test_not_supported_make_api_client_is_a_spec_error(tmp_path: Path) -> None:
    """makeApiClient cannot be not-supported: every connector needs one."""
    spec = (
        "auth:\n  type: client-credentials\n  makeApiClient: {implementationType: not-supported}\n"
    )
    with pytest.raises(hr.SpecError, match="no makeApiClient"):
        hr.load_connector(write(tmp_path, {"spec.yml": spec}))


def test_option_not_supported_removes_an_inherited_method(tmp_path: Path) -> None:
    """An option that declares a method not-supported does not have it, even when the top
    level defines it (declaring it is "defining its own")."""
    spec = """
    auth:
      type: client-credentials
      makeApiClient:
        type: mapping
        mapping: {baseUri: "https://api.example.com"}
      test:
        type: rest-api-mapping
        mapping: {path: /me}
      options:
        plain: {}
        untestable:
          test: {implementationType: not-supported}
    """
    connector = hr.load_connector(write(tmp_path, {"spec.yml": spec}))
    methods = {v["option"]: set(v["methods"]) for v in connector.describe()["variants"]}
    assert methods == {
        None: {"makeApiClient", "test"},
        "plain": {"makeApiClient", "test"},
        "untestable": {"makeApiClient"},
    }
    connection = connector.connect(auth_option="untestable")
    with pytest.raises(hr.SpecError, match="no test method"):
        connection.test()


# -- python methods ---------------------------------------------------------------------

PY_SPEC = """
auth:
  type: client-credentials
  refreshCredentials:
    implementationType: python
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.example.com
      headers:
        Authorization: {$concat: ["Bearer ", {$var: credentials.access_token}]}
"""

RECORDING_FUNCTIONS = {
    "credentials-only": """
        RECEIVED = []

        def refresh_credentials(credentials):
            RECEIVED.append(dict(locals()))
            return {"access_token": "T-" + credentials["apiKey"]}
        """,
    "kwargs": """
        RECEIVED = []

        def refresh_credentials(**kwargs):
            RECEIVED.append(dict(kwargs))
            return {"access_token": "T-" + kwargs["credentials"]["apiKey"]}
        """,
    "async": """
        RECEIVED = []

        async def refresh_credentials(connector_parameters, api_client, timeout=5.0):
            RECEIVED.append(dict(locals()))
            return {"access_token": "T-" + connector_parameters["tenant"]}
        """,
    "parameters": """
        RECEIVED = []

        def refresh_credentials(connection_parameters, connector_parameters, *args, extra=None):
            RECEIVED.append(dict(locals()))
            return {"access_token": "T-" + connection_parameters["apiKey"]}
        """,
}
CONNECTOR_PARAMETERS = {"tenant": "K"}
CONNECTION_PARAMETERS = {"apiKey": "K"}


def python_connection(tmp_path: Path, flavour: str) -> tuple[hr.Connection, ModuleType]:
    root = write(
        tmp_path,
        {"spec.yml": PY_SPEC, "auth/refresh-credentials.py": RECORDING_FUNCTIONS[flavour]},
    )
    connector = hr.load_connector(root)
    connection = connector.connect(
        connector_parameters=CONNECTOR_PARAMETERS, connection_parameters=CONNECTION_PARAMETERS
    )
    return connection, module_of(root / "auth" / "refresh-credentials.py")


def check_received(received: list[dict[str, Any]], flavour: str) -> None:
    assert len(received) == 1
    got = received[0]
    if flavour == "credentials-only":
        assert got == {"credentials": {"apiKey": "K"}}
    elif flavour == "kwargs":
        assert set(got) == {
            "credentials",
            "connector_parameters",
            "connection_parameters",
            "api_client",
        }
        assert got["credentials"] == {"apiKey": "K"}
        assert got["connector_parameters"] == CONNECTOR_PARAMETERS
        assert got["connection_parameters"] == CONNECTION_PARAMETERS
        # a sync function gets a sync client (it runs in a worker thread from async code)
        assert isinstance(got["api_client"], httpx.Client)
    elif flavour == "async":
        # only what it names; ``timeout`` keeps its default
        assert set(got) == {"connector_parameters", "api_client", "timeout"}
        assert got["connector_parameters"] == CONNECTOR_PARAMETERS
        assert got["timeout"] == 5.0
        assert isinstance(got["api_client"], httpx.AsyncClient)
    else:
        assert got == {
            "connection_parameters": CONNECTION_PARAMETERS,
            "connector_parameters": CONNECTOR_PARAMETERS,
            "args": (),
            "extra": None,
        }


@pytest.mark.parametrize("flavour", list(RECORDING_FUNCTIONS))
def test_python_method_gets_only_the_keywords_it_accepts(tmp_path: Path, flavour: str) -> None:
    """DESIGN "Connector specs": refresh_credentials (the method in snake_case) is called
    with the keywords it accepts among credentials, connector_parameters,
    connection_parameters and api_client (``**kwargs``: all four); async functions too."""
    connection, module = python_connection(tmp_path, flavour)
    request = send(connection)
    assert request.headers["authorization"] == "Bearer T-K"
    assert connection.auth.stats.refreshes == 1
    check_received(module.RECEIVED, flavour)


@pytest.mark.anyio
@pytest.mark.parametrize("flavour", list(RECORDING_FUNCTIONS))
async def test_python_method_keywords_async(tmp_path: Path, flavour: str) -> None:
    """The same through the async client (sync functions run in a worker thread)."""
    connection, module = python_connection(tmp_path, flavour)
    request = await asend(connection)
    assert request.headers["authorization"] == "Bearer T-K"
    assert connection.auth.stats.refreshes == 1
    check_received(module.RECEIVED, flavour)


def test_python_get_credentials_from_connection_parameters(tmp_path: Path) -> None:
    """get_credentials_from_connection_parameters is called once, at connect()."""
    spec = PY_SPEC.replace(
        "  refreshCredentials:\n    implementationType: python\n",
        "  getCredentialsFromConnectionParameters:\n    implementationType: python\n",
    )
    source = """
    CALLS = []

    def get_credentials_from_connection_parameters(connection_parameters):
        CALLS.append(dict(locals()))
        return {"access_token": connection_parameters["apiKey"].lower()}
    """
    root = write(
        tmp_path, {"spec.yml": spec, "auth/get-credentials-from-connection-parameters.py": source}
    )
    connection = hr.load_connector(root).connect(connection_parameters={"apiKey": "ABC"})
    module = module_of(root / "auth" / "get-credentials-from-connection-parameters.py")
    assert module.CALLS == [{"connection_parameters": {"apiKey": "ABC"}}]
    assert send(connection).headers["authorization"] == "Bearer abc"
    assert len(module.CALLS) == 1


def test_python_get_oauth_config_is_get_oauth_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """getOAuthConfig -> get_oauth_config(), given only the keywords it takes; its tokenUri
    and clientId drive the standard refresh."""
    assert snake_case("getOAuthConfig") == "get_oauth_config"
    spec = """
    auth:
      type: oauth2
      getOAuthConfig:
        implementationType: python
      makeApiClient:
        type: mapping
        mapping:
          baseUri: https://api.example.com
          headers:
            Authorization: {$concat: ["Bearer ", {$var: credentials.access_token}]}
    """
    source = """
    CALLS = []

    def get_oauth_config(connector_parameters):
        CALLS.append(dict(locals()))
        return {
            "tokenUri": "https://auth.example.com/token",
            "clientId": connector_parameters["clientId"],
            "clientAuthLocation": "body",
        }
    """
    root = write(tmp_path, {"spec.yml": spec, "auth/get-oauth-config.py": source})
    token_calls: list[httpx.Request] = []

    def token(request: httpx.Request) -> httpx.Response:
        token_calls.append(request)
        return httpx.Response(200, json={"access_token": "A2", "token_type": "Bearer"})

    original = hr.OAuth2Refresh.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("transport", httpx.MockTransport(token))
        original(self, *args, **kwargs)

    monkeypatch.setattr(hr.OAuth2Refresh, "__init__", init)
    connection = hr.load_connector(root).connect(
        connector_parameters={"clientId": "cid"},
        credentials={"access_token": "A1", "refresh_token": "R1"},
    )
    sent: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("authorization"))
        return httpx.Response(200 if sent[-1] == "Bearer A2" else 401)

    with connection.client(transport=httpx.MockTransport(handler)) as client:
        assert client.get("/items").status_code == 200
    assert sent == ["Bearer A1", "Bearer A2"]
    assert len(token_calls) == 1
    assert str(token_calls[0].url) == "https://auth.example.com/token"
    form = dict(httpx.QueryParams(token_calls[0].content.decode()))
    assert form == {"grant_type": "refresh_token", "refresh_token": "R1", "client_id": "cid"}
    module = module_of(root / "auth" / "get-oauth-config.py")
    assert module.CALLS == [{"connector_parameters": {"clientId": "cid"}}]


def test_python_camel_case_function_name_is_not_found(tmp_path: Path) -> None:
    """The function must be named in snake_case: getOAuthConfig() alone is a SpecError."""
    spec = """
    auth:
      type: oauth2
      getOAuthConfig: {implementationType: python}
      makeApiClient: {type: mapping, mapping: {baseUri: "https://api.example.com"}}
    """
    source = "def getOAuthConfig(connector_parameters):\n    return {}\n"
    root = write(tmp_path, {"spec.yml": spec, "auth/get-oauth-config.py": source})
    with pytest.raises(hr.SpecError, match=r"defines no function get_oauth_config\(\)"):
        hr.load_connector(root)


def test_python_parameter_the_method_cannot_give(tmp_path: Path) -> None:
    """A required parameter outside the offered keywords is a SpecError at load time
    (get_oauth_config is offered no credentials)."""
    spec = """
    auth:
      type: oauth2
      getOAuthConfig: {implementationType: python}
      makeApiClient: {type: mapping, mapping: {baseUri: "https://api.example.com"}}
    """
    source = "def get_oauth_config(connector_parameters, credentials):\n    return {}\n"
    root = write(tmp_path, {"spec.yml": spec, "auth/get-oauth-config.py": source})
    with pytest.raises(hr.SpecError, match="requires parameter 'credentials'") as caught:
        hr.load_connector(root)
    assert caught.value.line == 1
    assert "connection_parameters, connector_parameters" in str(caught.value)


# -- describe and repr ------------------------------------------------------------------


def test_describe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """describe(): name, key, file, and per variant its option, type, title, support and
    methods with their kind and file."""
    write(tmp_path / "opts", {"spec.yml": OPTIONS_SPEC})
    monkeypatch.chdir(tmp_path)
    connector = hr.load_connector("opts")
    inline = "mapping (opts/spec.yml)"
    assert connector.describe() == {
        "name": "Options",
        "key": None,
        "file": str(Path("opts") / "spec.yml"),
        "variants": [
            {
                "option": "apiKey",
                "type": "client-credentials",
                "title": "API key",
                "supported": True,
                "methods": {"makeApiClient": inline},
            },
            {
                "option": "basic",
                "type": "client-credentials",
                "title": None,
                "supported": True,
                "methods": {"makeApiClient": inline},
            },
            {
                "option": "never",
                "type": "client-credentials",
                "title": None,
                "supported": True,
                "methods": {"makeApiClient": inline},
            },
            {
                "option": "oauth",
                "type": "oauth2",
                "title": "OAuth",
                "supported": True,
                "methods": {"makeApiClient": inline, "getOAuthConfig": inline},
            },
            {
                "option": "legacy",
                "type": "oauth1",
                "title": None,
                "supported": False,
                "methods": {"makeApiClient": inline},
            },
        ],
    }


def test_describe_top_level_variant(tmp_path: Path) -> None:
    """A top-level variant has option None and the auth title."""
    connector = hr.load_connector(write(tmp_path, FILE_LAYOUT))
    (variant,) = connector.describe()["variants"]
    assert variant["option"] is None
    assert variant["type"] == "client-credentials"
    assert variant["supported"] is True
    assert {name: kind.split(" ")[0] for name, kind in variant["methods"].items()} == {
        "makeApiClient": "mapping",
        "refreshCredentials": "python",
        "getCredentialsFromConnectionParameters": "mapping",
        "test": "rest-api-mapping",
    }
    assert variant["methods"]["refreshCredentials"].endswith("methods/refresh.py)")


SECRETS = ("csecret-Zq81", "at-Xk4r2", "rt-Pm93v", "apikey-Wd77")


def test_repr_and_describe_hold_no_secret(tmp_path: Path) -> None:
    """repr() of Connector and Connection (and describe()) name no secret (DESIGN)."""
    connector = hr.load_connector(write(tmp_path, {"spec.yml": OPTIONS_SPEC}))
    oauth = connector.connect(
        auth_option="oauth",
        connector_parameters={"clientId": "cid", "clientSecret": SECRETS[0]},
        credentials={"access_token": SECRETS[1], "refresh_token": SECRETS[2]},
    )
    key = connector.connect(
        auth_option="apiKey",
        connector_parameters={"mode": "key"},
        connection_parameters={"apiKey": SECRETS[3]},
    )
    texts = [repr(connector), str(connector.describe())]
    for connection in (oauth, key):
        texts += [repr(connection), str(connection), repr(connection.auth)]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
    assert repr(connector) == (
        "<Connector 'Options' auth=None options=['apiKey', 'basic', 'never', 'oauth', 'legacy']>"
    )
    assert repr(oauth) == "<Connection 'Options' type='oauth2' option='oauth' version=0>"


# -- YAML anchors and merge keys ----------------------------------------------------------

ANCHORS_SPEC = """
name: Anchors
x-defaults:
  headers: &headers
    Accept: application/json
    X-Client: {$var: connectorParameters.clientName}
  client: &client
    type: mapping
    mapping:
      baseUri: &base https://api.example.com
      headers:
        <<: *headers
        X-Key: {$var: credentials.apiKey}
  option: &option
    type: client-credentials
    title: Shared title
    enabled: true
auth:
  type: client-credentials
  makeApiClient: *client
  options:
    first:
      <<: *option
    second:
      <<: *option
      makeApiClient:
        type: mapping
        mapping:
          baseUri: *base
          headers:
            <<: *headers
            X-Second: yes-second
"""


def test_anchors_aliases_and_merge_keys(tmp_path: Path) -> None:
    """A spec using anchors, aliases and ``<<`` merge keys loads and behaves as expanded."""
    connector = hr.load_connector(write(tmp_path, {"spec.yml": ANCHORS_SPEC}))
    titles = {v["option"]: v["title"] for v in connector.describe()["variants"]}
    assert titles == {None: None, "first": "Shared title", "second": "Shared title"}
    parameters: dict[str, Any] = {
        "connector_parameters": {"clientName": "acme"},
        "connection_parameters": {"apiKey": "k"},
    }
    top = send(connector.connect(**parameters))
    first = send(connector.connect(auth_option="first", **parameters))
    second = send(connector.connect(auth_option="second", **parameters))
    assert wire(top) == wire(first)
    assert str(top.url) == f"{API}/items"
    assert (top.headers["accept"], top.headers["x-client"], top.headers["x-key"]) == (
        "application/json",
        "acme",
        "k",
    )
    assert str(second.url) == f"{API}/items"
    assert second.headers["x-second"] == "yes-second"
    assert second.headers["x-client"] == "acme"
    assert "x-key" not in second.headers


def test_merge_key_with_overridden_key(tmp_path: Path) -> None:
    """YAML merge keys: a key given next to ``<<`` overrides the merged one (YAML 1.1
    merge type), as ``yaml.safe_load`` does; it is not a duplicate key."""
    spec = ANCHORS_SPEC.replace(
        "    second:\n      <<: *option\n",
        "    second:\n      <<: *option\n      title: Second title\n",
    )
    connector = hr.load_connector(write(tmp_path, {"spec.yml": spec}))
    titles = {v["option"]: v["title"] for v in connector.describe()["variants"]}
    assert titles == {None: None, "first": "Shared title", "second": "Second title"}


def test_real_duplicate_key_is_still_an_error(tmp_path: Path) -> None:
    """A key written twice in one mapping (no merge) is a SpecError with its line."""
    spec = textwrap.dedent(MINIMAL).replace("name: Minimal\n", "name: Minimal\nname: Again\n")
    with pytest.raises(hr.SpecError, match="appears twice") as caught:
        hr.load_connector(write(tmp_path, {"spec.yml": spec}))
    assert (caught.value.line, caught.value.key) == (2, "name")
