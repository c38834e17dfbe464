"""The exported 1×N format: ``sparse.safetensors``, read without pickle.

One safetensors file holds the whole sparse program's state (BatchNorm already folded into
the convs, filter permutations folded into the weights): for every block-sparse layer
``P`` the tensors ``P.crow_indices`` (int32, Cout/N + 1), ``P.col_indices`` (int32, input
channel of each block) and ``P.values`` (float32, [nnzb, N, k·k]) — torch's BSR components
of the (Cout, Cin·k·k) weight matrix with (N, k·k) blocks — and ``P.bias``; every other
tensor under its state-dict name. The metadata's ``searchkit`` entry (JSON) gives the
format version and, per layer, N and its geometry (in, out, k, stride, linear, act).

Example:
    >>> import json, tempfile, torch
    >>> from pathlib import Path
    >>> from searchkit.models import build_base
    >>> from searchkit.spaces.onexn import OneXNOptions, OneXNSpace
    >>> space = OneXNSpace(OneXNOptions(model="resnet20"), build_base("resnet20"))
    >>> built = space.build(space.uniform(4, 0.5))
    >>> folder = Path(tempfile.mkdtemp())
    >>> sorted(write_sparse(space, built, folder, program=False).values())
    ['sparse.safetensors']
    >>> layers, tensors = read_sparse(folder / "sparse.safetensors")
    >>> layers["layer1.0.conv1"]["N"], tuple(tensors["layer1.0.conv1.values"].shape)
    (4, (32, 4, 9))
"""

from __future__ import annotations

from pathlib import Path

import torch

from searchkit.core import tensorfile
from searchkit.core.errors import UserError

FORMAT = "searchkit-onexn/1"


class SparseFormatError(UserError):
    """A sparse weight file that is unreadable, malformed or of another architecture."""


def program_of(space, built):
    """The sparse program of a built (fine-tuned) candidate (its recipe names each layer's N)."""
    from searchkit.spaces.onexn.sparse import to_sparse_program
    return to_sparse_program(built.net.to("cpu").eval(), dict(built.recipe["block_sizes"]))


def write_sparse(space, built, folder, *, program: bool = True) -> dict[str, str]:
    """Write ``sparse.safetensors`` (and ``model_sparse.pt2``) for ``built``; ``{role: file}``."""
    from searchkit.spaces.onexn.sparse import BlockSparseConv2d
    folder = Path(folder)
    prog = program_of(space, built)
    layers = {name: {"N": mod.n, "in": mod.in_channels, "out": mod.out_channels, "k": mod.kernel_size,
                     "stride": mod.stride, "linear": mod.linear, "act": mod.act}
              for name, mod in prog.named_modules() if isinstance(mod, BlockSparseConv2d)}
    x = torch.randn(2, *space.input_size())
    with torch.no_grad():
        want, got = built.net(x), prog(x)
    diff = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
    if diff > 1e-4:
        raise SparseFormatError(f"the sparse program differs from the masked network by {diff:.1e} (relative)")
    tensorfile.write(folder / "sparse.safetensors", prog.state_dict(), FORMAT,
                     {"model": space.options.model, "layers": layers})
    files = {"sparse": "sparse.safetensors"}
    if program:
        size = tuple(space.input_size())
        batch = torch.export.Dim("batch", min=1, max=4096)
        ep = torch.export.export(prog, (torch.zeros(2, *size),), dynamic_shapes=({0: batch},))
        torch.export.save(ep, folder / "model_sparse.pt2")
        files["sparse_program"] = "model_sparse.pt2"
    return files


def read_sparse(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(layers, tensors)`` of a sparse file, every block index checked; one-line
    :class:`SparseFormatError` for anything malformed."""
    path = Path(path)
    info, tensors = tensorfile.read(path, FORMAT, SparseFormatError, "1xN")
    for name, g in info.get("layers", {}).items():
        try:
            crow, col, val = (tensors[f"{name}.{k}"] for k in ("crow_indices", "col_indices", "values"))
        except KeyError as exc:
            raise SparseFormatError(f"{path.name}: layer '{name}' lacks {exc.args[0]}")
        n, cin, cout, k = int(g["N"]), int(g["in"]), int(g["out"]), int(g["k"])
        if n < 1 or cout % n or crow.dtype != torch.int32 or col.dtype != torch.int32:
            raise SparseFormatError(f"{path.name}: layer '{name}' has a bad block size or index type")
        nnzb = col.numel()
        if (crow.numel() != cout // n + 1 or int(crow[0]) != 0 or int(crow[-1]) != nnzb
                or bool((crow[1:] < crow[:-1]).any())):
            raise SparseFormatError(f"{path.name}: layer '{name}' has malformed crow_indices")
        if nnzb and (int(col.min()) < 0 or int(col.max()) >= cin):
            raise SparseFormatError(f"{path.name}: layer '{name}' has a block column outside [0, {cin})")
        if tuple(val.shape) != (nnzb, n, k * k):
            raise SparseFormatError(f"{path.name}: layer '{name}' values have shape {tuple(val.shape)}, "
                                    f"expected {(nnzb, n, k * k)}")
    return info["layers"], tensors


def load_sparse(space, genome, path) -> torch.nn.Module:
    """The sparse program of ``genome`` with the weights of a sparse file (checked to be of
    this architecture)."""
    from searchkit.spaces.onexn.sparse import BlockSparseConv2d, to_sparse_program
    layers, tensors = read_sparse(path)
    built = space.build(genome)
    prog = to_sparse_program(built.net.eval(), dict(built.recipe["block_sizes"]))
    want = {name for name, m in prog.named_modules() if isinstance(m, BlockSparseConv2d)}
    if set(layers) != want:
        raise SparseFormatError(f"{Path(path).name} is of another architecture "
                                f"({len(set(layers) ^ want)} block-sparse layers differ from the genome's)")
    for name in want:
        g, m = layers[name], prog.get_submodule(name)
        if (g["in"], g["out"], g["k"], g["N"]) != (m.in_channels, m.out_channels, m.kernel_size, m.n):
            raise SparseFormatError(f"{Path(path).name}: layer '{name}' is {g['in']}->{g['out']} k{g['k']} "
                                    f"N={g['N']}, the genome's is {m.in_channels}->{m.out_channels} "
                                    f"k{m.kernel_size} N={m.n}")
        new = BlockSparseConv2d(tensors[f"{name}.crow_indices"], tensors[f"{name}.col_indices"],
                                tensors[f"{name}.values"], tensors.get(f"{name}.bias"), in_channels=m.in_channels,
                                out_channels=m.out_channels, kernel_size=m.kernel_size, stride=m.stride,
                                linear=m.linear, act=int(g["act"]))
        parent, _, attr = name.rpartition(".")
        setattr(prog.get_submodule(parent) if parent else prog, attr, new)
    rest = {k: v for k, v in tensors.items() if k.rpartition(".")[0] not in want}
    missing, unexpected = prog.load_state_dict(rest, strict=False)
    missing = [k for k in missing if k.rpartition(".")[0] not in want]
    if missing or unexpected:
        raise SparseFormatError(f"{Path(path).name} is of another architecture "
                                f"(missing {missing[:2]}, unexpected {unexpected[:2]})")
    return prog


__all__ = ["FORMAT", "SparseFormatError", "load_sparse", "program_of", "read_sparse", "write_sparse"]
