"""Which HTTP library a call uses: httpx, or httpx2 (its API-compatible, maintained fork).

The decision logic is the same for both; only the edges differ (the ``Auth`` base class
a client accepts, the clients the built-in refreshers build for the token endpoint). A
``RefreshAuth`` flavour runs its refreshes with :func:`using` its library, so a refresher
that builds clients (``OAuth2Refresh``, ``ClientCredentialsRefresh``) builds them with the
library of the client whose request needed the refresh (:func:`current`).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from collections.abc import Iterator
from types import ModuleType

__all__ = [
    "LIBRARIES",
    "current",
    "default",
    "is_byte_stream",
    "is_url",
    "load",
    "name_of",
    "using",
]

LIBRARIES = ("httpx", "httpx2")

_current: contextvars.ContextVar[ModuleType | None] = contextvars.ContextVar(
    "httpx_refresh_library", default=None
)


def load(name: str) -> ModuleType:
    """Import ``httpx`` or ``httpx2``.

    Raises:
        ValueError: ``name`` is neither.
        ImportError: it is not installed (the message says how to install it).
    """
    if name not in LIBRARIES:
        raise ValueError(f"library must be one of {', '.join(LIBRARIES)}, got {name!r}")
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"{name} is not installed: pip install 'httpx-refresh[{name}]'") from None


def default() -> ModuleType:
    """``httpx`` when it is installed, else ``httpx2``.

    Raises:
        ImportError: neither is installed.
    """
    for name in LIBRARIES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(
        "httpx-refresh needs httpx or httpx2: pip install 'httpx-refresh[httpx]' (or [httpx2])"
    )


def current() -> ModuleType:
    """The library of the refresh running in this context, else :func:`default`."""
    library = _current.get()
    return library if library is not None else default()


def _ours(value: object, name: str) -> bool:
    kind = type(value)
    return kind.__name__ == name and kind.__module__.split(".")[0] in LIBRARIES


def is_invalid_url(error: object) -> bool:
    """An ``httpx.InvalidURL`` or an ``httpx2.InvalidURL``."""
    return _ours(error, "InvalidURL")


def is_url(value: object) -> bool:
    """An ``httpx.URL`` or an ``httpx2.URL``."""
    return _ours(value, "URL")


def is_byte_stream(stream: object) -> bool:
    """An in-memory request body of httpx or httpx2 (``ByteStream``)."""
    return _ours(stream, "ByteStream")


def name_of(library: ModuleType) -> str:
    """``"httpx"`` or ``"httpx2"``."""
    return library.__name__.split(".")[0]


@contextlib.contextmanager
def using(library: ModuleType) -> Iterator[None]:
    """Make ``library`` :func:`current` inside the block (this context and the tasks and
    worker threads it starts)."""
    token = _current.set(library)
    try:
        yield
    finally:
        _current.reset(token)
