"""Credential stores: where a connection's credentials live, shared by processes and hosts.

A store holds the credentials with a *store version* (an integer that grows with every
save) and offers a cross-process lock. ``RefreshAuth(credentials=store)`` loads it once,
never touches it on the fresh-token path, and, when a refresh is needed: takes the lock,
reloads, adopts newer stored credentials without refreshing (another process refreshed
already), or refreshes, saves with compare-and-set on the version it read, and releases
(DESIGN R5 across processes, R9).

- :class:`MemoryStore`: in this process (two auth objects may share it).
- :class:`FileStore`: a JSON file, atomic writes, owner-only, ``filelock`` lock.
- :class:`RedisStore`: one Redis hash; a lock with an expiry; compare-and-set in Lua.

Stores pickle and deep-copy (DESIGN R16): a ``MemoryStore`` as its credentials (the copy
is a store of its own), a ``FileStore`` as its path, a ``RedisStore`` as its URL (or its
client's connection settings) and key; locks and connections are new on the other side.
After ``os.fork()`` the child gets fresh in-process locks (a parent thread may have
held one) and a new file lock object; redis-py's sync connection pool renews its
connections in a child by itself, a ``redis.asyncio`` client is rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import anyio
import anyio.to_thread

from ._exceptions import StoreError
from ._files import write_json_atomic
from ._portable import after_fork, client_recipe, rebuild_client

__all__ = ["CredentialStore", "FileStore", "MemoryStore", "RedisStore", "Stored", "is_store"]

logger = logging.getLogger("httpx_refresh")

_POLL = 0.01  # seconds between tries of a lock held elsewhere (async waits)
_STALE = 60.0  # seconds after which a FileStore temporary file is a dead writer's leftover


@dataclass(frozen=True, slots=True)
class Stored:
    """Credentials as a store holds them.

    Attributes:
        credentials: the credentials (a plain dict; the caller may keep it).
        version: the store version, > 0; it grows by one with every save.
    """

    credentials: dict[str, Any]
    version: int

    def __repr__(self) -> str:  # keys only
        return f"Stored(version={self.version}, keys={sorted(self.credentials)!r})"


@runtime_checkable
class CredentialStore(Protocol):
    """What ``RefreshAuth(credentials=...)`` and ``Connector.connect(credentials=...)`` accept
    besides a mapping.

    Each operation exists sync and async (``a``-prefixed); the async ones must not block the
    event loop and must work on asyncio and trio.

    - ``load() -> Stored | None``: the stored credentials, or ``None`` if there are none.
    - ``save(credentials, *, expected_version, force=False) -> int``: store them and return
      the new version, only if the stored version is still ``expected_version`` (``None``:
      nothing stored yet), unless ``force``; otherwise raise :class:`StoreError`
      (compare-and-set: a holder whose lock expired cannot overwrite newer credentials).
    - ``acquire(wait) -> object`` / ``release(token)``: the cross-process lock around a
      refresh; ``acquire`` raises :class:`StoreError` after ``wait`` seconds.

    Every failure (I/O, network, a corrupt file) is a :class:`StoreError` with context.
    """

    def load(self) -> Stored | None:
        """The stored credentials, or ``None`` if there are none."""
        ...

    def save(
        self, credentials: Mapping[str, Any], *, expected_version: int | None, force: bool = False
    ) -> int:
        """Store ``credentials`` if the stored version is ``expected_version``; the new version."""
        ...

    def acquire(self, wait: float) -> object:
        """Take the cross-process lock within ``wait`` seconds; a token for :meth:`release`."""
        ...

    def release(self, token: object) -> None:
        """Release the lock taken by :meth:`acquire`."""
        ...

    async def aload(self) -> Stored | None:
        """Async :meth:`load`."""
        ...

    async def asave(
        self, credentials: Mapping[str, Any], *, expected_version: int | None, force: bool = False
    ) -> int:
        """Async :meth:`save`."""
        ...

    async def aacquire(self, wait: float) -> object:
        """Async :meth:`acquire`."""
        ...

    async def arelease(self, token: object) -> None:
        """Async :meth:`release`."""
        ...


def _conflict(where: str | None, expected: int | None, found: int | None) -> StoreError:
    return StoreError(
        f"the stored credentials changed meanwhile (version {found}, expected {expected}): "
        "another process saved newer ones; this save was refused",
        path=where,
    )


class MemoryStore:
    """Credentials in this process, for several ``RefreshAuth`` objects or tests.

    Args:
        credentials: initial credentials (stored as version 1), or ``None`` for none.

    The lock is a ``threading.Lock``: it coordinates threads and event loops of this
    process, not other processes (use :class:`FileStore` or :class:`RedisStore`). A pickle
    or deep copy is a store of its own with the same credentials and version.
    """

    def __init__(self, credentials: Mapping[str, Any] | None = None) -> None:
        self._mutex = threading.Lock()
        self._lock = threading.Lock()
        self._stored = None if credentials is None else Stored(dict(credentials), 1)
        after_fork(self)

    def _after_fork(self) -> None:
        self._mutex = threading.Lock()
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        # A pickle or deep copy is a store of its own with the same credentials and version.
        stored = self._stored
        if stored is None:
            return (_memory_store, (None, 0))
        return (_memory_store, (dict(stored.credentials), stored.version))

    def __repr__(self) -> str:
        stored = self._stored
        return f"<MemoryStore version={None if stored is None else stored.version}>"

    def load(self) -> Stored | None:
        """The stored credentials (a copy), or ``None``."""
        with self._mutex:
            stored = self._stored
            return None if stored is None else Stored(dict(stored.credentials), stored.version)

    def save(
        self, credentials: Mapping[str, Any], *, expected_version: int | None, force: bool = False
    ) -> int:
        """Compare-and-set; see :class:`CredentialStore`.

        Raises:
            StoreError: the stored version is not ``expected_version`` (and not ``force``).
        """
        with self._mutex:
            found = None if self._stored is None else self._stored.version
            if not force and found != expected_version:
                raise _conflict("memory", expected_version, found)
            version = (found or 0) + 1
            self._stored = Stored(dict(credentials), version)
            return version

    def acquire(self, wait: float) -> object:
        """Take the lock within ``wait`` seconds.

        Raises:
            StoreError: not acquired in time.
        """
        if not self._lock.acquire(timeout=max(wait, 0.0)):
            raise StoreError(f"could not take the lock within {wait:g} s", path="memory")
        return self._lock

    def release(self, token: object) -> None:
        """Release the lock."""
        self._lock.release()

    async def aload(self) -> Stored | None:
        """Async :meth:`load`."""
        return self.load()

    async def asave(
        self, credentials: Mapping[str, Any], *, expected_version: int | None, force: bool = False
    ) -> int:
        """Async :meth:`save`."""
        return self.save(credentials, expected_version=expected_version, force=force)

    async def aacquire(self, wait: float) -> object:
        """Async :meth:`acquire` (polls; never blocks the event loop)."""
        deadline = time.monotonic() + wait
        while not self._lock.acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise StoreError(f"could not take the lock within {wait:g} s", path="memory")
            await anyio.sleep(_POLL)
        return self._lock

    async def arelease(self, token: object) -> None:
        """Async :meth:`release`."""
        self._lock.release()


def _memory_store(credentials: dict[str, Any] | None, version: int) -> MemoryStore:
    store = MemoryStore()
    if credentials is not None:
        store._stored = Stored(credentials, version)
    return store


_MARKER = "httpx_refresh_store"


class FileStore:
    """Credentials in a JSON file, shared by the processes of one host.

    The file holds ``{"httpx_refresh_store": 1, "version": N, "credentials": {...}}``; a
    plain JSON object of credentials (e.g. one the ``request`` command wrote) is read as
    version 0 and rewritten in the store's format at the first save. Writes are atomic
    (temporary file in the same directory, ``fsync``, ``os.replace``) and owner-only
    (0600); the lock is ``filelock.FileLock`` on ``<path>.lock`` (released by the OS if
    the holder dies). A file that is not valid JSON is a :class:`StoreError` and is
    never replaced. Temporary files left by a writer killed mid-save are deleted by the
    next save once they are a minute old. It pickles and deep-copies as its path (a new
    lock); after ``os.fork()`` the child uses a lock object of its own.

    Args:
        path: the JSON file (it need not exist yet).

    Raises:
        StoreError: (from the methods) the file cannot be read or written, is corrupt, or
            the lock cannot be taken in time.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import filelock

        self.path = Path(path)
        self._filelock = filelock.FileLock(str(self.path) + ".lock", thread_local=False)
        self._timeout_error = filelock.Timeout
        # FileLock is re-entrant within a process; this makes one FileStore object shared
        # by threads, tasks or several auth objects a real lock too.
        self._local = threading.Lock()
        after_fork(self)

    def _after_fork(self) -> None:
        # filelock refuses an instance inherited across fork; the parent's lock (held by
        # a parent thread, maybe) stays the parent's: this child waits for it like any
        # other process.
        import filelock

        self._filelock = filelock.FileLock(str(self.path) + ".lock", thread_local=False)
        self._local = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return (FileStore, (str(self.path),))

    def __repr__(self) -> str:
        return f"<FileStore {str(self.path)!r}>"

    def load(self) -> Stored | None:
        """Read the file; ``None`` if it does not exist.

        Raises:
            StoreError: unreadable, not JSON, not a JSON object, or malformed store data.
        """
        where = str(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(
                f"cannot read the credentials file ({type(exc).__name__})", path=where
            ) from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", None)
            raise StoreError(
                f"the credentials file is not valid JSON (line {line}); it was left as it is",
                path=where,
            ) from None
        if not isinstance(data, dict):
            raise StoreError("the credentials file does not hold a JSON object", path=where)
        if data.get(_MARKER) == 1:
            credentials, version = data.get("credentials"), data.get("version")
            if not isinstance(credentials, dict) or not isinstance(version, int) or version < 1:
                raise StoreError("the credentials file has malformed store data", path=where)
            return Stored(credentials, version)
        return Stored(data, 0)

    def save(
        self, credentials: Mapping[str, Any], *, expected_version: int | None, force: bool = False
    ) -> int:
        """Compare-and-set, then an atomic replace; see :class:`CredentialStore`.

        Call it with the lock held (``RefreshAuth`` does), or the check and the write
        are not atomic across processes.

        Raises:
            StoreError: the version changed, or the file cannot be written (the old
                file is left untouched).
        """
        current = self.load()
        found = None if current is None else current.version
        if not force and found != expected_version:
            raise _conflict(str(self.path), expected_version, found)
        version = (found or 0) + 1
        self._sweep()
        document = {_MARKER: 1, "version": version, "credentials": dict(credentials)}
        try:
            write_json_atomic(self.path, document)
        except (OSError, TypeError, ValueError) as exc:
            raise StoreError(
                f"cannot write the credentials file ({type(exc).__name__})", path=str(self.path)
            ) from None
        return version

    def _sweep(self) -> None:
        """Delete temporary files that a writer killed mid-save left (they hold credentials)."""
        cutoff = time.time() - _STALE
        with contextlib.suppress(OSError):
            for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                with contextlib.suppress(OSError):
                    if leftover.stat().st_mtime < cutoff:
                        leftover.unlink()

    def acquire(self, wait: float) -> object:
        """Take the file lock within ``wait`` seconds.

        Raises:
            StoreError: not acquired in time, or the lock file cannot be created.
        """
        deadline = time.monotonic() + max(wait, 0.0)
        if not self._local.acquire(timeout=max(wait, 0.0)):
            raise StoreError(
                f"could not take the lock within {wait:g} s", path=self._filelock.lock_file
            )
        try:
            remaining = max(deadline - time.monotonic(), 0.0)
            self._filelock.acquire(timeout=remaining, poll_interval=_POLL)
        except self._timeout_error:
            self._local.release()
            raise StoreError(
                f"could not take the lock within {wait:g} s", path=self._filelock.lock_file
            ) from None
        except OSError as exc:
            self._local.release()
            raise StoreError(
                f"cannot create the lock file ({type(exc).__name__})", path=self._filelock.lock_file
            ) from None
        except BaseException:
            self._local.release()
            raise
        return self._filelock

    def release(self, token: object) -> None:
        """Release the file lock."""
        try:
            self._filelock.release()
        finally:
            self._local.release()

    async def aload(self) -> Stored | None:
        """Async :meth:`load` (in a worker thread)."""
        return await anyio.to_thread.run_sync(self.load)

    async def asave(
        self, credentials: Mapping[str, Any], *, expected_version: int | None, force: bool = False
    ) -> int:
        """Async :meth:`save` (in a worker thread)."""

        def save() -> int:
            return self.save(credentials, expected_version=expected_version, force=force)

        return await anyio.to_thread.run_sync(save)

    async def aacquire(self, wait: float) -> object:
        """Async :meth:`acquire`: tries without blocking, sleeping between tries."""
        deadline = time.monotonic() + wait
        while True:
            if self._local.acquire(blocking=False):
                try:
                    self._filelock.acquire(timeout=0)
                except self._timeout_error:
                    self._local.release()
                except OSError as exc:
                    self._local.release()
                    raise StoreError(
                        f"cannot create the lock file ({type(exc).__name__})",
                        path=self._filelock.lock_file,
                    ) from None
                except BaseException:
                    self._local.release()
                    raise
                else:
                    return self._filelock
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"could not take the lock within {wait:g} s", path=self._filelock.lock_file
                )
            await anyio.sleep(_POLL)

    async def arelease(self, token: object) -> None:
        """Async :meth:`release`."""
        self.release(token)


# KEYS[1] the hash; ARGV[1] expected version ("" = none stored), ARGV[2] credentials JSON,
# ARGV[3] "1" to force. Returns the new version, or -1 - the version found on a mismatch.
_CAS = """
local found = redis.call('HGET', KEYS[1], 'version')
if ARGV[3] ~= '1' then
  if ARGV[1] == '' then
    if found then return -1 - tonumber(found) end
  elseif found ~= ARGV[1] then
    if found then return -1 - tonumber(found) end
    return -1
  end
end
local version = (tonumber(found) or 0) + 1
redis.call('HSET', KEYS[1], 'version', version, 'credentials', ARGV[2])
return version
"""


class RedisStore:
    """Credentials in Redis, shared by processes on several hosts (optional extra ``redis``).

    One hash at ``key`` holds ``version`` and ``credentials`` (JSON); saves are
    compare-and-set in a Lua script, so a process whose lock expired cannot overwrite
    newer credentials. The lock is redis-py's ``Lock`` at ``<key>:lock`` with an expiry
    (``lock_ttl``), so a dead holder blocks the others for at most that long. Async
    methods use ``redis.asyncio`` when ``async_client`` is given and the loop is asyncio,
    and otherwise the sync client in a worker thread (so trio works too).

    It pickles and deep-copies as its URL and key, or, when given a client, as that client's
    connection settings (host, port, db, username, password, timeouts, TLS options; redis-py
    defaults for the rest); a client with a ``credential_provider`` or a connection class of
    its own raises ``TypeError``. Clients are new on the other side; after ``os.fork()``
    redis-py renews the sync client's connections and an ``async_client`` is rebuilt.

    Args:
        redis: a Redis URL (``redis://127.0.0.1:6379/0``) or a ``redis.Redis`` client.
        key: the hash key of this connection's credentials.
        lock_ttl: seconds after which a held lock expires (longer than a refresh takes).
        async_client: a ``redis.asyncio.Redis`` for the async methods on asyncio (bound to
            one event loop, as redis-py's async clients are); without it, or on trio, the
            async methods run the sync client in a worker thread.

    Raises:
        StoreError: (from the methods) Redis cannot be reached, the data is malformed,
            the version changed, or the lock cannot be taken in time.
        ImportError: at construction, if redis-py is not installed.
    """

    def __init__(
        self, redis: Any, key: str, *, lock_ttl: float = 30.0, async_client: Any = None
    ) -> None:
        try:
            import redis as redis_py
        except ImportError as exc:
            raise ImportError(
                "RedisStore needs redis-py: pip install 'httpx-refresh[redis]'"
            ) from exc
        self._errors: tuple[type[BaseException], ...] = (redis_py.RedisError, OSError)
        self._owned = isinstance(redis, str)  # a client made here is closed by close()
        self._url: str | None = redis if self._owned else None
        self._client = redis_py.Redis.from_url(redis) if self._owned else redis
        self.key = key
        self._lock_ttl = float(lock_ttl)
        self._cas = self._client.register_script(_CAS)
        self._async_client = async_client
        self._acas = async_client.register_script(_CAS) if async_client is not None else None
        if async_client is not None:
            after_fork(self)

    def _after_fork(self) -> None:
        # redis-py's sync pool renews its connections in a child by itself (it checks the
        # pid); a redis.asyncio pool does not, and its connections belong to the parent's
        # event loop: rebuild the async client from its settings, or use the sync one. The
        # inherited client is kept unused (closing its copies here could disturb the
        # parent's connections).
        self._inherited = self._async_client
        try:
            self._async_client = rebuild_client(client_recipe(self._async_client), True)
        except TypeError:
            self._async_client = None
        self._acas = (
            None if self._async_client is None else self._async_client.register_script(_CAS)
        )

    def __copy__(self) -> RedisStore:
        clone = type(self).__new__(type(self))  # the same clients
        clone.__dict__.update(self.__dict__)
        clone._owned = False  # close() on the original closes them
        if clone._async_client is not None:
            after_fork(clone)
        return clone

    def __reduce__(self) -> tuple[Any, ...]:
        # By URL, or by the client's connection settings (the pickle holds the password,
        # as the URL would: a pickle of a store is a secret).
        recipe: Any = self._url
        async_recipe = None
        part = "client"
        try:
            if recipe is None:
                recipe = client_recipe(self._client)
            part = "async_client"
            if self._async_client is not None:
                async_recipe = client_recipe(self._async_client)
        except TypeError as exc:
            raise TypeError(f"RedisStore's {part} cannot be pickled: {exc}") from None
        return (_redis_store, (recipe, self.key, self._lock_ttl, async_recipe))

    def _native(self) -> bool:
        """Use ``redis.asyncio``: an async client was given and this is asyncio."""
        if self._async_client is None:
            return False
        import sniffio

        try:
            return sniffio.current_async_library() == "asyncio"
        except sniffio.AsyncLibraryNotFoundError:
            return False

    def __repr__(self) -> str:
        return f"<RedisStore key={self.key!r}>"

    def close(self) -> None:
        """Close the connections of the client made from a URL (a given client is yours)."""
        if self._owned:
            self._client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fail(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"{what} failed ({type(exc).__name__})", path=f"redis:{self.key}")

    def load(self) -> Stored | None:
        """Read the hash; ``None`` if it does not exist.

        Raises:
            StoreError: Redis cannot be reached, or the data is malformed.
        """
        try:
            found = self._client.hmget(self.key, ["version", "credentials"])
        except self._errors as exc:
            raise self._fail("loading the credentials", exc) from None
        return self._decode(found)

    def _decode(self, found: Any) -> Stored | None:
        version, text = found
        if version is None and text is None:
            return None
        try:
            credentials = json.loads(cast("str | bytes", text))
            number = int(cast("str | bytes", version))
        except (TypeError, ValueError):
            raise StoreError("malformed credentials in Redis", path=f"redis:{self.key}") from None
        if not isinstance(credentials, dict):
            raise StoreError("malformed credentials in Redis", path=f"redis:{self.key}")
        return Stored(credentials, number)

    def save(
        self, credentials: Mapping[str, Any], *, expected_version: int | None, force: bool = False
    ) -> int:
        """Compare-and-set in one Lua script; see :class:`CredentialStore`.

        Raises:
            StoreError: the version changed, or Redis cannot be reached.
        """
        args = self._cas_args(credentials, expected_version, force)
        try:
            result = int(self._cas(keys=[self.key], args=args))
        except self._errors as exc:
            raise self._fail("saving the credentials", exc) from None
        return self._cas_result(result, expected_version)

    def _cas_args(
        self, credentials: Mapping[str, Any], expected_version: int | None, force: bool
    ) -> list[str]:
        try:
            text = json.dumps(dict(credentials))
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"credentials cannot be stored as JSON ({type(exc).__name__})",
                path=f"redis:{self.key}",
            ) from None
        expected = "" if expected_version is None else str(expected_version)
        return [expected, text, "1" if force else "0"]

    def _cas_result(self, result: int, expected_version: int | None) -> int:
        if result < 0:
            found = None if result == -1 else -1 - result
            raise _conflict(f"redis:{self.key}", expected_version, found)
        return result

    def acquire(self, wait: float) -> object:
        """Take ``<key>:lock`` (expires after ``lock_ttl`` s) within ``wait`` seconds.

        Raises:
            StoreError: not acquired in time, or Redis cannot be reached.
        """
        lock = self._client.lock(f"{self.key}:lock", **self._lock_options(wait))
        try:
            acquired = lock.acquire()
        except self._errors as exc:
            raise self._fail("taking the lock", exc) from None
        if not acquired:
            raise StoreError(
                f"could not take the lock within {wait:g} s", path=f"redis:{self.key}:lock"
            )
        return lock

    def release(self, token: object) -> None:
        """Release the lock; if it expired meanwhile, log a warning (nothing to release)."""
        try:
            token.release()  # type: ignore[attr-defined]
        except self._errors as exc:
            logger.warning(
                "the Redis lock %s:lock was not released (%s): it had expired, or Redis is "
                "unreachable; it expires by itself",
                self.key,
                type(exc).__name__,
            )
        except Exception as exc:  # noqa: BLE001 - redis-py's LockError (not owned any more)
            logger.warning(
                "the Redis lock %s:lock had expired before it was released (%s)",
                self.key,
                type(exc).__name__,
            )

    async def aload(self) -> Stored | None:
        """Async :meth:`load` (``redis.asyncio``, or the sync client in a worker thread)."""
        if not self._native():
            return await anyio.to_thread.run_sync(self.load)
        try:
            found = await self._async_client.hmget(self.key, ["version", "credentials"])
        except self._errors as exc:
            raise self._fail("loading the credentials", exc) from None
        return self._decode(found)

    async def asave(
        self, credentials: Mapping[str, Any], *, expected_version: int | None, force: bool = False
    ) -> int:
        """Async :meth:`save` (``redis.asyncio``, or the sync client in a worker thread)."""
        if not self._native():

            def save() -> int:
                return self.save(credentials, expected_version=expected_version, force=force)

            return await anyio.to_thread.run_sync(save)
        args = self._cas_args(credentials, expected_version, force)
        assert self._acas is not None
        try:
            result = int(await self._acas(keys=[self.key], args=args))
        except self._errors as exc:
            raise self._fail("saving the credentials", exc) from None
        return self._cas_result(result, expected_version)

    def _lock_options(self, wait: float) -> dict[str, Any]:
        """redis-py ``lock()`` options, the same for the sync and the async client."""
        return {
            "timeout": self._lock_ttl,
            "blocking_timeout": max(wait, 0.0),
            "sleep": _POLL,
            "thread_local": False,
        }

    async def aacquire(self, wait: float) -> object:
        """Async :meth:`acquire` (``redis.asyncio``, or the sync client in a worker thread)."""
        if not self._native():
            return await anyio.to_thread.run_sync(self.acquire, wait)
        lock = self._async_client.lock(f"{self.key}:lock", **self._lock_options(wait))
        try:
            acquired = await lock.acquire()
        except self._errors as exc:
            raise self._fail("taking the lock", exc) from None
        if not acquired:
            raise StoreError(
                f"could not take the lock within {wait:g} s", path=f"redis:{self.key}:lock"
            )
        return lock

    async def arelease(self, token: object) -> None:
        """Async :meth:`release`."""
        if not self._native():
            await anyio.to_thread.run_sync(self.release, token)
            return
        try:
            await token.release()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - expired (not owned any more) or unreachable
            logger.warning(
                "the Redis lock %s:lock was not released (%s): it had expired, or Redis is "
                "unreachable; it expires by itself",
                self.key,
                type(exc).__name__,
            )


def _redis_store(
    recipe: str | tuple[str, dict[str, Any]],
    key: str,
    lock_ttl: float,
    async_recipe: tuple[str, dict[str, Any]] | None,
) -> RedisStore:
    async_client = None if async_recipe is None else rebuild_client(async_recipe, True)
    store = RedisStore(
        rebuild_client(recipe, False), key, lock_ttl=lock_ttl, async_client=async_client
    )
    store._owned = True  # built here: close() closes it
    store._url = recipe if isinstance(recipe, str) else None
    return store


def is_store(value: Any) -> bool:
    """Whether ``value`` is a credential store (not a plain mapping)."""
    return not isinstance(value, Mapping) and isinstance(value, CredentialStore)
