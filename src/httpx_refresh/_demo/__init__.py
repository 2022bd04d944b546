"""The demo: an embedded OAuth 2.0 provider, and a workload that drives ``RefreshAuth`` through it.

:class:`DemoProvider` is a small OAuth 2.0 authorization server plus a protected API, a Starlette
app served by uvicorn on 127.0.0.1 in its own thread (real sockets). It rotates refresh tokens
and detects their reuse the way real providers do, so a client that ever sends a rotated-away
refresh token loses the whole grant.

:func:`run_demo` obtains a grant, then sends thousands of requests through one ``RefreshAuth``
with ``OAuth2Refresh`` across several token lifetimes and one server-side revocation of every
access token, and checks that no request failed and that the token endpoint saw at most one call
per refresh period plus one per revocation.

The async run spreads its connections over several ``httpx.AsyncClient`` sharing the one
``RefreshAuth`` (see ``CONNECTIONS_PER_CLIENT``); the sync run shares one ``httpx.Client``
between its threads.

uvicorn and starlette come from the ``demo`` extra (``pip install 'httpx-refresh[demo]'``); they
are imported only when a provider starts, so ``import httpx_refresh`` never needs them.
"""

from ._provider import (
    CONNECTIONS_PER_CLIENT,
    DEFAULT_API_KEY,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PORT,
    DEFAULT_TOKEN_LATENCY,
    DEFAULT_TTL,
    RUN_SPAN_TTLS,
    DemoProvider,
    DemoUnavailable,
    ProviderCounters,
    ServedApp,
    connect_grant,
    require_server,
    serve_asgi,
    token_active,
)
from ._workload import (
    CALIBRATION_FACTOR,
    DemoOptions,
    DemoReport,
    RevocationTimer,
    Schedule,
    allowed_token_calls,
    calibrated_ttl,
    default_leeway,
    format_report,
    plan_schedule,
    refresh_interval,
    run_demo,
    serve_forever,
    verdict,
)

__all__ = [
    "CALIBRATION_FACTOR",
    "ServedApp",
    "serve_asgi",
    "CONNECTIONS_PER_CLIENT",
    "DEFAULT_API_KEY",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PORT",
    "DEFAULT_TOKEN_LATENCY",
    "DEFAULT_TTL",
    "DemoOptions",
    "DemoProvider",
    "DemoReport",
    "DemoUnavailable",
    "ProviderCounters",
    "RUN_SPAN_TTLS",
    "RevocationTimer",
    "Schedule",
    "allowed_token_calls",
    "calibrated_ttl",
    "connect_grant",
    "default_leeway",
    "format_report",
    "plan_schedule",
    "refresh_interval",
    "require_server",
    "run_demo",
    "serve_forever",
    "token_active",
    "verdict",
]
