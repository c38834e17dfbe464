"""The quick forms of the 1×N and bnas benchmarks run and write what their reports promise."""

import pytest

from benchrun import run_bench
from searchkit.spaces.bnas import xnor
from searchkit.spaces.onexn import kernel


@pytest.mark.slow
@pytest.mark.skipif(not kernel.load(), reason="the 1xN kernel could not be built here")
def test_onexn_bench_quick_form(tmp_path):
    data, md = run_bench("onexn", tmp_path)
    assert {r["kind"] for r in data["kernel"]} == {"1x1", "3x3", "linear"}
    assert all(r["max_rel_err"] < 1e-4 and r["speedup"] > 0 for r in data["kernel"])  # every output checked
    assert data["network"] and all(r["max_rel_err"] < 1e-4 for r in data["network"])
    assert {r["arm"] for r in data["accuracy"]} >= {"1x4", "1x16", "unstructured", "filter"}
    assert "CPU:" in md and "Kernel dispatched to" in md and "paper's ordering" in md
    # part d: every genome priced and measured, beside the profile's speed references
    facts = data["latency_facts"]["resnet20"]
    assert len(data["latency"]) == 4 and facts["speed"] > 0 and facts["at_profile_speed"]["n"] == 4
    assert "RMSPE at profile speed" in md


@pytest.mark.skipif(not xnor.load(), reason="the XNOR kernel could not be built here")
def test_bnas_bench_quick_form(tmp_path):
    data, md = run_bench("bnas", tmp_path, timeout=600)
    by_k = {r["k"]: r for r in data["supernet"]}
    assert set(by_k) == {1, 2, 4} and by_k[4]["mib"] < by_k[1]["mib"]  # partial channels save memory
    assert data["kernel"] and all(r["exact"] and r["xnor_ms"] > 0 for r in data["kernel"])
    assert len(data["latency"]) == 6 and "Spearman" in md and "XNOR kernel ISA" not in md and "dispatched to" in md
    arms = {r["arm"] for r in data["search"]}  # darts with and without reduction, random cells of its size
    assert {"darts", "darts+reduce", "random cells"} <= arms and "Operation-space reduction against none" in md
