"""``RefreshAuth`` for httpx2: the shared core with httpx2's ``Auth`` as the base."""

from __future__ import annotations

import httpx2

from ._auth import _RefreshAuthBase

__all__ = ["RefreshAuth"]


class RefreshAuth(_RefreshAuthBase, httpx2.Auth):
    __doc__ = (_RefreshAuthBase.__doc__ or "").replace("``httpx.", "``httpx2.")
    _lib = httpx2
