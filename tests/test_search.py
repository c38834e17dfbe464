"""End-to-end searches on real SQLite studies: budget, continuation, constraints, duplicates."""

import json

import optuna
import pytest
from optuna.trial import TrialState

from searchkit import study as st
from searchkit.config import ConfigError, load_config
from searchkit.search import run_search

FAST = ["space.model=resnet20", "data=synthetic", "base.epochs=1", "finetune.max_batches=2",
        "progress=false", "data.options={size: 256}"]


def cfg_of(*extra):
    return load_config(FAST + list(extra))


def test_search_budget_and_continue(workdir):
    out = run_search(cfg_of("algo=random", "trials=3"), quiet=True)
    assert out.evaluated == 3
    first = {t.number: (t.params, t.values) for t in st.evaluated_trials(out.study)}
    # The same study with a larger budget continues; the earlier results stay untouched.
    out2 = run_search(cfg_of("algo=random", "trials=5"), ["trials=5"], quiet=True)
    assert out2.evaluated == 5
    again = {t.number: (t.params, t.values) for t in st.evaluated_trials(out2.study)}
    assert all(again[n] == v for n, v in first.items())
    assert not out2.study.get_trials(states=(TrialState.RUNNING,))


def test_infeasible_candidates_are_recorded_not_trained(workdir):
    out = run_search(cfg_of("algo=random", "trials=3", "constraint.flops=0.4", "repair=false"), quiet=True)
    trials = out.study.get_trials()
    infeasible = [t for t in trials if t.user_attrs.get(st.INFEASIBLE)]
    assert infeasible, "random search under a 40% FLOPs bound should propose some infeasible genomes"
    for t in infeasible:
        assert t.state == TrialState.PRUNED
        assert t.constraints["flops"] > 0
        assert not t.user_attrs.get(st.EVALUATED) and not t.intermediate_values
    base = out.setup.costs["flops"].base()
    for t in st.evaluated_trials(out.study):
        assert t.user_attrs["cost:flops"] <= 0.4 * base
        assert t.constraints["flops"] <= 0


def test_impossible_constraint_refused_before_any_study(workdir):
    with pytest.raises(ConfigError, match="impossible constraint"):
        run_search(cfg_of("constraint.flops=1000"), quiet=True)
    assert "channels-abc" not in st.study_names(st.open_storage("sqlite:///studies/searchkit.db"))


def test_duplicates_are_not_trained_twice(workdir):
    # A two-choice space on a tiny budget makes repeats certain.
    out = run_search(cfg_of("algo=random", "trials=4", "space.keep=[0.5,1.0]", "constraint.flops=1.0",
                            "space.model=resnet20", "max_attempts_factor=50"), quiet=True)
    dups = [t for t in out.study.get_trials() if t.user_attrs.get(st.DUPLICATE_OF) is not None]
    trained = {}
    for t in st.evaluated_trials(out.study):
        assert t.user_attrs["archid"] not in trained
        trained[t.user_attrs["archid"]] = t
    for t in dups:
        src = trained[t.user_attrs["archid"]]
        assert t.values == src.values and not t.user_attrs.get(st.EVALUATED)


def test_changed_settings_refused_and_study_untouched(workdir):
    name = run_search(cfg_of("algo=random", "trials=2"), quiet=True).study.study_name
    before = len(optuna.load_study(study_name=name, storage="sqlite:///studies/searchkit.db").trials)
    with pytest.raises(st.StudyError, match="different settings"):
        run_search(cfg_of("algo=random", "trials=2", "space.rule=random"), FAST + ["algo=random", "space.rule=random"],
                   quiet=True)
    after = optuna.load_study(study_name=name, storage="sqlite:///studies/searchkit.db")
    assert len(after.trials) == before


def test_study_holds_everything(workdir):
    out = run_search(cfg_of("algo=tpe", "trials=2"), quiet=True)
    study = out.study
    assert json.loads(study.user_attrs[st.CONFIG_KEY])["algo"]["name"] == "tpe"
    base = study.user_attrs[st.BASE_KEY]
    assert len(base["describe"]["layers"]["names"]) == 9 and base["costs"]["flops"] > base["costs"]["params"] > 0
    t = st.ranked_trials(study)[0]
    for key in ("genome", "archid", "cost:flops", "cost:params", "val_accuracy", "recipe", "describe"):
        assert key in t.user_attrs
    assert len(t.user_attrs["genome"]["keep"]) == 9 and len(t.user_attrs["recipe"]) == 9


def test_multi_objective_front_and_pareto_export(workdir):
    from searchkit.export import export_study
    out = run_search(cfg_of("algo=nsga2", "objectives=[accuracy,flops]", "trials=4", "constraint.flops=1.0",
                            "algo.population_size=4"), quiet=True)
    assert out.study.directions[1].name == "MINIMIZE"
    for t in st.evaluated_trials(out.study):
        assert t.values[1] == t.user_attrs["cost:flops"]
    front = st.pareto_trials(out.study)
    assert front
    for a in front:  # nothing on the front is dominated by any trained trial
        for b in st.ranked_trials(out.study):
            assert not (b.values[0] >= a.values[0] and b.user_attrs["cost:flops"] < a.user_attrs["cost:flops"])
    folders = export_study(out.study.study_name, out.config.storage, out=workdir / "exp", top="pareto")
    assert len(folders) == len(front)


def test_abc_accepts_multi_objective():  # it decomposes the front (strategies/abc.py)
    assert load_config(["algo=abc", "objectives=[accuracy,flops]"]).algo.name == "abc"


@pytest.mark.parametrize("algo", ["abc", "ga", "tpe", "random"])
def test_tight_constraint_proposals_are_repaired(workdir, algo):
    """At 30% of the base's FLOPs almost no uniform draw is feasible: strategies repair
    proposals with the space's cost check instead of burning trials on infeasible ones."""
    out = run_search(cfg_of(f"algo={algo}", "trials=3", "constraint.flops=0.3", "algo.n_startup_trials=1"
                            if algo == "tpe" else "seed=0"), quiet=True)
    assert out.evaluated == 3
    assert not [t for t in out.study.get_trials() if t.user_attrs.get(st.INFEASIBLE)]
    base = out.setup.costs["flops"].base()
    ratios = [t.user_attrs["cost:flops"] / base for t in st.evaluated_trials(out.study)]
    assert all(0.15 < r <= 0.3 for r in ratios), ratios  # repaired to just inside the bound


def test_interrupted_seeded_search_proposes_what_an_uninterrupted_one_does(workdir):
    """ABC on real candidates: stop after 3 trials, start again, and the sequence of
    proposed architectures equals that of one uninterrupted run with the same seed."""
    args = ("algo=abc", "algo.food_number=3", "algo.food_limit=1", "trials=7", "seed=3", "constraint.flops=0.6")
    straight = run_search(cfg_of(*args, "storage=sqlite:///straight.db"), quiet=True)
    first = run_search(cfg_of(*args, "storage=sqlite:///resumed.db"), quiet=True, max_new=3)
    assert first.stop_reason == "max_new"
    resumed = run_search(cfg_of(*args, "storage=sqlite:///resumed.db"), quiet=True)

    def seq(study):
        return [(t.user_attrs["archid"], t.system_attrs["abc:role"]["phase"]) for t in study.get_trials()]

    assert seq(resumed.study) == seq(straight.study)
    assert [t.values for t in resumed.study.trials] == [t.values for t in straight.study.trials]
    assert {p for _, p in seq(straight.study)} >= {"init", "employed", "onlooker"}


def test_a_trial_killed_right_after_ask_is_failed_by_a_driver_starting_at_once(tmp_path):
    """A driver killed between ``study.ask`` and its tag leaves a young untagged RUNNING
    trial (CI: the next driver started within the grace and left it RUNNING for good)."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'x.db'}", study_name="s")
    study._storage.create_new_trial(study._study_id)  # what ask writes before any tag
    assert st.recover_stale_trials(study) == [(0, None)]  # no params: nothing to re-queue
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]


def test_trial_killed_after_its_result_was_marked_is_not_counted(tmp_path):
    """A driver killed between marking a result evaluated and telling it leaves a RUNNING
    trial that says evaluated: recovery fails it, un-marks it and re-queues it once."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'x.db'}", study_name="s")
    trial = study.ask({"keep_000": optuna.distributions.IntDistribution(1, 10)})
    # The tag of a driver on this host whose process no longer exists.
    import socket

    from searchkit.study import attrs
    attrs.set_system_attr(study, trial._trial_id, st.DRIVER, {"host": socket.gethostname(),
                                                              "pid": 2**22 + 17, "start": 1.0})
    trial.set_user_attr(st.EVALUATED, True)
    trial.set_user_attr("val_accuracy", 0.5)
    assert st.recover_stale_trials(study) == [(0, 1)]
    dead, again = study.get_trials()
    assert dead.state == TrialState.FAIL and dead.user_attrs[st.EVALUATED] is False
    assert again.state == TrialState.WAITING and again.system_attrs["fixed_params"] == dead.params
    assert st.evaluated_trials(study) == []


def test_a_base_cached_by_another_run_while_this_one_trained_is_the_one_used(workdir):
    """Two searches of one recipe training its base at once end with one cached file: the
    one that finishes second takes the first one's weights (a study then names one file)."""
    import torch

    from searchkit import bases
    from searchkit.models import build_base
    from searchkit.models.checkpoint import file_sha256, save_state_dict
    from searchkit.registry import SPACES
    from searchkit.setup import data_spec, load_data
    cfg = cfg_of("base.cache_dir=cache")
    data = load_data(data_spec(cfg, SPACES.get("channels")))
    path = bases.cache_path(cfg, "resnet20", data)
    torch.manual_seed(123)
    theirs = build_base("resnet20", num_classes=data.num_classes)

    def other_run_caches_first():
        save_state_dict(theirs, path)
    base = bases.prepare(cfg, "resnet20", build_base("resnet20", num_classes=data.num_classes), data, "cpu",
                         quiet=True, before_training=other_run_caches_first)
    assert base.sha256 == file_sha256(path)
    assert all(torch.equal(a, b) for a, b in zip(base.module.state_dict().values(), theirs.state_dict().values()))
