"""Added latency of one JavaScript refresh (Node start + call) against a Python refresher.

Two connector specs, built in a temporary directory, are identical except for
``refreshCredentials``: one is ``implementationType: javascript`` (an ES module whose
``export default async function refreshCredentials({connectorParameters})`` POSTs
``grant_type=client_credentials`` to the token URL with HTTP Basic built from
``connectorParameters.clientId`` / ``clientSecret``, using Node's global ``fetch``, no npm
packages, and returns ``{accessToken}``), the other ``implementationType: python``
(``refresh_credentials(connector_parameters)`` doing the same POST with ``httpx``). Both
throw when the response holds no token. ``makeApiClient`` is one mapping for both:
``Authorization: Bearer {credentials.accessToken}`` on the local server. The server is the
demo provider (``httpx_refresh._demo.DemoProvider``: uvicorn + Starlette on 127.0.0.1, a
free port, its own thread; ``client_credentials`` grants with HTTP Basic, no added latency).

What is timed is the wall time of one forced refresh: ``connection.auth.refresh()`` (sync)
and ``await connection.auth.arefresh()`` (async, anyio on asyncio), after one warm-up per
variant. Every round times python, javascript and a bare ``node -e 0`` start (the
reference: what starting Node costs with nothing to run), in an order that reverses each
round (python, javascript, node; then node, javascript, python) so that drift cancels. The
JavaScript call is one ``node`` process running the method runner (see ``_spec/_node.py``);
the Python call runs in this process (the async one in a worker thread, as for any sync
refresher). ``httpx.post`` builds a new client per call, as a refresher file naturally
would; that alone is about 20 ms on a 2-core machine (mostly loading the CA bundle into an
SSL context, even for ``http://``), so it sits inside the Python figure and the ratio.

Columns: median and p90 ms of each variant; javascript / python as the median of the
per-round ratios; the added ms (javascript minus python, median of the per-round
differences) and what remains of it once the bare Node start of the same round is taken
off (the runner's own cost: loading it and the method, the stdin/stdout protocol).

Every refresh is checked, warm-ups included: the token endpoint saw exactly one more call
(a ``client_credentials`` grant) and ``credentials['accessToken']`` changed; at the end each
connection's client must get a 200 from the API with its token. Exits 1 if a check fails (or
Node.js cannot be found); there is no timing target, so never on a figure.

Run: ``python benchmarks/javascript_refresh.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
from overhead import _percentile, _positive

import httpx_refresh as hr
from httpx_refresh._demo import DemoProvider

CLIENT_ID = "bench-client"
# Unreserved characters only: like the Integration.app docs example, both refreshers put the
# id and secret into HTTP Basic without form-urlencoding them first (RFC 6749 section 2.3.1).
CLIENT_SECRET = "bench-secret-42"
VARIANTS = ("python", "javascript")
NODE = "node -e 0"

SPEC = """\
name: JavaScript refresh benchmark
key: javascript-refresh-benchmark
parametersSchema:
  type: object
  properties:
    clientId: {type: string}
    clientSecret: {type: string}
  required: [clientId, clientSecret]
auth:
  type: client-credentials
  title: Client credentials
  refreshCredentials:
    implementationType: @KIND@
    filePath: auth/@FILE@
  makeApiClient:
    type: mapping
    mapping:
      baseUri: @BASE@
      headers:
        Authorization: {$concat: ["Bearer ", {$var: credentials.accessToken}]}
"""

JAVASCRIPT = """\
export default async function refreshCredentials({ connectorParameters }) {
  const { clientId, clientSecret } = connectorParameters
  const basic = Buffer.from(`${clientId}:${clientSecret}`).toString('base64')

  const response = await fetch('@TOKEN_URL@', {
    method: 'POST',
    headers: {
      Authorization: `Basic ${basic}`,
      'Content-Type': 'application/x-www-form-urlencoded',
    },
    body: 'grant_type=client_credentials',
  })
  if (!response.ok) {
    throw new Error(`Failed to refresh credentials: the token endpoint answered ${response.status}`)
  }

  const data = await response.json()
  if (!data || !data.access_token) {
    throw new Error('Failed to refresh credentials: no access token in the response')
  }

  return { accessToken: data.access_token }
}
"""

PYTHON = '''\
"""refreshCredentials: the same client-credentials POST as the JavaScript twin."""

import base64

import httpx

TOKEN_URL = "@TOKEN_URL@"


def refresh_credentials(connector_parameters):
    """Return ``{"accessToken": ...}`` from the token endpoint (HTTP Basic client auth)."""
    pair = f"{connector_parameters['clientId']}:{connector_parameters['clientSecret']}"
    basic = base64.b64encode(pair.encode()).decode("ascii")
    response = httpx.post(
        TOKEN_URL,
        content=b"grant_type=client_credentials",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    response.raise_for_status()
    data = response.json()
    if not data or not data.get("access_token"):
        raise ValueError("Failed to refresh credentials: no access token in the response")
    return {"accessToken": data["access_token"]}
'''


class CheckFailed(Exception):
    """A refresh did not happen as it should (its message never holds a token)."""


def _fill(template: str, **values: str) -> str:
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    return template


def build(directory: Path, base_url: str) -> dict[str, hr.Connector]:
    """Write the two connector specs under ``directory``; return them loaded, by variant."""
    token_url = f"{base_url}/token"
    connectors: dict[str, hr.Connector] = {}
    for kind, file, body in (
        ("python", "refresh-credentials.py", PYTHON),
        ("javascript", "refresh-credentials.mjs", JAVASCRIPT),
    ):
        root = directory / kind
        (root / "auth").mkdir(parents=True)
        (root / "spec.yml").write_text(
            _fill(SPEC, KIND=kind, FILE=file, BASE=base_url), encoding="utf-8"
        )
        (root / "auth" / file).write_text(_fill(body, TOKEN_URL=token_url), encoding="utf-8")
        connectors[kind] = hr.load_connector(root)
    return connectors


# -- one timed refresh, checked ----------------------------------------------------------


@contextmanager
def _checked(provider: DemoProvider, connection: hr.Connection, what: str) -> Iterator[None]:
    """Check that the block made exactly one token call and changed the access token."""
    before = provider.counters()
    old = connection.credentials.get("accessToken")
    yield
    calls = provider.counters().since(before)
    new = connection.credentials.get("accessToken")
    if calls.token_calls_total != 1 or calls.token_calls.get("client_credentials", 0) != 1:
        raise CheckFailed(
            f"{what}: expected exactly 1 client_credentials token call, got "
            f"{dict(calls.token_calls)}"
        )
    if not isinstance(new, str) or not new or new == old:
        raise CheckFailed(f"{what}: credentials['accessToken'] did not change to a new token")


def _time_sync(provider: DemoProvider, connection: hr.Connection, what: str) -> float:
    """Milliseconds of one forced ``auth.refresh()`` (checked)."""
    gc.collect()
    with _checked(provider, connection, what):
        start = time.perf_counter()
        connection.auth.refresh()
        elapsed = time.perf_counter() - start
    return elapsed * 1000.0


async def _time_async(provider: DemoProvider, connection: hr.Connection, what: str) -> float:
    """Milliseconds of one forced ``await auth.arefresh()`` (checked)."""
    gc.collect()
    with _checked(provider, connection, what):
        start = time.perf_counter()
        await connection.auth.arefresh()
        elapsed = time.perf_counter() - start
    return elapsed * 1000.0


def _node_sync(node: str) -> float:
    """Milliseconds of one bare ``node -e 0`` (started and reaped)."""
    gc.collect()
    start = time.perf_counter()
    subprocess.run([node, "-e", "0"], check=True, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000.0


async def _node_async(node: str) -> float:
    """Milliseconds of one bare ``node -e 0`` through anyio's subprocess support."""
    gc.collect()
    start = time.perf_counter()
    await anyio.run_process([node, "-e", "0"], check=True, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000.0


def _order(index: int) -> tuple[str, ...]:
    forward = (*VARIANTS, NODE)
    return forward if index % 2 == 0 else forward[::-1]


# -- the two modes -------------------------------------------------------------------------


def run_sync(
    provider: DemoProvider, connections: dict[str, hr.Connection], node: str, rounds: int
) -> dict[str, list[float]]:
    """Warm up, then ``rounds`` interleaved rounds of sync refreshes; ms per variant."""
    for kind in VARIANTS:
        _time_sync(provider, connections[kind], f"sync {kind} warm-up")
    _node_sync(node)
    times: dict[str, list[float]] = {name: [] for name in (*VARIANTS, NODE)}
    for index in range(rounds):
        for name in _order(index):
            if name == NODE:
                times[name].append(_node_sync(node))
            else:
                what = f"sync {name} round {index + 1}"
                times[name].append(_time_sync(provider, connections[name], what))
    return times


def run_async(
    provider: DemoProvider, connections: dict[str, hr.Connection], node: str, rounds: int
) -> dict[str, list[float]]:
    """As :func:`run_sync` with ``arefresh()`` on anyio's asyncio backend."""

    async def main() -> dict[str, list[float]]:
        for kind in VARIANTS:
            await _time_async(provider, connections[kind], f"async {kind} warm-up")
        await _node_async(node)
        times: dict[str, list[float]] = {name: [] for name in (*VARIANTS, NODE)}
        for index in range(rounds):
            for name in _order(index):
                step: Awaitable[float]
                if name == NODE:
                    step = _node_async(node)
                else:
                    step = _time_async(
                        provider, connections[name], f"async {name} round {index + 1}"
                    )
                times[name].append(await step)
        return times

    result: dict[str, list[float]] = anyio.run(main, backend="asyncio")
    return result


def check_api(provider: DemoProvider, connections: dict[str, hr.Connection]) -> None:
    """Each connection's client gets a 200 from the API with its current token."""
    for kind, connection in connections.items():
        before = provider.counters()
        with connection.client() as client:
            status = client.get("/api/items").status_code
        calls = provider.counters().since(before)
        if status != 200 or calls.api_successes != 1 or calls.token_calls_total != 0:
            raise CheckFailed(
                f"{kind}: GET /api/items answered {status} (token calls during it: "
                f"{calls.token_calls_total}); the refreshed token does not work"
            )


# -- report --------------------------------------------------------------------------------


def _row(mode: str, times: dict[str, list[float]]) -> str:
    python, javascript, node = times["python"], times["javascript"], times[NODE]
    ratios = [j / p for p, j in zip(python, javascript, strict=True)]
    added = [j - p for p, j in zip(python, javascript, strict=True)]
    beyond = [a - n for a, n in zip(added, node, strict=True)]
    cells = [mode]
    for values in (python, javascript, node):
        cells.append(f"{statistics.median(values):.1f} / {_percentile(values, 0.9):.1f}")
    cells.append(
        f"{statistics.median(ratios):.1f}x ({_percentile(ratios, 0.1):.1f}-"
        f"{_percentile(ratios, 0.9):.1f})"
    )
    cells.append(f"{statistics.median(added):.1f}")
    cells.append(f"{statistics.median(beyond):.1f}")
    return "| " + " | ".join(cells) + " |"


def _node_version(node: str) -> str:
    done = subprocess.run(
        [node, "--version"], check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 1 if a check failed, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=_positive, default=30, help="timed rounds per mode (default 30)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    provider = DemoProvider(ttl=3600, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with tempfile.TemporaryDirectory() as directory, provider as base_url:
        connectors = build(Path(directory), base_url)
        try:
            node = connectors["javascript"].runtime.executable("benchmark")
        except hr.SpecError as exc:
            print(f"CHECK FAILED: {exc}")
            return 1
        version = _node_version(node)
        parameters = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
        connections = {
            kind: connectors[kind].connect(connector_parameters=parameters) for kind in VARIANTS
        }
        try:
            sync = run_sync(provider, connections, node, args.rounds)
            asynchronous = run_async(provider, connections, node, args.rounds)
            check_api(provider, connections)
        except (CheckFailed, hr.RefreshError) as exc:
            print(f"CHECK FAILED: {type(exc).__name__}: {exc}")
            return 1
    elapsed = time.perf_counter() - started
    print("## One forced refresh: JavaScript (Node.js) against Python\n")
    print(
        f"{os.cpu_count()} cores, Node.js {version} ({node}), Python "
        f"{platform.python_version()}, {platform.system()} {platform.machine()}; "
        f"{args.rounds} interleaved rounds per mode after one warm-up each.\n"
    )
    print(
        "| mode | python ms (median / p90) | javascript ms (median / p90) "
        "| node -e 0 ms (median / p90) | javascript / python (median, p10-p90) "
        "| added ms (median) | added minus node start ms (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(_row("sync `auth.refresh()`", sync))
    print(_row("async `await auth.arefresh()` (asyncio)", asynchronous))
    print(
        f"\nEvery refresh made exactly 1 token call and changed the access token "
        f"({2 * (args.rounds + 1) * len(VARIANTS)} refreshes); both tokens work against the "
        f"API. Wall time {elapsed:.1f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
