"""Decoding HTTP bodies that should hold JSON: token and error responses, API responses.

One place, so that the built-in refreshers and connector specs read the same bodies
the same way (and as ``httpx.Response.json()`` does).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["load_json"]


def load_json(content: bytes) -> Any:
    """Parse a JSON body from its bytes.

    RFC 8259 section 8.1: JSON travels as UTF-8 and a parser may ignore a leading byte
    order mark (some Microsoft / .NET token endpoints send one); UTF-16 and UTF-32 are
    detected as :func:`json.loads` does for bytes (RFC 4627 section 3).

    Args:
        content: the body as received (after content decoding, e.g. gzip).

    Returns:
        The parsed value (any JSON type).

    Raises:
        ValueError: the body is not JSON: bad syntax, bad encoding, or nesting too deep
            to parse (instead of a ``RecursionError``).
    """
    try:
        return json.loads(content)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
