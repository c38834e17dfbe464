"""CIFAR-10 from a local copy of the python version (``cifar-10-batches-py``).

Files are read by ``torchvision.datasets.CIFAR10`` with ``download=False``; nothing is
ever fetched. The pixels are then held in memory as one ``uint8`` tensor (150 MB), and
scaling, augmentation (random crop with 4-pixel padding + horizontal flip, training
split only) and the standard CIFAR-10 normalisation are applied per batch. The
validation split is carved from the 50,000 training images (stratified, from
``seed``); the test split is the official 10,000-image test set.

Example:
    >>> from searchkit.data.cifar import load_cifar10
    >>> load_cifar10(root="/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    searchkit.data.base.DataRootError: CIFAR-10 not found under '/nonexistent': ...
"""

from __future__ import annotations

import os

import numpy as np
import torch

from searchkit.data.base import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DataRootError,
    DataSplits,
    ImageTensorDataset,
    carve_val,
)

_FOLDER = "cifar-10-batches-py"
_ARCHIVE = "cifar-10-python.tar.gz"
_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
_HOW = (f"put the python version (folder {_FOLDER} from {_ARCHIVE}) there, "
        "or pass data.root=DIR")


def _find_base(root: str) -> str:
    """Accept both the parent of ``cifar-10-batches-py`` and that folder itself."""
    root = os.path.abspath(os.path.expanduser(root))
    if os.path.basename(root.rstrip(os.sep)) == _FOLDER and not os.path.isdir(
        os.path.join(root, _FOLDER)
    ):
        root = os.path.dirname(root.rstrip(os.sep))
    missing = [name for name in _FILES if not os.path.isfile(os.path.join(root, _FOLDER, name))]
    if missing:
        hint = ""
        if os.path.isfile(os.path.join(root, _ARCHIVE)):
            hint = f" ({_ARCHIVE} is there: extract it with 'tar xzf {_ARCHIVE}')"
        elif os.path.isdir(os.path.join(root, _FOLDER)):
            hint = f" (missing {', '.join(missing)})"
        raise DataRootError(f"CIFAR-10 not found under '{root}'{hint}: {_HOW}")
    return root


def _reader(verify: bool):
    from torchvision.datasets import CIFAR10

    if verify:
        return CIFAR10

    class UncheckedCIFAR10(CIFAR10):
        # torchvision skips the MD5 comparison when a checksum is None.
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return UncheckedCIFAR10


def load_cifar10(
    *,
    root: str | None = None,
    image_size: int = 32,
    seed: int = 0,
    val_fraction: float = 0.2,
    max_train: int | None = None,
    augment: bool = True,
    verify: bool = True,
) -> DataSplits:
    """Load CIFAR-10 from ``root`` (the folder that holds ``cifar-10-batches-py``).

    Args:
        root: Data root; ``None`` is an error (nothing is downloaded).
        image_size: Height and width; other than 32, images are resized (bilinear)
            per batch.
        seed: Seed of the train/val split.
        val_fraction: Share of the training images held out for validation
            (default 0.2: 40,000 train / 10,000 val).
        max_train: Keep at most this many training images (stratified).
        augment: Random crop (padding 4) + horizontal flip on the training split.
        verify: Check the files' MD5 sums as torchvision does; turn off for
            re-packed copies.

    Returns:
        :class:`~searchkit.data.base.DataSplits` with the official test set as ``test``.

    Raises:
        DataRootError: ``root`` is ``None``, files are missing, or they are corrupted.
    """
    if root is None:
        raise DataRootError(f"CIFAR-10 needs a local data root (nothing is downloaded): {_HOW}")
    base = _find_base(str(root))
    reader = _reader(verify)
    try:
        train_raw = reader(base, train=True, download=False)
        test_raw = reader(base, train=False, download=False)
    except RuntimeError as err:  # torchvision's "not found or corrupted"
        raise DataRootError(
            f"CIFAR-10 under '{base}' is corrupted or not the python version ({err}): "
            f"re-extract {_ARCHIVE} there, or pass data.verify=false for a re-packed copy"
        ) from None

    def tensors(raw) -> tuple[torch.Tensor, np.ndarray]:
        pixels = torch.from_numpy(np.ascontiguousarray(raw.data)).permute(0, 3, 1, 2).contiguous()
        return pixels, np.asarray(raw.targets, dtype=np.int64)

    train_x, train_y = tensors(train_raw)
    test_x, test_y = tensors(test_raw)
    train, val = carve_val(train_y, val_fraction, seed, max_train)
    common = dict(mean=CIFAR10_MEAN, std=CIFAR10_STD, scale=1 / 255, image_size=image_size)
    pad = max(1, round(4 * int(image_size) / 32))

    def split(x: torch.Tensor, y: np.ndarray, idx: np.ndarray | None, aug: bool):
        if idx is not None:
            index = torch.from_numpy(idx)
            x, y = x[index], y[idx]
        return ImageTensorDataset(x, torch.from_numpy(y), augment=aug, pad=pad, **common)

    return DataSplits(
        name="cifar10",
        train=split(train_x, train_y, train, bool(augment)),
        val=split(train_x, train_y, val, False),
        test=split(test_x, test_y, None, False),
        num_classes=10,
        in_channels=3,
        image_size=int(image_size),
        classes=tuple(train_raw.classes),
        preprocessing={"source": "RGB uint8 32x32", "scale": 1 / 255,
                       "resize": "none" if int(image_size) == 32 else f"bilinear to {image_size}x{image_size}",
                       "mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)},
    )
