"""A real, certified OpenID Provider (panva/oidc-provider) for the interop tests (issue 7).

``node provider.mjs 0`` runs on 127.0.0.1 on a free port, one process per test module.
The tests skip when ``node`` or ``tests/interop/node_modules`` is missing (run ``npm ci``
in ``tests/interop``), unless ``HTTPX_REFRESH_REQUIRE_INTEROP=1``, which makes them fail.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import httpx
import pytest

HERE = Path(__file__).resolve().parent
READY_TIMEOUT = 20.0

#: Must match CLIENTS in provider.mjs.
CLIENTS: dict[str, dict[str, str]] = {
    "basic": {
        "client_id": "interop-basic",
        "client_secret": "b4sic+secret%41:with:colons+%2B",
        "client_auth": "basic",
    },
    "post": {
        "client_id": "interop-post",
        "client_secret": "p0st-secret-for-form-body-auth",
        "client_auth": "body",
    },
}


@dataclass(repr=False)
class OIDCProvider:
    """A running ``provider.mjs``: its issuer URL, clients and helpers to drive it."""

    issuer: str
    clients: dict[str, dict[str, str]]
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # never the client secrets
        return f"OIDCProvider(issuer={self.issuer!r}, pid={self.process.pid})"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    def client_kwargs(self, name: str) -> dict[str, str]:
        """``client_id``, ``client_secret`` and ``client_auth`` for a refresher."""
        return dict(self.clients[name])

    def grants(self) -> dict[str, dict[str, int]]:
        """Token-endpoint event counters, ``{"success"|"error": {"<grant_type> <client_id>": n}}``.

        The provider records an event before it sends the token response, so a count read
        after a refresh returned includes that refresh.
        """
        response = httpx.get(f"{self.issuer}/_test/grants", timeout=10)
        response.raise_for_status()
        counts: dict[str, dict[str, int]] = response.json()
        return counts

    def count(self, outcome: str, grant_type: str, client: str) -> int:
        client_id = self.clients[client]["client_id"]
        return self.grants()[outcome].get(f"{grant_type} {client_id}", 0)

    def authorize(self, client: str, scope: str = "openid offline_access api") -> dict[str, Any]:
        """Run the authorization code flow (PKCE, ``prompt=consent``) without a browser.

        Returns the token response of the code exchange (it has a refresh token because
        ``offline_access`` was granted with consent).
        """
        settings = self.clients[client]
        redirect_uri = f"{self.issuer}/cb"
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        state = secrets.token_urlsafe(8)
        with httpx.Client(base_url=self.issuer, timeout=10) as browser:
            response = browser.get(
                "/auth",
                params={
                    "client_id": settings["client_id"],
                    "response_type": "code",
                    "redirect_uri": redirect_uri,
                    "scope": scope,
                    "prompt": "consent",
                    "state": state,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                },
            )
            for _ in range(10):  # /auth -> /interaction/uid -> /auth/uid -> /cb?code=...
                assert response.status_code in (302, 303), response.status_code
                location = str(response.url.join(response.headers["location"]))
                if location.startswith(redirect_uri + "?"):
                    break
                response = browser.get(location)
            else:
                raise AssertionError("the authorization request did not reach the redirect_uri")
            query = parse_qs(urlsplit(location).query)
            assert query.get("state") == [state]
            assert "code" in query, sorted(query)
            form = {
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            }
            headers: dict[str, str] = {}
            if settings["client_auth"] == "basic":
                headers["Authorization"] = _basic(settings)
            else:
                form["client_id"] = settings["client_id"]
                form["client_secret"] = settings["client_secret"]
            token = browser.post("/token", data=form, headers=headers)
            assert token.status_code == 200, token.status_code
            fields: dict[str, Any] = token.json()
            assert fields.get("refresh_token"), "no refresh token issued"
            return fields

    def introspect(self, client: str, token: str) -> dict[str, Any]:
        """Introspect ``token`` (RFC 7662) as ``client``."""
        settings = self.clients[client]
        form = {"token": token}
        headers: dict[str, str] = {}
        if settings["client_auth"] == "basic":
            headers["Authorization"] = _basic(settings)
        else:
            form["client_id"] = settings["client_id"]
            form["client_secret"] = settings["client_secret"]
        response = httpx.post(
            f"{self.issuer}/token/introspection", data=form, headers=headers, timeout=10
        )
        assert response.status_code == 200, response.status_code
        fields: dict[str, Any] = response.json()
        return fields

    def wait_until_rejected(self, client: str, access_token: str) -> None:
        """Block until the provider's clock has passed the access token's ``exp``.

        The wait is for the real expiry (``exp`` from introspection, ttl 3 s,
        ``clockTolerance`` 0), then the protected resource must answer 401.
        """
        fields = self.introspect(client, access_token)
        assert fields.get("active") is True, "the access token is not active"
        delay = float(fields["exp"]) - time.time() + 0.05
        assert delay < 10, "the access token lives longer than the tests expect"
        if delay > 0:
            time.sleep(delay)
        response = httpx.get(
            f"{self.issuer}/api/items",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=10,
        )
        assert response.status_code == 401, response.status_code
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'

    def revoke(self, client: str, token: str, hint: str = "refresh_token") -> None:
        """Revoke ``token`` at the revocation endpoint (RFC 7009) as ``client``."""
        settings = self.clients[client]
        response = httpx.post(
            f"{self.issuer}/token/revocation",
            data={
                "token": token,
                "token_type_hint": hint,
                "client_id": settings["client_id"],
                "client_secret": settings["client_secret"],
            }
            if settings["client_auth"] == "body"
            else {"token": token, "token_type_hint": hint},
            headers={}
            if settings["client_auth"] == "body"
            else {"Authorization": _basic(settings)},
            timeout=10,
        )
        assert response.status_code == 200, response.status_code


def _basic(settings: dict[str, str]) -> str:
    """RFC 6749 section 2.3.1 Basic value, built independently of the library under test."""
    raw = f"{quote_plus(settings['client_id'])}:{quote_plus(settings['client_secret'])}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def _unavailable(reason: str) -> None:
    if os.environ.get("HTTPX_REFRESH_REQUIRE_INTEROP") == "1":
        pytest.fail(f"{reason} (HTTPX_REFRESH_REQUIRE_INTEROP=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCProvider]:
    """A fresh ``node provider.mjs`` for each test module; terminated at teardown."""
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed (the oidc-provider interop tests need Node.js)")
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        _unavailable("tests/interop/node_modules is missing: run `npm ci` in tests/interop")
    assert node is not None
    stderr_path = tmp_path_factory.mktemp("oidc-provider") / "stderr.log"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [node, str(HERE / "provider.mjs"), "0"],
            cwd=HERE,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            encoding="utf-8",
        )
    lines: list[str] = []
    ready = threading.Event()
    issuer: list[str] = []

    def drain() -> None:
        # Keep reading so that the provider never blocks on a full pipe.
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            if not ready.is_set() and line.startswith("READY "):
                issuer.append(line.split(" ", 1)[1].strip())
                ready.set()
                continue
            lines.append(line)
        ready.set()  # the process exited: stop waiting

    reader = threading.Thread(target=drain, name="oidc-provider-stdout", daemon=True)
    reader.start()
    try:
        if not ready.wait(READY_TIMEOUT) or not issuer:
            log = stderr_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            pytest.fail(
                f"oidc-provider did not print READY within {READY_TIMEOUT:.0f} s "
                f"(exit code {process.poll()}); stderr:\n{log}"
            )
        yield OIDCProvider(issuer=issuer[0], clients=CLIENTS, process=process, lines=lines)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
