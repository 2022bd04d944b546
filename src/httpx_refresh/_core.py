"""The sans-IO decision core: attach, refresh first, replay, or give up.

:func:`flow` is a generator that yields *actions* and is driven by an adapter
(``RefreshAuth.sync_auth_flow`` / ``async_auth_flow``):

- ``Send(request, replay)``: send the request; the adapter sends back the response.
- ``Refresh(base_version)``: make the credentials newer than ``base_version`` (join or
  start a flight); the adapter sends back the resulting :class:`Snapshot` or raises.

The core does no I/O, takes no lock and never sleeps, so it is unit-tested by
driving the generator by hand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Generator
from dataclasses import dataclass
from typing import Any

from ._credentials import Snapshot
from ._exceptions import HttpxRefreshError, RequestNotReplayable

__all__ = [
    "Decisions",
    "Refresh",
    "RejectedReplay",
    "Send",
    "after_rejection",
    "flow",
    "prepare",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Action: send ``request`` and resume the flow with its response."""

    request: Any
    replay: bool = False


@dataclass(frozen=True, slots=True)
class Refresh:
    """Action: obtain credentials newer than ``base_version``; resume with a Snapshot."""

    base_version: int
    reason: str


Rewind = Callable[[], bool]

#: Why a replay was rejected again, as far as the client can tell (DESIGN R4):
#: ``"expired"``: the replayed token was past its expiry (client clock, with the leeway) when
#: the response arrived: it expired in transit (a connection-pool wait, an overloaded machine).
#: ``"superseded"``: a newer version existed when the response arrived (another refresh, e.g.
#: after a revocation, replaced the replayed token meanwhile).
#: ``"revoked"``: the token was made (by another request's refresh) before this request's
#: rejection arrived, so no refresh ran for it, and it is rejected now: likely revoked meanwhile
#: (e.g. a server-side revocation of every token); R11 does not apply (it was not "the replay
#: right after a refresh").
#: ``"fresh"``: the token was neither expired nor replaced: the resource rejects this token
#: whatever its age (e.g. insufficient scope); likely not a token problem.
#: ``"unknown"``: as ``"fresh"``, but the token's expiry is unknown.
Reason = str


@dataclass(frozen=True, slots=True)
class RejectedReplay:
    """What the core knows about a replay that was rejected again (DESIGN R4, R15).

    Attributes:
        request: the request (its method and URL; never log its headers).
        status: the status code of the rejected replay's response.
        version: the credentials version the replay was sent with.
        reason: ``"expired"``, ``"superseded"``, ``"revoked"``, ``"fresh"`` or ``"unknown"``
            (see ``Reason``).
        elapsed: seconds from sending the replay to its response (client clock).
        remaining: seconds the replayed token had left when the response arrived
            (negative: past its expiry), or ``None`` when its expiry is unknown.
        current: the current version when the response arrived.
        again: ``True`` when the request gets one more replay (the rejection is explained by
            the token's age: ``"expired"``, ``"superseded"`` or ``"revoked"``), ``False`` when
            the rejected response goes back to the caller.
    """

    request: Any
    status: int
    version: int
    reason: Reason
    elapsed: float
    remaining: float | None
    current: int
    again: bool


class Decisions:
    """Configuration and the little state the decisions need (the R11 record).

    Args:
        current: returns the current :class:`Snapshot` (an attribute read, no lock).
        apply: writes one snapshot onto a request (DESIGN R1).
        refresh_on: statuses, or a predicate on the response, that mean "rejected" (R4).
        leeway: seconds before expiry when a refresh becomes mandatory (R2).
        min_refresh_interval: seconds during which a version whose replay was rejected
            is not refreshed again (R11).
        token_key: the key without which there is "no usable token" (R2); ``None``
            disables that check.
        clock: returns epoch seconds.
        rewind_plan: given a request about to be sent, returns a callable that
            prepares its body for a replay and tells whether that is possible (R12).
        in_scope: tells whether a request may receive credentials (R13).
        fail_fast: returns the permanent error that blocks every request, if any (R10).
        advisory: seconds before expiry when one request refreshes while the others keep
            using the still-valid token (R3); ``None`` turns the window off.
        rejected_replay: called with a :class:`RejectedReplay` each time a replay is
            rejected again (R4: the adapter counts and logs it); only on that path.
    """

    __slots__ = (
        "_advisory_at",
        "_refresh_at",
        "_rejected_until",
        "_rejected_version",
        "advisory",
        "apply",
        "clock",
        "current",
        "fail_fast",
        "in_scope",
        "is_rejected",
        "leeway",
        "min_refresh_interval",
        "rejected_replay",
        "rewind_plan",
        "token_key",
    )

    def __init__(
        self,
        *,
        current: Callable[[], Snapshot],
        apply: Callable[[Any, Any], None],
        refresh_on: Collection[int] | Callable[[Any], bool],
        leeway: float,
        min_refresh_interval: float,
        token_key: str | None,
        clock: Callable[[], float],
        rewind_plan: Callable[[Any], Rewind],
        in_scope: Callable[[Any], bool],
        fail_fast: Callable[[], HttpxRefreshError | None],
        advisory: float | None = None,
        rejected_replay: Callable[[RejectedReplay], None] | None = None,
    ) -> None:
        self.current = current
        self.apply = apply
        if callable(refresh_on):
            self.is_rejected: Callable[[Any], bool] = refresh_on
        else:
            statuses = frozenset(refresh_on)
            self.is_rejected = lambda response: response.status_code in statuses
        self.leeway = leeway
        self.min_refresh_interval = min_refresh_interval
        self.token_key = token_key
        self.clock = clock
        self.rewind_plan = rewind_plan
        self.in_scope = in_scope
        self.fail_fast = fail_fast
        self._rejected_version = -1
        self._rejected_until = 0.0
        self._refresh_at: tuple[Snapshot | None, float] = (None, 0.0)
        self.advisory = advisory
        self._advisory_at: tuple[Snapshot | None, float] = (None, 0.0)
        self.rejected_replay = rejected_replay

    def needs_refresh(self, snapshot: Snapshot, now: float) -> bool:
        """R2: is a refresh mandatory before sending with ``snapshot`` at ``now``?

        True when there is no usable token, or when the expiry is known and
        ``now >= expires_at - leeway``, the leeway clamped to half the token's
        lifetime when that is known. Unknown expiry never refreshes proactively.
        """
        cached = self._refresh_at
        if cached[0] is not snapshot:
            # One tuple, one attribute write: concurrent readers never see a
            # snapshot paired with another snapshot's deadline.
            cached = self._refresh_at = (snapshot, self.refresh_deadline(snapshot))
        return now >= cached[1]

    def refresh_deadline(self, snapshot: Snapshot) -> float:
        """R2: the epoch second from which ``snapshot`` must be refreshed before use.

        ``-inf`` with no usable token, ``+inf`` with an unknown expiry, else
        ``expires_at - min(leeway, lifetime / 2)``. Credentials that a refresh produced
        already due (no usable token; ``expires_in <= 0`` and an absolute expiry past on
        arrival have an unknown expiry instead, see ``merge_credentials``) are not
        refreshed proactively again within ``min_refresh_interval`` of that refresh
        (R11: no refresh per request); a rejection still refreshes reactively.
        """
        if self.token_key is not None and not snapshot.credentials.get(self.token_key):
            deadline = -math.inf
        elif snapshot.expires_at is None:
            return math.inf
        else:
            leeway = self.leeway
            lifetime = _lifetime(snapshot)
            if lifetime is not None and leeway > lifetime / 2:
                leeway = lifetime / 2
            deadline = snapshot.expires_at - leeway
        refreshed_at = snapshot.refreshed_at
        if refreshed_at is not None and deadline <= refreshed_at:
            # Already due when it arrived: wait min_refresh_interval before trying again.
            deadline = refreshed_at + self.min_refresh_interval
        return deadline

    def advisory_due(self, snapshot: Snapshot, now: float) -> bool:
        """R3: is ``snapshot`` inside the advisory window (refresh without making anyone wait)?

        The window starts ``advisory`` seconds before expiry, clamped to three quarters
        of the token's lifetime when that is known, and never within
        ``min_refresh_interval`` of the refresh that produced the snapshot.
        """
        cached = self._advisory_at
        if cached[0] is not snapshot:
            cached = self._advisory_at = (snapshot, self.advisory_deadline(snapshot))
        return now >= cached[1]

    def advisory_deadline(self, snapshot: Snapshot) -> float:
        """R3: the epoch second from which an advisory refresh of ``snapshot`` is due."""
        if self.advisory is None or snapshot.expires_at is None:
            return math.inf
        window = self.advisory
        lifetime = _lifetime(snapshot)
        if lifetime is not None and window > lifetime * 0.75:
            window = lifetime * 0.75
        deadline = snapshot.expires_at - window
        if snapshot.refreshed_at is not None:
            deadline = max(deadline, snapshot.refreshed_at + self.min_refresh_interval)
        return deadline

    def storm_guarded(self, version: int, now: float) -> bool:
        """R11: was the replay right after the refresh to ``version`` rejected recently?"""
        return version == self._rejected_version and now < self._rejected_until

    def note_rejected_replay(self, version: int, now: float) -> None:
        """R11: remember that a replay with ``version`` was rejected at ``now``."""
        # One tuple-free pair of attribute writes; a torn read can only make the
        # guard skip once, never loop.
        self._rejected_until = now + self.min_refresh_interval
        self._rejected_version = version

    def forget_rejections(self) -> None:
        """Clear the R11 record (after ``update_credentials``)."""
        self._rejected_version = -1
        self._rejected_until = 0.0


def _lifetime(snapshot: Snapshot) -> float | None:
    """The token's lifetime: ``expires_in`` when given, else the span from the refresh
    that produced it to its absolute expiry (a provider sending only ``expires_at``)."""
    if snapshot.lifetime is not None:
        return snapshot.lifetime
    if snapshot.refreshed_at is not None and snapshot.expires_at is not None:
        return max(snapshot.expires_at - snapshot.refreshed_at, 0.0)
    return None


def _same_origin(request: Any, response: Any) -> bool:
    try:
        final = response.request.url
    except RuntimeError:  # a response built by hand, without its request
        return True
    url = request.url
    return (final.scheme, final.host, final.port) == (url.scheme, url.host, url.port)


def prepare(decisions: Decisions, request: Any) -> tuple[Snapshot, bool]:
    """R1, R2, R10: the first decision for an in-scope request, with no I/O.

    Returns:
        ``(snapshot, True)`` when the request may go out now (the snapshot has been
        applied to it), or ``(snapshot, False)`` when ``snapshot`` must be refreshed
        first.

    Raises:
        HttpxRefreshError: whatever ``fail_fast`` returns, or an applier's error.
    """
    blocked = decisions.fail_fast()
    if blocked is not None:
        raise blocked
    snapshot = decisions.current()
    if decisions.needs_refresh(snapshot, decisions.clock()):
        return snapshot, False
    decisions.apply(request, snapshot.credentials)
    return snapshot, True


def flow(decisions: Decisions, request: Any) -> Generator[Send | Refresh, Any, None]:
    """Decide what happens to one request (DESIGN R1, R2, R4, R5, R11, R12).

    Yields :class:`Send` and :class:`Refresh` actions; see the module docstring.

    Raises:
        RequestNotReplayable: a replay is needed but the body cannot be re-read
            (after the refresh has happened).
        HttpxRefreshError: whatever ``fail_fast`` returns, or an applier's error.
    """
    if not decisions.in_scope(request):
        yield Send(request)
        return
    snapshot, ready = prepare(decisions, request)
    if not ready:
        snapshot = yield Refresh(snapshot.version, "proactive")
        if not decisions.in_scope(request):  # R13: the refresh moved the credentials elsewhere
            yield Send(request)
            return
        decisions.apply(request, snapshot.credentials)
    rewind = decisions.rewind_plan(request)
    response = yield Send(request)
    if decisions.is_rejected(response):
        yield from after_rejection(decisions, request, snapshot, rewind, response)


def after_rejection(
    decisions: Decisions, request: Any, snapshot: Snapshot, rewind: Rewind, response: Any
) -> Generator[Send | Refresh, Any, None]:
    """R4, R5, R11, R12: what follows a rejected response to ``request`` sent with ``snapshot``.

    Refresh (or adopt a newer version), then replay once. A rejected replay goes back to
    the caller, except when its rejection is explained by the token's age: the replayed
    token had expired (client clock, with the leeway) by the time the response arrived, a
    newer version existed by then, or the token predates the first rejection (another
    request's refresh made it, none ran for this one: likely revoked meanwhile, not R11's
    "replay right after a refresh"). Such a request gets exactly one more replay with the
    current version, or the next one (joining a flight; a refresh only when no newer
    version exists and R11 allows it). Never more: at most two replays per request, one
    refresh per version. A rejection that none of these explain is remembered for R11. A
    replay rejected by another origin (it was redirected there) goes back to the caller
    as it is: not a verdict on these credentials (R13).
    Every rejected replay is reported to ``decisions.rejected_replay``.

    Raises:
        RequestNotReplayable: the body cannot be re-read (raised after the refresh).
    """
    if not _same_origin(request, response):
        return  # R13: a rejection from another origin (after a redirect) is not ours
    if decisions.current().version == snapshot.version and decisions.storm_guarded(
        snapshot.version, decisions.clock()
    ):
        return
    asked = decisions.clock()  # when the rejection arrived
    # R5: if someone already replaced this version, the flight control hands back
    # the newer snapshot without refreshing again.
    fresh = yield Refresh(snapshot.version, "reactive")
    for attempt in (1, 2):
        if not decisions.in_scope(request):
            return  # R13: the new credentials belong to another origin now; no replay here
        if not rewind():
            raise RequestNotReplayable(
                f"{request.method} {request.url.copy_with(query=None)} was rejected with "
                f"{response.status_code}; the credentials were refreshed, but its body cannot "
                "be sent again (use buffer_body=True, or send it again yourself)"
            )
        decisions.apply(request, fresh.credentials)
        sent = decisions.clock()
        response = yield Send(request, replay=True)
        if not decisions.is_rejected(response) or not _same_origin(request, response):
            return  # accepted, or (R13) rejected by another origin after a redirect: not ours
        rejection = _explain(decisions, request, response, fresh, sent, asked)
        if attempt == 1 and rejection.reason in _AGED:
            current = decisions.current()
            if current.version == fresh.version and decisions.storm_guarded(
                fresh.version, decisions.clock()
            ):
                rejection = dataclasses.replace(rejection, again=False)
            else:
                rejection = dataclasses.replace(rejection, again=True)
        _report(decisions, rejection)
        if rejection.reason not in _AGED:
            # R11: the token's age does not explain it; refreshing again will not help.
            decisions.note_rejected_replay(fresh.version, decisions.clock())
        if not rejection.again:
            return
        asked = decisions.clock()
        fresh = yield Refresh(fresh.version, "reactive")


#: Reasons that the token's age explains: one more replay, no R11 guard.
_AGED = frozenset({"expired", "superseded", "revoked"})


def _explain(
    decisions: Decisions, request: Any, response: Any, fresh: Snapshot, sent: float, asked: float
) -> RejectedReplay:
    """R4: the likely reason why the replay sent with ``fresh`` at ``sent`` was rejected;
    ``asked``: when the rejection that led to this replay arrived."""
    now = decisions.clock()
    current = decisions.current().version
    remaining = None if fresh.expires_at is None else fresh.expires_at - now
    if remaining is not None and (remaining <= 0 or decisions.needs_refresh(fresh, now)):
        # Expired, or due for a refresh (inside the leeway), by the time the answer came.
        reason = "expired"
    elif current > fresh.version:
        reason = "superseded"
    elif fresh.refreshed_at is not None and fresh.refreshed_at < asked:
        reason = "revoked"  # it predates the rejection: no refresh ran for this request
    elif remaining is None:
        reason = "unknown"
    else:
        reason = "fresh"
    status = response.status_code
    return RejectedReplay(
        request, status, fresh.version, reason, now - sent, remaining, current, False
    )


def _report(decisions: Decisions, rejection: RejectedReplay) -> None:
    hook = decisions.rejected_replay
    if hook is not None:
        hook(rejection)
