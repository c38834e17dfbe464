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
