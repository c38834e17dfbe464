"""What the contract suites share: a small, real run setup of any registered space."""

from __future__ import annotations

import functools

import optuna

from searchkit.config import load_config
from searchkit.registry import SPACES

# Tiny data and no base training: the suites check contracts, not accuracy.
_FAST = ["data=synthetic", "data.options={size: 64}", "base.epochs=0", "constraint={}",
         "finetune.max_batches=1", "progress=false"]


@functools.lru_cache(maxsize=None)
def setup_of(space: str):
    """A :class:`~searchkit.setup.RunSetup` of ``space`` with its ``contract_overrides``."""
    import tempfile

    from searchkit.setup import RunSetup
    cls = SPACES.get(space)
    cache = tempfile.mkdtemp(prefix=f"searchkit-contract-{space}-")
    cfg = load_config([f"space={space}", *_FAST, f"base.cache_dir={cache}",
                       *getattr(cls, "contract_overrides", ())])
    return RunSetup.build(cfg, quiet=True)


def sample_genomes(space, n: int = 6, seed: int = 3) -> list[tuple[dict, dict]]:
    """``(params, genome)`` of ``n`` trials of a seeded random sampler over the space."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        genome = space.suggest(trial)
        out.append((dict(trial.params), genome))
        study.tell(trial, 0.0)
    return out
