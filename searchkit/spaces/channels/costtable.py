"""Analytic costs of channel-pruned variants of one base network, without building them.

Every FLOPs and params term of a Conv2d/Linear/BN layer is ``A * in_f * out_f + B * out_f``
in the layer's input channels per group and output channels (:mod:`searchkit.costs.flops`);
pruning changes only those widths, so one hooked forward of the base tabulates every
genome's costs exactly.

Example:
    >>> from searchkit.models import build_base
    >>> from searchkit.spaces.channels.surgery import channel_units
    >>> base = build_base("resnet56"); units = channel_units(base)
    >>> CostTable.build(base, units).costs([1.0] * len(units)).flops
    125485696
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import nn

from searchkit.costs.flops import (Costs, all_params, check_convention, flops_coeffs, forward_rows, in_out,
                                   input_shape, layer_kind, param_coeffs)
from searchkit.spaces.channels.surgery import ChannelUnit, _as_keep_array, keep_counts_array


class CostTable:
    """Analytic costs of channel-pruned variants of one base model, without building them.

    :meth:`costs` equals ``count_costs(prune_channels(base, units, keep), input_size,
    convention)`` exactly, for any ``keep``, and takes a few microseconds.

    """

    _ARRAYS = ("f_in", "f_out", "f_a", "f_b", "p_in", "p_out", "p_p", "p_q")

    def __init__(self, unit_names: Sequence[str], channels: Sequence[int],
                 input_size: Sequence[int], convention: str, params_const: int,
                 const_values: Sequence[int], composites: dict | None = None, **arrays):
        self.unit_names = list(unit_names)
        self.channels = np.asarray(channels, dtype=np.int64)
        self._channels_f = self.channels.astype(np.float64)
        self.input_size = tuple(int(s) for s in input_size)
        self.convention = convention
        self.params_const = int(params_const)
        # values[i] for i < n_units are kept counts; the rest are fixed widths
        self._const = np.asarray(const_values, dtype=np.int64)
        for name in self._ARRAYS:
            setattr(self, "_" + name, np.asarray(arrays[name], dtype=np.int64))
        self._units = [ChannelUnit(n, int(c), ()) for n, c in zip(self.unit_names, channels)]
        # widths made of several units (a concatenation read by one conv): const + M @ kept
        comp = composites or {"const": [], "terms": []}
        self._comp_const = np.asarray(comp["const"], dtype=np.int64)
        self._comp_terms = [tuple(map(int, t)) for t in comp["terms"]]  # (slot, unit, repeat)
        self._comp = np.zeros((len(self._comp_const), len(self.unit_names)), dtype=np.int64)
        for slot, unit, rep in self._comp_terms:
            self._comp[slot, unit] += rep

    @classmethod
    def build(cls, base: nn.Module, units: Sequence[ChannelUnit], input_size=(3, 32, 32),
              convention: str = "macs") -> "CostTable":
        """Tabulate ``base`` (one hooked forward) for the given units.

        Args:
            base: the unpruned model.
            units: its channel units (``searchkit.spaces.channels.surgery.channel_units``).
            input_size: ``(C, H, W)`` or an int side.
            convention: as for :func:`count_costs`.

        Example:
            >>> from searchkit.models import build_base
            >>> from searchkit.spaces.channels.surgery import channel_units
            >>> base = build_base("resnet20")
            >>> CostTable.build(base, channel_units(base)).costs([0.5] * 9).flops < 41_000_000
            True
        """
        check_convention(convention)
        n = len(units)
        # (path, dim) -> [(unit, offset, repeat)]; dim "out" (producers, norms, depthwise) or "in"
        parts: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
        for i, u in enumerate(units):
            for role, p, off, rep in u.members():
                parts.setdefault((p, "in" if role == "consumer" else "out"), []).append((i, off, rep))
        const: list[int] = []
        comp: dict = {"const": [], "terms": []}

        def slot(path: str, dim: str, width: int) -> int:
            got = parts.get((path, dim))
            if not got:
                const.append(width)
                return n + len(const) - 1
            if len(got) == 1 and got[0][1:] == (0, 1) and units[got[0][0]].channels == width:
                return got[0][0]
            k = len(comp["const"])
            comp["const"].append(width - sum(units[i].channels * rep for i, _, rep in got))
            comp["terms"] += [(k, i, rep) for i, _, rep in got]
            return -(k + 1)  # resolved once the constants are known

        modules = dict(base.named_modules())
        cols = {name: [] for name in cls._ARRAYS}
        for path, rows in forward_rows(base, input_size):
            mod = modules[path]
            kind = layer_kind(mod)
            cin, cout = in_out(kind, mod)
            a, b = flops_coeffs(kind, mod, rows, convention)
            cols["f_in"].append(slot(path, "in", cin))
            cols["f_out"].append(slot(path, "out", cout))
            cols["f_a"].append(a)
            cols["f_b"].append(b)
        counted = 0
        for path, mod in modules.items():
            kind = layer_kind(mod)
            if kind is None or (convention == "hrank" and kind == "norm"):
                continue
            cin, cout = in_out(kind, mod)
            p, q = param_coeffs(kind, mod, convention)
            cols["p_in"].append(slot(path, "in", cin))
            cols["p_out"].append(slot(path, "out", cout))
            cols["p_p"].append(p)
            cols["p_q"].append(q)
            counted += p * cin * cout + q * cout
        # parameters outside Conv2d/Linear/BN never change with pruning
        params_const = 0 if convention == "hrank" else all_params(base) - counted
        for name in ("f_in", "f_out", "p_in", "p_out"):  # composite slots follow the constants
            cols[name] = [v if v >= 0 else n + len(const) - v - 1 for v in cols[name]]
        return cls([u.name for u in units], [u.channels for u in units],
                   input_shape(input_size), convention, params_const, const,
                   composites=comp if comp["const"] else None, **cols)

    def costs(self, keep: Sequence[float]) -> Costs:
        """Costs of the model pruned to ``keep`` (one fraction in (0, 1] per unit).

        Example:
            >>> from searchkit.models import build_base
            >>> from searchkit.spaces.channels.surgery import channel_units
            >>> base = build_base("resnet20"); units = channel_units(base)
            >>> table = CostTable.build(base, units)
            >>> from searchkit.costs import count_costs
            >>> table.costs([1.0] * 9) == count_costs(base)
            True
        """
        kept = keep_counts_array(self._channels_f, _as_keep_array(self._units, keep))
        vals = np.concatenate((kept, self._const, self._comp_const + self._comp @ kept))
        fo = vals[self._f_out]
        po = vals[self._p_out]
        flops = int(np.dot(self._f_a, vals[self._f_in] * fo) + np.dot(self._f_b, fo))
        params = int(np.dot(self._p_p, vals[self._p_in] * po) + np.dot(self._p_q, po))
        return Costs(flops, params + self.params_const)

    @property
    def base_costs(self) -> Costs:
        """Costs of the unpruned base model."""
        return self.costs([1.0] * len(self.unit_names))

    def to_json(self) -> dict:
        """A JSON-able dict that :meth:`from_json` reads back (for caching)."""
        d = {"version": 2, "unit_names": self.unit_names,
             "channels": self.channels.tolist(), "input_size": list(self.input_size),
             "convention": self.convention, "params_const": self.params_const,
             "const_values": self._const.tolist(),
             "composites": {"const": self._comp_const.tolist(), "terms": [list(t) for t in self._comp_terms]}}
        for name in self._ARRAYS:
            d[name] = getattr(self, "_" + name).tolist()
        return d

    @classmethod
    def from_json(cls, d: dict) -> "CostTable":
        """Rebuild a table from :meth:`to_json` output.

        Example:
            >>> from searchkit.models import build_base
            >>> from searchkit.spaces.channels.surgery import channel_units
            >>> base = build_base("resnet20"); units = channel_units(base)
            >>> t = CostTable.build(base, units)
            >>> CostTable.from_json(t.to_json()).costs([0.5] * 9) == t.costs([0.5] * 9)
            True
        """
        if d.get("version") not in (1, 2):
            raise ValueError(f"unsupported CostTable version {d.get('version')!r}")
        return cls(d["unit_names"], d["channels"], d["input_size"], d["convention"],
                   d["params_const"], d["const_values"], composites=d.get("composites"),
                   **{k: d[k] for k in cls._ARRAYS})
