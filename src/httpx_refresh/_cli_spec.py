"""The connector-spec subcommands: ``check``, ``request`` and ``test``.

Exit codes (also in the README):

== =====================================================================================
0  success: the spec is valid; the response status is below 400; the test passed
1  the response status is 400 or more; the test failed
2  usage error: bad arguments, a parameters or credentials file that is missing or not
   a JSON (or YAML) object, a required parameter missing, an unknown auth option
3  the spec is invalid (``SpecError``: file, line and key on stderr); for ``check``,
   also a javascript method that cannot load under Node.js
4  the credentials are dead: the user must reconnect (``ReauthorizationRequired``)
5  the refresh failed for another reason, the request could not be sent, or a
   connector method raised
== =====================================================================================

Nothing secret is printed: errors name files, lines and keys, never credential values.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx
import yaml

from ._exceptions import HttpxRefreshError, ReauthorizationRequired, SpecError
from ._files import write_json_atomic

__all__ = ["EXIT_CODES", "add_spec_commands"]

EXIT_CODES = {
    "ok": 0,
    "failed": 1,
    "usage": 2,
    "spec": 3,
    "reauthorize": 4,
    "error": 5,
}


class _UsageError(Exception):
    """A problem with the command's arguments or input files (exit 2)."""


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _spec_path(text: str) -> str:
    if not Path(text).exists():
        raise _UsageError(f"{text}: no such spec file or connector directory")
    return text


def _read_mapping(path: str, what: str) -> dict[str, Any]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _UsageError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"{path}: cannot read the {what} file ({type(exc).__name__})") from None
    try:
        data = yaml.safe_load(text) if file.suffix in (".yml", ".yaml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        line = getattr(exc, "lineno", None)
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            line = mark.line + 1
        where = f"{path}:{line}" if line else path
        raise _UsageError(f"{where}: the {what} file is not valid JSON/YAML") from None
    if not isinstance(data, dict):
        raise _UsageError(f"{path}: the {what} file must hold a JSON object")
    return data


def _connect(args: argparse.Namespace) -> tuple[Any, Path | None]:
    from ._spec import load_connector

    connector = load_connector(_spec_path(args.spec))
    connector_parameters = (
        _read_mapping(args.connector_parameters, "connector parameters")
        if args.connector_parameters
        else {}
    )
    connection_parameters = (
        _read_mapping(args.connection_parameters, "connection parameters")
        if args.connection_parameters
        else {}
    )
    credentials_path = Path(args.credentials) if args.credentials else None
    credentials = None
    if credentials_path is not None and credentials_path.exists():
        credentials = _read_mapping(args.credentials, "credentials")

    def persist(merged: Mapping[str, Any]) -> None:
        if credentials_path is not None:
            write_json_atomic(credentials_path, merged)

    try:
        connection = connector.connect(
            connector_parameters=connector_parameters,
            connection_parameters=connection_parameters,
            credentials=credentials,
            auth_option=args.auth_option,
            on_refresh=persist,
        )
    except (ValueError, TypeError) as exc:
        message = str(exc)
        if credentials is None and credentials_path is not None:
            message += f" ({credentials_path} does not exist)"
        raise _UsageError(message) from None
    return connection, credentials_path


def _body(args: argparse.Namespace) -> dict[str, Any]:
    if args.data is None:
        return {}
    text = args.data
    if text.startswith("@"):
        try:
            raw = Path(text[1:]).read_bytes()
        except OSError as exc:
            raise _UsageError(f"{text[1:]}: cannot read the data file ({exc.strerror})") from None
        try:
            return {"json": json.loads(raw)}
        except ValueError:
            return {"content": raw}
    try:
        return {"json": json.loads(text)}
    except ValueError:
        return {"content": text.encode("utf-8")}


def _pairs(items: list[str] | None, separator: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for number, item in enumerate(items or [], start=1):
        name, found, value = item.partition(separator)
        name = name.strip()
        # The value is never echoed: it may be a token.
        if not found or not name:
            raise _UsageError(
                f"{what} #{number} must look like NAME{separator}VALUE (no {separator!r} found)"
            )
        if separator == ":" and not all(33 <= ord(c) <= 126 for c in name):
            raise _UsageError(f"{what} #{number}: the header name is not a valid token")
        pairs.append((name, value.strip() if separator == ":" else value))
    return pairs


def _print_response(response: httpx.Response, out: TextIO) -> None:
    out.write(f"HTTP {response.status_code} {response.reason_phrase}\n")
    try:
        payload = response.json()
    except (ValueError, UnicodeDecodeError):
        out.write(response.text)
        if response.text and not response.text.endswith("\n"):
            out.write("\n")
    else:
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def _summary(connection: Any, path: Path | None, err: TextIO) -> None:
    stats = connection.auth.stats
    line = f"refreshes: {stats.refreshes}, replays: {stats.replays}"
    if stats.rejected_replays:  # the API rejected a replay too: the 401 went to the caller
        line += f" ({stats.rejected_replays} rejected again)"
    if path is not None and stats.refreshes:
        line += f"; refreshed credentials written to {path}"
    err.write(line + "\n")


def _check(args: argparse.Namespace) -> int:
    from ._spec import load_connector

    connector = load_connector(_spec_path(args.spec))
    summary = connector.describe()
    out: TextIO = sys.stdout
    out.write(f"{summary['file']}: valid connector spec\n")
    out.write(f"  name   {summary['name']}\n")
    if summary["key"]:
        out.write(f"  key    {summary['key']}\n")
    javascript = False
    for variant in summary["variants"]:
        label = "auth" if variant["option"] is None else f"option {variant['option']}"
        note = "" if variant["supported"] else "  (not supported by httpx-refresh)"
        out.write(f"  {label}: {variant['type']}{note}\n")
        for name, where in variant["methods"].items():
            out.write(f"    {name:<40} {where}\n")
            javascript = javascript or where.startswith("javascript")
    if not javascript:
        return 0
    try:
        node = connector.runtime.executable(str(connector.path))
    except SpecError as exc:
        out.write(f"  javascript methods cannot run: {exc}\n")
        return EXIT_CODES["spec"]
    problems = connector._check_javascript()
    for problem in problems:
        out.write(f"  javascript problem: {problem}\n")
    if problems:
        return EXIT_CODES["spec"]
    out.write(f"  javascript methods load under Node.js: {node}\n")
    return 0


def _request(args: argparse.Namespace) -> int:
    connection, path = _connect(args)
    if connection.base_url is None and not httpx.URL(args.path).is_absolute_url:
        raise _UsageError(
            f"{args.path!r} is relative, but the spec's makeApiClient gives no baseUri: "
            "pass a full URL"
        )
    headers = _pairs(args.header, ":", "--header")
    params = _pairs(args.param, "=", "--param")
    body = _body(args)
    with connection.client(timeout=args.timeout) as client:
        response = client.request(
            args.method.upper(), args.path, headers=headers, params=params, **body
        )
    _print_response(response, sys.stdout)
    _summary(connection, path, sys.stderr)
    return 0 if response.status_code < 400 else 1


def _test(args: argparse.Namespace) -> int:
    connection, path = _connect(args)
    passed, reason = connection._test_outcome()
    sys.stdout.write("test passed\n" if passed else f"test failed: {reason}\n")
    _summary(connection, path, sys.stderr)
    return 0 if passed else 1


def _origin(exc: httpx.HTTPError) -> str:
    """`` (to https://host:port)`` for an error with a request: never the path or query."""
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return ""
    return f" (to {url.scheme}://{url.netloc.decode('ascii', 'replace')})"


def _guarded(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        err = sys.stderr
        try:
            code: int = command(args)
        except _UsageError as exc:
            err.write(f"httpx-refresh: {exc}\n")
            return EXIT_CODES["usage"]
        except SpecError as exc:
            err.write(f"httpx-refresh: invalid spec: {exc}\n")
            return EXIT_CODES["spec"]
        except ReauthorizationRequired as exc:
            err.write(f"httpx-refresh: reconnect needed: {exc}\n")
            return EXIT_CODES["reauthorize"]
        except HttpxRefreshError as exc:
            err.write(f"httpx-refresh: {type(exc).__name__}: {exc}\n")
            return EXIT_CODES["error"]
        except httpx.HTTPError as exc:
            err.write(f"httpx-refresh: request failed: {type(exc).__name__}{_origin(exc)}\n")
            return EXIT_CODES["error"]
        except OSError as exc:
            err.write(f"httpx-refresh: {type(exc).__name__}: {exc.strerror or exc}\n")
            return EXIT_CODES["error"]
        except Exception as exc:  # noqa: BLE001 - e.g. a connector method's own error
            # The type and where it happened; not the message, which might hold a secret.
            frames = traceback.extract_tb(exc.__traceback__)
            where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            err.write(f"httpx-refresh: unexpected {type(exc).__name__}{where}\n")
            return EXIT_CODES["error"]
        return code

    return run


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="spec.yml, or the connector directory")
    parser.add_argument(
        "--connector-parameters",
        metavar="FILE",
        help="JSON (or .yml) object: connectorParameters (client id and secret, ...)",
    )
    parser.add_argument(
        "--connection-parameters",
        metavar="FILE",
        help="JSON (or .yml) object: connectionParameters (what the user entered)",
    )
    parser.add_argument(
        "--credentials",
        metavar="FILE",
        help="JSON object with the credentials; refreshed credentials are written back "
        "to it atomically, readable by the owner only. If it does not exist, a "
        "client-credentials connector starts from its connection parameters",
    )
    parser.add_argument(
        "--auth-option", metavar="KEY", default=None, help="a key of auth.options to use"
    )


def add_spec_commands(commands: Any) -> None:
    """Register ``check``, ``request`` and ``test`` on the ``httpx-refresh`` subparsers."""
    epilog = (
        "exit codes: 0 success, 1 HTTP status >= 400 or test failed, 2 usage error, "
        "3 invalid spec, 4 reconnect needed, 5 refresh or request failed"
    )
    check = commands.add_parser(
        "check",
        help="validate a connector spec and summarise it",
        description="Load SPEC and every method file it names, compile its formulas, and "
        "print its auth types and methods.",
        epilog=epilog,
    )
    check.add_argument("spec", metavar="SPEC", help="spec.yml, or the connector directory")
    check.set_defaults(handler=_guarded(_check))

    request = commands.add_parser(
        "request",
        help="send one request through a connector's connection",
        description="Send METHOD PATH (relative to the spec's baseUri) through the "
        "connection, refreshing the credentials as needed; print the status and body.",
        epilog=epilog,
    )
    _connection_arguments(request)
    request.add_argument("method", metavar="METHOD", help="GET, POST, ...")
    request.add_argument("path", metavar="PATH", help="path relative to baseUri, or a full URL")
    request.add_argument(
        "--data",
        metavar="DATA",
        help="request body: JSON text (sent as JSON), other text, or @FILE",
    )
    request.add_argument(
        "--header", action="append", metavar="NAME:VALUE", help="extra header (repeatable)"
    )
    request.add_argument(
        "--param", action="append", metavar="NAME=VALUE", help="query parameter (repeatable)"
    )
    request.add_argument(
        "--timeout",
        type=_timeout,
        default=30.0,
        metavar="SECONDS",
        help="seconds per network phase, > 0 (default 30)",
    )
    request.set_defaults(handler=_guarded(_request))

    test = commands.add_parser(
        "test",
        help="run a connector's test method",
        description="Run the spec's test method through the connection (refreshing as "
        "needed) and report whether it passed.",
        epilog=epilog,
    )
    _connection_arguments(test)
    test.set_defaults(handler=_guarded(_test))
