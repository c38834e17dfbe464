"""Fixtures of the test suite (process-wide setup: the root conftest.py)."""

import pytest


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
