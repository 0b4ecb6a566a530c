"""The hyperparameter search: Ray Tune over the config's space, every trial mirrored into MLflow.

Its modules, in the order a search uses them:
- ray_runtime: Ray's lifecycle (ray_session: a local loopback Ray, or a cluster), its
  environment and the warm workers a local Ray pre-starts;
- ray_internals: every patch of Ray's or Ray Tune's private API, each behind a version guard;
- space: what the search varies and how (Tune domains, algorithm, scheduler, trial counts);
- trainable: one trial, run inside a Ray worker;
- trial_log: the Tune callback that writes each trial to MLflow (it imports Ray Tune, so only
  a running search imports it);
- records: what the driver knows of each trial, and the trials table;
- runner: run_search, also for --resume.
Importing this package imports no Ray: Ray is imported where it is used.
"""

from paramaudit.search.ray_runtime import ray_environment, ray_home, ray_session
from paramaudit.search.records import TrialRecord, trial_row, trial_table
from paramaudit.search.runner import SearchFailedError, SearchOutcome, run_search
from paramaudit.search.space import (
    divergence_rule,
    metric_mode,
    planned_trials,
    ray_cpus,
    searched_space,
    trial_slots,
)

__all__ = [
    "SearchFailedError",
    "SearchOutcome",
    "TrialRecord",
    "divergence_rule",
    "metric_mode",
    "planned_trials",
    "ray_cpus",
    "ray_environment",
    "ray_home",
    "ray_session",
    "run_search",
    "searched_space",
    "trial_slots",
    "trial_row",
    "trial_table",
]
