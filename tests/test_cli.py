"""The command line as a user meets it: real processes, real files, one-line errors."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
import torch

FAST = ["space.model=resnet20", "data=synthetic", "base.epochs=1", "finetune.max_batches=2",
        "data.options={size: 256}"]


def cli(*args, cwd, check=True, timeout=600):
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "searchkit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_lists_choices(tmp_path):
    out = cli("search", "--help", cwd=tmp_path).stdout
    for name in ("channels", "abc", "tpe", "random", "resnet56", "vgg16", "digits", "cifar10"):
        assert name in out
    listed = cli("list", cwd=tmp_path).stdout
    assert "mobilenet_v2" in listed and "imagefolder" in listed


@pytest.mark.parametrize("args, fragment", [
    (["search", "space=chanels"], "unknown space 'chanels'; did you mean 'channels'?"),
    (["search", "algo=bees"], "unknown algo 'bees'"),
    (["search", "space.model=resnet57"], "did you mean 'resnet56'"),
    (["search", "trails=3"], "unknown key 'trails'; did you mean 'trials'?"),
    (["search", "data=cifar10", "data.root=/nonexistent/cifar"], "CIFAR-10 not found under"),
    (["search", *FAST, "constraint.flops=100"], "impossible constraint"),
    (["search", *FAST, "base.checkpoint=missing.pt"], "checkpoint not found"),
    (["export", "study=nope"], "no study 'nope'"),
    (["export", "study=nope", "format=tflite"], "unknown format 'tflite' (choices: pt2, onnx, all)"),
    (["search", "study=recipe"], "malformed YAML"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "recipe.yaml").write_text("space: {model: [resnet20\n")
    proc = cli(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("searchkit: error:"), proc.stderr
    assert fragment in lines[0]


def test_checkpoint_of_another_model(tmp_path):
    from searchkit.models import build_base
    torch.save(build_base("resnet56").state_dict(), tmp_path / "r56.pt")
    proc = cli("search", *FAST, "base.checkpoint=r56.pt", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "does not fit this model" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_search_studies_export_and_load_without_searchkit(tmp_path):
    out = cli("search", *FAST, "algo=abc", "trials=3", "algo.food_number=2", "study=channels-abc", cwd=tmp_path).stdout
    assert "best: trial" in out and "fewer" in out
    studies = cli("studies", cwd=tmp_path).stdout
    assert "channels-abc: complete" in studies
    cli("report", "study=channels-abc", cwd=tmp_path)
    html = (tmp_path / "reports" / "channels-abc" / "index.html").read_text()
    assert "Which to pick" in html and (tmp_path / "reports" / "channels-abc" / "trials.csv").exists()
    out = cli("export", "study=channels-abc", "out=exp", "top=2", "format=all", cwd=tmp_path).stdout
    assert "onnx: model.onnx" in out
    folders = sorted((tmp_path / "exp" / "channels-abc").glob("*/0*"))
    assert len(folders) == 2
    meta = json.loads((folders[0] / "arch.json").read_text())
    assert meta["costs"]["params"] < meta["base_costs"]["params"] and meta["costs"]["flops"] < meta["base_costs"]["flops"]
    assert meta["programs"]["pt2"]["batchnorm_folded"] > 0
    assert meta["programs"]["onnx"]["max_rel_diff"] <= 1e-4
    # The programs run with torch alone and with onnxruntime alone: searchkit is made
    # unimportable in the child.
    code = (
        "import sys; sys.modules['searchkit'] = None\n"
        "import torch, onnxruntime\n"
        f"m = torch.export.load({str(folders[0] / 'model.pt2')!r}).module()\n"
        f"x = torch.randn(5, *{tuple(meta['input_size'])}); y = m(x); print(tuple(y.shape))\n"
        f"sd = torch.load({str(folders[0] / 'weights.pt')!r}, weights_only=True)\n"
        "print(sum(v.numel() for k, v in sd.items() if 'running' not in k and 'num_batches' not in k))\n"
        f"s = onnxruntime.InferenceSession({str(folders[0] / 'model.onnx')!r})\n"
        "z = s.run(None, {'input': x.numpy()})[0]\n"
        "print(float(abs(torch.from_numpy(z) - y).max() / y.abs().max()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    shape, nparams, diff = proc.stdout.split("\n")[:3]
    assert shape == "(5, 10)" and float(diff) <= 1e-4
    assert int(nparams) == meta["costs"]["params"]


def _search_then_sigkill(args, tmp_path, study_name):
    """Start ``searchkit search ARGS``; SIGKILL it while its third candidate trains.

    Returns the study's database, the values of the trials completed before the kill and
    the number of the trial it left RUNNING."""
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "searchkit", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = tmp_path / "studies" / "searchkit.db"

    def states():
        """(state, has params) per trial: the kill should land while a candidate trains."""
        if not db.exists():
            return []
        try:
            with sqlite3.connect(db, timeout=30) as con:
                return [(r[0], r[1] > 0) for r in con.execute(
                    "select state, (select count(*) from trial_params p where p.trial_id = t.trial_id) "
                    "from trials t order by number")]
        except sqlite3.OperationalError:
            return []

    deadline = time.time() + 400
    while time.time() < deadline:
        s = states()
        if [x for x, _ in s].count("COMPLETE") >= 2 and s and s[-1] == ("RUNNING", True):
            time.sleep(0.3)  # inside its fine-tuning (40 batches: about a second or more)
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"search did not reach a running third trial: {states()}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{db}")
    done_before = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
    running = [t.number for t in study.trials if t.state.name == "RUNNING"]
    assert len(running) == 1, "the kill should leave one trial RUNNING"
    return db, done_before, running[0]


def _nothing_lost(db, study_name, done_before, killed_number, budget):
    """After the same command ran again: the budget is met, no result lost, nothing left
    RUNNING, and the killed trial FAILed and was re-queued once with its params.

    Returns the study, the killed trial and its re-queued copy."""
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{db}")
    trials = study.trials
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert all(trials[n].values == v for n, v in done_before.items())
    # (the killed trial itself may carry the evaluated mark: the kill can land between its
    # fine-tuning and its tell; only told trials count towards the budget)
    evaluated = [t for t in trials if t.user_attrs.get("searchkit:evaluated")
                 and t.state.name in ("COMPLETE", "PRUNED")]
    assert len(evaluated) == budget
    killed = trials[killed_number]
    assert killed.state.name == "FAIL"
    requeued = [t for t in trials if t.user_attrs.get("searchkit:requeued_from") == killed.number]
    assert len(requeued) == 1 and requeued[0].params == killed.params
    assert requeued[0].state.name == "COMPLETE" and requeued[0] in evaluated
    return study, killed, requeued[0]


def test_sigkill_then_same_command_continues(tmp_path):
    """Kill -9 mid-search; the same command finishes the budget, losing nothing."""
    args = ["search", *FAST, "finetune.max_batches=40", "algo=abc", "algo.food_number=3", "trials=5",
            "constraint.flops=1.0", "study=channels-abc"]
    db, done_before, running = _search_then_sigkill(args, tmp_path, "channels-abc")
    cli(*args, cwd=tmp_path)
    _, killed, again = _nothing_lost(db, "channels-abc", done_before, running, budget=5)
    # The re-queued trial keeps the killed one's place in the colony.
    role, again = killed.system_attrs["abc:role"], again.system_attrs["abc:role"]
    assert all(again[k] == role[k] for k in ("phase", "cycle", "slot", "source"))
    assert again["requeued_from"] == killed.number


@pytest.mark.parametrize("algo", ["ga", "nsga2"])
def test_sigkill_multi_objective_search_continues(tmp_path, algo):
    """The same for a Pareto search (objectives=[accuracy,flops]) with a generational
    strategy; then (once: ~10 s of torch.export per model) ``export top=pareto`` writes
    exactly the front of the resumed study."""
    from searchkit.study import pareto_trials

    name = f"channels-{algo}"
    args = ["search", *FAST, "finetune.max_batches=40", f"algo={algo}", "algo.population_size=3",
            "objectives=[accuracy,flops]", "trials=5", "constraint.flops=1.0", f"study={name}"]
    db, done_before, running = _search_then_sigkill(args, tmp_path, name)
    cli(*args, cwd=tmp_path)
    study, killed, again = _nothing_lost(db, name, done_before, running, budget=5)
    assert len(study.directions) == 2
    assert all(t.values[1] == t.user_attrs["cost:flops"] for t in study.trials if t.state.name == "COMPLETE")
    if algo == "ga":  # the re-queued trial keeps the killed one's place in its generation
        member, kept = killed.system_attrs["ga:member"], again.system_attrs["ga:member"]
        assert all(kept[k] == member[k] for k in ("generation", "index", "origin", "parents"))
        assert kept["requeued_from"] == killed.number
    if algo != "ga":
        return

    cli("export", f"study={name}", "out=exp", "top=pareto", cwd=tmp_path)
    front = pareto_trials(study)
    folders = sorted((tmp_path / "exp" / name).glob("*/0*"))
    assert front and len(folders) == len(front)
    exported = [json.loads((f / "arch.json").read_text()) for f in folders]
    assert {m["trial"] for m in exported} == {t.number for t in front}
    done = [t for t in study.trials if t.user_attrs.get("searchkit:evaluated") and t.state.name == "COMPLETE"]
    for m in exported:  # nothing trained dominates an exported model
        mine = (m["search_val_accuracy"], m["costs"]["flops"])
        assert not any(t.values[0] >= mine[0] and t.user_attrs["cost:flops"] <= mine[1]
                       and (t.values[0], t.user_attrs["cost:flops"]) != mine for t in done)
