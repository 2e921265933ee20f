"""The report's probes section: per probe run, each probe's findings counted by
severity band and by suggested triage, the most severe findings with their
(truncated) text and ids, and red-team success per transformation."""

from __future__ import annotations

import json
from typing import Any

from workstation.probes.base import findings_page
from workstation.workspace import Workspace

TOP_FINDINGS = 5
TEXT_CHARS = 160
# Severity bands: [0, 1/3) low, [1/3, 2/3) medium, [2/3, 1] high.
BANDS = (("low", 0.0, 1 / 3), ("medium", 1 / 3, 2 / 3), ("high", 2 / 3, 1.01))


def probe_section(ws: Workspace, run_id: int) -> dict[str, Any]:
    """Section 4 for one probe run."""
    row = ws.execute("SELECT d.name, d.kind, r.params, r.metrics, r.created_at, r.created_by, "
                     "r.n_failures, r.review_head FROM audit_runs r JOIN datasets d "
                     "ON d.id = r.dataset_id WHERE r.id = ?", [run_id]).fetchall()[0]
    dataset, kind, params, summaries, created_at, created_by, n_findings, head = row
    params, summaries = json.loads(params or "{}"), json.loads(summaries or "{}")
    ran = sorted(set(params.get("probes") or []) | set(summaries))
    return {"run_id": run_id, "dataset": dataset, "kind": kind, "created_at": created_at,
            "created_by": created_by, "review_head": head, "params": params.get("params") or {},
            "seed": params.get("seed"), "n_findings": int(n_findings), "probes_run": ran,
            "probes": {name: _probe(ws, run_id, name, summaries.get(name)) for name in ran}}


def _probe(ws: Workspace, run_id: int, name: str, summary: dict[str, Any] | None
           ) -> dict[str, Any]:
    bands = ", ".join(f"count(*) FILTER (WHERE severity >= {lo} AND severity < {hi})"
                      for _, lo, hi in BANDS)
    counts = ws.execute(f"SELECT count(*), {bands} FROM findings WHERE run_id = ? AND probe = ?",
                        [run_id, name]).fetchall()[0]
    triage = dict(ws.execute("SELECT triage, count(*) FROM findings WHERE run_id = ? AND "
                             "probe = ? GROUP BY triage ORDER BY triage",
                             [run_id, name]).fetchall())
    top, _ = findings_page(ws, run_id, probe=name, limit=TOP_FINDINGS)
    return {"n": int(counts[0]),
            "by_severity": {band: int(c) for (band, _, _), c in zip(BANDS, counts[1:])},
            "by_triage": {k: int(v) for k, v in triage.items()},
            "top": [_finding(f) for f in top], "redteam": redteam(name, summary),
            "summary": _plain_summary(summary)}


def _finding(f: dict[str, Any]) -> dict[str, Any]:
    return {"finding_id": f["finding_id"], "example_id": f["example_id"],
            "source_index": f["source_index"], "source_id": f["source_id"], "rule": f["rule"],
            "severity": f["severity"], "triage": f["triage"],
            "score_before": f["score_before"], "score_after": f["score_after"],
            "text": truncate(_case_text(f.get("case")))}


def _case_text(case: dict[str, Any] | None) -> str | None:
    if not isinstance(case, dict):
        return None
    for key in ("text", "response", "chosen", "rejected"):
        if isinstance(case.get(key), str):
            return case[key]
    if "obs" in case:
        return "state " + json.dumps(case["obs"])
    return None


def truncate(text: str | None, limit: int = TEXT_CHARS) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def redteam(name: str, summary: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """Success per transformation (text red-team) or per state source (demonstrations)."""
    if not isinstance(summary, dict):
        return None
    per = summary.get("flagged_per_transformation")
    if isinstance(per, dict):
        n = int(summary.get("n_sources") or 0)
        return [{"attack": t, "succeeded": int(k), "tried": n,
                 "success_rate": k / n if n else None} for t, k in sorted(per.items())]
    sources = summary.get("sources")
    if name == "unsafe-states" and isinstance(sources, dict):
        return [{"attack": s, "succeeded": int(v.get("n_flagged", 0)),
                 "tried": int(v.get("n_unsafe", 0)),
                 "success_rate": v["n_flagged"] / v["n_unsafe"] if v.get("n_unsafe") else None}
                for s, v in sorted(sources.items())]
    return None


def _plain_summary(summary: dict[str, Any] | None) -> dict[str, Any]:
    """The probe's own overall figures (numbers and short strings; no per-category detail)."""
    if not isinstance(summary, dict):
        return {}
    return {k: v for k, v in summary.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool) or v is None}
