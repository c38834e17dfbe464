"""The channel benchmark's quick form runs every kind of arm and writes its paired table."""

from benchrun import run_bench


def test_channel_bench_quick_form(tmp_path):
    data, md = run_bench("channels", tmp_path, "pruners=[uniform,magnitude,taylor]", timeout=600)
    arms = {r["arm"] for r in data["rows"]}
    assert arms == {"abc", "random", "uniform", "magnitude", "taylor"}
    for r in data["rows"]:
        assert r["flops_ratio"] <= 0.25 + 1e-9  # every arm meets the same bound
        assert 0 <= r["test"] <= 1
    # magnitude and Taylor choose different widths than uniform (they rank channels globally)
    keeps = {r["arm"]: r["keep"] for r in data["rows"] if r["seed"] == 0}
    assert len(set(keeps["magnitude"])) > 1 and keeps["magnitude"] != keeps["taylor"]
    assert "Δ uniform" in md and "Sample efficiency" in md and "Quick form" in md


def test_proxy_bench_quick_form(tmp_path):
    data, _ = run_bench("proxy", tmp_path, timeout=600)
    got = data["models"]["resnet20"]
    assert len(got["truth"]) == 4 and set(got["proxies"]) == {"abn", "ft0.5", "ft1", "ft1+abn", "ft2"}
    # the genomes sit at the bound, and a proxy that trains longer costs more
    assert got["proxies"]["ft2"]["seconds"] > got["proxies"]["abn"]["seconds"]
