"""Studies in a real PostgreSQL server, shared by two driver processes at once."""

import os
import re
import subprocess
import sys
import uuid

import optuna
import pytest

from postgres_server import ServerUnavailable, find_bin_dir, provide_server
from searchkit.config import load_config
from searchkit.setup import RunSetup
from searchkit.search import run_search

pytest.importorskip("psycopg2", reason="the postgres extra: pip install 'searchkit[postgres]'")

pytestmark = pytest.mark.postgres

FAST = ["space.model=resnet20", "data=synthetic", "base.epochs=1", "finetune.max_batches=2",
        "data.options={size: 256}"]


def _has_module(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def with_installed_driver(url: str) -> str:
    """NOTE: SQLAlchemy >= 2.1 reads a bare ``postgresql://`` as psycopg 3; the ``postgres``
    extra installs psycopg2, so name it unless psycopg 3 is there."""
    if url.startswith(("postgresql://", "postgres://")) and not _has_module("psycopg"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


@pytest.fixture(scope="session")
def pg_server_url():
    """A PostgreSQL URL: SEARCHKIT_PG_URL, else a throwaway local server for the session."""
    required = bool(os.environ.get("SEARCHKIT_REQUIRE_POSTGRES"))
    if not os.environ.get("SEARCHKIT_PG_URL") and find_bin_dir() is None and not required:
        pytest.skip("no PostgreSQL server: apt-get install postgresql, or set SEARCHKIT_PG_URL")
    try:
        server = provide_server()
    except ServerUnavailable as exc:
        pytest.fail(f"PostgreSQL is required here (SEARCHKIT_REQUIRE_POSTGRES) but: {exc}"
                    if required else str(exc))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server_url):
    return with_installed_driver(pg_server_url)


@pytest.fixture
def study_name(pg_url):
    """A study of its own (the server may be shared); deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=pg_url)
    except KeyError:
        pass


def test_postgres_storage_end_to_end(workdir, pg_url, study_name):
    common = [*FAST, "algo=random", f"storage={pg_url}", f"study={study_name}", "progress=false"]
    first = run_search(load_config([*common, "trials=2"]), quiet=True)
    assert first.evaluated == 2
    more = [*common, "trials=3"]
    again = run_search(load_config(more), more, quiet=True)  # continue: open it again
    assert again.evaluated == 3 and again.new_trials and min(again.new_trials) >= 2
    study = optuna.load_study(study_name=study_name, storage=pg_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert study.user_attrs["searchkit:config"]
    assert all(t.user_attrs["genome"] and t.user_attrs["searchkit:evaluated"] for t in study.trials)


def test_bare_postgresql_url_works(workdir, pg_server_url):
    from searchkit.study import open_storage
    storage = open_storage(pg_server_url)
    assert isinstance(storage.get_all_studies(), list)


TOLD = re.compile(r"trial (\d+): val accuracy ([0-9.]+)")


@pytest.mark.parametrize("algo", ["random", "tpe"])
def test_two_drivers_share_one_study(workdir, pg_url, study_name, algo):
    args = ["search", *FAST, f"algo={algo}", "trials=6", f"storage={pg_url}", f"study={study_name}"]
    RunSetup.build(load_config(FAST), quiet=True)  # cache the base once, for both drivers
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "searchkit", *args], cwd=workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out

    trials = optuna.load_study(study_name=study_name, storage=pg_url).trials
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials))), f"duplicate or missing numbers: {numbers}"
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    evaluated = [t for t in trials if t.user_attrs.get("searchkit:evaluated")]
    assert len(evaluated) >= 6
    # Every result a driver told is in the study, once, and each trial was told by one driver.
    told = [(int(n), float(v)) for out in outputs for n, v in TOLD.findall(out)]
    print(f"{algo}: trials told by each driver:", [[int(n) for n, _ in TOLD.findall(out)] for out in outputs])
    assert len({n for n, _ in told}) == len(told), f"a trial was told twice: {told}"
    by_number = {t.number: t for t in trials}
    for number, value in told:
        t = by_number[number]
        assert t.state.name == "COMPLETE" and t.values[0] == pytest.approx(value, abs=1e-4)
    trained = {t.number for t in evaluated
               if t.state.name == "COMPLETE" and t.user_attrs.get("searchkit:duplicate_of") is None}
    assert {n for n, _ in told} == trained


def test_a_server_study_exports_its_kept_weights_from_another_directory(tmp_path, pg_url, study_name):
    """Kept weights go to a per-user folder named by the server, not the working directory."""
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    args = [*FAST, "algo=random", "trials=2", f"storage={pg_url}", f"study={study_name}"]
    subprocess.run([sys.executable, "-m", "searchkit", "search", *args], cwd=here, env=env, check=True,
                   capture_output=True, text=True, timeout=300)
    out = subprocess.run([sys.executable, "-m", "searchkit", "export", f"study={study_name}", f"storage={pg_url}"],
                         cwd=there, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "re-training" not in out.stderr and list((there / "exports").rglob("model.pt2"))
    assert not (here / "studies").exists()
