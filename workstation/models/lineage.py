"""Model versions as a lineage tree, with what is known about each one.

What the models view shows, read in one place: every version with its
parent and children, its training metrics (``manifest.lineage.training_metrics``
of trained versions, else ``manifest.metrics``), the latest audit metrics
per dataset, and whether it is its model's current release. Also the
one-line summaries of ledger rows the ledger table shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from workstation.workspace import Workspace


@dataclass
class VersionNode:
    """One model version in the lineage tree."""

    id: int
    model: str
    version: int
    parent_id: int | None
    created_at: str
    created_by: str
    manifest: dict[str, Any]
    children: list[int] = field(default_factory=list)
    released: bool = False       # the current release of its model
    ever_released: bool = False

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    @property
    def parent_ref(self) -> str | None:
        return self.manifest.get("parent")

    @property
    def training_metrics(self) -> dict[str, Any]:
        lineage = self.manifest.get("lineage")
        found = lineage.get("training_metrics") if isinstance(lineage, dict) else None
        found = found if isinstance(found, dict) else self.manifest.get("metrics")
        return found if isinstance(found, dict) else {}


def version_tree(ws: Workspace) -> dict[int, VersionNode]:
    """Every version by id, children filled in; roots have no (known) parent."""
    rows = ws.execute("SELECT id, model, version, parent_id, created_at, created_by, manifest "
                      "FROM model_versions ORDER BY id").fetchall()
    nodes = {r[0]: VersionNode(r[0], r[1], r[2], r[3], r[4], r[5], _json(r[6])) for r in rows}
    for node in nodes.values():
        if node.parent_id in nodes:
            nodes[node.parent_id].children.append(node.id)
    _mark_releases(ws, nodes)
    return nodes


def roots(nodes: dict[int, VersionNode]) -> list[VersionNode]:
    return [n for n in nodes.values() if n.parent_id not in nodes]


def _mark_releases(ws: Workspace, nodes: dict[int, VersionNode]) -> None:
    from workstation.releases import current_release

    for (version_id,) in ws.execute("SELECT DISTINCT model_version_id FROM releases").fetchall():
        if version_id in nodes:
            nodes[version_id].ever_released = True
    for model in {n.model for n in nodes.values() if n.ever_released}:
        current = current_release(ws, model)
        if current is not None and current.model_version_id in nodes:
            nodes[current.model_version_id].released = True


def _json(text: Any) -> dict[str, Any]:
    value = json.loads(text) if isinstance(text, str) else text
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class AuditSummary:
    """The latest audit of a version on one dataset. ``metrics`` cover the
    examples the version was not trained on, ``training_metrics`` those it was
    (None: not trained on this dataset, or audited before that was recorded);
    ``membership`` says in words what each covers (None: not recorded)."""

    run_id: int
    dataset: str
    dataset_kind: str
    n_examples: int
    n_failures: int
    created_at: str
    metrics: dict[str, Any]
    training_metrics: dict[str, Any] | None = None
    membership: dict[str, Any] | None = None

    def headline(self, training: bool = False) -> dict[str, Any]:
        """The overall metrics (numbers only, no per-category detail), held-out
        ones unless ``training``."""
        metrics = (self.training_metrics or {}) if training else self.metrics
        return {k: v for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}


def latest_audits(ws: Workspace, version_id: int) -> list[AuditSummary]:
    """The version's newest audit run per dataset, by dataset name."""
    rows = ws.execute(
        "SELECT r.id, d.name, d.kind, r.n_examples, r.n_failures, r.created_at, r.metrics, "
        "r.training_metrics, r.membership "
        "FROM audit_runs r JOIN datasets d ON d.id = r.dataset_id "
        "WHERE r.kind = 'audit' AND r.model_version_id = ? AND r.id = ("
        "  SELECT max(r2.id) FROM audit_runs r2 WHERE r2.kind = 'audit' "
        "  AND r2.model_version_id = r.model_version_id AND r2.dataset_id = r.dataset_id) "
        "ORDER BY d.name", [version_id]).fetchall()
    return [AuditSummary(r[0], r[1], r[2], int(r[3]), int(r[4]), r[5], _json(r[6]),
                         _json(r[7]) if r[7] else None, _json(r[8]) if r[8] else None)
            for r in rows]


def rollback_target(ws: Workspace, model: str) -> tuple[int | None, int | None]:
    """(release id in force, release id a rollback would restore) for ``model``.

    The ledger decides, by the rule ``releases.rollback`` applies: each
    release row pushes its release, each rollback row pops the newest."""
    from workstation.releases import release_stack

    stack = release_stack(ws, model)
    return (stack[-1] if stack else None), (stack[-2] if len(stack) > 1 else None)


def release_ref(ws: Workspace, release_id: int | None) -> str | None:
    """NAME@VERSION of a release, or None."""
    if release_id is None:
        return None
    rows = ws.execute("SELECT mv.model || '@' || mv.version FROM releases r JOIN model_versions "
                      "mv ON mv.id = r.model_version_id WHERE r.id = ?", [release_id]).fetchall()
    return rows[0][0] if rows else None


def datasets(ws: Workspace) -> list[str]:
    """Dataset names, alphabetical (what a retrain can train on)."""
    return [r[0] for r in ws.execute("SELECT name FROM datasets ORDER BY name").fetchall()]


# -- the ledger, one line per row -----------------------------------------------------

@dataclass(frozen=True)
class LedgerRow:
    seq: int
    time: str
    actor: str
    kind: str
    summary: str


def ledger_rows(ws: Workspace) -> list[LedgerRow]:
    """Every ledger row, oldest first, with a one-line summary of its payload."""
    from workstation import ledger

    return [LedgerRow(e["seq"], e["time"], e["actor"], e["kind"], summarize(e["kind"],
                                                                           e["payload"]))
            for e in ledger.entries(ws)]


def summarize(kind: str, payload: dict[str, Any]) -> str:
    """What a ledger row recorded, in one line."""
    if kind == "release":
        return _release_summary(payload)
    if kind in ("release-request", "release-approve", "release-reject"):
        return _request_summary(kind, payload)
    if kind == "rollback":
        reason = f": {payload['reason']}" if payload.get("reason") else ""
        return (f"{payload.get('model')} rolled back from version {payload.get('from_version')} "
                f"to {payload.get('to_version')}{reason}")
    if kind in ("key-created", "key-imported"):
        return f"signing key {payload.get('key_id')} {kind.split('-')[1]}"
    if kind in ("trust-owner", "trust-add", "trust-revoke", "policy-set"):
        return _governance_summary(kind, payload)
    return ", ".join(f"{k}={v}" for k, v in list(payload.items())[:4])


def _governance_summary(kind: str, payload: dict[str, Any]) -> str:
    who = f"{payload.get('name', '?')} (key {payload.get('key_id')})"
    if kind == "trust-owner":
        return f"{who} owns the workspace: every role"
    if kind == "trust-add":
        return f"{who} trusted as {', '.join(payload.get('roles') or [])}"
    if kind == "trust-revoke":
        return f"key {payload.get('key_id')} revoked: {payload.get('reason')}"
    return f"policy {payload.get('key')} set to {payload.get('value')} " \
           f"(was {payload.get('previous')})"


def _release_summary(payload: dict[str, Any]) -> str:
    model = payload.get("model", "?")
    text = f"{model}@{payload.get('version', '?')} released"
    if payload.get("from_version") is not None:
        text += f" (replacing {model}@{payload['from_version']})"
    if payload.get("forced"):
        text += "; forced past a failed regression gate"
    return text


def _request_summary(kind: str, payload: dict[str, Any]) -> str:
    ref = f"{payload.get('model', '?')}@{payload.get('version', '?')}"
    number = f"release {payload.get('release_id', '?')}"
    if kind == "release-request":
        forced = "; forced past a failed regression gate" if payload.get("forced") else ""
        return f"{ref} requested as {number}{forced}"
    if kind == "release-approve":
        return f"{number} ({ref}) approved"
    return f"{number} ({ref}) rejected: {payload.get('reason')}"
