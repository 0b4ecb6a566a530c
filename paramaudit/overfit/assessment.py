"""``assess``: every rule applied to one model's curves and numbers, and the verdict over them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from paramaudit.overfit.curve_rules import (
    _divergence_message,
    _divergence_numbers,
    _gap,
    _loss_ratio,
    _non_finite,
)
from paramaudit.overfit.curves import Curves
from paramaudit.overfit.evidence_rules import _baseline, _capacity, _instability, _optimism
from paramaudit.overfit.verdict import Reason, Verdict, worst

if TYPE_CHECKING:  # keeps the import of this module free of pydantic/yaml for Ray workers
    from paramaudit.config import OverfitConfig


def _check_counts(params_trainable: int, n_train: int) -> None:
    # bool is an int subclass: True would otherwise pass as one training sample
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    if isinstance(params_trainable, bool) or not isinstance(params_trainable, int) or (
        params_trainable < 0
    ):
        raise ValueError(f"params_trainable must be an integer >= 0, got {params_trainable!r}")


def _check_epoch(curves: Curves, epoch: int | None) -> int:
    n = len(curves)
    if epoch is None:
        return curves.best_epoch()
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not -n <= epoch < n:
        raise ValueError(f"epoch {epoch!r} is outside the curves' {n} epochs (0..{n - 1})")
    return epoch % n


def _divergence(curves: Curves, cfg: OverfitConfig, restored_best: bool) -> Reason | None:
    """The divergence rule over the whole curve; only a warn when the best weights were restored."""
    numbers = _divergence_numbers(
        curves.train_loss, curves.val_loss, cfg.divergence_tolerance, cfg.divergence_epochs
    )
    if numbers is None:
        return None
    message = _divergence_message(numbers)
    if restored_best:
        message += "; the delivered weights are the best epoch's, restored by early stopping"
    return Reason("divergence", "warn" if restored_best else "overfit", message, numbers)


def assess(
    curves: Curves,
    cfg: OverfitConfig,
    *,
    params_trainable: int,
    n_train: int,
    test_accuracy: float | None = None,
    fold_scores: list[float] | None = None,
    n_trials: int | None = None,
    epoch: int | None = None,
    restored_best: bool = False,
    test_metrics: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    test_r2: float | None = None,
) -> Verdict:
    """Apply every rule (see :mod:`paramaudit.overfit`) and return the verdict with its reasons.

    ``epoch`` is where gap, loss ratio and optimism are read; None means the best epoch.
    ``test_accuracy`` is the test split's score: its accuracy, or its R² for regression curves
    (``test_r2`` says the same by name).
    ``test_metrics`` and ``baseline`` (metrics.classification_metrics and majority_baseline of
    the test split) turn on the ``baseline`` rule.
    ``restored_best`` says the delivered weights are the best epoch's (early stopping restored
    them): a divergence after that point then shows the configuration's tendency to overfit with
    more epochs, not a property of the delivered model, so it warns instead of failing.
    """
    _check_counts(params_trainable, n_train)
    e = _check_epoch(curves, epoch)
    regression = curves.regression
    test_score = test_r2 if regression and test_r2 is not None else test_accuracy

    gap = _gap(curves, e, cfg.max_r2_gap if regression else cfg.max_gap)
    ratio = _loss_ratio(curves, e, cfg.max_loss_ratio)
    # the order here is the order of the reasons in the verdict (and in its JSON and tag text)
    candidates = (
        gap,
        ratio,
        _divergence(curves, cfg, restored_best),
        _optimism(curves, e, test_score,
                  cfg.max_r2_optimism if regression else cfg.max_selection_optimism, n_trials),
        # capacity turns overfit only alongside a gap or loss ratio of any severity
        _capacity(params_trainable, n_train, cfg.max_params_per_sample, gap or ratio),
        _instability(fold_scores, cfg.max_fold_spread),
        _non_finite(curves),
        _baseline(test_metrics, baseline, cfg.min_baseline_margin),
    )
    reasons = [r for r in candidates if r is not None]
    return Verdict(worst([r.severity for r in reasons]), reasons)
