"""Shared test setup."""

import os

import pytest
import torch

# NOTE: on 2 shared cores, torch's intra-op threads fight each other (and Ray workers);
# one thread per process keeps test time predictable.
torch.set_num_threads(1)
os.environ.setdefault("CI", "1")  # no progress bars in test output


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a fresh directory: studies/ and exports/ land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _quiet_optuna():
    """Optuna's per-trial INFO lines drown test output."""
    import optuna
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)
