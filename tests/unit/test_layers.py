"""The layers go one way: app -> flows -> tasks -> core -> models, and no Prefect below tasks.

Every import in every module counts, the ones inside functions too: a lazy import that climbs a
layer is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
# the folder each installed package lives in (pyproject maps flows/, tasks/, models/ under
# paramaudit.*, so they claim no top-level names)
FOLDERS = {"paramaudit.app": ROOT / "paramaudit" / "app", "paramaudit.flows": ROOT / "flows",
           "paramaudit.tasks": ROOT / "tasks", "paramaudit.models": ROOT / "models",
           "paramaudit": ROOT / "paramaudit"}
# a layer may import its own and every layer after it in this list, never one before it
LAYERS = ["app", "flows", "tasks", "core", "models"]
PREFECT_FREE = {"core", "models"}


def _layer(module: str) -> str:
    for prefix in ("paramaudit.app", "paramaudit.flows", "paramaudit.tasks", "paramaudit.models"):
        if module == prefix or module.startswith(prefix + "."):
            return prefix.rsplit(".", 1)[1]
    return "core"


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found.setdefault(".".join(parts), path)
    return found


def _imports(path: Path, module: str) -> set[str]:
    names: set[str] = set()
    package = module if path.stem == "__init__" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            # `from paramaudit import pipeline` imports the module paramaudit.pipeline
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


MODULES = _modules()


def test_every_module_is_found() -> None:
    assert {"paramaudit.app.cli", "paramaudit.flows.pipeline", "paramaudit.tasks.pipeline",
            "paramaudit.search.runner", "paramaudit.models.mlp"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers_only(module: str) -> None:
    layer = _layer(module)
    allowed = set(LAYERS[LAYERS.index(layer):])
    upward = []
    for name in sorted(_imports(MODULES[module], module)):
        top = name.split(".")[0]
        if top == "prefect" and layer in PREFECT_FREE:
            upward.append(f"{name} (Prefect below the tasks layer)")
        elif top in ("flows", "tasks", "models"):
            upward.append(f"{name} (a top-level name: import paramaudit.{name})")
        elif top == "paramaudit" and name in MODULES and _layer(name) not in allowed:
            upward.append(f"{name} ({_layer(name)} layer)")
    assert upward == [], f"{module} ({layer} layer) imports upward: {upward}"


def test_the_layer_test_would_catch_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from paramaudit.flows.pipeline import paramaudit_pipeline\n"
                   "    import prefect\n")
    names = _imports(bad, "paramaudit.bad")
    assert "paramaudit.flows.pipeline" in names and "prefect" in names


def test_pyproject_installs_every_package_folder() -> None:
    """The package list is explicit (flows/ etc. are mapped): a new subpackage must be added."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    dirs = config["package-dir"]
    for package, folder in dirs.items():
        assert ROOT / folder == FOLDERS[package]
    subpackages = {".".join(("paramaudit", *p.parent.relative_to(ROOT / "paramaudit").parts))
                   for p in (ROOT / "paramaudit").rglob("*/__init__.py")}
    # the mapped folders and every subpackage of paramaudit/, and nothing else
    assert listed == set(FOLDERS) | subpackages
