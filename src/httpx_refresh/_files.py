"""Write a file atomically with owner-only permissions (credentials files)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_json_atomic"]


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON, all or nothing, readable by its owner only.

    The JSON goes to a temporary file (mode 0600) in the same directory, is flushed and
    ``fsync``-ed, then renamed over ``path`` (``os.replace``, atomic on POSIX and Windows),
    so a reader sees the old file or the new one, never half of one.

    Args:
        path: the file to replace.
        data: a JSON-serialisable mapping.

    Raises:
        OSError: the directory is not writable, the disk is full, ...
        TypeError: ``data`` holds a value JSON cannot represent (nothing is written).
    """
    text = json.dumps(dict(data), indent=2, sort_keys=True) + "\n"
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
