"""Latency predictors made for tests (no CPU profiled)."""

import numpy as np


def builtin_only(target: str):
    """A predictor of the built-in kernel types only, as a target profiled before a space
    registered its own op's type (every kernel 10 µs)."""
    from searchkit.costs.kernels import KERNELS
    from searchkit.costs.latency import Predictor
    rng = np.random.default_rng(0)
    rows = {kind: [tuple(r) for r in k.sweep(rng, 20)] for kind, k in KERNELS.items()}
    return Predictor.fit(rows, {k: [1e-5] * len(r) for k, r in rows.items()}, {"target": target}, trees=2)


def quick_profile(root):
    """A quick profile of this CPU as target ``q`` under ``root``, fitted; its predictor."""
    from searchkit.costs.profiling import fit, load_predictor, profile
    profile("q", sweep="quick", root=root, progress=False, log=lambda *a: None)
    fit("q", root=root)
    return load_predictor("q", root)


def bounded_search_record(common: list[str], bound: float, tmp_path) -> dict:
    """Two random candidates under ``constraint.latency_ms=bound`` (the storage is
    ``tmp_path/db.sqlite``), each trained one predicted under it; the best one's export
    record of latency."""
    import json

    from searchkit.config import load_config
    from searchkit.export import export_study
    from searchkit.search import run_search
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    out = run_search(load_config(common + [f"storage={storage}", f"constraint.latency_ms={bound}", "trials=2",
                                           "algo=random"]), quiet=True)
    trained = [t for t in out.study.trials if t.user_attrs.get("searchkit:evaluated")]
    assert len(trained) == 2 and all(t.user_attrs["cost:latency"] <= bound for t in trained)
    folder = export_study(out.study.study_name, storage, out=tmp_path / "exp")[0]
    return json.loads((folder / "arch.json").read_text())["latency"]
