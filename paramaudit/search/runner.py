"""Run the search, or resume an interrupted one, and choose its best trial.

run_search needs a Ray session (ray_runtime.ray_session) around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paramaudit.config import PipelineConfig, resolve_hyperparameters
from paramaudit.runs import TUNE_EXPERIMENT
from paramaudit.search.ray_internals import (
    plain_trial_actors,
    quiet_tune,
    started_actors_kept,
    use_live_callbacks,
)
from paramaudit.search.ray_runtime import local_ray_started, wait_for_warm_workers
from paramaudit.search.records import TrialRecord, records_from_mlflow
from paramaudit.search.space import (
    PREPROCESSING_KEYS,
    divergence_rule,
    extra_space,
    max_concurrent,
    metric_mode,
    param_space,
    planned_trials,
    scheduler,
    search_algorithm,
    trial_resources,
    trial_slots,
)
from paramaudit.search.trainable import trainable
from paramaudit.tracking import redact_text

if TYPE_CHECKING:  # imported where a search runs: it imports Ray Tune
    from paramaudit.search.trial_log import TrialLogger


class SearchFailedError(RuntimeError):
    """No trial of the search finished."""


@dataclass
class SearchOutcome:
    """The search's result: the chosen hyperparameters and every trial's record."""

    best_hyperparameters: dict[str, Any]
    best_trial_id: str
    best_score: float
    metric: str
    records: list[TrialRecord]  # every trial's record, in trial order
    seconds: float
    ray_start_seconds: float = 0.0
    worker_warmup_seconds: float = 0.0  # of ``seconds``: waiting for Ray's workers' imports

    def best_trial(self) -> TrialRecord:
        """The chosen trial's record."""
        return next(t for t in self.records if t.trial_id == self.best_trial_id)


@dataclass
class _Search:
    """What one search's steps share: the config, the trainable, the space, the logger."""

    cfg: PipelineConfig
    fn: Any  # the trainable with its data and resources (tune.with_resources)
    space: dict[str, Any]
    logger: TrialLogger
    storage: Path
    say: Callable[[str], None]


def run_search(splits: Any, cfg: PipelineConfig, tracker: Any, parent_id: str,
               storage: Path, say: Callable[[str], None] = print,
               resume: bool = False) -> SearchOutcome:
    """Run (or, with ``resume``, continue) the Ray Tune search; trials nest under ``parent_id``."""
    from ray import tune

    from paramaudit.search.trial_log import TrialLogger

    data, settings = _trial_inputs(splits, cfg)
    existing = records_from_mlflow(tracker, parent_id) if resume else {}
    logger = TrialLogger(tracker, parent_id, cfg, settings["n_train"], say, existing)
    # tune.with_parameters puts the arrays in the object store once, not per trial
    import ray

    resources = trial_resources(cfg, ray.cluster_resources().get("GPU", 0.0))
    fn = tune.with_resources(tune.with_parameters(trainable, data=data, settings=settings),
                             resources)
    search = _Search(cfg, fn, param_space(cfg.search, extra_space(cfg)), logger, storage, say)
    started = time.monotonic()
    tuner = _tuner(search, resume, existing)
    quiet_tune()
    warmup = wait_for_warm_workers(trial_slots(cfg))
    _fit(search, tuner, resume)
    records = sorted(logger.records.values(), key=lambda r: r.number)
    return _outcome(records, cfg, settings["model"], started, warmup)


def _trial_inputs(splits: Any, cfg: PipelineConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every trial gets: the data (arrays, shapes) and the settings the space leaves fixed."""
    from paramaudit.search.space import searched_space

    # a trial trains on the preprocessed rows, or refits preprocessing on the raw ones
    # (trainable.trial_data): only those go to the object store, not both (big tables)
    refits = bool(cfg.search.cv_folds) or any(
        k in searched_space(cfg) for k in ("scaler", "pca_components", "impute"))
    data = {
        "x_train": None if refits else splits.x_train, "y_train": splits.y_train,
        "x_val": None if refits else splits.x_val, "y_val": splits.y_val,
        "raw_train": splits.raw_train if refits else None,
        "raw_val": splits.raw_val if refits else None,
        # the same imputed and indicated columns in every trial and fold: the same input width
        "missing_columns": splits.missing_columns(),
        "input_shape": tuple(splits.input_shape), "n_classes": splits.n_classes,
        "task": getattr(splits, "task", "classification"),
        "n_outputs": getattr(splits, "n_outputs", splits.n_classes),
    }
    from paramaudit.models import portable_models

    search = cfg.search
    settings = {"model": cfg.model if isinstance(cfg.model, str) else cfg.model["choice"][0],
                # a user's builders travel with the settings: a worker need not import them
                "models": portable_models(cfg.model_choices()),
                "seed": cfg.seed, "max_epochs": cfg.train.max_epochs,
                "device": cfg.train.device, "cpus_per_trial": search.resources_per_trial.cpu,
                "n_train": len(splits.y_train),
                "patience": cfg.train.patience, "divergence": divergence_rule(cfg),
                "search": search, "cv_folds": search.cv_folds,
                "preprocess": {"scaler": "standard", "pca_components": None, "augment": False,
                               "impute": "median",
                               **cfg.preprocess.fixed()}}
    return data, settings


def _tuner(search: _Search, resume: bool, existing: dict[str, TrialRecord]) -> Any:
    """A new Tuner, or with ``resume`` the saved search's, restored with our live logger."""
    from ray import tune

    path = search.storage / TUNE_EXPERIMENT
    if resume and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=search.fn, resume_unfinished=True,
                                   resume_errored=False, param_space=search.space)
        # the restored run config carries unpickled copies of our callbacks; use live ones
        use_live_callbacks(tuner, [search.logger])
        done = sum(r.status in ("TERMINATED", "SKIPPED", "ERROR") for r in existing.values())
        search.say(f"  resuming the search: {done} trial(s) already done")
        return tuner
    cfg = search.cfg
    return tune.Tuner(
        search.fn, param_space=search.space,
        run_config=_run_config(TUNE_EXPERIMENT, search.storage, search.logger),
        tune_config=_tune_config(cfg, cfg.search.trials, search_algorithm(cfg.search, cfg.seed)))


def _fit(search: _Search, tuner: Any, resume: bool) -> None:
    """Run the trials; a resumed search then runs those Tune's saved state lost (_top_up)."""
    logger = search.logger
    try:
        with _ending_open_runs(logger):
            _fit_tuner(tuner)
            if resume:
                _top_up(search)
            logger.flush()
        # Tune stops its own trials on Ctrl-C and returns: that is still an interruption
        if any(r.status == "RUNNING" for r in logger.records.values()):
            logger.close_open("KILLED", "interrupted")
            raise KeyboardInterrupt("the search was interrupted")
    finally:
        logger.close()


def _fit_tuner(tuner: Any) -> None:
    """tuner.fit, its trial actors on our warm workers where the Ray is ours."""
    with plain_trial_actors(local_ray_started()), started_actors_kept():
        tuner.fit()


def _outcome(records: list[TrialRecord], cfg: PipelineConfig, default_model: str,
             started: float, warmup: float) -> SearchOutcome:
    """The best finished trial's hyperparameters, as the final model takes them."""
    metric = cfg.search.metric
    mode = metric_mode(metric)
    usable = [r for r in records if r.status == "TERMINATED" and r.history["val_loss"]]
    if not usable:
        errors = "; ".join(sorted({r.error or r.skip_reason or r.status for r in records}))[:500]
        raise SearchFailedError(f"no trial of {len(records)} finished: {errors}")
    sign = 1 if mode == "min" else -1
    best = min(usable, key=lambda r: (sign * r.best(metric, mode), r.number))
    chosen_model = best.hyperparameters.get("model", default_model)
    best_hp = resolve_hyperparameters(best.hyperparameters, chosen_model, best.task)
    if isinstance(cfg.model, dict):
        best_hp["model"] = chosen_model
    best_hp.update({k: best.hyperparameters[k] for k in PREPROCESSING_KEYS
                    if k in best.hyperparameters})
    return SearchOutcome(
        best_hyperparameters=best_hp, best_trial_id=best.trial_id,
        best_score=best.best(metric, mode), metric=metric, records=records,
        seconds=time.monotonic() - started, worker_warmup_seconds=warmup,
    )


@contextmanager
def _ending_open_runs(logger: TrialLogger) -> Iterator[None]:
    """On any error or interruption inside: end the trials' MLflow runs still open, re-raise."""
    try:
        yield
    except Exception as err:
        logger.close_open("FAILED",
                          redact_text(f"search failed: {type(err).__name__}: {err}")[:1000])
        raise
    except BaseException:
        # not an Exception: Ctrl-C, SIGTERM (as the CLI or Prefect raises it), an exit
        logger.close_open("KILLED", "interrupted")
        raise


def _tune_config(cfg: PipelineConfig, num_samples: int, search_alg: Any) -> Any:
    """Tune's search settings: the metric, the scheduler, trial actors reused."""
    from ray import tune

    metric = cfg.search.metric
    # max_concurrent lives in the search algorithm (search_algorithm): Tune ignores
    # max_concurrent_trials beside a searcher and says so
    return tune.TuneConfig(metric=metric, mode=metric_mode(metric), num_samples=num_samples,
                           search_alg=search_alg, reuse_actors=True,
                           scheduler=scheduler(cfg.search, cfg.train.max_epochs))


def _run_config(name: str, storage: Path, logger: TrialLogger) -> Any:
    """Tune's run settings: state under ``storage/name``, our MLflow logger, no retries."""
    from ray import tune

    return tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=[logger],
                          failure_config=tune.FailureConfig(max_failures=0))


def _top_up(search: _Search) -> None:
    """After a resumed search: run the trials Ray Tune's saved state lost, as new trials.

    Tune copies its search state to the storage path in the background while it keeps saving
    it; a process killed just after a copy that raced a save can leave the searcher's part
    missing, and the restored search then ends early. MLflow knows what finished: the trials
    still missing run now (drawn anew from the same space), in the same parent run. A trial
    that was running at the crash and that Tune no longer knows is ended KILLED.
    """
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    cfg, logger = search.cfg, search.logger
    if any(r.status == "RUNNING" and r.trial_id in logger.started
           for r in logger.records.values()):
        return  # interrupted again: the caller reports it
    # what is still RUNNING now was running at the crash, and Tune did not bring it back
    logger.close_open("KILLED", "running at a crash; Ray Tune's saved state lost it")
    done = sum(r.status != "KILLED" for r in logger.records.values())
    missing = planned_trials(cfg) - done
    if missing <= 0:
        return
    search.say(f"  Ray Tune's saved state lost {missing} trial(s) of the search; running them now")
    space = search.space
    if cfg.search.algorithm == "grid":  # which cells are left is Tune's lost state: draw them
        space = param_space(cfg.search.model_copy(update={"algorithm": "random"}), extra_space(cfg))
    # a random draw whatever the algorithm: the searcher's own state is what Tune lost
    draws = BasicVariantGenerator(random_state=cfg.seed + done,
                                  max_concurrent=max_concurrent(cfg.search) or 0)
    _fit_tuner(tune.Tuner(search.fn, param_space=space,
                          tune_config=_tune_config(cfg, missing, draws),
                          run_config=_run_config(f"search-topup-{done}", search.storage, logger)))
