"""The pipeline's steps as plain functions: the Prefect tasks and flow are thin wrappers over these.

Tests call these directly; nothing here imports Prefect. The run's identity (name, parent run,
work folder, resume) is in paramaudit.runs, publishing in paramaudit.publish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from paramaudit import audit as audit_lib
from paramaudit import capacity
from paramaudit.config import PipelineConfig
from paramaudit.data import Splits, load_and_split
from paramaudit.errors import OverfitGateError
from paramaudit.final_model import FinalModel, final_from_state, refit, train_best
from paramaudit.overfit import Verdict, assess
from paramaudit.prefetch import prefetch_for_later_steps
from paramaudit.progress import say
from paramaudit.runs import search_dir
from paramaudit.search import (
    SearchOutcome,
    divergence_rule,
    metric_mode,
    ray_cpus,
    ray_session,
    run_search,
)
from paramaudit.search.trainable import check_devices, check_models
from paramaudit.tracking import Tracker
from paramaudit.training import STATE_FILE

STEPS = 6  # preprocess, search, train, audit, publish, gate: the [n/6] of the progress lines


def preprocess(cfg: PipelineConfig) -> Splits:
    """Step 1: load, validate, split (stratified for classification), scale on train only;
    says which task the run is (``task: auto`` resolved)."""
    splits = load_and_split(cfg)
    sizes = splits.sizes()
    prep = splits.preprocessor.describe() if splits.preprocessor is not None else {}
    how = ", ".join(f"{k} {v}" for k, v in prep.items() if v is not None and k != "n_out") or "-"
    task = getattr(splits, "task", "classification")
    chose = " (task auto)" if cfg.task == "auto" else ""
    target = (f"regression{chose}, target mean {splits.target_scaler.mean:.4g} std "
              f"{splits.target_scaler.std:.4g} on train" if task == "regression" and
              splits.target_scaler is not None else f"{splits.n_classes} classes"
              + (", classification (task auto)" if chose else ""))
    say(f"[1/{STEPS}] preprocess: {splits.name}: {sum(sizes.values())} rows, {splits.n_features} "
        f"features, {target} -> train {sizes['train']} / val {sizes['val']} / "
        f"test {sizes['test']} (fitted on train: {how})")
    return splits


def search(splits: Splits, cfg: PipelineConfig, tracker: Tracker, parent_id: str,
           workdir: Path, resume: bool = False) -> SearchOutcome:
    """Step 2: Ray Tune over the space; each trial a nested MLflow run."""
    say(f"[2/{STEPS}] search: {cfg.search.algorithm} search, {cfg.search.trials} trials, "
        f"scheduler {cfg.search.scheduler}, up to {cfg.train.max_epochs} epochs each")
    check_models(cfg.model_choices(), cfg.search.space, tuple(splits.input_shape),
                 splits.n_outputs, getattr(splits, "task", "classification"))
    check_devices(cfg)
    t0 = time.monotonic()
    with ray_session(cfg.ray, ray_cpus(cfg)) as info:
        ray_seconds = time.monotonic() - t0
        up = "already up" if info.get("reused") else f"ready in {ray_seconds:.1f} s"
        say(f"  ray: {info['address']} ({info.get('cpus', '?')} CPUs), {up}")
        prefetch_for_later_steps()
        outcome = run_search(splits, cfg, tracker, parent_id, search_dir(workdir), say=say,
                             resume=resume)
    outcome.ray_start_seconds = ray_seconds
    say(f"  best trial: {outcome.metric} {outcome.best_score:.4f} with "
        + ", ".join(f"{k}={v}" for k, v in outcome.best_hyperparameters.items()
                    if k in cfg.search.sampled()))
    return outcome


def reprocess(splits: Splits, pre: dict[str, Any], seed: int) -> Splits:
    """The splits under the chosen trial's preprocessing, refitted on the train split alone."""
    from paramaudit.data import refit_preprocessing

    scaler, pca = pre.get("scaler", "standard"), pre.get("pca_components")
    impute, prep = pre.get("impute", "median"), splits.preprocessor
    if (scaler == splits.scaler.kind and pca is None and prep is not None
            and prep.components is None and prep.impute == impute):
        return splits
    return refit_preprocessing(splits, scaler, pca, seed, impute=impute)


def reusable_weights(outcome: SearchOutcome, cfg: PipelineConfig) -> str | None:
    """The best trial's saved weights when they are what retraining it would give, else None.

    A trial trains on the same split, preprocessing (refitted on the same train rows), seed and
    StopRule as the final model, and saves its best weights at its last epoch: retraining it would
    repeat it. Not so for k-fold trials (trained on folds), trials Tune stopped (ASHA: no saved
    weights) or a checkpoint that is gone (a resumed run, another machine's disk).
    """
    best = outcome.best_trial()
    if cfg.search.cv_folds or not best.checkpoint:
        return None
    return best.checkpoint if (Path(best.checkpoint) / STATE_FILE).is_file() else None


def train_final(splits: Splits, outcome: SearchOutcome, cfg: PipelineConfig) -> FinalModel:
    """Step 3: the chosen configuration's model (its trial's weights, or retrained); one look at
    the test split."""
    hp = dict(outcome.best_hyperparameters)
    model_name = hp.pop("model", cfg.model)
    pre = {**cfg.preprocess.fixed(),
           **{k: hp.pop(k) for k in ("scaler", "pca_components", "augment", "impute") if k in hp}}
    splits = reprocess(splits, pre, cfg.seed)
    saved = reusable_weights(outcome, cfg)
    if saved is not None:
        best = outcome.best_trial()
        final = final_from_state(splits, model_name, hp, saved, best.to_history(),
                                 source=f"trial {best.number}")
    else:
        final = train_best(splits, model_name, hp, max_epochs=cfg.train.max_epochs,
                           patience=cfg.train.patience, seed=cfg.seed,
                           augment=bool(pre.get("augment", False)),
                           divergence=divergence_rule(cfg), device=cfg.train.device)
    if cfg.train.refit:
        final = refit(splits, model_name, final, epochs=final.history.best_epoch + 1,
                      seed=cfg.seed, augment=bool(pre.get("augment", False)),
                      device=cfg.train.device)
    final.example = splits.x_test[:5]
    final.preprocessor = splits.preprocessor
    final.preprocessing = splits.preprocessor.describe() if splits.preprocessor else {}
    final.hyperparameters.update({"model": model_name} if isinstance(cfg.model, dict) else {})
    final.hyperparameters.update({k: v for k, v in outcome.best_hyperparameters.items()
                                  if k in ("scaler", "pca_components", "augment", "impute")})
    chosen = final.selection or final
    h = chosen.history
    how = ("retrained" if chosen.source == "retrained"
           else f"{chosen.source}'s own weights, as retraining it would give")
    score = "R²" if final.task == "regression" else "accuracy"
    line = (f"[3/{STEPS}] train: {how}: {len(h.val_loss)} epochs (best {h.best_epoch + 1}"
            f"{f', {h.stopped_by}' if h.stopped_early else ''}): test {score} "
            f"{chosen.test_score:.4f}")
    if final.selection is not None:
        line += f"; {final.source}: test {score} {final.test_score:.4f}"
    tm, base = final.test_metrics, final.baseline
    if final.task == "regression":
        versus = (f", test RMSE {tm['rmse']:.4g}, MAE {tm['mae']:.4g} (always the training mean "
                  f"{base['predicts']:.4g}: R² {base['r2']:.4f}, RMSE {base['rmse']:.4g})"
                  if tm and base else "")
    else:
        versus = (f", test balanced accuracy {tm['balanced_accuracy']:.4f} (always "
                  f"{base['predicts']!r}: {base['balanced_accuracy']:.4f})" if tm and base else "")
    say(line + f", test loss {final.test_loss:.4f}" + versus)
    return final


@dataclass
class AuditResult:
    """The final model's parameter audit and overfitting verdict."""

    report: audit_lib.AuditReport
    verdict: Verdict
    layer_rows: list[dict[str, Any]]
    capacity_points: list[capacity.TrialPoint] = field(default_factory=list)
    importance: pd.DataFrame | None = None
    importance_note: str = ""
    pca: dict[str, Any] | None = None


def pca_effect(rep: audit_lib.AuditReport, preprocessing: dict[str, Any]) -> dict[str, Any] | None:
    """How PCA changed the first layer's parameter count: fewer inputs, fewer weights."""
    n_in, n_out = preprocessing.get("n_in"), preprocessing.get("n_out")
    if not preprocessing.get("pca_components") or not n_in or n_in == n_out:
        return None
    first = next((r for r in rep.layers if "weight" in r.shapes and len(r.shapes["weight"]) == 2), None)
    if first is None or first.shapes["weight"][1] != n_out:
        return None
    width = first.shapes["weight"][0]
    without = first.params + width * (n_in - n_out)
    return {"layer": first.name, "inputs_before": n_in, "inputs_after": n_out,
            "params_with_pca": first.params, "params_without_pca": without,
            "message": (f"PCA keeps {n_out} of {n_in} inputs: the first layer ({first.name}) learns "
                        f"{first.params:,} parameters instead of {without:,}")}


def scored_trials(outcome: SearchOutcome, names: Any) -> pd.DataFrame:
    """One row per finished trial: the hyperparameters ``names`` and its best ``val_score``."""
    mode = metric_mode(outcome.metric)
    return pd.DataFrame([{**{k: t.hyperparameters.get(k) for k in names},
                          "val_score": t.best(outcome.metric, mode)}
                         for t in outcome.records if t.status == "TERMINATED"])


def rank_importance(outcome: SearchOutcome, cfg: PipelineConfig,
                    ) -> tuple[pd.DataFrame | None, str]:
    """Which searched hyperparameters mattered to the search's score, or why that is unknown."""
    from paramaudit import importance
    from paramaudit.search import searched_space

    names = [k for k, v in searched_space(cfg).items() if isinstance(v, dict)]
    if not names:
        return None, "no hyperparameter was searched"
    try:
        ranking = importance.rank_hyperparameters(
            scored_trials(outcome, names), score="val_score",
            higher_is_better=metric_mode(outcome.metric) == "max", seed=cfg.seed)
    except ValueError as err:  # too few trials or nothing varied: say so in the report
        return None, str(err)
    return ranking, ""


def audit(final: FinalModel, splits: Splits, outcome: SearchOutcome,
          cfg: PipelineConfig) -> AuditResult:
    """Step 4: count learned parameters per layer; judge overfitting with stated rules."""
    optimizer = str(final.hyperparameters.get("optimizer", "adam"))
    rep = audit_lib.audit_model(final.model, optimizer=optimizer)
    rep.measured_training_memory = final.train_memory or {
        "peak_bytes": None, "measure": f"not measured: the weights came from {final.source}, "
                                       "trained in a Ray worker"}
    n_train = len(splits.y_train)
    verdict = assess(
        final.history.curves(), cfg.overfit, params_trainable=rep.trainable_params,
        n_train=n_train, test_accuracy=(final.selection or final).test_score,
        n_trials=len(outcome.records),
        restored_best=True, fold_scores=outcome.best_trial().fold_val_scores or None,
        test_metrics=final.test_metrics, baseline=final.baseline,
    )
    rows = [
        {"layer": r.name, "type": r.type, "params": r.params,
         "trainable": r.trainable_params, "share_%": round(100 * r.share, 2),
         "shapes": ", ".join(f"{k}{tuple(v)}" for k, v in r.shapes.items()),
         "tied_to": ", ".join(r.tied_to.values())}
        for r in rep.layers
    ]
    points = [
        capacity.TrialPoint(
            trial_id=str(t.number), params_trainable=int(t.params_trainable or 0),
            train_loss=t.final("train_loss"), val_loss=t.final("val_loss"),
            # accuracies only where there are some: a regression's trials have R² instead
            train_accuracy=t.final("train_accuracy") if t.task == "classification" else None,
            val_accuracy=t.final("val_accuracy") if t.task == "classification" else None,
            hyperparameters=t.hyperparameters)
        for t in outcome.records if t.params_trainable
    ]
    pca_note = pca_effect(rep, final.preprocessing)
    if pca_note:
        say(f"  {pca_note['message']}")
    ranking, note = rank_importance(outcome, cfg)
    say(f"[4/{STEPS}] audit: {rep.total_params:,} learned parameters ({rep.trainable_params:,} "
        f"trainable) in {len(rep.layers)} layers, {rep.trainable_params / n_train:.1f} per "
        f"training sample; overfitting verdict: {verdict.verdict}")
    for reason in verdict.to_dict()["reasons"]:
        say(f"  - {reason}")
    if ranking is not None:
        top = ranking.iloc[0]
        say(f"  the hyperparameter that mattered most: {top['hyperparameter']} "
            f"(importance {top['importance']:.2f}, {top['method']})")
    return AuditResult(rep, verdict, rows, points, ranking, note, pca_note)


def gate(tracker: Tracker, parent_id: str, cfg: PipelineConfig, result: AuditResult,
         summary: dict[str, Any]) -> None:
    """Step 6: fail the run (exit 3) on an overfit verdict when overfit.fail_on_overfit is set."""
    verdict = result.verdict.verdict
    if not cfg.overfit.fail_on_overfit:
        say(f"[{STEPS}/{STEPS}] gate: off (overfit.fail_on_overfit: false); verdict {verdict}")
        return
    if verdict == "overfit":
        say(f"[{STEPS}/{STEPS}] gate: verdict overfit: the run fails")
        raise OverfitGateError(
            f"overfitting gate: verdict overfit ({result.verdict.tag_text()[:300]})", summary)
    say(f"[{STEPS}/{STEPS}] gate: verdict {verdict}: passed")
