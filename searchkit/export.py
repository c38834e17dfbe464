"""Export searched architectures as real checkpoints.

For each chosen trial ``searchkit export`` writes a folder with

* ``arch.json`` - genome, archid, costs against the base, metrics, input size, the kept
  channel indices per unit (a replayable recipe), and versions;
* ``weights.pt`` - the pruned model's ``state_dict`` (load with ``weights_only=True``);
* ``model.pt2`` - a ``torch.export`` program that runs with torch alone (no searchkit):
  ``torch.export.load("model.pt2").module()(x)``, any batch size.

Weights come from the trial's stored artifact when the search kept one; otherwise the
candidate is rebuilt from the base and fine-tuned again with the search's seed and budget
(deterministic on CPU). ``finetune.epochs=N`` trains the winner N more epochs first.

Example:
    >>> # searchkit export study=channels-abc out=exports top=1
"""

from __future__ import annotations

import json
import logging
import platform
import tempfile
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial

from searchkit import __version__
from searchkit import study as st
from searchkit.config import ConfigError, RunConfig
from searchkit.context import SearchContext, budget_of, load_state_dict_file, load_weights
from searchkit.evaluate import evaluate_accuracy, finetune
from searchkit.genome import archid

log = logging.getLogger("searchkit")


class ExportError(ValueError):
    """Nothing to export, or an artifact that does not fit (one-line message)."""


def select_trials(study: optuna.Study, top: int | str = 1, trial: int | None = None) -> list[FrozenTrial]:
    ranked = st.ranked_trials(study)
    if trial is not None:
        chosen = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not chosen or chosen[0] not in ranked:
            raise ExportError(f"trial {trial} of study '{study.study_name}' is not a completed, trained candidate")
        return chosen
    if not ranked:
        raise ExportError(f"study '{study.study_name}' has no completed candidates to export yet")
    if top == "all":
        return ranked
    if top == "pareto":
        return st.pareto_trials(study)
    if not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be a positive number, 'pareto' or 'all', got {top!r}")
    return ranked[:top]


def _weights_from_artifact(study: optuna.Study, trial: FrozenTrial, store_dir: Path) -> dict | None:
    aid = trial.user_attrs.get("weights_artifact")
    if not aid:
        return None
    store = optuna.artifacts.FileSystemArtifactStore(str(store_dir))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.pt"
        try:
            optuna.artifacts.download_artifact(artifact_store=store, file_path=str(path), artifact_id=aid)
        except Exception:
            log.warning("weights of trial %d are not in %s; re-training them", trial.number, store_dir)
            return None
        return load_state_dict_file(path)


def export_trial(study: optuna.Study, trial: FrozenTrial, ctx: SearchContext, out_dir: Path, *,
                 rank: int, extra_epochs: float = 0.0) -> Path:
    """Write one trial's architecture, weights and program under ``out_dir``; return its folder."""
    from searchkit.search import artifact_dir

    cfg = ctx.cfg
    genome = trial.user_attrs[st.GENOME]
    if archid(genome) != trial.user_attrs.get(st.ARCHID):
        raise ExportError(f"trial {trial.number}: stored genome does not match its archid")
    model, history = ctx.space.build_with_history(genome, seed=cfg.seed)
    stored_history = trial.user_attrs.get("kept_indices")
    if stored_history is not None and json.loads(json.dumps(history)) != stored_history:
        raise ExportError(f"trial {trial.number}: the base checkpoint gives other kept channels than "
                          "the search did; pass the search's base.checkpoint")
    state = _weights_from_artifact(study, trial, artifact_dir(cfg))
    if state is not None:
        load_weights(model, state, what=f"weights of trial {trial.number}")
        source = "artifact"
    else:
        finetune(model, ctx.data, budget_of(cfg), device=ctx.device, seed=cfg.seed, progress=cfg.progress,
                 desc=f"re-train trial {trial.number}")
        source = "retrained (search seed and budget)"
    if extra_epochs > 0:
        finetune(model, ctx.data, budget_of(cfg, epochs=extra_epochs), device=ctx.device, seed=cfg.seed,
                 progress=cfg.progress, desc=f"fine-tune trial {trial.number}")
        source += f" + {extra_epochs:g} more epochs"
    model.to("cpu").eval()
    val_acc, _ = evaluate_accuracy(model, ctx.data.val, device="cpu")
    test_acc = evaluate_accuracy(model, ctx.data.test, device="cpu")[0] if ctx.data.test is not None else None
    costs, base = ctx.space.costs(genome), ctx.space.base_costs()
    folder = out_dir / f"{rank:02d}-trial{trial.number}-{trial.user_attrs[st.ARCHID]}"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().contiguous() for k, v in getattr(model, "net", model).state_dict().items()},
               folder / "weights.pt")
    size = tuple(ctx.space.input_size_of(genome)) if hasattr(ctx.space, "input_size_of") else \
        (ctx.data.in_channels, ctx.data.image_size, ctx.data.image_size)
    net = getattr(model, "net", model)  # resolution wrappers resize; the program takes its own side
    example = torch.zeros(2, *size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(net.eval(), (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, folder / "model.pt2")
    meta = {
        "study": study.study_name, "trial": trial.number, "rank": rank,
        "archid": trial.user_attrs[st.ARCHID], "genome": genome, "space": cfg.space.name,
        "model": cfg.space.model, "input_size": list(size), "num_classes": ctx.data.num_classes,
        "flops": costs.flops, "params": costs.params, "base_flops": base.flops, "base_params": base.params,
        "flops_reduction": 1 - costs.flops / base.flops, "input_side": size[-1], "params_reduction": 1 - costs.params / base.params,
        "search_val_accuracy": trial.values[0], "val_accuracy": val_acc, "test_accuracy": test_acc,
        "base_val_accuracy": ctx.base_accuracy, "weights": source, "widths": ctx.space.describe(genome),
        "kept_indices": history, "flops_convention": "MACs of conv + linear layers",
        "files": {"weights": "weights.pt", "program": "model.pt2"},
        "versions": {"searchkit": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "load": "torch.export.load('model.pt2').module()(x)  # x: float tensor N x C x H x W",
    }
    if ctx.latency is not None:
        meta["latency"] = _latency_record(ctx, genome, net, size)
    (folder / "arch.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return folder


def _latency_record(ctx: SearchContext, genome: dict, net: torch.nn.Module, size) -> dict:
    """Predicted latency on the study's target and, for comparison, the exported network
    measured here (batch 1, the target's thread count): the bound holds where both agree.
    ``bound_met`` says whether the measurement meets ``constraint.latency_ms`` (only when
    measured on the target's CPU model)."""
    from searchkit.costs.latency import measure_model_ms
    from searchkit.costs.profiling import cpu_model
    meta = ctx.latency.predictor.meta
    threads = int(meta.get("threads", 1))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        measured = measure_model_ms(net, size)
    finally:
        torch.set_num_threads(old)
    here = cpu_model()
    bound = ctx.cfg.constraint.latency_ms
    on_target = here == meta.get("cpu")
    return {"target": meta.get("target"), "target_cpu": meta.get("cpu"), "threads": threads,
            "predicted_ms": ctx.latency.ms(genome), "measured_ms": measured, "measured_on": here,
            "measured_on_target_cpu": on_target, "bound_ms": bound,
            "searched_bound_ms": ctx.limits.get("latency"),
            "bound_met": (measured <= bound) if bound is not None and on_target else None}


def export_study(name: str, storage: str, out: str | Path = "exports", top: int | str = 1,
                 trial: int | None = None, extra_epochs: float = 0.0,
                 overrides: list[str] | None = None) -> list[Path]:
    """Export the best ``top`` trials (or one ``trial``) of a study. Returns the written folders."""
    study = st.load_existing(name, storage)
    cfg: RunConfig = st.stored_config(study)
    if overrides:
        from searchkit.config import load_config
        cfg = load_config(overrides, base=cfg.to_dict())
    chosen = select_trials(study, top, trial)
    ctx = SearchContext.build(cfg, quiet=True, train_base=False)
    base_info = study.user_attrs.get(st.BASE_KEY, {})
    out_dir = Path(out) / name
    folders = []
    for rank, t in enumerate(chosen, 1):
        folders.append(export_trial(study, t, ctx, out_dir, rank=rank, extra_epochs=extra_epochs))
    (out_dir / "base.json").write_text(json.dumps(base_info, indent=2, sort_keys=True))
    return folders
