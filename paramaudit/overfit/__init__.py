"""The overfitting verdict: pure rules over learning curves, parameter counts and fold scores.

No torch, Prefect, MLflow or Ray here: ``divergence`` runs inside Ray Tune trials after every
epoch, and ``assess`` runs on plain numbers logged by the pipeline.

Rules (each fired rule becomes a ``Reason`` quoting its own numbers; the verdict is the worst
severity among them, "ok" when none fired):

``gap``
    train accuracy - val accuracy at the evaluated epoch (default: the best epoch, argmin val
    loss, since the final model restores those weights). ``> max_gap`` -> overfit;
    ``> max_gap / 2`` -> warn (the gap is half-way to the limit).
``loss_ratio``
    val loss / train loss at the same epoch, only when ``max_loss_ratio`` is set.
    ``> max_loss_ratio`` -> overfit. A zero train loss with a positive val loss counts as an
    infinite ratio.
``divergence``
    after its minimum, val loss stayed more than ``divergence_tolerance`` (relative) above that
    minimum while train loss stayed below its value at that minimum, for at least
    ``divergence_epochs`` consecutive epochs -> overfit (training went past its best point).
``selection_optimism``
    val accuracy - test accuracy ``> max_selection_optimism`` -> warn (the search overfit the
    validation split).
``capacity``
    trainable parameters per training sample ``> max_params_per_sample`` -> warn; overfit when
    ``gap`` or ``loss_ratio`` also fired (at any severity).
``instability``
    population std of the k-fold val scores ``> max_fold_spread`` -> warn; a non-finite fold
    score is a warn of its own. Needs at least two scores.
``non_finite``
    a NaN or infinite train/val loss -> warn. That is a numerical failure of training, not
    evidence of overfitting, so it does not raise the verdict to overfit by itself.
``baseline``
    test balanced accuracy - the majority baseline's (always predicting the most frequent
    training class; paramaudit.metrics) ``< min_baseline_margin`` -> warn, reading e.g. "no
    better than always predicting 'no' (balanced accuracy 0.50 vs baseline 0.50; ...)". Only
    when the test metrics and the baseline are given (the final model, not the trials). A
    model that learned nothing is not overfit, so the verdict is a warn and not a verdict of
    its own (the gate, fail_on_overfit, is about overfitting); but such a model is never
    promoted to champion, whatever ``register_on_warn`` says (publish.register reads
    ``Verdict.no_better_than_baseline``).

Regression (curves with ``train_r2``/``val_r2`` in place of the accuracies; a numeric target)
reads the same rules in R²: ``gap`` is train R² - val R² against ``max_r2_gap`` (overfit above
it, warn above half of it); ``selection_optimism`` is val R² - test R² against
``max_r2_optimism``; ``baseline`` compares test R² with always predicting the training mean
(whose R² is about 0) by ``min_baseline_margin``; ``loss_ratio`` and ``divergence`` read the
val and train MSE of the standardised target; ``capacity``, ``instability`` (of the folds' val
R²) and ``non_finite`` are unchanged.

Every comparison is strict with a 1e-9 slack, so a value equal to its threshold up to float
rounding (0.90 - 0.85 vs 0.05) does not fire.

The package, top to bottom: ``curves`` (the learning curves and the float comparisons every rule
shares), ``verdict`` (Reason, Verdict, worst), ``curve_rules`` (divergence, gap, loss ratio and
non-finite losses: the rules that read the curves alone), ``evidence_rules`` (selection optimism,
capacity, instability, baseline: the rules that read numbers beside the curves) and
``assessment`` (``assess``, which applies them all).
"""

from __future__ import annotations

from paramaudit.overfit.assessment import assess
from paramaudit.overfit.curve_rules import divergence
from paramaudit.overfit.curves import Curves
from paramaudit.overfit.verdict import TAG_LIMIT, Reason, Severity, Verdict, worst

__all__ = ["TAG_LIMIT", "Curves", "Reason", "Severity", "Verdict", "assess", "divergence", "worst"]
