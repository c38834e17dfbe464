"""``searchkit onexn check dir=FOLDER``: read an exported 1×N architecture's
``sparse.safetensors`` (every index checked), run it through the compiled kernel and
compare it with the folder's dense ``model.pt2``: the largest difference and the batch-1
speed of both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from searchkit.core.errors import ConfigError


def _ms(fn, x, rounds: int = 20) -> float:
    import torch
    with torch.no_grad():
        fn(x)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(rounds):
                fn(x)
            best = min(best, (time.perf_counter() - start) / rounds)
    return best * 1e3


def check_command(args: list[str]) -> int:
    """dir=FOLDER [threads=N]: check an exported 1xN architecture against its dense program."""
    import torch

    from searchkit.config import parse_override
    from searchkit.models import build_base
    from searchkit.registry import SPACES
    from searchkit.spaces.onexn import kernel
    from searchkit.spaces.onexn.format import SparseFormatError, load_sparse
    given = dict(parse_override(a) for a in args)
    folder, threads = given.pop("dir", None), int(given.pop("threads", 1))
    if folder is None or given:
        raise ConfigError("onexn check takes dir=FOLDER (an exported architecture) and threads=N")
    folder = Path(str(folder))
    try:
        arch = json.loads((folder / "arch.json").read_text())
    except (OSError, ValueError) as exc:
        raise SparseFormatError(f"{folder} is not an exported architecture ({type(exc).__name__})")
    if arch.get("space") != "onexn":
        raise SparseFormatError(f"{folder} holds a space={arch.get('space')} architecture, not onexn")
    torch.set_num_threads(threads)
    size = tuple(arch["input_size"])
    genome = arch["genome"]
    try:
        cls = SPACES.get("onexn")  # through the registry: this module is the package's own verb
        space = cls(cls.Options(model=genome["model"]), build_base(genome["model"], arch["num_classes"]), size)
        space.params_of(genome)
    except (KeyError, ValueError) as exc:
        raise SparseFormatError(f"arch.json of {folder} has a genome this searchkit cannot rebuild ({exc})")
    sparse = load_sparse(space, genome, folder / "sparse.safetensors").eval()
    dense = torch.export.load(str(folder / "model.pt2")).module()
    x = torch.randn(1, *size)
    with torch.no_grad():
        want, got = dense(x), sparse(x)
    diff = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
    d_ms, s_ms = _ms(dense, x), _ms(sparse, x)
    print(f"{folder.name}: {sum(1 for _ in genome['blocks'])} 1xN layers, kernel {kernel.isa()}, "
          f"max relative difference to model.pt2 {diff:.2e}")
    print(f"batch 1, {threads} thread(s): dense program {d_ms:.3f} ms, sparse {s_ms:.3f} ms ({d_ms / s_ms:.2f}x)")
    return 0 if diff <= 1e-4 else 1


__all__ = ["check_command"]
