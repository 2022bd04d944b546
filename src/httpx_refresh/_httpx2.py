"""``RefreshAuth`` for httpx2: the shared core with httpx2's ``Auth`` as the base."""

from __future__ import annotations

try:
    import httpx2
except ImportError:  # pragma: no cover - the extra is missing
    raise ImportError(
        "httpx_refresh.httpx2 needs httpx2: pip install 'httpx-refresh[httpx2]' "
        "(httpx2 needs Python 3.11 or later)"
    ) from None

from ._auth import _RefreshAuthBase

__all__ = ["RefreshAuth"]


class RefreshAuth(_RefreshAuthBase, httpx2.Auth):
    __doc__ = (_RefreshAuthBase.__doc__ or "").replace("``httpx.", "``httpx2.")
    _lib = httpx2
