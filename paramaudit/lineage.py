"""What changed since the champion: this run against the run whose model serves now.

The differences (data hash and rows, input columns, classes, winning hyperparameters, learned
parameters, test metrics) go to the parent run as ``since_champion.*`` tags and
``since_champion_*`` metrics, to ``report/since_champion.md`` and to the summary's ``registry``
entry, whose markdown the Prefect layer publishes as the artifact "since the champion".
"""

from __future__ import annotations

from typing import Any

from paramaudit.tracking import Tracker

_METRICS = ("test_accuracy", "test_balanced_accuracy", "test_f1_macro", "test_log_loss",
            "test_r2", "test_rmse", "test_mae", "params_trainable", "params_total")


def hyperparameters(params: dict[str, str]) -> dict[str, str]:
    """A pipeline run's chosen hyperparameters: its params but the ``setting.*`` ones."""
    return {k: v for k, v in params.items() if not k.startswith("setting.")}


def since_champion(tracker: Tracker, parent_id: str, champion_run: str, champion_version: str,
                   columns: list[str], champion_columns: list[str] | None) -> dict[str, Any]:
    """The differences between run ``parent_id`` and the champion's run, logged on the former."""
    client = tracker.client
    mine, theirs = client.get_run(parent_id).data, client.get_run(champion_run).data
    changes: dict[str, Any] = {"champion_version": champion_version, "champion_run": champion_run}
    for tag in ("data_hash", "data_rows"):
        a, b = theirs.tags.get(tag), mine.tags.get(tag)
        changes[tag] = {"champion": a, "this run": b, "changed": a != b}
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
    tags = {"since_champion.version": champion_version, "since_champion.run": champion_run,
            "since_champion.data_changed": str(changes["data_hash"]["changed"]).lower(),
            "since_champion.hyperparameters_changed": ", ".join(changes["hyperparameters"])[:5000]
            or "none"}
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
    hp = changes["hyperparameters"]
    lines.append("- hyperparameters: " + ("; ".join(
        f"{k} {v['champion']} -> {v['this run']}" for k, v in hp.items()) or "the same"))
    lines += ["", "| metric | champion | this run | change |", "|---|---|---|---|"]
    lines += [f"| {m} | {v['champion']:.6g} | {v['this run']:.6g} | {v['delta']:+.6g} |"
              for m, v in changes["metrics"].items()]
    return "\n".join(lines) + "\n"
