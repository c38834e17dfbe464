"""Fashion-MNIST from its idx files: 70,000 real 28x28 clothing photos in 10 classes.

Harder than the digits (a linear model reaches about 0.84, not 0.96) and it ships offline as
a Debian package: ``apt-get install dataset-fashion-mnist`` puts the four gzipped idx files
under ``/usr/share/datasets/fashion-mnist``, the default ``root``. Pixels stay ``uint8`` in
memory; scaling, resizing, the optional crop-and-flip augmentation and normalisation
happen per batch, and the gray plane is repeated (without copying) for 3-channel networks.
The validation split is carved from the 60,000 training images; the test split is the
official 10,000.

Example:
    >>> from searchkit.data.fashion import load_fashion
    >>> load_fashion(root="/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    searchkit.data.base.DataRootError: Fashion-MNIST not found under '/nonexistent': ...
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import torch

from searchkit.data.base import DataRootError, DataSplits, ImageTensorDataset, carve_val

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle boot")
# Per-pixel statistics of the 60,000 training images (scaled to [0, 1]).
MEAN, STD = 0.2860, 0.3530


def _read(path: str, offset: int) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def _find(root: str, name: str) -> str:
    for candidate in (name, name[:-3]):  # gzipped as shipped, or unpacked
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    raise DataRootError(f"Fashion-MNIST not found under '{root}': {name} is missing (apt-get install "
                        "dataset-fashion-mnist, or pass data.root=DIR holding the four idx files)")


def load_fashion(
    *,
    root: str | None = None,
    image_size: int = 28,
    seed: int = 0,
    val_fraction: float = 0.1,
    max_train: int | None = None,
    augment: bool = False,
    in_channels: int = 3,
) -> DataSplits:
    """Load Fashion-MNIST from ``root`` (default: the Debian package's folder).

    Args:
        root: Folder of the four idx files (gzipped or not).
        image_size: Height and width; other than 28, images are resized (bilinear) per batch.
        seed: Seed of the train/val split.
        val_fraction: Share of the training images held out for validation (6,000 by default).
        max_train: Keep at most this many training images (stratified).
        augment: Random crop (padding 2) + horizontal flip on the training split.
        in_channels: 3 (the gray plane repeated) or 1.
    """
    if in_channels not in (1, 3):
        raise ValueError(f"fashion in_channels must be 1 or 3, got {in_channels}")
    root = os.path.abspath(os.path.expanduser(root or DEFAULT_ROOT))
    arrays = {}
    for split, (images, labels) in _FILES.items():
        x = _read(_find(root, images), 16)
        y = _read(_find(root, labels), 8).astype(np.int64)
        if x.size != len(y) * 28 * 28:
            raise DataRootError(f"Fashion-MNIST under '{root}': {images} does not hold {len(y)} 28x28 images")
        arrays[split] = (torch.from_numpy(x.copy()).view(-1, 1, 28, 28), y)
    train_x, train_y = arrays["train"]
    test_x, test_y = arrays["test"]
    train, val = carve_val(train_y, val_fraction, seed, max_train)
    common = dict(mean=[MEAN] * in_channels, std=[STD] * in_channels, scale=1 / 255, image_size=int(image_size),
                  pad=max(1, round(2 * int(image_size) / 28)))

    def split(x: torch.Tensor, y: np.ndarray, idx: np.ndarray | None, aug: bool) -> ImageTensorDataset:
        if idx is not None:
            x, y = x[torch.from_numpy(idx)], y[idx]
        return ImageTensorDataset(x.expand(-1, in_channels, -1, -1), torch.from_numpy(y), augment=aug, **common)

    return DataSplits(
        name="fashion",
        train=split(train_x, train_y, train, bool(augment)),
        val=split(train_x, train_y, val, False),
        test=split(test_x, test_y, None, False),
        num_classes=10,
        in_channels=in_channels,
        image_size=int(image_size),
        classes=CLASSES,
        preprocessing={"source": f"Fashion-MNIST idx files under {root}, 28x28 gray uint8", "scale": 1 / 255,
                       "resize": f"bilinear from 28x28 to {image_size}x{image_size}" if image_size != 28 else "none",
                       "planes": "the gray plane repeated" if in_channels == 3 else "gray",
                       "mean": [MEAN] * in_channels, "std": [STD] * in_channels},
    )
