"""The quick forms of the 1×N and supernet benchmarks run and write what their reports promise."""

import json
import subprocess
import sys

import pytest

from searchkit.spaces.onexn import kernel


@pytest.mark.slow
@pytest.mark.skipif(not kernel.load(), reason="the 1xN kernel could not be built here")
def test_onexn_bench_quick_form(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "searchkit.bench", "onexn", "quick=true", f"out={tmp_path}"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "onexn.json").read_text())
    assert {r["kind"] for r in data["kernel"]} == {"1x1", "3x3", "linear"}
    assert all(r["max_rel_err"] < 1e-4 and r["speedup"] > 0 for r in data["kernel"])  # every output checked
    assert data["network"] and all(r["max_rel_err"] < 1e-4 for r in data["network"])
    assert {r["arm"] for r in data["accuracy"]} >= {"1x4", "1x16", "unstructured", "filter"}
    md = (tmp_path / "onexn.md").read_text()
    assert "CPU:" in md and "Kernel dispatched to" in md and "paper's ordering" in md


def test_bnas_bench_quick_form(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "searchkit.bench", "bnas", "quick=true", f"out={tmp_path}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "bnas.json").read_text())["rows"]
    by_k = {r["k"]: r for r in rows}
    assert set(by_k) == {1, 2, 4} and by_k[4]["mib"] < by_k[1]["mib"]  # partial channels save memory
