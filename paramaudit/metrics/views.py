"""Views of computed metrics: MLflow scalars, markdown tables and PNG plots for the reports.

Nothing is computed here beyond formatting; matplotlib is imported only by the plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from paramaudit.metrics.classification import SCALARS
from paramaudit.metrics.regression import REGRESSION_SCALARS


def scalar_metrics(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The scalar metrics as MLflow metrics named ``{prefix}_{name}``; undefined ones left out."""
    return {f"{prefix}_{k}": float(metrics[k]) for k in (*SCALARS, *REGRESSION_SCALARS)
            if metrics.get(k) is not None and math.isfinite(metrics[k])}


def comparison_markdown(test: Mapping[str, Any], baseline: Mapping[str, Any]) -> str:
    """The test metrics beside the majority baseline's, as a markdown table."""
    def cell(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    if "r2" in test and "balanced_accuracy" not in test:
        lines = [f"| metric | model (test) | always the training mean "
                 f"{float(baseline.get('predicts', math.nan)):.4g} (baseline) |", "|---|---:|---:|"]
        lines += [f"| {k.upper() if k != 'r2' else 'R²'} | {cell(test.get(k))} | "
                  f"{cell(baseline.get(k))} |" for k in REGRESSION_SCALARS]
        return "\n".join(lines)
    lines = [f"| metric | model (test) | always {baseline.get('predicts', '?')!r} (baseline) |",
             "|---|---:|---:|"]
    for k in SCALARS:
        lines.append(f"| {k.replace('_', ' ')} | {cell(test.get(k))} | {cell(baseline.get(k))} |")
    lines += ["", "| class | precision | recall | support |", "|---|---:|---:|---:|"]
    for label, row in test.get("per_class", {}).items():
        lines.append(f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['support']:,} |")
    return "\n".join(lines)


def confusion_rows(confusion: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The confusion matrix as table rows (a Prefect table artifact): one per true class."""
    labels = confusion["labels"]
    return [{"true \\ predicted": label, **{str(p): int(n) for p, n in zip(labels, row, strict=True)}}
            for label, row in zip(labels, confusion["matrix"], strict=True)]


def confusion_markdown(confusion: Mapping[str, Any]) -> str:
    """The confusion matrix as a markdown table: rows true class, columns predicted class."""
    labels = [str(v).replace("|", "\\|") for v in confusion["labels"]]
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for label, row in zip(labels, confusion["matrix"], strict=True):
        lines.append(f"| **{label}** | " + " | ".join(f"{int(n):,}" for n in row) + " |")
    return "\n".join(lines)


def plot_confusion(confusion: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """The confusion matrix as a PNG: counts in the cells, shaded by the share of each true row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(v) for v in confusion["labels"]]
    m = np.asarray(confusion["matrix"], dtype=np.float64)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    k = len(labels)
    size = min(3 + 0.5 * k, 14)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(m[i, j]):,}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), labels, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "Confusion matrix (test split)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_predictions(y_true: Any, y_pred: Any, path: str | Path, title: str = "") -> Path:
    """Predicted against actual values (regression, test split) as a PNG, with the y = x line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(y, p, s=12, alpha=0.6)
    lo = float(min(y.min(), p.min())) if len(y) else 0.0
    hi = float(max(y.max(), p.max())) if len(y) else 1.0
    ax.plot([lo, hi], [lo, hi], "--", c="grey", lw=1, label="predicted = actual")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(title or "Predicted vs actual (test split)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
