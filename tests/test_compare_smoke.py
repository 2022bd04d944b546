"""Smoke test of benchmarks/compare.py (issue 6): a --quick run in-process.

Not a timed assertion: it checks that the comparison runs end to end against the demo
provider, that httpx_refresh met its count targets in that run (exactly 1 token-endpoint
call per storm, no failure, a working refresh token; the cost ratio is left out with
``--no-cost-target``), that the JSON holds a cell for every strategy x scenario, and that
the plot was written.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path
from types import ModuleType

import pytest

COMPARE = Path(__file__).resolve().parent.parent / "benchmarks" / "compare.py"


def _missing_peers() -> list[str]:
    missing = []
    for name in (
        "authlib.integrations.httpx_client",
        "httpx_auth",
        "matplotlib",
        "uvicorn",
        "starlette",
    ):
        try:
            with warnings.catch_warnings():
                # authlib 1.9 warns at import that plain httpx is deprecated (httpx2), and
                # importing authlib.deprecate installs an "always" filter for that warning:
                # the "ignore" must come after it to win.
                if name.startswith("authlib"):
                    importlib.import_module("authlib.deprecate")
                warnings.simplefilter("ignore")
                importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def _load_compare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare_benchmark", COMPARE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_compare_quick_run_covers_every_cell(tmp_path: Path) -> None:
    """compare.py --quick: exit 0, a cell per strategy x scenario in the JSON, a PNG."""
    missing = _missing_peers()
    if missing:
        pytest.skip(f"compare.py needs the 'bench' extra; not importable: {', '.join(missing)}")
    compare = _load_compare()
    try:
        out = tmp_path / "c.json"
        # The cost ratio is a timing: measured and printed, but not a pass/fail here.
        status = compare.main(["--quick", "--no-cost-target", "--out", str(out)])
    finally:
        sys.modules.pop("compare_benchmark", None)

    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["missed"] == []
    assert document["checks"] == []
    assert status == 0
    cells = document["cells"]
    present = {(cell["strategy"], cell["scenario"]) for cell in cells}
    expected = {
        (strategy, scenario)
        for strategy in ("static", "naive", "authlib", "httpx_auth", "httpx_refresh")
        for scenario in ("storm", "expired", "rotation", "steady", "body_replay", "trio")
    }
    assert present == expected
    storm_sizes = {cell["n"] for cell in cells if cell["scenario"] == "storm"}
    assert storm_sizes == {10, 100}
    for cell in cells:
        assert cell["successes"] + cell["failures"] == cell["n"], cell
        assert cell["failures"] == sum(cell["errors"].values()), cell
    ours = [c for c in cells if c["strategy"] == "httpx_refresh"]
    for cell in ours:
        if cell["scenario"] in ("storm", "expired", "rotation", "trio"):
            assert cell["token_calls"] == 1, cell
            assert cell["final_refresh_token"] == "active", cell
    png = out.with_suffix(".png")
    assert png.is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
