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

import numpy as np
import torch
from torch import nn


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


def check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOPs convention '{convention}' "
                         f"(choices: {', '.join(CONVENTIONS)})")


def input_shape(input_size) -> tuple[int, ...]:
    if isinstance(input_size, int):
        return (3, input_size, input_size)
    return tuple(int(s) for s in input_size)


# --- one term per layer -----------------------------------------------------------
# Every cost is  A * in_f * out_f + B * out_f  (flops, per forward call of a layer) or
# P * in_f * out_f + Q * out_f  (params, per module), where in_f is the layer's input
# widths per group and out_f its output width. Pruning only changes in_f / out_f,
# which is what lets CostTable evaluate genomes without building models.

def flops_coeffs(kind: str, mod: nn.Module, rows: int, convention: str) -> tuple[int, int]:
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


def param_coeffs(kind: str, mod: nn.Module, convention: str) -> tuple[int, int]:
    """(P, Q) of one module."""
    if kind == "conv":
        return int(np.prod(mod.kernel_size)), 1 if mod.bias is not None else 0
    if kind == "linear":
        return 1, 1 if mod.bias is not None else 0
    if convention == "hrank":
        return 0, 0
    return 0, 2 if mod.weight is not None else 0


def layer_kind(mod: nn.Module) -> str | None:
    if isinstance(mod, nn.Conv2d):
        return "conv"
    if isinstance(mod, nn.Linear):
        return "linear"
    if isinstance(mod, _NORMS):
        return "norm"
    return None


def in_out(kind: str, mod: nn.Module) -> tuple[int, int]:
    if kind == "conv":
        return mod.in_channels // mod.groups, mod.out_channels
    if kind == "linear":
        return mod.in_features, mod.out_features
    return 1, mod.num_features


def forward_rows(model: nn.Module, input_size) -> list[tuple[str, int]]:
    """``(module path, output rows)`` per forward call of each Conv2d/Linear/BN, in order."""
    calls: list[tuple[str, int]] = []
    handles = []
    for path, mod in model.named_modules():
        kind = layer_kind(mod)
        if kind is None:
            continue
        out_ch = in_out(kind, mod)[1]

        def hook(m, inputs, output, path=path, out_ch=out_ch):
            calls.append((path, output.numel() // out_ch))
        handles.append(mod.register_forward_hook(hook))
    ref = next(iter(model.parameters()), None)
    x = torch.zeros((1, *input_shape(input_size)),
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


def all_params(model: nn.Module) -> int:
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
    check_convention(convention)
    modules = dict(model.named_modules())
    flops = 0
    for path, rows in forward_rows(model, input_size):
        mod = modules[path]
        kind = layer_kind(mod)
        a, b = flops_coeffs(kind, mod, rows, convention)
        cin, cout = in_out(kind, mod)
        flops += a * cin * cout + b * cout
    if convention == "hrank":
        params = sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                     for p in m.parameters(recurse=False))
    else:
        params = all_params(model)
    return Costs(int(flops), int(params))
