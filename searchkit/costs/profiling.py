"""Profiling a target CPU, fitting its predictor, validating it on held-out whole models.

``searchkit latency profile target=NAME`` -> ``latency/NAME/profile.json``:

1. **Kernels.** A designed sweep per kernel type (:mod:`searchkit.costs.kernels`: conv k x k
   incl. grouped/depthwise with its BN and activation, linear, pooling, element-wise ops,
   over widths, resolution and stride), timed in chains of similar-sized kernels
   (:func:`~searchkit.costs.latency.measure_chain`), robust medians.
2. **Models.** Random networks of every space that offers them (``LatencyKernels.profile_sample``:
   pruned variants of each base, scaled EfficientNets), the ``calibration`` models: each is
   replayed kernel by kernel in its own order, so its
   kernels are timed in the context a forward gives them (a kernel timed after a giant or
   after a trifle reads very differently), and measured whole, which fits the
   predictor's per-call overhead.
3. **Rounds.** Both are repeated (4 rounds by default, about 6 minutes here): a
   shared VM's CPU changes speed for seconds at a time, and a kernel's (model's) time is
   the median over the rounds, i.e. over the machine's states.
4. Machine facts: CPU model, cores, threads, torch version, batch.

``fit`` turns a profile into ``latency/NAME/predictor.json`` (no pickle). ``validate``
measures a *different* random population (another seed) plus every base network and
writes RMSPE and the shares within +-5 % / +-10 % to ``reports/latency/NAME.md``.

Example:
    >>> pop = population(seed=1, n_random=2, bases=False)
    >>> len(pop), sorted({s.family for s in pop}) != []
    (2, True)
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from searchkit import __version__
from searchkit.core.atomic import replacing
from searchkit.costs.kernels import KERNELS, registered_types
from searchkit.costs.latency import Predictor, measure_chain, measure_models_ms, relative_errors
from searchkit.costs.trace import Kernel

PROFILE_VERSION = 1
SWEEPS = {  # kernels per type in the generic part of the sweep
    "default": {"conv": 1000, "eltwise": 300, "pool": 240, "linear": 120, "view": 3},
    "quick": {"conv": 60, "eltwise": 20, "pool": 16, "linear": 8, "view": 1},
}
CALIBRATION_MODELS = {"default": 120, "quick": 4}
CHAIN = 24
ROUNDS = {"default": 4, "quick": 1}  # passes over the whole sweep (see profile())


def _size_proxy(row: tuple) -> float:
    """log2 of a kernel's output elements (or MACs for convs): what sets its scale."""
    kind, fields = row
    if kind == "conv":
        cin, cout, k, st, g, h, w = fields[:7]
        return float(np.log2(max(1, cout * (h // st) * (w // st) * cin // g * k * k)))
    if kind in ("eltwise",):
        return float(np.log2(max(1, fields[1])))
    if kind == "pool":
        return float(np.log2(max(1, fields[1] * fields[2] * fields[3])))
    if kind == "linear":
        return float(np.log2(max(1, fields[0] * fields[1])))
    size = KERNELS[kind].size
    return float(size(fields)) if size is not None else 0.0


class ProfileError(ValueError):
    """A missing or unreadable profile/predictor (one-line message)."""


def target_dir(target: str, root: str | Path = "latency") -> Path:
    if not target or any(c in target for c in "/\\") or target.startswith("."):
        raise ProfileError(f"bad latency target name {target!r} (a plain name like 'laptop-1t')")
    return Path(root) / target


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def machine_facts(threads: int, batch: int, runtime: str = "torch") -> dict:
    facts = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "batch": batch,
             "torch": torch.__version__, "python": platform.python_version(), "searchkit": __version__,
             "machine": platform.machine(), "runtime": runtime}
    if runtime == "onnxruntime":
        import onnxruntime
        facts["onnxruntime"] = onnxruntime.__version__
    return facts


def runtime_models(nets: list[tuple[nn.Module, tuple]], runtime: str, threads: int, folder: str) -> list[tuple]:
    """The networks as ``runtime`` runs them: torch modules as they are, or exported to ONNX
    under ``folder`` and opened in onnxruntime sessions."""
    if runtime == "onnxruntime":
        from searchkit.costs.ort import ort_models
        return ort_models(nets, folder, threads)
    return nets


def _check_runtime(runtime: str) -> None:
    from searchkit.costs.ort import RUNTIMES
    if runtime not in RUNTIMES:
        raise ProfileError(f"unknown runtime '{runtime}' (choices: {', '.join(RUNTIMES)})")


# --- model populations --------------------------------------------------------------------------
@dataclass
class Sample:
    """One whole model: where it comes from, its kernels (predicted without building it)
    and how to build it (for measuring)."""

    family: str
    name: str
    input_size: tuple[int, int, int]
    kernels: list[Kernel]
    build: Callable[[], nn.Module]


def _profiled_spaces() -> list[tuple[str, type]]:
    """Registered spaces whose networks a latency profile samples, with their shares."""
    from searchkit.core.space import LatencyKernels
    from searchkit.registry import SPACES
    out = []
    for name in SPACES.names():
        cls = SPACES.get(name)
        if issubclass(cls, LatencyKernels) and cls.profile_share > 0:
            out.append((name, cls))
    return out


def population(seed: int, n_random: int, *, bases: bool = True, quick: bool = False) -> list[Sample]:
    """Random networks of the spaces (and, with ``bases``, every space's reference networks),
    spread over sizes; spaces take turns by their ``profile_share`` (a space with share 2 gives
    two of every three networks beside one with share 1), all drawn from one seeded
    ``random.Random``. ``quick``: each space's
    cheapest setting only."""
    rng = random.Random(seed)
    spaces = _profiled_spaces()
    out: list[Sample] = []
    if bases:
        for _, cls in spaces:
            out += cls.profile_bases()
    turns = [cls for _, cls in spaces for _ in range(cls.profile_share)]
    for i in range(n_random):
        out.append(turns[i % len(turns)].profile_sample(rng, quick=quick))
    return out


def calibration_population(seed: int, sweep: str) -> list[Sample]:
    """The whole models a profile measures (never the ones ``validate`` holds out)."""
    return population(seed=10_000 + seed, n_random=CALIBRATION_MODELS[sweep], bases=False, quick=sweep != "default")


def speed_references(target: str, root: str | Path, count: int = 12) -> tuple[list[Sample], list[float]]:
    """Some of the profile's calibration models and what the profile measured for them, to be
    measured again beside held-out models: their ratio is how much faster or slower this
    machine runs now than while it was profiled (none if the profile is missing)."""
    try:
        doc = load_profile(target, root)
        pop = calibration_population(int(doc["seed"]), doc["sweep"])
    except (ProfileError, KeyError):
        return [], []
    models = doc["calibration_models"]
    if [s.name for s in pop] != [m["name"] for m in models] or not pop:
        return [], []
    pick = list(range(0, len(pop), max(1, len(pop) // count)))[:count]
    return [pop[i] for i in pick], [float(models[i]["ms"]) for i in pick]


def measure_beside_references(models: list[tuple], references: list[tuple], reference_ms: list[float], *,
                              rounds: int, on_round=None) -> tuple[list[float], float | None]:
    """``models`` measured (ms) with the profile's speed references in the same interleaved
    rounds, and the references' median now/profiled time ratio: how much slower (>1) or
    faster (<1) the machine runs now than while it was profiled (None without references)."""
    measured = measure_models_ms([*models, *references], rounds=rounds, on_round=on_round)
    now = measured[len(models):]
    speed = float(np.median(np.asarray(now) / np.asarray(reference_ms))) if references else None
    return measured[: len(models)], speed


# --- profile -------------------------------------------------------------------------------------
def profile(target: str, *, threads: int = 1, batch: int = 1, sweep: str = "default", seed: int = 0,
            rounds: int | None = None, root: str | Path = "latency", progress: bool | None = None, log=print,
            runtime: str = "torch") -> Path:
    """Measure the kernel sweep and the calibration models on this CPU under ``runtime``
    (torch eager, or onnxruntime as deployed); write the profile."""
    import tempfile

    from searchkit.progress import bar
    _check_runtime(runtime)
    if sweep not in SWEEPS:
        raise ProfileError(f"unknown sweep '{sweep}' (choices: {', '.join(SWEEPS)})")
    if batch != 1:
        raise ProfileError("batch must be 1 for now (kernel rows are recorded at batch 1)")
    if threads < 1:
        raise ProfileError(f"threads must be >= 1, got {threads}")
    rounds = rounds if rounds is not None else ROUNDS[sweep]
    if rounds < 1:
        raise ProfileError(f"rounds must be >= 1, got {rounds}")
    out_dir = target_dir(target, root)
    started = time.perf_counter()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    onnx_dir = tempfile.TemporaryDirectory(prefix="searchkit-profile-")  # whole models as onnxruntime runs them
    try:
        rng = np.random.default_rng(seed)
        sizes = {**SWEEPS[sweep], **{kind: kt.sweep_sizes.get(sweep, 0) for kind, kt in registered_types().items()
                                     if runtime in kt.runtimes}}
        generic = [(kind, tuple(r)) for kind, n in sizes.items() if n for r in KERNELS[kind].sweep(rng, n)]
        # Similar-sized kernels side by side, so each is timed after work of its own scale
        # (as in a network), not after a random giant or a random trifle; a space's own op
        # in chains of its own, as its programs run it layer after layer (among dense
        # kernels, small 1xN convs read 1.3-3x what they cost in a sparse program).
        own = set(registered_types())
        families: dict[str, list] = {}
        for row in sorted(generic, key=_size_proxy):
            families.setdefault(row[0] if row[0] in own else "", []).append(row)
        chains = [f[i:i + CHAIN] for f in families.values() for i in range(0, len(f), CHAIN)]
        calib = calibration_population(seed, sweep)
        rows: list[tuple] = []
        seconds: list[float] = []
        log(f"profiling {len(generic)} sweep kernels in {len(chains)} chains and {len(calib)} whole models, "
            f"each also replayed kernel by kernel, {rounds} rounds (threads={threads}, runtime={runtime})")
        built = runtime_models([(s.build(), s.input_size) for s in calib], runtime, threads, onnx_dir.name)
        if runtime == "onnxruntime":
            from searchkit.costs.ort import measure_chain_ort, measure_convs_in_context

            def timed(chain):
                return measure_chain_ort(chain, threads=threads)

            def in_context(i, secs):
                # a calibration model's convs as the runtime runs them in it (NCHWc layout
                # kept between convs, adds and activations fused), not one by one; the
                # replayed times are kept beside them (docs/deploy.md compares the two)
                ctx, edges = measure_convs_in_context(built[i][0].path, calib[i].input_size, calib[i].kernels,
                                                      threads=threads)
                replayed[i].append(secs)
                in_model[i].append([c if c is not None else t for c, t in zip(ctx, secs)])
                reorders[i].append(edges)
                return [c + e if c is not None else t for c, e, t in zip(ctx, edges, secs)]
        else:
            def timed(chain):
                return measure_chain([KERNELS[kind].make(fields) for kind, fields in chain])

            def in_context(i, secs):
                return secs
        replayed: list[list[list[float]]] = [[] for _ in calib]
        in_model: list[list[list[float]]] = [[] for _ in calib]
        reorders: list[list[list[float]]] = [[] for _ in calib]
        whole: list[list[float]] = []
        # Every round times every kernel and every whole model again, so each is seen in
        # several of the machine's speed states (a shared VM's CPU changes speed for seconds
        # at a time); a kernel's time is the median of its observations, a model's the
        # median of its rounds.
        with bar(total=rounds * (len(chains) + len(calib) + 1), desc=f"profile {target}", enabled=progress) as pb:
            for _ in range(rounds):
                for chain in chains:
                    rows += chain
                    seconds += timed(chain)
                    pb.update(1)
                for i, s in enumerate(calib):
                    # The model's own kernel sequence, each kernel timed in the context a forward gives it.
                    chain = [(k.kind, k.fields) for k in s.kernels]
                    rows += chain
                    seconds += in_context(i, timed(chain))
                    pb.update(1)
                whole.append(measure_models_ms(built, rounds=3))
                pb.update(1)
        models = [{"name": s.name, "family": s.family, "input_size": list(s.input_size),
                   "kernels": [[k.kind, list(k.fields)] for k in s.kernels],
                   "ms": float(np.median([w[i] for w in whole])), "rounds_ms": [w[i] for w in whole],
                   **({"replayed_s": np.median(replayed[i], axis=0).tolist(),
                       "in_model_s": np.median(in_model[i], axis=0).tolist(),
                       "reorders_s": np.median(reorders[i], axis=0).tolist()} if replayed[i] else {})}
                  for i, s in enumerate(calib)]
    finally:
        torch.set_num_threads(old_threads)
        onnx_dir.cleanup()
    # one row per distinct kernel: the median of its observations
    observed: dict[tuple, list[float]] = {}
    for key, sec in zip(rows, seconds):
        observed.setdefault(key, []).append(sec)
    kernels: dict[str, dict] = {}
    for (kind, fields), secs in observed.items():
        kernels.setdefault(kind, {"rows": [], "seconds": [], "observations": []})
        kernels[kind]["rows"].append(list(fields))
        kernels[kind]["seconds"].append(float(np.median(secs)))
        kernels[kind]["observations"].append(len(secs))
    doc = {"version": PROFILE_VERSION, "target": target, "sweep": sweep, "seed": seed, "rounds": rounds,
           "machine": machine_facts(threads, batch, runtime), "seconds_taken": round(time.perf_counter() - started, 1),
           "kernels": kernels, "calibration_models": models}
    path = out_dir / "profile.json"
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
    return path


def load_profile(target: str, root: str | Path = "latency") -> dict:
    path = target_dir(target, root) / "profile.json"
    if not path.is_file():
        raise ProfileError(f"no latency profile for target '{target}' at {path}; run "
                           f"`searchkit latency profile target={target}` on that CPU first")
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ProfileError(f"cannot read {path}: {exc}") from None
    if doc.get("version") != PROFILE_VERSION:
        raise ProfileError(f"{path} has profile version {doc.get('version')!r}; expected {PROFILE_VERSION}")
    return doc


HELDOUT_FOLDS = 4


def _fit_on(doc: dict, models: list[dict], drop: set[tuple] = frozenset()) -> Predictor:
    """Forests on the profile's kernel rows (less ``drop``), calibrated on ``models``."""
    rows: dict[str, list] = {}
    secs: dict[str, list] = {}
    for kind, v in doc["kernels"].items():
        kept = [(r, t) for r, t in zip(v["rows"], v["seconds"]) if (kind, tuple(r)) not in drop]
        rows[kind], secs[kind] = [r for r, _ in kept], [t for _, t in kept]
    pred = Predictor.fit(rows, secs, {"target": doc["target"]})
    if doc["machine"].get("runtime") == "onnxruntime":
        # onnxruntime's profiler adds about 2 us to every node it times (a trivial node reads
        # that); the calibration takes it out as a negative per-kernel overhead
        pred.min_overhead = -np.inf
        pred.split = True
    pred.calibrate([([Kernel(kind, tuple(f)) for kind, f in m["kernels"]], m["ms"]) for m in models])
    return pred


def heldout_errors(doc: dict, folds: int = HELDOUT_FOLDS) -> list[float]:
    """Out-of-fold relative errors (predicted / measured - 1) of the calibration models: each
    fold's models are predicted by forests fitted without the kernels only they contain and
    a calibration fitted without them."""
    models = doc["calibration_models"]
    if len(models) < 2 * folds:
        return []
    keys = [{(kind, tuple(f)) for kind, f in m["kernels"]} for m in models]
    errors = []
    for k in range(folds):
        held = [i for i in range(len(models)) if i % folds == k]
        rest = [i for i in range(len(models)) if i % folds != k]
        seen = set().union(*(keys[i] for i in rest))
        drop = set().union(*(keys[i] for i in held)) - seen
        pred = _fit_on(doc, [models[i] for i in rest], drop)
        for i in held:
            kernels = [Kernel(kind, tuple(f)) for kind, f in models[i]["kernels"]]
            errors.append(pred.predict_ms(kernels) / models[i]["ms"] - 1)
    return errors


def replayed_profile(doc: dict) -> dict | None:
    """The profile with its calibration models' conv rows as replayed kernel by kernel
    instead of timed in the network (an onnxruntime profile keeps both), or ``None``: what
    ``fit`` compares the in-network rows against."""
    models = doc["calibration_models"]
    if "conv" not in doc["kernels"] or not models or not all("replayed_s" in m for m in models):
        return None
    replayed: dict[tuple, list[float]] = {}
    for m in models:
        for (kind, f), t in zip(m["kernels"], m["replayed_s"]):
            if kind == "conv":
                replayed.setdefault(tuple(f), []).append(t)
    conv = doc["kernels"]["conv"]
    seconds = [float(np.median(replayed[tuple(r)])) if tuple(r) in replayed else t
               for r, t in zip(conv["rows"], conv["seconds"])]
    return {**doc, "kernels": {**doc["kernels"], "conv": {**conv, "seconds": seconds}}}


def _error_summary(errors: list[float]) -> dict:
    e = np.asarray(errors)
    return {"rmspe": round(float(np.sqrt(np.mean(e ** 2))), 4), "within_10": round(float(np.mean(np.abs(e) <= 0.10)), 4)}


def fit(target: str, root: str | Path = "latency") -> Path:
    """Fit ``latency/NAME/predictor.json`` from ``latency/NAME/profile.json``, with the
    held-out error of its calibration models (the default safety margin of latency bounds)."""
    doc = load_profile(target, root)
    pred = _fit_on(doc, doc["calibration_models"])
    errors = heldout_errors(doc)
    pred.meta = {"target": target, **doc["machine"], "profile_seconds": doc["seconds_taken"],
                 "profile_rounds": doc.get("rounds", 1),
                 "kernels_profiled": {k: len(v["rows"]) for k, v in doc["kernels"].items()},
                 "calibration": [round(c, 9) for c in pred.calibration],
                 "groups": {k: [round(v, 9) for v in ab] for k, ab in pred.groups.items()}}
    pred.meta["heldout"] = {"models": len(errors), "folds": HELDOUT_FOLDS,
                            "needed": 2 * HELDOUT_FOLDS, "calibration_models": len(doc["calibration_models"])}
    if errors:
        e = np.asarray(errors)
        pred.meta["heldout"].update(
            **_error_summary(errors),
            # measured / predicted - 1 = -e / (1 + e): measured <= predicted * (1 + margin)
            # holds for 90 % of the held-out models
            margin_p90=round(max(0.0, float(np.quantile(-e / (1 + e), 0.9))), 4))
        replayed = replayed_profile(doc)
        if replayed is not None:
            pred.meta["heldout"]["convs_replayed"] = _error_summary(heldout_errors(replayed))
    # A quick sweep, or too few calibration models to measure the predictor's own error: fine
    # to see the machinery run, not to bound a real search.
    pred.meta["quality"] = "smoke test" if doc.get("sweep") == "quick" or not errors else "full"
    return pred.save(target_dir(target, root) / "predictor.json")


def heldout_line(meta: dict) -> str:
    """The predictor's held-out error in one line (what ``fit`` prints)."""
    h = meta.get("heldout") or {}
    if h.get("rmspe") is None:
        return (f"no held-out error: {h.get('calibration_models', 0)} calibration models, {h.get('needed', 8)} "
                "needed to predict each fold from the others - a smoke test: latency.margin defaults to 0, "
                "so measured latency may exceed a bound")
    return (f"held-out error of {h['models']} calibration models ({h['folds']} folds): RMSPE {h['rmspe']:.1%}, "
            f"within 10% {h['within_10']:.0%}; default latency.margin (90% of under-predictions) {h['margin_p90']:.3f}"
            + (f" (with the convs replayed one by one instead of timed in the networks: RMSPE "
               f"{h['convs_replayed']['rmspe']:.1%}, within 10% {h['convs_replayed']['within_10']:.0%})"
               if h.get("convs_replayed") else "")
            + ("; a quick sweep: a smoke test" if meta.get("quality") == "smoke test" else ""))


def load_predictor(target: str, root: str | Path = "latency") -> Predictor:
    path = target_dir(target, root) / "predictor.json"
    if not path.is_file():
        hint = "fit" if (path.parent / "profile.json").is_file() else "profile"
        raise ProfileError(f"no latency predictor for target '{target}' at {path}; run "
                           f"`searchkit latency {hint} target={target}`")
    try:
        return Predictor.load(path)
    except ValueError as exc:
        raise ProfileError(str(exc)) from None


# --- validate ------------------------------------------------------------------------------------
def validate(target: str, *, n_random: int = 60, seed: int = 1, rounds: int = 12, root: str | Path = "latency",
             bases: bool = True,
             report_dir: str | Path = "reports/latency", progress: bool | None = None, log=print) -> tuple[Path, dict]:
    """Measure held-out whole models against the predictor; write ``reports/latency/NAME.md``."""
    from searchkit.progress import bar
    import tempfile
    pred = load_predictor(target, root)
    threads = int(pred.meta.get("threads", 1))
    runtime = pred.meta.get("runtime", "torch")
    here = machine_facts(threads, 1, runtime)
    if pred.meta.get("cpu") and pred.meta["cpu"] != here["cpu"]:
        log(f"warning: predictor '{target}' was profiled on '{pred.meta['cpu']}', this CPU is '{here['cpu']}'")
    pop = population(seed=seed, n_random=n_random, bases=bases, quick=not bases)
    refs, ref_ms = speed_references(target, root)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # Interleaved rounds, as the profile's calibration models were measured; the speed
        # references share the rounds.
        with tempfile.TemporaryDirectory(prefix="searchkit-validate-") as onnx_dir:
            built = runtime_models([(s.build(), s.input_size) for s in [*pop, *refs]], runtime, threads, onnx_dir)
            with bar(total=rounds, desc=f"validate {target}", enabled=progress) as pb:
                # A dedicated target CPU keeps speed near 1; a shared VM drifts by several per cent in an hour.
                measured, speed = measure_beside_references(built[: len(pop)], built[len(pop):], ref_ms,
                                                            rounds=rounds, on_round=lambda _: pb.update(1))
    finally:
        torch.set_num_threads(old)
    results = []
    for s, ms in zip(pop, measured):
        predicted = pred.predict_ms(s.kernels)
        results.append({"family": s.family, "name": s.name, "measured_ms": ms,
                        "predicted_ms": predicted, "error": predicted / ms - 1})
        if speed is not None:
            results[-1]["error_at_current_speed"] = predicted * speed / ms - 1

    def summarise(rows: list[dict], scale: float = 1.0) -> dict:
        return relative_errors([r["predicted_ms"] * scale for r in rows], [r["measured_ms"] for r in rows])

    families = sorted({r["family"] for r in results})
    summary = {"target": target, "threads": threads, "bases": bases, "overall": summarise(results),
               "by_family": {f: summarise([r for r in results if r["family"] == f]) for f in families},
               "speed": None if speed is None else {
                   "ratio": speed, "references": [s.name for s in refs],
                   "overall": summarise(results, speed),
                   "by_family": {f: summarise([r for r in results if r["family"] == f], speed) for f in families}},
               "rounds": rounds, "models": results, "predictor": pred.meta, "validated_on": here, "seed": seed,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    path = write_validation(summary, report_dir)
    return path, summary


def write_validation(summary: dict, report_dir: str | Path) -> Path:
    o = summary["overall"]
    ok = o["within_10"] >= 0.95 and o["rmspe"] <= 0.05
    meta = summary["predictor"]
    lines = [f"# Latency predictor `{summary['target']}`: validation on held-out models", "",
             f"Target: {meta.get('cpu')}, {summary['threads']} thread(s), batch 1, "
             + (f"ONNX Runtime {meta.get('onnxruntime')} (all graph optimisations, networks exported as "
                "`export format=onnx` writes them). " if meta.get("runtime") == "onnxruntime" else
                f"torch {meta.get('torch')} eager. ") +
             f"Held-out models: {o['n']} ({'every base network and ' if summary.get('bases', True) else ''}random candidates of the "
             f"{' and '.join(n for n, _ in _profiled_spaces())} spaces, seed {summary['seed']}; the profile's calibration "
             "models use another seed).",
             "", f"**As measured now: RMSPE {o['rmspe']:.1%}, within ±5 %: {o['within_5']:.0%}, within ±10 %: "
             f"{o['within_10']:.0%}** (goal: ≥ 95 % within ±10 % and RMSPE ≤ 5 %: "
             f"{'met' if ok else 'NOT met'}). Mean error {o['mean_error']:+.1%}, worst {o['max_abs_error']:.1%}."]
    sp = summary.get("speed")
    if sp:
        c = sp["overall"]
        ok_c = c["within_10"] >= 0.95 and c["rmspe"] <= 0.05
        lines += ["", f"**At the profile's machine speed: RMSPE {c['rmspe']:.1%}, within ±5 %: {c['within_5']:.0%}, "
                  f"within ±10 %: {c['within_10']:.0%}** (goal {'met' if ok_c else 'NOT met'}; mean error "
                  f"{c['mean_error']:+.1%}, worst {c['max_abs_error']:.1%}). {len(sp['references'])} of the "
                  f"profile's calibration models, measured again in the same rounds, run at "
                  f"{sp['ratio']:.3f}x the time the profile measured for them: the machine itself is that much "
                  "slower (>1) or faster (<1) now. A dedicated CPU stays near 1; a shared VM drifts by "
                  "several per cent within an hour, and this line takes that drift out. Searches use the "
                  "prediction as fitted."]
    lines += ["", "| family | models | RMSPE | within ±5 % | within ±10 % | mean error |"
              + (" RMSPE at profile speed | within ±10 % at profile speed |" if sp else ""),
              "|---|---|---|---|---|---|" + ("---|---|" if sp else "")]
    for fam, r in summary["by_family"].items():
        extra = (f" {sp['by_family'][fam]['rmspe']:.1%} | {sp['by_family'][fam]['within_10']:.0%} |" if sp else "")
        lines.append(f"| {fam} | {r['n']} | {r['rmspe']:.1%} | {r['within_5']:.0%} | {r['within_10']:.0%} | "
                     f"{r['mean_error']:+.1%} |" + extra)
    lines += ["", "| model | measured ms | predicted ms | error |", "|---|---|---|---|"]
    for r in sorted(summary["models"], key=lambda r: r["measured_ms"]):
        lines.append(f"| {r['name']} | {r['measured_ms']:.3f} | {r['predicted_ms']:.3f} | {r['error']:+.1%} |")
    lines += ["", f"Predictor: calibration (a, b, c) {meta.get('calibration', '')}, own (a, b) of "
              f"{meta.get('groups', {})}, held-out error at fit {meta.get('heldout', {})}, profiled in "
              f"{meta.get('profile_seconds')} s, kernels per type {meta.get('kernels_profiled')}.",
              f"Validated {summary['date']} on {summary['validated_on']['cpu']} "
              f"({summary['validated_on']['cores']} cores), {summary.get('rounds')} interleaved rounds.", "",
              f"Reproduce: `searchkit latency profile target={summary['target']} threads={summary['threads']}"
              + (" runtime=onnxruntime" if meta.get("runtime") == "onnxruntime" else "") + "` "
              f"then `searchkit latency fit target={summary['target']}` and "
              f"`searchkit latency validate target={summary['target']}`.", ""]
    path = Path(report_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{summary['target']}.md").write_text("\n".join(lines))
    (path / f"{summary['target']}.json").write_text(json.dumps(summary, indent=1, default=str))
    return path / f"{summary['target']}.md"
