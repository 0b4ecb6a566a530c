"""Capacity against generalisation on hand-made trial tables."""

from __future__ import annotations

import math
from pathlib import Path

from paramaudit.capacity import TrialPoint, gap_onset, pareto_front, plot_capacity, summary_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tp(tid: str, params: int, train: float, val: float) -> TrialPoint:
    return TrialPoint(tid, params, train, val, hyperparameters={"hidden_size": params})


# a table where a: small & poor, b: bigger & better, c: dominated by b, d: best val loss,
# e: bigger than d and no better (dominated), f: ties b exactly (neither dominates the other),
# x: failed trial with NaN loss (never on the front)
TABLE = [
    tp("a", 100, 0.50, 0.60),
    tp("b", 1_000, 0.30, 0.40),
    tp("c", 2_000, 0.20, 0.45),
    tp("d", 5_000, 0.10, 0.35),
    tp("e", 9_000, 0.05, 0.35),
    tp("f", 1_000, 0.25, 0.40),
    tp("x", 50, math.nan, math.nan),
]


def test_pareto_front_exact_membership() -> None:
    front = pareto_front(TABLE)
    # sorted by parameter count; the exact tie b/f is ordered by trial id
    assert [p.trial_id for p in front] == ["a", "b", "f", "d"]


def test_pareto_front_edge_cases() -> None:
    assert pareto_front([]) == []
    assert pareto_front([tp("x", 10, math.nan, 0.5)]) == []
    only = tp("o", 10, 0.1, 0.2)
    assert pareto_front([only]) == [only]


def growing_table() -> list[TrialPoint]:
    """Gap ~0.01 up to 2,000 parameters, then ~0.3 from 10,000 on; two trials per size."""
    rows = []
    for params, gap in [(100, 0.010), (500, 0.012), (2_000, 0.011),
                        (10_000, 0.25), (50_000, 0.30), (200_000, 0.40)]:
        for j, train in enumerate((0.20, 0.30)):
            rows.append(tp(f"{params}-{j}", params, train, train + gap))
    return rows


def test_gap_onset_finds_the_growth() -> None:
    onset = gap_onset(growing_table())
    assert onset is not None
    assert onset["params"] == 10_000
    assert abs(onset["gap_before"] - 0.011) < 1e-9
    assert abs(onset["gap_after"] - 0.30) < 1e-9
    assert onset["gap_after"] > onset["threshold"] > onset["gap_before"]
    assert "10,000 trainable parameters" in onset["message"]


def test_gap_onset_none_when_flat_or_single_outlier() -> None:
    flat = [tp(str(p), p, 0.2, 0.21) for p in (100, 500, 2_000, 10_000, 50_000)]
    assert gap_onset(flat) is None
    # one large gap in the middle, small again after: no sustained growth
    spike = [tp(str(p), p, 0.2, 0.2 + g) for p, g in
             [(100, 0.01), (500, 0.01), (2_000, 0.5), (10_000, 0.01), (50_000, 0.01)]]
    assert gap_onset(spike) is None
    assert gap_onset(growing_table()[:4]) is None  # fewer than three sizes
    # failed trials are ignored
    assert gap_onset(flat + [tp("nan", 10**6, math.nan, math.nan)]) is None


def test_summary_table_rows() -> None:
    rows = summary_table(TABLE, chosen_id="d")
    assert [r["trial_id"] for r in rows] == ["x", "a", "b", "f", "c", "d", "e"]
    assert set(rows[0]) == {"trial_id", "params_trainable", "train_loss", "val_loss", "gap",
                            "on_pareto_front", "chosen"}
    by_id = {r["trial_id"]: r for r in rows}
    assert math.isnan(by_id["x"]["gap"]) and not by_id["x"]["on_pareto_front"]
    assert abs(by_id["c"]["gap"] - 0.25) < 1e-9
    assert [r["trial_id"] for r in rows if r["on_pareto_front"]] == ["a", "b", "f", "d"]
    assert [r["trial_id"] for r in rows if r["chosen"]] == ["d"]
    assert not any(r["chosen"] for r in summary_table(TABLE, chosen_id=None))


def test_plot_writes_png(tmp_path: Path) -> None:
    out = plot_capacity(growing_table() + TABLE, "d", tmp_path / "sub" / "capacity.png")
    assert out == tmp_path / "sub" / "capacity.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1_000


def test_plot_with_no_finite_trials(tmp_path: Path) -> None:
    out = plot_capacity([tp("x", 10, math.nan, math.nan)], None, tmp_path / "empty.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
