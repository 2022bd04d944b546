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
"""

from __future__ import annotations

import copy
import os
import pickle
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

from ._credentials import scrub

__all__ = ["after_fork", "check_picklable", "copy_part", "describe", "part_error"]


class _ForkAware(Protocol):
    def _after_fork(self) -> None: ...


# Live objects whose state must be renewed in a forked child (weak: no lifetime change).
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for item in list(_LIVE):
        item._after_fork()


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
