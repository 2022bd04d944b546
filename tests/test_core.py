"""Unit tests for the sans-IO decision core (``_core.flow``) and ``FlightControl`` bookkeeping.

The generator is driven by hand with hand-built ``httpx.Request`` / ``httpx.Response`` objects,
a fake ``current`` and an injected clock, as httpx's own ``tests/test_auth.py`` does.
Rules: DESIGN R1, R2, R4, R5, R10, R11, R12.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Collection, Generator, Mapping
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

import httpx_refresh as hr
from httpx_refresh import _core
from httpx_refresh._credentials import Snapshot, make_snapshot
from httpx_refresh._flight import Flight, FlightControl

T0 = 1_700_000_000.0
URL = "https://api.example.com/items"
ACCESS_1 = "at-one-4f2c9a7d1e"
ACCESS_2 = "at-two-8b3e6d0c5a"
ACCESS_3 = "at-three-0a9b8c7d6e"
REFRESH_1 = "rt-one-2d9f7c4b1a"

Flow = Generator[Any, Any, None]


class Clock:
    """An injected clock: epoch seconds, moved by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class State:
    """The fake ``current``: holds a snapshot and counts reads."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.reads = 0

    def current(self) -> Snapshot:
        self.reads += 1
        return self.snapshot


def snap(version: int, *, now: float = T0, **credentials: Any) -> Snapshot:
    return make_snapshot(credentials, version, now=now)


def make_decisions(
    state: State,
    clock: Clock,
    *,
    apply: Callable[[Any, Mapping[str, Any]], None] | None = None,
    refresh_on: Collection[int] | Callable[[Any], bool] = (401,),
    leeway: float = 30.0,
    min_refresh_interval: float = 5.0,
    token_key: str | None = "access_token",
    replayable: bool = True,
    in_scope: bool = True,
    fail_fast: hr.HttpxRefreshError | None = None,
    rejected: list[_core.RejectedReplay] | None = None,
) -> _core.Decisions:
    return _core.Decisions(
        current=state.current,
        apply=apply if apply is not None else hr.bearer(),
        refresh_on=refresh_on,
        leeway=leeway,
        min_refresh_interval=min_refresh_interval,
        token_key=token_key,
        clock=clock,
        rewind_plan=lambda request: lambda: replayable,
        in_scope=lambda request: in_scope,
        fail_fast=lambda: fail_fast,
        rejected_replay=None if rejected is None else rejected.append,
    )


def request() -> httpx.Request:
    return httpx.Request("GET", URL)


def response(status: int, req: httpx.Request, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=req, **kwargs)


def finish(flow: Flow, value: Any) -> None:
    """Send ``value`` and assert the flow yields nothing more."""
    with pytest.raises(StopIteration):
        flow.send(value)


# -- fresh path ----------------------------------------------------------------------------


def test_fresh_token_sends_once_and_is_done() -> None:
    """R2 / R4: a fresh token gives exactly one Send with its header, and a 200 ends the flow."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1, expires_in=3600))
    req = request()
    flow = _core.flow(make_decisions(state, clock), req)
    action = next(flow)
    assert action == _core.Send(req, replay=False)
    assert req.headers["Authorization"] == f"Bearer {ACCESS_1}"
    finish(flow, response(200, req))


# -- R2 proactive ----------------------------------------------------------------------------


@pytest.mark.parametrize("remaining", [30.0, 29.0, 0.0, -100.0])
def test_R2_expiry_within_leeway_refreshes_before_sending(remaining: float) -> None:
    """R2: ``now >= expires_at - leeway`` yields a proactive Refresh before any Send."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1, expires_at=T0 + remaining))
    req = request()
    flow = _core.flow(make_decisions(state, clock, leeway=30.0), req)
    action = next(flow)
    assert action == _core.Refresh(0, "proactive")
    action = flow.send(snap(1, access_token=ACCESS_2, expires_in=3600))
    assert action == _core.Send(req, replay=False)
    assert req.headers["Authorization"] == f"Bearer {ACCESS_2}"
    finish(flow, response(200, req))


def test_R2_expiry_outside_leeway_sends_without_refresh() -> None:
    """R2: just outside the leeway window the token is used as it is."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1, expires_at=T0 + 30.5))
    req = request()
    flow = _core.flow(make_decisions(state, clock, leeway=30.0), req)
    assert next(flow) == _core.Send(req, replay=False)
    finish(flow, response(200, req))


@pytest.mark.parametrize(
    "credentials",
    [
        {"access_token": ACCESS_1},
        {"access_token": ACCESS_1, "expires_in": "abc"},
        {"access_token": ACCESS_1, "expires_at": "not a date"},
    ],
    ids=["no-expiry", "bad-expires_in", "bad-expires_at"],
)
def test_R2_unknown_expiry_never_refreshes_proactively(credentials: dict[str, Any]) -> None:
    """R2 / C13: with unknown expiry, even ten years later, the token is sent (reactive only)."""
    clock = Clock(T0 + 10 * 365 * 86400)
    state = State(make_snapshot(credentials, 0, now=T0))
    req = request()
    flow = _core.flow(make_decisions(state, clock), req)
    assert next(flow) == _core.Send(req, replay=False)
    assert req.headers["Authorization"] == f"Bearer {ACCESS_1}"
    finish(flow, response(200, req))


@pytest.mark.parametrize(
    "credentials",
    [{"refresh_token": REFRESH_1}, {"access_token": "", "refresh_token": REFRESH_1}, {}],
    ids=["missing", "empty", "nothing"],
)
def test_R2_no_access_token_refreshes_before_sending(credentials: dict[str, Any]) -> None:
    """R2: with no usable token, refresh first instead of sending an unauthenticated request."""
    clock = Clock()
    state = State(make_snapshot(credentials, 0, now=T0))
    req = request()
    flow = _core.flow(make_decisions(state, clock), req)
    assert next(flow) == _core.Refresh(0, "proactive")
    assert "Authorization" not in req.headers
    assert flow.send(snap(1, access_token=ACCESS_2)) == _core.Send(req, replay=False)
    assert req.headers["Authorization"] == f"Bearer {ACCESS_2}"
    finish(flow, response(200, req))


def test_R2_token_key_none_disables_the_no_token_check() -> None:
    """R2: ``token_key=None`` sends without a token (e.g. an API key applied elsewhere)."""
    clock = Clock()
    state = State(snap(0, api_key="k"))
    req = request()
    flow = _core.flow(make_decisions(state, clock, token_key=None, apply=lambda r, c: None), req)
    assert next(flow) == _core.Send(req, replay=False)
    finish(flow, response(200, req))


@pytest.mark.parametrize(("elapsed", "refresh"), [(1.0, False), (2.4, False), (2.5, True)])
def test_R2_leeway_clamped_to_half_of_a_5s_lifetime(elapsed: float, refresh: bool) -> None:
    """R2: a 5 s token with leeway 30 s refreshes only from half its lifetime (2.5 s) on."""
    clock = Clock(T0 + elapsed)
    state = State(snap(0, now=T0, access_token=ACCESS_1, expires_in=5))
    req = request()
    action = next(_core.flow(make_decisions(state, clock, leeway=30.0), req))
    if refresh:
        assert action == _core.Refresh(0, "proactive")
    else:
        assert action == _core.Send(req, replay=False)


def test_R2_5s_token_is_not_refreshed_on_every_request() -> None:
    """R2: ten requests 1 s apart with 5 s tokens (leeway 30 s) refresh 3 times, not 10."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1, expires_in=5))
    decisions = make_decisions(state, clock, leeway=30.0)
    refreshes = 0
    for second in range(10):
        clock.now = T0 + second
        req = request()
        flow = _core.flow(decisions, req)
        action = next(flow)
        if isinstance(action, _core.Refresh):
            refreshes += 1
            state.snapshot = snap(
                state.snapshot.version + 1,
                now=clock.now,
                access_token=f"at-{second}-xx",
                expires_in=5,
            )
            action = flow.send(state.snapshot)
        assert action == _core.Send(req, replay=False)
        finish(flow, response(200, req))
    assert refreshes == 3  # at +3 s, +6 s and +9 s


def test_R2_leeway_not_clamped_when_lifetime_unknown() -> None:
    """R2: the clamp needs the lifetime; with only ``expires_at`` the full leeway applies."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1, expires_at=T0 + 5))
    req = request()
    assert next(_core.flow(make_decisions(state, clock, leeway=30.0), req)) == _core.Refresh(
        0, "proactive"
    )


# -- R4 reactive -------------------------------------------------------------------------------


def test_R4_401_refreshes_then_replays_exactly_once() -> None:
    """R4: a 401 yields one reactive Refresh, then exactly one replay with the new token."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    req = request()
    flow = _core.flow(make_decisions(state, clock), req)
    assert next(flow) == _core.Send(req, replay=False)
    assert flow.send(response(401, req)) == _core.Refresh(0, "reactive")
    assert flow.send(snap(1, access_token=ACCESS_2)) == _core.Send(req, replay=True)
    assert req.headers["Authorization"] == f"Bearer {ACCESS_2}"
    finish(flow, response(200, req))


def test_R4_401_on_the_replay_goes_back_to_the_caller_no_loop() -> None:
    """R4 / C20: a rejected replay ends the flow: no second Refresh, no second replay."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    req = request()
    flow = _core.flow(make_decisions(state, clock), req)
    actions = [next(flow)]
    actions.append(flow.send(response(401, req)))
    actions.append(flow.send(snap(1, access_token=ACCESS_2)))
    finish(flow, response(401, req))
    assert [type(a) for a in actions] == [_core.Send, _core.Refresh, _core.Send]
    assert sum(isinstance(a, _core.Send) and a.replay for a in actions) == 1


def _replay_rejected(
    flow: Flow, req: httpx.Request, state: State, new: Snapshot, clock: Clock, delay: float
) -> Any:
    """Sent request 401, the refresh gives ``new``, the replay's 401 comes ``delay`` s later."""
    assert next(flow) == _core.Send(req, replay=False)
    assert flow.send(response(401, req)) == _core.Refresh(state.snapshot.version, "reactive")
    state.snapshot = new
    assert flow.send(new) == _core.Send(req, replay=True)
    clock.now += delay
    return flow.send(response(401, req))


def _two_second_tokens() -> tuple[
    Clock, State, _core.Decisions, list[_core.RejectedReplay], httpx.Request, Flow, Snapshot
]:
    """A flow over 2 s tokens (leeway clamped to 1 s), and the refresh result ``one``."""
    clock = Clock()
    rejected: list[_core.RejectedReplay] = []
    state = State(snap(0, access_token=ACCESS_1, expires_in=2))
    decisions = make_decisions(state, clock, rejected=rejected)
    req = request()
    one = snap(1, now=clock.now, access_token=ACCESS_2, expires_in=2)
    return clock, state, decisions, rejected, req, _core.flow(decisions, req), one


def test_R4_replay_whose_token_expired_in_transit_gets_exactly_one_more_replay() -> None:
    """R4: 2 s tokens (leeway clamped to 1 s); the replay's 401 arrives 1.5 s after it was
    sent, past the replayed token's deadline: one more Refresh of that version, one more
    replay with the next one, reported as "expired" with ``again``; a second rejection goes
    back to the caller (no third replay, no third refresh)."""
    clock, state, decisions, rejected, req, flow, one = _two_second_tokens()
    action = _replay_rejected(flow, req, state, one, clock, 1.5)
    assert action == _core.Refresh(1, "reactive")
    assert [(r.version, r.reason, r.again, r.status) for r in rejected] == [
        (1, "expired", True, 401)
    ]
    assert rejected[0].elapsed == pytest.approx(1.5)
    assert rejected[0].remaining == pytest.approx(0.5)
    state.snapshot = snap(2, now=clock.now, access_token=ACCESS_3, expires_in=2)
    assert flow.send(state.snapshot) == _core.Send(req, replay=True)
    assert req.headers["Authorization"] == f"Bearer {ACCESS_3}"
    clock.now += 3.0  # expired in transit again: still no third replay
    finish(flow, response(401, req))
    assert [(r.version, r.reason, r.again) for r in rejected] == [
        (1, "expired", True),
        (2, "expired", False),
    ]
    # An expiry explains the rejections: no R11 guard on either version.
    assert not decisions.storm_guarded(1, clock())
    assert not decisions.storm_guarded(2, clock())


def test_R4_replay_past_an_expiry_that_was_due_on_arrival_counts_as_expired() -> None:
    """R4 / R2: a refresh gave a token already due (``expires_at`` rounded into the past),
    so R2 waits ``min_refresh_interval`` before refreshing it proactively; its replay
    rejected after that expiry is still "expired" (one more replay), never "fresh"."""
    clock, state, decisions, rejected, req, flow, _ = _two_second_tokens()
    due = make_snapshot(
        {"access_token": ACCESS_2, "expires_at": T0 - 0.0005}, 1, now=T0, refreshed=True
    )
    assert not decisions.needs_refresh(due, T0 + 0.02)
    assert _replay_rejected(flow, req, state, due, clock, 0.02) == _core.Refresh(1, "reactive")
    assert [(r.reason, r.again) for r in rejected] == [("expired", True)]


def test_R4_second_replay_that_succeeds_ends_the_flow() -> None:
    """R4: after one more replay answered 200 the flow ends; one report, ``again`` set."""
    clock = Clock()
    rejected: list[_core.RejectedReplay] = []
    state = State(snap(0, access_token=ACCESS_1, expires_in=2))
    req = request()
    flow = _core.flow(make_decisions(state, clock, rejected=rejected), req)
    one = snap(1, now=clock.now, access_token=ACCESS_2, expires_in=2)
    assert _replay_rejected(flow, req, state, one, clock, 2.5) == _core.Refresh(1, "reactive")
    assert flow.send(snap(2, now=clock.now, access_token=ACCESS_3, expires_in=2)) == _core.Send(
        req, replay=True
    )
    finish(flow, response(200, req))
    assert [(r.reason, r.again) for r in rejected] == [("expired", True)]
    assert rejected[0].remaining == pytest.approx(-0.5)


def test_R4_replay_rejected_after_a_newer_version_appeared_is_replayed_with_it() -> None:
    """R4 / R5: the replay's token is fresh but a newer version exists when its 401 comes
    (e.g. a revocation and another refresh): one more replay, with the newer version (the
    Refresh hands it back without refreshing, R5)."""
    clock = Clock()
    rejected: list[_core.RejectedReplay] = []
    state = State(snap(0, access_token=ACCESS_1, expires_in=3600))
    req = request()
    flow = _core.flow(make_decisions(state, clock, rejected=rejected), req)
    assert next(flow) == _core.Send(req, replay=False)
    assert flow.send(response(401, req)) == _core.Refresh(0, "reactive")
    state.snapshot = snap(1, access_token=ACCESS_2, expires_in=3600)
    assert flow.send(state.snapshot) == _core.Send(req, replay=True)
    state.snapshot = snap(2, access_token=ACCESS_3, expires_in=3600)  # replaced meanwhile
    assert flow.send(response(401, req)) == _core.Refresh(1, "reactive")
    assert [(r.reason, r.current, r.again) for r in rejected] == [("superseded", 2, True)]
    assert flow.send(state.snapshot) == _core.Send(req, replay=True)
    assert req.headers["Authorization"] == f"Bearer {ACCESS_3}"
    finish(flow, response(200, req))


def test_R4_R11_replay_with_a_version_made_before_the_rejection_is_revoked_not_guarded() -> None:
    """R4 / R11: a late 401 is replayed with a version that another request's refresh made
    before it arrived (no refresh ran for this one); that replay is rejected too, e.g. after
    a server-side revocation: "revoked", one more replay after a refresh of that version,
    and no R11 guard (it was not "the replay right after a refresh"), so the other
    requests rejected with it still get their refresh."""
    clock = Clock()
    rejected: list[_core.RejectedReplay] = []
    state = State(snap(0, access_token=ACCESS_1, expires_in=3600))
    decisions = make_decisions(state, clock, rejected=rejected)
    req = request()
    flow = _core.flow(decisions, req)
    assert next(flow) == _core.Send(req, replay=False)
    made = make_snapshot(
        {"access_token": ACCESS_2, "expires_in": 3600}, 1, now=clock.now, refreshed=True
    )
    state.snapshot = made  # another request's refresh, before this 401 comes back
    clock.now += 1.0
    assert flow.send(response(401, req)) == _core.Refresh(0, "reactive")
    assert flow.send(made) == _core.Send(req, replay=True)
    clock.now += 0.1
    assert flow.send(response(401, req)) == _core.Refresh(1, "reactive")
    assert [(r.version, r.reason, r.again) for r in rejected] == [(1, "revoked", True)]
    assert not decisions.storm_guarded(1, clock())
    state.snapshot = snap(2, now=clock.now, access_token=ACCESS_3, expires_in=3600)
    assert flow.send(state.snapshot) == _core.Send(req, replay=True)
    finish(flow, response(200, req))


@pytest.mark.parametrize("expires_in", [3600, None], ids=["fresh", "unknown"])
def test_R4_C20_replay_rejected_with_a_fresh_token_goes_back_to_the_caller(
    expires_in: int | None,
) -> None:
    """R4 / R11 / C20: a fresh token rejected again (the resource refuses it whatever its
    age): no second replay, reported as "fresh" (or "unknown" expiry), R11 guard set."""
    clock = Clock()
    rejected: list[_core.RejectedReplay] = []
    state = State(snap(0, access_token=ACCESS_1))
    decisions = make_decisions(state, clock, rejected=rejected)
    req = request()
    flow = _core.flow(decisions, req)
    extra = {} if expires_in is None else {"expires_in": expires_in}
    one = snap(1, now=clock.now, access_token=ACCESS_2, **extra)
    with pytest.raises(StopIteration):
        _replay_rejected(flow, req, state, one, clock, 0.2)
    reason = "fresh" if expires_in else "unknown"
    assert [(r.version, r.reason, r.again) for r in rejected] == [(1, reason, False)]
    assert rejected[0].remaining == (None if expires_in is None else pytest.approx(3599.8))
    assert decisions.storm_guarded(1, clock())


def test_R4_R11_expired_replay_of_a_guarded_version_goes_back_to_the_caller() -> None:
    """R4 / R11: one more replay would need a refresh of a version that R11 guards (its
    replay was rejected with a fresh token moments ago): no refresh, the 401 goes back."""
    clock, state, decisions, rejected, req, flow, one = _two_second_tokens()
    decisions.note_rejected_replay(1, clock.now)  # another request's fresh rejection of v1
    with pytest.raises(StopIteration):
        _replay_rejected(flow, req, state, one, clock, 1.5)
    assert [(r.reason, r.again) for r in rejected] == [("expired", False)]


def test_R4_replay_rejected_in_transit_needs_a_replayable_body_again() -> None:
    """R4 / R12: the second replay rewinds the body too; a body that cannot be re-read
    raises RequestNotReplayable instead of a second replay."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1, expires_in=2))
    rewinds = iter([True, False])
    decisions = make_decisions(state, clock)
    decisions.rewind_plan = lambda request: lambda: next(rewinds)
    req = request()
    flow = _core.flow(decisions, req)
    one = snap(1, now=clock.now, access_token=ACCESS_2, expires_in=2)
    assert _replay_rejected(flow, req, state, one, clock, 1.5) == _core.Refresh(1, "reactive")
    with pytest.raises(hr.RequestNotReplayable):
        flow.send(snap(2, now=clock.now, access_token=ACCESS_3, expires_in=2))


def test_R4_R15_rejected_replay_is_counted_and_logged_once_per_version_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R4 / R15: ``FlightControl.note_rejected_replay`` counts every rejected replay (a
    second replay apart), logs the first of each version and reason at WARNING with the
    likely reason, method and URL without the query, and the rest at DEBUG; no token."""
    control = FlightControl(snap(0, access_token=ACCESS_1), Clock())
    req = httpx.Request("GET", URL + "?api_key=" + ACCESS_1)

    def rejection(version: int, reason: str, again: bool = False) -> _core.RejectedReplay:
        return _core.RejectedReplay(req, 401, version, reason, 1.25, -0.5, version, again)

    caplog.set_level("DEBUG", logger="httpx_refresh")
    control.note_rejected_replay(rejection(3, "expired", again=True), 5.0)
    for _ in range(185):
        control.note_rejected_replay(rejection(3, "expired"), 5.0)
    control.note_rejected_replay(rejection(4, "fresh"), 5.0)
    stats = control.stats()
    assert (stats.rejected_replays, stats.second_replays) == (186, 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert len([r for r in caplog.records if r.levelname == "DEBUG"]) == 185
    assert warnings[0].startswith(
        f"replay of GET {URL} rejected again with 401 (credentials version 3, the replay "
        "took 1.25 s, 0.50 s after its expiry, client clock): the token likely expired in "
        "transit"
    )
    assert "replaying it once more" in warnings[0]
    assert "not a token problem" in warnings[1]
    assert "insufficient scope" in warnings[1]
    assert "not refreshed again for 5 s" in warnings[1]
    text = caplog.text
    assert ACCESS_1 not in text
    assert "api_key" not in text


def test_R15_stats_new_counters_are_keyword_only() -> None:
    """R15: the counters added to ``RefreshStats`` are keyword-only (positional use of the
    first four stays as it was)."""
    stats = hr.RefreshStats(1, 2, 3, 4, rejected_replays=5, second_replays=6)
    assert (stats.rejected_replays, stats.second_replays) == (5, 6)
    with pytest.raises(TypeError):
        hr.RefreshStats(1, 2, 3, 4, 5)  # type: ignore[misc]


def test_R4_403_does_not_refresh_by_default() -> None:
    """R4: a 403 goes back to the caller unless configured."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    req = request()
    flow = _core.flow(make_decisions(state, clock), req)
    next(flow)
    finish(flow, response(403, req))


def test_R4_403_refreshes_when_configured() -> None:
    """R4: ``refresh_on=(401, 403)`` makes a 403 refresh and replay."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    req = request()
    flow = _core.flow(make_decisions(state, clock, refresh_on=(401, 403)), req)
    next(flow)
    assert flow.send(response(403, req)) == _core.Refresh(0, "reactive")
    assert flow.send(snap(1, access_token=ACCESS_2)) == _core.Send(req, replay=True)
    finish(flow, response(200, req))


def test_R4_callable_refresh_on() -> None:
    """R4: a predicate decides; here a 400 with ``error=token_expired`` refreshes, a 401 not."""

    def expired(resp: httpx.Response) -> bool:
        return resp.status_code == 400 and resp.json().get("error") == "token_expired"

    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    decisions = make_decisions(state, clock, refresh_on=expired)

    req = request()
    flow = _core.flow(decisions, req)
    next(flow)
    rejected = response(400, req, json={"error": "token_expired"})
    assert flow.send(rejected) == _core.Refresh(0, "reactive")
    assert flow.send(snap(1, access_token=ACCESS_2)) == _core.Send(req, replay=True)
    finish(flow, response(200, req))

    for other in (response(401, req, json={}), response(400, req, json={"error": "bad"})):
        req = request()
        flow = _core.flow(decisions, req)
        next(flow)
        finish(flow, other)


# -- R5 version carried ----------------------------------------------------------------------


def test_R5_refresh_carries_the_version_the_request_was_sent_with() -> None:
    """R5 / C03: a late 401 asks to replace the version it was sent with, not the current one."""
    clock = Clock()
    state = State(snap(3, access_token=ACCESS_1))
    req = request()
    flow = _core.flow(make_decisions(state, clock), req)
    next(flow)
    state.snapshot = snap(4, access_token=ACCESS_2)  # someone else refreshed meanwhile
    assert flow.send(response(401, req)) == _core.Refresh(3, "reactive")
    assert flow.send(state.snapshot) == _core.Send(req, replay=True)
    assert req.headers["Authorization"] == f"Bearer {ACCESS_2}"
    finish(flow, response(200, req))


def test_R5_proactive_refresh_carries_the_version_read() -> None:
    """R5: a proactive Refresh names the version that was found expired."""
    clock = Clock()
    state = State(snap(8, access_token=ACCESS_1, expires_at=T0 - 1))
    req = request()
    assert next(_core.flow(make_decisions(state, clock), req)) == _core.Refresh(8, "proactive")


# -- R11 no refresh storms ----------------------------------------------------------------------


def _rejected_replay(decisions: _core.Decisions, state: State, new: Snapshot) -> None:
    """Run one flow whose request and replay are both rejected; ``new`` is the refresh result."""
    req = request()
    flow = _core.flow(decisions, req)
    next(flow)
    assert flow.send(response(401, req)) == _core.Refresh(state.snapshot.version, "reactive")
    state.snapshot = new
    assert flow.send(new) == _core.Send(req, replay=True)
    finish(flow, response(401, req))


def _first_action_after_401(decisions: _core.Decisions) -> Any:
    req = request()
    flow = _core.flow(decisions, req)
    next(flow)
    try:
        return flow.send(response(401, req))
    except StopIteration:
        return None


def test_R11_same_version_within_interval_does_not_refresh() -> None:
    """R11 / C20: after a rejected replay with v1, a 401 for v1 within the interval returns."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    decisions = make_decisions(state, clock, min_refresh_interval=5.0)
    _rejected_replay(decisions, state, snap(1, access_token=ACCESS_2))
    for offset in (0.0, 1.0, 4.9):
        clock.now = T0 + offset
        assert _first_action_after_401(decisions) is None, offset


def test_R11_same_version_after_interval_refreshes() -> None:
    """R11: once ``min_refresh_interval`` has passed, that version refreshes normally."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    decisions = make_decisions(state, clock, min_refresh_interval=5.0)
    _rejected_replay(decisions, state, snap(1, access_token=ACCESS_2))
    clock.now = T0 + 5.0
    assert _first_action_after_401(decisions) == _core.Refresh(1, "reactive")


def test_R11_other_version_refreshes_within_interval() -> None:
    """R11: another version (e.g. after ``update_credentials``) refreshes within the interval."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    decisions = make_decisions(state, clock, min_refresh_interval=5.0)
    _rejected_replay(decisions, state, snap(1, access_token=ACCESS_2))
    state.snapshot = snap(2, access_token=ACCESS_3)
    clock.now = T0 + 1.0
    assert _first_action_after_401(decisions) == _core.Refresh(2, "reactive")


def test_R11_older_version_still_gets_its_refresh_request() -> None:
    """R11 / R5: a late 401 for an older version is not guarded; it asks to replace v0."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    decisions = make_decisions(state, clock, min_refresh_interval=5.0)
    req = request()
    late = _core.flow(decisions, req)
    next(late)  # sent with v0, its 401 arrives later
    _rejected_replay(decisions, state, snap(1, access_token=ACCESS_2))
    assert late.send(response(401, req)) == _core.Refresh(0, "reactive")


def test_R11_forget_rejections_clears_the_guard() -> None:
    """R11: ``forget_rejections`` (``update_credentials``) ends the guard at once."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    decisions = make_decisions(state, clock, min_refresh_interval=5.0)
    _rejected_replay(decisions, state, snap(1, access_token=ACCESS_2))
    decisions.forget_rejections()
    assert _first_action_after_401(decisions) == _core.Refresh(1, "reactive")


# -- R12 bodies --------------------------------------------------------------------------------


def test_R12_non_replayable_body_raises_after_the_refresh() -> None:
    """R12 / C10: the refresh still happens, then RequestNotReplayable; never an empty replay.
    The message holds neither a token nor the query string."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    req = httpx.Request("POST", URL + "?api_key=" + ACCESS_1, content=b"body")
    flow = _core.flow(make_decisions(state, clock, replayable=False), req)
    assert next(flow) == _core.Send(req, replay=False)
    assert flow.send(response(401, req)) == _core.Refresh(0, "reactive")
    with pytest.raises(hr.RequestNotReplayable) as info:
        flow.send(snap(1, access_token=ACCESS_2))
    message = str(info.value)
    assert "401" in message
    assert "POST" in message
    texts = (message, repr(info.value))
    assert not any(s in t for s in (ACCESS_1, ACCESS_2) for t in texts), "a token leaked"


def test_R12_rewind_runs_only_after_the_refresh() -> None:
    """R12: the body is prepared for the replay after the refresh, and only when rejected."""
    events: list[str] = []
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))

    def plan(req: Any) -> Callable[[], bool]:
        events.append("plan")

        def rewind() -> bool:
            events.append("rewind")
            return True

        return rewind

    decisions = make_decisions(state, clock)
    decisions.rewind_plan = plan
    req = request()
    flow = _core.flow(decisions, req)
    next(flow)
    assert events == ["plan"]
    flow.send(response(401, req))
    assert events == ["plan"]
    assert flow.send(snap(1, access_token=ACCESS_2)) == _core.Send(req, replay=True)
    assert events == ["plan", "rewind"]


# -- R1 attach -----------------------------------------------------------------------------------


def test_R1_every_header_comes_from_one_snapshot() -> None:
    """R1 / C05: ``current`` is read once per attach; a refresh landing right after that read
    never mixes the new tenant with the old token."""
    clock = Clock()
    old = snap(0, access_token=ACCESS_1, tenant="tenant-1")
    new = snap(1, access_token=ACCESS_2, tenant="tenant-2")

    class Racing(State):
        def current(self) -> Snapshot:
            value = super().current()
            self.snapshot = new  # the refresh completes right after our read
            return value

    racing = Racing(old)
    apply = hr.headers({"Authorization": "Bearer {access_token}", "X-Tenant": "{tenant}"})
    req = request()
    flow = _core.flow(make_decisions(racing, clock, apply=apply), req)
    assert next(flow) == _core.Send(req, replay=False)
    assert racing.reads == 1
    assert req.headers["Authorization"] == f"Bearer {ACCESS_1}"
    assert req.headers["X-Tenant"] == "tenant-1"
    # The replay uses exactly the snapshot the Refresh returned, for every header.
    assert flow.send(response(401, req)) == _core.Refresh(0, "reactive")
    newest = snap(2, access_token=ACCESS_3, tenant="tenant-3")
    racing.snapshot = newest
    assert flow.send(new) == _core.Send(req, replay=True)
    assert req.headers["Authorization"] == f"Bearer {ACCESS_2}"
    assert req.headers["X-Tenant"] == "tenant-2"


def test_R1_applier_receives_the_snapshot_mapping_itself() -> None:
    """R1: the applier gets the snapshot's own read-only mapping, once per send."""
    seen: list[Mapping[str, Any]] = []
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1, tenant="t"))
    req = request()
    flow = _core.flow(make_decisions(state, clock, apply=lambda r, c: seen.append(c)), req)
    next(flow)
    assert len(seen) == 1
    assert seen[0] is state.snapshot.credentials


# -- scope and fail fast -------------------------------------------------------------------------


def test_R13_out_of_scope_request_passes_untouched() -> None:
    """R13: a request outside ``origins`` gets no credentials and its 401 is not refreshed."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1, expires_at=T0 - 1))
    req = request()
    flow = _core.flow(make_decisions(state, clock, in_scope=False), req)
    assert next(flow) == _core.Send(req, replay=False)
    assert "Authorization" not in req.headers
    finish(flow, response(401, req))
    assert state.reads == 0


def test_R10_fail_fast_error_is_raised_before_sending() -> None:
    """R10 / C19: a dead grant makes every request fail before anything is sent."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    dead = hr.ReauthorizationRequired("grant is dead", oauth_error="invalid_grant")
    req = request()
    with pytest.raises(hr.ReauthorizationRequired) as info:
        next(_core.flow(make_decisions(state, clock, fail_fast=dead), req))
    assert info.value.oauth_error == "invalid_grant"
    assert "Authorization" not in req.headers


# -- prepare / after_rejection (the adapter's inlined fast path) -----------------------------


def test_R2_prepare_applies_a_fresh_snapshot_without_actions() -> None:
    """R1 / R2: ``prepare`` (the adapter's fast path) applies one fresh snapshot at once."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1, expires_in=3600))
    req = request()
    snapshot, ready = _core.prepare(make_decisions(state, clock), req)
    assert ready is True
    assert snapshot is state.snapshot
    assert state.reads == 1
    assert req.headers["Authorization"] == f"Bearer {ACCESS_1}"


def test_R2_prepare_leaves_an_expiring_request_untouched() -> None:
    """R2: with the expiry inside the leeway, ``prepare`` asks for a refresh and applies
    nothing (the old token is never sent)."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1, expires_at=T0 + 10))
    req = request()
    snapshot, ready = _core.prepare(make_decisions(state, clock), req)
    assert ready is False
    assert snapshot is state.snapshot
    assert "Authorization" not in req.headers


def test_R10_prepare_fails_fast() -> None:
    """R10: ``prepare`` raises the fail-fast error before reading the credentials."""
    clock = Clock()
    state = State(snap(0, access_token=ACCESS_1))
    dead = hr.ReauthorizationRequired("grant is dead")
    with pytest.raises(hr.ReauthorizationRequired):
        _core.prepare(make_decisions(state, clock, fail_fast=dead), request())
    assert state.reads == 0


def test_R4_after_rejection_refreshes_and_replays_once() -> None:
    """R4 / R5: ``after_rejection`` asks to replace the version sent, then replays once."""
    clock = Clock()
    state = State(snap(5, access_token=ACCESS_1))
    decisions = make_decisions(state, clock)
    req = request()
    snapshot, _ = _core.prepare(decisions, req)
    rejected = response(401, req)
    flow = _core.after_rejection(decisions, req, snapshot, lambda: True, rejected)
    assert next(flow) == _core.Refresh(5, "reactive")
    state.snapshot = snap(6, access_token=ACCESS_2)  # the flight replaced version 5
    assert flow.send(state.snapshot) == _core.Send(req, replay=True)
    assert req.headers["Authorization"] == f"Bearer {ACCESS_2}"
    finish(flow, response(401, req))
    # R11: the rejected replay guards version 6.
    guarded = _core.after_rejection(decisions, req, state.snapshot, bool, rejected)
    with pytest.raises(StopIteration):
        next(guarded)


def test_R11_guard_does_not_block_a_free_replay_with_a_newer_version() -> None:
    """R5 over R11: a late rejection of a guarded version, when a newer version exists,
    is replayed with the newer credentials (no refresh needed) instead of returned."""
    clock = Clock()
    state = State(snap(6, access_token=ACCESS_2))
    decisions = make_decisions(state, clock)
    req = request()
    decisions.note_rejected_replay(6, clock())
    state.snapshot = snap(7, access_token=ACCESS_1)
    flow = _core.after_rejection(
        decisions, req, snap(6, access_token=ACCESS_2), bool, response(401, req)
    )
    assert next(flow) == _core.Refresh(6, "reactive")


def test_R13_rejection_from_another_origin_after_a_redirect_does_not_refresh() -> None:
    """R13: a 401 whose final request went to another origin (a followed redirect) is not a
    rejection of our credentials: no refresh, no replay."""
    clock = Clock()
    state = State(snap(5, access_token=ACCESS_1))
    decisions = make_decisions(state, clock)
    req = request()
    elsewhere = httpx.Response(401, request=httpx.Request("GET", "https://other.test/landing"))
    flow = _core.after_rejection(decisions, req, state.snapshot, bool, elsewhere)
    with pytest.raises(StopIteration):
        next(flow)


@pytest.mark.parametrize(
    ("credentials", "deadline"),
    [
        ({"refresh_token": REFRESH_1}, -math.inf),
        ({"access_token": ACCESS_1}, math.inf),
        ({"access_token": ACCESS_1, "expires_at": T0 + 100}, T0 + 70),
        ({"access_token": ACCESS_1, "expires_in": 5}, T0 + 2.5),
        ({"access_token": ACCESS_1, "expires_in": 100}, T0 + 70),
    ],
    ids=["no-token", "unknown", "expires_at", "clamped", "unclamped"],
)
def test_R2_refresh_deadline(credentials: dict[str, Any], deadline: float) -> None:
    """R2: the deadline is -inf with no token, +inf with unknown expiry, else
    ``expires_at - min(leeway, lifetime / 2)``."""
    state = State(make_snapshot(credentials, 0, now=T0))
    decisions = make_decisions(state, Clock(), leeway=30.0)
    assert decisions.refresh_deadline(state.snapshot) == deadline


# -- FlightControl bookkeeping -----------------------------------------------------------------


def control_at(version: int = 0, **credentials: Any) -> FlightControl:
    creds = credentials or {"access_token": ACCESS_1, "refresh_token": REFRESH_1}
    return FlightControl(make_snapshot(creds, version, now=T0), Clock())


def start(control: FlightControl, version: int) -> Flight:
    """``begin`` that must start a new flight (the caller owns it)."""
    got = control.begin(version)
    assert isinstance(got, tuple), got
    flight, owner = got
    assert owner is True
    return flight


def join(control: FlightControl, version: int) -> Flight:
    """``begin`` that must join the flight in progress."""
    got = control.begin(version)
    assert isinstance(got, tuple), got
    flight, owner = got
    assert owner is False
    return flight


def test_R5_begin_starts_one_flight_and_later_callers_join_it() -> None:
    """R5: the first caller owns the flight; the others join it (counted as deduplicated)."""
    control = control_at()
    flight = start(control, 0)
    for expected_size in (2, 3, 4):
        assert join(control, 0) is flight
        assert flight.size == expected_size
    stats = control.stats()
    assert stats == hr.RefreshStats(refreshes=0, replays=0, deduplicated=3, failures=0)


def test_R5_begin_with_an_older_version_returns_the_current_snapshot() -> None:
    """R5 / C03: a request sent with an older version gets the current snapshot, no flight."""
    control = control_at(2)
    got = control.begin(1)
    assert got is control.snapshot
    assert control.stats().deduplicated == 1
    start(control, 2)


def test_R8_commit_merges_and_bumps_the_version() -> None:
    """R8: commit merges the result into the base credentials and makes version + 1."""
    control = control_at(0, access_token=ACCESS_1, refresh_token=REFRESH_1, realmId="7")
    flight = start(control, 0)
    snapshot, committed = control.commit(flight, {"access_token": ACCESS_2, "expires_in": 60})
    assert committed is True
    assert snapshot.version == 1
    assert snapshot is control.snapshot
    assert dict(snapshot.credentials) == {
        "access_token": ACCESS_2,
        "refresh_token": REFRESH_1,
        "realmId": "7",
        "expires_in": 60,
        "expires_at": T0 + 60,
    }
    control.finish(flight, snapshot, None)
    assert flight.done.is_set()
    assert flight.outcome() is snapshot
    assert control.stats() == hr.RefreshStats(refreshes=1, replays=0, deduplicated=0, failures=0)
    # The flight is over: the next refresh of version 1 starts a new one.
    assert start(control, 1) is not flight


def test_R7_replace_during_a_flight_drops_the_stale_result() -> None:
    """update_credentials during a flight: the stale flight does not commit, and a new
    flight can start for the replaced version at once."""
    control = control_at()
    stale = start(control, 0)
    replaced = control.replace({"access_token": ACCESS_3, "refresh_token": "rt-new-user-9a8b"})
    assert replaced.version == 1
    fresh_flight = start(control, 1)
    snapshot, committed = control.commit(stale, {"access_token": ACCESS_2})
    assert committed is False
    assert snapshot is replaced
    assert control.snapshot.credentials["access_token"] == ACCESS_3
    control.finish(stale, snapshot, None)
    # Finishing the stale flight must not end the new one.
    assert join(control, 1) is fresh_flight


def test_R10_reauthorization_required_makes_the_control_dead_until_replace() -> None:
    """R10 / C19: a permanent failure fails every later begin fast, until replace()."""
    control = control_at()
    flight = start(control, 0)
    error = hr.ReauthorizationRequired(
        "grant is dead", oauth_error="invalid_grant", status_code=400
    )
    control.finish(flight, None, error)
    assert control.stats().failures == 1
    with pytest.raises(hr.ReauthorizationRequired) as info:
        flight.outcome()
    assert info.value.oauth_error == "invalid_grant"
    for _ in range(3):
        with pytest.raises(hr.ReauthorizationRequired) as info:
            control.begin(0)
        assert info.value.oauth_error == "invalid_grant"
        assert info.value.status_code == 400
    assert control.dead is not None
    control.replace({"access_token": ACCESS_3, "refresh_token": "rt-new-user-9a8b"})
    assert control.dead is None
    start(control, 1)


def test_R10_transient_failure_does_not_kill_the_control() -> None:
    """R10: a transient failure is given to the flight's waiters; the next begin tries again."""
    control = control_at()
    flight = start(control, 0)
    control.finish(flight, None, hr.RefreshError("token endpoint answered 503", transient=True))
    assert control.dead is None
    with pytest.raises(hr.RefreshError) as info:
        flight.outcome()
    assert info.value.transient is True
    start(control, 0)


def test_R10_reauthorization_of_a_replaced_version_does_not_kill_the_control() -> None:
    """R10: a stale flight failing permanently after replace() does not block the new grant."""
    control = control_at()
    flight = start(control, 0)
    control.replace({"access_token": ACCESS_3, "refresh_token": "rt-new-user-9a8b"})
    control.finish(flight, None, hr.ReauthorizationRequired("dead", oauth_error="invalid_grant"))
    assert control.dead is None
    start(control, 1)


def test_R15_note_replay_counts() -> None:
    """R15: replays are counted."""
    control = control_at()
    control.note_replay()
    control.note_replay()
    assert control.stats().replays == 2


def test_R10_wait_sync_times_out_with_a_transient_error() -> None:
    """R10: a waiter never hangs: it gives up after its time limit with a transient error."""
    control = control_at()
    flight = start(control, 0)
    with pytest.raises(hr.RefreshError) as info:
        control.wait_sync(flight, 0.05)
    assert info.value.transient is True


def test_R5_wait_sync_many_threads_get_the_same_outcome() -> None:
    """R5 / C05: 32 threads joined to one flight all get its snapshot when it finishes."""
    control = control_at()
    flight = start(control, 0)
    joined = threading.Barrier(33)
    results: list[Snapshot] = []
    lock = threading.Lock()

    def waiter() -> None:
        mine = join(control, 0)
        joined.wait(timeout=10)
        snapshot = control.wait_sync(mine, 10)
        with lock:
            results.append(snapshot)

    threads = [threading.Thread(target=waiter) for _ in range(32)]
    for thread in threads:
        thread.start()
    joined.wait(timeout=10)
    snapshot, committed = control.commit(flight, {"access_token": ACCESS_2})
    assert committed
    control.finish(flight, snapshot, None)
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert len(results) == 32
    assert all(result is snapshot for result in results)
    assert flight.size == 33


@pytest.mark.anyio
@pytest.mark.parametrize("finisher", ["same-loop", "other-thread"])
async def test_R6_wait_async_many_tasks_woken_by_finish(finisher: str) -> None:
    """R5 / R6: 50 tasks wait on one flight; a finish from this loop or from another thread
    wakes all of them with the same outcome (asyncio and trio)."""
    control = control_at()
    flight = start(control, 0)
    results: list[Snapshot] = []
    registered = 0
    all_registered = anyio.Event()

    async def waiter() -> None:
        nonlocal registered
        mine = join(control, 0)
        registered += 1
        if registered == 50:
            all_registered.set()
        results.append(await control.wait_async(mine, 10))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(waiter)
            await all_registered.wait()
            snapshot, _ = control.commit(flight, {"access_token": ACCESS_2})
            if finisher == "same-loop":
                control.finish(flight, snapshot, None)
            else:
                await anyio.to_thread.run_sync(control.finish, flight, snapshot, None)
    assert len(results) == 50
    assert all(result is snapshot for result in results)


@pytest.mark.anyio
async def test_R10_wait_async_failed_flight_gives_every_task_the_error() -> None:
    """R10: all waiters of a failed flight get the same typed error; none hang."""
    control = control_at()
    flight = start(control, 0)
    errors: list[hr.RefreshError] = []

    async def waiter() -> None:
        mine = join(control, 0)
        try:
            await control.wait_async(mine, 10)
        except hr.RefreshError as exc:
            errors.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            error = hr.ReauthorizationRequired("grant is dead", oauth_error="invalid_grant")
            await anyio.to_thread.run_sync(control.finish, flight, None, error)
    assert len(errors) == 20
    assert all(type(e) is hr.ReauthorizationRequired for e in errors)
    assert all(e.oauth_error == "invalid_grant" and str(e) == "grant is dead" for e in errors)


@pytest.mark.anyio
async def test_R10_wait_async_times_out_with_a_transient_error() -> None:
    """R10: an async waiter gives up after its time limit with a transient RefreshError."""
    control = control_at()
    flight = start(control, 0)
    with anyio.fail_after(5), pytest.raises(hr.RefreshError) as info:
        await control.wait_async(flight, 0.05)
    assert info.value.transient is True


@pytest.mark.anyio
async def test_wait_async_on_a_finished_flight_returns_at_once() -> None:
    """A flight that finished before the waiter registered returns its outcome."""
    control = control_at()
    flight = start(control, 0)
    snapshot, _ = control.commit(flight, {"access_token": ACCESS_2})
    control.finish(flight, snapshot, None)
    with anyio.fail_after(5):
        assert await control.wait_async(flight, 10) is snapshot
