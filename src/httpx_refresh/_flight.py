"""Single-flight coordination across threads, tasks and event loops (DESIGN R5, R6, R7).

One :class:`FlightControl` per ``RefreshAuth``. It holds the current
:class:`Snapshot` (read without a lock on the fast path), the permanent-failure
state, the flight in progress and the counters.

Locking: a single ``threading.Lock`` guards in-memory bookkeeping only (a few
attribute reads and writes). It is never held while waiting, during I/O, while a
refresher runs, or across a ``yield`` of the auth flow, so the async path never
blocks the event loop on it. Waiting happens on per-waiter primitives: a
``threading.Event`` for threads, an ``anyio.Event`` created in the waiter's own
event loop for tasks. A flight completed in another thread or loop wakes each
async waiter through its loop's thread-safe scheduler (asyncio
``call_soon_threadsafe``, trio ``TrioToken.run_sync_soon``); nothing is bound to
one event loop, so one auth works from several loops one after another.

After ``os.fork()`` (DESIGN R16) the child keeps the credentials, versions and
counters, but gets a fresh mutex and no flight: a refresh that was running in one of
the parent's threads does not exist in the child, so the child's first request that
needs one starts its own (or adopts newer credentials from the store) at once.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from ._core import RejectedReplay
from ._credentials import Snapshot, make_snapshot, merge_credentials, scrub
from ._exceptions import HttpxRefreshError, ReauthorizationRequired, RefreshError
from ._portable import after_fork
from ._retry import is_transient

__all__ = [
    "Flight",
    "FlightControl",
    "RefreshStats",
    "describe_rejection",
    "fresh_copy",
    "translate",
]

E = TypeVar("E", bound=BaseException)

logger = logging.getLogger("httpx_refresh")


@dataclass(frozen=True, slots=True)
class RefreshStats:
    """Counters of one ``RefreshAuth`` (DESIGN R15).

    Attributes:
        refreshes: successful refreshes (refresher runs that produced credentials).
        replays: requests sent a second time after a refresh.
        deduplicated: requests that needed a refresh and got one without running the
            refresher themselves (they joined a flight, or found newer credentials).
        failures: refreshes that failed (every waiter of such a flight got the error).
        rejected_replays: requests whose replay was rejected again, so that the caller got
            the rejected response (each is also logged, see ``RefreshAuth``).
        second_replays: requests replayed once more because their first replay was rejected
            after its token had expired in transit or been replaced (also in ``replays``).
    """

    refreshes: int = 0
    replays: int = 0
    deduplicated: int = 0
    failures: int = 0
    rejected_replays: int = dataclasses.field(default=0, kw_only=True)
    second_replays: int = dataclasses.field(default=0, kw_only=True)


class Flight:
    """One refresh shared by every request waiting on it."""

    __slots__ = (
        "_wakers",
        "advisory",
        "base",
        "done",
        "error",
        "owner_thread",
        "result",
        "size",
        "started",
    )

    def __init__(self, base: Snapshot, *, advisory: bool = False) -> None:
        self.base = base
        self.advisory = advisory
        self.started = time.monotonic()
        self.owner_thread = threading.get_ident()
        self.size = 1
        self.done = threading.Event()
        self.result: Snapshot | None = None
        self.error: BaseException | None = None
        self._wakers: list[Callable[[], None]] | None = []

    def outcome(self) -> Snapshot:
        """Return the flight's snapshot or raise (a copy of) its error, once done."""
        if self.error is not None:
            raise fresh_copy(self.error)
        assert self.result is not None
        return self.result


def fresh_copy(error: E) -> E:
    """Return a copy of ``error`` with no traceback, for raising in one more place.

    Raising one instance in many tasks or threads would grow its traceback without
    bound and race on it; every waiter gets an equal copy instead (same type,
    message and attributes, same ``__cause__``).
    """
    try:
        clone = copy.copy(error)
    except Exception:  # noqa: BLE001 - an exception type that cannot be copied
        return error
    clone.__cause__ = error.__cause__
    clone.__suppress_context__ = True
    return clone.with_traceback(None)


def _waker(event: anyio.Event) -> Callable[[], None]:
    """Return a callable that sets ``event`` from any thread, without blocking."""
    thread = threading.get_ident()
    token: Any = anyio.lowlevel.current_token().native_token

    def wake() -> None:
        if threading.get_ident() == thread:
            event.set()
            return
        try:
            if isinstance(token, asyncio.AbstractEventLoop):
                token.call_soon_threadsafe(event.set)
            else:  # trio.lowlevel.TrioToken
                token.run_sync_soon(event.set)
        except Exception:  # noqa: BLE001 - the waiter's loop is gone; nobody to wake
            pass

    return wake


class FlightControl:
    """Versions, the flight in progress, failure state and counters.

    Args:
        snapshot: the initial credentials snapshot.
        clock: returns epoch seconds.
        stuck_after: seconds after which a flight that has not finished (a refresher
            that hangs and ignores its timeout) is abandoned: the next request that
            needs a refresh starts a new flight instead of waiting on it.
        cooldown: seconds after a flight failed (not permanently) during which no new
            flight starts for the same version (``Retry-After`` lengthens it, up to 60 s).
    """

    def __init__(
        self,
        snapshot: Snapshot,
        clock: Callable[[], float],
        *,
        stuck_after: float = math.inf,
        cooldown: float = 0.0,
    ) -> None:
        self.snapshot = snapshot
        self._stuck_after = stuck_after
        self._cooldown = cooldown
        # (version, until epoch s, error): after a transient failure, no new flight for
        # that version until then (DESIGN R10: one flight per backoff period).
        self._cooling: tuple[int, float, Exception] | None = None
        self.dead: ReauthorizationRequired | None = None
        self._clock = clock
        self._mutex = threading.Lock()
        self._flight: Flight | None = None
        # (version, ended, since monotonic s): a refresher call that ran past its time
        # limit and was left running in a thread; the next flight of that version waits
        # for it instead of presenting the same refresh token again (R5, R7).
        self._abandoned: tuple[int, threading.Event, float] | None = None
        self._refreshes = 0
        self._replays = 0
        self._deduplicated = 0
        self._failures = 0
        self._rejected_replays = 0
        self._second_replays = 0
        # (version, reason) pairs already logged at WARNING: later ones log at DEBUG.
        self._warned: tuple[tuple[int, str], ...] = ()
        after_fork(self)

    def _after_fork(self) -> None:
        """In a child process after ``os.fork()``: a fresh mutex and no flight in progress.

        The parent's threads (the flight's owner and its waiters) do not exist here, and
        the mutex may have been copied while one of them held it.
        """
        self._mutex = threading.Lock()
        self._flight = None
        self._abandoned = None  # its thread is the parent's

    def abandoned(self, version: int, ended: threading.Event) -> None:
        """Record that a refresher call for ``version`` was left running in a thread;
        ``ended`` is set once it has ended (its late result, if any, handled)."""
        with self._mutex:
            self._abandoned = (version, ended, time.monotonic())

    def still_running(self, version: int) -> threading.Event | None:
        """The ``ended`` event of an abandoned refresher call of ``version`` that still
        runs (and has not run for longer than a stuck flight may), else ``None``."""
        with self._mutex:
            abandoned = self._abandoned
            if abandoned is None:
                return None
            if (
                abandoned[0] != version
                or abandoned[1].is_set()
                or time.monotonic() - abandoned[2] > self._stuck_after
            ):
                self._abandoned = None
                return None
            return abandoned[1]

    # -- bookkeeping (mutex held briefly, never across a wait) -------------------

    def begin(self, base_version: int) -> Snapshot | tuple[Flight, bool] | Exception:
        """Join or start the flight that replaces ``base_version``.

        Returns:
            The current snapshot if it is already newer than ``base_version`` (no
            refresh needed); a copy of the last error if ``base_version`` is cooling
            down after a transient failure (R10: no new flight yet); else
            ``(flight, is_owner)``.

        Raises:
            ReauthorizationRequired: the grant is dead (fail fast, DESIGN R10).
        """
        with self._mutex:
            if self.dead is not None:
                raise fresh_copy(self.dead)
            snapshot = self.snapshot
            if snapshot.version != base_version:
                self._deduplicated += 1
                return snapshot
            flight = self._flight
            cooling = self._cooling
            if flight is None and cooling is not None and cooling[0] == base_version:
                if self._clock() < cooling[1]:
                    return fresh_copy(cooling[2])
                self._cooling = None
            if flight is not None and time.monotonic() - flight.started > self._stuck_after:
                logger.warning(
                    "a refresh of version %d has run for over %g s; starting a new one",
                    flight.base.version,
                    self._stuck_after,
                )
                flight = None
            if flight is not None:
                flight.size += 1
                self._deduplicated += 1
                return flight, False
            flight = self._flight = Flight(snapshot)
            return flight, True

    def begin_advisory(self, base_version: int) -> Flight | None:
        """R3: start a flight for ``base_version`` only if nobody needs to wait for it.

        Returns:
            A new flight owned by the caller, or ``None`` when one is already running
            (or an abandoned refresher call of that version still runs), the version moved
            on, the grant is dead or a cooldown is active.
        """
        with self._mutex:
            if self.dead is not None or self.snapshot.version != base_version:
                return None
            if self._flight is not None:
                return None
            abandoned = self._abandoned
            if abandoned is not None and abandoned[0] == base_version and not abandoned[1].is_set():
                return None  # its refresher still runs (R7): nobody waits for it here
            cooling = self._cooling
            if cooling is not None and cooling[0] == base_version and self._clock() < cooling[1]:
                return None
            flight = self._flight = Flight(self.snapshot, advisory=True)
            return flight

    def commit(
        self,
        flight: Flight,
        returned: Mapping[str, Any],
        *,
        adopted: int | None = None,
    ) -> tuple[Snapshot, bool]:
        """Merge a refresher's result into the credentials (DESIGN R8).

        With ``adopted`` (a store version), ``returned`` are credentials another process
        stored: they replace the current ones as they are, and no refresh is counted.

        Returns:
            ``(snapshot, committed)``; ``committed`` is ``False`` when the credentials
            were replaced by ``update_credentials`` meanwhile (the result is dropped).
        """
        now = self._clock()
        with self._mutex:
            current = self.snapshot
            if adopted is None:
                self._refreshes += 1
            if current.version != flight.base.version:
                return current, False
            if adopted is None:
                merged = merge_credentials(current.credentials, returned, now=now)
            else:
                merged = dict(returned)
            # Until saved, new credentials count as the store version they came from.
            stored = adopted if adopted is not None else current.stored
            snapshot = make_snapshot(
                merged, current.version + 1, now=now, refreshed=True, stored=stored
            )
            self.snapshot = snapshot
            return snapshot, True

    def mark_stored(self, snapshot: Snapshot, stored: int | None) -> Snapshot:
        """Record that ``snapshot`` was saved as store version ``stored``."""
        with self._mutex:
            marked = dataclasses.replace(snapshot, stored=stored)
            if self.snapshot is snapshot:
                self.snapshot = marked
            return marked

    def finish(
        self,
        flight: Flight,
        result: Snapshot | None,
        error: BaseException | None,
        *,
        cool: bool = True,
    ) -> None:
        """Complete ``flight`` and wake all its waiters, in every thread and loop.

        An error that is not permanent (transient, a malformed token response, a
        connector method that returned the wrong type) starts the cooldown unless
        ``cool`` is false (an interrupted flight says nothing about the token endpoint).
        """
        with self._mutex:
            flight.result = result
            flight.error = error
            if error is not None:
                self._failures += 1
                current = self.snapshot.version == flight.base.version
                if isinstance(error, ReauthorizationRequired) and current and not flight.advisory:
                    self.dead = error
                elif (
                    # Not permanent (handled above); or permanent in an advisory flight,
                    # while the token is still valid (R3): then it only cools down, and the
                    # mandatory refresh finds the dead grant when it is due.
                    isinstance(error, Exception) and current and cool and self._cooldown > 0
                ):
                    # Any failure that is not permanent: a RefreshError, or e.g. a SpecError
                    # for a connector method that returned the wrong type.
                    retry_after = getattr(error, "retry_after", None) or 0.0
                    wait = max(self._cooldown, min(retry_after, 60.0))
                    self._cooling = (flight.base.version, self._clock() + wait, error)
            elif result is not None:
                self._cooling = None
            if self._flight is flight:
                self._flight = None
            wakers, flight._wakers = flight._wakers, None
        flight.done.set()
        for wake in wakers or ():
            wake()

    def replace(self, credentials: Mapping[str, Any]) -> Snapshot:
        """Replace the credentials (``update_credentials``): new version, failure state cleared.

        Until saved, they count as the store version the old ones came from.
        """
        now = self._clock()
        with self._mutex:
            snapshot = make_snapshot(
                credentials, self.snapshot.version + 1, now=now, stored=self.snapshot.stored
            )
            self.snapshot = snapshot
            self.dead = None
            self._cooling = None
            self._flight = None  # a flight still running will not commit (version moved)
            return snapshot

    def declare_dead(self, error: ReauthorizationRequired) -> None:
        """Fail every request fast with ``error`` until ``replace`` (the API said the
        connection is defunct)."""
        with self._mutex:
            self.dead = error

    def note_replay(self) -> None:
        """Count one replay."""
        with self._mutex:
            self._replays += 1

    def stats(self) -> RefreshStats:
        """Return the counters as a frozen :class:`RefreshStats`."""
        with self._mutex:
            return RefreshStats(
                self._refreshes,
                self._replays,
                self._deduplicated,
                self._failures,
                rejected_replays=self._rejected_replays,
                second_replays=self._second_replays,
            )

    def note_rejected_replay(self, rejection: RejectedReplay, min_refresh_interval: float) -> None:
        """Count a replay rejected again and log it at WARNING with its likely reason (R4).

        One WARNING per credentials version and reason; the others of that version and
        reason (a storm of requests that all waited too long) log at DEBUG, all counted.
        Each record carries ``replay_version``, ``replay_reason`` and ``replay_again``.
        """
        key = (rejection.version, rejection.reason)
        with self._mutex:
            if rejection.again:
                self._second_replays += 1
            else:
                self._rejected_replays += 1
            first = key not in self._warned
            if first:
                self._warned = (*self._warned[-7:], key)
        if first or logger.isEnabledFor(logging.DEBUG):
            logger.log(
                logging.WARNING if first else logging.DEBUG,
                "%s%s",
                describe_rejection(rejection, min_refresh_interval),
                " (further ones of this version for this reason log at DEBUG; "
                "auth.stats counts them)"
                if first
                else "",
                extra={
                    "replay_version": rejection.version,
                    "replay_reason": rejection.reason,
                    "replay_again": rejection.again,
                },
            )

    # -- waiting (no lock held) --------------------------------------------------

    def wait_sync(self, flight: Flight, timeout: float) -> Snapshot:
        """Block the calling thread until ``flight`` completes; return or raise its outcome."""
        if flight.owner_thread == threading.get_ident() and not flight.done.is_set():
            # A sync call inside the event loop whose task runs this very refresh:
            # blocking here would stall that loop until the timeout.
            raise RefreshError(
                "a sync request waits for a refresh that a task of this thread's event loop "
                "is running; use the async client (or arefresh) inside async code",
                transient=True,
            )
        if not flight.done.wait(timeout):
            raise RefreshError(
                f"timed out after {timeout:g} s waiting for a refresh", transient=True
            )
        return flight.outcome()

    async def wait_async(self, flight: Flight, time_limit: float) -> Snapshot:
        """Wait in the current task (any anyio backend) until ``flight`` completes."""
        event = anyio.Event()
        wake = _waker(event)
        with self._mutex:
            wakers = flight._wakers
            if wakers is not None:
                wakers.append(wake)
        if wakers is not None:
            with anyio.move_on_after(time_limit):
                await event.wait()
            if not flight.done.is_set():
                raise RefreshError(
                    f"timed out after {time_limit:g} s waiting for a refresh", transient=True
                )
        else:
            await anyio.lowlevel.checkpoint()
        return flight.outcome()


def describe_rejection(rejection: RejectedReplay, min_refresh_interval: float) -> str:
    """One sentence on a rejected replay: what, with which version, the likely reason, and
    what happens next. Method and URL without the query; never a credential."""
    url = rejection.request.url
    where = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "") + url.path
    head = (
        f"replay of {rejection.request.method} {where} rejected again with {rejection.status} "
        f"(credentials version {rejection.version}, the replay took {rejection.elapsed:.2f} s"
    )
    left = rejection.remaining
    if left is not None:
        head += (
            f", {left:.2f} s before its expiry"
            if left >= 0
            else f", {-left:.2f} s after its expiry"
        )
    head += ", client clock): "
    reason = rejection.reason
    if reason == "expired":
        why = (
            "the token likely expired in transit (the request waited in the connection pool, "
            "or the machine or the server is overloaded)"
        )
    elif reason == "superseded":
        why = (
            f"a newer token (version {rejection.current}) replaced it meanwhile (another "
            "refresh, e.g. after a revocation)"
        )
    elif reason == "revoked":
        why = (
            "the token predates this request's rejection (another request's refresh made it; "
            "none ran for this one) and is rejected now: it was likely revoked meanwhile (e.g. "
            "a server-side revocation)"
        )
    else:
        age = "was fresh" if reason == "fresh" else "has an unknown expiry"
        why = (
            f"the token {age} and no newer one exists: the resource likely rejects this "
            "token whatever its age (e.g. insufficient scope), not a token problem; version "
            f"{rejection.version} is not refreshed again for {min_refresh_interval:g} s"
        )
    then = (
        "; replaying it once more with newer credentials"
        if rejection.again
        else "; the response goes back to the caller"
    )
    return head + why + then


def translate(exc: BaseException, secrets: list[str]) -> BaseException:
    """Turn a refresher's exception into the error every waiter receives.

    httpx-refresh errors pass through; httpx transport errors and timeouts become
    ``RefreshError(transient=True)``; any other ``Exception`` becomes
    ``RefreshError(transient=False)`` naming its type (message scrubbed of secrets);
    ``BaseException`` (cancellation, KeyboardInterrupt) passes through.
    """
    if isinstance(exc, HttpxRefreshError) or not isinstance(exc, Exception):
        return exc
    kind = type(exc).__name__
    transient = is_transient(exc)
    detail = scrub(str(exc), secrets)
    message = f"refresher raised {kind}" + (f": {detail}" if detail else "")
    error = RefreshError(message, transient=transient)
    # Keep the original as the cause for debugging, unless its own message holds a
    # secret (a traceback or logger.exception would print it).
    error.__cause__ = exc if detail == str(exc) else None
    error.__suppress_context__ = True
    return error
