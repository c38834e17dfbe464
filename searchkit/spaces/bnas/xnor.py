"""W1A1 convolutions as bit-packed XNOR-popcount: ``torch.ops.searchkit_xnor.conv``, built
once per machine from ``xnor.cpp``, with a fake kernel (``torch.export`` keeps it) and a
pure-torch reference where no compiler is found.

:func:`pack` turns a :class:`~searchkit.spaces.bnas.binary.BinaryConv2d`'s weights into words
(bit ``c`` of word ``c // 64`` is ``W[o, c] >= 0``, per group and tap), its scales and each
tap's popcount; :class:`XnorConv2d` runs them. The integer dot products are exact, so the
output equals ``scale · conv(sign(x), sign(W))`` up to the rounding of one multiply.

Example:
    >>> import torch
    >>> from searchkit.spaces.bnas.binary import BinaryConv2d
    >>> conv = BinaryConv2d(70, 8, 3, padding=1, bias=False, scaling="channel", binary_input=True)
    >>> fast = XnorConv2d.of(conv)
    >>> x = torch.randn(2, 70, 6, 6)
    >>> signs = torch.where(x >= 0, 1.0, -1.0), torch.where(conv.weight >= 0, 1.0, -1.0)
    >>> dots = torch.nn.functional.conv2d(*signs, padding=1)
    >>> torch.allclose(fast(x), dots * conv.scale().view(1, -1, 1, 1), rtol=1e-6, atol=1e-6)
    True
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from searchkit.core import native

ISAS = ("portable", "popcnt", "avx2", "avx512")


def _fake(x, weight, scale, wpop, bias, kh, kw, stride, pad, dil):
    ho = (x.shape[2] + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    wo = (x.shape[3] + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    return x.new_empty((x.shape[0], weight.shape[0] * weight.shape[1], ho, wo))


@functools.cache
def load() -> bool:
    """Build (once per machine) and load the op; ``False`` with one warning without a compiler."""
    return native.build("xnor", Path(__file__).with_name("xnor.cpp"), {"searchkit_xnor::conv": _fake},
                        "XNOR-popcount kernel")


def isa() -> str:
    """The popcount the compiled op dispatches to on this CPU ("none" without it)."""
    return ISAS[torch.ops.searchkit_xnor.isa()] if load() else "none"


def force_isa(name: str | None) -> str:
    """Run at most ISA ``name`` (``None``: the best this CPU has); returns the one in force."""
    if not load():
        return "none"
    return ISAS[torch.ops.searchkit_xnor.force_isa(-1 if name is None else ISAS.index(name))]


def pack(weight: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(words, popcounts)`` of a conv weight (Cout, Cin/g, kh, kw): words int64
    (g, Cout/g, kh·kw·⌈Cin/g / 64⌉) laid out tap-major, popcounts int64 (Cout, kh·kw)."""
    cout, cg, kh, kw = weight.shape
    words = -(-cg // 64)
    bits = (weight.detach() >= 0).permute(0, 2, 3, 1).reshape(cout, kh * kw, cg).long()
    bits = F.pad(bits, (0, words * 64 - cg)).reshape(cout, kh * kw, words, 64)
    # distinct powers of two: their sum is the OR; bit 63 wraps to the sign bit, as in C
    packed = (bits << torch.arange(64)).sum(-1)
    return packed.reshape(groups, cout // groups, kh * kw * words).contiguous(), bits.sum((-1, -2))


def popcounts(packed: torch.Tensor, taps: int) -> torch.Tensor:
    """Each output's popcount per tap (Cout, taps) of :func:`pack`'s words (what a file leaves out)."""
    bits = (packed.unsqueeze(-1) >> torch.arange(64)) & 1
    return bits.reshape(packed.shape[0] * packed.shape[1], taps, -1).sum(-1)


def unpack(packed: torch.Tensor, cin_g: int, taps: int) -> torch.Tensor:
    """The ±1 weights (Cout, Cin/g, taps) of :func:`pack`'s words (the reference path)."""
    g, cout_g, k = packed.shape
    words = k // taps
    bits = (packed.reshape(g * cout_g, taps, words, 1) >> torch.arange(64)) & 1
    return (bits.reshape(g * cout_g, taps, words * 64)[..., :cin_g].permute(0, 2, 1) * 2 - 1).float()


class XnorConv2d(nn.Module):
    """A W1A1 conv from packed words: ``scale[o] · Σ sign(x)·sign(W)`` (+ bias)."""

    def __init__(self, words: torch.Tensor, popcounts: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                 *, in_channels: int, kernel_size: tuple[int, int], stride: int, padding: int, dilation: int):
        super().__init__()
        self.register_buffer("words", words)
        self.register_buffer("popcounts", popcounts)
        self.register_buffer("scale", scale.float().reshape(-1))
        self.register_buffer("bias", None if bias is None else bias.float())
        self.in_channels, self.kernel_size = int(in_channels), tuple(int(k) for k in kernel_size)
        self.stride, self.padding, self.dilation = int(stride), int(padding), int(dilation)
        self.groups = int(words.shape[0])

    @classmethod
    def of(cls, conv) -> "XnorConv2d":
        """The packed form of a ``BinaryConv2d(binary_input=True)`` with square stride/padding/dilation."""
        if not conv.binary_input or len({*conv.stride}) > 1 or len({*conv.padding}) > 1 or len({*conv.dilation}) > 1:
            raise ValueError("only a W1A1 BinaryConv2d with square stride, padding and dilation packs")
        words, pops = pack(conv.weight, conv.groups)
        scale = conv.scale().detach().reshape(-1).expand(conv.out_channels).contiguous()
        bias = None if conv.bias is None else conv.bias.detach()
        return cls(words, pops, scale, bias, in_channels=conv.in_channels, kernel_size=conv.kernel_size,
                   stride=conv.stride[0], padding=conv.padding[0], dilation=conv.dilation[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        if load() and x.device.type == "cpu" and x.dtype == torch.float32:
            return torch.ops.searchkit_xnor.conv(x, self.words, self.scale, self.popcounts, self.bias, kh, kw,
                                                 self.stride, self.padding, self.dilation)
        w = unpack(self.words, self.in_channels // self.groups, kh * kw).reshape(-1, self.in_channels // self.groups,
                                                                                   kh, kw)
        y = F.conv2d(torch.where(x >= 0, 1.0, -1.0).to(x.dtype), w.to(x), None, self.stride, self.padding,
                     self.dilation, self.groups)
        y = y * self.scale.to(x).view(1, -1, 1, 1)
        return y if self.bias is None else y + self.bias.to(x).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.words.shape[0] * self.words.shape[1]}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}")


class ChannelsLastPool(nn.Module):
    """``pool`` run on a channels-last copy of its input: torch's NCHW 3×3 pools take 7× as
    long on CPU at batch 1 (``docs/bnas.md``), more than the copies cost."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x.contiguous(memory_format=torch.channels_last)).contiguous()


def _affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g, b)`` with ``bn(y) = g·y + b`` per channel (eval)."""
    g = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        g = g * bn.weight
    return g, -bn.running_mean * g + (0.0 if bn.bias is None else bn.bias)


def _fold(conv: nn.Module, g: torch.Tensor, b: torch.Tensor) -> nn.Module:
    """``g·conv(x) + b`` as ``conv`` (in place): into the float weights or the XNOR op's scales."""
    bias = torch.zeros_like(g) if conv.bias is None else conv.bias.detach()
    if isinstance(conv, nn.Conv2d):
        conv.weight = nn.Parameter(conv.weight.detach() * g.view(-1, 1, 1, 1))
        conv.bias = nn.Parameter(bias * g + b)
    else:
        conv.scale, conv.bias = (conv.scale * g).contiguous(), (bias * g + b).contiguous()
    return conv


def _fold_pairs(net: nn.Module) -> None:
    """Fold every BN that reads only a conv's output: ``(conv, BN)`` in a Sequential, a binary
    block's conv and output norm, a factorized reduction's two halves and their norm. By the
    modules, not by ``deploy.fold_batchnorm``'s graph: this runs for every genome the latency
    model prices, where a ``torch.export`` each would cost seconds."""
    from searchkit.spaces.bnas.ops import BinaryBlock, FactorizedReduce
    foldable = (nn.Conv2d, XnorConv2d)
    for mod in list(net.modules()):
        if isinstance(mod, nn.Sequential):
            kids = list(mod)
            for i in range(len(kids) - 1):
                if isinstance(kids[i], foldable) and type(kids[i + 1]) is nn.BatchNorm2d:
                    mod[i], mod[i + 1] = _fold(kids[i], *_affine(kids[i + 1])), nn.Identity()
        elif isinstance(mod, BinaryBlock) and type(mod.out) is nn.BatchNorm2d:
            mod.conv, mod.out = _fold(mod.conv, *_affine(mod.out)), nn.Identity()
        elif isinstance(mod, FactorizedReduce) and type(mod.bn) is nn.BatchNorm2d and isinstance(mod.a, nn.Conv2d):
            (g, b), n = _affine(mod.bn), mod.a.out_channels  # the norm reads cat(a(x), b(y))
            mod.a, mod.b, mod.bn = _fold(mod.a, g[:n], b[:n]), _fold(mod.b, g[n:], b[n:]), nn.Identity()


def xnor_program(net: nn.Module) -> nn.Module:
    """``net`` (in place, eval) as it deploys: every W1A1 ``BinaryConv2d`` as its
    :class:`XnorConv2d`, every W1A32 one as a plain conv of its binary weights, each BN that
    reads only a conv's output folded into it, pools channels-last. Per call this saves the
    weight binarization and a third of the passes over the activations."""
    from searchkit.spaces.bnas.binary import BinaryConv2d
    net.eval()
    for name, mod in list(net.named_modules()):
        parent, _, attr = name.rpartition(".")
        owner = net.get_submodule(parent) if parent else net
        if isinstance(mod, BinaryConv2d) and mod.binary_input:
            setattr(owner, attr, XnorConv2d.of(mod))
        elif isinstance(mod, BinaryConv2d):
            plain = nn.Conv2d(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,
                              mod.dilation, mod.groups, mod.bias is not None)
            plain.load_state_dict({"weight": mod.binary_weight().detach(),
                                   **({"bias": mod.bias.detach()} if mod.bias is not None else {})})
            setattr(owner, attr, plain.eval())
        elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            setattr(owner, attr, ChannelsLastPool(mod))
    with torch.no_grad():
        _fold_pairs(net)
    return net


__all__ = ["ChannelsLastPool", "ISAS", "XnorConv2d", "force_isa", "isa", "load", "pack", "popcounts", "unpack",
           "xnor_program"]
