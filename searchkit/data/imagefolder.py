"""Any image classification dataset laid out as class folders.

::

    root/train/<class>/*.png|jpg|...    required
    root/val/<class>/...                optional; else carved from train (stratified, seed)
    root/test/<class>/...               optional; never used by a search

Images are decoded by ``torchvision.datasets.ImageFolder`` (as RGB) when read, resized
to ``image_size`` x ``image_size``, and normalised with the ImageNet statistics that
torchvision's pretrained networks expect. Training images are augmented (random crop
with padding of 1/8 of the size + horizontal flip) unless ``augment=False``. The class
list comes from ``train/``; ``val/`` and ``test/`` may lack classes but not add any.

Example:
    >>> from searchkit.data.imagefolder import load_imagefolder
    >>> load_imagefolder(root=None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    searchkit.data.base.DataRootError: imagefolder needs a data root: ...
"""

from __future__ import annotations

import os

import numpy as np
from torch.utils.data import Subset

from searchkit.data.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataRootError,
    DataSplits,
    carve_val,
    stratified_subset,
)

_LAYOUT = "a folder with train/<class>/<images> (and optional val/, test/)"


def _transforms(image_size: int, augment: bool):
    from torchvision import transforms as T

    steps = [T.Resize((image_size, image_size))]
    if augment:
        steps += [
            T.RandomCrop(image_size, padding=max(1, image_size // 8)),
            T.RandomHorizontalFlip(),
        ]
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def _folder(path: str, transform, classes: list[str] | None = None):
    from torchvision.datasets import ImageFolder

    class FixedClassFolder(ImageFolder):
        # val/ and test/ use train/'s label numbering, even if they lack a class.
        def find_classes(self, directory):
            if classes is None:
                return super().find_classes(directory)
            found = sorted(e.name for e in os.scandir(directory) if e.is_dir())
            extra = sorted(set(found) - set(classes))
            if extra:
                raise DataRootError(
                    f"'{directory}' has classes not in train/: {', '.join(extra)}: "
                    "give val/ and test/ the same class folders as train/"
                )
            return list(classes), {name: i for i, name in enumerate(classes)}

    try:
        return FixedClassFolder(path, transform=transform, allow_empty=classes is not None)
    except FileNotFoundError as err:
        raise DataRootError(f"no images found in '{path}' ({err}): expected {_LAYOUT}") from None


def load_imagefolder(
    *,
    root: str | None = None,
    image_size: int = 32,
    seed: int = 0,
    val_fraction: float = 0.2,
    max_train: int | None = None,
    augment: bool = True,
) -> DataSplits:
    """Load ``root/train`` (and ``root/val``, ``root/test`` if present).

    Args:
        root: The dataset folder.
        image_size: Height and width after resizing.
        seed: Seed of the train/val split (when there is no ``val/``) and of
            ``max_train`` subsetting.
        val_fraction: Share of ``train/`` held out when there is no ``val/``.
        max_train: Keep at most this many training images (stratified).
        augment: Random crop + horizontal flip on the training split.

    Returns:
        :class:`~searchkit.data.base.DataSplits` of ``ImageFolder`` s (or subsets).

    Raises:
        DataRootError: ``root`` or ``root/train`` is missing, or holds no images.
    """
    if root is None:
        raise DataRootError(f"imagefolder needs a data root: pass data.root=DIR, {_LAYOUT}")
    root = os.path.abspath(os.path.expanduser(str(root)))
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        what = "no train/ folder" if os.path.isdir(root) else "folder not found"
        raise DataRootError(f"imagefolder: {what} at '{root}': pass data.root=DIR, {_LAYOUT}")
    image_size = int(image_size)
    train_tf = _transforms(image_size, augment)
    eval_tf = _transforms(image_size, False)

    train_full = _folder(train_dir, train_tf)
    classes = list(train_full.classes)
    labels = np.asarray(train_full.targets, dtype=np.int64)
    val_dir, test_dir = os.path.join(root, "val"), os.path.join(root, "test")
    if os.path.isdir(val_dir):
        val = _folder(val_dir, eval_tf, classes)
        train_idx = np.arange(len(labels))
        if max_train is not None:
            train_idx = stratified_subset(labels, int(max_train), seed)
    else:
        train_idx, val_idx = carve_val(labels, val_fraction, seed, max_train)
        val = Subset(_folder(train_dir, eval_tf), val_idx.tolist())
    train = train_full if len(train_idx) == len(labels) else Subset(train_full, train_idx.tolist())
    test = _folder(test_dir, eval_tf, classes) if os.path.isdir(test_dir) else None
    return DataSplits(
        name="imagefolder",
        train=train,
        val=val,
        test=test,
        num_classes=len(classes),
        in_channels=3,
        image_size=image_size,
        classes=tuple(classes),
        preprocessing={"source": "image files decoded as RGB", "scale": 1 / 255,
                       "resize": f"torchvision Resize to {image_size}x{image_size}",
                       "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    )
