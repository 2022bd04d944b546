"""Connector methods: where each one's body lives and how it is implemented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from .._exceptions import SpecError
from ._formulas import Compiled, compile_value
from ._python import PythonFunction, load_function
from ._yaml import Document, KeyPath, dotted, load_yaml

__all__ = ["METHODS", "Method", "load_method", "snake_case"]

_COMMON: Final = ("connectorParameters", "connectionParameters", "connectionInput")
_PY_COMMON: Final = ("connector_parameters", "connection_parameters", "api_client")

# method -> (formula variables, python keywords)
METHODS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "makeApiClient": (
        (*_COMMON, "credentials"),
        ("connector_parameters", "connection_parameters", "credentials"),
    ),
    "refreshCredentials": ((*_COMMON, "credentials"), (*_PY_COMMON, "credentials")),
    "getCredentialsFromConnectionParameters": (_COMMON, _PY_COMMON),
    "getCredentialsFromRefreshTokenResponse": (
        (*_COMMON, "credentials", "tokenResponse"),
        (*_PY_COMMON, "credentials", "token_response"),
    ),
    "getOAuthConfig": (
        (*_COMMON, "redirectUri", "state"),
        ("connector_parameters", "connection_parameters"),
    ),
    "test": ((*_COMMON, "credentials"), (*_PY_COMMON, "credentials")),
    # Part of the Integration.app connect flow, which runs before httpx-refresh is
    # involved: validated, never called.
    "getTokenData": ((*_COMMON, "codeVerifier", "queryParameters", "redirectUri"), _PY_COMMON),
    "getCredentialsFromAccessTokenResponse": (
        (*_COMMON, "tokenResponse", "queryParameters"),
        (*_PY_COMMON, "token_response"),
    ),
    "getCredentialsFromTokenResponse": (
        (*_COMMON, "tokenResponse", "queryParameters"),
        (*_PY_COMMON, "token_response"),
    ),
    "disconnect": ((*_COMMON, "credentials"), (*_PY_COMMON, "credentials")),
}

IMPLEMENTATION_TYPES: Final = (
    "mapping",
    "rest-api-mapping",
    "python",
    "javascript",
    "not-supported",
)
_EXTENSIONS: Final = {
    "mapping": (".map.yml", ".yml", ".yaml"),
    "rest-api-mapping": (".rest.yml", ".api.yml", ".map.yml", ".yml"),
    "python": (".py",),
    "javascript": (".js", ".mjs", ".cjs", ".ts"),
}
_JS_SUFFIXES: Final = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts")
_STUB_KEYS: Final = frozenset(
    {"implementationType", "type", "filePath", "mapping", "code", "title", "description"}
)


def snake_case(name: str) -> str:
    """The Python function name for a method (DESIGN "Connector specs").

    ``refreshCredentials`` -> ``refresh_credentials``; ``getOAuthConfig`` -> ``get_oauth_config``.
    """
    name = name.replace("OAuth", "Oauth")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def kebab_case(name: str) -> str:
    """``refreshCredentials`` -> ``refresh-credentials`` (the Integration.app file names)."""
    return snake_case(name).replace("_", "-")


class Method:
    """One connector method, loaded and checked.

    Attributes:
        name: the method name (``refreshCredentials``).
        kind: the implementation type (``mapping``, ``rest-api-mapping``, ``python``,
            ``javascript``).
        file: the file that holds its body (the spec itself for an inline body).
        line: the line of its body (or of its stub) in ``file``.
        key: its key path in the spec (``auth.refreshCredentials``).
        stub: where the method is declared (spec file, line), for errors about the method.
        document: the parsed body (mapping kinds).
        body_path: the key path of the body inside ``document``.
        compiled: the compiled formula tree (``mapping``).
        function: the Python function (``python``).
        script: the JavaScript file (``javascript`` with a file).
        code: the inline JavaScript code (``javascript`` with ``code:``); ``line`` is
            the spec line where it starts.
    """

    __slots__ = (
        "body",
        "body_path",
        "code",
        "compiled",
        "document",
        "file",
        "function",
        "key",
        "kind",
        "line",
        "name",
        "script",
        "stub",
    )

    def __init__(self, name: str, kind: str, *, key: str, stub: tuple[str, int | None]) -> None:
        self.name = name
        self.kind = kind
        self.key = key
        self.stub = stub
        self.file = stub[0]
        self.line = stub[1]
        self.document: Document | None = None
        self.body: Any = None
        self.body_path: KeyPath = ()
        self.compiled: Compiled | None = None
        self.function: PythonFunction | None = None
        self.script: Path | None = None
        self.code: str | None = None

    def __repr__(self) -> str:
        return f"<Method {self.name} {self.kind} {self.file}>"

    def error(self, message: str) -> SpecError:
        """A ``SpecError`` at the method's body."""
        return SpecError(message, file=self.file, line=self.line, key=self.key)


def _inside(base: Path, candidate: Path) -> bool:
    try:
        candidate.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


def load_method(
    spec: Document, path: KeyPath, name: str, root: Path, *, display_root: str
) -> Method | None:
    """Load the method declared at ``path`` in ``spec`` (the spec's own file).

    Args:
        spec: the parsed ``spec.yml``.
        path: the key path of the method's stub (``("auth", "refreshCredentials")``).
        name: the method name.
        root: the connector directory (method files must be inside it).
        display_root: how to show ``root`` in error messages.

    Returns:
        The :class:`Method`, or ``None`` for ``implementationType: not-supported``.

    Raises:
        SpecError: a malformed stub, an unknown implementation type, a missing or
            invalid body file, a formula problem or a Python function problem.
    """
    stub = spec.data
    for part in path:
        stub = stub[part]
    key = dotted(path)
    if not isinstance(stub, dict):
        raise spec.error(
            f"a method is a mapping with implementationType (and filePath or mapping), "
            f"got {type(stub).__name__}",
            path,
        )
    unknown = sorted(set(stub) - _STUB_KEYS)
    if unknown:
        raise spec.error(f"unknown key {unknown[0]!r} in method {name}", (*path, unknown[0]))
    kinds = {stub[k] for k in ("implementationType", "type") if k in stub}
    if len(kinds) != 1:
        raise spec.error(
            f"method {name} needs implementationType (one of {', '.join(IMPLEMENTATION_TYPES)})",
            path,
        )
    kind = kinds.pop()
    kind_key = "implementationType" if "implementationType" in stub else "type"
    if kind not in IMPLEMENTATION_TYPES:
        raise spec.error(
            f"unknown implementationType {kind!r} (known: {', '.join(IMPLEMENTATION_TYPES)})",
            (*path, kind_key),
        )
    if kind == "not-supported":
        return None
    if kind == "rest-api-mapping" and name != "test":
        raise spec.error(
            f"rest-api-mapping is supported for the test method only, not {name}",
            (*path, kind_key),
        )
    method = Method(name, kind, key=key, stub=(spec.file, spec.line(path)))
    roots, keywords = METHODS[name]
    inline = "mapping" in stub or "code" in stub
    if inline and "filePath" in stub:
        raise spec.error(f"method {name} has both filePath and an inline body", path)
    if "code" in stub and kind != "javascript":
        raise spec.error("code: is for javascript methods; use mapping:", (*path, "code"))
    if "mapping" in stub and kind not in ("mapping", "rest-api-mapping"):
        raise spec.error(f"mapping: is for mapping methods, not {kind}", (*path, "mapping"))
    if kind in ("mapping", "rest-api-mapping") and "mapping" in stub:
        method.document, method.body_path = spec, (*path, "mapping")
        method.line = spec.line(method.body_path)
    elif kind == "javascript" and "code" in stub:
        code = stub["code"]
        if not isinstance(code, str) or not code.strip():
            raise spec.error("code: must be the javascript source (a string)", (*path, "code"))
        method.code = code
        method.line = spec.text_line((*path, "code"))
        return method
    else:
        file_path = stub.get("filePath")
        if file_path is not None:
            if not isinstance(file_path, str) or not file_path:
                raise spec.error("filePath must be a relative path", (*path, "filePath"))
            target = root / file_path
            if Path(file_path).is_absolute() or not _inside(root, target):
                raise spec.error(
                    f"filePath {file_path!r} is outside the connector directory",
                    (*path, "filePath"),
                )
            if not target.is_file():
                raise spec.error(f"file {file_path!r} not found", (*path, "filePath"))
            if kind == "javascript" and target.suffix not in _JS_SUFFIXES:
                raise spec.error(
                    f"filePath {file_path!r} is not a javascript file (it must end with "
                    f"{', '.join(_JS_SUFFIXES)})",
                    (*path, "filePath"),
                )
        else:
            candidates = [f"auth/{kebab_case(name)}{extension}" for extension in _EXTENSIONS[kind]]
            found = [c for c in candidates if (root / c).is_file()]
            if not found:
                raise spec.error(
                    f"method {name} ({kind}) has no body: add filePath, an inline mapping, "
                    f"or the file {candidates[0]}",
                    path,
                )
            file_path = found[0]
            target = root / file_path
            if not _inside(root, target):  # a symlink (or a linked auth/) leading out
                raise spec.error(
                    f"{file_path} leads outside the connector directory (a symbolic link)",
                    path,
                )
        display = f"{display_root}/{file_path}" if display_root else file_path
        method.file, method.line = display, 1
        if kind == "javascript":
            method.script = target.resolve()  # absolute: Node runs in the connector folder
            return method
        if kind == "python":
            offered = keywords
            method.function = load_function(
                target, snake_case(name), display=display, offered=offered
            )
            method.line = method.function.line
            return method
        method.document = load_yaml(target, display=display)
        method.body_path = ()
    document = method.document
    assert document is not None
    body: Any = document.data
    for part in method.body_path:
        body = body[part]
    method.body = body
    if kind == "mapping" and name not in ("makeApiClient", "test"):
        # makeApiClient and test have structure of their own (response handlers, the
        # request to send); their modules compile the parts.
        method.compiled = compile_value(body, document, method.body_path, roots=roots)
    return method
