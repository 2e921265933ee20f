"""The regression report a release is gated on (what `workstation release` calls).

A version is compared with the model's release in force, or, when the model
has none yet, with the version's parent. A first version (no release, no
parent) has nothing to be compared with: no report. Nothing is recorded
here: the release stores the report in its signed governance batch, and the
next ``compare`` of the model records that report's fixes into the
regression suite (see ``suite``), so a refused or cancelled release adds no
regression tests.
"""

from __future__ import annotations

from typing import Any

from workstation import release_records
from workstation.models.registry import ModelVersion, resolve
from workstation.progress import Progress
from workstation.regression.compare import DEFAULT_BUDGET, DEFAULT_TOLERANCE, compare
from workstation.workspace import Workspace


def release_baseline(ws: Workspace, version: ModelVersion) -> int | None:
    """The model version id a release of ``version`` is compared with, or None."""
    current = release_records.current_release(ws, version.model)
    if current is not None:
        # Re-releasing the version in force is refused by the release itself.
        return None if current.model_version_id == version.id else current.model_version_id
    parent = version.parent_id if version.parent_id is not None \
        else version.manifest.get("parent_id")
    return int(parent) if parent is not None else None


def gate_report_for_release(ws: Workspace, version_ref: str | int | ModelVersion,
                            progress: Progress | None = None, *, encoder: Any = None,
                            tolerance: float = DEFAULT_TOLERANCE,
                            budget: float = DEFAULT_BUDGET) -> dict[str, Any] | None:
    """``compare(version, baseline).to_json()`` for a release of ``version``,
    or None when there is nothing to compare with (see the module docstring)."""
    version = resolve(ws, version_ref)
    baseline = release_baseline(ws, version)
    if baseline is None:
        return None
    return compare(ws, version, baseline, progress=progress, encoder=encoder,
                   tolerance=tolerance, budget=budget).to_json()
