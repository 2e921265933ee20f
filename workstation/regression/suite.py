"""The regression suite: failures a released version fixed, which later versions must keep passing.

Items live in ``regression_suite`` (one row per model and item): an
**example** (must pass the audit judge against its current label) or a
probe **finding** (its replay spec, ``finding_ref``, must no longer break its
rule). Items come from a comparison's ``suite_additions``:

* a release stores its regression report in the signed governance batch;
  every ``compare`` first records the additions of each stored report of
  the model (idempotent: an item is stored once), so a release made through
  any front end feeds the suite without a further call;
* ``record_fixed(ws, report)`` records a report's additions at once.

Items stay once recorded, also after a rollback: a rollback restores an
artifact, not the verdict that those failures should pass; a release forced
past a failed gate records its fixes too. An item binds the versions after
the one that added it (a higher version number of the model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from workstation import release_records
from workstation.models.registry import ModelVersion
from workstation.regression.findings import ThresholdFor, replay_cases
from workstation.regression.report import (READABLE_FORMATS, DatasetComparison,
                                           RegressionReport, SuiteCheck, version_json)
from workstation.workspace import Workspace, now_iso

_COLUMNS = ("model", "item_key", "kind", "example_id", "dataset_id", "finding_ref",
            "added_by_version_id", "release_id", "added_at")


@dataclass(frozen=True)
class SuiteItem:
    """One regression test of a model."""

    model: str
    key: str
    kind: str                      # 'example' | 'finding'
    example_id: int | None
    dataset_id: int | None
    finding_ref: dict[str, Any] | None
    added_by_version_id: int
    release_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "example_id": self.example_id,
                "dataset_id": self.dataset_id, "added_by_version_id": self.added_by_version_id,
                "release_id": self.release_id}


# -- recording -------------------------------------------------------------------

def record_fixed(ws: Workspace, report: RegressionReport | dict[str, Any], *,
                 release_id: int | None = None) -> dict[str, Any]:
    """Add what ``report`` (a RegressionReport or its JSON) fixed to the
    regression suite of the candidate's model; returns counts. Idempotent."""
    if isinstance(report, RegressionReport):
        report = {"candidate": version_json(report.candidate),
                  "suite_additions": report.suite_additions()}
    items = items_from_report(report, release_id)
    with ws.transaction():
        added = _insert(ws, items)
    model = report["candidate"]["model"]
    distinct = len({item.key for item in items})
    return {"model": model, "added": added, "already": distinct - added,
            "items": count(ws, model)}


def items_from_report(report: dict[str, Any], release_id: int | None = None) -> list[SuiteItem]:
    """The suite items a report's ``suite_additions`` name."""
    candidate = report["candidate"]
    additions = report.get("suite_additions") or {}
    model, version_id = candidate["model"], int(candidate["model_version_id"])
    items = [SuiteItem(model, f"example:{int(i)}", "example", int(i), int(group["dataset_id"]),
                       None, version_id, release_id)
             for group in additions.get("examples", []) for i in group["example_ids"]]
    items += [SuiteItem(model, f"finding:{ref['run_id']}:{ref['finding_id']}", "finding",
                        ref.get("example_id"), ref.get("dataset_id"), ref, version_id,
                        release_id) for ref in additions.get("findings", [])]
    return items


def _insert(ws: Workspace, items: list[SuiteItem]) -> int:
    """Insert the items not stored yet, in one statement; returns how many were new."""
    unique = list({(i.model, i.key): i for i in reversed(items)}.values())  # first one wins
    if not unique:
        return 0
    now = now_iso()
    rows = pa.table({
        "model": [i.model for i in unique], "item_key": [i.key for i in unique],
        "kind": [i.kind for i in unique],
        "example_id": pa.array([i.example_id for i in unique], pa.int64()),
        "dataset_id": pa.array([i.dataset_id for i in unique], pa.int32()),
        "finding_ref": [None if i.finding_ref is None else json.dumps(i.finding_ref)
                        for i in unique],
        "added_by_version_id": pa.array([i.added_by_version_id for i in unique], pa.int32()),
        "release_id": pa.array([i.release_id for i in unique], pa.int32()),
        "added_at": [now] * len(unique)})
    before = _total(ws)
    ws.con.complete()  # register() is refused while an execute() result is pending
    ws.con.register("_suite_rows", rows)
    try:
        ws.execute(f"INSERT OR IGNORE INTO regression_suite ({', '.join(_COLUMNS)}) "
                   f"SELECT {', '.join(_COLUMNS)} FROM _suite_rows")
    finally:
        ws.con.unregister("_suite_rows")
    return _total(ws) - before


def _total(ws: Workspace) -> int:
    return int(ws.execute("SELECT count(*) FROM regression_suite").fetchall()[0][0])


def sync_from_releases(ws: Workspace, model: str) -> list[SuiteItem]:
    """Items named by the regression reports stored in the model's releases,
    recorded when the workspace is writable (see the module docstring)."""
    items = []
    for rel in release_records.list_releases(ws, model):
        report = rel.batch.get("regression_report")
        if (isinstance(report, dict) and report.get("format") in READABLE_FORMATS
                and report.get("candidate", {}).get("model_version_id") == rel.model_version_id):
            items += items_from_report(report, rel.id)
    if items and not ws.read_only:
        with ws.transaction():
            _insert(ws, items)
    return items


# -- reading -----------------------------------------------------------------------

def count(ws: Workspace, model: str) -> int:
    return int(ws.execute("SELECT count(*) FROM regression_suite WHERE model = ?",
                          [model]).fetchall()[0][0])


def suite_for(ws: Workspace, candidate: ModelVersion) -> list[SuiteItem]:
    """The items that bind ``candidate``: its model's, added by earlier versions."""
    synced = sync_from_releases(ws, candidate.model)
    rows = ws.execute(
        f"SELECT {', '.join('s.' + c for c in _COLUMNS[:-1])}, mv.version FROM regression_suite s "
        "JOIN model_versions mv ON mv.id = s.added_by_version_id WHERE s.model = ? "
        "ORDER BY s.item_key", [candidate.model]).fetchall()
    stored = {r[1]: (_item(r), r[-1]) for r in rows}
    # A read-only workspace cannot record the releases' items: use them in memory.
    for item in synced:
        if item.key not in stored:
            stored[item.key] = (item, _version_number(ws, item.added_by_version_id))
    return [item for item, number in stored.values()
            if number is not None and number < candidate.version]


def _item(row: tuple) -> SuiteItem:
    model, key, kind, example_id, dataset_id, ref, added_by, release_id = row[:8]
    return SuiteItem(model, key, kind, example_id, dataset_id,
                     json.loads(ref) if ref else None, added_by, release_id)


def _version_number(ws: Workspace, version_id: int) -> int | None:
    rows = ws.execute("SELECT version FROM model_versions WHERE id = ?", [version_id]).fetchall()
    return rows[0][0] if rows else None


# -- checking ------------------------------------------------------------------------

def check_suite(ws: Workspace, candidate: ModelVersion, items: list[SuiteItem],
                comparisons: dict[int, DatasetComparison], threshold_for: ThresholdFor,
                encoder: Any = None) -> SuiteCheck:
    """Which suite items fail on the candidate (items that cannot be judged
    now, e.g. an excluded example, are listed as unchecked)."""
    check = SuiteCheck(n_items=len(items))
    for item in items:
        if item.kind == "example":
            _check_example(item, comparisons, check)
    findings = [i for i in items if i.kind == "finding"]
    results = replay_cases(ws, candidate, [i.finding_ref for i in findings], threshold_for,
                           encoder)
    for item, (breaks, score, reason) in zip(findings, results):
        if breaks is None:
            check.unchecked.append({**item.to_json(), "reason": reason})
            continue
        check.n_checked += 1
        if breaks:
            ref = item.finding_ref
            check.failing_findings.append({
                "run_id": ref["run_id"], "finding_id": ref["finding_id"], "probe": ref["probe"],
                "rule": ref["rule"], "example_id": ref.get("example_id"),
                "candidate_score": score, "added_by_version_id": item.added_by_version_id})
    return check


def _check_example(item: SuiteItem, comparisons: dict[int, DatasetComparison],
                   check: SuiteCheck) -> None:
    comparison = comparisons.get(item.dataset_id)
    at = comparison.index_of(item.example_id) if comparison else None
    if at is None:
        reason = ("its dataset could not be compared" if comparison is None
                  else "the example is excluded or unlabeled now")
        check.unchecked.append({**item.to_json(), "reason": reason})
        return
    check.n_checked += 1
    if not comparison.cand_passed[at]:
        check.failing_examples.append({
            "example_id": item.example_id, "dataset": comparison.dataset,
            "dataset_id": item.dataset_id, "candidate_margin": float(comparison.cand_margin[at]),
            "added_by_version_id": item.added_by_version_id, "release_id": item.release_id})
