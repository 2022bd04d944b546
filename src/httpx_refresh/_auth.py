"""``RefreshAuth``: the httpx adapter over the sans-IO core and the flight control."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import threading
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Generator,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx

from . import _core, _lib
from ._apply import Applier, bearer
from ._credentials import Snapshot, make_snapshot, scrub, secret_values
from ._exceptions import HttpxRefreshError, ReauthorizationRequired, RefreshError, StoreError
from ._flight import Flight, FlightControl, RefreshStats, fresh_copy, translate
from ._invoke import call_async, call_sync, is_async_callable
from ._portable import AuthCopier, rebuild_auth, view
from ._retry import RetryPolicy, retry_async, retry_sync
from ._stores import CredentialStore, Stored, is_store

__all__ = ["RefreshAuth"]

logger = logging.getLogger("httpx_refresh")

Refresher = Callable[..., Any]
Hook = Callable[[dict[str, Any]], Any]


_MARK = "httpx_refresh.applied"
# A written value is searched for inside other headers and query values only from this
# length on; shorter ones (a version "2", a region "eu") are not secrets and are everywhere.
_ECHO_MIN = 8
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "content-type"})


class _Applied:
    """Where a request was authenticated and what the applier wrote (``request.extensions``)."""

    __slots__ = ("headers", "params", "url", "values")

    def __init__(
        self,
        url: httpx.URL,
        headers: frozenset[str],
        params: frozenset[str],
        values: tuple[str, ...],
    ) -> None:
        self.url = url
        self.headers = headers
        self.params = params
        self.values = values

    def __repr__(self) -> str:  # names only, never the values
        return f"<httpx-refresh credentials applied: {sorted(self.headers | self.params)}>"


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a flight task's outcome as seen (its caller may be gone)."""
    if not task.cancelled():
        task.exception()


def _always() -> bool:
    return True


def _never() -> bool:
    return False


def _seekable(file: Any) -> bool:
    if not hasattr(file, "seek") or not hasattr(file, "tell"):
        return False
    check = getattr(file, "seekable", None)
    try:
        return bool(check()) if check is not None else True
    except Exception:  # noqa: BLE001 - a closed or odd file object is simply not seekable
        return False


def _rewind_plan(request: httpx.Request) -> _core.Rewind:
    """Tell how to make ``request``'s body sendable again (DESIGN R12).

    In-memory bodies (bytes, form, JSON, or bodies httpx has read) replay as they are;
    multipart bodies replay when every file is seekable (httpx seeks them to 0);
    a seekable file passed as ``content=`` is rewound to where it started. Anything
    else (generators, sockets) cannot be replayed.
    """
    stream = request.stream
    if _lib.is_byte_stream(stream) or "_content" in request.__dict__:
        return _always
    fields = getattr(stream, "fields", None)
    if type(stream).__name__ == "MultipartStream" and isinstance(fields, list):
        for field in fields:
            file = getattr(field, "file", None)
            if file is not None and not isinstance(file, (str, bytes)) and not _seekable(file):
                return _never
        return _always
    inner = getattr(stream, "_stream", None)
    if (
        inner is not None
        and _seekable(inner)
        and hasattr(inner, "read")
        and not is_async_callable(inner.seek)  # an async file (anyio, aiofiles): not rewound
        and not is_async_callable(inner.tell)
    ):
        try:
            position = inner.tell()
        except Exception:  # noqa: BLE001
            return _never
        if not isinstance(position, int):
            return _never

        def rewind() -> bool:
            try:
                inner.seek(position)
            except Exception:  # noqa: BLE001
                return False
            return True

        return rewind
    return _never


def _check_origins(origins: Any, library: ModuleType) -> frozenset[str]:
    if isinstance(origins, (str, bytes)) or not isinstance(origins, Collection):
        raise TypeError(
            f"origins must be a collection of origins such as ['https://api.example.com'], "
            f"or a predicate, got {type(origins).__name__}"
        )
    if not origins:
        raise ValueError("origins is empty: no request would get credentials (None: all)")
    checked = set()
    for origin in origins:
        try:
            # str(): an httpx2.URL for httpx (or the reverse) becomes this library's URL
            url = (
                library.URL(str(origin)) if isinstance(origin, str) or _lib.is_url(origin) else None
            )
        except library.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                f"origins must be http(s) URLs such as 'https://api.example.com', got {origin!r}"
            )
        checked.add(_origin(url))
    return frozenset(checked)


def _origin(url: Any) -> str:
    """``scheme://host:port`` of an httpx / httpx2 URL (default ports filled in)."""
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return f"{url.scheme}://{url.host}:{port}"


def _checked_load(loaded: Any) -> Stored | None:
    """A store's ``load()`` result, or a ``StoreError`` if it is not ``Stored | None``."""
    if loaded is None:
        return None
    credentials = getattr(loaded, "credentials", None)
    version = getattr(loaded, "version", None)
    if not isinstance(credentials, Mapping) or not isinstance(version, int):
        raise StoreError(f"the store's load() returned {type(loaded).__name__}, not Stored")
    return Stored(dict(credentials), version)


@dataclass(frozen=True, slots=True)
class _Step:
    """One I/O step of a flight's owner, performed by the sync or async driver.

    ``kind``: ``"refresh"`` (the refresher, with retries), ``"hook"`` (``on_refresh`` with
    ``credentials``), ``"settle"`` (wait at most ``refresh_timeout`` for ``ended``), and
    with a store ``"lock"``, ``"load"``, ``"save"`` (``credentials`` if the stored version
    is still ``expected``) and ``"unlock"`` (``token``).
    """

    kind: str
    credentials: dict[str, Any] | None = None
    expected: int | None = None
    token: object = None
    ended: threading.Event | None = None


_Auth = TypeVar("_Auth", bound="_RefreshAuthBase")


class _RefreshAuthBase:
    """An ``httpx.Auth`` that keeps a connection's credentials working.

    It attaches the current credentials to each request, refreshes them when they
    expire or are rejected (once for every request that is waiting: single-flight),
    merges the result, persists it through ``on_refresh``, and replays the request.
    The same object serves ``httpx.Client`` and ``httpx.AsyncClient`` (asyncio and
    trio) at the same time. Follows DESIGN rules R1, R2, R4-R9, R11, R12, R14, R15;
    the token exchange itself is RFC 6749 section 6 when ``refresh`` is an
    :class:`~httpx_refresh.OAuth2Refresh`.

    Args:
        credentials: the initial credentials (``access_token``, ``refresh_token``,
            ``expires_in`` seconds or ``expires_at`` epoch seconds / ms / ISO 8601, and
            any other keys the connector keeps). ``expires_in`` without ``expires_at``
            counts from now. Or a :class:`~httpx_refresh.CredentialStore` shared with
            other processes (:class:`~httpx_refresh.FileStore`,
            :class:`~httpx_refresh.RedisStore`): loaded now, never touched on the
            fresh-token path; a refresh takes its lock, reloads, adopts newer stored
            credentials or refreshes and saves them (compare-and-set), then releases it.
            ``update_credentials`` writes through to it.
        refresh: the refresher, called as ``refresh(credentials=..., connector_parameters=...,
            connection_parameters=...)``; sync or async; returns a mapping to merge.
        connector_parameters: app-level settings passed to the refresher.
        connection_parameters: what the end user entered, passed to the refresher.
        apply: writes credentials onto a request; default :func:`bearer`.
        refresh_on: statuses (default ``(401,)``) or a predicate on the response that
            trigger a refresh and one replay.
        leeway: seconds; refresh before sending when ``now >= expires_at - leeway``.
            Clamped to half the token's lifetime when ``expires_in`` gave it.
        on_refresh: called with the merged credentials (a ``dict``) after every
            refresh, before the waiting requests go on; sync or async. Its error
            reaches the callers of that refresh; the new credentials stay in memory.
        min_refresh_interval: seconds during which a credentials version whose replay
            was rejected again is not refreshed again (DESIGN R11).
        refresh_timeout: seconds one call of the refresher may take, from sync and async
            clients alike; past it, that refresh fails with a transient
            :class:`RefreshError` for every request waiting on it. The call itself is
            not cut short (the token endpoint may already have rotated the refresh
            token): it runs on to its own end (a built-in refresher's ``timeout``) in a
            task or thread left behind, and credentials it still returns are merged,
            saved and passed to ``on_refresh`` (a rotated refresh token is never lost). Waiters
            give up once every attempt and wait could have run, plus 10 s.
        buffer_body: read every request body into memory first, so that streaming
            bodies can be replayed (otherwise they raise ``RequestNotReplayable``).
        token_key: the credentials key without which there is no usable token, so a
            refresh runs before the first request; ``None`` turns that off.
        origins: if given, only requests to these origins (``"https://api.example.com"``)
            get credentials; others pass through untouched. May also be a predicate on the
            request URL (``Callable[[httpx.URL], bool]``), asked for every request, e.g. when
            the origin depends on the current credentials.
        advisory: seconds before expiry (e.g. 300) from which one request refreshes while
            all others keep using the still-valid token without waiting (DESIGN R3); a
            failed advisory refresh is logged and the token stays in use. ``None``: off.
        retry: how one refresh retries transient failures (DESIGN R10); default
            :class:`RetryPolicy` (3 attempts, 10 s, exponential backoff with jitter,
            ``Retry-After`` honoured). ``RetryPolicy(attempts=1)`` turns retries off.
        clock: returns the time in epoch seconds (for tests); default ``time.time``.

    Raises:
        StoreError: the store could not be loaded.
        TypeError: ``credentials`` is not a mapping or a store, ``refresh`` is not callable,
            ``refresh_on`` is neither a collection of statuses nor a predicate, or
            ``origins`` is a string.
        ValueError: ``leeway``, ``min_refresh_interval`` or ``refresh_timeout`` is negative,
            NaN or infinite; ``refresh_on`` is empty or holds something not a status code;
            ``origins`` is empty or holds something that is not an http(s) origin.

    A replay that is rejected again goes back to the caller (never a loop), is counted in
    ``stats.rejected_replays`` and logged at WARNING with its likely reason (one line per
    credentials version and reason; the rest at DEBUG). One exception: when the replayed
    token had expired by the time the response came (client clock, with the leeway; e.g. it
    waited in the connection pool) or had been replaced meanwhile, the request gets exactly
    one more replay with newer credentials (``stats.second_replays``), still at most one
    refresh per version.

    Requests made through it raise :class:`RefreshError` (or its subclass
    :class:`ReauthorizationRequired`) when a needed refresh fails, and
    :class:`RequestNotReplayable` when a streaming body cannot be replayed, and
    :class:`StoreError` when a store cannot be locked, read or written during a refresh.

    It pickles and deep-copies (DESIGN R16): the copy keeps the credentials, their expiry
    and the version, and starts with fresh locks, no flight, no failure state and zero
    ``stats``; a store is not read until its next refresh (``copy.copy`` is the same with
    the same refresher, store and hooks). A pickle holds the credentials:
    treat it as a secret. A part that cannot be pickled (a lambda refresher) raises
    ``TypeError`` naming it. After ``os.fork()`` the child does not wait for a refresh that
    was running in the parent: it refreshes (or adopts the store's credentials) itself.
    """

    # The HTTP library of this flavour (httpx or httpx2): its Auth base class is mixed in
    # by the subclass, and refreshes run with it (see _lib.using).
    _lib: ModuleType
    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        credentials: Mapping[str, Any] | CredentialStore,
        refresh: Refresher,
        *,
        connector_parameters: Mapping[str, Any] | None = None,
        connection_parameters: Mapping[str, Any] | None = None,
        apply: Applier | None = None,
        refresh_on: Collection[int] | Callable[[httpx.Response], bool] = (401,),
        leeway: float = 30.0,
        on_refresh: Hook | None = None,
        min_refresh_interval: float = 5.0,
        refresh_timeout: float = 30.0,
        buffer_body: bool = False,
        token_key: str | None = "access_token",
        origins: Collection[str] | Callable[[httpx.URL], bool] | None = None,
        retry: RetryPolicy | None = None,
        advisory: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store: CredentialStore | None = None
        stored_version: int | None = None
        if is_store(credentials):
            self._store = credentials  # type: ignore[assignment]
            loaded = _checked_load(self._store.load())  # type: ignore[union-attr]
            credentials = {} if loaded is None else loaded.credentials
            stored_version = None if loaded is None else loaded.version
        elif not isinstance(credentials, Mapping):
            raise TypeError(
                f"credentials must be a mapping or a CredentialStore, got "
                f"{type(credentials).__name__}"
            )
        if not callable(refresh):
            raise TypeError(f"refresh must be callable, got {type(refresh).__name__}")
        for name, value in (
            ("leeway", leeway),
            ("min_refresh_interval", min_refresh_interval),
            ("refresh_timeout", refresh_timeout),
        ):
            if not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if not callable(refresh_on):
            if isinstance(refresh_on, (str, bytes)) or not isinstance(refresh_on, Collection):
                raise TypeError(
                    f"refresh_on must be a collection of status codes or a predicate, "
                    f"got {type(refresh_on).__name__}"
                )
            if not refresh_on or not all(
                isinstance(code, int) and 100 <= code <= 599 for code in refresh_on
            ):
                raise ValueError(
                    f"refresh_on must hold HTTP status codes (100-599), got {list(refresh_on)!r}"
                )
        self._refresher = refresh
        self._connector_parameters = dict(connector_parameters or {})
        self._connection_parameters = dict(connection_parameters or {})
        self._applier = apply if apply is not None else bearer()
        # An applier may report what it wrote: apply_reporting(request, credentials) ->
        # (header names lowercased, query names, values); the redirect guard then needs no
        # before/after comparison (a connector's applier does this).
        self._reporting: (
            Callable[[httpx.Request, Mapping[str, Any]], tuple[Any, Any, Any]] | None
        ) = getattr(self._applier, "apply_reporting", None)
        # An applier may need slow work for a new credentials version that async code must
        # not do on the event loop (a connector's javascript makeApiClient runs Node.js):
        # ``aprepare(credentials)`` is awaited before it applies those credentials from
        # an async flow. Cheap when the work is done.
        self._aprepare: Callable[[Mapping[str, Any]], Awaitable[None]] | None = getattr(
            self._applier, "aprepare", None
        )
        self._on_refresh = on_refresh
        self._refresh_timeout = float(refresh_timeout)
        self._retry = retry if retry is not None else RetryPolicy()
        # The longest a flight may take (every attempt and wait) before waiters give up.
        self._flight_limit = (
            self._refresh_timeout * self._retry.attempts
            + self._retry.wait_max * (self._retry.attempts - 1)
            + 10.0
        )
        self._clock = clock
        self._token_key = token_key
        self._scope_check: Callable[[httpx.URL], bool] | None = None
        self._origins: frozenset[str] | None = None
        if callable(origins):
            self._scope_check = origins
            self._origins = frozenset()  # not None: every request asks _in_scope
        elif origins is not None:
            self._origins = _check_origins(origins, self._lib)
        if buffer_body:
            self.requires_request_body = True
        # A predicate may look at the body (e.g. {"error": "access_token_expired"}).
        self._read_responses = callable(refresh_on)
        if advisory is not None and (
            not isinstance(advisory, (int, float)) or not 0 <= advisory < float("inf")
        ):
            raise ValueError(f"advisory must be a finite number of seconds >= 0, got {advisory!r}")
        self._advisory = advisory is not None
        self._refresh_on = refresh_on if callable(refresh_on) else tuple(refresh_on)
        self._control = FlightControl(
            make_snapshot(credentials, 0, now=clock(), stored=stored_version),
            clock,
            stuck_after=self._flight_limit,
            cooldown=self._retry.cooldown,
        )
        control = self._control
        self._decisions = _core.Decisions(
            current=lambda: control.snapshot,
            apply=self._applier,
            refresh_on=refresh_on,
            leeway=float(leeway),
            min_refresh_interval=float(min_refresh_interval),
            token_key=token_key,
            clock=clock,
            rewind_plan=_rewind_plan,
            in_scope=self._in_scope,
            fail_fast=lambda: None if control.dead is None else fresh_copy(control.dead),
            advisory=None if advisory is None else float(advisory),
            rejected_replay=functools.partial(
                control.note_rejected_replay, min_refresh_interval=float(min_refresh_interval)
            ),
        )

    def _apply_marked(self, request: httpx.Request, credentials: Mapping[str, Any]) -> None:
        """Apply one snapshot and record, on the request, where and what the applier wrote.

        httpx copies ``extensions`` onto the requests it builds for redirects, so the
        redirect guard can strip exactly those headers, query parameters and values
        from a hop to another origin (R13). Used only once a guard has been taken, so
        that the fast path pays nothing otherwise.
        """
        reporting = self._reporting
        earlier = request.extensions.get(_MARK)
        if reporting is not None:  # the applier says what it wrote (a connector's does)
            written = reporting(request, credentials)
            if earlier is None:
                request.extensions[_MARK] = _Applied(request.url, *written)
                return
            names, keys, values = set(written[0]), set(written[1]), set(written[2])
        else:
            names, keys, values = self._apply_diffed(request, credentials)
        if isinstance(earlier, _Applied):  # a replay: an unchanged value is still ours
            names |= earlier.headers
            keys |= earlier.params
            values.update(earlier.values)
        request.extensions[_MARK] = _Applied(
            request.url, frozenset(names), frozenset(keys), tuple(values)
        )

    def _apply_diffed(
        self, request: httpx.Request, credentials: Mapping[str, Any]
    ) -> tuple[set[str], set[str], set[str]]:
        """Apply, and find what the applier wrote by comparing before and after."""
        # httpx keeps headers as a list of (raw name, lowercase name, value) tuples and
        # makes a new tuple for every header set, even to the same value: comparing the
        # tuples' identities finds exactly what the applier wrote.
        entries: Any = getattr(request.headers, "_list", None)
        by_identity = isinstance(entries, list)
        before: list[Any] = list(entries) if by_identity else list(request.headers.raw)
        seen = {id(entry) for entry in before} if by_identity else set(before)
        url_before = request.url
        query_before = url_before.query
        self._applier(request, credentials)
        after = request.headers._list if by_identity else request.headers.raw
        headers = {  # httpx encoded what the applier wrote as ASCII: latin-1 decodes it
            (entry[0].decode("latin-1").lower(), entry[-1].decode("latin-1"))
            for entry in after
            if (id(entry) if by_identity else entry) not in seen
        }
        params: set[tuple[str, str]] = set()
        if request.url.query != query_before:  # only then is the query parsed
            params_before = set(self._lib.QueryParams(query_before.decode("ascii")).multi_items())
            params = {
                (name, value)
                for name, value in request.url.params.multi_items()
                if (name, value) not in params_before
            }
        elif request.url is not url_before:
            # The applier set the URL again without changing the query: it wrote a value
            # the caller had already put there. Which one is unknown; every value long
            # enough to be a secret counts as written.
            params = {
                (name, value)
                for name, value in request.url.params.multi_items()
                if len(value) >= _ECHO_MIN
            }
        return (
            {name for name, _ in headers},
            {name for name, _ in params},
            {value for _, value in headers | params if value},
        )

    # -- public surface ------------------------------------------------------------

    @property
    def redirect_guard(self) -> Callable[[httpx.Request], None]:
        """A request event hook for ``httpx.Client`` that strips credentials from
        cross-origin redirects (DESIGN R13).

        httpx runs an ``Auth`` once per request and builds redirect hops itself,
        removing only ``Authorization`` when the origin changes; custom headers and
        query parameters would follow. Install the hook so that no header or query
        value carrying a credential reaches another origin::

            httpx.Client(auth=auth, event_hooks={"request": [auth.redirect_guard]})

        Taking the hook turns on marking each request with where its credentials were
        applied (a fraction of a microsecond per request). For ``httpx.AsyncClient``
        use :attr:`aredirect_guard`.

        Returns:
            ``hook(request) -> None``.
        """
        self._decisions.apply = self._apply_marked
        return self._guard

    @property
    def aredirect_guard(self) -> Callable[[httpx.Request], Awaitable[None]]:
        """The async request event hook for ``httpx.AsyncClient``; see :attr:`redirect_guard`."""
        self._decisions.apply = self._apply_marked
        return self._aguard

    def _guard(self, request: httpx.Request) -> None:
        mark = request.extensions.get(_MARK)
        if not isinstance(mark, _Applied):
            return
        url, here = mark.url, request.url
        if (here.scheme, here.host, here.port) == (url.scheme, url.host, url.port):
            return
        # Strip what the applier wrote (by name), and any other header or query value
        # that carries one of the written values (e.g. a token echoed into a Location).
        # Only values long enough to be secrets are searched for ("2" is in many a
        # header), and the headers httpx sets for the message itself are left alone.
        written = [value for value in mark.values if len(value) >= _ECHO_MIN]
        for name, value in list(request.headers.items()):
            lowered = name.lower()
            if lowered in mark.headers or (
                lowered not in _FRAMING and any(w in value for w in written)
            ):
                del request.headers[name]
        for name, value in list(request.url.params.multi_items()):
            if name in mark.params or any(w in value for w in written):
                request.url = request.url.copy_remove_param(name)
        del request.extensions[_MARK]

    async def _aguard(self, request: httpx.Request) -> None:
        self._guard(request)

    @property
    def credentials(self) -> Mapping[str, Any]:
        """A read-only snapshot of the current credentials."""
        return self._control.snapshot.credentials

    @property
    def version(self) -> int:
        """The credentials version: 0 at start, +1 on every refresh or update."""
        return self._control.snapshot.version

    @property
    def expires_at(self) -> float | None:
        """Epoch seconds when the current access token expires, or ``None`` if unknown."""
        return self._control.snapshot.expires_at

    @property
    def stats(self) -> RefreshStats:
        """Counters: refreshes, replays, deduplicated waiters, failures, rejected and
        second replays (DESIGN R4, R15)."""
        return self._control.stats()

    def update_credentials(self, credentials: Mapping[str, Any]) -> None:
        """Replace the credentials, e.g. after the user reconnected.

        Bumps the version, clears the "reauthorization required" state and the
        no-storm record (R11). A refresh still running will not overwrite them.

        Args:
            credentials: the complete new credentials.

        Raises:
            TypeError: ``credentials`` is not a mapping.
            StoreError: the store could not be written (the new credentials are in use in
                this process all the same).
        """
        if not isinstance(credentials, Mapping):
            raise TypeError(f"credentials must be a mapping, got {type(credentials).__name__}")
        snapshot = self._control.replace(credentials)
        self._decisions.forget_rejections()
        store = self._store
        if store is not None:  # the new grant replaces the stored one, whatever it was
            token = store.acquire(self._flight_limit)  # not in the middle of someone's save
            try:
                version = store.save(credentials, expected_version=None, force=True)
            finally:
                with contextlib.suppress(Exception):
                    store.release(token)
            self._control.mark_stored(snapshot, version)

    def _declare_dead(self, error: ReauthorizationRequired) -> None:
        """Make every later request fail fast with ``error`` until :meth:`update_credentials`."""
        self._control.declare_dead(error)

    @classmethod
    def sharing(cls: type[_Auth], auth: Any) -> _Auth:
        """This class's view of a RefreshAuth made for the other library.

        ``httpx_refresh.httpx2.RefreshAuth.sharing(auth)`` gives httpx2 clients the
        ``RefreshAuth`` that httpx clients use (and ``httpx_refresh.RefreshAuth.sharing``
        the other way round). Both objects share every piece of state: credentials, the
        single flight, ``stats``, the store and hooks, so clients of both libraries see
        one refresh per version.

        Args:
            auth: a RefreshAuth of either library.

        Returns:
            A RefreshAuth of this class.

        Raises:
            TypeError: ``auth`` is not a RefreshAuth.
        """
        if not isinstance(auth, _RefreshAuthBase):
            raise TypeError(f"expected a RefreshAuth, got {type(auth).__name__}")
        twin = cls.__new__(cls)
        twin.__dict__ = auth.__dict__
        return twin

    def refresh(self) -> Mapping[str, Any]:
        """Force a refresh now, from sync code (single-flight like any other).

        Returns:
            The credentials after the refresh (read-only).

        Raises:
            RefreshError: the refresh failed (``ReauthorizationRequired`` if permanently).
        """
        return self._refresh_sync(self._control.snapshot.version, "forced").credentials

    async def arefresh(self) -> Mapping[str, Any]:
        """Force a refresh now, from async code; see :meth:`refresh`."""
        snapshot = await self._refresh_async(self._control.snapshot.version, "forced")
        return snapshot.credentials

    # -- pickling and copying (DESIGN R16) ----------------------------------------------

    def _parts(self) -> list[tuple[str, Any]]:
        """What a pickle or deep copy is built again from, by the names errors give them."""
        return [
            ("refresher", self._refresher),
            ("on_refresh", self._on_refresh),
            ("apply", self._applier),
            ("store", self._store),
            ("refresh_on", self._refresh_on),
            ("origins", self._origins if self._scope_check is None else self._scope_check),
            ("clock", self._clock),
            ("retry", self._retry),
            ("connector_parameters", self._connector_parameters),
            ("connection_parameters", self._connection_parameters),
            ("credentials", dict(self._control.snapshot.credentials)),
        ]

    def _settings(self) -> dict[str, Any]:
        """The plain options and the current snapshot's version and expiry."""
        decisions = self._decisions
        snapshot = self._control.snapshot
        return {
            "leeway": decisions.leeway,
            "min_refresh_interval": decisions.min_refresh_interval,
            "refresh_timeout": self._refresh_timeout,
            "buffer_body": bool(self.requires_request_body),
            "token_key": self._token_key,
            "advisory": decisions.advisory,
            "snapshot": (
                snapshot.version,
                snapshot.expires_at,
                snapshot.lifetime,
                snapshot.refreshed_at,
                snapshot.stored,
            ),
        }

    def _portable(self) -> AuthCopier:
        portable = self.__dict__.get("_pickle_core")
        if portable is None:  # one per auth, shared by its sharing() views
            portable = self.__dict__["_pickle_core"] = AuthCopier(self)
        return portable

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the options, the refresher, the store and the current credentials.

        Raises:
            TypeError: a part cannot be pickled (named in the message, e.g. a lambda
                refresher or a transport with open connections).
        """
        return (view, (type(self), self._portable()))

    def __copy__(self) -> Any:
        # Fresh state like a deep copy, with the same refresher, store, applier and hooks.
        return rebuild_auth(type(self), dict(self._parts()), self._settings())

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        # The copier's deep copy is the new auth (see AuthCopier.__deepcopy__).
        rebuilt: Any = copy.deepcopy(self._portable(), memo)
        copied = view(type(self), rebuilt)
        memo[id(self)] = copied
        return copied

    def __repr__(self) -> str:
        snapshot = self._control.snapshot
        return (
            f"<RefreshAuth ({_lib.name_of(self._lib)}) version={snapshot.version} "
            f"keys={sorted(snapshot.credentials)!r} "
            f"expires_at={snapshot.expires_at!r} refresh={type(self._refresher).__name__}>"
        )

    # -- httpx.Auth ----------------------------------------------------------------

    # Requests and responses are httpx's or httpx2's (the same interface): typed Any so
    # that both libraries' Auth base classes accept these methods.
    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        """Drive the core for a sync client (called by httpx)."""
        if self.requires_request_body:
            request.read()
        decisions = self._decisions
        flow = None
        response: httpx.Response | None = None
        if self._origins is None or self._in_scope(request):
            # Fast path, inlined: fresh credentials, no action objects, no lock.
            snapshot, ready = _core.prepare(decisions, request)
            if ready:
                if self._advisory and decisions.advisory_due(snapshot, self._clock()):
                    fresh = self._advisory_sync(snapshot)
                    if fresh is not snapshot:
                        snapshot = fresh
                        decisions.apply(request, snapshot.credentials)
                rewind = _rewind_plan(request)
                response = yield request
                if self._read_responses:
                    response.read()
                if not decisions.is_rejected(response):
                    return
                flow = _core.after_rejection(decisions, request, snapshot, rewind, response)
        if flow is None:
            flow = _core.flow(decisions, request)
        try:
            action = next(flow)
            while True:
                if type(action) is _core.Send:
                    if action.replay:
                        self._control.note_replay()
                    response = yield action.request
                    if self._read_responses:
                        response.read()
                    action = flow.send(response)
                else:
                    assert isinstance(action, _core.Refresh)
                    if response is not None:
                        # Release the rejected response's connection before waiting.
                        response.read()
                    action = flow.send(self._refresh_sync(action.base_version, action.reason))
        except StopIteration:
            return
        finally:
            flow.close()

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        """Drive the core for an async client (called by httpx)."""
        if self.requires_request_body:
            await request.aread()
        decisions = self._decisions
        aprepare = self._aprepare
        if aprepare is not None:
            await aprepare(self._control.snapshot.credentials)
        flow = None
        response: httpx.Response | None = None
        if self._origins is None or self._in_scope(request):
            snapshot, ready = _core.prepare(decisions, request)
            if ready:
                if self._advisory and decisions.advisory_due(snapshot, self._clock()):
                    fresh = await self._advisory_async(snapshot)
                    if fresh is not snapshot:
                        snapshot = fresh
                        if aprepare is not None:
                            await aprepare(snapshot.credentials)
                        decisions.apply(request, snapshot.credentials)
                rewind = _rewind_plan(request)
                response = yield request
                if self._read_responses:
                    await response.aread()
                if not decisions.is_rejected(response):
                    return
                flow = _core.after_rejection(decisions, request, snapshot, rewind, response)
        if flow is None:
            flow = _core.flow(decisions, request)
        try:
            action = next(flow)
            while True:
                if type(action) is _core.Send:
                    if action.replay:
                        self._control.note_replay()
                    response = yield action.request
                    if self._read_responses:
                        await response.aread()
                    action = flow.send(response)
                else:
                    assert isinstance(action, _core.Refresh)
                    if response is not None:
                        # Release the rejected response's connection before waiting.
                        await response.aread()
                    snapshot = await self._refresh_async(action.base_version, action.reason)
                    if aprepare is not None:
                        await aprepare(snapshot.credentials)
                    action = flow.send(snapshot)
        except StopIteration:
            return
        finally:
            flow.close()

    # -- refreshing ----------------------------------------------------------------

    def _in_scope(self, request: httpx.Request) -> bool:
        if self._scope_check is not None:
            return self._scope_check(request.url)
        return self._origins is None or _origin(request.url) in self._origins

    def _refresher_kwargs(self, base: Snapshot) -> dict[str, Any]:
        return {
            "credentials": dict(base.credentials),
            "connector_parameters": dict(self._connector_parameters),
            "connection_parameters": dict(self._connection_parameters),
        }

    def _secrets(self, base: Snapshot) -> list[str]:
        return secret_values(
            base.credentials, self._connector_parameters, self._connection_parameters
        )

    def _check_result(self, returned: Any, base: Snapshot) -> Mapping[str, Any]:
        if not isinstance(returned, Mapping):
            raise RefreshError(
                f"refresher returned {type(returned).__name__}, expected a mapping of credentials"
            )
        key = self._token_key
        if key is not None:
            token = returned.get(key)
            if token is None:
                token = base.credentials.get(key)
            if not token:  # R10: a refresh that leaves no usable token is permanent
                raise ReauthorizationRequired(f"the refresh left no usable {key!r}")
        return returned

    def _still_valid(self, base_version: int, reason: str) -> Snapshot | None:
        """R10: the current snapshot if a proactive refresh may fall back to it (its token
        is inside the leeway but not expired), else None."""
        snapshot = self._control.snapshot
        if reason != "proactive" or snapshot.version != base_version:
            return None
        key = self._token_key
        if key is not None and not snapshot.credentials.get(key):
            return None
        expires_at = snapshot.expires_at
        return snapshot if expires_at is None or self._clock() < expires_at else None

    def _advisory_sync(self, snapshot: Snapshot) -> Snapshot:
        """R3: refresh now if nobody else is; on failure keep the still-valid token."""
        flight = self._control.begin_advisory(snapshot.version)
        if flight is None:
            return snapshot
        try:
            return self._run_flight_sync(flight, "advisory")
        except RefreshError as exc:
            return self._advisory_failed(snapshot, exc)

    async def _advisory_async(self, snapshot: Snapshot) -> Snapshot:
        """R3: refresh now if nobody else is; on failure keep the still-valid token."""
        flight = self._control.begin_advisory(snapshot.version)
        if flight is None:
            return snapshot
        try:
            return await self._own_async(flight, "advisory")
        except RefreshError as exc:
            return self._advisory_failed(snapshot, exc)

    def _advisory_failed(self, snapshot: Snapshot, error: RefreshError) -> Snapshot:
        logger.warning(
            "advisory refresh of version %d failed (%s); the current token is still valid "
            "and stays in use",
            snapshot.version,
            type(error).__name__,
        )
        current = self._control.snapshot
        return current if current.version > snapshot.version else snapshot

    def _cooled(self, base_version: int, reason: str, error: Exception) -> Snapshot:
        """R10: during a cooldown, serve a still-valid token, or fail fast with the last error."""
        snapshot = self._still_valid(base_version, reason)
        if snapshot is None:
            raise error
        return snapshot

    def _fall_back(
        self, base_version: int, reason: str, error: RefreshError | StoreError
    ) -> Snapshot:
        """A failed transient proactive refresh (or a store out of reach): keep sending
        with the still-valid token."""
        snapshot = self._still_valid(base_version, reason)
        transient = isinstance(error, StoreError) or (
            isinstance(error, RefreshError)
            and error.transient
            and not isinstance(error, ReauthorizationRequired)
        )
        if snapshot is None or not transient:
            raise error
        logger.warning(
            "proactive refresh of version %d failed (%s); the current token is still valid "
            "and stays in use",
            base_version,
            type(error).__name__,
        )
        return snapshot

    def _refresh_sync(self, base_version: int, reason: str) -> Snapshot:
        try:
            return self._refresh_sync_flight(base_version, reason)
        except (RefreshError, StoreError) as exc:
            error = exc
        return self._fall_back(base_version, reason, error)

    async def _refresh_async(self, base_version: int, reason: str) -> Snapshot:
        try:
            return await self._refresh_async_flight(base_version, reason)
        except (RefreshError, StoreError) as exc:
            error = exc
        return self._fall_back(base_version, reason, error)

    def _refresh_sync_flight(self, base_version: int, reason: str) -> Snapshot:
        got = self._control.begin(base_version)
        if isinstance(got, Exception):
            return self._cooled(base_version, reason, got)
        if isinstance(got, Snapshot):
            return got
        flight, owner = got
        if not owner:
            return self._control.wait_sync(flight, self._flight_limit)
        return self._run_flight_sync(flight, reason)

    def _run_flight_sync(self, flight: Flight, reason: str) -> Snapshot:
        with _lib.using(self._lib):  # built-in refreshers use this flavour's library
            return self._drive_flight_sync(flight, reason)

    def _drive_flight_sync(self, flight: Flight, reason: str) -> Snapshot:
        steps = self._own_flight(flight, reason)
        step = next(steps)
        while True:
            failure: BaseException | None = None
            try:
                if step.kind == "hook":
                    value = call_sync(self._on_refresh, step.credentials)
                elif step.kind == "settle":
                    assert step.ended is not None
                    value = step.ended.wait(self._refresh_timeout)
                elif step.kind != "refresh":
                    value = self._store_step_sync(step)
                else:
                    value = retry_sync(functools.partial(self._call_sync, flight), self._retry)
            except BaseException as exc:  # noqa: BLE001 - handed to the owner steps below
                failure = exc
            try:
                step = steps.send(value) if failure is None else steps.throw(failure)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def _refresh_async_flight(self, base_version: int, reason: str) -> Snapshot:
        got = self._control.begin(base_version)
        if isinstance(got, Exception):
            return self._cooled(base_version, reason, got)
        if isinstance(got, Snapshot):
            return got
        flight, owner = got
        if not owner:
            return await self._control.wait_async(flight, self._flight_limit)
        return await self._own_async(flight, reason)

    async def _own_async(self, flight: Flight, reason: str) -> Snapshot:
        # R7: the exchange runs to completion under its own timeout, and its result is
        # kept, even if the request that started it is cancelled meanwhile. On asyncio a
        # native cancellation (task.cancel(), asyncio.timeout) goes through anyio's
        # shield, so the flight runs in a task of its own behind asyncio.shield.
        loop = anyio.lowlevel.current_token().native_token
        if isinstance(loop, asyncio.AbstractEventLoop):
            task = loop.create_task(self._run_flight_async(flight, reason))
            task.add_done_callback(_retrieve)
            return await asyncio.shield(task)
        with anyio.CancelScope(shield=True):
            snapshot = await self._run_flight_async(flight, reason)
        return snapshot

    async def _run_flight_async(self, flight: Flight, reason: str) -> Snapshot:
        with _lib.using(self._lib):  # built-in refreshers use this flavour's library
            return await self._drive_flight_async(flight, reason)

    async def _drive_flight_async(self, flight: Flight, reason: str) -> Snapshot:
        steps = self._own_flight(flight, reason)
        step = next(steps)
        while True:
            failure: BaseException | None = None
            try:
                if step.kind == "hook":
                    value = await call_async(
                        self._on_refresh, step.credentials, time_limit=self._refresh_timeout
                    )
                elif step.kind == "settle":
                    assert step.ended is not None
                    value = await anyio.to_thread.run_sync(
                        step.ended.wait, self._refresh_timeout, abandon_on_cancel=True
                    )
                elif step.kind != "refresh":
                    value = await self._store_step_async(step)
                else:
                    value = await retry_async(
                        functools.partial(self._call_async, flight), self._retry
                    )
            except BaseException as exc:  # noqa: BLE001 - handed to the owner steps below
                failure = exc
            try:
                step = steps.send(value) if failure is None else steps.throw(failure)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def _watched(self, flight: Flight) -> Iterator[dict[str, Any]]:
        """The options of one refresher call under ``refresh_timeout``; a call left running
        in a thread is recorded, so the next flight waits for it (R7)."""
        ended = threading.Event()
        try:
            yield {
                "time_limit": self._refresh_timeout,
                "on_late": functools.partial(self._late_result, flight),
                "on_end": ended.set,
                **self._refresher_kwargs(flight.base),
            }
        finally:
            if not ended.is_set():
                self._control.abandoned(flight.base.version, ended)

    def _call_sync(self, flight: Flight) -> Any:
        with self._watched(flight) as options:
            return call_sync(self._refresher, **options)

    async def _call_async(self, flight: Flight) -> Any:
        with self._watched(flight) as options:
            return await call_async(self._refresher, **options)

    def _store_step_sync(self, step: _Step) -> Any:
        store = self._store
        assert store is not None
        if step.kind == "lock":
            return store.acquire(self._flight_limit)
        if step.kind == "load":
            return _checked_load(store.load())
        if step.kind == "save":
            assert step.credentials is not None
            return store.save(step.credentials, expected_version=step.expected)
        try:
            store.release(step.token)
        except Exception as exc:  # noqa: BLE001 - the refresh is done; the lock is the store's
            logger.warning("the store's lock could not be released (%s)", type(exc).__name__)
        return None

    async def _store_step_async(self, step: _Step) -> Any:
        store = self._store
        assert store is not None
        try:  # a store call that never returns must not hold the flight forever
            with anyio.fail_after(self._flight_limit):
                if step.kind == "lock":
                    return await store.aacquire(self._flight_limit)
                if step.kind == "load":
                    return _checked_load(await store.aload())
                if step.kind == "save":
                    assert step.credentials is not None
                    return await store.asave(step.credentials, expected_version=step.expected)
                try:
                    await store.arelease(step.token)
                except Exception as exc:  # noqa: BLE001 - the refresh is done
                    logger.warning(
                        "the store's lock could not be released (%s)", type(exc).__name__
                    )
                return None
        except TimeoutError:
            raise StoreError(
                f"the store did not answer ({step.kind}) within {self._flight_limit:g} s"
            ) from None

    def _own_flight(self, flight: Flight, reason: str) -> Generator[_Step, Any, Snapshot]:
        """The owner's part of a flight, without I/O.

        Without a store: run the refresher, merge, run the hook. With a store, around
        that: take the store's lock and reload; adopt newer stored credentials without
        refreshing (another process refreshed); otherwise refresh, merge, save with
        compare-and-set on the version read; release the lock (DESIGN R5, R9).

        Yields a :class:`_Step`; the sync or async driver performs it and sends back its
        result or throws its exception in. Returns the new snapshot; raises what the
        callers of the flight get (errors are raised outside ``except`` blocks, so no
        secret-bearing ``__context__`` rides along).
        """
        ended = self._control.still_running(flight.base.version)
        if ended is not None:
            # R5, R7: a refresher call of this version outlived its time limit and still
            # runs in a thread, with the refresh token this flight would present: wait for
            # it (at most refresh_timeout) and take its late result rather than refresh
            # again (with a rotating refresh token, one of the two would be lost).
            yield _Step("settle", ended=ended)
            current = self._control.snapshot
            if current.version != flight.base.version:
                self._succeed(
                    flight, current, f"{reason}, after a late refresh", time.perf_counter()
                )
                return current
            if not ended.is_set():
                raise self._fail(
                    flight,
                    RefreshError(
                        f"a refresh of version {flight.base.version} that outlived "
                        "refresh_timeout still runs; not refreshing again meanwhile",
                        transient=True,
                    ),
                    reason,
                )
        if self._store is None:
            return (yield from self._own_refresh(flight, reason, stored=False))
        error: BaseException | None = None
        token: object = None
        try:
            token = yield _Step("lock")
        except BaseException as exc:
            error = self._fail(flight, exc, reason)
            if error is exc:
                raise
        if error is not None:
            raise error
        try:
            return (yield from self._own_refresh(flight, reason, stored=True))
        finally:
            yield _Step("unlock", token=token)

    def _own_refresh(
        self, flight: Flight, reason: str, *, stored: bool
    ) -> Generator[_Step, Any, Snapshot]:
        started = time.perf_counter()
        error: BaseException | None = None
        expected = flight.base.stored
        try:
            if stored:
                loaded = yield _Step("load")
                if loaded is not None and loaded.version != flight.base.stored:
                    # Another process refreshed (or the store was updated): adopt.
                    snapshot, _ = self._control.commit(
                        flight, loaded.credentials, adopted=loaded.version
                    )
                    self._succeed(flight, snapshot, f"{reason}, adopted from the store", started)
                    return snapshot
                expected = None if loaded is None else loaded.version
            returned = yield _Step("refresh")
            snapshot, committed = self._control.commit(
                flight, self._check_result(returned, flight.base)
            )
        except BaseException as exc:
            error = self._fail(flight, exc, reason)
            if error is exc:
                raise
        if error is not None:
            raise error
        if committed and stored:
            # In memory first (R9): a failed save never loses the rotated token here. Until
            # the save succeeds these credentials count as the store version they came
            # from, so a later flight refreshes from them instead of adopting the older
            # stored ones.
            snapshot = self._control.mark_stored(snapshot, expected)
            try:
                version = yield _Step(
                    "save", credentials=dict(snapshot.credentials), expected=expected
                )
                snapshot = self._control.mark_stored(snapshot, version)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, translated
                error = self._hook_failed(flight, snapshot, exc)
            if error is not None:
                raise error
        if committed and self._on_refresh is not None:
            try:
                yield _Step("hook", credentials=dict(snapshot.credentials))
            except BaseException as exc:  # noqa: BLE001 - re-raised below, translated
                error = self._hook_failed(flight, snapshot, exc)
            if error is not None:
                raise error
        self._succeed(flight, snapshot, reason, started)
        return snapshot

    def _late_result(self, flight: Flight, returned: Any) -> None:
        """A refresher returned after its flight had failed (R7: keep rotated tokens).

        Happens when a sync refresher outlives ``refresh_timeout`` (it runs in a worker
        thread under either client), or when the thread waiting on the refresher's worker
        thread or private loop is interrupted.

        Merged if nobody changed the credentials since that flight started; the
        ``on_refresh`` hook then runs in this (worker) thread.
        """
        if not isinstance(returned, Mapping):
            return
        snapshot, committed = self._control.commit(flight, returned)
        if not committed:
            logger.warning(
                "a refresh of version %d finished after its timeout; its result was dropped "
                "because the credentials changed meanwhile",
                flight.base.version,
            )
            return
        logger.warning(
            "a refresh of version %d finished after its timeout; its result was kept as version %d",
            flight.base.version,
            snapshot.version,
        )
        if self._store is not None:
            self._save_late(snapshot)
        if self._on_refresh is not None:
            try:
                call_sync(self._on_refresh, dict(snapshot.credentials))
            except Exception as exc:  # noqa: BLE001 - no caller is left to receive it
                logger.error("on_refresh hook raised %s for a late refresh", type(exc).__name__)

    def _save_late(self, snapshot: Snapshot) -> None:
        """Save a late result to the store (lock, compare-and-set on the version it came
        from), so other processes do not present the rotated-away refresh token."""
        store = self._store
        assert store is not None
        try:
            token = store.acquire(self._flight_limit)
            try:
                version = store.save(snapshot.credentials, expected_version=snapshot.stored)
            finally:
                with contextlib.suppress(Exception):
                    store.release(token)
        except Exception as exc:  # noqa: BLE001 - no caller is left to receive it
            logger.error(
                "a late refresh result could not be saved to the store (%s); it is kept in "
                "this process",
                type(exc).__name__,
            )
            return
        self._control.mark_stored(snapshot, version)

    def _fail(self, flight: Flight, exc: BaseException, reason: str) -> BaseException:
        """Complete a failed flight; return the error its owner raises."""
        if isinstance(exc, Exception):
            error: BaseException = translate(exc, self._secrets(flight.base))
            self._control.finish(flight, None, error)
        else:  # cancellation, KeyboardInterrupt: the owner re-raises it, waiters get a RefreshError
            error = exc
            self._control.finish(
                flight,
                None,
                RefreshError(f"refresh interrupted ({type(exc).__name__})", transient=True),
                cool=False,
            )
        if isinstance(error, ReauthorizationRequired):
            logger.error(
                "refresh failed permanently (%s refresh of version %d, flight size %d): %s; "
                "the connection needs reauthorization",
                reason,
                flight.base.version,
                flight.size,
                error,
            )
        elif isinstance(error, HttpxRefreshError):
            logger.warning(
                "refresh failed (%s refresh of version %d, flight size %d): %s",
                reason,
                flight.base.version,
                flight.size,
                error,
            )
        return error

    def _hook_failed(self, flight: Flight, snapshot: Snapshot, exc: BaseException) -> BaseException:
        """R9: the hook failed; its error (scrubbed, in the one error tree) goes to every caller."""
        error: BaseException
        if isinstance(exc, HttpxRefreshError):  # e.g. a store's StoreError
            error = exc
        elif isinstance(exc, Exception):
            secrets = self._secrets(flight.base) + secret_values(snapshot.credentials)
            detail = scrub(str(exc), secrets)
            error = RefreshError(
                f"on_refresh hook raised {type(exc).__name__}" + (f": {detail}" if detail else "")
            )
            error.__cause__ = exc if detail == str(exc) else None
        else:  # cancellation, KeyboardInterrupt: the owner re-raises it as it is
            error = exc
        self._control.finish(
            flight,
            None,
            error
            if isinstance(error, Exception)
            else RefreshError(f"on_refresh hook interrupted ({type(exc).__name__})"),
            cool=False,
        )
        logger.error(
            "on_refresh hook raised %s; credentials version %d are kept in memory",
            type(exc).__name__,
            snapshot.version,
        )
        return error

    def _succeed(self, flight: Flight, snapshot: Snapshot, reason: str, started: float) -> None:
        self._control.finish(flight, snapshot, None)
        logger.info(
            "refreshed credentials (%s): version %d -> %d in %.0f ms, flight size %d",
            reason,
            flight.base.version,
            snapshot.version,
            (time.perf_counter() - started) * 1000,
            flight.size,
        )


class RefreshAuth(_RefreshAuthBase, httpx.Auth):
    __doc__ = _RefreshAuthBase.__doc__
    _lib = httpx


def auth_class(library: ModuleType) -> type[_RefreshAuthBase]:
    """The ``RefreshAuth`` class for ``library`` (httpx or httpx2)."""
    if _lib.name_of(library) == "httpx2":
        from ._httpx2 import RefreshAuth as RefreshAuth2

        return RefreshAuth2
    return RefreshAuth
