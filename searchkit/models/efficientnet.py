"""EfficientNet-B0 family scaled by width and depth, the way timm builds TinyNet.

This is our own MBConv builder (torch only); the architecture rules follow timm's
``_gen_tinynet`` / ``decode_arch_def`` / ``EfficientNetBuilder`` so that parameter and MAC
counts match the published TinyNet figures:

* arch_def = the EfficientNet-B0 one, seven stages::

      ds_r1_k3_s1_e1_c16_se0.25   ir_r2_k3_s2_e6_c24_se0.25   ir_r2_k5_s2_e6_c40_se0.25
      ir_r3_k3_s2_e6_c80_se0.25   ir_r3_k5_s1_e6_c112_se0.25  ir_r4_k5_s2_e6_c192_se0.25
      ir_r1_k3_s1_e6_c320_se0.25

* width: every block's output width is ``round_channels(c, width)`` (timm's
  ``make_divisible`` with divisor 8: at least 8, never more than 10% below ``c*width``);
  the stem stays 32 (``fix_stem=True``); the head has
  ``max(1280, round_channels(1280, width))`` features.
* depth: ``depth_trunc='round'`` through :func:`scale_stage_depth` (timm's
  ``_scale_stage_depth``: a stage's total repeats are scaled with Python's ``round``, at
  least 1, then shared among the stage's block strings in reverse order).
* SE squeezes to ``round(0.25 * block input width)`` (timm's ``se_from_exp=False``),
  SiLU ("swish") everywhere, BatchNorm (eps 1e-5, momentum 0.1, as timm's defaults),
  "same"-style symmetric padding ``((s-1) + (k-1)) // 2``, a residual where stride is 1 and
  widths match, dropout before the classifier. No drop-path.
* Module names mirror timm's (``conv_stem``, ``bn1``, ``blocks.i.j.conv_pw`` /
  ``conv_dw`` / ``se.conv_reduce`` / ``conv_pwl`` ..., ``conv_head``, ``bn2``,
  ``classifier``) so a timm ``tinynet_*`` state_dict has the same keys and shapes.

Resolution is not a model argument (as in timm, it is data: the evaluator's input side).

Reproduced (``count_costs``: MACs of conv + linear; params = all parameters; 1000 classes),
against timm / the TinyNet readme (``tests/test_tinynet.py`` pins them):

=========  =====  =====  ====  ==========  ======  =========  =========
net        w      d      side  params      (pub.)  MACs       (pub.)
=========  =====  =====  ====  ==========  ======  =========  =========
B0         1.0    1.0    224   5,288,548   5.29M   385.81M    ~390M
tinynet_a  1.0    1.2    192   6,187,972   6.19M   336.87M    339M
tinynet_b  0.75   1.1    188   3,730,562           200.71M    202M
tinynet_c  0.54   0.85   184   2,457,234           99.54M     100M
tinynet_d  0.54   0.695  152   2,338,446           51.58M     52M
tinynet_e  0.51   0.60   106   2,042,972   2.04M   24.36M     24M
=========  =====  =====  ====  ==========  ======  =========  =========

Example:
    >>> import torch
    >>> from searchkit.models.efficientnet import efficientnet_b0_family
    >>> net = efficientnet_b0_family(width=0.51, depth=0.6, num_classes=10)
    >>> net.eval()(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# (block type, repeats, kernel, stride, expansion, output width, se ratio), one
# block string per stage, exactly the B0 arch_def timm uses for TinyNet.
B0_ARCH: tuple[tuple[tuple[str, int, int, int, int, int, float], ...], ...] = (
    (("ds", 1, 3, 1, 1, 16, 0.25),),
    (("ir", 2, 3, 2, 6, 24, 0.25),),
    (("ir", 2, 5, 2, 6, 40, 0.25),),
    (("ir", 3, 3, 2, 6, 80, 0.25),),
    (("ir", 3, 5, 1, 6, 112, 0.25),),
    (("ir", 4, 5, 2, 6, 192, 0.25),),
    (("ir", 1, 3, 1, 6, 320, 0.25),),
)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """timm's ``make_divisible``: nearest multiple of ``divisor``, at least ``min_value``
    (default ``divisor``), bumped up when rounding lost more than ``1 - round_limit``.

    Example:
        >>> make_divisible(16 * 0.51), make_divisible(1280 * 0.75), make_divisible(3.0)
        (8, 960, 8)
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return int(new_v)


def round_channels(c: int, multiplier: float = 1.0, divisor: int = 8) -> int:
    """timm's ``round_channels``: ``make_divisible(c * multiplier, divisor)``.

    Example:
        >>> round_channels(320, 0.54), round_channels(24, 0.75)
        (176, 24)
    """
    if not multiplier:
        return c
    return make_divisible(c * multiplier, divisor)


def scale_stage_depth(repeats: list[int], depth_multiplier: float,
                      depth_trunc: str = "round") -> list[int]:
    """Repeats per block string of one stage, scaled as timm's ``_scale_stage_depth``.

    The stage total is scaled (``round`` -> Python's round-half-even, at least 1; ``ceil``
    -> ``math.ceil``) and handed out proportionally from the LAST block string backwards,
    each string getting at least one repeat, so a stage's first block is scaled least.

    Example:
        >>> scale_stage_depth([3], 1.2), scale_stage_depth([2], 1.25)
        ([4], [2])
        >>> scale_stage_depth([1, 3], 1.5)  # 6 repeats: round(3/4*6) = 4 go to the last
        [2, 4]
    """
    num_repeat = sum(repeats)
    if depth_trunc == "round":
        num_scaled = max(1, round(num_repeat * depth_multiplier))
    elif depth_trunc == "ceil":
        num_scaled = int(math.ceil(num_repeat * depth_multiplier))
    else:
        raise ValueError(f"depth_trunc must be 'round' or 'ceil', not {depth_trunc!r}")
    out = []
    for r in repeats[::-1]:
        rs = max(1, round(r / num_repeat * num_scaled))
        out.append(rs)
        num_repeat -= r
        num_scaled -= rs
    return out[::-1]


@dataclass(frozen=True)
class BlockSpec:
    """One built block: ``kind`` "ds" (depthwise-separable) or "ir" (inverted residual)."""

    kind: str
    in_chs: int
    out_chs: int
    kernel: int
    stride: int
    mid_chs: int   # depthwise width (= in_chs for "ds")
    se_chs: int    # SE bottleneck width (0: no SE)

    @property
    def skip(self) -> bool:
        return self.stride == 1 and self.in_chs == self.out_chs


def block_specs(width: float = 1.0, depth: float = 1.0,
                arch=B0_ARCH) -> list[list[BlockSpec]]:
    """The blocks of every stage for a width/depth multiplier (pure Python, no torch).

    Example:
        >>> [len(s) for s in block_specs(1.0, 1.2)]
        [1, 2, 2, 4, 4, 5, 1]
        >>> block_specs(1.0, 1.0)[1][0]
        BlockSpec(kind='ir', in_chs=16, out_chs=24, kernel=3, stride=2, mid_chs=96, se_chs=4)
    """
    stages: list[list[BlockSpec]] = []
    in_chs = STEM_CHANNELS
    for stage in arch:
        reps = scale_stage_depth([s[1] for s in stage], depth, "round")
        blocks = []
        for (kind, _, k, s, e, c, se), n in zip(stage, reps):
            out_chs = round_channels(c, width)
            for i in range(n):
                stride = s if i == 0 else 1
                # timm: InvertedResidual mid = make_divisible(in * exp); SE of the mid
                # width with rd_ratio = se / exp, rounded with round() -> 0.25 * in.
                mid = in_chs if kind == "ds" else make_divisible(in_chs * e)
                se_chs = round(mid * (se / e)) if se else 0
                blocks.append(BlockSpec(kind, in_chs, out_chs, k, stride, mid, se_chs))
                in_chs = out_chs
        stages.append(blocks)
    return stages


def head_channels(width: float) -> int:
    """Features of the 1x1 head conv: ``max(1280, round_channels(1280, width))``."""
    return max(HEAD_CHANNELS, round_channels(HEAD_CHANNELS, width))


def _pad(k: int, s: int) -> int:
    return ((s - 1) + (k - 1)) // 2


class SqueezeExcite(nn.Module):
    """timm's SE: mean pool, 1x1 reduce (bias), SiLU, 1x1 expand (bias), sigmoid gate."""

    def __init__(self, chs: int, rd_chs: int):
        super().__init__()
        self.conv_reduce = nn.Conv2d(chs, rd_chs, 1, bias=True)
        self.act1 = nn.SiLU(inplace=True)
        self.conv_expand = nn.Conv2d(rd_chs, chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.conv_expand(self.act1(self.conv_reduce(s))).sigmoid()


def _bn_act(chs: int, act: bool = True) -> tuple[nn.Module, nn.Module]:
    return nn.BatchNorm2d(chs), (nn.SiLU(inplace=True) if act else nn.Identity())


class MBConv(nn.Module):
    """A "ds" or "ir" block of :class:`BlockSpec` (timm layout and names)."""

    def __init__(self, spec: BlockSpec):
        super().__init__()
        self.spec = spec
        k, s, mid = spec.kernel, spec.stride, spec.mid_chs
        if spec.kind == "ir":
            self.conv_pw = nn.Conv2d(spec.in_chs, mid, 1, bias=False)
            self.bn1, self.act1 = _bn_act(mid)
        self.conv_dw = nn.Conv2d(mid, mid, k, s, _pad(k, s), groups=mid, bias=False)
        if spec.kind == "ir":
            self.bn2, self.act2 = _bn_act(mid)
        else:
            self.bn1, self.act1 = _bn_act(mid)
        self.se = SqueezeExcite(mid, spec.se_chs) if spec.se_chs else nn.Identity()
        if spec.kind == "ir":
            self.conv_pwl = nn.Conv2d(mid, spec.out_chs, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(spec.out_chs)
        else:
            self.conv_pw = nn.Conv2d(mid, spec.out_chs, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(spec.out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.spec.kind == "ir":
            x = self.act1(self.bn1(self.conv_pw(x)))
            x = self.act2(self.bn2(self.conv_dw(x)))
            x = self.bn3(self.conv_pwl(self.se(x)))
        else:
            x = self.act1(self.bn1(self.conv_dw(x)))
            x = self.bn2(self.conv_pw(self.se(x)))
        return x + shortcut if self.spec.skip else x


class EfficientNet(nn.Module):
    """Stem, MBConv stages, 1x1 head, global average pool, dropout, linear classifier."""

    def __init__(self, stages: list[list[BlockSpec]], num_features: int, num_classes: int = 1000,
                 in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        self.conv_stem = nn.Conv2d(in_channels, STEM_CHANNELS, 3, 2, _pad(3, 2), bias=False)
        self.bn1, self.act1 = _bn_act(STEM_CHANNELS)
        self.blocks = nn.Sequential(*(nn.Sequential(*(MBConv(b) for b in st)) for st in stages))
        self.conv_head = nn.Conv2d(stages[-1][-1].out_chs, num_features, 1, bias=False)
        self.bn2, self.act2 = _bn_act(num_features)
        self.num_features = num_features
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # timm's _init_weight_goog: fan-out normal for convs, uniform for the classifier
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                r = 1.0 / m.weight.shape[0] ** 0.5
                nn.init.uniform_(m.weight, -r, r)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        return self.act2(self.bn2(self.conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3))
        return self.classifier(self.dropout(x))


def efficientnet_b0_family(width: float = 1.0, depth: float = 1.0, num_classes: int = 1000,
                           dropout: float = 0.2, in_channels: int = 3) -> nn.Module:
    """EfficientNet-B0 scaled by ``width`` / ``depth`` as timm's ``_gen_tinynet`` does.

    ``(1.0, 1.0)`` is EfficientNet-B0 (5.29M params); TinyNet A..E are
    ``(1.0, 1.2) (0.75, 1.1) (0.54, 0.85) (0.54, 0.695) (0.51, 0.60)``, run at input sides
    192, 188, 184, 152, 106 (resolution is the caller's business).

    Args:
        width: channel multiplier (stem fixed at 32, head at least 1280).
        depth: repeat multiplier, ``depth_trunc='round'``.
        num_classes: classifier outputs.
        dropout: dropout rate before the classifier.
        in_channels: input image planes.

    Example:
        >>> from searchkit.costs import count_costs
        >>> round(count_costs(efficientnet_b0_family(1.0, 1.2), 192).params / 1e6, 2)
        6.19
    """
    return EfficientNet(block_specs(width, depth), head_channels(width), num_classes,
                        in_channels, dropout)


# name -> (r, width, depth, input side); sides are timm's int(224 * r)
TINYNET_VARIANTS: dict[str, tuple[float, float, float, int]] = {
    "tinynet_a": (0.86, 1.0, 1.2, 192),
    "tinynet_b": (0.84, 0.75, 1.1, 188),
    "tinynet_c": (0.825, 0.54, 0.85, 184),
    "tinynet_d": (0.68, 0.54, 0.695, 152),
    "tinynet_e": (0.475, 0.51, 0.6, 106),
}


def tinynet_variant(variant: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    """TinyNet A..E by name (the input side is ``TINYNET_VARIANTS[variant][3]``).

    Example:
        >>> tinynet_variant("tinynet_e", num_classes=10).conv_head.out_channels
        1280
    """
    if variant not in TINYNET_VARIANTS:
        raise ValueError(f"unknown TinyNet variant {variant!r} "
                         f"(choices: {', '.join(TINYNET_VARIANTS)})")
    _, w, d, _ = TINYNET_VARIANTS[variant]
    return efficientnet_b0_family(w, d, num_classes=num_classes, **kwargs)


def efficientnet_b0(num_classes: int = 1000, **kwargs) -> nn.Module:
    """EfficientNet-B0 (width 1.0, depth 1.0; timm's TinyNet-style rounding)."""
    return efficientnet_b0_family(1.0, 1.0, num_classes=num_classes, **kwargs)


def tinynet_a(num_classes: int = 1000, **kwargs) -> nn.Module:
    return tinynet_variant("tinynet_a", num_classes, **kwargs)


def tinynet_b(num_classes: int = 1000, **kwargs) -> nn.Module:
    return tinynet_variant("tinynet_b", num_classes, **kwargs)


def tinynet_c(num_classes: int = 1000, **kwargs) -> nn.Module:
    return tinynet_variant("tinynet_c", num_classes, **kwargs)


def tinynet_d(num_classes: int = 1000, **kwargs) -> nn.Module:
    return tinynet_variant("tinynet_d", num_classes, **kwargs)


def tinynet_e(num_classes: int = 1000, **kwargs) -> nn.Module:
    return tinynet_variant("tinynet_e", num_classes, **kwargs)
