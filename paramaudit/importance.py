"""Which hyperparameters mattered: rank them by their importance to the val score.

Pure logic over a finished search's trial table plus one plot; no torch, Prefect, MLflow or
Ray here. The input is one row per trial: a column per hyperparameter (numbers, or categories as
strings/bools) and the score column. Nothing here concerns the model's parameters (the weights
training learns); only the hyperparameters a trial was started with.

Methods
-------
``fanova``
    Optuna's fANOVA evaluator on an in-memory study built from the table: the share of the
    score's variance each hyperparameter explains on its own.
``forest``
    a random forest (200 trees) on the hyperparameters (categoricals one-hot encoded inside a
    pipeline), and permutation importance per hyperparameter: the mean drop in R^2 over 10
    shuffles of that hyperparameter's column. A hyperparameter's one-hot columns are shuffled
    together, so nothing needs to be summed back. When every permutation importance is <= 0
    (the forest explains nothing) the impurity importances, summed over each hyperparameter's
    one-hot columns, stand in.
``auto``
    fanova when there are >= 2 varying hyperparameters and >= 4 trials and it succeeds,
    otherwise forest.

Rows with a NaN/inf score (failed or skipped trials) are dropped. Hyperparameters that take a
single value over the usable trials cannot explain anything: they are not ranked but are kept at
the bottom of the result with importance 0, ``rank`` <NA> and ``kind`` "constant". Importances of
the ranked hyperparameters are non-negative and sum to 1. Fewer than 3 usable trials, no varying
hyperparameter or a constant score raise ``ValueError`` with a one-line message.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

METHODS = ("auto", "fanova", "forest")
MIN_TRIALS = 3  # below this no ranking is attempted
MIN_FANOVA_TRIALS = 4  # auto picks fanova from here on (with >= 2 varying hyperparameters)
LOG_DECADES = 2.0  # a positive column spanning more than this many decades is log-distributed
FOREST_TREES = 200
PERMUTATION_REPEATS = 10
TOP_PLOTTED = 8
MISSING = "(missing)"  # the category a missing categorical value becomes

COLUMNS = ["rank", "hyperparameter", "importance", "method", "n_trials", "kind"]


@dataclass(frozen=True)
class _Column:
    """How one hyperparameter column is treated."""

    name: str
    kind: str  # "float", "int", "categorical" or "constant"
    log: bool = False
    choices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The kind as reported: "log-float"/"log-int" for log-distributed numbers."""
        return f"log-{self.kind}" if self.log else self.kind


# -- preparing the table --------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v))


def _as_category(v: Any) -> str:
    return MISSING if _is_missing(v) else str(v)


def _classify(name: str, values: pd.Series) -> tuple[_Column, pd.Series]:
    """Decide how a hyperparameter column is treated and return its cleaned values."""
    present = [v for v in values.tolist() if not _is_missing(v)]
    numeric = bool(present) and all(_is_number(v) for v in present)
    if numeric:
        nums = pd.to_numeric(values, errors="coerce").astype(float)
        finite = nums[np.isfinite(nums)]
        if finite.empty:
            return _Column(name, "constant"), values.map(_as_category)
        # a missing or infinite value becomes the median: the column stays numeric for both
        # methods (fanova needs every trial to carry every hyperparameter)
        nums = nums.where(np.isfinite(nums), float(finite.median()))
        lo, hi = float(nums.min()), float(nums.max())
        if lo == hi:
            return _Column(name, "constant"), nums
        is_int = bool(np.all(np.mod(nums.to_numpy(), 1.0) == 0.0))
        log = lo > 0 and math.log10(hi / lo) > LOG_DECADES
        if is_int:
            return _Column(name, "int", log=log), nums.astype(np.int64)
        return _Column(name, "float", log=log), nums
    cats = values.map(_as_category)
    choices = tuple(sorted(set(cats.tolist())))
    if len(choices) < 2:
        return _Column(name, "constant"), cats
    return _Column(name, "categorical", choices=choices), cats


def _prepare(trials: pd.DataFrame, score: str) -> tuple[pd.DataFrame, np.ndarray, list[_Column], int]:
    """Usable rows (finite score), their cleaned hyperparameter columns, the score vector, the
    column descriptions and how many rows were dropped."""
    if not isinstance(trials, pd.DataFrame):
        raise TypeError(f"trials must be a pandas DataFrame, not {type(trials).__name__}")
    if score not in trials.columns:
        raise ValueError(f"score column {score!r} not in the trial table (columns: {list(trials.columns)})")
    y_all = pd.to_numeric(trials[score], errors="coerce").astype(float).to_numpy()
    keep = np.isfinite(y_all)
    dropped = int((~keep).sum())
    usable = trials.loc[keep].reset_index(drop=True)
    y = y_all[keep]
    if len(usable) < MIN_TRIALS:
        raise ValueError(
            f"cannot rank hyperparameters: {len(usable)} trial(s) with a finite {score!r} "
            f"({dropped} dropped), at least {MIN_TRIALS} needed"
        )
    columns: list[_Column] = []
    cleaned: dict[str, pd.Series] = {}
    for name in trials.columns:
        if name == score:
            continue
        col, values = _classify(str(name), usable[name])
        columns.append(col)
        cleaned[str(name)] = values
    return pd.DataFrame(cleaned), y, columns, dropped


# -- the two methods ------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs at WARNING and above only, and its warnings are muted, for the duration."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(before)


def _distribution(col: _Column, values: pd.Series) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if col.kind == "float":
        return FloatDistribution(float(values.min()), float(values.max()), log=col.log)
    if col.kind == "int":
        return IntDistribution(int(values.min()), int(values.max()), log=col.log)
    return CategoricalDistribution(list(col.choices))


def _fanova(x: pd.DataFrame, y: np.ndarray, columns: list[_Column], seed: int,
            higher_is_better: bool) -> dict[str, float]:
    import optuna

    with _quiet_optuna():
        dists = {c.name: _distribution(c, x[c.name]) for c in columns}
        study = optuna.create_study(direction="maximize" if higher_is_better else "minimize",
                                    sampler=optuna.samplers.RandomSampler(seed=seed))
        for i in range(len(x)):
            params: dict[str, Any] = {}
            for c in columns:
                v = x[c.name].iat[i]
                params[c.name] = int(v) if c.kind == "int" else float(v) if c.kind == "float" else str(v)
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(y[i])))
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        raw = evaluator.evaluate(study, params=[c.name for c in columns])
    return {c.name: float(raw[c.name]) for c in columns}


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot


def _forest(x: pd.DataFrame, y: np.ndarray, columns: list[_Column], seed: int) -> dict[str, float]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    names = [c.name for c in columns]
    cats = [c.name for c in columns if c.kind == "categorical"]
    frame = x[names].copy()
    for c in columns:
        frame[c.name] = frame[c.name].astype(str) if c.kind == "categorical" else frame[c.name].astype(float)
    encode = ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cats)],
        remainder="passthrough", verbose_feature_names_out=False,
    )
    forest = RandomForestRegressor(n_estimators=FOREST_TREES, random_state=seed, n_jobs=1)
    model = Pipeline([("encode", encode), ("forest", forest)]).fit(frame, y)

    # Permutation importance, as sklearn.inspection.permutation_importance computes it with the
    # R^2 scorer, but every shuffled copy goes through one predict call: 200 trees per call make
    # the per-call overhead dominate on tables this small. The raw columns are shuffled, so a
    # categorical's one-hot columns move together.
    rng = np.random.default_rng(seed)
    n = len(frame)
    copies = []
    for _ in range(PERMUTATION_REPEATS):
        for name in names:
            shuffled = frame.copy()
            shuffled[name] = frame[name].to_numpy()[rng.permutation(n)]
            copies.append(shuffled)
    pred = model.predict(pd.concat([frame, *copies], ignore_index=True))
    base = _r2(y, pred[:n])
    drops = np.array([base - _r2(y, pred[n * (k + 1): n * (k + 2)]) for k in range(len(copies))])
    mean_drop = drops.reshape(PERMUTATION_REPEATS, len(names)).mean(axis=0)
    scores = {name: max(0.0, float(v)) for name, v in zip(names, mean_drop, strict=True)}
    if sum(scores.values()) > 0:
        return scores
    # nothing survives shuffling: fall back to impurity importance, summed per hyperparameter
    encoded = list(encode.get_feature_names_out())
    owner = {f: next((c for c in cats if f.startswith(f"{c}_")), f) for f in encoded}
    impurity = dict.fromkeys(names, 0.0)
    for feature, value in zip(encoded, forest.feature_importances_, strict=True):
        impurity[owner[feature]] += float(value)
    return impurity


# -- choosing a method and building the ranking ---------------------------------------------------
def _pick_method(method: str, varying: list[_Column], n: int) -> tuple[str, str | None]:
    """The method to try and, when auto does not pick fanova, why (else None)."""
    if method != "auto":
        return method, None
    if len(varying) < 2:
        return "forest", "fewer than 2 varying hyperparameters"
    if n < MIN_FANOVA_TRIALS:
        return "forest", f"fewer than {MIN_FANOVA_TRIALS} trials"
    return "fanova", None


def _raw_importances(x: pd.DataFrame, y: np.ndarray, varying: list[_Column], method: str, seed: int,
                     higher_is_better: bool) -> tuple[dict[str, float], str, str | None]:
    """Unnormalised importances, the method actually used and why auto fell back (or None)."""
    used, fallback = _pick_method(method, varying, len(y))
    if used == "fanova":
        try:
            raw = _fanova(x, y, varying, seed, higher_is_better)
            if sum(v for v in raw.values() if math.isfinite(v) and v > 0) <= 0:
                raise ValueError("it attributed none of the variance")
            return raw, used, fallback
        except Exception as exc:  # any failure of fanova: auto uses the forest, fanova says why
            reason = f"fanova failed: {type(exc).__name__}: {exc}".splitlines()[0]
            if method == "fanova":  # the caller catches ValueError and skips the ranking
                raise ValueError(f"cannot rank hyperparameters: {reason}") from exc
            fallback = reason
    return _forest(x, y, varying, seed), "forest", fallback


def _ranking_rows(raw: dict[str, float], varying: list[_Column], constant: list[_Column], used: str,
                  n: int, score: str) -> list[dict[str, Any]]:
    """Rows of the ranking: the varying hyperparameters by share of importance, then the constant
    ones by name."""
    clipped = {k: (max(0.0, v) if math.isfinite(v) else 0.0) for k, v in raw.items()}
    total = sum(clipped.values())
    if total <= 0:
        raise ValueError(f"cannot rank hyperparameters: {used} attributed none of the variance of {score!r}")
    # ties broken by name so that equal importances always come out in the same order
    order = sorted(varying, key=lambda c: (-clipped[c.name], c.name))
    rows = [
        {"rank": i + 1, "hyperparameter": c.name, "importance": clipped[c.name] / total,
         "method": used, "n_trials": n, "kind": c.label}
        for i, c in enumerate(order)
    ]
    rows += [
        {"rank": pd.NA, "hyperparameter": c.name, "importance": 0.0, "method": used,
         "n_trials": n, "kind": "constant"}
        for c in sorted(constant, key=lambda c: c.name)
    ]
    return rows


# -- plotting -------------------------------------------------------------------------------------
def _ranked_for_plot(ranking: pd.DataFrame) -> tuple[list[str], list[float], str]:
    """Names and importances of the ranked hyperparameters, most important first, and the method."""
    ranked = ranking[ranking["rank"].notna()] if "rank" in ranking else ranking
    ranked = ranked.sort_values("importance", ascending=False, kind="stable")
    names = [str(h) for h in ranked["hyperparameter"]]
    importances = [float(v) for v in ranked["importance"]]
    method = str(ranked["method"].iloc[0]) if len(ranked) and "method" in ranked else "?"
    return names, importances, method


def _draw_importance_bars(ax: Axes, names: list[str], importances: list[float],
                          constant: list[str]) -> None:
    """Horizontal importance bars, labelled with their values; the constant ones are named below."""
    ypos = list(range(len(names)))
    ax.barh(ypos, importances, color="#4c72b0")
    ax.set_yticks(ypos, names, fontsize=9)
    ax.invert_yaxis()  # most important on top
    ax.set_xlim(0, max(importances + [0.0]) * 1.15 or 1.0)
    for pos, v in zip(ypos, importances, strict=True):
        ax.text(v, pos, f" {v:.2f}", va="center", fontsize=8)
    xlabel = "importance (sums to 1)"
    if constant:
        listed = ", ".join(constant[:6]) + (f" and {len(constant) - 6} more" if len(constant) > 6 else "")
        xlabel += f"; constant over the trials, not ranked: {listed}"
    ax.set_xlabel(xlabel)


def _scatter_values(sub: Axes, col: _Column, values: pd.Series, y: np.ndarray,
                    rng: np.random.Generator) -> None:
    """One hyperparameter's values against the score: categories jittered, log x if log-distributed."""
    if col.kind == "categorical":
        pos = {c: k for k, c in enumerate(col.choices)}
        xs = np.array([pos[v] for v in values], dtype=float)
        xs = xs + rng.uniform(-0.15, 0.15, size=len(xs))
        sub.set_xticks(range(len(col.choices)), [c[:12] for c in col.choices], fontsize=8,
                       rotation=30 if len(col.choices) > 3 else 0)
        sub.set_xlim(-0.5, len(col.choices) - 0.5)
    else:
        xs = values.to_numpy(dtype=float)
        if col.log:
            sub.set_xscale("log")
    sub.scatter(xs, y, s=14, alpha=0.7, color="tab:orange", edgecolors="none")


# -- the public API -------------------------------------------------------------------------------
def rank_hyperparameters(trials: pd.DataFrame, score: str = "val_score", higher_is_better: bool = False,
                         method: str = "auto", seed: int = 0) -> pd.DataFrame:
    """Rank the hyperparameters by their importance to ``score`` over the trials.

    Returns a DataFrame sorted by importance (descending) with columns ``rank`` (1 = most
    important; <NA> for constant hyperparameters), ``hyperparameter``, ``importance``
    (non-negative, summing to 1 over the ranked ones), ``method`` (the one actually used),
    ``n_trials`` (usable trials) and ``kind`` ("float", "log-float", "int", "log-int",
    "categorical" or "constant"). ``attrs`` carries ``score``, ``dropped_trials``, ``constant``
    (names), and ``fallback`` (why auto did not use fanova, or None).

    ``higher_is_better`` only sets the direction of the optuna study; importance is about how
    much the score varies, not which way. Raises ``ValueError`` (one line) when no ranking is
    possible: fewer than 3 trials with a finite score, no varying hyperparameter, a constant score
    or an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown importance method {method!r}; use one of {', '.join(METHODS)}")
    x, y, columns, dropped = _prepare(trials, score)
    varying = [c for c in columns if c.kind != "constant"]
    constant = [c for c in columns if c.kind == "constant"]
    n = len(y)
    if not varying:
        raise ValueError(f"cannot rank hyperparameters: none varies over the {n} usable trials")
    if float(np.ptp(y)) == 0.0:
        raise ValueError(f"cannot rank hyperparameters: {score!r} is the same in all {n} usable trials")

    raw, used, fallback = _raw_importances(x, y, varying, method, seed, higher_is_better)
    rows = _ranking_rows(raw, varying, constant, used, n, score)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["rank"] = out["rank"].astype("Int64")
    out["importance"] = out["importance"].astype(float)
    out["n_trials"] = out["n_trials"].astype(int)
    out.attrs.update(score=score, dropped_trials=dropped, constant=[c.name for c in constant],
                     fallback=fallback)
    return out


def importance_table(ranking: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows of a ranking for a Prefect table artifact (floats rounded to 4 places;
    <NA> becomes None; numpy scalars become Python ones)."""

    def plain(v: Any) -> Any:
        if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v)):
            return None
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return round(float(v), 4) if math.isfinite(v) else None
        return str(v) if not isinstance(v, str) else v

    return [{str(k): plain(v) for k, v in row.items()} for row in ranking.to_dict(orient="records")]


def plot_importance(trials: pd.DataFrame, ranking: pd.DataFrame, path: str | Path,
                    score: str = "val_score") -> Path:
    """Write one PNG: the importances as horizontal bars on top, and below them one scatter per
    ranked hyperparameter (the top 8) of its value against ``score`` over all usable trials (log
    x for log-distributed ones; categories spread with a little jitter). Returns the path."""
    import matplotlib

    # Agg only when pyplot is not loaded yet: switching a live interactive backend would disturb
    # the caller. The Figure API below needs no pyplot, so nothing leaks from long-running flows.
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    x, y, columns, dropped = _prepare(trials, score)
    by_name = {c.name: c for c in columns}
    names, importances, method = _ranked_for_plot(ranking)
    shown = [h for h in names if h in by_name][:TOP_PLOTTED]
    share_of = dict(zip(names, importances, strict=True))

    ncols = min(4, max(1, len(shown)))
    nrows = math.ceil(len(shown) / ncols) if shown else 0
    bar_height = max(1.6, 0.3 * len(names) + 0.9)
    fig = Figure(figsize=(3.2 * ncols + 1.5, bar_height + 2.8 * nrows), layout="constrained")
    grid = fig.add_gridspec(1 + nrows, ncols, height_ratios=[bar_height] + [2.8] * nrows)

    ax = fig.add_subplot(grid[0, :])
    _draw_importance_bars(ax, names, importances, [c.name for c in columns if c.kind == "constant"])
    title = f"Hyperparameter importance for {score} ({method}, {len(y)} trials"
    title += f", {dropped} without a finite score left out)" if dropped else ")"
    ax.set_title(title)

    rng = np.random.default_rng(0)  # the jitter is cosmetic; a fixed seed keeps plots stable
    for i, name in enumerate(shown):
        sub = fig.add_subplot(grid[1 + i // ncols, i % ncols])
        _scatter_values(sub, by_name[name], x[name], y, rng)
        share = share_of.get(name, 0.0)
        sub.set_title(f"{name} ({share:.0%})", fontsize=9)
        sub.tick_params(labelsize=8)
        sub.grid(True, alpha=0.3)
        if i % ncols == 0:
            sub.set_ylabel(score, fontsize=8)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    return out
