"""Predicted latency of a space's genomes, without building the models.

:class:`GenomeLatency` joins a fitted :class:`~searchkit.costs.latency.Predictor` and a
space: the space's genome gives its kernels (channels: :class:`ChannelKernelMap`; tinynet:
:func:`efficientnet_kernels`), the predictor their milliseconds. Channel kernel maps are
cached as JSON beside the base checkpoints, so only the first run on a base traces it.

Example:
    >>> # with a predictor fitted for target "laptop":
    >>> # lat = GenomeLatency(load_predictor("laptop"), space)
    >>> # lat.ms(genome), lat.many([g1, g2, ...])
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from searchkit.costs.kernel_map import ChannelKernelMap, efficientnet_kernels
from searchkit.costs.latency import Predictor
from searchkit.costs.trace import Kernel

_MAP_VERSION = 1


def _map_to_json(kmap: ChannelKernelMap) -> dict:
    return {"version": _MAP_VERSION, "kinds": kmap.kinds, "base_rows": kmap.base_rows.tolist(),
            "jac": kmap.jac.tolist(), "widths": kmap.widths.tolist()}


def _map_from_json(d: dict) -> ChannelKernelMap:
    return ChannelKernelMap(d["kinds"], np.asarray(d["base_rows"], dtype=np.int64).reshape(len(d["kinds"]), -1),
                            np.asarray(d["jac"], dtype=np.int64).reshape(len(d["kinds"]), -1, len(d["widths"])),
                            np.asarray(d["widths"], dtype=np.int64))


def channel_kernel_map(space, cache_dir: str | Path | None = None) -> ChannelKernelMap:
    """The space's kernel map, read from / written to ``cache_dir`` when given."""
    key = json.dumps({"model": space.config.model, "input": list(space.input_size),
                      "units": [[u.name, u.channels] for u in space.units],
                      "params": sum(p.numel() for p in space.base.parameters()), "v": _MAP_VERSION})
    name = f"kernelmap-{space.config.model}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
    path = Path(cache_dir) / name if cache_dir else None
    if path is not None and path.is_file():
        try:
            return _map_from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt
    kmap = ChannelKernelMap.build(space.base, space.units, space.input_size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_map_to_json(kmap)))
        tmp.replace(path)
    return kmap


class GenomeLatency:
    """Milliseconds of a space's genomes on one predictor's target (memoised per genome).

    Channel spaces are tabulated once: every kernel's fields depend on at most two units
    (its input and output widths), so each kernel's latency is a table over those units'
    choices, predicted in one batch; a genome is then a sum of table lookups.
    """

    def __init__(self, predictor: Predictor, space, cache_dir: str | Path | None = None):
        if space.name not in ("channels", "tinynet"):
            raise ValueError(f"latency prediction has no kernel map for space '{space.name}'")
        self.predictor = predictor
        self.space = space
        self.kmap = channel_kernel_map(space, cache_dir) if space.name == "channels" else None
        self._memo: dict[str, float] = {}
        self._table = None  # channels: per-kernel tables
        self._grid = None  # tinynet: ms over the (r, d, w) grid
        if self.kmap is not None:
            self._tabulate()

    # -- channels: per-kernel tables over the units' choices ----------------------------------
    def _tabulate(self) -> None:
        kmap, choices = self.kmap, np.asarray(self.space.choices, dtype=np.float64)
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
            a, b = self.predictor.coefficients(kind)
            secs = a * self.predictor.kernel_seconds(kind, allrows)
            const += b * len(parts)
            i = 0
            for start, r in parts:
                flat[start:start + len(r)] = secs[i:i + len(r)]
                i += len(r)
        self._table = (flat, np.array(offs), np.array(d0), np.array(d1), np.array(mult), const)

    def _choice_index(self, keep: np.ndarray) -> np.ndarray | None:
        """Index of each fraction in the space's choices; ``None`` if one is off the grid."""
        choices = np.asarray(self.space.choices, dtype=np.float64)
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

    # -- any space ------------------------------------------------------------------------------
    def kernels(self, genome: dict) -> list[Kernel]:
        if self.kmap is not None:
            return self.kmap.kernels(genome["keep"])
        s = self.space
        return efficientnet_kernels(float(genome["w"]), float(genome["d"]), s.input_side(genome),
                                    s.num_classes, s.in_channels)

    def ms(self, genome: dict) -> float:
        key = json.dumps(genome, sort_keys=True)
        if key not in self._memo:
            got = self._from_table(np.asarray([genome["keep"]])) if self._table is not None else None
            self._memo[key] = float(got[0]) if got is not None else float(self.predictor.predict_ms(self.kernels(genome)))
        return self._memo[key]

    def many(self, genomes: Sequence[dict]) -> np.ndarray:
        """Milliseconds of many genomes; vectorised for channel genomes."""
        if not genomes:
            return np.zeros(0)
        if self.kmap is None:
            return self._tinynet_many(genomes)
        keep = np.asarray([g["keep"] for g in genomes], dtype=np.float64)
        if self._table is not None:
            got = self._from_table(keep)
            if got is not None:
                return got
        distinct, index = self.kmap.grouped(keep)
        return self.predictor.predict_rows_ms(distinct, index, len(genomes))

    # -- tinynet: a table over the whole (r, d, w) grid, built on the first batch -----------------
    def _tinynet_many(self, genomes: Sequence[dict]) -> np.ndarray:
        s = self.space
        axes = ("r", "d", "w")
        if self._grid is None:
            shape = tuple(s.grids[a].n for a in axes)
            grid = [s._genome_at(i, j, k) for i in range(shape[0]) for j in range(shape[1]) for k in range(shape[2])]
            lists = [self.kernels(g) for g in grid]
            self.predictor.kernel_sum_s(k for ks in lists for k in ks)  # one batch per kernel type
            self._grid = np.array([self.predictor.predict_ms(ks) for ks in lists]).reshape(shape)
        idx = [np.clip(np.rint((np.array([g[a] for g in genomes], dtype=np.float64) - s.grids[a].low)
                               / s.grids[a].step).astype(np.int64), 0, s.grids[a].n - 1) for a in axes]
        return self._grid[idx[0], idx[1], idx[2]]

    def base_ms(self) -> float:
        s = self.space
        return self.ms(s.base_genome() if self.kmap is None else s.uniform(1.0))

    def min_ms(self) -> float:
        """Latency of the space's smallest genome (for refusing impossible bounds)."""
        s = self.space
        if self.kmap is not None:  # the narrowest genome, or any of a seeded sample that is faster
            rng = np.random.default_rng(0)
            sample = [s.genome([float(c) for c in rng.choice(s.choices, len(s.units))]) for _ in range(256)]
            return float(min(self.ms(s.uniform(s.choices[0])), self.many(sample).min()))
        # tinynet: the fastest genome of the FLOPs band (the whole grid is tabulated anyway)
        self.many([s.min_genome()])
        return float(self._grid[s.feasible].min())
