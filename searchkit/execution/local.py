"""The local executor: candidates are trained one at a time in the driver's own process.

Example:
    >>> # searchkit search executor=local (the default)
"""

from __future__ import annotations

from searchkit.core.ports import DriverPort, SearchInterrupted


def run_locally(port: DriverPort) -> None:
    """Propose, train and tell until the port stops proposing."""
    while (cand := port.propose()) is not None:
        try:
            result = port.evaluate(cand.work, report=lambda step, value: port.report(cand, step, value),
                                   progress=getattr(port, "progress", None), desc=f"trial {cand.number}")
        except KeyboardInterrupt:
            port.fail(cand, "interrupted (Ctrl-C)", requeue=True)
            raise SearchInterrupted() from None
        except Exception as exc:  # a broken candidate must not end the search
            port.fail(cand, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        port.finish(cand, result)
