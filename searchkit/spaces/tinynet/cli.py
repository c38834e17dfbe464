"""``searchkit tinynet formula study=NAME flops=TARGET``: the tiny formula of a tinynet study.

Fits r(FLOPs) and d(FLOPs) to the best candidate of each FLOPs band (a power law plus a
Gaussian-process correction), stores the fit with its data in the study, and solves w so
the architecture lands within 3% of the target.
"""

from __future__ import annotations

from searchkit.core.errors import ConfigError


def _fmt(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def formula_command(args: list[str]) -> int:
    from searchkit import study as st
    from searchkit.config import DEFAULT_STORAGE, parse_override, parse_quantity
    from searchkit.setup import RunSetup
    from searchkit.spaces.tinynet.formula import formula_for_study

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
    try:
        fit, genome = formula_for_study(study, flops, space)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    got, params = space.flops_params(genome)
    print(f"tiny formula from {fit.get('n_points', len(fit.get('data', [])))} band-best candidates of '{name}':")
    print(f"  target {_fmt(flops)} FLOPs -> r={genome['r']:.4f} d={genome['d']:.4f} w={genome['w']:.4f} "
          f"(input {space.input_side(genome)} px): {_fmt(got)} FLOPs ({got / flops - 1:+.2%}), {_fmt(params)} params")
    print("  the fit and its data are stored in the study (user attr searchkit:tinyformula)")
    return 0
