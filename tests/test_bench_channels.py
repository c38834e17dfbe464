"""The channel benchmark's quick form runs every kind of arm and writes its paired table."""

import json
import subprocess
import sys


def test_channel_bench_quick_form(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "searchkit.bench", "channels", "quick=true",
                           "pruners=[uniform,magnitude,taylor]", f"out={tmp_path}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "channels.json").read_text())
    arms = {r["arm"] for r in data["rows"]}
    assert arms == {"abc", "random", "uniform", "magnitude", "taylor"}
    for r in data["rows"]:
        assert r["flops_ratio"] <= 0.25 + 1e-9  # every arm meets the same bound
        assert 0 <= r["test"] <= 1
    # magnitude and Taylor choose different widths than uniform (they rank channels globally)
    keeps = {r["arm"]: r["keep"] for r in data["rows"] if r["seed"] == 0}
    assert len(set(keeps["magnitude"])) > 1 and keeps["magnitude"] != keeps["taylor"]
    md = (tmp_path / "channels.md").read_text()
    assert "Δ uniform" in md and "Sample efficiency" in md and "Quick form" in md


def test_proxy_bench_quick_form(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "searchkit.bench", "proxy", "quick=true", f"out={tmp_path}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "proxy.json").read_text())
    got = data["models"]["resnet20"]
    assert len(got["truth"]) == 4 and set(got["proxies"]) == {"abn", "ft0.5", "ft1", "ft1+abn", "ft2"}
    # the genomes sit at the bound, and a proxy that trains longer costs more
    assert got["proxies"]["ft2"]["seconds"] > got["proxies"]["abn"]["seconds"]
