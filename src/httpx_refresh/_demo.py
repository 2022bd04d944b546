"""The demo: an embedded OAuth 2.0 provider, and a workload that drives ``RefreshAuth`` through it.

:class:`DemoProvider` is a small OAuth 2.0 authorization server plus a protected API, a Starlette
app served by uvicorn on 127.0.0.1 in its own thread (real sockets). It rotates refresh tokens
and detects their reuse the way real providers do, so a client that ever sends a rotated-away
refresh token loses the whole grant.

:func:`run_demo` obtains a grant, then sends thousands of requests through one ``RefreshAuth``
with ``OAuth2Refresh`` across several token lifetimes and one server-side revocation of every
access token, and checks that no request failed and that the token endpoint saw at most one call
per refresh period plus one per revocation.

uvicorn and starlette come from the ``demo`` extra (``pip install 'httpx-refresh[demo]'``); they
are imported only when a provider starts, so ``import httpx_refresh`` never needs them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import inspect
import itertools
import math
import secrets
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType, MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import parse_qsl, unquote_plus

import anyio
import httpx

from ._auth import RefreshAuth
from ._oauth2 import OAuth2Refresh

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PORT",
    "DEFAULT_TTL",
    "DemoOptions",
    "DemoProvider",
    "DemoReport",
    "DemoUnavailable",
    "ProviderCounters",
    "Schedule",
    "allowed_token_calls",
    "default_leeway",
    "format_report",
    "plan_schedule",
    "refresh_interval",
    "require_server",
    "run_demo",
    "serve_forever",
    "verdict",
]

DEFAULT_CLIENT_ID = "demo-client"
#: Contains ``+``, ``:`` and ``%`` on purpose: HTTP Basic only carries it intact when the client
#: form-urlencodes it first (RFC 6749 section 2.3.1).
DEFAULT_CLIENT_SECRET = "demo+secret:42%"
DEFAULT_PORT = 8765
#: Access-token lifetime in seconds; the default demo runs for about 3.6 of them.
DEFAULT_TTL = 2.0
#: Seconds the token endpoint waits before answering, so that concurrent requests pile up.
DEFAULT_TOKEN_LATENCY = 0.05
REALM = "httpx-refresh demo"
INSTALL_HINT = "pip install 'httpx-refresh[demo]'"

#: The run lasts this many ttl (the last burst of requests starts then); revocation at half.
RUN_SPAN_TTLS = 3.6
MIN_BURSTS = 10
ECHO_EVERY = 5  # every 5th request is a POST /api/echo with a body
PROGRESS_PERIOD = 0.25  # seconds between progress-line updates
REQUEST_TIMEOUT = 30.0
GRANTS = ("refresh_token", "client_credentials")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class DemoUnavailable(RuntimeError):
    """uvicorn or starlette (the ``demo`` extra) is not installed."""


def require_server() -> None:
    """Check that the ``demo`` extra is installed.

    Raises:
        DemoUnavailable: uvicorn or starlette cannot be imported; the message says how to
            install them.
    """
    missing = []
    for name in ("uvicorn", "starlette"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise DemoUnavailable(
            f"the demo needs {' and '.join(missing)}, which are not installed: {INSTALL_HINT}"
        )


# -- the provider ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderCounters:
    """What a :class:`DemoProvider` has answered so far (or between two moments, see :meth:`since`).

    Attributes:
        token_calls: requests to ``POST /token``, by ``grant_type`` (``"refresh_token"``,
            ``"client_credentials"``, or ``"other"``), counted when they arrive.
        api_unauthorized: 401 responses sent by the protected API.
        api_successes: 200 responses sent by the protected API.
        invalid_grant: ``invalid_grant`` error responses sent by the token endpoint.
        revocations: calls of ``POST /admin/revoke``.
        connects: grants issued by ``POST /dev/connect`` (or :meth:`DemoProvider.connect`).
    """

    token_calls: Mapping[str, int]
    api_unauthorized: int = 0
    api_successes: int = 0
    invalid_grant: int = 0
    revocations: int = 0
    connects: int = 0

    @property
    def token_calls_total(self) -> int:
        """All token-endpoint calls, whatever the grant."""
        return sum(self.token_calls.values())

    def since(self, earlier: ProviderCounters) -> ProviderCounters:
        """Return the counts that happened after ``earlier`` was taken."""
        keys = set(self.token_calls) | set(earlier.token_calls)
        return ProviderCounters(
            token_calls=MappingProxyType(
                {k: self.token_calls.get(k, 0) - earlier.token_calls.get(k, 0) for k in keys}
            ),
            api_unauthorized=self.api_unauthorized - earlier.api_unauthorized,
            api_successes=self.api_successes - earlier.api_successes,
            invalid_grant=self.invalid_grant - earlier.invalid_grant,
            revocations=self.revocations - earlier.revocations,
            connects=self.connects - earlier.connects,
        )


@dataclass(slots=True)
class _Family:
    """One grant: the chain of refresh tokens issued by rotation since the user connected."""

    client_id: str
    refresh_token: str | None = None  # the only refresh token of the family that still works
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class _Access:
    family: int
    client_id: str
    expires: float  # provider clock


class _Reject(Exception):
    """An OAuth error response (RFC 6749 section 5.2) to send instead of going on."""

    def __init__(self, status: int, error: str, description: str = "") -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description


class DemoProvider:
    """An OAuth 2.0 provider and a protected API on 127.0.0.1, for the demo, tests and benchmarks.

    Endpoints:

    - ``POST /token``: ``grant_type=refresh_token`` (RFC 6749 section 6) with refresh-token
      rotation: each refresh token works once; presenting a used one answers 400
      ``invalid_grant`` and revokes the whole grant (its current refresh token and access
      tokens), as real providers do. ``grant_type=client_credentials`` (section 4.4). Client
      authentication per section 2.3.1: HTTP Basic with id and secret form-urlencoded before
      base64, or ``client_id`` / ``client_secret`` body fields (not both); a wrong client
      answers 401 ``invalid_client``. Success responses per section 5.1 with
      ``Cache-Control: no-store``.
    - ``GET /api/items``, ``POST /api/echo`` (answers the received body length): need
      ``Authorization: Bearer <valid unexpired access token>``, else 401 with
      ``WWW-Authenticate: Bearer`` (RFC 6750 section 3; ``error="invalid_token"`` when a token
      was presented).
    - ``POST /admin/revoke``: revokes every access token (client authentication required).
    - ``POST /dev/connect``: issues a new grant (access and refresh token) to the authenticated
      client, as if its user had just connected.
    - ``POST /introspect``: RFC 7662 token introspection (``{"active": ...}``) without using the
      token, for the client that owns it.

    Use it as a context manager: ``with DemoProvider(ttl=2) as base_url: ...``; the counters
    are on the object (:meth:`counters`). State is guarded by a lock, so the in-process
    helpers (:meth:`connect`, :meth:`revoke_access_tokens`, :meth:`refresh_token_state`) may be
    called from any thread while it serves.

    Args:
        ttl: access-token lifetime in seconds (``expires_in``; a whole number is sent as an
            integer, as RFC 6749 requires; a fraction is sent as is, for quick tests).
        client_id: the one registered client's identifier.
        client_secret: its secret.
        token_latency: seconds the token endpoint waits before handling each request.
        reject_refreshes: answer every ``refresh_token`` grant with 400 ``invalid_grant``
            (to show how a dead grant is reported).
        host: interface to listen on.
        port: TCP port; 0 picks a free one.
        clock: monotonic seconds, for expiry (tests may inject a fake clock).

    Raises:
        ValueError: ``ttl`` is not positive or ``token_latency`` is negative.
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_latency: float = 0.0,
        reject_refreshes: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        if token_latency < 0:
            raise ValueError(f"token_latency must be >= 0 seconds, got {token_latency!r}")
        self.ttl = float(ttl)
        self.client_id = client_id
        self._client_secret = client_secret
        self.token_latency = float(token_latency)
        self.reject_refreshes = reject_refreshes
        self.host = host
        self.port = port
        self._clock = clock
        self._lock = threading.Lock()
        self._families: dict[int, _Family] = {}
        self._family_ids = itertools.count(1)
        self._refresh: dict[str, int] = {}  # every refresh token ever issued -> its family
        self._access: dict[str, _Access] = {}
        self._token_calls: Counter[str] = Counter()
        self._api_unauthorized = 0
        self._api_successes = 0
        self._invalid_grant = 0
        self._revocations = 0
        self._connects = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.url = ""

    def __repr__(self) -> str:
        return (
            f"<DemoProvider url={self.url or None!r} ttl={self.ttl:g} "
            f"client_id={self.client_id!r} client_secret='***'>"
        )

    # -- state, usable in-process ------------------------------------------------------

    def counters(self) -> ProviderCounters:
        """Return a consistent copy of the counters."""
        with self._lock:
            return ProviderCounters(
                token_calls=MappingProxyType(dict(self._token_calls)),
                api_unauthorized=self._api_unauthorized,
                api_successes=self._api_successes,
                invalid_grant=self._invalid_grant,
                revocations=self._revocations,
                connects=self._connects,
            )

    def connect(self) -> dict[str, Any]:
        """Issue a new grant to the registered client, as ``POST /dev/connect`` does.

        Returns:
            An RFC 6749 section 5.1 token response with ``access_token`` and ``refresh_token``.
        """
        with self._lock:
            self._connects += 1
            family_id = next(self._family_ids)
            self._families[family_id] = _Family(self.client_id)
            return self._issue(family_id, self.client_id, with_refresh=True)

    def revoke_access_tokens(self) -> int:
        """Revoke every access token, as ``POST /admin/revoke`` does; return how many there were."""
        with self._lock:
            self._revocations += 1
            count = len(self._access)
            self._access.clear()
            return count

    def refresh_token_state(self, token: str) -> Literal["active", "used", "revoked", "unknown"]:
        """Tell what the provider would do with ``token`` as a refresh token, without using it.

        Returns:
            ``"active"`` (it would be accepted), ``"used"`` (rotated away: presenting it
            would revoke the grant), ``"revoked"`` (its grant was revoked) or ``"unknown"``.
        """
        with self._lock:
            family_id = self._refresh.get(token)
            if family_id is None:
                return "unknown"
            family = self._families[family_id]
            if family.revoked:
                return "revoked"
            return "active" if family.refresh_token == token else "used"

    def _issue(
        self, family_id: int | None, client_id: str, *, with_refresh: bool
    ) -> dict[str, Any]:
        """Mint tokens (lock held). ``family_id`` is ``None`` for client-credentials tokens."""
        now = self._clock()
        if len(self._access) > 1000:
            self._access = {k: v for k, v in self._access.items() if v.expires > now}
        access_token = "at_" + secrets.token_urlsafe(24)
        self._access[access_token] = _Access(
            family_id if family_id is not None else 0, client_id, now + self.ttl
        )
        ttl: float | int = int(self.ttl) if self.ttl.is_integer() else self.ttl
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl,
        }
        if with_refresh and family_id is not None:
            refresh_token = "rt_" + secrets.token_urlsafe(24)
            self._refresh[refresh_token] = family_id
            self._families[family_id].refresh_token = refresh_token
            body["refresh_token"] = refresh_token
        return body

    def _rotate(self, client_id: str, refresh_token: str) -> dict[str, Any]:
        """Use ``refresh_token`` once (RFC 6749 section 6, with rotation and reuse detection)."""
        with self._lock:
            family_id = self._refresh.get(refresh_token)
            family = self._families.get(family_id) if family_id is not None else None
            if family is None or family_id is None or family.client_id != client_id:
                self._invalid_grant += 1
                raise _Reject(400, "invalid_grant", "unknown refresh token")
            if family.revoked:
                self._invalid_grant += 1
                raise _Reject(400, "invalid_grant", "the grant was revoked")
            if family.refresh_token != refresh_token:
                # Reuse of a rotated-away token: someone has a copy. Kill the whole grant.
                family.revoked = True
                family.refresh_token = None
                self._access = {k: v for k, v in self._access.items() if v.family != family_id}
                self._invalid_grant += 1
                raise _Reject(400, "invalid_grant", "refresh token reused; grant revoked")
            return self._issue(family_id, client_id, with_refresh=True)

    def _access_valid(self, token: str) -> bool:
        with self._lock:
            access = self._access.get(token)
            if access is None or self._clock() >= access.expires:
                return False
            family = self._families.get(access.family)
            return family is None or not family.revoked

    # -- HTTP --------------------------------------------------------------------------

    def build_app(self) -> Starlette:
        """Return the provider as a Starlette (ASGI) app, to serve with any server."""
        require_server()
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(
            routes=[
                Route("/", self._index, methods=["GET"]),
                Route("/token", self._token, methods=["POST"]),
                Route("/api/items", self._items, methods=["GET"]),
                Route("/api/echo", self._echo, methods=["POST"]),
                Route("/admin/revoke", self._admin_revoke, methods=["POST"]),
                Route("/dev/connect", self._dev_connect, methods=["POST"]),
                Route("/introspect", self._introspect, methods=["POST"]),
            ]
        )

    @staticmethod
    def _json(
        content: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse(content, status_code=status, headers=dict(headers or {}))

    def _oauth_error(self, reject: _Reject) -> Response:
        body = {"error": reject.error}
        if reject.description:
            body["error_description"] = reject.description
        headers = dict(_NO_STORE)
        if reject.status == 401:
            headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
        return self._json(body, reject.status, headers)

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        """Parse an ``application/x-www-form-urlencoded`` body; a repeated parameter is an error."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise _Reject(400, "invalid_request", "expected a form-urlencoded body")
        try:
            pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise _Reject(400, "invalid_request", "the body is not UTF-8") from None
        form: dict[str, str] = {}
        for key, value in pairs:
            if key in form:
                raise _Reject(400, "invalid_request", f"parameter {key!r} repeated")
            form[key] = value
        return form

    def _authenticate(self, request: Request, form: Mapping[str, str]) -> str:
        """Authenticate the client (RFC 6749 section 2.3.1); return its id."""
        header = request.headers.get("authorization")
        if header is not None and header[:6].lower() == "basic ":
            if "client_secret" in form:
                raise _Reject(400, "invalid_request", "more than one client authentication method")
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise _Reject(401, "invalid_client", "malformed Basic credentials") from None
            raw_id, colon, raw_secret = decoded.partition(":")
            if not colon:
                raise _Reject(401, "invalid_client", "malformed Basic credentials")
            client_id, client_secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        elif "client_id" in form:
            client_id, client_secret = form["client_id"], form.get("client_secret", "")
        else:
            raise _Reject(401, "invalid_client", "client authentication required")
        good_id = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        good_secret = hmac.compare_digest(client_secret.encode(), self._client_secret.encode())
        if not (good_id and good_secret):
            raise _Reject(401, "invalid_client", "unknown client or wrong secret")
        return client_id

    async def _index(self, request: Request) -> Response:
        return self._json(
            {
                "provider": REALM,
                "token_endpoint": "/token",
                "api": ["/api/items", "/api/echo"],
                "ttl": self.ttl,
            }
        )

    async def _token(self, request: Request) -> Response:
        grant_type = "other"
        try:
            form = await self._form(request)
            grant_type = form.get("grant_type", "other")
        except _Reject:
            form = None
        with self._lock:
            self._token_calls[grant_type if grant_type in GRANTS else "other"] += 1
        if self.token_latency:
            await anyio.sleep(self.token_latency)
        try:
            if form is None:
                form = await self._form(request)  # raises the same _Reject again
            client_id = self._authenticate(request, form)
            if grant_type == "refresh_token":
                if self.reject_refreshes:
                    with self._lock:
                        self._invalid_grant += 1
                    raise _Reject(400, "invalid_grant", "this provider rejects every refresh")
                refresh_token = form.get("refresh_token")
                if not refresh_token:
                    raise _Reject(400, "invalid_request", "refresh_token is missing")
                body = self._rotate(client_id, refresh_token)
            elif grant_type == "client_credentials":
                with self._lock:
                    body = self._issue(None, client_id, with_refresh=False)
            elif "grant_type" not in form:
                raise _Reject(400, "invalid_request", "grant_type is missing")
            else:
                raise _Reject(400, "unsupported_grant_type")
        except _Reject as reject:
            return self._oauth_error(reject)
        return self._json(body, headers=_NO_STORE)

    def _bearer(self, request: Request) -> Response | None:
        """Check the bearer token (RFC 6750); return the 401 to send, or ``None`` if it is valid."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token and self._access_valid(token):
            with self._lock:
                self._api_successes += 1
            return None
        challenge = f'Bearer realm="{REALM}"'
        if header:
            challenge += ', error="invalid_token"'
        with self._lock:
            self._api_unauthorized += 1
        return self._json({"error": "invalid_token"}, 401, {"WWW-Authenticate": challenge})

    async def _items(self, request: Request) -> Response:
        denied = self._bearer(request)
        if denied is not None:
            return denied
        return self._json({"items": [{"id": n, "name": f"item {n}"} for n in range(1, 4)]})

    async def _echo(self, request: Request) -> Response:
        body = await request.body()
        denied = self._bearer(request)
        if denied is not None:
            return denied
        return self._json({"received": len(body)})

    async def _client_only(self, request: Request) -> tuple[dict[str, str], Response | None]:
        try:
            form = await self._form(request)
            self._authenticate(request, form)
        except _Reject as reject:
            return {}, self._oauth_error(reject)
        return form, None

    async def _admin_revoke(self, request: Request) -> Response:
        _, denied = await self._client_only(request)
        if denied is not None:
            return denied
        return self._json({"revoked": self.revoke_access_tokens()})

    async def _dev_connect(self, request: Request) -> Response:
        _, denied = await self._client_only(request)
        if denied is not None:
            return denied
        return self._json(self.connect(), headers=_NO_STORE)

    async def _introspect(self, request: Request) -> Response:
        form, denied = await self._client_only(request)
        if denied is not None:
            return denied
        token = form.get("token", "")
        if not token:
            return self._oauth_error(_Reject(400, "invalid_request", "token is missing"))
        if form.get("token_type_hint") != "access_token" and token in self._refresh:
            active = self.refresh_token_state(token) == "active"
            kind = "refresh_token"
        else:
            active = self._access_valid(token)
            kind = "access_token"
        if not active:
            return self._json({"active": False}, headers=_NO_STORE)
        return self._json(
            {"active": True, "client_id": self.client_id, "token_type": kind}, headers=_NO_STORE
        )

    # -- serving -----------------------------------------------------------------------

    def start(self) -> str:
        """Serve on ``host:port`` with uvicorn in a daemon thread; return the base URL.

        Returns once uvicorn reports that it has started.

        Raises:
            DemoUnavailable: the ``demo`` extra is not installed.
            OSError: the port cannot be bound.
            RuntimeError: already started, or uvicorn did not start within 10 s.
        """
        require_server()
        import uvicorn

        if self._server is not None:
            raise RuntimeError("the provider is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        config = uvicorn.Config(
            self.build_app(),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,
            backlog=4096,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name="httpx-refresh-demo-provider",
            daemon=True,
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + 10.0
        while not server.started:  # uvicorn offers a flag, not an event
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the demo provider did not start within 10 s")
            time.sleep(0.01)
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        """Ask uvicorn to shut down and wait for its thread (at most 15 s). Idempotent."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=15.0)
        if sock is not None:
            sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# -- small HTTP helpers shared by the demo -------------------------------------------------


def _client_form(client_id: str, client_secret: str) -> dict[str, str]:
    return {"client_id": client_id, "client_secret": client_secret}


def connect_grant(
    base_url: str,
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
) -> dict[str, Any]:
    """Get a new grant from a demo provider's ``POST /dev/connect`` (client auth in the body).

    Returns:
        The token response (``access_token``, ``refresh_token``, ``expires_in``, ...).

    Raises:
        httpx.HTTPError: the request failed or was refused.
    """
    response = httpx.post(
        f"{base_url}/dev/connect", data=_client_form(client_id, client_secret), timeout=10.0
    )
    response.raise_for_status()
    return dict(response.json())


def token_active(
    base_url: str,
    token: str,
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
) -> bool:
    """Ask a demo provider (RFC 7662 introspection) whether it still accepts ``token``.

    Raises:
        httpx.HTTPError: the request failed or was refused.
    """
    response = httpx.post(
        f"{base_url}/introspect",
        data={"token": token, **_client_form(client_id, client_secret)},
        timeout=10.0,
    )
    response.raise_for_status()
    return response.json().get("active") is True


# -- the workload ---------------------------------------------------------------------------


def default_leeway() -> float:
    """Return ``RefreshAuth``'s default ``leeway`` in seconds (read from its signature)."""
    default = inspect.signature(RefreshAuth).parameters["leeway"].default
    return float(default)


def refresh_interval(ttl: float, leeway: float) -> float:
    """Seconds between proactive refreshes of a token that lives ``ttl`` seconds (DESIGN R2).

    A refresh happens ``leeway`` seconds before expiry, the leeway clamped to half the
    lifetime, so the interval is ``ttl - min(leeway, ttl / 2)``.
    """
    return ttl - min(leeway, ttl / 2)


def allowed_token_calls(span: float, interval: float, revocations: int) -> int:
    """The most token-endpoint calls a correct client makes in ``span`` seconds.

    One per started refresh period of ``interval`` seconds, plus one per revocation of the
    access tokens. ``span`` counts from the moment the grant was obtained.
    """
    return math.ceil(span / interval) + revocations


@dataclass(frozen=True, slots=True)
class Schedule:
    """When each request may start, and when the access tokens get revoked.

    Requests go out in bursts (up to the concurrency at once) so that many of them need a
    refresh at the same moment. Offsets are seconds from the start of the run.

    Attributes:
        offsets: the earliest start of request ``i``.
        revoke_at: when to revoke every access token: halfway between the two middle bursts,
            so that the next burst meets the revocation all at once.
        bursts: how many bursts.
    """

    offsets: tuple[float, ...]
    revoke_at: float
    bursts: int


def plan_schedule(requests: int, concurrency: int, ttl: float) -> Schedule:
    """Spread ``requests`` over about 3.6 ``ttl`` in bursts of at most ``concurrency``.

    The last burst starts at ``RUN_SPAN_TTLS * ttl`` whatever the machine speed, so the run
    spans at least three token lifetimes; revocation is planned near the middle.
    """
    bursts = max(math.ceil(requests / concurrency), min(requests, MIN_BURSTS))
    gap = RUN_SPAN_TTLS * ttl / (bursts - 1) if bursts > 1 else 0.0
    offsets = tuple((i * bursts // requests) * gap for i in range(requests))
    middle = (bursts - 1) // 2
    revoke_at = (middle + 0.5) * gap if bursts > 1 else RUN_SPAN_TTLS * ttl / 2
    return Schedule(offsets, revoke_at, bursts)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Parameters of one demo run (the ``httpx-refresh demo`` options).

    Attributes:
        requests: how many requests to send.
        concurrency: tasks (async) or threads (sync) sending them; also the pool size.
        ttl: access-token lifetime in seconds.
        sync: a thread pool sharing one ``httpx.Client`` instead of ``httpx.AsyncClient``.
        backend: the anyio backend of the async run (``"asyncio"`` or ``"trio"``).
        token_latency: seconds the token endpoint waits before answering.
        reject_refreshes: the provider answers every refresh with ``invalid_grant``.
        progress: show a progress line on stderr.
    """

    requests: int = 2000
    concurrency: int = 200
    ttl: float = DEFAULT_TTL
    sync: bool = False
    backend: str = "asyncio"
    token_latency: float = DEFAULT_TOKEN_LATENCY
    reject_refreshes: bool = False
    progress: bool = True


@dataclass(frozen=True, slots=True)
class DemoReport:
    """The figures of one demo run; :func:`verdict` judges them, :func:`format_report` prints them.

    Times are in seconds. ``unauthorized``, ``token_calls``, ``invalid_grant`` and
    ``revocations`` are the provider's counters during the run.
    """

    mode: str
    requests: int
    concurrency: int
    ttl: float
    leeway: float
    successes: int
    failures: int
    failure_reasons: Mapping[str, int]
    unauthorized: int
    token_calls: int
    invalid_grant: int
    revocations: int
    refreshes: int
    replays: int
    deduplicated: int
    span: float  # from the grant to the end of the run
    wall: float  # the run itself
    p50: float
    p99: float
    final_refresh_token: Literal["accepted", "rejected", "missing"]

    @property
    def interval(self) -> float:
        """The effective refresh interval (``refresh_interval(ttl, leeway)``)."""
        return refresh_interval(self.ttl, self.leeway)

    @property
    def refresh_periods(self) -> int:
        """Refresh periods started during the span."""
        return math.ceil(self.span / self.interval)

    @property
    def allowed_token_calls(self) -> int:
        """One token call per refresh period plus one per revocation."""
        return allowed_token_calls(self.span, self.interval, self.revocations)

    @property
    def expiries(self) -> int:
        """Whole token lifetimes (ttl) the run spanned."""
        return math.floor(self.span / self.ttl)


def verdict(report: DemoReport) -> list[str]:
    """Return why the run failed (one sentence per reason), or an empty list if it passed."""
    reasons = []
    if report.failures:
        top = ", ".join(f"{reason} x{n}" for reason, n in _top(report.failure_reasons))
        reasons.append(f"{report.failures} of {report.requests} requests failed ({top})")
    if report.token_calls > report.allowed_token_calls:
        reasons.append(
            f"{report.token_calls} token-endpoint calls, more than the {report.allowed_token_calls}"
            f" allowed ({report.refresh_periods} refresh periods of {report.interval:g} s"
            f" + {report.revocations} revocation(s)): refreshes were not deduplicated"
        )
    if report.invalid_grant and not report.failures:
        reasons.append(
            f"the token endpoint answered invalid_grant {report.invalid_grant} time(s): "
            "a refresh token was used twice"
        )
    if report.final_refresh_token != "accepted":
        reasons.append(
            f"the final credentials' refresh token is {report.final_refresh_token} "
            "by the provider: the rotated refresh token was lost"
            if report.final_refresh_token == "rejected"
            else "the final credentials have no refresh token"
        )
    return reasons


def _top(reasons: Mapping[str, int], n: int = 3) -> list[tuple[str, int]]:
    return sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:n]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def format_report(report: DemoReport) -> str:
    """Render a :class:`DemoReport` as the demo's table (no secret is ever shown)."""
    rows: list[tuple[str, str, str]] = [
        ("requests", str(report.requests), f"concurrency {report.concurrency}"),
        ("successes", str(report.successes), ""),
        ("failures", str(report.failures), ""),
        ("401s seen (server)", str(report.unauthorized), f"replays {report.replays} (auth.stats)"),
        (
            "token-endpoint calls",
            str(report.token_calls),
            f"allowed {report.allowed_token_calls}: {report.refresh_periods} refresh periods"
            f" of {report.interval:g} s + {report.revocations} revocation(s)",
        ),
        (
            "token expiries spanned",
            str(report.expiries),
            f"ttl {report.ttl:g} s, leeway {report.leeway:g} s, "
            f"{report.span:.2f} s since the grant",
        ),
        ("revocations", str(report.revocations), "all access tokens, mid-run"),
        (
            "deduplicated waiters",
            str(report.deduplicated),
            f"auth.stats; refreshes {report.refreshes}",
        ),
        ("wall time", f"{report.wall:.2f} s", ""),
        ("latency p50 / p99", f"{_ms(report.p50)} / {_ms(report.p99)}", ""),
        ("final refresh token", report.final_refresh_token, "by the provider (introspection)"),
    ]
    lines = [
        f"httpx-refresh demo: {report.mode}, {report.requests} requests, "
        f"concurrency {report.concurrency}, ttl {report.ttl:g} s"
    ]
    for label, value, note in rows:
        lines.append(f"  {label:<24}{value:>20}  {note}".rstrip())
    if report.failure_reasons:
        for reason, n in _top(report.failure_reasons, 5):
            lines.append(f"  failed: {reason} x{n}")
    return "\n".join(lines) + "\n"


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when it is empty)."""
    if not ordered:
        return 0.0
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _describe(exc: BaseException) -> str:
    """A failure's kind, never its message (which could hold a URL or a token)."""
    return type(exc).__name__


def _payload(i: int) -> bytes:
    return b"x" * (256 + i % 100)


def _check(response: httpx.Response, expected: int | None) -> str | None:
    """Return why ``response`` is a failure, or ``None`` if it is a success."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    if expected is not None and response.json().get("received") != expected:
        return "echo body length mismatch"
    return None


@dataclass
class _Run:
    """Shared state of one run: the request counter, results and progress output."""

    options: DemoOptions
    schedule: Schedule
    provider: DemoProvider
    base: ProviderCounters
    err: TextIO
    label: str
    start: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_index: int = 0
    done: int = 0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    shown: int = 0  # length of the last progress line

    def take(self) -> int | None:
        with self.lock:
            if self.next_index >= self.options.requests:
                return None
            index, self.next_index = self.next_index, self.next_index + 1
            return index

    def delay(self, index: int) -> float:
        return self.start + self.schedule.offsets[index] - time.perf_counter()

    def record(self, latency: float, problem: str | None) -> None:
        with self.lock:
            self.done += 1
            self.latencies.append(latency)
            if problem is None:
                self.ok += 1
            else:
                self.failures[problem] += 1

    def note_failure(self, problem: str) -> None:
        with self.lock:
            self.failures[problem] += 1

    def show_progress(self) -> None:
        if not self.options.progress:
            return
        counters = self.provider.counters().since(self.base)
        with self.lock:
            done, failed = self.done, sum(self.failures.values())
        line = (
            f"{self.label}: {done}/{self.options.requests} requests, {failed} failed, "
            f"{counters.api_unauthorized} 401s, {counters.token_calls_total} token calls, "
            f"{time.perf_counter() - self.start:.1f} s"
        )
        self.err.write("\r" + line.ljust(self.shown))
        self.err.flush()
        self.shown = len(line)

    def end_progress(self) -> None:
        if self.options.progress and self.shown:
            self.show_progress()
            self.err.write("\n")
            self.err.flush()


async def _drive_async(run: _Run, url: str, auth: RefreshAuth) -> None:
    concurrency = run.options.concurrency
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    finished = anyio.Event()
    async with (
        httpx.AsyncClient(
            base_url=url, auth=auth, limits=limits, timeout=REQUEST_TIMEOUT
        ) as client,
        httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) as admin,
    ):

        async def revoke() -> None:
            await anyio.sleep(max(0.0, run.start + run.schedule.revoke_at - time.perf_counter()))
            try:
                response = await admin.post("/admin/revoke", data=_demo_client_form(run))
                response.raise_for_status()
            except httpx.HTTPError as exc:
                run.note_failure(f"revocation: {_describe(exc)}")

        async def ticker() -> None:
            while not finished.is_set():
                run.show_progress()
                with anyio.move_on_after(PROGRESS_PERIOD):
                    await finished.wait()

        async def worker() -> None:
            while (index := run.take()) is not None:
                delay = run.delay(index)
                if delay > 0:
                    await anyio.sleep(delay)
                started = time.perf_counter()
                try:
                    if index % ECHO_EVERY == ECHO_EVERY - 1:
                        payload = _payload(index)
                        response = await client.post("/api/echo", content=payload)
                        problem = _check(response, len(payload))
                    else:
                        problem = _check(await client.get("/api/items"), None)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                    problem = _describe(exc)
                run.record(time.perf_counter() - started, problem)

        async with anyio.create_task_group() as outer:
            outer.start_soon(ticker)
            async with anyio.create_task_group() as workers:
                workers.start_soon(revoke)
                for _ in range(concurrency):
                    workers.start_soon(worker)
            finished.set()


def _drive_sync(run: _Run, url: str, auth: RefreshAuth) -> None:
    concurrency = run.options.concurrency
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    finished = threading.Event()
    with (
        httpx.Client(base_url=url, auth=auth, limits=limits, timeout=REQUEST_TIMEOUT) as client,
        httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as admin,
    ):

        def revoke() -> None:
            if finished.wait(max(0.0, run.start + run.schedule.revoke_at - time.perf_counter())):
                return
            try:
                response = admin.post("/admin/revoke", data=_demo_client_form(run))
                response.raise_for_status()
            except httpx.HTTPError as exc:
                run.note_failure(f"revocation: {_describe(exc)}")

        def ticker() -> None:
            while not finished.wait(PROGRESS_PERIOD):
                run.show_progress()

        def worker() -> None:
            while (index := run.take()) is not None:
                delay = run.delay(index)
                if delay > 0:
                    time.sleep(delay)  # pacing: this request's planned start
                started = time.perf_counter()
                try:
                    if index % ECHO_EVERY == ECHO_EVERY - 1:
                        payload = _payload(index)
                        response = client.post("/api/echo", content=payload)
                        problem = _check(response, len(payload))
                    else:
                        problem = _check(client.get("/api/items"), None)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                    problem = _describe(exc)
                run.record(time.perf_counter() - started, problem)

        helpers = [
            threading.Thread(target=revoke, name="demo-revoke", daemon=True),
            threading.Thread(target=ticker, name="demo-progress", daemon=True),
        ]
        for thread in helpers:
            thread.start()
        try:
            with ThreadPoolExecutor(concurrency, thread_name_prefix="demo-worker") as pool:
                for future in [pool.submit(worker) for _ in range(concurrency)]:
                    future.result()
        finally:
            finished.set()
            for thread in helpers:
                thread.join(timeout=REQUEST_TIMEOUT)


def _demo_client_form(run: _Run) -> dict[str, str]:
    return _client_form(run.provider.client_id, run.provider._client_secret)


def run_demo(
    options: DemoOptions | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the demo: start a provider, drive requests through ``RefreshAuth``, judge the result.

    Prints a progress line on ``err`` while it runs, then the table (:func:`format_report`)
    and the verdict on ``out``.

    Args:
        options: the run's parameters (default: :class:`DemoOptions` defaults).
        out: where the table goes (default ``sys.stdout``).
        err: where progress goes (default ``sys.stderr``).

    Returns:
        0 when every request succeeded, the token endpoint saw no more calls than allowed
        and the final refresh token is still accepted; 1 otherwise.

    Raises:
        DemoUnavailable: the ``demo`` extra is not installed.
    """
    options = options or DemoOptions()
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    require_server()
    leeway = default_leeway()
    schedule = plan_schedule(options.requests, options.concurrency, options.ttl)
    label = "sync (threads)" if options.sync else f"async ({options.backend})"
    provider = DemoProvider(
        ttl=options.ttl,
        token_latency=options.token_latency,
        reject_refreshes=options.reject_refreshes,
    )
    with provider as url:
        client_id, client_secret = provider.client_id, provider._client_secret
        grant = connect_grant(url, client_id=client_id, client_secret=client_secret)
        granted = time.perf_counter()
        base = provider.counters()
        auth = RefreshAuth(
            grant,
            OAuth2Refresh(f"{url}/token", client_id=client_id, client_secret=client_secret),
        )
        run = _Run(options, schedule, provider, base, err, label)
        run.start = time.perf_counter()
        try:
            if options.sync:
                _drive_sync(run, url, auth)
            else:
                anyio.run(_drive_async, run, url, auth, backend=options.backend)
        finally:
            run.end_progress()
        ended = time.perf_counter()
        counters = provider.counters().since(base)
        refresh_token = auth.credentials.get("refresh_token")
        final: Literal["accepted", "rejected", "missing"] = "missing"
        if isinstance(refresh_token, str) and refresh_token:
            accepted = token_active(
                url, refresh_token, client_id=client_id, client_secret=client_secret
            )
            final = "accepted" if accepted else "rejected"
    stats = auth.stats
    latencies = sorted(run.latencies)
    report = DemoReport(
        mode=label,
        requests=options.requests,
        concurrency=options.concurrency,
        ttl=options.ttl,
        leeway=leeway,
        successes=run.ok,
        failures=sum(run.failures.values()),
        failure_reasons=MappingProxyType(dict(run.failures)),
        unauthorized=counters.api_unauthorized,
        token_calls=counters.token_calls_total,
        invalid_grant=counters.invalid_grant,
        revocations=counters.revocations,
        refreshes=stats.refreshes,
        replays=stats.replays,
        deduplicated=stats.deduplicated,
        span=ended - granted,
        wall=ended - run.start,
        p50=_percentile(latencies, 0.50),
        p99=_percentile(latencies, 0.99),
        final_refresh_token=final,
    )
    out.write(format_report(report))
    reasons = verdict(report)
    if reasons:
        out.write("FAILED:\n" + "".join(f"  - {reason}\n" for reason in reasons))
        out.flush()
        return 1
    out.write(
        f"OK: {report.requests} requests, {report.token_calls} token-endpoint calls "
        f"(at most {report.allowed_token_calls} allowed), no failures, "
        "the latest refresh token is the one the provider accepts\n"
    )
    out.flush()
    return 0


class _Stop(Exception):
    """SIGTERM while serving."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def serve_forever(
    *,
    port: int = DEFAULT_PORT,
    ttl: float = DEFAULT_TTL,
    token_latency: float = DEFAULT_TOKEN_LATENCY,
    out: TextIO | None = None,
) -> int:
    """Run only the provider on 127.0.0.1:``port`` until Ctrl-C (or SIGTERM); for the examples.

    Prints the base URL, the client id and secret (demo values) and how to run the examples.

    Returns:
        0 after a clean stop; 1 if the port cannot be bound.

    Raises:
        DemoUnavailable: the ``demo`` extra is not installed.
    """
    out = out if out is not None else sys.stdout
    require_server()
    provider = DemoProvider(ttl=ttl, token_latency=token_latency, port=port)
    try:
        url = provider.start()
    except OSError as exc:
        out.write(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; try --port\n")
        return 1
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()
    try:
        if in_main:
            previous = signal.signal(signal.SIGTERM, _raise_stop)
        out.write(
            f"httpx-refresh demo provider at {url} (ttl {ttl:g} s, token latency "
            f"{token_latency * 1000:g} ms)\n"
            f"  token endpoint  {url}/token\n"
            f"  client id       {provider.client_id}\n"
            f"  client secret   {provider._client_secret}\n"
            f"  API             {url}/api/items, {url}/api/echo\n"
            f"  new grant       POST {url}/dev/connect (client credentials in the body)\n"
            f"try:  python examples/sync_threads.py --url {url}\n"
            f"      python examples/async_script.py --url {url}\n"
            "Ctrl-C to stop\n"
        )
        out.flush()
        with contextlib.suppress(KeyboardInterrupt, _Stop):
            threading.Event().wait()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        provider.stop()
    counters = provider.counters()
    out.write(
        f"stopped: {counters.token_calls_total} token-endpoint calls, "
        f"{counters.api_successes} API successes, {counters.api_unauthorized} 401s\n"
    )
    out.flush()
    return 0
