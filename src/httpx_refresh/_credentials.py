"""Credentials: immutable snapshots, expiry parsing, merging and redaction.

Pure functions with no I/O and no locks. Expiry follows RFC 6749 section 5.1
(``expires_in``, seconds from the time of the response) and the common
``expires_at`` extension (epoch seconds, epoch milliseconds or ISO 8601).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

__all__ = [
    "Snapshot",
    "fingerprint",
    "make_snapshot",
    "merge_credentials",
    "parse_expires_at",
    "parse_expires_in",
    "scrub",
    "secret_values",
]

logger = logging.getLogger("httpx_refresh")

EXPIRY_KEYS = ("expires_in", "expires_at")
# Credential keys whose values are secrets; every other string value is treated
# as secret too when scrubbing messages, these just come first.
SECRET_KEYS = ("access_token", "refresh_token", "id_token", "client_secret", "password", "api_key")
_EPOCH_MS_THRESHOLD = 100_000_000_000  # 1e11 s is year 5138; above it, it is milliseconds
_EPOCH_US_THRESHOLD = 100_000_000_000_000  # 1e14 ms is year 5138 too; above it, unparseable


def parse_expires_in(value: Any) -> float | None:
    """Parse an RFC 6749 ``expires_in`` value.

    Args:
        value: a number or a numeric string (surrounding spaces allowed), in seconds.

    Returns:
        The lifetime in seconds (never negative), or ``None`` when the value is
        missing or not a finite number.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(number):
        return None
    return max(number, 0.0)


def parse_expires_at(value: Any) -> float | None:
    """Parse an absolute expiry.

    Args:
        value: epoch seconds, epoch milliseconds (a number above 1e11), a numeric
            string of either, or an ISO 8601 date-time (``Z`` or an offset; a naive
            date-time is taken as UTC). Values before 1970 or above 1e14 (e.g.
            microseconds) are not accepted.

    Returns:
        Epoch seconds, or ``None`` when the value is missing or unparseable.
    """
    if value is None or isinstance(value, bool):
        return None
    number: float | None = None
    try:
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            text = value.strip()
            try:
                number = float(text)
            except ValueError:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                number = parsed.timestamp()
        else:
            return None
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(number) or number < 0:
        return None
    if number > _EPOCH_US_THRESHOLD:
        return None  # microseconds or nonsense: not a format we accept
    if number > _EPOCH_MS_THRESHOLD:
        number /= 1000.0
    return number


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One immutable version of the credentials.

    Attributes:
        credentials: read-only mapping of the credentials.
        version: increases by one each time the credentials change.
        expires_at: epoch seconds when the access token expires, or ``None`` if unknown.
        lifetime: the token's lifetime in seconds as ``expires_in`` gave it, if known.
        refreshed_at: epoch seconds when a refresh produced these credentials, or
            ``None`` when they were given (at start or by ``update_credentials``).
        stored: the credential store's version these credentials are (``None``: not
            from a store, or not saved yet).
    """

    credentials: Mapping[str, Any]
    version: int
    expires_at: float | None
    lifetime: float | None
    refreshed_at: float | None = None
    stored: int | None = None

    def __repr__(self) -> str:
        return (
            f"Snapshot(version={self.version}, keys={sorted(self.credentials)!r}, "
            f"expires_at={self.expires_at!r})"
        )


def make_snapshot(
    credentials: Mapping[str, Any],
    version: int,
    *,
    now: float,
    refreshed: bool = False,
    stored: int | None = None,
) -> Snapshot:
    """Freeze ``credentials`` into a :class:`Snapshot`, computing its expiry.

    ``expires_at`` wins when present and parseable; otherwise ``expires_in`` counts
    from ``now`` (epoch seconds). Unparseable values are logged (without the value)
    and the expiry is unknown (DESIGN R2). ``refreshed`` marks credentials that a
    refresh just produced (``refreshed_at = now``).
    """
    frozen = MappingProxyType(dict(credentials))
    lifetime = parse_expires_in(frozen.get("expires_in"))
    if frozen.get("expires_in") is not None and lifetime is None:
        logger.warning("credentials: expires_in is not a number; expiry treated as unknown")
    expires_at = parse_expires_at(frozen.get("expires_at"))
    if frozen.get("expires_at") is not None and expires_at is None:
        logger.warning("credentials: expires_at is not a date or epoch; expiry treated as unknown")
    if expires_at is None and lifetime is not None:
        expires_at = now + lifetime
    return Snapshot(frozen, version, expires_at, lifetime, now if refreshed else None, stored)


def merge_credentials(
    old: Mapping[str, Any], returned: Mapping[str, Any], *, now: float
) -> dict[str, Any]:
    """Merge what a refresh returned into the old credentials (DESIGN R8).

    Shallow: returned keys overwrite, absent keys stay, a returned ``None`` keeps the
    old value, and so does an empty ``refresh_token`` (RFC 6749 section 6 and appendix
    A.17: a refresh token has at least one character; some providers send ``""`` when
    they issue no new one). A new ``access_token`` or new expiry information replaces all the old
    expiry fields, so a new token without ``expires_in`` / ``expires_at`` has an
    unknown expiry. When the refresh gave ``expires_in`` only, an absolute
    ``expires_at`` (epoch seconds) is added so persisted credentials stay meaningful.

    Args:
        old: the credentials the refresh started from.
        returned: the refresher's result.
        now: epoch seconds at which the response was received.

    Returns:
        A new dict; neither input is modified.
    """
    merged = dict(old)
    given = {key: value for key, value in returned.items() if value is not None}
    if given.get("refresh_token") == "":
        # RFC 6749 section 6: the server MAY issue a new refresh token; an empty string
        # is not one (appendix A.17: refresh-token = 1*VSCHAR). Keep the old one.
        del given["refresh_token"]
    if "access_token" in given or any(key in given for key in EXPIRY_KEYS):
        # Expiry belongs to the access token: new token or new expiry information
        # replaces all of the old expiry information (never a stale lifetime).
        for key in EXPIRY_KEYS:
            merged.pop(key, None)
    merged.update(given)
    if "expires_in" in given and "expires_at" not in given:
        lifetime = parse_expires_in(given["expires_in"])
        if lifetime is None:
            logger.warning("refresh: expires_in is not a number; expiry treated as unknown")
        else:
            merged["expires_at"] = round(now + lifetime, 3)
    return merged


def fingerprint(value: object) -> str:
    """Return a short, non-reversible fingerprint of a secret (first 8 hex digits of SHA-256)."""
    return hashlib.sha256(str(value).encode("utf-8", "replace")).hexdigest()[:8]


def secret_values(*mappings: Mapping[str, Any]) -> list[str]:
    """Collect the string values of ``mappings`` that could be secrets (4+ characters)."""
    found: list[str] = []
    pending: list[Any] = [mapping.values() for mapping in mappings]
    while pending:  # nested mappings and lists too (e.g. {"account": {"apiKey": ...}})
        for value in pending.pop():
            if isinstance(value, str):
                if len(value) >= 4:
                    found.append(value)
            elif isinstance(value, Mapping):
                pending.append(value.values())
            elif isinstance(value, (list, tuple)):
                pending.append(value)
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``[redacted]``."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return text
