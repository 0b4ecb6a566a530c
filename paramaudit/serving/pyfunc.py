"""The registered model: an MLflow pyfunc model around :class:`Predictor`, shipping its code.

``mlflow.pyfunc.load_model`` of it works where paramaudit is not installed: the package's core
(without the Prefect application layer, the flows and tasks) travels in the model's ``code/``
folder (``code_paths``), which MLflow puts on ``sys.path`` before it unpickles the predictor.
What it needs beyond that is in its requirements: torch, pandas, numpy, scikit-learn, pydantic,
PyYAML (the config module the core imports) and MLflow.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import torch

from paramaudit.serving.predictor import PREDICTION, PROBA_PREFIX, Predictor

PREDICTOR_FILE = "predictor.pt"
# the model as code (MLflow's models-from-code), so that no pickled wrapper is logged
MODEL_CODE = str(Path(__file__).with_name("model_code.py"))
ARTIFACT_KEY = "predictor"
# not needed to predict: the command line and the embedded Prefect server, flows and tasks
_NOT_SHIPPED = ("app", "flows", "tasks")
_REQUIREMENTS = ("torch", "pandas", "numpy", "scikit-learn", "pydantic", "PyYAML", "mlflow")


class PredictorModel(mlflow.pyfunc.PythonModel):
    """Raw rows (a DataFrame with the training table's columns) in; ``prediction`` and, for a
    classifier, ``proba_<label>`` columns out."""

    def load_context(self, context: Any) -> None:
        """Unpickle the predictor (its classes come from the shipped code)."""
        self.predictor: Predictor = torch.load(context.artifacts[ARTIFACT_KEY],
                                               map_location="cpu", weights_only=False)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
                ) -> pd.DataFrame:
        """The predictor's answer for these rows."""
        del context, params
        return self.predictor.predict(pd.DataFrame(model_input))


def ship_code(into: Path) -> Path:
    """A copy of paramaudit's core package (with paramaudit.models) under ``into``/paramaudit."""
    import paramaudit
    import paramaudit.models

    dest = into / "paramaudit"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    root = Path(paramaudit.__file__).parent
    shutil.copytree(root, dest, ignore=lambda d, names: (
        set(skip(d, names)) | ({n for n in names if n in _NOT_SHIPPED} if Path(d) == root else set())))
    models = Path(paramaudit.models.__file__).parent
    if not (dest / "models").exists():  # an editable install maps models/ from the checkout
        shutil.copytree(models, dest / "models", ignore=skip)
    return dest


def user_code(predictor: Predictor, into: Path) -> list[Path]:
    """The code of the user's models the predictor's network is made of, ready to ship.

    A model file goes as ``paramaudit_usercode/<stem>.py`` (the name it was imported under, so
    its pickled classes resolve); a package goes whole, a lone module as its file.
    """
    import importlib.util

    from paramaudit.models import references
    from paramaudit.models.user import FILE_PACKAGE

    used = {type(m).__module__ for m in predictor.model.modules()}
    out: list[Path] = []
    for ref in references().values():
        top = ref.module if ref.path is not None else ref.module.split(".")[0]
        if not any(u == top or u.startswith(top + ".") for u in used):
            continue
        if ref.path is not None:
            dest = into / FILE_PACKAGE
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ref.path, dest / f"{ref.module.rpartition('.')[2]}.py")
            out.append(dest)
            continue
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.submodule_search_locations:
            out.append(Path(next(iter(spec.submodule_search_locations))))
        elif spec is not None and spec.origin:
            out.append(Path(spec.origin))
    return list(dict.fromkeys(out))


def requirements() -> list[str]:
    """The installed versions of what the predictor imports, pinned."""
    out = []
    for name in _REQUIREMENTS:
        version = metadata.version(name).split("+")[0]
        out.append(f"{name}=={version}")
    return out


def signature(predictor: Predictor) -> Any:
    """Raw columns in (every one required); the prediction and the class probabilities out.

    Text and boolean columns are typed as such. Numbers and dates are ``Any``: MLflow refuses an
    int64 column where the schema says double ("can not safely convert"), and a JSON client sends
    ``5`` for 5.0, or a gap in an integer column; the predictor reads them as training did. The
    training table's own types are in the model's metadata (:func:`input_types`).
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    inputs = Schema([ColSpec(c.dtype if c.dtype in ("string", "boolean") else AnyType(), c.name)
                     for c in predictor.inputs])
    pred_type = "double" if predictor.task == "regression" else _label_type(predictor.classes)
    outputs = [ColSpec(pred_type, PREDICTION)]
    outputs += [ColSpec("double", f"{PROBA_PREFIX}{c}") for c in predictor.classes]
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


def input_types(predictor: Predictor) -> dict[str, str]:
    """Each raw input column's type in the training table, and how it is read."""
    return {c.name: f"{c.dtype} ({c.kind})" for c in predictor.inputs}


def _label_type(classes: list[Any]) -> str:
    if classes and all(isinstance(c, bool) for c in classes):
        return "boolean"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "long"
    if classes and all(isinstance(c, float) for c in classes):
        return "double"
    return "string"


def save_predictor(predictor: Predictor, folder: Path) -> Path:
    """The predictor pickled into ``folder`` (the model's one artifact)."""
    path = folder / PREDICTOR_FILE
    torch.save(predictor, path)
    return path
