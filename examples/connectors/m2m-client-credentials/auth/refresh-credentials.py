"""Fetch an access token with the client_credentials grant (RFC 6749 section 4.4)."""

from typing import Any

import httpx_refresh as hr


async def refresh_credentials(connection_parameters: dict[str, Any]) -> dict[str, Any]:
    """An async method: httpx-refresh awaits it (sync clients run it on a private loop)."""
    base = connection_parameters.get("baseUri") or "https://telemetry.fleetwise.example"
    grant = hr.ClientCredentialsRefresh(
        f"{base}/token",
        client_id=connection_parameters["clientId"],
        client_secret=connection_parameters["clientSecret"],
    )
    return await grant.acall(credentials={}, connector_parameters={}, connection_parameters={})
