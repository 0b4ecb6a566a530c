"""The preprocess step's cache key: the data's content and the settings, without loading it.

The Prefect task of step 1 persists its :class:`~paramaudit.data.preprocess.Splits` under this
key, so an unchanged file and config skip loading and preprocessing. Bump
``PREPROCESS_VERSION`` when preprocessing changes what it produces for the same data and config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from paramaudit.config import DataConfig, PreprocessConfig
from paramaudit.data.read import file_digest, not_found
from paramaudit.errors import DataError

PREPROCESS_VERSION = 4  # 2: column kinds, imputation, auto categorical encoding; 4: served inputs


def data_content_hash(cfg: DataConfig) -> str:
    """A cheap digest of the data's content: the file's bytes, or a built-in set's name and the
    scikit-learn version that ships it (nothing is loaded)."""
    if cfg.dataset is not None:
        import sklearn

        source = f"builtin:{cfg.dataset}:scikit-learn {sklearn.__version__}"
        return hashlib.sha256(source.encode()).hexdigest()
    assert cfg.path is not None
    path = Path(cfg.path)
    if not path.is_file():
        raise not_found(str(path), path) if not path.exists() else DataError(
            f"data file {str(path)!r}: not a regular file")
    return file_digest(path)


def preprocess_cache_key(cfg: DataConfig, pre: PreprocessConfig, seed: int) -> str:
    """SHA-256 over the data's content hash, the data and preprocessing config and the seed.

    Stable across processes; changes when the file's bytes, any data.* or preprocess.* setting,
    the seed or :data:`PREPROCESS_VERSION` changes. Hashes the file, never loads it.
    """
    payload = {
        "version": PREPROCESS_VERSION,
        "data_content": data_content_hash(cfg),
        "data": cfg.model_dump(mode="json"),
        "preprocess": pre.model_dump(mode="json"),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
