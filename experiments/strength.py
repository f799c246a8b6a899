"""The rule that picks a swept family's strength, fixed before any run and blind to test data."""

from __future__ import annotations

from typing import Any


def choose_strength(sweep: list[dict[str, Any]], reference: dict[str, Any], tolerance: float = 0.01
                    ) -> tuple[float, list[dict[str, Any]]]:
    """The rule, fixed before any run: the largest strength whose *validation* score (the
    checkpoint's monitor: accuracy for K classes, AUROC for ok/def) stays within `tolerance` of
    CE's at the same seed; the smallest strength when none does. Validation carries the same
    shortcut as training, so no shifted or test data takes part in the choice."""
    key = "val_accuracy" if "val_accuracy" in reference["val"] else "val_auroc"
    floor = reference["val"][key] - tolerance
    rows = [{"strength": float(r["variant"].partition("@")[2]), key: r["val"][key],
             "within": r["val"][key] >= floor} for r in sweep]
    rows.sort(key=lambda r: r["strength"])
    ok = [r["strength"] for r in rows if r["within"]]
    return (max(ok) if ok else rows[0]["strength"]), rows
