"""``searchkit tinynet formula study=NAME flops=TARGET``: the tiny formula of a tinynet study.

Fits r(FLOPs) and d(FLOPs) to the best candidate of each FLOPs band (a power law plus a
Gaussian-process correction), stores the fit with its data in the study, and solves w so
the architecture lands within 3% of the target.
"""

from __future__ import annotations

import logging

from searchkit.core.errors import ConfigError

log = logging.getLogger("searchkit")


def _fmt(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def formula_command(args: list[str]) -> int:
    """study=NAME flops=TARGET [storage=URL]: fit r(FLOPs), d(FLOPs) to the study's band-best
    candidates and solve w for the target (stored in the study; `tinynet train` trains it)."""
    from searchkit import study as st
    from searchkit.config import DEFAULT_STORAGE, parse_override, parse_quantity
    from searchkit.setup import RunSetup

    given = dict(parse_override(a) for a in args)
    name, target = given.pop("study", None), given.pop("flops", None)
    storage = str(given.pop("storage", DEFAULT_STORAGE))
    if name is None or target is None:
        raise ConfigError("tinynet formula needs study=NAME and flops=TARGET (e.g. flops=2M)")
    if given:
        raise ConfigError(f"tinynet formula takes study=, flops= and storage=, got {next(iter(given))}")
    study = st.load_existing(str(name), storage)
    cfg = st.stored_config(study)
    if cfg.space.name != "tinynet":
        raise ConfigError(f"study '{name}' searched space={cfg.space.name}, not tinynet")
    space = RunSetup.build(cfg, quiet=True, train_base=False).space
    flops = parse_quantity("flops", target)
    fit, genome = _solve(study, flops, space)
    got, params = space.flops_params(genome)
    print(f"tiny formula from {fit.get('n_points', len(fit.get('data', [])))} band-best candidates of '{name}':")
    print(f"  target {_fmt(flops)} FLOPs -> r={genome['r']:.4f} d={genome['d']:.4f} w={genome['w']:.4f} "
          f"(input {space.input_side(genome)} px): {_fmt(got)} FLOPs ({got / flops - 1:+.2%}), {_fmt(params)} params")
    print("  the fit and its data are stored in the study (user attr searchkit:tinyformula)")
    print(f"  train and export it: searchkit tinynet train study={name} flops={target}")
    return 0


def _solve(study, flops: float, space):
    from searchkit.spaces.tinynet.formula import fit_warnings, formula_for_study
    try:
        fit, genome = formula_for_study(study, flops, space)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for warning in fit_warnings(fit, space.num_classes):
        log.warning("warning: %s", warning)
    return fit, genome


def train_command(args: list[str]) -> int:
    """study=NAME flops=TARGET [finetune.epochs=E] [out=DIR] [format=pt2|onnx|all] [storage=URL]: solve the tiny formula
    for TARGET, train that network from scratch with the study's budget and export it."""
    import json
    from pathlib import Path

    from searchkit import study as st
    from searchkit.config import DEFAULT_STORAGE, load_config, parse_override, parse_quantity
    from searchkit.evaluate import evaluate_accuracy, finetune
    from searchkit.export import new_run_dir, write_architecture
    from searchkit.setup import RunSetup

    given = dict(parse_override(a) for a in args)
    name, target = given.pop("study", None), given.pop("flops", None)
    storage = str(given.pop("storage", DEFAULT_STORAGE))
    out = Path(str(given.pop("out", "exports")))
    from searchkit.deploy import parse_formats
    fmt = parse_formats(given.pop("format", None))
    if name is None or target is None:
        raise ConfigError("tinynet train needs study=NAME and flops=TARGET (e.g. flops=2M)")
    study = st.load_existing(str(name), storage)
    cfg = st.stored_config(study)
    if cfg.space.name != "tinynet":
        raise ConfigError(f"study '{name}' searched space={cfg.space.name}, not tinynet")
    cfg = load_config([f"{k}={json.dumps(v)}" for k, v in given.items()], base=cfg.to_dict())  # finetune.*
    setup = RunSetup.build(cfg, quiet=True, train_base=False)
    space, flops = setup.space, parse_quantity("flops", target)
    fit, genome = _solve(study, flops, space)
    built = space.build(genome, seed=cfg.seed)
    finetune(built.model, setup.data, cfg.finetune, device=setup.device, seed=cfg.seed, progress=cfg.progress,
             desc=f"train r={genome['r']} d={genome['d']} w={genome['w']}")
    built.model.to("cpu").eval()
    val = evaluate_accuracy(built.model, setup.data.val)[0]
    test = evaluate_accuracy(built.model, setup.data.test)[0] if setup.data.test is not None else None
    run = new_run_dir(out / str(name))
    folder = run / f"formula-{_fmt(flops)}"
    write_architecture(setup, genome, built, folder, {
        "study": str(name), "source": "tiny formula", "target_flops": flops, "fit": fit,
        "val_accuracy": val, "test_accuracy": test,
        "weights": f"trained from scratch ({cfg.finetune.epochs:g} epochs, the study's budget)"}, formats=fmt)
    (run / "manifest.json").write_text(json.dumps({"study": str(name), "source": "tiny formula",
                                                   "target_flops": flops, "architectures": [
                                                       {"rank": 1, "folder": folder.name, "genome": genome}]},
                                                  indent=2))
    got = space.flops_params(genome)[0]
    print(f"{folder}: r={genome['r']:.4f} d={genome['d']:.4f} w={genome['w']:.4f} ({space.input_side(genome)} px), "
          f"{_fmt(got)} FLOPs ({got / flops - 1:+.2%} of the target), val {val:.4f}"
          + (f" test {test:.4f}" if test is not None else ""))
    return 0
