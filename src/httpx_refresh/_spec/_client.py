"""``makeApiClient``: base URI, headers, query and basic auth from one credentials snapshot.

The mapping is compiled once. Per request it is evaluated against the request's credentials
snapshot (cached per snapshot, so the cost is paid once per version), which makes a refresh
show up in every header at once (DESIGN R1). ``responseHandlers`` are compiled here too.
"""

from __future__ import annotations

import base64
import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from .._exceptions import HttpxRefreshError, SpecError
from .._jsonbody import load_json
from ._formulas import UNDEFINED, Compiled, compile_value, is_empty
from ._methods import METHODS, Method
from ._yaml import Document, KeyPath

__all__ = ["ApiClientSpec", "Handler", "Settings", "origin_of", "response_variables"]

_FIELDS: Final = ("baseUri", "baseUrl", "headers", "query", "auth", "responseHandlers")
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
ERROR_KEYS: Final = ("access_token_expired", "connection_is_defunct", "rate_limit_exceeded")


def origin_of(url: str | httpx.URL) -> str:
    """``scheme://host:port`` of ``url`` (default ports filled in)."""
    url = httpx.URL(url)
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return f"{url.scheme}://{url.host}:{port}"


class Settings:
    """``makeApiClient`` evaluated for one credentials snapshot.

    Attributes:
        base_uri: the ``baseUri`` (``None`` if the spec gives none).
        origin: its ``scheme://host:port``, or ``None``.
        headers: ``(name, value)`` pairs to set.
        params: ``(name, value)`` query pairs to set.
        problem: an error to raise instead of applying them (a value with a line break).
    """

    __slots__ = ("base_uri", "headers", "origin", "origin_key", "params", "problem", "written")

    def __init__(
        self,
        base_uri: str | None,
        headers: list[tuple[str, str]],
        params: list[tuple[str, str]],
        problem: HttpxRefreshError | None = None,
    ) -> None:
        self.base_uri = base_uri
        self.origin = origin_of(base_uri) if base_uri else None
        url = httpx.URL(base_uri) if base_uri else None
        # (scheme, host, port or None for the default port), as httpx.URL gives them.
        self.origin_key = (url.scheme, url.host, url.port) if url is not None else None
        self.headers = headers
        self.params = params
        self.problem = problem  # raised when applied (e.g. a value with a line break)
        # What applying writes: header names (lowercase), query names, values.
        self.written = (
            frozenset(name.lower() for name, _ in headers),
            frozenset(name for name, _ in params),
            tuple({value for _, value in headers + params if value}),
        )

    def __repr__(self) -> str:  # names and the origin only: values (and paths) may be secrets
        names = [name for name, _ in self.headers] + [name for name, _ in self.params]
        return f"<makeApiClient settings origin={self.origin!r} fields={names}>"


class Handler:
    """One ``responseHandlers`` rule: ``match`` (a formula on ``response``) and ``error.key``."""

    __slots__ = ("key", "line", "match")

    def __init__(self, match: Compiled, key: str | None, line: int | None) -> None:
        self.match = match
        self.key = key
        self.line = line


class _Unsendable(HttpxRefreshError):
    """A value that cannot go on a request (raised when the settings are applied)."""


def _scalar(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def response_variables(response: httpx.Response) -> dict[str, Any]:
    """The ``response`` variable of a response handler: ``{data, headers, statusCode}``.

    ``data`` is the parsed JSON body, or the text when it is not JSON. The response
    must have been read.
    """
    data: Any
    try:
        data = load_json(response.content) if response.content else None
    except ValueError:
        data = response.text
    return {
        "data": data,
        "headers": {name.lower(): value for name, value in response.headers.items()},
        "statusCode": response.status_code,
    }


class ApiClientSpec:
    """The compiled ``makeApiClient`` mapping of a connector.

    Args:
        method: the loaded ``makeApiClient`` method (``mapping`` kind).

    Raises:
        SpecError: a field the library does not know, a field with the wrong type, a
            malformed response handler, or a formula problem.
    """

    def __init__(self, method: Method) -> None:
        self.method = method
        self._python = method.function
        self.javascript = method.kind == "javascript"
        if self._python is not None or self.javascript:
            if self._python is not None and self._python.is_async:
                raise self._python.error(
                    "make_api_client() must be a plain (not async) function: it runs for "
                    "each new credentials version while a request is being prepared"
                )
            self.handlers: list[Handler] = []
            self.roots = frozenset({"credentials"})
            self.paths: frozenset[tuple[str | int, ...]] | None = None  # python: unknown
            self._base = self._headers = self._query = self._auth = None
            self._base_key = "baseUri"
            return
        document, path, body = method.document, method.body_path, method.body
        assert document is not None
        roots = METHODS["makeApiClient"][0]
        if not isinstance(body, dict):
            raise document.error("makeApiClient must be a mapping of baseUri, headers, ...", path)
        fields, fields_path = body, path
        if "args" in body:
            extra = sorted(set(body) - {"args", "responseHandlers"})
            if extra or not isinstance(body["args"], dict):
                raise document.error(
                    "args: must be a mapping of baseUri, headers, query, auth", (*path, "args")
                )
            fields = {**body["args"]}
            if "responseHandlers" in body:
                if "responseHandlers" in fields:
                    raise document.error(
                        "responseHandlers given twice", (*path, "responseHandlers")
                    )
                fields["responseHandlers"] = body["responseHandlers"]
            fields_path = (*path, "args")
        outer = path

        def path_of(key: str) -> KeyPath:
            if key == "responseHandlers" and "args" in body and key in body:
                return (*outer, key)
            return (*fields_path, key)

        self._path_of: Callable[[str], KeyPath] = path_of
        for key in fields:
            if key not in _FIELDS:
                raise document.error(
                    f"unknown makeApiClient field {key!r} (known: {', '.join(_FIELDS)})",
                    self._path_of(key),
                )
        if "baseUri" in fields and "baseUrl" in fields:
            raise document.error("give baseUri or baseUrl, not both", self._path_of("baseUrl"))
        base_key = "baseUri" if "baseUri" in fields else "baseUrl"
        self._document = document

        def compiled(key: str, *, mapping: bool) -> Compiled | None:
            if key not in fields:
                return None
            value = fields[key]
            here = self._path_of(key)
            if mapping and not isinstance(value, dict):
                raise document.error(f"makeApiClient {key} must be a mapping", here)
            if key == "headers" and not any(str(k).startswith("$") for k in value):
                for name in value:
                    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                        raise document.error(
                            f"{name!r} is not a valid header name (RFC 9110 token)",
                            (*here, str(name)),
                        )
            if key == "auth" and not any(str(k).startswith("$") for k in value):
                unknown = sorted(set(value) - {"username", "password"})
                if unknown:
                    raise document.error(
                        f"makeApiClient auth takes username and password, not {unknown[0]!r}",
                        (*here, unknown[0]),
                    )
            if not mapping and isinstance(value, (list, bool, int, float)):
                raise document.error(f"makeApiClient {key} must be a string", here)
            return compile_value(value, document, here, roots=roots)

        self._base = compiled(base_key, mapping=False)
        self._base_key = base_key
        self._headers = compiled("headers", mapping=True)
        self._query = compiled("query", mapping=True)
        self._auth = compiled("auth", mapping=True)
        self.handlers = self._handlers(fields.get("responseHandlers"), document, roots)
        parts = [c for c in (self._base, self._headers, self._query, self._auth) if c]
        self.roots = frozenset().union(*(c.roots for c in parts))
        self.paths = frozenset().union(*(c.paths for c in parts))

    def _handlers(self, value: Any, document: Document, roots: tuple[str, ...]) -> list[Handler]:
        if value is None:
            return []
        here = self._path_of("responseHandlers")
        if not isinstance(value, list):
            raise document.error("responseHandlers must be a list", here)
        handlers = []
        for index, item in enumerate(value):
            at: KeyPath = (*here, index)
            if not isinstance(item, dict) or "match" not in item:
                raise document.error("a response handler is {match, error: {key}}", at)
            unknown = sorted(set(item) - {"match", "error", "isSuccess", "data"})
            if unknown:
                raise document.error(
                    f"unknown response handler key {unknown[0]!r}", (*at, unknown[0])
                )
            error = item.get("error")
            key = None
            if error is not None:
                if not isinstance(error, dict) or set(error) - {"key", "message", "data"}:
                    raise document.error("error is {key, message, data}", (*at, "error"))
                key = error.get("key")
                if key is not None and not isinstance(key, str):
                    raise document.error("error.key must be a string", (*at, "error", "key"))
                close = difflib.get_close_matches(key or "", ERROR_KEYS, n=1, cutoff=0.8)
                if key is not None and key not in ERROR_KEYS and close:
                    # Other keys are allowed (the response goes back to the caller); a near
                    # miss of one that changes behaviour is almost certainly a typo.
                    raise document.error(
                        f"unknown error key {key!r}; did you mean {close[0]!r}? (keys with an "
                        f"effect: {', '.join(ERROR_KEYS)})",
                        (*at, "error", "key"),
                    )
            if "isSuccess" in item and not isinstance(item["isSuccess"], bool):
                raise document.error("isSuccess must be true or false", (*at, "isSuccess"))
            match = compile_value(
                item["match"], document, (*at, "match"), roots=(*roots, "response")
            )
            handlers.append(Handler(match, key, document.line(at)))
        return handlers

    def has_handlers(self, key: str) -> bool:
        """Whether any response handler reports the error ``key``."""
        return any(handler.key == key for handler in self.handlers)

    def matches(self, key: str, response: httpx.Response, scope: Mapping[str, Any]) -> bool:
        """Whether a handler for error ``key`` matches ``response`` (already read)."""
        relevant = [handler for handler in self.handlers if handler.key == key]
        if not relevant:
            return False
        variables = {**scope, "response": response_variables(response)}
        return any(bool(handler.match.evaluate(variables)) for handler in relevant)

    def settings(self, scope: Mapping[str, Any]) -> Settings:
        """Evaluate the mapping for one set of variables.

        Raises:
            SpecError: a field evaluated to the wrong type (file and line of the field).
        """
        if self._python is not None:
            return self._python_settings(scope)
        if self.javascript:  # pragma: no cover - the connection runs it (Node.js)
            raise AssertionError("a javascript makeApiClient runs through its connection")
        base_uri = None
        if self._base is not None:
            value = self._base.evaluate(scope)
            if not is_empty(value):
                if not isinstance(value, str):
                    raise self._error(f"{self._base_key} evaluated to a non-string", self._base_key)
                try:
                    url = httpx.URL(value)
                except httpx.InvalidURL:
                    raise self._error(
                        f"{self._base_key} is not a valid URL", self._base_key
                    ) from None
                if url.scheme not in ("http", "https") or not url.host:
                    raise self._error(
                        f"{self._base_key} must be an absolute http(s) URL", self._base_key
                    )
                base_uri = value
        try:
            headers = self._evaluated_pairs(self._headers, scope, "headers")
            params = self._evaluated_pairs(self._query, scope, "query")
            if self._auth is not None:
                self._basic(self._auth.evaluate(scope), headers)
        except _Unsendable as exc:
            return Settings(base_uri, [], [], exc)
        return Settings(base_uri, headers, params)

    def _basic(self, auth: Any, headers: list[tuple[str, str]]) -> None:
        if auth is not UNDEFINED and auth is not None:
            if not isinstance(auth, dict):
                raise self._error("auth evaluated to a non-mapping", "auth")
            username, password = auth.get("username"), auth.get("password")
            if not is_empty(username):
                raw = f"{_scalar(username)}:{'' if is_empty(password) else _scalar(password)}"
                token = base64.b64encode(raw.encode("utf-8")).decode("ascii")
                headers.append(("Authorization", f"Basic {token}"))  # RFC 7617

    def _python_settings(self, scope: Mapping[str, Any]) -> Settings:
        function = self._python
        assert function is not None
        kwargs = function.kwargs(
            {
                "credentials": dict(scope["credentials"]),
                "connector_parameters": dict(scope["connectorParameters"]),
                "connection_parameters": dict(scope["connectionParameters"]),
            }
        )
        try:
            result = function.function(**kwargs)
        except Exception as exc:  # noqa: BLE001 - type and line only: the message may hold a token
            raise SpecError(
                f"{function.where(exc)} raised {type(exc).__name__}",
                file=function.file,
                line=function.line,
                key=function.function.__name__,
            ) from None
        return self.from_result(result, "make_api_client()", function.error)

    def from_result(
        self,
        result: Any,
        name: str,
        fail: Callable[[str], SpecError],
        *,
        extra: frozenset[str] = frozenset(),
    ) -> Settings:
        """:class:`Settings` from what a python or javascript ``makeApiClient`` returned.

        Args:
            result: the returned value (a mapping of ``baseUri``/``baseUrl``, ``headers``,
                ``query``, ``auth``; ``responseHandlers`` is accepted and not used).
            name: the function as named in errors.
            fail: builds the ``SpecError`` for a problem.
            extra: other field names to accept and ignore.

        Raises:
            SpecError: not a mapping, an unknown field, or a field of the wrong type.
        """
        if not isinstance(result, Mapping):
            raise fail(
                f"{name} returned {type(result).__name__}, expected a mapping of "
                "baseUri, headers, query, auth"
            )
        unknown = sorted(set(result) - set(_FIELDS) - extra)
        if unknown:
            raise fail(f"{name} returned unknown field {unknown[0]!r}")
        base = result.get("baseUri", result.get("baseUrl"))
        if base is not None and not isinstance(base, str):
            raise fail(f"{name} returned a non-string baseUri")
        if base:
            try:
                url = httpx.URL(base)
            except httpx.InvalidURL:
                raise fail(f"{name} returned a baseUri that is not a valid URL") from None
            if url.scheme not in ("http", "https") or not url.host:
                raise fail(f"{name} returned a baseUri that is not an absolute http(s) URL")
        try:
            headers = self._pairs(result.get("headers"), "headers")
            params = self._pairs(result.get("query"), "query")
            self._basic(result.get("auth"), headers)
        except _Unsendable as exc:
            return Settings(base or None, [], [], exc)
        return Settings(base or None, headers, params)

    def _evaluated_pairs(
        self, compiled: Compiled | None, scope: Mapping[str, Any], field: str
    ) -> list[tuple[str, str]]:
        if compiled is None:
            return []
        return self._pairs(compiled.evaluate(scope), field)

    def _pairs(self, value: Any, field: str) -> list[tuple[str, str]]:
        if value is UNDEFINED or value is None:
            return []
        if not isinstance(value, dict):
            raise self._error(f"{field} evaluated to a non-mapping", field)
        pairs = []
        for name, item in value.items():
            items = item if isinstance(item, list) and field == "query" else [item]
            for one in items:
                if one is None or one is UNDEFINED:
                    continue
                if isinstance(one, (dict, list)):
                    raise self._error(f"{field}.{name} evaluated to a mapping or list", field)
                text = _scalar(one)
                if field == "headers" and not _TOKEN.fullmatch(str(name)):
                    raise self._error(f"header name {name!r} is not a valid token", field)
                if _CONTROL.search(text):
                    # A line break would end the header (or smuggle another); never send it,
                    # and never show the value (it comes from the credentials).
                    raise _Unsendable(
                        f"makeApiClient {field} {name!r}: the value has a line break or "
                        "another control character; not sent"
                    )
                pairs.append((str(name), text))
        return pairs

    def _error(self, message: str, field: str) -> SpecError:
        if self._python is not None:
            return self._python.error(f"make_api_client() {message}")
        if self.javascript:
            return self.method.error(f"makeApiClient {message}")
        return self._document.error(message, self._path_of(field))
