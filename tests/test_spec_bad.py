"""Broken connector specs (issue 4): each one is a ``SpecError`` naming the file and line.

Every case below is a connector directory (``spec.yml`` plus method files under ``auth/``)
built in ``tmp_path`` with exactly one thing wrong. For each case the test asserts that
``load_connector`` raises ``SpecError``, that ``exc.file`` is the file at fault, that
``exc.line`` is the exact 1-based line (computed from the text the case wrote, by finding
a text that appears on one line only), that ``exc.key`` is the key path, and that the
message says ``file:line``. The CLI (``httpx-refresh check``) turns every case into exit
code 3 with the file and line on stderr and no Python traceback, in process and as a real
subprocess. A last group covers errors that only show at connect time, at request time
or at refresh time: they must name the file and line too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

import httpx_refresh as hr
from httpx_refresh import _cli

CONNECTOR = "conn"
MARKER = "@@MARKER@@"  # replaced by the JSON-quoted path of a directory that must not appear

# A valid makeApiClient, inline (indented to sit under ``auth:``).
CLIENT = """\
  makeApiClient:
    type: mapping
    mapping:
      baseUri: https://api.example.test
      headers:
        Authorization:
          $concat: ["Bearer ", {$var: credentials.access_token}]
"""
# The same makeApiClient as a stub whose body is auth/make-api-client.map.yml.
CLIENT_STUB = """\
  makeApiClient:
    implementationType: mapping
    filePath: auth/make-api-client.map.yml
"""
CLIENT_MAP = """\
baseUri: https://api.example.test
headers:
  Authorization:
    $concat: ["Bearer ", {$var: credentials.access_token}]
  Accept: application/json
"""
# A python refreshCredentials whose body is auth/refresh-credentials.py.
REFRESH_PY_STUB = """\
  refreshCredentials:
    implementationType: python
    filePath: auth/refresh-credentials.py
"""
GOOD_REFRESH_PY = '''\
"""Refresh the token."""

from typing import Any


def refresh_credentials(credentials: dict[str, Any]) -> dict[str, Any]:
    return {"access_token": "new"}
'''


def spec(auth: str, *, head: str = "name: Broken\nkey: broken\n") -> str:
    """A spec.yml: ``head``, then ``auth:`` and the given (already indented) auth body."""
    return f"{head}auth:\n{auth}"


def cc(*parts: str) -> str:
    """A client-credentials spec whose auth block is ``parts`` (each indented by 2)."""
    return spec("  type: client-credentials\n" + "".join(parts))


@dataclass(frozen=True)
class Case:
    """One broken connector.

    Attributes:
        id: the pytest id.
        files: path relative to the connector directory -> text (``spec.yml`` required).
        file: the file the error must name (relative to the connector directory).
        needle: a text found on exactly one line of ``file``: the line the error must name.
        key: the expected ``exc.key``.
        says: a text the message must contain (so the error is the intended one).
    """

    id: str
    files: Mapping[str, str]
    file: str
    needle: str
    key: str | None
    says: str


def line_of(text: str, needle: str) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    if len(hits) != 1:  # a test-data mistake, not a library failure
        raise ValueError(f"{needle!r} is on lines {hits}, expected exactly one")
    return hits[0]


CASES = [
    # -- YAML ------------------------------------------------------------------------------
    Case(
        "yaml-syntax-error",
        {"spec.yml": cc("  title: Acme: the CRM\n", CLIENT)},
        "spec.yml",
        "title: Acme: the CRM",
        None,
        "mapping values are not allowed here",
    ),
    Case(
        "yaml-tab-in-method-file",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": "baseUri: https://x.test\nheaders:\n\tAccept: a\n",
        },
        "auth/make-api-client.map.yml",
        "\tAccept",
        None,
        "cannot start any token",
    ),
    Case(
        "yaml-duplicate-key",
        {"spec.yml": spec("  type: oauth2\n  title: Acme\n  type: client-credentials\n" + CLIENT)},
        "spec.yml",
        "type: client-credentials",
        "auth.type",
        "appears twice",
    ),
    Case(
        "yaml-duplicate-key-in-method-file",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": CLIENT_MAP + "baseUri: https://other.test\n",
        },
        "auth/make-api-client.map.yml",
        "baseUri: https://other.test",
        "baseUri",
        "appears twice",
    ),
    Case(
        "yaml-python-apply-tag",
        {
            "spec.yml": cc(
                "  parametersSchema:\n",
                "    type: object\n",
                f"    properties: !!python/object/apply:os.mkdir [{MARKER}]\n",
                CLIENT,
            )
        },
        "spec.yml",
        "!!python/object/apply:os.mkdir",
        "auth.parametersSchema.properties",
        "tag:yaml.org,2002:python/object/apply:os.mkdir",
    ),
    Case(
        "yaml-python-name-tag",
        {"spec.yml": cc("  title: !!python/name:os.system ''\n", CLIENT)},
        "spec.yml",
        "!!python/name:os.system",
        None,
        "tag:yaml.org,2002:python/name:os.system",
    ),
    Case(
        "yaml-python-object-tag-on-mapping",
        {
            "spec.yml": cc(
                f"  parametersSchema: !!python/object/new:os.mkdir {{args: [{MARKER}]}}\n",
                CLIENT,
            )
        },
        "spec.yml",
        "!!python/object/new:os.mkdir",
        "auth.parametersSchema",
        "tag:yaml.org,2002:python/object/new:os.mkdir",
    ),
    # -- top level and the auth block -----------------------------------------------------------
    Case(
        "top-level-list",
        {"spec.yml": "- name: Broken\n- auth: {}\n"},
        "spec.yml",
        "- name: Broken",
        None,
        "must be a YAML mapping",
    ),
    Case(
        "top-level-empty",
        {"spec.yml": "# nothing but a comment\n"},
        "spec.yml",
        "# nothing but a comment",
        None,
        "must be a YAML mapping",
    ),
    Case(
        "no-auth-block",
        {"spec.yml": "name: Broken\nkey: broken\n"},
        "spec.yml",
        "name: Broken",
        "auth",
        "no auth block",
    ),
    Case(
        "auth-not-a-mapping",
        {"spec.yml": "name: Broken\nkey: broken\nauth: oauth2\n"},
        "spec.yml",
        "auth: oauth2",
        "auth",
        "auth must be a mapping, got str",
    ),
    Case(
        "auth-unknown-key",
        {"spec.yml": cc("  tokenUrl: https://api.example.test/token\n", CLIENT)},
        "spec.yml",
        "tokenUrl:",
        "auth.tokenUrl",
        "unknown key 'tokenUrl' in auth",
    ),
    Case(
        "auth-unknown-type",
        {"spec.yml": spec("  title: Acme\n  type: oauth3\n" + CLIENT)},
        "spec.yml",
        "type: oauth3",
        "auth.type",
        "unknown auth type 'oauth3'",
    ),
    Case(
        "auth-type-not-a-string",
        {"spec.yml": spec("  title: Acme\n  type: [oauth2]\n" + CLIENT)},
        "spec.yml",
        "type: [oauth2]",
        "auth.type",
        "type must be a string, got list",
    ),
    Case(
        "auth-no-type",
        {"spec.yml": spec("  title: Acme\n" + CLIENT)},
        "spec.yml",
        "auth:",
        "auth",
        "auth needs a type",
    ),
    Case(
        "ui-schema-not-a-mapping",
        {"spec.yml": cc("  ui:\n    helpUri: https://docs.test\n    schema: [apiKey]\n", CLIENT)},
        "spec.yml",
        "schema: [apiKey]",
        "auth.ui.schema",
        "ui.schema must be a mapping, got list",
    ),
    Case(
        "title-not-a-string",
        {"spec.yml": cc("  title: [Acme, CRM]\n", CLIENT)},
        "spec.yml",
        "title: [Acme, CRM]",
        "auth.title",
        "title must be a string, got list",
    ),
    Case(
        "missing-makeApiClient",
        {
            "spec.yml": cc("  title: Acme\n", REFRESH_PY_STUB),
            "auth/refresh-credentials.py": GOOD_REFRESH_PY,
        },
        "spec.yml",
        "auth:",
        "auth",
        "no makeApiClient",
    ),
    Case(
        "oauth2-without-getOAuthConfig-or-refreshCredentials",
        {"spec.yml": spec("  type: oauth2\n" + CLIENT)},
        "spec.yml",
        "auth:",
        "auth",
        "needs getOAuthConfig",
    ),
    # -- method stubs ----------------------------------------------------------------------------
    Case(
        "method-stub-not-a-mapping",
        {"spec.yml": cc("  makeApiClient: auth/make-api-client.map.yml\n")},
        "spec.yml",
        "makeApiClient:",
        "auth.makeApiClient",
        "a method is a mapping",
    ),
    Case(
        "unknown-implementationType",
        {"spec.yml": cc("  makeApiClient:\n    implementationType: typescript\n")},
        "spec.yml",
        "implementationType: typescript",
        "auth.makeApiClient.implementationType",
        "unknown implementationType 'typescript'",
    ),
    Case(
        "missing-implementationType",
        {
            "spec.yml": cc("  makeApiClient:\n    filePath: auth/make-api-client.map.yml\n"),
            "auth/make-api-client.map.yml": CLIENT_MAP,
        },
        "spec.yml",
        "makeApiClient:",
        "auth.makeApiClient",
        "needs implementationType",
    ),
    Case(
        "unknown-stub-key",
        {"spec.yml": cc(CLIENT_STUB, "    path: auth/x.yml\n")},
        "spec.yml",
        "path: auth/x.yml",
        "auth.makeApiClient.path",
        "unknown key 'path' in method makeApiClient",
    ),
    Case(
        "filePath-missing-file",
        {"spec.yml": cc(CLIENT_STUB)},
        "spec.yml",
        "filePath: auth/make-api-client.map.yml",
        "auth.makeApiClient.filePath",
        "not found",
    ),
    Case(
        "filePath-escapes-the-connector",
        {
            "spec.yml": cc(
                "  makeApiClient:\n    type: mapping\n    filePath: ../outside.map.yml\n"
            ),
            "../outside.map.yml": CLIENT_MAP,
        },
        "spec.yml",
        "filePath: ../outside.map.yml",
        "auth.makeApiClient.filePath",
        "outside the connector directory",
    ),
    Case(
        "filePath-not-a-string",
        {"spec.yml": cc("  makeApiClient:\n    type: mapping\n    filePath: [a.yml]\n")},
        "spec.yml",
        "filePath: [a.yml]",
        "auth.makeApiClient.filePath",
        "filePath must be a relative path",
    ),
    Case(
        "filePath-and-inline-mapping",
        {
            "spec.yml": cc(CLIENT_STUB, "    mapping: {baseUri: https://x.test}\n"),
            "auth/make-api-client.map.yml": CLIENT_MAP,
        },
        "spec.yml",
        "makeApiClient:",
        "auth.makeApiClient",
        "both filePath and an inline body",
    ),
    Case(
        "inline-mapping-with-python",
        {
            "spec.yml": cc(
                CLIENT,
                "  refreshCredentials:\n",
                "    implementationType: python\n",
                "    mapping: {access_token: x}\n",
            )
        },
        "spec.yml",
        "mapping: {access_token: x}",
        "auth.refreshCredentials.mapping",
        "mapping: is for mapping methods, not python",
    ),
    Case(
        "rest-api-mapping-for-refreshCredentials",
        {
            "spec.yml": cc(
                CLIENT,
                "  refreshCredentials:\n",
                "    implementationType: rest-api-mapping\n",
                "    filePath: auth/refresh-credentials.rest.yml\n",
            ),
            "auth/refresh-credentials.rest.yml": "path: /token\nmethod: post\n",
        },
        "spec.yml",
        "implementationType: rest-api-mapping",
        "auth.refreshCredentials.implementationType",
        "rest-api-mapping is supported for the test method only",
    ),
    # -- formulas ----------------------------------------------------------------------------------
    Case(
        "unknown-formula",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": (
                "baseUri: https://api.example.test\n"
                "headers:\n"
                "  Authorization:\n"
                "    $foo: [Bearer, {$var: credentials.access_token}]\n"
            ),
        },
        "auth/make-api-client.map.yml",
        "$foo:",
        "headers.Authorization.$foo",
        "unknown formula $foo",
    ),
    Case(
        "platform-formula-lookup",
        {
            "spec.yml": spec(
                "  type: oauth2\n"
                + CLIENT
                + "  getOAuthConfig:\n"
                + "    implementationType: mapping\n"
                + "    filePath: auth/get-oauth-config.map.yml\n"
            ),
            "auth/get-oauth-config.map.yml": (
                "tokenUri: https://api.example.test/token\n"
                "clientId:\n"
                "  $lookup: {table: clients, key: {$var: connectorParameters.tenant}}\n"
            ),
        },
        "auth/get-oauth-config.map.yml",
        "$lookup:",
        "clientId.$lookup",
        "needs the Integration.app platform",
    ),
    Case(
        "eval-two-operators",
        {
            "spec.yml": cc(CLIENT, "  test:\n    implementationType: rest-api-mapping\n"),
            "auth/test.rest.yml": (
                "path: /me\n"
                "responseMapping:\n"
                "  $eval: {$var: response.statusCode}\n"
                "  is: 200\n"
                "  isNot: 500\n"
            ),
        },
        "auth/test.rest.yml",
        "responseMapping:",
        "responseMapping",
        "$eval takes exactly one operator",
    ),
    Case(
        "eval-unknown-operator",
        {
            "spec.yml": cc(CLIENT, "  test:\n    implementationType: rest-api-mapping\n"),
            "auth/test.rest.yml": (
                "path: /me\nresponseMapping:\n  $eval: {$var: response.statusCode}\n  equals: 200\n"
            ),
        },
        "auth/test.rest.yml",
        "equals: 200",
        "responseMapping.equals",
        "equals",
    ),
    Case(
        "tpl-name-not-in-values",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": (
                "baseUri: https://api.example.test\n"
                "headers:\n"
                "  Authorization:\n"
                "    $tpl:\n"
                "      template: '{scheme} {token}'\n"
                "      values:\n"
                "        scheme: Bearer\n"
                "        tokn: {$var: credentials.access_token}\n"
            ),
        },
        "auth/make-api-client.map.yml",
        "template:",
        "headers.Authorization.$tpl.template",
        "uses {token}, which is not in its values",
    ),
    Case(
        "concat-not-a-list",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": (
                "baseUri: https://api.example.test\n"
                "headers:\n"
                "  Authorization:\n"
                "    $concat: Bearer token\n"
            ),
        },
        "auth/make-api-client.map.yml",
        "$concat: Bearer token",
        "headers.Authorization.$concat",
        "$concat takes a list, got a str",
    ),
    Case(
        "var-unknown-root",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": (
                "baseUri: https://api.example.test\n"
                "headers:\n"
                "  Authorization:\n"
                "    $concat:\n"
                "      - 'Bearer '\n"
                "      - $var: credentals.access_token\n"
            ),
        },
        "auth/make-api-client.map.yml",
        "$var: credentals.access_token",
        "headers.Authorization.$concat[1].$var",
        "starts with 'credentals', which is not a variable here",
    ),
    Case(
        "var-malformed-locator",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": (
                "baseUri: https://api.example.test\n"
                "headers:\n"
                "  Authorization:\n"
                "    $var: credentials..access_token\n"
            ),
        },
        "auth/make-api-client.map.yml",
        "$var: credentials..access_token",
        "headers.Authorization.$var",
        "is not a valid locator",
    ),
    Case(
        "var-root-the-method-does-not-get",
        {
            "spec.yml": spec(
                "  type: oauth2\n"
                + CLIENT
                + "  getOAuthConfig:\n"
                + "    implementationType: mapping\n"
                + "    filePath: auth/get-oauth-config.map.yml\n"
            ),
            "auth/get-oauth-config.map.yml": (
                "tokenUri: https://api.example.test/token\n"
                "clientId:\n"
                "  $var: credentials.client_id\n"
            ),
        },
        "auth/get-oauth-config.map.yml",
        "$var: credentials.client_id",
        "clientId.$var",
        "starts with 'credentials', which is not a variable here",
    ),
    Case(
        "var-response-outside-a-response-handler",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": CLIENT_MAP
            + "  X-Status: {$var: response.statusCode}\n",
        },
        "auth/make-api-client.map.yml",
        "X-Status:",
        "headers.X-Status.$var",
        "starts with 'response'",
    ),
    Case(
        "and-empty-list",
        {
            "spec.yml": cc(
                CLIENT,
                "  options:\n",
                "    key:\n",
                "      title: API key\n",
                "      enabled:\n",
                "        $and: []\n",
            )
        },
        "spec.yml",
        "$and: []",
        "auth.options.key.enabled.$and",
        "$and takes a non-empty list",
    ),
    Case(
        "inline-mapping-broken-formula",
        {
            "spec.yml": cc(
                CLIENT,
                "  refreshCredentials:\n",
                "    type: mapping\n",
                "    mapping:\n",
                "      access_token:\n",
                "        $firstNotEmpty: {$var: credentials.access_token}\n",
            )
        },
        "spec.yml",
        "$firstNotEmpty:",
        "auth.refreshCredentials.mapping.access_token.$firstNotEmpty",
        "$firstNotEmpty takes a list, got a mapping",
    ),
    # -- makeApiClient and the rest-api-mapping test ----------------------------------------------
    Case(
        "makeApiClient-unknown-field",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": "baseURL: https://api.example.test\n",
        },
        "auth/make-api-client.map.yml",
        "baseURL:",
        "baseURL",
        "unknown makeApiClient field 'baseURL'",
    ),
    Case(
        "makeApiClient-headers-not-a-mapping",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": (
                "baseUri: https://api.example.test\nheaders:\n  - 'Accept: application/json'\n"
            ),
        },
        "auth/make-api-client.map.yml",
        "headers:",
        "headers",
        "makeApiClient headers must be a mapping",
    ),
    Case(
        "makeApiClient-inline-unknown-field",
        {
            "spec.yml": cc(
                "  makeApiClient:\n",
                "    type: mapping\n",
                "    mapping:\n",
                "      baseUri: https://api.example.test\n",
                "      params: {limit: 1}\n",
            )
        },
        "spec.yml",
        "params:",
        "auth.makeApiClient.mapping.params",
        "unknown makeApiClient field 'params'",
    ),
    Case(
        "response-handler-without-match",
        {
            "spec.yml": cc(CLIENT_STUB),
            "auth/make-api-client.map.yml": (
                CLIENT_MAP + "responseHandlers:\n  - error:\n      key: access_token_expired\n"
            ),
        },
        "auth/make-api-client.map.yml",
        "- error:",
        "responseHandlers[0]",
        "a response handler is {match, error: {key}}",
    ),
    Case(
        "rest-test-unknown-key",
        {
            "spec.yml": cc(CLIENT, "  test:\n    implementationType: rest-api-mapping\n"),
            "auth/test.rest.yml": "path: /me\nmethod: get\nurl: https://api.example.test/me\n",
        },
        "auth/test.rest.yml",
        "url:",
        "url",
        "unknown rest-api-mapping key 'url'",
    ),
    # -- options -----------------------------------------------------------------------------------
    Case(
        "option-without-type",
        {
            "spec.yml": spec(
                CLIENT + "  options:\n    api-key:\n      type: client-credentials\n"
                "    legacy:\n      title: Legacy key\n"
            )
        },
        "spec.yml",
        "legacy:",
        "auth.options.legacy",
        "option 'legacy' needs a type",
    ),
    Case(
        "options-empty",
        {"spec.yml": cc(CLIENT, "  options: {}\n")},
        "spec.yml",
        "options: {}",
        "auth.options",
        "auth.options is empty",
    ),
    Case(
        "option-unknown-key",
        {
            "spec.yml": cc(
                CLIENT, "  options:\n    api-key:\n      title: API key\n      label: Key\n"
            )
        },
        "spec.yml",
        "label: Key",
        "auth.options.api-key.label",
        "unknown key 'label' in option 'api-key'",
    ),
    Case(
        "option-enabled-unknown-root",
        {
            "spec.yml": cc(
                CLIENT,
                "  options:\n",
                "    api-key:\n",
                "      enabled: {$var: credentials.api_key}\n",
            )
        },
        "spec.yml",
        "enabled:",
        "auth.options.api-key.enabled.$var",
        "starts with 'credentials'",
    ),
    # -- python methods ----------------------------------------------------------------------------
    Case(
        "python-file-missing",
        {"spec.yml": cc(CLIENT, "  refreshCredentials:\n    implementationType: python\n")},
        "spec.yml",
        "refreshCredentials:",
        "auth.refreshCredentials",
        "auth/refresh-credentials.py",
    ),
    Case(
        "python-syntax-error",
        {
            "spec.yml": cc(CLIENT, REFRESH_PY_STUB),
            "auth/refresh-credentials.py": GOOD_REFRESH_PY.replace(
                "-> dict[str, Any]:", "-> dict[str, Any]"
            ),
        },
        "auth/refresh-credentials.py",
        "def refresh_credentials",
        None,
        "python syntax error",
    ),
    Case(
        "python-import-raises",
        {
            "spec.yml": cc(CLIENT, "  refreshCredentials:\n    implementationType: python\n"),
            "auth/refresh-credentials.py": '''\
"""A module that fails while it is imported."""

import os


def _setting() -> str:
    value = os.environ.get("HTTPX_REFRESH_TEST_UNSET_SETTING_42")
    if value is None:
        raise RuntimeError("HTTPX_REFRESH_TEST_UNSET_SETTING_42 is not set")
    return value


SETTING = _setting()


def refresh_credentials(credentials):
    return {"access_token": SETTING}
''',
        },
        "auth/refresh-credentials.py",
        "raise RuntimeError",
        None,
        "importing the python file raised RuntimeError",
    ),
    Case(
        "python-no-function",
        {
            "spec.yml": cc(CLIENT, REFRESH_PY_STUB),
            "auth/refresh-credentials.py": '"""No refresh_credentials here."""\n\n\n'
            "def refresh(credentials):\n    return {}\n",
        },
        "auth/refresh-credentials.py",
        '"""No refresh_credentials here."""',
        None,
        "defines no function refresh_credentials()",
    ),
    Case(
        "python-required-parameter-not-offered",
        {
            "spec.yml": cc(CLIENT, REFRESH_PY_STUB),
            "auth/refresh-credentials.py": GOOD_REFRESH_PY.replace(
                "(credentials: dict[str, Any])", "(credentials: dict[str, Any], tenant: str)"
            ),
        },
        "auth/refresh-credentials.py",
        "def refresh_credentials",
        "refresh_credentials",
        "requires parameter 'tenant'",
    ),
    Case(
        "python-positional-only-parameter",
        {
            "spec.yml": cc(CLIENT, REFRESH_PY_STUB),
            "auth/refresh-credentials.py": GOOD_REFRESH_PY.replace(
                "(credentials: dict[str, Any])", "(credentials: dict[str, Any], /)"
            ),
        },
        "auth/refresh-credentials.py",
        "def refresh_credentials",
        "refresh_credentials",
        "requires parameter 'credentials'",
    ),
    Case(
        "python-async-make-api-client",
        {
            "spec.yml": cc("  makeApiClient:\n    implementationType: python\n"),
            "auth/make-api-client.py": (
                '"""An async makeApiClient (it must be plain)."""\n\n\n'
                "async def make_api_client(credentials):\n"
                '    return {"baseUri": "https://api.example.test"}\n'
            ),
        },
        "auth/make-api-client.py",
        "async def make_api_client",
        "make_api_client",
        "must be a plain (not async) function",
    ),
    # -- found by a newcomer's trial: mistakes that check used to accept -----------------------
    Case(
        "oauth-config-typo-tokenUrl",
        {
            "spec.yml": spec(
                "  type: oauth2\n"
                + CLIENT
                + "  getOAuthConfig:\n"
                + "    type: mapping\n"
                + "    mapping:\n"
                + "      clientId: {$var: connectorParameters.clientId}\n"
                + "      tokenUrl: https://api.example.test/token\n"
            )
        },
        "spec.yml",
        "tokenUrl:",
        "auth.getOAuthConfig.mapping.tokenUrl",
        "did you mean 'tokenUri'?",
    ),
    Case(
        "oauth-config-without-tokenUri",
        {
            "spec.yml": spec(
                "  type: oauth2\n"
                + CLIENT
                + "  getOAuthConfig:\n"
                + "    type: mapping\n"
                + "    mapping:  # the oauth config\n"
                + "      clientId: {$var: connectorParameters.clientId}\n"
            )
        },
        "spec.yml",
        "# the oauth config",
        "auth.getOAuthConfig.mapping",
        "getOAuthConfig needs tokenUri",
    ),
    Case(
        "oauth-config-bad-clientAuthLocation",
        {
            "spec.yml": spec(
                "  type: oauth2\n"
                + CLIENT
                + "  getOAuthConfig:\n"
                + "    type: mapping\n"
                + "    mapping:\n"
                + "      clientId: x\n"
                + "      tokenUri: https://api.example.test/token\n"
                + "      clientAuthLocation: query\n"
            )
        },
        "spec.yml",
        "clientAuthLocation: query",
        "auth.getOAuthConfig.mapping.clientAuthLocation",
        "must be headers or body",
    ),
    Case(
        "response-handler-error-key-typo",
        {
            "spec.yml": cc(
                CLIENT,
                "      responseHandlers:\n",
                "        - match: {$eval: {$var: response.statusCode}, is: 403}\n",
                "          error: {key: acess_token_expired}\n",
            )
        },
        "spec.yml",
        "acess_token_expired",
        "auth.makeApiClient.mapping.responseHandlers[0].error.key",
        "did you mean 'access_token_expired'?",
    ),
    Case(
        "python-import-error-names-the-module",
        {
            "spec.yml": cc(CLIENT, REFRESH_PY_STUB),
            "auth/refresh-credentials.py": "import httpx_refreshh\n" + GOOD_REFRESH_PY,
        },
        "auth/refresh-credentials.py",
        "import httpx_refreshh",
        None,
        "No module named 'httpx_refreshh'",
    ),
]

assert len(CASES) >= 28
assert len({case.id for case in CASES}) == len(CASES)


def build(tmp_path: Path, files: Mapping[str, str]) -> Path:
    """Write ``files`` under ``tmp_path/conn``; return the spec.yml path."""
    root = tmp_path / CONNECTOR
    marker = json.dumps(str(tmp_path / "marker"))
    for relative, text in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace(MARKER, marker), encoding="utf-8")
    return root / "spec.yml"


def expected_line(case: Case) -> int:
    return line_of(case.files[case.file], case.needle)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_broken_spec_is_a_spec_error_naming_file_and_line(case: Case, tmp_path: Path) -> None:
    """Issue 4: a broken spec is a ``SpecError`` with the exact file, line and key."""
    spec_path = build(tmp_path, case.files)
    line = expected_line(case)
    try:
        with pytest.raises(hr.SpecError) as info:
            hr.load_connector(spec_path)
    finally:
        # Nothing in a spec runs code: the tags that would have made this directory did not
        # (checked even when no SpecError came).
        assert not (tmp_path / "marker").exists()
    exc = info.value
    message = str(exc)
    assert case.says in message, message
    assert exc.file is not None, message
    assert exc.file.endswith(Path(case.file).name), message
    assert Path(exc.file).resolve() == (spec_path.parent / case.file).resolve(), message
    assert exc.line == line, message
    assert exc.key == case.key, message
    assert f"{exc.file}:{line}" in message


def test_baseline_pieces_are_valid(tmp_path: Path) -> None:
    """Control for the cases above: the valid pieces they are built from load, so each
    case fails for the one thing it breaks."""
    files = {
        "spec.yml": cc(
            CLIENT, REFRESH_PY_STUB, "  test:\n    implementationType: rest-api-mapping\n"
        ),
        "auth/refresh-credentials.py": GOOD_REFRESH_PY,
        "auth/test.rest.yml": "path: /me\nresponseMapping:\n  $eval: {$var: response.data.id}\n"
        "  isNotEmpty: true\n",
    }
    connector = hr.load_connector(build(tmp_path / "a", files))
    assert connector.auth_type == "client-credentials"
    files = {"spec.yml": cc(CLIENT_STUB), "auth/make-api-client.map.yml": CLIENT_MAP}
    assert hr.load_connector(build(tmp_path / "b", files)).name == "Broken"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_cli_check_reports_broken_spec_without_traceback(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 4: ``httpx-refresh check`` exits 3 (invalid spec) naming file:line, no traceback."""
    spec_path = build(tmp_path, case.files)
    line = expected_line(case)
    code = _cli.main(["check", str(spec_path)])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    assert "invalid spec" in captured.err
    assert f"{case.file}:{line}" in captured.err, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "marker").exists()


SUBPROCESS_CASES = [
    "yaml-syntax-error",
    "yaml-python-apply-tag",
    "unknown-formula",
    "python-syntax-error",
    "python-import-raises",
    "python-required-parameter-not-offered",
]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_cli_check_subprocess_exit_3_without_traceback(case_id: str, tmp_path: Path) -> None:
    """Issue 4: ``python -m httpx_refresh check`` on a broken spec: exit 3, file:line on
    stderr, no traceback (a real process, so nothing in the test harness catches it)."""
    case = next(case for case in CASES if case.id == case_id)
    spec_path = build(tmp_path, case.files)
    result = subprocess.run(
        [sys.executable, "-m", "httpx_refresh", "check", str(spec_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert f"{case.file}:{expected_line(case)}" in result.stderr, result.stderr
    assert "invalid spec" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "marker").exists()


# -- errors that show at connect, request or refresh time -------------------------------------


def assert_names(exc: hr.SpecError, spec_path: Path, file: str, needle: str, key: str) -> None:
    text = (spec_path.parent / file).read_text(encoding="utf-8")
    line = line_of(text, needle)
    message = str(exc)
    assert exc.file is not None, message
    assert Path(exc.file).resolve() == (spec_path.parent / file).resolve(), message
    assert exc.line == line, message
    assert exc.key == key, message
    assert f"{exc.file}:{line}" in message


def test_connect_unsupported_auth_type_oauth1(tmp_path: Path) -> None:
    """Issue 4: oauth1 loads (it is a known type) but connect() is a SpecError at the auth
    block, naming file and line."""
    spec_path = build(tmp_path, {"spec.yml": spec("  title: Legacy\n  type: oauth1\n" + CLIENT)})
    connector = hr.load_connector(spec_path)
    with pytest.raises(hr.SpecError, match="'oauth1' is not supported") as info:
        connector.connect(credentials={"access_token": "A1"})
    assert_names(info.value, spec_path, "spec.yml", "auth:", "auth")


def test_connect_unsupported_auth_option_proxy(tmp_path: Path) -> None:
    """Issue 4: an option of an unsupported type, chosen at connect(), names its line."""
    spec_path = build(
        tmp_path,
        {
            "spec.yml": spec(
                CLIENT + "  options:\n    key:\n      type: client-credentials\n"
                "    via-proxy:\n      type: proxy\n"
            )
        },
    )
    connector = hr.load_connector(spec_path)
    with pytest.raises(hr.SpecError, match="'proxy' is not supported") as info:
        connector.connect(credentials={"access_token": "A1"}, auth_option="via-proxy")
    assert_names(info.value, spec_path, "spec.yml", "via-proxy:", "auth.options.via-proxy")


@pytest.mark.parametrize(
    ("returned", "problem"),
    [
        ("{ baseUri: 'https://x.test', retries: 3 }", "returned unknown field 'retries'"),
        ("{ baseUri: 'ftp://x.test' }", "returned a baseUri that is not an absolute http(s) URL"),
        ("{ baseUri: 7 }", "returned a non-string baseUri"),
        ("'https://x.test'", "returned str, expected a mapping of baseUri, headers, query, auth"),
        ("{ headers: { 'Bad Name': 'x' } }", "makeApiClient header name 'Bad Name' is not a valid"),
    ],
)
def test_connect_javascript_makeApiClient_bad_result(
    tmp_path: Path, returned: str, problem: str
) -> None:
    """Issue 8: a javascript makeApiClient runs under Node.js at connect(); a result that
    is not makeApiClient settings is a SpecError naming the file (issue 4 refused
    javascript here; it runs now)."""
    from jsconnectors import require_node

    require_node()
    spec_path = build(
        tmp_path,
        {
            "spec.yml": cc(
                "  title: Acme\n",
                "  makeApiClient:\n",
                "    implementationType: javascript\n",
                "    filePath: auth/make-api-client.js\n",
            ),
            "auth/make-api-client.js": f"export default function () {{ return {returned} }}\n",
        },
    )
    connector = hr.load_connector(spec_path)
    with pytest.raises(hr.SpecError) as info:
        connector.connect(credentials={"access_token": "A1"})
    assert problem in str(info.value)
    assert str(spec_path.parent / "auth" / "make-api-client.js") in str(info.value)
    assert "A1" not in str(info.value)


HEADERS_FROM_CREDENTIALS = cc(
    "  makeApiClient:\n",
    "    type: mapping\n",
    "    mapping:\n",
    "      baseUri: https://api.example.test\n",
    "      headers:\n",
    "        $var: credentials.header_map\n",
    "  refreshCredentials:\n",
    "    type: mapping\n",
    "    mapping:\n",
    "      access_token: A2\n",
    "      header_map: [X-One, X-Two]\n",
)


def test_connect_headers_formula_evaluating_to_a_list(tmp_path: Path) -> None:
    """Issue 4: makeApiClient headers that evaluate to a list with the first credentials:
    a SpecError at connect() at the headers line."""
    spec_path = build(tmp_path, {"spec.yml": HEADERS_FROM_CREDENTIALS})
    connector = hr.load_connector(spec_path)
    with pytest.raises(hr.SpecError, match="headers evaluated to a non-mapping") as info:
        connector.connect(credentials={"access_token": "A1", "header_map": ["X-One"]})
    assert_names(
        info.value, spec_path, "spec.yml", "headers:", "auth.makeApiClient.mapping.headers"
    )


def _unauthorized_until_a2(calls: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("authorization", ""))
        return httpx.Response(200 if "A2" in calls[-1] else 401)

    return httpx.MockTransport(handler)


def test_request_headers_formula_evaluating_to_a_list_after_refresh(tmp_path: Path) -> None:
    """Issue 4: the refresh brings credentials whose headers evaluate to a list: the
    request raises a SpecError at the makeApiClient headers line (not a bare exception)."""
    spec_path = build(tmp_path, {"spec.yml": HEADERS_FROM_CREDENTIALS})
    connection = hr.load_connector(spec_path).connect(credentials={"access_token": "A1"})
    calls: list[str] = []
    with (
        connection.client(transport=_unauthorized_until_a2(calls)) as client,
        pytest.raises(hr.SpecError, match="headers evaluated to a non-mapping") as info,
    ):
        client.get("/me")
    assert len(calls) == 1  # the first request was sent; the replay could not be built
    assert_names(
        info.value, spec_path, "spec.yml", "headers:", "auth.makeApiClient.mapping.headers"
    )


@pytest.mark.anyio
async def test_request_headers_formula_evaluating_to_a_list_after_refresh_async(
    tmp_path: Path,
) -> None:
    """Issue 4: as above, through the connection's AsyncClient (asyncio and trio)."""
    spec_path = build(tmp_path, {"spec.yml": HEADERS_FROM_CREDENTIALS})
    connection = hr.load_connector(spec_path).connect(credentials={"access_token": "A1"})
    calls: list[str] = []
    with anyio.fail_after(10):
        async with connection.async_client(transport=_async_unauthorized(calls)) as client:
            with pytest.raises(hr.SpecError, match="headers evaluated to a non-mapping") as info:
                await client.get("/me")
    assert len(calls) == 1
    assert_names(
        info.value, spec_path, "spec.yml", "headers:", "auth.makeApiClient.mapping.headers"
    )


def _async_unauthorized(calls: list[str]) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("authorization", ""))
        return httpx.Response(200 if "A2" in calls[-1] else 401)

    return httpx.MockTransport(handler)


REFRESH_TO_NOTHING = cc(
    CLIENT,
    "  refreshCredentials:\n",
    "    type: mapping\n",
    "    mapping:\n",
    "      $var: credentials.missing\n",
)


def test_refresh_mapping_evaluating_to_nothing(tmp_path: Path) -> None:
    """Issue 4: a refreshCredentials mapping that evaluates to undefined (not a mapping):
    the request that needed the refresh raises a SpecError at the mapping's line."""
    spec_path = build(tmp_path, {"spec.yml": REFRESH_TO_NOTHING})
    connection = hr.load_connector(spec_path).connect(credentials={"access_token": "A1"})
    calls: list[str] = []
    with (
        connection.client(transport=_unauthorized_until_a2(calls)) as client,
        pytest.raises(hr.SpecError, match="refreshCredentials evaluated to nothing") as info,
    ):
        client.get("/me")
    assert calls == ["Bearer A1"]
    assert connection.auth.stats.refreshes == 0
    assert_refresh_mapping_named(info.value, spec_path)


@pytest.mark.anyio
async def test_refresh_mapping_evaluating_to_nothing_async(tmp_path: Path) -> None:
    """Issue 4: as above, through the connection's AsyncClient (asyncio and trio)."""
    spec_path = build(tmp_path, {"spec.yml": REFRESH_TO_NOTHING})
    connection = hr.load_connector(spec_path).connect(credentials={"access_token": "A1"})
    calls: list[str] = []
    with anyio.fail_after(10):
        async with connection.async_client(transport=_async_unauthorized(calls)) as client:
            with pytest.raises(
                hr.SpecError, match="refreshCredentials evaluated to nothing"
            ) as info:
                await client.get("/me")
    assert calls == ["Bearer A1"]
    assert_refresh_mapping_named(info.value, spec_path)


def assert_refresh_mapping_named(exc: hr.SpecError, spec_path: Path) -> None:
    """The error names the ``mapping:`` line of refreshCredentials (its body) in spec.yml."""
    lines = REFRESH_TO_NOTHING.splitlines()
    start = line_of(REFRESH_TO_NOTHING, "refreshCredentials:")
    line = next(n for n in range(start + 1, len(lines) + 1) if "mapping:" in lines[n - 1])
    message = str(exc)
    assert exc.file is not None, message
    assert Path(exc.file).resolve() == spec_path.resolve(), message
    assert exc.line == line, message
    assert exc.key == "auth.refreshCredentials", message
    assert f"{exc.file}:{line}" in message
