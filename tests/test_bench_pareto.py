"""The Pareto benchmark's measure (2-D hypervolume) and one tiny run of it end to end."""

import json

import numpy as np
import pytest

from searchkit.bench import pareto


def test_hypervolume_of_known_fronts():
    assert pareto.hypervolume([]) == 0.0
    assert pareto.hypervolume([(0.0, 0.0)]) == 1.0
    assert pareto.hypervolume([(0.5, 0.5)]) == 0.25
    # dominated and out-of-box points add nothing; order does not matter
    points = [(0.6, 0.6), (0.5, 0.2), (0.2, 0.5), (1.2, 0.0), (0.3, 1.0)]
    assert pareto.hypervolume(points) == pytest.approx(0.55)
    assert pareto.hypervolume(points[::-1]) == pareto.hypervolume(points)
    assert pareto.non_dominated(points) == [(0.2, 0.5), (0.5, 0.2), (1.2, 0.0)]


def test_hypervolume_matches_a_grid_count():
    rng = np.random.default_rng(0)
    points = [tuple(p) for p in rng.uniform(0, 1, (12, 2))]
    grid = (np.arange(400) + 0.5) / 400
    x, y = np.meshgrid(grid, grid)
    covered = np.zeros_like(x, bool)
    for a, b in points:
        covered |= (x >= a) & (y >= b)
    assert pareto.hypervolume(points) == pytest.approx(covered.mean(), abs=5e-3)


@pytest.mark.slow
def test_tiny_run_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench"
    code = pareto.main(["data=synthetic", "evals=3", "checkpoints=[2]", "seeds=1", "population=2",
                        "base_epochs=0", "finetune_batches=1", "algos=[abc,random]", f"out={out}"])
    assert code == 0
    data = json.loads((out / "pareto.json").read_text())
    assert data["checkpoints"] == [2, 3] and data["reference_point"] == [1.0, 1.0]
    for arm in ("abc", "random"):
        (row,) = data["rows"][arm]
        assert row["evaluated"] == 3 and len(row["points"]) == 3
        assert row["hv"]["3"] >= row["hv"]["2"] >= 0
        assert row["hv"]["3"] == pytest.approx(pareto.hypervolume([tuple(p) for p in row["points"]]))
    text = (out / "pareto.md").read_text()
    assert "| abc |" in text and "| random |" in text and "reference point (1.0, 1.0)" in text
