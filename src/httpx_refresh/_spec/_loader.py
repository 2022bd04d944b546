"""``load_connector``: read and check a ``spec.yml`` and its method files."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Final

from .._exceptions import SpecError
from ._formulas import Compiled, compile_value
from ._methods import METHODS, Method, load_method
from ._yaml import Document, KeyPath, load_yaml

__all__ = ["AUTH_TYPES", "AuthVariant", "ConnectorSpec", "load_spec"]

AUTH_TYPES: Final = (
    "oauth2",
    "client-credentials",
    "oauth1",
    "proxy",
    "integration-app-token",
    "membrane-token",
)
SUPPORTED_TYPES: Final = ("oauth2", "client-credentials")
_SCHEMAS: Final = (
    "inputSchema",
    "parametersSchema",
    "credentialsSchema",
    "customCredentialsSchema",
)
_AUTH_KEYS: Final = frozenset(
    {"type", "title", "description", "ui", "options", *_SCHEMAS, *METHODS}
)
_OPTION_KEYS: Final = frozenset(
    {"type", "title", "description", "ui", "enabled", *_SCHEMAS, *METHODS}
)
_UI_KEYS: Final = frozenset({"schema", "helpUri", "description", "title"})
_COMMON_ROOTS: Final = ("connectorParameters", "connectionParameters", "connectionInput")


class AuthVariant:
    """One way to authenticate: the top-level ``auth`` or one of ``auth.options``.

    Attributes:
        key: ``None`` for the top level, else the option key.
        type: the auth type (``oauth2``, ``client-credentials``, ...).
        title: the option's title, if any.
        methods: method name -> :class:`Method` (an option inherits the top level's).
        input_schema: the connection-parameters schema (``ui.schema`` / ``inputSchema``).
        enabled: the compiled ``enabled`` formula, or ``None`` (always enabled).
        where: the spec file, line and key path where the variant is declared.
    """

    __slots__ = ("enabled", "input_schema", "key", "methods", "title", "type", "where")

    def __init__(
        self,
        key: str | None,
        type_: str,
        *,
        title: str | None,
        methods: dict[str, Method],
        input_schema: dict[str, Any] | None,
        enabled: Compiled | bool | None,
        where: tuple[str, int | None, str],
    ) -> None:
        self.key = key
        self.type = type_
        self.title = title
        self.methods = methods
        self.input_schema = input_schema
        self.enabled = enabled
        self.where = where

    def error(self, message: str) -> SpecError:
        """A ``SpecError`` at the variant's declaration."""
        return SpecError(message, file=self.where[0], line=self.where[1], key=self.where[2])


class ConnectorSpec:
    """A loaded and checked connector spec (what :class:`Connector` is built on).

    Attributes:
        path: the ``spec.yml`` path.
        name: the connector's ``name`` (or ``key``, or the directory name).
        key: the connector's ``key``, if any.
        parameters_schema: the connector-parameters schema, if any.
        top: the top-level :class:`AuthVariant`, or ``None`` when only options define types.
        options: option key -> :class:`AuthVariant`.
    """

    __slots__ = ("key", "name", "options", "parameters_schema", "path", "top")

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        key: str | None,
        parameters_schema: dict[str, Any] | None,
        top: AuthVariant | None,
        options: dict[str, AuthVariant],
    ) -> None:
        self.path = path
        self.name = name
        self.key = key
        self.parameters_schema = parameters_schema
        self.top = top
        self.options = options


def _display(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)
    return relative if not relative.startswith("..") else str(path)


def _string(document: Document, value: Any, path: KeyPath, what: str) -> str:
    if not isinstance(value, str):
        raise document.error(f"{what} must be a string, got {type(value).__name__}", path)
    return value


def _mapping(document: Document, value: Any, path: KeyPath, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise document.error(f"{what} must be a mapping, got {kind}", path)
    return value


def _check_block(
    document: Document, block: dict[str, Any], path: KeyPath, allowed: frozenset[str], what: str
) -> None:
    for key in block:
        if key not in allowed:
            raise document.error(f"unknown key {key!r} in {what}", (*path, key))
    for key in ("title", "description"):
        if key in block and block[key] is not None:
            _string(document, block[key], (*path, key), key)
    for key in _SCHEMAS:
        if key in block:
            _mapping(document, block[key], (*path, key), key)
    if "ui" in block:
        ui = _mapping(document, block["ui"], (*path, "ui"), "ui")
        for key in ui:
            if key not in _UI_KEYS:
                raise document.error(f"unknown key {key!r} in ui", (*path, "ui", key))
        if "schema" in ui:
            _mapping(document, ui["schema"], (*path, "ui", "schema"), "ui.schema")
        for key in ("helpUri", "description", "title"):
            if key in ui and ui[key] is not None:
                _string(document, ui[key], (*path, "ui", key), f"ui.{key}")


def _type(document: Document, block: dict[str, Any], path: KeyPath) -> str | None:
    if "type" not in block:
        return None
    value = _string(document, block["type"], (*path, "type"), "type")
    if value not in AUTH_TYPES:
        raise document.error(
            f"unknown auth type {value!r} (known: {', '.join(AUTH_TYPES)})", (*path, "type")
        )
    return value


def _methods(
    document: Document, block: dict[str, Any], path: KeyPath, root: Path, display_root: str
) -> dict[str, Method]:
    methods = {}
    for name in METHODS:
        if name in block:
            method = load_method(document, (*path, name), name, root, display_root=display_root)
            if method is not None:
                methods[name] = method
    return methods


def _input_schema(block: dict[str, Any]) -> dict[str, Any] | None:
    if "inputSchema" in block:
        schema: dict[str, Any] = block["inputSchema"]
        return schema
    ui = block.get("ui")
    if isinstance(ui, dict) and isinstance(ui.get("schema"), dict):
        ui_schema: dict[str, Any] = ui["schema"]
        return ui_schema
    return None


_OAUTH_CONFIG_KEYS: Final = (
    "clientId",
    "clientSecret",
    "authorizeUri",
    "tokenUri",
    "scopes",
    "clientAuthLocation",
    "noRefreshToken",
    "skipPkce",
    "extra",
)


def _check_oauth_config(method: Method) -> None:
    """Static checks of a ``getOAuthConfig`` mapping (its keys, constant values)."""
    body, document = method.body, method.document
    if not isinstance(body, dict) or any(str(key).startswith("$") for key in body):
        return  # a formula as a whole: checked when it is evaluated
    assert document is not None
    for key in body:
        if key not in _OAUTH_CONFIG_KEYS:
            close = difflib.get_close_matches(str(key), _OAUTH_CONFIG_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(_OAUTH_CONFIG_KEYS)
            raise document.error(
                f"unknown getOAuthConfig key {key!r}{hint} (known: {known})",
                (*method.body_path, key),
            )
    for key in ("tokenUri", "clientId"):
        if key not in body:
            raise document.error(f"getOAuthConfig needs {key}", method.body_path)
    location = body.get("clientAuthLocation")
    if isinstance(location, str) and location not in ("headers", "header", "body"):
        raise document.error(
            f"clientAuthLocation must be headers or body, got {location!r}",
            (*method.body_path, "clientAuthLocation"),
        )


def _check_variant(variant: AuthVariant) -> None:
    if "makeApiClient" not in variant.methods:
        raise variant.error("no makeApiClient method: every connector needs one")
    client = variant.methods["makeApiClient"]
    if client.kind not in ("mapping", "python", "javascript"):
        raise client.error(f"makeApiClient cannot be {client.kind}")
    if (
        variant.type == "oauth2"
        and "getOAuthConfig" not in variant.methods
        and "refreshCredentials" not in variant.methods
    ):
        raise variant.error(
            "an oauth2 connector needs getOAuthConfig (tokenUri, clientId, ...) or its own "
            "refreshCredentials"
        )
    config = variant.methods.get("getOAuthConfig")
    if config is not None and config.kind == "mapping":
        _check_oauth_config(config)
    test = variant.methods.get("test")
    if test is not None and test.kind == "mapping":
        test.kind = "rest-api-mapping"  # a test mapping is a request description


def load_spec(path: str | os.PathLike[str]) -> ConnectorSpec:
    """Read ``spec.yml`` (or a connector directory holding one) and every method file.

    Args:
        path: the spec file, or the connector directory.

    Returns:
        The checked :class:`ConnectorSpec`.

    Raises:
        SpecError: anything wrong with the spec or its method files, naming the file,
            line and key path.
    """
    spec_path = Path(path)
    if spec_path.is_dir():
        for candidate in ("spec.yml", "spec.yaml"):
            if (spec_path / candidate).is_file():
                spec_path = spec_path / candidate
                break
        else:
            raise SpecError("no spec.yml in the directory", file=_display(spec_path))
    display = _display(spec_path)
    root = spec_path.parent
    display_root = os.path.dirname(display)
    document = load_yaml(spec_path, display=display)
    data = document.data
    if not isinstance(data, dict):
        raise SpecError("a connector spec must be a YAML mapping", file=display, line=1)
    if "auth" not in data:
        raise SpecError("the spec has no auth block", file=display, line=1, key="auth")
    auth = _mapping(document, data["auth"], ("auth",), "auth")
    _check_block(document, auth, ("auth",), _AUTH_KEYS, "auth")
    for key in ("name", "key"):
        if key in data and data[key] is not None and not isinstance(data[key], (str, int)):
            raise document.error(f"{key} must be a string", (key,))
    parameters_schema = None
    for where in (("parametersSchema",), ("auth", "parametersSchema")):
        holder: Any = data if len(where) == 1 else auth
        if "parametersSchema" in holder:
            parameters_schema = _mapping(
                document, holder["parametersSchema"], where, "parametersSchema"
            )
    top_type = _type(document, auth, ("auth",))
    top_methods = _methods(document, auth, ("auth",), root, display_root)
    top_schema = _input_schema(auth)
    if top_schema is None and isinstance(data.get("ui"), dict):
        top_schema = (
            data["ui"].get("schema") if isinstance(data["ui"].get("schema"), dict) else None
        )
    options: dict[str, AuthVariant] = {}
    if "options" in auth:
        raw_options = _mapping(document, auth["options"], ("auth", "options"), "auth.options")
        if not raw_options:
            raise document.error("auth.options is empty", ("auth", "options"))
        for option_key, option in raw_options.items():
            here: KeyPath = ("auth", "options", option_key)
            option = _mapping(document, option, here, f"option {option_key!r}")
            _check_block(document, option, here, _OPTION_KEYS, f"option {option_key!r}")
            option_type = _type(document, option, here) or top_type
            if option_type is None:
                raise document.error(f"option {option_key!r} needs a type", here)
            enabled: Compiled | bool | None = None
            if "enabled" in option:
                raw = option["enabled"]
                enabled = (
                    raw
                    if isinstance(raw, bool)
                    else compile_value(raw, document, (*here, "enabled"), roots=_COMMON_ROOTS)
                )
            own = _methods(document, option, here, root, display_root)
            # An option's own declaration wins, including implementationType: not-supported.
            dropped = {name for name in METHODS if name in option} - set(own)
            methods = {
                name: method
                for name, method in {**top_methods, **own}.items()
                if name not in dropped
            }
            title = option.get("title")
            options[str(option_key)] = AuthVariant(
                str(option_key),
                option_type,
                title=title if isinstance(title, str) else None,
                methods=methods,
                input_schema=_input_schema(option) or top_schema,
                enabled=enabled,
                where=(display, document.line(here), ".".join(map(str, here))),
            )
    elif top_type is None:
        raise document.error("auth needs a type (oauth2, client-credentials, ...)", ("auth",))
    top = None
    if top_type is not None:
        top = AuthVariant(
            None,
            top_type,
            title=auth.get("title") if isinstance(auth.get("title"), str) else None,
            methods=top_methods,
            input_schema=top_schema,
            enabled=None,
            where=(display, document.line(("auth",)), "auth"),
        )
    for variant in ([top] if top is not None else []) + list(options.values()):
        _check_variant(variant)
    connector_name = str(data.get("name") or data.get("key") or root.name)
    connector_key = data.get("key")
    return ConnectorSpec(
        spec_path,
        name=connector_name,
        key=None if connector_key is None else str(connector_key),
        parameters_schema=parameters_schema,
        top=top,
        options=options,
    )
