"""The services stack's bookkeeping, without starting it (tests/integration/test_services.py
starts it): private files, the saved password, status of a folder with nothing running, and
the one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from paramaudit.app import services
from paramaudit.errors import UserInputError


def test_secrets_and_env_files_are_private_and_the_password_is_kept(tmp_path: Path) -> None:
    stack = services.Stack(tmp_path / "stack")
    first = stack.password()
    assert len(first) >= 24 and stack.password() == first  # made once, then read back
    assert stack.secrets_file.stat().st_mode & 0o777 == 0o600
    url = stack.db_url("asyncpg", "prefect", 5432)
    assert url == f"postgresql+asyncpg://paramaudit:{first}@127.0.0.1:5432/prefect"
    assert services.client_env({"mlflow": 1, "prefect": 2}) == {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "PREFECT_API_URL": "http://127.0.0.1:2/api"}


def test_status_and_down_of_a_folder_where_nothing_was_started(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert services.main(["status", "--dir", str(tmp_path / "none")]) == 1
    assert "not started" in capsys.readouterr().out
    assert services.main(["down", "--dir", str(tmp_path / "none")]) == 0  # nothing to stop


def test_no_postgresql_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    monkeypatch.setattr(services, "PG_BIN_DIRS", tmp_path / "no-postgresql")
    with pytest.raises(UserInputError, match="PostgreSQL's initdb is not installed"):
        services._pg_tool("initdb")
    assert services.main(["up", "--dir", str(tmp_path / "stack")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PostgreSQL's initdb is not installed" in err
