"""From a raw mapping (or a YAML file) plus command-line overrides to a validated PipelineConfig."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from paramaudit.config.bounds import TooLarge, check_config_size
from paramaudit.config.describe import describe_validation_error
from paramaudit.config.schema import PipelineConfig
from paramaudit.config.yaml_read import read_yaml
from paramaudit.errors import ConfigError


def build_config(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Validate a raw mapping plus dotted-key overrides (``{"search.trials": 4}``)."""
    try:
        check_config_size(raw)  # before the copy and pydantic walk an expanded tree
    except TooLarge as err:
        raise ConfigError(f"config: {err}") from None
    data: dict[str, Any] = _deep_copy(dict(raw))
    apply_overrides(data, overrides or {})
    try:
        return PipelineConfig.model_validate(data, context={"measured": True})
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err)) from None


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Load a YAML config (or the embedded defaults when path is None) and apply overrides."""
    raw = read_yaml(path) if path is not None else {}
    return build_config(raw, overrides)


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Set each dotted key of ``overrides`` in ``data`` in place; a None value is no override."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        # a data source on the command line replaces whatever data source the YAML named
        if dotted == "data.path":
            _drop_keys(data, "data", ("dataset", "path"))
        if dotted == "data.dataset":
            _drop_keys(data, "data", ("path", "target"))
        if dotted == "data.drop" and isinstance(data.get("data"), dict):
            # --drop adds to the columns the YAML drops rather than replacing them
            kept = data["data"].get("drop")
            value = [*kept, *value] if isinstance(kept, list) else value
        _set_dotted(data, dotted, value)


def _drop_keys(data: dict[str, Any], section: str, keys: tuple[str, ...]) -> None:
    old = data.get(section) if isinstance(data.get(section), dict) else {}
    data[section] = {k: v for k, v in old.items() if k not in keys}


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def _deep_copy(value: Any) -> Any:
    # only dicts and lists: build_config measured the tree, so this copy is bounded too
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
