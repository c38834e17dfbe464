"""Latency predictor: traces, kernel maps, JSON forests, the CLI and latency in search.

The accuracy goal (>= 95 % of held-out models within +-10 %) is a property of a full
profile on a quiet machine and is checked by ``searchkit latency validate`` (committed
under reports/latency/), not here: these tests use a quick profile on a shared machine.
"""

import json
import random
import subprocess
import sys

import numpy as np
import optuna
import pytest

from searchkit.config import load_config
from searchkit.costs.latency import Forest, Predictor, relative_errors
from searchkit.costs.latency_cost import LatencyCost
from searchkit.costs.profiling import fit, load_predictor, profile
from searchkit.costs.trace import Kernel, trace_kernels
from searchkit.models import build_base
from searchkit.models.efficientnet import efficientnet_b0_family
from searchkit.search import run_search
from searchkit.setup import RunSetup
from searchkit.spaces.channels.latency import ChannelKernelMap
from searchkit.spaces.channels.surgery import channel_units, prune_channels
from searchkit.spaces.tinynet.latency import efficientnet_kernels


@pytest.mark.parametrize("model,side", [("resnet20", 16), ("mobilenet_v2", 32), ("vgg16", 32)])
def test_kernel_map_equals_the_trace_of_the_pruned_model(model, side):
    base = build_base(model)
    units = channel_units(base)
    kmap = ChannelKernelMap.build(base, units, (3, side, side))
    rng = random.Random(0)
    for _ in range(3):
        keep = [rng.choice([0.1, 0.3, 0.5, 0.8, 1.0]) for _ in units]
        assert kmap.kernels(keep) == trace_kernels(prune_channels(base, units, keep), (3, side, side))


@pytest.mark.parametrize("w,d,side", [(1.0, 1.0, 32), (0.51, 0.6, 106), (0.3, 0.45, 17)])
def test_tinynet_kernels_are_written_out_as_the_model_runs_them(w, d, side):
    net = efficientnet_b0_family(w, d, num_classes=10)
    assert efficientnet_kernels(w, d, side, 10) == trace_kernels(net, (3, side, side))


def test_trace_groups_conv_bn_activation():
    rows = trace_kernels(build_base("resnet20"), (3, 32, 32))
    convs = [r for r in rows if r.kind == "conv"]
    assert len(convs) == 19 and all(r.fields[7] == 1 for r in convs)  # every conv has its BN
    assert sum(r.fields[8] == 1 for r in convs) == 10  # stem + first conv of each block: ReLU fused


def test_forest_arrays_predict_what_scikit_learn_predicts(tmp_path):
    from sklearn.ensemble import ExtraTreesRegressor
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, (300, 4))
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2]
    est = ExtraTreesRegressor(n_estimators=7, min_samples_leaf=2, random_state=0).fit(x, y)
    forest = Forest.from_sklearn(est)
    q = rng.uniform(-1, 11, (200, 4))
    assert np.allclose(forest.predict(q), est.predict(q))
    # and through JSON, without scikit-learn's objects
    again = Forest(json.loads(json.dumps(forest.to_json())))
    assert np.allclose(again.predict(q), est.predict(q))


def test_relative_errors():
    r = relative_errors([1.0, 1.06, 0.8], [1.0, 1.0, 1.0])
    assert r["n"] == 3 and r["within_5"] == pytest.approx(1 / 3) and r["within_10"] == pytest.approx(2 / 3)
    assert r["rmspe"] == pytest.approx(np.sqrt((0 + 0.06 ** 2 + 0.2 ** 2) / 3))


@pytest.fixture(scope="module")
def quick_target(tmp_path_factory):
    """A quick profile of this CPU (small sweep, resnet20 and tinynet calibration models)."""
    root = tmp_path_factory.mktemp("latency")
    path = profile("quick", sweep="quick", root=root, progress=False, log=lambda *a: None)
    doc = json.loads(path.read_text())
    assert doc["machine"]["threads"] == 1 and doc["machine"]["torch"]
    assert {"conv", "eltwise", "pool", "linear"} <= set(doc["kernels"])
    assert all(s > 0 for k in doc["kernels"].values() for s in k["seconds"])
    fit("quick", root=root)
    return root


@pytest.fixture(scope="module")
def smooth_target(quick_target, tmp_path_factory):
    """The quick profile's rows timed by a formula (2 us + 0.5 ns per MAC or element) and
    fitted: a predictor in which a narrower network is always cheaper. A quick sweep's own
    times on a busy machine can price a net's smallest architecture above its base (the
    noise is as large as a ResNet-20's range at 16 px), which tells nothing about a runner."""
    from searchkit.costs.profiling import _size_proxy
    root = tmp_path_factory.mktemp("smooth")
    doc = json.loads((quick_target / "quick" / "profile.json").read_text())

    def seconds(kind, fields):
        return 2e-6 + 5e-10 * 2 ** _size_proxy((kind, tuple(fields)))

    for kind, table in doc["kernels"].items():
        table["seconds"] = [seconds(kind, r) for r in table["rows"]]
    for m in doc["calibration_models"]:
        m["ms"] = 1e3 * sum(seconds(kind, f) for kind, f in m["kernels"])
        m["rounds_ms"] = [m["ms"]]
    doc["target"] = "smooth"
    (root / "smooth").mkdir()
    (root / "smooth" / "profile.json").write_text(json.dumps(doc))
    fit("smooth", root=root)
    return root


def test_predictor_file_is_plain_json_and_reloads_identically(quick_target):
    path = quick_target / "quick" / "predictor.json"
    text = path.read_text()
    assert text.startswith("{") and json.loads(text)["version"] == 1
    pred = load_predictor("quick", quick_target)
    again = Predictor.from_json(json.loads(text))
    kernels = efficientnet_kernels(0.5, 0.5, 32, 10)
    assert pred.predict_ms(kernels) == pytest.approx(again.predict_ms(kernels))
    assert pred.predict_ms(kernels) > 0
    # a bigger network is predicted slower
    big = trace_kernels(build_base("resnet56"), (3, 32, 32))
    small = trace_kernels(build_base("resnet20"), (3, 16, 16))
    assert pred.predict_ms(big) > pred.predict_ms(small)


def _setup(overrides):
    return RunSetup.build(load_config(overrides), quiet=True)


def test_latency_cost_batch_equals_one_by_one(quick_target, tmp_path):
    pred = load_predictor("quick", quick_target)
    space = _setup(["space.model=resnet20", "data=synthetic", "base.epochs=0", f"base.cache_dir={tmp_path}",
                    "constraint.flops=1.0"]).space
    lat = LatencyCost(space, predictor=pred)
    rng = random.Random(1)
    genomes = [space.genome([rng.choice(space.choices) for _ in space.units]) for _ in range(20)]
    batch = lat.many(genomes)
    direct = [pred.predict_ms(space.kernels(g)) for g in genomes]
    assert np.allclose(batch, direct)
    assert np.allclose([lat.cost(g) for g in genomes], direct)
    # off-grid fractions (a uniform baseline) take the kernel path
    assert lat.cost(space.uniform(0.37)) == pytest.approx(pred.predict_ms(space.kernels(space.uniform(0.37))))
    # the kernel map was cached on disk and is read back
    assert list(tmp_path.glob("kernelmap-resnet20-*.json"))
    again = _setup(["space.model=resnet20", "data=synthetic", "base.epochs=0", f"base.cache_dir={tmp_path}",
                    "constraint.flops=1.0"]).space
    assert np.allclose(LatencyCost(again, predictor=pred).many(genomes), batch)


def test_search_under_a_latency_bound_trains_only_candidates_under_it(quick_target, tmp_path):
    pred = load_predictor("quick", quick_target)
    common = ["space.model=resnet20", "data=synthetic", "base.epochs=0", "finetune.max_batches=1",
              "constraint.flops=1.0", f"latency.target=quick", f"latency.dir={quick_target}",
              f"base.cache_dir={tmp_path / 'bases'}", f"storage=sqlite:///{tmp_path / 'db.sqlite'}",
              "progress=false"]
    setup = _setup(common)
    lat = setup.costs["latency"]
    hi = lat.base()
    # A bound most random genomes break, whatever this machine's quick profile measured:
    # the 30th percentile of random genomes' predicted latency (and at least the smallest's).
    rng = random.Random(0)
    space = setup.space
    sample = [space.genome([rng.choice(space.choices) for _ in space.units]) for _ in range(300)]
    bound = max(float(np.quantile(lat.many(sample), 0.3)), lat.floor() * 1.0001)
    out = run_search(load_config(common + [f"constraint.latency_ms={bound}", "trials=4", "algo=random",
                                           "repair=false", "max_attempts_factor=50"]), quiet=True)
    trials = out.study.trials
    trained = [t for t in trials if t.user_attrs.get("searchkit:evaluated")]
    assert len(trained) == 4
    assert all(t.user_attrs["cost:latency"] <= bound for t in trained)
    infeasible = [t for t in trials if t.user_attrs.get("searchkit:infeasible")]
    assert infeasible and all(t.user_attrs["cost:latency"] > bound for t in infeasible)
    assert all(t.constraints["latency"] == pytest.approx(t.user_attrs["cost:latency"] / bound - 1)
               for t in infeasible)
    base = out.study.user_attrs["searchkit:base"]
    assert base["latency_target"] == "quick" and base["costs"]["latency"] == pytest.approx(hi)
    # export records the prediction and measures the exported network here
    from searchkit.export import export_study
    folder = export_study(out.study.study_name, f"sqlite:///{tmp_path / 'db.sqlite'}", out=tmp_path / "exp")[0]
    record = json.loads((folder / "arch.json").read_text())["latency"]
    assert record["target"] == "quick" and record["predicted_ms"] <= bound and record["measured_ms"] > 0
    assert record["bound_ms"] == pytest.approx(bound) and record["threads"] == 1
    assert record["searched_bound_ms"] == pytest.approx(bound)  # a quick profile has no held-out margin
    assert record["bound_met"] == (record["measured_ms"] <= bound)
    assert record["measured"] == "the written program (model.pt2)"  # what ships, not the eager module
    # the same bound with repair and a safety margin: the strategy repairs its proposals
    # until the prediction is under bound / (1 + margin)
    margin = max(0.0, min(0.2, bound / lat.floor() - 1) / 2)
    out = run_search(load_config(common + [f"constraint.latency_ms={bound}", "trials=3", "algo=abc",
                                           "study=abc-latency", f"latency.margin={margin}"]), quiet=True)
    trained = [t for t in out.study.trials if t.user_attrs.get("searchkit:evaluated")]
    assert trained and all(t.user_attrs["cost:latency"] <= bound / (1 + margin) * (1 + 1e-9) for t in trained)


def test_a_one_shot_search_under_a_latency_bound_derives_genomes_under_it(smooth_target, tmp_path):
    """algo=darts prices the supernet's expected latency from the predictor's tables (a
    hard bound in its loss); every derived genome is repaired under the bound, and export
    measures it."""
    common = ["space.model=resnet20", "data=synthetic", "base.epochs=0", "finetune.max_batches=1",
              "constraint.flops=null", "latency.target=smooth", f"latency.dir={smooth_target}",
              f"base.cache_dir={tmp_path / 'bases'}", f"storage=sqlite:///{tmp_path / 'db.sqlite'}",
              "progress=false", "algo=darts", "algo.epochs=2", "algo.warmup=0", "algo.derive_every=1"]
    lat = _setup(common).costs["latency"]
    bound = lat.floor() + 0.3 * (lat.base() - lat.floor())
    out = run_search(load_config(common + [f"constraint.latency_ms={bound}"]), quiet=True)
    derived = [t for t in out.study.trials if "darts:epoch" in t.user_attrs]
    assert sorted(t.user_attrs["darts:epoch"] for t in derived) == [1, 2]
    assert all(t.user_attrs["cost:latency"] <= bound for t in derived)
    # spent: the derived genomes are not the smallest architecture
    assert max(t.user_attrs["cost:latency"] for t in derived) > lat.floor() + 0.15 * (lat.base() - lat.floor())
    from searchkit.export import export_study
    folder = export_study(out.study.study_name, f"sqlite:///{tmp_path / 'db.sqlite'}", out=tmp_path / "exp")[0]
    record = json.loads((folder / "arch.json").read_text())["latency"]
    assert record["predicted_ms"] <= bound and record["measured_ms"] > 0


def test_fit_measures_its_own_held_out_error_and_the_margin_follows_it(tmp_path):
    """fit() predicts each calibration model from forests and a calibration fitted without
    it; the 90th percentile of the under-prediction becomes the default latency.margin."""
    rng = np.random.default_rng(0)
    sizes = sorted({int(x) for x in rng.integers(64, 1 << 16, 400)})
    us = {n: 2.0 + n / 4e3 for n in sizes}  # a linear eltwise cost in microseconds
    models = []
    for i in range(40):
        ks = [["eltwise", [1, int(n), 0]] for n in rng.choice(sizes, 12)]
        true_ms = sum(us[k[1][1]] for k in ks) * 1e-3 + 0.01
        models.append({"name": f"m{i}", "family": "toy", "input_size": [3, 8, 8], "kernels": ks,
                       "ms": true_ms * float(rng.choice([0.95, 1.0, 1.1]))})  # measurement noise
    doc = {"version": 1, "target": "toy", "sweep": "toy", "seed": 0, "rounds": 1, "seconds_taken": 1.0,
           "machine": {"cpu": "toy", "threads": 1, "cores": 1, "batch": 1, "torch": "x"},
           "kernels": {"eltwise": {"rows": [[1, n, 0] for n in sizes], "seconds": [us[n] * 1e-6 for n in sizes],
                                   "observations": [1] * len(sizes)}},
           "calibration_models": models}
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "profile.json").write_text(json.dumps(doc))
    fit("toy", root=tmp_path)
    held = load_predictor("toy", tmp_path).meta["heldout"]
    assert held["models"] == 40 and 0.02 < held["rmspe"] < 0.2
    # measurements run up to 10 % over the truth and 5 % under: the margin covers the 10 %
    assert 0.05 <= held["margin_p90"] <= 0.2


def test_accuracy_latency_front(quick_target, tmp_path):
    out = run_search(load_config([
        "space.model=resnet20", "data=synthetic", "base.epochs=0", "finetune.max_batches=1",
        "constraint.flops=1.0", "latency.target=quick", f"latency.dir={quick_target}", "algo=nsga2",
        "objectives=[accuracy,latency]", "trials=4", f"base.cache_dir={tmp_path}",
        f"storage=sqlite:///{tmp_path / 'db.sqlite'}", "progress=false"]), quiet=True)
    done = [t for t in out.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(t.values[1] == pytest.approx(t.user_attrs["cost:latency"]) for t in done)
    assert out.study.directions[1] == optuna.study.StudyDirection.MINIMIZE
    from searchkit.report import write_report
    page = write_report(out.study, tmp_path / "report")
    html = (page if page.suffix == ".html" else next(page.glob("*.html"))).read_text()
    assert "Accuracy vs latency" in html and "latency (ms)" in html


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "searchkit", *args], cwd=cwd, capture_output=True, text=True,
                          env={"CI": "1", "PATH": "/usr/bin:/bin", **__import__("os").environ})


def test_cli_errors_are_one_line(tmp_path):
    for args, fragment in [
        (["latency", "fit", "target=nowhere"], "no latency profile for target 'nowhere'"),
        (["latency", "validate", "target=nowhere"], "no latency predictor for target 'nowhere'"),
        (["latency", "profile"], "needs target=NAME"),
        (["latency", "profile", "target=../x"], "bad latency target name"),
        (["latency", "profile", "target=x", "sweep=huge"], "unknown sweep 'huge'"),
        (["latency", "explode", "target=x"], "usage: searchkit latency"),
        (["search", "constraint.latency_ms=3"], "latency needs a profiled target"),
        (["search", "latency.target=x", "constraint.latency_ms=3", "latency.margin=2"],
         "latency.margin must be a fraction in [0, 1)"),
        (["search", "latency.target=nowhere", "constraint.latency_ms=3", "data=synthetic"],
         "no latency predictor for target 'nowhere'"),
    ]:
        r = _cli(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_cli_validate_writes_the_report(quick_target, tmp_path):
    r = _cli("latency", "validate", "target=quick", f"dir={quick_target}", "models=3", "bases=false",
             f"reports={tmp_path / 'rep'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "rep" / "quick.md").read_text()
    assert "RMSPE" in text and "within ±10 %" in text
    summary = json.loads((tmp_path / "rep" / "quick.json").read_text())
    assert summary["overall"]["n"] == 3 and all(m["measured_ms"] > 0 for m in summary["models"])
    # The profile's own calibration models were measured again beside them: the machine's speed
    # now against while it was profiled (the same machine minutes later: near 1).
    speed = summary["speed"]
    assert len(speed["references"]) == 4 and 0.5 < speed["ratio"] < 2
    assert all(m["error_at_current_speed"] == pytest.approx(m["predicted_ms"] * speed["ratio"] / m["measured_ms"] - 1)
               for m in summary["models"])
    assert "At the profile's machine speed" in text


def test_impossible_latency_bound_is_refused_before_training(quick_target, tmp_path):
    r = _cli("search", "space.model=resnet20", "data=synthetic", "base.epochs=0", "latency.target=quick",
             f"latency.dir={quick_target}", "constraint.latency_ms=0.0001", cwd=tmp_path)
    assert r.returncode == 2 and "impossible constraint: latency" in r.stderr
    assert not (tmp_path / "studies" / "searchkit.db").exists() or "channels" not in r.stdout


# --- ONNX Runtime as the target's runtime -----------------------------------------------------
def test_onnx_kernel_rows_compute_what_the_torch_kernels_compute():
    """Each kernel type's ONNX form has the torch kernel's output shape, so a profile under
    onnxruntime times the same work (every sweep row of every type, a few each)."""
    import onnxruntime

    from searchkit.costs.kernels import KERNELS
    from searchkit.costs.ort import chain_model
    rng = np.random.default_rng(0)
    rows = [(kind, tuple(r)) for kind, k in KERNELS.items() for r in k.sweep(rng, 12)]
    rows = [r for r in rows if r[0] != "conv" or np.prod(r[1][:2]) * r[1][5] * r[1][6] < 2e7]
    model, feeds = chain_model(rows)
    sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, feeds)
    for (kind, fields), got in zip(rows, outs):
        want = KERNELS[kind].make(fields)()
        assert got.size == want.numel(), (kind, fields, got.shape, tuple(want.shape))


@pytest.fixture(scope="module")
def ort_target(tmp_path_factory):
    root = tmp_path_factory.mktemp("latency-ort")
    path = profile("ortq", sweep="quick", root=root, progress=False, log=lambda *a: None, runtime="onnxruntime")
    doc = json.loads(path.read_text())
    assert doc["machine"]["runtime"] == "onnxruntime" and doc["machine"]["onnxruntime"]
    assert all(s > 0 for k in doc["kernels"].values() for s in k["seconds"])
    for m in doc["calibration_models"]:  # convs timed in the network, their replayed times kept
        assert len(m["replayed_s"]) == len(m["in_model_s"]) == len(m["reorders_s"]) == len(m["kernels"])
    fit("ortq", root=root)
    return root


def test_fit_can_price_an_onnxruntime_profile_with_its_convs_replayed(ort_target):
    """``fit`` compares the in-network conv rows with the replayed ones (the predictor's
    held-out line): the replayed profile swaps exactly the calibration models' conv rows."""
    from searchkit.costs.profiling import load_profile, replayed_profile
    doc = load_profile("ortq", ort_target)
    again = replayed_profile(doc)
    replayed: dict[tuple, list[float]] = {}
    for m in doc["calibration_models"]:
        for (kind, f), t in zip(m["kernels"], m["replayed_s"]):
            if kind == "conv":
                replayed.setdefault(tuple(f), []).append(t)
    for r, new, old in zip(doc["kernels"]["conv"]["rows"], again["kernels"]["conv"]["seconds"],
                           doc["kernels"]["conv"]["seconds"]):
        assert new == (pytest.approx(np.median(replayed[tuple(r)])) if tuple(r) in replayed else old)
    assert replayed and again["kernels"]["eltwise"] == doc["kernels"]["eltwise"]
    assert replayed_profile({**doc, "calibration_models": [{k: v for k, v in m.items() if k != "replayed_s"}
                                                           for m in doc["calibration_models"]]}) is None


def test_an_onnxruntime_target_prices_repairs_and_verifies_on_the_onnx_file(ort_target, tmp_path):
    pred = load_predictor("ortq", ort_target)
    assert pred.meta["runtime"] == "onnxruntime"
    # ONNX Runtime runs these small nets several times faster than torch eager: its
    # predictor must say so (the torch profile's calibration would not)
    big = trace_kernels(build_base("resnet56"), (3, 16, 16))
    from searchkit.costs.latency import measure_models_ms
    from searchkit.costs.ort import ort_models
    (ort_net, size), = ort_models([(build_base("resnet56").eval(), (3, 16, 16))], tmp_path / "onnx")
    ort_ms, eager_ms = measure_models_ms([(ort_net, size), (build_base("resnet56"), size)], rounds=4)
    assert ort_ms < eager_ms
    assert abs(pred.predict_ms(big) / ort_ms - 1) < abs(pred.predict_ms(big) / eager_ms - 1)
    common = ["space.model=resnet20", "data=synthetic", "base.epochs=0", "finetune.max_batches=1",
              "constraint.flops=1.0", "latency.target=ortq", f"latency.dir={ort_target}",
              f"base.cache_dir={tmp_path / 'bases'}", f"storage=sqlite:///{tmp_path / 'db.sqlite'}",
              "progress=false"]
    setup = _setup(common)
    lat = setup.costs["latency"]
    bound = (lat.base() + lat.floor()) / 2
    out = run_search(load_config(common + [f"constraint.latency_ms={bound}", "trials=2", "algo=abc"]), quiet=True)
    trained = [t for t in out.study.trials if t.user_attrs.get("searchkit:evaluated")]
    assert trained and all(t.user_attrs["cost:latency"] <= bound for t in trained)
    from searchkit.export import export_study
    folder = export_study(out.study.study_name, f"sqlite:///{tmp_path / 'db.sqlite'}", out=tmp_path / "exp")[0]
    arch = json.loads((folder / "arch.json").read_text())
    record = arch["latency"]
    # format=pt2 was asked for; the ONNX file is written too, since the bound is verified on it
    assert (folder / "model.onnx").is_file() and (folder / "model.pt2").is_file()
    assert record["runtime"] == "onnxruntime" and record["measured"] == "the written model.onnx in onnxruntime"
    assert record["measured_ms"] > 0 and record["bound_met"] == (record["measured_ms"] <= bound)


@pytest.mark.parametrize("model, size", [("resnet18", (3, 16, 16)), ("mobilenet_v2", (3, 32, 32))])
def test_every_conv_of_a_network_is_timed_in_the_network_onnxruntime_runs(tmp_path, model, size):
    """An onnxruntime profile times a calibration model's convs inside the model itself
    (NCHWc layout, fused adds and activations): every conv kernel finds its node, though
    onnxruntime runs ResNet-18's shortcut convs before the block's second conv and pads
    MobileNetV2's 24 channels to 32; a kernel that is not in the network finds none."""
    from searchkit.costs.ort import measure_convs_in_context, ort_models
    net = build_base(model).eval()
    kernels = trace_kernels(net, size)
    (sess, _), = ort_models([(net, size)], tmp_path / "onnx")
    wrong = Kernel("conv", (5, 7, 3, 1, 1, size[1], size[2], 1, 1))
    got, edges = measure_convs_in_context(sess.path, size, [*kernels, wrong], passes=3)
    assert all((t is not None and 0 < t < 0.01) == (k.kind == "conv") for k, t in zip(kernels, got))
    assert got[-1] is None and edges[-1] == 0
    assert all(e >= 0 for e in edges) and sum(edges) < sum(t for t in got if t)


def test_unknown_runtime_is_one_line(tmp_path):
    r = _cli("latency", "profile", "target=x", "runtime=tvm", cwd=tmp_path)
    assert r.returncode == 2 and "unknown runtime 'tvm' (choices: torch, onnxruntime)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("model", ["resnet20", "mobilenet_v2"])
def test_a_split_predictor_prices_the_same_one_by_one_and_in_batch(quick_target, tmp_path, model):
    """An onnxruntime predictor calibrates 1x1, depthwise and other convs, and residual adds,
    on their own; the channel space's tables and batch path must apply the same (a, b)."""
    pred = Predictor.from_json(json.loads((quick_target / "quick" / "predictor.json").read_text()))
    pred.split = True
    pred.groups = {g: (0.5 + 0.3 * i, 1e-6 * (i + 1)) for i, g in enumerate(Predictor.SPLIT_GROUPS)}
    space = _setup([f"space.model={model}", "data=synthetic", "base.epochs=0", f"base.cache_dir={tmp_path}",
                    "constraint.flops=1.0"]).space
    kernels = space.kernels(space.base_genome())
    assert {pred.group(k.kind, k.fields) for k in kernels} >= {"conv", "eltwise/add"}
    lat = LatencyCost(space, predictor=pred)
    rng = random.Random(2)
    genomes = [space.genome([rng.choice(space.choices) for _ in space.units]) for _ in range(12)]
    direct = [pred.predict_ms(space.kernels(g)) for g in genomes]
    assert np.allclose(lat.many(genomes), direct)
    if model == "mobilenet_v2":
        assert {pred.group(k.kind, k.fields) for k in kernels} >= {"conv/1x1", "conv/depthwise"}
    from searchkit.spaces.channels.latency import predict_many_ms
    off_grid = np.array([[0.37] * len(space.units), [0.61] * len(space.units)])  # the batch path
    assert np.allclose(predict_many_ms(pred, space.kernel_map, off_grid),
                       [pred.predict_ms(space.kernel_map.kernels(list(f))) for f in off_grid])
    plain = Predictor.from_json(json.loads((quick_target / "quick" / "predictor.json").read_text()))
    assert not np.allclose(direct, [plain.predict_ms(space.kernels(g)) for g in genomes])
    again = Predictor.from_json(json.loads(json.dumps(pred.to_json())))
    assert again.split and again.predict_ms(kernels) == pytest.approx(pred.predict_ms(kernels))


def test_a_benchmark_measures_its_networks_at_the_profile_thread_count_beside_its_references():
    import torch

    from searchkit.bench.common import Profiled
    from searchkit.costs.profiling import population
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x * 2
    refs = population(seed=3, n_random=2, bases=False, quick=True)
    pred = Predictor({}, [1.0, 0.0], {"threads": 1})
    old = torch.get_num_threads()
    torch.set_num_threads(2)  # as a benchmark's earlier parts leave it
    try:
        ms, speed = Profiled(pred, 0.0, refs, [1e-3, 1e-3]).measure([(Probe(), (3, 4, 4))], rounds=1)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(old)
    assert set(seen) == {1} and len(ms) == 1 and ms[0] > 0
    assert speed > 1  # the references ran far slower than the 1 us recorded for them
