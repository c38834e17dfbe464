"""Where a user was misled (the new-user defects of issue 11): each test fails on the code
before its fix."""

import json
import os
import subprocess
import sys

import numpy as np
import optuna
import pytest

from searchkit.config import load_config
from searchkit.setup import RunSetup

FAST = ["space.model=resnet20", "data=synthetic", "data.options={size: 128}", "base.epochs=1",
        "finetune.max_batches=2"]


def cli(*args, cwd, check=True, env=None):
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "searchkit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _pngs(folder, classes, per_class, start=0):
    from PIL import Image
    rng = np.random.default_rng(start)
    for k, name in enumerate(classes):
        os.makedirs(folder / name, exist_ok=True)
        for i in range(start, start + per_class):
            pixels = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
            pixels[..., k] = 255
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


# 1. stale base ---------------------------------------------------------------------------

def test_new_images_under_the_same_root_train_a_new_base(tmp_path):
    root = tmp_path / "data"
    _pngs(root / "train", ["a", "b"], 10)
    cfg = load_config(["space.model=resnet20", "data=imagefolder", f"data.root={root}", "data.image_size=12",
                       "base.epochs=1", f"base.cache_dir={tmp_path / 'bases'}", "constraint={}"])
    first = RunSetup.build(cfg, quiet=True).base
    _pngs(root / "train", ["a", "b"], 10, start=10)  # new images, same root
    second = RunSetup.build(cfg, quiet=True).base
    assert second.path != first.path and second.sha256 != first.sha256
    assert RunSetup.build(cfg, quiet=True).base.path == second.path  # the same data: the same base


def test_what_was_loaded_is_said_in_one_line(tmp_path):
    err = cli("search", *FAST, "algo=random", "trials=1", cwd=tmp_path).stderr
    line = next(l for l in err.splitlines() if l.startswith("searchkit: data: "))
    assert "synthetic: 128 train / 32 val / 32 test, 10 classes, 3x16x16, augment: none" in line


# 2. silent study switch ------------------------------------------------------------------

def test_other_settings_never_continue_a_stored_study_silently(tmp_path):
    cli("search", *FAST, "algo=random", "trials=2", cwd=tmp_path)
    # the same space and algo on another model: a study of its own
    out = cli("search", "data=synthetic", "data.options={size: 128}", "base.epochs=1", "finetune.max_batches=2",
              "space.model=resnet56", "algo=random", "trials=1", cwd=tmp_path)
    assert "resnet56" in out.stdout and "resnet20" not in out.stdout
    names = optuna.get_all_study_names(f"sqlite:///{tmp_path / 'studies' / 'searchkit.db'}")
    assert len(names) == 2 and all("resnet" in n for n in names), names
    # the first one again: continued, and said so
    again = cli("search", *FAST, "algo=random", "trials=3", cwd=tmp_path)
    assert "continuing study" in again.stderr and "2 trained" in again.stderr


# 3. collapsed fronts ---------------------------------------------------------------------

def test_a_preset_bound_is_not_forced_on_a_pareto_search():
    assert load_config(["objectives=[accuracy,flops]"]).constraint == {}
    assert load_config(["constraint.params=0.5"]).constraint == {"params": 0.5}
    assert load_config(["latency.target=x", "constraint.latency=3"]).constraint == {"latency": 3.0}
    assert load_config([]).constraint == {"flops": 0.5}  # the preset's, when nothing else is asked


def test_a_preset_bound_in_force_is_said(tmp_path):
    err = cli("search", *FAST, "algo=random", "trials=1", cwd=tmp_path).stderr
    assert "constraint.flops=0.5 from the space=channels preset" in err and "constraint.flops=null" in err


# 4. paths that break ---------------------------------------------------------------------

def test_a_study_exports_reports_and_resumes_from_another_directory(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    cli("search", *FAST, "algo=random", "trials=2", "artifacts=none", cwd=here)
    storage = f"storage=sqlite:///{here / 'studies' / 'searchkit.db'}"
    name = optuna.get_all_study_names(storage.partition("=")[2])[0]
    cli("export", f"study={name}", storage, cwd=there)
    assert list((there / "exports" / name).rglob("arch.json"))
    cli("report", f"study={name}", storage, cwd=there)
    out = cli("resume", f"study={name}", storage, "trials=3", cwd=there)
    assert "training base" not in out.stderr  # found by its sha256, not retrained
    assert not (there / "studies").exists()


def test_refused_commands_leave_nothing_behind(tmp_path):
    for args in (["report", "study=nope"], ["export", "study=nope"], ["resume", "study=nope"]):
        assert cli(*args, cwd=tmp_path, check=False).returncode == 2
    assert not list(tmp_path.iterdir())
