"""The ``latency`` cost model: milliseconds predicted on a profiled target CPU.

A genome's kernels come from the space (``LatencyKernels.kernels``, no model is built) and
their milliseconds from the target's fitted predictor (``latency.target``); a space's
``latency_table`` gives a vectorised path (per-kernel tables, or a whole grid). A bound ``constraint.latency=B`` (ms, never a fraction) is searched as
``predicted <= B / (1 + latency.margin)``: by default the margin is the predictor's
held-out 90th-percentile under-prediction, so the measured latency meets ``B``.

Example:
    >>> # with a predictor fitted for target "laptop" (`searchkit latency fit target=laptop`):
    >>> # cfg = load_config(["latency.target=laptop"]); cost = LatencyCost(space, cfg)
    >>> # cost.cost(genome), cost.many([g1, g2])
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from searchkit.core.costs import CostModel
from searchkit.core.errors import ConfigError
from searchkit.core.genome import Genome
from searchkit.core.space import LatencyKernels


class LatencyCost(CostModel):
    """Predicted batch-1 milliseconds on ``latency.target`` (memoised per genome)."""

    name = "latency"
    unit = "ms"
    title = "predicted latency (ms)"
    relative = False
    requires = (LatencyKernels,)

    def __init__(self, space, settings=None, predictor=None):
        super().__init__(space, settings)
        if predictor is None:
            predictor = self._load(settings)
        self.predictor = predictor
        self._check_kernels()
        self._table = space.latency_table(predictor)
        self._memo: dict[str, float] = {}

    @classmethod
    def for_contract(cls, space) -> "LatencyCost":
        """With a predictor fitted to a synthetic profile (time grows with each kernel's
        size): the contract checks the plumbing, not a CPU."""
        import numpy as np

        from searchkit.costs.kernels import KERNELS, registered_types
        from searchkit.costs.latency import Predictor
        from searchkit.costs.profiling import _size_proxy
        rng = np.random.default_rng(0)
        rows = {kind: [tuple(r) for r in k.sweep(rng, 40)] for kind, k in {**KERNELS, **registered_types()}.items()}
        secs = {kind: [1e-6 * (1 + 2 ** (0.5 * _size_proxy((kind, r)))) for r in rs] for kind, rs in rows.items()}
        predictor = Predictor.fit(rows, secs, {"target": "contract", "sha256": "synthetic"}, trees=4)
        return cls(space, None, predictor=predictor)

    def _check_kernels(self) -> None:
        """One line if the target has no timings of a kernel type the space's programs run."""
        missing = [what for kind, what in self.space.own_kernels().items() if kind not in self.predictor.forests]
        if not missing:
            return
        target, runtime = self.predictor.meta.get("target"), self.predictor.meta.get("runtime", "torch")
        program = self.space.shipped_program or "model.pt2"
        why = (f"it runs in the torch program ({program}) only: use a target profiled with runtime=torch"
               if runtime != "torch" else f"profile it again with this version (`searchkit latency profile "
               f"target={target}`)")
        raise ConfigError(f"latency target '{target}' has no timings of {missing[0]}: {why}")

    @staticmethod
    def _load(settings):
        from searchkit.costs.profiling import ProfileError, load_predictor
        latency = getattr(settings, "latency", None)
        if latency is None or latency.target is None:
            raise ConfigError("latency needs a profiled target: add latency.target=NAME (see "
                              "`searchkit latency profile target=NAME` and `searchkit latency fit target=NAME`)")
        try:
            return load_predictor(latency.target, latency.dir)
        except ProfileError as exc:
            raise ConfigError(str(exc)) from None

    def margin(self) -> float:
        """``latency.margin``, or the predictor's held-out 90th-percentile under-prediction (0
        for a predictor fitted without enough calibration models)."""
        given = getattr(getattr(self.settings, "latency", None), "margin", None)
        if given is not None:
            return float(given)
        return float(self.predictor.meta.get("heldout", {}).get("margin_p90", 0.0))

    def cost(self, genome: Genome) -> float:
        key = json.dumps(genome, sort_keys=True)
        if key not in self._memo:
            got = self._table([genome]) if self._table is not None else None
            self._memo[key] = float(got[0]) if got is not None else \
                float(self.predictor.predict_ms(self.space.kernels(genome)))
        return self._memo[key]

    def many(self, genomes: Sequence[Genome]) -> np.ndarray:
        if not genomes:
            return np.zeros(0)
        if self._table is not None:
            got = self._table(list(genomes))
            if got is not None:
                return np.asarray(got, dtype=np.float64)
        return np.array([self.cost(g) for g in genomes])

    def identity(self) -> dict:
        meta = self.predictor.meta
        return {"latency_target": meta.get("target"), "latency_identity": meta.get("sha256")}

    @property
    def runtime(self) -> str:
        """The runtime the target was profiled on: torch (eager) or onnxruntime."""
        return self.predictor.meta.get("runtime", "torch")

    def export_formats(self) -> tuple[str, ...]:
        return ("onnx",) if self.runtime == "onnxruntime" else ()

    def export_record(self, genome, program, input_size, limit, bound) -> dict:
        """Predicted latency on the target and, for comparison, the written program of the
        target's runtime (``model.pt2`` for torch, ``model.onnx`` in onnxruntime) measured
        here (batch 1, the target's thread count): the bound holds where both agree.
        ``bound_met`` says whether the measurement meets the bound (only when measured on
        the target's CPU model)."""
        import torch

        from searchkit.costs.latency import measure_model_ms
        from searchkit.costs.profiling import cpu_model
        meta = self.predictor.meta
        threads = int(meta.get("threads", 1))
        if self.runtime == "onnxruntime":
            from searchkit.costs.ort import OrtModel
            shipped, what = OrtModel(program("onnxruntime"), threads), "the written model.onnx in onnxruntime"
        else:
            shipped, what = program(), f"the written program ({self.space.shipped_program or 'model.pt2'})"
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            measured = measure_model_ms(shipped, input_size)
        finally:
            torch.set_num_threads(old)
        here = cpu_model()
        on_target = here == meta.get("cpu")
        return {"target": meta.get("target"), "target_cpu": meta.get("cpu"), "threads": threads,
                "runtime": self.runtime,
                "predicted_ms": self.cost(genome), "measured_ms": measured, "measured_on": here,
                "measured_on_target_cpu": on_target, "measured": what,
                "bound_ms": bound, "searched_bound_ms": limit,
                "bound_met": (measured <= bound) if bound is not None and on_target else None}

    def limit(self, bound: float) -> float:
        given = getattr(getattr(self.settings, "latency", None), "margin", None)
        if given is None and (self.predictor.meta.get("heldout") or {}).get("rmspe") is None:
            import logging
            logging.getLogger("searchkit").warning(
                "latency.margin=0: the predictor of target '%s' has no held-out error (a smoke test, "
                "e.g. `latency profile sweep=quick`): the measured latency may exceed the bound",
                self.predictor.meta.get("target"))
        return float(bound) / (1 + self.margin())

    def impossible(self, bound: float, limit: float) -> str:
        target = self.predictor.meta.get("target")
        return (f"impossible constraint: latency <= {bound:g} ms on target '{target}' (predicted <= "
                f"{limit:.3g} ms with latency.margin={self.margin():.3g}) but the smallest architecture of "
                f"this space is predicted at {self.floor():.3g} ms (base: {self.base():.3g} ms)")
