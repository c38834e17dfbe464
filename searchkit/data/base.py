"""What every dataset loader returns, and the helpers they share.

A loader turns a local data root into :class:`DataSplits`: a train set to fine-tune
candidates on, a validation set to score them on (this is what a search optimises), and
an optional test set that the search never touches. Splits carved out of a training
pool are stratified and depend only on ``seed``, so every candidate of a study (and a
resumed study) sees the very same images.

Example:
    >>> import numpy as np
    >>> from searchkit.data.base import stratified_split
    >>> rest, held = stratified_split(np.repeat([0, 1], 10), 0.2, seed=0)
    >>> len(rest), len(held)
    (16, 4)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataRootError(ValueError):
    """A dataset's files are missing or unusable.

    The message is one line: what is missing, where it was looked for, and how to
    provide it. Nothing is ever downloaded.
    """


@dataclass
class DataSplits:
    """The splits of one dataset, ready for :func:`searchkit.evaluate.finetune`.

    Attributes:
        name: Registry name of the dataset (``"digits"``, ``"cifar10"``...).
        train: Images candidates are fine-tuned on; yields ``(image, label)`` with
            ``image`` a float tensor ``(in_channels, image_size, image_size)``.
        val: Held-out images candidates are scored on (what the search optimises).
        test: Final evaluation set, never used by a search; ``None`` if there is none.
        num_classes: Number of classes; labels are ``0 .. num_classes - 1``.
        in_channels: Channels of every image.
        image_size: Height and width of every image.
        classes: Class names in label order, when known.
        preprocessing: How a raw image becomes a model input (source, ``scale``, ``mean``,
            ``std``, resizing): what a deployed network expects, recorded at export.
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset | None
    num_classes: int
    in_channels: int
    image_size: int
    classes: tuple[str, ...] | None = None
    preprocessing: dict | None = None

    def describe(self) -> str:
        """One line for logs, e.g. ``digits: 1150 train / 288 val / 359 test, 10 classes,
        3x16x16, augment: none``."""
        sizes = f"{len(self.train)} train / {len(self.val)} val"  # type: ignore[arg-type]
        if self.test is not None:
            sizes += f" / {len(self.test)} test"  # type: ignore[arg-type]
        shape = f"{self.in_channels}x{self.image_size}x{self.image_size}"
        return f"{self.name}: {sizes}, {self.num_classes} classes, {shape}, augment: {augmentation(self.train)}"

    def fingerprint(self) -> str:
        """A hash of what the splits hold - images and labels, or for data read from files
        their names, sizes and modification times - and how they are prepared: new images
        under the same root give another fingerprint."""
        h = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            h.update(content_fingerprint(split).encode())
        h.update(repr((self.num_classes, self.in_channels, self.image_size, self.classes)).encode())
        return h.hexdigest()[:16]


def augmentation(dataset: Dataset) -> str:
    """What a training split does to its images as they are read, in words."""
    inner = getattr(dataset, "dataset", dataset)  # a Subset's
    if isinstance(inner, ImageTensorDataset):
        return f"random crop (pad {inner.pad}) + flip" if inner.augment else "none"
    transform = getattr(inner, "transform", None)
    if transform is not None:
        steps = [type(t).__name__ for t in getattr(transform, "transforms", [transform])]
        random = [n for n in steps if n.startswith("Random")]
        return " + ".join(random) if random else "none"
    return "none"


def content_fingerprint(dataset: Dataset | None) -> str:
    """A hash of a split's content (see :meth:`DataSplits.fingerprint`)."""
    h = hashlib.sha256()
    if dataset is None:
        return "none"
    if isinstance(dataset, Subset):
        h.update(content_fingerprint(dataset.dataset).encode())
        h.update(np.asarray(dataset.indices, dtype=np.int64).tobytes())
        return h.hexdigest()
    if isinstance(dataset, ImageTensorDataset):
        for t in (dataset.images, dataset.labels):
            h.update(t.contiguous().numpy().tobytes())
        h.update(repr((dataset.mean.tolist(), dataset.std.tolist(), dataset.scale, dataset.image_size,
                       dataset.augment, dataset.pad)).encode())
        return h.hexdigest()
    if isinstance(dataset, TensorDataset):
        for t in dataset.tensors:
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()
    samples = getattr(dataset, "samples", None)  # torchvision's folder datasets
    if isinstance(samples, list):
        for path, target in samples:
            st = os.stat(path)
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}|{target}\n".encode())
        h.update(repr(getattr(dataset, "transform", None)).encode())
        return h.hexdigest()
    # anything else: its size and a sample from each end
    n = len(dataset)  # type: ignore[arg-type]
    h.update(str(n).encode())
    for i in sorted({0, n // 2, n - 1} if n else set()):
        x, y = dataset[i][:2]
        h.update(torch.as_tensor(x).numpy().tobytes() + str(y).encode())
    return h.hexdigest()


class ImageTensorDataset(Dataset):
    """Images kept in memory as one tensor, converted per sample or per batch.

    Raw pixels stay compact (``uint8`` for CIFAR); scaling, resizing, augmentation
    (random crop with zero padding, then horizontal flip, as in the usual CIFAR recipe)
    and normalisation happen when items are read. Indexing with a list or tensor of
    indices returns a whole batch at once, which :mod:`searchkit.evaluate` uses to skip
    per-sample collation. Augmentation draws from torch's global RNG, so it is
    reproducible after ``torch.manual_seed``.

    Args:
        images: ``(N, C, H, W)`` tensor.
        labels: ``(N,)`` integer labels.
        mean: Per-channel mean, applied after ``scale``.
        std: Per-channel standard deviation.
        scale: Multiplier turning raw pixels into ``[0, 1]`` (``1/255`` for uint8).
        image_size: Output height and width; images are resized (bilinear) if needed.
        augment: Apply random crop + flip.
        pad: Zero padding for the random crop, in output pixels.
    """

    supports_batch_index = True

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        *,
        mean: Sequence[float],
        std: Sequence[float],
        scale: float = 1.0,
        image_size: int | None = None,
        augment: bool = False,
        pad: int = 4,
    ):
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if len(self.labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(self.labels)} labels")
        planes = images.shape[1]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, planes, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, planes, 1, 1)
        self.scale = float(scale)
        self.image_size = int(image_size or images.shape[-1])
        self.augment = bool(augment)
        self.pad = int(pad)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            x, y = self._convert(self.images[int(index)].unsqueeze(0)), self.labels[int(index)]
            return x[0], y
        if isinstance(index, torch.Tensor) and index.dim() == 0:
            return self[int(index)]
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        return self._convert(self.images[index]), self.labels[index]

    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.scale != 1.0:
            x = x * self.scale
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            shrink = x.shape[-1] > self.image_size
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear",
                align_corners=False, antialias=shrink,
            )
        if self.augment:
            x = random_crop_flip(x, self.pad)
        return (x - self.mean) / self.std


def random_crop_flip(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Randomly crop each image of a batch from a zero-padded copy, then maybe flip it.

    Args:
        x: ``(N, C, H, W)`` batch.
        pad: Padding on each side; offsets are drawn in ``[0, 2 * pad]``.

    Returns:
        A new batch of the same shape.
    """
    n, c, h, w = x.shape
    offset_y = torch.randint(0, 2 * pad + 1, (n, 1))
    offset_x = torch.randint(0, 2 * pad + 1, (n, 1))
    flip = torch.rand(n) < 0.5
    rows = offset_y + torch.arange(h)
    cols = offset_x + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(-1), cols)
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    return padded[
        torch.arange(n)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def _rng(seed: int, salt: int) -> np.random.Generator:
    # Separate streams for separate purposes (val carving, subsetting) from one seed.
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, salt])


def check_fraction(name: str, value: float) -> float:
    """Validate a split fraction in the open interval (0, 1)."""
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value}")
    return value


def stratified_split(
    labels: Sequence[int] | np.ndarray, fraction: float, seed: int, *, salt: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held-out), keeping class proportions.

    Exactly ``round(len(labels) * fraction)`` indices are held out; each class gives
    its proportional share, the rounding remainder going to the classes closest to the
    next whole image. The result depends only on ``labels``, ``fraction``, ``seed`` and
    ``salt``.

    Args:
        labels: Class label of each item.
        fraction: Share to hold out, in (0, 1).
        seed: Seed of the split.
        salt: Distinguishes independent splits made from the same seed.

    Returns:
        Sorted index arrays ``(kept, held)``; together they cover every index once.
    """
    labels = np.asarray(labels)
    fraction = check_fraction("fraction", fraction)
    n_held = int(round(len(labels) * fraction))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * fraction
    take = np.floor(exact).astype(int)
    remainder = n_held - int(take.sum())
    if remainder > 0:
        order = np.argsort(-(exact - take), kind="stable")
        take[order[:remainder]] += 1
    rng = _rng(seed, salt)
    held = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=int)
    mask = np.ones(len(labels), dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def stratified_subset(labels: Sequence[int] | np.ndarray, size: int, seed: int) -> np.ndarray:
    """Pick ``size`` positions of ``labels`` (stratified, sorted); all if ``size`` >= len."""
    labels = np.asarray(labels)
    if size < 1:
        raise ValueError(f"max_train must be at least 1, got {size}")
    if size >= len(labels):
        return np.arange(len(labels))
    _, held = stratified_split(labels, size / len(labels), seed, salt=2)
    return held


def carve_val(
    labels: Sequence[int] | np.ndarray, val_fraction: float, seed: int, max_train: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a stratified validation split from a training pool, then cap the train part.

    Args:
        labels: Labels of the pool.
        val_fraction: Share of the pool held out for validation.
        seed: Seed of the split.
        max_train: Keep at most this many training images (stratified), or ``None``.

    Returns:
        Index arrays ``(train, val)`` into the pool.
    """
    labels = np.asarray(labels)
    train, val = stratified_split(labels, check_fraction("val_fraction", val_fraction), seed)
    if max_train is not None:
        train = train[stratified_subset(labels[train], int(max_train), seed)]
    return train, val
