"""Binarized layers in plain torch (CPU and CUDA): sign with a straight-through estimator and
binary convolutions with real-valued scales.

- :func:`binarize` — ``sign(x)`` (``+1`` at 0) forward; backward passes the gradient where
  ``|x| <= 1`` (the clipped STE of BinaryConnect/XNOR-Net) or, ``approx=True``, Bi-Real's
  ApproxSign derivative ``2 - 2|x|`` there.
- :class:`BinaryConv2d` — ``alpha * sign(W)`` weights (W1A32: real activations, as BNAS
  released them), ``alpha = mean|W|`` per layer or per output channel; ``binary_input=True``
  also binarizes the input (W1A1: XNOR-popcount arithmetic at inference).

Example:
    >>> import torch
    >>> conv = BinaryConv2d(4, 8, 3, padding=1, scaling="channel", binary_input=True)
    >>> x = torch.randn(2, 4, 5, 5, requires_grad=True)
    >>> y = conv(x); y.sum().backward()
    >>> tuple(y.shape), bool(x.grad.abs().sum() > 0), bool(conv.weight.grad.abs().sum() > 0)
    ((2, 8, 5, 5), True, True)
    >>> w = conv.binary_weight()
    >>> bool(((w / w.abs()).abs() == 1).all()), w.abs().flatten(1).std(1).max().item() < 1e-6
    (True, True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SCALINGS = ("layer", "channel", "none")


class _Sign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, approx: bool):
        ctx.save_for_backward(x)
        ctx.approx = approx
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        inside = x.abs() <= 1
        if ctx.approx:
            return grad * (2 - 2 * x.abs()) * inside, None
        return grad * inside, None


def binarize(x: torch.Tensor, approx: bool = False) -> torch.Tensor:
    """``sign(x)`` in {-1, +1} with a clipped straight-through gradient."""
    return _Sign.apply(x, approx)


class BinaryConv2d(nn.Conv2d):
    """A conv whose weights are ``alpha * sign(W)`` (and inputs ``sign(x)`` with ``binary_input``)."""

    def __init__(self, *args, scaling: str = "layer", binary_input: bool = False, approx: bool = False, **kw):
        super().__init__(*args, **kw)
        if scaling not in SCALINGS:
            raise ValueError(f"scaling={scaling!r} is not one of {SCALINGS}")
        self.scaling, self.binary_input, self.approx = scaling, bool(binary_input), bool(approx)

    def scale(self) -> torch.Tensor:
        w = self.weight
        if self.scaling == "channel":
            return w.abs().mean(dim=(1, 2, 3), keepdim=True)
        if self.scaling == "layer":
            return w.abs().mean()
        return torch.ones((), dtype=w.dtype, device=w.device)

    def binary_weight(self) -> torch.Tensor:
        # the scale is a real-valued statistic of W: its gradient flows too (XNOR-Net)
        return self.scale() * binarize(self.weight, self.approx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.binary_input:
            x = binarize(x, self.approx)
        return F.conv2d(x, self.binary_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scaling={self.scaling}, binary_input={self.binary_input}"


__all__ = ["BinaryConv2d", "SCALINGS", "binarize"]
