"""The package as a user gets it: a wheel, installed (not editable) into a fresh virtual
environment, runs the quick start in an empty directory - presets included."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd, env=None, timeout=900):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.mark.slow
def test_the_wheel_runs_the_quick_start_in_an_empty_directory(tmp_path):
    wheels = tmp_path / "wheels"
    # no build isolation: the build backend comes from this environment, not the network
    _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
          "-w", str(wheels)], cwd=tmp_path)
    wheel, = wheels.glob("searchkit-*.whl")
    venv = tmp_path / "venv"
    # the installed dependencies (torch, optuna, ...) are reused; searchkit itself comes from the wheel
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path)
    python, searchkit = venv / "bin" / "python", venv / "bin" / "searchkit"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
         cwd=tmp_path)  # (the source tree's editable install is visible here too: not it)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEARCHKIT_PLUGINS")}
    env.update(CI="1", OMP_NUM_THREADS="1")
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run([str(python), "-c", "import searchkit, pathlib; p = pathlib.Path(searchkit.__file__).parent; "
                  "print(p); print(sorted(x.name for x in (p / 'presets' / 'spaces').glob('*.yaml')))"],
                 cwd=empty, env=env).splitlines()
    assert where[0].startswith(str(venv)), where  # not the source tree's copy
    assert "'channels.yaml'" in where[1] and "'tinynet.yaml'" in where[1]
    # the README's quick start, with a smaller budget
    out = _run([str(searchkit), "search", "space=channels", "algo=abc", "trials=2", "base.epochs=1",
                "finetune.max_batches=4", "algo.food_number=2"], cwd=empty, env=env)
    assert "best: trial" in out
    out = _run([str(searchkit), "export", "study=channels-resnet56-digits-abc"], cwd=empty, env=env)
    assert list((empty / "exports" / "channels-resnet56-digits-abc").rglob("model.pt2")), out
