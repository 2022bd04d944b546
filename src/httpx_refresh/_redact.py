"""Keep credential query parameters out of httpx's own log lines.

httpx logs every request URL at INFO (``HTTP Request: GET https://...?api_key=...``). When
credentials travel in the query (``query_param``, a connector's ``makeApiClient`` ``query``),
a filter on the ``httpx`` logger replaces the values of those parameters with
``[redacted]`` in the record, before any handler formats it. Only the parameter names that
httpx-refresh was told to write are touched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from ._lib import LIBRARIES, is_url

__all__ = ["redact_query_names"]


class _QueryRedactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.names: frozenset[str] = frozenset()

    def filter(self, record: logging.LogRecord) -> bool:
        names = self.names
        if names and isinstance(record.args, tuple):
            record.args = tuple(self._clean(arg, names) for arg in record.args)
        return True

    @staticmethod
    def _clean(arg: Any, names: frozenset[str]) -> Any:
        if is_url(arg) and arg.query:
            for name in names.intersection(arg.params.keys()):
                arg = arg.copy_set_param(name, "[redacted]")
        return arg


_redactor = _QueryRedactor()
_lock = threading.Lock()
_installed = False


def redact_query_names(names: Iterable[str]) -> None:
    """Redact the values of these query parameters in httpx's log records from now on."""
    global _installed
    new = frozenset(names)
    if new <= _redactor.names:
        return
    with _lock:
        _redactor.names = _redactor.names | new
        if not _installed:
            for logger in LIBRARIES:  # httpx and httpx2 log request URLs the same way
                logging.getLogger(logger).addFilter(_redactor)
            _installed = True
