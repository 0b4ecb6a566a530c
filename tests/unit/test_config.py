"""The typed configuration: defaults, YAML loading, overrides, and every one-line ConfigError."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from paramaudit.config import (
    DEFAULT_SPACE,
    PipelineConfig,
    build_config,
    declared_hyperparameters,
    describe_validation_error,
    load_config,
    quote,
    read_yaml,
    resolve_hyperparameters,
)
from paramaudit.errors import ConfigError, UserInputError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_YAML = ROOT / "configs" / "default.yaml"
# what every model's run reads besides the model's own hyperparameters (training's, and the
# dropout and activation both built-in models declare)
COMMON = {"learning_rate", "batch_size", "weight_decay", "optimizer", "class_weight",
          "label_smoothing", "dropout", "activation"}


def default_of(name: str) -> Any:
    return declared_hyperparameters()[name].default


def config_error(raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> str:
    """Build a config that must fail; return its message after checking it is one line."""
    with pytest.raises(ConfigError) as info:
        build_config(raw, overrides)
    msg = str(info.value)
    assert "\n" not in msg, f"ConfigError spans lines: {msg!r}"
    assert msg.startswith("config"), msg
    return msg


def with_space(space: dict[str, Any], **search: Any) -> dict[str, Any]:
    return {"search": {**search, "space": space}}


# --------------------------------------------------------------------------- defaults and YAML


def test_defaults_validate() -> None:
    cfg = PipelineConfig()
    assert cfg.model == "mlp"
    assert cfg.data.dataset == "digits" and cfg.data.path is None
    assert cfg.search.trials == 16
    assert cfg.search.space == DEFAULT_SPACE
    assert set(cfg.search.sampled()) == {k for k, v in DEFAULT_SPACE.items() if isinstance(v, dict)}
    assert "activation" not in cfg.search.sampled()  # fixed, not sampled
    # round trip: a dumped config validates again to the same thing
    assert PipelineConfig.model_validate(cfg.model_dump()) == cfg


def test_load_config_none_is_defaults() -> None:
    assert load_config(None) == PipelineConfig()


def test_default_yaml_loads() -> None:
    cfg = load_config(DEFAULT_YAML)
    assert cfg.experiment == "paramaudit"
    assert cfg.data.dataset == "digits"
    assert cfg.search.algorithm == "random"
    assert cfg.search.trials == 16
    assert cfg.search.space["learning_rate"] == {"loguniform": [3e-4, 3e-3]}
    assert cfg.search.space["optimizer"] == {"choice": ["adam", "adamw"]}
    assert cfg.search.space["activation"] == "relu"
    assert cfg.train.max_epochs == 30 and cfg.train.patience == 5
    assert cfg.overfit.max_gap == pytest.approx(0.05)


def test_the_overfit_section_is_read_under_its_old_name_audit_too() -> None:
    old = build_config({"audit": {"max_gap": 0.2, "fail_on_overfit": True}})
    assert old.overfit.max_gap == pytest.approx(0.2) and old.overfit.fail_on_overfit
    assert "audit" not in old.model_dump()  # saved (config.json, for --resume) as overfit
    assert build_config(old.model_dump()).overfit == old.overfit
    with pytest.raises(ConfigError, match="audit and overfit are the same section"):
        build_config({"audit": {"max_gap": 0.2}, "overfit": {"max_gap": 0.1}})


def test_default_yaml_shows_the_default_space_in_its_order() -> None:
    # configs/default.yaml is the users' copy of DEFAULT_SPACE; Ray Tune samples in the space's
    # order, so the same order means the same trials for a seed
    space = read_yaml(DEFAULT_YAML)["search"]["space"]
    assert space == DEFAULT_SPACE and list(space) == list(DEFAULT_SPACE)


def test_the_readme_shows_the_default_space() -> None:
    """The README's config example is the defaults a user gets, not a copy that drifted."""
    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:]]
    shown = [yaml.safe_load(b) for b in blocks if "search:" in b and "space:" in b]
    assert shown, "the README has no config example with a search space"
    assert shown[0]["search"]["space"] == DEFAULT_SPACE


def test_empty_yaml_is_defaults(tmp_path: Path) -> None:
    p = tmp_path / "empty.yaml"
    p.write_text("# nothing but a comment\n")
    assert read_yaml(p) == {}
    assert load_config(p) == PipelineConfig()


def test_overrides_with_dotted_keys() -> None:
    cfg = load_config(DEFAULT_YAML, {"search.trials": 3, "train.max_epochs": 7, "seed": 11,
                                     "search.algorithm": "bayes", "experiment": "e2"})
    assert cfg.search.trials == 3
    assert cfg.train.max_epochs == 7
    assert cfg.seed == 11
    assert cfg.search.algorithm == "bayes"
    assert cfg.experiment == "e2"
    # the rest of the YAML survives an override in the same section
    assert cfg.search.space["learning_rate"] == {"loguniform": [3e-4, 3e-3]}
    assert cfg.search.scheduler == "asha"


def test_override_none_is_ignored() -> None:
    cfg = load_config(DEFAULT_YAML, {"search.trials": None, "seed": None})
    assert cfg.search.trials == 16 and cfg.seed == 0


def test_override_is_validated() -> None:
    msg = config_error({}, {"search.trials": 0})
    assert "search.trials" in msg


def test_override_does_not_mutate_raw_mapping() -> None:
    raw = {"search": {"trials": 5, "space": {"learning_rate": 0.1}}}
    build_config(raw, {"search.trials": 2})
    assert raw == {"search": {"trials": 5, "space": {"learning_rate": 0.1}}}


def test_override_of_search_keeps_default_space() -> None:
    # `paramaudit run --trials 4` (no --config) builds {"search": {"trials": 4}}: the default
    # search space must survive, not silently become {} (this was a bug: space defaulted to {})
    cfg = load_config(None, {"search.trials": 4})
    assert cfg.search.trials == 4
    assert cfg.search.space == DEFAULT_SPACE


def test_search_section_without_space_keeps_default_space() -> None:
    cfg = build_config({"search": {"trials": 3, "scheduler": "none"}})
    assert cfg.search.space == DEFAULT_SPACE
    assert cfg.search.sampled()


def test_default_space_is_not_shared_between_configs() -> None:
    a = build_config({"search": {"trials": 3}})
    a.search.space["learning_rate"] = 0.5
    assert build_config({"search": {"trials": 3}}).search.space == DEFAULT_SPACE
    assert DEFAULT_SPACE["learning_rate"] == {"loguniform": [3e-4, 3e-3]}


def test_grid_over_default_space_is_rejected() -> None:
    # the default space samples continuous ranges, which a grid cannot enumerate
    msg = config_error({"search": {"algorithm": "grid"}})
    assert "grid" in msg and "search" in msg


def test_data_path_override_replaces_yaml_dataset(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  dataset: wine\n  val_size: 0.25\n")
    cfg = load_config(p, {"data.path": str(tmp_path / "my.csv"), "data.target": "label"})
    assert cfg.data.dataset is None
    assert cfg.data.path == tmp_path / "my.csv"
    assert cfg.data.target == "label"
    assert cfg.data.val_size == pytest.approx(0.25)  # other keys of the section survive


def test_data_dataset_override_replaces_yaml_path() -> None:
    raw = {"data": {"path": "x.csv", "target": "y", "test_size": 0.3}}
    cfg = build_config(raw, {"data.dataset": "iris"})
    assert cfg.data.dataset == "iris"
    assert cfg.data.path is None and cfg.data.target is None
    assert cfg.data.test_size == pytest.approx(0.3)


def test_path_alone_drops_builtin_default() -> None:
    cfg = build_config({"data": {"path": "x.csv", "target": "y"}})
    assert cfg.data.dataset is None and cfg.data.path == Path("x.csv")


# --------------------------------------------------------------------------- file errors


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    msg = str(info.value)
    assert str(missing) in msg and "not found" in msg and "\n" not in msg


def test_yaml_that_does_not_parse_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("seed: 1\nsearch:\n  trials: [1, 2\n  algorithm: random\nmodel: : :\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(p) in msg
    assert "line 4" in msg  # where the unclosed list on line 3 turns out to be broken
    assert "does not parse" in msg


def test_yaml_tab_error_line_number(tmp_path: Path) -> None:
    p = tmp_path / "tab.yaml"
    p.write_text("seed: 1\nexperiment: x\nsearch:\n\ttrials: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert "line 4" in str(info.value)


def test_binary_config_file(tmp_path: Path) -> None:
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_not_a_mapping(tmp_path: Path, text: str) -> None:
    p = tmp_path / "list.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert "mapping" in str(info.value) and str(p) in str(info.value)


def test_config_error_is_a_user_input_error() -> None:
    with pytest.raises(UserInputError):
        build_config({"search": {"trials": -1}})


# --------------------------------------------------------------------------- unknown keys


def test_unknown_top_level_key_suggests() -> None:
    msg = config_error({"serach": {"trials": 3}})
    assert "'serach'" in msg
    assert "did you mean 'search'" in msg


def test_unknown_nested_key_suggests() -> None:
    msg = config_error({"search": {"trails": 3, "space": {"learning_rate": 0.1}}})
    assert "search.trails" in msg
    assert "did you mean 'trials'" in msg


def test_unknown_key_in_other_sections() -> None:
    assert "did you mean 'max_epochs'" in config_error({"train": {"max_epoch": 3}})
    assert "did you mean 'tracking_uri'" in config_error({"tracking": {"tracking_url": "x"}})


def test_unknown_key_far_from_anything_has_no_hint() -> None:
    msg = config_error({"zzzzzz": 1})
    assert "'zzzzzz'" in msg and "did you mean" not in msg


# --------------------------------------------------------------------------- types and ranges


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"search": {"trials": "many", "space": {"learning_rate": 0.1}}}, "search.trials"),
        ({"seed": "x"}, "seed"),
        ({"train": {"max_epochs": 2.5}}, "train.max_epochs"),
        ({"search": 5}, "search"),
        ({"data": ["digits"]}, "data"),
        ({"smoke": "maybe"}, "smoke"),
        ({"search": {"algorithm": "exhaustive", "space": {"learning_rate": 0.1}}}, "search.algorithm"),
        ({"preprocess": {"scaler": "zscore"}}, "preprocess.scaler"),
    ],
)
def test_wrong_types_name_the_field(raw: dict[str, Any], field: str) -> None:
    msg = config_error(raw)
    assert f"config: {field}:" in msg


@pytest.mark.parametrize("value", [0, -1])
def test_nonpositive_trials(value: int) -> None:
    assert "search.trials" in config_error({"search": {"trials": value}})


@pytest.mark.parametrize("value", [0, -3])
def test_nonpositive_max_epochs(value: int) -> None:
    assert "train.max_epochs" in config_error({"train": {"max_epochs": value}})


@pytest.mark.parametrize("value", [0, -0.01, 0.0, float("nan"), float("inf"), True, "fast"])
def test_bad_fixed_learning_rate(value: Any) -> None:
    msg = config_error(with_space({"learning_rate": value}))
    assert "search.space" in msg and "learning_rate" in msg


@pytest.mark.parametrize("value", [0, -1, [0, 32], 32.0])
def test_bad_batch_size(value: Any) -> None:
    space = {"batch_size": {"choice": value}} if isinstance(value, list) else {"batch_size": value}
    msg = config_error(with_space(space))
    assert "batch_size" in msg


def test_negative_learning_rate_inside_a_range() -> None:
    msg = config_error(with_space({"learning_rate": {"uniform": [-0.1, 0.1]}}))
    assert "learning_rate" in msg


def test_empty_search_space() -> None:
    msg = config_error({"search": {"space": {}}})
    assert "search.space" in msg and "empty" in msg


def test_grid_over_continuous_range() -> None:
    msg = config_error(with_space({"learning_rate": {"loguniform": [1e-4, 1e-1]}}, algorithm="grid"))
    assert "grid" in msg and "learning_rate" in msg


def test_grid_over_choices_is_fine() -> None:
    cfg = build_config(with_space({"learning_rate": {"choice": [0.1, 0.01]}, "optimizer": "sgd"},
                                  algorithm="grid"))
    assert cfg.search.space["learning_rate"] == {"choice": [0.1, 0.01]}
    assert cfg.search.sampled() == ["learning_rate"]


def test_unknown_hyperparameter_suggests() -> None:
    msg = config_error(with_space({"lerning_rate": 0.1}))
    assert "'lerning_rate'" in msg and "did you mean 'learning_rate'" in msg


def test_unknown_distribution_suggests() -> None:
    msg = config_error(with_space({"learning_rate": {"unifrom": [0.01, 0.1]}}))
    assert "'unifrom'" in msg and "did you mean 'uniform'" in msg


@pytest.mark.parametrize("low", [0, 0.0, -1e-3])
def test_loguniform_low_not_positive(low: float) -> None:
    msg = config_error(with_space({"weight_decay": {"loguniform": [low, 1e-2]}}))
    assert "weight_decay" in msg


def test_loguniform_low_zero_message() -> None:
    msg = config_error(with_space({"weight_decay": {"loguniform": [0, 1e-2]}}))
    assert "low > 0" in msg


@pytest.mark.parametrize(
    "spec",
    [{"uniform": [0.1, 0.01]}, {"uniform": [0.1, 0.1]}, {"loguniform": [1e-1, 1e-4]}],
)
def test_low_not_below_high(spec: dict[str, Any]) -> None:
    msg = config_error(with_space({"learning_rate": spec}))
    assert "low < high" in msg and "learning_rate" in msg


def test_randint_low_not_below_high() -> None:
    assert "low < high" in config_error(with_space({"hidden_size": {"randint": [64, 64]}}))


@pytest.mark.parametrize(
    "spec",
    [{"choice": []}, {"uniform": [0.1]}, {"uniform": 0.1}, {"uniform": [0.1, 0.2], "choice": [1]}],
)
def test_malformed_distribution(spec: dict[str, Any]) -> None:
    assert "learning_rate" in config_error(with_space({"learning_rate": spec}))


def test_continuous_range_over_integer_hyperparameter() -> None:
    msg = config_error(with_space({"batch_size": {"uniform": [16, 128]}}))
    assert "batch_size" in msg and "integer" in msg


def test_unknown_optimizer_suggests() -> None:
    msg = config_error(with_space({"optimizer": "adamm"}))
    assert "optimizer" in msg and "did you mean 'adam'" in msg


def test_unknown_optimizer_in_choice() -> None:
    msg = config_error(with_space({"optimizer": {"choice": ["adam", "lion"]}}))
    assert "optimizer" in msg and "'lion'" in msg


def test_unknown_activation() -> None:
    assert "activation" in config_error(with_space({"activation": "relu6"}))


def test_unknown_model_suggests() -> None:
    msg = config_error({"model": "mpl"})
    assert "config: model:" in msg and "did you mean 'mlp'" in msg


def test_unknown_dataset_suggests() -> None:
    msg = config_error({"data": {"dataset": "digit"}})
    assert "data" in msg and "'digit'" in msg and "did you mean 'digits'" in msg


def test_both_dataset_and_path() -> None:
    msg = config_error({"data": {"dataset": "iris", "path": "x.csv", "target": "y"}})
    assert "data" in msg and "both" in msg


def test_neither_dataset_nor_path() -> None:
    assert "data" in config_error({"data": {"dataset": None}})


def test_path_without_target() -> None:
    msg = config_error({"data": {"path": "x.csv"}})
    assert "data" in msg and "target" in msg


@pytest.mark.parametrize(("val", "test"), [(0.45, 0.45), (0.5, 0.45), (0.6, 0.35)])
def test_val_plus_test_too_large(val: float, test: float) -> None:
    msg = config_error({"data": {"val_size": val, "test_size": test}})
    assert "val_size + test_size" in msg


@pytest.mark.parametrize("size", [0, 1, -0.1, 1.5])
def test_split_fraction_out_of_range(size: float) -> None:
    assert "data.val_size" in config_error({"data": {"val_size": size}})


def test_max_rows_too_small() -> None:
    assert "data.max_rows" in config_error({"data": {"max_rows": 5}})


def test_several_problems_still_one_line() -> None:
    msg = config_error({"seed": "x", "search": {"trials": 0, "grace_period": 0}})
    assert "more problem" in msg


def test_assignment_is_validated() -> None:
    cfg = PipelineConfig()
    with pytest.raises(ValueError):
        cfg.search.trials = 0


# --------------------------------------------------------------------------- effective()


def test_effective_in_smoke_mode_shrinks_and_copies() -> None:
    cfg = load_config(DEFAULT_YAML, {"smoke": True})
    eff = cfg.effective()
    assert eff is not cfg
    assert eff.search.trials == 2
    assert eff.search.grace_period == 1
    assert eff.train.max_epochs == 2
    assert eff.train.patience == 2
    # the original is untouched
    assert cfg.search.trials == 16
    assert cfg.search.grace_period == 3
    assert cfg.train.max_epochs == 30
    assert cfg.train.patience == 5
    assert eff.search.space == cfg.search.space


def test_effective_smoke_never_grows_budgets() -> None:
    cfg = build_config({"smoke": True, "search": {"trials": 1, "space": {"learning_rate": 0.1}},
                        "train": {"max_epochs": 1, "patience": 1}})
    eff = cfg.effective()
    assert eff.search.trials == 1 and eff.train.max_epochs == 1 and eff.train.patience == 1


def test_effective_without_smoke_is_unchanged() -> None:
    cfg = load_config(DEFAULT_YAML)
    assert cfg.effective() == cfg
    assert cfg.effective().search.trials == 16


# --------------------------------------------------------------------------- resolve_hyperparameters


def test_resolve_mlp_fills_defaults_and_drops_cnn_keys() -> None:
    hp = resolve_hyperparameters({"learning_rate": 0.05, "channels": 8, "kernel_size": 5,
                                  "hidden_size": 32, "optimizer": "adam", "bogus": 1}, "mlp")
    assert set(hp) == COMMON | {"num_layers", "hidden_size"}
    assert hp["learning_rate"] == 0.05
    assert hp["hidden_size"] == 32
    assert hp["num_layers"] == default_of("num_layers")
    assert hp["batch_size"] == default_of("batch_size")
    assert "momentum" not in hp and "channels" not in hp and "bogus" not in hp


def test_resolve_cnn_keeps_cnn_keys_only() -> None:
    hp = resolve_hyperparameters({"channels": 8, "num_layers": 3, "hidden_size": 64}, "cnn")
    assert set(hp) == COMMON | {"channels", "kernel_size", "conv_layers"}
    assert hp["channels"] == 8
    assert hp["kernel_size"] == default_of("kernel_size")
    assert "num_layers" not in hp and "hidden_size" not in hp


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_momentum_dropped_unless_sgd_momentum(optimizer: str) -> None:
    hp = resolve_hyperparameters({"optimizer": optimizer, "momentum": 0.5})
    assert "momentum" not in hp
    assert hp["optimizer"] == optimizer


def test_momentum_kept_for_sgd_momentum() -> None:
    hp = resolve_hyperparameters({"optimizer": "sgd_momentum", "momentum": 0.5})
    assert hp["momentum"] == 0.5
    default = resolve_hyperparameters({"optimizer": "sgd_momentum"})
    assert default["momentum"] == default_of("momentum")


def test_momentum_dropped_for_default_optimizer() -> None:
    assert "momentum" not in resolve_hyperparameters({"momentum": 0.5})


# --------------------------------------------------------------------------- wrong nesting, YAML traps


@pytest.mark.parametrize(
    ("raw", "where", "hint"),
    [
        ({"trials": 4}, "'trials'", "did you mean 'search.trials'"),
        ({"max_epochs": 4}, "'max_epochs'", "did you mean 'train.max_epochs'"),
        ({"learning_rate": 0.1}, "'learning_rate'", "did you mean 'search.space.learning_rate'"),
        ({"search": {"learning_rate": 0.1}}, "'search.learning_rate'",
         "did you mean 'search.space.learning_rate'"),
        ({"search": {"max_epochs": 3}}, "'search.max_epochs'", "did you mean 'train.max_epochs'"),
        ({"data": {"scaler": "minmax"}}, "'data.scaler'", "did you mean 'preprocess.scaler'"),
        ({"pca_components": 3}, "'pca_components'", "did you mean 'preprocess.pca_components'"),
    ],
)
def test_key_in_the_wrong_section_names_the_right_one(raw: dict[str, Any], where: str, hint: str) -> None:
    msg = config_error(raw)
    assert f"unknown key {where}" in msg and hint in msg


def test_in_section_typo_still_suggests_the_local_key() -> None:
    assert "did you mean 'cv_folds'" in config_error({"search": {"cv_fold": 3}})
    assert "did you mean 'search'" in config_error({"serach": {}})


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "dup.yaml"
    p.write_text("search:\n  trials: 3\ntrain:\n  max_epochs: 2\nsearch:\n  algorithm: grid\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert str(p) in msg and "duplicate key 'search' at line 5" in msg and "\n" not in msg


def test_duplicate_nested_yaml_key_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "dup.yaml"
    p.write_text("search:\n  trials: 3\n  trials: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert "duplicate key 'trials' at line 3" in str(info.value)


def test_same_key_in_different_sections_and_merge_keys_are_fine(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text("x: &base {a: 1}\ny:\n  <<: *base\n  b: 2\nz: {a: 3}\n")
    assert read_yaml(p) == {"x": {"a": 1}, "y": {"a": 1, "b": 2}, "z": {"a": 3}}


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert "is a directory" in str(info.value)


# --------------------------------------------------------------------------- new validation


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range(seed: int) -> None:
    assert "config: seed:" in config_error({"seed": seed})


def test_seed_range_ends_are_fine() -> None:
    assert build_config({"seed": 2**32 - 1}).seed == 2**32 - 1
    assert build_config({"seed": 0}).seed == 0


def test_target_with_a_builtin_data_set() -> None:
    msg = config_error({"data": {"dataset": "wine", "target": "quality"}})
    assert msg.startswith("config: data:") and "own labels" in msg


def test_target_override_with_a_builtin_data_set() -> None:
    assert "own labels" in config_error({"data": {"dataset": "iris"}}, {"data.target": "y"})


@pytest.mark.parametrize("value", [2, 4, {"choice": [3, 4]}, {"randint": [1, 7]}])
def test_even_or_random_kernel_sizes_are_refused(value: Any) -> None:
    msg = config_error({"search": {"space": {"kernel_size": value}}})
    assert "kernel_size" in msg


def test_a_name_no_model_of_the_run_reads_leaves_the_space() -> None:
    cfg = build_config({"search": {"space": {"kernel_size": {"choice": [3, 5]}, "dropout": 0.2}}})
    assert cfg.search.space == {"dropout": 0.2}  # an MLP run: the kernel would only add trials
    with pytest.raises(ConfigError, match="no model of this run"):
        build_config({"search": {"space": {"kernel_size": 3}}})


def test_odd_kernel_sizes_are_fine() -> None:
    cfg = build_config({"model": "cnn", "search": {"space": {"kernel_size": {"choice": [1, 3, 5]}}}})
    assert cfg.search.space["kernel_size"] == {"choice": [1, 3, 5]}


@pytest.mark.parametrize("folds", [0, 1, 21, "five"])
def test_cv_folds_range(folds: Any) -> None:
    assert "config: search.cv_folds:" in config_error({"search": {"cv_folds": folds}})


def test_cv_folds_default_is_off() -> None:
    assert PipelineConfig().search.cv_folds is None
    assert build_config({"search": {"cv_folds": 5}}).search.cv_folds == 5


@pytest.mark.parametrize("value", [0, -1, 1.5, 0.0, True, "many", {"choice": []}, {"choice": [2, 0]},
                                   {"uniform": [0.5, 0.9]}])
def test_bad_pca_components(value: Any) -> None:
    assert "config: preprocess.pca_components:" in config_error({"preprocess": {"pca_components": value}})


@pytest.mark.parametrize("value", [None, "none", 3, 0.95, 1.0, {"choice": [None, 2, 0.9]}])
def test_good_pca_components(value: Any) -> None:
    build_config({"preprocess": {"pca_components": value}})


@pytest.mark.parametrize(("field", "value"), [("scaler", {"choice": ["standard", "zscore"]}),
                                              ("scaler", 3), ("augment", "yes"),
                                              ("augment", {"choice": [True, 1]})])
def test_bad_searched_preprocessing(field: str, value: Any) -> None:
    assert f"config: preprocess.{field}:" in config_error({"preprocess": {field: value}})


def test_searched_preprocessing_is_listed() -> None:
    cfg = build_config({"preprocess": {"scaler": {"choice": ["standard", "minmax"]}, "augment": True}})
    assert cfg.preprocess.searched() == {"scaler": ["standard", "minmax"]}
    assert cfg.preprocess.fixed() == {"pca_components": None, "augment": True, "impute": "median"}


@pytest.mark.parametrize(("raw", "field"), [
    ({"categorical": "ordinal"}, "data.categorical"),
    ({"image_shape": [8, 8]}, "data.image_shape"),
    ({"image_shape": [1, 0, 8]}, "data.image_shape"),
    ({"image_shape": "1x8x8"}, "data.image_shape"),
])
def test_bad_data_layout(raw: dict[str, Any], field: str) -> None:
    assert f"config: {field}:" in config_error({"data": raw})


# --------------------------------------------------------------------------- bounded input (issue 16)

MAX_MESSAGE = 400  # an error message quotes at most ~80 characters of any one user value


def yaml_error(tmp_path: Path, text: str) -> str:
    """Load YAML text that must fail, within the time a bad config may cost; return the message."""
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert time.perf_counter() - started < 1.0
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < MAX_MESSAGE, msg
    return msg


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    lines = ["lol0: &l0 lol"]
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, "search:", "  space:", f"    hidden_size: *l{levels}", ""])


def test_yaml_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    text = billion_laughs()
    assert len(text) < 1000  # 10**9 strings once expanded
    msg = yaml_error(tmp_path, text)
    assert "more than 100,000 values once its aliases (*name) are expanded" in msg
    assert str(tmp_path / "bad.yaml") in msg


def test_merge_key_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["m0: &m0 {" + ", ".join(f"k{j}: 1" for j in range(10)) + "}"]
    for i in range(1, 8):
        lines.append(f"m{i}: &m{i} {{<<: *m{i - 1}, " + ", ".join(f"x{j}: *m{i - 1}" for j in range(9))
                     + "}")
    assert "100,000 values" in yaml_error(tmp_path, "\n".join(lines) + "\n")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert "recursive structure" in yaml_error(tmp_path, "search: &s {space: *s}\n")
    assert "recursive structure" in yaml_error(tmp_path, "a: &a [1, *a]\n")


@pytest.mark.parametrize("text", [
    "a: " + "[" * 5000 + "]" * 5000 + "\n",  # flow style
    "a:\n" + "- " * 5000 + "1\n",  # block sequences: one line, 5,000 levels
    "".join("  " * i + f"k{i}:\n" for i in range(100)),  # indented mappings
    "deep: &d " + "[" * 20 + "1" + "]" * 20 + "\nx: " + "[" * 20 + "*d" + "]" * 20 + "\n",  # via an alias
])
def test_deep_nesting_is_refused_without_a_recursion_error(tmp_path: Path, text: str) -> None:
    assert "nest" in yaml_error(tmp_path, text)


def test_config_file_above_one_mib_is_refused(tmp_path: Path) -> None:
    msg = yaml_error(tmp_path, "# padding\n" * 110_000)
    assert "larger than 1,048,576 bytes (1 MiB)" in msg


def test_a_long_flat_yaml_list_stops_at_the_bound(tmp_path: Path) -> None:
    # 500,000 values in 1 MB: the pure-Python parser alone would take 15 s here
    assert "100,000 values" in yaml_error(tmp_path, "a: [" + "1," * 499_999 + "1]\n")


def test_anchors_and_aliases_of_normal_size_still_load(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text("sizes: &sizes {choice: [32, 64]}\nsearch:\n  space:\n    hidden_size: *sizes\n"
                 "    batch_size: *sizes\n")
    raw = read_yaml(p)
    raw.pop("sizes")
    cfg = build_config(raw)
    assert cfg.search.space["hidden_size"] == cfg.search.space["batch_size"] == {"choice": [32, 64]}


@pytest.mark.parametrize(("text", "fragment"), [
    ("search:\n  trials: " + "9" * 5000 + "\n", "a number has more than 4,300 digits"),
    ("experiment: 2024-13-45\n", "a value does not load: month must be in 1..12"),
    ("a: *" + "z" * 5000 + "\n", "found undefined alias"),
])
def test_values_that_do_not_load_are_one_short_line(tmp_path: Path, text: str, fragment: str) -> None:
    assert fragment in yaml_error(tmp_path, text)


def python_bomb(levels: int = 30) -> list[Any]:
    value: list[Any] = ["lol"]
    for _ in range(levels):
        value = [value] * 10  # one list object shared ten times: 10**30 values when expanded
    return value


def test_shared_python_objects_are_counted_once_per_place() -> None:
    started = time.perf_counter()
    msg = config_error({"search": {"space": {"hidden_size": {"choice": python_bomb(8)}}}})
    assert "more than 100,000 values" in msg and time.perf_counter() - started < 0.5
    assert "nested more than 32 levels" in config_error({"x": python_bomb(40)})


def test_flow_parameters_are_bounded_too() -> None:
    # Prefect validates a flow's `config` parameter with PipelineConfig, not build_config
    started = time.perf_counter()
    with pytest.raises(ValidationError) as info:
        PipelineConfig.model_validate({"search": {"space": {"hidden_size": python_bomb(8)}}})
    assert "more than 100,000 values" in describe_validation_error(info.value)
    assert time.perf_counter() - started < 0.5
    cyclic: dict[str, Any] = {}
    cyclic["search"] = cyclic
    with pytest.raises(ValidationError) as info:
        PipelineConfig.model_validate(cyclic)
    assert "recursive structure" in describe_validation_error(info.value)


def test_quote_cuts_every_kind_of_value() -> None:
    assert quote("adam") == "'adam'"
    long = quote("x" * 1_000_000)
    assert long.startswith("'xxxx") and long.endswith("... (1,000,000 characters)") and len(long) < 120
    assert quote(10**5000) == "an integer of about 5,001 digits"  # str() of it would raise
    assert len(quote([["y" * 10_000] * 100] * 100)) <= 160
    assert quote(12) == "12" and quote(True) == "True"


@pytest.mark.parametrize(("raw", "where"), [
    ({"k" * 1_000_000: 1}, "config: unknown key 'kkkk"),
    ({"k" * 10_000_000: 1}, "config: a string of 10,000,000 characters"),
    ({"search": {"k" * 1_000_000: 1}}, "config: unknown key 'search.kkkk"),
    ({"search": {"space": {"k" * 1_000_000: 1}}}, "unknown hyperparameter 'kkkk"),
    ({"data": {"dataset": "d" * 1_000_000}}, "config: data.dataset: unknown value 'dddd"),
    ({"search": {"space": {"optimizer": "o" * 1_000_000}}}, "optimizer: unknown value 'oooo"),
    ({"search": {"space": {"learning_rate": {"u" * 1_000_000: [1, 2]}}}}, "unknown distribution 'uuuu"),
    ({"search": {"space": {"learning_rate": "x" * 1_000_000}}}, "must be a positive number, got 'xxxx"),
    ({"search": {"space": {"dropout": "x" * 1_000_000}}}, "must be a number in [0, 1), got 'xxxx"),
    ({"preprocess": {"augment": "x" * 1_000_000}}, "must be true or false, got 'xxxx"),
    ({"experiment": "e" * 100_000}, "at most 500 characters, got 'eeee"),
    ({"search": {"trials": 10**5000}}, "got an integer of about 5,001 digits"),
])
def test_messages_stay_short_and_fast_whatever_the_value(raw: dict[str, Any], where: str) -> None:
    started = time.perf_counter()
    msg = config_error(raw)
    assert time.perf_counter() - started < 0.5
    assert where in msg and len(msg) < MAX_MESSAGE, msg[:MAX_MESSAGE]


@pytest.mark.parametrize(("raw", "where", "bound"), [
    ({"search": {"trials": 10_001}}, "search.trials", "10,000"),
    ({"search": {"grace_period": 10**9}}, "search.grace_period", "10,000"),
    ({"search": {"max_concurrent": 10**9}}, "search.max_concurrent", "10,000"),
    ({"search": {"max_params": 10**16}}, "search.max_params", "1,000,000,000,000,000"),
    ({"train": {"max_epochs": 10_001}}, "train.max_epochs", "10,000"),
    ({"train": {"patience": 10**9}}, "train.patience", "10,000"),
    ({"overfit": {"divergence_epochs": 10**9}}, "overfit.divergence_epochs", "10,000"),
    ({"data": {"max_rows": 10**13}}, "data.max_rows", "1,000,000,000,000"),
    ({"data": {"image_shape": [1, 8, 10**6]}}, "data.image_shape", "65,536"),
    ({"ray": {"num_cpus": 10**6}}, "ray.num_cpus", "4,096"),
    ({"ray": {"object_store_memory": 1 << 50}}, "ray.object_store_memory", "4,398,046,511,104"),
    (with_space({"hidden_size": 65_537}), "hidden_size", "65,536"),
    (with_space({"hidden_size": {"randint": [1, 10**9]}}), "hidden_size", "65,536"),
    (with_space({"num_layers": 65}), "num_layers", "64"),
    (with_space({"batch_size": {"choice": [32, 10**7]}}), "batch_size", "1,000,000"),
    (with_space({"channels": 10**6}), "channels", "65,536"),
    (with_space({"conv_layers": 65}), "conv_layers", "64"),
    (with_space({"kernel_size": 33}), "kernel_size", "31"),
    (with_space({"hidden_size": {"choice": [8] * 1001}}), "hidden_size", "1,000"),
    ({"preprocess": {"scaler": {"choice": ["none"] * 1001}}}, "preprocess.scaler", "1,000"),
    ({"preprocess": {"pca_components": 10**7}}, "preprocess.pca_components", "1,000,000"),
])
def test_every_count_has_an_upper_bound_stated_in_the_error(raw: dict[str, Any], where: str,
                                                            bound: str) -> None:
    msg = config_error(raw)
    assert where in msg and (f"at most {bound}" in msg or f"to {bound}" in msg), msg


def test_the_bounds_themselves_are_accepted() -> None:
    cfg = build_config({"search": {"trials": 10_000, "space": {"hidden_size": 65_536, "num_layers": 64,
                                                                "batch_size": 1_000_000}},
                        "train": {"max_epochs": 10_000, "patience": 10_000}})
    assert cfg.search.trials == 10_000 and cfg.train.max_epochs == 10_000


def test_command_line_counts_go_through_the_same_bounds() -> None:
    assert "config: search.trials: must be at most 10,000" in config_error({}, {"search.trials": 10**9})
    assert "config: train.max_epochs: must be at most 10,000" in config_error(
        {}, {"train.max_epochs": 100_000})


def grid(trials: int, *sizes: int, **extra: Any) -> dict[str, Any]:
    names = ("hidden_size", "batch_size", "num_layers")
    space = {n: {"choice": list(range(1, k + 1))} for n, k in zip(names, sizes, strict=False)}
    return {"search": {"algorithm": "grid", "trials": trials, "space": space}, **extra}


def test_a_grid_planning_too_many_trials_says_the_planned_number() -> None:
    msg = config_error(grid(16, 100, 100))
    assert msg.startswith("config: search: this grid search plans 160,000 trials")
    assert "search.trials 16 x 10,000 combinations: 100 hidden_size x 100 batch_size" in msg
    assert "more than 10,000" in msg and "algorithm: random" in msg
    # model and preprocessing choices multiply the grid too, as search.planned_trials counts them
    msg = config_error(grid(2, 50, 50, model={"choice": ["mlp", "cnn"]},
                            preprocess={"scaler": {"choice": ["standard", "minmax"]}}))
    assert "plans 20,000 trials (search.trials 2 x 10,000 combinations" in msg, msg


def test_grid_bound_matches_planned_trials() -> None:
    from paramaudit.search import planned_trials

    at_bound = build_config(grid(4, 50, 25, model={"choice": ["mlp", "cnn"]}))
    assert planned_trials(at_bound) == 10_000
    assert "plans 10,008 trials" in config_error(grid(8, 139, 9))
    # the same space under a random search samples search.trials configurations: fine
    assert build_config({**grid(16, 100, 100), "search": {**grid(16, 100, 100)["search"],
                                                          "algorithm": "random"}})
