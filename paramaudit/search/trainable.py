"""One trial, as Ray Tune runs it inside a Ray worker: its data, its budget check, its training.

Ray's idle workers import this module before any trial starts (ray_runtime.WORKER_PRELOAD);
torch and the training loop are imported inside the functions, so that the driver's own import
of the search does not pay for them.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from paramaudit.config import SearchConfig, resolve_hyperparameters
from paramaudit.search.space import PREPROCESSING_KEYS

Pair = tuple[tuple[Any, Any], tuple[Any, Any]]  # ((x_train, y_train), (x_val, y_val))


def count_trainable_params(model_name: str, input_shape: tuple[int, ...], n_outputs: int,
                           hp: Mapping[str, Any]) -> int:
    """Trainable parameters of a configuration, counted on the meta device (no memory)."""
    import torch

    from paramaudit.models import build_model

    with torch.device("meta"):
        model = build_model(model_name, input_shape, n_outputs, **hp)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_models(models: list[str], space: Mapping[str, Any], input_shape: tuple[int, ...],
                 n_outputs: int, task: str) -> None:
    """Build each model the search may build once, on the meta device, before any trial starts.

    With the space's fixed values and each sampled one's first choice (else its default), so a
    user's builder that raises or returns no nn.Module fails here with one line naming it
    (ConfigError), not as a failed trial in a Ray worker.
    """
    import torch

    from paramaudit.errors import ConfigError
    from paramaudit.models import BuilderError, build_model

    given = {k: (v["choice"][0] if "choice" in v else None) if isinstance(v, Mapping) else v
             for k, v in space.items()}
    for name in models:
        hp = resolve_hyperparameters({k: v for k, v in given.items() if v is not None}, name, task)
        try:
            with torch.device("meta"):
                build_model(name, input_shape, n_outputs, **hp)
        except BuilderError as err:
            raise ConfigError(str(err)) from None


def check_devices(cfg: Any) -> None:
    """Refuse, before Ray starts, a run that asks for a GPU this machine does not show.

    train.device cuda needs one here (the final model trains in this process); a GPU share per
    trial needs one here unless the trials run on an existing cluster (runner checks its GPUs).
    """
    from paramaudit.errors import ConfigError
    from paramaudit.search.ray_runtime import cluster_address

    gpu = cfg.search.resources_per_trial.gpu
    if cfg.train.device != "cuda" and not (gpu and cluster_address(cfg.ray) is None):
        return
    import torch

    if not torch.cuda.is_available():
        what = ("train.device is cuda" if cfg.train.device == "cuda"
                else f"search.resources_per_trial.gpu is {gpu:g}")
        raise ConfigError(f"{what}, but no CUDA GPU is visible to this process "
                          "(torch.cuda.is_available() is false); use train.device auto or cpu")


def over_budget(n_params: int, n_train: int, search: SearchConfig) -> str | None:
    """Why a configuration is too large for the parameter budget, or None."""
    if search.max_params is not None and n_params > search.max_params:
        return f"{n_params:,} trainable parameters > search.max_params {search.max_params:,}"
    per = n_params / max(n_train, 1)
    if search.max_params_per_sample is not None and per > search.max_params_per_sample:
        return (f"{per:.1f} trainable parameters per training sample > "
                f"search.max_params_per_sample {search.max_params_per_sample:g}")
    return None


def skipped_scores() -> dict[str, float]:
    """Every search metric at its worst, for a trial skipped before training: Tune wants the
    search metric in every result, whichever of SEARCH_METRICS it is."""
    from paramaudit.metrics import SEARCH_METRICS

    return {m: math.inf if mode == "min" else 0.0 for m, mode in SEARCH_METRICS.items()}


def trial_data(config: Mapping[str, Any], data: Mapping[str, Any], settings: Mapping[str, Any],
               ) -> tuple[list[Pair], tuple[int, ...]]:
    """The (train, val) pairs one trial trains on: one pair, or k folds with k-fold on.

    Preprocessing is refitted on each training part when the search varies it or k-fold is on,
    so no statistic of a val row ever reaches the scaler or PCA that transforms it.
    """
    import numpy as np

    pre = {**settings["preprocess"], **{k: config[k] for k in PREPROCESSING_KEYS if k in config}}
    shape = tuple(data["input_shape"])
    folds = settings.get("cv_folds")
    refit = folds or any(k in config for k in ("scaler", "pca_components", "impute"))
    if not refit:
        return [((data["x_train"], data["y_train"]), (data["x_val"], data["y_val"]))], shape
    from paramaudit.data import fit_preprocessor

    def prepared(x_fit: Any, y_fit: Any, x_val: Any, y_val: Any) -> Pair:
        prep = fit_preprocessor(x_fit, pre["scaler"], pre.get("pca_components"), settings["seed"],
                                impute=pre.get("impute", "median"),
                                **data.get("missing_columns", {}))
        return (prep.transform(x_fit), y_fit), (prep.transform(x_val), y_val)

    if not folds:
        pairs = [prepared(data["raw_train"], data["y_train"], data["raw_val"], data["y_val"])]
    else:
        from sklearn.model_selection import KFold, StratifiedKFold

        x_all = np.concatenate([data["raw_train"], data["raw_val"]])
        y_all = np.concatenate([data["y_train"], data["y_val"]])
        # a regression's folds are shuffled, not stratified: its target has no classes
        kind = KFold if data.get("task") == "regression" else StratifiedKFold
        splitter = kind(n_splits=folds, shuffle=True, random_state=settings["seed"])
        pairs = [prepared(x_all[tr], y_all[tr], x_all[va], y_all[va])
                 for tr, va in splitter.split(x_all, y_all)]
    if pre.get("pca_components") is not None:
        shape = (int(pairs[0][0][0].shape[1]),)  # PCA flattens: the model sees its components
    return pairs, shape


class _EpochReport:
    """Reports an epoch to Tune with the trial's facts; the last epoch with its best weights."""

    def __init__(self, n_params: int, node: str) -> None:
        self.n_params, self.node = n_params, node
        # seconds spent in training and evaluation, apart from Tune's own bookkeeping
        self.last, self.train_seconds = time.perf_counter(), 0.0

    def __call__(self, epoch: int, metrics: dict[str, float], stop: tuple[str, str] | None = None,
                 trainer: Any = None) -> None:
        from ray import tune

        from paramaudit.training import save_best_state

        now = time.perf_counter()
        self.train_seconds += now - self.last
        result = {**metrics, "epoch": epoch + 1, "params_trainable": self.n_params, "skipped": 0,
                  "node_id": self.node, "train_seconds": self.train_seconds}
        if stop is not None:
            result.update(stopped_by=stop[0], stop_reason=stop[1])
        if trainer is None:
            tune.report(result)
        else:
            # the trial's last epoch: its best weights go with it (a Tune checkpoint), so that
            # the final model can be these weights instead of a retraining that would repeat it
            with tempfile.TemporaryDirectory(prefix="paramaudit-trial-") as tmp:
                save_best_state(trainer, Path(tmp))
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        self.last = time.perf_counter()


def trainable(config: dict[str, Any], data: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None) -> None:
    """One trial: build the model its hyperparameters describe, train, report every epoch."""
    import ray
    import torch
    from ray import tune

    from paramaudit.models import adopt_models, build_model

    assert data is not None and settings is not None
    adopt_models(settings.get("models", {}))
    # a thread per CPU Ray reserved for the trial (one by default): trials run side by side,
    # and oversubscribed BLAS threads thrash
    torch.set_num_threads(max(1, int(settings.get("cpus_per_trial", 1))))
    node = ray.get_runtime_context().get_node_id()
    model_name = config.get("model", settings["model"])
    task = data.get("task", "classification")
    n_outputs = data.get("n_outputs", data["n_classes"])
    hp = resolve_hyperparameters(config, model_name, task)
    pairs, shape = trial_data(config, data, settings)
    n_params = count_trainable_params(model_name, shape, n_outputs, hp)
    reason = over_budget(n_params, settings["n_train"], settings["search"])
    if reason:
        score = "train_r2" if task == "regression" else "train_accuracy"
        tune.report({**skipped_scores(), "train_loss": math.inf, score: 0.0,
                     "params_trainable": n_params, "skipped": 1, "skip_reason": reason,
                     "epoch": 0, "node_id": node})
        return
    augment = config.get("augment", settings["preprocess"].get("augment", False))
    report = _EpochReport(n_params, node)
    torch.manual_seed(settings["seed"])
    _train(lambda: build_model(model_name, shape, n_outputs, **hp), hp, pairs, settings,
           report, augment_shape=shape if augment and len(shape) == 3 else None, task=task)


def _train(build: Callable[[], Any], hp: dict[str, Any], pairs: list[Pair],
           settings: Mapping[str, Any], report: _EpochReport,
           augment_shape: tuple[int, ...] | None, task: str = "classification") -> None:
    """Train one model (one pair) or one per fold, reporting every epoch."""
    from paramaudit.training import EpochTrainer, StopRule, fit_folds, resolve_device, train_epochs

    # Ray sets CUDA_VISIBLE_DEVICES to the trial's share: auto finds a GPU only when it has one
    device = resolve_device(settings.get("device", "cpu"))
    if len(pairs) == 1:
        (train, val), = pairs
        # exactly what final_model.train_best does for the final model (same loop and StopRule)
        trainer = EpochTrainer(build(), train, val, hp, seed=settings["seed"],
                               augment_shape=augment_shape, restore_best=True, task=task,
                               device=device)
        rule = StopRule(settings["max_epochs"], settings["patience"], settings["divergence"])
        for epoch, metrics, stop in train_epochs(trainer, rule):
            report(epoch, metrics, stop, trainer if stop is not None else None)
    else:
        models = [build() for _ in pairs]
        fit_folds(models, pairs, hp, max_epochs=settings["max_epochs"], seed=settings["seed"],
                  on_epoch=report, augment_shape=augment_shape, task=task, device=device)
