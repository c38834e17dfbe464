"""The exported binary format: ``binary.safetensors``, read without pickle.

One safetensors file holds a W1A1 network's whole state: for every binary-input conv ``P``,
``P.words`` (int64, [groups, Cout/groups, kh·kw·⌈Cin/groups / 64⌉]: bit ``c % 64`` of word
``c // 64`` of a tap is ``W[o, c, ky, kx] >= 0``, taps row-major, zero bits past Cin/groups)
and ``P.scale`` (float32, [Cout]: the conv computes ``scale[o] · Σ sign(x)·sign(W)``), plus
``P.bias`` if it has one; every other tensor under its state-dict name. The metadata's
``searchkit`` entry (JSON) gives the format and, per conv, its geometry (in, out, k, stride,
padding, dilation, groups). A W1A1 conv's weights take 1 bit each (the float file, 32).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from searchkit.spaces.bnas import BNASOptions, BNASSpace
    >>> space = BNASSpace(BNASOptions(preset="binary", C=8, cells=3))
    >>> genome = space.base_genome()
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_binary(space, space.build(genome), folder, program=False)
    {'binary': 'binary.safetensors'}
    >>> layers, tensors = read_binary(folder / "binary.safetensors")
    >>> len(layers), tensors["cells.0.ops.0.0.conv.words"].dtype
    (24, torch.int64)
"""

from __future__ import annotations

from pathlib import Path

import torch

from searchkit.core import tensorfile
from searchkit.core.errors import UserError

FORMAT = "searchkit-xnor/1"


class BinaryFormatError(UserError):
    """A binary weight file that is unreadable, malformed or of another architecture."""


def write_binary(space, built, folder, *, program: bool = True) -> dict[str, str]:
    """Write ``binary.safetensors`` (and ``model_xnor.pt2``) for a network with W1A1 convs;
    ``{}`` for one without. Fails if the packed program differs from the network by > 1e-4."""
    from searchkit.spaces.bnas.xnor import XnorConv2d, xnor_program
    import copy
    net = built.net.to("cpu").eval()
    prog = xnor_program(copy.deepcopy(net))
    layers = {name: _geometry(m) for name, m in prog.named_modules() if isinstance(m, XnorConv2d)}
    if not layers:
        return {}
    # Folding and the op's exact sums round differently from the float net, so a value at a
    # sign's boundary can flip and change the output (about one input in a hundred): a
    # program is wrong only if no one of three inputs matches.
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(2, *space.input_size(), generator=gen)
        with torch.no_grad():
            want, got = net(x), prog(x)
        diff = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
        if diff <= 1e-4:
            break
    else:
        raise BinaryFormatError(f"the XNOR program differs from the network by {diff:.1e} (relative)")
    folder = Path(folder)
    state = {k: v for k, v in prog.state_dict().items() if not k.endswith(".popcounts")}  # derived on load
    tensorfile.write(folder / "binary.safetensors", state, FORMAT, {"layers": layers})
    files = {"binary": "binary.safetensors"}
    if program:
        batch = torch.export.Dim("batch", min=1, max=4096)
        ep = torch.export.export(prog, (torch.zeros(2, *space.input_size()),), dynamic_shapes=({0: batch},))
        torch.export.save(ep, folder / "model_xnor.pt2")
        files["xnor_program"] = "model_xnor.pt2"
    return files


def _geometry(m) -> dict:
    return {"in": m.in_channels, "out": int(m.scale.numel()), "k": list(m.kernel_size), "stride": m.stride,
            "padding": m.padding, "dilation": m.dilation, "groups": m.groups}


def read_binary(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(layers, tensors)`` of a binary file, every packed conv's shape and padding bits
    checked; one-line :class:`BinaryFormatError` for anything malformed."""
    path = Path(path)
    info, tensors = tensorfile.read(path, FORMAT, BinaryFormatError, "binary")
    layers = info.get("layers")
    if not isinstance(layers, dict):
        raise BinaryFormatError(f"{path.name}: its metadata lists no layers")
    for name, g in layers.items():
        try:
            words, scale = tensors[f"{name}.words"], tensors[f"{name}.scale"]
            cin, cout, groups, (kh, kw) = int(g["in"]), int(g["out"]), int(g["groups"]), g["k"]
        except (KeyError, TypeError, ValueError) as exc:
            raise BinaryFormatError(f"{path.name}: layer '{name}' lacks {exc}") from None
        if groups < 1 or cin % groups or cout % groups:
            raise BinaryFormatError(f"{path.name}: layer '{name}' has {groups} groups for {cin}->{cout} channels")
        n = -(-(cin // groups) // 64)
        if words.dtype != torch.int64 or tuple(words.shape) != (groups, cout // groups, kh * kw * n):
            raise BinaryFormatError(f"{path.name}: layer '{name}' words are {words.dtype} {tuple(words.shape)}, "
                                    f"expected int64 {(groups, cout // groups, kh * kw * n)}")
        if scale.dtype != torch.float32 or scale.numel() != cout:
            raise BinaryFormatError(f"{path.name}: layer '{name}' needs {cout} float32 scales")
        spare = n * 64 - cin // groups  # bits past the channels must be zero: they would count as matches
        if spare and bool((words.reshape(-1, n)[:, -1] >> (64 - spare)).ne(0).any()):
            raise BinaryFormatError(f"{path.name}: layer '{name}' sets bits past its {cin // groups} channels")
    return layers, tensors


def load_binary(space, genome, path) -> torch.nn.Module:
    """The XNOR program of ``genome`` with the weights of a binary file (checked to be of this
    architecture)."""
    from searchkit.spaces.bnas.xnor import XnorConv2d, popcounts, xnor_program
    layers, tensors = read_binary(path)
    prog = xnor_program(space.build(genome).net.eval())
    convs = {name: m for name, m in prog.named_modules() if isinstance(m, XnorConv2d)}
    name = Path(path).name
    if set(layers) != set(convs):
        raise BinaryFormatError(f"{name} is of another architecture ({len(set(layers) ^ set(convs))} "
                                "binary convs differ from the genome's)")
    for layer, m in convs.items():
        if layers[layer] != _geometry(m):
            raise BinaryFormatError(f"{name}: layer '{layer}' is {layers[layer]}, the genome's is {_geometry(m)}")
        tensors[f"{layer}.popcounts"] = popcounts(tensors[f"{layer}.words"], m.kernel_size[0] * m.kernel_size[1])
    missing, unexpected = prog.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise BinaryFormatError(f"{name} is of another architecture (missing {missing[:2]}, "
                                f"unexpected {unexpected[:2]})")
    return prog


__all__ = ["BinaryFormatError", "FORMAT", "load_binary", "read_binary", "write_binary"]
