"""Every bad input of the corpus in tests/data/bad/, run through the command line.

Each case must fail in preflight, before Ray or MLflow start and before Prefect's server (started
gated, to import meanwhile) goes on to its database: exit code 2, exactly one line on stderr
naming the file or field, no traceback (``--debug`` shows one), no output JSON, and no MLflow run
left RUNNING. tests/data/bad/README.md lists the cases.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, cli_env, paramaudit_cmd

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect")]

BAD = ROOT / "tests" / "data" / "bad"
TIMEOUT = 120  # a case that slipped past preflight would start the whole pipeline


# name -> (command line after `paramaudit`, fragment the one stderr line must contain)
CASES: dict[str, tuple[list[str], str]] = {
    # ---- data files
    "missing file": (["run", "--data", "missing.csv", "--target", "label"], "'missing.csv': not found"),
    "relative path in YAML": (["run", "--config", "relative_path.yaml"], "working directory"),
    "directory as data": (["run", "--data", "directory.csv", "--target", "label"], "is a directory"),
    "empty file": (["run", "--data", "empty.csv", "--target", "label"], "'empty.csv': the file is empty"),
    "blank lines only": (["run", "--data", "blank_lines.csv", "--target", "label"], "'blank_lines.csv'"),
    "header without rows": (["run", "--data", "header_only.csv", "--target", "label"], "no rows"),
    "unknown target column": (["run", "--data", "valid_tabular.csv", "--target", "lable"],
                              "did you mean 'label'"),
    "data without target": (["run", "--data", "valid_tabular.csv"], "target column"),
    "target with a built-in set": (["run", "--config", "target_with_builtin.yaml"], "own labels"),
    "only a target column": (["run", "--data", "target_only.csv", "--target", "label"],
                             "no feature columns"),
    "one class": (["run", "--data", "one_class.csv", "--target", "label"], "one class"),
    "class with one sample": (["run", "--data", "single_sample_class.csv", "--target", "label"],
                              "class 'yak' has 1 sample"),
    "continuous target as classes": (["run", "--data", "regression_target.csv", "--target", "price",
                                      "--task", "classification"], "'price' has 60 distinct values"),
    "regression on a text target": (["run", "--data", "valid_tabular.csv", "--target", "label",
                                     "--task", "regression"], "needs a numeric target"),
    "classification metric for a regression": (["run", "--config", "regression_metric.yaml"],
                                                "val_accuracy is a classification metric"),
    "target all missing": (["run", "--data", "target_all_missing.csv", "--target", "label"],
                           "'label' is all missing"),
    "inf in features": (["run", "--data", "inf_feature.csv", "--target", "label"], "columns f1"),
    "non-numeric feature": (["run", "--data", "non_numeric.csv", "--target", "label",
                             "--categorical", "error"], "non-numeric feature columns colour"),
    "numbers with a stray word": (["run", "--data", "stray_text.csv", "--target", "label"],
                                  "'f3' is numeric except for '12a'"),
    "categorical identifier column": (["run", "--config", "high_cardinality.yaml"],
                                      "'customer_id' has 240 distinct values"),
    "duplicate column names": (["run", "--data", "duplicate_columns.csv", "--target", "label"],
                               "duplicate column names f1"),
    "binary file named .csv": (["run", "--data", "garbage.csv", "--target", "label"], "binary content"),
    "latin-1 file": (["run", "--data", "latin1.csv", "--target", "label"], "not UTF-8"),
    "semicolon-separated": (["run", "--data", "semicolon.csv", "--target", "label"],
                            "separated by ';'"),
    "ragged rows": (["run", "--data", "ragged.csv", "--target", "label"], "cannot be parsed as CSV"),
    "corrupt parquet": (["run", "--data", "corrupt.parquet", "--target", "label"],
                        "not a readable Parquet file"),
    "spreadsheet": (["run", "--data", "spreadsheet.xlsx", "--target", "label"], "'.xlsx'"),
    "truncated gzip CSV": (["run", "--data", "truncated.csv.gz", "--target", "label"],
                           "'truncated.csv.gz': a corrupt or truncated gzip file"),
    "gzip of binary garbage": (["run", "--data", "garbage.csv.gz", "--target", "label"],
                               "binary content"),
    "image_shape does not match": (["run", "--config", "image_shape_mismatch.yaml"], "data.image_shape"),
    # ---- the data against the config (data.check_inputs in preflight)
    "fewer rows than folds": (["run", "--config", "cv_folds_too_many.yaml"], "search.cv_folds"),
    "too few rows for the split": (["run", "--config", "split_too_small.yaml"], "too few"),
    "PCA fraction above 1": (["run", "--config", "pca_fraction.yaml"],
                             "preprocess.pca_components"),
    "more PCA components than features": (["run", "--config", "pca_too_many.yaml"],
                                          "preprocess.pca_components: 10 components"),
    "augmentation on tabular data": (["run", "--config", "augment_tabular.yaml"], "preprocess.augment"),
    "cnn on tabular data": (["run", "--config", "cnn_tabular.yaml"], "model: cnn needs image data"),
    # ---- configuration
    "YAML does not parse": (["run", "--config", "does_not_parse.yaml"], "does not parse at line"),
    "YAML key given twice": (["run", "--config", "duplicate_key.yaml"], "duplicate key 'search'"),
    "YAML not a mapping": (["run", "--config", "not_a_mapping.yaml"], "mapping"),
    "unknown key": (["run", "--config", "unknown_key.yaml"], "did you mean 'search'"),
    "key in the wrong section": (["run", "--config", "wrong_nesting.yaml"], "did you mean 'search.trials'"),
    "wrong type": (["run", "--config", "wrong_type.yaml"], "config: search.trials:"),
    "zero learning rate": (["run", "--config", "zero_learning_rate.yaml"], "learning_rate"),
    "negative batch size": (["run", "--config", "negative_batch_size.yaml"], "batch_size"),
    "negative epochs": (["run", "--config", "negative_epochs.yaml"], "config: train.max_epochs:"),
    "zero epochs on the command line": (["run", "--max-epochs", "0"], "config: train.max_epochs:"),
    "negative seed": (["run", "--seed", "-1"], "config: seed:"),
    "negative val_size": (["run", "--config", "val_size_negative.yaml"], "config: data.val_size:"),
    "val_size + test_size too large": (["run", "--config", "sizes_too_large.yaml"], "at least 10%"),
    "empty search space": (["run", "--config", "empty_space.yaml"], "search space is empty"),
    "grid over a continuous range": (["run", "--config", "grid_continuous.yaml"], "grid search"),
    "even CNN kernel": (["run", "--config", "even_kernel.yaml"], "kernel_size"),
    "unknown model": (["run", "--config", "unknown_model.yaml"], "did you mean 'mlp'"),
    "unknown optimizer": (["run", "--config", "unknown_optimizer.yaml"], "did you mean 'adam'"),
    "unknown search algorithm": (["run", "--config", "unknown_search.yaml"], "search.algorithm"),
    "unknown scaler": (["run", "--config", "unknown_scaler.yaml"], "preprocess.scaler"),
    # ---- inputs that would cost unbounded time or memory (issue 16)
    "YAML bomb": (["run", "--config", "yaml_bomb.yaml"], "more than 100,000 values once its aliases"),
    "recursive YAML alias": (["run", "--config", "yaml_recursive.yaml"], "recursive structure"),
    "YAML nested too deep": (["run", "--config", "yaml_deep.yaml"], "nested more than 32 levels"),
    "huge key": (["run", "--config", "huge_key.yaml"], "(9,998 characters)"),
    "huge data set name": (["run", "--dataset", "digits" * 20_000], "(120,000 characters)"),
    "a billion trials": (["run", "--config", "huge_trials.yaml"],
                         "config: search.trials: must be at most 10,000"),
    "a billion trials on the command line": (["run", "--trials", "1000000000"],
                                             "config: search.trials: must be at most 10,000"),
    "epochs without end on the command line": (["run", "--max-epochs", "100000"],
                                               "config: train.max_epochs: must be at most 10,000"),
    "huge hidden size": (["run", "--config", "huge_hidden_size.yaml"], "hidden_size: must be at most 65,536"),
    "grid of 160,000 trials": (["run", "--config", "huge_grid.yaml"],
                               "this grid search plans 160,000 trials"),
    # ---- the parameter audit
    "audit SPEC that does not import": (["audit", "broken_model:build"], "broken_model"),
}

def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(paramaudit_cmd() + args, cwd=cwd, env=cli_env(cwd), capture_output=True,
                          text=True, timeout=TIMEOUT)


def _corpus_in(tmp_path: Path) -> None:
    shutil.copytree(BAD, tmp_path, dirs_exist_ok=True)


def _running_mlflow_runs(workdir: Path) -> list[str]:
    db = workdir / "mlflow.db"
    if not db.exists():
        return []
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    running = []
    for exp in client.search_experiments(view_type=ViewType.ALL):
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL):
            if run.info.status == "RUNNING":
                running.append(run.info.run_id)
    return running


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line(case: str, tmp_path: Path) -> None:
    args, fragment = CASES[case]
    _corpus_in(tmp_path)
    if args[0] == "run":
        args = [*args, "--output-json", "out.json"]
    proc = _run(args, tmp_path)
    assert proc.returncode == 2, f"exit {proc.returncode}\nstderr: {proc.stderr}\nstdout: {proc.stdout}"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0], lines[0]
    assert len(lines[0]) < 500, lines[0][:500]  # quotes at most ~80 characters of any value
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "out.json").exists()
    assert _running_mlflow_runs(tmp_path) == []


# the cases above whose input, unbounded, took minutes and gigabytes or was accepted and never ended
BOUNDED = ["YAML bomb", "recursive YAML alias", "YAML nested too deep", "huge key", "huge data set name",
           "a billion trials", "a billion trials on the command line",
           "epochs without end on the command line", "huge hidden size", "grid of 160,000 trials",
           "truncated gzip CSV", "gzip of binary garbage"]


@pytest.mark.parametrize("case", BOUNDED)
def test_bounded_inputs_fail_fast_in_the_cli_preflight(case: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI's own argument parser and preflight, timed in-process: a subprocess's wall time is
    # mostly imports and the gated Prefect server (the exit code and stderr are checked above)
    import paramaudit.data  # noqa: F401  (imports are not validation: pandas, and torch below)
    from paramaudit.app.cli import _parser, preflight
    from paramaudit.config import build_config
    from paramaudit.errors import UserInputError

    # checking a search space imports the models' declarations (so torch) once
    build_config({"search": {"space": {"hidden_size": 8}}})
    _corpus_in(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = _parser().parse_args(CASES[case][0])
    started = time.perf_counter()
    with pytest.raises(UserInputError) as info:
        preflight(args)
    elapsed = time.perf_counter() - started
    assert CASES[case][1] in str(info.value)
    assert elapsed < 1.0, f"{case}: preflight took {elapsed:.2f} s"


def test_debug_shows_the_traceback_of_a_data_error(tmp_path: Path) -> None:
    _corpus_in(tmp_path)
    proc = _run(["run", "--data", "empty.csv", "--target", "label", "--debug"], tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "DataError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("paramaudit: error: data file 'empty.csv'")


def test_every_corpus_file_has_a_case_and_every_case_is_documented() -> None:
    used: set[str] = set()
    for args, _ in CASES.values():
        used |= {a.split(":")[0] for a in args}
    # data files that a case's YAML names
    for name in list(used):
        if name.endswith(".yaml") and (BAD / name).is_file():
            used |= set(re.findall(r"path:\s*(\S+)", (BAD / name).read_text()))
    used |= {f"{u}.py" for u in used}
    corpus = {p.name for p in BAD.iterdir()} - {"README.md"}
    assert sorted(corpus - used) == [], "corpus files no case uses"
    readme = (BAD / "README.md").read_text()
    assert [c for c in CASES if f"| {c} |" not in readme] == [], "cases missing from README.md"
