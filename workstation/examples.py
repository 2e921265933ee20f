"""One example as it stands, for inspection: its content (texts, or a
trajectory's observations and actions), its current review state, and the
probe findings that touch it. The review history is ``review.entries``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from workstation.errors import WorkstationError
from workstation.workspace import Workspace

_FIELDS = ("id", "dataset_id", "dataset", "kind", "source_sha256", "source_index", "source_id",
           "prompt", "chosen", "rejected", "response", "current_label", "category", "tags",
           "note", "excluded", "flipped", "reviewed", "n_steps", "meta")


def example(ws: Workspace, example_id: int) -> dict[str, Any]:
    """The example's full content with current values: ``chosen``/``rejected``
    are the current sides (after a flip), ``label`` is "safe", "unsafe" or None."""
    rows = ws.execute(
        "SELECT ce.id, ce.dataset_id, d.name, d.kind, ce.source_sha256, ce.source_index, "
        "ce.source_id, ce.prompt, ce.current_chosen, ce.current_rejected, ce.response, "
        "ce.current_label, ce.current_category, ce.tags, ce.note, ce.excluded, ce.flipped, "
        "ce.reviewed, ce.n_steps, ce.meta FROM current_examples ce "
        "JOIN datasets d ON d.id = ce.dataset_id WHERE ce.id = ?", [example_id]).fetchall()
    if not rows:
        raise WorkstationError(f"no example with id {example_id}")
    item = dict(zip(_FIELDS, rows[0]))
    current = item.pop("current_label")
    item["label"] = None if current is None else ("safe" if current else "unsafe")
    item["tags"] = list(item["tags"] or [])
    item["meta"] = json.loads(item["meta"]) if item["meta"] else {}
    return item


def trajectory(ws: Workspace, example_id: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A demonstration's observations [T, D] (float32) and actions [T, A]
    (None when it recorded none), in step order."""
    rows = ws.execute("SELECT obs, action FROM demo_steps WHERE example_id = ? ORDER BY step",
                      [example_id]).fetchall()
    if not rows:
        return np.zeros((0, 0), dtype=np.float32), None
    obs = np.asarray([r[0] for r in rows], dtype=np.float32)
    if any(r[1] is None for r in rows):
        return obs, None
    return obs, np.asarray([r[1] for r in rows], dtype=np.float64).reshape(len(rows), -1)


def findings_for(ws: Workspace, example_id: int) -> list[dict[str, Any]]:
    """Probe findings about the example across every probe run, newest run
    first, most severe first within a run."""
    rows = ws.execute(
        "SELECT f.run_id, f.id, f.probe, f.rule, f.severity, f.triage, f.score_before, "
        "f.score_after, mv.model || '@' || mv.version, f.case_data, f.details "
        "FROM findings f JOIN audit_runs r ON r.id = f.run_id "
        "JOIN model_versions mv ON mv.id = r.model_version_id "
        "WHERE f.example_id = ? ORDER BY f.run_id DESC, f.severity DESC, f.id",
        [example_id]).fetchall()
    names = ("run_id", "finding_id", "probe", "rule", "severity", "triage", "score_before",
             "score_after", "model", "case", "details")
    items = [dict(zip(names, row)) for row in rows]
    for item in items:
        item["case"] = json.loads(item["case"]) if item["case"] else None
        item["details"] = json.loads(item["details"]) if item["details"] else {}
    return items
