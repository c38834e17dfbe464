"""The HTML report of a real SQLite study, rendered by a real headless Chromium.

The study is made without training: trials carry the same attributes the driver writes
(genome, archid, costs, val_accuracy, infeasible/duplicate flags, constraints).
"""

import json
import random
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from searchkit.config import load_config
from searchkit.core.genome import archid
from searchkit.report import write_report
from searchkit.study import pareto_trials

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"{CHROMIUM} is absent (apt-get install -y chromium)")

UNIT_NAMES = ["conv1", "layer1.0", "layer1.1", "layer1.2", "layer2.0", "layer2.1", "layer2.2",
              "layer3.0", "layer3.1"]
BASE_WIDTHS = [16, 16, 16, 16, 32, 32, 32, 64, 64]
BASE = {"model": "resnet20", "accuracy": 0.9, "costs": {"flops": 10_000_000, "params": 270_000},
        "describe": {"layers": {"names": UNIT_NAMES, "values": BASE_WIDTHS, "label": "channels"}}}


def _costs(keep):
    ratio = sum(k * k for k in keep) / len(keep)  # stand-in for the cost table: monotone in keep
    return int(BASE["costs"]["flops"] * ratio), int(BASE["costs"]["params"] * ratio), ratio


def _priced(trial, keep, model="resnet20", describe=True):
    """The record the driver writes when it prices a candidate."""
    genome = {"model": model, "keep": keep}
    flops, params, ratio = _costs(keep)
    kept = [max(1, int(c * k + 1e-9)) for c, k in zip(BASE_WIDTHS, keep)]
    attrs = {"genome": genome, "archid": archid(genome), "cost:flops": flops, "cost:params": params}
    if describe:
        attrs["describe"] = {"summary": f"keep {keep}", "layers": {"names": UNIT_NAMES, "base": BASE_WIDTHS,
                                                                   "values": kept, "label": "channels"}}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    trial.set_constraint("flops", ratio / 0.5 - 1.0)
    return genome, ratio


def make_study(tmp_path, name="demo", *, trained=12, base=BASE, multi=False, extras=True, sqlite=True,
               describe=True):
    """A study as the driver leaves it; SQLite (JSON round trips) unless ``sqlite=False`` (faster)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    study = optuna.create_study(study_name=name, storage=storage if sqlite else None, directions=directions)
    overrides = ["space.model=resnet20", "constraint.flops=0.5"]
    if multi:
        overrides += ["objectives=[accuracy,flops]", "algo=nsga2", "storage=" + storage]
    study.set_user_attr("searchkit:config", load_config(overrides).to_json())
    study.set_user_attr("searchkit:base", dict(base))
    choices = [0.3, 0.4, 0.5, 0.6, 0.7]
    first = None
    for i in range(trained):
        trial = study.ask()
        rng = random.Random(i)
        keep = [rng.choice(choices) for _ in range(9)]
        genome, ratio = _priced(trial, keep, describe=describe)
        acc = round(0.9 - 0.5 * (0.55 - ratio) ** 1.5 + rng.uniform(-0.015, 0.015), 4)
        trial.set_user_attr("searchkit:evaluated", True)
        trial.set_user_attr("val_accuracy", acc)
        trial.set_user_attr("seconds", 1.5)
        study.tell(trial, [acc, float(trial.user_attrs["cost:flops"])] if multi else acc)
        first = first or (trial.number, acc, genome)
    if not extras:
        return study
    for _ in range(3):  # infeasible: priced, never trained
        trial = study.ask()
        _priced(trial, [1.0] * 8 + [0.9])
        trial.set_user_attr("searchkit:infeasible", True)
        study.tell(trial, state=TrialState.PRUNED)
    if first is not None:  # a duplicate of the first trained trial
        trial = study.ask()
        _priced(trial, first[2]["keep"])
        trial.set_user_attr("searchkit:duplicate_of", first[0])
        trial.set_user_attr("val_accuracy", first[1])
        study.tell(trial, [first[1], float(trial.user_attrs["cost:flops"])] if multi else first[1])
    trial = study.ask()  # stopped early by the pruner (trained, not complete)
    _priced(trial, [0.4] * 9)
    trial.set_user_attr("searchkit:evaluated", True)
    trial.set_user_attr("val_accuracy", 0.5)
    study.tell(trial, state=TrialState.PRUNED)
    trial = study.ask()  # a broken candidate
    _priced(trial, [0.3] * 9)
    trial.set_user_attr("searchkit:fail_reason", "RuntimeError: boom <b>not html</b>")
    study.tell(trial, state=TrialState.FAIL)
    study.ask()  # still running
    return study


# --- headless Chromium -------------------------------------------------------------------


def chromium(tmp_path, page: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
           *args, page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


class _PlotCheck(HTMLParser):
    """Each plotly div of a rendered DOM, and whether an ``svg.main-svg`` sits inside it."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.plots: dict[str, bool] = {}
        self.open: list[tuple[str, int]] = []  # (plot id, stack depth)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "svg" and "main-svg" in classes:
            for pid, _ in self.open:
                self.plots[pid] = True
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if tag == "div" and "plotly-graph-div" in classes:
            self.plots.setdefault(a.get("id", f"plot{len(self.plots)}"), False)
            self.open.append((a.get("id", ""), len(self.stack)))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID or tag not in self.stack:
            return
        while self.stack:
            if self.stack.pop() == tag:
                break
        self.open = [(p, d) for p, d in self.open if d <= len(self.stack)]


def render(tmp_path, page: Path) -> tuple[str, dict[str, bool]]:
    """The DOM after the page's scripts ran, and {plot id: rendered?}; fails on any JS error."""
    dom = chromium(tmp_path, page, "--dump-dom").stdout
    assert "</main>" in dom, dom[-500:]
    errors = re.search(r'<div id="js-errors"[^>]*>(.*?)</div>', dom, re.S)
    assert errors is not None, "the page lost its #js-errors element"
    assert errors.group(1).strip() == "", f"JavaScript errors: {errors.group(1)}"
    check = _PlotCheck()
    check.feed(dom)
    empty = [pid for pid, ok in check.plots.items() if not ok]
    assert not empty, f"plots left empty: {empty}"
    return dom, check.plots


# --- tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    study = make_study(tmp)
    return tmp, study, write_report(study, tmp / "reports")


def test_files_and_tables(demo):
    tmp, study, page = demo
    folder = tmp / "reports" / "demo"
    assert page == folder / "index.html"
    trials = study.get_trials()
    csv = pd.read_csv(folder / "trials.csv")
    assert list(csv.number) == [t.number for t in trials]
    pq = pd.read_parquet(folder / "trials.parquet")
    assert len(pq) == len(trials)
    labels = csv.set_index("number").label
    assert (labels == "INFEASIBLE").sum() == 3 and (labels == "DUPLICATE").sum() == 1
    assert (labels == "FAIL").sum() == 1 and (labels == "RUNNING").sum() == 1
    assert json.loads(csv.genome.dropna().iloc[0])["model"] == "resnet20"

    text = page.read_text()
    assert not re.search(r"<script[^>]+src\s*=", text), "plotly.js must be inline"
    assert "Plotly.newPlot" in text and len(text) > 3_000_000  # the library itself is in the page
    assert "<b>not html</b>" not in text  # attribute text is escaped

    trained = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("searchkit:evaluated")]
    best = max(trained, key=lambda t: (t.user_attrs["val_accuracy"], -t.user_attrs["cost:flops"]))
    assert f"trial #{best.number}</b>" in text
    assert f"searchkit export study=demo trial={best.number}" in text
    # every exported command names a trained, complete trial; the cheapest trained one is Pareto-optimal
    commands = {int(n) for n in re.findall(r"searchkit export study=demo trial=(\d+)", text)}
    assert commands <= {t.number for t in trained} and best.number in commands
    cheapest = min(trained, key=lambda t: t.user_attrs["cost:flops"])
    assert cheapest.number in commands
    # the listed front is the one `searchkit export top=pareto` exports
    assert commands == {best.number} | {t.number for t in pareto_trials(study)}
    assert "searchkit export study=demo top=pareto" in text


CLICK_SORT = """<script>
window.addEventListener('load', function(){
  var th = document.querySelectorAll('#trials th')[2];  // accuracy
  th.click(); th.click();  // second click: descending
  var out = document.createElement('div'); out.id = 'sorted';
  out.textContent = Array.prototype.map.call(document.querySelectorAll('#trials tbody tr'),
      function(r){ return r.cells[0].dataset.v; }).join(',');
  document.body.appendChild(out);
});
</script>"""


@needs_chromium
def test_renders_without_errors_and_screenshot(demo):
    tmp, study, page = demo
    probe = page.with_name("probe.html")  # the page plus a script that clicks a column header
    probe.write_text(page.read_text().replace("</body>", CLICK_SORT + "</body>"))
    dom, plots = render(tmp, probe)
    assert set(plots) == {"plot-history", "plot-pareto", "plot-widths"}
    order = [int(n) for n in re.search(r'<div id="sorted">([^<]*)</div>', dom).group(1).split(",")]
    accuracy = {t.number: t.user_attrs.get("val_accuracy") for t in study.get_trials()}
    ranked = [accuracy[n] for n in order if accuracy[n] is not None]
    assert ranked == sorted(ranked, reverse=True) and len(order) == len(accuracy)
    assert all(accuracy[n] is None for n in order[len(ranked):])  # no accuracy sorts last
    shot = tmp / "report.png"
    chromium(tmp, page, f"--screenshot={shot}", "--window-size=1400,2400", "--hide-scrollbars")
    assert shot.stat().st_size > 50_000


def test_per_layer_view_from_the_trials_descriptions(tmp_path):
    page = write_report(make_study(tmp_path, trained=5, extras=False, sqlite=False), tmp_path / "r")
    text = page.read_text()
    assert "Channels per layer, against the base (grey)" in text and "layer3.1" in text
    fallback = write_report(make_study(tmp_path, name="plain", trained=5, extras=False, sqlite=False,
                                       describe=False), tmp_path / "r").read_text()
    assert "class='genomes'" in fallback  # no description stored: the genomes as a table


def test_a_study_of_searchkit_0_1_still_reports(tmp_path):
    """Costs stored flat by name (``flops``), the base's costs flat too: read alike."""
    study = optuna.create_study(study_name="old", direction="maximize")
    study.set_user_attr("searchkit:base", {"model": "resnet20", "accuracy": 0.9, "flops": 1e7, "params": 2e5})
    for i, (acc, flops) in enumerate([(0.8, 5e6), (0.85, 8e6), (0.7, 6e6)]):
        trial = study.ask()
        for key, value in (("genome", {"i": i}), ("archid", str(i)), ("flops", flops), ("params", flops / 50),
                           ("searchkit:evaluated", True), ("val_accuracy", acc)):
            trial.set_user_attr(key, value)
        study.tell(trial, acc)
    text = write_report(study, tmp_path / "r").read_text()
    assert "searchkit export study=old top=pareto" in text and "80.0% of base" in text


def test_multi_objective_study_reads_user_attrs(tmp_path):
    study = make_study(tmp_path, name="mo", multi=True, trained=6, sqlite=False)
    page = write_report(study, tmp_path / "r")
    text = page.read_text()
    assert "searchkit export study=mo trial=" in text
    assert f"storage=sqlite:///{tmp_path}" in text  # a non-default storage is part of the command
    assert "accuracy, flops" in text and "nsga2" in text
    listed = {int(n) for n in re.findall(r"searchkit export study=mo trial=(\d+)", text)}
    assert listed == {t.number for t in pareto_trials(study)}
    csv = pd.read_csv(page.parent / "trials.csv")
    complete = csv[csv.label == "COMPLETE"]
    assert complete.accuracy.between(0.5, 1.0).all()  # values[1] (FLOPs) is never taken as accuracy


def test_other_genomes_are_shown_as_a_table(tmp_path):
    study = optuna.create_study(study_name="bnas", direction="maximize")
    study.set_user_attr("searchkit:base", dict(BASE))
    for i in range(3):
        trial = study.ask()
        genome = {"model": "bnas", "ops": ["conv3", "skip", "pool"][i:] + ["conv3"] * i}
        trial.set_user_attr("genome", genome)
        trial.set_user_attr("archid", archid(genome))
        trial.set_user_attr("cost:flops", 1_000_000 * (i + 1))
        trial.set_user_attr("searchkit:evaluated", True)
        trial.set_user_attr("val_accuracy", 0.7 + 0.05 * i)
        study.tell(trial, 0.7 + 0.05 * i)
    text = write_report(study, tmp_path / "r").read_text()
    assert "class='genomes'" in text and "&quot;skip&quot;" in text
    assert "no searchkit configuration stored" in text


@needs_chromium
def test_empty_study_and_no_trained_trials(tmp_path):
    empty = optuna.create_study(study_name="empty", storage=f"sqlite:///{tmp_path / 'e.db'}")
    page = write_report(empty, tmp_path / "r")
    assert "No trials yet" in page.read_text()
    assert len(pd.read_csv(page.parent / "trials.csv")) == 0
    _, plots = render(tmp_path, page)
    assert plots == {}

    study = make_study(tmp_path, name="infeasible-only", trained=0, sqlite=False)  # 3 infeasible + fail + running
    page = write_report(study, tmp_path / "r")
    assert "No trained trials yet" in page.read_text()
    _, plots = render(tmp_path, page)
    assert set(plots) == {"plot-history"}
