"""Unit tests for ``httpx_refresh._credentials``: expiry parsing, snapshots, merge, redaction.

Rules: DESIGN R2 (expiry parsing, unknown expiry), R8 (merge); cases C12 and C16 at unit level.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

import httpx
import pytest

import httpx_refresh as hr
from httpx_refresh._credentials import (
    fingerprint,
    make_snapshot,
    merge_credentials,
    parse_expires_at,
    parse_expires_in,
    scrub,
    secret_values,
)

NOW = 1_700_000_000.0  # epoch seconds, 2023-11-14T22:13:20Z
ACCESS_1 = "at-one-4f2c9a7d1e"
ACCESS_2 = "at-two-8b3e6d0c5a"
REFRESH_1 = "rt-one-2d9f7c4b1a"
REFRESH_2 = "rt-two-6e1a3b8f0d"


# -- parse_expires_in ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3600, 3600.0),
        (3600.5, 3600.5),
        (0.001, 0.001),
        ("3600", 3600.0),
        ("3600.0", 3600.0),
        (" 3600 ", 3600.0),
        ("\t60\n", 60.0),
        ("1e3", 1000.0),
    ],
)
def test_R2_parse_expires_in_numbers_and_numeric_strings(value: Any, expected: float) -> None:
    """R2 / C12: ``expires_in`` may be a number or a numeric string (spaces allowed)."""
    result = parse_expires_in(value)
    assert result == expected
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "abc",
        "",
        "   ",
        "3600s",
        True,
        False,
        math.inf,
        -math.inf,
        math.nan,
        "inf",
        "nan",
        [3600],
        {"seconds": 3600},
    ],
)
def test_R2_parse_expires_in_unparseable_is_unknown(value: Any) -> None:
    """R2: a missing, non-numeric, boolean or non-finite ``expires_in`` means unknown (None)."""
    assert parse_expires_in(value) is None


@pytest.mark.parametrize("value", [0, 0.0, -0.0, "0", " 0 ", "0.0", -5, -0.5, "-60"])
def test_R2_parse_expires_in_zero_or_negative_is_unknown(value: Any) -> None:
    """R2: ``expires_in <= 0`` (a number or a numeric string) means the expiry is unknown:
    several providers send 0 for a token that does not expire (it used to mean "expired
    now", and made every request refresh)."""
    assert parse_expires_in(value) is None


# -- parse_expires_at ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000, 1_700_000_000.0),
        (1_700_000_000.25, 1_700_000_000.25),
        (1_700_000_000_000, 1_700_000_000.0),  # epoch milliseconds
        (1_700_000_000_500, 1_700_000_000.5),
        ("1700000000", 1_700_000_000.0),
        (" 1700000000.5 ", 1_700_000_000.5),
        ("1700000000000", 1_700_000_000.0),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T22:13:20.500Z", 1_700_000_000.5),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
        ("2023-11-14T17:13:20-05:00", 1_700_000_000.0),
        ("2023-11-14T22:13:20", 1_700_000_000.0),  # naive: taken as UTC
        ("2023-11-14 22:13:20", 1_700_000_000.0),
    ],
)
def test_R2_parse_expires_at_epoch_seconds_ms_and_iso8601(value: Any, expected: float) -> None:
    """R2: ``expires_at`` may be epoch seconds, epoch ms, a numeric string or ISO 8601."""
    assert parse_expires_at(value) == pytest.approx(expected, abs=1e-6)


def test_R2_parse_expires_at_naive_iso_is_utc_not_local_time() -> None:
    """R2: a naive ISO 8601 date-time is UTC, whatever the machine's timezone."""
    text = "2030-01-02T03:04:05"
    expected = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()
    assert parse_expires_at(text) == expected


# 2026-12-07T18:00:00Z in epoch seconds.
DEC_7 = datetime(2026, 12, 7, 18, 0, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-07T18:00:00.1Z", DEC_7 + 0.1),
        ("2026-12-07T18:00:00.12Z", DEC_7 + 0.12),
        ("2026-12-07T18:00:00.123456Z", DEC_7 + 0.123456),
        ("2026-12-07T18:00:00.1234567Z", DEC_7 + 0.1234567),  # .NET: 7 digits
        ("2026-12-07T18:00:00.123456789Z", DEC_7 + 0.123456789),
        ("2026-12-07T18:00:00.1234567890123+00:00", DEC_7 + 0.1234567890123),
        ("2026-12-07T18:00:00,5Z", DEC_7 + 0.5),
        ("2026-12-07T18:00:00+0000", DEC_7),
        ("2026-12-07T18:00:00+00:00", DEC_7),
        ("2026-12-07T18:00:00-0000", DEC_7),
        ("2026-12-07T19:30:00+0130", DEC_7),
        ("2026-12-07T20:00:00+02", DEC_7),
        ("2026-12-07T13:00:00.1234567-05:00", DEC_7 + 0.1234567),
        ("2026-12-07t18:00:00z", DEC_7),
        ("2026-12-07 18:00:00Z", DEC_7),
        ("2026-12-07 18:00:00.1234567", DEC_7 + 0.1234567),  # naive: UTC
        ("2026-12-07 18:00:00 UTC", DEC_7),
        ("2026-12-07T18:00Z", DEC_7),
        ("2026-12-07", DEC_7 - 18 * 3600),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=timezone.utc).timestamp()),
        ("Mon, 07 Dec 2026 18:00:00 GMT", DEC_7),  # RFC 1123 (HTTP-date)
        ("Mon, 07 Dec 2026 19:00:00 +0100", DEC_7),
        ("Monday, 07-Dec-26 18:00:00 GMT", DEC_7),  # RFC 850
        ("Mon Dec  7 18:00:00 2026", DEC_7),  # asctime
    ],
)
def test_R2_parse_expires_at_as_providers_send_it(value: str, expected: float) -> None:
    """R2 (issue 15 item 9): ISO 8601 with any number of fraction digits, offsets with or
    without a colon, lowercase ``t``/``z``, a space for ``T``, and HTTP-dates all parse,
    with the same result on every supported Python (3.10's ``fromisoformat`` refused 7
    fraction digits, ``Z`` and ``+0000``)."""
    assert parse_expires_at(value) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-07T18:00:00.Z",
        "2026-12-07T18:00:00+25:00",
        "2026-12-07T18:00:00+01:75",
        "2026-12-07T24:00:00Z",
        "2026-02-30T18:00:00Z",
        "2026-12-07T18:00:00Zjunk",
        "26-12-07T18:00:00Z",
        "Mon, 32 Dec 2026 18:00:00 GMT",
        "Dec 7, 2026 6:00:00 PM",  # email.utils ignored the PM: 12 hours early
        "Mon, 07 Dec 2026 18:00:00 CET",  # an unknown zone was taken as GMT
        "Mon, 07 Dec 2026 18:00:00 PST",  # not an HTTP-date zone
        "Dec 2026",
        "next tuesday",
        "may 5",
        "jan " * 100_000 + "12:00",  # refused by length, before any pattern (no slow regex)
        "2026-12-07T18:00:00." + "1" * 100,
    ],
    ids=lambda value: value if len(value) < 40 else f"{value[:12]}...{len(value)}-chars",
)
def test_R2_parse_expires_at_malformed_dates_are_unknown(value: str) -> None:
    """R2: an almost-date is unknown (None), never a crash and never a guess."""
    assert parse_expires_at(value) is None


@pytest.mark.parametrize(
    "value",
    [None, "", "garbage", "tomorrow", "2023-13-45T99:00:00Z", True, False, -1, "-1", [1], {}],
)
def test_R2_parse_expires_at_garbage_is_unknown(value: Any) -> None:
    """R2: an unparseable ``expires_at`` is treated as unknown (None), never raised."""
    assert parse_expires_at(value) is None


@pytest.mark.parametrize("value", [math.inf, math.nan, "inf", "nan"])
def test_R2_parse_expires_at_non_finite_is_unknown(value: Any) -> None:
    """R2: an infinite or NaN ``expires_at`` must not mean "never expires"."""
    assert parse_expires_at(value) is None


# -- make_snapshot ---------------------------------------------------------------------


def test_R2_make_snapshot_expires_in_counts_from_now() -> None:
    """R2: ``expires_in`` without ``expires_at`` gives ``expires_at = now + expires_in``."""
    snapshot = make_snapshot({"access_token": ACCESS_1, "expires_in": "3600"}, 7, now=NOW)
    assert snapshot.version == 7
    assert snapshot.expires_at == NOW + 3600
    assert snapshot.lifetime == 3600.0


def test_R2_make_snapshot_expires_at_wins_over_expires_in() -> None:
    """R2: a parseable ``expires_at`` is the expiry; ``expires_in`` still gives the lifetime."""
    snapshot = make_snapshot(
        {"access_token": ACCESS_1, "expires_in": 3600, "expires_at": NOW - 100}, 0, now=NOW
    )
    assert snapshot.expires_at == NOW - 100
    assert snapshot.lifetime == 3600.0


def test_R2_make_snapshot_without_expiry_is_unknown() -> None:
    """R2 / C13: no expiry fields means the expiry is unknown (``None``), not "expired"."""
    snapshot = make_snapshot({"access_token": ACCESS_1}, 0, now=NOW)
    assert snapshot.expires_at is None
    assert snapshot.lifetime is None


def test_R1_make_snapshot_is_an_immutable_copy() -> None:
    """R1: a snapshot is frozen and does not change when the caller's mapping does."""
    source = {"access_token": ACCESS_1, "tenant": "t1"}
    snapshot = make_snapshot(source, 0, now=NOW)
    source["access_token"] = ACCESS_2
    assert snapshot.credentials["access_token"] == ACCESS_1
    assert isinstance(snapshot.credentials, MappingProxyType)
    with pytest.raises(TypeError):
        snapshot.credentials["access_token"] = ACCESS_2  # type: ignore[index]
    with pytest.raises(AttributeError):
        snapshot.version = 3  # type: ignore[misc]


def test_R2_make_snapshot_unparseable_expiry_logs_without_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R2: unparseable ``expires_in`` / ``expires_at`` are logged without the value; unknown."""
    caplog.set_level(logging.DEBUG, logger="httpx_refresh")
    snapshot = make_snapshot(
        {"access_token": ACCESS_1, "expires_in": "abc-q7", "expires_at": "soon-x9"}, 0, now=NOW
    )
    assert snapshot.expires_at is None
    assert snapshot.lifetime is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one line naming both fields
    assert "expires_in" in warnings[0].getMessage()
    assert "expires_at" in warnings[0].getMessage()
    assert all(r.name == "httpx_refresh" for r in warnings)
    values = {"expires_in": "abc-q7", "expires_at": "soon-x9", "access_token": ACCESS_1}
    logged = [name for name, value in values.items() if value in caplog.text]
    assert logged == []


def test_make_snapshot_repr_shows_keys_not_values() -> None:
    """No ``repr()`` holds a credential value (DESIGN, errors and reprs)."""
    snapshot = make_snapshot({"access_token": ACCESS_1, "refresh_token": REFRESH_1}, 3, now=NOW)
    text = repr(snapshot)
    assert "access_token" in text
    assert not any(secret in text for secret in (ACCESS_1, REFRESH_1)), "a token is in repr()"


# -- merge_credentials (R8) --------------------------------------------------------------


def test_R8_returned_keys_overwrite_and_absent_keys_stay() -> None:
    """R8: returned keys overwrite, absent keys (refresh_token, custom fields) stay."""
    old = {"access_token": ACCESS_1, "refresh_token": REFRESH_1, "realmId": "42", "scope": "a b"}
    merged = merge_credentials(old, {"access_token": ACCESS_2, "scope": "a"}, now=NOW)
    assert merged == {
        "access_token": ACCESS_2,
        "refresh_token": REFRESH_1,
        "realmId": "42",
        "scope": "a",
    }


def test_R8_returned_none_keeps_old_value() -> None:
    """R8: a returned ``None`` keeps the old value (e.g. ``refresh_token: null``)."""
    old = {"access_token": ACCESS_1, "refresh_token": REFRESH_1, "instance_url": "https://x"}
    merged = merge_credentials(
        old, {"access_token": ACCESS_2, "refresh_token": None, "instance_url": None}, now=NOW
    )
    assert merged["refresh_token"] == REFRESH_1
    assert merged["instance_url"] == "https://x"
    assert merged["access_token"] == ACCESS_2


def test_R8_inputs_are_not_modified() -> None:
    """R8: merge returns a new dict; neither the old credentials nor the result change."""
    old = {"access_token": ACCESS_1, "refresh_token": REFRESH_1, "expires_in": 60}
    returned = {"access_token": ACCESS_2, "expires_in": 60}
    old_copy, returned_copy = dict(old), dict(returned)
    merged = merge_credentials(old, returned, now=NOW)
    assert old == old_copy
    assert returned == returned_copy
    assert merged is not old


def test_R8_new_access_token_without_expiry_drops_old_expiry() -> None:
    """R8: expiry belongs to the access token; a new token without expiry has unknown expiry."""
    old = {
        "access_token": ACCESS_1,
        "refresh_token": REFRESH_1,
        "expires_in": 60,
        "expires_at": NOW + 60,
    }
    merged = merge_credentials(old, {"access_token": ACCESS_2}, now=NOW + 30)
    assert "expires_in" not in merged
    assert "expires_at" not in merged
    assert make_snapshot(merged, 1, now=NOW + 30).expires_at is None


def test_R8_new_access_token_with_only_none_expiry_drops_old_expiry() -> None:
    """R8: ``expires_in: null`` with a new token is "no expiry given": the old expiry goes."""
    old = {"access_token": ACCESS_1, "expires_in": 60, "expires_at": NOW + 60}
    merged = merge_credentials(old, {"access_token": ACCESS_2, "expires_in": None}, now=NOW)
    assert "expires_in" not in merged
    assert "expires_at" not in merged


def test_R8_new_access_token_with_expires_at_only_drops_stale_expires_in() -> None:
    """R8: a new token whose response gives only ``expires_at`` must not keep the old token's
    ``expires_in``: that stale lifetime would drive the R2 leeway clamp for the new token."""
    old = {"access_token": ACCESS_1, "expires_in": 3600, "expires_at": NOW}
    merged = merge_credentials(old, {"access_token": ACCESS_2, "expires_at": NOW + 4000}, now=NOW)
    assert merged["expires_at"] == NOW + 4000
    assert "expires_in" not in merged


def test_R8_expires_in_adds_absolute_expires_at() -> None:
    """R2 / R8: a refresh giving only ``expires_in`` stores an absolute ``expires_at``."""
    old = {"access_token": ACCESS_1, "expires_at": NOW - 10}
    merged = merge_credentials(old, {"access_token": ACCESS_2, "expires_in": 3600}, now=NOW)
    assert merged["expires_in"] == 3600
    assert merged["expires_at"] == NOW + 3600
    # The snapshot rebuilt from persisted credentials after a restart keeps that expiry.
    assert make_snapshot(merged, 0, now=NOW + 1000).expires_at == NOW + 3600


def test_R2_expires_in_wins_over_an_absolute_expires_at_sent_beside_it() -> None:
    """R2: when the refresh returns both, ``expires_in`` (counted from arrival, on the
    client's clock) wins over the server's absolute ``expires_at``, in the merged (and so
    persisted) credentials too. It used to keep the server's value."""
    merged = merge_credentials(
        {"access_token": ACCESS_1},
        {"access_token": ACCESS_2, "expires_in": 3600, "expires_at": NOW + 100},
        now=NOW,
    )
    assert merged["expires_at"] == NOW + 3600
    assert make_snapshot(merged, 1, now=NOW, refreshed=True).expires_at == NOW + 3600
    assert make_snapshot(merged, 1, now=NOW + 50).expires_at == NOW + 3600  # after a restart


@pytest.mark.parametrize("expires_in", [0, "0", -1, " -30 "])
def test_R2_expires_in_zero_adds_no_expires_at_and_drops_the_old_expiry(
    expires_in: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """R2 / R8 (issue 15 item 3): ``expires_in <= 0`` is an unknown expiry: the merge adds
    no ``expires_at``, drops the old token's expiry fields, logs nothing (it is not an
    error), and the snapshot never refreshes proactively."""
    caplog.set_level(logging.DEBUG, logger="httpx_refresh")
    old = {"access_token": ACCESS_1, "refresh_token": REFRESH_1, "expires_at": NOW + 5}
    merged = merge_credentials(old, {"access_token": ACCESS_2, "expires_in": expires_in}, now=NOW)
    assert merged == {
        "access_token": ACCESS_2,
        "refresh_token": REFRESH_1,
        "expires_in": expires_in,
    }
    assert make_snapshot(merged, 1, now=NOW, refreshed=True).expires_at is None
    assert make_snapshot(merged, 1, now=NOW + 10**6).expires_at is None  # after a restart
    assert caplog.records == []


@pytest.mark.parametrize(
    "expires_at", [NOW - 120, (NOW - 120) * 1000, "2023-11-14T22:11:20Z", NOW], ids=str
)
def test_R2_absolute_expiry_past_on_arrival_is_clock_skew(
    expires_at: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """R2 (issue 15 item 2): a refresh result whose only expiry is an absolute
    ``expires_at`` already past on arrival (the server's clock is behind) is left out:
    the expiry is unknown (refresh on rejection only), with one WARNING without values."""
    caplog.set_level(logging.DEBUG, logger="httpx_refresh")
    old = {"access_token": ACCESS_1, "refresh_token": REFRESH_1, "expires_in": 60}
    returned = {"access_token": ACCESS_2, "refresh_token": REFRESH_2, "expires_at": expires_at}
    merged = merge_credentials(old, returned, now=NOW)
    assert merged == {"access_token": ACCESS_2, "refresh_token": REFRESH_2}
    assert make_snapshot(merged, 1, now=NOW, refreshed=True).expires_at is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "clock skew" in warnings[0].getMessage()
    # Only a refresh result is checked for skew: credentials given at start (or loaded)
    # past their expires_at are simply expired, and refreshed proactively.
    given = make_snapshot({"access_token": ACCESS_1, "expires_at": expires_at}, 0, now=NOW)
    assert given.expires_at == pytest.approx(NOW - 120 if expires_at != NOW else NOW)
    assert not any(secret in caplog.text for secret in (ACCESS_2, REFRESH_2, str(expires_at))), (
        "a value was logged"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9999-12-31T23:59:59Z", 253402300799.0),
        ("9999-12-31T23:59:59-12:00", 253402343999.0),
        ("6000-01-01", 127174492800.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 253402300799.0),
    ],
)
def test_R2_parse_expires_at_dates_after_year_5138_are_seconds_not_milliseconds(
    value: str, expected: float
) -> None:
    """R2: the milliseconds rule (a number above 1e11) is for bare numbers. A date
    string past year 5138 (providers send 9999-12-31 for "never") is 2.5e11 seconds;
    it used to be divided by 1000 into 1978: expired, refreshed before the first request
    and after every restart."""
    assert parse_expires_at(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "Mon Dec 07 2026 18:00:00 GMT+0000 (Coordinated Universal Time)",
        "Mon Dec 07 2026 19:00:00 GMT+0100 (Central European Standard Time)",
        "Mon Dec 07 2026 10:00:00 GMT-0800 (Pacific Standard Time)",
        "Mon, 07 Dec 2026 23:59:60 GMT",  # a leap second, as in ISO 8601
    ],
)
def test_R2_parse_expires_at_javascript_date_strings_at_their_offset(value: str) -> None:
    """R2: ``String(new Date(...))`` from a Node process or connector names its offset as
    ``GMT+0100``; ``email.utils`` took such dates as GMT and ignored the offset (an hour
    late in Paris, eight hours early in California: past on arrival, dropped)."""
    expected = DEC_7 if "60" not in value else DEC_7 + 6 * 3600
    assert parse_expires_at(value) == expected


def test_R2_parse_expires_at_http_date_with_year_0001_is_not_2001() -> None:
    """R2: ``email.utils`` reads the four-digit year 0001 by the two-digit rules (2001);
    a year before 1970 is refused like the ISO 8601 form of the same date."""
    assert parse_expires_at("0001-01-01T00:00:00Z") is None
    assert parse_expires_at("Mon, 01 Jan 0001 00:00:00 GMT") is None


@pytest.mark.parametrize("expires_in", [1e11, 1e12, 9_223_372_036_854_775_807, "1e13"], ids=str)
def test_R2_huge_expires_in_stores_an_expires_at_that_reads_back_as_seconds(
    expires_in: Any,
) -> None:
    """R2: ``expires_in: 1e12`` ("does not expire") gives a stored ``expires_at`` that
    means the far future after a restart too. ``now + 1e12`` used to be stored as is and
    read back as milliseconds (year 2001: refreshed every ``min_refresh_interval`` and at
    each start); 9.2e18 (Java's Long.MAX_VALUE) was stored unparseable. It is capped at
    year 5138."""
    merged = merge_credentials(
        {"access_token": ACCESS_1}, {"access_token": ACCESS_2, "expires_in": expires_in}, now=NOW
    )
    stored = parse_expires_at(merged["expires_at"])
    assert stored == 100_000_000_000.0  # year 5138
    for refreshed in (True, False):  # just refreshed, and loaded after a restart
        snapshot = make_snapshot(merged, 1, now=NOW + 10, refreshed=refreshed)
        assert snapshot.expires_at is not None
        assert snapshot.expires_at >= 100_000_000_000.0


@pytest.mark.parametrize(
    "returned",
    [" ", "\t\r\n", "rt-\udc00-lone", ["rt"], {"token": "rt"}, True, False, 1.5],
    ids=["space", "whitespace", "lone-surrogate", "list", "object", "true", "false", "float"],
)
def test_R8_unusable_refresh_token_returned_keeps_the_old_one(
    returned: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """R8 / RFC 6749 appendix A.17: a returned ``refresh_token`` that cannot be sent (blank,
    a lone surrogate from a JSON escape, not a string) keeps the old one, with one WARNING
    naming no value. It used to replace it: the next refresh raised
    ReauthorizationRequired ("no refresh_token") or failed encoding the form for ever,
    and the good refresh token was gone (persisted too)."""
    caplog.set_level(logging.DEBUG, logger="httpx_refresh")
    merged = merge_credentials(
        {"access_token": ACCESS_1, "refresh_token": REFRESH_1},
        {"access_token": ACCESS_2, "refresh_token": returned, "expires_in": 3600},
        now=NOW,
    )
    assert merged == {
        "access_token": ACCESS_2,
        "refresh_token": REFRESH_1,
        "expires_in": 3600,
        "expires_at": NOW + 3600,
    }
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "refresh_token" in warnings[0].getMessage()
    assert "treated as unknown" not in warnings[0].getMessage()  # the expiry is fine
    assert not any(s in caplog.text for s in (ACCESS_1, ACCESS_2, REFRESH_1, "rt-"))


def test_R2_unparseable_expires_at_beside_a_usable_expires_in_logs_what_is_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R2: ``expires_in: 3600`` beside a garbage ``expires_at``: the expiry is now + 3600 and
    the one WARNING says so. It used to say "the expires_at given is used" (the garbage
    one, which was replaced), sending whoever reads the log the wrong way."""
    caplog.set_level(logging.DEBUG, logger="httpx_refresh")
    merged = merge_credentials(
        {"access_token": ACCESS_1},
        {"access_token": ACCESS_2, "expires_in": 3600, "expires_at": "sometime"},
        now=NOW,
    )
    assert merged["expires_at"] == NOW + 3600
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning == (
        "refresh: expires_at is not a date or epoch; the expiry expires_in gives is used"
    )


def test_R8_integer_refresh_token_returned_is_kept_as_its_decimal_string() -> None:
    """R8: a JSON integer refresh token (a rotated one) is kept as the string the server
    means, so the next refresh can send it; it used to end every refresh with
    ReauthorizationRequired ("no refresh_token")."""
    merged = merge_credentials(
        {"access_token": ACCESS_1, "refresh_token": REFRESH_1},
        {"access_token": ACCESS_2, "refresh_token": 90071992547409910},
        now=NOW,
    )
    assert merged["refresh_token"] == "90071992547409910"


def test_C16_refresh_without_refresh_token_keeps_R1_and_every_other_key() -> None:
    """C16 (unit): ``{"access_token", "expires_in": 60}`` keeps the refresh token, scope and
    custom fields through two expiry cycles; each refresh would send the original one."""
    credentials: dict[str, Any] = {
        "access_token": ACCESS_1,
        "refresh_token": REFRESH_1,
        "token_type": "Bearer",
        "scope": "read write",
        "realmId": "9130",
        "expires_in": 60,
    }
    now = NOW
    for cycle, token in enumerate((ACCESS_2, "at-three-0a9b8c7d6e"), start=1):
        now += 61
        sent_refresh_token = credentials["refresh_token"]
        assert sent_refresh_token == REFRESH_1, f"cycle {cycle}"
        credentials = merge_credentials(
            credentials, {"access_token": token, "expires_in": 60}, now=now
        )
        assert credentials == {
            "access_token": token,
            "refresh_token": REFRESH_1,
            "token_type": "Bearer",
            "scope": "read write",
            "realmId": "9130",
            "expires_in": 60,
            "expires_at": now + 60,
        }


def test_C16_variant_rotated_refresh_token_replaces_old_one() -> None:
    """C16 variant (unit): a returned ``refresh_token`` replaces the old one; the next cycle
    uses the rotated token."""
    credentials: dict[str, Any] = {
        "access_token": ACCESS_1,
        "refresh_token": REFRESH_1,
        "scope": "read",
        "realmId": "9130",
    }
    credentials = merge_credentials(
        credentials,
        {"access_token": ACCESS_2, "refresh_token": REFRESH_2, "expires_in": 60},
        now=NOW,
    )
    assert credentials["refresh_token"] == REFRESH_2
    assert credentials["scope"] == "read"
    assert credentials["realmId"] == "9130"
    credentials = merge_credentials(
        credentials, {"access_token": "at-3-5c4b3a2918", "expires_in": 60}, now=NOW + 61
    )
    assert credentials["refresh_token"] == REFRESH_2


@pytest.mark.parametrize("value", ["3600", "3600.0", " 3600 "])
def test_C12_numeric_string_expires_in_gives_expiry_now_plus_3600(value: str) -> None:
    """C12 (unit): a numeric-string ``expires_in`` gives ``expires_at ~= now + 3600``, so the
    token counts as fresh at +10 s and expired at +3,700 s."""
    merged = merge_credentials(
        {"access_token": ACCESS_1, "refresh_token": REFRESH_1},
        {"access_token": ACCESS_2, "expires_in": value},
        now=NOW,
    )
    assert merged["expires_at"] == pytest.approx(NOW + 3600)
    snapshot = make_snapshot(merged, 1, now=NOW)
    assert snapshot.expires_at == pytest.approx(NOW + 3600)
    assert snapshot.lifetime == 3600.0
    assert snapshot.expires_at is not None
    assert NOW + 10 < snapshot.expires_at < NOW + 3700


def test_C12_unparseable_expires_in_is_logged_without_value_and_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """C12 (unit): ``"expires_in": "abc"`` logs a warning that does not contain the value,
    never crashes, drops the old expiry and leaves the expiry unknown (refresh on 401)."""
    caplog.set_level(logging.DEBUG, logger="httpx_refresh")
    merged = merge_credentials(
        {"access_token": ACCESS_1, "refresh_token": REFRESH_1, "expires_at": NOW + 5},
        {"access_token": ACCESS_2, "expires_in": "abc"},
        now=NOW,
    )
    assert "expires_at" not in merged
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) >= 1
    assert all(r.name == "httpx_refresh" for r in warnings)
    for record in caplog.records:
        message = record.getMessage()
        assert "abc" not in message
        assert not any(s in message for s in (ACCESS_2, REFRESH_1)), "a token was logged"
    assert make_snapshot(merged, 1, now=NOW).expires_at is None


# -- redaction ---------------------------------------------------------------------------


def test_scrub_replaces_every_occurrence_of_every_secret() -> None:
    """No message holds a secret: ``scrub`` redacts each occurrence."""
    text = f"token {ACCESS_1} then {REFRESH_1} and {ACCESS_1} again"
    result = scrub(text, [ACCESS_1, REFRESH_1])
    assert result == "token [redacted] then [redacted] and [redacted] again"


def test_scrub_longest_secret_first_leaves_no_tail() -> None:
    """A secret that contains another one is redacted whole, leaving no partial value."""
    short, long = "abcd1234", "abcd1234-rest-of-it"
    result = scrub(f"x {long} y {short} z", [short, long])
    assert result == "x [redacted] y [redacted] z"


def test_scrub_ignores_empty_secrets_and_leaves_clean_text_alone() -> None:
    """Empty secrets are ignored (they would match everywhere); clean text is unchanged."""
    assert scrub("nothing to hide", ["", ACCESS_1]) == "nothing to hide"


def test_fingerprint_is_short_stable_and_not_the_secret() -> None:
    """A fingerprint is a short hash: stable, distinct per value, without the value in it."""
    first = fingerprint(ACCESS_1)
    assert first == fingerprint(ACCESS_1)
    assert first != fingerprint(ACCESS_2)
    assert len(first) == 8
    assert all(ch in "0123456789abcdef" for ch in first)
    assert ACCESS_1 not in first


def test_secret_values_collects_strings_of_four_or_more_characters() -> None:
    """Every string value of 4+ characters counts as a potential secret for scrubbing."""
    found = secret_values(
        {"access_token": ACCESS_1, "n": 5, "short": "abc", "empty": ""},
        {"client_secret": "cs-0123"},
    )
    assert sorted(found) == sorted([ACCESS_1, "cs-0123"])


def test_diegosouzapw_omniroute_5214_custom_refresher_empty_refresh_token_keeps_the_old_one() -> (
    None
):
    """diegosouzapw/OmniRoute#5214: Google's token endpoint sometimes answers a refresh with
    ``"refresh_token": ""``; a refresher that stored whatever string it got nulled the
    refresh token on the first refresh. R8 with RFC 6749 section 6 / appendix A.17 (a refresh
    token has at least one character): the merge treats ``""`` as "no new refresh token",
    for any refresher, through two expiry cycles; both refreshes see R1, and a real new one
    (R2) still replaces it."""
    seen: list[str] = []
    answers = [
        {"access_token": ACCESS_2, "refresh_token": ""},
        {"access_token": "at-three-0c1d2e3f4a", "refresh_token": REFRESH_2},
        {"access_token": "at-four-5b6c7d8e9f"},
    ]

    def refresher(*, credentials: Any, **_: Any) -> dict[str, Any]:
        seen.append(credentials["refresh_token"])
        return answers[len(seen) - 1]

    auth = hr.RefreshAuth({"access_token": ACCESS_1, "refresh_token": REFRESH_1}, refresher)
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(auth=auth, transport=transport) as client:
        for _ in answers:
            auth.refresh()
            assert client.get("https://api.test/").status_code == 200
    assert seen == [REFRESH_1, REFRESH_1, REFRESH_2]
    assert auth.credentials["refresh_token"] == REFRESH_2
    assert merge_credentials({"refresh_token": REFRESH_1}, {"refresh_token": ""}, now=NOW) == {
        "refresh_token": REFRESH_1
    }
