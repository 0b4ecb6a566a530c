"""Where a worker finds the paramaudit checkout (paramaudit/app/deploy_steps.py), on real folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from paramaudit.app import deploy_steps as steps
from paramaudit.app.deploy_steps import CheckoutNotFound, find_checkout

ROOT = Path(__file__).resolve().parents[2]


def _checkout(folder: Path) -> Path:
    (folder / "flows").mkdir(parents=True)
    (folder / "flows" / "pipeline.py").write_text("")
    return folder


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """Four checkouts, one per rule, and a folder that is none."""
    found = {name: _checkout(tmp_path / name) for name in ("home", "package", "deployed", "worker")}
    found["empty"] = tmp_path / "empty"
    found["empty"].mkdir()
    return found


def _find(home: str | None = None, package: Path | None = None, deployed: str | None = None,
          worker: Path | None = None) -> steps.Checkout:
    return find_checkout(home=home, package_root=package, deployed_from=deployed, worker_dir=worker)


def test_paramaudit_home_wins_over_every_other_rule(places: dict[str, Path]) -> None:
    found = _find(str(places["home"]), places["package"], str(places["deployed"]), places["worker"])
    assert found == steps.Checkout(places["home"].resolve(), "PARAMAUDIT_HOME")


def test_a_wrong_paramaudit_home_fails_and_never_falls_back(places: dict[str, Path]) -> None:
    with pytest.raises(CheckoutNotFound) as err:
        _find(str(places["empty"]), places["package"], str(places["deployed"]), places["worker"])
    message = str(err.value)
    assert message.startswith(f"PARAMAUDIT_HOME={places['empty']} is not a paramaudit checkout")
    assert "flows/pipeline.py" in message and "unset it" in message and "\n" not in message


def test_a_relative_paramaudit_home_is_taken_from_the_worker_directory(
        places: dict[str, Path]) -> None:
    found = _find("home", worker=places["home"].parent)
    assert found.directory == places["home"].resolve()


def test_an_empty_paramaudit_home_counts_as_unset(places: dict[str, Path]) -> None:
    assert _find("  ", places["package"]).found_by == "the installed paramaudit package"


def test_the_installed_package_comes_before_the_deploy_folder_and_the_worker(
        places: dict[str, Path]) -> None:
    found = _find(None, places["package"], str(places["deployed"]), places["worker"])
    assert found == steps.Checkout(places["package"].resolve(), "the installed paramaudit package")


def test_the_deploy_folder_when_the_package_is_installed_elsewhere(places: dict[str, Path]) -> None:
    site_packages = places["empty"]  # a non-editable install: no checkout above the package
    found = _find(None, site_packages, str(places["deployed"]), places["worker"])
    assert found == steps.Checkout(places["deployed"].resolve(), "the folder it was deployed from")


@pytest.mark.parametrize("recorded", [None, "", "{{ deployed-from.directory }}", "/nonexistent/x"])
def test_the_worker_directory_when_the_deploy_folder_is_unknown_or_not_here(
        places: dict[str, Path], recorded: str | None) -> None:
    found = _find(None, places["empty"], recorded, places["worker"])
    assert found == steps.Checkout(places["worker"].resolve(), "the worker's working directory")


def test_nothing_found_names_every_place_tried_and_the_fix(places: dict[str, Path]) -> None:
    with pytest.raises(CheckoutNotFound) as err:
        _find(None, places["empty"], "{{ deployed-from.directory }}", places["empty"] / "w")
    message = str(err.value)
    assert message.startswith("cannot find the paramaudit checkout on this worker")
    assert f"the installed paramaudit package ({places['empty']})" in message
    assert "the folder it was deployed from (unknown)" in message
    assert f"the worker's working directory ({places['empty'] / 'w'})" in message
    assert "prefect worker start --pool paramaudit-pool" in message
    assert "PARAMAUDIT_HOME=/path/to/paramaudit" in message and "\n" not in message


def test_messages_stay_one_short_line_whatever_the_path(tmp_path: Path) -> None:
    huge = "/" + "x" * 100_000 + "\n\x1b[31m"
    for call in (lambda: _find(huge), lambda: _find(None, Path(huge), huge, Path(huge))):
        with pytest.raises(CheckoutNotFound) as err:
            call()
        message = str(err.value)
        assert len(message) < 900 and message.isprintable(), message[:200]


def test_a_folder_named_like_the_flow_is_not_a_checkout(tmp_path: Path) -> None:
    (tmp_path / "flows" / "pipeline.py").mkdir(parents=True)
    assert not steps.is_checkout(tmp_path)
    assert not steps.is_checkout(tmp_path / "missing")


def test_a_checkout_behind_a_symlink_is_given_as_its_real_folder(places: dict[str, Path]) -> None:
    link = places["empty"] / "link"
    link.symlink_to(places["home"])
    assert _find(str(link)).directory == places["home"].resolve()


def test_this_checkout_is_found_from_its_editable_install() -> None:
    assert steps.package_root() == ROOT
    assert _find(None, steps.package_root()).directory == ROOT


def test_record_checkout_gives_the_folder_deploy_runs_in(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert steps.record_checkout() == {"directory": str(tmp_path.resolve())}


def test_locate_checkout_gives_the_directory_for_the_next_step(
        places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(steps.FLOW_RUN_ENV, raising=False)
    monkeypatch.setenv("PARAMAUDIT_HOME", str(places["home"]))
    assert steps.locate_checkout("{{ deployed-from.directory }}") == {
        "directory": str(places["home"].resolve())}


def test_locate_checkout_outside_a_flow_run_fails_without_reporting_anywhere(
        places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(steps.FLOW_RUN_ENV, raising=False)
    monkeypatch.setenv("PARAMAUDIT_HOME", str(places["empty"]))
    with pytest.raises(CheckoutNotFound, match="is not a paramaudit checkout"):
        steps.locate_checkout(str(places["deployed"]))  # a valid one: the override still wins


def test_the_worker_directory_is_the_parent_process_cwd_and_no_prefect_is_imported(
        tmp_path: Path) -> None:
    """The pull step runs in the worker's child, started in a temporary folder of its own."""
    code = ("import sys\nfrom paramaudit.app import deploy_steps as s\n"
            "print(s.worker_directory()); print('prefect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=30, check=True).stdout.split("\n")
    assert Path(out[0]) == Path(os.getcwd()).resolve()
    assert out[1] == "False"  # importing the step module costs nothing


def test_prefect_yaml_records_the_deploy_folder_and_locates_the_checkout_on_the_worker() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    [build] = spec["build"]
    assert build == {"paramaudit.app.deploy_steps.record_checkout": {"id": "deployed-from"}}
    locate, chdir = spec["pull"]
    assert locate == {"paramaudit.app.deploy_steps.locate_checkout": {
        "id": "checkout", "deployed_from": "{{ deployed-from.directory }}"}}
    assert chdir == {"prefect.deployments.steps.set_working_directory": {
        "directory": "{{ checkout.directory }}"}}
    # `prefect deploy` fills in `{{ $VAR }}` from the deployer's environment when it is set there
    # (cli/deploy/_core.py applies the step outputs with templating that also reads os.environ),
    # so a pull step must not use one for anything the worker decides
    assert "{{ $" not in json.dumps(spec["pull"])
    assert all("pull" not in dep and "build" not in dep for dep in spec["deployments"])
