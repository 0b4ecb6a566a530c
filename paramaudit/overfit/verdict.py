"""What the rules produce: a fired rule's Reason, the Verdict over them, and severity order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from paramaudit.overfit.curves import _finite

Severity = Literal["ok", "warn", "overfit"]

_RANK: dict[str, int] = {"ok": 0, "warn": 1, "overfit": 2}
TAG_LIMIT = 5000  # MLflow's tag value limit on older servers; the safe common bound


def worst(severities: Sequence[str]) -> Severity:
    """The worst of the given severities ("ok" for none)."""
    out: Severity = "ok"
    for s in severities:
        if _RANK[s] > _RANK[out]:
            out = s  # type: ignore[assignment]
    return out


@dataclass(frozen=True)
class Reason:
    """One fired rule: its name, severity, a human sentence and the numbers behind it."""

    rule: str
    severity: Severity
    message: str
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The worst severity over the fired rules, and those rules."""

    verdict: Severity
    reasons: list[Reason]

    def to_dict(self) -> dict[str, Any]:
        """``{"verdict": ..., "reasons": [message, ...]}``, the shape of the JSON output file."""
        return {"verdict": self.verdict, "reasons": [r.message for r in self.reasons]}

    def details(self) -> list[dict[str, Any]]:
        """Every reason with rule, severity, message and numbers; non-finite numbers become
        None so the result is strict JSON."""
        return [
            {
                "rule": r.rule,
                "severity": r.severity,
                "message": r.message,
                "numbers": {k: (v if _finite(v) else None) for k, v in r.numbers.items()},
            }
            for r in self.reasons
        ]

    def fired(self, rule: str) -> Reason | None:
        """The reason ``rule`` gave, or None when it did not fire."""
        return next((r for r in self.reasons if r.rule == rule), None)

    @property
    def no_better_than_baseline(self) -> Reason | None:
        """The ``baseline`` rule's reason when the model does not beat the majority baseline."""
        return self.fired("baseline")

    def tag_text(self) -> str:
        """The messages joined by "; " (or "no rule fired"), at most 5000 characters."""
        text = "; ".join(r.message for r in self.reasons) or "no rule fired"
        if len(text) > TAG_LIMIT:
            text = text[: TAG_LIMIT - 3] + "..."
        return text
