"""The baselines a model is read against, and whether it beats them by the margin.

Classification: "always predict the most frequent training class" (:func:`majority_baseline`).
Regression: "always predict the training mean" (:func:`mean_baseline`). A model that does not
beat its baseline by ``overfit.min_baseline_margin`` (:func:`compare_to_baseline`) is said to be
no better than it and is not promoted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from paramaudit.metrics.classification import classification_metrics
from paramaudit.metrics.regression import regression_metrics

DEFAULT_BASELINE_MARGIN = 0.02
_EPS = 1e-9  # as overfit's rules: a gain equal to the margin up to float rounding passes


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


def mean_baseline(y_train: Any, y_test: Any) -> dict[str, Any]:
    """"Always predict the training mean", scored on ``y_test``: the keys of
    :func:`regression_metrics` plus ``predicts`` (that mean)."""
    yt = np.asarray(y_train, dtype=np.float64)
    if len(yt) == 0:
        raise ValueError("no training rows for the baseline")
    mean = float(yt.mean())
    y = np.asarray(y_test, dtype=np.float64)
    return {**regression_metrics(y, np.full(len(y), mean)), "predicts": mean}


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
