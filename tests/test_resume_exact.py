"""A seeded search interrupted at any point and run again proposes, trains and tells
exactly what an uninterrupted one does: Ctrl-C while a candidate trains, Ctrl-C while one
is priced, and a driver killed outright (its trial left RUNNING), for ABC, GA and TPE."""

import socket

import pytest

from searchkit import evaluator
from searchkit.config import load_config
from searchkit.core.ports import SearchInterrupted
from searchkit.session import Session
from searchkit.strategies.asktell import AskTellRunner
from searchkit.study import DRIVER, attrs

COMMON = ["space.model=resnet20", "data=synthetic", "data.options={size: 128}", "base.epochs=0",
          "finetune.max_batches=1", "constraint.flops=0.6", "progress=false", "seed=5", "trials=9"]
ALGOS = {"abc": ["algo=abc", "algo.food_number=3", "algo.food_limit=1"],
         "ga": ["algo=ga", "algo.population_size=3"],
         "tpe": ["algo=tpe", "algo.n_startup_trials=3"]}


class Killed(BaseException):
    """The driver dies on the spot: nothing of it runs any more."""


def _sequence(study):
    """What was trained and told, in order: failed (interrupted) trials left out."""
    return [(t.user_attrs.get("archid"), t.values) for t in study.trials if t.state.name != "FAIL"]


def _run(cfg):
    return AskTellRunner(cfg, quiet=True).run().study


@pytest.mark.parametrize("algo", sorted(ALGOS))
@pytest.mark.parametrize("where", ["training", "pricing", "killed"])
def test_interrupted_run_continues_exactly(workdir, monkeypatch, algo, where):
    args = COMMON + ALGOS[algo]
    straight = _sequence(_run(load_config(args + ["storage=sqlite:///straight.db"])))
    cfg = load_config(args + ["storage=sqlite:///resumed.db"])
    stop_at = 4  # the fifth trial
    real_eval, real_price = evaluator.evaluate, Session.price
    fired = {"done": False}

    def stop():
        fired["done"] = True
        raise Killed() if where == "killed" else KeyboardInterrupt()

    def evaluate(item, **kw):
        if item.number == stop_at and not fired["done"] and where != "pricing":
            stop()
        return real_eval(item, **kw)

    def price(self, genome):
        if where == "pricing" and not fired["done"] and len(self.study.trials) - 1 == stop_at:
            stop()
        return real_price(self, genome)
    monkeypatch.setattr(evaluator, "evaluate", evaluate)
    monkeypatch.setattr(Session, "price", price)
    runner = AskTellRunner(cfg, quiet=True)
    with pytest.raises((SearchInterrupted, KeyboardInterrupt, Killed)):
        runner.run()
    if where == "killed":  # the trial it trained is left RUNNING, tagged by a driver now gone
        runner._stop()
        dead = {"host": socket.gethostname(), "pid": 2 ** 22 + 17, "start": "1"}
        for t in runner.study.get_trials(deepcopy=False):
            if t.state.name == "RUNNING":
                attrs.set_system_attr(runner.study, t._trial_id, DRIVER, dead)
    monkeypatch.setattr(evaluator, "evaluate", real_eval)
    monkeypatch.setattr(Session, "price", real_price)
    resumed = _run(cfg)
    assert any(t.state.name == "FAIL" for t in resumed.trials)  # it was interrupted
    assert _sequence(resumed) == straight
