"""How credentials go onto a request: ``bearer``, ``headers`` and ``query_param``.

An *applier* is any ``Callable[[request, Mapping[str, Any]], None]`` that writes
values from one credentials snapshot onto the request (DESIGN R1). Appliers work on
any request object with httpx's ``headers`` and ``url`` interface (httpx, httpx2).
The built-in ones pickle and deep-copy (DESIGN R16).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from . import _lib
from ._exceptions import HttpxRefreshError
from ._redact import redact_query_names

__all__ = ["Applier", "bearer", "headers", "query_param"]

Applier = Callable[[Any, Mapping[str, Any]], None]
#: What an applier wrote: header names (lowercase), query parameter names, values.
Written = tuple[frozenset[str], frozenset[str], tuple[str, ...]]
_NONE: frozenset[str] = frozenset()


def _value(credentials: Mapping[str, Any], key: str, where: str) -> str:
    value = credentials.get(key)
    if value is None or value == "":
        raise HttpxRefreshError(f"credentials have no {key!r} to put in {where}")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    # bytes would go out as "b'...'", a list as "['...']": never what the server issued.
    raise HttpxRefreshError(
        f"credentials' {key!r} is a {type(value).__name__}, not a string; not put in {where}"
    )


def _encodable(value: str, where: str) -> None:
    """Refuse a value that cannot be sent as UTF-8 (a lone surrogate, e.g. from a JSON
    ``"\\ud800"`` escape): the encoder's own error would carry the whole value."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HttpxRefreshError(
            f"{where} built from the credentials is not valid Unicode (a lone surrogate); not sent"
        ) from None


#: Control characters (RFC 9110 section 5.5 forbids them in a field value; HTAB aside).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _field(value: str, name: str) -> str:
    """A header value as RFC 9110 section 5.5 allows it, built from credentials.

    Leading and trailing whitespace (a token read from a file with its newline) is not
    part of a field value and is dropped. A control character left inside (CR, LF, NUL)
    raises here, naming the header only: httpx's own error would quote the whole
    value, token included, and a CR LF could inject a header.
    """
    value = value.strip(" \t\r\n")
    if not value:
        raise HttpxRefreshError(f"the {name} header built from the credentials is blank")
    if _CONTROL.search(value):
        raise HttpxRefreshError(
            f"the {name} header built from the credentials contains a control character "
            "(CR, LF, NUL, ...); not sent"
        )
    _encodable(value, f"the {name} header")
    return value


_UNCHECKED: tuple[object, str, str] = (None, "", "")


class _Bearer:
    __slots__ = ("_checked", "_header", "_key", "_scheme")

    def __init__(self, key: str, header: str, scheme: str) -> None:
        self._key = key
        self._header = header
        self._scheme = scheme
        # (raw token, header value, token): the last token checked by _field. Every
        # request of one credentials version carries the same str object, so the
        # check (linear in the token's length) runs once per version, not per request.
        self._checked: tuple[object, str, str] = _UNCHECKED

    def __call__(self, request: Any, credentials: Mapping[str, Any]) -> None:
        self.apply_reporting(request, credentials)

    def apply_reporting(self, request: Any, credentials: Mapping[str, Any]) -> Written:
        """Apply, and say what was written (for the redirect guard)."""
        raw = credentials.get(self._key)
        checked = self._checked
        if raw is not None and raw is checked[0]:
            value, token = checked[1], checked[2]
        else:
            token = _field(
                _value(credentials, self._key, f"the {self._header} header"), self._header
            )
            value = f"{self._scheme} {token}" if self._scheme else token
            self._checked = (raw, value, token)  # one attribute write: no torn reads
        request.headers[self._header] = value
        return frozenset({self._header.lower()}), _NONE, (value, token)

    def __reduce__(self) -> tuple[Any, ...]:
        # Slots pickle only with protocol 2+; and the cache of the last token stays here.
        return (_Bearer, (self._key, self._header, self._scheme))

    def __repr__(self) -> str:
        return f"bearer(key={self._key!r}, header={self._header!r}, scheme={self._scheme!r})"


def bearer(
    key: str = "access_token", *, header: str = "Authorization", scheme: str = "Bearer"
) -> Applier:
    """Put ``credentials[key]`` in a header as ``"<scheme> <token>"`` (RFC 6750 section 2.1).

    Args:
        key: the credentials key holding the token.
        header: the header name.
        scheme: the scheme word; ``""`` sends the bare token.

    Returns:
        An applier for ``RefreshAuth(apply=...)``.

    Leading and trailing whitespace around the token is dropped (RFC 9110 section 5.5).

    Raises:
        HttpxRefreshError: at request time, if the credentials have no value for ``key``,
            it is neither a string nor an integer, or it holds a control character such
            as CR or LF or a lone surrogate (the message never quotes it).
    """
    return _Bearer(key, header, scheme)


class _Headers:
    __slots__ = ("_templates",)

    def __init__(self, templates: Mapping[str, str]) -> None:
        formatter = string.Formatter()
        for name, template in templates.items():
            for _, field, spec, conversion in formatter.parse(template):
                if field is not None and (not field.isidentifier() or spec or conversion):
                    raise ValueError(
                        f"header {name!r}: template fields must be plain keys such as "
                        f"{{access_token}}, got {{{field}}}"
                    )
        self._templates = dict(templates)

    def __call__(self, request: Any, credentials: Mapping[str, Any]) -> None:
        self.apply_reporting(request, credentials)

    def apply_reporting(self, request: Any, credentials: Mapping[str, Any]) -> Written:
        """Apply, and say what was written (for the redirect guard)."""
        values = {}
        for name, template in self._templates.items():
            try:
                values[name] = template.format_map(_Present(credentials))
            except KeyError as exc:
                raise HttpxRefreshError(
                    f"credentials have no {exc.args[0]!r} for the {name} header"
                ) from None
        values = {name: _field(value, name) for name, value in values.items()}
        for name, value in values.items():
            request.headers[name] = value
        return frozenset(name.lower() for name in values), _NONE, tuple(values.values())

    def __reduce__(self) -> tuple[Any, ...]:  # slots pickle only with protocol 2+
        return (_Headers, (self._templates,))

    def __repr__(self) -> str:
        return f"headers({self._templates!r})"


class _Present(dict[str, Any]):
    """The credentials without ``None`` or empty values: a missing key raises ``KeyError``."""

    def __init__(self, credentials: Mapping[str, Any]) -> None:
        super().__init__((k, v) for k, v in credentials.items() if v is not None and v != "")


def headers(templates: Mapping[str, str]) -> Applier:
    """Set several headers from ``str.format`` templates over one snapshot.

    Example: ``hr.headers({"Authorization": "Token {access_token}", "X-Tenant": "{tenant_id}"})``.
    All headers are built before any is set, so a request never carries a mix of
    values from two credential versions (DESIGN R1).

    Args:
        templates: header name to template; fields are credentials keys.

    Returns:
        An applier for ``RefreshAuth(apply=...)``.

    Raises:
        ValueError: at once, if a template field is not a plain key.
        HttpxRefreshError: at request time, if a key is missing from the credentials or a
            value holds a control character such as CR or LF (never quoted); leading and
            trailing whitespace of each header value is dropped (RFC 9110 section 5.5).
    """
    return _Headers(templates)


class _Query:
    __slots__ = ("_key", "_name")

    def __init__(self, name: str, key: str) -> None:
        self._name = name
        self._key = key

    def __call__(self, request: Any, credentials: Mapping[str, Any]) -> None:
        self.apply_reporting(request, credentials)

    def apply_reporting(self, request: Any, credentials: Mapping[str, Any]) -> Written:
        """Apply, and say what was written (for the redirect guard)."""
        where = f"the {self._name} query parameter"
        value = _value(credentials, self._key, where)
        _encodable(value, where)
        try:
            url = request.url.copy_set_param(self._name, value)
        except Exception as exc:
            if not _lib.is_invalid_url(exc):  # e.g. a 1 MB token: the URL is too long
                raise
            raise HttpxRefreshError(
                f"{where} built from the credentials makes an invalid URL "
                f"({type(exc).__name__}); not sent"
            ) from None
        request.url = url
        return _NONE, frozenset({self._name}), (value,)

    def __reduce__(self) -> tuple[Any, ...]:
        # Through query_param(): a new process redacts the name from httpx's log too.
        return (query_param, (self._name, self._key))

    def __repr__(self) -> str:
        return f"query_param({self._name!r}, key={self._key!r})"


def query_param(name: str, key: str = "access_token") -> Applier:
    """Put ``credentials[key]`` in the query parameter ``name``, replacing any earlier value.

    Prefer a header when the API allows it: URLs end up in logs (RFC 6750 section 2.3).
    httpx's own ``HTTP Request: ...`` log line shows ``[redacted]`` for this parameter (a
    filter on the ``httpx`` logger); servers' and proxies' access logs are another matter.

    Args:
        name: the query parameter name (e.g. ``"api_key"``).
        key: the credentials key holding the value.

    Returns:
        An applier for ``RefreshAuth(apply=...)``.

    Raises:
        HttpxRefreshError: at request time, if the credentials have no value for ``key``,
            it is neither a string nor an integer, or the URL cannot hold it (a lone
            surrogate, over httpx's URL length limit).
    """
    redact_query_names([name])  # keep the value out of httpx's "HTTP Request: ..." log line
    return _Query(name, key)
