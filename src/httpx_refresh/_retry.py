"""The retry policy for one refresh, on tenacity, behind one small function (DESIGN R10).

A refresh (one flight) retries transient failures (network errors, timeouts, 408,
429, 5xx, OAuth ``server_error`` / ``temporarily_unavailable``) with exponential
backoff and jitter, honours ``Retry-After`` up to the cap, and is bounded both in
attempts and in total time. Modelled on stamina: keyword-only options, async sleeps
through ``anyio.sleep`` so trio works, and :func:`set_testing` to drop the waits in
users' own tests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import tenacity

from ._exceptions import RefreshError

__all__ = ["RetryPolicy", "is_transient", "retry_async", "retry_sync", "set_testing"]

logger = logging.getLogger("httpx_refresh")
T = TypeVar("T")

_testing = threading.Event()


def set_testing(enabled: bool = True) -> None:
    """Turn backoff waits off (``True``) or back on, process-wide, for users' own tests.

    Attempts still happen and are counted; only the sleeps between them are skipped.
    Follows stamina's ``set_testing``.
    """
    if enabled:
        _testing.set()
    else:
        _testing.clear()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one refresh retries transient failures (DESIGN R10).

    Args:
        attempts: the most refresher calls per refresh (1 disables retries).
        timeout: seconds; no new attempt starts after this much time since the first.
        wait_initial: seconds before the second attempt (then doubling).
        wait_max: seconds; the cap of one wait, ``Retry-After`` included.
        wait_jitter: seconds; a random amount up to this is added to each wait.
        cooldown: seconds after a refresh failed, not permanently (all its attempts
            spent; a malformed token response too), during which no new refresh
            starts: requests that need one fail at once with the same error, or go out
            with the current token while it is still valid. ``Retry-After`` lengthens
            it, up to 60 s. 0 turns it off.

    Raises:
        ValueError: ``attempts`` < 1 or a negative duration.
    """

    attempts: int = 3
    timeout: float = 10.0
    wait_initial: float = 0.5
    wait_max: float = 5.0
    wait_jitter: float = 0.5
    cooldown: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("timeout", "wait_initial", "wait_max", "wait_jitter", "cooldown"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


def is_transient(exc: BaseException) -> bool:
    """Tell whether a refresher's exception may succeed when tried again.

    ``RefreshError(transient=True)``, httpx (or httpx2) transport errors,
    ``HTTPStatusError`` for 408, 429 or 5xx (a refresher's ``raise_for_status()``) and
    ``TimeoutError`` are transient; everything else is not.
    """
    if isinstance(exc, RefreshError):
        return exc.transient
    if isinstance(exc, TimeoutError):
        return True
    response = getattr(exc, "response", None)
    if type(exc).__name__ == "HTTPStatusError" and response is not None:
        status = getattr(response, "status_code", 0)
        return status in (408, 429) or status >= 500
    return any(
        cls.__name__ == "TransportError" and cls.__module__.split(".")[0] in {"httpx", "httpx2"}
        for cls in type(exc).__mro__
    )


def _retryable(policy: RetryPolicy) -> Callable[[BaseException], bool]:
    def retryable(exc: BaseException) -> bool:
        # A TimeoutError here is the attempt's own time limit: a sync refresher may still
        # be running in its abandoned thread, and a second attempt would present the same
        # refresh token again (rotation would revoke the grant). A refresher can mark an
        # error the same way (``no_retry``), e.g. a response lost after the request went
        # out. A Retry-After beyond wait_max is left to the cooldown, which honours it.
        if not is_transient(exc) or isinstance(exc, TimeoutError):
            return False
        if getattr(exc, "no_retry", False):
            return False
        retry_after = getattr(exc, "retry_after", None)
        return not (isinstance(retry_after, (int, float)) and retry_after > policy.wait_max)

    return retryable


class _Wait(tenacity.wait.wait_base):
    """Exponential backoff with jitter, or the server's ``Retry-After``, capped."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._backoff = tenacity.wait_exponential(
            multiplier=policy.wait_initial, max=policy.wait_max
        ) + tenacity.wait_random(0, policy.wait_jitter)
        self._cap = policy.wait_max

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        if _testing.is_set():
            return 0.0
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after >= 0:
            return float(min(retry_after, self._cap))
        return float(min(self._backoff(retry_state), self._cap))


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
    logger.warning(
        "refresh attempt %d failed (%s); retrying in %.2f s",
        retry_state.attempt_number,
        type(error).__name__ if error is not None else "no result",
        sleep,
    )


def _kwargs(policy: RetryPolicy) -> dict[str, Any]:
    return {
        "stop": tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_before_delay(policy.timeout),
        "wait": _Wait(policy),
        "retry": tenacity.retry_if_exception(_retryable(policy)),
        "before_sleep": _log_retry,
        "reraise": True,
    }


def retry_sync(fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Call ``fn`` until it succeeds, fails permanently, or ``policy`` runs out.

    Returns:
        ``fn``'s result.

    Raises:
        The last exception ``fn`` raised (not a ``tenacity.RetryError``).
    """
    return tenacity.Retrying(**_kwargs(policy))(fn)


async def retry_async(fn: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """Await ``fn()`` with retries as :func:`retry_sync` does, sleeping with ``anyio.sleep``."""
    retrying = tenacity.AsyncRetrying(sleep=anyio.sleep, **_kwargs(policy))
    return await retrying(fn)
