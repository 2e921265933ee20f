"""The probe framework: what a probe is, the registry, and running a suite.

A probe looks for candidate flaws of a model version on a dataset and yields
``Finding``s with their evidence. Probes register in one place
(``register_probe``); the built-in ones use the same call a user's own probe
would. ``run_probes`` runs a suite as one run (``audit_runs.kind = 'probe'``)
and stores every finding in the ``findings`` table in one transaction, so a
cancelled or failed suite leaves nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from workstation.audits.findings import findings_page  # noqa: F401  (the probes API names it)
from workstation.errors import WorkstationError
from workstation.hashing import json_default
from workstation.models.registry import ModelVersion, resolve
from workstation.probes.coverage import record_coverage
from workstation.progress import Progress
from workstation.workspace import Workspace, default_analyst, now_iso

RUN_KIND = "probe"
TRIAGES = ("label-error", "model-error", "ambiguous")


@dataclass
class Finding:
    """One candidate flaw and its evidence.

    ``example_id`` names the dataset example it concerns (None for a purely
    generated case); ``case`` holds the generated input (e.g. the transformed
    text, the probed state); ``severity`` is in [0, 1], higher = worse.
    """

    probe: str
    rule: str
    severity: float
    triage: str
    example_id: int | None = None
    case: dict[str, Any] | None = None
    score_before: float | None = None
    score_after: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    probe_version: str = ""

    def __post_init__(self) -> None:
        if self.triage not in TRIAGES:
            raise ValueError(f"triage must be one of {TRIAGES}, not {self.triage!r}")
        self.severity = float(min(1.0, max(0.0, self.severity)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProbeContext:
    """What a probe gets: the workspace, the model, the dataset, and helpers.

    Probes read examples through ``ws`` (the view ``current_examples`` gives
    current labels) and score new inputs with ``score_texts`` /
    ``score_observations``; they report progress and check cancellation
    through ``progress``.
    """

    ws: Workspace
    version: ModelVersion
    dataset_id: int
    dataset: str
    kind: str
    progress: Progress
    params: dict[str, Any] = field(default_factory=dict)
    encoder: Any = None
    seed: int = 0

    def score_texts(self, prompts: list[str | None], responses: list[str | None]) -> np.ndarray:
        from workstation.models.scoring import score_texts

        return score_texts(self.ws, self.version, prompts, responses, encoder=self.encoder)

    def score_observations(self, obs: np.ndarray) -> np.ndarray:
        from workstation.models.scoring import score_observations

        return score_observations(self.ws, self.version, obs)

    def param(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)


class Probe(Protocol):
    """A probe: a name (used on the command line), a version, the dataset
    kinds it applies to, and ``run``."""

    name: str
    version: str
    kinds: tuple[str, ...]
    description: str

    def run(self, ctx: ProbeContext) -> Iterable[Finding]: ...


# Filled by ``register_probe``. The built-in probes are in it before any call:
# importing this module imports the package first, whose __init__ registers them.
PROBES: dict[str, Probe] = {}


def register_probe(probe: Probe, *, replace: bool = False) -> Probe:
    """Make ``probe`` available by its name (built-ins use this too)."""
    if probe.name in PROBES and not replace:
        raise WorkstationError(f"a probe named '{probe.name}' is already registered")
    PROBES[probe.name] = probe
    return probe


def probes_for(kind: str) -> list[Probe]:
    return [p for p in PROBES.values() if kind in p.kinds]


@dataclass
class ProbeRun:
    """The outcome of a probe suite: a run id and findings counted per probe."""

    id: int
    model: str
    dataset: str
    counts: dict[str, int]
    skipped: dict[str, str]
    summaries: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.id, "model": self.model, "dataset": self.dataset,
                "findings": self.counts, "skipped": self.skipped, "summaries": self.summaries}


def run_probes(ws: Workspace, model_ref: str | int | ModelVersion, dataset: str, *,
               probes: list[str] | None = None, params: dict[str, Any] | None = None,
               progress: Progress | None = None, analyst: str | None = None,
               encoder: Any = None, seed: int = 0) -> ProbeRun:
    """Run the named probes (default: every one that applies) and store the findings."""
    progress = progress or Progress()
    version = resolve(ws, model_ref)
    dataset_id, kind = _dataset(ws, dataset)
    chosen, skipped = _choose(probes, kind)
    ctx = ProbeContext(ws, version, dataset_id, dataset, kind, progress, dict(params or {}),
                       encoder, seed)
    with ws.transaction():
        run_id = ws.next_id("audit_runs")
        findings, summaries = _collect(chosen, ctx)
        _store(ws, run_id, version, dataset_id, findings, summaries, ctx, analyst)
        record_coverage(ws, run_id, encoder)  # where this run looked, for the oracle
    counts = {p.name: sum(f.probe == p.name for f in findings) for p in chosen}
    return ProbeRun(run_id, version.ref, dataset, counts, skipped, summaries)


def _dataset(ws: Workspace, name: str) -> tuple[int, str]:
    rows = ws.execute("SELECT id, kind FROM datasets WHERE name = ?", [name]).fetchall()
    if not rows:
        raise WorkstationError(f"no dataset named '{name}'")
    return int(rows[0][0]), rows[0][1]


def _choose(names: list[str] | None, kind: str) -> tuple[list[Probe], dict[str, str]]:
    if not names:
        return probes_for(kind), {}
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise WorkstationError(f"unknown probe '{unknown[0]}'; known: {', '.join(sorted(PROBES))}")
    chosen = [PROBES[n] for n in names if kind in PROBES[n].kinds]
    skipped = {n: f"does not apply to {kind}" for n in names if kind not in PROBES[n].kinds}
    if not chosen:
        raise WorkstationError(f"none of the probes {', '.join(names)} applies to {kind} datasets")
    return chosen, skipped


def _collect(chosen: list[Probe], ctx: ProbeContext) -> tuple[list[Finding], dict[str, dict]]:
    findings: list[Finding] = []
    summaries: dict[str, dict] = {}
    for i, probe in enumerate(chosen):
        # Probes whose own work reports nothing still show which one of how many runs.
        ctx.progress.stage_start(f"probe {probe.name} ({i + 1} of {len(chosen)})", len(chosen))
        ctx.progress.step(i, len(chosen))
        produced = list(probe.run(ctx))
        for f in produced:
            f.probe, f.probe_version = probe.name, probe.version
        findings.extend(produced)
        summary = getattr(probe, "last_summary", None)
        if summary:
            summaries[probe.name] = summary
    return findings, summaries


def _store(ws: Workspace, run_id: int, version: ModelVersion, dataset_id: int,
           findings: list[Finding], summaries: dict[str, dict], ctx: ProbeContext,
           analyst: str | None) -> None:
    from workstation.review import head_hash

    ws.execute(
        "INSERT INTO audit_runs (id, kind, model_version_id, dataset_id, created_at, created_by, "
        "threshold, review_head, params, metrics, n_examples, n_failures) "
        "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
        [run_id, RUN_KIND, version.id, dataset_id, now_iso(), analyst or default_analyst(),
         head_hash(ws), json.dumps({"probes": sorted({f.probe for f in findings}),
                                    "params": ctx.params, "seed": ctx.seed}, default=str),
         json.dumps(summaries, default=json_default), len({f.example_id for f in findings}),
         len(findings)])
    ordered = sorted(findings, key=lambda f: (-f.severity, f.probe,
                                              -1 if f.example_id is None else f.example_id))
    rows = [(run_id, i + 1, f.probe, f.probe_version, f.example_id,
             json.dumps(f.case, default=json_default) if f.case is not None else None,
             f.score_before, f.score_after, f.rule, f.severity, f.triage,
             json.dumps(f.details, default=json_default)) for i, f in enumerate(ordered)]
    if rows:
        _insert_findings(ws, rows)


def _insert_findings(ws: Workspace, rows: list[tuple]) -> None:
    import pyarrow as pa

    names = ["run_id", "id", "probe", "probe_version", "example_id", "case_data",
             "score_before", "score_after", "rule", "severity", "triage", "details"]
    findings_arrow = pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})
    ws.con.execute(f"INSERT INTO findings ({', '.join(names)}) "
                   f"SELECT {', '.join(names)} FROM findings_arrow")


ProbeFactory = Callable[[], Probe]
