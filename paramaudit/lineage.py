"""What changed since the champion: this run against the run whose model serves now.

The differences (data hash and rows, input columns, the label distribution, winning
hyperparameters, learned parameters per layer, test metrics) go to the parent run as
``since_champion.*`` tags and ``since_champion_*`` metrics, to ``report/since_champion.md`` and
to the summary's ``registry`` entry, whose markdown the Prefect layer publishes as the artifact
"since the champion".
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from paramaudit.tracking import Tracker

_METRICS = ("test_accuracy", "test_balanced_accuracy", "test_f1_macro", "test_log_loss",
            "test_r2", "test_rmse", "test_mae", "params_trainable", "params_total")


LABELS_TAG = "label_distribution"
AUDIT_FILE = "audit/parameter_audit.json"
_MAX_LABELS = 50  # a tag holds at most 5,000 characters: the most frequent labels


def data_tags(splits: Any) -> dict[str, str]:
    """The parent run's tags on its data: content hash, rows read, label distribution."""
    ys = [splits.y_train, splits.y_val, splits.y_test]
    rows = (getattr(splits, "row_counts", None) or {}).get("read", sum(len(y) for y in ys))
    labels = label_distribution(getattr(splits, "task", "classification"), ys,
                                list(getattr(splits, "class_values", None) or []))
    return {"data_hash": getattr(splits, "content_hash", ""), "data_rows": str(rows),
            LABELS_TAG: json.dumps(labels)}


def label_distribution(task: str, ys: list[np.ndarray], class_values: list[Any]) -> dict[str, Any]:
    """The target over all rows read: each class's share, or a regression's mean, spread and
    range (what a since-the-champion comparison says changed in what is predicted)."""
    y = np.concatenate([np.asarray(v).ravel() for v in ys])
    if task == "regression":
        return {"mean": float(y.mean()), "std": float(y.std()), "min": float(y.min()),
                "max": float(y.max())} if y.size else {}
    codes, counts = np.unique(y.astype(np.int64), return_counts=True)
    shares = sorted(((str(class_values[c] if c < len(class_values) else c)[:60], n / y.size)
                     for c, n in zip(codes.tolist(), counts.tolist(), strict=True)),
                    key=lambda kv: -kv[1])
    return {label: round(share, 4) for label, share in shares[:_MAX_LABELS]}


def hyperparameters(params: dict[str, str]) -> dict[str, str]:
    """A pipeline run's chosen hyperparameters: its params but the ``setting.*`` ones."""
    return {k: v for k, v in params.items() if not k.startswith("setting.")}


def _audit_layers(tracker: Tracker, run_id: str) -> dict[str, dict[str, Any]] | None:
    """A run's per-layer audit (``AUDIT_FILE``) by module path, or None where it has none."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = tracker.client.download_artifacts(run_id, AUDIT_FILE, tmp)
        except (MlflowException, OSError):
            return None  # a run from before the audit was logged, or its artifacts are gone
        rows = json.loads(Path(path).read_text()).get("layers", [])
    return {r["name"]: {"type": r["type"], "params": int(r["params"])} for r in rows}


def layer_changes(theirs: dict[str, dict[str, Any]], mine: dict[str, dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """Layers added, removed or resized between two audits (module path, type, both counts)."""
    out = []
    for name in list(theirs) + [n for n in mine if n not in theirs]:
        a, b = theirs.get(name), mine.get(name)
        if a is not None and b is not None and a == b:
            continue
        out.append({"layer": name, "type": (b or a or {}).get("type"),
                    "champion": None if a is None else a["params"],
                    "this run": None if b is None else b["params"],
                    "change": ("added" if a is None else "removed" if b is None
                               else f"{b['params'] - a['params']:+,}")})
    return out


def _champion_inputs(tracker: Tracker, name: str | None, version: str) -> list[str] | None:
    """The raw columns the champion version reads, from its model's metadata (no loading)."""
    if name is None:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    try:
        source = tracker.client.get_model_version(name, version).source
        types = (get_model_info(source).metadata or {}).get("input_types")
    except (MlflowException, OSError):
        return None
    return list(types) if isinstance(types, dict) else None


def since_champion(tracker: Tracker, parent_id: str, champion_run: str, champion_version: str,
                   columns: list[str], champion_columns: list[str] | None,
                   name: str | None = None) -> dict[str, Any]:
    """The differences between run ``parent_id`` and the champion's run, logged on the former.

    ``champion_columns`` are the champion's inputs where the decision loaded it; otherwise they
    are read from registered model ``name``'s version metadata.
    """
    client = tracker.client
    mine, theirs = client.get_run(parent_id).data, client.get_run(champion_run).data
    changes: dict[str, Any] = {"champion_version": champion_version, "champion_run": champion_run}
    for tag in ("data_hash", "data_rows"):
        a, b = theirs.tags.get(tag), mine.tags.get(tag)
        changes[tag] = {"champion": a, "this run": b, "changed": a != b}
    labels_a, labels_b = (json.loads(t[LABELS_TAG]) if LABELS_TAG in t else None
                          for t in (theirs.tags, mine.tags))
    changes["labels"] = {"champion": labels_a, "this run": labels_b,
                         "changed": labels_a != labels_b}
    if champion_columns is None:
        champion_columns = _champion_inputs(tracker, name, champion_version)
    if champion_columns is not None:
        changes["columns_added"] = [c for c in columns if c not in champion_columns]
        changes["columns_removed"] = [c for c in champion_columns if c not in columns]
    hp_a, hp_b = hyperparameters(theirs.params), hyperparameters(mine.params)
    changes["hyperparameters"] = {k: {"champion": hp_a.get(k), "this run": hp_b.get(k)}
                                  for k in sorted(set(hp_a) | set(hp_b))
                                  if hp_a.get(k) != hp_b.get(k)}
    changes["metrics"] = {m: {"champion": theirs.metrics[m], "this run": mine.metrics[m],
                              "delta": mine.metrics[m] - theirs.metrics[m]}
                          for m in _METRICS if m in theirs.metrics and m in mine.metrics}
    layers_a, layers_b = _audit_layers(tracker, champion_run), _audit_layers(tracker, parent_id)
    changes["layers"] = (None if layers_a is None or layers_b is None
                         else layer_changes(layers_a, layers_b))
    tags = {"since_champion.version": champion_version, "since_champion.run": champion_run,
            "since_champion.data_changed": str(changes["data_hash"]["changed"]).lower(),
            "since_champion.hyperparameters_changed": ", ".join(changes["hyperparameters"])[:5000]
            or "none",
            "since_champion.labels_changed": str(changes["labels"]["changed"]).lower()}
    if changes["layers"] is not None:
        tags["since_champion.layers_changed"] = str(len(changes["layers"]))
    if champion_columns is not None:
        tags["since_champion.columns"] = (
            f"+{len(changes['columns_added'])} -{len(changes['columns_removed'])}")
    tracker.set_tags(parent_id, tags)
    tracker.log_metrics(parent_id, {f"since_champion_{m}_delta": v["delta"]
                                    for m, v in changes["metrics"].items()})
    markdown = to_markdown(changes)
    tracker.log_text(parent_id, markdown, "report/since_champion.md")
    return {"changes": changes, "markdown": markdown}


def to_markdown(changes: dict[str, Any]) -> str:
    """The differences as the markdown a reviewer reads."""
    lines = [f"# Since the champion (version {changes['champion_version']}, run "
             f"{changes['champion_run']})", ""]
    d, r = changes["data_hash"], changes["data_rows"]
    lines.append(f"- data: {'changed' if d['changed'] else 'the same'} (sha256 "
                 f"{(d['champion'] or '?')[:12]} -> {(d['this run'] or '?')[:12]}); rows "
                 f"{r['champion']} -> {r['this run']}")
    if "columns_added" in changes:
        lines.append(f"- columns added: {', '.join(changes['columns_added']) or 'none'}; removed: "
                     f"{', '.join(changes['columns_removed']) or 'none'}")
    labels = changes.get("labels") or {}
    if labels.get("this run") is not None:
        lines.append("- labels: " + (
            "the same distribution" if not labels["changed"] else
            f"{_labels_text(labels['champion'])} -> {_labels_text(labels['this run'])}"))
    hp = changes["hyperparameters"]
    lines.append("- hyperparameters: " + ("; ".join(
        f"{k} {v['champion']} -> {v['this run']}" for k, v in hp.items()) or "the same"))
    lines += ["", "| metric | champion | this run | change |", "|---|---|---|---|"]
    lines += [f"| {m} | {v['champion']:.6g} | {v['this run']:.6g} | {v['delta']:+.6g} |"
              for m, v in changes["metrics"].items()]
    layers = changes.get("layers")
    if layers:
        lines += ["", "| layer | type | champion | this run | change |", "|---|---|---|---|---|"]
        lines += [f"| {r['layer']} | {r['type']} | {_count(r['champion'])} | "
                  f"{_count(r['this run'])} | {r['change']} |" for r in layers[:200]]
    elif layers is not None:
        lines += ["", "- layers: the same modules with the same parameter counts"]
    return "\n".join(lines) + "\n"


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _labels_text(dist: dict[str, Any] | None) -> str:
    if not dist:
        return "?"
    if "mean" in dist and "std" in dist:
        return f"mean {dist['mean']:.4g} (std {dist['std']:.4g})"
    return ", ".join(f"{k} {v:.1%}" for k, v in list(dist.items())[:10])
