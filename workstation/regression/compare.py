"""compare(): a candidate version against a baseline on every audit suite.

Which datasets: every dataset with an audit or probe run by *any* version of
the candidate's or the baseline's model (the model's audit suites so far,
not only those the two versions happened to be run on), plus the datasets
of the regression suite; or the named ``datasets`` plus the suite's (the
regression suite is always checked in full). A dataset that one of the two
versions cannot score (its input kind does not fit) is skipped, with the
reason.

Both versions are scored with ``score_dataset`` on the labels as they stand
now and judged by the audit judge (``audits.runs.judge``): each version with
the threshold of the newest audit of that dataset by a version of these
models with the same score type, preferring its own runs, else the audit
default. Everything is read in one transaction, so both versions see the
same labels.

Held-out figures: the examples either version was trained on
(``workstation.models.membership``) are left out of a dataset's fixed /
broken / unchanged counts, category deltas and margins, and counted apart;
each comparison says in words which examples it used.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from workstation.audits.runs import default_threshold, judge
from workstation.errors import WorkstationError
from workstation.models import membership as ms
from workstation.models.registry import ModelVersion, resolve
from workstation.models.scoring import ScoreResult, score_dataset
from workstation.progress import Progress
from workstation.regression.deltas import category_deltas
from workstation.regression.findings import MODE_KIND, ThresholdFor, load_findings, replay
from workstation.regression.report import DatasetComparison, ProtectedReward, RegressionReport
from workstation.regression.suite import SuiteItem, check_suite, suite_for
from workstation.review import head_hash
from workstation.workspace import Workspace, now_iso

DEFAULT_TOLERANCE = 0.02
DEFAULT_BUDGET = 0.10
_FITS = {"text-embedding": ("pairs", "labels"), "text-tokens": ("pairs", "labels"),
         "observation": ("demos",)}


def compare(ws: Workspace, candidate_ref: str | int | ModelVersion,
            baseline_ref: str | int | ModelVersion, *, datasets: list[str] | None = None,
            progress: Progress | None = None, encoder: Any = None,
            tolerance: float = DEFAULT_TOLERANCE, budget: float = DEFAULT_BUDGET,
            seed: int = 0) -> RegressionReport:
    """Compare ``candidate_ref`` with ``baseline_ref`` example by example on
    every audit suite and probe finding, check the regression suite, and
    return the report (its ``gate()`` is the release verdict)."""
    progress = progress or Progress()
    candidate, baseline = resolve(ws, candidate_ref), resolve(ws, baseline_ref)
    _check_arguments(candidate, baseline, tolerance, budget)
    models = sorted({candidate.model, baseline.model})
    with _snapshot(ws):
        report = RegressionReport(candidate, baseline, float(tolerance), float(budget), seed,
                                  head_hash(ws), now_iso())
        items = suite_for(ws, candidate)
        _compare_datasets(ws, report, _datasets(ws, models, datasets, items), models, encoder,
                          progress)
        by_id = {c.dataset_id: c for c in report.datasets.values()}
        threshold_for = _threshold_for(candidate, by_id)
        progress.stage_start("probe findings")
        report.findings, report.duplicate_findings = load_findings(ws, models, list(by_id))
        replay(ws, report.findings, baseline, candidate, by_id, threshold_for, encoder)
        progress.stage_start("regression suite")
        report.suite = check_suite(ws, candidate, items, by_id, threshold_for, encoder)
    return report


def _compare_datasets(ws: Workspace, report: RegressionReport,
                      datasets: list[tuple[int, str, str]], models: list[str], encoder: Any,
                      progress: Progress) -> None:
    for dataset_id, name, kind in datasets:
        progress.stage_start(f"compare {name}")
        reason = _unscorable(kind, report.candidate, report.baseline)
        if reason:
            report.skipped_datasets[name] = reason
            continue
        report.datasets[name] = compare_dataset(ws, report.candidate, report.baseline,
                                                dataset_id, models, encoder, progress,
                                                report.seed)


def _check_arguments(candidate: ModelVersion, baseline: ModelVersion, tolerance: float,
                     budget: float) -> None:
    if candidate.id == baseline.id:
        raise WorkstationError(f"{candidate.ref} is both candidate and baseline; compare two "
                               "different versions")
    if not (tolerance >= 0 and budget >= 0):
        raise WorkstationError("tolerance and budget must be numbers >= 0")


@contextlib.contextmanager
def _snapshot(ws: Workspace) -> Iterator[None]:
    """One transaction when writable (the embedding cache and the suite may
    be written); a read-only workspace does not change under us anyway."""
    if ws.read_only:
        yield
        return
    with ws.transaction():
        yield


# -- which datasets ------------------------------------------------------------------

def _datasets(ws: Workspace, models: list[str], names: list[str] | None,
              items: list[SuiteItem]) -> list[tuple[int, str, str]]:
    suite_ids = sorted({i.dataset_id for i in items if i.dataset_id is not None})
    if names is None:
        chosen = "d.id IN (SELECT r.dataset_id FROM audit_runs r JOIN model_versions mv " \
                 "ON mv.id = r.model_version_id WHERE list_contains(?, mv.model))"
        params: list[Any] = [models]
    else:
        _check_names(ws, names)
        chosen, params = "list_contains(?, d.name)", [list(names)]
    rows = ws.execute(f"SELECT d.id, d.name, d.kind FROM datasets d WHERE {chosen} "
                      "OR list_contains(?, d.id) ORDER BY d.id", params + [suite_ids]).fetchall()
    return [(int(i), n, k) for i, n, k in rows]


def _check_names(ws: Workspace, names: list[str]) -> None:
    known = {r[0] for r in ws.execute("SELECT name FROM datasets").fetchall()}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise WorkstationError(f"unknown dataset '{unknown[0]}'; datasets: "
                               f"{', '.join(sorted(known)) or 'none imported yet'}")


def _unscorable(kind: str, *versions: ModelVersion) -> str | None:
    for v in versions:
        if kind not in _FITS.get(v.input_kind, ()):
            return f"{v.ref} takes {v.input_kind} input and cannot score {kind}"
    return None


# -- one dataset ---------------------------------------------------------------------

def compare_dataset(ws: Workspace, candidate: ModelVersion, baseline: ModelVersion,
                    dataset_id: int, models: list[str], encoder: Any = None,
                    progress: Progress | None = None, seed: int = 0) -> DatasetComparison:
    """Both versions scored and judged on one dataset, aligned by example id."""
    results, verdicts = [], []
    for version in (baseline, candidate):
        result = score_dataset(ws, version, dataset_id, encoder=encoder, progress=progress)
        _check_finite(result)
        results.append(result)
        verdicts.append(judge(result, _threshold(ws, dataset_id, result, models)))
    (rb, rc), (vb, vc) = results, verdicts
    common = np.intersect1d(rb.example_ids[vb.keep], rc.example_ids[vc.keep])
    ib, ic = np.searchsorted(rb.example_ids, common), np.searchsorted(rc.example_ids, common)
    members = {side: ms.membership_for(ws, v, dataset_id)
               for side, v in (("baseline", baseline), ("candidate", candidate))}
    compared = np.logical_and.reduce([ms.not_trained_on(ms.example_roles(m, common))
                                      for m in members.values()])
    values = "margin" if rb.dataset_kind == "pairs" else "score"
    jb, jc = ib[compared], ic[compared]
    categories = category_deltas(
        rb.dataset_kind, getattr(rb, values)[jb], getattr(rc, values)[jc], vb.passed[jb],
        vc.passed[jc], rb.labels[jb], rb.category_codes[jb], rb.category_names, seed)
    comparison = DatasetComparison(
        _dataset_name(ws, dataset_id), dataset_id, rb.dataset_kind,
        {"baseline": vb.threshold, "candidate": vc.threshold}, common, vb.passed[ib],
        vc.passed[ic], vb.margin[ib], vc.margin[ic], categories, notes=rb.notes + rc.notes,
        compared=compared, memberships={k: m.to_json() for k, m in members.items()},
        which=examples_used(members))
    if rb.dataset_kind == "demos":
        comparison.protected = _protected(rb, rc, common[rb.labels[ib]])
    return comparison


def examples_used(members: dict[str, ms.Membership]) -> str:
    """In words, which examples a dataset comparison counted."""
    trained = [m.version for m in members.values() if m.status == ms.TRAINED]
    unknown = [m.version for m in members.values() if m.status == ms.UNKNOWN]
    note = (f"; {' and '.join(unknown)}: training data unknown, counted as not trained on"
            if unknown else "")
    if trained:
        verb = "were" if len(trained) > 1 else "was"
        return f"held-out (the examples {' and '.join(trained)} {verb} not trained on{note})"
    if unknown:
        return f"all (no version is known to have been trained on this dataset{note})"
    return "all (neither version was trained on this dataset)"


def _check_finite(result: ScoreResult) -> None:
    for name in ("score", "margin"):
        values = getattr(result, name)
        if values is not None and not np.isfinite(values).all():
            raise WorkstationError(f"model {result.model.ref} gave non-finite scores (nan/inf); "
                                   "no comparison made")


def _threshold(ws: Workspace, dataset_id: int, result: ScoreResult,
               models: list[str]) -> float | None:
    """The threshold audits of this dataset used for this score type (see module docstring)."""
    if result.dataset_kind == "pairs":
        return None
    rows = ws.execute(
        "SELECT r.threshold FROM audit_runs r JOIN model_versions mv ON mv.id = r.model_version_id "
        "WHERE r.kind = 'audit' AND r.dataset_id = ? AND list_contains(?, mv.model) "
        "AND r.threshold IS NOT NULL AND json_extract_string(r.params, '$.score_type') = ? "
        "ORDER BY (r.model_version_id = ?) DESC, r.id DESC LIMIT 1",
        [dataset_id, models, result.score_type, result.model.id]).fetchall()
    return float(rows[0][0]) if rows else None


def _dataset_name(ws: Workspace, dataset_id: int) -> str:
    return ws.execute("SELECT name FROM datasets WHERE id = ?", [dataset_id]).fetchall()[0][0]


def _protected(rb: ScoreResult, rc: ScoreResult, expert_ids: np.ndarray) -> ProtectedReward:
    """Reward lost on every state of the expert trajectories (the basin)."""
    in_b = np.isin(rb.step_example_ids, expert_ids)
    in_c = np.isin(rc.step_example_ids, expert_ids)
    owners = rb.step_example_ids[in_b]
    # Both versions read the same steps in the same order (by example, step).
    if not np.array_equal(owners, rc.step_example_ids[in_c]):
        raise WorkstationError("the two versions scored different demonstration steps; "
                               "compare again")
    losses = rb.step_rewards[in_b].astype(np.float64) - rc.step_rewards[in_c]
    return ProtectedReward(losses, owners)


def _threshold_for(candidate: ModelVersion,
                   comparisons: dict[int, DatasetComparison]) -> ThresholdFor:
    """The threshold a finding's case is judged with, per version (see findings)."""
    def threshold_for(version: ModelVersion, ref: dict[str, Any]) -> float:
        if ref.get("threshold") is not None:
            return float(ref["threshold"])
        kind = MODE_KIND[ref["mode"]]
        comparison = comparisons.get(ref.get("dataset_id"))
        if comparison is not None and comparison.kind == kind:
            side = "candidate" if version.id == candidate.id else "baseline"
            if comparison.thresholds[side] is not None:
                return float(comparison.thresholds[side])
        return float(default_threshold(kind, version.manifest["score_type"]))
    return threshold_for
