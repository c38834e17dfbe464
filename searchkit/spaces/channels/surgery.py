"""Physical channel pruning: find prunable channel units, keep some channels, rebuild.

A :class:`ChannelUnit` is one group of coupled channels: the output channels of its
*producers* (Conv2d/Linear), the BatchNorms on them, any depthwise convs that carry
them through, and the input channels of its *consumers*. Pruning a unit to ``k``
channels replaces every one of those modules by a physically smaller one holding the
kept slices of the weights, biases and BN statistics.

Units discovered by :func:`channel_units` (in ``model.named_modules()`` order):

* VGG (:class:`~searchkit.models.vgg.VGGCifar`): one unit per conv (13 for VGG-16, as
  ABCPruner), named after the conv (``"features.0"``); the last conv's consumer is the
  classifier's first Linear (the features are 1x1 after pooling). The classifier's
  hidden Linear is not a unit.
* CIFAR ResNet basic blocks and torchvision ``BasicBlock``: the block's inner width
  (``conv1`` output), named after the block (``"layer1.0"``), as ABCPruner.
* torchvision ``Bottleneck``: two units, ``"<block>.conv1"`` and ``"<block>.conv2"``
  (ABCPruner shares one rate for both; here they are independent).
* MobileNetV2 ``InvertedResidual`` with an expansion conv: the expanded width
  (expand conv out, its BN, the depthwise conv and its BN, project conv in), named after
  the block (``"features.2"``). Blocks with ``expand_ratio == 1`` are skipped (their
  depthwise input is the previous block's output).

Block outputs (residual additions), stems and classifiers are never pruned, so every
addition keeps consistent widths.

Example:
    >>> import torch
    >>> from searchkit.models import build_base
    >>> base = build_base("resnet20")
    >>> units = channel_units(base)
    >>> small = prune_channels(base, units, [0.5] * len(units))
    >>> small(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from searchkit.models.resnet_cifar import CifarBasicBlock
from searchkit.models.vgg import VGGCifar

RULES = ("l1", "random", "first")
_FLOOR_EPS = 1e-9


@dataclass(frozen=True)
class ChannelUnit:
    """One prunable group of coupled channels (JSON-able).

    Attributes:
        name: unit name, e.g. ``"layer1.0"`` or ``"features.3"``.
        channels: width of the unit in the base model.
        producers: paths of the Conv2d/Linear whose output channels are this unit.
        norms: paths of the BatchNorms on this unit.
        consumers: paths of the Conv2d/Linear whose input channels are this unit.
        depthwise: paths of depthwise convs (groups == channels) inside the unit.
        slices: ``(role, path, offset, repeat)`` for members whose dimension holds this
            unit's channel ``c`` at ``offset + c * repeat ... + repeat - 1`` rather than at
            ``c`` (after a concatenation or a flatten); role is producer, consumer, norm or
            depthwise. Other members' whole dimension is the unit.
    """

    name: str
    channels: int
    producers: tuple[str, ...]
    norms: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    depthwise: tuple[str, ...] = ()
    slices: tuple[tuple[str, str, int, int], ...] = ()

    def members(self):
        """``(role, path, offset, repeat)`` of every module the unit cuts."""
        special = {(r, p): (o, k) for r, p, o, k in self.slices}
        for role, paths in (("producer", self.producers), ("norm", self.norms),
                            ("consumer", self.consumers), ("depthwise", self.depthwise)):
            for p in paths:
                yield (role, p, *special.get((role, p), (0, 1)))

    def to_json(self) -> dict:
        """A plain dict (lists for tuples) that :meth:`from_json` reads back.

        Example:
            >>> u = ChannelUnit("a", 4, ("conv",))
            >>> ChannelUnit.from_json(u.to_json()) == u
            True
        """
        d = {"name": self.name, "channels": self.channels,
             "producers": list(self.producers), "norms": list(self.norms),
             "consumers": list(self.consumers), "depthwise": list(self.depthwise)}
        if self.slices:
            d["slices"] = [list(s) for s in self.slices]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ChannelUnit":
        """Rebuild a unit from :meth:`to_json` output."""
        return cls(name=str(d["name"]), channels=int(d["channels"]),
                   producers=tuple(d["producers"]), norms=tuple(d.get("norms", ())),
                   consumers=tuple(d.get("consumers", ())),
                   depthwise=tuple(d.get("depthwise", ())),
                   slices=tuple((str(r), str(p), int(o), int(k)) for r, p, o, k in d.get("slices", ())))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _vgg_units(prefix: str, vgg: VGGCifar) -> list[ChannelUnit]:
    convs: list[tuple[str, nn.Conv2d, tuple[str, ...]]] = []
    children = list(vgg.features.named_children())
    for i, (name, mod) in enumerate(children):
        if isinstance(mod, nn.Conv2d):
            nxt = children[i + 1] if i + 1 < len(children) else None
            norms = (_join(prefix, f"features.{nxt[0]}"),) if nxt and isinstance(
                nxt[1], nn.BatchNorm2d) else ()
            convs.append((_join(prefix, f"features.{name}"), mod, norms))
    first_linear = next(n for n, m in vgg.classifier.named_children() if isinstance(m, nn.Linear))
    units = []
    for i, (path, conv, norms) in enumerate(convs):
        consumer = convs[i + 1][0] if i + 1 < len(convs) else _join(prefix, f"classifier.{first_linear}")
        units.append(ChannelUnit(path, conv.out_channels, (path,), norms, (consumer,)))
    return units


def channel_units(model: nn.Module) -> list[ChannelUnit]:
    """The prunable channel units of ``model``, in a deterministic order.

    See the module docstring for which channels of each model family form units.

    Args:
        model: a registered base network (or any model built from the same blocks).

    Returns:
        The units (at least one).

    Raises:
        ValueError: if the model contains no block this module knows how to prune.

    Example:
        >>> from searchkit.models import build_base
        >>> len(channel_units(build_base("resnet56")))
        27
    """
    units: list[ChannelUnit] = []
    for path, mod in model.named_modules():
        if isinstance(mod, VGGCifar):
            units += _vgg_units(path, mod)
        elif isinstance(mod, (CifarBasicBlock, BasicBlock)):
            p = lambda n: _join(path, n)  # noqa: E731
            units.append(ChannelUnit(path, mod.conv1.out_channels, (p("conv1"),),
                                     (p("bn1"),), (p("conv2"),)))
        elif isinstance(mod, Bottleneck):
            p = lambda n: _join(path, n)  # noqa: E731
            units.append(ChannelUnit(p("conv1"), mod.conv1.out_channels, (p("conv1"),),
                                     (p("bn1"),), (p("conv2"),)))
            units.append(ChannelUnit(p("conv2"), mod.conv2.out_channels, (p("conv2"),),
                                     (p("bn2"),), (p("conv3"),)))
        elif isinstance(mod, InvertedResidual):
            if len(mod.conv) != 4:  # expand_ratio == 1: no expansion conv to prune
                continue
            p = lambda n: _join(path, f"conv.{n}")  # noqa: E731
            units.append(ChannelUnit(path, mod.conv[0][0].out_channels, (p("0.0"),),
                                     (p("0.1"), p("1.1")), (p("2"),), (p("1.0"),)))
    if not units:
        raise ValueError(f"no prunable channel units known for {type(model).__name__}")
    return units


def _as_keep_array(units: Sequence[ChannelUnit], keep: Sequence[float]) -> np.ndarray:
    f = np.asarray(keep, dtype=np.float64).reshape(-1)
    if f.shape[0] != len(units):
        raise ValueError(f"keep has {f.shape[0]} entries but there are {len(units)} units")
    if not np.all((f > 0) & (f <= 1)):
        raise ValueError(f"keep fractions must lie in (0, 1]; got {list(map(float, f))}")
    return f


def keep_counts_array(channels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Vectorised :func:`keep_counts` on arrays (``int64``); the one rounding rule.

    ``max(1, floor(c * f + 1e-9))``: ABCPruner's ``int(C * code / 10)`` for
    ``f = code / 10``, made robust to float error (``100 * 0.29`` gives 29, not 28).
    """
    return np.maximum(1, np.floor(channels * keep + _FLOOR_EPS)).astype(np.int64)


def keep_counts(units: Sequence[ChannelUnit], keep: Sequence[float]) -> list[int]:
    """Channels kept per unit: ``max(1, floor(channels * f))`` (with a 1e-9 tolerance).

    Both the cost model (:class:`searchkit.costs.CostTable`) and the surgery use this.

    Args:
        units: the units, from :func:`channel_units`.
        keep: one fraction in (0, 1] per unit.

    Raises:
        ValueError: on a length mismatch or a fraction outside (0, 1].

    Example:
        >>> keep_counts([ChannelUnit("a", 16, ("c",)), ChannelUnit("b", 64, ("d",))], [0.3, 1.0])
        [4, 64]
    """
    ch = np.array([u.channels for u in units], dtype=np.float64)
    return keep_counts_array(ch, _as_keep_array(units, keep)).tolist()


def _l1_scores(model: nn.Module, unit: ChannelUnit) -> np.ndarray:
    score = torch.zeros(unit.channels, dtype=torch.float64)
    for role, path, off, rep in unit.members():
        if role != "producer":
            continue
        w = model.get_submodule(path).weight.detach()
        rows = w.abs().flatten(1).sum(1).double().cpu()[off: off + unit.channels * rep]
        score += rows.reshape(unit.channels, rep).sum(1)
    return score.numpy()


def select_channels(model: nn.Module, units: Sequence[ChannelUnit], keep: Sequence[float],
                    rule: str = "l1", seed: int = 0) -> dict[str, list[int]]:
    """Which channels of each unit to keep (ascending indices), without pruning.

    Args:
        model: the base model whose weights rank the channels (rule ``"l1"``).
        units: its units.
        keep: one fraction in (0, 1] per unit.
        rule: ``"l1"`` (top-k filters by the L1 norm of the producers' weights, ties
            to the lower index), ``"random"`` (k of all channels, from
            ``numpy.random.default_rng(seed)``, units in order) or ``"first"``.
        seed: seed of rule ``"random"``.

    Returns:
        ``{unit_name: [kept indices]}``.

    Example:
        >>> from searchkit.models import build_base
        >>> base = build_base("resnet20"); units = channel_units(base)
        >>> len(select_channels(base, units, [0.5] * 9, rule="first")["layer1.0"])
        8
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule '{rule}' (choices: {', '.join(RULES)})")
    counts = keep_counts(units, keep)
    rng = np.random.default_rng(seed)
    history: dict[str, list[int]] = {}
    for unit, k in zip(units, counts):
        if rule == "first" or k == unit.channels:
            idx = np.arange(k)
        elif rule == "random":
            idx = rng.choice(unit.channels, size=k, replace=False)
        else:
            idx = np.argsort(-_l1_scores(model, unit), kind="stable")[:k]
        history[unit.name] = sorted(int(i) for i in idx)
    return history


def _slice_conv(conv: nn.Conv2d, in_idx, out_idx, depthwise_idx) -> nn.Conv2d:
    w = conv.weight.detach()
    groups = conv.groups
    if depthwise_idx is not None:
        idx = torch.as_tensor(depthwise_idx, dtype=torch.long, device=w.device)
        w = w.index_select(0, idx)
        cin = cout = groups = len(depthwise_idx)
        b_idx = idx
    else:
        if groups != 1 and (in_idx is not None or out_idx is not None):
            raise ValueError(f"cannot prune a grouped conv (groups={groups}) that is not depthwise")
        b_idx = None
        if out_idx is not None:
            b_idx = torch.as_tensor(out_idx, dtype=torch.long, device=w.device)
            w = w.index_select(0, b_idx)
        if in_idx is not None:
            w = w.index_select(1, torch.as_tensor(in_idx, dtype=torch.long, device=w.device))
        cout, cin = w.shape[0], w.shape[1] * groups
    new = nn.Conv2d(cin, cout, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=groups, bias=conv.bias is not None,
                    padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if conv.bias is not None:
            b = conv.bias.detach()
            new.bias.copy_(b if b_idx is None else b.index_select(0, b_idx))
    new.train(conv.training)
    return new


def _slice_linear(lin: nn.Linear, in_idx, out_idx) -> nn.Linear:
    w = lin.weight.detach()
    b = lin.bias.detach() if lin.bias is not None else None
    if out_idx is not None:
        o = torch.as_tensor(out_idx, dtype=torch.long, device=w.device)
        w = w.index_select(0, o)
        b = b.index_select(0, o) if b is not None else None
    if in_idx is not None:
        w = w.index_select(1, torch.as_tensor(in_idx, dtype=torch.long, device=w.device))
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    new.train(lin.training)
    return new


def _slice_norm(bn: nn.modules.batchnorm._BatchNorm, idx) -> nn.Module:
    ref = bn.weight if bn.weight is not None else bn.running_mean
    i = torch.as_tensor(idx, dtype=torch.long, device=ref.device if ref is not None else None)
    new = type(bn)(len(idx), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                   track_running_stats=bn.track_running_stats,
                   device=ref.device if ref is not None else None,
                   dtype=ref.dtype if ref is not None else None)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight.detach().index_select(0, i))
            new.bias.copy_(bn.bias.detach().index_select(0, i))
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean.index_select(0, i))
            new.running_var.copy_(bn.running_var.index_select(0, i))
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    new.train(bn.training)
    return new


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)


def _check_history(units: Sequence[ChannelUnit], history: dict[str, Sequence[int]]) -> None:
    names = {u.name for u in units}
    extra = set(history) - names
    if extra:
        raise ValueError(f"history names unknown units: {sorted(extra)}")
    for u in units:
        idx = history.get(u.name)
        if idx is None:
            continue
        if (len(idx) == 0 or list(idx) != sorted(set(idx))
                or min(idx) < 0 or max(idx) >= u.channels):
            raise ValueError(f"unit '{u.name}': kept indices must be ascending, unique, "
                             f"non-empty and in [0, {u.channels}); got {list(idx)}")


def apply_history(model: nn.Module, units: Sequence[ChannelUnit],
                  history: dict[str, Sequence[int]]) -> nn.Module:
    """A new model with, for each unit in ``history``, only the listed channels.

    Units absent from ``history`` keep all their channels. ``model`` is not changed
    (it is deep-copied, then modules are replaced).

    Args:
        model: the base model (whose ``channel_units`` are ``units``).
        units: its units.
        history: ``{unit_name: [kept indices, ascending]}``, as returned by
            :func:`prune_channels_with_history` (JSON round trips are fine).

    Example:
        >>> import torch
        >>> from searchkit.models import build_base
        >>> base = build_base("resnet20"); units = channel_units(base)
        >>> small = apply_history(base, units, {"layer1.0": [0, 5, 9]})
        >>> small.layer1[0].conv1.out_channels
        3
    """
    _check_units_fit(model, units)
    _check_history(units, history)
    new = copy.deepcopy(model)
    # (path, dim) -> [(lo, hi, kept positions)]; dim "out", "in" or "dw" (depthwise: both)
    cuts: dict[tuple[str, str], list[tuple[int, int, list[int]]]] = {}
    for u in units:
        idx = history.get(u.name)
        if idx is None or len(idx) == u.channels:
            continue
        for role, path, off, rep in u.members():
            dim = {"consumer": "in", "depthwise": "dw"}.get(role, "out")
            kept = [off + int(c) * rep + r for c in idx for r in range(rep)]
            cuts.setdefault((path, dim), []).append((off, off + u.channels * rep, kept))
    sel: dict[tuple[str, str], list[int]] = {}
    for (path, dim), parts in cuts.items():
        parts.sort()
        for (_, hi, _), (lo, _, _) in zip(parts, parts[1:]):
            if lo < hi:
                raise ValueError(f"module '{path}' is claimed twice by units")
        width = _width(model.get_submodule(path), "in" if dim == "in" else "out")
        keep = [i for i in range(width) if not any(lo <= i < hi for lo, hi, _ in parts)]
        sel[(path, dim)] = sorted(keep + [i for *_, kept in parts for i in kept])
    return _reindex(new, sel)


def permute_units(model: nn.Module, units: Sequence[ChannelUnit], orders: dict[str, Sequence[int]]) -> nn.Module:
    """A new model whose unit ``u`` lists its channels in the order ``orders[u]`` (a
    permutation): producers, norms, depthwise layers and consumers are all reordered, so the
    network computes the same function (used to gather strong filters into the same blocks).

    Example:
        >>> import torch
        >>> from searchkit.models import build_base
        >>> base = build_base("resnet20").eval(); units = channel_units(base)
        >>> moved = permute_units(base, units, {"layer1.0": list(range(15, -1, -1))})
        >>> x = torch.randn(1, 3, 32, 32)
        >>> bool(torch.allclose(moved(x), base(x), atol=1e-5)), moved.layer1[0].conv1.weight[0].equal(
        ...     base.layer1[0].conv1.weight[15])
        (True, True)
    """
    _check_units_fit(model, units)
    new = copy.deepcopy(model)
    sel: dict[tuple[str, str], list[int]] = {}
    for u in units:
        order = orders.get(u.name)
        if order is None:
            continue
        if sorted(int(c) for c in order) != list(range(u.channels)):
            raise ValueError(f"unit '{u.name}': an order must be a permutation of its {u.channels} channels")
        for role, path, off, rep in u.members():
            dim = {"consumer": "in", "depthwise": "dw"}.get(role, "out")
            idx = sel.setdefault((path, dim), list(range(_width(model.get_submodule(path),
                                                                  "in" if dim == "in" else "out"))))
            for c_new, c_old in enumerate(order):
                for r in range(rep):
                    idx[off + c_new * rep + r] = off + int(c_old) * rep + r
    return _reindex(new, sel)


def _reindex(new: nn.Module, sel: dict[tuple[str, str], list[int]]) -> nn.Module:
    """Replace every module named in ``sel`` by its slice along the given dims (in place)."""
    for path in dict.fromkeys(p for p, _ in sel):
        mod = new.get_submodule(path)
        if isinstance(mod, nn.Conv2d):
            _replace(new, path, _slice_conv(mod, sel.get((path, "in")), sel.get((path, "out")),
                                            sel.get((path, "dw"))))
        elif isinstance(mod, nn.Linear):
            _replace(new, path, _slice_linear(mod, sel.get((path, "in")), sel.get((path, "out"))))
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            _replace(new, path, _slice_norm(mod, sel[(path, "out")]))
        else:
            raise TypeError(f"cannot prune {type(mod).__name__} at '{path}'")
    return new


def _width(mod: nn.Module, dim: str) -> int:
    if isinstance(mod, nn.Conv2d):
        return mod.in_channels if dim == "in" else mod.out_channels
    if isinstance(mod, nn.Linear):
        return mod.in_features if dim == "in" else mod.out_features
    return mod.num_features


def _check_units_fit(model: nn.Module, units: Sequence[ChannelUnit]) -> None:
    for u in units:
        explicit = {(r, p) for r, p, _, _ in u.slices}
        for role, p, off, rep in u.members():
            width = _width(model.get_submodule(p), "in" if role == "consumer" else "out")
            if off + u.channels * rep > width or ((role, p) not in explicit and width != u.channels):
                raise ValueError(f"consumer '{p}' of unit '{u.name}' takes {width} inputs, "
                                 f"not the unit's {u.channels} channels" if role == "consumer" else
                                 f"member '{p}' of unit '{u.name}' has {width} channels, "
                                 f"fewer than the unit's {u.channels}")


def prune_channels_with_history(model: nn.Module, units: Sequence[ChannelUnit],
                                keep: Sequence[float], rule: str = "l1",
                                seed: int = 0) -> tuple[nn.Module, dict[str, list[int]]]:
    """Prune like :func:`prune_channels` and also return the kept indices.

    Returns:
        ``(pruned_model, history)`` with ``history = {unit_name: [kept indices]}``
        (JSON-able; :func:`apply_history` rebuilds the same model from it).

    Example:
        >>> from searchkit.models import build_base
        >>> base = build_base("resnet20"); units = channel_units(base)
        >>> small, hist = prune_channels_with_history(base, units, [0.25] * 9)
        >>> len(hist["layer3.2"])
        16
    """
    history = select_channels(model, units, keep, rule=rule, seed=seed)
    return apply_history(model, units, history), history


def prune_channels(model: nn.Module, units: Sequence[ChannelUnit], keep: Sequence[float],
                   rule: str = "l1", seed: int = 0) -> nn.Module:
    """A new, physically smaller model keeping ``keep_counts(units, keep)`` channels per unit.

    Weights, biases, BN running statistics and affine parameters of the kept channels
    are copied; consumers keep the matching input slices. ``model`` is unchanged.

    Args:
        model: the base model.
        units: its units (from :func:`channel_units`).
        keep: one fraction in (0, 1] per unit.
        rule: ``"l1"``, ``"random"`` or ``"first"`` (see :func:`select_channels`).
        seed: seed of rule ``"random"``.

    Example:
        >>> import torch
        >>> from searchkit.models import build_base
        >>> base = build_base("vgg16"); units = channel_units(base)
        >>> small = prune_channels(base, units, [0.5] * 13)
        >>> small.features[0].out_channels, small.eval()(torch.zeros(1, 3, 32, 32)).shape
        (32, torch.Size([1, 10]))
    """
    return prune_channels_with_history(model, units, keep, rule=rule, seed=seed)[0]


def pruned_shape_model(base: nn.Module, units: Sequence[ChannelUnit],
                       keep: Sequence[float]) -> nn.Module:
    """The pruned architecture for ``keep`` (first k channels of each unit).

    Same shapes as :func:`prune_channels` for the same ``keep``; use it when only the
    architecture matters (costs, latency, training from scratch).

    Example:
        >>> from searchkit.models import build_base
        >>> base = build_base("resnet20"); units = channel_units(base)
        >>> pruned_shape_model(base, units, [0.5] * 9).layer2[0].conv1.out_channels
        16
    """
    return prune_channels(base, units, keep, rule="first")


def units_to_json(units: Sequence[ChannelUnit]) -> list[dict[str, Any]]:
    """``[unit.to_json() for unit in units]`` (handy for storing in a study)."""
    return [u.to_json() for u in units]


def units_from_json(data: Sequence[dict[str, Any]]) -> list[ChannelUnit]:
    """Inverse of :func:`units_to_json`."""
    return [ChannelUnit.from_json(d) for d in data]


__all__ = ["ChannelUnit", "channel_units", "permute_units", "keep_counts", "keep_counts_array",
           "select_channels", "prune_channels", "prune_channels_with_history",
           "apply_history", "pruned_shape_model", "units_to_json", "units_from_json",
           "RULES"]
