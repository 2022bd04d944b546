"""Built-in refreshers: RFC 6749 refresh_token (section 6) and client_credentials (section 4.4).

Each call posts a form to the token endpoint with its own short-lived httpx client
(never following redirects, never putting a secret in the URL), parses the token
response (section 5.1) or error response (section 5.2), and returns the response's
fields for ``RefreshAuth`` to merge.

``timeout`` bounds the whole exchange (DESIGN R16) with one monotonic deadline. httpx's
own timeouts are per operation, so a server that sends its headers and then drips the body
one byte at a time would otherwise hold the caller for as long as it likes. The async
client runs the exchange in one cancel scope. The sync client cannot be interrupted: each
phase (pool, connect, write, response headers, body) gets the time that remains as its
network timeouts, and the deadline is checked after every body chunk; a server that keeps
every read short but never finishes (endless header lines) is cut off by a watchdog that
shuts the connection's socket down at the deadline.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any, Literal
from urllib.parse import parse_qsl, quote_plus

import anyio.to_thread
import httpx

from . import _lib
from ._apply import _CONTROL
from ._credentials import scrub, secret_values
from ._exceptions import ReauthorizationRequired, RefreshError
from ._jsonbody import load_json
from ._portable import check_picklable, copy_part

__all__ = ["ClientCredentialsRefresh", "OAuth2Refresh"]

#: RFC 6749 section 5.2 error codes after which only the user can repair the grant.
PERMANENT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
#: Error codes that mean "try again later" (RFC 6749 section 4.1.2.1, used by token endpoints).
TRANSIENT_ERRORS = frozenset({"server_error", "temporarily_unavailable"})
TRANSIENT_STATUSES = frozenset({408, 429})
#: A token response larger than this is refused (a real one is a few hundred bytes).
MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")
#: Seconds: the least timeout given to one network operation near the deadline (a socket
#: timeout of 0 would mean non-blocking mode, not "expired").
_LEAST = 0.001
#: Seconds: a network timeout this close to the deadline is the deadline's.
_SLACK = 0.01


def basic_credentials(client_id: str, client_secret: str) -> str:
    """Build an RFC 6749 section 2.3.1 ``Authorization: Basic`` value.

    The client id and secret are each form-urlencoded (``application/x-www-form-urlencoded``)
    before being joined with ``:`` and base64-encoded, so a secret containing ``+``,
    ``%`` or ``:`` reaches the server intact.
    """
    raw = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


def _check_size(body: bytearray, response: httpx.Response) -> None:
    if len(body) > MAX_TOKEN_RESPONSE_BYTES:
        raise RefreshError(
            f"token endpoint answered {response.status_code} with a body over "
            f"{MAX_TOKEN_RESPONSE_BYTES // 1024} KiB; not read further",
            status_code=response.status_code,
        )


class _Deadline:
    """The monotonic deadline of one token request (DESIGN R16).

    ``timeouts`` is the request's ``timeout`` extension (httpx's per-operation timeouts):
    the ``trace`` extension callback, which httpcore calls as each phase starts, caps
    every value at the time that remains, so each phase waits at most that long. It also
    notes whether the request started going out (``sent``).
    """

    __slots__ = ("_lock", "_over", "_socket", "at", "fired", "seconds", "sent", "timeouts")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.sent = False
        self.fired = False  # the watchdog shut the connection down at the deadline
        self._over = False  # the exchange ended: the watchdog does nothing more
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self.timeouts: dict[str, float | None] = dict.fromkeys(
            ("connect", "read", "write", "pool"), max(seconds, _LEAST)
        )

    def remaining(self) -> float:
        """Seconds left (0 once the deadline has passed)."""
        return max(self.at - time.monotonic(), 0.0)

    def check(self, grant_type: str) -> None:
        """Raise the overrun error if the deadline has passed."""
        if time.monotonic() >= self.at:
            raise self.overrun(grant_type)

    def ran_out(self, exc: Exception, lib: ModuleType) -> bool:
        """Tell whether ``exc`` is a network timeout that the deadline set off (every
        operation's timeout is what remained, so it fires as the deadline passes)."""
        return isinstance(exc, lib.TimeoutException) and self.at - time.monotonic() < _SLACK

    def overrun(
        self, grant_type: str, exc: Exception | None = None, lib: ModuleType | None = None
    ) -> RefreshError:
        """The transient error for a token request that ran out of time."""
        sent = self.sent or (
            exc is not None
            and lib is not None
            and not isinstance(exc, (lib.ConnectTimeout, lib.PoolTimeout))
        )
        return RefreshError(
            f"token request exceeded its timeout of {self.seconds:g} s",
            transient=True,
            # As for a lost response: a rotating refresh token may already be spent.
            no_retry=sent and grant_type == "refresh_token",
        )

    @contextlib.contextmanager
    def watchdog(self) -> Iterator[None]:
        """For the sync client: at the deadline, shut down the socket of the exchange's
        connection (a blocked read returns at once); ``fired`` tells that it did."""
        timer = threading.Timer(self.remaining(), self._expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            with self._lock:
                self._over = True
            timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._over:
                return
            self.fired = True
            sock = self._socket
        if sock is not None:
            _shut(sock)

    def extensions(self, *, is_async: bool) -> dict[str, Any]:
        """The request extensions that apply this deadline."""
        return {"timeout": self.timeouts, "trace": self._atrace if is_async else self._trace}

    def _trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event.endswith(".complete"):  # connect_tcp, start_tls...: the connection's socket
            get = getattr(info.get("return_value"), "get_extra_info", None)
            sock = get("socket") if callable(get) else None
            if isinstance(sock, socket.socket):
                with self._lock:
                    self._socket = sock
                    fired = self.fired and not self._over
                if fired:
                    _shut(sock)
            return
        if not event.endswith(".started"):
            return
        if "send_request" in event:
            self.sent = True
        left = max(self.remaining(), _LEAST)
        for key in self.timeouts:
            self.timeouts[key] = left

    async def _atrace(self, event: str, info: Mapping[str, Any]) -> None:
        self._trace(event, info)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def _buffered(streamed: httpx.Response, body: bytearray) -> httpx.Response:
    """A complete response from a streamed one whose (decoded) body was read into ``body``."""
    headers = [
        (name, value)
        for name, value in streamed.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return type(streamed)(  # httpx.Response or httpx2.Response, as streamed
        streamed.status_code, headers=headers, content=bytes(body), request=streamed.request
    )


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` (RFC 9110 section 10.2.3) in seconds: delta-seconds or an HTTP-date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is true too
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _sendable(token: str) -> bool:
    """Can ``token`` go into a header field (RFC 9110 section 5.5) as the appliers build it?"""
    if _CONTROL.search(token.strip(" \t\r\n")):
        return False
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _decode_body(response: httpx.Response) -> Any:
    """The token or error response's fields (RFC 6749 sections 5.1, 5.2): JSON read from
    the bytes (a byte order mark is ignored, RFC 8259 section 8.1), or a form; ``None``
    when it is neither.

    The ``Content-Type`` only says which to try first: a JSON body labelled as a form,
    and a form labelled as JSON or text (the old Facebook Graph API's ``text/plain``
    ``access_token=...&expires=...``), are read too, so a token the server issued (and
    a refresh token it rotated) is not thrown away. A body read as a form only counts
    when it names ``access_token`` or ``error`` (an HTML page is not a form)."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    form: dict[str, str] | None = None
    if content_type == "application/x-www-form-urlencoded":
        form = dict(parse_qsl(response.text.removeprefix("\ufeff")))
        if "access_token" in form or "error" in form:
            return form
    try:
        return load_json(response.content)
    except ValueError:
        pass
    if form is None:
        form = dict(parse_qsl(response.text.removeprefix("\ufeff")))
        if "access_token" not in form and "error" not in form:
            return None
    return form


class _TokenGrant:
    """Shared machinery: form building, client authentication, request and parsing."""

    grant_type = ""

    def __init__(
        self,
        token_url: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_auth: Literal["basic", "body"] = "basic",
        scope: str | list[str] | None = None,
        extra: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        verify: ssl.SSLContext | bool | str = True,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url = httpx.URL(token_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"token_url must be an absolute http(s) URL, got {url.scheme!r} URL")
        if client_auth not in ("basic", "body"):
            raise ValueError(f"client_auth must be 'basic' or 'body', got {client_auth!r}")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout < float("inf")
        ):
            raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        self.token_url = str(url)
        self.client_id = client_id
        self._client_secret = client_secret
        self.client_auth = client_auth
        self.scope = " ".join(scope) if isinstance(scope, list) else scope
        self.extra = dict(extra or {})
        self.timeout = float(timeout)
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self._transport = transport
        self._async_transport = async_transport

    # -- pickling and copying (DESIGN R16) ----------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle the settings and transports; the TLS context is built again when used.

        Raises:
            TypeError: a transport (or ``verify`` as an ``ssl.SSLContext``) cannot be
                pickled; the message names it.
        """
        owner = type(self).__name__
        check_picklable(owner, self._portable_parts(), self._secrets())
        state = dict(self.__dict__)
        state["_ssl_context"] = None
        return (_rebuild_grant, (type(self), state))

    def __copy__(self) -> _TokenGrant:
        return _rebuild_grant(type(self), dict(self.__dict__))  # the same transports

    def __deepcopy__(self, memo: dict[int, Any]) -> _TokenGrant:
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        owner = type(self).__name__
        secrets = self._secrets()
        for name, value in self.__dict__.items():
            clone.__dict__[name] = (
                None
                if name == "_ssl_context"
                else copy_part(owner, name.lstrip("_"), value, memo, secrets)
            )
        return clone

    def _portable_parts(self) -> list[tuple[str, Any]]:
        return [
            ("transport", self._transport),
            ("async_transport", self._async_transport),
            ("verify", self._verify),
            ("extra", self.extra),
        ]

    def __repr__(self) -> str:
        secret = "None" if self._client_secret is None else "'***'"
        return (
            f"{type(self).__name__}({str(httpx.URL(self.token_url).copy_with(query=None))!r}, "
            f"client_id={self.client_id!r}, client_secret={secret}, "
            f"client_auth={self.client_auth!r}, scope={self.scope!r})"
        )

    # -- building the request ------------------------------------------------------

    def _grant_fields(self, credentials: Mapping[str, Any]) -> dict[str, str]:
        raise NotImplementedError

    def _client(self, connector_parameters: Mapping[str, Any]) -> tuple[str | None, str | None]:
        client_id = self.client_id
        if client_id is None:
            value = connector_parameters.get("client_id", connector_parameters.get("clientId"))
            client_id = None if value is None else str(value)
        client_secret = self._client_secret
        if client_secret is None:
            value = connector_parameters.get(
                "client_secret", connector_parameters.get("clientSecret")
            )
            client_secret = None if value is None else str(value)
        return client_id, client_secret

    def _build(
        self, credentials: Mapping[str, Any], connector_parameters: Mapping[str, Any]
    ) -> tuple[dict[str, str], dict[str, str]]:
        form = {"grant_type": self.grant_type, **self._grant_fields(credentials)}
        if self.scope:
            form["scope"] = self.scope
        form.update(self.extra)
        headers = {"Accept": "application/json"}
        client_id, client_secret = self._client(connector_parameters)
        if self.client_auth == "basic" and client_id is not None:
            headers["Authorization"] = basic_credentials(client_id, client_secret or "")
        else:
            if client_id is not None:
                form["client_id"] = client_id
            if client_secret is not None:
                form["client_secret"] = client_secret
        return headers, form

    def _secrets(self, *mappings: Mapping[str, Any]) -> list[str]:
        found = secret_values(*mappings)
        if self._client_secret:
            found.append(self._client_secret)
        return found

    # -- parsing the response --------------------------------------------------------

    def _parse(self, response: httpx.Response, secrets: list[str]) -> dict[str, Any]:
        status = response.status_code
        body = _decode_body(response)
        fields = body if isinstance(body, dict) else {}
        error = fields.get("error")
        # RFC 6749 section 5.2: an error code is a short token of printable ASCII
        # (no '"' or '\\'); anything else is not trusted as a code or shown.
        oauth_error = error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else None
        if oauth_error is not None and scrub(oauth_error, secrets) != oauth_error:
            oauth_error = None
        description = fields.get("error_description")
        detail = f"{status}" + (f" {oauth_error}" if oauth_error else "")
        if isinstance(description, str) and description:
            detail += ": " + scrub(description, secrets)[:200]
        if 200 <= status < 300:
            if not isinstance(body, dict):
                raise RefreshError(
                    f"token endpoint answered {status} with a body that is not a JSON object",
                    status_code=status,
                )
            access_token = fields.get("access_token")
            if isinstance(access_token, int) and not isinstance(access_token, bool):
                fields["access_token"] = access_token = str(access_token)
            if isinstance(access_token, str) and access_token:
                if not _sendable(access_token):
                    # Merged, it would fail every request until it expires (never, if its
                    # expiry is unknown): no 401 could ever trigger the next refresh.
                    raise RefreshError(
                        f"token endpoint answered {status} with an access_token that cannot "
                        "be sent in a header (a control character or a lone surrogate)",
                        status_code=status,
                    )
                return fields
            if access_token is not None and not isinstance(access_token, str):
                # Malformed, not a verdict on the grant: never ReauthorizationRequired.
                raise RefreshError(
                    f"token endpoint answered {status} with an access_token that is a "
                    f"{type(access_token).__name__}, not a string",
                    status_code=status,
                )
            if oauth_error in TRANSIENT_ERRORS:
                raise RefreshError(
                    f"token endpoint answered {detail}",
                    transient=True,
                    oauth_error=oauth_error,
                    status_code=status,
                )
            raise ReauthorizationRequired(
                f"token endpoint answered {detail} without an access_token",
                oauth_error=oauth_error,
                status_code=status,
            )
        if 300 <= status < 400:
            raise RefreshError(
                f"token endpoint answered {status} (a redirect); token requests never follow "
                "redirects",
                status_code=status,
            )
        # A 401 from the token endpoint rejects the client or its grant whatever the
        # code says (RFC 6749 section 5.2 names invalid_client; servers send their own,
        # e.g. "unauthorized"): presenting the same again cannot succeed.
        if oauth_error in PERMANENT_ERRORS or (
            status == 401 and oauth_error not in TRANSIENT_ERRORS
        ):
            raise ReauthorizationRequired(
                f"token endpoint answered {detail}", oauth_error=oauth_error, status_code=status
            )
        transient = status in TRANSIENT_STATUSES or status >= 500 or oauth_error in TRANSIENT_ERRORS
        raise RefreshError(
            f"token endpoint answered {detail}",
            transient=transient,
            oauth_error=oauth_error,
            status_code=status,
            retry_after=_retry_after(response) if transient else None,
        )

    def _transport_error(self, exc: Exception, lib: ModuleType) -> RefreshError:
        # The request may have reached the server: if this grant is single-use (a
        # rotating refresh token), trying again within the flight could present a token
        # the server already consumed. Leave it to the next flight.
        sent = not isinstance(exc, (lib.ConnectError, lib.ConnectTimeout, lib.PoolTimeout))
        return RefreshError(
            f"token endpoint request failed: {type(exc).__name__}",
            transient=True,
            no_retry=sent and self.grant_type == "refresh_token",
        )

    def _library(self, transport: Any) -> ModuleType:
        """The HTTP library for the token request: the given transport's, else the one
        of the client whose request needed this refresh (httpx or httpx2)."""
        if transport is not None:
            for cls in type(transport).__mro__:  # a user's subclass of a library transport
                root = cls.__module__.split(".")[0]
                if root in _lib.LIBRARIES:
                    return _lib.load(root)
        return _lib.current()

    def _build_ssl_context(self, lib: ModuleType) -> ssl.SSLContext:
        if isinstance(self._verify, ssl.SSLContext):
            return self._verify
        # Loading the CA bundle takes tens of milliseconds: do it once per refresher
        # (the context is a standard ssl.SSLContext: either library takes it).
        context: ssl.SSLContext = lib.create_ssl_context(verify=self._verify)
        self._ssl_context = context
        return context

    # -- calling -------------------------------------------------------------------

    def __call__(
        self,
        *,
        credentials: Mapping[str, Any],
        connector_parameters: Mapping[str, Any] | None = None,
        connection_parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run the grant with a sync client and return the token response's fields.

        Args:
            credentials: the current credentials.
            connector_parameters: may supply ``client_id`` / ``client_secret`` when
                they were not given to the constructor.
            connection_parameters: unused; accepted for the refresher signature.

        Returns:
            The token response (RFC 6749 section 5.1) as a dict.

        Raises:
            ReauthorizationRequired: ``invalid_grant``, ``invalid_client``,
                ``unauthorized_client``, a 401, a 2xx without ``access_token``, or no
                ``refresh_token`` in the credentials.
            RefreshError: any other failure; ``transient`` for network errors,
                timeouts, 408, 429, 5xx, ``server_error``, ``temporarily_unavailable``, and
                for an exchange that ran past ``timeout`` seconds (body read included).
        """
        parameters = connector_parameters or {}
        headers, form = self._build(credentials, parameters)
        secrets = self._secrets(credentials, parameters)
        lib = self._library(self._transport)
        deadline = _Deadline(self.timeout)
        try:
            verify = self._ssl_context or self._build_ssl_context(lib)
            with (
                deadline.watchdog(),
                lib.Client(
                    follow_redirects=False, verify=verify, transport=self._transport
                ) as client,
                client.stream(
                    "POST",
                    self.token_url,
                    data=form,
                    headers=headers,
                    extensions=deadline.extensions(is_async=False),
                ) as streamed,
            ):
                deadline.sent = True  # a response is arriving: the request went out
                # One read may still wait as long as was left when the body began; the
                # deadline is checked again after every chunk.
                body = bytearray()
                for chunk in streamed.iter_bytes():
                    body += chunk
                    _check_size(body, streamed)
                    deadline.check(self.grant_type)
                deadline.check(self.grant_type)
                response = _buffered(streamed, body)
        except lib.HTTPError as exc:
            if deadline.fired or deadline.ran_out(exc, lib):
                raise deadline.overrun(self.grant_type, exc, lib) from None
            raise self._transport_error(exc, lib) from None
        return self._parse(response, secrets)

    async def acall(
        self,
        *,
        credentials: Mapping[str, Any],
        connector_parameters: Mapping[str, Any] | None = None,
        connection_parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run the grant with an async client (asyncio or trio); see :meth:`__call__`."""
        parameters = connector_parameters or {}
        headers, form = self._build(credentials, parameters)
        secrets = self._secrets(credentials, parameters)
        lib = self._library(self._async_transport)
        deadline = _Deadline(self.timeout)
        try:
            with anyio.fail_after(self.timeout):
                return await self._aexchange(lib, headers, form, secrets, deadline)
        except TimeoutError:
            raise deadline.overrun(self.grant_type) from None

    async def _aexchange(
        self,
        lib: ModuleType,
        headers: dict[str, str],
        form: dict[str, str],
        secrets: list[str],
        deadline: _Deadline,
    ) -> dict[str, Any]:
        try:
            verify = self._ssl_context
            if verify is None:  # build it off the event loop (it reads files)
                verify = await anyio.to_thread.run_sync(self._build_ssl_context, lib)
            async with (
                lib.AsyncClient(
                    follow_redirects=False, verify=verify, transport=self._async_transport
                ) as client,
                client.stream(
                    "POST",
                    self.token_url,
                    data=form,
                    headers=headers,
                    extensions=deadline.extensions(is_async=True),
                ) as streamed,
            ):
                deadline.sent = True  # a response is arriving: the request went out
                body = bytearray()
                chunks = streamed.aiter_bytes()
                try:
                    async for chunk in chunks:
                        body += chunk
                        _check_size(body, streamed)
                finally:  # close the async generator here, not at garbage collection
                    await chunks.aclose()
                response = _buffered(streamed, body)
        except lib.HTTPError as exc:
            if deadline.ran_out(exc, lib):
                raise deadline.overrun(self.grant_type, exc, lib) from None
            raise self._transport_error(exc, lib) from None
        return self._parse(response, secrets)


def _rebuild_grant(cls: type[_TokenGrant], state: dict[str, Any]) -> _TokenGrant:
    grant = cls.__new__(cls)
    grant.__dict__.update(state)
    return grant


class OAuth2Refresh(_TokenGrant):
    """Refresher for the RFC 6749 section 6 refresh_token grant.

    Posts ``grant_type=refresh_token`` with the credentials' ``refresh_token`` (without
    surrounding whitespace, which no refresh token has). A rotated ``refresh_token`` in
    the response replaces the old one when merged; a response without one (or with an
    empty one) keeps it.

    Args:
        token_url: the token endpoint (absolute http or https URL).
        client_id: the client identifier; default: ``connector_parameters["client_id"]``
            (or ``clientId``) at call time.
        client_secret: the client secret; default from ``connector_parameters`` likewise.
        client_auth: ``"basic"`` (HTTP Basic, id and secret form-urlencoded first,
            RFC 6749 section 2.3.1) or ``"body"`` (``client_id`` / ``client_secret``
            form fields).
        scope: sent as ``scope`` on every call (a list is joined with spaces).
        extra: more form fields sent on every call (e.g. ``{"audience": ...}``).
        timeout: seconds for the whole token exchange: connecting, sending, the response
            headers and the whole body together (one deadline; not httpx's per-read
            timeout). Running out is a transient :class:`RefreshError`.
        verify: TLS verification as httpx takes it (``True``, a CA bundle path, or an
            ``ssl.SSLContext``); the context is built once, off the event loop.
        transport: an ``httpx.BaseTransport`` for the sync client (tests, or
            ``httpx.HTTPTransport(proxy=...)`` for a proxy set in code). Without one, the
            proxy environment variables apply (``HTTPS_PROXY``, ``NO_PROXY``, ...).
        async_transport: an ``httpx.AsyncBaseTransport`` for the async client (likewise).

    It pickles and deep-copies (the TLS context is built again when first used); a
    transport or ``ssl.SSLContext`` that cannot be pickled raises ``TypeError`` naming it.

    Raises:
        ValueError: ``token_url`` is not an absolute http(s) URL, ``client_auth`` is
            unknown, or ``timeout`` is not a finite number of seconds > 0.
    """

    grant_type = "refresh_token"

    def _grant_fields(self, credentials: Mapping[str, Any]) -> dict[str, str]:
        refresh_token = credentials.get("refresh_token")
        if isinstance(refresh_token, str):
            # RFC 6749 appendix A.17: a refresh token has no whitespace; what surrounds one
            # came from where it was kept (a file or variable with its newline).
            refresh_token = refresh_token.strip(" \t\r\n")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise ReauthorizationRequired("credentials have no refresh_token to refresh with")
        return {"refresh_token": refresh_token}


class ClientCredentialsRefresh(_TokenGrant):
    """Refresher for the RFC 6749 section 4.4 client_credentials grant.

    Fetches a new access token with the client's own credentials; no refresh token
    is needed. Arguments (and pickling) as for :class:`OAuth2Refresh`.

    Raises:
        ValueError: ``token_url`` is not an absolute http(s) URL, ``client_auth`` is
            unknown, or ``timeout`` is not a finite number of seconds > 0.
    """

    grant_type = "client_credentials"

    def _grant_fields(self, credentials: Mapping[str, Any]) -> dict[str, str]:
        return {}
