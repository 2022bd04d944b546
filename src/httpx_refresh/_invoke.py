"""Calling user callables (refreshers, ``on_refresh`` hooks) from either flavour (DESIGN R14).

- From async code: an object with an ``acall`` coroutine method, or an async
  function, is awaited; a plain function runs in a worker thread
  (``anyio.to_thread``) so it never blocks the event loop.
- From sync code: a plain function is called directly, or, under a time limit, in a
  worker thread waited on at most that long; an async function runs on a private
  event loop in a short-lived thread (so it works even when the calling thread
  already runs a loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

try:  # how anyio and others tell which async library runs (optional since anyio 4.12)
    import sniffio
except ImportError:  # pragma: no cover - then only the thread's running loop tells
    sniffio = None  # type: ignore[assignment]

__all__ = ["call_async", "call_sync", "is_async_callable"]


def is_async_callable(fn: Any) -> bool:
    """Tell whether calling ``fn`` returns a coroutine (functions, partials, callable objects)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the object's own __call__
    )


#: Seconds an async callable on a private loop gets, past its time limit, to finish
#: being cancelled before its thread is abandoned (it blocked its own loop).
_GRACE = 1.0


def _run_in_thread(
    job: Callable[[], Any],
    name: str,
    wait: float | None = None,
    on_late: Callable[[Any], None] | None = None,
    *,
    limit: float | None = None,
    on_end: Callable[[], None] | None = None,
) -> Any:
    """Run ``job`` in a daemon thread (with this context's variables) and return its result.

    Waits at most ``wait`` seconds (``None``: until it ends); past that, or if the calling
    thread is interrupted while it waits (KeyboardInterrupt), the thread is abandoned: a
    value ``job`` still returns is passed to ``on_late`` from that thread. ``on_end()`` is
    called from that thread once ``job`` has ended (after ``on_late``), abandoned or not.

    Raises:
        TimeoutError: ``job`` did not finish within ``wait`` seconds (the message says
            ``limit`` seconds, the caller's time limit, when given).
    """
    lock = threading.Lock()
    box: dict[str, Any] = {"abandoned": False}
    # The caller's context variables go along (e.g. which HTTP library the refresh
    # uses), except the marker of a running event loop, as anyio.to_thread does: the
    # thread runs none (or its own).
    context = contextvars.copy_context()
    if sniffio is not None:
        context.run(sniffio.current_async_library_cvar.set, None)

    def target() -> None:
        try:
            value = context.run(job)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            with lock:
                box["error"] = exc
            _ended(on_end)
            return
        with lock:
            late = box["abandoned"]
            box["value"] = value
        try:
            if late and on_late is not None:
                on_late(value)
        finally:
            _ended(on_end)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    try:
        thread.join(wait)
    except BaseException:  # e.g. KeyboardInterrupt while waiting: hand a late result over
        with lock:
            if "value" not in box:
                box["abandoned"] = True
        raise
    with lock:
        if "value" not in box and "error" not in box:
            box["abandoned"] = True
            raise TimeoutError(f"no result within {wait if limit is None else limit:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _ended(on_end: Callable[[], None] | None) -> None:
    if on_end is not None:
        on_end()


def call_sync(
    fn: Any,
    *args: Any,
    time_limit: float | None = None,
    on_late: Callable[[Any], None] | None = None,
    on_end: Callable[[], None] | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``fn`` from sync code and return its result.

    Without ``time_limit``, a plain ``fn`` is called in this thread. With one (seconds),
    it runs in a worker thread that is waited on at most that long: the caller then gets
    ``TimeoutError`` and the thread is abandoned (threads cannot be interrupted); a
    value it still returns is passed to ``on_late`` from that thread (so a late result,
    e.g. a rotated refresh token, is not lost).

    An async ``fn`` (or an awaitable result) is awaited on a private event loop in
    its own thread, cancelled after ``time_limit`` seconds (``TimeoutError``); if it
    blocks its loop so that cancelling cannot stop it, the thread is abandoned
    shortly after as above. With ``on_late`` it is never cancelled: past ``time_limit``
    its thread is abandoned at once and a value it still returns goes to ``on_late``.
    If the calling thread is interrupted while it waits (KeyboardInterrupt), a value
    still produced is passed to ``on_late`` likewise.

    ``on_end()`` is called once ``fn`` has truly ended (returned or raised), in whichever
    thread that happens: the caller's, or later an abandoned thread's (after ``on_late``).
    """
    if is_async_callable(fn):
        awaitable: Any = None
    elif time_limit is not None:
        started = time.monotonic()
        result = _run_in_thread(
            functools.partial(fn, *args, **kwargs),
            "httpx-refresh-worker",
            time_limit,
            on_late,
            on_end=on_end,
        )
        if not inspect.isawaitable(result):
            return result
        # A plain function that returned an awaitable: awaited below, in what time is left.
        awaitable = result
        time_limit = max(time_limit - (time.monotonic() - started), 0.0)
    else:
        try:
            awaitable = fn(*args, **kwargs)
        except BaseException:
            _ended(on_end)
            raise
        if not inspect.isawaitable(awaitable):
            _ended(on_end)
            return awaitable

    # With on_late, the call is never cancelled (R7: a token exchange the server may have
    # answered with a rotated refresh token runs to its own end): past time_limit its
    # thread is abandoned and a late value goes to on_late. Without, it is cancelled,
    # and the thread abandoned only if it blocks its own loop past the grace period.
    cancel_after = None if on_late is not None else time_limit

    async def run() -> Any:
        with anyio.fail_after(cancel_after):
            if awaitable is None:
                return await fn(*args, **kwargs)
            return await awaitable

    wait = None if time_limit is None else time_limit + (0.0 if on_late else _GRACE)
    return _run_in_thread(
        functools.partial(anyio.run, run),
        "httpx-refresh-private-loop",
        wait,
        on_late,
        limit=time_limit,
        on_end=on_end,
    )


async def call_async(
    fn: Any,
    *args: Any,
    time_limit: float | None = None,
    on_late: Callable[[Any], None] | None = None,
    on_end: Callable[[], None] | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``fn`` from async code and return its result.

    Awaits ``fn.acall`` or an async ``fn``, cancelled after ``time_limit`` seconds
    (``TimeoutError``) when one is given. With ``on_late`` as well, it is not cancelled
    but detached: it runs on in a task of the event loop's own (asyncio task, trio system
    task) after the caller got ``TimeoutError`` (or was cancelled), and a value it still
    returns is passed to ``on_late`` in a worker thread (R7: a token exchange that the
    server may already have answered with a rotated refresh token is never cut short;
    it ends under its own timeout). A plain function runs in a worker thread;
    threads cannot be interrupted, so after ``time_limit`` the caller gets
    ``TimeoutError`` and the thread is abandoned: if it still returns a value later,
    ``on_late(value)`` is called from that thread (so a late result is not lost).
    ``on_end()`` is called once ``fn`` has truly ended, there too when its thread was
    abandoned (after ``on_late``).
    """
    acall = getattr(fn, "acall", None)
    coroutine_fn = acall if inspect.iscoroutinefunction(acall) else None
    if coroutine_fn is None and is_async_callable(fn):
        coroutine_fn = fn
    if coroutine_fn is not None:
        job = functools.partial(coroutine_fn, *args, **kwargs)
        if time_limit is not None and on_late is not None:
            return await _run_detached(job, time_limit, on_late, on_end)
        try:
            with anyio.fail_after(time_limit):
                return await job()
        finally:
            _ended(on_end)
    if time_limit is None:
        try:
            result = await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
        finally:  # not abandoned: the thread has ended
            _ended(on_end)
    else:
        result = await _run_in_thread_bounded(
            functools.partial(fn, *args, **kwargs), time_limit, on_late, on_end
        )
    if inspect.isawaitable(result):
        return await result
    return result


async def _run_in_thread_bounded(
    job: Callable[[], Any],
    time_limit: float,
    on_late: Callable[[Any], None] | None,
    on_end: Callable[[], None] | None = None,
) -> Any:
    lock = threading.Lock()
    state: dict[str, Any] = {"abandoned": False, "done": False}

    def run() -> Any:
        try:
            value = job()
            with lock:
                late = state["abandoned"]
                if not late:
                    state["done"] = True
                    state["value"] = value
            if late and on_late is not None:
                on_late(value)
            return value
        finally:
            _ended(on_end)

    try:
        with anyio.fail_after(time_limit):
            return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    except TimeoutError:
        with lock:
            if state["done"]:  # finished just as the time ran out
                return state["value"]
            state["abandoned"] = True
        raise


#: Detached refresher tasks (asyncio keeps only weak references to its tasks).
_DETACHED: set[Any] = set()


def _spawn_detached(job: Callable[[], Any]) -> None:
    """Start ``job`` (an async callable) in a task that no caller's cancel scope reaches:
    a trio system task, or an asyncio task kept alive by :data:`_DETACHED`."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            # With the caller's context variables (e.g. which HTTP library to use), as
            # asyncio's create_task does.
            trio.lowlevel.spawn_system_task(job, context=contextvars.copy_context())
            return
    task = asyncio.get_running_loop().create_task(job())
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)


async def _run_detached(
    job: Callable[[], Any],
    time_limit: float,
    on_late: Callable[[Any], None],
    on_end: Callable[[], None] | None = None,
) -> Any:
    """Await ``job()`` for at most ``time_limit`` seconds without ever cancelling it.

    ``job`` runs in a detached task (see :func:`_spawn_detached`); the caller waits on an
    event. Past ``time_limit`` (or when the caller is cancelled) the caller stops
    waiting and ``job`` runs on: a value it returns then goes to ``on_late`` in a
    worker thread (it may save to a store or call a sync hook). Its errors then are
    dropped (nobody is left to receive them). ``on_end()`` is called once ``job`` has
    truly ended (after ``on_late``).

    Raises:
        TimeoutError: no result within ``time_limit`` seconds.
        BaseException: whatever ``job`` raised in time.
    """
    done = anyio.Event()
    box: dict[str, Any] = {"abandoned": False}
    cancelled = anyio.get_cancelled_exc_class()

    async def runner() -> None:
        try:
            try:
                value = await job()
            except cancelled:
                box["error"] = TimeoutError("the event loop was shut down during the call")
                done.set()
                raise
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                box["error"] = exc
                done.set()
                return
            box["value"] = value
            done.set()
            if box["abandoned"]:
                with contextlib.suppress(Exception):  # on_late logs its own failures
                    await anyio.to_thread.run_sync(on_late, value)
        finally:
            _ended(on_end)

    _spawn_detached(runner)
    try:
        with anyio.move_on_after(time_limit):
            await done.wait()
    finally:
        # One event loop: nothing runs between the wait ending and this check.
        if not done.is_set():
            box["abandoned"] = True
    if not done.is_set():
        raise TimeoutError(f"no result within {time_limit:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]
