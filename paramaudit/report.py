"""Rendering of a parameter audit: terminal table, JSON, CSV, Markdown, and a bar chart."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from paramaudit.audit import DEFAULT_OPTIMIZER, AuditReport, LayerRow

if TYPE_CHECKING:  # pandas is only needed by the functions that build a DataFrame
    import pandas as pd

FORMATS = ("table", "json", "csv", "markdown")
TOP_LAYERS_PLOTTED = 30
_SHAPES_SHOWN = 4  # a row with more tensors (a grouped row) shows a count instead


def format_bytes(n: int | float) -> str:
    """Human units with binary prefixes: ``1.23 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _name(row: LayerRow) -> str:
    return row.name or "(root)"


def _shapes(row: LayerRow) -> str:
    if len(row.shapes) > _SHAPES_SHOWN:
        return f"({len(row.shapes)} tensors)"
    return " ".join(f"{k}[{','.join(map(str, v))}]" for k, v in row.shapes.items())


def _tied(row: LayerRow) -> str:
    return ", ".join(f"tied→{target}" for target in row.tied_to.values())


def _chosen_optimizer(report: AuditReport) -> str | None:
    if report.optimizer in report.training_memory_bytes:
        return report.optimizer
    if DEFAULT_OPTIMIZER in report.training_memory_bytes:
        return DEFAULT_OPTIMIZER
    return next(iter(report.training_memory_bytes), None)


def _totals(report: AuditReport) -> list[tuple[str, str]]:
    by_dtype = ", ".join(f"{k} {format_bytes(v)}" for k, v in sorted(report.bytes_by_dtype.items()))
    lines = [
        ("Total params", f"{report.total_params:,}"),
        ("Trainable params", f"{report.trainable_params:,}"),
        ("Frozen params", f"{report.frozen_params:,}"),
        ("Buffer elements", f"{report.buffer_elements:,} ({format_bytes(report.buffer_bytes)})"),
        ("Parameter bytes", format_bytes(report.bytes) + (f" ({by_dtype})" if by_dtype else "")),
        ("Embedding params", f"{report.embedding_params:,}"),
        ("Non-embedding params", f"{report.non_embedding_params:,}"),
    ]
    opt = _chosen_optimizer(report)
    if opt is not None:
        mem = report.training_memory_bytes[opt]
        lines.append(
            (
                f"Training memory ({opt})",
                ", ".join(f"{k} {format_bytes(v)}" for k, v in mem.items())
                + " (weights + gradients + optimizer state)",
            )
        )
    measured = report.measured_training_memory
    if measured is not None:
        peak = measured.get("peak_bytes")
        lines.append(("Training memory measured",
                      (f"{format_bytes(peak)} on {measured.get('device', '?')}: "
                       if peak is not None else "") + str(measured.get("measure", ""))))
    return lines


def _table(report: AuditReport) -> str:
    headers = [
        "Layer",
        "Type",
        "Params",
        "Trainable",
        "Frozen",
        "Buffers",
        "Share",
        "Dtype",
        "Shapes",
        "Tied",
    ]
    right = {"Params", "Trainable", "Frozen", "Buffers", "Share"}
    rows = [
        [
            _name(r),
            r.type,
            f"{r.params:,}",
            f"{r.trainable_params:,}",
            f"{r.frozen_params:,}",
            f"{r.buffer_elements:,}",
            f"{100 * r.share:.2f}%",
            ",".join(r.dtypes),
            _shapes(r),
            _tied(r),
        ]
        for r in report.layers
    ]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = [
            c.rjust(w) if h in right else c.ljust(w)
            for c, w, h in zip(cells, widths, headers, strict=True)
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(headers), rule, *(line(r) for r in rows), rule]
    totals = _totals(report)
    label_w = max(len(k) for k, _ in totals)
    # right-align the leading number of each total so the digits line up; text stays left
    value_w = max(len(v.split(" ")[0]) for _, v in totals if v[:1].isdigit())
    for key, value in totals:
        first, _, rest = value.partition(" ")
        if first[:1].isdigit():
            value = f"{first.rjust(value_w)} {rest}"
        body.append(f"{key.ljust(label_w)}  {value}".rstrip())
    return "\n".join(body) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(report: AuditReport) -> str:
    out = [
        "| Layer | Type | Params | Trainable | Frozen | Buffers | Share | Dtype | Tied to |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in report.layers:
        tied = ", ".join(f"`{t}`" for t in r.tied_to.values())
        out.append(
            f"| `{_md_cell(_name(r))}` | {_md_cell(r.type)} | {r.params:,} | "
            f"{r.trainable_params:,} | {r.frozen_params:,} | {r.buffer_elements:,} | "
            f"{100 * r.share:.2f}% | {', '.join(r.dtypes)} | {tied} |"
        )
    out.append("")
    out += [f"- **{key}**: {value}" for key, value in _totals(report)]
    return "\n".join(out) + "\n"


def layers_dataframe(report: AuditReport) -> pd.DataFrame:
    """One row per layer; ``shapes`` and ``tied_to`` as compact JSON, ``dtypes`` comma-joined."""
    import pandas as pd

    columns = [
        "name",
        "type",
        "params",
        "trainable_params",
        "frozen_params",
        "buffer_elements",
        "share",
        "bytes",
        "dtypes",
        "shapes",
        "tied_to",
    ]
    records = [
        {
            "name": r.name,
            "type": r.type,
            "params": r.params,
            "trainable_params": r.trainable_params,
            "frozen_params": r.frozen_params,
            "buffer_elements": r.buffer_elements,
            "share": r.share,
            "bytes": r.bytes,
            "dtypes": ",".join(r.dtypes),
            "shapes": json.dumps(r.shapes, separators=(",", ":")),
            "tied_to": json.dumps(r.tied_to, separators=(",", ":")) if r.tied_to else "",
        }
        for r in report.layers
    ]
    return pd.DataFrame.from_records(records, columns=columns)


def render(report: AuditReport, fmt: str = "table", depth: int | None = None) -> str:
    """Render ``report`` as table, json, csv or markdown; ``depth`` groups rows first."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if depth is not None:
        report = report.grouped(depth)
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2)
    if fmt == "csv":
        return layers_dataframe(report).to_csv(index=False)
    if fmt == "markdown":
        return _markdown(report)
    return _table(report)


def plot_layers(report: AuditReport, path: str | Path) -> Path:
    """Write a horizontal bar chart PNG of params per layer (top 30, the rest as "other")."""
    import matplotlib

    # Agg only when pyplot is not loaded yet: switching a live interactive backend would
    # disturb the caller. The Figure API below needs no pyplot, so it is safe in workers.
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    ranked = sorted(report.layers, key=lambda r: r.params, reverse=True)
    shown = ranked[:TOP_LAYERS_PLOTTED]
    labels = [_name(r) for r in shown]
    values = [r.params for r in shown]
    rest = sum(r.params for r in ranked[TOP_LAYERS_PLOTTED:])
    if len(ranked) > TOP_LAYERS_PLOTTED:
        labels.append(f"other ({len(ranked) - TOP_LAYERS_PLOTTED} layers)")
        values.append(rest)

    fig = Figure(figsize=(10, max(2.5, 0.32 * len(labels) + 1.2)), layout="constrained")
    ax = fig.add_subplot()
    ypos = list(range(len(labels)))
    ax.barh(ypos, values, color="#4c72b0")
    ax.set_yticks(ypos, labels, fontsize=8)
    ax.invert_yaxis()  # largest layer on top
    ax.set_xlabel("parameters")
    ax.set_title(f"Parameters per layer (total {report.total_params:,})")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    return out
