"""The report's content: one plain, JSON-ready structure gathered from the
workspace, which the HTML, PDF and JSON forms all render.

Which runs: by default the version's newest audit run and newest probe run on
every dataset (``--dataset`` narrows the datasets, ``--runs`` names the runs).
Every figure is read from the stored runs (or, for plots and the regression
check, computed by the same core code the window and the CLI use); the only
field that changes between two builds of the same workspace is
``created_at``.
"""

from __future__ import annotations

from typing import Any

import workstation.probes  # noqa: F401  (registers the built-in probes: coverage lists them)
from workstation.audits.runs import AuditRun, get_run, list_runs
from workstation.errors import WorkstationError
from workstation.models.registry import ModelVersion, resolve
from workstation.progress import Progress
from workstation.report import limits as limits_mod
from workstation.report.coverage_section import coverage_section
from workstation.report.figures import run_section
from workstation.report.findings import probe_section
from workstation.report.provenance import scope
from workstation.report.regression_section import regression_section
from workstation.report.reproduce import commands
from workstation.report.review_summary import review_section
from workstation.report.summary import summary
from workstation.workspace import Workspace, now_iso

REPORT_FORMAT = "workstation.audit-report/1"
SECTIONS = ("summary", "scope", "metrics", "probes", "review", "regression", "coverage",
            "limits", "reproduce")


def choose_runs(ws: Workspace, version: ModelVersion, datasets: list[str] | None = None,
                run_ids: list[int] | None = None) -> tuple[list[AuditRun], list[AuditRun]]:
    """(audit runs, probe runs) the report shows, oldest dataset name first."""
    if datasets:
        known = {r[0] for r in ws.execute("SELECT name FROM datasets").fetchall()}
        missing = [d for d in datasets if d not in known]
        if missing:
            raise WorkstationError(f"no dataset named '{missing[0]}'")
    if run_ids:
        runs = [_own_run(ws, version, rid) for rid in dict.fromkeys(run_ids)]
    else:
        runs = _newest_per_dataset(list_runs(ws, model=version.ref)
                                   + _probe_runs(ws, version))
    runs = [r for r in runs if not datasets or r.dataset in datasets]
    audits = sorted((r for r in runs if r.kind == "audit"), key=lambda r: (r.dataset, r.id))
    probes = sorted((r for r in runs if r.kind == "probe"), key=lambda r: (r.dataset, r.id))
    if not audits:
        where = f" on {', '.join(datasets)}" if datasets else ""
        raise WorkstationError(f"no audit run of {version.ref}{where} to report on: run "
                               f"`workstation audit --model {version.ref} --dataset NAME` first")
    return audits, probes


def _own_run(ws: Workspace, version: ModelVersion, run_id: int) -> AuditRun:
    run = get_run(ws, run_id)
    if run.model_version_id != version.id:
        raise WorkstationError(f"run {run_id} is of {run.model}, not {version.ref}")
    return run


def _probe_runs(ws: Workspace, version: ModelVersion) -> list[AuditRun]:
    ids = [r[0] for r in ws.execute("SELECT id FROM audit_runs WHERE kind = 'probe' AND "
                                    "model_version_id = ? ORDER BY id", [version.id]).fetchall()]
    return [get_run(ws, i) for i in ids]


def _newest_per_dataset(runs: list[AuditRun]) -> list[AuditRun]:
    newest: dict[tuple[str, int], AuditRun] = {}
    for run in runs:
        key = (run.kind, run.dataset_id)
        if key not in newest or run.id > newest[key].id:
            newest[key] = run
    return list(newest.values())


def gather(ws: Workspace, model_ref: str | int | ModelVersion, *,
           datasets: list[str] | None = None, run_ids: list[int] | None = None,
           progress: Progress | None = None, encoder: Any = None, regression: bool = True,
           prepared_by: dict[str, Any] | None = None, out_name: str = "report.html"
           ) -> dict[str, Any]:
    """The report's content (see the module docstring)."""
    progress = progress or Progress()
    version = resolve(ws, model_ref)
    audits, probe_runs = choose_runs(ws, version, datasets, run_ids)
    dataset_ids = sorted({r.dataset_id for r in audits + probe_runs})
    steps = len(audits) + len(probe_runs)
    progress.stage_start("gathering the audit runs", steps)
    metrics = []
    for i, run in enumerate(audits):
        metrics.append(run_section(ws, run))
        progress.step(i + 1, steps)
    probes = []
    for i, run in enumerate(probe_runs):
        probes.append(probe_section(ws, run.id))
        progress.step(len(audits) + i + 1, steps)
    content: dict[str, Any] = {
        "format": REPORT_FORMAT, "title": f"Audit report: {version.ref}",
        "created_at": now_iso(), "prepared_by": prepared_by,
        "runs": {"audit": [r.id for r in audits], "probe": [r.id for r in probe_runs]},
        "scope": scope(ws, version, dataset_ids), "metrics": metrics, "probes": probes,
        "review": review_section(ws, dataset_ids)}
    content["scope"]["analysts"] = content["review"]["analysts"]
    content["scope"]["review_log_head"] = content["review"]["review_head"]
    content["regression"] = regression_section(
        ws, version, sorted({r.dataset for r in audits}) if datasets or run_ids else None,
        progress, encoder, regression)
    content["coverage"] = coverage_section(ws, version, audits, probes)
    content["limits"] = limits_mod.limits(content)
    content["reproduce"] = commands(content, str(ws.path), out_name)
    content["summary"] = summary(content)
    return content
