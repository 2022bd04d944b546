"""Starlette apps and helpers for the field-case integration tests (``tests/test_cases.py``).

:class:`OAuthServer` is one ASGI app with a token endpoint at ``/token`` (RFC 6749
section 6, the refresh_token grant) and a protected API at every other path. It
counts what it sees (token-endpoint calls, the refresh tokens presented, every API
request with its bearer token, body size and tenant header) under a
``threading.Lock``: uvicorn serves it from its own thread while the tests read the
counters from theirs. Tokens are random strings; tests refer to them only by
*generation* (0 for the initial credentials, +1 per successful refresh), so no
token value ever shows up in an assertion message.

Per-path *hooks* let a test hold a request at the server until something else has
happened (a :class:`Gate` or a ``threading.Event``), without sleeping.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["FakeClock", "Gate", "Hit", "OAuthServer", "get_every", "wait_event"]

#: Seconds a server-side wait may take before the request is answered 504 instead.
SERVER_WAIT = 10.0


class FakeClock:
    """An injectable clock (epoch seconds) that moves only when told to; thread-safe."""

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._now = time.time() if start is None else start

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; return the new time."""
        with self._lock:
            self._now += seconds
            return self._now


async def wait_event(event: threading.Event, seconds: float = SERVER_WAIT) -> bool:
    """Wait for a ``threading.Event`` from async code (any backend) without blocking the loop."""
    return await anyio.to_thread.run_sync(event.wait, seconds)


def get_every(
    flavour: str,
    clients: tuple[Callable[[], Any], Callable[[], Any]],
    path: str,
    *,
    count: int,
    clock: FakeClock,
    step: float = 1.0,
) -> list[int]:
    """Send ``count`` GETs of ``path`` one after another, moving ``clock`` on by ``step``
    seconds after each; return their statuses.

    ``flavour`` is ``"sync"`` (the first factory of ``clients`` makes an ``httpx.Client``)
    or an anyio backend, ``"asyncio"`` or ``"trio"`` (the second makes an
    ``httpx.AsyncClient``, run under ``anyio.run``); every GET is bounded by the client's
    own timeout and the whole run by 120 s.
    """
    statuses: list[int] = []
    if flavour == "sync":
        with clients[0]() as client:
            for _ in range(count):
                statuses.append(client.get(path).status_code)
                clock.advance(step)
        return statuses

    async def main() -> None:
        with anyio.fail_after(120):
            async with clients[1]() as client:
                for _ in range(count):
                    statuses.append((await client.get(path)).status_code)
                    clock.advance(step)

    anyio.run(main, backend=flavour)
    return statuses


class Gate:
    """Holds arrivals until ``n`` have arrived, then lets all of them (and later ones) through."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._lock = threading.Lock()
        self._count = 0
        self.opened = threading.Event()

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    async def arrive(self, seconds: float = SERVER_WAIT) -> bool:
        """Count one arrival and wait until the gate is open; ``False`` on timeout."""
        with self._lock:
            self._count += 1
            if self._count >= self._n:
                self.opened.set()
        return await wait_event(self.opened, seconds)


@dataclass(frozen=True)
class Hit:
    """One request the API received.

    Attributes:
        path: URL path.
        query: raw query string (the tests use it to tell requests apart).
        gen: generation of the bearer token it carried (``None``: none or unknown).
        status: the status the server answered with.
        size: request body bytes received.
        tenant: the ``X-Tenant`` header, if any.
        file_size: bytes of the uploaded file part (multipart requests only).
        file_sha256: SHA-256 of the uploaded file part (multipart requests only).
    """

    path: str
    query: str
    gen: int | None
    status: int
    size: int
    tenant: str | None
    file_size: int | None
    file_sha256: str | None


#: A hook gets the hit as it would be answered; it may wait, and may return a status to use.
Hook = Callable[[Hit], Awaitable[int | None]]


def _multipart_file(body: bytes, content_type: str) -> bytes | None:
    """Return the content of the first part with a ``filename`` in a multipart body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        return None
    delimiter = b"--" + match.group(1).encode("latin-1")
    for part in body.split(delimiter)[1:]:
        head, sep, rest = part.partition(b"\r\n\r\n")
        if sep and b"filename=" in head:
            return rest[:-2] if rest.endswith(b"\r\n") else rest
    return None


class OAuthServer:
    """Token endpoint (``POST /token``) and protected API (any other path) in one app.

    Args:
        latency: seconds the token endpoint takes before answering.
        rotate: every refresh returns a new refresh token and invalidates the one used.
        single_use: presenting an already-used refresh token answers 400 ``invalid_grant``
            and revokes every token (the reuse detection of OAuth 2.0 Security BCP 4.14).
        revoke_old: a refresh revokes every earlier access token.
        expires_in: the ``expires_in`` value the token endpoint returns as-is; ``None``
            omits the field.
        token_type: the ``token_type`` the token endpoint returns; ``None`` omits it
            (the initial credentials always say ``"Bearer"``).
        token_extra: more fields for the token response of a generation.
        token_error: ``(status, json_body)`` the token endpoint always answers with.
        clock: epoch seconds, used with ``api_lifetime``.
        api_lifetime: seconds after issue (by ``clock``) after which the API rejects an
            access token; ``None``: access tokens do not expire at the API.
        bom: the token endpoint's JSON bodies (answers and errors) start with a UTF-8
            byte order mark, as some Microsoft / .NET endpoints send them.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        rotate: bool = False,
        single_use: bool = False,
        revoke_old: bool = True,
        expires_in: Any = 3600,
        token_type: str | None = "Bearer",
        token_extra: Callable[[int], Mapping[str, Any]] | None = None,
        token_error: tuple[int, Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
        api_lifetime: float | None = None,
        bom: bool = False,
    ) -> None:
        self.latency = latency
        self.rotate = rotate
        self.single_use = single_use
        self.revoke_old = revoke_old
        self.expires_in = expires_in
        self.token_type = token_type
        self.token_extra = token_extra
        self.token_error = token_error
        self.clock = clock
        self.api_lifetime = api_lifetime
        self.bom = bom
        self.hooks: dict[str, Hook] = {}
        #: Set when a request reaches the token endpoint.
        self.token_arrived = threading.Event()
        #: If set to an event, the token endpoint waits for it before answering.
        self.token_hold: threading.Event | None = None
        self._lock = threading.Lock()
        self._gen = -1
        self._access: dict[str, int] = {}
        self._issued_at: dict[str, float] = {}
        self._valid_access: set[str] = set()
        self._refresh: dict[str, int] = {}
        self._valid_refresh: set[str] = set()
        self._used_refresh: set[str] = set()
        self._token_calls = 0
        self._presented: list[int | None] = []
        self._hits: list[Hit] = []
        self.app = Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/{path:path}", self._api, methods=["GET", "POST", "PUT"]),
            ]
        )

    # -- issuing (lock held by the caller) -------------------------------------------

    def _issue(self) -> dict[str, Any]:
        self._gen += 1
        gen = self._gen
        access = f"at-{gen}-{secrets.token_hex(12)}"
        self._access[access] = gen
        self._issued_at[access] = self.clock()
        if self.revoke_old:
            self._valid_access.clear()
        self._valid_access.add(access)
        payload: dict[str, Any] = {"access_token": access}
        if self.token_type is not None:
            payload["token_type"] = self.token_type
        if gen == 0 or self.rotate:
            refresh = f"rt-{gen}-{secrets.token_hex(12)}"
            self._refresh[refresh] = gen
            self._valid_refresh.clear()
            self._valid_refresh.add(refresh)
            payload["refresh_token"] = refresh
        if self.expires_in is not None:
            payload["expires_in"] = self.expires_in
        if self.token_extra is not None:
            payload.update(self.token_extra(gen))
        return payload

    def initial_credentials(self, *, revoked: bool = False, **extra: Any) -> dict[str, Any]:
        """Issue generation 0 (access and refresh token) and return it as credentials.

        ``expires_in`` is left out (add ``expires_at``/``expires_in`` through ``extra``);
        ``extra`` overrides or adds any field. With ``revoked=True`` the API already
        rejects the access token (it was revoked server-side).
        """
        with self._lock:
            if self._gen != -1:
                raise RuntimeError("initial credentials were issued already")
            payload = self._issue()
            if revoked:
                self._valid_access.clear()
        payload.pop("expires_in", None)
        payload["token_type"] = "Bearer"
        payload.update(extra)
        return payload

    # -- what the server saw (thread-safe) ---------------------------------------------

    @property
    def token_calls(self) -> int:
        """How many requests reached the token endpoint."""
        with self._lock:
            return self._token_calls

    @property
    def presented(self) -> list[int | None]:
        """Generations of the refresh tokens presented to the token endpoint, in order."""
        with self._lock:
            return list(self._presented)

    @property
    def hits(self) -> list[Hit]:
        """Every API request, in the order the server answered them."""
        with self._lock:
            return list(self._hits)

    def describe(self, credentials: Mapping[str, Any]) -> dict[str, Any]:
        """What the client's credentials hold, in words safe for assertion messages.

        Returns the generation of the access and refresh token, whether the refresh
        token is the one the server accepts now, and the sorted keys; no token value.
        Assert on this (computed outside the ``assert``) rather than on the credentials,
        whose values pytest would print on failure.
        """
        access = credentials.get("access_token")
        refresh = credentials.get("refresh_token")
        with self._lock:
            return {
                "access_gen": self._access.get(access) if isinstance(access, str) else None,
                "refresh_gen": self._refresh.get(refresh) if isinstance(refresh, str) else None,
                "refresh_current": refresh in self._valid_refresh,
                "keys": sorted(credentials),
            }

    def revoke_access(self) -> None:
        """Make every access token issued so far invalid at the API."""
        with self._lock:
            self._valid_access.clear()

    def issued_secrets(self) -> list[str]:
        """Every token value issued (for checking that none leaks into logs)."""
        with self._lock:
            return [*self._access, *self._refresh]

    # -- endpoints -------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8")))
        presented = form.get("refresh_token")
        with self._lock:
            self._token_calls += 1
            self._presented.append(self._refresh.get(presented) if presented else None)
        self.token_arrived.set()
        if self.token_hold is not None and not await wait_event(self.token_hold):
            return self._token_json({"error": "temporarily_unavailable"}, status_code=504)
        if self.latency:
            await anyio.sleep(self.latency)
        if self.token_error is not None:
            status, body = self.token_error
            return self._token_json(dict(body), status_code=status)
        with self._lock:
            if form.get("grant_type") != "refresh_token":
                return self._token_json({"error": "unsupported_grant_type"}, status_code=400)
            if presented is None or presented not in self._valid_refresh:
                if self.single_use and presented in self._used_refresh:
                    self._valid_refresh.clear()
                    self._valid_access.clear()
                return self._token_json({"error": "invalid_grant"}, status_code=400)
            if self.rotate:
                self._used_refresh.add(presented)
            payload = self._issue()
        return self._token_json(payload)

    def _token_json(self, body: Mapping[str, Any], status_code: int = 200) -> Response:
        if not self.bom:
            return JSONResponse(dict(body), status_code=status_code)
        content = b"\xef\xbb\xbf" + json.dumps(dict(body)).encode("utf-8")
        return Response(content, status_code=status_code, media_type="application/json")

    def _check(self, token: str | None) -> tuple[int | None, bool]:
        with self._lock:
            if token is None:
                return None, False
            gen = self._access.get(token)
            valid = token in self._valid_access
            if valid and self.api_lifetime is not None:
                valid = self.clock() < self._issued_at[token] + self.api_lifetime
            return gen, valid

    async def _api(self, request: Request) -> JSONResponse:
        body = await request.body()
        authorization = request.headers.get("authorization", "")
        token = authorization[7:] if authorization.startswith("Bearer ") else None
        gen, valid = self._check(token)
        file_size = file_sha256 = None
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            content = _multipart_file(body, content_type)
            if content is not None:
                file_size = len(content)
                file_sha256 = hashlib.sha256(content).hexdigest()
        hit = Hit(
            path=request.url.path,
            query=request.url.query,
            gen=gen,
            status=200 if valid else 401,
            size=len(body),
            tenant=request.headers.get("x-tenant"),
            file_size=file_size,
            file_sha256=file_sha256,
        )
        hook = self.hooks.get(hit.path)
        if hook is not None:
            override = await hook(hit)
            if override is not None:
                hit = replace(hit, status=override)
        with self._lock:
            self._hits.append(hit)
        return JSONResponse(
            {
                "gen": gen,
                "size": hit.size,
                "file_size": file_size,
                "file_sha256": file_sha256,
            },
            status_code=hit.status,
            headers={"WWW-Authenticate": "Bearer"} if hit.status == 401 else None,
        )


#: Limits for one sync ``httpx.Client`` shared by many threads (as the demo and
#: examples/sync_threads.py set them): as many keep-alive connections as connections, so
#: httpcore's pool never closes a "surplus" idle connection it has already handed to a
#: waiting thread (encode/httpcore#1110, httpcore 1.0.9: the socket is closed under the
#: request, which fails with ``httpx.ReadError`` EBADF or hangs until its read timeout).
#: A fault of the pool, not of what these tests check.
SHARED_CLIENT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)
