"""Fine-tuning evaluator: learning, pruning callbacks, divergence, determinism, devices."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.utils.data import Subset

from searchkit.data import load_dataset
from searchkit.evaluate import (
    NonFiniteLossError,
    TrainBudget,
    evaluate_accuracy,
    finetune,
    resolve_device,
)
from searchkit.progress import bar, progress_enabled


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 4, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.1),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                  nn.Linear(width * 4, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", image_size=12, num_classes=4, size=256, seed=0)


def fresh_model(seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN()


def test_finetune_learns_above_chance(data):
    model = fresh_model()
    before, _ = evaluate_accuracy(model, data.val)
    result = finetune(model, data, TrainBudget(epochs=3, batch_size=32, lr=0.05), progress=False)
    assert result["val_accuracy"] > 0.6 > before + 0.1  # chance is 0.25
    assert result["steps"] == 24 and result["epochs_run"] == 3.0
    assert [h[0] for h in result["history"]] == [8, 16, 24]
    assert result["pruned"] is False
    assert math.isfinite(result["train_loss"]) and math.isfinite(result["val_loss"])
    assert result["seconds"] > 0 and not model.training
    assert result["val_accuracy"] == pytest.approx(evaluate_accuracy(model, data.val)[0])


def test_report_can_stop_training(data):
    calls = []

    def report(step, accuracy):
        calls.append((step, accuracy))
        return step >= 4

    budget = TrainBudget(epochs=2, batch_size=32, eval_every=2)
    result = finetune(fresh_model(), data, budget, report=report, progress=False)
    assert result["pruned"] is True
    assert [c[0] for c in calls] == [2, 4] and result["steps"] == 4
    assert result["epochs_run"] == 0.5
    assert result["history"] == [[s, a] for s, a in calls]
    assert result["val_accuracy"] == calls[-1][1]


def test_budget_steps_max_batches_and_fractions(data):
    result = finetune(fresh_model(), data, TrainBudget(epochs=5, max_batches=3, batch_size=32),
                      progress=False)
    assert result["steps"] == 3 and [h[0] for h in result["history"]] == [3]
    half = finetune(fresh_model(), data, TrainBudget(epochs=0.5, batch_size=32), progress=False)
    assert half["steps"] == 4 and half["epochs_run"] == 0.5
    assert TrainBudget(batch_size=32).total_steps(256) == 8
    assert TrainBudget(batch_size=1000).total_steps(256) == 1


def test_zero_budget_only_evaluates(data):
    model = fresh_model()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune(model, data, TrainBudget(epochs=0), progress=False,
                      report=lambda *_: pytest.fail("no report without training"))
    assert result["steps"] == 0 and result["train_loss"] is None
    assert result["history"] == [[0, result["val_accuracy"]]]
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_non_finite_loss_raises(data):
    model = fresh_model()
    with torch.no_grad():
        model.head[-1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="at step 1"):
        finetune(model, data, TrainBudget(epochs=1, batch_size=32), progress=False)


def test_finetune_is_deterministic(data):
    budget = TrainBudget(epochs=1, batch_size=32, eval_every=3)
    runs = []
    for _ in range(2):
        model = fresh_model()
        result = finetune(model, data, budget, seed=7, progress=False)
        runs.append((result, model.state_dict()))
    (a, wa), (b, wb) = runs
    assert a["history"] == b["history"] and a["train_loss"] == b["train_loss"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    other = finetune(fresh_model(), data, budget, seed=8, progress=False)
    assert other["train_loss"] != a["train_loss"]


@pytest.mark.parametrize("optimizer,schedule", [("adam", "step"), ("adamw", "constant")])
def test_other_optimizers_and_schedules(data, optimizer, schedule):
    budget = TrainBudget(epochs=1, batch_size=64, lr=0.003, optimizer=optimizer,
                         schedule=schedule, label_smoothing=0.1)
    result = finetune(fresh_model(), data, budget, progress=False)
    assert result["steps"] == 4 and 0 <= result["val_accuracy"] <= 1


def test_generic_datasets_go_through_a_dataloader(data):
    # A Subset cannot be sliced with a list of indices: the DataLoader path is used.
    from dataclasses import replace

    subset = replace(data, train=Subset(data.train, list(range(64))),
                     val=Subset(data.val, list(range(20))))
    result = finetune(fresh_model(), subset, TrainBudget(epochs=1, batch_size=16),
                      progress=False)
    assert result["steps"] == 4
    accuracy, loss = evaluate_accuracy(fresh_model(), subset.val, batch_size=7)
    assert 0 <= accuracy <= 1 and loss > 0


def test_evaluate_accuracy_restores_mode(data):
    model = fresh_model().train()
    accuracy, loss = evaluate_accuracy(model, data.val, batch_size=10)
    assert model.training and 0 <= accuracy <= 1 and math.isfinite(loss)


def test_budget_validation():
    with pytest.raises(ValueError, match="did you mean 'adam'"):
        TrainBudget(optimizer="adma")
    with pytest.raises(ValueError, match="schedule"):
        TrainBudget(schedule="linear")
    with pytest.raises(ValueError, match="epochs"):
        TrainBudget(epochs=-1)
    with pytest.raises(ValueError, match="batch_size"):
        TrainBudget(batch_size=0)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_progress_enabled(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert progress_enabled(None) is False
    assert progress_enabled(True) is True
    monkeypatch.delenv("CI")
    assert progress_enabled(False) is False
    with bar(range(3), desc="x", enabled=False) as items:
        assert list(items) == [0, 1, 2]
    with bar(2, enabled=False) as manual:
        manual.update(2)
        assert manual.total == 2
