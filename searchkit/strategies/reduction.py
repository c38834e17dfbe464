"""Operation-space reduction (BNAS) for ``algo=darts``: drop the ops a supernet's edges no
longer need, so the later epochs run fewer of them.

A stage looks at each edge (a row of a choice group: ``supernet.choices()`` gives each group's
logits, mask of active ops and selection likelihood, and ``supernet.path`` runs one op per
row) with more than ``floor`` ops still active: its candidates are the ⌈k/2⌉ active ops with
the lowest logits. Paths (one op per edge) are sampled so that each candidate of every edge runs in ``samples``
of them; each path is scored as a single-path net on the supernet's shared weights (its
accuracy on a few validation batches). An edge's selection likelihood of its candidates
becomes ``sel / 2 + softmax(mean score)``, and its least likely candidate is dropped.
Stages fall at the ends of the epochs from the warm-up's last on, as many per epoch as it
takes to reach ``floor`` ops per edge for the last one (:func:`stages_due`). Docs: the
binarized-cell page in ``docs/``.

Example (8 ops, 2 kept, 6 epochs of which 2 warm up: stages after epochs 2 to 5):
    >>> active, due = 8, []
    >>> for epoch in range(1, 7):
    ...     due.append(stages_due(active, 8, 2, epoch, warmup=2, epochs=6))
    ...     active -= due[-1]
    >>> due, active
    ([0, 2, 1, 2, 1, 0], 2)
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def stages_due(active_ops: int, total_ops: int, floor: int, epoch: int, warmup: int, epochs: int) -> int:
    """How many stages to run after ``epoch`` (1-based) for the drops to date to be
    ``ceil(D s / S)``: ``D = total_ops - floor`` drops over the ``S`` ends of epochs
    ``max(warmup, 1) .. epochs - 1``, front-loaded so the saving starts early. The first
    stage may fall before any architecture update: its candidates are then any half of each
    edge's ops, and the scores of the warmed-up weights decide."""
    first = max(warmup, 1)
    s = epoch - first + 1
    if not 1 <= s <= epochs - first:
        return 0
    target = math.ceil((total_ops - floor) * s / (epochs - first))
    return max(0, target - (total_ops - active_ops))


class Reduction:
    """One operation-space reduction schedule (see the module docstring)."""

    def __init__(self, samples: int = 3, batches: int = 2, floor: int = 2):
        self.samples, self.batches, self.floor = int(samples), int(batches), int(floor)

    def stage(self, net: nn.Module, val: Iterator, gen: torch.Generator) -> dict[str, int]:
        """Drop one op from every edge that has more than ``floor``; returns ``{group: dropped}``."""
        groups = net.choices()
        cands = {}
        for g, (alpha, active, _) in groups.items():
            alpha, rows = alpha.detach(), []
            for r in range(alpha.shape[0]):
                live = active[r].nonzero().flatten().tolist()
                if len(live) <= self.floor:
                    rows.append(None)
                    continue
                order = sorted(live, key=lambda o: (float(alpha[r, o]), o))  # lowest logits first
                rows.append(order[:math.ceil(len(live) / 2)])
            cands[g] = rows
        width = max((len(c) for rows in cands.values() for c in rows if c), default=0)
        if width == 0:
            return {}
        batches = [next(val) for _ in range(self.batches)]
        scores = {g: [dict() for _ in rows] for g, rows in cands.items()}
        # edges with nothing to drop run their most likely op in every path
        best = {g: alpha.detach().masked_fill(~active, float("-inf")).argmax(-1).tolist()
                for g, (alpha, active, _) in groups.items()}
        for _ in range(self.samples):
            perms = {g: [None if c is None else [c[int(i)] for i in torch.randperm(len(c), generator=gen)]
                         for c in rows] for g, rows in cands.items()}
            for p in range(width):
                path = {g: [best[g][r] if perm is None else perm[p % len(perm)] for r, perm in enumerate(rows)]
                        for g, rows in perms.items()}
                score = self._score(net, path, batches)
                for g, rows in perms.items():
                    for r, perm in enumerate(rows):
                        if perm is not None:
                            scores[g][r].setdefault(path[g][r], []).append(score)
        dropped = {}
        with torch.no_grad():
            for g, (alpha, active, sel) in groups.items():
                for r, c in enumerate(cands[g]):
                    if c is None:
                        continue
                    mean = torch.tensor([sum(scores[g][r][o]) / len(scores[g][r][o]) for o in c], dtype=sel.dtype)
                    like = sel[r, c] / 2 + F.softmax(mean, dim=0)
                    sel[r, c] = like
                    active[r, c[int(torch.argmin(like))]] = False  # ties: the lowest logit
                dropped[g] = sum(c is not None for c in cands[g])
        return dropped

    @torch.no_grad()
    def _score(self, net: nn.Module, path: dict[str, list[int]], batches) -> float:
        device = next(net.parameters()).device
        net.path = path
        try:
            correct = total = 0
            for x, y in batches:
                out = net(x.to(device))
                correct += int((out.argmax(1) == y.to(device)).sum())
                total += len(y)
        finally:
            net.path = None
        return correct / max(total, 1)


__all__ = ["Reduction", "stages_due"]
