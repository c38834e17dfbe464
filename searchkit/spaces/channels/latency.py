"""Latency of channel genomes without building them: a kernel map and per-kernel tables.

Every field of every kernel of a pruned model is affine in the units' kept widths (a
conv's in/out channels and groups, an element-wise op's size...). :class:`ChannelKernelMap`
traces the base once and once per unit with that unit one channel narrower, and keeps
``rows = base_rows + J @ (widths - base_widths)``: a genome's kernels are one small integer
product. Maps are cached as JSON beside the base checkpoints. :class:`LatencyTable` then
tabulates each kernel's predicted latency over its units' choices (a kernel depends on at
most two units), so a genome's latency is a sum of look-ups.

Example:
    >>> from searchkit.models import build_base
    >>> from searchkit.spaces.channels.surgery import channel_units, prune_channels
    >>> from searchkit.costs.trace import trace_kernels
    >>> base = build_base("resnet20"); units = channel_units(base)
    >>> kmap = ChannelKernelMap.build(base, units, (3, 32, 32))
    >>> widths = [0.5] * len(units)
    >>> kmap.kernels(widths) == trace_kernels(prune_channels(base, units, widths), (3, 32, 32))
    True
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import nn

from searchkit.core.atomic import replacing
from searchkit.costs.trace import Kernel, trace_kernels
from searchkit.spaces.channels.surgery import ChannelUnit, keep_counts_array, prune_channels

_MAP_VERSION = 1


class ChannelKernelMap:
    """Kernel rows of channel-pruned variants of one base, as an affine map of unit widths."""

    def __init__(self, kinds: list[str], base_rows: np.ndarray, jac: np.ndarray, widths: np.ndarray):
        self.kinds = kinds
        self.base_rows = base_rows  # (K, F) int64, fields padded with zeros to F
        self.jac = jac  # (K, F, U) int64
        self.widths = widths  # (U,) base widths
        self.arity = {k: len(_fields(k)) for k in set(kinds)}
        self._by_kind = {k: np.array([i for i, kk in enumerate(kinds) if kk == k]) for k in set(kinds)}

    @classmethod
    def build(cls, base: nn.Module, units: Sequence[ChannelUnit], input_size) -> "ChannelKernelMap":
        ref = trace_kernels(base, input_size)
        width = max((len(k.fields) for k in ref), default=0)
        base_rows = _rows(ref, width)
        widths = np.array([u.channels for u in units], dtype=np.int64)
        jac = np.zeros((len(ref), width, len(units)), dtype=np.int64)
        for i, u in enumerate(units):
            if u.channels < 2:
                continue
            keep = [1.0] * len(units)
            keep[i] = (u.channels - 1) / u.channels
            trace = trace_kernels(prune_channels(base, units, keep), input_size)
            if [k.kind for k in trace] != [k.kind for k in ref]:
                raise ValueError(f"pruning unit {u.name} changes the kernels the model runs; "
                                 "its latency cannot be mapped from widths")
            jac[:, :, i] = base_rows - _rows(trace, width)
        return cls([k.kind for k in ref], base_rows, jac, widths)

    def counts(self, keep: Sequence[float] | np.ndarray) -> np.ndarray:
        return keep_counts_array(self.widths.astype(np.float64), np.asarray(keep, dtype=np.float64))

    def rows(self, keep_matrix: np.ndarray) -> np.ndarray:
        """``(G, K, F)`` kernel rows of ``G`` genomes given as a ``(G, U)`` keep matrix."""
        kept = self.counts(keep_matrix).reshape(len(keep_matrix), -1)
        delta = self.widths[None, :] - kept  # channels removed per unit
        return self.base_rows[None] - np.einsum("kfu,gu->gkf", self.jac, delta)

    def kernels(self, keep: Sequence[float]) -> list[Kernel]:
        """The kernels of one genome's model (equal to tracing the pruned model)."""
        rows = self.rows(np.asarray([keep], dtype=np.float64))[0]
        return [Kernel(kind, tuple(int(v) for v in row[: self.arity[kind]]))
                for kind, row in zip(self.kinds, rows)]

    def grouped(self, keep_matrix: np.ndarray) -> tuple[dict, dict]:
        """Distinct rows per kernel type and per-genome indices into them (for batch prediction)."""
        rows = self.rows(keep_matrix)
        distinct, index = {}, {}
        for kind, where in self._by_kind.items():
            if self.arity[kind] == 0:
                distinct[kind] = np.zeros((1, 0), dtype=np.int64)
                index[kind] = np.zeros((len(rows), len(where)), dtype=np.int64)
                continue
            block = rows[:, where, : self.arity[kind]].reshape(-1, self.arity[kind])
            uniq, inv = np.unique(block, axis=0, return_inverse=True)
            distinct[kind] = uniq
            index[kind] = inv.reshape(len(rows), len(where))
        return distinct, index


def _fields(kind: str) -> tuple[str, ...]:
    from searchkit.costs.kernels import KERNELS
    return KERNELS[kind].fields


def _rows(kernels: list[Kernel], width: int) -> np.ndarray:
    out = np.zeros((len(kernels), width), dtype=np.int64)
    for i, k in enumerate(kernels):
        out[i, : len(k.fields)] = k.fields
    return out


def _map_to_json(kmap: ChannelKernelMap) -> dict:
    return {"version": _MAP_VERSION, "kinds": kmap.kinds, "base_rows": kmap.base_rows.tolist(),
            "jac": kmap.jac.tolist(), "widths": kmap.widths.tolist()}


def _map_from_json(d: dict) -> ChannelKernelMap:
    return ChannelKernelMap(d["kinds"], np.asarray(d["base_rows"], dtype=np.int64).reshape(len(d["kinds"]), -1),
                            np.asarray(d["jac"], dtype=np.int64).reshape(len(d["kinds"]), -1, len(d["widths"])),
                            np.asarray(d["widths"], dtype=np.int64))


def cached_kernel_map(model: str, base: nn.Module, units: Sequence[ChannelUnit], input_size,
                      cache_dir: str | Path | None = None) -> ChannelKernelMap:
    """The kernel map of ``base``, read from / written to ``cache_dir`` when given."""
    key = json.dumps({"model": model, "input": list(input_size),
                      "units": [[u.name, u.channels] for u in units],
                      "params": sum(p.numel() for p in base.parameters()), "v": _MAP_VERSION})
    name = f"kernelmap-{model}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
    path = Path(cache_dir) / name if cache_dir else None
    if path is not None and path.is_file():
        try:
            return _map_from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt
    kmap = ChannelKernelMap.build(base, units, input_size)
    if path is not None:
        with replacing(path) as tmp:
            tmp.write_text(json.dumps(_map_to_json(kmap)))
    return kmap


class LatencyTable:
    """Milliseconds of channel genomes on one predictor, as per-kernel tables over the units'
    choices (``None`` for a base whose kernels depend on more than two units, a
    concatenation: then genomes are predicted kernel by kernel)."""

    def __init__(self, predictor, kmap: ChannelKernelMap, choices: Sequence[float]):
        self.predictor = predictor
        self.kmap = kmap
        self.choices = np.asarray(choices, dtype=np.float64)
        self._table = None
        self._tabulate()

    @property
    def usable(self) -> bool:
        return self._table is not None

    def _tabulate(self) -> None:
        kmap, choices = self.kmap, self.choices
        n, units = len(choices), len(kmap.widths)
        deps = [np.flatnonzero(np.abs(kmap.jac[k]).sum(axis=0)) for k in range(len(kmap.kinds))]
        if any(len(d) > 2 for d in deps):
            return  # a kernel fed by several units (a concatenation): per-genome path only
        counts = kmap.counts(np.broadcast_to(choices[:, None], (n, units)))  # (n, U) kept per choice
        tables, d0, d1, mult, offs = [], [], [], [], []
        rows_by_kind: dict[str, list] = {}
        at = 0
        for k, dep in enumerate(deps):
            if len(dep):
                combos = np.array(np.meshgrid(*[np.arange(n)] * len(dep), indexing="ij")).reshape(len(dep), -1).T
            else:
                combos = np.zeros((1, 0), dtype=np.int64)
            delta = np.zeros((len(combos), units), dtype=np.int64)
            for j, u in enumerate(dep):
                delta[:, u] = kmap.widths[u] - counts[combos[:, j], u]
            rows = kmap.base_rows[k][None] - delta @ kmap.jac[k].T
            kind = kmap.kinds[k]
            rows_by_kind.setdefault(kind, []).append((at, rows[:, : kmap.arity[kind]]))
            offs.append(at)
            d0.append(dep[0] if len(dep) >= 1 else units)
            d1.append(dep[1] if len(dep) == 2 else units)
            mult.append(n if len(dep) == 2 else 1)
            at += len(combos)
        # Calibrated per kernel: a_g * seconds in the table, b_g summed into one constant
        # (a channels genome always has the same kernels, only their widths change).
        flat = np.zeros(at)
        const = self.predictor.calibration[2]
        for kind, parts in rows_by_kind.items():
            allrows = np.concatenate([r for _, r in parts]) if kmap.arity[kind] else np.zeros((sum(len(r) for _, r in parts), 0), dtype=np.int64)
            a, b = self.predictor.row_coefficients(kind, allrows)
            secs = a * self.predictor.kernel_seconds(kind, allrows)
            i = 0
            for _, r in parts:  # one kernel per part: its rows share the calibration group
                const += b[i] if len(r) else 0.0
                i += len(r)
            i = 0
            for start, r in parts:
                flat[start:start + len(r)] = secs[i:i + len(r)]
                i += len(r)
        self._table = (flat, np.array(offs), np.array(d0), np.array(d1), np.array(mult), const)

    def _choice_index(self, keep: np.ndarray) -> np.ndarray | None:
        """Index of each fraction in the space's choices; ``None`` if one is off the grid."""
        choices = self.choices
        order = np.argsort(choices)
        pos = np.clip(np.searchsorted(choices[order], keep), 0, len(choices) - 1)
        lower = np.clip(pos - 1, 0, len(choices) - 1)
        pos = np.where(np.abs(choices[order][lower] - keep) < np.abs(choices[order][pos] - keep), lower, pos)
        if np.abs(choices[order][pos] - keep).max(initial=0.0) > 1e-9:
            return None  # a fraction off the space's grid (e.g. a uniform baseline)
        return order[pos].astype(np.int64)

    def _from_table(self, keep: np.ndarray) -> np.ndarray | None:
        idx = self._choice_index(keep)
        if idx is None:
            return None
        flat, offs, d0, d1, mult, const = self._table
        ext = np.concatenate([idx, np.zeros((len(idx), 1), dtype=np.int64)], axis=1)
        secs = flat[offs[None, :] + ext[:, d0] * mult[None, :] + ext[:, d1] * (mult[None, :] > 1)]
        return (secs.sum(axis=1) + const) * 1e3

    def __call__(self, fractions: np.ndarray) -> np.ndarray | None:
        """Milliseconds of a ``(G, units)`` matrix of fractions (``None`` if one is off the grid)."""
        return self._from_table(np.asarray(fractions, dtype=np.float64)) if self._table is not None else None


def predict_many_ms(predictor, kmap: ChannelKernelMap, fractions: np.ndarray) -> np.ndarray:
    """Milliseconds of many genomes' kernels, grouped into one batch per kernel type."""
    distinct, index = kmap.grouped(np.asarray(fractions, dtype=np.float64))
    return predictor.predict_rows_ms(distinct, index, len(fractions))
