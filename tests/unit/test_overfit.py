"""The overfitting verdict on constructed learning curves."""

from __future__ import annotations

import json
import math

import pytest

from paramaudit.config import OverfitConfig
from paramaudit.overfit import Curves, Reason, Verdict, assess, divergence, worst

CFG = OverfitConfig()


def flat(n: int = 5, *, train_acc: float = 0.90, val_acc: float = 0.90) -> Curves:
    """Curves where nothing happens: both losses fall together, accuracies are constant."""
    loss = [1.0 - 0.1 * i for i in range(n)]
    return Curves(loss, list(loss), [train_acc] * n, [val_acc] * n)


def run(curves: Curves, cfg: OverfitConfig = CFG, **kw: object) -> Verdict:
    kw.setdefault("params_trainable", 1_000)
    kw.setdefault("n_train", 1_000)
    return assess(curves, cfg, **kw)  # type: ignore[arg-type]


def rules(v: Verdict) -> dict[str, str]:
    return {r.rule: r.severity for r in v.reasons}


# ---------------------------------------------------------------- clean run and shapes


def test_clean_curves_are_ok() -> None:
    v = run(flat())
    assert v.verdict == "ok"
    assert v.reasons == []
    assert v.to_dict() == {"verdict": "ok", "reasons": []}
    assert v.tag_text() == "no rule fired"


def test_to_dict_shape_and_details() -> None:
    v = run(flat(train_acc=1.0, val_acc=0.842))
    d = v.to_dict()
    assert set(d) == {"verdict", "reasons"}
    assert d["verdict"] == "overfit"
    assert all(isinstance(m, str) for m in d["reasons"])
    assert "train accuracy 1.000 - val accuracy 0.842 = 0.158 > max_gap 0.050" in d["reasons"][0]
    json.dumps(d)
    (detail,) = v.details()
    assert detail["rule"] == "gap" and detail["severity"] == "overfit"
    assert detail["numbers"]["gap"] == pytest.approx(0.158)
    json.dumps(v.details(), allow_nan=False)


def test_tag_text_is_bounded() -> None:
    many = [Reason("gap", "warn", "x" * 1000, {}) for _ in range(10)]
    text = Verdict("warn", many).tag_text()
    assert len(text) <= 5000 and text.endswith("...")


def test_worst() -> None:
    assert worst([]) == "ok"
    assert worst(["warn", "ok"]) == "warn"
    assert worst(["warn", "overfit", "ok"]) == "overfit"


# ---------------------------------------------------------------- rule 1: gap, loss ratio


@pytest.mark.parametrize(
    ("val_acc", "expected"),
    [
        (0.976, None),  # gap 0.024 <= max_gap/2 0.025
        (0.974, "warn"),  # gap 0.026 > 0.025
        (0.951, "warn"),  # gap 0.049 <= 0.05
        (0.949, "overfit"),  # gap 0.051 > 0.05
    ],
)
def test_gap_both_sides_of_thresholds(val_acc: float, expected: str | None) -> None:
    v = run(flat(train_acc=1.0, val_acc=val_acc))
    assert rules(v).get("gap") == expected
    assert v.verdict == (expected or "ok")


def test_gap_equal_to_threshold_up_to_rounding_does_not_fire() -> None:
    # 0.90 - 0.85 is 0.05000000000000004 in floats
    v = run(flat(train_acc=0.90, val_acc=0.85))
    assert rules(v).get("gap") == "warn"  # above max_gap/2, not above max_gap


def test_gap_read_at_best_epoch_by_default() -> None:
    # val loss is lowest at epoch 1, where the gap is small; at the last epoch it is large
    c = Curves(
        train_loss=[1.0, 0.8, 0.8, 0.8],
        val_loss=[1.0, 0.5, 0.6, 0.6],
        train_accuracy=[0.8, 0.9, 1.0, 1.0],
        val_accuracy=[0.8, 0.9, 0.8, 0.8],
    )
    assert c.best_epoch() == 1
    assert "gap" not in rules(run(c))
    v = run(c, epoch=3)
    assert rules(v)["gap"] == "overfit"
    assert "epoch 4" in v.reasons[0].message  # messages count epochs from 1
    assert rules(run(c, epoch=-1))["gap"] == "overfit"


def test_loss_ratio_only_when_set() -> None:
    c = Curves([0.5] * 3, [1.0] * 3, [0.9] * 3, [0.9] * 3)  # ratio 2.0
    assert run(c).verdict == "ok"
    below = run(c, OverfitConfig(max_loss_ratio=2.01))
    above = run(c, OverfitConfig(max_loss_ratio=1.99))
    assert "loss_ratio" not in rules(below)
    assert rules(above)["loss_ratio"] == "overfit"
    assert "= 2.00 > max_loss_ratio 1.99" in above.reasons[0].message


def test_loss_ratio_zero_train_loss_is_infinite() -> None:
    c = Curves([0.0] * 2, [0.3] * 2, [1.0] * 2, [1.0] * 2)
    v = run(c, OverfitConfig(max_loss_ratio=3.0))
    assert rules(v)["loss_ratio"] == "overfit"
    assert v.details()[0]["numbers"]["ratio"] is None  # inf made JSON-safe


# ---------------------------------------------------------------- rule 2: divergence


def diverging(rising_epochs: int, *, train_falls: bool = True) -> tuple[list[float], list[float]]:
    """Val loss bottoms out at 0.5 (epoch 2), then `rising_epochs` epochs at 0.6 (+20%)."""
    val = [1.0, 0.7, 0.5] + [0.6] * rising_epochs
    if train_falls:
        train = [1.0, 0.7, 0.5] + [0.4 - 0.05 * i for i in range(rising_epochs)]
    else:
        train = [1.0, 0.7, 0.5] + [0.5] * rising_epochs
    return train, val


def test_divergence_needs_k_consecutive_epochs() -> None:
    assert divergence(*diverging(2), tolerance=0.10, k=3) is None
    msg = divergence(*diverging(3), tolerance=0.10, k=3)
    assert msg is not None
    assert "20.0% above its minimum 0.500 at epoch 3" in msg
    assert "3 consecutive epochs (>= 3)" in msg


def test_divergence_needs_train_loss_falling() -> None:
    assert divergence(*diverging(5, train_falls=False), tolerance=0.10, k=3) is None


def test_divergence_tolerance_both_sides() -> None:
    train, val = diverging(3)  # +20%
    assert divergence(train, val, tolerance=0.21, k=3) is None
    assert divergence(train, val, tolerance=0.19, k=3) is not None


def test_divergence_streak_must_be_consecutive() -> None:
    val = [1.0, 0.5, 0.6, 0.6, 0.54, 0.6, 0.6]  # the dip to 0.54 (+8%) breaks the run
    train = [1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    assert divergence(train, val, 0.10, 3) is None
    assert divergence(train, val, 0.10, 2) is not None


def test_divergence_new_minimum_resets() -> None:
    # a bump the model recovers from to a new minimum is not divergence
    val = [1.0, 0.5, 0.6, 0.6, 0.6, 0.4, 0.41]
    train = [1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    assert divergence(train, val, 0.10, 3) is None


def test_divergence_on_partial_curves_like_a_stopper() -> None:
    train, val = diverging(4)
    fired = [divergence(train[:n], val[:n], 0.10, 3) is not None for n in range(len(val) + 1)]
    # fires first once the third rising epoch has been seen (index 5, prefix length 6)
    assert fired == [False] * 6 + [True] * (len(val) - 5)


def test_divergence_edge_cases() -> None:
    assert divergence([], [], 0.1, 3) is None
    assert divergence([0.5], [0.5], 0.0, 1) is None  # a single epoch cannot diverge
    assert divergence([0.5, 0.4], [0.5, math.nan], 0.1, 1) is None  # NaN breaks a run
    with pytest.raises(ValueError, match="train_loss has 2 epochs, val_loss 1"):
        divergence([1.0, 0.5], [1.0], 0.1, 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        divergence([1.0], [1.0], 0.1, 0)


def test_divergence_in_verdict_is_overfit() -> None:
    train, val = diverging(3)
    n = len(val)
    v = run(Curves(train, val, [0.9] * n, [0.9] * n))
    assert rules(v) == {"divergence": "overfit"}
    assert v.verdict == "overfit"
    k4 = run(Curves(train, val, [0.9] * n, [0.9] * n), OverfitConfig(divergence_epochs=4))
    assert k4.verdict == "ok"


# ---------------------------------------------------------------- rule 3: selection optimism


def test_selection_optimism_both_sides() -> None:
    c = flat(train_acc=0.90, val_acc=0.90)
    assert run(c, test_accuracy=0.871).verdict == "ok"  # 0.029
    v = run(c, test_accuracy=0.869, n_trials=64)  # 0.031
    assert rules(v) == {"selection_optimism": "warn"}
    assert v.verdict == "warn"
    assert "= 0.031 > max_selection_optimism 0.030" in v.reasons[0].message
    assert "64 trials" in v.reasons[0].message
    assert v.reasons[0].numbers["n_trials"] == 64
    assert "more trials" in run(c, test_accuracy=0.80).reasons[0].message


# ---------------------------------------------------------------- rule 4: capacity


def test_capacity_both_sides_and_alone_is_warn() -> None:
    c = flat()
    assert run(c, params_trainable=100_000, n_train=1_000).verdict == "ok"  # exactly 100
    v = run(c, params_trainable=100_100, n_train=1_000)  # 100.1
    assert rules(v) == {"capacity": "warn"}
    assert "100,100 trainable parameters / 1,000 training samples = 100.1" in v.reasons[0].message


def test_capacity_with_gap_is_overfit() -> None:
    # the gap alone is a warn (0.03 > 0.025); with too many parameters per sample it is overfit
    c = flat(train_acc=0.93, val_acc=0.90)
    assert run(c).verdict == "warn"
    v = run(c, params_trainable=500_000, n_train=1_000)
    assert rules(v) == {"gap": "warn", "capacity": "overfit"}
    assert v.verdict == "overfit"


def test_capacity_with_loss_ratio_is_overfit() -> None:
    c = Curves([0.5] * 3, [1.0] * 3, [0.9] * 3, [0.9] * 3)
    v = run(c, OverfitConfig(max_loss_ratio=1.5), params_trainable=500_000, n_train=1_000)
    assert rules(v) == {"loss_ratio": "overfit", "capacity": "overfit"}


# ---------------------------------------------------------------- rule 5: instability


def test_fold_spread_both_sides() -> None:
    c = flat()
    # population std of [m - d, m + d] is d
    assert run(c, fold_scores=[0.85, 0.949]).verdict == "ok"  # 0.0495
    v = run(c, fold_scores=[0.85, 0.952])  # 0.051
    assert rules(v) == {"instability": "warn"}
    assert "std 0.051 > max_fold_spread 0.050" in v.reasons[0].message
    assert run(c, fold_scores=[0.5]).verdict == "ok"  # one fold has no spread
    assert rules(run(c, fold_scores=[0.9, math.nan])) == {"instability": "warn"}


# ---------------------------------------------------------------- verdict and edge cases


def test_verdict_is_worst_severity() -> None:
    c = flat(train_acc=1.0, val_acc=0.80)  # gap overfit
    v = run(c, test_accuracy=0.5, fold_scores=[0.5, 0.9])
    assert rules(v) == {"gap": "overfit", "selection_optimism": "warn", "instability": "warn"}
    assert v.verdict == "overfit"
    assert len(v.to_dict()["reasons"]) == 3


def test_non_finite_loss_is_a_warning() -> None:
    c = Curves([1.0, 0.5, math.nan], [1.0, 0.6, math.inf], [0.9] * 3, [0.9] * 3)
    v = run(c)
    assert rules(v) == {"non_finite": "warn"}
    assert v.verdict == "warn"
    assert v.reasons[0].message.startswith("non-finite loss at epoch 3")
    assert c.best_epoch() == 1


def test_all_nan_val_loss_still_gives_a_verdict() -> None:
    c = Curves([math.nan] * 3, [math.nan] * 3, [0.1] * 3, [0.1] * 3)
    assert c.best_epoch() == 2
    assert run(c).verdict == "warn"


def test_single_epoch() -> None:
    c = Curves([0.5], [0.9], [1.0], [1.0])
    assert run(c, OverfitConfig(divergence_epochs=1)).verdict == "ok"


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="learning curves are empty"):
        Curves([], [], [], [])
    with pytest.raises(ValueError, match="differ in length"):
        Curves([1.0, 0.5], [1.0], [0.5], [0.5])
    with pytest.raises(ValueError, match="outside the curves' 5 epochs"):
        run(flat(), epoch=5)
    with pytest.raises(ValueError, match="n_train"):
        run(flat(), n_train=0)
    with pytest.raises(ValueError, match="params_trainable"):
        run(flat(), params_trainable=-1)


def test_divergence_after_restored_best_weights_only_warns() -> None:
    train, val = diverging(3)
    n = len(val)
    curves = Curves(train, val, [0.9] * n, [0.9] * n)
    v = assess(curves, OverfitConfig(), params_trainable=10, n_train=100, restored_best=True)
    assert rules(v) == {"divergence": "warn"}
    assert "restored by early stopping" in v.reasons[0].message


# ---------------------------------------------------------------- the majority baseline


def _scores(bal: float) -> dict[str, float]:
    return {"balanced_accuracy": bal, "accuracy": 0.97}


BASELINE = {"balanced_accuracy": 0.5, "accuracy": 0.97, "predicts": "no"}


def test_no_better_than_the_baseline_is_a_warn_that_says_so() -> None:
    v = run(flat(), test_metrics=_scores(0.5), baseline=BASELINE)
    assert v.verdict == "warn" and rules(v) == {"baseline": "warn"}
    (reason,) = v.to_dict()["reasons"]
    assert reason.startswith("no better than always predicting 'no' (balanced accuracy 0.50 vs "
                             "baseline 0.50")
    assert v.no_better_than_baseline is not None and v.fired("baseline") is v.reasons[0]
    assert v.details()[0]["numbers"]["min_baseline_margin"] == pytest.approx(0.02)


def test_beating_the_baseline_by_the_margin_fires_nothing() -> None:
    v = run(flat(), test_metrics=_scores(0.9), baseline=BASELINE)
    assert v.verdict == "ok" and v.no_better_than_baseline is None
    # the margin is the config's
    strict = OverfitConfig(min_baseline_margin=0.5)
    assert rules(run(flat(), strict, test_metrics=_scores(0.9), baseline=BASELINE)) == {
        "baseline": "warn"}
    # at the margin exactly: passes
    assert run(flat(), test_metrics=_scores(0.52), baseline=BASELINE).verdict == "ok"


def test_baseline_rule_needs_both_metrics() -> None:
    assert run(flat(), test_metrics=_scores(0.5)).verdict == "ok"
    assert run(flat(), baseline=BASELINE).verdict == "ok"


def test_an_overfit_model_no_better_than_the_baseline_is_overfit_with_both_reasons() -> None:
    v = run(flat(train_acc=1.0, val_acc=0.8), test_metrics=_scores(0.5), baseline=BASELINE)
    assert v.verdict == "overfit" and rules(v) == {"gap": "overfit", "baseline": "warn"}
