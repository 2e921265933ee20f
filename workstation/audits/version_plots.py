"""What the Versions and Flywheel plots show (SQL + numpy, no Qt): two versions
example by example, and each version's turn of the flywheel.

Every count says what it counts. ``compare_runs`` classes each example fixed /
broken / unchanged over the examples *neither* version was trained on (the
rows both runs store with no training role), counting the others apart, as
``compare`` does; ``comparison_from_report`` reads a regression report's
per-dataset counts, which are of those examples too. ``flywheel_history``
keeps failing examples, probe findings and fixed / broken examples apart, and
``flywheel_series`` names each series by what it counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workstation.audits.plot_runs import MAX_POINTS, RunInfo, run_info, thin
from workstation.audits.plot_runs import columns as _columns
from workstation.audits.plot_runs import floats as _floats
from workstation.errors import WorkstationError
from workstation.workspace import Workspace

CLASSES = ("fixed", "broken", "unchanged")
FIXED, BROKEN, UNCHANGED = range(3)
# A row of a run its version was not trained on (as runs.SPLITS["heldout"]).
_HELD = "({t}.split IS NULL OR {t}.split = 'heldout')"

__all__ = ["BROKEN", "CLASSES", "CategoryDelta", "FIXED", "FLYWHEEL_CAPTION", "FLYWHEEL_X_LABEL",
           "FLYWHEEL_Y_LABEL", "FlywheelSeries", "HistoryPoint",
           "ReportExample", "UNCHANGED", "VersionComparison", "classify", "comparable_runs",
           "compare_runs", "comparison_from_report", "flywheel_history", "flywheel_series",
           "report_category_deltas", "report_examples", "report_ref"]


# -- version comparison ----------------------------------------------------------

@dataclass
class VersionComparison:
    """Old margin against new margin per example, each classed FIXED (failed
    before, passes now), BROKEN (passed before, fails now) or UNCHANGED
    (same verdict). ``counts`` are over every compared example, even when
    the arrays are thinned for drawing; ``what`` says which examples those
    are, and ``n_left_out`` how many training examples were counted apart."""

    old_label: str
    new_label: str
    dataset: str
    old_margin: np.ndarray
    new_margin: np.ndarray
    example_ids: np.ndarray
    classes: np.ndarray
    counts: dict[str, int]
    reason: str | None = None
    what: str = "examples"
    n_left_out: int = 0

    def ids_of(self, name: str) -> list[int]:
        return [int(i) for i in self.example_ids[self.classes == CLASSES.index(name)]]

    @property
    def counts_text(self) -> str:
        """E.g. "23 held-out examples (...): 1 fixed, 0 broken, 22 unchanged"."""
        n = sum(self.counts.values())
        text = (f"{n} {self.what}: {self.counts['fixed']} fixed, {self.counts['broken']} "
                f"broken, {self.counts['unchanged']} unchanged")
        return text + (f"; {self.n_left_out} training examples counted apart"
                       if self.n_left_out else "")


def compare_runs(ws: Workspace, old_run_id: int, new_run_id: int,
                 max_points: int = MAX_POINTS) -> VersionComparison:
    """Example-by-example comparison of two audit runs of the same dataset, on
    the examples neither run's version was trained on (the others counted apart)."""
    old, new = run_info(ws, old_run_id), run_info(ws, new_run_id)
    if old.dataset_id != new.dataset_id:
        raise WorkstationError(f"runs {old_run_id} and {new_run_id} audit different datasets "
                               f"({old.dataset}, {new.dataset}); compare runs of one dataset")
    old_m, new_m, ids, old_p, new_p, held = _columns(
        ws, "SELECT a.margin, b.margin, a.example_id, a.passed, b.passed, "
            f"{_HELD.format(t='a')} AND {_HELD.format(t='b')} FROM audit_results a "
            "JOIN audit_results b ON b.example_id = a.example_id AND b.run_id = ? "
            "WHERE a.run_id = ? ORDER BY a.example_id", [new_run_id, old_run_id])
    held = held.astype(bool)
    classes = classify(old_p.astype(bool)[held], new_p.astype(bool)[held])
    result = VersionComparison(old.model, new.model, old.dataset, _floats(old_m)[held],
                               _floats(new_m)[held], ids.astype(np.int64)[held], classes,
                               _class_counts(classes), None, _runs_what(old, new),
                               int((~held).sum()))
    if not len(ids):
        result.reason = "the two runs share no examples"
    elif not held.any():
        result.reason = (f"every example the two runs share was trained on by {old.model} or "
                         f"{new.model}: no held-out example to compare")
    return _thin_comparison(result, max_points)


def _runs_what(old: RunInfo, new: RunInfo) -> str:
    """Which examples a comparison of two runs counts, in words."""
    runs = (old, new)
    unrecorded = [r.run_id for r in runs if r.membership is None]
    if unrecorded:
        return (f"examples both runs audited (run {unrecorded[0]} was audited before training "
                f"membership was recorded: its training examples cannot be told apart)")
    trained = [r.model for r in runs if r.membership.get("status") == "trained"]
    if not trained:
        return "examples (neither version was trained on this dataset)"
    verb = "were" if len(trained) > 1 else "was"
    return f"held-out examples (those {' and '.join(trained)} {verb} not trained on)"


def classify(old_passed: np.ndarray, new_passed: np.ndarray) -> np.ndarray:
    """FIXED, BROKEN or UNCHANGED per example."""
    classes = np.full(len(old_passed), UNCHANGED, dtype=np.int8)
    classes[~old_passed & new_passed] = FIXED
    classes[old_passed & ~new_passed] = BROKEN
    return classes


def _class_counts(classes: np.ndarray) -> dict[str, int]:
    return {name: int((classes == i).sum()) for i, name in enumerate(CLASSES)}


def _thin_comparison(c: VersionComparison, max_points: int) -> VersionComparison:
    keep = thin(c.classes != UNCHANGED, max_points)
    if keep is None:
        return c
    return VersionComparison(c.old_label, c.new_label, c.dataset, c.old_margin[keep],
                             c.new_margin[keep], c.example_ids[keep], c.classes[keep],
                             c.counts, c.reason, c.what, c.n_left_out)


def comparison_from_report(report: dict[str, Any], dataset: str | None = None
                           ) -> VersionComparison:
    """The fixed and broken examples of a regression report (its ``to_json()``)
    as a comparison scatter. Only examples whose two margins the report gives
    are drawn (a report lists ids, and margins for its largest drops);
    ``counts`` are the report's totals."""
    rows = [r for r in report_examples(report) if dataset is None or r.dataset == dataset]
    drawn = [r for r in rows if r.baseline_margin is not None and r.candidate_margin is not None]
    entries = [(n, e) for n, e in _report_datasets(report) if dataset is None or n == dataset]
    counts = {name: sum(_class_total(e, name) for _, e in entries) for name in CLASSES}
    left_out = sum(int((e.get("training_examples") or {}).get("n") or 0) for _, e in entries)
    return VersionComparison(
        report_ref(report.get("baseline"), "baseline"),
        report_ref(report.get("candidate"), "candidate"),
        dataset or ", ".join(n for n, _ in entries),
        np.array([r.baseline_margin for r in drawn], dtype=float),
        np.array([r.candidate_margin for r in drawn], dtype=float),
        np.array([r.example_id for r in drawn], dtype=np.int64),
        np.array([CLASSES.index(r.outcome) for r in drawn], dtype=np.int8), counts,
        None if entries else "the report compares no datasets", _report_what(entries),
        left_out)


def _report_what(entries: list[tuple[str, dict[str, Any]]]) -> str:
    used = {e.get("examples_used") for _, e in entries}
    if len(used) == 1 and None not in used:
        return f"examples, {used.pop()}"
    if used == {None}:  # a report from before held-out examples were kept apart
        return "examples"
    return "examples (held-out where a version was trained on the dataset)"


@dataclass(frozen=True)
class ReportExample:
    """One fixed or broken example named by a regression report."""

    dataset: str
    example_id: int
    outcome: str                     # "fixed" or "broken"
    baseline_margin: float | None
    candidate_margin: float | None


def report_examples(report: dict[str, Any]) -> list[ReportExample]:
    """Every fixed and broken example a regression report lists, per dataset,
    with their margins where the report gives them."""
    out = []
    for name, entry in _report_datasets(report):
        margins = _report_margins(entry)
        for outcome in ("fixed", "broken"):
            for eid in _listed_ids(entry, outcome):
                old, new = margins.get(eid, (None, None))
                out.append(ReportExample(name, eid, outcome, old, new))
    return out


def _report_datasets(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    per = report.get("per_dataset") or {}
    if isinstance(per, dict):
        return [(str(k), v) for k, v in per.items() if isinstance(v, dict)]
    return [(str(e.get("dataset", i)), e) for i, e in enumerate(per) if isinstance(e, dict)]


def report_ref(value: Any, default: str) -> str:
    """The NAME@VERSION a report names for its candidate or baseline."""
    if isinstance(value, dict):
        return str(value.get("ref") or default)
    return str(value) if value else default


def _class_total(entry: dict[str, Any], name: str) -> int:
    """``entry[name]`` when it is a count, else the length of its list."""
    value = entry.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    examples = entry.get(f"{name}_examples")
    if isinstance(examples, dict) and isinstance(examples.get("total"), int):
        return examples["total"]
    return len(_listed_ids(entry, name))


def _listed_ids(entry: dict[str, Any], name: str) -> list[int]:
    """Example ids listed for ``name``: ``{name}_examples.ids`` or a list under ``name``."""
    examples = entry.get(f"{name}_examples")
    listed = examples.get("ids") if isinstance(examples, dict) else entry.get(name)
    if not isinstance(listed, list):
        return []
    return [int(i["example_id"] if isinstance(i, dict) else i) for i in listed
            if not isinstance(i, dict) or i.get("example_id") is not None]


_OLD_KEYS = ("baseline", "baseline_margin", "old_margin")
_NEW_KEYS = ("candidate", "candidate_margin", "new_margin")


def _report_margins(entry: dict[str, Any]) -> dict[int, tuple[float, float]]:
    """(baseline, candidate) margins the report gives, by example id: its
    largest margin drops and any example listed with margins."""
    change = entry.get("margin_change")
    items = list(change.get("largest_drops") or []) if isinstance(change, dict) else []
    for name in CLASSES:
        listed = entry.get(name)
        items += [i for i in listed if isinstance(i, dict)] if isinstance(listed, list) else []
    out = {}
    for item in items:
        old, new = _first(item, _OLD_KEYS), _first(item, _NEW_KEYS)
        if item.get("example_id") is not None and old is not None and new is not None:
            out[int(item["example_id"])] = (float(old), float(new))
    return out


def _first(item: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((item[k] for k in keys if isinstance(item.get(k), (int, float))), None)


@dataclass(frozen=True)
class CategoryDelta:
    """A metric of one category, baseline against candidate, from a report."""

    dataset: str
    category: str
    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci: tuple[float, float] | None
    n: int | None
    gated: bool
    failing: bool


def report_category_deltas(report: dict[str, Any]) -> list[CategoryDelta]:
    """Every per-category metric delta of a regression report, failing ones
    (those the gate's metric rule names) first, then by dataset and category."""
    failing = _failing_metrics(report)
    rows = []
    for name, entry in _report_datasets(report):
        for category, records in (entry.get("categories") or {}).items():
            for metric, r in (records or {}).items():
                if isinstance(r, dict):
                    ci = r.get("ci")
                    rows.append(CategoryDelta(
                        name, str(category), str(metric), r.get("baseline"), r.get("candidate"),
                        r.get("delta"), tuple(ci) if ci else None, r.get("n"),
                        bool(r.get("gated")), (name, category, metric) in failing))
    return sorted(rows, key=lambda d: (not d.failing, d.dataset, d.category, d.metric))


def _failing_metrics(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    gate = report.get("gate") if isinstance(report.get("gate"), dict) else {}
    out = set()
    for rule in gate.get("rules") or []:
        for e in rule.get("failing") or [] if isinstance(rule, dict) else []:
            if isinstance(e, dict):
                out.add((e.get("dataset"), e.get("category"), e.get("metric")))
    return out


# -- flywheel history ------------------------------------------------------------

@dataclass
class HistoryPoint:
    """One model version's turn of the flywheel, each count of one kind of thing.

    ``failing_examples``: examples failing in the version's latest audit run
    per dataset (``heldout_failing_examples`` of them not trained on by it);
    ``probe_findings``: findings of its latest probe run per dataset (one
    example or generated case can carry several); ``fixed`` / ``broken``:
    examples neither it nor its parent was trained on whose verdict changed
    against the parent's latest audit of the same dataset, out of
    ``n_compared`` (only datasets both versions audited: ``datasets_compared``)."""

    version_id: int
    ref: str
    parent_ref: str | None
    failing_examples: int
    heldout_failing_examples: int
    probe_findings: int
    fixed: int | None
    broken: int | None
    datasets_compared: list[str]
    n_compared: int | None = None


@dataclass(frozen=True)
class FlywheelSeries:
    """One bar series of the Flywheel plot: what it counts, per version."""

    key: str
    name: str                 # the legend: says what is counted
    values: list[int | None]  # None: nothing to count (no parent audit)
    colour: str               # a semantic colour name


FLYWHEEL_X_LABEL = "model version (lineage order)"
FLYWHEEL_Y_LABEL = "count (each series names what it counts)"
FLYWHEEL_CAPTION = (
    "Failing examples: examples that fail the version's latest audit of each dataset. Probe "
    "findings: findings of its latest probe run per dataset (an example or generated case can "
    "have several). Fixed / broken: held-out examples (neither version trained on them) whose "
    "verdict changed against the parent, on datasets both versions audited.")


def flywheel_series(history: list[HistoryPoint]) -> list[FlywheelSeries]:
    """The Flywheel plot's series, examples and findings kept apart."""
    return [
        FlywheelSeries("failing_examples", "failing examples (latest audit per dataset)",
                       [h.failing_examples for h in history], "accent"),
        FlywheelSeries("probe_findings", "probe findings (latest probe run per dataset)",
                       [h.probe_findings for h in history], "unsafe"),
        FlywheelSeries("fixed", "held-out examples fixed vs parent",
                       [h.fixed for h in history], "fixed"),
        FlywheelSeries("broken", "held-out examples broken vs parent",
                       [h.broken for h in history], "broken")]


def flywheel_history(ws: Workspace, model: str) -> list[HistoryPoint]:
    """Every version of ``model`` and its ancestors (across names), in lineage
    order (a parent before its children: registration order)."""
    family = _family(ws, model)
    if not family:
        raise WorkstationError(f"no model named '{model}'")
    latest = _latest_runs(ws, [v[0] for v in family])
    refs = {v[0]: v[1] for v in family}
    return [_history_point(ws, vid, ref, parent, refs, latest) for vid, ref, parent in family]


def _family(ws: Workspace, model: str) -> list[tuple[int, str, int | None]]:
    rows = ws.execute(
        "WITH RECURSIVE fam(id) AS (SELECT id FROM model_versions WHERE model = ? "
        "UNION SELECT mv.parent_id FROM model_versions mv JOIN fam ON mv.id = fam.id "
        "WHERE mv.parent_id IS NOT NULL) "
        "SELECT mv.id, mv.model || '@' || mv.version, mv.parent_id FROM model_versions mv "
        "WHERE mv.id IN (SELECT id FROM fam) ORDER BY mv.id", [model]).fetchall()
    return [(int(r[0]), r[1], r[2]) for r in rows]


def _latest_runs(ws: Workspace, version_ids: list[int]) -> dict[tuple[int, str], dict[int, tuple]]:
    """{(version id, run kind): {dataset id: (run id, n_failures, dataset name)}}."""
    rows = ws.execute(
        "SELECT r.model_version_id, r.kind, r.dataset_id, max(r.id), arg_max(r.n_failures, r.id), "
        "any_value(d.name) FROM audit_runs r JOIN datasets d ON d.id = r.dataset_id "
        f"WHERE r.model_version_id IN ({', '.join('?' * len(version_ids))}) "
        "GROUP BY ALL", version_ids).fetchall()
    out: dict[tuple[int, str], dict[int, tuple]] = {}
    for vid, kind, dataset_id, run_id, n_failures, name in rows:
        out.setdefault((vid, kind), {})[dataset_id] = (run_id, int(n_failures), name)
    return out


def _history_point(ws: Workspace, vid: int, ref: str, parent: int | None,
                   refs: dict[int, str], latest: dict) -> HistoryPoint:
    audits = latest.get((vid, "audit"), {})
    probes = latest.get((vid, "probe"), {})
    fixed = broken = n = None
    compared: list[str] = []
    parent_audits = latest.get((parent, "audit"), {}) if parent is not None else {}
    for dataset_id in sorted(set(audits) & set(parent_audits)):
        f, b, k = _fixed_broken(ws, parent_audits[dataset_id][0], audits[dataset_id][0])
        fixed, broken, n = (fixed or 0) + f, (broken or 0) + b, (n or 0) + k
        compared.append(audits[dataset_id][2])
    return HistoryPoint(vid, ref, refs.get(parent) if parent is not None else None,
                        sum(r[1] for r in audits.values()),
                        _heldout_failures(ws, [r[0] for r in audits.values()]),
                        sum(r[1] for r in probes.values()), fixed, broken, compared, n)


def _heldout_failures(ws: Workspace, run_ids: list[int]) -> int:
    if not run_ids:
        return 0
    return int(ws.execute(
        f"SELECT count(*) FROM audit_results WHERE run_id IN ({', '.join('?' * len(run_ids))}) "
        f"AND NOT passed AND {_HELD.format(t='audit_results')}", run_ids).fetchall()[0][0])


def _fixed_broken(ws: Workspace, old_run: int, new_run: int) -> tuple[int, int, int]:
    """(fixed, broken, compared) over the examples neither run's version trained on."""
    row = ws.execute(
        "SELECT count(*) FILTER (WHERE NOT a.passed AND b.passed), "
        "count(*) FILTER (WHERE a.passed AND NOT b.passed), count(*) FROM audit_results a "
        "JOIN audit_results b ON b.example_id = a.example_id AND b.run_id = ? "
        f"WHERE a.run_id = ? AND {_HELD.format(t='a')} AND {_HELD.format(t='b')}",
        [new_run, old_run]).fetchall()[0]
    return int(row[0]), int(row[1]), int(row[2])


def comparable_runs(ws: Workspace, run_id: int) -> list[dict[str, Any]]:
    """Other audit runs of the same dataset, newest first, the run's parent
    version's runs first: the baselines a version comparison can use."""
    run = run_info(ws, run_id)
    rows = ws.execute(
        "SELECT r.id, mv.model || '@' || mv.version, r.created_at, "
        "mv.id = (SELECT parent_id FROM model_versions WHERE id = ?) AS is_parent "
        "FROM audit_runs r JOIN model_versions mv ON mv.id = r.model_version_id "
        "WHERE r.kind = 'audit' AND r.dataset_id = ? AND r.id <> ? "
        "ORDER BY is_parent DESC, r.id DESC", [run.model_version_id, run.dataset_id, run_id]
    ).fetchall()
    return [{"run_id": r[0], "model": r[1], "created_at": r[2], "is_parent": bool(r[3])}
            for r in rows]
