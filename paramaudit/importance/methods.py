"""The two ways to score hyperparameters: Optuna's fANOVA and a random forest's permutation importance.

Both take the prepared table (:mod:`.table`) and return unnormalised importances per
hyperparameter; optuna and scikit-learn are imported only when a method runs.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from paramaudit.importance.table import _Column

FOREST_TREES = 200
PERMUTATION_REPEATS = 10

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
