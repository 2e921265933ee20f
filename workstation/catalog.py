"""What a workspace holds, listed for choosing: its datasets, model versions,
the runs over a dataset (audits and probe suites alike), and a dataset's
categories, tags and probes. Read-only and cheap: a GUI fills its pickers from these."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from workstation.errors import WorkstationError
from workstation.workspace import Workspace

# Distinct values offered for choosing are capped: a picker is not a report.
MAX_CHOICES = 500


@dataclass(frozen=True)
class DatasetInfo:
    """One imported dataset."""

    id: int
    name: str
    kind: str
    format: str
    n_examples: int
    created_at: str


@dataclass(frozen=True)
class RunInfo:
    """One stored run: an audit (``kind`` "audit") or a probe suite ("probe")."""

    id: int
    kind: str
    model: str
    model_version_id: int
    dataset: str
    dataset_id: int
    dataset_kind: str
    created_at: str
    n_examples: int
    n_failures: int
    ran_on: dict[str, Any] | None = None     # where a run brought home was scored (else here)
    selection: dict[str, Any] | None = None  # what of such a run came home
    bundle_trusted: bool | None = None  # such a run's bundle key trusted here (None: not one)


def datasets(ws: Workspace) -> list[DatasetInfo]:
    """Every dataset, oldest first."""
    rows = ws.execute("SELECT id, name, kind, format, n_examples, created_at FROM datasets "
                      "ORDER BY id").fetchall()
    return [DatasetInfo(*row) for row in rows]


def dataset(ws: Workspace, name: str) -> DatasetInfo:
    """The dataset called ``name``."""
    for info in datasets(ws):
        if info.name == name:
            return info
    raise WorkstationError(f"no dataset named {name!r}")


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version (``ref`` is NAME@VERSION)."""

    id: int
    ref: str
    input_kind: str


def model_versions(ws: Workspace) -> list[VersionInfo]:
    """Every model version, by name then version (without loading any model)."""
    rows = ws.execute("SELECT id, model || '@' || version, input_kind FROM model_versions "
                      "ORDER BY model, version").fetchall()
    return [VersionInfo(*row) for row in rows]


def runs(ws: Workspace, dataset: str | None = None,
         model_version_id: int | None = None) -> list[RunInfo]:
    """Runs of both kinds, newest first; optionally over one dataset (by
    name) and of one model version."""
    where, params = ["TRUE"], []
    if dataset is not None:
        where.append("d.name = ?")
        params.append(dataset)
    if model_version_id is not None:
        where.append("r.model_version_id = ?")
        params.append(int(model_version_id))
    rows = ws.execute(
        "SELECT r.id, r.kind, mv.model || '@' || mv.version, r.model_version_id, d.name, "
        "r.dataset_id, d.kind, r.created_at, r.n_examples, r.n_failures, "
        "json_extract(r.params, '$.ran_on'), json_extract(r.params, '$.scale.selection'), "
        "json_extract(r.params, '$.scale.bundle_trusted') "
        "FROM audit_runs r "
        "JOIN model_versions mv ON mv.id = r.model_version_id "
        f"JOIN datasets d ON d.id = r.dataset_id WHERE {' AND '.join(where)} "
        "ORDER BY r.id DESC", params).fetchall()
    return [RunInfo(*row[:-3], *(json.loads(v) if v else None for v in row[-3:-1]),
                    None if row[-1] is None else json.loads(row[-1]) is not False)
            for row in rows]


def run(ws: Workspace, run_id: int) -> RunInfo:
    """The run with id ``run_id``, of either kind."""
    found = [r for r in runs(ws) if r.id == run_id]
    if not found:
        raise WorkstationError(f"no run {run_id}")
    return found[0]


def categories(ws: Workspace, dataset: str) -> list[str]:
    """The dataset's current categories, sorted."""
    return _distinct(ws, "SELECT DISTINCT ce.current_category FROM current_examples ce "
                         "JOIN datasets d ON d.id = ce.dataset_id "
                         "WHERE d.name = ? AND ce.current_category IS NOT NULL", [dataset])


def tags(ws: Workspace, dataset: str) -> list[str]:
    """Tags in use on the dataset's examples, sorted."""
    return _distinct(ws, "SELECT DISTINCT unnest(s.tags) FROM example_state s "
                         "JOIN examples e ON e.id = s.example_id "
                         "JOIN datasets d ON d.id = e.dataset_id WHERE d.name = ?", [dataset])


def run_probes(ws: Workspace, run_id: int) -> list[str]:
    """The probes that produced findings in a probe run, sorted."""
    return _distinct(ws, "SELECT DISTINCT probe FROM findings WHERE run_id = ?", [run_id])


def _distinct(ws: Workspace, sql: str, params: list[Any]) -> list[str]:
    rows = ws.execute(f"SELECT * FROM ({sql}) v(x) ORDER BY x LIMIT {MAX_CHOICES}",
                      params).fetchall()
    return [str(r[0]) for r in rows]
