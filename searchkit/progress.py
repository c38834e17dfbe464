"""Progress bars that stay quiet where nobody watches them.

A bar is shown only on an interactive terminal and never under CI (the ``CI``
environment variable, set by GitHub Actions, GitLab, Buildkite, ...), unless the caller
asks for it explicitly. Logs of batch jobs and Ray workers therefore hold results, not
thousands of carriage-return frames.

Example:
    >>> from searchkit.progress import bar, progress_enabled
    >>> with bar(3, desc="demo", enabled=False) as b:
    ...     for _ in range(3):
    ...         b.update(1)
    >>> progress_enabled(False)
    False
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

MIN_COLUMNS = 40


def progress_enabled(explicit: bool | None = None) -> bool:
    """Decide whether to draw progress bars.

    Args:
        explicit: ``True`` or ``False`` forces the answer; ``None`` decides
            automatically.

    Returns:
        ``explicit`` when given; otherwise ``False`` when the ``CI`` environment
        variable is set (to anything but ``""``, ``0`` or ``false``), stderr is not a
        terminal, or the terminal is narrower than ``MIN_COLUMNS``, else ``True``.
    """
    if explicit is not None:
        return bool(explicit)
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    stream = sys.stderr
    try:
        if not (stream is not None and stream.isatty()):
            return False
    except (AttributeError, ValueError):  # closed or replaced stream
        return False
    # A terminal too narrow for a bar (some CI consoles report 0 columns) gets the per-trial
    # lines instead: a bar there draws nothing at all.
    return shutil.get_terminal_size(fallback=(80, 24)).columns >= MIN_COLUMNS


def bar(
    iterable: Iterable[Any] | int | None = None,
    desc: str = "",
    enabled: bool | None = None,
    **kwargs: Any,
) -> tqdm:
    """Wrap ``tqdm``: an iterable, or a total count to ``update()`` by hand.

    Args:
        iterable: What to iterate over, or an ``int`` total for a manual bar.
        desc: Text shown before the bar.
        enabled: Passed through :func:`progress_enabled`; a disabled bar costs
            almost nothing and still works as a context manager and iterator.
        **kwargs: Further ``tqdm`` arguments (``total``, ``unit``, ``leave``...).

    Returns:
        A ``tqdm`` instance.
    """
    if isinstance(iterable, int) and not isinstance(iterable, bool):
        kwargs.setdefault("total", iterable)
        iterable = None
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, desc=desc or None, disable=not progress_enabled(enabled), **kwargs)
