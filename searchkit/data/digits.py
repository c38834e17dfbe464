"""scikit-learn's handwritten digits: real data that ships offline, the default dataset.

1797 grayscale 8x8 images of the digits 0-9 (the UCI optical-recognition test set that
scikit-learn bundles). Pixels are scaled to [0, 1], resized once to ``image_size`` with
bilinear interpolation, normalised with the pool's mean and standard deviation, and
replicated to three colour planes (without copying memory) so CIFAR-style networks take
them.

The test split (``test_fraction``, 20% by default) is fixed: it does not depend on
``seed``, like an official test set. The validation split is carved from the rest with
``seed``. With the defaults that is 1150 train / 288 val / 359 test images.

Example:
    >>> from searchkit.data.digits import load_digits
    >>> data = load_digits(image_size=16)
    >>> data.describe()
    'digits: 1150 train / 288 val / 359 test, 10 classes, 3x16x16, augment: none'
    >>> image, label = data.train[0]
    >>> tuple(image.shape)
    (3, 16, 16)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from searchkit.data.base import DataSplits, carve_val, check_fraction, stratified_split

# The test split is a property of the dataset, not of a search: a fixed seed keeps it
# the same for every study.
_TEST_SPLIT_SEED = 20240601


def load_digits(
    *,
    root: str | None = None,
    image_size: int = 16,
    seed: int = 0,
    val_fraction: float = 0.2,
    max_train: int | None = None,
    test_fraction: float = 0.2,
    in_channels: int = 3,
) -> DataSplits:
    """Load scikit-learn's digits as in-memory tensor datasets.

    Args:
        root: Ignored (the data ships with scikit-learn); accepted so every loader
            takes the same arguments.
        image_size: Height and width after resizing.
        seed: Seed of the train/val split.
        val_fraction: Share of the non-test images held out for validation.
        max_train: Keep at most this many training images (stratified).
        test_fraction: Share of all images in the fixed test split.
        in_channels: 3 (grayscale replicated) or 1.

    Returns:
        :class:`~searchkit.data.base.DataSplits` of ``TensorDataset`` s.
    """
    from sklearn import datasets as sk_datasets

    if in_channels not in (1, 3):
        raise ValueError(f"digits in_channels must be 1 or 3, got {in_channels}")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    image_size = int(image_size)
    bunch = sk_datasets.load_digits()
    pixels = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    labels = np.asarray(bunch.target, dtype=np.int64)
    if image_size != pixels.shape[-1]:
        pixels = F.interpolate(
            pixels, size=(image_size, image_size), mode="bilinear",
            align_corners=False, antialias=image_size < pixels.shape[-1],
        )

    pool, test = stratified_split(labels, check_fraction("test_fraction", test_fraction),
                                  _TEST_SPLIT_SEED)
    # Statistics from the non-test pool only, so they do not change with seed.
    mean, std = pixels[pool].mean(), pixels[pool].std()
    images = (pixels - mean) / std
    targets = torch.from_numpy(labels)

    train_in_pool, val_in_pool = carve_val(labels[pool], val_fraction, seed, max_train)
    train, val = pool[train_in_pool], pool[val_in_pool]

    def subset(idx: np.ndarray) -> TensorDataset:
        index = torch.from_numpy(idx)
        # A stride-0 channel view keeps one channel in memory; indexed batches are
        # real 3-channel copies.
        return TensorDataset(images[index].expand(-1, in_channels, -1, -1), targets[index])

    return DataSplits(
        name="digits",
        train=subset(train),
        val=subset(val),
        test=subset(test),
        num_classes=10,
        in_channels=in_channels,
        image_size=image_size,
        classes=tuple(str(d) for d in range(10)),
        preprocessing={"source": "scikit-learn's 8x8 gray digits, pixel values 0..16", "scale": 1 / 16,
                       "resize": f"bilinear from 8x8 to {image_size}x{image_size}",
                       "planes": "the gray plane repeated" if in_channels == 3 else "gray",
                       "mean": [float(mean)] * in_channels, "std": [float(std)] * in_channels},
    )
