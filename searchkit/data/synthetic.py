"""Synthetic class-conditional images: a tiny, learnable dataset for tests and smoke runs.

Each class has a smooth random pattern (low-resolution noise upsampled to
``image_size``); an image is its class pattern at a random contrast plus Gaussian pixel
noise. A small CNN rises well above chance within a few epochs. The images themselves
are fixed (they do not depend on ``seed``); ``seed`` only chooses the train/val split,
as it does for real datasets.

Example:
    >>> from searchkit.data.synthetic import load_synthetic
    >>> data = load_synthetic(image_size=8, num_classes=4, size=64)
    >>> data.describe()
    'synthetic: 64 train / 16 val / 16 test, 4 classes, 3x8x8, augment: none'
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from searchkit.data.base import DataSplits, carve_val, check_fraction

_PATTERN_SEED = 1234


def load_synthetic(
    *,
    root: str | None = None,
    image_size: int = 16,
    seed: int = 0,
    val_fraction: float = 0.2,
    max_train: int | None = None,
    num_classes: int = 10,
    size: int = 512,
    in_channels: int = 3,
    noise: float = 2.0,
) -> DataSplits:
    """Make the synthetic dataset in memory.

    Args:
        root: Ignored; accepted so every loader takes the same arguments.
        image_size: Height and width.
        seed: Seed of the train/val split.
        val_fraction: Share of the train+val pool held out for validation; the pool
            is sized so that ``size`` images remain for training.
        max_train: Keep at most this many training images (stratified).
        num_classes: Number of classes (at least 2).
        size: Number of training images.
        in_channels: Channels per image.
        noise: Standard deviation of the pixel noise (patterns have unit scale);
            larger is harder.

    Returns:
        :class:`~searchkit.data.base.DataSplits` of ``TensorDataset`` s; the test set
        has as many images as the validation set.
    """
    if num_classes < 2:
        raise ValueError(f"synthetic num_classes must be at least 2, got {num_classes}")
    if size < num_classes:
        raise ValueError(f"synthetic size must be at least num_classes ({num_classes}), got {size}")
    if image_size < 1 or in_channels < 1:
        raise ValueError("synthetic image_size and in_channels must be positive")
    val_fraction = check_fraction("val_fraction", val_fraction)
    n_val = max(1, int(round(size * val_fraction / (1.0 - val_fraction))))
    n_pool = size + n_val

    gen = torch.Generator().manual_seed(_PATTERN_SEED)
    coarse = max(2, min(4, image_size))
    patterns = torch.randn(num_classes, in_channels, coarse, coarse, generator=gen)
    patterns = F.interpolate(patterns, size=(image_size, image_size), mode="bilinear",
                             align_corners=False)
    patterns = patterns / patterns.flatten(1).std(dim=1).view(-1, 1, 1, 1)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=gen)]
        contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=gen)
        pixels = torch.randn(n, in_channels, image_size, image_size, generator=gen)
        return patterns[labels] * contrast + float(noise) * pixels, labels

    pool_x, pool_y = sample(n_pool)
    test_x, test_y = sample(n_val)
    train, val = carve_val(pool_y.numpy(), n_val / n_pool, seed, max_train)
    train_t, val_t = torch.from_numpy(train), torch.from_numpy(val)
    return DataSplits(
        name="synthetic",
        train=TensorDataset(pool_x[train_t], pool_y[train_t]),
        val=TensorDataset(pool_x[val_t], pool_y[val_t]),
        test=TensorDataset(test_x, test_y),
        num_classes=int(num_classes),
        in_channels=int(in_channels),
        image_size=int(image_size),
        classes=tuple(f"class{i}" for i in range(num_classes)),
        preprocessing={"source": "generated float images (no raw pixels)", "scale": 1.0, "resize": "none",
                       "mean": [0.0] * int(in_channels), "std": [1.0] * int(in_channels)},
    )
