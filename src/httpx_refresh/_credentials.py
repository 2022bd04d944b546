"""Credentials: immutable snapshots, expiry parsing, merging and redaction.

Pure functions with no I/O and no locks. Expiry follows RFC 6749 section 5.1
(``expires_in``, seconds from the time of the response) and the common
``expires_at`` extension (epoch seconds, epoch milliseconds or ISO 8601).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
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
# A longer expires_at string is refused before any pattern runs on it (a real one is under 40).
_MAX_DATE_LENGTH = 100


def _seconds(value: Any) -> float | None:
    """A finite number from a number or a numeric string (spaces allowed), else ``None``."""
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
    return number if math.isfinite(number) else None


def parse_expires_in(value: Any) -> float | None:
    """Parse an RFC 6749 section 5.1 ``expires_in`` value.

    Args:
        value: a number or a numeric string (surrounding spaces allowed), in seconds.

    Returns:
        The lifetime in seconds (always above 0), or ``None`` when the expiry is
        unknown: the value is missing, not a finite number, or ``<= 0`` (several
        providers send ``0`` for a token that does not expire; DESIGN R2).
    """
    number = _seconds(value)
    return number if number is not None and number > 0 else None


# ISO 8601 / RFC 3339 date-times as providers send them: any number of fraction digits
# (.NET sends 7), "T", "t" or a space between date and time, "Z", "z", "UTC", "GMT",
# "+hh:mm", "+hhmm" or "+hh" (a naive one is UTC). Parsed by hand so that every
# supported Python gives the same result (3.10's fromisoformat refuses most of these).
_ISO_8601 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"(?: ?(?:[Zz]|UTC|GMT)|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)
# An RFC 1123 / RFC 850 / asctime HTTP-date (RFC 9110 section 5.6.7), the weekday optional,
# GMT / UT / UTC / Z or a +hhmm offset (also written "GMT+0100", as JavaScript's
# Date.toString() does, with its "(zone name)" after it), no zone meaning GMT. Parsed by
# hand: email.utils guesses (it ignores "PM", reads an unknown zone as UTC and year 0001
# as 2001), and an expiry is never a guess.
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_HTTP_DATE = re.compile(
    r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?"
    r"(?:(?P<day>\d{1,2})[ -](?P<month>[a-z]{3})[ -](?P<year>\d{4}|\d{2})"  # 07 Dec 2026
    r"|(?P<month2>[a-z]{3})\s+(?P<day2>\d{1,2})(?:\s+(?P<year2>\d{4}))?)"  # Dec  7 [2026]
    r"\s+(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:\s+(?P<year3>\d{4}))?"  # asctime: the year last
    r"(?:\s*(?:gmt|ut|utc|z)?\s*(?P<sign>[+-])(?P<off_h>\d{2})(?P<off_m>\d{2})"
    r"|\s+(?:gmt|ut|utc|z))?"
    r"(?:\s+\([^()]*\))?",
    re.ASCII | re.IGNORECASE,
)


def _epoch(
    date: tuple[str, str | int, str],
    time: tuple[str | None, str | None, str | None],
    offset: tuple[str | None, str | None, str | None],
) -> float | None:
    """Epoch seconds of a calendar date and time (UTC) at an offset, or ``None`` if any
    field is out of range. A leap second (23:59:60) is the instant before 00:00:00."""
    (year, month, day), (hour, minute, second) = date, time
    sign, off_h, off_m = offset
    leap = second == "60"
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            59 if leap else int(second or 0),
            tzinfo=timezone.utc,
        )
    except ValueError:  # month 13, day 45, hour 99, ...
        return None
    shift = 0
    if sign is not None:
        hours, minutes = int(off_h or 0), int(off_m or 0)
        if hours > 23 or minutes > 59:
            return None
        shift = (hours * 3600 + minutes * 60) * (1 if sign == "+" else -1)
    return moment.timestamp() - shift + (1 if leap else 0)


def _iso_8601(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 date or date-time, or ``None`` if it is not one."""
    match = _ISO_8601.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    seconds = _epoch((year, month, day), (hour, minute, second), (sign, off_h, off_m))
    if seconds is None:
        return None
    return seconds + (float("0." + fraction) if fraction else 0.0)


def _http_date(text: str) -> float | None:
    """Epoch seconds of an RFC 1123, RFC 850 or asctime date (taken as GMT when it names no
    zone, as HTTP-dates always are), or ``None`` if it is not one."""
    match = _HTTP_DATE.fullmatch(text)
    if match is None:
        return None
    fields = match.groupdict()
    month = (fields["month"] or fields["month2"]).lower()
    years = [year for year in (fields["year"], fields["year2"], fields["year3"]) if year]
    if month not in _MONTHS or len(years) != 1:
        return None
    year = int(years[0])
    if len(years[0]) == 2:  # RFC 850 (RFC 9110 section 5.6.7: within 50 years of now)
        year += 2000 if year < 70 else 1900
    return _epoch(
        (str(year), _MONTHS.index(month) + 1, fields["day"] or fields["day2"]),
        (fields["hour"], fields["minute"], fields["second"]),
        (fields["sign"], fields["off_h"], fields["off_m"]),
    )


def parse_expires_at(value: Any) -> float | None:
    """Parse an absolute expiry (the common ``expires_at`` extension to RFC 6749).

    Args:
        value: epoch seconds, epoch milliseconds (a number above 1e11), a numeric
            string of either; an ISO 8601 / RFC 3339 date or date-time with any number
            of fraction digits, ``T``, ``t`` or a space before the time, and ``Z``,
            ``z``, ``UTC``, ``+hh:mm``, ``+hhmm`` or ``+hh`` (no zone: UTC); or an
            HTTP-date (RFC 9110 section 5.6.7: RFC 1123, RFC 850 or asctime; no zone:
            GMT; also JavaScript's ``Date.toString()`` form with ``GMT+hhmm``). Values
            before 1970 or above 1e14 (e.g. microseconds), and strings over 100
            characters, are refused. Only a number is ever taken as milliseconds: a date
            is in seconds whatever its year (9999-12-31 too).

    Returns:
        Epoch seconds, or ``None`` when the value is missing or unparseable (never
        raises).
    """
    if value is None or isinstance(value, bool):
        return None
    number: float | None
    if isinstance(value, (int, float)):
        number = _seconds(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_DATE_LENGTH:
            return None
        number = _seconds(text)
        if number is None:
            # A date is in seconds whatever its year: the milliseconds rule below is for
            # bare numbers only (year 9999 is 2.5e11 s, not 1978 in milliseconds).
            date = _iso_8601(text)
            if date is None:
                date = _http_date(text)
            return date if date is not None and date >= 0 else None
    else:
        return None
    if number is None or not math.isfinite(number) or number < 0:
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
    """Freeze ``credentials`` into a :class:`Snapshot`, computing its expiry (DESIGN R2).

    ``expires_at`` (epoch seconds, as stored) wins when present and parseable, even if
    it is past: given or loaded credentials past their expiry are simply expired.
    Otherwise ``expires_in`` counts from ``now``; ``expires_in <= 0`` and unparseable
    values mean the expiry is unknown (``None``).

    Args:
        credentials: the credentials (not modified).
        version: the version number of the snapshot.
        now: epoch seconds, the client's clock.
        refreshed: these are a refresh result that :func:`merge_credentials` already
            checked (and logged about): ``refreshed_at = now`` and nothing is logged
            again. Otherwise each unparseable expiry field logs one WARNING, without
            its value.
        stored: the credential store's version these credentials are, if any.

    Returns:
        A new :class:`Snapshot`.
    """
    frozen = MappingProxyType(dict(credentials))
    lifetime = parse_expires_in(frozen.get("expires_in"))
    expires_at = parse_expires_at(frozen.get("expires_at"))
    if not refreshed:
        problems = _unparseable(frozen)
        if problems:
            logger.warning("credentials: %s; expiry treated as unknown", problems)
    if expires_at is None and lifetime is not None:
        expires_at = now + lifetime
    return Snapshot(frozen, version, expires_at, lifetime, now if refreshed else None, stored)


def _unparseable(fields: Mapping[str, Any]) -> str:
    """Name the expiry fields of ``fields`` that are present but unparseable (no values)."""
    problems = []
    if fields.get("expires_in") is not None and _seconds(fields["expires_in"]) is None:
        problems.append("expires_in is not a number")
    if fields.get("expires_at") is not None and parse_expires_at(fields["expires_at"]) is None:
        problems.append("expires_at is not a date or epoch")
    return " and ".join(problems)


def merge_credentials(
    old: Mapping[str, Any], returned: Mapping[str, Any], *, now: float
) -> dict[str, Any]:
    """Merge what a refresh returned into the old credentials (DESIGN R8, R2).

    Shallow: returned keys overwrite, absent keys stay, a returned ``None`` keeps the
    old value, and so does an empty ``refresh_token`` (RFC 6749 section 6 and appendix
    A.17: a refresh token has at least one character; some providers send ``""`` when
    they issue no new one), a blank one or one that is not a string (an integer is
    kept as its decimal string). A new ``access_token`` or new expiry information replaces
    all the old expiry fields, so a new token without a usable expiry has an unknown
    expiry.

    Expiry is put on the client's clock (R2): a usable ``expires_in`` (RFC 6749 section
    5.1, seconds from the response) gives ``expires_at = now + expires_in`` (epoch
    seconds), replacing an absolute ``expires_at`` sent beside it (that one is on the
    server's clock). ``expires_in <= 0`` adds no ``expires_at``. An absolute
    ``expires_at`` that is already past on arrival is clock skew: it is left out of the
    result (the expiry is unknown: the token is refreshed when rejected) and logged.
    At most one WARNING per call, never with a value.

    Args:
        old: the credentials the refresh started from.
        returned: the refresher's result.
        now: epoch seconds (client clock) at which the response was received.

    Returns:
        A new dict; neither input is modified.
    """
    merged = dict(old)
    given = {key: value for key, value in returned.items() if value is not None}
    kept = _usable_refresh_token(given)
    if "access_token" in given or any(key in given for key in EXPIRY_KEYS):
        # Expiry belongs to the access token: new token or new expiry information
        # replaces all of the old expiry information (never a stale lifetime).
        for key in EXPIRY_KEYS:
            merged.pop(key, None)
    merged.update(given)
    problems = _unparseable(given)
    lifetime = parse_expires_in(given.get("expires_in"))
    if lifetime is not None:
        # Capped where parse_expires_at would read a larger number as milliseconds
        # (expires_in: 1e12 for "never" must not come back as 1973): year 5138.
        merged["expires_at"] = round(min(now + lifetime, _EPOCH_MS_THRESHOLD), 3)
    elif "expires_at" in given:
        expires_at = parse_expires_at(given["expires_at"])
        if expires_at is not None and expires_at <= now:
            del merged["expires_at"]
            problems = " and ".join(
                filter(None, (problems, "expires_at was already past on arrival (clock skew?)"))
            )
    if problems:
        if lifetime is not None:
            outcome = "the expiry expires_in gives is used"
        elif parse_expires_at(merged.get("expires_at")) is not None:
            outcome = "the expires_at given is used"
        else:
            outcome = "expiry treated as unknown"
        problems = f"{problems}; {outcome}"
    problems = "; ".join(filter(None, (kept, problems)))
    if problems:
        logger.warning("refresh: %s", problems)
    return merged


def _usable_refresh_token(given: dict[str, Any]) -> str:
    """Keep a returned ``refresh_token`` only if it can be sent (RFC 6749 appendix A.17:
    ``refresh-token = 1*VSCHAR``, sent without surrounding whitespace): ``""``, a blank,
    one with a lone surrogate, a list, an object or a bool is dropped from ``given``
    (the old one stays); a JSON integer becomes its decimal string. Returns what to log
    (never the value)."""
    token = given.get("refresh_token")
    if token is None or (isinstance(token, str) and token.strip(" \t\r\n") and _utf8(token)):
        return ""
    if isinstance(token, int) and not isinstance(token, bool):
        given["refresh_token"] = str(token)
        return ""
    del given["refresh_token"]
    if token == "":
        # RFC 6749 section 6: the server MAY issue a new refresh token; an empty string
        # is not one, and some providers send it when they issue none (not worth a log).
        return ""
    if isinstance(token, str):
        kind = "not valid Unicode (a lone surrogate)" if token.strip() else "blank"
    else:
        kind = f"a {type(token).__name__}"
    return f"refresh_token returned is {kind}, not a token (the old one is kept)"


def _utf8(text: str) -> bool:
    """Can ``text`` be sent (encoded as UTF-8)? Not with a lone surrogate (JSON ``"\\udc00"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
