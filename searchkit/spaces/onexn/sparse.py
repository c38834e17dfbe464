"""1×N masks, the block-sparse layer, and the sparse program: what ``space=onexn`` trains
and ships.

A 1×N block is N consecutive output channels × 1 input channel (× k×k). :func:`block_mask`
zeroes the ⌊p·#blocks⌋ blocks of lowest L1 norm; :func:`fix_mask` keeps them zero while
the network fine-tunes; :func:`to_sparse_program` folds BatchNorm, converts every masked
layer into a :class:`BlockSparseConv2d` (running ``torch.ops.searchkit.onexn_mm``) and fuses
a following ReLU/ReLU6 into it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> conv = nn.Conv2d(8, 16, 1, bias=False)
    >>> mask = block_mask(conv.weight, 4, 0.5)
    >>> int(mask.sum()) == 16 * 8 // 2, bool(mask.view(4, 4, 8).all(1).eq(mask.view(4, 4, 8).any(1)).all())
    (True, True)
    >>> fix_mask(conv, mask)
    >>> sparse = BlockSparseConv2d.from_dense(conv.weight, None, conv, 4)
    >>> x = torch.randn(2, 8, 5, 5)
    >>> bool(torch.allclose(sparse(x), conv(x), atol=1e-5)), sparse.values.shape[0]
    (True, 16)
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from searchkit.spaces.onexn import kernel

ACTS = {nn.ReLU: 1, nn.ReLU6: 2, F.relu: 1, F.relu6: 2, torch.relu: 1}


def block_scores(weight: torch.Tensor, n: int) -> torch.Tensor:
    """L1 norm of every N×1(×k×k) block: ``(Cout // N, Cin)``."""
    w = weight.detach().reshape(weight.shape[0], weight.shape[1], -1)
    return w.abs().reshape(w.shape[0] // n, n, w.shape[1], w.shape[2]).sum((1, 3))


def block_mask(weight: torch.Tensor, n: int, p: float) -> torch.Tensor:
    """A 0/1 mask of ``weight``'s shape zeroing the ⌊p·#blocks⌋ blocks of lowest L1 norm."""
    scores = block_scores(weight, n)
    drop = int(p * scores.numel())
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    if drop:
        keep[torch.argsort(scores.flatten(), stable=True)[:drop]] = False
    keep = keep.view(scores.shape)
    full = keep.unsqueeze(1).expand(scores.shape[0], n, scores.shape[1]).reshape(weight.shape[0], weight.shape[1])
    return full.reshape(weight.shape[0], weight.shape[1], *([1] * (weight.dim() - 2))).expand_as(weight).to(weight.dtype)


class _MaskGrad:
    """A weight-gradient hook zeroing the masked entries (picklable; follows the device)."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask.detach().clone()

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        if self.mask.device != grad.device:
            self.mask = self.mask.to(grad.device)
        return grad * self.mask


def fix_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Zero the masked weights of ``module`` and keep them zero while it trains.

    The weights are zeroed once and their gradients masked: SGD (momentum, weight decay)
    and Adam then never move a zero, and the module stays a plain ``nn.Conv2d``/``nn.Linear``
    (its state dict and exported program are the dense network's).
    """
    with torch.no_grad():
        module.weight.mul_(mask)
    module.weight.register_hook(_MaskGrad(mask))


def supported(mod: nn.Module) -> bool:
    """Layers the kernel runs: linear layers and ungrouped convs (k×k at stride 1 with
    'same' padding; 1×1 at any stride)."""
    if isinstance(mod, nn.Linear):
        return True
    if not isinstance(mod, nn.Conv2d) or mod.groups != 1 or mod.dilation != (1, 1) or mod.padding_mode != "zeros":
        return False
    kh, kw = mod.kernel_size
    if (kh, kw) == (1, 1):
        return mod.padding == (0, 0)
    return kh == kw and kh % 2 == 1 and mod.stride == (1, 1) and mod.padding == (kh // 2, kw // 2)


class BlockSparseConv2d(nn.Module):
    """A conv or linear layer whose weight is stored as row-block CSR of N×1(×k×k) blocks.

    Buffers are torch's BSR components of the (Cout, Cin·k·k) matrix with (N, k·k) blocks:
    ``crow_indices``, ``col_indices`` (the input channel), ``values`` [nnzb, N, k·k].
    """

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None,
                 *, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 linear: bool = False, act: int = 0):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.linear, self.act = int(kernel_size), int(stride), bool(linear), int(act)
        self.n = int(values.shape[1])
        # decided once, here: a plain attribute is a constant to torch.compile (load() is not traceable)
        self.native = kernel.load()
        kk = self.kernel_size ** 2
        self.register_buffer("crow_indices", crow.to(torch.int32))
        self.register_buffer("col_indices", col.to(torch.int32))
        self.register_buffer("values", values.float().reshape(-1, self.n, kk))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        # The kernel's form: one N-vector per (block, ky, kx), column c*k*k + t.
        t = torch.arange(kk, dtype=torch.int32)
        self.register_buffer("_kcrow", crow.to(torch.int32) * kk, persistent=False)
        self.register_buffer("_kcol", (col.to(torch.int32).unsqueeze(1) * kk + t).reshape(-1), persistent=False)
        self.register_buffer("_kvals", self.values.permute(0, 2, 1).reshape(-1, self.n).contiguous(), persistent=False)

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None, like: nn.Module, n: int,
                   act: int = 0) -> "BlockSparseConv2d":
        """The layer for a (masked) dense weight of ``like`` (an ``nn.Conv2d`` or ``nn.Linear``)."""
        linear = isinstance(like, nn.Linear)
        k = 1 if linear else like.kernel_size[0]
        cout, cin = weight.shape[0], weight.shape[1]
        crow, col, values = kernel.to_blocks(weight.reshape(cout, cin, k, k), n)
        return cls(crow, col, values, bias, in_channels=cin, out_channels=cout,
                   kernel_size=k, stride=1 if linear else like.stride[0], linear=linear, act=act)

    def dense_weight(self) -> torch.Tensor:
        """The dense weight these blocks stand for (Cout, Cin, k, k) or (Cout, Cin)."""
        k, n = self.kernel_size, self.n
        dense = torch.zeros(self.out_channels // n, self.in_channels, n, k * k)
        rows = torch.repeat_interleave(torch.arange(self.out_channels // n),
                                       (self.crow_indices[1:] - self.crow_indices[:-1]).long())
        dense[rows, self.col_indices.long()] = self.values
        dense = dense.permute(0, 2, 1, 3).reshape(self.out_channels, self.in_channels, k, k)
        return dense.reshape(self.out_channels, self.in_channels) if self.linear else dense

    def _activate(self, y: torch.Tensor) -> torch.Tensor:
        return F.relu6(y) if self.act == 2 else F.relu(y) if self.act == 1 else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.native:  # no compiler: the same function, densely
            w = self.dense_weight()
            y = F.linear(x, w, self.bias) if self.linear else F.conv2d(
                x, w, self.bias, stride=self.stride, padding=self.kernel_size // 2)
            return self._activate(y)
        return torch.ops.searchkit.onexn_conv(x, self._kcrow, self._kcol, self._kvals, self.bias,
                                              self.kernel_size, self.stride, self.act)

    def extra_repr(self) -> str:
        density = self.values.shape[0] / max(1, (self.out_channels // self.n) * self.in_channels)
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"N={self.n}, density={density:.3f}, act={self.act}")


def to_sparse_program(model: nn.Module, blocks: dict[str, int]) -> nn.Module:
    """A copy of ``model`` (eval mode) with BatchNorm folded into the preceding
    convs, each layer in ``blocks`` (path -> N) that the kernel runs as a
    :class:`BlockSparseConv2d`, and a ReLU/ReLU6 that only it feeds fused into it."""
    from torch.fx.experimental.optimization import fuse
    net = copy.deepcopy(model).eval()
    gm = fuse(net)  # conv+BN folding, the fx way (keeps module paths)
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node.target not in blocks:
            continue
        mod = modules[node.target]
        if not supported(mod):
            continue
        act, users = 0, list(node.users)
        if len(users) == 1:
            u = users[0]
            fn = type(modules[u.target]) if u.op == "call_module" else u.target if u.op == "call_function" else None
            if fn in ACTS and len(u.args) >= 1 and u.args[0] is node:
                act = ACTS[fn]
                u.replace_all_uses_with(node)
                gm.graph.erase_node(u)
        new = BlockSparseConv2d.from_dense(mod.weight, mod.bias, mod, blocks[node.target], act=act)
        parent, _, name = node.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, new)
    gm.graph.lint()
    gm.recompile()
    return gm


__all__ = ["BlockSparseConv2d", "block_mask", "block_scores", "fix_mask", "supported",
           "to_sparse_program"]
