"""The flows in-process against a real Prefect server: states, artifacts, and failure handling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paramaudit.config import TrackingConfig, build_config
from paramaudit.tracking import Tracker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def harness(shared_prefect: str):
    """This process's flows talk to the session's Prefect server."""
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: shared_prefect}):
        yield
        APILogHandler().flush()  # the flow runs' logs, sent while the server is up


def _artifacts(flow_run_id: str) -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        state = client.read_flow_run(flow_run_id).state
    return {"artifacts": {a.key: a for a in arts}, "state": state}


def _config(tmp: Path, **extra):
    raw = {"experiment": "flow-test", "smoke": True, "data": {"dataset": "iris"},
           "tracking": {"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
                        "artifact_location": str(tmp / "art")}}
    raw.update(extra)
    return build_config(raw)


def test_pipeline_flow_publishes_prefect_artifacts(harness, workdir: Path) -> None:
    from paramaudit.flows.pipeline import paramaudit_pipeline

    summary = paramaudit_pipeline(config=_config(workdir))
    seen = _artifacts(summary["prefect_flow_run_id"])
    assert seen["state"].is_completed()
    table = seen["artifacts"]["parameter-audit"]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert sum(row["params"] for row in rows) == summary["params_total"]
    md = seen["artifacts"]["overfit-verdict"]
    assert md.type == "markdown"
    assert summary["mlflow_run_id"] in md.data
    assert "Overfitting verdict" in md.data
    decision = seen["artifacts"]["registry"].data  # the first version of its name: champion
    assert f"version {summary['registry']['version']} of `flow-test` is the champion" in decision
    assert "the first champion of 'flow-test'" in decision
    from mlflow import MlflowClient

    version = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}").get_model_version(
        "flow-test", summary["registry"]["version"])
    flow_run_url = f"/flow-run/{summary['prefect_flow_run_id']}"
    assert "Prefect flow run: http://127.0.0.1:" in version.description
    assert version.description.rstrip().endswith(flow_run_url)
    assert version.tags["prefect_flow_run_url"].endswith(flow_run_url)


def test_a_failing_flow_marks_the_parent_run_failed(harness, workdir: Path) -> None:
    """A crash inside the flow must not leave the MLflow run RUNNING."""
    from mlflow import MlflowClient

    from paramaudit.errors import DataError
    from paramaudit.flows.pipeline import paramaudit_pipeline

    csv = workdir / "one_class.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{i * 2},x\n" for i in range(30)))
    cfg = _config(workdir, data={"path": str(csv), "target": "label"})
    with pytest.raises(DataError, match="one class"):
        paramaudit_pipeline(config=cfg)
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    exp = client.get_experiment_by_name("flow-test")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.dataset = 'one_class'")
    assert len(runs) == 1
    assert runs[0].info.status == "FAILED"
    assert "one class" in runs[0].data.tags["error"]


def test_audit_flow_logs_an_audit_run(harness, workdir: Path) -> None:
    from mlflow import MlflowClient

    from paramaudit.flows.audit_model import audit_model_flow

    tracking = TrackingConfig(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                              artifact_location=str(workdir / "art"))
    # two nights of a pipeline experiment, whose history the weekly audit logs too
    nightly = Tracker(tracking, "nightly")
    for score in (0.8, 0.9):
        run_id = nightly.start_run("night", {"paramaudit.kind": "pipeline", "dataset": "iris"})
        nightly.log_metrics(run_id, {"test_accuracy": score, "params_trainable": 99})
        nightly.end_run(run_id, "FINISHED")
    out = audit_model_flow(spec="models:cnn", meta=True, tracking=tracking, history_of="nightly")
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    run = client.get_run(out["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["params_total"] == out["total_params"] > 0
    assert run.data.params["setting.spec"] == "models:cnn"
    names = {a.path for a in client.list_artifacts(run.info.run_id, "audit")}
    assert "audit/parameter_audit.json" in names and "audit/parameters_per_layer.png" in names
    assert out["history_runs"] == 2 == run.data.metrics["history_runs"]
    names = {a.path for a in client.list_artifacts(run.info.run_id, "history")}
    assert names == {"history/history.csv", "history/history.png"}
    seen = _artifacts(run.data.tags["prefect_flow_run_id"])
    rows = seen["artifacts"]["history"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert [r["test_score"] for r in rows] == ["0.8", "0.9"]


def test_preprocessing_is_cached_by_content_and_config(harness, workdir: Path) -> None:
    """A rerun on unchanged data skips preprocessing; a changed file or config misses."""
    from prefect import flow

    from paramaudit.tasks.pipeline import preprocess

    csv = workdir / "data.csv"
    rows = "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(60))
    csv.write_text("a,b,label\n" + rows)

    @flow
    def twice(cfg):
        return preprocess(cfg, return_state=True)

    cfg = build_config({"data": {"path": str(csv), "target": "label"}})
    first, second = twice(cfg), twice(cfg)
    assert first.name == "Completed"
    assert second.name == "Cached"
    csv.write_text("a,b,label\n" + rows + "1,1,0\n")
    assert twice(cfg).name != "Cached"
    other = build_config({"data": {"path": str(csv), "target": "label"},
                          "preprocess": {"scaler": "minmax"}})
    assert twice(other).name != "Cached"
    assert twice(other).name == "Cached"


def test_a_big_table_is_preprocessed_again_rather_than_cached(harness, workdir: Path,
                                                              monkeypatch) -> None:
    """Caching pickles the whole Splits in memory: not worth it for a table over the bound."""
    from prefect import flow

    from paramaudit.tasks import pipeline as tasks

    csv = workdir / "big.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(60)))
    monkeypatch.setattr(tasks, "UNCACHED_TABLE_BYTES", csv.stat().st_size - 1)

    @flow
    def twice(cfg):
        return tasks.preprocess(cfg, return_state=True)

    cfg = build_config({"data": {"path": str(csv), "target": "label"}})
    assert twice(cfg).name == "Completed" and twice(cfg).name == "Completed"
    monkeypatch.setattr(tasks, "UNCACHED_TABLE_BYTES", csv.stat().st_size)
    assert twice(cfg).name == "Completed" and twice(cfg).name == "Cached"
