"""The local executor: candidates are trained one at a time in the driver's own process.

Example:
    >>> # used by ``searchkit search executor=local`` (the default)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from searchkit.search import Driver


def run_locally(driver: "Driver") -> None:
    """Propose, train and tell until the driver stops proposing."""
    from searchkit.search import SearchInterrupted, evaluate_candidate

    while (cand := driver.propose()) is not None:
        try:
            metrics, weights, history = evaluate_candidate(
                driver.ctx, cand.genome, seed=cand.seed,
                report=lambda step, value: driver.report(cand, step, value),
                desc=f"trial {cand.number}")
        except KeyboardInterrupt:
            driver.fail(cand, "interrupted (Ctrl-C)", requeue=True)
            raise SearchInterrupted() from None
        except Exception as exc:  # a broken candidate must not end the search
            driver.fail(cand, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        driver.finish(cand, metrics, history, weights)
