"""Unit tests for the appliers ``bearer``, ``headers`` and ``query_param`` (DESIGN R1).

Appliers are called directly on hand-built ``httpx.Request`` objects, and through
``RefreshAuth`` with ``httpx.MockTransport`` to check what a replay carries (sync client, and
async client on asyncio and trio).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from servers import OAuthServer

import httpx_refresh as hr

URL = "https://api.example.com/items"
ACCESS_1 = "at-one-4f2c9a7d1e"
ACCESS_2 = "at-two-8b3e6d0c5a"
REFRESH_1 = "rt-one-2d9f7c4b1a"
CLIENT_SECRET = "cs-9d8c7b6a5f4e"
SECRETS = {"ACCESS_1": ACCESS_1, "REFRESH_1": REFRESH_1, "CLIENT_SECRET": CLIENT_SECRET}


def leaked(*texts: str) -> list[str]:
    """Names of the secrets found in ``texts`` (never their values)."""
    return sorted({name for name, value in SECRETS.items() for text in texts if value in text})


# -- bearer ----------------------------------------------------------------------------------


def test_R1_bearer_sets_authorization() -> None:
    """RFC 6750 section 2.1: ``Authorization: Bearer <access_token>``."""
    request = httpx.Request("GET", URL)
    hr.bearer()(request, {"access_token": ACCESS_1})
    assert request.headers["Authorization"] == f"Bearer {ACCESS_1}"


def test_R1_bearer_replaces_an_existing_authorization_header() -> None:
    """The applier overwrites a stale header (e.g. on a replay); it never adds a second one."""
    request = httpx.Request("GET", URL, headers={"Authorization": f"Bearer {ACCESS_1}"})
    hr.bearer()(request, {"access_token": ACCESS_2})
    assert request.headers.get_list("Authorization") == [f"Bearer {ACCESS_2}"]


def test_R1_bearer_custom_key_header_and_scheme() -> None:
    """``key``, ``header`` and ``scheme`` are configurable; ``scheme=""`` sends the bare value."""
    request = httpx.Request("GET", URL)
    hr.bearer("id_token", header="X-Auth", scheme="Token")(request, {"id_token": "idt-1234"})
    hr.bearer("api_key", header="X-Api-Key", scheme="")(request, {"api_key": 12345})
    assert request.headers["X-Auth"] == "Token idt-1234"
    assert request.headers["X-Api-Key"] == "12345"
    assert "Authorization" not in request.headers


# -- headers -----------------------------------------------------------------------------------


def test_R1_headers_sets_several_headers_from_one_snapshot() -> None:
    """R1 / C05: every templated header comes from the one mapping passed in."""
    apply = hr.headers(
        {
            "Authorization": "Token {access_token}",
            "X-Tenant": "{tenant_id}",
            "X-Realm": "realm={realmId};region={region}",
            "X-Literal": "{{not a field}}",
        }
    )
    request = httpx.Request("GET", URL, headers={"X-Tenant": "stale"})
    apply(
        request,
        {"access_token": ACCESS_1, "tenant_id": "t-1", "realmId": 42, "region": "eu"},
    )
    assert request.headers["Authorization"] == f"Token {ACCESS_1}"
    assert request.headers.get_list("X-Tenant") == ["t-1"]
    assert request.headers["X-Realm"] == "realm=42;region=eu"
    assert request.headers["X-Literal"] == "{not a field}"


@pytest.mark.parametrize(
    "template",
    ["{}", "{0}", "{access_token.upper}", "{access_token[0]}", "{access_token!r}", "{x:>10}"],
)
def test_R1_headers_rejects_invalid_template_fields_at_construction(template: str) -> None:
    """Template fields must be plain keys; anything else is a ValueError at once, before any
    request (attribute and index lookups would let a template reach into objects)."""
    with pytest.raises(ValueError, match="template fields"):
        hr.headers({"Authorization": template})


def test_R1_headers_missing_key_sets_no_header_and_hides_values() -> None:
    """R1: a missing key raises HttpxRefreshError before any header is set (never half a
    snapshot on the request); the message names the key, never a value."""
    apply = hr.headers({"Authorization": "Bearer {access_token}", "X-Tenant": "{tenant_id}"})
    request = httpx.Request("GET", URL)
    with pytest.raises(hr.HttpxRefreshError) as info:
        apply(request, {"access_token": ACCESS_1, "refresh_token": REFRESH_1})
    assert "tenant_id" in str(info.value)
    assert "Authorization" not in request.headers
    assert "X-Tenant" not in request.headers
    assert leaked(str(info.value), repr(info.value)) == []


# -- query_param --------------------------------------------------------------------------------


def test_R1_query_param_replaces_an_existing_value() -> None:
    """The value replaces an earlier one with the same name; other parameters stay."""
    request = httpx.Request("GET", URL, params={"api_key": "old", "page": "2"})
    hr.query_param("api_key")(request, {"access_token": ACCESS_1})
    assert request.url.params.get_list("api_key") == [ACCESS_1]
    assert request.url.params["page"] == "2"
    hr.query_param("api_key")(request, {"access_token": ACCESS_2})
    assert request.url.params.get_list("api_key") == [ACCESS_2]
    assert request.url.params.get_list("page") == ["2"]


def test_R1_query_param_custom_key() -> None:
    """``key`` chooses the credentials field."""
    request = httpx.Request("GET", URL)
    hr.query_param("key", key="api_key")(request, {"api_key": "k-1"})
    assert request.url.params["key"] == "k-1"


def _query_api(seen: list[httpx.URL]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if request.url.params.get_list("api_key") == [ACCESS_2]:
            return httpx.Response(200)
        return httpx.Response(401)

    return httpx.MockTransport(handler)


def _query_auth() -> hr.RefreshAuth:
    return hr.RefreshAuth(
        {"access_token": ACCESS_1, "refresh_token": REFRESH_1},
        lambda **kwargs: {"access_token": ACCESS_2},
        apply=hr.query_param("api_key"),
    )


def _check_replayed_urls(seen: list[httpx.URL]) -> None:
    assert len(seen) == 2
    assert seen[0].params.get_list("api_key") == [ACCESS_1]
    assert seen[1].params.get_list("api_key") == [ACCESS_2]
    for url in seen:
        assert url.params.get_list("page") == ["2"]


def test_R4_query_param_is_not_duplicated_on_replay_sync() -> None:
    """R4 / R1: after a 401 the replay carries exactly one ``api_key``, the new one."""
    seen: list[httpx.URL] = []
    with httpx.Client(auth=_query_auth(), transport=_query_api(seen)) as client:
        response = client.get(URL, params={"page": "2", "api_key": "user-supplied"})
    assert response.status_code == 200
    _check_replayed_urls(seen)


@pytest.mark.anyio
async def test_R4_query_param_is_not_duplicated_on_replay_async() -> None:
    """R4 / R1: as the sync case, through AsyncClient on asyncio and trio."""
    seen: list[httpx.URL] = []
    with anyio.fail_after(10):
        async with httpx.AsyncClient(auth=_query_auth(), transport=_query_api(seen)) as client:
            response = await client.get(URL, params={"page": "2"})
    assert response.status_code == 200
    _check_replayed_urls(seen)


# -- missing keys -------------------------------------------------------------------------------


APPLIERS = {
    "bearer": hr.bearer(),
    "headers": hr.headers({"Authorization": "Bearer {access_token}"}),
    "query_param": hr.query_param("api_key"),
}


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("bearer", "missing"),
        ("bearer", None),
        ("bearer", ""),
        ("headers", "missing"),
        ("headers", None),
        ("query_param", "missing"),
        ("query_param", None),
        ("query_param", ""),
    ],
)
def test_missing_key_raises_without_secret_in_message(kind: str, value: Any) -> None:
    """A missing or ``None`` key (and an empty token for bearer / query_param) is an
    HttpxRefreshError naming the key, with no credential value in its message or repr, and
    the request untouched. ``None`` must never be sent as the text ``"None"``."""
    apply = APPLIERS[kind]
    credentials: dict[str, Any] = {
        "refresh_token": REFRESH_1,
        "client_secret": CLIENT_SECRET,
        "note": ACCESS_1,
    }
    if value != "missing":
        credentials["access_token"] = value
    request = httpx.Request("GET", URL)
    with pytest.raises(hr.HttpxRefreshError) as info:
        apply(request, credentials)
    assert "access_token" in str(info.value)
    assert leaked(str(info.value), repr(info.value)) == []
    assert "Authorization" not in request.headers
    assert request.url.query == b""


@pytest.mark.parametrize(
    "apply",
    [
        hr.bearer(),
        hr.headers({"Authorization": "Bearer {access_token}", "X-Tenant": "{tenant}"}),
        hr.query_param("api_key"),
    ],
    ids=["bearer", "headers", "query_param"],
)
def test_applier_repr_holds_no_secret(apply: Any) -> None:
    """Appliers describe their configuration, never a credential value."""
    request = httpx.Request("GET", URL)
    apply(request, {"access_token": ACCESS_1, "tenant": "t"})
    assert leaked(repr(apply)) == []
    assert repr(apply)


# -- golang/oauth2#113: token_type "bearer" -------------------------------------------------


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", None], ids=["lower", "upper", "absent"])
@pytest.mark.parametrize("flavour", ["sync", "asyncio", "trio"])
def test_golang_oauth2_113_token_type_in_any_case_still_sends_capital_bearer(
    flavour: str, token_type: str | None, run_server: Callable[[Any], str]
) -> None:
    """golang/oauth2#113: the token endpoint answered ``"token_type": "bearer"`` (the value is
    case-insensitive, RFC 6749 section 5.1), the client copied it into ``Authorization:
    bearer ...``, and an API that matches ``Bearer`` exactly (RFC 6750 section 2.1) rejected
    every request. ``bearer()`` writes its own scheme word whatever ``token_type`` says, or
    when it is absent: against such a strict API the replay after the refresh succeeds
    (1 token call, 2 API calls: the rejected one and the replay)."""
    server = OAuthServer(token_type=token_type)
    url = run_server(server.app)
    auth = hr.RefreshAuth(
        server.initial_credentials(revoked=True),
        hr.OAuth2Refresh(f"{url}/token", client_id="c", client_secret=CLIENT_SECRET),
    )
    if flavour == "sync":
        with httpx.Client(auth=auth) as client:
            status = client.get(f"{url}/items").status_code
    else:

        async def main() -> int:
            with anyio.fail_after(15):
                async with httpx.AsyncClient(auth=auth) as client:
                    return (await client.get(f"{url}/items")).status_code

        status = anyio.run(main, backend=flavour)
    assert status == 200
    assert server.token_calls == 1
    assert [(hit.gen, hit.status) for hit in server.hits] == [(0, 401), (1, 200)]
    # Merged as given (R8: an absent token_type keeps the initial "Bearer").
    assert auth.credentials["token_type"] == (token_type or "Bearer")


# -- hostile values: typed errors, never the value, never a wrong token --------------------------

APPLIERS_BY_KIND = {
    "bearer": hr.bearer(),
    "headers": hr.headers({"Authorization": "Bearer {access_token}", "X-Tenant": "{tenant}"}),
    "query_param": hr.query_param("api_key"),
}


@pytest.mark.parametrize("kind", APPLIERS_BY_KIND)
def test_R1_token_with_a_lone_surrogate_is_a_typed_error_that_hides_it(kind: str) -> None:
    """A token with a lone surrogate (a JSON ``"\\udc00"`` escape from a provider, or a custom
    refresher) cannot be encoded. It used to escape as ``UnicodeEncodeError``, whose
    ``.object`` is the whole header value, token included; now an HttpxRefreshError that
    names the header or parameter only, and the request is untouched."""
    token = ACCESS_1 + "\udc00"
    request = httpx.Request("GET", URL)
    with pytest.raises(hr.HttpxRefreshError) as info:
        APPLIERS_BY_KIND[kind](request, {"access_token": token, "tenant": "t"})
    assert type(info.value) is hr.HttpxRefreshError
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert leaked(str(info.value), repr(info.value)) == []
    assert "authorization" not in request.headers
    assert request.url.query == b""


def test_R1_query_param_with_a_1_mb_token_is_a_typed_error() -> None:
    """A 1 MB value makes a URL httpx refuses (``httpx.InvalidURL``, a foreign type that
    used to reach the caller); now an HttpxRefreshError and the URL is untouched."""
    request = httpx.Request("GET", URL)
    with pytest.raises(hr.HttpxRefreshError, match="api_key query parameter") as info:
        hr.query_param("api_key")(request, {"access_token": "a" * 1_000_000})
    assert "aaaa" not in str(info.value)
    assert request.url == httpx.URL(URL)


@pytest.mark.parametrize("kind", ["bearer", "query_param"])
@pytest.mark.parametrize(
    "value", [ACCESS_1.encode(), [ACCESS_1], True, 1.5], ids=["bytes", "list", "bool", "float"]
)
def test_R1_token_that_is_not_a_string_is_refused_not_sent_as_its_repr(
    kind: str, value: Any
) -> None:
    """A careless caller's ``b"..."`` token (read from a file in binary mode) used to go
    out as ``Bearer b'at-...'`` (a 401, a refresh and a replay for nothing); a list as
    ``['...']``, a bool as ``True``. Now an HttpxRefreshError naming the key and the type,
    never the value; an integer still goes out as its digits."""
    request = httpx.Request("GET", URL)
    with pytest.raises(hr.HttpxRefreshError, match=type(value).__name__) as info:
        APPLIERS_BY_KIND[kind](request, {"access_token": value})
    assert leaked(str(info.value), repr(info.value)) == []
    assert "authorization" not in request.headers
    assert request.url.query == b""


def test_R1_bearer_cache_under_16_threads_never_gives_another_versions_token() -> None:
    """R1: ``bearer()`` keeps the header of the last token it checked (one per version).
    16 threads share one applier, each applying 2,000 times from 8 credential versions in
    turn, including equal tokens built as different ``str`` objects: every request carries
    exactly its own snapshot's token. Guards the cache's single-tuple write: a cache kept
    in two attributes can pair one version's token with another's header."""
    import threading

    apply = hr.bearer()
    versions = [{"access_token": "".join(["at-", str(n % 4), "-", "x" * 40])} for n in range(8)]
    assert versions[0]["access_token"] == versions[4]["access_token"]
    assert versions[0]["access_token"] is not versions[4]["access_token"]
    start = threading.Barrier(16)
    wrong: list[int] = []

    def worker(offset: int) -> None:
        start.wait(timeout=10)
        for i in range(2_000):
            credentials = versions[(i + offset) % 8]
            request = httpx.Request("GET", URL)
            apply(request, credentials)
            if request.headers["authorization"] != "Bearer " + credentials["access_token"]:
                wrong.append(i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == []
