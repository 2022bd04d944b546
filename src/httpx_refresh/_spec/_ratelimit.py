"""Retry rate-limited API requests (429, or a ``rate_limit_exceeded`` response handler).

A transport wrapper, so it sits under the auth flow: a rate-limited request is sent again
with the same credentials, after ``Retry-After`` (RFC 9110 section 10.2.3) or an
exponential backoff with jitter, at most ``policy.attempts`` times and within
``policy.timeout`` seconds. A ``Retry-After`` longer than ``policy.wait_max``, or a body
that cannot be sent again (a generator), returns the rate-limited response at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import tenacity

from .._lib import is_byte_stream
from .._oauth2 import _retry_after
from .._retry import RetryPolicy, _Wait

__all__ = ["AsyncRateLimitTransport", "RateLimitTransport", "default_policy"]

logger = logging.getLogger("httpx_refresh")


def default_policy() -> RetryPolicy:
    """4 attempts within 60 s, waits from 1 s doubling up to 30 s, 1 s jitter."""
    return RetryPolicy(attempts=4, timeout=60.0, wait_initial=1.0, wait_max=30.0, wait_jitter=1.0)


class _RateLimited(Exception):
    def __init__(self, response: httpx.Response, retry_after: float | None) -> None:
        super().__init__("rate limited")
        self.response = response
        self.retry_after = retry_after


def _resendable(request: httpx.Request) -> bool:
    return is_byte_stream(request.stream) or "_content" in request.__dict__


def _log(retry_state: tenacity.RetryCallState) -> None:
    sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
    logger.warning(
        "API request rate limited (attempt %d); sending again in %.2f s",
        retry_state.attempt_number,
        sleep,
    )


class _Policy:
    def __init__(
        self,
        policy: RetryPolicy,
        limited: Callable[[httpx.Response], bool],
        read_all: bool,
    ) -> None:
        self.policy = policy
        self.limited = limited
        self.read_all = read_all

    def kwargs(self) -> dict[str, Any]:
        return {
            "stop": tenacity.stop_after_attempt(self.policy.attempts)
            | tenacity.stop_before_delay(self.policy.timeout),
            "wait": _Wait(self.policy),
            "retry": tenacity.retry_if_exception_type(_RateLimited),
            "before_sleep": _log,
            "reraise": True,
        }

    def check(
        self, request: httpx.Request, response: httpx.Response, resendable: bool
    ) -> httpx.Response:
        """Return ``response``, or raise ``_RateLimited`` to send the request again."""
        if not resendable or not self.limited(response):
            return response
        retry_after = _retry_after(response)
        if retry_after is not None and retry_after > self.policy.wait_max:
            return response
        raise _RateLimited(response, retry_after)

    def needs_body(self, response: httpx.Response) -> bool:
        return self.read_all or response.status_code == 429


class RateLimitTransport:
    """Wraps a sync transport of httpx or httpx2; see the module docstring.

    Args:
        inner: the transport that sends.
        policy: attempts, time and waits (:class:`~httpx_refresh.RetryPolicy`).
        limited: tells whether a (read) response is rate limited.
        read_all: read every response body (the spec has ``rate_limit_exceeded``
            handlers, which may look at bodies); otherwise only 429 bodies are read.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        *,
        policy: RetryPolicy,
        limited: Callable[[httpx.Response], bool],
        read_all: bool,
    ) -> None:
        self._inner = inner
        self._policy = _Policy(policy, limited, read_all)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        policy = self._policy
        resendable = _resendable(request)  # decided before the body is consumed

        def attempt() -> httpx.Response:
            response = self._inner.handle_request(request)
            if policy.needs_body(response):
                response.read()
            return policy.check(request, response, resendable)

        try:
            return attempt()  # the common case pays nothing for the retry machinery
        except _RateLimited as first:
            if policy.policy.attempts < 2:
                return first.response
            replayed = [first]  # tenacity's first attempt is the one already made

            def again() -> httpx.Response:
                if replayed:
                    raise replayed.pop()
                return attempt()

        try:
            return tenacity.Retrying(**policy.kwargs())(again)
        except _RateLimited as exc:
            return exc.response

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> RateLimitTransport:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._inner.__exit__(*exc_info)


class AsyncRateLimitTransport:
    """Wraps an async transport of httpx or httpx2; see :class:`RateLimitTransport`.
    Sleeps with ``anyio.sleep``."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        policy: RetryPolicy,
        limited: Callable[[httpx.Response], bool],
        read_all: bool,
    ) -> None:
        self._inner = inner
        self._policy = _Policy(policy, limited, read_all)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        policy = self._policy
        resendable = _resendable(request)  # decided before the body is consumed

        async def attempt() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            if policy.needs_body(response):
                await response.aread()
            return policy.check(request, response, resendable)

        try:
            return await attempt()  # the common case pays nothing for the retry machinery
        except _RateLimited as first:
            if policy.policy.attempts < 2:
                return first.response
            replayed = [first]  # tenacity's first attempt is the one already made

            async def again() -> httpx.Response:
                if replayed:
                    raise replayed.pop()
                return await attempt()

        try:
            return await tenacity.AsyncRetrying(sleep=anyio.sleep, **policy.kwargs())(again)
        except _RateLimited as exc:
            return exc.response

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> AsyncRateLimitTransport:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._inner.__aexit__(*exc_info)
