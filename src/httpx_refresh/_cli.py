"""The ``httpx-refresh`` command line (also ``python -m httpx_refresh``).

Subcommands:

- ``demo``: run the embedded OAuth 2.0 provider and drive thousands of requests through one
  ``RefreshAuth`` across token expiries and a revocation (``--serve``: only run the provider).
- ``check``, ``request``, ``test``: connector specs (``_cli_spec``, which lists the exit codes).

Each subcommand is a function ``(args) -> int`` registered in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable

from . import __version__, _demo
from ._cli_spec import add_spec_commands

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(minimum: float, *, inclusive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not (value >= minimum if inclusive else value > minimum) or value != value:
            sign = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"must be {sign} {minimum:g} seconds, got {text}")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0-65535, got {value}")
    return value


def _demo_command(args: argparse.Namespace) -> int:
    """Run ``httpx-refresh demo`` with parsed arguments; return the exit code."""
    try:
        _demo.require_server()
    except _demo.DemoUnavailable as exc:
        print(f"httpx-refresh demo: {exc}", file=sys.stderr)
        return 2
    if args.serve:
        port = _demo.DEFAULT_PORT if args.port is None else args.port
        ttl = _demo.DEFAULT_TTL if args.ttl is None else args.ttl
        return _demo.serve_forever(port=port, ttl=ttl, token_latency=args.token_latency)
    if args.port is not None:
        print("httpx-refresh demo: --port only applies with --serve", file=sys.stderr)
        return 2
    if args.sync and args.clients not in (None, 1):
        print("httpx-refresh demo: --sync shares one httpx.Client; drop --clients", file=sys.stderr)
        return 2
    if not args.sync and args.backend == "trio" and importlib.util.find_spec("trio") is None:
        print("httpx-refresh demo: --backend trio needs trio: pip install trio", file=sys.stderr)
        return 2
    if args.library is not None and importlib.util.find_spec(args.library) is None:
        print(
            f"httpx-refresh demo: --library {args.library} is not installed: "
            f"pip install 'httpx-refresh[{args.library}]'",
            file=sys.stderr,
        )
        return 2
    options = _demo.DemoOptions(
        requests=args.requests,
        concurrency=args.concurrency,
        ttl=args.ttl,
        sync=args.sync,
        backend=args.backend,
        token_latency=args.token_latency,
        reject_refreshes=args.reject_refreshes,
        progress=not args.no_progress and sys.stderr.isatty(),
        clients=args.clients,
        library=args.library,
    )
    try:
        return _demo.run_demo(options)
    except KeyboardInterrupt:
        print("\nhttpx-refresh demo: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """Build the ``httpx-refresh`` argument parser; each subcommand sets ``handler``."""
    parser = argparse.ArgumentParser(
        prog="httpx-refresh",
        description="Tools for httpx-refresh, an httpx.Auth that refreshes credentials once "
        "for every waiting request.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run an OAuth 2.0 provider and drive requests through RefreshAuth",
        description="Start an embedded OAuth 2.0 provider (refresh-token rotation with reuse "
        "detection) on 127.0.0.1 and send requests through one RefreshAuth + OAuth2Refresh "
        "across at least three token expiries and one revocation of every access token. "
        "Prints a table and exits 1 if a request failed, if the token endpoint saw more than "
        "one call per refresh period plus one per revocation, or if the final refresh token "
        "is not the one the provider accepts. Needs the demo extra: "
        "pip install 'httpx-refresh[demo]'.",
    )
    demo.add_argument(
        "--requests", type=_positive_int, default=2000, help="requests to send (default 2000)"
    )
    demo.add_argument(
        "--concurrency",
        type=_positive_int,
        default=200,
        help="tasks, or threads with --sync, sending them; also the connection-pool size "
        "(default 200)",
    )
    demo.add_argument(
        "--ttl",
        type=_seconds(0.0, inclusive=False),
        default=None,
        help="access-token lifetime in seconds; the requests are spread over "
        f"{_demo.RUN_SPAN_TTLS:g} of them (default {_demo.DEFAULT_TTL:g}, longer on a machine "
        f"so busy that a burst of --concurrency requests takes over "
        f"{_demo.DEFAULT_TTL / _demo.CALIBRATION_FACTOR:g} s (p99): "
        f"{_demo.CALIBRATION_FACTOR:g} x that)",
    )
    demo.add_argument(
        "--sync",
        action="store_true",
        help="use a pool of --concurrency threads sharing one httpx.Client instead of "
        "an httpx.AsyncClient",
    )
    demo.add_argument(
        "--clients",
        type=_positive_int,
        default=None,
        help="async only: httpx.AsyncClients sharing the one RefreshAuth, the connections "
        f"split between them (default: one per {_demo.CONNECTIONS_PER_CLIENT} connections, "
        "because httpcore 1.0's pool slows down with connections x queued requests)",
    )
    demo.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop of the async run (default asyncio)",
    )
    demo.add_argument(
        "--library",
        choices=("httpx", "httpx2"),
        default=None,
        help="HTTP library of the clients, the RefreshAuth and the token requests "
        "(default httpx; httpx2 needs the httpx2 extra)",
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="only run the provider on --port, print its URL and client id/secret, "
        "until Ctrl-C (for the examples)",
    )
    demo.add_argument(
        "--port",
        type=_port,
        default=None,
        help=f"port for --serve (default {_demo.DEFAULT_PORT}; 0 picks a free one)",
    )
    demo.add_argument(
        "--token-latency",
        type=_seconds(0.0, inclusive=True),
        default=_demo.DEFAULT_TOKEN_LATENCY,
        metavar="SECONDS",
        help="seconds the token endpoint takes to answer "
        f"(default {_demo.DEFAULT_TOKEN_LATENCY:g})",
    )
    demo.add_argument(
        "--reject-refreshes",
        action="store_true",
        help="make the provider answer every refresh with invalid_grant, to see how "
        "failures are reported (the demo then exits 1)",
    )
    demo.add_argument(
        "--no-progress",
        action="store_true",
        help="do not show the progress line on stderr (it is off when stderr is not a terminal)",
    )
    demo.set_defaults(handler=_demo_command)
    add_spec_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``httpx-refresh`` command line.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 1 when a command's check failed, 2 for a usage error
        or a missing optional dependency, 3 for an invalid connector spec, 4 when the user
        must reconnect, 5 when a refresh or request failed, 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: return instead of exiting
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
