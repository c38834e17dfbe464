"""The programs users ship: a BN-folded ``torch.export`` program and an ONNX file checked
by ONNX Runtime.

:func:`fold_batchnorm` finds every convolution whose only consumer is a BatchNorm in the
network's exported graph (so it works for any network ``torch.export`` can trace, with no
per-model code) and folds the BN's affine map into the convolution. :func:`save_program`
writes the folded network as ``model.pt2`` (its weights flat on the root module, so the
loaded program fetches each in one step); :func:`save_onnx` writes ``model.onnx``
(dynamic batch) and compares it with the torch network through onnxruntime.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    >>> folded, n = fold_batchnorm(net, (3, 8, 8))
    >>> n, type(folded[1]).__name__
    (1, 'Identity')
    >>> x = torch.randn(2, 3, 8, 8)
    >>> bool(torch.allclose(folded(x), net(x), atol=1e-5))
    True
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from searchkit.core.errors import UserError

log = logging.getLogger("searchkit")

ONNX_TOLERANCE = 1e-4  # largest |onnx - torch| relative to the output's largest magnitude
_BN = {torch.ops.aten.batch_norm.default, torch.ops.aten._native_batch_norm_legit_no_training.default}
_CONV = {torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default}


class DeployError(UserError):
    """An export that cannot be written or does not match the torch network (one line)."""


def _export(net: nn.Module, size: Sequence[int], dynamic: bool = True) -> torch.export.ExportedProgram:
    example = torch.zeros(2, *size)
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic else None
    with torch.no_grad():
        return torch.export.export(net, (example,), dynamic_shapes=shapes)


def fold_batchnorm(net: nn.Module, size: Sequence[int]) -> tuple[nn.Module, int]:
    """A copy of ``net`` (eval mode) with each BN that only follows a conv folded into it
    (the BN becomes ``nn.Identity``); returns it and the number folded. A conv or BN module
    called more than once, or a conv whose output has other consumers, stays as it is."""
    net = copy.deepcopy(net).eval()
    graph = _export(net, size, dynamic=False)
    sig = graph.graph_signature
    names = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    modules = dict(net.named_modules())
    pairs: list[tuple[str, str]] = []
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target not in _BN:
            continue
        conv = node.args[0]
        if not isinstance(conv, torch.fx.Node) or conv.target not in _CONV or len(conv.users) != 1:
            continue
        weight, mean = conv.args[1], node.args[3]
        if not all(isinstance(a, torch.fx.Node) and a.name in names and len(a.users) == 1 for a in (weight, mean)):
            continue  # a module called twice shares its placeholder between calls
        conv_path, bn_path = names[weight.name].rsplit(".", 1)[0], names[mean.name].rsplit(".", 1)[0]
        c, b = modules.get(conv_path), modules.get(bn_path)
        # Not into grouped convs: oneDNN's depthwise path runs up to 35 % slower with a bias
        # on small spatial sizes (measured on EfficientNet's 5x5 depthwise convs at 1-2 px).
        if type(c) is nn.Conv2d and c.groups == 1 and isinstance(b, nn.BatchNorm2d) and b.track_running_stats:
            pairs.append((conv_path, bn_path))
    for conv_path, bn_path in pairs:
        conv, bn = modules[conv_path], modules[bn_path]
        folded = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
        _set(net, conv_path, folded)
        _set(net, bn_path, nn.Identity())
    return net, len(pairs)


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


class FlatParameters(nn.Module):
    """``net`` with every parameter and buffer an attribute of the root module.

    A loaded ``torch.export`` program fetches each weight by its module path on every call
    (``getattr(self.blocks, "0").conv.weight``: one ``Module.__getattr__`` per level), which
    cost EfficientNet-style nets ~0.3 ms per batch-1 forward here, more than the eager
    network's own overhead; with flat names each weight is one attribute away.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self._net = [net]  # not a submodule: its tensors are registered here, flat
        named = [*((n, t, True) for n, t in net.named_parameters()), *((n, t, False) for n, t in net.named_buffers())]
        flat = [n.replace(".", "_") for n, _, _ in named]
        if len(set(flat)) != len(flat):
            flat = [f"t{i}" for i in range(len(named))]
        self._names = []
        for (name, tensor, param), short in zip(named, flat):
            (self.register_parameter if param else self.register_buffer)(short, tensor)
            self._names.append((name, short))

    def forward(self, x):
        return torch.func.functional_call(self._net[0], {n: getattr(self, s) for n, s in self._names}, (x,))


def save_program(net: nn.Module, size: Sequence[int], path: Path,
                 folded: tuple[nn.Module, int] | None = None) -> dict:
    """Write ``net`` (BN folded, weights flat, inference mode, any batch size) as a
    ``torch.export`` program; return what was done for ``arch.json``. ``folded``: what
    :func:`fold_batchnorm` already gave for ``net`` (one fold for several formats)."""
    folded, n = folded or fold_batchnorm(net, size)
    torch.export.save(_export(FlatParameters(folded), size), str(path))
    return {"file": Path(path).name, "batchnorm_folded": n, "dynamic_batch": True, "weights": "flat names",
            "load": f"torch.export.load('{Path(path).name}').module()(x)"}


def ort_session(path: str | Path, threads: int = 1, profile: str | Path | None = None):
    """An onnxruntime CPU session as deployed: all graph optimisations on, ``threads``
    intra-op threads, no inter-op parallelism (``profile``: a file prefix for the runtime's
    per-node profiler)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a declared dependency
        raise DeployError("onnxruntime is not installed (pip install onnxruntime)") from None
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if profile is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def to_onnx(net: nn.Module, size: Sequence[int], path: Path, folded: tuple[nn.Module, int] | None = None) -> int:
    """Write ``net`` BN-folded as ONNX with a dynamic batch (torch's dynamo exporter);
    returns the BNs folded."""
    folded, n = folded or fold_batchnorm(net, size)
    example = torch.zeros(2, *size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            torch.onnx.export(folded, (example,), str(path), dynamo=True, verbose=False, optimize=True,
                              input_names=["input"], output_names=["logits"], external_data=False,
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
        except Exception as exc:  # the exporter's own errors are many and long
            raise DeployError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") \
                from None
    return n


def compare_onnx(net: nn.Module, path: Path, size: Sequence[int], *, batch: int = 3, seed: int = 0) -> dict:
    """Largest difference between the ONNX file under onnxruntime and ``net`` on a random
    batch (absolute, and relative to the output's largest magnitude)."""
    x = torch.randn(batch, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = net.eval()(x).numpy()
    sess = ort_session(path)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    diff = float(np.abs(got - want).max())
    return {"max_abs_diff": diff, "max_rel_diff": diff / max(float(np.abs(want).max()), 1e-12), "batch": batch}


def save_onnx(net: nn.Module, size: Sequence[int], path: Path, *, tolerance: float = ONNX_TOLERANCE,
              folded: tuple[nn.Module, int] | None = None) -> dict:
    """Write and check ``model.onnx``; raise :class:`DeployError` (and delete the file) if
    onnxruntime's output differs from ``net``'s by more than ``tolerance`` (relative)."""
    import onnxruntime
    n = to_onnx(net, size, path, folded)
    check = compare_onnx(net, path, size)  # against the unfolded network: checks the fold too
    if check["max_rel_diff"] > tolerance:
        Path(path).unlink(missing_ok=True)
        raise DeployError(f"{Path(path).name}: onnxruntime's output differs from the torch network's by "
                          f"{check['max_rel_diff']:.2e} (relative; the limit is {tolerance:g})")
    return {"file": Path(path).name, "batchnorm_folded": n, "dynamic_batch": True, "input": "input",
            "output": "logits", "onnxruntime": onnxruntime.__version__, **check,
            "load": f"onnxruntime.InferenceSession('{Path(path).name}').run(None, {{'input': x}})[0]"}


FORMATS = ("pt2", "onnx", "all")


def parse_formats(value: str | None) -> tuple[str, ...]:
    """The export formats that ``format=`` names: pt2 (default), onnx, or all."""
    value = "pt2" if value in (None, "") else str(value)
    if value not in FORMATS:
        raise DeployError(f"unknown format '{value}' (choices: {', '.join(FORMATS)})")
    return ("pt2", "onnx") if value == "all" else (value,)
