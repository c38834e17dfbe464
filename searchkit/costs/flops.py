"""FLOPs and parameter counts: measured on a model, or analytic for pruned genomes.

Conventions (``convention=``), all for one image (batch 1) of ``input_size``:

``"macs"`` — the project convention (DESIGN.md invariant 5).
    flops = multiply-accumulates of every ``Conv2d``
    (``kh*kw * cin/groups * cout * Hout*Wout``, bias not counted) and every ``Linear``
    (``in * out`` per output row); BN, activations, pooling and additions count 0.
    params = all parameters of the model (BN affine included, buffers excluded).
    Reproduces ResNet-56 = 125,485,696 (125.49M) FLOPs, 0.85M params;
    ResNet-110 = 252,887,680 (252.89M, as in HRank's table; often quoted as
    253M), 1.73M. Under "thop" ResNet-110 is 257.08M, matching ABCPruner's 65.04%
    reduction at 89.87M.

``"hrank"`` — reproduces HRank's VGG-16-BN figures (313.73M FLOPs, 14.98M params).
    flops = conv MACs as above + ``2*in*out + out`` per ``Linear`` with a bias
    (``2*in*out`` without one). On HRank's VGG-16 that is 313,196,544 + 535,050 =
    313,731,594. (Counting ``2*(weights + biases)`` for the Linears would give
    313,732,116, which also rounds to 313.73M; the formula above is the one that
    gives the exact integer the seed notes quote.)
    params = weights and biases of ``Conv2d`` and ``Linear`` only (BN excluded):
    14,982,474 for HRank's VGG-16.

``"thop"`` — the rules of thop's Oct-2019 ``profile()`` that ABCPruner's
    ``get_flops_params.py`` used: conv ``(kh*kw*cin/groups + has_bias) * output
    numel``, BatchNorm ``4 * numel``, ``Linear`` ``2*in*out``, activations and
    pooling 0; params = all parameters. Reproduces ABCPruner's baselines ResNet-56
    127.62M and (on ABCPruner's own single-Linear VGG-16) 314.59M.

Example:
    >>> from searchkit.models import build_base
    >>> round(count_costs(build_base("resnet56")).flops / 1e6, 2)
    125.49
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from searchkit.models.surgery import ChannelUnit, _as_keep_array, keep_counts_array

CONVENTIONS = ("macs", "hrank", "thop")
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class Costs:
    """Cost of one model: ``flops`` (MACs under the default convention) and ``params``."""

    flops: int
    params: int

    def to_json(self) -> dict:
        """``{"flops": int, "params": int}``."""
        return {"flops": int(self.flops), "params": int(self.params)}

    @classmethod
    def from_json(cls, d: dict) -> "Costs":
        """Inverse of :meth:`to_json`."""
        return cls(int(d["flops"]), int(d["params"]))


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOPs convention '{convention}' "
                         f"(choices: {', '.join(CONVENTIONS)})")


def _input_shape(input_size) -> tuple[int, ...]:
    if isinstance(input_size, int):
        return (3, input_size, input_size)
    return tuple(int(s) for s in input_size)


# --- one term per layer -----------------------------------------------------------
# Every cost is  A * in_f * out_f + B * out_f  (flops, per forward call of a layer) or
# P * in_f * out_f + Q * out_f  (params, per module), where in_f is the layer's input
# channels per group and out_f its output channels. Pruning only changes in_f / out_f,
# which is what lets CostTable evaluate genomes without building models.

def _flops_coeffs(kind: str, mod: nn.Module, rows: int, convention: str) -> tuple[int, int]:
    """(A, B) of one forward call; ``rows`` = output positions (H*W, or Linear rows)."""
    if kind == "conv":
        k = int(np.prod(mod.kernel_size))
        bias = 1 if (convention == "thop" and mod.bias is not None) else 0
        return k * rows, bias * rows
    if kind == "linear":
        if convention == "macs":
            return rows, 0
        if convention == "thop":
            return 2 * rows, 0
        return 2 * rows, rows if mod.bias is not None else 0
    # norm
    return 0, (4 * rows if convention == "thop" else 0)


def _param_coeffs(kind: str, mod: nn.Module, convention: str) -> tuple[int, int]:
    """(P, Q) of one module."""
    if kind == "conv":
        return int(np.prod(mod.kernel_size)), 1 if mod.bias is not None else 0
    if kind == "linear":
        return 1, 1 if mod.bias is not None else 0
    if convention == "hrank":
        return 0, 0
    return 0, 2 if mod.weight is not None else 0


def _kind(mod: nn.Module) -> str | None:
    if isinstance(mod, nn.Conv2d):
        return "conv"
    if isinstance(mod, nn.Linear):
        return "linear"
    if isinstance(mod, _NORMS):
        return "norm"
    return None


def _in_out(kind: str, mod: nn.Module) -> tuple[int, int]:
    if kind == "conv":
        return mod.in_channels // mod.groups, mod.out_channels
    if kind == "linear":
        return mod.in_features, mod.out_features
    return 1, mod.num_features


def _forward_rows(model: nn.Module, input_size) -> list[tuple[str, int]]:
    """``(module path, output rows)`` per forward call of each Conv2d/Linear/BN, in order."""
    calls: list[tuple[str, int]] = []
    handles = []
    for path, mod in model.named_modules():
        kind = _kind(mod)
        if kind is None:
            continue
        out_ch = _in_out(kind, mod)[1]

        def hook(m, inputs, output, path=path, out_ch=out_ch):
            calls.append((path, output.numel() // out_ch))
        handles.append(mod.register_forward_hook(hook))
    ref = next(iter(model.parameters()), None)
    x = torch.zeros((1, *_input_shape(input_size)),
                    device=ref.device if ref is not None else None,
                    dtype=ref.dtype if ref is not None else None)
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return calls


def _all_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_costs(model: nn.Module, input_size=(3, 32, 32), convention: str = "macs") -> Costs:
    """Count FLOPs and params of ``model`` with one hooked forward of a zero input.

    The model runs in eval mode under ``torch.no_grad()``; each module's
    train/eval mode is restored afterwards.

    Args:
        model: any model made of Conv2d/Linear (other layers cost 0 FLOPs).
        input_size: ``(C, H, W)`` of one input, or an int ``s`` for ``(3, s, s)``.
        convention: ``"macs"`` (default, the project convention), ``"hrank"`` or
            ``"thop"``; see the module docstring.

    Returns:
        :class:`Costs` with exact integers.

    Example:
        >>> from searchkit.models import build_base
        >>> c = count_costs(build_base("vgg16"), convention="hrank")
        >>> round(c.flops / 1e6, 2), round(c.params / 1e6, 2)
        (313.73, 14.98)
    """
    _check_convention(convention)
    modules = dict(model.named_modules())
    flops = 0
    for path, rows in _forward_rows(model, input_size):
        mod = modules[path]
        kind = _kind(mod)
        a, b = _flops_coeffs(kind, mod, rows, convention)
        cin, cout = _in_out(kind, mod)
        flops += a * cin * cout + b * cout
    if convention == "hrank":
        params = sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                     for p in m.parameters(recurse=False))
    else:
        params = _all_params(model)
    return Costs(int(flops), int(params))


class CostTable:
    """Analytic costs of channel-pruned variants of one base model, without building them.

    :meth:`costs` equals ``count_costs(prune_channels(base, units, keep), input_size,
    convention)`` exactly, for any ``keep``, and takes a few microseconds.

    Example:
        >>> from searchkit.models import build_base
        >>> from searchkit.models.surgery import channel_units
        >>> base = build_base("resnet56"); units = channel_units(base)
        >>> table = CostTable.build(base, units)
        >>> table.costs([1.0] * len(units)).flops
        125485696
    """

    _ARRAYS = ("f_in", "f_out", "f_a", "f_b", "p_in", "p_out", "p_p", "p_q")

    def __init__(self, unit_names: Sequence[str], channels: Sequence[int],
                 input_size: Sequence[int], convention: str, params_const: int,
                 const_values: Sequence[int], **arrays):
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

    @classmethod
    def build(cls, base: nn.Module, units: Sequence[ChannelUnit], input_size=(3, 32, 32),
              convention: str = "macs") -> "CostTable":
        """Tabulate ``base`` (one hooked forward) for the given units.

        Args:
            base: the unpruned model.
            units: its channel units (``searchkit.models.surgery.channel_units``).
            input_size: ``(C, H, W)`` or an int side.
            convention: as for :func:`count_costs`.

        Example:
            >>> from searchkit.models import build_base
            >>> from searchkit.models.surgery import channel_units
            >>> base = build_base("resnet20")
            >>> CostTable.build(base, channel_units(base)).costs([0.5] * 9).flops < 41_000_000
            True
        """
        _check_convention(convention)
        n = len(units)
        out_unit: dict[str, int] = {}
        in_unit: dict[str, int] = {}
        for i, u in enumerate(units):
            for p in (*u.producers, *u.depthwise, *u.norms):
                out_unit[p] = i
            for p in u.consumers:
                in_unit[p] = i
        const: list[int] = []

        def slot(path: str, table: dict[str, int], width: int) -> int:
            if path in table:
                return table[path]
            const.append(width)
            return n + len(const) - 1

        modules = dict(base.named_modules())
        cols = {name: [] for name in cls._ARRAYS}
        for path, rows in _forward_rows(base, input_size):
            mod = modules[path]
            kind = _kind(mod)
            cin, cout = _in_out(kind, mod)
            a, b = _flops_coeffs(kind, mod, rows, convention)
            cols["f_in"].append(slot(path, in_unit, cin))
            cols["f_out"].append(slot(path, out_unit, cout))
            cols["f_a"].append(a)
            cols["f_b"].append(b)
        counted = 0
        for path, mod in modules.items():
            kind = _kind(mod)
            if kind is None or (convention == "hrank" and kind == "norm"):
                continue
            cin, cout = _in_out(kind, mod)
            p, q = _param_coeffs(kind, mod, convention)
            cols["p_in"].append(slot(path, in_unit, cin))
            cols["p_out"].append(slot(path, out_unit, cout))
            cols["p_p"].append(p)
            cols["p_q"].append(q)
            counted += p * cin * cout + q * cout
        # parameters outside Conv2d/Linear/BN never change with pruning
        params_const = 0 if convention == "hrank" else _all_params(base) - counted
        return cls([u.name for u in units], [u.channels for u in units],
                   _input_shape(input_size), convention, params_const, const, **cols)

    def costs(self, keep: Sequence[float]) -> Costs:
        """Costs of the model pruned to ``keep`` (one fraction in (0, 1] per unit).

        Example:
            >>> from searchkit.models import build_base
            >>> from searchkit.models.surgery import channel_units
            >>> base = build_base("resnet20"); units = channel_units(base)
            >>> table = CostTable.build(base, units)
            >>> table.costs([1.0] * 9) == count_costs(base)
            True
        """
        kept = keep_counts_array(self._channels_f, _as_keep_array(self._units, keep))
        vals = np.concatenate((kept, self._const))
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
        d = {"version": 1, "unit_names": self.unit_names,
             "channels": self.channels.tolist(), "input_size": list(self.input_size),
             "convention": self.convention, "params_const": self.params_const,
             "const_values": self._const.tolist()}
        for name in self._ARRAYS:
            d[name] = getattr(self, "_" + name).tolist()
        return d

    @classmethod
    def from_json(cls, d: dict) -> "CostTable":
        """Rebuild a table from :meth:`to_json` output.

        Example:
            >>> from searchkit.models import build_base
            >>> from searchkit.models.surgery import channel_units
            >>> base = build_base("resnet20"); units = channel_units(base)
            >>> t = CostTable.build(base, units)
            >>> CostTable.from_json(t.to_json()).costs([0.5] * 9) == t.costs([0.5] * 9)
            True
        """
        if d.get("version") != 1:
            raise ValueError(f"unsupported CostTable version {d.get('version')!r}")
        return cls(d["unit_names"], d["channels"], d["input_size"], d["convention"],
                   d["params_const"], d["const_values"], **{k: d[k] for k in cls._ARRAYS})
