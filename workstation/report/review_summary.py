"""The report's review section: who edited what in the review log on the
report's datasets (edits by field and analyst, each analyst named with their
key id), the excluded examples, and, where several analysts labelled the same
example, their agreement and the open conflicts.

Agreement is read from the review log as it stands: per (example, field)
edited by two or more analysts, the value each one set last; they agree when
those values are equal. ``agreement`` is the one place that reads it, so a
richer team-review record can take its place without touching the rest.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from workstation import review
from workstation.workspace import Workspace

CONFLICTS_SHOWN = 20


def review_section(ws: Workspace, dataset_ids: list[int]) -> dict[str, Any]:
    """Section 5: the review log on ``dataset_ids``, with the log's head."""
    rows = [e for d in dataset_ids for e in review.entries(ws, dataset_id=d)]
    rows.sort(key=lambda e: e["seq"])
    analysts = _analysts(rows)
    return {"review_head": review.head_hash(ws), "n_log_rows": len(rows),
            "by_action": _count(rows, lambda e: e["action"]),
            "edits_by_field": _count(_edits(rows), lambda e: e["field"]),
            "edits_by_analyst": _by_analyst(_edits(rows)), "analysts": analysts,
            "excluded": _excluded(ws, dataset_ids), "agreement": agreement(rows)}


def _edits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in rows if e["action"] == "edit"]


def _count(rows: list[dict[str, Any]], key) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for e in rows:
        counts[key(e)] += 1
    return dict(sorted(counts.items()))


def _who(e: dict[str, Any]) -> str:
    return f"{e['analyst']} ({e['key_id']})" if e.get("key_id") else e["analyst"]


def _analysts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str | None], int] = defaultdict(int)
    for e in rows:
        seen[(e["analyst"], e.get("key_id"))] += 1
    return [{"name": name, "key_id": key, "log_rows": n}
            for (name, key), n in sorted(seen.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]


def _by_analyst(edits: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in edits:
        out[_who(e)][e["field"]] += 1
    return {who: dict(sorted(fields.items())) for who, fields in sorted(out.items())}


def _excluded(ws: Workspace, dataset_ids: list[int]) -> dict[str, Any]:
    if not dataset_ids:
        return {"n": 0, "per_dataset": {}}
    listed = ", ".join(str(int(d)) for d in dataset_ids)
    rows = ws.execute(f"SELECT d.name, count(*) FROM current_examples ce JOIN datasets d "
                      f"ON d.id = ce.dataset_id WHERE ce.dataset_id IN ({listed}) AND ce.excluded "
                      f"GROUP BY d.name ORDER BY d.name").fetchall()
    return {"n": int(sum(n for _, n in rows)), "per_dataset": {k: int(v) for k, v in rows}}


def agreement(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement between analysts on the (example, field) pairs several edited."""
    last: dict[tuple[int, str], dict[str, Any]] = defaultdict(dict)
    for e in rows:
        if e["action"] == "edit":
            last[(e["example_id"], e["field"])][e.get("key_id") or e["analyst"]] = e["new"]
    shared = {k: v for k, v in last.items() if len(v) > 1}
    conflicts = [{"example_id": ex, "field": field, "values": {who: value for who, value
                                                                in sorted(values.items())}}
                 for (ex, field), values in sorted(shared.items())
                 if len({repr(v) for v in values.values()}) > 1]
    n_analysts = len({e.get("key_id") or e["analyst"] for e in rows if e["action"] == "edit"})
    return {"n_analysts": n_analysts, "n_shared": len(shared),
            "n_agree": len(shared) - len(conflicts), "n_conflicts": len(conflicts),
            "agreement": (len(shared) - len(conflicts)) / len(shared) if shared else None,
            "conflicts": conflicts[:CONFLICTS_SHOWN],
            "source": "the review log: each analyst's last value per example and field"}
