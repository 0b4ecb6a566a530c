"""``paramaudit predict``: a logged model's answers for the rows of a file, written beside them."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from paramaudit.config import TrackingConfig
from paramaudit.errors import UserInputError

_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def model_uri(model: str) -> str:
    """A registry or run URI as given; a bare MLflow run id as that run's logged model."""
    return f"runs:/{model}/model" if _RUN_ID.match(model) else model


def output_format(path: Path) -> str:
    """csv or parquet, from the output file's name (a CSV may be compressed)."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", *(f".csv{ext}" for ext in _COMPRESSION))):
        return "csv"
    raise UserInputError(f"--output {str(path)[:200]!r}: write .csv (optionally .gz, .bz2, "
                         ".xz, .zst) or .parquet")


def load(uri: str, tracking_uri: str) -> Any:
    """The predictor of a logged model; a URI that names none is a one-line error."""
    from mlflow.exceptions import MlflowException

    from paramaudit.tracking.tracker import load_predictor

    try:
        return load_predictor(uri, tracking_uri)
    except (MlflowException, OSError) as err:
        first = " ".join(str(err).split())[:300]
        raise UserInputError(f"--model {uri[:200]!r}: no model there ({first})") from None


def predict_file(model: str, data: Path, output: Path) -> int:
    """Write ``data``'s rows with ``prediction`` (and ``proba_<label>``) columns to ``output``;
    returns the number of rows. Nothing is written unless every row was answered."""
    from paramaudit.data.read import read_table
    from paramaudit.tracking import resolve_tracking_uri

    fmt = output_format(output)
    frame = read_table(data)
    predictor = load(model_uri(model), resolve_tracking_uri(TrackingConfig()))
    answers = predictor.predict(frame, shown=f"data file {str(data)[:200]!r}")
    out = frame.drop(columns=[c for c in answers.columns if c in frame.columns])
    out = out.join(answers)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        if fmt == "parquet":
            out.to_parquet(tmp, index=False)
        else:
            out.to_csv(tmp, index=False, compression=_COMPRESSION.get(output.suffix.lower()))
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return len(out)
