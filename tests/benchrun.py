"""Run a benchmark's quick form as a user would, and read what it wrote; kill a run mid-way."""

import json
import subprocess
import sys
from pathlib import Path


def run_bench(name: str, out: Path, *options: str, timeout: float = 900) -> tuple[dict, str]:
    """``python -m searchkit.bench NAME quick=true out=OUT OPTIONS``; its JSON and Markdown."""
    proc = subprocess.run([sys.executable, "-m", "searchkit.bench", name, "quick=true", f"out={out}", *options],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / f"{name}.json").read_text()), (out / f"{name}.md").read_text()


def kill_when(args: list[str], cwd: Path, marker: str, root: Path) -> None:
    """Run ``searchkit ARGS`` in ``cwd`` and SIGKILL it right after it prints ``marker``."""
    import os
    import signal
    proc = subprocess.Popen([sys.executable, "-m", "searchkit.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    log = []
    for line in proc.stdout:
        log.append(line)
        if marker in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(log)
