"""The report's coverage section: what the recorded audits of the version cover
and what they do not: per dataset of the workspace the version can read,
whether it was audited and probed (and which runs the report shows), how many
examples the audit judged, left out (excluded, unlabeled) or counted apart
(training set), and how many points the version's input space holds for the
safety oracle's coverage. Read from the stored runs only; nothing is scored."""

from __future__ import annotations

from typing import Any

from workstation.models.registry import ModelVersion
from workstation.probes.base import probes_for
from workstation.probes.coverage import space_of
from workstation.workspace import Workspace

# Which dataset kinds an input kind reads (as regression.compare's _FITS).
READS = {"text-embedding": ("pairs", "labels"), "text-tokens": ("pairs", "labels"),
         "observation": ("demos",)}


def coverage_section(ws: Workspace, version: ModelVersion, audit_runs: list[Any],
                     probe_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Section 7. ``audit_runs`` are the AuditRuns the report shows, ``probe_runs``
    their probe sections."""
    audited = {r.dataset_id: r for r in audit_runs}
    probed: dict[str, list[str]] = {}
    for p in probe_runs:
        probed.setdefault(p["dataset"], []).extend(p["probes_run"])
    rows = ws.execute("SELECT id, name, kind, n_examples FROM datasets ORDER BY name").fetchall()
    readable = READS.get(version.input_kind, ())
    datasets = [_dataset(ws, d, name, kind, int(n), audited.get(d), sorted(set(probed.get(name,
                         [])))) for d, name, kind, n in rows if kind in readable]
    return {"datasets": datasets, "space": _space(ws, version),
            "not_audited": [d["dataset"] for d in datasets if d["audit_run"] is None],
            "not_probed": [d["dataset"] for d in datasets if not d["probes_run"]]}


def _dataset(ws: Workspace, dataset_id: int, name: str, kind: str, n: int, run: Any,
             probes: list[str]) -> dict[str, Any]:
    excluded = int(ws.execute("SELECT count(*) FROM current_examples WHERE dataset_id = ? AND "
                              "excluded", [dataset_id]).fetchall()[0][0])
    out: dict[str, Any] = {"dataset": name, "kind": kind, "n_examples": n, "n_excluded": excluded,
                           "audit_run": None, "probes_run": probes,
                           "probes_not_run": sorted({p.name for p in probes_for(kind)}
                                                    - set(probes))}
    if run is None:
        return out
    counts = (run.membership or {}).get("counts") or {}
    out.update(audit_run=run.id, n_judged=run.n_examples,
               n_unlabeled=int(run.metrics.get("n_unlabeled") or 0),
               n_heldout=int(run.metrics.get("n") or 0),
               n_training=int(counts.get("training", 0)) + int(counts.get("validation", 0)),
               membership=(run.membership or {}).get("status") or "not recorded")
    return out


def _space(ws: Workspace, version: ModelVersion) -> dict[str, Any] | None:
    """The coverage space of the version's inputs and the points recorded in it
    (text-tokens versions measure in the workspace encoder's space, which is
    not opened here: left out)."""
    if version.input_kind == "text-tokens":
        return None
    space = space_of(version)
    points, runs = ws.execute(
        "SELECT (SELECT count(*) FROM coverage_points WHERE space = ?), "
        "(SELECT count(*) FROM coverage_runs WHERE space = ?)", [space, space]).fetchall()[0]
    return {"space": space, "n_points": int(points), "n_runs": int(runs)}
