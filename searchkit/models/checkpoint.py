"""Reading state_dict checkpoints safely (``weights_only``) with one-line errors.

Example:
    >>> import torch, tempfile, os
    >>> from searchkit.models import build_base
    >>> path = os.path.join(tempfile.mkdtemp(), "r20.pt")
    >>> torch.save(build_base("resnet20").state_dict(), path)
    >>> try:
    ...     load_weights(build_base("resnet56"), load_state_dict_file(path), what="r20.pt")
    ... except CheckpointError as exc:
    ...     print(exc)
    r20.pt does not fit this model: 216 keys missing (first: layer1.3.conv1.weight)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from searchkit.core.atomic import replacing
from searchkit.core.errors import UserError


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or of another model (one-line message)."""


def load_state_dict_file(path: str | Path) -> dict:
    """The ``state_dict`` in ``path`` (a bare one, or under a ``"state_dict"`` key)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds no state_dict")
    return state


def load_weights(model: nn.Module, state: dict, *, what: str) -> None:
    """Strict load with a one-line error naming the first mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or wrong:
        if wrong:
            k = wrong[0]
            why = f"{k} has shape {tuple(state[k].shape)}, expected {tuple(own[k].shape)}"
        elif missing:
            why = f"{len(missing)} keys missing (first: {missing[0]})"
        else:
            why = f"{len(extra)} unexpected keys (first: {extra[0]})"
        raise CheckpointError(f"{what} does not fit this model: {why}")
    model.load_state_dict(state)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_state_dict(model: nn.Module, path: str | Path) -> Path:
    """``torch.save`` of the CPU state_dict, atomically: a killed run leaves no half file."""
    path = Path(path)
    with replacing(path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    return path
