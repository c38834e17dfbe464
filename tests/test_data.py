"""Dataset loaders: splits, shapes, offline error messages, real on-disk formats."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from searchkit.data import DataRootError, DataSplits, dataset_options, load_dataset
from searchkit.data.base import ImageTensorDataset, stratified_split
from searchkit.registry import UnknownNameError


def labels_of(dataset) -> np.ndarray:
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))])


# -- splitting ---------------------------------------------------------------------------

def test_stratified_split_is_deterministic_disjoint_and_stratified():
    labels = np.repeat(np.arange(5), [40, 30, 20, 20, 10])
    keep, held = stratified_split(labels, 0.25, seed=3)
    keep2, held2 = stratified_split(labels, 0.25, seed=3)
    assert np.array_equal(keep, keep2) and np.array_equal(held, held2)
    assert len(held) == 30
    assert not set(keep) & set(held)
    assert sorted(np.concatenate([keep, held])) == list(range(len(labels)))
    # Exact shares are 10, 7.5, 5, 5, 2.5: the one left-over image goes to a half share.
    assert np.bincount(labels[held]).tolist() == [10, 8, 5, 5, 2]
    _, other = stratified_split(labels, 0.25, seed=4)
    assert not np.array_equal(held, other)


def test_stratified_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="between 0 and 1"):
        stratified_split([0, 1], 1.0, seed=0)


# -- digits ------------------------------------------------------------------------------

def test_digits_shapes_values_and_split_sizes():
    data = load_dataset("digits", image_size=16, seed=0)
    assert isinstance(data, DataSplits)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 3, 16)
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert (len(data.train), len(data.val), len(data.test)) == (1150, 288, 359)
    image, label = data.train[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert 0 <= int(label) < 10
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    pool = torch.cat([data.train.tensors[0], data.val.tensors[0]])
    assert abs(pool.mean().item()) < 0.05 and abs(pool.std().item() - 1) < 0.05
    assert torch.isfinite(data.test.tensors[0]).all()


def test_digits_splits_are_stratified_and_seeded():
    a = load_dataset("digits", image_size=8, seed=0)
    b = load_dataset("digits", image_size=8, seed=0)
    c = load_dataset("digits", image_size=8, seed=1)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert torch.equal(a.train.tensors[1], b.train.tensors[1])
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])
    # The test split is fixed, whatever the search seed.
    assert torch.equal(a.test.tensors[0], c.test.tensors[0])
    for split in (a.train, a.val, a.test):
        share = np.bincount(split.tensors[1].numpy(), minlength=10) / len(split)
        assert np.all(np.abs(share - 0.1) < 0.02)
    # Disjoint: all 1797 digits images are distinct, and every one is in exactly one split.
    rows = [tuple(x[0].flatten().tolist()) for s in (a.train, a.val, a.test) for x in s.tensors[0]]
    assert len(set(rows)) == len(rows) == 1797


def test_digits_options():
    data = load_dataset("digits", image_size=8, in_channels=1, max_train=100, seed=2)
    assert data.train[0][0].shape == (1, 8, 8)
    assert len(data.train) == 100
    assert np.bincount(data.train.tensors[1].numpy()).min() >= 9


def test_load_dataset_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="did you mean 'image_size'"):
        load_dataset("digits", imagesize=16)
    with pytest.raises(UnknownNameError, match="did you mean 'digits'"):
        load_dataset("digit")
    assert "augment" in dataset_options("cifar10")
    assert dataset_options("digits")["image_size"] == 16  # twice the native 8x8; context.input_side raises it per model


# -- synthetic ---------------------------------------------------------------------------

def test_synthetic_is_deterministic_and_sized():
    a = load_dataset("synthetic", image_size=8, num_classes=4, size=80, seed=0)
    b = load_dataset("synthetic", image_size=8, num_classes=4, size=80, seed=0)
    assert (len(a.train), len(a.val), len(a.test)) == (80, 20, 20)
    assert a.num_classes == 4 and a.train[0][0].shape == (3, 8, 8)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert sorted(set(a.val.tensors[1].tolist())) == [0, 1, 2, 3]


# -- cifar10 -----------------------------------------------------------------------------

def write_fake_cifar(root, per_batch: int = 20, test_size: int = 20) -> str:
    """A tiny CIFAR-10 in the real python format: pickled dict batches."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    rng = np.random.default_rng(0)

    def batch(n: int, name: str, offset: int) -> None:
        labels = [(i + offset) % 10 for i in range(n)]
        entry = {
            "batch_label": name,
            "labels": labels,
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(entry, f)

    for i in range(1, 6):
        batch(per_batch, f"data_batch_{i}", i)
    batch(test_size, "test_batch", 0)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"], "num_cases_per_batch": per_batch,
            "num_vis": 3072}
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump(meta, f)
    return folder


def test_cifar_missing_root_messages(tmp_path):
    with pytest.raises(DataRootError, match=r"needs a local data root.*data\.root=DIR"):
        load_dataset("cifar10")
    missing = tmp_path / "nowhere"
    with pytest.raises(DataRootError) as err:
        load_dataset("cifar10", root=str(missing))
    message = str(err.value)
    assert "\n" not in message
    assert f"CIFAR-10 not found under '{missing}'" in message
    assert "cifar-10-batches-py" in message and "cifar-10-python.tar.gz" in message
    assert "data.root=DIR" in message
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataRootError, match="extract it"):
        load_dataset("cifar10", root=str(tmp_path))


def test_fake_cifar_on_disk_loads(tmp_path):
    folder = write_fake_cifar(str(tmp_path))
    # Checksums of the real files do not match the fake ones: a clear error by default.
    with pytest.raises(DataRootError, match="corrupted"):
        load_dataset("cifar10", root=str(tmp_path))
    data = load_dataset("cifar10", root=str(tmp_path), verify=False, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 20)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 3, 32)
    assert data.classes[0] == "airplane"
    assert np.bincount(labels_of(data.val), minlength=10).tolist() == [2] * 10
    x, y = data.val[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= int(y) < 10
    # Normalised: uniform random pixels have mean ~0.5, so values straddle zero.
    assert x.min() < 0 < x.max()
    # Augmentation on train only: repeated reads differ for train, never for val.
    torch.manual_seed(0)
    assert not all(torch.equal(data.train[0][0], data.train[0][0]) for _ in range(5))
    assert torch.equal(data.val[3][0], data.val[3][0])
    batch_x, batch_y = data.train[[0, 1, 2]]
    assert batch_x.shape == (3, 3, 32, 32) and batch_y.shape == (3,)
    # The folder itself is accepted as root; other sizes and no augmentation work.
    small = load_dataset("cifar10", root=folder, verify=False, image_size=16, augment=False,
                         max_train=30)
    assert small.train[0][0].shape == (3, 16, 16) and len(small.train) == 30
    assert torch.equal(small.train[0][0], small.train[0][0])


def test_image_tensor_dataset_crop_keeps_content():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    ds = ImageTensorDataset(images, [0, 1], mean=[0.0], std=[1.0], augment=True, pad=0)
    torch.manual_seed(0)
    for _ in range(5):
        x, _ = ds[1]
        assert torch.equal(x, images[1]) or torch.equal(x, images[1].flip(-1))


# -- imagefolder -------------------------------------------------------------------------

def write_pngs(folder, classes, per_class: int, size: int = 12) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for k, name in enumerate(classes):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            pixels[..., k % 3] = 255
            Image.fromarray(pixels).save(os.path.join(folder, name, f"{i}.png"))


def test_imagefolder_carves_val_from_train(tmp_path):
    write_pngs(tmp_path / "train", ["cat", "dog", "eel"], per_class=5)
    data = load_dataset("imagefolder", root=str(tmp_path), image_size=8, seed=0)
    assert data.classes == ("cat", "dog", "eel") and data.num_classes == 3
    assert (len(data.train), len(data.val), data.test) == (12, 3, None)
    assert sorted(labels_of(data.val).tolist()) == [0, 1, 2]
    x, y = data.train[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    again = load_dataset("imagefolder", root=str(tmp_path), image_size=8, seed=0)
    assert data.val.indices == again.val.indices
    assert not set(data.train.indices) & set(data.val.indices)


def test_imagefolder_uses_val_and_test_folders(tmp_path):
    write_pngs(tmp_path / "train", ["a", "b", "c"], per_class=4)
    write_pngs(tmp_path / "val", ["a", "c"], per_class=2)
    write_pngs(tmp_path / "test", ["a", "b", "c"], per_class=1)
    data = load_dataset("imagefolder", root=str(tmp_path), image_size=10, augment=False)
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 3)
    # val/ lacks class "b": labels still follow train/'s numbering.
    assert sorted(set(labels_of(data.val).tolist())) == [0, 2]
    assert data.test[0][0].shape == (3, 10, 10)
    write_pngs(tmp_path / "val", ["zebra"], per_class=1)
    with pytest.raises(DataRootError, match="zebra"):
        load_dataset("imagefolder", root=str(tmp_path))


def test_imagefolder_missing_root_messages(tmp_path):
    with pytest.raises(DataRootError, match="needs a data root"):
        load_dataset("imagefolder")
    with pytest.raises(DataRootError, match=r"folder not found at .*data\.root=DIR"):
        load_dataset("imagefolder", root=str(tmp_path / "absent"))
    with pytest.raises(DataRootError, match="no train/ folder"):
        load_dataset("imagefolder", root=str(tmp_path))
    (tmp_path / "train").mkdir()
    with pytest.raises(DataRootError, match="no images found"):
        load_dataset("imagefolder", root=str(tmp_path))


def test_fashion_mnist_from_the_debian_package():
    # .ci/run installs dataset-fashion-mnist; a missing package fails here, it is not skipped
    from searchkit.data import load_dataset
    data = load_dataset("fashion", max_train=2000, seed=0, image_size=16)
    assert (len(data.train), len(data.val), len(data.test)) == (2000, 6000, 10000)
    x, y = data.train[list(range(64))]
    assert x.shape == (64, 3, 16, 16) and set(y.tolist()) <= set(range(10))
    assert abs(float(x.mean())) < 0.3  # normalised with the training statistics
    assert load_dataset("fashion", max_train=2000, seed=1).fingerprint() != data.fingerprint()


def test_fashion_mnist_missing_root_is_one_line(tmp_path):
    from searchkit.data import DataRootError, load_dataset
    with pytest.raises(DataRootError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion", root=str(tmp_path))
