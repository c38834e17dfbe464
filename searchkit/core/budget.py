"""The training budget: how long and how every candidate is fine-tuned.

One dataclass for the ``finetune.*`` settings, the evaluator, the Ray workers and the
benchmarks. Invalid values raise ``ValueError`` naming the field (the config layer turns
that into a one-line error).

Example:
    >>> budget = TrainBudget(epochs=2, batch_size=32)
    >>> budget.total_steps(train_size=256), budget.with_epochs(0.5).total_steps(256)
    (16, 4)
    >>> TrainBudget(optimizer="adma")
    Traceback (most recent call last):
    ...
    ValueError: unknown optimizer 'adma'; did you mean 'adam'? (choices: sgd, adam, adamw)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from searchkit.core.errors import did_you_mean

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant", "step")
BN_RECALIBRATE = ("auto", "on", "off")
# The "step" schedule divides the learning rate by 10 at these shares of the budget.
STEP_MILESTONES = (0.5, 0.75)


def _choice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {kind} '{value}'{did_you_mean(value, choices)} (choices: {', '.join(choices)})")
    return value


@dataclass(frozen=True)
class TrainBudget:
    """How long and how to fine-tune each candidate.

    Attributes:
        epochs: Passes over the training split; fractional values stop part-way
            (rounded to whole optimizer steps, at least one).
        max_batches: Total optimizer steps; when set it overrides ``epochs``.
        batch_size: Training batch size (the last incomplete batch of an epoch is
            dropped, so BatchNorm never sees a batch of one).
        lr: Peak learning rate.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty (decoupled for ``adamw``).
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        schedule: Per-step learning-rate schedule over the whole budget:
            ``"cosine"`` (to zero), ``"constant"``, or ``"step"`` (x0.1 at 50% and 75%).
        label_smoothing: Cross-entropy label smoothing.
        eval_every: Evaluate (and report) every this many steps; ``None`` means once
            per epoch. The final step is always evaluated.
    """

    # Passes over the training split per candidate (fractions stop part-way).
    epochs: float = 1.0
    # Optimizer steps per candidate; set, it overrides epochs.
    max_batches: int | None = None
    # Training batch size (32: one digits epoch is 36 steps, enough to recover most of a
    # pruned ResNet-56; 64 at lr 0.01 reached 0.69 against 0.92).
    batch_size: int = 32
    # Peak learning rate.
    lr: float = 0.02
    # SGD momentum.
    momentum: float = 0.9
    # L2 penalty (decoupled for adamw).
    weight_decay: float = 5e-4
    # sgd, adam or adamw.
    optimizer: str = "sgd"
    # cosine (to zero), constant, or step (x0.1 at 50% and 75%).
    schedule: str = "cosine"
    # Cross-entropy label smoothing.
    label_smoothing: float = 0.0
    # Validate (and report to the pruner) every this many steps; unset: once per epoch.
    eval_every: int | None = None
    # Recompute BatchNorm statistics on the training split before validating: "auto" when a
    # BN's momentum is under 0.1 (torchvision's MobileNetV3 and EfficientNet use 0.01) or the
    # fine-tune is too short to replace 95% of the base's statistics (under 29 steps at 0.1),
    # "on" or "off".
    bn_recalibrate: str = "auto"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epochs) and self.epochs >= 0):
            raise ValueError(f"epochs must be a finite number >= 0, got {self.epochs}")
        if self.max_batches is not None and self.max_batches < 0:
            raise ValueError(f"max_batches must be >= 0 or None, got {self.max_batches}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1 or None, got {self.eval_every}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        # YAML reads a bare on/off as a boolean (which typed options then make "True"/"False")
        yaml_bool = {True: "on", False: "off", "True": "on", "False": "off"}
        if not isinstance(self.bn_recalibrate, str) or self.bn_recalibrate in yaml_bool:
            object.__setattr__(self, "bn_recalibrate", yaml_bool.get(self.bn_recalibrate, self.bn_recalibrate))
        _choice("bn_recalibrate", self.bn_recalibrate, BN_RECALIBRATE)

    def with_epochs(self, epochs: float) -> "TrainBudget":
        """The same recipe for ``epochs`` epochs (any ``max_batches`` dropped)."""
        return dataclasses.replace(self, epochs=float(epochs), max_batches=None)

    def steps_per_epoch(self, train_size: int) -> int:
        """Optimizer steps in one epoch over ``train_size`` images."""
        return max(1, train_size // self.batch_size)

    def total_steps(self, train_size: int) -> int:
        """Optimizer steps the whole budget takes on ``train_size`` images.

        Useful as the ``max_resource`` of an Optuna Hyperband pruner.
        """
        if self.max_batches is not None:
            return int(self.max_batches)
        if self.epochs == 0:
            return 0
        return max(1, round(self.epochs * self.steps_per_epoch(train_size)))

    def eval_interval(self, train_size: int) -> int:
        """Steps between two validations."""
        return self.eval_every or self.steps_per_epoch(train_size)
