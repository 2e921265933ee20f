"""A probe run's stored findings, a page at a time, most severe first, with
their provenance: what the failure list shows for a probe run. Here, beside
the audit runs, so that reading a run never imports the probes that wrote it."""

from __future__ import annotations

import json
from typing import Any

from workstation.workspace import Workspace


def findings_page(ws: Workspace, run_id: int, *, probe: str | None = None,
                  limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """A page of a probe run's findings, most severe first, with provenance."""
    where, params = "f.run_id = ?", [run_id]
    if probe:
        where += " AND f.probe = ?"
        params.append(probe)
    total = ws.execute(f"SELECT count(*) FROM findings f WHERE {where}", params).fetchall()[0][0]
    rows = ws.execute(
        f"""SELECT f.id, f.probe, f.probe_version, f.example_id, e.source_index, e.source_sha256,
                   e.source_id, f.rule, f.severity, f.triage, f.score_before, f.score_after,
                   f.case_data, f.details, e.current_label, e.flipped, e.current_category
            FROM findings f LEFT JOIN current_examples e ON e.id = f.example_id
            WHERE {where} ORDER BY f.id LIMIT ? OFFSET ?""",
        params + [limit, offset]).fetchall()
    cols = ["finding_id", "probe", "probe_version", "example_id", "source_index", "source_sha256",
            "source_id", "rule", "severity", "triage", "score_before", "score_after", "case",
            "details", "label", "flipped", "category"]
    items = []
    for row in rows:
        item = dict(zip(cols, row))
        item["case"] = json.loads(item["case"]) if item["case"] else None
        item["details"] = json.loads(item["details"]) if item["details"] else {}
        items.append(item)
    return items, int(total)
