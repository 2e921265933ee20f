"""The report's review section: who edited what in the review log on the
report's datasets (edits by field and analyst, each analyst named with their
key id), the excluded examples, and, where several analysts labelled the same
example, their agreement and the open conflicts.

Agreement is read from the team-review state (each analyst's current
judgement per example and field) through the same functions as the
`agreement` and `conflicts` commands, so the report and the CLI agree.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from workstation import agreement as team_agreement
from workstation import conflicts, review
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
            "excluded": _excluded(ws, dataset_ids), "agreement": agreement(ws, dataset_ids)}


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


def agreement(ws: Workspace, dataset_ids: list[int]) -> dict[str, Any]:
    """Agreement between analysts on the (example, field) pairs several judged,
    read from the team-review state (``analyst_labels``, ``label_decisions``)
    that `workstation agreement` and `conflicts` read, so the report and the
    CLI give the same figures."""
    if not dataset_ids:
        return _no_agreement()
    listed = ", ".join(str(int(d)) for d in dataset_ids)
    n_analysts, n_shared, n_agree = ws.execute(
        "WITH per AS (SELECT a.example_id, a.field, count(*) AS n, "
        "count(DISTINCT CAST(a.value AS VARCHAR)) AS distinct_values "
        "FROM analyst_labels a JOIN examples e ON e.id = a.example_id "
        f"WHERE e.dataset_id IN ({listed}) GROUP BY ALL) "
        "SELECT (SELECT count(DISTINCT a.key_id) FROM analyst_labels a JOIN examples e "
        f"ON e.id = a.example_id WHERE e.dataset_id IN ({listed})), "
        "count(*) FILTER (WHERE n > 1), count(*) FILTER (WHERE n > 1 AND distinct_values = 1) "
        "FROM per").fetchone()
    names = dict(ws.execute(f"SELECT id, name FROM datasets WHERE id IN ({listed}) "
                            "ORDER BY name").fetchall())
    open_conflicts = [c for name in names.values() for c in conflicts.conflicts(ws, name)]
    figures = []
    for name in sorted(names.values()):
        report = team_agreement.agreement(ws, name)
        if report.n_items:
            figures.append(report.to_json())
    n_shared, n_agree = int(n_shared or 0), int(n_agree or 0)
    return {"n_analysts": int(n_analysts or 0), "n_shared": n_shared, "n_agree": n_agree,
            "n_conflicts": len(open_conflicts),
            "agreement": n_agree / n_shared if n_shared else None,
            "conflicts": [{"example_id": c.example_id, "field": c.field,
                           "values": {f"{v['analyst']} ({v['key_id']})": v["value"]
                                      for v in c.values}}
                          for c in open_conflicts[:CONFLICTS_SHOWN]],
            "figures": figures,
            "source": "each analyst's current judgement per example and field, as "
                      "`workstation agreement` and `conflicts` read them"}


def _no_agreement() -> dict[str, Any]:
    return {"n_analysts": 0, "n_shared": 0, "n_agree": 0, "n_conflicts": 0, "agreement": None,
            "conflicts": [], "figures": [], "source": "no dataset"}
