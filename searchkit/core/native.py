"""Compiled CPU kernels, built once per machine with torch's C++ extension loader.

A space ships a ``.cpp`` file that defines ``TORCH_LIBRARY`` ops; :func:`build` compiles it
into a cache folder per torch version and checkout (``$XDG_CACHE_HOME/searchkit/NAME``: two
checkouts building at once never overwrite each other's library) and registers the
ops' fake kernels, so ``torch.export`` and ``torch.compile`` retain them. Without a compiler (or
with ``SEARCHKIT_<NAME>_KERNEL=0``) it warns once and returns ``False``: callers then run
their pure-torch reference.

Example:
    >>> import os
    >>> os.environ["SEARCHKIT_NOTHING_KERNEL"] = "0"
    >>> build("nothing", "missing.cpp", {}, "a kernel")
    False
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Callable

import torch


def build_dir(name: str, source: str | Path) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "searchkit" / name
    where = hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:10]
    return root / f"torch-{torch.__version__.split('+')[0]}-{where}"


def build(name: str, source: str | Path, fakes: dict[str, Callable], what: str) -> bool:
    """Build and load ``source`` as ``searchkit_NAME``; ``False`` (one warning naming
    ``what``) where it cannot be built."""
    if os.environ.get(f"SEARCHKIT_{name.upper()}_KERNEL", "1") == "0":
        return False
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime": none needed
    try:
        from torch.utils.cpp_extension import load as cpp_load
        folder = build_dir(name, source)
        folder.mkdir(parents=True, exist_ok=True)
        cpp_load(name=f"searchkit_{name}", sources=[str(source)], extra_cflags=["-O3", "-fopenmp"],
                 extra_ldflags=["-fopenmp"], is_python_module=False, build_directory=str(folder), verbose=False)
        for op, fake in fakes.items():
            torch.library.register_fake(op)(fake)
        return True
    except Exception as exc:  # no compiler, no ninja, a failed build: run slower, but run
        text = str(exc).splitlines() or [type(exc).__name__]
        why = next((ln for ln in text if "error" in ln.lower() and "Error building" not in ln), text[0])
        warnings.warn(f"{what} unavailable ({why.strip()[:160]}); using the slower pure-torch path",
                      RuntimeWarning, stacklevel=3)
        return False


__all__ = ["build", "build_dir"]
