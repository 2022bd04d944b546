"""The connection works if the item list can be read."""

import httpx


def test(api_client: httpx.Client) -> bool:
    """``api_client`` is the connection's own client: it refreshes the session as needed."""
    response = api_client.get("/api/items")
    return response.status_code == 200 and bool(response.json().get("items"))
