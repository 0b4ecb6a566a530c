"""Load, validate, split and preprocess tabular classification data.

Built-in sets come from scikit-learn (no download); files are CSV (also ``.csv.gz``, ``.bz2``,
``.xz``, ``.zst`` or ``.zip``) or Parquet read with pandas. Every problem a user can cause is a
one-line :class:`DataError` (or :class:`ConfigError`) that names the file, column or config
field, checked before any server or search starts (:func:`check_inputs`). Preprocessing (the
one-hot encoding of categorical columns, the scaler and the optional PCA) is fitted on the
train split only.

The modules, in the order data goes through them:

- :mod:`~paramaudit.data.read`: the bytes: built-in sets, CSV/Parquet files, compression and
  the header line;
- :mod:`~paramaudit.data.checks`: the columns and classes, then the data against the config,
  and :func:`load_and_split`, step 1 of the pipeline;
- :mod:`~paramaudit.data.preprocess`: the stratified split, one-hot encoding, scaler and PCA;
- :mod:`~paramaudit.data.cache`: the cache key of step 1, without loading the data.
"""

from __future__ import annotations

from paramaudit.data.cache import PREPROCESS_VERSION, data_content_hash, preprocess_cache_key
from paramaudit.data.checks import (
    MAX_CATEGORIES,
    MAX_CLASSES,
    MIN_PER_CLASS,
    MISSING_CATEGORY,
    check_dataset,
    check_inputs,
    check_preprocessing,
    check_split,
    load_and_split,
    load_dataset,
)
from paramaudit.data.preprocess import (
    OneHot,
    Preprocessor,
    Scaler,
    Splits,
    first_choice,
    fit_onehot,
    fit_preprocessor,
    fit_scaler,
    refit_preprocessing,
    split_and_scale,
)
from paramaudit.data.read import Dataset, file_digest

__all__ = [
    "MAX_CATEGORIES",
    "MAX_CLASSES",
    "MIN_PER_CLASS",
    "MISSING_CATEGORY",
    "PREPROCESS_VERSION",
    "Dataset",
    "OneHot",
    "Preprocessor",
    "Scaler",
    "Splits",
    "check_dataset",
    "check_inputs",
    "check_preprocessing",
    "check_split",
    "data_content_hash",
    "file_digest",
    "first_choice",
    "fit_onehot",
    "fit_preprocessor",
    "fit_scaler",
    "load_and_split",
    "load_dataset",
    "preprocess_cache_key",
    "refit_preprocessing",
    "split_and_scale",
]
