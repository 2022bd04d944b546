"""The default demo on a busy machine: how many runs pass, per mode, beside busy loops.

``httpx-refresh demo`` (2,000 requests at concurrency 200, one revocation; its token
lifetime calibrated to the machine, 2 s or longer, unless ``-- --ttl`` sets it) is
run ``--runs`` times in each mode it has (async on asyncio, async on trio, sync threads),
each run in its own process, while ``--busy`` CPU-bound loops (``while True: pass`` in
their own processes) compete for the CPUs. It measures, it does not assert: it prints one
line per run (pass or the demo's FAILED reasons, the 1-minute load average before and
after) and a table of passes/runs per mode. Other work on the machine (tests, builds)
loads it too; the load average says how busy it was.

Run: ``python benchmarks/demo_under_load.py`` (``--help`` for options; arguments after
``--`` go to every demo run, e.g. ``-- --concurrency 100``). Needs the ``demo`` extra.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

MODES = {
    "async/asyncio": ["--backend", "asyncio"],
    "async/trio": ["--backend", "trio"],
    "sync": ["--sync"],
}


def load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "n/a"


def run_once(mode: str, extra: list[str], timeout: float) -> tuple[bool, str]:
    """Run the demo once in a fresh process; return (passed, summary)."""
    command = [sys.executable, "-m", "httpx_refresh", "demo", "--no-progress", *MODES[mode]]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [*command, *extra], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:g} s"
    wall = time.perf_counter() - started
    lines = done.stdout.splitlines()
    reasons = [line.strip() for line in lines if line.startswith("  - ")]
    rows = [
        " ".join(line.split())
        for line in lines
        if line.startswith(("  ttl ", "  rejected replays", "  latency", "  wall time"))
    ]
    summary = f"{wall:.1f} s; " + "; ".join(rows + reasons)
    if done.returncode not in (0, 1):
        summary += f"; exit {done.returncode}: {done.stderr.strip()[-300:]}"
    return done.returncode == 0, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per mode (default 5)")
    parser.add_argument("--busy", type=int, default=2, help="busy loops beside (default 2)")
    parser.add_argument(
        "--modes", nargs="+", choices=sorted(MODES), default=list(MODES), help="modes to run"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("extra", nargs="*", help="after --: more demo arguments")
    args = parser.parse_args(argv)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    results: dict[str, list[bool]] = {mode: [] for mode in args.modes}
    loads: list[float] = []
    try:
        print(f"{args.busy} busy loop(s) on {os.cpu_count()} CPU(s); load average {load()}")
        for number in range(1, args.runs + 1):
            for mode in args.modes:  # interleaved, so a load change hits every mode alike
                before = load()
                passed, summary = run_once(mode, args.extra, args.timeout)
                after = load()
                if after != "n/a":
                    loads.append(float(after))
                results[mode].append(passed)
                verdict = "pass" if passed else "FAIL"
                print(f"run {number} {mode:<14} {verdict}  load {before} -> {after}  {summary}")
                sys.stdout.flush()
    finally:
        for process in busy:
            process.kill()
            process.wait()
    print("\n| mode | passed / runs |\n|---|---|")
    for mode, outcomes in results.items():
        print(f"| {mode} | {sum(outcomes)} / {len(outcomes)} |")
    if loads:
        print(f"\nload average after the runs: min {min(loads):.1f}, max {max(loads):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
