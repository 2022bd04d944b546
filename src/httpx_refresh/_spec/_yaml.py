"""Read YAML with a safe loader and remember the line of every key (for ``SpecError``)."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any, Final

import yaml

from .._exceptions import SpecError

__all__ = ["Document", "KeyPath", "dotted", "load_yaml"]

KeyPath = tuple[str | int, ...]
MAX_BYTES = 1024 * 1024
MAX_VALUES = 100_000
MAX_DEPTH = 100


_TEXT: Final = "\x00text"  # in Document.lines: where a block scalar's text starts


def dotted(path: KeyPath) -> str:
    """``("auth", "options", "a", 0)`` -> ``"auth.options.a[0]"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text


class Document:
    """One parsed YAML file: its plain data and the 1-based line of each key path.

    Args:
        file: the path shown in errors.
        data: the parsed value (dicts, lists, scalars).
        lines: key path -> 1-based line where that key (or item) starts.
    """

    __slots__ = ("data", "file", "lines")

    def __init__(self, file: str, data: Any, lines: dict[KeyPath, int]) -> None:
        self.file = file
        self.data = data
        self.lines = lines

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def text_line(self, path: KeyPath) -> int | None:
        """The line where the text of the string at ``path`` starts.

        For a block scalar (``code: |``) that is the line after the key; otherwise the
        key's own line.
        """
        return self.lines.get((*path, _TEXT)) or self.line(path)

    def error(self, message: str, path: KeyPath) -> SpecError:
        """A ``SpecError`` at ``path`` in this file."""
        return SpecError(message, file=self.file, line=self.line(path), key=dotted(path) or None)


def load_yaml(path: Path, *, display: str | None = None) -> Document:
    """Parse ``path`` with ``yaml.SafeLoader`` (no tags that build objects or run code).

    Args:
        path: the YAML file.
        display: how to name the file in errors (default ``str(path)``).

    Returns:
        The :class:`Document`.

    Raises:
        SpecError: the file cannot be read, is larger than 1 MiB, is not UTF-8, is not
            valid YAML, uses a tag the safe loader refuses, repeats a key in one mapping, or
            expands to more than 100,000 values or 100 levels.
    """
    file = display or str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SpecError(f"the file is too large (over {MAX_BYTES // 1024} KiB)", file=file)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", file=file) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text ({exc.reason})", file=file) from None
    except OSError as exc:
        raise SpecError(f"cannot read the file ({exc.strerror})", file=file) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        data = _build(loader, node, (), lines, file) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(
            f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=file) from None
    except RecursionError:
        raise SpecError("the YAML is nested too deeply", file=file) from None
    finally:
        loader.dispose()
    return Document(file, data, lines)


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: str
) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if len(lines) > MAX_VALUES or len(path) > MAX_DEPTH:
        # Aliases expand (a "billion laughs" document would never end) and formulas are
        # compiled recursively: a spec is small, so refuse anything this big.
        raise SpecError(
            f"the YAML is too large: more than {MAX_VALUES} values or {MAX_DEPTH} levels of "
            "nesting (aliases expanded)",
            file=file,
            line=node.start_mark.line + 1,
        )
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in (
        "tag:yaml.org,2002:map",
        "tag:yaml.org,2002:seq",
    ):
        # The safe loader refuses such tags on scalars by itself; mappings and lists are
        # walked here, so refuse them here too (nothing is ever constructed from a tag).
        raise SpecError(
            f"invalid YAML: the tag {node.tag!r} is not allowed",
            file=file,
            line=node.start_mark.line + 1,
            key=dotted(path) or None,
        )
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # YAML merge keys (<<): merged pairs first, then our own
        first_own = len(node.value) - explicit
        result: dict[str, Any] = {}
        own: set[str] = set()
        for position, (key_node, value_node) in enumerate(node.value):
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable) or isinstance(key, (list, dict)):
                raise SpecError(
                    "a mapping key must be a plain value",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    key=dotted(path) or None,
                )
            key = str(key) if not isinstance(key, str) else key
            child = (*path, key)
            if position >= first_own and key in own:  # a merged key may be overridden
                raise SpecError(
                    f"key {key!r} appears twice",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    key=dotted(child),
                )
            if position >= first_own:
                own.add(key)
            lines[child] = key_node.start_mark.line + 1
            result[key] = _build(loader, value_node, child, lines, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, index), lines, file)
            for index, item in enumerate(node.value)
        ]
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        text_key = (*path, _TEXT)
        lines[text_key] = node.start_mark.line + 2  # the text starts below the indicator
    return loader.construct_object(node, deep=True)
