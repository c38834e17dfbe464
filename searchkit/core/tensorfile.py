"""Weight files without pickle: safetensors holding tensors plus one JSON metadata entry.

The exported weight formats of the spaces (the 1×N blocks, the packed binary convs) are
such files: :func:`write` stores ``{"format": FORMAT, **info}`` under the metadata key
``searchkit``; :func:`read` checks that format and raises the caller's one-line error for a
missing, foreign or malformed file.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> write(path, {"a": torch.ones(2)}, "demo/1", {"layers": {}})
    >>> info, tensors = read(path, "demo/1", ValueError, "demo")
    >>> info["layers"], tensors["a"].tolist()
    ({}, [1.0, 1.0])
    >>> read(path, "demo/2", ValueError, "demo")
    Traceback (most recent call last):
    ValueError: w.safetensors: format 'demo/1', expected 'demo/2'
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def write(path, tensors: dict[str, torch.Tensor], fmt: str, info: dict) -> None:
    from safetensors.torch import save_file
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(flat, str(path), metadata={"searchkit": json.dumps({"format": fmt, **info})})


def read(path, fmt: str, error: type[Exception], what: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(info, tensors)`` of a file of format ``fmt``; ``error`` (one line) otherwise."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        raise error(f"no {what} weight file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        info = json.loads(meta["searchkit"])
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
        raise error(f"{path.name} is not a searchkit {what} file ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(info, dict) or info.get("format") != fmt:
        got = info.get("format") if isinstance(info, dict) else None
        raise error(f"{path.name}: format {got!r}, expected {fmt!r}")
    return info, tensors


__all__ = ["read", "write"]
