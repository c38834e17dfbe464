"""Run a benchmark's quick form as a user would, and read what it wrote."""

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
