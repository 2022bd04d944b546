"""``implementationType: python``: a connector method written as a Python function."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from .._exceptions import HttpxRefreshError, RefreshError, SpecError
from .._retry import is_transient

__all__ = ["PythonFunction", "load_function"]


class PythonFunction:
    """A connector's Python method: the function and the keywords it takes.

    Args:
        function: the function (sync or async).
        file: its file, as shown in errors.
        line: the line of its ``def``.
        accepts: the keywords to pass (a subset of what the method offers).
        is_async: whether it is a coroutine function.
    """

    __slots__ = ("accepts", "file", "function", "is_async", "line")

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        file: str,
        line: int,
        accepts: frozenset[str],
        is_async: bool,
    ) -> None:
        self.function = function
        self.file = file
        self.line = line
        self.accepts = accepts
        self.is_async = is_async

    def kwargs(self, available: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments to call it with, out of ``available``."""
        return {name: value for name, value in available.items() if name in self.accepts}

    def error(self, message: str) -> SpecError:
        """A ``SpecError`` pointing at the function's ``def`` line."""
        return SpecError(message, file=self.file, line=self.line, key=self.function.__name__)

    def where(self, exc: BaseException) -> str:
        """``name() in file:line`` where ``exc`` was raised (the innermost line of the file)."""
        line = _failure_line(exc, self.function.__code__.co_filename) or self.line
        return f"{self.function.__name__}() in {self.file}:{line}"

    def failure(self, exc: Exception) -> Exception:
        """Translate an exception the function raised (DESIGN C22: no message is shown).

        httpx-refresh errors pass through. Anything else becomes a ``RefreshError`` naming
        the function, file and line and the exception type, never its message (which may
        hold a token); ``transient`` as for any refresher (network errors, timeouts, 408,
        429, 5xx), with ``Retry-After`` kept.
        """
        if isinstance(exc, HttpxRefreshError):
            return exc
        response = getattr(exc, "response", None)
        retry_after = status_code = None
        if type(exc).__name__ == "HTTPStatusError" and response is not None:
            from .._oauth2 import _retry_after

            retry_after = _retry_after(response)
            status_code = getattr(response, "status_code", None)
        transient = is_transient(exc)
        return RefreshError(
            f"{self.where(exc)} raised {type(exc).__name__}",
            transient=transient,
            status_code=status_code,
            retry_after=retry_after if transient else None,
        )


def _failure_line(exc: BaseException, filename: str) -> int | None:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == filename:
            return frame.lineno
    return None


def load_function(
    path: Path,
    name: str,
    *,
    display: str,
    offered: Collection[str],
) -> PythonFunction:
    """Import ``path`` as a private module and check its function ``name``.

    The function may take any of the ``offered`` keywords (or ``**kwargs``, which takes
    them all); every other parameter must have a default. Positional-only parameters
    without defaults cannot be passed and are refused.

    Args:
        path: the ``.py`` file (inside the connector directory).
        name: the function name (the method name in snake_case).
        display: how to name the file in errors.
        offered: the keywords the method provides.

    Returns:
        The :class:`PythonFunction`.

    Raises:
        SpecError: the file is missing or unreadable, has a syntax error, raises while it
            is imported, has no callable ``name``, or ``name`` has a parameter that cannot
            be given.
    """
    try:
        source = path.read_bytes()
    except FileNotFoundError:
        raise SpecError("python file not found", file=display) from None
    except OSError as exc:
        raise SpecError(f"cannot read the python file ({exc.strerror})", file=display) from None
    filename = str(path)
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise SpecError(f"python syntax error: {exc.msg}", file=display, line=exc.lineno) from None
    except ValueError as exc:  # e.g. null bytes
        raise SpecError(f"python file cannot be compiled: {exc}", file=display) from None
    digest = hashlib.sha256(filename.encode()).hexdigest()[:16]
    module_name = f"httpx_refresh_connector_{digest}_{path.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None:  # pragma: no cover - a .py path always has a spec
        raise SpecError("cannot import the python file", file=display)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and typing need the module registered
    try:
        exec(code, module.__dict__)  # the connector's own code, as importing it would run it
    except Exception as exc:
        sys.modules.pop(module_name, None)
        detail = f": {exc}" if isinstance(exc, ImportError) else ""  # module names only
        raise SpecError(
            f"importing the python file raised {type(exc).__name__}{detail}",
            file=display,
            line=_failure_line(exc, filename),
        ) from exc
    function = module.__dict__.get(name)
    if function is None:
        raise SpecError(f"the python file defines no function {name}()", file=display, line=1)
    line = getattr(getattr(function, "__code__", None), "co_firstlineno", 1)
    if not callable(function):
        raise SpecError(f"{name} is not a function", file=display, line=line)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        raise SpecError(
            f"the signature of {name}() cannot be read", file=display, line=line
        ) from None
    accepts: set[str] = set()
    offered_set = frozenset(offered)
    options = ", ".join(sorted(offered_set))
    for parameter in signature.parameters.values():
        kind = parameter.kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            accepts |= offered_set
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        elif parameter.name in offered_set and kind is not inspect.Parameter.POSITIONAL_ONLY:
            accepts.add(parameter.name)
        elif parameter.default is inspect.Parameter.empty:
            raise SpecError(
                f"{name}() requires parameter {parameter.name!r}, which the method cannot "
                f"give; it is called with keywords among: {options}",
                file=display,
                line=line,
                key=name,
            )
    return PythonFunction(
        function,
        file=display,
        line=line,
        accepts=frozenset(accepts),
        is_async=inspect.iscoroutinefunction(function),
    )
