"""Costs of binarized networks, counted on the built network: what ``space=bnas`` answers to the
``ops``, ``word_ops`` and ``size_bytes`` cost models (``searchkit/costs/models.py``).

- ``ops`` — the literature's OPs (XNOR-Net, Bi-Real, ReActNet): FLOPs + BOPs/64, where a
  BOP is one multiply-accumulate of a W1A1 conv (binary weights *and* inputs: XNOR and
  popcount). A W1A32 conv (binary weights, real inputs, as BNAS released) still adds real
  numbers: its MACs count as FLOPs.
- ``word_ops`` — what a 64-bit XNOR-popcount kernel does: per output, ⌈Cin/groups / 64⌉ words
  per kernel tap, so a binary depthwise conv (one channel per group) costs as much as a
  real one, not 1/64 of it. Other convs and linear layers count their MACs, and a k×k pool
  its k² reads per output: a DARTS cell's 3×3 pools take as long as its binary convs.
- ``size_bytes`` — 1 bit per binary weight (+ 4 bytes per scale), 4 bytes per other parameter.

For a network without binary layers, ``ops`` and ``word_ops`` equal ``flops`` and
``size_bytes`` is 4 × ``params``: that is how the cost models price every other space.

Example:
    >>> from torch import nn
    >>> from searchkit.spaces.bnas.binary import BinaryConv2d
    >>> net = nn.Sequential(BinaryConv2d(64, 64, 3, padding=1, bias=False, binary_input=True))
    >>> c = count_binary(net, (64, 8, 8))
    >>> c["flops"], c["ops"], c["word_ops"], c["size_bytes"]
    (2359296, 36864, 36864, 4612)
"""

from __future__ import annotations

import math

from torch import nn

from searchkit.costs.flops import count_costs, flops_coeffs, forward_rows, in_out, layer_kind
from searchkit.spaces.bnas.binary import BinaryConv2d


def count_binary(model, input_size) -> dict[str, int]:
    """``flops``, ``params``, ``ops``, ``word_ops`` and ``size_bytes`` of ``model``."""
    total = count_costs(model, input_size)
    mods = dict(model.named_modules())
    ops = words = 0
    windows = []  # reads of each pool call, gathered during forward_rows' pass

    def pooled(m, inputs, output):
        kh, kw = (m.kernel_size, m.kernel_size) if isinstance(m.kernel_size, int) else m.kernel_size
        windows.append(kh * kw * output.numel())
    hooks = [m.register_forward_hook(pooled) for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    try:
        calls = forward_rows(model, input_size)
    finally:
        for h in hooks:
            h.remove()
    words += sum(windows)
    for path, rows in calls:
        mod = mods[path]
        kind = layer_kind(mod)
        if kind not in ("conv", "linear"):
            continue
        a, b = flops_coeffs(kind, mod, rows, "macs")
        cin, cout = in_out(kind, mod)
        macs = a * cin * cout + b * cout
        if isinstance(mod, BinaryConv2d) and mod.binary_input:
            ops += macs / 64
            words += a * math.ceil(cin / 64) * cout + b * cout
        else:
            ops += macs
            words += macs
    size = 0
    for mod in model.modules():
        for name, p in mod.named_parameters(recurse=False):
            if isinstance(mod, BinaryConv2d) and name == "weight":
                scales = {"channel": p.shape[0], "layer": 1}.get(mod.scaling, 0)
                size += math.ceil(p.numel() / 8) + 4 * scales
            else:
                size += 4 * p.numel()
    return {"flops": total.flops, "params": total.params, "ops": int(round(ops)), "word_ops": int(words),
            "size_bytes": int(size)}


__all__ = ["count_binary"]
