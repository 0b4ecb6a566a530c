"""The whole predictor: raw rows -> features -> network -> the target's own labels or values.

:class:`Predictor` is what the registry serves (wrapped by :mod:`paramaudit.serving.pyfunc`)
and what ``paramaudit predict`` and the champion comparison call. It holds the training
table's input columns, the fitted categorical encoding and numeric preprocessing (the winning
trial's: imputation, scaling, PCA) and the network on the CPU, in eval mode.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from paramaudit.data.encode import Encoding
from paramaudit.data.inputs import InputColumn
from paramaudit.data.preprocessor import Preprocessor
from paramaudit.serving.rows import read_rows

PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
BATCH_ROWS = 4096


@dataclass
class Predictor:
    """A trained model with everything between a raw row and its answer.

    ``classes`` are the target's own values (index i is output i); empty for a regression,
    whose ``model`` answers in the target's units (training's RegressionOutput).
    """

    inputs: list[InputColumn]
    encoder: Encoding | None
    preprocessor: Preprocessor
    model: nn.Module
    task: str = "classification"
    classes: list[Any] = field(default_factory=list)
    # the training rows' statistic (the preprocessor's strategy) of every column: a gap in a
    # column that had none at training time is filled with it, as the imputer fills the others
    fallback: np.ndarray | None = None

    @classmethod
    def of(cls, final: Any, splits: Any) -> Predictor:
        """The predictor of a final model (paramaudit.final_model.FinalModel) and the splits it
        was trained on: their inputs and encoding, the final model's own preprocessing."""
        model = copy.deepcopy(final.served_model()).cpu().eval()
        prep = getattr(final, "preprocessor", None) or splits.preprocessor
        classes = list(splits.class_values) or list(final.class_labels)
        return cls(list(splits.inputs), splits.encoder, prep, model, final.task,
                   [] if final.task == "regression" else classes,
                   _fallback(splits.raw_train, prep.impute))

    @property
    def columns(self) -> list[str]:
        """The raw columns the predictor reads, in order."""
        return [c.name for c in self.inputs]

    def features(self, rows: pd.DataFrame, shown: str = "input rows") -> np.ndarray:
        """The model's inputs for raw ``rows`` (float32), as training made them."""
        x, cats = read_rows(rows, self.inputs, shown)
        if self.encoder is not None and cats is not None:
            x = np.hstack([x, self.encoder.transform(cats)]).astype(np.float32)
        if self.fallback is not None:
            gaps = np.isnan(x)
            gaps[:, list(self.preprocessor.impute_columns)] = False  # the imputer's own
            if gaps.any():
                x = np.where(gaps, self.fallback, x).astype(np.float32)
        return self.preprocessor.transform(x)

    @torch.no_grad()
    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The network's outputs for preprocessed rows, in batches, on the CPU."""
        self.model.eval()
        # flat rows, as training feeds them (an image model reshapes them itself)
        out = [self.model(torch.from_numpy(np.ascontiguousarray(x[i:i + BATCH_ROWS]))).numpy()
               for i in range(0, len(x), BATCH_ROWS)]
        width = 1 if self.task == "regression" else len(self.classes)
        return np.concatenate(out) if out else np.zeros((0, width), np.float32)

    def predict(self, rows: pd.DataFrame, shown: str = "input rows") -> pd.DataFrame:
        """``prediction`` (a label as the target had it, or a value in its units) and, for a
        classifier, ``proba_<label>`` per class; one row per input row, same index."""
        out = self.outputs(self.features(rows, shown))
        if self.task == "regression":
            return pd.DataFrame({PREDICTION: out.reshape(len(out), -1)[:, 0].astype(np.float64)},
                                index=rows.index)
        z = out.astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        proba = z / z.sum(axis=1, keepdims=True)
        labels = pd.Series(np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
                           if len(proba) else [], index=rows.index, dtype=object)
        frame = pd.DataFrame({PREDICTION: labels.infer_objects()}, index=rows.index)
        for i, c in enumerate(self.classes):
            frame[f"{PROBA_PREFIX}{c}"] = proba[:, i]
        return frame


def _fallback(raw_train: np.ndarray | None, strategy: str) -> np.ndarray | None:
    """Each column's training statistic under ``strategy`` (scikit-learn's SimpleImputer)."""
    if raw_train is None or raw_train.size == 0:
        return None
    from sklearn.impute import SimpleImputer

    imputer = SimpleImputer(strategy=strategy, fill_value=0.0 if strategy == "constant" else None,
                            keep_empty_features=True)
    return imputer.fit(raw_train).statistics_.astype(np.float32)
