"""What the search varies and how: the space as Ray Tune domains, the algorithm, the scheduler.

Also how many trials that makes (planned_trials), how many run at once (trial_slots) and what
Ray reserves for each (trial_resources).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from paramaudit import metrics
from paramaudit.config import PipelineConfig, SearchConfig

# the preprocessing settings a trial's config may carry (searched, or fixed in settings)
PREPROCESSING_KEYS = ("scaler", "pca_components", "augment", "impute")


def searched_space(cfg: PipelineConfig) -> dict[str, Any]:
    """The hyperparameter space plus what else the search varies: the model and preprocessing."""
    space = dict(cfg.search.space)
    if isinstance(cfg.model, dict):
        space["model"] = cfg.model
    space.update({k: {"choice": v} for k, v in cfg.preprocess.searched().items()})
    return space


def extra_space(cfg: PipelineConfig) -> dict[str, Any]:
    """What the search varies beyond ``search.space``: the model and preprocessing choices."""
    return {k: v for k, v in searched_space(cfg).items() if k not in cfg.search.space}


def param_space(search: SearchConfig, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Translate the config's space into Ray Tune domains (grid: grid_search over choices)."""
    from ray import tune

    space: dict[str, Any] = {}
    for name, value in {**search.space, **(extra or {})}.items():
        if not isinstance(value, dict):
            space[name] = value
            continue
        (kind, args), = value.items()
        if search.algorithm == "grid":
            space[name] = tune.grid_search(list(args))
        elif kind == "choice":
            space[name] = tune.choice(list(args))
        elif kind == "uniform":
            space[name] = tune.uniform(*args)
        elif kind == "loguniform":
            space[name] = tune.loguniform(*args)
        elif kind == "randint":
            space[name] = tune.randint(*args)
    return space


def planned_trials(cfg: PipelineConfig) -> int:
    """How many trials the search runs: ``search.trials``, times the grid's size for grid."""
    n_trials = cfg.search.trials
    if cfg.search.algorithm == "grid":
        for value in searched_space(cfg).values():
            if isinstance(value, dict):
                n_trials *= max(1, len(next(iter(value.values()))))
    return n_trials


def trial_slots(cfg: PipelineConfig) -> int:
    """The most trials the search can run at once, whatever the number of CPUs."""
    n_trials = planned_trials(cfg)
    return min(max_concurrent(cfg.search) or n_trials, n_trials)


def ray_cpus(cfg: PipelineConfig) -> int:
    """The CPUs a local Ray needs for the trials that run at once (each takes its share)."""
    return max(1, math.ceil(trial_slots(cfg) * cfg.search.resources_per_trial.cpu))


def trial_resources(cfg: PipelineConfig, cluster_gpus: float) -> dict[str, float]:
    """What Ray reserves per trial, given the GPUs the cluster has.

    An unset gpu share splits the cluster's GPUs among the trials that run at once (at most one
    each) unless train.device is cpu; a share larger than the cluster has is refused here, where
    Tune would wait for it forever.
    """
    from paramaudit.errors import ConfigError

    wanted = cfg.search.resources_per_trial
    gpu = wanted.gpu
    if gpu is None:
        gpu = min(1.0, cluster_gpus / trial_slots(cfg)) if cfg.train.device != "cpu" else 0.0
    elif gpu > cluster_gpus:
        raise ConfigError(f"search.resources_per_trial.gpu is {gpu:g}, but the Ray cluster has "
                          f"{cluster_gpus:g} GPUs; lower it, or set it to 0 to train on CPUs")
    return {"cpu": wanted.cpu, **({"gpu": gpu} if gpu else {})}


def max_concurrent(search: SearchConfig) -> int | None:
    """Trials the search algorithm runs at once: the setting, else 2 for bayes (TPE learns from
    finished trials, so it must not propose them all at once), else no limit (None)."""
    if search.max_concurrent:
        return search.max_concurrent
    return 2 if search.algorithm == "bayes" else None


def metric_mode(metric: str) -> str:
    """Whether the search metric is minimised (a loss) or maximised (an accuracy, an AUC, ...)."""
    return metrics.metric_mode(metric)  # the metrics' own table, SEARCH_METRICS


def divergence_rule(cfg: PipelineConfig) -> tuple[float, int]:
    """The divergence stop of trials and the final model (training.StopRule), from the audit's
    own divergence thresholds: the search stops what the verdict would call diverging."""
    return cfg.overfit.divergence_tolerance, cfg.overfit.divergence_epochs


def search_algorithm(search: SearchConfig, seed: int) -> Any:
    """Ray Tune's searcher: TPE (Optuna) for bayes, else random or grid draws, seeded."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    if search.algorithm == "bayes":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        alg = OptunaSearch(metric=search.metric, mode=metric_mode(search.metric),
                           sampler=optuna.samplers.TPESampler(seed=seed))
        return ConcurrencyLimiter(alg, max_concurrent=max_concurrent(search))
    return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent(search) or 0)


def scheduler(search: SearchConfig, max_epochs: int) -> Any:
    """ASHA over training iterations (epochs), or None with ``search.scheduler: none``."""
    if search.scheduler == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration", max_t=max_epochs,
        grace_period=min(search.grace_period, max_epochs),
        reduction_factor=search.reduction_factor,
    )
