"""``implementationType: javascript``: connector methods run by Node.js in a child process.

One call is one ``node`` process running ``node/runner.mjs`` (no shell). The call (the
method's file or inline code, and its argument object) goes in on stdin, never on the
command line or in the environment, which other users of the machine can read. The
runner imports the method's module from the connector folder (ES module or CommonJS,
so ``import axios from 'axios'`` resolves from the connector's ``node_modules``), calls
its function with ``{credentials, connectorParameters, connectionParameters,
connectionInput, ...}`` and writes the JSON result on stdout. ``apiClient`` requests come
back to Python over the same pipes and go out through an httpx client, so they get the
connection's settings, refresh and retries. Errors come back as their type, code, HTTP
status and line, never as their message (DESIGN C22: it may hold a token).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from secrets import token_hex
from typing import Any, Final

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from .._credentials import scrub, secret_values
from .._exceptions import ReauthorizationRequired, RefreshError, SpecError

__all__ = ["DEFAULT_TIMEOUT", "JavaScriptError", "NodeRuntime", "RUNNER"]

RUNNER: Final = Path(__file__).with_name("node") / "runner.mjs"
DEFAULT_TIMEOUT: Final = 20.0
MAX_MESSAGE: Final = 16 * 1024 * 1024  # bytes of one protocol line (a result, a request)
_TYPESCRIPT: Final = (".ts", ".mts", ".cts")
_POSIX: Final = hasattr(os, "killpg")
_REAP: Final = 5.0  # seconds to wait for a killed process
_PERMANENT: Final = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
_NETWORK_CODES: Final = frozenset(
    {
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "ETIMEDOUT",
        "ESOCKETTIMEDOUT",
        "EPIPE",
        "EAI_AGAIN",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENETDOWN",
        "UND_ERR_CONNECT_TIMEOUT",
        "UND_ERR_SOCKET",
        "UND_ERR_HEADERS_TIMEOUT",
        "UND_ERR_BODY_TIMEOUT",
    }
)

ApiHandler = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


class JavaScriptError(Exception):
    """What a JavaScript method threw, described without its message.

    Attributes:
        type: the constructor name (``Error``, ``AxiosError``, ...).
        line: the line in the method's file (inline code: in the spec), if known.
        code: a short error code (``ECONNREFUSED``, ``ERR_BAD_REQUEST``), if any.
        status: the HTTP status of the response the error carries (axios, apiClient).
        retry_after: that response's ``Retry-After`` in seconds, if numeric.
        oauth_error: an RFC 6749 ``error`` code in that response's JSON body.
        where: ``name in file:line``.
    """

    def __init__(self, info: Mapping[str, Any], where: str, line: int | None) -> None:
        self.type = str(info.get("type") or "Error")
        self.line = line
        code, status = info.get("code"), info.get("status")
        self.code = code if isinstance(code, str) else None
        self.status = status if isinstance(status, int) else None
        retry_after = info.get("retryAfter")
        self.retry_after = float(retry_after) if isinstance(retry_after, int) else None
        oauth_error = info.get("oauthError")
        self.oauth_error = oauth_error if isinstance(oauth_error, str) else None
        self.where = where
        details = [f"code {self.code}"] if self.code else []
        if self.status is not None:
            details.append(f"HTTP {self.status}")
        if self.oauth_error:
            details.append(self.oauth_error)
        extra = f" ({', '.join(details)})" if details else ""
        super().__init__(f"{where} threw {self.type}{extra}")

    @property
    def transient(self) -> bool:
        """Network errors, 408, 429 and 5xx may succeed when tried again (DESIGN R10)."""
        if self.oauth_error in ("server_error", "temporarily_unavailable"):
            return True
        if self.status is not None:
            return self.status in (408, 429) or self.status >= 500
        return self.code in _NETWORK_CODES

    def as_refresh_error(self) -> RefreshError:
        """The ``RefreshError`` for a refresh-type method (permanent OAuth codes: reauthorize)."""
        if self.oauth_error in _PERMANENT:
            return ReauthorizationRequired(
                str(self), oauth_error=self.oauth_error, status_code=self.status
            )
        transient = self.transient
        return RefreshError(
            str(self),
            transient=transient,
            oauth_error=self.oauth_error,
            status_code=self.status,
            retry_after=self.retry_after if transient else None,
        )


class NodeRuntime:
    """How a connector's JavaScript methods run: which ``node``, and for how long.

    Args:
        node: the Node.js executable (a path or a command name looked up on ``PATH``).
            ``None``: the ``HTTPX_REFRESH_NODE`` environment variable, else ``node``.
        timeout: seconds one call may take (Node start included) before the process is
            killed.

    Raises:
        ValueError: ``timeout`` is not positive.
    """

    __slots__ = ("_resolved", "_version", "node", "timeout")

    def __init__(
        self, node: str | os.PathLike[str] | None = None, timeout: float = DEFAULT_TIMEOUT
    ):
        if not timeout > 0:
            raise ValueError("node_timeout must be a positive number of seconds")
        self.node = os.fspath(node) if node is not None else None
        self.timeout = float(timeout)
        self._resolved: str | None = None
        self._version: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"<NodeRuntime node={self.node or 'node'!r} timeout={self.timeout}>"

    def executable(self, where: str) -> str:
        """The ``node`` to run, resolved once.

        Raises:
            SpecError: Node.js was not found (naming ``where``, the method's file).
        """
        if self._resolved is not None:
            return self._resolved
        wanted = self.node or os.environ.get("HTTPX_REFRESH_NODE") or "node"
        found = shutil.which(wanted)
        if found is None:
            source = (
                "node="
                if self.node
                else "HTTPX_REFRESH_NODE"
                if "HTTPX_REFRESH_NODE" in os.environ
                else "PATH"
            )
            raise SpecError(
                f"this method is javascript and runs under Node.js, which was not found "
                f"({wanted!r} from {source}): install Node.js 20 or later, or pass "
                "load_connector(..., node='/path/to/node')",
                file=where,
            )
        self._resolved = found
        return found

    async def call(
        self,
        *,
        name: str,
        where: str,
        root: Path,
        args: Mapping[str, Any],
        file: Path | None = None,
        code: str | None = None,
        code_line: int | None = None,
        api: ApiHandler | None = None,
        check: bool = False,
    ) -> Any:
        """Run one JavaScript method and return its result (``None`` for ``undefined``).

        Args:
            name: the method name (``refreshCredentials``), also tried as a named export.
            where: the method's file as shown in errors (the spec for inline code).
            root: the connector folder, absolute (the working directory; modules
                resolve from it).
            args: the function's argument object (JSON-serialisable).
            file: the method's ``.js`` / ``.mjs`` / ``.cjs`` file (absolute), or
            code: its inline code, whose first line is line ``code_line`` of ``where``.
            api: answers ``apiClient`` requests; ``None``: the function gets no
                ``apiClient``.
            check: only load the module and find the function (``True`` if it loads).

        Returns:
            The JSON-decoded value the function returned (or resolved to).

        Raises:
            JavaScriptError: the function threw (or rejected).
            SpecError: Node.js is missing or too old, the module cannot be loaded (a
                syntax error, a missing package), it exports no function, the result is
                not JSON, Node.js exited early, or the call took longer than ``timeout``.
            Exception: whatever ``api`` raised (the process is stopped first).
            ValueError: ``root`` or ``file`` is a relative path.
        """
        executable = self.executable(where)
        if not root.is_absolute() or (file is not None and not file.is_absolute()):
            # Node runs in root: a relative path would point elsewhere.
            raise ValueError("root and file must be absolute paths")
        flags = ["--no-warnings"]
        if file is not None and file.suffix in _TYPESCRIPT:
            flags += await self._typescript_flags(executable, where)
        call: dict[str, Any] = {
            "name": name,
            "root": str(root),
            "args": dict(args),
            "api": api is not None,
            "check": check,
        }
        if file is not None:
            call["file"] = str(file)
        else:
            virtual = root / f".{name}.inline.mjs"
            call.update(code=code or "", url=virtual.as_uri())
        secrets = secret_values(args)
        nonce = token_hex(8)  # marks the runner's lines: anything else on stdout is skipped
        call["nonce"] = nonce
        try:
            payload = (json.dumps(call, allow_nan=False) + "\n").encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise SpecError(
                f"the arguments of {name} cannot be given to javascript (not JSON: "
                f"{type(exc).__name__})",
                file=where,
            ) from None
        try:
            # A session of its own: the whole process group (children the method
            # started included) is killed when the call ends.
            process = await anyio.open_process(
                [executable, *flags, str(RUNNER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=root,
                start_new_session=_POSIX,
            )
        except OSError as exc:
            raise SpecError(
                f"cannot start Node.js ({executable}): {exc.strerror or type(exc).__name__}",
                file=where,
            ) from None
        conversation = _Conversation(process, api, name, where, code_line, executable, secrets)
        try:
            with anyio.move_on_after(self.timeout) as scope:
                return await conversation.run(payload, nonce)
            if scope.cancelled_caught:
                raise SpecError(
                    f"{name} did not finish within {self.timeout:g} s; Node.js was stopped",
                    file=where,
                )
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            with anyio.CancelScope(shield=True):
                _kill(process)
                with anyio.move_on_after(_REAP):
                    await process.wait()
                await process.aclose()

    async def _typescript_flags(self, executable: str, where: str) -> list[str]:
        """Node flags for a TypeScript file: type stripping, built in from 22.6."""
        if self._version is None:
            try:
                with anyio.fail_after(self.timeout):
                    done = await anyio.run_process([executable, "--version"], check=False)
                text = done.stdout.decode("ascii", "replace").strip().lstrip("v")
                self._version = tuple(int(part) for part in text.split(".")[:2])
            except (OSError, ValueError, TimeoutError):
                self._version = ()
        version = self._version
        if version < (22, 6):
            found = ".".join(map(str, version)) or "an unknown version"
            raise SpecError(
                f"a TypeScript method needs Node.js 22.6 or later, which strips types (found "
                f"{found}): upgrade Node.js or compile the file to .js",
                file=where,
            )
        return ["--experimental-strip-types"] if version < (23, 6) else []


def _kill(process: anyio.abc.Process) -> None:
    """Kill the runner and, on POSIX, every process of its group (the method's children)."""
    if _POSIX:
        with contextlib.suppress(OSError):  # already gone
            os.killpg(process.pid, signal.SIGKILL)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


class _Conversation:
    """One call's messages: the call, ``apiClient`` requests (answered concurrently), and
    the result or error."""

    def __init__(
        self,
        process: anyio.abc.Process,
        api: ApiHandler | None,
        name: str,
        where: str,
        code_line: int | None,
        executable: str,
        secrets: list[str],
    ) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.reader = BufferedByteReceiveStream(process.stdout)
        self.api = api
        self.name = name
        self.where = where
        self.code_line = code_line
        self.executable = executable
        self.secrets = secrets
        self.writing = anyio.Lock()
        self.failures: list[Exception] = []

    async def run(self, payload: bytes, nonce: str) -> Any:
        outcome: list[Any] = []
        async with anyio.create_task_group() as group:
            try:
                outcome.append(await self._read(group, payload, nonce))
            except Exception as exc:  # noqa: BLE001 - raised below, after the group
                self.failures.append(exc)
            group.cancel_scope.cancel()  # requests still being answered are abandoned
        if self.failures:
            raise self.failures[0]
        return outcome[0]

    async def _send(self, data: bytes) -> None:
        async with self.writing:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self.stdin.send(data)  # if it exited, reading says how

    async def _answer(self, message: Mapping[str, Any], group: anyio.abc.TaskGroup) -> None:
        assert self.api is not None
        try:
            reply = await self.api(message)
            reply.update(t="response", id=message.get("id"))
            await self._send((json.dumps(reply) + "\n").encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - the call fails with it
            self.failures.append(exc)
            group.cancel_scope.cancel()

    async def _read(self, group: anyio.abc.TaskGroup, payload: bytes, nonce: str) -> Any:
        await self._send(payload)
        started = False
        while True:
            try:
                line = await self.reader.receive_until(b"\n", MAX_MESSAGE)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                status = await self.process.wait()
                if not started:
                    raise SpecError(
                        f"{self.executable} did not start the httpx-refresh runner (it exited "
                        f"with status {status}): is it Node.js 20 or later?",
                        file=self.where,
                    ) from None
                raise SpecError(
                    f"Node.js exited (status {status}) before {self.name} returned: the "
                    "method (or a module it loads) ended the process",
                    file=self.where,
                ) from None
            except anyio.DelimiterNotFound:
                raise SpecError(
                    f"{self.name} sent more than {MAX_MESSAGE // (1024 * 1024)} MiB at once",
                    file=self.where,
                ) from None
            if not line.startswith(b"{"):
                continue  # the connector's own output on the real stdout
            try:
                message = json.loads(line)
            except ValueError:
                continue
            except RecursionError:
                raise SpecError(
                    f"{self.name} returned a value nested too deeply", file=self.where
                ) from None
            if not isinstance(message, dict):
                continue
            kind = message.get("t")
            if kind == "hello":
                started = True
                continue
            if message.get("n") != nonce:
                continue  # not the runner's
            if kind == "result":
                return message.get("value")
            if kind == "error":
                # Every field is checked by the runner; a value of the arguments that got
                # into one anyway (a token as an error's code) is blanked here too.
                clean = {
                    key: scrub(value, self.secrets) if isinstance(value, str) else value
                    for key, value in message.items()
                }
                raise _failure(clean, self.name, self.where, self.code_line)
            if kind == "request" and self.api is not None:
                group.start_soon(self._answer, message, group)


def _line(message: Mapping[str, Any], code_line: int | None) -> int | None:
    line = message.get("line")
    if not isinstance(line, int) or line < 1:
        return None
    return line if code_line is None else code_line + line - 1


def _failure(message: Mapping[str, Any], name: str, where: str, code_line: int | None) -> Exception:
    kind = message.get("kind")
    line = _line(message, code_line)
    if kind == "thrown":
        at = f"{where}:{line}" if line is not None else where
        return JavaScriptError(message, f"{name} in {at}", line)
    if kind == "missing-module":
        module = message.get("module")
        return SpecError(
            f"cannot find the module {module!r}: install the connector's packages (npm ci "
            "in the connector folder)",
            file=where,
        )
    if kind == "missing-file":
        return SpecError(
            f"cannot find the file {message.get('file')!r} (the method file, or one it imports)",
            file=where,
        )
    if kind == "syntax":
        detail = message.get("detail")
        return SpecError(
            f"javascript syntax error: {detail}" if detail else "javascript syntax error",
            file=where,
            line=line,
        )
    if kind == "syntax-elsewhere":
        return SpecError(
            "a module this file imports has a javascript syntax error (the file itself parses)",
            file=where,
        )
    if kind == "import":
        return SpecError(
            f"loading the javascript module threw {message.get('type')}", file=where, line=line
        )
    if kind == "no-function":
        found = str(message.get("found"))
        if found == "nothing":
            what = "the module has no default export"
        else:
            article = "an" if found[:1] in ("a", "e", "i", "o", "u") else "a"
            what = f"the module's default export is {article} {found}, not a function"
        return SpecError(
            f"{what}: export default (or module.exports =) an async function "
            f"{name}({{credentials, connectorParameters, ...}})",
            file=where,
        )
    if kind == "not-json":
        return SpecError(
            f"{name} returned a value that is not JSON ({message.get('type')}): return plain "
            "objects, arrays, strings, numbers, booleans or null",
            file=where,
        )
    if kind == "inline-needs-register":
        return SpecError(
            f"inline javascript code with import/export needs Node.js 20.6 or later "
            f"(found {message.get('version')})",
            file=where,
            line=code_line,
        )
    return SpecError(f"the Node.js runner failed ({kind})", file=where)


def encode_request_body(body: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """httpx keyword arguments for an ``apiClient`` request body from the runner.

    Returns:
        ``(kwargs, default_headers)``: ``json=``, ``content=`` and a content type to set
        when the request has none.
    """
    if not isinstance(body, Mapping):
        return {}, {}
    kind, value = body.get("kind"), body.get("value")
    if kind == "json":
        return {"json": value}, {}
    if kind == "text" and isinstance(value, str):
        return {"content": value.encode("utf-8")}, {"content-type": "text/plain; charset=utf-8"}
    if kind == "form" and isinstance(value, str):
        return (
            {"content": value.encode("ascii", "replace")},
            {"content-type": "application/x-www-form-urlencoded"},
        )
    if kind == "bytes" and isinstance(value, str):
        return {"content": base64.b64decode(value)}, {"content-type": "application/octet-stream"}
    return {}, {}
