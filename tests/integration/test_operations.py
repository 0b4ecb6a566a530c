"""Operations, end to end on real servers: scheduled deployments, a worker, MLflow, both UIs.

The module starts `mlflow server` (sqlite backend, proxied artifacts) and `prefect server` on
free 127.0.0.1 ports, runs `make deploy` (work pool + every deployment of prefect.yaml) and
`make worker`, triggers `paramaudit-pipeline/nightly` in smoke mode, and checks the result
through the Prefect client, MlflowClient over HTTP, and headless Chromium on both UIs (the
screenshots land in screenshots/). Every process it starts is stopped by PID when the module
ends, passed or failed, and every one of them runs under the suite's network guard.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import browser as web
from support import servers as srv

pytestmark = pytest.mark.integration

ROOT = srv.ROOT
POOL = "paramaudit-pool"
NIGHTLY = "paramaudit-pipeline/nightly"
EXPERIMENT = "paramaudit"  # the nightly deployment's own experiment
SCREENSHOTS = ROOT / "screenshots"
RUN_TIMEOUT = 300  # seconds for the smoke run, from trigger to Completed


@dataclass
class Stack:
    work: Path
    guard: Path
    mlflow: srv.Service
    prefect: srv.Service
    worker: srv.Service
    worker_name: str
    deploy_output: str
    runs_started: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"{self.prefect.url}/api"


def _client_settings(api: str, home: Path) -> Any:
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: api, PREFECT_HOME: str(home)})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("operations")
    guard = work / "netguard"
    started = time.monotonic()
    mlflow = prefect = worker = None
    runs_started: list[str] = []
    try:
        mlflow = srv.start_mlflow_server(work / "mlflow", work / "mlflow-server.log", guard)
        prefect = srv.start_prefect_server(work / "prefect-server", work / "prefect-server.log",
                                           guard)
        srv.wait_prefect_server(prefect)
        srv.wait_mlflow_server(mlflow)
        api = f"{prefect.url}/api"
        # `make deploy` exactly as the README says; PARAMAUDIT_HOME is the worker's business
        deploy_env = srv.prefect_env(api, work / "prefect-cli", guard)
        deploy_output = srv.run_checked(["make", "--no-print-directory", "-o", "install", "deploy"],
                                        deploy_env, ROOT, work / "make-deploy.log")
        worker_env = srv.prefect_env(
            api, work / "prefect-worker", guard, MLFLOW_TRACKING_URI=mlflow.url,
            PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="5")
        worker = srv.start_make_worker(worker_env, work / "make-worker.log")
        name = srv.wait_worker(worker, api, POOL)
        print(f"stack ready in {time.monotonic() - started:.1f} s: prefect {prefect.url}, "
              f"mlflow {mlflow.url}, worker {name!r}, logs in {work}")
        yield Stack(work, guard, mlflow, prefect, worker, name, deploy_output, runs_started)
    finally:
        # the worker first: it must not outlive the server it reports to
        for service in (worker, prefect, mlflow):
            if service is None:
                continue
            try:
                killed = service.stop()
            except Exception as err:  # keep stopping the others
                print(f"{service.name}: stopping failed: {err!r}")
            else:
                if killed:
                    print(f"{service.name}: SIGKILL for {killed}")
        # the flow runs worked in the checkout: remove their scratch folders, nothing else
        for run_id in runs_started:
            shutil.rmtree(ROOT / ".paramaudit" / "runs" / run_id, ignore_errors=True)


def _deployment(stack: Stack, name: str) -> Any:
    from prefect import get_client

    with _client_settings(stack.api, stack.work / "prefect-test"), \
            get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def _trigger(stack: Stack, parameters: dict[str, Any]) -> str:
    from prefect import get_client

    with _client_settings(stack.api, stack.work / "prefect-test"), \
            get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(NIGHTLY)
        run = client.create_flow_run_from_deployment(dep.id, parameters=parameters)
    return str(run.id)


def _wait_final(stack: Stack, flow_run_id: str, timeout: float) -> Any:
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with _client_settings(stack.api, stack.work / "prefect-test"), \
            get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"flow run {flow_run_id} still {run.state and run.state.name} after "
                    f"{timeout:.0f} s; worker log:\n{srv.tail(stack.worker.log, 6000)}")
            if not stack.worker.alive():
                raise AssertionError(f"the worker died: {stack.worker.describe()}")
            time.sleep(1)


def _cancel(stack: Stack, flow_run_id: str) -> None:
    """Ask the worker to stop a run that is still going (so it stops using the CPU)."""
    from prefect import get_client
    from prefect.states import Cancelling

    with _client_settings(stack.api, stack.work / "prefect-test"), \
            get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        if run.state is None or not run.state.is_final():
            client.set_flow_run_state(flow_run_id, Cancelling(), force=True)


def _flow_run_logs(stack: Stack, flow_run_id: str) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with _client_settings(stack.api, stack.work / "prefect-test"), \
            get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                limit=200)
    return "\n".join(log.message for log in logs)


@pytest.fixture(scope="module")
def nightly(stack: Stack) -> dict[str, Any]:
    """One run of the nightly deployment, in smoke mode, through the worker."""
    from mlflow import MlflowClient
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    dep = _deployment(stack, NIGHTLY)
    config = {**dep.parameters["config"], "smoke": True}
    started = time.monotonic()
    flow_run_id = _trigger(stack, {"config": config})
    run = _wait_final(stack, flow_run_id, RUN_TIMEOUT)
    seconds = time.monotonic() - started
    with _client_settings(stack.api, stack.work / "prefect-test"), \
            get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    mlflow = MlflowClient(tracking_uri=stack.mlflow.url)
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    parents = [] if exp is None else mlflow.search_runs(
        [exp.experiment_id], filter_string=f"tags.prefect_flow_run_id = '{flow_run_id}'")
    stack.runs_started += [p.info.run_id for p in parents]
    print(f"nightly smoke run: {run.state.name} in {seconds:.1f} s")
    return {"flow_run": run, "deployment": dep, "artifacts": {a.key: a for a in artifacts},
            "client": mlflow, "experiment": exp, "parents": parents, "seconds": seconds,
            "logs": srv.tail(stack.worker.log, 8000)}


def _parent(nightly: dict[str, Any]) -> Any:
    assert nightly["flow_run"].state.is_completed(), (
        f"nightly run ended {nightly['flow_run'].state.name}: "
        f"{nightly['flow_run'].state.message}\n{nightly['logs']}")
    assert len(nightly["parents"]) == 1, nightly["parents"]
    return nightly["parents"][0]


# -- deployments ---------------------------------------------------------------------------------
def test_make_deploy_registers_scheduled_deployments_on_a_process_pool(stack: Stack) -> None:
    from prefect import get_client

    with _client_settings(stack.api, stack.work / "prefect-test"), \
            get_client(sync_client=True) as client:
        pool = client.read_work_pool(POOL)
        deployments = {d.name: d for d in client.read_deployments()}
        flows = {f.id: f.name for f in client.read_flows()}
    assert pool.type == "process"
    assert f"Created work pool {POOL!r}" in stack.deploy_output  # by `make deploy`
    assert {"nightly", "weekly-bayes", "weekly-audit"} <= set(deployments)

    nightly = deployments["nightly"]
    assert flows[nightly.flow_id] == "paramaudit-pipeline"
    assert nightly.work_pool_name == POOL
    assert nightly.entrypoint == "flows/pipeline.py:paramaudit_pipeline"
    [schedule] = nightly.schedules
    assert schedule.active
    assert schedule.schedule.cron == "0 2 * * *"  # daily
    assert schedule.schedule.timezone == "UTC"
    assert nightly.parameters == {"config": {"experiment": "paramaudit"}}
    assert nightly.enforce_parameter_schema

    bayes = deployments["weekly-bayes"]
    assert flows[bayes.flow_id] == "paramaudit-pipeline"
    assert bayes.parameters["config"]["search"]["algorithm"] == "bayes"
    assert bayes.parameters["config"]["search"]["trials"] > 16  # more than the nightly's
    assert bayes.schedules and bayes.schedules[0].schedule.timezone == "UTC"

    audit = deployments["weekly-audit"]
    assert flows[audit.flow_id] == "paramaudit-audit"
    assert audit.entrypoint == "flows/audit_model.py:audit_model_flow"
    assert audit.schedules and audit.work_pool_name == POOL
    # and it logs the nightly experiment's history with the audit
    assert audit.parameters["history_of"] == nightly.parameters["config"]["experiment"]

    # the checkout is chosen on the worker at run time; the deploy folder is recorded as a hint
    for dep in deployments.values():
        steps = json.dumps(dep.pull_steps)
        assert "paramaudit.app.deploy_steps.locate_checkout" in steps, steps
        assert "{{ checkout.directory }}" in steps, steps
        assert json.dumps(str(ROOT)) in steps, steps


def test_a_bad_parameter_set_is_refused_before_a_run_exists(stack: Stack) -> None:
    """The deployment's parameters are the flow's typed config: the server checks the schema."""
    from prefect import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    dep = _deployment(stack, NIGHTLY)
    cases = {
        "config.search.trials": ({"search": {"trials": 0}}, "minimum of 1"),
        "serch": ({"serch": {"trials": 2}}, "'serch' was unexpected"),
        "config.smoke": ({"smoke": "maybe"}, "not of type 'boolean'"),
    }
    with _client_settings(stack.api, stack.work / "prefect-test"), \
            get_client(sync_client=True) as client:
        for where, (config, reason) in cases.items():
            with pytest.raises(PrefectHTTPStatusError) as err:
                client.create_flow_run_from_deployment(dep.id, parameters={"config": config})
            detail = err.value.response.json()["detail"]
            assert where in detail and reason in detail, detail


def test_a_config_the_schema_cannot_judge_fails_validation_in_the_flow(stack: Stack) -> None:
    """A misspelt data set passes the JSON schema; the flow's own validation names it."""
    flow_run_id = _trigger(stack, {"config": {"smoke": True, "data": {"dataset": "digitz"}}})
    run = _wait_final(stack, flow_run_id, 120)
    assert run.state.is_failed(), run.state
    text = f"{run.state.message}\n{_flow_run_logs(stack, flow_run_id)}"
    assert "digitz" in text and "did you mean 'digits'" in text, text
    assert "[2/6] search" not in text, "a bad config must fail before any search"


# -- the nightly run through the worker ----------------------------------------------------------
def test_nightly_run_completes_with_its_artifacts(stack: Stack, nightly: dict[str, Any]) -> None:
    parent = _parent(nightly)
    run = nightly["flow_run"]
    assert run.deployment_id == nightly["deployment"].id
    assert run.work_pool_name == POOL
    # the run's name says what ran: data set, model, search, trials, smoke, date (UTC)
    assert re.fullmatch(r"digits mlp random-search 2t smoke \d{4}-\d\d-\d\d \d\d:\d\d", run.name), \
        run.name
    arts = nightly["artifacts"]
    assert {"parameter-audit", "overfit-verdict", "capacity-vs-generalisation"} <= set(arts)

    table = arts["parameter-audit"]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    params_total = parent.data.metrics["params_total"]
    assert sum(row["params"] for row in rows) == params_total
    assert parent.info.run_id in (table.description or "")

    md = arts["overfit-verdict"]
    assert md.type == "markdown"
    verdict = parent.data.tags["overfit_verdict"]
    assert verdict in (md.description or "")
    link = f"{stack.mlflow.url}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
    assert link in md.data, md.data[:2000]
    assert arts["capacity-vs-generalisation"].type == "table"


def test_nightly_run_is_tracked_on_the_mlflow_server(stack: Stack,
                                                      nightly: dict[str, Any]) -> None:
    parent = _parent(nightly)
    client = nightly["client"]
    run_id = parent.info.run_id
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == nightly["flow_run"].name
    assert parent.data.tags["prefect_flow_run_id"] == str(nightly["flow_run"].id)
    assert parent.data.tags["overfit_verdict"] in ("ok", "warn", "overfit")
    # hyperparameters are params; learned-parameter counts are metrics
    for key in ("learning_rate", "batch_size", "optimizer", "num_layers", "hidden_size"):
        assert key in parent.data.params
    assert parent.data.params["setting.smoke"] == "True"
    assert parent.data.params["setting.tracking_uri"] == stack.mlflow.url
    assert parent.data.metrics["params_trainable"] > 0
    assert 0 < parent.data.metrics["test_accuracy"] <= 1
    assert len(client.get_metric_history(run_id, "curve_val_loss")) >= 1

    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    assert len(children) == 2  # smoke: two trials
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"learning_rate", "batch_size", "optimizer"} <= set(child.data.params)
        assert client.get_metric_history(child.info.run_id, "val_loss")

    # artifacts went through the server (proxied) into its --artifacts-destination
    paths = {a.path for folder in ("audit", "plots", "report")
             for a in client.list_artifacts(run_id, folder)}
    assert {"audit/parameter_audit.csv", "audit/parameter_audit.json", "audit/parameter_audit.md",
            "plots/learning_curves.png", "report/report.md"} <= paths, paths
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:"), parent.info.artifact_uri
    local = Path(client.download_artifacts(run_id, "audit/parameter_audit.json",
                                           str(stack.work / "downloads")))
    audit = json.loads(local.read_text())
    assert sum(layer["params"] for layer in audit["layers"]) == parent.data.metrics["params_total"]
    stored = list((stack.work / "mlflow" / "artifacts").rglob("parameter_audit.json"))
    assert stored, "the server did not store the artifact under --artifacts-destination"

    versions = client.search_model_versions(f"name = '{EXPERIMENT}'")
    assert [v.run_id for v in versions] == [run_id]


def test_mlflow_unreachable_fails_fast_naming_the_uri(stack: Stack) -> None:
    """A scheduled run whose tracking server is down fails before tuning, in one line."""
    dead = f"http://127.0.0.1:{srv.free_port()}"
    flow_run_id = _trigger(stack, {"config": {"smoke": True, "experiment": "unreachable",
                                              "tracking": {"tracking_uri": dead}}})
    try:
        run = _wait_final(stack, flow_run_id, 60)
    finally:
        _cancel(stack, flow_run_id)
    assert run.state.is_failed(), run.state
    message = (run.state.message or "").strip()
    assert dead in message and "\n" not in message, message
    logs = _flow_run_logs(stack, flow_run_id)
    # fast means before any work: no step of the recipe started
    assert "[1/6] preprocess" not in logs and "[2/6] search" not in logs, "it must fail first"


# -- the UIs, as a person sees them --------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium (installed here when missing) and Playwright to drive it."""
    importlib.import_module("playwright.sync_api")  # a dev dependency: missing = broken install
    try:
        return web.ensure_chromium()
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="module")
def browser(chromium: str, stack: Stack) -> Iterator[Any]:
    with web.browser(chromium, stack.work / "chromium") as b:
        yield b


def test_mlflow_ui_shows_the_audit_the_verdict_and_the_nested_trials(
        stack: Stack, nightly: dict[str, Any], browser: Any) -> None:
    parent = _parent(nightly)
    base = f"{stack.mlflow.url}/#/experiments/{parent.info.experiment_id}"
    run_id, name = parent.info.run_id, parent.info.run_name
    verdict = parent.data.tags["overfit_verdict"]
    page = web.new_page(browser)
    page.goto(f"{base}/runs")
    page.get_by_role("row").filter(has_text=name[:16]).first.wait_for()
    _mlflow_reviewer_view(page, parent.info.experiment_id)

    # the parent run: its name, the verdict tag, the trials as child runs
    page.goto(f"{base}/runs/{run_id}")
    page.get_by_text("overfit_verdict").first.wait_for()
    page.get_by_text(name).first.wait_for()
    seen = web.text(page)
    assert name in seen
    assert f"overfit_verdict: {verdict}" in seen.replace("\n", " ") or (
        "overfit_verdict" in seen and verdict in seen), seen[:3000]
    trials = sorted(c.info.run_name for c in nightly["client"].search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'"))
    for trial in trials:
        assert trial in seen
    web.screenshot(page, SCREENSHOTS / "mlflow-run.png")

    # the audit artifact, rendered
    page.goto(f"{base}/runs/{run_id}/artifacts/audit/parameter_audit.md")
    page.get_by_text("Trainable params").first.wait_for()
    seen = web.text(page)
    assert "audit/parameter_audit.md" in seen and "parameter_audit.csv" in seen
    assert f"{int(parent.data.metrics['params_total']):,}" in seen
    web.screenshot(page, SCREENSHOTS / "mlflow-run-audit.png")

    # the runs list: the trials nested under the parent, once it is expanded
    page.goto(f"{base}/runs")
    row = page.get_by_role("row").filter(has_text=name[:16])
    row.first.wait_for()
    for trial in trials:
        assert page.get_by_text(trial).count() == 0, "children are folded under the parent"
    row.first.get_by_role("button").first.click()
    for trial in trials:
        page.get_by_text(trial).first.wait_for()
    rows = [r for r in page.get_by_role("row").all_inner_texts() if r.strip()]
    order = [i for i, r in enumerate(rows) if name[:16] in r or any(t in r for t in trials)]
    assert len(order) == 1 + len(trials) and order == list(range(order[0], order[0] + len(order)))
    page.mouse.move(0, 0)  # no tooltip over the table
    web.screenshot(page, SCREENSHOTS / "mlflow-runs-nested.png")
    assert page.offsite_requests == [], page.offsite_requests


def test_prefect_ui_shows_the_parameter_table_and_the_link_to_mlflow(
        stack: Stack, nightly: dict[str, Any], browser: Any) -> None:
    parent = _parent(nightly)
    run = nightly["flow_run"]
    arts = nightly["artifacts"]
    page = web.new_page(browser)

    # the flow run, on its Artifacts tab
    page.goto(f"{stack.prefect.url}/runs/flow-run/{run.id}")
    page.get_by_text(run.name).first.wait_for()
    page.locator("li.p-tab#artifacts").click()
    page.get_by_text("parameter-audit", exact=True).first.wait_for()
    seen = web.text(page)
    for key in ("parameter-audit", "overfit-verdict", "capacity-vs-generalisation"):
        assert key in seen
    assert "Completed" in seen and "nightly" in seen
    web.screenshot(page, SCREENSHOTS / "prefect-flow-run-artifacts.png")

    # the parameter table, one row per layer
    page.get_by_text("parameter-audit", exact=True).last.click()
    rows = json.loads(arts["parameter-audit"].data)
    page.get_by_text(rows[0]["layer"], exact=True).first.wait_for()
    seen = web.text(page)
    for row in rows:
        assert row["layer"] in seen and str(row["params"]) in seen
    assert parent.info.run_id in seen  # the description names the MLflow run
    web.screenshot(page, SCREENSHOTS / "prefect-parameter-audit.png")

    # the verdict, with a working link to the MLflow run
    page.goto(f"{stack.prefect.url}/artifacts/artifact/{arts['overfit-verdict'].id}")
    link = page.locator(f"a[href*='/runs/{parent.info.run_id}']").first
    link.wait_for()
    href = link.get_attribute("href")
    assert href.startswith(stack.mlflow.url), href
    assert "Overfitting verdict" in web.text(page)
    web.screenshot(page, SCREENSHOTS / "prefect-overfit-verdict.png")
    page.goto(href)
    page.get_by_text(parent.info.run_name).first.wait_for()
    assert page.offsite_requests == [], page.offsite_requests


def _mlflow_reviewer_view(page: Any, experiment_id: str) -> None:
    """How a reviewer sets up MLflow 3's UI for a training experiment (the page remembers it).

    MLflow 3 opens in its GenAI view with an assistant panel: switch to "Model training", close
    the panel, and show the columns that matter here (learned parameters, val loss, verdict).
    Cosmetic only: if a later MLflow moves these, the screenshots get plainer, nothing fails.
    """
    toggle = page.get_by_text("Model training", exact=True)
    if toggle.count():
        toggle.first.click()
    page.evaluate("""experimentId => {
        const key = `MLflowLocalStorage-1.1-ExperimentPage-["${experimentId}"]-ReactComponentState`;
        const state = JSON.parse(localStorage.getItem(key) || "{}");
        state.selectedColumns = ["attributes.`Models`", "metrics.`params_trainable`",
                                 "metrics.`val_loss`", "metrics.`val_accuracy`",
                                 "metrics.`test_accuracy`", "tags.`overfit_verdict`"];
        localStorage.setItem(key, JSON.stringify(state));
        localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
        localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
    }""", experiment_id)
    page.reload()


# -- last: nothing any of it did left loopback ---------------------------------------------------
def test_nothing_left_loopback(stack: Stack) -> None:
    assert srv.guard_findings(stack.guard) == []
