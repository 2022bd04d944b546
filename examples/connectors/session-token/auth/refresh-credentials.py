"""Exchange the connection's API key for a session token (POST /session)."""

from typing import Any

import httpx

import httpx_refresh as hr


def refresh_credentials(credentials: dict[str, Any], api_client: httpx.Client) -> dict[str, Any]:
    """Return ``{"access_token": <session token>, "expires_in": <seconds>}``.

    ``api_client`` is a plain client on the connector's base URI (no refresh of its own).
    A wrong API key is permanent: the user must reconnect with a new one.
    """
    response = api_client.post("/session", headers={"X-API-Key": credentials["apiKey"]})
    if response.status_code in (401, 403):
        raise hr.ReauthorizationRequired(
            "the API key was rejected", status_code=response.status_code
        )
    response.raise_for_status()  # 5xx and 429 are retried by httpx-refresh
    body = response.json()
    return {"access_token": body["session_token"], "expires_in": body["expires_in"]}
