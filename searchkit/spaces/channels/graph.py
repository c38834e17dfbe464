"""Channel units of any network, found by tracing which channels are coupled.

Torch-Pruning's dependency graph (DepGraph) traces one forward of the base and groups every
channel dimension that must shrink together: a conv's outputs with its BatchNorm, the
depthwise convs that carry them, the SE layers that read and rescale them, every conv that
reads them (at an offset after a concatenation, repeated after a flatten) and, through each
residual addition, every other producer of the same stream. Each group becomes one
:class:`~searchkit.spaces.channels.surgery.ChannelUnit`, so the surgery, the cost table and
the latency map treat traced and hand-listed units alike, and a unit stays plain JSON.

A group is kept only when the surgery can cut it exactly: its parametric members are
Conv2d (dense or depthwise), Linear and BatchNorm; its index map is ``offset + c * repeat``
per channel ``c``; something reads it (an unread group is the network's output). Groups
through grouped (non-depthwise) convs, LayerNorm, bare parameters (layer scales), channel
splits or shuffles are left unpruned. :func:`graph_units` then checks each unit by cutting
one channel and running the model.

Example:
    >>> import torchvision
    >>> net = torchvision.models.mobilenet_v3_small(num_classes=10)
    >>> units = graph_units(net, (3, 32, 32))
    >>> len(units), len(graph_units(net, (3, 32, 32), mode="inner")) < len(units)
    (27, True)
"""

from __future__ import annotations

import contextlib
import logging
from typing import Sequence

import torch
from torch import nn

from searchkit.spaces.channels.surgery import ChannelUnit, apply_history

MODES = ("inner", "all")
log = logging.getLogger("searchkit")


def _optype():
    from torch_pruning.ops import OPTYPE
    return OPTYPE


@contextlib.contextmanager
def _evaluating(model: nn.Module):
    """``model`` in eval mode; every module's own mode restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model.eval()
    finally:
        for m, mode in modes:
            m.training = mode


def _trace(model: nn.Module, input_size: Sequence[int]):
    import torch_pruning as tp
    ref = next(iter(model.parameters()), None)
    x = torch.zeros((1, *input_size), device=ref.device if ref is not None else None,
                    dtype=ref.dtype if ref is not None else None)
    with _evaluating(model):
        return tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False)


def _members(group, names: dict, channels: int):
    """``(roles, residual)`` of one group, or ``None`` when the surgery cannot cut it.

    ``roles``: ``{(path, role): (offset, repeat)}`` with role producer/consumer/norm/depthwise.
    """
    op = _optype()
    roles: dict[tuple[str, str], tuple[int, int]] = {}
    residual = False
    for item in group:
        node, handler = item.dep.target, getattr(item.dep.handler, "__name__", "")
        mod = node.module
        if node.type in (op.ELEMENTWISE, op.CONCAT, op.RESHAPE, op.EXPAND, op.OUTPUT):
            residual |= node.grad_fn is not None and type(node.grad_fn).__name__.startswith("Add")
            continue
        path = names.get(mod)
        if path is None:
            return None
        if node.type == op.DEPTHWISE_CONV:
            if not (isinstance(mod, nn.Conv2d) and mod.groups == mod.in_channels == mod.out_channels):
                return None
            role = "depthwise"
        elif node.type in (op.CONV, op.LINEAR):
            if isinstance(mod, nn.Conv2d) and mod.groups != 1:
                return None
            if not isinstance(mod, (nn.Conv2d, nn.Linear)):
                return None
            role = {"prune_out_channels": "producer", "prune_in_channels": "consumer"}.get(handler)
            if role is None:
                return None
        elif node.type == op.BN and isinstance(mod, nn.modules.batchnorm._BatchNorm):
            role = "norm"
        else:
            return None  # LayerNorm, GroupNorm, PReLU, bare parameters, splits, attention...
        idxs = sorted(int(i) for i in item.idxs)
        if not idxs or len(idxs) % channels:
            return None
        off, rep = idxs[0], len(idxs) // channels
        if idxs != list(range(off, off + len(idxs))):
            return None
        if roles.get((path, role), (off, rep)) != (off, rep):
            return None
        roles[(path, role)] = (off, rep)
    # an addition joining two producers (a Linear's own bias add on a 3-d input is no stream)
    return roles, residual and sum(role == "producer" for _, role in roles) > 1


def _maps_per_channel(DG, root, handler, roles, names, channels: int) -> bool:
    """Whether channel ``c`` of the root maps to ``offset + c * repeat + r`` in every member
    (not a permutation, as a channel shuffle would make it)."""
    for c in (1,):  # a shuffle moves channel 1; a contiguous range checked the ends already
        seen = {}
        for item in DG.get_pruning_group(root, handler, [c]):
            path = names.get(item.dep.target.module)
            role = _role_of(item)
            if path is None or role is None or (path, role) not in roles:
                continue
            seen[(path, role)] = sorted(int(i) for i in item.idxs)
        for key, (off, rep) in roles.items():
            if seen.get(key) != list(range(off + c * rep, off + (c + 1) * rep)):
                return False
    return True


def _role_of(item) -> str | None:
    op = _optype()
    t = item.dep.target.type
    if t == op.DEPTHWISE_CONV:
        return "depthwise"
    if t == op.BN:
        return "norm"
    if t in (op.CONV, op.LINEAR):
        return {"prune_out_channels": "producer",
                "prune_in_channels": "consumer"}.get(getattr(item.dep.handler, "__name__", ""))
    return None


def _unit(name: str, channels: int, roles: dict, model: nn.Module) -> ChannelUnit:
    from searchkit.spaces.channels.surgery import _width
    by_role: dict[str, list[str]] = {"producer": [], "consumer": [], "norm": [], "depthwise": []}
    slices = []
    for (path, role), (off, rep) in roles.items():
        by_role[role].append(path)
        width = _width(model.get_submodule(path), "in" if role == "consumer" else "out")
        if (off, rep) != (0, 1) or width != channels:  # part of a wider dimension
            slices.append((role, path, off, rep))
    return ChannelUnit(name, channels, tuple(by_role["producer"]), tuple(by_role["norm"]),
                       tuple(by_role["consumer"]), tuple(by_role["depthwise"]), tuple(sorted(slices)))


def graph_units(model: nn.Module, input_size: Sequence[int], *, mode: str = "all",
                check: bool = True) -> list[ChannelUnit]:
    """The prunable channel units of any ``model``, traced at ``input_size`` ``(C, H, W)``.

    Args:
        model: the base network (not changed).
        input_size: one input's shape, at which the model must run.
        mode: ``"all"`` (every cuttable group, residual streams too) or ``"inner"`` (groups
            that no residual addition joins: block-inner widths).
        check: cut one channel of each unit and run the model; a unit that fails is dropped.

    Returns:
        The units in the order of their root module in ``model.named_modules()``.

    Raises:
        ValueError: when the model does not run at ``input_size`` or has no cuttable group.
    """
    if mode not in MODES:
        raise ValueError(f"space.units={mode} is not valid (choices: auto, {', '.join(MODES)})")
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    def first_line(exc: Exception) -> str:
        return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    try:
        _run(model, input_size)
    except Exception as exc:  # noqa: BLE001 - the user's model not running is said in one line
        raise ValueError(f"{type(model).__name__} does not run on a {tuple(input_size)} input "
                         f"({first_line(exc)})") from None
    try:
        DG = _trace(model, input_size)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"the channel dependencies of {type(model).__name__} cannot be traced "
                         f"({first_line(exc)})") from None
    import torch_pruning as tp
    units, again = [], []

    def add(group, root, handler) -> None:
        channels = root.out_channels if isinstance(root, nn.Conv2d) else root.out_features
        got = _members(group, names, channels) if channels >= 2 else None
        if got is None:
            # a group rooted at a concatenation (a depthwise conv after a cat) is cut per input
            again.extend(it.dep.target.module for it in group[1:] if _role_of(it) == "producer")
            return
        roles, residual = got
        if not any(role == "consumer" for _, role in roles) or (mode == "inner" and residual):
            return
        if not _maps_per_channel(DG, root, handler, roles, names, channels):
            return
        producers = [p for p, role in roles if role == "producer"]
        units.append(_unit(min(producers, key=order.get), channels, roles, model))

    for group in DG.get_all_groups(root_module_types=(nn.Conv2d, nn.Linear)):
        root = group[0].dep.target.module
        if root in names and isinstance(root, (nn.Conv2d, nn.Linear)):
            add(group, root, group[0].dep.handler)
    for root in dict.fromkeys(again):
        if any(names[root] in u.producers for u in units):
            continue
        fn = tp.prune_conv_out_channels if isinstance(root, nn.Conv2d) else tp.prune_linear_out_channels
        width = root.out_channels if isinstance(root, nn.Conv2d) else root.out_features
        add(DG.get_pruning_group(root, fn, list(range(width))), root, fn)
    units.sort(key=lambda u: order[u.name])
    if check:
        units = _working(model, units, input_size)
    if not units:
        raise ValueError(f"no prunable channel group found in {type(model).__name__} "
                         f"(space.units={mode})")
    return units


def _run(model: nn.Module, input_size) -> torch.Size:
    with _evaluating(model), torch.no_grad():
        return model(torch.zeros((1, *input_size))).shape


def _working(model: nn.Module, units: list[ChannelUnit], input_size) -> list[ChannelUnit]:
    """The units that cut cleanly, found by halving: one build when all do."""
    if not units or _cuts(model, units, input_size):
        return units
    if len(units) == 1:
        return []
    half = len(units) // 2
    return _working(model, units[:half], input_size) + _working(model, units[half:], input_size)


def _cuts(model: nn.Module, units: list[ChannelUnit], input_size) -> bool:
    """Cutting one channel of each unit builds a model that runs with the same output shape."""
    x = torch.zeros((1, *input_size))
    try:
        with _evaluating(model), torch.no_grad():
            want = model(x).shape
            small = apply_history(model, units, {u.name: list(range(1, u.channels)) for u in units})
            return small.eval()(x).shape == want
    except Exception as exc:  # noqa: BLE001 - a group the surgery gets wrong is left unpruned
        log.debug("units %s of %s fail: %s", [u.name for u in units][:3], type(model).__name__, exc)
        return False


__all__ = ["graph_units", "MODES"]
