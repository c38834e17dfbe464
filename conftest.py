"""Test setup shared by the test suite and the package's doctests."""

import os
import tempfile

import pytest
import torch

# NOTE: on 2 shared cores, torch's intra-op threads fight each other (and Ray workers);
# one thread per process keeps test time predictable.
torch.set_num_threads(1)
os.environ.setdefault("CI", "1")  # no progress bars in test output
# The test-only space and cost model (each registers itself with one line), in this process
# and in every searchkit process a test starts.
os.environ["SEARCHKIT_PLUGINS"] = "tests.plugins.toy_space,tests.plugins.toy_cost"
_ROOT = os.path.dirname(os.path.abspath(__file__))
# Trained bases (and a server study's weights) go per user: the suite's own, not the user's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="searchkit-test-cache-")
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="searchkit-test-data-")  # a server study's weights
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(autouse=True)
def _doctests_in_a_fresh_directory(request, tmp_path, monkeypatch):
    """Doctests that run a search write studies/ where they run: a temporary directory."""
    from _pytest.doctest import DoctestItem
    if isinstance(request.node, DoctestItem):
        monkeypatch.chdir(tmp_path)
