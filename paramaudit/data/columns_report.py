"""The columns report: one row per raw column of the file, and the report as markdown.

Each row says what the column is and what becomes of it (column, kind, missing share,
distinct values, action, reason). The rows are made while the features are built
(:mod:`paramaudit.data.features`), the target's when it is read (:mod:`paramaudit.data.target`),
and the actions are finished once the preprocessing is fitted (:func:`finish_report`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from paramaudit.data.columns import distinct_count


def column_row(name: str, kind: str, col: pd.Series, action: str, reason: str) -> dict[str, Any]:
    """A feature column's row (missing share and distinct values over ``col``)."""
    n = len(col)
    missing = int(col.isna().sum())
    return {"column": name, "kind": kind, "missing_share": round(missing / n, 4) if n else 0.0,
            "distinct": distinct_count(col), "action": action, "reason": reason}


def numeric_report(x: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """The report's rows of an all-numeric matrix without gaps (a built-in data set)."""
    return [{"column": n, "kind": "numeric", "missing_share": 0.0,
             "distinct": int(len(np.unique(x[:, j]))), "action": "scaled", "reason": "numbers"}
            for j, n in enumerate(names)]


def target_row(name: str, labels: pd.Series, n_read: int, n_classes: int) -> dict[str, Any]:
    """The target's row of the report (missing share over the rows read)."""
    missing = n_read - len(labels)
    return {"column": name, "kind": "target", "missing_share": round(missing / n_read, 4),
            "distinct": n_classes, "action": f"target ({n_classes} classes)"
            + (f"; {missing:,} rows without one dropped" if missing else ""), "reason": "data.target"}


def regression_row(name: str, y: pd.Series, n_read: int) -> dict[str, Any]:
    """The columns report's row of a regression target."""
    row = target_row(name, y, n_read, 0)
    missing = n_read - len(y)
    row.update(distinct=int(y.nunique()),
               action=f"target (regression: mean {y.mean():.4g}, std {y.std(ddof=0):.4g})"
               + (f"; {missing:,} rows without one dropped" if missing else ""))
    return row


def finish_report(rows: list[dict[str, Any]], impute: str | None, imputed: set[str],
                  indicated: set[str], encoded: dict[str, str]) -> list[dict[str, Any]]:
    """The report once preprocessing is fitted: imputation and encoding by raw column."""
    out = []
    for row in rows:
        row = dict(row)
        col = row["column"]
        gaps = ""
        if col in imputed and impute:
            gaps = f"imputed ({impute})" + (" + indicator" if col in indicated else "")
        if row["kind"] == "numeric":
            row["action"] = gaps or "scaled"
        elif row["kind"] == "datetime":  # idempotent: a refit reports its own imputation
            expanded = row["action"].split("; imputed")[0]
            row["action"] = f"{expanded}; {gaps}" if gaps else expanded
        elif row["kind"] == "categorical" and col in encoded:
            row["action"] = encoded[col]
        out.append(row)
    return out


def _cell(value: Any) -> str:
    text = f"{value:.1%}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def columns_report_markdown(rows: list[dict[str, Any]]) -> str:
    """The columns report as a markdown table: column, kind, missing, distinct, action, reason."""
    keys = ("column", "kind", "missing_share", "distinct", "action", "reason")
    lines = ["| column | kind | missing | distinct | action | reason |",
             "|---|---|---:|---:|---|---|"]
    lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"
