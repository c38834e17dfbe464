"""Dataset loaders: local roots only, nothing is downloaded.

Every loader takes the same keyword arguments (``root``, ``image_size``, ``seed``,
``val_fraction``, ``max_train``) plus its own options, and returns
:class:`DataSplits`. Names map to loaders in :data:`searchkit.registry.DATASETS`:

============  =================================================================
digits        scikit-learn's 8x8 digits, shipped offline (the default)
cifar10       CIFAR-10 python version under ``root``
fashion       Fashion-MNIST idx files (Debian package ``dataset-fashion-mnist``)
imagefolder   ``root/train/<class>/...`` (+ optional ``val/``, ``test/``)
synthetic     generated class-conditional images, for tests
============  =================================================================

Example:
    >>> from searchkit.data import load_dataset
    >>> data = load_dataset("digits", image_size=16, seed=0)
    >>> data.num_classes, data.in_channels, data.image_size
    (10, 3, 16)
    >>> load_dataset("digits", imgsize=16)
    Traceback (most recent call last):
    ...
    ValueError: unknown option 'imgsize' for data 'digits'; did you mean 'image_size'? (options: image_size, in_channels, max_train, root, seed, test_fraction, val_fraction)
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from searchkit.data.base import DataRootError, DataSplits

__all__ = ["DataRootError", "DataSplits", "dataset_options", "load_dataset"]


def dataset_options(name: str) -> dict[str, Any]:
    """The options a dataset's loader accepts, with their defaults.

    Args:
        name: Registry name, e.g. ``"cifar10"``.

    Returns:
        ``{option: default}`` in signature order.
    """
    from searchkit.registry import DATASETS

    loader = DATASETS.get(name)
    return {
        p.name: p.default
        for p in inspect.signature(loader).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def load_dataset(name: str, **kwargs: Any) -> DataSplits:
    """Load a registered dataset by name.

    Args:
        name: Registry name (``digits``, ``cifar10``, ``imagefolder``, ``synthetic``,
            or a plugin's).
        **kwargs: Loader options; see each loader (or :func:`dataset_options`).

    Returns:
        The dataset's :class:`DataSplits`.

    Raises:
        searchkit.registry.UnknownNameError: ``name`` is not registered.
        ValueError: An option is unknown (the message names the nearest valid one).
        DataRootError: The data are not where ``root`` says.
    """
    from searchkit.registry import DATASETS

    loader = DATASETS.get(name)
    params = inspect.signature(loader).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = sorted(n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL)
        for key in kwargs:
            if key not in params:
                near = difflib.get_close_matches(key, valid, n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise ValueError(
                    f"unknown option '{key}' for data '{name}'{hint} (options: {', '.join(valid)})"
                )
    return loader(**kwargs)
