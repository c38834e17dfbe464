"""Behaviour kept: seeded searches propose, train and tell exactly what they did when
``tests/golden/golden.json`` was recorded (archids, strategy roles, values, flags)."""

import json

import pytest

from tests.golden.runs import GOLDEN, RUNS, run


@pytest.mark.parametrize("name", sorted(RUNS))
def test_seeded_run_matches_golden(workdir, name):
    expected = json.loads(GOLDEN.read_text())[name]
    got = run(name, f"sqlite:///{workdir / 'golden.db'}")
    assert [r["archid"] for r in got] == [r["archid"] for r in expected]
    assert [r["role"] for r in got] == [r["role"] for r in expected]
    assert [(r["state"], r["infeasible"], r["duplicate_of"]) for r in got] == \
        [(r["state"], r["infeasible"], r["duplicate_of"]) for r in expected]
    for a, b in zip(got, expected):
        assert (a["values"] is None) == (b["values"] is None), a["number"]
        if a["values"] is not None:
            assert a["values"] == pytest.approx(b["values"], abs=1e-9), a["number"]
