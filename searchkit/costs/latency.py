"""Latency predictor for a target CPU: per-kernel regression forests stored as plain JSON.

A model's predicted latency is ``sum over kernels (a_g * prediction + b_g) + c``: each
kernel (:mod:`searchkit.costs.trace`) is predicted by its type's forest; ``a_g`` (context
scale) and ``b_g`` (framework overhead per call) belong to the kernel's group - convs,
element-wise ops, the rest - and ``c`` is paid once per forward. The calibration is fitted
on whole models measured during profiling (never the ones ``validate`` holds out).

Forests are fitted by scikit-learn (``ExtraTreesRegressor`` on log2 microseconds) and then
stored as their arrays (feature, threshold, children, value) in JSON; prediction walks the
arrays with NumPy. No pickle: a predictor file loads with any later library version.

Example:
    >>> import numpy as np
    >>> rows = {"eltwise": [(1, 2 ** k, 0) for k in range(6, 18)] * 2}
    >>> times = {"eltwise": [2e-6 * (1 + 2 ** k / 4e4) for k in range(6, 18)] * 2}
    >>> pred = Predictor.fit(rows, times, meta={"target": "doc"})
    >>> from searchkit.costs.trace import ELTWISE, Kernel
    >>> 1e-3 < pred.predict_ms([Kernel("eltwise", (1, 4096, 0))]) < 1e-2
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from searchkit.core.atomic import replacing
from searchkit.costs.kernels import KERNELS
from searchkit.costs.trace import ELTWISE, Kernel

PREDICTOR_VERSION = 1


# --- measuring ------------------------------------------------------------------------------
def _kept(samples: Sequence[float]) -> list[float]:
    """The samples at most 3 MADs above the median (preemptions and page faults dropped);
    low outliers are kept: a kernel cannot run faster than it can."""
    med = statistics.median(samples)
    mad = statistics.median(abs(s - med) for s in samples) or med * 0.01
    return [s for s in samples if s <= med + 3 * 1.4826 * mad]


def robust_median(samples: Sequence[float]) -> float:
    """Median of the samples after dropping high outliers."""
    return statistics.median(_kept(samples))


def robust_mean(samples: Sequence[float]) -> float:
    """Mean of the samples after dropping high outliers: for a clock that counts whole
    microseconds (onnxruntime's profiler), where a median of a 2.4 us kernel reads 2."""
    return statistics.fmean(_kept(samples))


def measure_chain(fns: Sequence[Callable[[], object]], *, passes: int = 9, warmup: int = 2) -> list[float]:
    """Per-kernel robust median seconds, each kernel timed inside a chain of the others.

    Timing a kernel by repeating it alone keeps its weights and code hot and reads about
    half of what it costs inside a network (measured on ResNet-18/56 and an EfficientNet). Run as
    a chain, each kernel starts with caches as the kernels before it left them.
    """
    times = np.empty((passes, len(fns)))
    clock = time.perf_counter_ns
    with torch.inference_mode():
        for _ in range(warmup):
            for f in fns:
                f()
        for p in range(passes):
            for i, f in enumerate(fns):
                t0 = clock()
                f()
                times[p, i] = clock() - t0
    return [robust_median(times[:, i].tolist()) * 1e-9 for i in range(len(fns))]


def measure_models_ms(models: Sequence[tuple[torch.nn.Module, Sequence[int]]], *, rounds: int = 8,
                      window_s: float = 0.1, batch: int = 1, on_round: Callable[[int], None] | None = None
                      ) -> list[float]:
    """Measured batch-``batch`` latency of each ``(model, input_size)`` in milliseconds,
    interleaved: every round times each model for ``window_s`` (at least 3 calls, robust
    median), and a model's latency is the median of its rounds.

    A shared VM's CPU changes speed for seconds at a time (here: states about 30 % apart,
    each lasting 1-5 s), so one model timed in one window reads whichever state it met
    (10 % spread between repeats). Round-robin windows give every model the same mix of
    states, and the median over rounds settles on the machine's typical speed.
    """
    xs = []
    for model, size in models:
        if isinstance(model, torch.nn.Module):  # (an onnxruntime session is inference-only)
            try:
                model.eval()
            except NotImplementedError:  # a torch.export program: exported in inference mode already
                pass
        xs.append(torch.randn(batch, *size))
    per_round = np.empty((rounds, len(xs)))
    with torch.inference_mode():
        for (model, _), x in zip(models, xs):  # warm-up: allocator, weight pages, code
            for _ in range(2):
                model(x)
        for r in range(rounds):
            for i, ((model, _), x) in enumerate(zip(models, xs)):
                samples = []
                start = time.perf_counter()
                while len(samples) < 3 or time.perf_counter() - start < window_s:
                    t0 = time.perf_counter()
                    model(x)
                    samples.append(time.perf_counter() - t0)
                per_round[r, i] = robust_median(samples)
            if on_round is not None:
                on_round(r)
    return [float(np.median(per_round[:, i])) * 1e3 for i in range(len(xs))]


def measure_model_ms(model: torch.nn.Module, input_size: Sequence[int], *, batch: int = 1,
                     rounds: int = 20, window_s: float = 0.15) -> float:
    """Measured batch-``batch`` inference latency of ``model`` in milliseconds (eval mode):
    the median of ``rounds`` windows (about 3 s), see :func:`measure_models_ms`."""
    return measure_models_ms([(model, input_size)], rounds=rounds, window_s=window_s, batch=batch)[0]


# --- forests as arrays -------------------------------------------------------------------------
class Forest:
    """A regression forest as flat arrays; ``predict`` averages the trees' leaves."""

    def __init__(self, trees: list[dict]):
        self.trees = [{k: np.asarray(v, dtype=np.float64 if k in ("threshold", "value") else np.int64)
                       for k, v in t.items()} for t in trees]
        self.depth = max(int(t["depth"][0]) for t in self.trees) if trees else 0

    @classmethod
    def from_sklearn(cls, est) -> "Forest":
        trees = []
        for e in est.estimators_:
            t = e.tree_
            trees.append({"feature": t.feature.tolist(), "threshold": t.threshold.tolist(),
                          "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                          "value": t.value[:, 0, 0].tolist(), "depth": [int(t.max_depth)]})
        return cls(trees)

    def _stack(self) -> None:
        """All trees in one node array (children offset per tree), walked together."""
        offs = np.cumsum([0] + [len(t["feature"]) for t in self.trees])
        self._feature = np.concatenate([t["feature"] for t in self.trees])
        self._threshold = np.concatenate([t["threshold"] for t in self.trees])
        self._value = np.concatenate([t["value"] for t in self.trees])
        self._left = np.concatenate([np.where(t["left"] >= 0, t["left"] + o, -1) for t, o in zip(self.trees, offs)])
        self._right = np.concatenate([np.where(t["right"] >= 0, t["right"] + o, -1) for t, o in zip(self.trees, offs)])
        self._roots = offs[:-1]
        self._leaf = self._feature < 0
        self._feature_safe = np.where(self._leaf, 0, self._feature)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if not self.trees:
            return np.zeros(len(x))
        if not hasattr(self, "_roots"):
            self._stack()
        n = len(x)
        node = np.repeat(self._roots[:, None], n, axis=1)  # (trees, rows)
        rows = np.broadcast_to(np.arange(n), node.shape)
        for _ in range(self.depth):
            go_left = x[rows, self._feature_safe[node]] <= self._threshold[node]
            nxt = np.where(go_left, self._left[node], self._right[node])
            node = np.where(self._leaf[node], node, nxt)
        return self._value[node].mean(axis=0)

    def to_json(self) -> list[dict]:
        return [{k: v.tolist() for k, v in t.items()} for t in self.trees]


# --- the predictor -------------------------------------------------------------------------------
class Predictor:
    """Per-kernel forests plus a whole-model calibration, for one target CPU and thread count."""

    def __init__(self, forests: dict[str, Forest], calibration: Sequence[float], meta: dict,
                 groups: dict[str, Sequence[float]] | None = None, split: bool = False):
        self.split = bool(split)
        self.forests = forests
        self.calibration = tuple(float(c) for c in calibration)  # a, b (s per kernel), c (s)
        # (a, b) of the kernel types calibrated on their own; the others take calibration's
        self.groups = {k: (float(v[0]), float(v[1])) for k, v in (groups or {}).items()}
        self.meta = dict(meta)
        self._memo: dict[tuple, float] = {}

    # fitting
    @classmethod
    def fit(cls, rows: dict[str, list], seconds: dict[str, list], meta: dict, *, trees: int = 40,
            seed: int = 0) -> "Predictor":
        """Fit one forest per kernel type on log2 microseconds (calibration left at 1, 0, 0)."""
        from sklearn.ensemble import ExtraTreesRegressor
        forests = {}
        for kind, rs in rows.items():
            if not rs:
                continue
            x = KERNELS[kind].features(np.asarray(rs, dtype=np.int64).reshape(len(rs), -1))
            y = np.log2(np.maximum(np.asarray(seconds[kind]) * 1e6, 1e-3))
            est = ExtraTreesRegressor(n_estimators=trees, min_samples_leaf=2, random_state=seed,
                                      max_features=1.0, n_jobs=1)
            est.fit(x, y)
            forests[kind] = Forest.from_sklearn(est)
        return cls(forests, (1.0, 0.0, 0.0), meta)

    # Kernel types with their own (a, b): the two a network has dozens of; pooling, linear
    # and views (a handful per model) share the rest's. Chosen on the calibration models'
    # 4-fold error (this-cpu-1t: 7.2 % against 7.9 % for one (a, b) for all kernels).
    GROUPS = ("conv", "eltwise")
    # A runtime that fuses (onnxruntime: residual add into the conv, NCHWc depthwise convs)
    # makes kernels of one type cost differently in context; a split predictor gives these
    # their own (a, b) (onnxruntime profile here: held-out RMSPE 8.6 % -> 7.5 %).
    SPLIT_GROUPS = ("conv", "conv/1x1", "conv/depthwise", "eltwise", "eltwise/add")
    MIN_MODELS_PER_GROUP_FIT = 40
    # The lowest per-kernel overhead b (seconds). Eager torch adds dispatch time to each
    # kernel (b >= 0); a runtime's profiler that counts a fixed cost per node can make b
    # negative (see searchkit.costs.ort).
    min_overhead = 0.0

    def calibrate(self, models: list[tuple[list[Kernel], float]]) -> None:
        """Fit the calibration to whole models ``(kernels, measured ms)``, minimising relative
        error (scipy's bounded least squares: scales in [0.05, 4], overheads >= 0). With fewer
        than 12 models (a quick profile) it is one scale; with fewer than 40, one ``(a, b, c)``
        for all kernels."""
        if len(models) < 3:
            return
        self.calibration, self.groups = (1.0, 0.0, 0.0), {}
        self._memo.clear()
        y = np.array([ms * 1e-3 for _, ms in models])
        names = [*self.group_names(), None]  # None: every other kernel type
        sums = np.zeros((len(models), len(names)))
        counts = np.zeros((len(models), len(names)))
        self._fill([k for kernels, _ in models for k in kernels])  # one batch per kernel type
        for i, (kernels, _) in enumerate(models):
            for k in kernels:
                g = names.index(self.group(k.kind, k.fields))
                sums[i, g] += self._memo[(k.kind, k.fields)]
                counts[i, g] += 1
        s, n = sums.sum(axis=1), counts.sum(axis=1)

        def solve(x: np.ndarray, low: list[float], high: list[float]) -> np.ndarray:
            # relative error: each model's row divided by its measured time; bounds hold
            # scales positive and overheads non-negative (collinear terms cannot swing)
            from scipy.optimize import lsq_linear
            return lsq_linear(x / y[:, None], np.ones_like(y), bounds=(low, high)).x

        if len(models) < 12:  # too few for three parameters: one scale
            self.calibration = (float(np.median(y / s)), 0.0, 0.0)
            return
        lo = self.min_overhead
        a, b, c = solve(np.stack([s, n, np.ones_like(s)], axis=1), [0.25, lo, -np.inf], [4.0, np.inf, np.inf])
        self.calibration = (float(a), float(b), float(c))
        if len(models) >= self.MIN_MODELS_PER_GROUP_FIT:
            # A group's scale may be small (element-wise kernels here: their time is almost
            # all per-call overhead, b) but stays positive.
            k = len(names)
            coef = solve(np.concatenate([sums, counts, np.ones((len(models), 1))], axis=1),
                         [0.05] * k + [lo] * k + [-np.inf], [4.0] * k + [np.inf] * k + [np.inf])
            self.calibration = (float(coef[k - 1]), float(coef[2 * k - 1]), float(coef[-1]))
            self.groups = {g: (float(coef[i]), float(coef[k + i])) for i, g in enumerate(names[:-1])}
        self._memo.clear()

    def group_names(self) -> tuple[str, ...]:
        return self.SPLIT_GROUPS if self.split else self.GROUPS

    def group(self, kind: str, fields: Sequence[int]) -> str | None:
        """The calibration group of a kernel (``None``: the shared one)."""
        if kind not in KERNELS.keys():  # a registered type: none (see coefficients)
            return None
        if not self.split:
            return kind if kind in self.GROUPS else None
        if kind == "conv":
            return "conv/depthwise" if fields[4] > 1 else "conv/1x1" if fields[2] == 1 else "conv"
        if kind == "eltwise":
            return "eltwise/add" if fields[0] == ELTWISE["add"] else "eltwise"
        return None

    def coefficients(self, kind: str, fields: Sequence[int] | None = None) -> tuple[float, float]:
        """``(a, b)`` of a kernel: context scale and seconds of overhead per kernel (a split
        predictor needs the kernel's ``fields``)."""
        if fields is None and self.split and kind in ("conv", "eltwise"):
            raise ValueError("a split predictor's coefficients depend on the kernel's fields")
        if kind not in KERNELS.keys():
            # A space's registered type (searchkit.registry.KERNEL_TYPES): no calibration model
            # contains it, so it is taken as the sweep's chains timed it (18 ResNet-56 programs
            # with a block-sparse op: +35 % mean error so; the conv group's (a, b) gave +69 %).
            return 1.0, 0.0
        g = self.group(kind, fields) if fields is not None else (kind if kind in self.GROUPS else None)
        return self.groups.get(g, self.calibration[:2])

    def row_coefficients(self, kind: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row ``(a, b)`` of many kernels of one type."""
        rows = np.asarray(rows).reshape(len(rows), -1)
        if not self.split or kind not in ("conv", "eltwise"):
            a, b = self.coefficients(kind) if not self.split or kind not in KERNELS.keys() else self.calibration[:2]
            return np.full(len(rows), a), np.full(len(rows), b)
        ab = np.array([self.coefficients(kind, tuple(r)) for r in rows]).reshape(len(rows), 2)
        return ab[:, 0], ab[:, 1]

    # predicting
    def kernel_seconds(self, kind: str, rows: np.ndarray) -> np.ndarray:
        """Predicted seconds of each row of one kernel type (before calibration)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1)
        if kind not in self.forests:
            raise KeyError(f"predictor {self.meta.get('target')!r} has no '{kind}' kernels; "
                           "profile again with this version of searchkit")
        if not len(rows):
            return np.zeros(0)
        return np.exp2(self.forests[kind].predict(KERNELS[kind].features(rows))) * 1e-6

    def kernel_sum_s(self, kernels: Iterable[Kernel]) -> float:
        """Uncalibrated sum of the kernels' predictions (memoised per distinct kernel)."""
        total = 0.0
        kernels = list(kernels)
        self._fill(kernels)
        for k in kernels:
            total += self._memo[(k.kind, k.fields)]
        return total

    def _fill(self, kernels: list[Kernel]) -> None:
        missing: dict[str, list[tuple]] = {}
        for k in kernels:
            key = (k.kind, k.fields)
            if key not in self._memo:
                missing.setdefault(k.kind, []).append(k.fields)
        for kind, rs in missing.items():
            uniq = list(dict.fromkeys(rs))
            for f, v in zip(uniq, self.kernel_seconds(kind, np.array(uniq).reshape(len(uniq), -1))):
                self._memo[(kind, f)] = float(v)

    def predict_ms(self, kernels: Sequence[Kernel]) -> float:
        """Predicted latency of a model made of ``kernels``, in milliseconds."""
        kernels = list(kernels)
        self._fill(kernels)
        total = self.calibration[2]
        for k in kernels:
            a, b = self.coefficients(k.kind, k.fields)
            total += a * self._memo[(k.kind, k.fields)] + b
        return total * 1e3

    def predict_rows_ms(self, rows_by_kind: dict[str, np.ndarray], index_by_kind: dict[str, np.ndarray],
                        n_models: int) -> np.ndarray:
        """Vectorised prediction for many models at once.

        ``rows_by_kind[kind]`` holds distinct rows; ``index_by_kind[kind]`` is an
        ``(n_models, n_kernels_of_kind)`` matrix of row indices (-1: none).
        """
        total = np.full(n_models, self.calibration[2])
        for kind, rows in rows_by_kind.items():
            a, b = self.row_coefficients(kind, rows)
            secs = np.append(a * self.kernel_seconds(kind, rows), 0.0)
            idx = index_by_kind[kind]
            total += secs[idx].sum(axis=1) + np.where(idx >= 0, np.append(b, 0.0)[idx], 0.0).sum(axis=1)
        return total * 1e3

    # files
    def to_json(self) -> dict:
        return {"version": PREDICTOR_VERSION, "meta": self.meta, "calibration": list(self.calibration),
                "groups": {k: list(v) for k, v in self.groups.items()}, "split": self.split,
                "forests": {k: f.to_json() for k, f in self.forests.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "Predictor":
        if d.get("version") != PREDICTOR_VERSION:
            raise ValueError(f"unsupported predictor version {d.get('version')!r} "
                             f"(this searchkit reads version {PREDICTOR_VERSION})")
        return cls({k: Forest(v) for k, v in d["forests"].items()}, d["calibration"], d["meta"], d.get("groups"),
                   split=d.get("split", False))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with replacing(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), separators=(",", ":")))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Predictor":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read latency predictor {path}: {exc}") from None
        pred = cls.from_json(d)
        pred.meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        return pred


def relative_errors(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """RMSPE and the shares of models within +-5 % and +-10 % (as fractions)."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    err = (p - m) / m
    return {"n": int(len(err)), "rmspe": float(math.sqrt(np.mean(err ** 2))) if len(err) else float("nan"),
            "within_5": float(np.mean(np.abs(err) <= 0.05)) if len(err) else float("nan"),
            "within_10": float(np.mean(np.abs(err) <= 0.10)) if len(err) else float("nan"),
            "mean_error": float(np.mean(err)) if len(err) else float("nan"),
            "max_abs_error": float(np.max(np.abs(err))) if len(err) else float("nan")}
