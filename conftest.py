"""Test setup shared by the test suite and the package's doctests."""

import contextlib
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
# Under pytest-xdist (-n 2) the workers of one run share it: a base is trained once per run.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
    os.environ["XDG_CACHE_HOME"] = os.path.join(tempfile.gettempdir(), f"searchkit-test-cache-{_RUN}")
    os.makedirs(os.environ["XDG_CACHE_HOME"], exist_ok=True)
else:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="searchkit-test-cache-")
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="searchkit-test-data-")  # a server study's weights
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(autouse=True)
def _doctests_in_a_fresh_directory(request, tmp_path, monkeypatch):
    """Doctests that run a search write studies/ where they run: a temporary directory."""
    from _pytest.doctest import DoctestItem
    if isinstance(request.node, DoctestItem):
        monkeypatch.chdir(tmp_path)


# Under pytest-xdist a test marked ``alone`` (its processes use every core: the README's
# commands run with a user's threads, Ray starts workers) runs with no other test beside it;
# oversubscribed, they ran four times slower. Every other test holds a shared lock on the run's
# lock file, an ``alone`` one an exclusive lock; the gate keeps a waiting one from starving.
_LOCKS = os.path.join(tempfile.gettempdir(), f"searchkit-test-cores-{_RUN}") if _RUN else None
if _RUN:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # a test's own subprocesses: one core each


@contextlib.contextmanager
def _cores(alone: bool):
    import fcntl
    with open(_LOCKS + ".gate", "a") as gate, open(_LOCKS, "a") as main:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(main, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(main, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _LOCKS is None:
        yield
        return
    with _cores(item.get_closest_marker("alone") is not None):
        yield


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (``--dist loadgroup``) the Ray tests run on one worker, one local Ray
    instance at a time, and so do the PostgreSQL tests (one throwaway cluster)."""
    for item in items:
        for marker in ("ray", "postgres"):
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.xdist_group(marker))
