"""``algo=darts``: a differentiable runner over any space that offers a supernet
(:class:`~searchkit.core.space.OffersSupernet`).

It trains the space's supernet first-order DARTS style: each step, after ``warmup``
epochs, one Adam step of the architecture parameters on a validation batch, then one SGD
step of the weights on a training batch (cosine learning rate, gradient clipping at 5).
A bound (``constraint.flops=0.3``, ``constraint.latency_ms=B``...) whose expected cost the
supernet prices (``expected_costs``) is hard: the architecture loss adds
``lambda (E[cost] / B - 1)`` and ``lambda`` follows dual ascent (up while the expectation
exceeds ``B``, down to 0 below it). Every ``derive_every`` epochs and at the end it derives a
genome (``space.derive``, repaired by the space to meet the bounds) and records it through
the session as an ordinary trial of the study (``source=darts``, user attr ``darts:epoch``):
priced, checked against the constraints, trained with the same budget as black-box
candidates, told. So report, export and ``top=pareto`` treat it like any other trial.
With a cost objective and no bound on it (``objectives=[accuracy,latency]``),
``algo.targets`` derives one genome per target from the same supernet: a front.

Resume: after each epoch the supernet, its architecture parameters, both optimizers, the
scheduler, the multipliers, the epoch and the RNG state are saved (``torch.save`` of state
dicts, loaded with ``weights_only=True``) as an Optuna artifact named in the study's user
attrs. The same command after a crash continues from the last saved epoch; a derived trial
that was already told is not recorded again.

Example:
    >>> # searchkit search space=NAME algo=darts constraint.flops=0.3 algo.epochs=6
    >>> # (a space that offers a supernet; see the README's one-shot and binarized-cell sections)
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import optuna
import torch
from torch import nn

from searchkit import evaluator
from searchkit import study as st
from searchkit.config import RunConfig
from searchkit.core.errors import ConfigError
from searchkit.core.space import OffersSupernet
from searchkit.evaluate import _batches, resolve_device
from searchkit.registry import SPACES
from searchkit.session import SearchOutcome, Session
from searchkit.setup import RunSetup
from searchkit.strategies.reduction import Reduction, stages_due

log = logging.getLogger("searchkit")

CHECKPOINT = "darts:checkpoint"  # study user attr: {"artifact": id, "epoch": n}
EPOCH = "darts:epoch"            # trial user attr: the supernet epoch a genome was derived at
TARGET = "darts:target"          # trial user attr: the cost target it was derived for, if any


@dataclass(frozen=True)
class DartsOptions:
    """``algo.*`` options of ``algo=darts``."""

    # Supernet training epochs, and those before the architecture parameters start to move.
    epochs: int = 6
    warmup: int = 2
    # Derive and record a genome every this many epochs (and at the end).
    derive_every: int = 2
    # PC-DARTS: each edge's ops see a 1/k share of its inputs.
    k: int = 4
    # Weights: SGD lr (cosine to 0), momentum, weight decay; architecture: Adam lr and wd.
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    # Architecture Adam lr (unset: the supernet's own default; DARTS' 6e-4 for cells) and wd.
    arch_lr: float | None = None
    arch_weight_decay: float = 1e-3
    batch_size: int = 32
    # Hard bounds: each bound's Lagrange multiplier rises by penalty_lr x its relative excess
    # of the expected cost per architecture step (dual ascent) and falls back to 0 below it.
    penalty_lr: float = 0.05
    # Gumbel-softmax temperature of supernets that sample (annealed exponentially).
    tau_start: float = 5.0
    tau_end: float = 0.5
    # How a supernet that can reads a genome off its distribution: "expected" (the choice
    # nearest each unit's expected width) or "argmax" (each unit's most probable choice).
    derive: str = "expected"
    # Cost objectives without a bound (objectives=[accuracy,COST]): derive one genome per
    # target (fractions of the base's cost for relative costs, else the cost's unit).
    targets: tuple[float, ...] = ()
    # Architecture gradient: 1 (first order: on the current weights) or 2 (DARTS' unrolled
    # second order: on the weights after one virtual SGD step, by finite differences).
    order: int = 1
    # Supernets of op choices (binarized cells) mix their ops by Gumbel-softmax samples (annealed
    # tau_start -> tau_end) instead of softmax(α); the channel supernet always samples.
    gumbel: bool = False
    # BNAS operation-space reduction (strategies/reduction.py): drop ops per edge down to
    # reduce_keep by the end, each stage scoring reduce_samples paths per candidate on
    # reduce_batches validation batches.
    reduce: bool = False
    reduce_keep: int = 2
    reduce_samples: int = 3
    reduce_batches: int = 2

    def __post_init__(self) -> None:
        if self.epochs < 1 or not 0 <= self.warmup < self.epochs:
            raise ValueError("algo.epochs must be >= 1 and algo.warmup in [0, epochs)")
        if self.derive_every < 1 or self.k < 1 or self.batch_size < 2:
            raise ValueError("algo.derive_every, algo.k must be >= 1 and algo.batch_size >= 2")
        if self.penalty_lr < 0 or not 0 < self.tau_end <= self.tau_start:
            raise ValueError("algo.penalty_lr must be >= 0 and 0 < algo.tau_end <= algo.tau_start")
        if self.derive not in ("expected", "argmax"):
            raise ValueError(f"algo.derive={self.derive} is not valid (choices: expected, argmax)")
        if any(t <= 0 for t in self.targets):
            raise ValueError("algo.targets must be positive")
        if self.reduce and self.epochs < max(self.warmup, 1) + 1:
            raise ValueError("algo.reduce needs algo.epochs >= max(algo.warmup, 1) + 1 (a trained epoch "
                             "before the first stage, and one after it)")
        if self.order not in (1, 2):
            raise ValueError(f"algo.order={self.order} is not valid (choices: 1, 2)")
        if self.reduce_keep < 2 or self.reduce_samples < 1 or self.reduce_batches < 1:
            raise ValueError("algo.reduce_keep must be >= 2 and algo.reduce_samples, algo.reduce_batches >= 1")


class DartsRunner:
    """The ``algo=darts`` runner (see the module docstring)."""

    name = "darts"
    runner = "darts"
    Options = DartsOptions

    def __init__(self, cfg: RunConfig, overrides: list[str] | None = None, *, quiet: bool = False):
        self.quiet = quiet
        self.cfg, existed = st.resolve_config(cfg, overrides)
        self.opt = self.cfg.algo.options if isinstance(self.cfg.algo.options, DartsOptions) else DartsOptions(
            **dict(self.cfg.algo.options or {}))
        if not issubclass(SPACES.get(self.cfg.space.name), OffersSupernet):  # before any base trains
            raise ConfigError(f"algo=darts needs a space that offers a supernet; space={self.cfg.space.name} "
                              "does not (use abc, ga, tpe, nsga2 or random)")
        if self.opt.reduce and not SPACES.get(self.cfg.space.name).reducible_supernet:
            raise ConfigError(f"algo.reduce=true needs a supernet whose edges choose among ops; space="
                              f"{self.cfg.space.name}'s does not (algo.reduce=false)")
        self.setup = RunSetup.build(self.cfg, quiet=quiet, known_base=st.stored_base(self.cfg) if existed else None)
        self.study = st.open_study(self.cfg, sampler=optuna.samplers.RandomSampler(seed=self.cfg.seed))
        self.session = Session(self.setup, self.study, source=self.name)
        self.session.record_base()
        if existed and not quiet:
            log.info("continuing study '%s' (%d trials)", self.study.study_name, len(self.study.trials))
        self.device = resolve_device(self.cfg.device)

    # -- checkpoints --------------------------------------------------------------------
    def _store(self) -> optuna.artifacts.FileSystemArtifactStore:
        path = st.artifact_dir(self.cfg.storage)
        path.mkdir(parents=True, exist_ok=True)
        return optuna.artifacts.FileSystemArtifactStore(str(path))

    def _save(self, epoch: int, state: dict) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"supernet-{epoch}.pt")
            torch.save(state, path)
            aid = optuna.artifacts.upload_artifact(artifact_store=self._store(), file_path=path,
                                                   study_or_trial=self.study)
        self.study.set_user_attr(CHECKPOINT, {"artifact": aid, "epoch": epoch})

    def _load(self) -> dict | None:
        ref = self.study.user_attrs.get(CHECKPOINT)
        if not ref:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "supernet.pt")
            try:
                optuna.artifacts.download_artifact(artifact_store=self._store(), file_path=path,
                                                   artifact_id=ref["artifact"])
            except Exception as exc:
                raise st.StudyError(f"study '{self.study.study_name}' names a supernet checkpoint that cannot "
                                    f"be read ({type(exc).__name__}); start a new study=") from None
            return torch.load(path, weights_only=True, map_location="cpu")

    # -- running ------------------------------------------------------------------------
    def run(self, max_new: int | None = None) -> SearchOutcome:
        opt, space, data = self.opt, self.setup.space, self.setup.data
        outcome = SearchOutcome(self.study, self.cfg, self.setup, self.session.evaluated_count())
        outcome.recovered = st.recover_stale_trials(self.study)
        _seed_all(self.cfg.seed)
        net = space.supernet(k=opt.k, tau_start=opt.tau_start, tau_end=opt.tau_end, rule=opt.derive,
                             gumbel=opt.gumbel).to(self.device)
        w_opt = torch.optim.SGD(net.weight_parameters(), lr=opt.lr, momentum=opt.momentum,
                                weight_decay=opt.weight_decay)
        arch_lr = opt.arch_lr if opt.arch_lr is not None else getattr(net, "arch_lr", 6e-4)
        a_opt = torch.optim.Adam(net.arch_parameters(), lr=arch_lr, betas=(0.5, 0.999),
                                 weight_decay=opt.arch_weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, opt.epochs)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        reduction = Reduction(opt.reduce_samples, opt.reduce_batches, opt.reduce_keep) if opt.reduce else None
        bounds = self._penalised(net)
        lam = torch.zeros(len(bounds), dtype=torch.float64)  # one Lagrange multiplier per bound
        start = 0
        saved = self._load()
        if saved is not None:
            net.load_state_dict(saved["net"])
            w_opt.load_state_dict(saved["w_opt"])
            a_opt.load_state_dict(saved["a_opt"])
            sched.load_state_dict(saved["sched"])
            gen.set_state(saved["gen"])
            torch.set_rng_state(saved["torch_rng"])
            lam = saved.get("lam", lam)
            start = int(saved["epoch"])
            if not self.quiet:
                log.info("supernet continues from epoch %d of %d", start, opt.epochs)
        evaluator.prime(self.setup.work_item(-1, space.base_genome()), data, space)
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(start, opt.epochs):
            began = time.monotonic()
            net.train()
            if hasattr(net, "set_progress"):
                net.set_progress(epoch / max(1, opt.epochs - 1))
            val_gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
            val = iter(_cycle(data.val, opt.batch_size, val_gen))
            seen = correct = 0
            for x, y in _batches(data.train, opt.batch_size, shuffle=True, generator=gen, drop_last=True):
                x, y = x.to(self.device), y.to(self.device)
                if epoch >= opt.warmup:
                    xv, yv = next(val)
                    xv, yv = xv.to(self.device), yv.to(self.device)
                    a_opt.zero_grad()
                    if opt.order == 2:
                        _unrolled_arch_grad(net, loss_fn, (x, y), (xv, yv), sched.get_last_lr()[0], opt.weight_decay)
                        loss = self._penalty(net, bounds, lam) if bounds else None
                    else:
                        loss = loss_fn(net(xv), yv)
                        if bounds:
                            loss = loss + self._penalty(net, bounds, lam)
                    if loss is not None:
                        loss.backward()
                    a_opt.step()
                w_opt.zero_grad()
                out = net(x)
                loss = loss_fn(out, y)
                loss.backward()
                nn.utils.clip_grad_norm_(net.weight_parameters(), 5.0)
                w_opt.step()
                seen += len(y)
                correct += int((out.argmax(1) == y).sum())
            sched.step()
            seconds = time.monotonic() - began
            reduced = self._reduce(net, reduction, epoch + 1) if reduction is not None else ""
            state = {"epoch": torch.tensor(epoch + 1), "net": net.state_dict(), "w_opt": w_opt.state_dict(),
                     "a_opt": a_opt.state_dict(), "sched": sched.state_dict(), "gen": gen.get_state(),
                     "torch_rng": torch.get_rng_state(), "lam": lam}
            self._save(epoch + 1, state)
            if not self.quiet:
                log.info("supernet epoch %d/%d: train accuracy %.4f, %.1f s%s", epoch + 1, opt.epochs,
                         correct / max(seen, 1), seconds, _bound_line(net, bounds, lam, self.setup) + reduced)
            if (epoch + 1) % opt.derive_every == 0 or epoch + 1 == opt.epochs:
                # training a derived genome reseeds torch: the supernet's stream must not see it,
                # or a run resumed from this epoch's checkpoint would draw other Gumbel noise
                with torch.random.fork_rng(devices=[]):
                    self._derive(net, epoch + 1, outcome)
        outcome.evaluated = self.session.evaluated_count()
        return outcome

    def _reduce(self, net, reduction: Reduction, epoch: int) -> str:
        """The reduction stages due after ``epoch``, seeded by (seed, epoch, stage): a resumed
        run repeats none (the masks are in the checkpoint) and draws what it would have.
        Returns a note for the epoch's log line."""
        opt, data = self.opt, self.setup.data
        masks = [active for _, active, _ in net.choices().values()]
        total = masks[0].shape[1]
        left = lambda: max(int(m.sum(1).max()) for m in masks)  # noqa: E731
        due = stages_due(left(), total, opt.reduce_keep, epoch, opt.warmup, opt.epochs)
        for stage in range(due):
            gen = torch.Generator().manual_seed(self.cfg.seed * 1000003 + epoch * 101 + stage)
            reduction.stage(net, iter(_cycle(data.val, opt.batch_size, gen)), gen)
        return f"; operation-space reduction: {left()} of {total} ops per edge left" if due else ""

    # -- costs in the loss -----------------------------------------------------------------
    def _penalised(self, net) -> dict[str, float]:
        """``{cost: limit}`` of the run's bounds the supernet prices in expectation (others
        are met by the derivation's repair alone)."""
        limits = self.setup.limits
        if not limits:
            return {}
        priced = net.expected_costs(self.setup.costs) if hasattr(net, "expected_costs") else {}
        missing = [n for n in limits if n not in priced]
        if missing and not self.quiet:
            log.warning("the supernet of space=%s has no expected %s: that bound is met by the derived "
                        "genomes' repair only, not in the loss", self.cfg.space.name, ", ".join(missing))
        return {n: float(limits[n]) for n in limits if n in priced}

    def _penalty(self, net, bounds: dict[str, float], lam: torch.Tensor) -> torch.Tensor:
        """``sum lambda_c (E[c] / B_c - 1)``, then one dual-ascent step of each multiplier."""
        expected = net.expected_costs(self.setup.costs)
        total = 0.0
        for i, (name, limit) in enumerate(bounds.items()):
            excess = expected[name] / limit - 1.0
            total = total + float(lam[i]) * excess
            lam[i] = max(0.0, float(lam[i]) + self.opt.penalty_lr * float(excess.detach()))
        return total

    # -- derived genomes -------------------------------------------------------------------
    def _targets(self) -> list[tuple[str, float, float]]:
        """``(cost, target, limit)`` per ``algo.targets`` entry for each unbounded cost objective."""
        out = []
        for name in self.cfg.objectives[1:]:
            if name in self.setup.limits or name not in self.setup.costs:
                continue
            model = self.setup.costs[name]
            out += [(name, t, model.limit(t)) for t in self.opt.targets]
        return out

    def _derive(self, net, epoch: int, outcome: SearchOutcome) -> None:
        space, pricer = self.setup.space, self.setup.pricer
        feasible = (lambda g: pricer.price(g).feasible) if self.setup.limits else None
        self._record(space.derive(net, feasible), epoch, outcome)
        for name, target, limit in self._targets():  # a front from the one supernet
            def meets(g, name=name, limit=limit):
                priced = pricer.price(g)
                return priced.feasible and priced.costs[name] <= limit
            self._record(space.derive(net, meets), epoch, outcome, target=f"{name}<={target:g}")

    def _record(self, genome: dict, epoch: int, outcome: SearchOutcome, target: str | None = None) -> None:
        done = [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get(EPOCH) == epoch
                and t.user_attrs.get(TARGET) == target and t.state.is_finished()]
        if done:  # told before a crash: not recorded twice
            return
        # a derived trial left RUNNING by a crash was failed by recovery; record it afresh
        store = self._store() if self.cfg.artifacts != "none" else None
        attrs = {EPOCH: epoch, **({TARGET: target} if target else {})}
        trial = self.session.record_genome(genome, evaluator.evaluate, user_attrs=attrs, store=store)
        outcome.new_trials.append(trial.number)
        if not self.quiet:
            value = trial.values[0] if trial.values else None
            log.info("derived at epoch %d%s -> trial %d: %s%s", epoch, f" ({target})" if target else "",
                     trial.number, "infeasible" if trial.user_attrs.get(st.INFEASIBLE) else
                     f"val accuracy {value:.4f}" if value is not None else trial.state.name.lower(),
                     f" ({self.setup.space.describe(genome).get('summary', '')})")


def _unrolled_arch_grad(net, loss_fn, train, val, xi: float, weight_decay: float) -> None:
    """DARTS' second-order architecture gradient into ``α.grad``: ∇α L_val(w', α) −
    ξ ∇²α,w L_train(w, α) ∇w' L_val(w', α), with w' = w − ξ ∇w L_train (one virtual SGD step)
    and the Hessian-vector product by central differences at w ± ε ∇w' L_val."""
    weights, arch = net.weight_parameters(), net.arch_parameters()
    saved = [w.detach().clone() for w in weights]
    grads = torch.autograd.grad(loss_fn(net(train[0]), train[1]), weights, allow_unused=True)
    with torch.no_grad():
        for w, g in zip(weights, grads):
            w.sub_(xi * ((g if g is not None else 0) + weight_decay * w))
    out = torch.autograd.grad(loss_fn(net(val[0]), val[1]), arch + weights, allow_unused=True)
    d_arch, d_w = out[:len(arch)], out[len(arch):]
    norm = torch.sqrt(sum((g * g).sum() for g in d_w if g is not None))
    eps = 0.01 / max(float(norm), 1e-12)
    hessian = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for w, w0, g in zip(weights, saved, d_w):
                w.copy_(w0 if g is None else w0 + sign * eps * g)
        hessian.append(torch.autograd.grad(loss_fn(net(train[0]), train[1]), arch, allow_unused=True))
    with torch.no_grad():
        for w, w0 in zip(weights, saved):
            w.copy_(w0)
    for a, g, hp, hm in zip(arch, d_arch, *hessian):
        grad = torch.zeros_like(a) if g is None else g.detach().clone()
        if hp is not None and hm is not None:
            grad -= xi * (hp - hm) / (2 * eps)
        a.grad = grad if a.grad is None else a.grad + grad


def _bound_line(net, bounds: dict[str, float], lam: torch.Tensor, setup) -> str:
    if not bounds:
        return ""
    with torch.no_grad():
        expected = net.expected_costs(setup.costs)
    return "; " + ", ".join(f"expected {n} {float(expected[n]) / limit:.3f} x its bound (lambda {float(lam[i]):.3g})"
                            for i, (n, limit) in enumerate(bounds.items()))


def _cycle(dataset, batch_size: int, generator: torch.Generator):
    """Batches of ``dataset`` forever (a split smaller than a batch is one whole batch)."""
    if len(dataset) == 0:
        raise ConfigError("algo=darts needs a non-empty validation split for the architecture steps")
    batch_size = min(batch_size, len(dataset))
    while True:
        yield from _batches(dataset, batch_size, shuffle=True, generator=generator, drop_last=True)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


__all__ = ["CHECKPOINT", "DartsOptions", "DartsRunner", "EPOCH", "TARGET"]
