"""The report's scope and provenance: the model version and its lineage, the
encoder, the datasets and their source files, the workstation that built the
report, the analysts and the review-log head."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

from workstation import __version__
from workstation.models.registry import ModelVersion, get_version
from workstation.workspace import Workspace

# Lineage keys worth a reader's eye (the manifest keeps the rest).
_LINEAGE_KEYS = ("dataset", "dataset_kind", "dataset_snapshot", "n_examples", "objective", "seed",
                 "hyperparameters")


def scope(ws: Workspace, version: ModelVersion, dataset_ids: list[int]) -> dict[str, Any]:
    """Everything section 2 of the report shows, as plain JSON."""
    return {"model": model_record(version), "lineage": lineage(ws, version),
            "patches": patches(version.manifest), "encoder": encoder(version.manifest),
            "datasets": [dataset_record(ws, d) for d in dataset_ids],
            "workstation": {"version": __version__, "python": platform.python_version(),
                            "platform": platform.platform(terse=True),
                            "system": sys.platform},
            "workspace_id": ws.id}


def model_record(version: ModelVersion) -> dict[str, Any]:
    m = version.manifest
    return {"ref": version.ref, "name": version.model, "version": version.version,
            "model_version_id": version.id, "sha256": version.sha256,
            "input_kind": version.input_kind, "score_type": m.get("score_type"),
            "created_at": m.get("created_at"), "created_by": m.get("created_by"),
            "source": m.get("source"), "notes": m.get("notes"),
            "calibration": m.get("calibration")}


def lineage(ws: Workspace, version: ModelVersion) -> list[dict[str, Any]]:
    """The version and its ancestors, newest first, each with its training record."""
    chain, seen, node = [], set(), version
    while node is not None and node.id not in seen:
        seen.add(node.id)
        record = node.manifest.get("lineage")
        record = record if isinstance(record, dict) else {}
        chain.append({"ref": node.ref, "sha256": node.sha256, "parent": node.manifest.get("parent"),
                      "training": {k: record[k] for k in _LINEAGE_KEYS if k in record} or None,
                      "patch_root": node.manifest.get("patch_root")})
        node = _parent(ws, node)
    return chain


def _parent(ws: Workspace, node: ModelVersion) -> ModelVersion | None:
    parent_id = node.parent_id if node.parent_id is not None else node.manifest.get("parent_id")
    if parent_id is None:
        return None
    try:
        return get_version(ws, int(parent_id))
    except Exception:  # noqa: BLE001 - a missing parent ends the chain; scope says so
        return None


def patches(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found = manifest.get("patches") or manifest.get("patch")
    if isinstance(found, dict):
        found = [found]
    return [p for p in (found or []) if isinstance(p, dict)]


def encoder(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The text encoder as the manifest names it: "name@hash" (None for observation models)."""
    text = (manifest.get("input") or {}).get("encoder")
    if not text:
        return None
    name, _, digest = str(text).partition("@")
    return {"id": text, "name": name, "hash": digest or None}


def dataset_record(ws: Workspace, dataset_id: int) -> dict[str, Any]:
    row = ws.execute("SELECT name, kind, format, source_sha256, source_path, created_at, "
                     "n_examples, report FROM datasets WHERE id = ?", [dataset_id]).fetchall()[0]
    name, kind, fmt, sha, path, created, n, report = row
    report = json.loads(report) if report else {}
    excluded, labeled = ws.execute(
        "SELECT count(*) FILTER (WHERE excluded), count(*) FILTER (WHERE current_label IS NOT NULL)"
        " FROM current_examples WHERE dataset_id = ?", [dataset_id]).fetchall()[0]
    sources = report.get("sources") or [{"path": path, "sha256": sha}]
    return {"dataset_id": dataset_id, "name": name, "kind": kind, "format": fmt,
            "imported_at": created, "n_examples": int(n), "n_excluded": int(excluded),
            "n_labeled": int(labeled) if kind == "labels" else None,
            "skipped_records": int(report.get("skipped") or 0),
            "skipped_reasons": report.get("skipped_reasons") or {},
            "sources": [{"path": s.get("path"), "sha256": s.get("sha256"),
                         "size_bytes": s.get("size_bytes"), "imported": s.get("imported"),
                         "skipped": s.get("skipped")} for s in sources]}
