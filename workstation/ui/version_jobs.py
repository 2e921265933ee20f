"""The core calls the Models panel runs as background jobs (the release gate's
regression report, a comparison of two versions, training a version; the
menu's Retrain… runs it too), and the text of the release confirmation built
from the gate's verdict.
"""

from __future__ import annotations

from typing import Any

from workstation.audits import plot_data as pd
from workstation.models.lineage import VersionNode
from workstation.progress import Progress
from workstation.workspace import Workspace


def gate_report(ws: Workspace, version_id: int, progress: Progress,
                encoder: Any = None) -> dict[str, Any] | None:
    """The regression report a release of the version is gated on (None:
    nothing to compare with). An error here fails the job: no release
    without the report."""
    from workstation.regression import gate_report_for_release

    return gate_report_for_release(ws, version_id, progress, encoder=encoder)


def compare_versions(ws: Workspace, candidate: int, baseline: int, progress: Progress,
                     encoder: Any = None) -> dict[str, Any]:
    """``regression.compare`` of two versions, as its JSON report."""
    from workstation.regression import compare

    return compare(ws, candidate, baseline, progress=progress, encoder=encoder).to_json()


def train_version(ws: Workspace, dataset: str, name: str, parent: int | str | None,
                  seed: int, progress: Progress, encoder: Any = None,
                  analyst: str | None = None) -> Any:
    """A new version of model ``name`` trained on ``dataset`` as reviewed, with
    ``parent`` (a version id or ref, or None) as its parent and ``analyst`` as
    its author."""
    from workstation.models import resolve
    from workstation.training import train  # lazily: torch loads when a training job starts

    parent_ref = resolve(ws, parent).ref if parent is not None else None
    return train(ws, dataset, name, parent=parent_ref, seed=seed, progress=progress,
                 encoder=encoder, analyst=analyst)


def release_text(node: VersionNode, current: str | None, report: Any,
                 approvals: int = 1) -> str:
    """What the release confirmation says: from, to, the gate's verdict, and
    how many approvals it needs (``approvals``, the policy's)."""
    lines = [f"Release {node.ref}?", "",
             f"From: {current or 'nothing (the first release of ' + node.model + ')'}",
             f"To:   {node.ref}", ""]
    if approvals > 1:
        lines += [f"It needs {approvals} approvals: this records a signed request, which takes "
                  "effect once enough approvers have approved it.", ""]
    return "\n".join(lines + gate_lines(report))


def gate_lines(report: dict[str, Any] | None) -> list[str]:
    """The gate's verdict, the counts and the reasons, one line each."""
    if report is None:
        return ["Regression gate: nothing to compare with (no release in force and no "
                "parent); the release records no regression evidence."]
    from workstation.regression.report import counts_text

    gate = report.get("gate") or {}
    baseline = pd.report_ref(report.get("baseline"), "the baseline")
    counts = f"Against {baseline}: {counts_text(report)}."
    if gate.get("pass"):
        return ["Regression gate: PASSED.", counts]
    return ["Regression gate: FAILED.", counts, ""] + [f"• {r}" for r in gate.get("reasons", [])]
