"""Files written whole or not at all: each writer fills its own temporary file beside the
target, then renames it over the target (a killed run leaves no half file, and two runs
writing one file of a shared cache never write into the same temporary file).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "cache" / "a.json"
    >>> with replacing(path) as tmp:
    ...     _ = tmp.write_text("{}")
    >>> path.read_text(), [p.name for p in path.parent.iterdir()]
    ('{}', ['a.json'])
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """The temporary file to write ``path`` through (its folder made); renamed over
    ``path`` when the block ends, removed if the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["replacing"]
