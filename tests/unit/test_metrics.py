"""Metrics that cannot flatter: hand-computed cases, the majority baseline, the rule that compares."""

from __future__ import annotations

import math
import typing
from pathlib import Path

import numpy as np
import pytest

from paramaudit.config import SearchConfig
from paramaudit.metrics import (
    SEARCH_METRICS,
    classification_metrics,
    compare_to_baseline,
    comparison_markdown,
    confusion_markdown,
    confusion_rows,
    epoch_scores,
    majority_baseline,
    metric_mode,
    plot_confusion,
    scalar_metrics,
    softmax,
)

# ---------------------------------------------------------------- hand-computed cases


def test_binary_by_hand() -> None:
    y = [0, 0, 1, 1]
    p1 = np.array([0.1, 0.6, 0.4, 0.9])
    m = classification_metrics(y, np.c_[1 - p1, p1], ["no", "yes"])
    # predictions 0, 1, 0, 1: one of each class right
    assert m["n"] == 4
    assert m["accuracy"] == 0.5 and m["balanced_accuracy"] == 0.5
    assert m["f1_macro"] == pytest.approx(0.5)
    # positives 0.4, 0.9 against negatives 0.1, 0.6: 3 of the 4 pairs ranked right
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["log_loss"] == pytest.approx(-(2 * math.log(0.9) + 2 * math.log(0.4)) / 4)
    assert m["confusion"] == {"labels": ["no", "yes"], "matrix": [[1, 1], [1, 1]]}
    assert m["per_class"]["yes"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


def test_multiclass_by_hand_keyed_by_label() -> None:
    y = [0, 0, 1, 1, 2, 2]
    proba = np.array([[0.8, 0.1, 0.1],   # cat -> cat
                      [0.2, 0.7, 0.1],   # cat -> dog
                      [0.1, 0.8, 0.1],   # dog -> dog
                      [0.1, 0.6, 0.3],   # dog -> dog
                      [0.1, 0.2, 0.7],   # eel -> eel
                      [0.5, 0.2, 0.3]])  # eel -> cat
    m = classification_metrics(y, proba, ["cat", "dog", "eel"])
    assert m["confusion"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    pc = m["per_class"]
    assert list(pc) == ["cat", "dog", "eel"]
    assert pc["cat"]["precision"] == pytest.approx(0.5) and pc["cat"]["recall"] == 0.5
    assert pc["dog"]["precision"] == pytest.approx(2 / 3) and pc["dog"]["recall"] == 1.0
    assert pc["eel"]["precision"] == 1.0 and pc["eel"]["recall"] == 0.5
    f1 = [0.5, 0.8, 2 / 3]
    assert m["f1_macro"] == pytest.approx(sum(f1) / 3)
    assert 0.5 < m["roc_auc"] <= 1.0


def test_a_class_missing_from_the_split_gives_no_auc_and_no_crash() -> None:
    y = [0, 0, 1, 1]  # no "eel" in this split
    proba = softmax(np.array([[2.0, 0, 0], [0, 1, 0], [0, 2, 0], [0, 0, 1.0]]))
    m = classification_metrics(y, proba, ["cat", "dog", "eel"])
    assert m["roc_auc"] is None
    assert m["per_class"]["eel"]["support"] == 0 and m["per_class"]["eel"]["recall"] == 0.0
    assert m["confusion"]["matrix"][2] == [0, 0, 0]
    assert math.isfinite(m["balanced_accuracy"]) and math.isfinite(m["log_loss"])
    assert math.isnan(epoch_scores(np.array(y), proba)["roc_auc"])
    # a binary split with one class: the same
    assert classification_metrics([1, 1], [[0.3, 0.7], [0.6, 0.4]], ["a", "b"])["roc_auc"] is None


@pytest.mark.parametrize(("n", "k", "ties"), [(200, 2, False), (300, 5, True), (57, 3, True),
                                              (500, 10, False)])
def test_the_per_epoch_numpy_scores_equal_scikit_learns(n: int, k: int, ties: bool) -> None:
    rng = np.random.default_rng(n)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + np.eye(k)[y]
    if ties:
        logits = np.round(logits, 1)
    proba = softmax(logits)
    fast = epoch_scores(y, proba)
    full = classification_metrics(y, proba, [f"c{i}" for i in range(k)])
    for key in ("balanced_accuracy", "f1_macro", "roc_auc"):
        assert fast[key] == pytest.approx(full[key], abs=1e-12), key


def test_json_ready() -> None:
    import json

    m = classification_metrics([0, 1, 1], [[0.6, 0.4], [0.3, 0.7], [0.2, 0.8]], [0, 1])
    json.dumps(m, allow_nan=False)
    assert list(m["per_class"]) == ["0", "1"]  # labels as strings


# ---------------------------------------------------------------- the majority baseline


def test_majority_baseline_on_a_97_to_3_table() -> None:
    y_train = np.array([0] * 970 + [1] * 30)
    y_test = np.array([0] * 97 + [1] * 3)
    b = majority_baseline(y_train, y_test, ["no", "yes"])
    assert b["predicts"] == "no" and b["predicts_share"] == pytest.approx(0.97)
    assert b["accuracy"] == pytest.approx(0.97)  # what accuracy alone would praise
    assert b["balanced_accuracy"] == pytest.approx(0.5)
    assert b["f1_macro"] == pytest.approx((2 * 0.97 / 1.97 + 0) / 2)
    assert b["roc_auc"] == pytest.approx(0.5)
    assert b["log_loss"] == pytest.approx(-(0.97 * math.log(0.97) + 0.03 * math.log(0.03)))
    assert b["per_class"]["yes"]["recall"] == 0.0
    assert b["confusion"]["matrix"] == [[97, 0], [3, 0]]


def test_beats_baseline_both_ways() -> None:
    y_train, y_test = np.array([0] * 970 + [1] * 30), np.array([0] * 97 + [1] * 3)
    base = majority_baseline(y_train, y_test, ["no", "yes"])
    # a model that always says no, with some confidence, is no better than the baseline
    always_no = classification_metrics(y_test, np.tile([0.9, 0.1], (100, 1)), ["no", "yes"])
    assert always_no["accuracy"] == pytest.approx(0.97)
    cmp = compare_to_baseline(always_no, base, 0.02)
    assert not cmp.beats
    assert cmp.message.startswith(
        "no better than always predicting 'no' (balanced accuracy 0.50 vs baseline 0.50")
    assert cmp.numbers()["gain"] == pytest.approx(0.0)
    # one that finds 2 of the 3 positives at the cost of 3 false alarms beats it
    proba = np.tile([0.9, 0.1], (100, 1))
    proba[[97, 98, 0, 1, 2]] = [0.2, 0.8]
    good = classification_metrics(y_test, proba, ["no", "yes"])
    cmp = compare_to_baseline(good, base, 0.02)
    assert cmp.beats and cmp.message.startswith("beats always predicting 'no'")
    # the margin: a gain equal to it passes, a gain just below it does not
    assert compare_to_baseline({"balanced_accuracy": 0.52}, base, 0.02).beats
    assert not compare_to_baseline({"balanced_accuracy": 0.519}, base, 0.02).beats
    assert compare_to_baseline(always_no, base, 0.0).beats


# ---------------------------------------------------------------- search metrics


def test_every_search_metric_has_its_direction() -> None:
    assert {m: metric_mode(m) for m in SEARCH_METRICS} == {
        "val_loss": "min", "val_accuracy": "max", "val_balanced_accuracy": "max",
        "val_f1_macro": "max", "val_roc_auc": "max", "val_log_loss": "min",
        "val_rmse": "min", "val_mae": "min", "val_r2": "max"}
    with pytest.raises(ValueError, match="unknown search metric"):
        metric_mode("val_precision")
    # the config accepts exactly these, and the search reads the same table
    from paramaudit.search import metric_mode as search_mode

    assert set(typing.get_args(SearchConfig.model_fields["metric"].annotation)) == set(SEARCH_METRICS)
    assert all(search_mode(m) == metric_mode(m) for m in SEARCH_METRICS)
    assert SearchConfig().metric == "val_loss"
    assert SearchConfig(metric="val_balanced_accuracy").metric == "val_balanced_accuracy"


def test_runner_picks_the_best_trial_in_each_metrics_direction() -> None:
    from paramaudit.config import build_config
    from paramaudit.search.records import TrialRecord
    from paramaudit.search.runner import _outcome

    def trial(n: int, loss: float, bal: float) -> TrialRecord:
        rec = TrialRecord(f"t{n}", n, {"learning_rate": 0.01 * n}, status="TERMINATED")
        for m, v in (("train_loss", loss), ("val_loss", loss), ("val_log_loss", loss),
                     ("train_accuracy", 0.9), ("val_accuracy", 0.9),
                     ("val_balanced_accuracy", bal)):
            rec.history[m].append(v)
        return rec

    records = [trial(1, 0.3, 0.55), trial(2, 0.5, 0.80)]
    for metric, best in (("val_loss", "t1"), ("val_log_loss", "t1"),
                         ("val_balanced_accuracy", "t2")):
        cfg = build_config({"search": {"metric": metric}})
        assert _outcome(records, cfg, "mlp", 0.0, 0.0).best_trial_id == best, metric


# ---------------------------------------------------------------- views


def test_confusion_views(tmp_path: Path) -> None:
    m = classification_metrics([0, 1, 1], [[0.6, 0.4], [0.7, 0.3], [0.2, 0.8]], ["no", "yes"])
    rows = confusion_rows(m["confusion"])
    assert rows == [{"true \\ predicted": "no", "no": 1, "yes": 0},
                    {"true \\ predicted": "yes", "no": 1, "yes": 1}]
    md = confusion_markdown(m["confusion"])
    assert md.splitlines()[0] == "| true \\ predicted | no | yes |"
    assert "| **yes** | 1 | 1 |" in md
    out = plot_confusion(m["confusion"], tmp_path / "cm.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    base = majority_baseline([0, 0, 1], [0, 1, 1], ["no", "yes"])
    table = comparison_markdown(m, base)
    assert "| balanced accuracy | 0.7500 | 0.5000 |" in table and "always 'no'" in table
    assert scalar_metrics(base, "baseline")["baseline_balanced_accuracy"] == 0.5
    assert "test_roc_auc" not in scalar_metrics({"accuracy": 1.0, "roc_auc": None}, "test")
