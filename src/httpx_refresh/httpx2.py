"""httpx-refresh for httpx2, the maintained, API-compatible fork of httpx.

``httpx2.Client`` and ``httpx2.AsyncClient`` accept only an ``httpx2.Auth``; this module's
:class:`RefreshAuth` is one. It is the same object as ``httpx_refresh.RefreshAuth`` (one
decision core) with httpx2's ``Auth`` as its base, and its refreshes run with httpx2: the
built-in refreshers (``OAuth2Refresh``, ``ClientCredentialsRefresh``) call the token
endpoint with an httpx2 client. Install with ``pip install 'httpx-refresh[httpx2]'``::

    import httpx2
    from httpx_refresh.httpx2 import RefreshAuth
    from httpx_refresh import OAuth2Refresh

    auth = RefreshAuth(credentials, OAuth2Refresh(token_url, client_id=..., client_secret=...))
    async with httpx2.AsyncClient(auth=auth) as client:
        ...

Everything else (refreshers, stores, errors, connectors) comes from ``httpx_refresh``.
"""

from __future__ import annotations

from ._httpx2 import RefreshAuth

__all__ = ["RefreshAuth"]
