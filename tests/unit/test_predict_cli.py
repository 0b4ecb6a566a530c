"""`paramaudit predict`'s bad inputs, in-process against a real registered model: each is one
line on stderr, exit 2, and no output file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from paramaudit.app.cli import main
from paramaudit.config import build_config
from paramaudit.data import load_and_split
from paramaudit.final_model import train_best
from paramaudit.overfit import Verdict
from paramaudit.registry import register
from paramaudit.tracking import Tracker

pytestmark = pytest.mark.usefixtures("one_torch_thread")
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@pytest.fixture
def champion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)
    cfg = build_config({"data": {"dataset": "iris"}, "experiment": "pred",
                        "tracking": {"tracking_uri": uri,
                                     "artifact_location": str(tmp_path / "art")}})
    splits = load_and_split(cfg)
    final = train_best(splits, "mlp", {"learning_rate": 0.01, "hidden_size": 16,
                                       "num_layers": 1}, max_epochs=5, patience=5, seed=0)
    tracker = Tracker(cfg.tracking, cfg.experiment)
    parent = tracker.start_run("parent")
    register(tracker, parent, cfg, final, Verdict("ok", []), splits)
    tracker.end_run(parent, "FINISHED")
    pd.DataFrame([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], columns=COLUMNS).to_csv(
        tmp_path / "rows.csv", index=False)
    return tmp_path


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], out: Path) -> str:
    assert main(["predict", *argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))
    return err


def test_predict_answers_then_refuses_each_bad_input_in_one_line(
        champion: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = ["--model", "models:/pred@champion", "--data", str(champion / "rows.csv")]
    assert main(["predict", *good, "--output", str(champion / "scored.csv.gz")]) == 0
    assert pd.read_csv(champion / "scored.csv.gz")["prediction"].tolist()[0] == "setosa"
    capsys.readouterr()
    err = _refused(capsys, good, champion / "scored.xlsx")
    assert "--output" in err and ".parquet" in err
    err = _refused(capsys, ["--model", "models:/nope@champion", "--data",
                            str(champion / "rows.csv")], champion / "a.csv")
    assert "--model 'models:/nope@champion': no model there" in err
    err = _refused(capsys, ["--model", "models:/pred@champion", "--data",
                            str(champion / "missing.csv")], champion / "b.csv")
    assert "missing.csv" in err
    (champion / "binary.csv").write_bytes(bytes(range(256)) * 64)
    _refused(capsys, ["--model", "models:/pred@champion", "--data",
                      str(champion / "binary.csv")], champion / "c.csv")
    inf = pd.read_csv(champion / "rows.csv")
    inf.loc[1, "petal width (cm)"] = float("inf")
    inf.to_csv(champion / "inf.csv", index=False)
    err = _refused(capsys, ["--model", "models:/pred@champion", "--data",
                            str(champion / "inf.csv")], champion / "d.csv")
    assert "petal width (cm)" in err
