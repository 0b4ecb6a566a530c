"""The pipeline's steps as plain functions: the Prefect tasks and flow are thin wrappers over these.

Tests call these directly; nothing here imports Prefect.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from paramaudit import audit as audit_lib
from paramaudit import capacity, report
from paramaudit.config import PipelineConfig
from paramaudit.data import Splits, prepare
from paramaudit.errors import OverfitGateError
from paramaudit.overfit import Verdict, assess
from paramaudit.runreport import (
    capacity_markdown,
    importance_markdown,
    markdown_summary,
    plot_learning_curves,
)
from paramaudit.tracking import Tracker, is_local_store, redact, scratch_dir, without_userinfo
from paramaudit.training import STATE_FILE, FinalModel, final_from_state, train_best
from paramaudit.tuning import (
    SearchOutcome,
    divergence_rule,
    metric_mode,
    ray_session,
    run_search,
    trial_slots,
    trial_table,
)

WORK_ROOT = Path(".paramaudit")


def say(msg: str) -> None:
    """Progress for the person at the terminal."""
    print(msg, flush=True)


class Timer:
    """Wall seconds per named step, for the run summary and the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - start, 3)


def data_label(cfg: PipelineConfig) -> str:
    """The data set's short name: a built-in name or the file's stem."""
    return cfg.data.dataset or Path(str(cfg.data.path)).stem


def run_name(cfg: PipelineConfig) -> str:
    """A run name that says what ran: data, search, trials and date."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    smoke = " smoke" if cfg.smoke else ""
    return (f"{data_label(cfg)} {cfg.model} {cfg.search.algorithm}-search "
            f"{cfg.search.trials}t{smoke} {stamp}")


def open_tracker(cfg: PipelineConfig) -> Tracker:
    """The MLflow tracker for this run's experiment."""
    return Tracker(cfg.tracking, cfg.experiment)


def run_workdir(run_id: str) -> Path:
    """The run's own folder under the working directory (Ray Tune's state lives here)."""
    return (WORK_ROOT / "runs" / run_id).resolve()


@contextlib.contextmanager
def parent_run(tracker: Tracker, cfg: PipelineConfig, flow_run_id: str | None,
               resume_run_id: str | None = None,
               flow_run_url: str | None = None) -> Iterator[tuple[str, Path]]:
    """The MLflow parent run (ended FINISHED, FAILED or KILLED) and the run's work folder."""
    tags = {"paramaudit.kind": "pipeline", "dataset": data_label(cfg),
            "search_algorithm": cfg.search.algorithm, "smoke": str(cfg.smoke).lower()}
    if flow_run_id:
        tags["prefect_flow_run_id"] = flow_run_id
    if flow_run_url:
        tags["prefect_flow_run_url"] = flow_run_url
    if resume_run_id:
        tags["resumed"] = "true"
    with tracker.parent_run(run_name(cfg), tags, run_id=resume_run_id) as parent_id:
        verb = "resuming" if resume_run_id else "run"
        say(f"MLflow: experiment {cfg.experiment!r}, {verb} {parent_id} at {redact(tracker.uri)}")
        workdir = run_workdir(parent_id)
        workdir.mkdir(parents=True, exist_ok=True)
        if not resume_run_id:
            tracker.log_params(parent_id, settings_params(cfg, tracker.uri))
            # the exact config, so that --resume continues with what this run started with
            tracker.log_dict(parent_id, cfg.model_dump(mode="json"), "config.json")
        yield parent_id, workdir


def load_resume_config(tracker_uri: str, run_id: str) -> tuple[PipelineConfig, str]:
    """The config an interrupted run started with, and its experiment; a one-line error if none."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from paramaudit.config import build_config
    from paramaudit.errors import UserInputError

    client = MlflowClient(tracking_uri=tracker_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserInputError(f"--resume: no MLflow run {run_id!r} at {redact(tracker_uri)}") from None
    if run.data.tags.get("paramaudit.kind") != "pipeline":
        raise UserInputError(f"--resume: run {run_id} is not a paramaudit pipeline run")
    if run.info.status == "FINISHED":
        raise UserInputError(f"--resume: run {run_id} already finished; nothing to resume")
    if not (run_workdir(run_id) / "tune" / "search").is_dir():
        raise UserInputError(f"--resume: no search state for run {run_id} under "
                             f"{run_workdir(run_id)} (run from the folder the run started in)")
    with scratch_dir() as tmp:
        path = client.download_artifacts(run_id, "config.json", tmp)
        raw = json.loads(Path(path).read_text())
    return build_config(raw), run.info.experiment_id


def settings_params(cfg: PipelineConfig, uri: str) -> dict[str, Any]:
    """Run settings as MLflow params (prefixed, so they never pass for hyperparameters)."""
    return {
        "setting.data": data_label(cfg),
        "setting.model": cfg.model,
        "setting.search_algorithm": cfg.search.algorithm,
        "setting.trials": cfg.search.trials,
        "setting.scheduler": cfg.search.scheduler,
        "setting.metric": cfg.search.metric,
        "setting.max_epochs": cfg.train.max_epochs,
        "setting.patience": cfg.train.patience,
        "setting.seed": cfg.seed,
        "setting.smoke": cfg.smoke,
        "setting.scaler": json.dumps(cfg.preprocess.scaler),
        "setting.pca_components": json.dumps(cfg.preprocess.pca_components),
        "setting.augment": json.dumps(cfg.preprocess.augment),
        "setting.categorical": cfg.data.categorical,
        "setting.cv_folds": cfg.search.cv_folds,
        "setting.val_size": cfg.data.val_size,
        "setting.test_size": cfg.data.test_size,
        "setting.search_space": json.dumps(cfg.search.space),
        "setting.tracking_uri": redact(uri),
    }


def preprocess(cfg: PipelineConfig) -> Splits:
    """Step 1: load, validate, stratified split, scale on train only."""
    splits = prepare(cfg)
    sizes = splits.sizes()
    prep = splits.preprocessor.describe() if splits.preprocessor is not None else {}
    how = ", ".join(f"{k} {v}" for k, v in prep.items() if v is not None and k != "n_out") or "-"
    say(f"[1/5] preprocess: {splits.name}: {sum(sizes.values())} rows, {splits.n_features} "
        f"features, {splits.n_classes} classes -> train {sizes['train']} / val {sizes['val']} / "
        f"test {sizes['test']} (fitted on train: {how})")
    return splits


# imported by the search (Ray Tune, in this process the driver), final training (torch's
# optimizers import torch._dynamo when first built) and publishing (the model's MLflow flavour,
# the plots)
_LATER_IMPORTS = ("ray.tune", "torch._dynamo", "mlflow.pytorch")
_prefetching: list[threading.Thread] = []
_prefetch_lock = threading.Lock()


def _prefetch() -> None:
    for name in _LATER_IMPORTS:
        importlib.import_module(name)
    importlib.import_module("matplotlib").use("Agg")
    importlib.import_module("matplotlib.pyplot")


def prefetch_for_later_steps() -> threading.Thread:
    """Import what the search, training and publishing need, in a thread; once per process.

    These imports (about 2.5 s here) would otherwise run in the steps, one after another, while
    the machine's other cores wait. The CLI starts this as soon as the flow is imported, so they
    overlap the flow run's creation and the search; a flow run started another way (a
    deployment) starts it in the search step. An import that fails here fails again, with its
    own error, where the step needs it.
    """
    def run() -> None:
        try:
            _prefetch()
        except Exception:  # the step that needs the module imports it again and reports
            return

    with _prefetch_lock:
        if not _prefetching:
            thread = threading.Thread(target=run, name="paramaudit-prefetch", daemon=True)
            thread.start()
            _prefetching.append(thread)
        return _prefetching[0]


def search(splits: Splits, cfg: PipelineConfig, tracker: Tracker, parent_id: str,
           workdir: Path, resume: bool = False) -> SearchOutcome:
    """Step 2: Ray Tune over the space; each trial a nested MLflow run."""
    say(f"[2/5] tune: {cfg.search.algorithm} search, {cfg.search.trials} trials, "
        f"scheduler {cfg.search.scheduler}, up to {cfg.train.max_epochs} epochs each")
    t0 = time.monotonic()
    with ray_session(cfg.ray, trial_slots(cfg)) as info:
        ray_seconds = time.monotonic() - t0
        up = "already up" if info.get("reused") else f"ready in {ray_seconds:.1f} s"
        say(f"  ray: {info['address']} ({info.get('cpus', '?')} CPUs), {up}")
        prefetch_for_later_steps()
        outcome = run_search(splits, cfg, tracker, parent_id, workdir / "tune", say=say,
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
    if scaler == splits.scaler.kind and pca is None and splits.n_features == splits.raw_train.shape[1]:
        return splits
    return refit_preprocessing(splits, scaler, pca, seed)


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
           **{k: hp.pop(k) for k in ("scaler", "pca_components", "augment") if k in hp}}
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
                           divergence=divergence_rule(cfg))
    final.example = splits.x_test[:5]
    final.preprocessing = splits.preprocessor.describe() if splits.preprocessor else {}
    final.hyperparameters.update({"model": model_name} if isinstance(cfg.model, dict) else {})
    final.hyperparameters.update({k: v for k, v in outcome.best_hyperparameters.items()
                                  if k in ("scaler", "pca_components", "augment")})
    h = final.history
    how = ("retrained" if final.source == "retrained"
           else f"{final.source}'s own weights, as retraining it would give")
    say(f"[3/5] train: {how}: {len(h.val_loss)} epochs (best {h.best_epoch + 1}"
        f"{f', {h.stopped_by}' if h.stopped_early else ''}): test accuracy "
        f"{final.test_accuracy:.4f}, test loss {final.test_loss:.4f}")
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


def rank_importance(outcome: SearchOutcome, cfg: PipelineConfig,
                    ) -> tuple[pd.DataFrame | None, str]:
    """Which searched hyperparameters mattered to the search's score, or why that is unknown."""
    from paramaudit import importance
    from paramaudit.tuning import searched_space

    names = [k for k, v in searched_space(cfg).items() if isinstance(v, dict)]
    mode = metric_mode(outcome.metric)
    rows = [{**{k: t.hyperparameters.get(k) for k in names}, "val_score": t.best(outcome.metric, mode)}
            for t in outcome.trials if t.status == "TERMINATED"]
    if not names:
        return None, "no hyperparameter was searched"
    try:
        ranking = importance.rank_hyperparameters(
            pd.DataFrame(rows), score="val_score", higher_is_better=mode == "max", seed=cfg.seed)
    except ValueError as err:  # too few trials or nothing varied: say so in the report
        return None, str(err)
    return ranking, ""


def audit(final: FinalModel, splits: Splits, outcome: SearchOutcome,
          cfg: PipelineConfig) -> AuditResult:
    """Step 4: count learned parameters per layer; judge overfitting with stated rules."""
    optimizer = str(final.hyperparameters.get("optimizer", "adam"))
    rep = audit_lib.audit_model(final.model, optimizer=optimizer)
    n_train = len(splits.y_train)
    verdict = assess(
        final.history.curves(), cfg.audit, params_trainable=rep.trainable_params,
        n_train=n_train, test_accuracy=final.test_accuracy, n_trials=len(outcome.trials),
        restored_best=True, fold_scores=outcome.best_trial().fold_val_accuracy or None,
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
            train_accuracy=t.final("train_accuracy"), val_accuracy=t.final("val_accuracy"),
            hyperparameters=t.hyperparameters)
        for t in outcome.trials if t.params_trainable
    ]
    pca_note = pca_effect(rep, final.preprocessing)
    if pca_note:
        say(f"  {pca_note['message']}")
    ranking, note = rank_importance(outcome, cfg)
    say(f"[4/5] audit: {rep.total_params:,} learned parameters ({rep.trainable_params:,} "
        f"trainable) in {len(rep.layers)} layers, {rep.trainable_params / n_train:.1f} per "
        f"training sample; overfitting verdict: {verdict.verdict}")
    for reason in verdict.to_dict()["reasons"]:
        say(f"  - {reason}")
    if ranking is not None:
        top = ranking.iloc[0]
        say(f"  the hyperparameter that mattered most: {top['hyperparameter']} "
            f"(importance {top['importance']:.2f}, {top['method']})")
    return AuditResult(rep, verdict, rows, points, ranking, note, pca_note)


def mlflow_ui_hint(tracker: Tracker, parent_id: str) -> tuple[str, str | None]:
    """The command that opens the MLflow UI on this run, and the run's URL in it."""
    if is_local_store(tracker.uri):
        port = 5000
        cmd = (f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri "
               f"{tracker.uri} --host 127.0.0.1 --port {port}   (or: make ui)")
        base = f"http://127.0.0.1:{port}"
    else:
        # a link a browser can open: the password stays out, the browser asks for it
        base = without_userinfo(tracker.uri).rstrip("/")
        cmd = f"open {base}"
    url = f"{base}/#/experiments/{tracker.experiment_id}/runs/{parent_id}"
    return cmd, url


def publish(tracker: Tracker, parent_id: str, cfg: PipelineConfig, splits: Splits,
            outcome: SearchOutcome, final: FinalModel, result: AuditResult,
            flow_run_id: str | None) -> dict[str, Any]:
    """Step 5: the parent run's params, metrics, tags and artifacts; the registry gate."""
    rep, verdict = result.report, result.verdict
    hp = final.hyperparameters
    # hyperparameters are MLflow params; learned-parameter counts are metrics
    tracker.log_params(parent_id, hp)
    h = final.history
    best = h.best_epoch
    n_train = len(splits.y_train)
    failed = sum(t.status == "ERROR" for t in outcome.trials)
    skipped = sum(t.status == "SKIPPED" for t in outcome.trials)
    finished = sum(t.status == "TERMINATED" for t in outcome.trials)
    metrics = {
        "test_accuracy": final.test_accuracy, "test_loss": final.test_loss,
        **audit_metrics(rep), "params_per_train_sample": rep.trainable_params / n_train,
        "best_epoch": best + 1, "epochs_trained": len(h.val_loss),
        "val_loss": h.val_loss[best], "val_accuracy": h.val_accuracy[best],
        "train_loss": h.train_loss[best], "train_accuracy": h.train_accuracy[best],
        "search_best_score": outcome.best_score, "trials_total": len(outcome.trials),
        "trials_finished": finished, "trials_failed": failed, "trials_skipped": skipped,
        "search_seconds": outcome.seconds, "n_train": n_train,
    }
    if result.pca:
        metrics.update(first_layer_params=result.pca["params_with_pca"],
                       first_layer_params_without_pca=result.pca["params_without_pca"])
        tracker.set_tags(parent_id, {"pca_effect": result.pca["message"]})
    tracker.log_metrics(parent_id, metrics)
    for epoch in range(len(h.val_loss)):
        tracker.log_metrics(parent_id, {
            "curve_train_loss": h.train_loss[epoch], "curve_val_loss": h.val_loss[epoch],
            "curve_train_accuracy": h.train_accuracy[epoch],
            "curve_val_accuracy": h.val_accuracy[epoch]}, step=epoch + 1)
    tracker.set_tags(parent_id, {
        "overfit_verdict": verdict.verdict, "overfit_reasons": verdict.tag_text(),
        "best_trial_id": outcome.best_trial_id,
        "final_model_source": final.source,
        # the run's description in the MLflow UI
        "mlflow.note.content": (
            f"Overfitting verdict **{verdict.verdict}**; test accuracy "
            f"{final.test_accuracy:.4f}; {rep.trainable_params:,} trainable parameters; "
            f"{len(outcome.trials)} trials ({cfg.search.algorithm} search). "
            + ("; ".join(verdict.to_dict()["reasons"]) or "No overfitting rule fired.")),
    })
    chosen = next((str(t.number) for t in outcome.trials if t.trial_id == outcome.best_trial_id),
                  None)
    cap_rows = capacity.summary_table(result.capacity_points, chosen)
    onset = capacity.gap_onset(result.capacity_points)
    if onset:
        tracker.set_tags(parent_id, {"capacity_gap_onset": onset["message"]})
    ui_cmd, ui_url = mlflow_ui_hint(tracker, parent_id)
    verdict_dict = verdict.to_dict()
    md = markdown_summary(
        title=f"paramaudit: {run_name(cfg)}",
        data={"data set": splits.name, **splits.sizes(), "features": splits.n_features,
              "classes": splits.n_classes,
              **({"encoded categorical columns": splits.encoding.get("encoded_columns")}
                 if (getattr(splits, "encoding", None) or {}).get("encoded_columns") else {}),
              **preprocessing_summary(final.preprocessing)},
        hyperparameters=hp, sampled=cfg.search.sampled(),
        test_metrics={"accuracy": final.test_accuracy, "loss": final.test_loss},
        params={"params_total": rep.total_params, "params_trainable": rep.trainable_params,
                **({"pca": result.pca["message"]} if result.pca else {})},
        verdict=verdict_dict,
        trials={"total": len(outcome.trials), "finished": finished, "failed": failed,
                "skipped": skipped},
        mlflow_run_id=parent_id, mlflow_link=ui_url, audit_markdown=report.render(rep, "markdown"),
        capacity_markdown=capacity_markdown(cap_rows, onset),
        importance_markdown=importance_markdown(
            importance_rows(result.importance) if result.importance is not None else [],
            result.importance_note),
    )
    with scratch_dir() as tmp:
        d = Path(tmp)
        log_audit(tracker, parent_id, rep)
        (d / "report.md").write_text(md)
        (d / "overfit_verdict.json").write_text(json.dumps(
            {"verdict": verdict.verdict, "reasons": verdict.details()}, indent=2))
        pd.DataFrame(trial_table(outcome.trials)).to_csv(d / "trials.csv", index=False)
        (d / "history.json").write_text(json.dumps(h.to_dict(), indent=2))
        # the learned parameters alone, loadable without unpickling code (safetensors)
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in final.model.state_dict().items()},
                  str(d / "weights.safetensors"))
        tracker.log_file(parent_id, d / "weights.safetensors", "model_weights")
        plot_learning_curves(h, d / "learning_curves.png",
                             title=f"Final model on {splits.name}: learning curves")
        if result.importance is not None:
            from paramaudit import importance

            result.importance.to_csv(d / "hyperparameter_importance.csv", index=False)
            try:
                trials_df = pd.DataFrame([
                    {**{k: t.hyperparameters.get(k) for k in result.importance["hyperparameter"]},
                     "val_score": t.best(outcome.metric, metric_mode(outcome.metric))}
                    for t in outcome.trials if t.status == "TERMINATED"])
                importance.plot_importance(trials_df, result.importance,
                                           d / "hyperparameter_importance.png", score="val_score")
            except ValueError as err:
                say(f"  importance plot skipped: {err}")
            tracker.log_file(parent_id, d / "hyperparameter_importance.csv", "report")
        if result.capacity_points:
            capacity.plot_capacity(result.capacity_points, chosen, d / "capacity.png")
            pd.DataFrame(cap_rows).to_csv(d / "capacity.csv", index=False)
        for p in sorted(d.glob("*.png")):
            tracker.log_file(parent_id, p, "plots")
        for name in ("report.md", "overfit_verdict.json", "trials.csv", "history.json",
                     "capacity.csv"):
            if (d / name).exists():
                tracker.log_file(parent_id, d / name, "report")
    registered = None
    if cfg.tracking.log_model:
        registered = register(tracker, parent_id, cfg, final, verdict, final.example)
    say(f"[5/5] publish: MLflow run {parent_id} has the hyperparameters, metrics, "
        f"audit and plots")
    return {
        "mlflow_run_id": parent_id,
        "experiment": cfg.experiment,
        "best_hyperparameters": hp,
        "test_metrics": {"accuracy": final.test_accuracy, "loss": final.test_loss},
        "params_total": rep.total_params,
        "params_trainable": rep.trainable_params,
        "overfit": verdict_dict,
        "trials": len(outcome.trials),
        "trial_results": [
            {"trial": t.number, "status": t.status, "params_trainable": t.params_trainable,
             "best_val_loss": t.best("val_loss", "min"),
             "best_val_accuracy": t.best("val_accuracy", "max"),
             "epochs": len(t.history["val_loss"]), "node_id": t.node_id,
             "worker_pid": t.worker_pid,
             "hyperparameters": t.hyperparameters}
            for t in outcome.trials
        ],
        "prefect_flow_run_id": flow_run_id,
        "final_model": {"source": final.source, "epochs": len(h.val_loss),
                        "best_epoch": best + 1, "stopped_by": h.stopped_by},
        "registered_model": registered,
        "mlflow_ui": {"command": ui_cmd, "url": ui_url},
        "markdown": md,
        # NaN is not JSON: a failed or skipped trial's losses travel as null
        "importance_rows": (importance_rows(result.importance)
                            if result.importance is not None else []),
        "capacity_rows": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                           for k, v in row.items()} for row in cap_rows],
    }


def preprocessing_summary(described: dict[str, Any]) -> dict[str, Any]:
    """The fitted preprocessing in words a reader of the report knows."""
    names = {"scaler": "scaler (fitted on train)", "pca_components": "PCA components",
             "explained_variance": "variance kept by PCA", "n_in": "features in",
             "n_out": "inputs to the model"}
    return {label: described[key] for key, label in names.items()
            if described.get(key) is not None}


def importance_rows(ranking: pd.DataFrame) -> list[dict[str, Any]]:
    """The hyperparameter ranking as JSON-ready rows."""
    from paramaudit import importance

    return importance.importance_table(ranking)


def log_audit(tracker: Tracker, run_id: str, rep: audit_lib.AuditReport) -> None:
    """The per-layer audit as MLflow artifacts: JSON, CSV, markdown and a bar chart."""
    with scratch_dir() as tmp:
        d = Path(tmp)
        (d / "parameter_audit.json").write_text(json.dumps(rep.to_dict(), indent=2))
        report.layers_dataframe(rep).to_csv(d / "parameter_audit.csv", index=False)
        (d / "parameter_audit.md").write_text(report.render(rep, "markdown"))
        report.plot_layers(rep, d / "parameters_per_layer.png")
        for p in sorted(d.iterdir()):
            tracker.log_file(run_id, p, "audit")


def audit_metrics(rep: audit_lib.AuditReport) -> dict[str, float]:
    """Learned-parameter counts of an audit, as MLflow metrics."""
    mem = rep.training_memory_bytes.get(rep.optimizer or "adam", {})
    return {
        "params_total": rep.total_params, "params_trainable": rep.trainable_params,
        "params_frozen": rep.frozen_params, "buffer_elements": rep.buffer_elements,
        "params_bytes": rep.bytes, "params_embedding": rep.embedding_params,
        "params_non_embedding": rep.non_embedding_params,
        **{f"training_memory_{k}_bytes": v for k, v in mem.items()},
    }


def register(tracker: Tracker, parent_id: str, cfg: PipelineConfig, final: FinalModel,
             verdict: Verdict, example: Any) -> dict[str, Any]:
    """Log the model and register it; only a model that passed the gate gets the champion alias."""
    name = cfg.tracking.registered_model_name or cfg.experiment
    # publish may be retried: a version this run already registered is reused, not duplicated
    mine = [v for v in tracker.client.search_model_versions(f"name = '{name}'")
            if v.run_id == parent_id]
    if mine:
        version = mine[0].version
    else:
        info = tracker.log_model(parent_id, final.model, example, registered_name=name)
        version = getattr(info, "registered_model_version", None)
    passed = verdict.verdict == "ok" or (verdict.verdict == "warn" and cfg.audit.register_on_warn)
    out: dict[str, Any] = {"name": name, "version": version, "champion": False}
    if version is not None:
        tracker.client.set_model_version_tag(name, str(version), "overfit_verdict",
                                             verdict.verdict)
        if passed:
            tracker.client.set_registered_model_alias(name, "champion", str(version))
            out["champion"] = True
        else:
            tracker.client.set_model_version_tag(name, str(version), "gate", "failed: overfit")
    tracker.set_tags(parent_id, {"registry_gate": "champion" if out["champion"] else "not promoted"})
    return out


def gate(tracker: Tracker, parent_id: str, cfg: PipelineConfig, result: AuditResult,
         summary: dict[str, Any]) -> None:
    """Fail the run (exit 3) on an overfit verdict when audit.fail_on_overfit is set."""
    if cfg.audit.fail_on_overfit and result.verdict.verdict == "overfit":
        raise OverfitGateError(
            f"overfitting gate: verdict overfit ({result.verdict.tag_text()[:300]})", summary)


def audit_spec(spec: str, meta: bool = False, optimizer: str = "adam") -> audit_lib.AuditReport:
    """Build a model from a SPEC (optionally on the meta device) and audit it."""
    return audit_lib.audit_model(audit_lib.load_spec(spec, meta=meta), optimizer=optimizer)


def publish_standalone_audit(tracker: Tracker, spec: str, meta: bool, rep: audit_lib.AuditReport,
                             flow_run_id: str | None) -> str:
    """An audit-only MLflow run: the SPEC as params, counts as metrics, the audit as artifacts."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    tags = {"paramaudit.kind": "audit", "spec": spec}
    if flow_run_id:
        tags["prefect_flow_run_id"] = flow_run_id
    with tracker.parent_run(f"audit {spec}{' (meta)' if meta else ''} {stamp}", tags) as run_id:
        tracker.log_params(run_id, {"setting.spec": spec, "setting.meta": meta,
                                    "setting.optimizer": rep.optimizer or "adam"})
        tracker.log_metrics(run_id, audit_metrics(rep))
        log_audit(tracker, run_id, rep)
    say(f"audit: {spec}: {rep.total_params:,} learned parameters; MLflow run {run_id}")
    return run_id
