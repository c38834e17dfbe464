"""Studies: storage, create/open/continue, stale trials, and one table of attribute keys.

The Optuna study is the single source of truth: the run settings, genomes, costs, metrics
and artifact references all live in its storage, so continuing a search is opening the
study again. ``from searchkit import study as st`` gives the whole API.
"""

from searchkit.study.configs import check_name, open_study, resolve_config, stored_base, stored_config
from searchkit.study.keys import *  # noqa: F401,F403 - the attribute keys
from searchkit.study.recovery import DriverTag, Heartbeat, fail_trial, recover_stale_trials, requeue_trial
from searchkit.study.results import (counts_by_state, evaluated_trials, label, objectives_of, pareto_trials,
                                     ranked_trials)
from searchkit.study.storage import (DEFAULT_STORAGE, StudyError, artifact_dir, load_existing, open_storage,
                                     redact, study_names)
from searchkit.core.errors import ConfigError
