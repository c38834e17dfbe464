"""User errors (one line each, exit status 2 at the command line) and the one did-you-mean.

Example:
    >>> did_you_mean("trails", ["trials", "timeout"])
    "; did you mean 'trials'?"
    >>> str(UnknownNameError("unknown algo 'bees'"))
    "unknown algo 'bees'"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(ValueError):
    """Bad input whose message is one line meant for the user (never a traceback)."""


class ConfigError(UserError):
    """A bad override, preset, option or value."""


class UnknownNameError(UserError, KeyError):
    """An unknown registry name or option; the message names the nearest valid one."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def nearest(name: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice closest to ``name`` (difflib's ratio), or ``None`` when none is close."""
    near = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=cutoff)
    return near[0] if near else None


def did_you_mean(name: str, choices: Iterable[str], cutoff: float = 0.6, prefix: str = "") -> str:
    """``"; did you mean 'X'?"`` naming the nearest choice (``prefix`` + it), or ``""``."""
    near = nearest(name, choices, cutoff)
    return f"; did you mean '{prefix}{near}'?" if near else ""
