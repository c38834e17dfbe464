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
    # another bound is another study too (the README runs the quick start, then a latency bound)
    cli("search", *FAST, "algo=random", "trials=1", "constraint.params=0.6", cwd=tmp_path)
    assert "channels-resnet20-synthetic-random-params0.6" in optuna.get_all_study_names(
        f"sqlite:///{tmp_path / 'studies' / 'searchkit.db'}")


def test_the_default_study_name_says_every_bound_but_the_presets():
    names = {tuple(o): load_config(o).study_name for o in (
        [], ["constraint.flops=0.5"], ["constraint.flops=0.3"], ["constraint.params=60M"], ["constraint.flops=null"],
        ["objectives=[accuracy,flops]"], ["latency.target=x", "constraint.latency=4"])}
    assert list(names.values()) == [
        "channels-resnet56-digits-abc", "channels-resnet56-digits-abc", "channels-resnet56-digits-abc-flops0.3",
        "channels-resnet56-digits-abc-params60M", "channels-resnet56-digits-abc-unbounded",
        "channels-resnet56-digits-abc-flops", "channels-resnet56-digits-abc-latency4"]
    # the name of a stored configuration is the name it was stored under
    cfg = load_config(["constraint.params=60M"])
    assert load_config([], base=cfg.to_dict()).study_name == cfg.study_name


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


def test_a_pareto_study_is_summed_up_by_its_front_on_its_own_objectives(tmp_path):
    args = [*FAST, "algo=nsga2", "algo.population_size=4", "objectives=[accuracy,params]", "trials=4",
            "space.keep=[0.3,0.6,1.0]"]
    out = cli("search", *args, cwd=tmp_path).stdout
    assert "Pareto front (accuracy vs params)" in out and "trials on the front" in out
    studies = cli("studies", cwd=tmp_path).stdout
    assert "front of" in studies
    cli("report", "study=channels-resnet20-synthetic-nsga2-params", cwd=tmp_path)
    page = (tmp_path / "reports" / "channels-resnet20-synthetic-nsga2-params" / "index.html").read_text()
    assert "accuracy vs parameters" in page and "accuracy vs FLOPs" not in page


# 6. the README and --help --------------------------------------------------------------

def test_every_subcommand_lists_every_key_it_takes(tmp_path):
    from searchkit.config import valid_keys
    text = cli("search", "--help", cwd=tmp_path).stdout
    for key in valid_keys():
        assert key in text, key
    for key in ("space.keep", "space.rule", "algo.food_number", "algo.n_startup_trials", "constraint.COST",
                "objectives", "executor", "repair", "latency.margin", "null"):
        assert key in text, key
    for cmd, keys in (("latency", ("sweep=default|quick", "threads=", "rounds=", "models=")),
                      ("export", ("top=", "trial=", "out=")), ("train", ("out=",)),
                      ("tinynet", ("formula", "study=", "flops="))):
        text = cli(cmd, "--help", cwd=tmp_path).stdout
        assert all(k in text for k in keys), (cmd, text)
    listed = cli("list", cwd=tmp_path).stdout
    kinds = [line.split()[0] for line in listed.splitlines()]
    assert "datas" not in kinds and "datasets" in kinds


# 7. a weak predictor, said ---------------------------------------------------------------

def test_a_quick_profile_is_said_to_be_a_smoke_test_and_fit_reports_its_error(tmp_path):
    prof = cli("latency", "profile", "target=q", "sweep=quick", "dir=lat", cwd=tmp_path)
    assert "smoke test" in prof.stdout + prof.stderr
    fit = cli("latency", "fit", "target=q", "dir=lat", cwd=tmp_path)
    assert "held-out" in fit.stdout and "smoke test" in fit.stdout + fit.stderr
    meta = json.loads((tmp_path / "lat" / "q" / "predictor.json").read_text())["meta"]
    assert meta["heldout"]["models"] == 0 and meta["quality"] == "smoke test"
    err = cli("search", *FAST, "algo=random", "trials=1", "latency.target=q", "latency.dir=lat",
              "constraint.latency=1000", cwd=tmp_path).stderr
    assert "latency.margin=0" in err and "no held-out error" in err


# 8. exports that mislead -------------------------------------------------------------------

def test_each_export_is_its_own_run_with_preprocessing_and_its_bound_checked_on_the_program(tmp_path):
    name = "exp-study"
    cli("search", *FAST, "algo=random", "trials=3", f"study={name}", cwd=tmp_path)
    first = cli("export", f"study={name}", "top=2", cwd=tmp_path)
    second = cli("export", f"study={name}", "top=2", cwd=tmp_path)
    runs = sorted(p for p in (tmp_path / "exports" / name).iterdir() if p.is_dir())
    assert len(runs) == 2, runs  # one folder per export run, never mixed
    for run in runs:
        manifest = json.loads((run / "manifest.json").read_text())
        assert [a["rank"] for a in manifest["architectures"]] == [1, 2]
        meta = json.loads((run / manifest["architectures"][0]["folder"] / "arch.json").read_text())
        pre = meta["preprocessing"]
        assert pre["input_size"] == meta["input_size"] and len(pre["mean"]) == 3 and pre["resize"]
    assert first.stdout != second.stdout
    # a trial whose weights were not kept is retrained, and said so
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'studies' / 'searchkit.db'}")
    plain = next(t for t in study.trials if "weights_artifact" not in t.user_attrs
                 and t.user_attrs.get("searchkit:evaluated"))
    out = cli("export", f"study={name}", f"trial={plain.number}", cwd=tmp_path)
    assert "re-training" in out.stderr


# 9. dead ends --------------------------------------------------------------------------------

def test_progress_shows_in_a_zero_width_terminal(monkeypatch):
    """A terminal of 0 columns gets the per-trial lines, not a bar that draws nothing."""
    import os
    import shutil
    from searchkit import progress
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=None: os.terminal_size((0, 24)))
    assert progress.progress_enabled(None) is False
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=None: os.terminal_size((120, 24)))
    assert progress.progress_enabled(None) is True


def test_the_tiny_formula_trains_and_exports_its_network_and_says_when_its_fit_is_weak(tmp_path):
    tiny = ["space=tinynet", "data=synthetic", "data.image_size=16", "data.options={size: 128}",
            "finetune.max_batches=2", "space.r=[0.5,1.0,0.125]", "space.d=[0.25,0.5,0.05]",
            "space.w=[0.25,0.5,0.05]", "algo=random", "trials=3", "constraint.flops=null", "study=tiny"]
    cli("search", *tiny, cwd=tmp_path)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'studies' / 'searchkit.db'}")
    flops = sorted(t.user_attrs["cost:flops"] for t in study.trials)[1]
    proc = cli("tinynet", "train", "study=tiny", f"flops={flops}", cwd=tmp_path)
    assert "band-best candidates" in proc.stderr and "near chance" in proc.stderr
    arch, = (tmp_path / "exports" / "tiny").rglob("arch.json")
    meta = json.loads(arch.read_text())
    assert abs(meta["costs"]["flops"] / flops - 1) <= 0.03 and meta["source"] == "tiny formula"
    code = ("import sys; sys.modules['searchkit'] = None\nimport torch\n"
            f"m = torch.export.load({str(arch.parent / 'model.pt2')!r}).module()\n"
            f"print(tuple(m(torch.zeros(2, *{tuple(meta['input_size'])})).shape))")
    run = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=300)
    assert run.stdout.strip() == "(2, 10)", run.stderr
