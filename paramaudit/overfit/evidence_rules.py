"""The rules that read numbers beside the curves: test score, parameter count, folds, baseline."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from paramaudit.overfit.curves import Curves, _above, _finite
from paramaudit.overfit.verdict import Reason


def _optimism(
    curves: Curves, e: int, test_accuracy: float | None, limit: float, n_trials: int | None
) -> Reason | None:
    if test_accuracy is None:
        return None
    va = curves.scores("val")[e]
    if not (_finite(va) and _finite(test_accuracy)):
        return None
    va = float(va)
    optimism = va - test_accuracy
    key, name = ("r2", "R²") if curves.regression else ("accuracy", "accuracy")
    limit_name = "max_r2_optimism" if curves.regression else "max_selection_optimism"
    if not _above(optimism, limit):
        return None
    trials = (
        f"; {n_trials} trials were compared, and the more trials, the likelier this is"
        if n_trials is not None
        else "; this is likelier the more trials the search compares"
    )
    numbers = {f"val_{key}": va, f"test_{key}": float(test_accuracy), "optimism": optimism,
               limit_name: limit}
    if n_trials is not None:
        numbers["n_trials"] = float(n_trials)
    return Reason(
        "selection_optimism",
        "warn",
        f"selection optimism: val {name} {va:.3f} - test {name} {test_accuracy:.3f} = "
        f"{optimism:.3f} > {limit_name} {limit:.3f}: the search may have overfit "
        f"the validation split{trials}",
        numbers,
    )


def _capacity(
    params_trainable: int, n_train: int, limit: float, gap_fired: Reason | None
) -> Reason | None:
    per_sample = params_trainable / n_train
    if not _above(per_sample, limit):
        return None
    base = (
        f"capacity: {params_trainable:,} trainable parameters / {n_train:,} training samples "
        f"= {per_sample:.1f} per sample > max_params_per_sample {limit:.1f}"
    )
    numbers = {"params_trainable": float(params_trainable), "n_train": float(n_train),
               "params_per_sample": per_sample, "max_params_per_sample": limit}
    if gap_fired is not None:
        return Reason("capacity", "overfit",
                      f"{base}, together with a {gap_fired.rule.replace('_', ' ')} "
                      "(the model can memorise its training set, and shows it)", numbers)
    return Reason("capacity", "warn",
                  f"{base} (no generalisation gap yet, so a warning only)", numbers)


def _instability(fold_scores: list[float] | None, limit: float) -> Reason | None:
    if fold_scores is None or len(fold_scores) < 2:
        return None
    bad = [i for i, s in enumerate(fold_scores) if not _finite(s)]
    if bad:
        return Reason(
            "instability",
            "warn",
            f"instability: fold score{'s' if len(bad) > 1 else ''} "
            f"{', '.join(str(i) for i in bad)} of {len(fold_scores)} not finite",
            {"n_folds": float(len(fold_scores)), "non_finite_folds": float(len(bad))},
        )
    spread = statistics.pstdev(float(s) for s in fold_scores)
    if not _above(spread, limit):
        return None
    lo, hi = min(fold_scores), max(fold_scores)
    return Reason(
        "instability",
        "warn",
        f"instability: val score across {len(fold_scores)} folds ranges {lo:.3f}..{hi:.3f}, "
        f"std {spread:.3f} > max_fold_spread {limit:.3f}: the score depends on the split",
        {"n_folds": float(len(fold_scores)), "fold_std": spread, "fold_min": float(lo),
         "fold_max": float(hi), "max_fold_spread": limit},
    )


def _baseline(test_metrics: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None,
              margin: float) -> Reason | None:
    if not test_metrics or not baseline:
        return None
    from paramaudit.metrics import compare_to_baseline  # numpy: only where a verdict has metrics

    metric = "r2" if "r2" in test_metrics and "balanced_accuracy" not in test_metrics \
        else "balanced_accuracy"
    if not (_finite(test_metrics.get(metric)) and _finite(baseline.get(metric))):
        return None
    cmp = compare_to_baseline(test_metrics, baseline, margin, metric)
    return None if cmp.beats else Reason("baseline", "warn", cmp.message, cmp.numbers())
