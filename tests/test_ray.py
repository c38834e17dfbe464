"""The Ray Tune executor on a real local Ray instance: concurrent trials, failures, kill -9."""

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import pytest

ray = pytest.importorskip("ray")

from searchkit.config import load_config  # noqa: E402
from searchkit.search import RepeatedFailures, run_search  # noqa: E402
from searchkit.strategies.ga import member_of  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.alone]

FAST = ["space.model=resnet20", "data=synthetic", "base.epochs=1", "finetune.max_batches=2",
        "data.options={size: 256}"]


def _ray_pids(orphans_only: bool = False) -> set[int]:
    """Processes of Ray (its daemons, agents and workers) on this machine; ``orphans_only``:
    those whose parent died (re-parented to init), as a SIGKILLed driver leaves them."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if orphans_only and ppid != 1:
            continue
        if cmd.startswith("ray::") or "/ray/core/src/ray/" in cmd or "ray/_private/" in cmd \
                or "ray/dashboard/" in cmd:
            out.add(int(entry.name))
    return out


@pytest.fixture
def no_leftover_ray():
    """Kill (by pid) Ray processes a test started and left orphaned, e.g. a killed driver's
    agents (they exit by themselves within a minute or two; they do not block a new
    instance)."""
    before = _ray_pids()
    yield
    for pid in _ray_pids(orphans_only=True) - before:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(scope="module")
def ray_instance():
    """One local instance for the in-process tests; the executor reuses an initialized Ray
    and leaves it running (the CLI test below lets the driver start and stop its own)."""
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    print(f"\nray.init took {time.perf_counter() - start:.1f} s")
    yield
    ray.shutdown()


def _overlap(trials) -> int:
    """Most trials whose [start, complete] intervals overlap at one moment."""
    events = []
    for t in trials:
        events += [(t.datetime_start, 1), (t.datetime_complete, -1)]
    most = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        most = max(most, now)
    return most


def test_search_runs_two_trials_at_once(workdir, ray_instance):
    """abc (steady-state) with two candidates in flight; tpe (constant liar) runs so in the
    kill -9 test below."""
    common = [*FAST, "algo=abc", "algo.food_number=2", "progress=false"]
    outcome = run_search(load_config([*common, "trials=4", "executor=ray", "ray.max_concurrent=2"]),
                         quiet=True)
    assert ray.is_initialized(), "an instance the executor did not start is left running"
    trials = outcome.study.get_trials(deepcopy=False)
    assert outcome.evaluated == 4 and outcome.stop_reason == "budget"
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    evaluated = [t for t in trials if t.user_attrs.get("searchkit:evaluated")]
    assert len(evaluated) == 4
    assert _overlap(evaluated) >= 2, "two candidates should train at the same time"
    for t in evaluated:
        assert 0.0 <= t.user_attrs["val_accuracy"] <= 1.0
        assert t.user_attrs["steps"] == 2 and t.user_attrs["recipe"]
    best = outcome.best
    assert best is not None and best.user_attrs.get("weights_artifact")
    # The same record as a local run of the same settings.
    local = run_search(load_config([*common, "trials=1", "study=local"]), quiet=True)
    assert set(local.best.user_attrs) <= set(best.user_attrs)


def test_diverging_candidates_are_retried_then_failed_and_stop_the_search(workdir, ray_instance,
                                                                         monkeypatch):
    """NaN training raises in the worker: retried ray.max_failures times, then FAIL with the
    worker's one-line reason; consecutive failures stop the search (RepeatedFailures), and a
    candidate still training then is re-queued, not lost."""
    monkeypatch.setattr("searchkit.strategies.asktell.MAX_CONSECUTIVE_FAILURES", 2)  # 5 in the product: same path, faster
    cfg = load_config([*FAST, "finetune.lr=1e30", "algo=random", "trials=2", "executor=ray",
                       "ray.max_concurrent=2", "ray.max_failures=1", "progress=false", "study=channels-random"])
    with pytest.raises(RepeatedFailures, match="NonFiniteLossError"):
        run_search(cfg, quiet=True)
    study = optuna.load_study(study_name="channels-random", storage="sqlite:///studies/searchkit.db")
    trials = study.get_trials(deepcopy=False)
    diverged = [t for t in trials if t.state.name == "FAIL"
                and t.user_attrs["searchkit:fail_reason"].startswith("NonFiniteLossError")]
    assert len(diverged) >= 2
    for t in diverged:
        reason = t.user_attrs["searchkit:fail_reason"]
        assert reason.startswith("NonFiniteLossError: training loss became nan"), reason
        assert reason.endswith("(2 attempts)") and "\n" not in reason
    assert not [t for t in trials if t.state.name == "RUNNING"]
    for t in trials:
        if t.state.name == "FAIL" and t not in diverged:
            assert t.user_attrs["searchkit:fail_reason"] == "the search stopped on an error"
            assert [w for w in trials if w.user_attrs.get("searchkit:requeued_from") == t.number
                    and w.state.name == "WAITING"]


def test_ga_generations_stay_consistent_with_two_trials_in_flight(workdir, ray_instance):
    """GA under Ray: steady filling holds with candidates in flight - a trial joins
    generation g only once g-1 had its population finished at its ask, and while g had not;
    issue order within a generation has no gaps or repeats; parents come from the pool."""
    size, budget = 3, 9  # at most size + 1 per generation with 2 in flight: generation 2 is reached
    outcome = run_search(load_config([*FAST, "algo=ga", f"algo.population_size={size}", f"trials={budget}",
                                      "executor=ray", "ray.max_concurrent=2", "progress=false"]),
                         quiet=True)
    study = outcome.study
    trials = study.get_trials(deepcopy=False)
    assert outcome.evaluated == budget and outcome.stop_reason == "budget"
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}  # no RUNNING, WAITING or FAIL
    evaluated = [t for t in trials if t.user_attrs.get("searchkit:evaluated")]
    assert len(evaluated) == budget and _overlap(evaluated) >= 2
    members = {t.number: member_of(t) for t in trials}
    assert all(m is not None and {"generation", "index", "origin", "parents"} <= set(m)
               for m in members.values())

    def finished_before(generation, moment):
        return sum(1 for t in trials if members[t.number]["generation"] == generation
                   and t.datetime_complete <= moment)

    by_gen = collections.defaultdict(list)
    for t in trials:
        g = members[t.number]["generation"]
        by_gen[g].append(t)
        if g > 0:
            assert finished_before(g - 1, t.datetime_start) >= size, f"trial {t.number} joined {g} early"
        assert finished_before(g, t.datetime_start) < size, f"trial {t.number} joined a full generation"
    assert max(by_gen) >= 2, "the run should breed at least two generations"
    sampler = study.sampler  # the GA itself again (the driver's tag is removed after the run)
    for g, ts in by_gen.items():
        in_ask_order = sorted(ts, key=lambda t: t.number)
        assert [members[t.number]["index"] for t in in_ask_order] == list(range(len(ts)))
        pool = set(sampler.parent_pool(study, g))
        for t in ts:
            m = members[t.number]
            assert m["origin"] in (("random",) if g == 0 else ("offspring", "random"))
            assert set(m["parents"]) <= pool and (g > 0 or not m["parents"])
    assert any(members[t.number]["origin"] == "offspring" for t in trials)


def _ray_descendants(title: str) -> list[int]:
    """Pids of this process's descendants whose title starts with ``title`` (only Ray
    processes this test session started: the module's instance is a child of pytest)."""
    children = collections.defaultdict(list)
    titles = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            titles[int(entry.name)] = cmd
            children[ppid].append(int(entry.name))
    found, todo = [], [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            if titles.get(pid, "").startswith(title):
                found.append(pid)
    return found


def test_worker_killed_mid_trial_is_failed_and_the_search_goes_on(workdir, ray_instance):
    """SIGKILL of the worker process while it trains (as the OOM killer would): with
    ray.max_failures=0 that candidate is recorded FAIL ("worker died: ..."), a new worker
    takes the next one, and the search meets its budget."""
    killed: list[int] = []
    done = threading.Event()

    def kill_first_training_worker():
        while not done.is_set() and not killed:
            # A Tune function trainable runs as ImplicitFunc.train (ImplicitFunc when idle).
            for pid in _ray_descendants("ray::ImplicitFunc.train"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_training_worker, daemon=True)
    killer.start()
    try:
        outcome = run_search(load_config([*FAST, "algo=random", "trials=2", "executor=ray",
                                          "ray.max_concurrent=1", "ray.max_failures=0", "progress=false"]),
                             quiet=True)
    finally:
        done.set()
        killer.join()
    assert killed, "no worker was seen training"
    trials = outcome.study.get_trials(deepcopy=False)
    assert outcome.evaluated == 2 and outcome.stop_reason == "budget"
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [0], [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert [t.number for t in trials if t.user_attrs.get("searchkit:evaluated")] == [1, 2]
    reason = failed[0].user_attrs["searchkit:fail_reason"]
    assert reason and "\n" not in reason, reason
    assert reason.startswith("worker died: "), reason


def _cli(args, cwd, **kw):
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "searchkit", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_sigkill_of_ray_driver_then_same_command_continues(tmp_path, no_leftover_ray):
    # candidates of 40 batches (a second or more each): the kill lands while two train
    args = ["search", *FAST, "finetune.max_batches=40", "algo=tpe", "trials=4", "executor=ray",
            "ray.max_concurrent=2", "study=channels-tpe"]
    db = tmp_path / "studies" / "searchkit.db"

    def states():
        if not db.exists():
            return []
        try:
            with sqlite3.connect(db, timeout=30) as con:
                return [r[0] for r in con.execute("select state from trials order by number")]
        except sqlite3.OperationalError:
            return []

    proc = _cli(args, tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        s = states()
        if s.count("COMPLETE") >= 2 and "RUNNING" in s:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"search did not reach two results with one running: {states()}\n{proc.stdout.read()}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    storage = f"sqlite:///{db}"
    study = optuna.load_study(study_name="channels-tpe", storage=storage)
    done_before = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
    running = [t.number for t in study.trials if t.state.name == "RUNNING"]
    assert running

    again = _cli(args, tmp_path)  # a fresh local Ray instance, beside the killed one's leftovers
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    # The killed driver's temporary directory (Tune state, weights) was swept by the next run.
    assert not list(Path(tempfile.gettempdir()).glob(f"searchkit-ray-{proc.pid}-*"))
    trials = optuna.load_study(study_name="channels-tpe", storage=storage).trials
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert all(trials[n].values == v for n, v in done_before.items())
    evaluated = [t for t in trials if t.user_attrs.get("searchkit:evaluated")]
    assert len(evaluated) == 4 and _overlap(evaluated) >= 2
    for n in running:
        assert trials[n].state.name == "FAIL"
        assert trials[n].user_attrs["searchkit:fail_reason"] == "driver stopped while the trial ran"
