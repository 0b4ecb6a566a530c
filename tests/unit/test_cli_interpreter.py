"""The CLI's own bookkeeping, in process: what it changes in the interpreter it gives back."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from paramaudit.app import cli
from paramaudit.errors import UserInputError


def test_run_resumes_the_garbage_collector_it_paused_even_on_bad_input(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a configured API: no temporary server is started for this in-process call
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.chdir(tmp_path)
    args = cli._parser().parse_args(["run", "--data", "missing.csv", "--target", "y"])
    paused: list[bool] = []
    check = cli.preflight

    def preflight(parsed: object) -> object:
        paused.append(not gc.isenabled())
        return check(parsed)

    monkeypatch.setattr(cli, "preflight", preflight)
    assert gc.isenabled()
    with pytest.raises(UserInputError, match="missing.csv"):
        cli.cmd_run(args)
    assert paused == [True]  # the checks' imports ran with it paused
    assert gc.isenabled()
