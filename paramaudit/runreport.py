"""The pipeline run's own report: learning curves and a markdown summary for people."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def plot_learning_curves(history: Any, path: str | Path, title: str = "") -> Path:
    """Train and val loss and accuracy (a regression: R²) per epoch, best epoch marked; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = list(range(1, len(history.train_loss) + 1))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, history.train_loss, "o-", label="train", ms=3)
    ax_loss.plot(epochs, history.val_loss, "o-", label="val", ms=3)
    regression = getattr(history, "task", "classification") == "regression"
    ax_acc.plot(epochs, history.train_r2 if regression else history.train_accuracy, "o-",
                label="train", ms=3)
    ax_acc.plot(epochs, history.val_r2 if regression else history.val_accuracy, "o-",
                label="val", ms=3)
    names = ("MSE (standardised target)", "R²") if regression else ("cross-entropy loss",
                                                                   "accuracy")
    for ax, name in zip((ax_loss, ax_acc), names, strict=True):
        if history.best_epoch >= 0:
            ax.axvline(history.best_epoch + 1, ls="--", c="grey", lw=1, label="best epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "Learning curves of the final model")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def markdown_summary(
    *,
    title: str,
    data: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    sampled: Sequence[str],
    test_metrics: Mapping[str, float],
    params: Mapping[str, int],
    verdict: Mapping[str, Any],
    trial_counts: Mapping[str, Any],
    mlflow_run_id: str,
    mlflow_link: str | None,
    audit_markdown: str,
    capacity_markdown: str = "",
    importance_markdown: str = "",
    metrics_markdown: str = "",
) -> str:
    """A markdown report of one pipeline run (Prefect artifact and MLflow artifact)."""
    icon = {"ok": "OK", "warn": "WARNING", "overfit": "OVERFIT"}.get(verdict["verdict"], "?")
    lines = [f"# {title}", ""]
    lines.append(f"**Overfitting verdict: {icon}** (`{verdict['verdict']}`)")
    lines.append("")
    for reason in verdict.get("reasons") or ["no rule fired"]:
        lines.append(f"- {reason}")
    lines += ["", "## Result", ""]
    if "r2" in test_metrics:
        lines.append(f"- test R² **{test_metrics['r2']:.4f}**, RMSE {test_metrics['rmse']:.4g}, "
                     f"MAE {test_metrics['mae']:.4g}, test loss {test_metrics['loss']:.4f}")
    else:
        lines.append(f"- test accuracy **{test_metrics['accuracy']:.4f}**, "
                     f"test loss {test_metrics['loss']:.4f}")
    lines.append(f"- learned parameters: **{params['params_total']:,}** total, "
                 f"{params['params_trainable']:,} trainable")
    if params.get("pca"):
        lines.append(f"- {params['pca']}")
    counts = trial_counts
    lines.append(f"- trials: {counts.get('finished', 0)} finished of {counts.get('total', 0)}"
                 f" ({counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped)")
    if mlflow_link:
        lines.append(f"- MLflow run: [{mlflow_run_id}]({mlflow_link})")
    else:
        lines.append(f"- MLflow run: `{mlflow_run_id}`")
    if metrics_markdown:
        against = "the training mean" if "r2" in test_metrics else "the majority baseline"
        lines += ["", f"## Test metrics against {against}", "", metrics_markdown.strip()]
    lines += ["", "## Data", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in data.items()]
    lines += ["", "## Chosen hyperparameters", "", "| hyperparameter | value | searched |",
              "|---|---|---|"]
    for k, v in hyperparameters.items():
        lines.append(f"| {k} | {_fmt(v)} | {'yes' if k in sampled else 'fixed'} |")
    if importance_markdown:
        lines += ["", "## Which hyperparameters mattered", "", importance_markdown.strip()]
    if capacity_markdown:
        lines += ["", "## Capacity against generalisation (all trials)", "",
                  capacity_markdown.strip()]
    lines += ["", "## Parameter audit (what training learned)", "", audit_markdown.strip(), ""]
    return "\n".join(lines)


def capacity_markdown(rows: Sequence[Mapping[str, Any]], onset: Mapping[str, Any] | None) -> str:
    """The trials' parameter counts against their losses, Pareto front and chosen one marked."""
    if not rows:
        return ""
    lines = [onset["message"] if onset else
             "The train/val gap does not grow with the parameter count across these trials.",
             "", "| trial | trainable parameters | train loss | val loss | gap | Pareto | chosen |",
             "|---|---:|---:|---:|---:|:-:|:-:|"]
    for r in rows:
        lines.append(
            f"| {r['trial_id']} | {int(r['params_trainable']):,} | {_fmt(r['train_loss'])} | "
            f"{_fmt(r['val_loss'])} | {_fmt(r['gap'])} | "
            f"{'yes' if r['on_pareto_front'] else ''} | {'**yes**' if r['chosen'] else ''} |")
    return "\n".join(lines)


def importance_markdown(rows: Sequence[Mapping[str, Any]], note: str = "") -> str:
    """The ranking of hyperparameters by importance to the val score, as a markdown table."""
    if not rows:
        return f"Not ranked: {note}" if note else ""
    lines = ["| rank | hyperparameter | importance | method |", "|---:|---|---:|---|"]
    for r in rows:
        rank = r.get("rank")
        lines.append(f"| {rank if rank is not None else '-'} | {r['hyperparameter']} | "
                     f"{float(r['importance']):.3f} | {r['method']} |")
    return "\n".join(lines)
