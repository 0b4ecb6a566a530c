"""Load, validate, split and preprocess tabular classification data.

Built-in sets come from scikit-learn (no download); files are CSV (also ``.csv.gz``, ``.bz2``,
``.xz``, ``.zst`` or ``.zip``) or Parquet read with pandas. Every problem a user can cause is a
one-line :class:`DataError` (or :class:`ConfigError`) that names the file, column or config
field, checked before any server or search starts (:func:`check_inputs`). Each column's kind
is inferred (numeric, categorical, date, or dropped as an identifier, constant, empty or free
text; ``data.columns`` overrides it) and reported (``Dataset.columns_report``,
``Splits.columns_report``, :func:`columns_report_markdown`). Preprocessing (encoding of
categorical columns, imputation of missing values, the scaler and the optional PCA) is fitted
on the train split only.

The modules, in the order data goes through them:

- :mod:`~paramaudit.data.read`: the bytes: built-in sets, CSV/Parquet files, compression and
  the header line;
- :mod:`~paramaudit.data.columns`: each column's kind and its missing cells;
- :mod:`~paramaudit.data.features`: the numeric matrix and categorical columns made of them;
- :mod:`~paramaudit.data.columns_report`: the columns report and its markdown table;
- :mod:`~paramaudit.data.target`: the target, the task it implies and its classes;
- :mod:`~paramaudit.data.load`: from the config to a checked :class:`Dataset`;
- :mod:`~paramaudit.data.checks`: the data against the config, and :func:`load_and_split`,
  step 1 of the pipeline;
- :mod:`~paramaudit.data.encode`: one-hot and frequency encoding of categorical columns;
- :mod:`~paramaudit.data.preprocessor`: imputation, missing indicators, scaler and PCA;
- :mod:`~paramaudit.data.preprocess`: the stratified split and the splits' preprocessing;
- :mod:`~paramaudit.data.cache`: the cache key of step 1, without loading the data.
"""

from __future__ import annotations

from paramaudit.data.cache import PREPROCESS_VERSION, data_content_hash, preprocess_cache_key
from paramaudit.data.checks import (
    MAX_CATEGORIES,
    MAX_CLASSES,
    MIN_PER_CLASS,
    check_dataset,
    check_inputs,
    check_preprocessing,
    check_split,
    load_and_split,
    load_dataset,
)
from paramaudit.data.columns import MISSING_CATEGORY, NA_TOKENS
from paramaudit.data.columns_report import columns_report_markdown
from paramaudit.data.encode import MAX_ONEHOT, Encoding, FrequencyEncoding
from paramaudit.data.preprocess import (
    IMPUTE_STRATEGIES,
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
    "IMPUTE_STRATEGIES",
    "MAX_CATEGORIES",
    "MAX_CLASSES",
    "MAX_ONEHOT",
    "MIN_PER_CLASS",
    "MISSING_CATEGORY",
    "NA_TOKENS",
    "PREPROCESS_VERSION",
    "Dataset",
    "Encoding",
    "FrequencyEncoding",
    "OneHot",
    "Preprocessor",
    "Scaler",
    "Splits",
    "check_dataset",
    "check_inputs",
    "check_preprocessing",
    "check_split",
    "columns_report_markdown",
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
