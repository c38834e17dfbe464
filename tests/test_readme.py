"""The README's code blocks, run as a user copies them: the quick start at its full budget
(and the figures its prose quotes), the export snippet on the quick start's own winner, the
TinyNet and latency walk-throughs, the Python API; every command of the command reference
answers ``--help`` with the keys it is documented with."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def fenced() -> list[tuple[str, str]]:
    """Every fenced block of the README as (language, text), in order."""
    out, lang, lines = [], None, []
    for line in README.splitlines(keepends=True):
        if line.startswith("```"):
            if lang is None:
                lang, lines = line[3:].strip(), []
            else:
                out.append((lang, "".join(lines)))
                lang = None
        elif lang is not None:
            lines.append(line)
    return out


def blocks(lang: str) -> list[str]:
    return [text for kind, text in fenced() if kind == lang]


def block_after(heading: str, lang: str) -> str:
    """The first ``lang`` block under the section ``heading``."""
    start = README.index(heading)
    return next(text for kind, text in fenced() if kind == lang and README.index(text) > start)


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A directory to work in and a ``searchkit`` on PATH that is this interpreter's."""
    home = tmp_path_factory.mktemp("user")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "searchkit"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m searchkit "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CI": "1"}
    env.pop("OMP_NUM_THREADS", None)  # threads as a user's machine has them
    work = home / "work"
    work.mkdir()
    return work, env


def run(script: str, user, lang="bash", timeout=900) -> str:
    work, env = user
    args = ["bash", "-euo", "pipefail", "-c", script] if lang == "bash" else [sys.executable, "-c", script]
    proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def test_the_test_command_is_what_ci_runs():
    """The second quick-start command is `.ci/run` (not run here: it runs this suite); the
    test command the README gives for a prepared machine is the one it ends with."""
    second = blocks("bash")[1].strip()
    assert second == "bash .ci/run"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup"
    assert f"{ci[-1]}`" in " ".join(README.split()), "the README's test command is not .ci/run's"


REFERENCE = [ln for ln in blocks("")[0].splitlines() if ln.startswith("searchkit ")]


@pytest.mark.parametrize("line", REFERENCE, ids=[ln.split()[1] for ln in REFERENCE])
def test_every_command_of_the_reference_answers_help_with_its_keys(line, user):
    words = line.split("   ")[0].split()
    command = words[1]
    text = run(f"searchkit {command} --help", user)
    for word in words[2:]:
        for key in set(re.findall(r"[\w.]+(?==)", word.strip("[]"))) - {"key"}:  # [key=value ...]
            assert key in text, (line, key)


def test_every_key_of_the_settings_table_is_a_setting_search_help_lists(user):
    table = README.split("| key | meaning | default |", 1)[1].split("\n\n", 1)[0]
    named = [k for row in table.splitlines()[1:] for k in re.findall(r"`([\w.]+)`", row.split("|")[1])]
    text = run("searchkit search --help", user)
    missing = [k for k in named if not re.search(rf"(?<![\w.]){re.escape(k)}(?!\w)", text)]
    assert len(named) > 20 and not missing, missing


@pytest.mark.slow
@pytest.mark.alone  # a user's threads
def test_the_quick_start_export_snippet_and_quoted_figures(user):
    """The first command at its full budget (the install step is `.ci/run`'s and the
    packaging test's), the figures the prose quotes, then the export snippet on its winner."""
    quick = blocks("bash")[0].strip()
    assert quick.startswith("pip install -e . && ")
    out = run(quick.removeprefix("pip install -e . && "), user)
    base = float(re.search(r"base resnet56: val accuracy ([\d.]+)", out).group(1))
    best = re.search(r"best: trial \d+\s+val accuracy ([\d.]+)\s+flops \S+ \(([\d.]+)% fewer\)", out)
    quoted = re.findall(r"base val accuracy ([\d.]+); best candidate ([\d.]+) at ([\d.]+)% fewer FLOPs",
                        " ".join(README.split()))
    # seeded, so one CPU's quoted figures here, up to floating-point rounding
    got = (base, float(best.group(1)), float(best.group(2)))
    assert quoted and any(abs(got[0] - float(b)) <= 0.02 and abs(got[1] - float(w)) <= 0.02
                          and abs(got[2] - float(r)) <= 3 for b, w, r in quoted), (got, quoted, out)
    assert "export run exports/channels-resnet56-digits-abc/" in out
    run(block_after("### Export", "python") + "\nassert logits.shape == (8, 10), logits.shape\n", user,
        lang="python")
    report = re.search(r"`(searchkit report study=[\w-]+)`", README).group(1)
    run(report, user)
    assert list((user[0] / "reports").rglob("*.html"))


@pytest.mark.slow
@pytest.mark.alone  # a user's threads
def test_the_tinynet_walk_through(user):
    out = run(block_after("### TinyNet", "bash"), user)
    assert "tiny formula from" in out and "formula-2.00M" in out
    assert "warning" not in out  # the walk-through's budget gives a fit worth trusting


@pytest.mark.slow
@pytest.mark.alone  # a user's threads
def test_the_latency_walk_through(user):
    out = run(block_after("### Latency on a target CPU", "bash"), user)
    assert "smoke test" in out and "held-out models" in out and "Pareto front (accuracy vs latency)" in out


@pytest.mark.slow
@pytest.mark.alone  # a user's threads
def test_the_python_api(user):
    run(block_after("## Python API", "python"), user, lang="python")
    assert list((user[0] / "exports" / "channels-resnet20-digits-abc").rglob("model.pt2"))
