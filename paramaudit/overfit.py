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
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # keeps the import of this module free of pydantic/yaml for Ray workers
    from paramaudit.config import OverfitConfig

Severity = Literal["ok", "warn", "overfit"]

_RANK: dict[str, int] = {"ok": 0, "warn": 1, "overfit": 2}
_EPS = 1e-9
TAG_LIMIT = 5000  # MLflow's tag value limit on older servers; the safe common bound


def _above(value: float, limit: float) -> bool:
    return value > limit + _EPS


def _finite(x: Any) -> bool:
    # accepts numpy scalars too (np.float32 is no float subclass); None and the like are not finite
    try:
        return math.isfinite(x)
    except TypeError:
        return False


def worst(severities: Sequence[str]) -> Severity:
    """The worst of the given severities ("ok" for none)."""
    out: Severity = "ok"
    for s in severities:
        if _RANK[s] > _RANK[out]:
            out = s  # type: ignore[assignment]
    return out


@dataclass(frozen=True)
class Curves:
    """Per-epoch learning curves; epoch i is index i in every list, all of the same length.

    A regression's curves give ``train_r2`` and ``val_r2`` and leave the accuracies empty.
    """

    train_loss: list[float]
    val_loss: list[float]
    train_accuracy: list[float]
    val_accuracy: list[float]
    train_r2: list[float] | None = None
    val_r2: list[float] | None = None

    def __post_init__(self) -> None:
        if self.regression:
            scores = {"train_r2": len(self.train_r2 or ()), "val_r2": len(self.val_r2 or ())}
        else:
            scores = {"train_accuracy": len(self.train_accuracy),
                      "val_accuracy": len(self.val_accuracy)}
        lengths = {"train_loss": len(self.train_loss), "val_loss": len(self.val_loss), **scores}
        if lengths["val_loss"] == 0:
            raise ValueError("learning curves are empty: need at least one epoch")
        if len(set(lengths.values())) != 1:
            shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
            raise ValueError(f"learning curves differ in length ({shown})")

    def __len__(self) -> int:
        return len(self.val_loss)

    @property
    def regression(self) -> bool:
        """Whether these are a regression's curves (R², not accuracy)."""
        return self.train_r2 is not None or self.val_r2 is not None

    @property
    def score_name(self) -> str:
        """What the score curves hold: accuracy, or R²."""
        return "R²" if self.regression else "accuracy"

    def scores(self, split: str) -> list[float]:
        """The train or val score curve: accuracy, or R² for a regression."""
        if self.regression:
            return list((self.train_r2 if split == "train" else self.val_r2) or [])
        return self.train_accuracy if split == "train" else self.val_accuracy

    def best_epoch(self) -> int:
        """Index of the minimum finite val loss (first on ties); the last epoch if none is
        finite, since that is the model training left behind."""
        best: int | None = None
        for i, v in enumerate(self.val_loss):
            if _finite(v) and (best is None or v < self.val_loss[best]):
                best = i
        return len(self.val_loss) - 1 if best is None else best


@dataclass(frozen=True)
class Reason:
    """One fired rule: its name, severity, a human sentence and the numbers behind it."""

    rule: str
    severity: Severity
    message: str
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The worst severity over the fired rules, and those rules."""

    verdict: Severity
    reasons: list[Reason]

    def to_dict(self) -> dict[str, Any]:
        """``{"verdict": ..., "reasons": [message, ...]}``, the shape of the JSON output file."""
        return {"verdict": self.verdict, "reasons": [r.message for r in self.reasons]}

    def details(self) -> list[dict[str, Any]]:
        """Every reason with rule, severity, message and numbers; non-finite numbers become
        None so the result is strict JSON."""
        return [
            {
                "rule": r.rule,
                "severity": r.severity,
                "message": r.message,
                "numbers": {k: (v if _finite(v) else None) for k, v in r.numbers.items()},
            }
            for r in self.reasons
        ]

    def fired(self, rule: str) -> Reason | None:
        """The reason ``rule`` gave, or None when it did not fire."""
        return next((r for r in self.reasons if r.rule == rule), None)

    @property
    def no_better_than_baseline(self) -> Reason | None:
        """The ``baseline`` rule's reason when the model does not beat the majority baseline."""
        return self.fired("baseline")

    def tag_text(self) -> str:
        """The messages joined by "; " (or "no rule fired"), at most 5000 characters."""
        text = "; ".join(r.message for r in self.reasons) or "no rule fired"
        if len(text) > TAG_LIMIT:
            text = text[: TAG_LIMIT - 3] + "..."
        return text


# ---------------------------------------------------------------------------- divergence


def _divergence_numbers(
    train_loss: Sequence[float], val_loss: Sequence[float], tolerance: float, k: int
) -> dict[str, float] | None:
    if len(train_loss) != len(val_loss):
        raise ValueError(
            f"divergence: train_loss has {len(train_loss)} epochs, val_loss {len(val_loss)}"
        )
    if k < 1:
        raise ValueError(f"divergence: k must be >= 1, got {k}")
    if not tolerance >= 0:
        raise ValueError(f"divergence: tolerance must be >= 0, got {tolerance}")
    # the minimum over the curve seen so far: on a partial curve (the Tune stopper) this is the
    # running minimum, and a later new minimum resets the count, so a temporary bump that the
    # model recovers from never counts against it
    best: int | None = None
    for i, v in enumerate(val_loss):
        if _finite(v) and (best is None or v < val_loss[best]):
            best = i
    if best is None or not _finite(train_loss[best]):
        return None
    vmin, tmin = val_loss[best], train_loss[best]
    limit = vmin + tolerance * abs(vmin)
    run = longest = 0
    run_end = longest_end = best
    for i in range(best + 1, len(val_loss)):
        v, t = val_loss[i], train_loss[i]
        # non-finite epochs break the run: they are the non_finite rule's business
        if _finite(v) and _finite(t) and _above(v, limit) and t < tmin:
            run += 1
            run_end = i
            if run > longest:
                longest, longest_end = run, run_end
        else:
            run = 0
    if longest < k:
        return None
    worst_i = max(range(longest_end - longest + 1, longest_end + 1), key=lambda j: val_loss[j])
    rise = (val_loss[worst_i] - vmin) / abs(vmin) if vmin != 0 else math.inf
    return {
        "best_epoch": float(best),
        "val_loss_min": float(vmin),
        "worst_epoch": float(worst_i),
        "val_loss_worst": float(val_loss[worst_i]),
        "relative_rise": float(rise),
        "tolerance": float(tolerance),
        "train_loss_at_min": float(tmin),
        "train_loss_last": float(train_loss[longest_end]),
        "last_epoch": float(longest_end),
        "epochs": float(longest),
        "k": float(k),
    }


def _divergence_message(n: dict[str, float]) -> str:
    return (
        f"divergence: val loss rose to {n['val_loss_worst']:.3f} at epoch "
        f"{int(n['worst_epoch']) + 1}, {n['relative_rise']:.1%} above its minimum "
        f"{n['val_loss_min']:.3f} at epoch {int(n['best_epoch']) + 1} (> tolerance "
        f"{n['tolerance']:.1%}), while train loss fell from {n['train_loss_at_min']:.3f} to "
        f"{n['train_loss_last']:.3f}, for {int(n['epochs'])} consecutive epochs "
        f"(>= {int(n['k'])}): training went past its best point"
    )


def divergence(
    train_loss: Sequence[float], val_loss: Sequence[float], tolerance: float, k: int
) -> str | None:
    """The divergence reason text, or None when val loss has not diverged.

    Fires when, after the minimum val loss so far (epoch m), at least ``k`` consecutive epochs
    have val loss more than ``tolerance`` (relative) above that minimum and train loss below
    its value at m. Works on partial curves (fewer than k + 1 epochs never fire) and is O(n)
    with no allocation beyond a few floats, so a Tune stopper may call it every epoch.
    """
    numbers = _divergence_numbers(train_loss, val_loss, tolerance, k)
    return None if numbers is None else _divergence_message(numbers)


# ---------------------------------------------------------------------------- the verdict


def _check_epoch(curves: Curves, epoch: int | None) -> int:
    n = len(curves)
    if epoch is None:
        return curves.best_epoch()
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not -n <= epoch < n:
        raise ValueError(f"epoch {epoch!r} is outside the curves' {n} epochs (0..{n - 1})")
    return epoch % n


def _non_finite(curves: Curves) -> Reason | None:
    bad = [
        (i, name, value)
        for name, series in (("train", curves.train_loss), ("val", curves.val_loss))
        for i, value in enumerate(series)
        if not _finite(value)
    ]
    if not bad:
        return None
    bad.sort()
    i, name, value = bad[0]
    epochs = sorted({b[0] for b in bad})
    more = f" ({len(epochs)} epochs affected)" if len(epochs) > 1 else ""
    return Reason(
        "non_finite",
        "warn",
        f"non-finite loss at epoch {i + 1} ({name} loss {value}){more}: training was numerically "
        "unstable",
        {"epoch": float(i), "epochs_affected": float(len(epochs))},
    )


def _gap(curves: Curves, e: int, max_gap: float) -> Reason | None:
    """train score - val score at epoch ``e`` (accuracy; R² against max_r2_gap, a regression)."""
    tr, va = curves.scores("train")[e], curves.scores("val")[e]
    if not (_finite(tr) and _finite(va)):
        return None
    tr, va = float(tr), float(va)
    gap = tr - va
    limit = "max_r2_gap" if curves.regression else "max_gap"
    if _above(gap, max_gap):
        severity: Severity = "overfit"
        cmp = f"> {limit} {max_gap:.3f}"
    elif _above(gap, max_gap / 2):
        severity = "warn"
        cmp = f"> {limit}/2 {max_gap / 2:.3f} ({limit} {max_gap:.3f})"
    else:
        return None
    key = "r2" if curves.regression else "accuracy"
    name = curves.score_name
    return Reason(
        "gap",
        severity,
        f"generalisation gap at epoch {e + 1}: train {name} {tr:.3f} - val {name} {va:.3f} "
        f"= {gap:.3f} {cmp}",
        {"epoch": float(e), f"train_{key}": tr, f"val_{key}": va, "gap": gap, limit: max_gap},
    )


def _loss_ratio(curves: Curves, e: int, max_ratio: float | None) -> Reason | None:
    if max_ratio is None:
        return None
    tr, va = curves.train_loss[e], curves.val_loss[e]
    if not (_finite(tr) and _finite(va)) or va <= 0:
        return None
    tr, va = float(tr), float(va)
    ratio = va / tr if tr > 0 else math.inf
    if not _above(ratio, max_ratio):
        return None
    return Reason(
        "loss_ratio",
        "overfit",
        f"loss ratio at epoch {e + 1}: val loss {va:.4f} / train loss {tr:.4f} = {ratio:.2f} "
        f"> max_loss_ratio {max_ratio:.2f}",
        {"epoch": float(e), "train_loss": tr, "val_loss": va, "ratio": ratio,
         "max_loss_ratio": max_ratio},
    )


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
    """Apply every rule (see the module docstring) and return the verdict with its reasons.

    ``epoch`` is where gap, loss ratio and optimism are read; None means the best epoch.
    ``test_accuracy`` is the test split's score: its accuracy, or its R² for regression curves
    (``test_r2`` says the same by name).
    ``test_metrics`` and ``baseline`` (metrics.classification_metrics and majority_baseline of
    the test split) turn on the ``baseline`` rule.
    ``restored_best`` says the delivered weights are the best epoch's (early stopping restored
    them): a divergence after that point then shows the configuration's tendency to overfit with
    more epochs, not a property of the delivered model, so it warns instead of failing.
    """
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    if isinstance(params_trainable, bool) or not isinstance(params_trainable, int) or (
        params_trainable < 0
    ):
        raise ValueError(f"params_trainable must be an integer >= 0, got {params_trainable!r}")
    e = _check_epoch(curves, epoch)
    regression = curves.regression
    test_score = test_r2 if regression and test_r2 is not None else test_accuracy

    gap = _gap(curves, e, cfg.max_r2_gap if regression else cfg.max_gap)
    ratio = _loss_ratio(curves, e, cfg.max_loss_ratio)
    div_numbers = _divergence_numbers(
        curves.train_loss, curves.val_loss, cfg.divergence_tolerance, cfg.divergence_epochs
    )
    div = None
    if div_numbers is not None:
        message = _divergence_message(div_numbers)
        if restored_best:
            message += "; the delivered weights are the best epoch's, restored by early stopping"
        div = Reason("divergence", "warn" if restored_best else "overfit", message, div_numbers)
    reasons = [
        r
        for r in (
            gap,
            ratio,
            div,
            _optimism(curves, e, test_score,
                      cfg.max_r2_optimism if regression else cfg.max_selection_optimism, n_trials),
            _capacity(params_trainable, n_train, cfg.max_params_per_sample, gap or ratio),
            _instability(fold_scores, cfg.max_fold_spread),
            _non_finite(curves),
            _baseline(test_metrics, baseline, cfg.min_baseline_margin),
        )
        if r is not None
    ]
    return Verdict(worst([r.severity for r in reasons]), reasons)
