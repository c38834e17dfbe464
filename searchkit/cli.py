"""The ``searchkit`` command line.

    searchkit search space=channels algo=abc [key=value ...]   create or continue a study
    searchkit resume study=NAME [trials=N]                      continue a study as stored
    searchkit export study=NAME [out=DIR] [top=K|all] [trial=N] [finetune.epochs=N]
    searchkit report study=NAME [out=DIR]                       HTML report + CSV/Parquet of a study
    searchkit studies [storage=URL]                             each study: trials by state, best
    searchkit list                                              spaces, algos, models, datasets
    searchkit train [space.model=NAME] [data=NAME] [base.epochs=N] [out=PATH]

Bad input ends with one ``searchkit: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from searchkit import __version__

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger("searchkit")

EPILOG = """\
overrides (key=value, values parsed as YAML):
  space=NAME          search space ({spaces}); reads spaces/NAME.yaml
  algo=NAME           strategy ({algos}); algo.OPTION=V passes options (algo.food_number=10)
  space.model=NAME    base network ({models})
  data=NAME           dataset ({datas}); data.root=DIR, data.image_size=N
  study=NAME          study name (default SPACE-ALGO); the same name continues the study
  storage=URL         sqlite:///studies/searchkit.db (default), postgresql://..., FILE.log
  trials=N            trained candidates the study should hold
  constraint.flops=X  X <= 1: fraction of the base; else absolute (60M); also constraint.params
  finetune.epochs=E   fine-tuning budget per candidate (or finetune.max_batches=B)
  base.checkpoint=P   base weights (state_dict); default: train once and cache
  pruner=NAME         none, median, hyperband, halving
  seed=N device=auto|cpu|cuda timeout=SECONDS progress=true|false
"""


def _epilog() -> str:
    from searchkit.registry import ALL
    return EPILOG.format(spaces=", ".join(ALL["space"].names()), algos=", ".join(ALL["algo"].names()),
                         models=", ".join(ALL["model"].names()), datas=", ".join(ALL["data"].names()))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="searchkit", description="Find smaller, faster CNNs.",
                                epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"searchkit {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the final result")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    helps = {
        "search": "create or continue a search study",
        "resume": "continue a stored study with its own settings",
        "export": "export the best architectures of a study as checkpoints",
        "report": "write an HTML report (plus CSV/Parquet) of a study",
        "studies": "list studies: trials by state and best result",
        "list": "list spaces, strategies, models and datasets",
        "train": "train a base network and save its state_dict",
        "tinynet": "tinynet formula study=NAME flops=TARGET: fit r(FLOPs), d(FLOPs), solve w",
        "latency": "latency profile|fit|validate target=NAME: a latency predictor for this CPU",
    }
    for name, text in helps.items():
        sp = sub.add_parser(name, help=text, description=text, epilog=_epilog(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.add_argument("overrides", nargs="*", metavar="key=value")
        sp.add_argument("-q", "--quiet", dest="sub_quiet", action="store_true",
                        help="only errors and the final result")
    return p


def _fmt_count(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def _pop(overrides: list[str], key: str, default=None):
    from searchkit.config import parse_override
    value, rest = default, []
    for item in overrides:
        k, v = parse_override(item)
        if k == key:
            value = v
        else:
            rest.append(item)
    overrides[:] = rest
    return value


def cmd_search(overrides: list[str], quiet: bool, *, resume: bool = False) -> int:
    from searchkit import study as st
    from searchkit.config import load_config
    from searchkit.search import SearchInterrupted, run_search

    if resume:
        name = _pop(list(overrides), "study")
        if name is None:
            raise st.StudyError("resume needs study=NAME (see `searchkit studies`)")
        storage = _pop(list(overrides), "storage", "sqlite:///studies/searchkit.db")
        stored = st.stored_config(st.load_existing(str(name), str(storage)))
        cfg = load_config(overrides, base=stored.to_dict())
    else:
        cfg = load_config(overrides)
    st.check_name(cfg.study_name)
    try:
        outcome = run_search(cfg, overrides, quiet=quiet)
    except SearchInterrupted:
        print(f"searchkit: interrupted; study '{cfg.study_name}' is saved - run the same command to continue",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_outcome(outcome)
    return 0


def _print_outcome(outcome) -> None:
    from searchkit import study as st
    study, ctx = outcome.study, outcome.context
    base = ctx.space.base_costs()
    counts = st.counts_by_state(study)
    print(f"study {study.study_name}: {outcome.evaluated} candidates trained "
          f"({', '.join(f'{k.lower()} {v}' for k, v in sorted(counts.items()))}); stopped: {outcome.stop_reason}")
    if ctx.base is not None:
        print(f"base {ctx.cfg.space.model}: val accuracy {ctx.base_accuracy:.4f}, "
              f"FLOPs {_fmt_count(base.flops)}, params {_fmt_count(base.params)}")
    else:
        print(f"largest {ctx.space.name} genome: FLOPs {_fmt_count(base.flops)}, params {_fmt_count(base.params)}")
    best = outcome.best
    if best is None:
        print("no candidate finished yet")
        return
    ua = best.user_attrs
    widths = ctx.space.describe(ua[st.GENOME])
    print(f"best: trial {best.number}  val accuracy {best.values[0]:.4f}  "
          f"FLOPs {_fmt_count(ua[st.FLOPS])} ({1 - ua[st.FLOPS] / base.flops:.1%} fewer)  "
          f"params {_fmt_count(ua[st.PARAMS])} ({1 - ua[st.PARAMS] / base.params:.1%} fewer)  "
          f"archid {ua[st.ARCHID]}")
    if st.LATENCY in ua and ctx.latency is not None:
        print(f"  latency: {ua[st.LATENCY]:.3f} ms predicted on target '{ctx.cfg.latency.target}' "
              f"(base {ctx.latency.base_ms():.3f} ms"
              + (f", bound {ctx.cfg.constraint.latency_ms:g} ms searched as predicted <= "
                 f"{ctx.limits['latency']:.3f} ms)" if ctx.cfg.constraint.latency_ms else ")"))
    if "keep" in ua[st.GENOME]:
        print(f"  keep:   {ua[st.GENOME]['keep']}")
        print(f"  widths: {widths['widths']}")
    else:
        print(f"  genome: {ua[st.GENOME]}  input {widths.get('input_side', '?')} px, "
              f"stage depths {widths.get('stage_depths')}, widths {widths.get('stage_widths')}")
    print(f"export:  searchkit export study={study.study_name}")


def cmd_export(overrides: list[str], quiet: bool) -> int:
    from searchkit.export import export_study
    from searchkit.study import StudyError
    name = _pop(overrides, "study")
    if name is None:
        raise StudyError("export needs study=NAME (see `searchkit studies`)")
    storage = _pop(overrides, "storage", "sqlite:///studies/searchkit.db")
    out = _pop(overrides, "out", "exports")
    top = _pop(overrides, "top", 1)
    trial = _pop(overrides, "trial")
    extra = _pop(overrides, "finetune.epochs", 0) or 0
    folders = export_study(str(name), str(storage), out=str(out), top=top, trial=trial,
                           extra_epochs=float(extra), overrides=overrides)
    for folder in folders:
        meta = json.loads((folder / "arch.json").read_text())
        print(f"{folder}: trial {meta['trial']} val {meta['val_accuracy']:.4f} test "
              f"{meta['test_accuracy'] if meta['test_accuracy'] is None else format(meta['test_accuracy'], '.4f')} "
              f"FLOPs {_fmt_count(meta['flops'])} ({meta['flops_reduction']:.1%} fewer) "
              f"params {_fmt_count(meta['params'])} ({meta['params_reduction']:.1%} fewer)")
        if "latency" in meta:
            lat = meta["latency"]
            bound = f", bound {lat['bound_ms']:g} ms" if lat.get("bound_ms") else ""
            verdict = {True: ": met", False: ": NOT met", None: ""}[lat.get("bound_met")] if bound else ""
            print(f"  latency: predicted {lat['predicted_ms']:.3f} ms on '{lat['target']}', measured here "
                  f"{lat['measured_ms']:.3f} ms ({lat['threads']} thread(s){bound}{verdict})")
    return 0


def cmd_report(overrides: list[str], quiet: bool) -> int:
    from searchkit import study as st
    from searchkit.report import write_report
    name = _pop(overrides, "study")
    if name is None:
        raise st.StudyError("report needs study=NAME (see `searchkit studies`)")
    storage = str(_pop(overrides, "storage", "sqlite:///studies/searchkit.db"))
    out = str(_pop(overrides, "out", "reports"))
    if overrides:
        raise st.ConfigError(f"report takes study=, storage= and out=, got {overrides[0]}")
    path = write_report(st.load_existing(str(name), storage), out)
    print(f"wrote {path} (open it in a browser; trials.csv and trials.parquet beside it)")
    return 0


def cmd_studies(overrides: list[str], quiet: bool) -> int:
    from searchkit import study as st
    import optuna
    storage_url = str(_pop(overrides, "storage", "sqlite:///studies/searchkit.db"))
    if overrides:
        raise st.ConfigError(f"studies takes only storage=URL, got {overrides[0]}")
    if storage_url.startswith("sqlite:///") and not Path(storage_url.removeprefix("sqlite:///")).exists():
        print(f"no studies yet ({storage_url} does not exist)")
        return 0
    storage = st.open_storage(storage_url)
    names = st.study_names(storage)
    if not names:
        print("no studies yet")
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        counts = st.counts_by_state(study)
        ranked = st.ranked_trials(study)
        line = f"{name}: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
        if ranked:
            b = ranked[0]
            line += (f"; best trial {b.number}: accuracy {b.values[0]:.4f}, FLOPs "
                     f"{_fmt_count(b.user_attrs.get(st.FLOPS))} "
                     f"({b.user_attrs.get('flops_ratio', 0):.1%} of base)")
        print(line)
    return 0


def cmd_list(overrides: list[str], quiet: bool) -> int:
    from searchkit.registry import ALL
    for kind, reg in ALL.items():
        print(f"{kind + 's':8} {', '.join(reg.names())}")
    return 0


def cmd_train(overrides: list[str], quiet: bool) -> int:
    import torch
    from searchkit.config import load_config
    from searchkit.context import SearchContext
    out = _pop(overrides, "out")
    cfg = load_config(overrides)
    if cfg.base.checkpoint:
        from searchkit.config import ConfigError
        raise ConfigError("train makes a base checkpoint; drop base.checkpoint= (use out=PATH to choose where)")
    ctx = SearchContext.build(cfg, quiet=quiet)
    if ctx.base is None:
        from searchkit.config import ConfigError
        raise ConfigError(f"space={cfg.space.name} has no base network to train")
    path = Path(ctx.base_path)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        torch.save(ctx.base.state_dict(), out)
        path = Path(out)
    base = ctx.space.base_costs()
    print(f"{cfg.space.model} on {cfg.data.name}: val accuracy {ctx.base_accuracy:.4f}, "
          f"FLOPs {_fmt_count(base.flops)}, params {_fmt_count(base.params)}; saved {path}")
    print(f"use it: searchkit search space.model={cfg.space.model} base.checkpoint={path}")
    return 0


def cmd_tinynet(overrides: list[str], quiet: bool) -> int:
    from searchkit import study as st
    from searchkit.config import ConfigError, parse_quantity
    from searchkit.context import SearchContext
    from searchkit.tinyformula import formula_for_study
    if not overrides or overrides[0] != "formula":
        raise ConfigError("usage: searchkit tinynet formula study=NAME flops=TARGET [storage=URL]")
    rest = overrides[1:]
    name = _pop(rest, "study")
    target = _pop(rest, "flops")
    storage = str(_pop(rest, "storage", "sqlite:///studies/searchkit.db"))
    if name is None or target is None:
        raise ConfigError("tinynet formula needs study=NAME and flops=TARGET (e.g. flops=2M)")
    if rest:
        raise ConfigError(f"tinynet formula takes study=, flops= and storage=, got {rest[0]}")
    study = st.load_existing(str(name), storage)
    cfg = st.stored_config(study)
    if cfg.space.name != "tinynet":
        raise ConfigError(f"study '{name}' searched space={cfg.space.name}, not tinynet")
    ctx = SearchContext.build(cfg, quiet=True, train_base=False)
    flops = parse_quantity("flops", target)
    try:
        fit, genome = formula_for_study(study, flops, ctx)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    got = ctx.space.costs(genome)
    print(f"tiny formula from {fit.get('n_points', len(fit.get('data', [])))} band-best candidates of '{name}':")
    print(f"  target {_fmt_count(flops)} FLOPs -> r={genome['r']:.4f} d={genome['d']:.4f} w={genome['w']:.4f} "
          f"(input {ctx.space.input_side(genome)} px): {_fmt_count(got.flops)} FLOPs "
          f"({got.flops / flops - 1:+.2%}), {_fmt_count(got.params)} params")
    print("  the fit and its data are stored in the study (user attr searchkit:tinyformula)")
    return 0


def cmd_latency(overrides: list[str], quiet: bool) -> int:
    """``searchkit latency profile|fit|validate target=NAME [threads=N] [sweep=default|quick]
    [models=N] [dir=latency]``."""
    from searchkit.config import ConfigError
    from searchkit.costs import profiling
    usage = ("usage: searchkit latency profile|fit|validate target=NAME "
             "[threads=N] [sweep=default|quick] [rounds=N] [models=N] [dir=DIR]")
    if not overrides or overrides[0] not in ("profile", "fit", "validate"):
        raise ConfigError(usage)
    action, rest = overrides[0], overrides[1:]
    target = _pop(rest, "target")
    root = str(_pop(rest, "dir", "latency"))
    if target is None:
        raise ConfigError(f"latency {action} needs target=NAME ({usage})")
    target = str(target)
    say = (lambda *a, **k: None) if quiet else (lambda msg: print(f"searchkit: {msg}", file=sys.stderr))
    try:
        if action == "profile":
            threads = _pop(rest, "threads", 1)
            batch = _pop(rest, "batch", 1)
            sweep = str(_pop(rest, "sweep", "default"))
            seed = _pop(rest, "seed", 0)
            rounds = _pop(rest, "rounds", None)
            if rest:
                raise ConfigError(f"latency profile takes target=, threads=, batch=, sweep=, seed=, rounds=, dir=; "
                                  f"got {rest[0]}")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (threads, batch, seed, rounds or 1)):
                raise ConfigError("threads=, batch=, seed= and rounds= must be integers")
            path = profiling.profile(target, threads=threads, batch=batch, sweep=sweep, seed=seed, rounds=rounds,
                                     root=root, log=say)
            print(f"wrote {path}; next: searchkit latency fit target={target}")
        elif action == "fit":
            if rest:
                raise ConfigError(f"latency fit takes target= and dir=; got {rest[0]}")
            path = profiling.fit(target, root=root)
            print(f"wrote {path}; check it with: searchkit latency validate target={target}")
        else:
            models = _pop(rest, "models", 60)
            seed = _pop(rest, "seed", 1)
            report_dir = str(_pop(rest, "reports", "reports/latency"))
            bases = _pop(rest, "bases", True)
            rounds = _pop(rest, "rounds", 12)
            if rest:
                raise ConfigError(f"latency validate takes target=, models=, seed=, rounds=, bases=, reports=, dir=; "
                                  f"got {rest[0]}")
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (models, rounds)):
                raise ConfigError("models= and rounds= must be positive integers")
            path, summary = profiling.validate(target, n_random=models, seed=int(seed), rounds=rounds, root=root,
                                               report_dir=report_dir, log=say, bases=bool(bases))
            o = summary["overall"]
            print(f"{o['n']} held-out models on target '{target}': RMSPE {o['rmspe']:.1%}, "
                  f"within 5% {o['within_5']:.0%}, within 10% {o['within_10']:.0%}; wrote {path}")
    except profiling.ProfileError as exc:
        raise ConfigError(str(exc)) from None
    return 0


COMMANDS = {"search": cmd_search, "latency": cmd_latency, "resume": lambda o, q: cmd_search(o, q, resume=True),
            "tinynet": cmd_tinynet, "export": cmd_export, "report": cmd_report, "studies": cmd_studies, "list": cmd_list, "train": cmd_train}


def _setup_logging(quiet: bool) -> None:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("searchkit: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``searchkit`` console script; returns the exit status."""
    import warnings
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_USAGE
    args.quiet = args.quiet or getattr(args, "sub_quiet", False)
    _setup_logging(args.quiet)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    warnings.filterwarnings("ignore", message=".*ExperimentalWarning.*")
    try:
        return COMMANDS[args.command](list(args.overrides), args.quiet)
    except KeyboardInterrupt:
        print("searchkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as exc:
        from searchkit.search import RepeatedFailures
        if isinstance(exc, RepeatedFailures):
            print(f"searchkit: error: {exc}", file=sys.stderr)
            return 1
        raise
    except Exception as exc:  # one line for known user errors, traceback for bugs
        if _is_user_error(exc):
            print(f"searchkit: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise


def _is_user_error(exc: Exception) -> bool:
    from searchkit.config import ConfigError
    from searchkit.context import CheckpointError
    from searchkit.data import DataRootError
    from searchkit.export import ExportError
    from searchkit.registry import UnknownNameError
    from searchkit.study import StudyError
    return isinstance(exc, (ConfigError, StudyError, CheckpointError, DataRootError, ExportError,
                            UnknownNameError))


if __name__ == "__main__":
    sys.exit(main())
