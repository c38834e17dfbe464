"""The ``searchkit`` command line.

    searchkit search space=SPACE algo=ALGO [key=value ...]     create or continue a study
    searchkit resume study=NAME [trials=N]                      continue a study as stored
    searchkit export study=NAME [out=DIR] [top=K|pareto|all] [trial=N] [format=pt2|onnx|all]
    searchkit report study=NAME [out=DIR]                       HTML report + CSV/Parquet of a study
    searchkit studies [storage=URL]                             each study: trials by state, best
    searchkit list                                              spaces, algos, models, datasets
    searchkit train [space.model=NAME] [data=NAME] [base.epochs=N] [out=PATH]
    searchkit SPACE VERB key=value ...                           a space's own command

Bad input ends with one ``searchkit: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import logging
import sys
from pathlib import Path

from searchkit import __version__

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger("searchkit")

EPILOG = """\
Every command takes key=value overrides (values parsed as YAML: [a,b] is a list, null
unsets); `searchkit COMMAND --help` lists the keys it takes. Bad input ends with one
`searchkit: error:` line and exit status 2.
"""

# Each command's own keys (beyond the run settings that search, resume and train take).
MAX_FRONT_LINES = 8  # trials of a Pareto front printed at the end of a search

COMMAND_KEYS = {
    "export": [("study=NAME", "the study to export (required)"), ("storage=URL", "its storage"),
               ("out=DIR", "where each export run gets a folder of its own (default exports)"),
               ("top=K|pareto|all", "the K most accurate (default 1), the Pareto front, or every trained one"),
               ("trial=N", "one trial instead"), ("finetune.epochs=E", "train the winners E more epochs first"),
               ("format=pt2|onnx|all", "the programs written: model.pt2 (default), model.onnx (checked by "
                "onnxruntime), or both")],
    "report": [("study=NAME", "the study (required)"), ("storage=URL", "its storage"),
               ("out=DIR", "reports/<study>/index.html, trials.csv and .parquet go under it (default reports)")],
    "studies": [("storage=URL", "the storage to list (default sqlite:///studies/searchkit.db)")],
    "resume": [("study=NAME", "the study to continue with its stored settings (required)"),
               ("storage=URL", "its storage"), ("trials=N", "raise its budget; also timeout=, device=, ...")],
    "train": [("out=PATH", "where to save the base's state_dict (default: the per-user cache)")],
    "latency": [("profile|fit|validate", "the step: measure this CPU, fit the predictor, check it"),
                ("target=NAME", "the profiled CPU's name (required)"), ("dir=DIR", "latency/ by default"),
                ("threads=N", "profile: threads (1)"), ("batch=1", "profile: batch size"),
                ("runtime=torch|onnxruntime", "profile: the runtime measured: torch eager (default) or "
                 "ONNX Runtime as deployed; searches, repairs and export measure on it"),
                ("sweep=default|quick", "profile: quick is a smoke test (a few dozen kernels and 4 models, "
                 "about 20 s); default is the full profile (about 6 minutes here)"),
                ("rounds=N", "profile: passes over the sweep (4; quick: 1); validate: measuring rounds (12)"),
                ("seed=N", "profile / validate: the random networks drawn"),
                ("models=N", "validate: held-out random networks (60)"),
                ("bases=true|false", "validate: also every space's reference networks"),
                ("reports=DIR", "validate: where the report goes (reports/latency)")],
}


def _rows(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows) + 2
    out = []
    for key, text in rows:
        lines = textwrap.wrap(text, 92 - width) or [""]
        out.append(f"  {key.ljust(width)}{lines[0]}")
        out += [" " * (width + 2) + line for line in lines[1:]]
    return "\n".join(out)


def _settings_help() -> str:
    """Every run setting, from the config's schema (each key's default and comment), and the
    registries' choices."""
    from searchkit.config import schema
    from searchkit.registry import ALL
    choices = "choices (searchkit list):\n" + _rows([(_PLURALS.get(k, k), ", ".join(r.names())) for k, r in ALL.items()])
    return choices + "\n\nrun settings (key=value; default in brackets; null unsets):\n" + _rows(
        [(key, f"[{default}] {text}") for key, default, text in schema()])


def _epilog(command: str | None) -> str:
    if command in ("search", "train"):
        return (_rows(COMMAND_KEYS.get(command, [])) + "\n\n" if command in COMMAND_KEYS else "") + _settings_help()
    if command in COMMAND_KEYS:
        return "keys:\n" + _rows(COMMAND_KEYS[command]) + (
            "\n\nand any run setting the study does not fix (see `searchkit search --help`)"
            if command == "resume" else "")
    from searchkit.registry import SPACES
    if command in SPACES:
        verbs = SPACES.get(command).commands()
        return "commands:\n" + _rows([(f"{command} {v}", (f.__doc__ or "").strip().splitlines()[0])
                                       for v, f in verbs.items()]) if verbs else ""
    return EPILOG


def _parser(help_for: str | None = None) -> argparse.ArgumentParser:
    """The parser; the epilog of ``help_for`` (a command asked for --help) is filled in (it
    imports the components whose keys it lists: nothing else pays for it)."""
    p = argparse.ArgumentParser(prog="searchkit", description="Find smaller, faster CNNs.",
                                epilog=_epilog(None), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"searchkit {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the final result")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    helps = {
        "search": "create or continue a search study",
        "resume": "continue a stored study with its own settings",
        "export": "export the best architectures of a study as checkpoints",
        "report": "write an HTML report (plus CSV/Parquet) of a study",
        "studies": "list studies: trials by state and best result",
        "list": "list spaces, costs, strategies, runners, executors, models and datasets",
        "train": "train a base network and save its state_dict",
        "latency": "latency profile|fit|validate target=NAME: a latency predictor for this CPU",
    }
    from searchkit.registry import SPACES
    for space in SPACES.names():  # names only: --help imports no space
        helps.setdefault(space, f"{space} VERB key=value ...: the commands of space={space}")
    for name, text in helps.items():
        sp = sub.add_parser(name, help=text, description=text,
                            epilog=_epilog(name) if name == help_for else None,
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
        storage = _pop(list(overrides), "storage", st.DEFAULT_STORAGE)
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


def _costs_line(costs: dict, base: dict) -> str:
    """``flops 62.50M (50.2% fewer), params 0.41M (51.0% fewer)``."""
    parts = []
    for name, value in costs.items():
        b = base.get(name)
        rel = f" ({1 - value / b:.1%} fewer)" if b else ""
        parts.append(f"{name} {_fmt_count(value) if name != 'latency' else f'{value:.3f} ms'}{rel}")
    return ", ".join(parts)


def _print_outcome(outcome) -> None:
    from searchkit import study as st
    study, setup = outcome.study, outcome.setup
    base = {n: m.base() for n, m in setup.costs.items()}
    counts = st.counts_by_state(study)
    print(f"study {study.study_name}: {outcome.evaluated} candidates trained "
          f"({', '.join(f'{k.lower()} {v}' for k, v in sorted(counts.items()))}); stopped: {outcome.stop_reason}")
    what = f"base {setup.base.model}: val accuracy {setup.base.accuracy:.4f}, " if setup.base else \
        f"largest {setup.cfg.space.name} genome: "
    print(what + ", ".join(f"{n} {_fmt_count(v) if n != 'latency' else f'{v:.3f} ms'}" for n, v in base.items()))
    best = outcome.best
    if best is None:
        print("no candidate finished yet")
        return
    ua = best.user_attrs
    costs = {n: st.trial_cost(best, n) for n in setup.costs if st.trial_cost(best, n) is not None}
    print(f"best: trial {best.number}  val accuracy {best.values[0]:.4f}  {_costs_line(costs, base)}  "
          f"archid {ua[st.ARCHID]}")
    if "latency" in setup.costs and setup.cfg.constraint.get("latency"):
        print(f"  latency bound {setup.cfg.constraint['latency']:g} ms on target '{setup.cfg.latency.target}', "
              f"searched as predicted <= {setup.limits['latency']:.3f} ms")
    summary = setup.space.describe(ua[st.GENOME]).get("summary")
    print(f"  {summary}" if summary else f"  genome: {ua[st.GENOME]}")
    objectives = setup.cfg.objectives
    if len(objectives) > 1:  # a Pareto search: its answer is the front, not one trial
        front = st.pareto_trials(study)
        print(f"Pareto front (accuracy vs {', '.join(objectives[1:])}): {len(front)} trials on the front, "
              "most accurate first:")
        for t in front[:MAX_FRONT_LINES]:
            costs = {n: st.trial_cost(t, n) for n in objectives[1:]}
            print(f"  trial {t.number}: accuracy {t.values[0]:.4f}, {_costs_line(costs, base)}")
        if len(front) > MAX_FRONT_LINES:
            print(f"  ... and {len(front) - MAX_FRONT_LINES} more (searchkit report study={study.study_name})")
        print(f"export:  searchkit export study={study.study_name} top=pareto")
        return
    print(f"export:  searchkit export study={study.study_name}")


def cmd_export(overrides: list[str], quiet: bool) -> int:
    from searchkit import study as st
    from searchkit.export import export_study
    name = _pop(overrides, "study")
    if name is None:
        raise st.StudyError("export needs study=NAME (see `searchkit studies`)")
    storage = _pop(overrides, "storage", st.DEFAULT_STORAGE)
    out = _pop(overrides, "out", "exports")
    top = _pop(overrides, "top", 1)
    trial = _pop(overrides, "trial")
    extra = _pop(overrides, "finetune.epochs", 0) or 0
    fmt = _pop(overrides, "format")
    from searchkit.deploy import parse_formats
    parse_formats(fmt)  # a bad name fails before the study is read
    folders = export_study(str(name), str(storage), out=str(out), top=top, trial=trial,
                           extra_epochs=float(extra), overrides=overrides, format=fmt)
    if folders:
        print(f"export run {folders[0].parent} (manifest.json lists it):")
    for folder in folders:
        meta = json.loads((folder / "arch.json").read_text())
        test = meta["test_accuracy"]
        print(f"{folder}: trial {meta['trial']} val {meta['val_accuracy']:.4f} test "
              f"{'-' if test is None else format(test, '.4f')} {_costs_line(meta['costs'], meta['base_costs'])}")
        onnx = (meta.get("programs") or {}).get("onnx")
        if onnx:
            print(f"  onnx: {onnx['file']} (onnxruntime {onnx['onnxruntime']}: max difference to torch "
                  f"{onnx['max_rel_diff']:.1e} relative)")
        if "latency" in meta and isinstance(meta["latency"], dict):
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
    storage = str(_pop(overrides, "storage", st.DEFAULT_STORAGE))
    out = str(_pop(overrides, "out", "reports"))
    if overrides:
        raise st.ConfigError(f"report takes study=, storage= and out=, got {overrides[0]}")
    path = write_report(st.load_existing(str(name), storage), out)
    print(f"wrote {path} (open it in a browser; trials.csv and trials.parquet beside it)")
    return 0


def cmd_studies(overrides: list[str], quiet: bool) -> int:
    from searchkit import study as st
    import optuna
    storage_url = str(_pop(overrides, "storage", st.DEFAULT_STORAGE))
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
            base = st.base_costs(study.user_attrs.get(st.BASE_KEY) or {})
            line += f"; best trial {b.number}: accuracy {b.values[0]:.4f}, " + _costs_line(st.trial_costs(b), base)
            objectives = st.objectives_of(study)
            if len(objectives) > 1:
                front = st.pareto_trials(study)
                accs = [t.values[0] for t in front]
                line += (f"; front of {len(front)} (accuracy {min(accs):.4f}..{max(accs):.4f}, "
                         + ", ".join(f"{n} {_fmt_count(min(st.trial_cost(t, n) for t in front))}.."
                                     f"{_fmt_count(max(st.trial_cost(t, n) for t in front))}" for n in objectives[1:])
                         + ")")
        print(line)
    return 0


_PLURALS = {"space": "spaces", "cost": "costs", "algo": "algos", "runner": "runners", "executor": "executors",
            "model": "models", "data": "datasets"}


def cmd_list(overrides: list[str], quiet: bool) -> int:
    from searchkit.registry import ALL
    for kind, reg in ALL.items():
        print(f"{_PLURALS.get(kind, kind + 's'):10} {', '.join(reg.names())}")
    return 0


def cmd_train(overrides: list[str], quiet: bool) -> int:
    import torch
    from searchkit.config import ConfigError, load_config
    from searchkit.core.space import NeedsBase
    from searchkit.registry import SPACES
    from searchkit.setup import RunSetup
    out = _pop(overrides, "out")
    cfg = load_config(overrides)
    if cfg.base.checkpoint:
        raise ConfigError("train makes a base checkpoint; drop base.checkpoint= (use out=PATH to choose where)")
    if not issubclass(SPACES.get(cfg.space.name), NeedsBase):
        raise ConfigError(f"space={cfg.space.name} has no base network to train")
    setup = RunSetup.build(cfg, quiet=quiet)
    path = Path(setup.base.path)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        torch.save(setup.base.module.state_dict(), out)
        path = Path(out)
    base = {n: m.base() for n, m in setup.costs.items()}
    print(f"{setup.base.model} on {cfg.data.name}: val accuracy {setup.base.accuracy:.4f}, "
          + ", ".join(f"{n} {_fmt_count(v)}" for n, v in base.items()) + f"; saved {path}")
    print(f"use it: searchkit search space.model={setup.base.model} base.checkpoint={path}")
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
            runtime = str(_pop(rest, "runtime", "torch"))
            if rest:
                raise ConfigError(f"latency profile takes target=, threads=, batch=, sweep=, seed=, rounds=, runtime=, "
                                  f"dir=; got {rest[0]}")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (threads, batch, seed, rounds or 1)):
                raise ConfigError("threads=, batch=, seed= and rounds= must be integers")
            path = profiling.profile(target, threads=threads, batch=batch, sweep=sweep, seed=seed, rounds=rounds,
                                     root=root, log=say, runtime=runtime)
            print(f"wrote {path}; next: searchkit latency fit target={target}")
            if sweep == "quick":
                print("note: sweep=quick is a smoke test (a few dozen kernels, 4 calibration models): its "
                      "predictor shows the machinery working, it does not bound a real search; drop "
                      "sweep=quick for the full profile")
        elif action == "fit":
            if rest:
                raise ConfigError(f"latency fit takes target= and dir=; got {rest[0]}")
            path = profiling.fit(target, root=root)
            meta = profiling.load_predictor(target, root).meta
            print(f"wrote {path}: {profiling.heldout_line(meta)}")
            print(f"check it on held-out models: searchkit latency validate target={target}")
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
            "export": cmd_export, "report": cmd_report, "studies": cmd_studies, "list": cmd_list, "train": cmd_train}


def cmd_space(space: str, overrides: list[str], quiet: bool) -> int:
    """``searchkit SPACE VERB key=value ...``: a space's own command."""
    from searchkit.config import ConfigError
    from searchkit.registry import SPACES
    verbs = SPACES.get(space).commands()
    if not verbs:
        raise ConfigError(f"space={space} has no commands of its own")
    if not overrides or overrides[0] not in verbs:
        raise ConfigError(f"usage: searchkit {space} {'|'.join(verbs)} key=value ...")
    return verbs[overrides[0]](overrides[1:])


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
    argv = sys.argv[1:] if argv is None else list(argv)
    asks_help = any(a in ("-h", "--help") for a in argv)
    args = _parser(help_for=next((a for a in argv if not a.startswith("-")), None) if asks_help else None).parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_USAGE
    args.quiet = args.quiet or getattr(args, "sub_quiet", False)
    _setup_logging(args.quiet)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    warnings.filterwarnings("ignore", message=".*ExperimentalWarning.*")
    try:
        if args.command in COMMANDS:
            return COMMANDS[args.command](list(args.overrides), args.quiet)
        return cmd_space(args.command, list(args.overrides), args.quiet)
    except KeyboardInterrupt:
        print("searchkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as exc:
        from searchkit.core.ports import RepeatedFailures
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
    from searchkit.core.errors import UserError
    from searchkit.data import DataRootError
    return isinstance(exc, (UserError, DataRootError))


if __name__ == "__main__":
    sys.exit(main())
