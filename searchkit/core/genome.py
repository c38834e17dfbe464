"""Genomes are plain JSON dicts; an archid is the hash of their canonical JSON.

Example:
    >>> from searchkit.core.genome import archid
    >>> archid({"w": [0.5, 1.0], "d": 2}) == archid({"d": 2, "w": [0.5, 1.0]})
    True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

Genome = dict[str, Any]


def canonical_json(genome: Genome) -> str:
    """Key-sorted, whitespace-free JSON: the one serialisation archids are taken of."""
    return json.dumps(genome, sort_keys=True, separators=(",", ":"), allow_nan=False)


def archid(genome: Genome) -> str:
    """A stable 16-hex-digit id of a genome (sha256 of its canonical JSON)."""
    return hashlib.sha256(canonical_json(genome).encode()).hexdigest()[:16]
