"""The seams, used as a new component would use them: a test-only space and cost model
(``tests/plugins``, each registered with one line) searched end to end; every cost priced
once per candidate; a trial's records written in a few transactions; a runner recording
a genome of its own; a base the space cannot use refused before any training."""

import json
import os
import subprocess
import sys

import optuna
import pytest
from sqlalchemy import event

from searchkit import study as st
from searchkit.config import load_config
from searchkit.search import run_search
from searchkit.strategies.asktell import AskTellRunner

TOY = ["space=toy", "data=synthetic", "data.options={size: 128}", "data.image_size=8", "finetune.max_batches=2",
       "progress=false"]


def cli(*args, cwd, check=True):
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "searchkit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_a_test_only_space_and_cost_run_end_to_end(tmp_path):
    """Priced, constrained (on the test-only cost), trained, reported and exported: no edit
    anywhere but the two plugin files."""
    out = cli("search", *TOY, "algo=abc", "algo.food_number=2", "trials=4", "constraint.activations=0.6",
              cwd=tmp_path).stdout
    assert "best: trial" in out and "activations" in out
    study = optuna.load_study(study_name="toy-synthetic-abc-activations0.6",
                              storage=f"sqlite:///{tmp_path / 'studies' / 'searchkit.db'}")
    base = study.user_attrs[st.BASE_KEY]["costs"]
    assert set(base) == {"flops", "params", "activations"}
    trained = st.evaluated_trials(study)
    assert len(trained) == 4
    for t in trained:  # repaired under the bound: the categorical kernel gene is never stepped
        assert t.user_attrs["cost:activations"] <= 0.6 * base["activations"]
        assert t.user_attrs["describe"]["summary"] and t.user_attrs["searchkit:source"] == "asktell"
    cli("report", "study=toy-synthetic-abc-activations0.6", cwd=tmp_path)
    html = (tmp_path / "reports" / "toy-synthetic-abc-activations0.6" / "index.html").read_text()
    assert "activations" in html and "Which to pick" in html
    cli("export", "study=toy-synthetic-abc-activations0.6", "out=exp", cwd=tmp_path)
    folder, = (tmp_path / "exp" / "toy-synthetic-abc-activations0.6").glob("*/01-*")
    meta = json.loads((folder / "arch.json").read_text())
    assert meta["space"] == "toy" and meta["costs"]["activations"] <= 0.6 * base["activations"]
    code = ("import sys; sys.modules['searchkit'] = None\nimport torch\n"
            f"m = torch.export.load({str(folder / 'model.pt2')!r}).module()\n"
            f"print(tuple(m(torch.zeros(4, *{tuple(meta['input_size'])})).shape))")
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "(4, 10)", proc.stderr


def test_every_cost_is_priced_once_per_proposed_candidate(workdir, monkeypatch):
    from searchkit.costs.models import FlopsCost, ParamsCost
    from tests.plugins import toy_cost
    calls = {"flops": 0, "params": 0}
    for cls in (FlopsCost, ParamsCost):
        real = cls.cost

        def counted(self, genome, real=real, name=cls.name):
            calls[name] += 1
            return real(self, genome)
        monkeypatch.setattr(cls, "cost", counted)
    cfg = load_config(TOY + ["algo=random", "trials=4", "constraint.activations=0.8", "repair=false",
                             "space.max_depth=2", "space.max_width=8"])  # 8 genomes: repeats are certain
    runner = AskTellRunner(cfg, quiet=True)  # prices the base and the floors
    calls.update(flops=0, params=0)
    toy_cost.CALLS["n"] = 0
    out = runner.run()
    proposed = {t.user_attrs["archid"] for t in out.study.trials}
    assert len(out.study.trials) > len(proposed)  # duplicates were proposed too
    assert any(t.user_attrs.get("searchkit:infeasible") for t in out.study.trials)
    assert calls == {"flops": len(proposed), "params": len(proposed)}
    assert toy_cost.CALLS["n"] == len(proposed)


def _write_transactions(run) -> int:
    """Committed transactions that wrote to a database while ``run()`` ran."""
    from sqlalchemy.engine import Engine
    state = {"wrote": False, "n": 0}

    def on_execute(conn, cursor, statement, *args):
        if statement.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            state["wrote"] = True

    def on_commit(conn):
        state["n"] += state["wrote"]
        state["wrote"] = False
    event.listen(Engine, "before_cursor_execute", on_execute)
    event.listen(Engine, "commit", on_commit)
    try:
        run()
    finally:
        event.remove(Engine, "before_cursor_execute", on_execute)
        event.remove(Engine, "commit", on_commit)
    return state["n"]


@pytest.mark.parametrize("model", ["resnet20", "resnet56"])
def test_a_trial_is_recorded_in_a_few_transactions(workdir, model):
    """Create, driver tag, strategy role, params, priced record, results, tell: seven write
    transactions per trained trial (and the best one's weights artifact), however many
    genes the genome has (9 for ResNet-20, 27 for ResNet-56; 0.1 wrote 33 and 51)."""
    common = ["space.model=" + model, "data=synthetic", "data.options={size: 64}", "base.epochs=0",
              "finetune.max_batches=1", "constraint={}", "progress=false", "algo=abc", "algo.food_number=3"]
    run_search(load_config(common + ["trials=1", "study=warm"]), quiet=True)  # the base, once
    cfg = load_config(common + ["trials=6"])
    runner = AskTellRunner(cfg, quiet=True)
    n = _write_transactions(runner.run)
    trials = runner.study.trials
    assert len(st.evaluated_trials(runner.study)) == len(trials) == 6
    assert n <= 7 * len(trials) + 3, n  # + the artifacts of new best weights


def test_a_runner_records_a_genome_of_its_own(workdir):
    """What a differentiable runner does with the genomes it derives: an ordinary trial, priced,
    trained and told; the same genome again is a duplicate, not trained twice."""
    from searchkit.evaluator import evaluate
    runner = AskTellRunner(load_config(TOY + ["algo=random", "trials=1"]), quiet=True)
    session = runner.session
    genome = {"depth": 2, "width": 8, "kernel": 3}
    first = session.record_genome(genome, evaluate, user_attrs={"derived_at_epoch": 3})
    again = session.record_genome(genome, evaluate)
    assert first.state.name == "COMPLETE" and first.user_attrs["searchkit:evaluated"]
    assert first.user_attrs["genome"] == genome and first.user_attrs["derived_at_epoch"] == 3
    assert again.user_attrs["searchkit:duplicate_of"] == first.number and again.values == first.values
    assert st.ranked_trials(runner.study)[0].number == first.number


def test_a_base_the_space_cannot_prune_is_refused_before_any_training(tmp_path):
    for model, why in (("torchvision:shufflenet_v2_x0_5", "the channel dependencies of ShuffleNetV2 cannot be "
                                                          "traced (ZeroDivisionError: integer division or modulo by zero)"),
                       ("tests.nets.user_net:linear_only", "no prunable channel group found in Sequential "
                                                           "(space.units=all)")):
        proc = cli("search", "space=channels", f"space.model={model}", "data=synthetic", cwd=tmp_path,
                   check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0] == f"searchkit: error: space=channels: {why}"
    assert not (tmp_path / "studies").exists()  # no base trained, no study touched
