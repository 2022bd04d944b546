"""Pickling, deep copies and ``os.fork()`` of the library's objects (DESIGN R16).

An object that holds locks, a flight or connections pickles as what it takes to build
it again (a ``FileStore`` as its path, a ``RefreshAuth`` as its options and current
credentials), and is rebuilt fresh on the other side. When a part of it cannot be
pickled (a lambda refresher, a transport with open connections), the error says
which part, instead of pickle's ``cannot pickle '_thread.RLock' object`` from deep
inside; it never shows a value (only type and function names, scrubbed of secrets).

Objects whose in-process state goes stale in a forked child (locks a parent thread
may hold, a flight run by a parent thread) register in a weak set here and are
reset by one ``os.register_at_fork(after_in_child=...)`` handler.

Here: the part checks and messages, the fork handler, how a redis-py client is described
and built again (``RedisStore``), and what a ``RefreshAuth``'s pickle holds
(:class:`AuthCopier`; the auth itself says which parts and settings).
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import weakref
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from ._credentials import Snapshot, scrub

__all__ = [
    "AuthCopier",
    "after_fork",
    "check_picklable",
    "client_recipe",
    "copy_part",
    "describe",
    "part_error",
    "rebuild_auth",
    "rebuild_client",
    "view",
]


logger = logging.getLogger("httpx_refresh")


class _ForkAware(Protocol):
    def _after_fork(self) -> None: ...


# Live objects whose state must be renewed in a forked child (weak: no lifetime change).
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for item in list(_LIVE):
        try:
            item._after_fork()
        except Exception:  # one object's failure must not skip the others
            logger.exception("renewing %s after fork failed", type(item).__name__)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def after_fork(item: _ForkAware) -> None:
    """Have ``item._after_fork()`` called in the child after every ``os.fork()``."""
    _LIVE.add(item)


def describe(value: Any) -> str:
    """A name for ``value`` that shows no data: a function's qualified name, else its type."""
    name = getattr(value, "__qualname__", None)
    if isinstance(name, str) and callable(value) and not isinstance(value, type):
        return name
    return type(value).__name__


def part_error(
    owner: str, part: str, value: Any, exc: BaseException, verb: str, secrets: Iterable[str]
) -> TypeError:
    """``TypeError("<owner>'s <part> <name> cannot be <verb>: <reason>")``, no secret in it."""
    reason = scrub(f"{type(exc).__name__}: {exc}", list(secrets))
    if len(reason) > 300:
        reason = reason[:297] + "..."
    return TypeError(f"{owner}'s {part} {describe(value)} cannot be {verb}: {reason}")


def check_picklable(owner: str, parts: Iterable[tuple[str, Any]], secrets: Iterable[str]) -> None:
    """Raise a clear ``TypeError`` for the first of ``parts`` that does not pickle.

    Raises:
        TypeError: naming ``owner`` and the part (no value, no secret).
    """
    secrets = list(secrets)
    for part, value in parts:
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - PicklingError, TypeError, AttributeError...
            raise part_error(owner, part, value, exc, "pickled", secrets) from None


def copy_part(
    owner: str, part: str, value: Any, memo: dict[int, Any], secrets: Iterable[str]
) -> Any:
    """``copy.deepcopy(value, memo)``, or a clear ``TypeError`` naming ``owner`` and ``part``."""
    try:
        return copy.deepcopy(value, memo)
    except Exception as exc:  # noqa: BLE001 - whatever the part's own copy raised
        raise part_error(owner, part, value, exc, "deep-copied", secrets) from None


# -- redis-py clients (RedisStore) ----------------------------------------------------------

# redis-py connection settings a client is rebuilt from (plus any ssl_* option its
# constructor takes); the rest (retry policy, health checks' internals) take redis-py's
# defaults.
_REDIS_SETTINGS = frozenset(
    {
        "host",
        "port",
        "db",
        "username",
        "password",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "health_check_interval",
        "client_name",
        "protocol",
    }
)
_PLAIN = (str, int, float, bool, type(None))


def client_recipe(client: Any) -> tuple[str, dict[str, Any]]:
    """``(connection kind, settings)`` to build a redis-py client like ``client`` again.

    Raises:
        TypeError: the client's connection cannot be described by plain settings (a
            credential provider, a custom connection class or connect function).
    """
    pool = getattr(client, "connection_pool", None)
    given = getattr(pool, "connection_kwargs", None)
    kind = getattr(getattr(pool, "connection_class", None), "__name__", None)
    if not isinstance(given, Mapping) or kind not in (
        "Connection",
        "SSLConnection",
        "UnixDomainSocketConnection",
    ):
        raise TypeError(
            f"a {describe(client)} whose connections are not redis-py's own; build the "
            "RedisStore from a URL"
        )
    for name in ("credential_provider", "redis_connect_func"):
        if given.get(name) is not None:
            raise TypeError(
                f"the client has a {name}, which is not rebuilt elsewhere; build the "
                "RedisStore from a URL"
            )
    settings: dict[str, Any] = {}
    for name, value in given.items():
        wanted = name in _REDIS_SETTINGS or name == "path" or name.startswith("ssl_")
        if wanted and isinstance(value, _PLAIN):
            settings["unix_socket_path" if name == "path" else name] = value
    max_connections = getattr(pool, "max_connections", None)
    if isinstance(max_connections, int) and max_connections < 2**31:
        settings["max_connections"] = max_connections
    return kind, settings


def rebuild_client(recipe: str | tuple[str, dict[str, Any]], asynchronous: bool) -> Any:
    """A redis-py client (``redis.asyncio`` if ``asynchronous``) from a URL or a recipe."""
    import inspect

    import redis as redis_py
    import redis.asyncio

    cls: Any = redis.asyncio.Redis if asynchronous else redis_py.Redis
    if isinstance(recipe, str):
        return cls.from_url(recipe)
    kind, settings = recipe
    accepted = inspect.signature(cls.__init__).parameters
    options = {name: value for name, value in settings.items() if name in accepted}
    if kind == "SSLConnection":
        options["ssl"] = True
    return cls(**options)


# -- RefreshAuth ---------------------------------------------------------------------------


class AuthCopier:
    """What a pickle or a deep copy of one RefreshAuth holds.

    One per auth object, shared by its ``sharing()`` views, so that views pickled or
    copied together are views of one new auth on the other side too.
    """

    __slots__ = ("auth",)

    def __init__(self, auth: Any) -> None:
        self.auth = auth

    def _secrets(self) -> list[str]:
        found: list[str] = self.auth._secrets(self.auth._control.snapshot)
        return found

    def __reduce__(self) -> tuple[Any, ...]:
        auth = self.auth
        parts = auth._parts()
        check_picklable("RefreshAuth", parts, self._secrets())
        return (rebuild_auth, (type(auth), dict(parts), auth._settings()))

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        auth = self.auth
        secrets = self._secrets()
        parts = {
            name: copy_part("RefreshAuth", name, value, memo, secrets)
            for name, value in auth._parts()
        }
        rebuilt = rebuild_auth(type(auth), parts, auth._settings())
        memo[id(self)] = rebuilt
        return rebuilt


def rebuild_auth(cls: type[Any], parts: dict[str, Any], settings: dict[str, Any]) -> Any:
    """A new RefreshAuth from a pickle or deep copy: fresh locks, no flight, zero stats; the
    credentials, version and expiry as they were (a store is not read here: the next
    refresh reloads it)."""
    parts = dict(parts)
    settings = dict(settings)
    credentials = parts.pop("credentials")
    store = parts.pop("store")
    version, expires_at, lifetime, refreshed_at, stored = settings.pop("snapshot")
    auth = cls(
        credentials,
        parts.pop("refresher"),
        apply=parts.pop("apply"),
        **parts,
        **settings,
    )
    auth._store = store
    auth._control.snapshot = Snapshot(
        MappingProxyType(dict(credentials)), version, expires_at, lifetime, refreshed_at, stored
    )
    return auth


def view(cls: type[Any], auth: Any) -> Any:
    """``auth`` as an object of ``cls`` (a ``sharing()`` view when it is of the other flavour)."""
    return auth if type(auth) is cls else cls.sharing(auth)
