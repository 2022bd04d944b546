"""The demo's embedded OAuth 2.0 provider and protected API (Starlette on uvicorn, 127.0.0.1)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import itertools
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote_plus

import anyio
import httpx

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response


__all__ = [
    "ServedApp",
    "serve_asgi",
    "CONNECTIONS_PER_CLIENT",
    "DEFAULT_API_KEY",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PORT",
    "DEFAULT_TOKEN_LATENCY",
    "DEFAULT_TTL",
    "DemoProvider",
    "DemoUnavailable",
    "ProviderCounters",
    "RUN_SPAN_TTLS",
    "connect_grant",
    "require_server",
    "token_active",
]

DEFAULT_CLIENT_ID = "demo-client"
#: Contains ``+``, ``:`` and ``%`` on purpose: HTTP Basic only carries it intact when the client
#: form-urlencodes it first (RFC 6749 section 2.3.1).
DEFAULT_CLIENT_SECRET = "demo+secret:42%"
DEFAULT_PORT = 8765
#: What ``POST /session`` accepts in ``X-API-Key`` (the session-token connector example).
DEFAULT_API_KEY = "demo-api-key"
#: Access-token lifetime in seconds; the default demo runs for about 3.6 of them.
DEFAULT_TTL = 2.0
#: Seconds the token endpoint waits before answering, so that concurrent requests pile up.
DEFAULT_TOKEN_LATENCY = 0.1
REALM = "httpx-refresh demo"
INSTALL_HINT = "pip install 'httpx-refresh[demo]'"

#: The requests are spread over this many ttl; revocation around the middle.
RUN_SPAN_TTLS = 3.6
ECHO_EVERY = 5  # every 5th request is a POST /api/echo with a body
PROGRESS_PERIOD = 0.25  # seconds between progress-line updates
REQUEST_TIMEOUT = 30.0
#: httpcore 1.0's connection pool does work proportional to connections x queued requests on
#: every request (encode/httpcore#1035), so at a concurrency of 200 one async pool spends most
#: of the CPU on bookkeeping; the async demo therefore spreads the connections over several
#: clients sharing the one RefreshAuth (which also shows single-flight across clients).
CONNECTIONS_PER_CLIENT = 25
GRANTS = ("refresh_token", "client_credentials", "session")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class DemoUnavailable(ImportError):
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
    - ``POST /session``: exchanges the API key (``X-API-Key`` header) for a short-lived session
      token (``{"session_token", "expires_in"}``); a wrong key answers 401. The API accepts a
      session token in ``X-Session-Token`` (instead of ``Authorization``); an unknown or
      expired one answers 403 ``{"error": {"code": "SESSION_EXPIRED"}}``, the way some APIs
      report an expired session without a 401.
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
        api_key: the API key that ``POST /session`` accepts.
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
        api_key: str = DEFAULT_API_KEY,
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
        self._api_key = api_key
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
        self._served: ServedApp | None = None
        self.url = ""

    def __repr__(self) -> str:
        return (
            f"<DemoProvider url={self.url or None!r} ttl={self.ttl:g} "
            f"client_id={self.client_id!r} client_secret='***'>"
        )

    @property
    def api_key(self) -> str:
        """The API key ``POST /session`` accepts (a demo value; kept out of ``repr()``)."""
        return self._api_key

    @property
    def client_secret(self) -> str:
        """The registered client's secret (a demo value; kept out of ``repr()``)."""
        return self._client_secret

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
                Route("/session", self._session, methods=["POST"]),
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
        """Parse an ``application/x-www-form-urlencoded`` body (empty: no parameters).

        A repeated parameter is an error (RFC 6749 section 3.2).
        """
        body = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body and content_type != "application/x-www-form-urlencoded":
            raise _Reject(400, "invalid_request", "expected a form-urlencoded body")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
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
        form: dict[str, str] = {}
        malformed: _Reject | None = None
        try:
            form = await self._form(request)
        except _Reject as reject:
            malformed = reject
        grant_type = form.get("grant_type", "other")
        with self._lock:  # counted on arrival
            self._token_calls[grant_type if grant_type in GRANTS else "other"] += 1
        if self.token_latency:
            await anyio.sleep(self.token_latency)
        try:
            if malformed is not None:
                raise malformed
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

    async def _session(self, request: Request) -> Response:
        with self._lock:
            self._token_calls["session"] += 1
        if self.token_latency:
            await anyio.sleep(self.token_latency)
        key = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(key.encode(), self._api_key.encode()):
            return self._json({"error": {"code": "INVALID_API_KEY"}}, 401)
        with self._lock:
            issued = self._issue(None, "api-key", with_refresh=False)
        return self._json(
            {"session_token": issued["access_token"], "expires_in": issued["expires_in"]},
            headers=_NO_STORE,
        )

    def _bearer(self, request: Request) -> Response | None:
        """Check the bearer token (RFC 6750), or an ``X-Session-Token``; return the error
        response to send, or ``None`` if the token is valid."""
        session = request.headers.get("x-session-token")
        if session is not None:
            valid = self._access_valid(session)
            with self._lock:
                if valid:
                    self._api_successes += 1
                else:
                    self._api_unauthorized += 1
            if valid:
                return None
            return self._json({"error": {"code": "SESSION_EXPIRED"}}, 403)
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
        if self._served is not None:
            raise RuntimeError("the provider is already running")
        self._served = ServedApp(self.build_app(), host=self.host, port=self.port)
        self.url = self._served.url
        return self.url

    def stop(self) -> None:
        """Ask uvicorn to shut down and wait for its thread (at most 15 s). Idempotent."""
        served, self._served = self._served, None
        if served is not None:
            served.stop()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# -- serving an ASGI app on loopback ---------------------------------------------------------


class ServedApp:
    """An ASGI app served by uvicorn on ``host:port`` in a daemon thread (real sockets).

    Shared by the demo provider, the test suite and the benchmarks. Starts at
    construction and returns once uvicorn reports that it has started.

    Args:
        app: the ASGI application.
        host: the address to bind (default 127.0.0.1).
        port: the port; 0 picks a free one.

    Attributes:
        url: ``http://host:port`` as bound.

    Raises:
        DemoUnavailable: the ``demo`` extra (uvicorn, starlette) is not installed.
        OSError: the port cannot be bound.
        RuntimeError: uvicorn did not start within 10 s.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        require_server()
        import uvicorn

        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on accepted sockets whose
        # proto says TCP, and without it every response stalls 40 ms on a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,
            backlog=4096,
        )
        self._server: uvicorn.Server | None = uvicorn.Server(config)
        self._socket: socket.socket | None = sock
        self._thread: threading.Thread | None = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="httpx-refresh-asgi-server",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:  # uvicorn offers a flag, not an event
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start within 10 s")
            time.sleep(0.01)
        bound_host, bound_port = sock.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"

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


@contextlib.contextmanager
def serve_asgi(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` for the duration of a ``with`` block; yield its base URL.

    See :class:`ServedApp` for arguments and errors.
    """
    served = ServedApp(app, host=host, port=port)
    try:
        yield served.url
    finally:
        served.stop()


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
