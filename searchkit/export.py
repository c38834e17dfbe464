"""Export searched architectures as real checkpoints.

Each ``searchkit export`` run writes a folder of its own, ``exports/<study>/<run>/`` (runs
never mix), with a ``manifest.json`` (what was exported, from which trials, when) and per
architecture a folder holding

* ``arch.json`` - genome, archid, space, costs against the base, metrics, input size and
  the preprocessing the network expects (scaling, mean/std, resizing), the replay recipe,
  the space's description, and versions;
* ``weights.pt`` - the network's ``state_dict`` (load with ``weights_only=True``);
* ``model.pt2`` (``format=pt2``, the default, or ``all``) - a ``torch.export`` program
  that runs with torch alone (no searchkit): ``torch.export.load("model.pt2").module()(x)``,
  any batch size, BatchNorm folded into the convolutions (as fast as the eager network);
* ``model.onnx`` (``format=onnx`` or ``all``) - the same network as ONNX (dynamic batch,
  BN folded), checked against torch through onnxruntime at export
  (:mod:`searchkit.deploy`);
* whatever the space's own export hook writes (``Space.export``: e.g. a sparse format).

Weights come from the trial's stored artifact when the search kept one; otherwise the
candidate is rebuilt and fine-tuned again with the search's seed and budget
(deterministic on CPU), and the export says so. ``finetune.epochs=N`` trains the winner N
more epochs first. A cost that records more than its priced value (latency: measured) is
measured on the written program, the network a user ships.

Example:
    >>> # searchkit export study=NAME out=exports top=1
"""

from __future__ import annotations

import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial

from searchkit import __version__
from searchkit import study as st
from searchkit.config import RunConfig
from searchkit.core.errors import ConfigError, UserError
from searchkit.core.genome import archid
from searchkit.core.space import Built
from searchkit.evaluate import evaluate_accuracy, finetune
from searchkit.models.checkpoint import load_state_dict_file, load_weights
from searchkit.setup import RunSetup

log = logging.getLogger("searchkit")


class ExportError(UserError):
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
    aid = trial.user_attrs.get(st.WEIGHTS)
    if not aid:
        return None
    store = optuna.artifacts.FileSystemArtifactStore(str(store_dir))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.pt"
        try:
            optuna.artifacts.download_artifact(artifact_store=store, file_path=str(path), artifact_id=aid)
        except Exception:
            return None
        return load_state_dict_file(path)


def write_architecture(setup: RunSetup, genome: dict, built: Built, folder: Path, meta: dict,
                       costs: dict | None = None, formats: tuple[str, ...] = ("pt2",)) -> dict:
    """Write a trained network's weights, programs (``formats``: pt2, onnx), space files and
    ``arch.json`` into ``folder``; ``meta`` adds to the record (trial, accuracies, ...).
    Returns the record."""
    from searchkit import deploy
    cfg, space = setup.cfg, setup.space
    folder.mkdir(parents=True, exist_ok=True)
    net, size = built.net.to("cpu").eval(), tuple(built.input_size)
    torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, folder / "weights.pt")
    # a cost verified on a program (latency on onnxruntime: model.onnx) has it written
    formats = tuple(dict.fromkeys([*formats, *(f for m in setup.costs.values() for f in m.export_formats())]))
    folded = deploy.fold_batchnorm(net, size)
    files, programs = {"weights": "weights.pt"}, {}
    if "pt2" in formats:
        programs["pt2"] = deploy.save_program(net, size, folder / "model.pt2", folded)
        files["program"] = "model.pt2"
    if "onnx" in formats:
        programs["onnx"] = deploy.save_onnx(net, size, folder / "model.onnx", folded=folded)
        files["onnx"] = "model.onnx"
    files.update(space.export(built, folder))
    costs = dict(costs or {})
    costs = {name: costs.get(name, float(model.cost(genome))) for name, model in setup.costs.items()}
    base = {name: model.base() for name, model in setup.costs.items()}
    preprocessing = {**(setup.data.preprocessing or {}), "input_size": list(size)}
    if size[-1] != setup.data.image_size:
        preprocessing["resize"] = f"bilinear to {size[-1]}x{size[-1]} (the network's own side)"
    record = {
        "genome": genome, "archid": archid(genome), "space": cfg.space.name,
        "model": setup.base.model if setup.base else None, "input_size": list(size), "input_side": size[-1],
        "num_classes": setup.data.num_classes, "classes": list(setup.data.classes or []),
        "preprocessing": preprocessing, "costs": costs, "base_costs": base,
        "reduction": {n: 1 - costs[n] / base[n] for n in costs if base.get(n)},
        "base_val_accuracy": setup.base.accuracy if setup.base else None,
        "describe": space.describe(genome), "recipe": built.recipe,
        "flops_convention": "MACs of conv + linear layers", "files": files, "programs": programs,
        "versions": {"searchkit": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "load": {k: v["load"] for k, v in programs.items()},  # x: float N x C x H x W, preprocessed
        **meta,
    }
    loaded: dict = {}

    def shipped(runtime: str = "torch"):  # a written program, loaded once if a cost asks for it
        if runtime not in loaded:
            if runtime == "onnxruntime":
                loaded[runtime] = folder / "model.onnx"
            elif space.shipped_program in files.values():  # the space's own faster program
                loaded[runtime] = torch.export.load(str(folder / space.shipped_program)).module()
            elif "pt2" in programs:
                loaded[runtime] = torch.export.load(str(folder / "model.pt2")).module()
            else:
                loaded[runtime] = folded[0]
        return loaded[runtime]
    for name, model in setup.costs.items():
        extra = model.export_record(genome, shipped, size, setup.limits.get(name), cfg.constraint.get(name))
        if extra is not None:
            record[name] = extra
    (folder / "arch.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    return record


def export_trial(study: optuna.Study, trial: FrozenTrial, setup: RunSetup, out_dir: Path, *,
                 rank: int, extra_epochs: float = 0.0, formats: tuple[str, ...] = ("pt2",)) -> Path:
    """Write one trial's architecture, weights and program under ``out_dir``; return its folder."""
    cfg, space = setup.cfg, setup.space
    genome = trial.user_attrs[st.GENOME]
    if archid(genome) != trial.user_attrs.get(st.ARCHID):
        raise ExportError(f"trial {trial.number}: stored genome does not match its archid")
    built = space.build(genome, seed=cfg.seed)
    stored = trial.user_attrs.get(st.RECIPE)
    if stored is not None and json.loads(json.dumps(built.recipe)) != stored:
        raise ExportError(f"trial {trial.number}: the base checkpoint gives another recipe than the search "
                          "did; pass the search's base.checkpoint")
    model = built.model
    state = _weights_from_artifact(study, trial, st.artifact_dir(cfg.storage))
    if state is not None:
        load_weights(model, state, what=f"weights of trial {trial.number}")
        source = "artifact"
    else:
        why = "were not kept (artifacts=best keeps each new best's only)" if not trial.user_attrs.get(st.WEIGHTS) \
            else f"are not in {st.artifact_dir(cfg.storage)}"
        log.warning("trial %d: its trained weights %s: re-training it with the search's seed and budget",
                    trial.number, why)
        finetune(model, setup.data, cfg.finetune, device=setup.device, seed=cfg.seed, progress=cfg.progress,
                 desc=f"re-train trial {trial.number}")
        source = "retrained (search seed and budget)"
    if extra_epochs > 0:
        finetune(model, setup.data, cfg.finetune.with_epochs(extra_epochs), device=setup.device, seed=cfg.seed,
                 progress=cfg.progress, desc=f"fine-tune trial {trial.number}")
        source += f" + {extra_epochs:g} more epochs"
    model.to("cpu").eval()
    val_acc, _ = evaluate_accuracy(model, setup.data.val, device="cpu")
    test_acc = evaluate_accuracy(model, setup.data.test, device="cpu")[0] if setup.data.test is not None else None
    folder = out_dir / f"{rank:02d}-trial{trial.number}-{trial.user_attrs[st.ARCHID]}"
    write_architecture(setup, genome, built, folder, {
        "study": study.study_name, "trial": trial.number, "rank": rank, "archid": trial.user_attrs[st.ARCHID],
        "search_val_accuracy": trial.values[0], "val_accuracy": val_acc, "test_accuracy": test_acc,
        "weights": source}, costs=st.trial_costs(trial), formats=formats)
    return folder


def new_run_dir(root: Path) -> Path:
    """``root/<UTC time>`` (and ``-2``, ``-3``... within one second): one folder per run."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path, n = root / stamp, 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{n}"
    path.mkdir(parents=True)
    return path


def export_study(name: str, storage: str, out: str | Path = "exports", top: int | str = 1,
                 trial: int | None = None, extra_epochs: float = 0.0,
                 overrides: list[str] | None = None, format: str | None = None) -> list[Path]:
    """Export the best ``top`` trials (or one ``trial``) of a study into a new run folder
    ``out/<study>/<run>/``. Returns the architectures' folders."""
    study = st.load_existing(name, storage)
    cfg: RunConfig = st.stored_config(study)
    if overrides:
        from searchkit.config import load_config
        cfg = load_config(overrides, base=cfg.to_dict())
    from searchkit.deploy import parse_formats
    fmt = parse_formats(format)
    chosen = select_trials(study, top, trial)
    base_info = study.user_attrs.get(st.BASE_KEY, {})
    setup = RunSetup.build(cfg, quiet=True, train_base=False, known_base=base_info)
    run = new_run_dir(Path(out) / name)
    folders = [export_trial(study, t, setup, run, rank=rank, extra_epochs=extra_epochs, formats=fmt)
               for rank, t in enumerate(chosen, 1)]
    (run / "base.json").write_text(json.dumps(base_info, indent=2, sort_keys=True))
    manifest = {"study": name, "storage": st.redact(storage), "created": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                      time.gmtime()),
                "selection": {"top": top, "trial": trial, "extra_epochs": extra_epochs},
                "formats": list(fmt),
                "architectures": [{"rank": r, "trial": t.number, "archid": t.user_attrs[st.ARCHID],
                                   "folder": f.name} for r, (t, f) in enumerate(zip(chosen, folders), 1)]}
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folders
