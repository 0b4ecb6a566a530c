"""Classification metrics that cannot flatter: balanced accuracy, macro F1, ROC AUC, log loss.

Two speeds: :func:`classification_metrics` (scikit-learn, for the final model's few
evaluations) and :func:`epoch_scores` (numpy only, for every epoch of every trial, where
scikit-learn's per-call input validation would cost more than the maths). A unit test keeps
the two equal.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

# the per-epoch scores beyond loss and accuracy (epoch_scores' keys, prefixed "val_")
EPOCH_SCORES = ("balanced_accuracy", "f1_macro", "roc_auc")
# the scalar metrics of classification_metrics and majority_baseline (MLflow metrics, reports)
SCALARS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "log_loss")

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
