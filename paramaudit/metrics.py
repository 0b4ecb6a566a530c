"""Classification metrics that cannot flatter, and the majority-class baseline they are read against.

On a table with 3% positives, accuracy 0.97 is what always answering "no" scores. So every
model is reported with balanced accuracy (mean recall over the classes), macro F1, log loss,
ROC AUC, per-class precision and recall and its confusion matrix, beside the same metrics of
"always predict the most frequent training class" (:func:`majority_baseline`); a model that
does not beat that baseline by ``audit.min_baseline_margin`` in balanced accuracy is said to be
no better than it (:func:`compare_to_baseline`) and is not promoted.

Two speeds: :func:`classification_metrics` (scikit-learn, for the final model's few
evaluations) and :func:`epoch_scores` (numpy only, for every epoch of every trial, where
scikit-learn's per-call input validation would cost more than the maths). A unit test keeps
the two equal.

Regression (a numeric target, ``task: regression``) has its own three: R², RMSE and MAE in
the target's original units (:func:`regression_metrics`; :func:`epoch_regression_scores` per
epoch), read against "always predict the training mean" (:func:`mean_baseline`), compared in R²
(the mean scores R² 0 on its own training rows, about that on any other). Training sees the
target standardised on the training rows (:class:`TargetScaler`); every metric here is in the
original units.

Pure numpy here (scikit-learn and matplotlib imported where used): no torch, no Prefect.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TASK = "classification"  # the default task; a run's own is Splits.task
TASKS = ("classification", "regression")
# the score beside the loss in every learning curve: History.{train,val}_<score>
SCORE = {"classification": "accuracy", "regression": "r2"}

# What ``search.metric`` may name, and whether the search minimises or maximises it. The trials
# report every one of them every epoch (training.EpochTrainer.step). val_log_loss is val_loss
# under its scikit-learn name: the same mean cross-entropy of the val split. The default stays
# val_loss, a proper scoring rule a lopsided table cannot fool (why: config SearchConfig.metric).
SEARCH_METRICS: dict[str, str] = {
    "val_loss": "min",
    "val_accuracy": "max",
    "val_balanced_accuracy": "max",
    "val_f1_macro": "max",
    "val_roc_auc": "max",
    "val_log_loss": "min",
    "val_rmse": "min",
    "val_mae": "min",
    "val_r2": "max",
}
# the search metrics only one task reports (val_loss: both; the mean MSE of the standardised
# target for regression, the mean cross-entropy for classification)
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("val_accuracy", "val_balanced_accuracy", "val_f1_macro", "val_roc_auc",
                       "val_log_loss"),
    "regression": ("val_rmse", "val_mae", "val_r2"),
}
# the per-epoch scores beyond loss and accuracy (epoch_scores' keys, prefixed "val_")
EPOCH_SCORES = ("balanced_accuracy", "f1_macro", "roc_auc")
# the scalar metrics of classification_metrics and majority_baseline (MLflow metrics, reports)
SCALARS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "log_loss")
REGRESSION_SCALARS = ("r2", "rmse", "mae")  # of regression_metrics and mean_baseline
DEFAULT_BASELINE_MARGIN = 0.02
_EPS = 1e-9  # as overfit's rules: a gain equal to the margin up to float rounding passes


def metric_mode(metric: str) -> str:
    """"min" or "max": how the search ranks ``metric`` (one of SEARCH_METRICS)."""
    try:
        return SEARCH_METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown search metric {metric!r}; one of "
                         f"{', '.join(SEARCH_METRICS)}") from None


# ---------------------------------------------------------------------------- regression target


@dataclass(frozen=True)
class TargetScaler:
    """A regression target standardised with the training rows' mean and std.

    The model learns the standardised target (a loss and a learning rate that do not depend on
    the target's units); its predictions go back through :meth:`unscale` before any metric.
    """

    mean: float
    std: float

    @classmethod
    def fit(cls, y: Any) -> TargetScaler:
        """Mean and population std of ``y``; a constant target gets std 1."""
        v = np.asarray(y, dtype=np.float64)
        std = float(v.std()) if len(v) else 1.0
        return cls(float(v.mean()) if len(v) else 0.0, std if std > 0 else 1.0)

    def scale(self, y: Any) -> np.ndarray:
        """Original units -> standardised (float32, what the model trains on)."""
        return ((np.asarray(y, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def unscale(self, z: Any) -> np.ndarray:
        """Standardised -> original units (float64)."""
        return np.asarray(z, dtype=np.float64) * self.std + self.mean

    def to_dict(self) -> dict[str, float]:
        """JSON-ready."""
        return {"mean": self.mean, "std": self.std}


def epoch_regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R², RMSE and MAE with numpy (a trial computes them every epoch); equal to scikit-learn's
    r2_score, root_mean_squared_error and mean_absolute_error (a unit test checks)."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    err = y - p
    sse = float(err @ err)
    sst = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    n = max(len(y), 1)
    # scikit-learn's r2_score on a constant y_true: 1.0 for a perfect fit, else 0.0
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    return {"r2": r2, "rmse": math.sqrt(sse / n), "mae": float(np.abs(err).sum() / n)}


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """``{r2, rmse, mae, n}`` of one split, in the target's original units (scikit-learn)."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if len(y) == 0:
        raise ValueError("no rows to score")
    if p.shape != y.shape:
        raise ValueError(f"{len(p)} predictions for {len(y)} rows")
    return {"n": len(y), "r2": float(r2_score(y, p)),
            "rmse": float(math.sqrt(mean_squared_error(y, p))),
            "mae": float(mean_absolute_error(y, p))}


def mean_baseline(y_train: Any, y_test: Any) -> dict[str, Any]:
    """"Always predict the training mean", scored on ``y_test``: the keys of
    :func:`regression_metrics` plus ``predicts`` (that mean)."""
    yt = np.asarray(y_train, dtype=np.float64)
    if len(yt) == 0:
        raise ValueError("no training rows for the baseline")
    mean = float(yt.mean())
    y = np.asarray(y_test, dtype=np.float64)
    return {**regression_metrics(y, np.full(len(y), mean)), "predicts": mean}


# ---------------------------------------------------------------------------- fast, per epoch


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (rows sum to 1 to rounding)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def _balanced_accuracy(cm: np.ndarray) -> float:
    # scikit-learn's definition: mean recall over the classes present in y_true
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return math.nan
    return float(np.mean(np.diag(cm)[present] / support[present]))


def _f1_macro(cm: np.ndarray) -> float:
    # scikit-learn's default labels: the classes in y_true or y_pred; 0/0 counts as 0
    tp = np.diag(cm).astype(np.float64)
    fp, fn = cm.sum(axis=0) - tp, cm.sum(axis=1) - tp
    seen = (tp + fp + fn) > 0
    if not seen.any():
        return math.nan
    denom = 2 * tp + fp + fn
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)[seen]))


def _tied_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks within each row of ``scores`` (k, n), ties given their average rank."""
    k, n = scores.shape
    order = np.argsort(scores, axis=1)  # any order within a tie: ties share their mean rank
    ordered = np.take_along_axis(scores, order, axis=1)
    pos = np.broadcast_to(np.arange(n), (k, n))
    differs = ordered[:, 1:] != ordered[:, :-1]
    ranks = np.empty((k, n))
    if differs.all():  # no ties, the common case with float64 probabilities
        np.put_along_axis(ranks, order, pos + 1.0, axis=1)
        return ranks
    edge = np.ones((k, 1), bool)
    first = np.concatenate([edge, differs], axis=1)  # a tie group starts here
    last = np.concatenate([differs, edge], axis=1)  # a tie group ends here
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n)[:, ::-1], axis=1)[:, ::-1]
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=1)
    return ranks


def _roc_auc(y_true: np.ndarray, proba: np.ndarray, k: int) -> float:
    """Binary AUC, or one-vs-rest macro AUC; nan when a class is missing from ``y_true``.

    The rank-sum (Mann-Whitney) formula, every class's column ranked in one vectorised pass.
    """
    n = len(y_true)
    n_pos = np.bincount(y_true, minlength=k).astype(np.float64)
    if k == 2:
        if n_pos.min() == 0:
            return math.nan
        ranks = _tied_ranks(proba[:, 1][None, :])[0]
        pos = float(n_pos[1])
        return float((ranks[y_true == 1].sum() - pos * (pos + 1) / 2) / (pos * (n - pos)))
    if n_pos.min() == 0:
        return math.nan
    ranks = _tied_ranks(np.ascontiguousarray(proba.T))
    rank_sums = np.bincount(y_true, weights=ranks[y_true, np.arange(n)], minlength=k)
    auc = (rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos))
    return float(auc.mean())


def epoch_scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Balanced accuracy, macro F1 and ROC AUC (nan where undefined) from class probabilities.

    numpy only, a few microseconds on a val split of thousands of rows: a trial computes it
    every epoch.
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba)
    k = p.shape[1]
    cm = _confusion(y, p.argmax(axis=1), k)
    return {"balanced_accuracy": _balanced_accuracy(cm), "f1_macro": _f1_macro(cm),
            "roc_auc": _roc_auc(y, p, k)}


# ---------------------------------------------------------------------------- the full set


def _none_if_nan(v: float) -> float | None:
    return None if not math.isfinite(v) else float(v)


def classification_metrics(y_true: Any, proba: Any, class_names: Sequence[Any]) -> dict[str, Any]:
    """Every metric of one split, from the true labels (indices) and class probabilities.

    Keys: ``n``, ``accuracy``, ``balanced_accuracy``, ``f1_macro``, ``log_loss``, ``roc_auc``
    (binary; one-vs-rest macro for more classes; None when the split lacks a class),
    ``per_class`` (``{label: {precision, recall, f1, support}}``, keyed by the class label) and
    ``confusion`` (``{"labels": [...], "matrix": [[...]]}``, rows true, columns predicted).
    Plain floats, ints and strings: JSON as it is.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
    )

    labels = [str(c) for c in class_names]
    k = len(labels)
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape != (len(y), k):
        raise ValueError(f"probabilities of shape {p.shape} for {len(y)} rows and {k} classes")
    if len(y) == 0:
        raise ValueError("no rows to score")
    pred = p.argmax(axis=1)
    idx = list(range(k))
    with warnings.catch_warnings():  # a class missing from a split: the metrics say so instead
        warnings.simplefilter("ignore")
        precision, recall, f1, support = precision_recall_fscore_support(
            y, pred, labels=idx, zero_division=0)
        out: dict[str, Any] = {
            "n": len(y),
            "accuracy": float(accuracy_score(y, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
            "log_loss": float(log_loss(y, p / p.sum(axis=1, keepdims=True), labels=idx)),
            "roc_auc": _none_if_nan(_sklearn_roc_auc(y, p, k)),
        }
    out["per_class"] = {
        label: {"precision": float(precision[i]), "recall": float(recall[i]),
                "f1": float(f1[i]), "support": int(support[i])}
        for i, label in enumerate(labels)
    }
    out["confusion"] = {"labels": labels, "matrix": _confusion(y, pred, k).tolist()}
    return out


def _sklearn_roc_auc(y: np.ndarray, p: np.ndarray, k: int) -> float:
    from sklearn.metrics import roc_auc_score

    if np.bincount(y, minlength=k).min() == 0:
        return math.nan  # undefined: some class has no row to rank against the others
    if k == 2:
        return float(roc_auc_score(y, p[:, 1]))
    return float(roc_auc_score(y, p / p.sum(axis=1, keepdims=True), multi_class="ovr",
                               average="macro", labels=list(range(k))))


def majority_baseline(y_train: Any, y_test: Any, class_names: Sequence[Any]) -> dict[str, Any]:
    """"Always predict the most frequent training class", scored on ``y_test``.

    The keys of :func:`classification_metrics`, its probabilities being the training split's
    class priors for every row (so its log loss is the priors' cross-entropy on the test
    split), plus ``predicts`` (the label it always answers) and ``predicts_share`` (that
    class's share of the training rows).
    """
    k = len(class_names)
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=k)[:k]
    if counts.sum() == 0:
        raise ValueError("no training rows for the baseline")
    priors = counts / counts.sum()
    majority = int(np.argmax(priors))  # the first on ties, as the argmax of its probabilities
    y = np.asarray(y_test, dtype=np.int64)
    out = classification_metrics(y, np.tile(priors, (len(y), 1)), class_names)
    out.update(predicts=str(class_names[majority]), predicts_share=float(priors[majority]))
    return out


# ---------------------------------------------------------------------------- beats the baseline


@dataclass(frozen=True)
class BaselineComparison:
    """Whether a model beats the majority baseline by the margin, and the sentence that says so."""

    beats: bool
    metric: str
    score: float
    baseline: float
    margin: float
    predicts: str
    message: str

    def numbers(self) -> dict[str, float]:
        """The comparison's numbers, for a verdict's reason."""
        return {self.metric: self.score, f"baseline_{self.metric}": self.baseline,
                "gain": self.score - self.baseline, "min_baseline_margin": self.margin}


def compare_to_baseline(metrics: Mapping[str, Any], baseline: Mapping[str, Any],
                        margin: float = DEFAULT_BASELINE_MARGIN,
                        metric: str | None = None) -> BaselineComparison:
    """Does the model beat the baseline by at least ``margin`` in ``metric``?

    Classification: balanced accuracy, since the majority baseline scores exactly 1/(number
    of classes) on it however lopsided the classes are, where its accuracy is the majority's
    share. Regression (metrics with ``r2``): R², which the training mean scores about 0 on.
    ``metric`` None picks by the metrics given. A gain equal to the margin (up to float
    rounding) passes.
    """
    if metric is None:
        metric = "r2" if "r2" in metrics and "balanced_accuracy" not in metrics \
            else "balanced_accuracy"
    score, base = float(metrics[metric]), float(baseline[metric])
    raw = baseline.get("predicts", "?")
    # the mean as a number (152.1), a class as its quoted label ('no')
    predicts = f"the mean {raw:.4g}" if isinstance(raw, (int, float)) else repr(str(raw))
    words = "R²" if metric == "r2" else metric.replace("_", " ")
    gain = score - base
    beats = gain >= margin - _EPS
    if beats:
        message = (f"beats always predicting {predicts}: {words} {score:.2f} vs baseline "
                   f"{base:.2f} (+{gain:.2f} >= min_baseline_margin {margin:.2f})")
    else:
        message = (f"no better than always predicting {predicts} ({words} {score:.2f} vs "
                   f"baseline {base:.2f}; {gain:+.2f} < min_baseline_margin {margin:.2f})")
    predicts = str(raw)
    return BaselineComparison(beats, metric, score, base, margin, predicts, message)


# ---------------------------------------------------------------------------- views


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
