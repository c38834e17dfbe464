"""The 1×N block-sparse CPU op ``torch.ops.searchkit.onexn_mm``: built once per machine from
``kernel.cpp`` (a C++ ``TORCH_LIBRARY`` op), with a fake kernel so ``torch.export`` and
``torch.compile`` keep it, and a pure-torch reference used where no compiler is found.

``onexn_mm(x, crow, col, values, coloff, bias, P, act)`` computes, per sample ``b``,
``y[b, r*N+i, p] = act(bias + Σ_k values[k, i] · x[b, coloff[col[k]] + p])`` over the blocks
``k`` of block row ``r`` (row-block CSR of N×1 blocks).

Example:
    >>> import torch
    >>> w = torch.zeros(8, 4); w[0:4, 1] = 1.0; w[4:8, 3] = 2.0       # two 4x1 blocks
    >>> x = torch.arange(12.0).reshape(1, 4, 3)                        # 4 channels, 3 pixels
    >>> crow, col, values = to_blocks(w, 4)
    >>> coloff = torch.arange(4) * 3
    >>> y = reference_mm(x.reshape(1, -1), crow, col, values, coloff, None, 3, 0)
    >>> torch.equal(y, (w @ x[0]).unsqueeze(0))
    True
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from searchkit.core import native

ISAS = ("portable", "avx2", "avx512")


def to_blocks(weight: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-block CSR of a (rows, cols) or (rows, cols, k, k) weight in N×1(×k×k) blocks:
    ``(crow, col, values)``, values ``[nnzb, N]`` or ``[nnzb, N, k·k]``; a block is stored when
    any of its entries is non-zero."""
    rows, cols = weight.shape[:2]
    if rows % n:
        raise ValueError(f"block size {n} does not divide {rows} rows")
    w = weight.detach().float().reshape(rows, cols, -1)
    blocks = w.reshape(rows // n, n, cols, w.shape[-1]).permute(0, 2, 1, 3)  # (R, cols, N, kk)
    nz = blocks.ne(0).flatten(2).any(-1)
    crow = torch.zeros(rows // n + 1, dtype=torch.int32)
    crow[1:] = nz.sum(1).cumsum(0).to(torch.int32)
    r, c = nz.nonzero(as_tuple=True)
    values = blocks[r, c]
    return crow, c.to(torch.int32), (values.squeeze(-1) if weight.dim() == 2 else values).contiguous()


def reference_mm(x, crow, col, values, coloff, bias, P: int, act: int) -> torch.Tensor:
    """The op in plain torch (the fallback and the tests' reference)."""
    rows_of = torch.repeat_interleave(torch.arange(crow.numel() - 1), (crow[1:] - crow[:-1]).long())
    n = values.shape[1]
    gather = coloff[col.long()].unsqueeze(1) + torch.arange(P)  # (nnzb, P) element indices
    xs = x[:, gather]                                           # (B, nnzb, P)
    contrib = values.unsqueeze(0).unsqueeze(-1) * xs.unsqueeze(2)  # (B, nnzb, N, P)
    y = x.new_zeros((x.shape[0], crow.numel() - 1, n, P))
    y.index_add_(1, rows_of, contrib)
    y = y.reshape(x.shape[0], -1, P)
    if bias is not None:
        y = y + bias.view(1, -1, 1)
    if act >= 1:
        y = y.clamp_min(0)
    if act == 2:
        y = y.clamp_max(6)
    return y


def _fake(x, crow, col, values, coloff, bias, P, act):
    return x.new_empty((x.shape[0], (crow.shape[0] - 1) * values.shape[1], P))


def _fake_conv(x, crow, col, values, bias, k, stride, act):
    rows = (crow.shape[0] - 1) * values.shape[1]
    if x.dim() == 2:
        return x.new_empty((x.shape[0], rows))
    return x.new_empty((x.shape[0], rows, (x.shape[2] + stride - 1) // stride, (x.shape[3] + stride - 1) // stride))


def build_dir() -> Path:
    return native.build_dir("onexn", Path(__file__).with_name("kernel.cpp"))


@functools.cache
def load() -> bool:
    """Build (once per machine, ~1 min) and load the compiled op; ``False`` with one warning
    if no compiler is found (then models run the pure-torch reference)."""
    return native.build("onexn", Path(__file__).with_name("kernel.cpp"),
                        {"searchkit::onexn_mm": _fake, "searchkit::onexn_conv": _fake_conv}, "1xN kernel")


def isa() -> str:
    """The instruction set the compiled op dispatches to on this CPU ("none" without it)."""
    return ISAS[torch.ops.searchkit.onexn_isa()] if load() else "none"


def force_isa(name: str | None) -> str:
    """Run at most ISA ``name`` (``None``: the best this CPU has); returns the one in force."""
    if not load():
        return "none"
    return ISAS[torch.ops.searchkit.onexn_force_isa(-1 if name is None else ISAS.index(name))]


def onexn_mm(x, crow, col, values, coloff, bias, P: int, act: int) -> torch.Tensor:
    if load():
        return torch.ops.searchkit.onexn_mm(x, crow, col, values, coloff, bias, P, act)
    return reference_mm(x, crow, col, values, coloff, bias, P, act)


__all__ = ["ISAS", "force_isa", "isa", "load", "onexn_mm", "reference_mm", "to_blocks"]
