"""The report's regression section: the version against its model's release in
force (``workstation.regression.compare`` and its gate). When the version is
itself the release in force, the report shows the regression report its
release was gated on (stored in the signed governance batch) instead of
comparing it with itself."""

from __future__ import annotations

from typing import Any

from workstation import releases
from workstation.models.registry import ModelVersion
from workstation.progress import Progress
from workstation.regression import compare
from workstation.regression.report import counts_text
from workstation.workspace import Workspace

# Per-dataset keys the report keeps (id lists are summarised by their totals).
_DATASET_KEYS = ("kind", "n", "examples_used", "fixed", "broken", "unchanged", "thresholds",
                 "training_examples", "margin_change", "protected", "notes")


def regression_section(ws: Workspace, version: ModelVersion, datasets: list[str] | None,
                       progress: Progress, encoder: Any = None,
                       enabled: bool = True) -> dict[str, Any]:
    """Section 6 (``status``: compared / released / no-release / not-run)."""
    if not enabled:
        return {"status": "not-run", "text": "the regression check was left out of this report "
                                             "(--no-regression)"}
    current = releases.current_release(ws, version.model)
    if current is None:
        return {"status": "no-release",
                "text": f"{version.model} has no release in force: nothing to compare with"}
    if current.model_version_id == version.id:
        stored = current.batch.get("regression_report")
        text = (f"{version.ref} is the release in force (release {current.id}); shown: the "
                f"regression report its release was gated on")
        out = {"status": "released", "release_id": current.id, "release": current.ref,
               "text": text, "gate_at_release": current.batch.get("gate")}
        return out | (_report(stored) if stored else
                      {"report": None, "note": "its release had nothing to be compared with"})
    progress.stage_start(f"regression check against {current.ref}")
    found = compare(ws, version, current.model_version_id, datasets=datasets, progress=progress,
                    encoder=encoder).to_json()
    return {"status": "compared", "release_id": current.id, "release": current.ref,
            "text": f"{version.ref} against the release in force, {current.ref} "
                    f"(release {current.id})"} | _report(found)


def _report(report: dict[str, Any]) -> dict[str, Any]:
    """The parts of a regression report's JSON the report shows (no creation time:
    the same workspace gives the same report)."""
    gate = report.get("gate") or {}
    per = {name: {k: d.get(k) for k in _DATASET_KEYS}
           | {"categories": _deltas(d.get("categories") or {})}
           for name, d in sorted((report.get("per_dataset") or {}).items())}
    return {"report": {
        "candidate": report.get("candidate"), "baseline": report.get("baseline"),
        "review_head": report.get("review_head"), "tolerance": report.get("tolerance"),
        "budget": report.get("budget"), "seed": report.get("seed"),
        "examples": report.get("examples"), "training_examples": report.get("training_examples"),
        "probe_cases": report.get("probe_cases"), "counts_text": counts_text(report),
        "summary": report.get("summary"), "per_dataset": per,
        "probes": {k: v for k, v in (report.get("probes") or {}).items() if k != "findings"},
        "suite": {k: v for k, v in (report.get("suite") or {}).items()
                  if k in ("items", "checked", "n_failing", "n_unchecked")},
        "skipped_datasets": report.get("skipped_datasets"),
        "gate": {"pass": gate.get("pass"), "reasons": gate.get("reasons") or [],
                 "tolerance": gate.get("tolerance"), "budget": gate.get("budget"),
                 "rules": [{"rule": r.get("rule"), "pass": r.get("pass")}
                           for r in gate.get("rules") or []]}}}


def _deltas(categories: dict[str, Any]) -> dict[str, Any]:
    return {c: {m: {k: v.get(k) for k in ("baseline", "candidate", "delta", "ci", "n")}
                for m, v in metrics.items() if isinstance(v, dict)}
            for c, metrics in sorted(categories.items())}
