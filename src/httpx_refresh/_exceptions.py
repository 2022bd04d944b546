"""The one exception tree of httpx-refresh.

::

    HttpxRefreshError
    ├── RefreshError              a refresh failed (.transient, .oauth_error, .status_code)
    │   └── ReauthorizationRequired   permanent: the grant is dead, the user must reconnect
    ├── RequestNotReplayable      the request body cannot be sent a second time
    ├── SpecError                 a connector spec is invalid (.file, .line, .key)
    └── StoreError                a credential store failed (.path)

No message, attribute or ``repr()`` of these errors ever holds a credential value,
a client secret or a token. Foreign errors are translated at the boundary with
``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "HttpxRefreshError",
    "ReauthorizationRequired",
    "RefreshError",
    "RequestNotReplayable",
    "SpecError",
    "StoreError",
]


class HttpxRefreshError(Exception):
    """Base class of every error raised by httpx-refresh."""


class RefreshError(HttpxRefreshError):
    """A credentials refresh failed.

    Args:
        message: what went wrong, without any secret.
        transient: ``True`` when trying again later may succeed (network error,
            timeout, 408, 429, 5xx, OAuth ``server_error`` / ``temporarily_unavailable``).
        oauth_error: the RFC 6749 section 5.2 ``error`` code from the token endpoint,
            if it returned one (e.g. ``"invalid_grant"``).
        status_code: the HTTP status of the token endpoint's response, if there was one.
        retry_after: seconds the token endpoint asked to wait (``Retry-After``), if any.
        no_retry: the request may have been processed (e.g. the response was lost after
            a single-use refresh token went out), so the refresh must not try again at
            once; it still counts as transient for the cooldown.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        oauth_error: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        no_retry: bool = False,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.oauth_error = oauth_error
        self.status_code = status_code
        self.retry_after = retry_after
        self.no_retry = no_retry

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.args[0]!r}, transient={self.transient}, "
            f"oauth_error={self.oauth_error!r}, status_code={self.status_code!r})"
        )


class ReauthorizationRequired(RefreshError):
    """The refresh failed permanently: the refresh token (or client) was rejected.

    Raised for RFC 6749 ``invalid_grant``, ``invalid_client``, ``unauthorized_client``,
    a successful token response without ``access_token``, or credentials with no
    ``refresh_token`` to use. The end user has to reconnect; call
    ``RefreshAuth.update_credentials()`` with the new credentials. Until then every
    request through the same auth raises this error without calling the token endpoint.
    ``transient`` is always ``False``.
    """

    def __init__(
        self,
        message: str,
        *,
        oauth_error: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, transient=False, oauth_error=oauth_error, status_code=status_code)


class RequestNotReplayable(HttpxRefreshError):
    """A rejected request needs a replay, but its body cannot be re-read.

    Raised after the refresh has happened (the new credentials are kept), for bodies
    such as generators. Pass ``buffer_body=True`` to ``RefreshAuth`` to buffer bodies
    so that they can be replayed, or retry the request yourself.
    """


class SpecError(HttpxRefreshError):
    """A connector spec is invalid.

    Args:
        message: what is wrong.
        file: the spec or method file, if known.
        line: the 1-based line in ``file``, if known.
        key: the dotted key path inside the spec (e.g. ``"auth.refreshCredentials"``).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        where = ""
        if file is not None:
            where = file if line is None else f"{file}:{line}"
        if key is not None:
            where = f"{where} ({key})" if where else key
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.line = line
        self.key = key


class StoreError(HttpxRefreshError):
    """A credential store could not load or save credentials.

    Args:
        message: what went wrong, without any secret.
        path: the file path or store key involved, if any.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
