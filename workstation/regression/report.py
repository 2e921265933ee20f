"""What a regression check found: per dataset, per probe finding, per suite item.

The records keep the raw per-example arrays (so that ``gate`` can be
re-evaluated with another tolerance or budget); ``RegressionReport.to_json``
turns them into the plain JSON a governance batch stores, with id lists cut
at ``ID_LIST_CAP`` (the totals are always given). Only ``suite_additions``,
what this comparison would add to the regression suite, is never cut: a
release must be able to record every example it fixed.

Every count says what it counts. Examples and probe cases are counted apart
(``examples``, ``probe_cases``), never summed. A dataset's figures (fixed /
broken / unchanged, the category deltas the gate reads, the margin changes)
are over the examples *neither* version was trained on (``compared``; every
example when neither was trained on that dataset); the examples either was
trained on are counted apart (``training_examples``) and not gated. The
regression suite still checks every example, ``suite_additions`` holds every
fixed example, held-out or not (a suite item must keep passing), and the
protected reward of demonstrations covers every expert state (the basin
includes the training trajectories).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workstation.models.registry import ModelVersion
from workstation.regression.gate import gate
from workstation.regression.limits import BUDGET_SLACK, ID_LIST_CAP

REPORT_FORMAT = "workstation.regression-report/2"
# /1 summed examples and probe cases into top-level fixed / broken / unchanged;
# its suite_additions read the same, so releases that stored it still count.
READABLE_FORMATS = ("workstation.regression-report/1", REPORT_FORMAT)
_OUTCOMES = ("fixed", "broken", "unchanged")
LARGEST_DROPS = 10


def id_list(ids: np.ndarray | list[int], cap: int = ID_LIST_CAP) -> dict[str, Any]:
    """{"total", "ids" (at most ``cap``, ascending), "truncated"}."""
    ids = sorted(int(i) for i in ids)
    return {"total": len(ids), "ids": ids[:cap], "truncated": len(ids) > cap}


def version_json(version: ModelVersion) -> dict[str, Any]:
    return {"ref": version.ref, "model": version.model, "version": version.version,
            "model_version_id": version.id, "sha256": version.sha256}


# -- demonstrations: the protected basin -------------------------------------

@dataclass
class ProtectedReward:
    """Reward lost on protected states: baseline - candidate per expert state."""

    losses: np.ndarray
    owners: np.ndarray  # trajectory (example) id of each state

    def figures(self, budget: float) -> dict[str, Any]:
        over = self.losses > budget + BUDGET_SLACK
        n = len(self.losses)
        return {"n_states": n, "budget": budget,
                "max_loss": float(self.losses.max()) if n else None,
                "mean_loss": float(self.losses.mean()) if n else None,
                "fraction_over_budget": float(over.mean()) if n else 0.0,
                "n_over_budget": int(over.sum()),
                "trajectories_over_budget": id_list(np.unique(self.owners[over]))}


# -- one dataset ---------------------------------------------------------------

@dataclass
class DatasetComparison:
    """Both versions judged on one dataset, example by example (aligned arrays)."""

    dataset: str
    dataset_id: int
    kind: str
    thresholds: dict[str, float | None]
    example_ids: np.ndarray
    base_passed: np.ndarray
    cand_passed: np.ndarray
    base_margin: np.ndarray
    cand_margin: np.ndarray
    categories: dict[str, dict[str, dict[str, Any]]]
    protected: ProtectedReward | None = None
    notes: list[str] = field(default_factory=list)
    # Which examples neither version was trained on (None: all of them), what
    # is known of each version's training set, and that in words.
    compared: np.ndarray | None = None
    memberships: dict[str, dict[str, Any]] = field(default_factory=dict)
    which: str = "all"

    def _mask(self, held: bool) -> np.ndarray:
        compared = np.ones(len(self.example_ids), bool) if self.compared is None \
            else self.compared
        return compared if held else ~compared

    @property
    def fixed(self) -> np.ndarray:
        """Fixed examples neither version was trained on."""
        return self.example_ids[~self.base_passed & self.cand_passed & self._mask(True)]

    @property
    def broken(self) -> np.ndarray:
        """Broken examples neither version was trained on."""
        return self.example_ids[self.base_passed & ~self.cand_passed & self._mask(True)]

    @property
    def all_fixed(self) -> np.ndarray:
        """Every fixed example, training examples included (regression-suite items)."""
        return self.example_ids[~self.base_passed & self.cand_passed]

    def counts(self, held: bool = True) -> tuple[int, int, int]:
        """(fixed, broken, unchanged) over the compared examples, or with
        ``held=False`` over the training examples left out of the comparison."""
        rows = self._mask(held)
        fixed = int((~self.base_passed & self.cand_passed & rows).sum())
        broken = int((self.base_passed & ~self.cand_passed & rows).sum())
        return fixed, broken, int(rows.sum()) - fixed - broken

    def index_of(self, example_id: int) -> int | None:
        """Where an example sits in the arrays (None: not judged here, e.g. excluded)."""
        at = int(np.searchsorted(self.example_ids, example_id))
        if at < len(self.example_ids) and self.example_ids[at] == example_id:
            return at
        return None

    def to_json(self, budget: float) -> dict[str, Any]:
        fixed, broken, unchanged = self.counts()
        left_out = self.counts(held=False)
        return {"dataset_id": self.dataset_id, "kind": self.kind,
                "n": fixed + broken + unchanged, "examples_used": self.which,
                "thresholds": self.thresholds, "fixed": fixed, "broken": broken,
                "unchanged": unchanged, "fixed_examples": id_list(self.fixed),
                "broken_examples": id_list(self.broken),
                "training_examples": {"n": sum(left_out), **dict(zip(_OUTCOMES, left_out)),
                                      "note": "examples either version was trained on: "
                                              "counted apart, not gated"},
                "membership": self.memberships, "margin_change": self._margins(),
                "categories": self.categories,
                "protected": self.protected.figures(budget) if self.protected else None,
                "notes": self.notes}

    def counts_text(self) -> str:
        """One line, e.g. 'hh: 23 examples, held-out (...): 1 fixed, 0 broken, 22 unchanged'."""
        fixed, broken, unchanged = self.counts()
        text = (f"{self.dataset}: {fixed + broken + unchanged} examples, {self.which}: "
                f"{fixed} fixed, {broken} broken, {unchanged} unchanged")
        left_out = sum(self.counts(held=False))
        return text + (f"; {left_out} training examples counted apart" if left_out else "")

    def _margins(self) -> dict[str, Any]:
        rows = self._mask(True)
        ids, base, cand = self.example_ids[rows], self.base_margin[rows], self.cand_margin[rows]
        change = cand - base
        if not len(change):
            return {"mean": None, "min": None, "max": None, "largest_drops": []}
        worst = np.lexsort((ids, change))[:LARGEST_DROPS]
        drops = [{"example_id": int(ids[i]), "baseline": float(base[i]),
                  "candidate": float(cand[i]), "change": float(change[i])}
                 for i in worst if change[i] < 0]
        return {"mean": float(change.mean()), "min": float(change.min()),
                "max": float(change.max()), "largest_drops": drops}


# -- probe findings ------------------------------------------------------------

@dataclass
class FindingOutcome:
    """One probe finding replayed on both versions.

    ``ref`` is the finding's replay spec (what the regression suite stores);
    ``*_breaks`` is True when that version breaks the finding's rule, None
    when it could not be replayed (``reason`` says why)."""

    ref: dict[str, Any]
    baseline_breaks: bool | None = None
    candidate_breaks: bool | None = None
    baseline_score: float | None = None
    candidate_score: float | None = None
    reason: str | None = None

    @property
    def outcome(self) -> str:
        if self.baseline_breaks is None or self.candidate_breaks is None:
            return "skipped"
        if self.baseline_breaks != self.candidate_breaks:
            return "fixed" if self.baseline_breaks else "broken"
        return "unchanged"

    def to_json(self) -> dict[str, Any]:
        keep = ("run_id", "finding_id", "probe", "rule", "mode", "example_id", "dataset_id")
        return {**{k: self.ref.get(k) for k in keep}, "outcome": self.outcome,
                "baseline_breaks": self.baseline_breaks,
                "candidate_breaks": self.candidate_breaks, "baseline_score": self.baseline_score,
                "candidate_score": self.candidate_score, "reason": self.reason}


# -- the regression suite --------------------------------------------------------

@dataclass
class SuiteCheck:
    """The regression suite of the candidate's model, checked on the candidate."""

    n_items: int = 0
    n_checked: int = 0
    failing_examples: list[dict[str, Any]] = field(default_factory=list)
    failing_findings: list[dict[str, Any]] = field(default_factory=list)
    unchecked: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"items": self.n_items, "checked": self.n_checked,
                "failing_examples": self.failing_examples[:ID_LIST_CAP],
                "failing_findings": self.failing_findings[:ID_LIST_CAP],
                "n_failing": len(self.failing_examples) + len(self.failing_findings),
                "unchecked": self.unchecked[:ID_LIST_CAP], "n_unchecked": len(self.unchecked)}


# -- the whole report ------------------------------------------------------------

@dataclass
class RegressionReport:
    """A candidate version compared with a baseline on every audit suite."""

    candidate: ModelVersion
    baseline: ModelVersion
    tolerance: float
    budget: float
    seed: int
    review_head: str
    created_at: str
    datasets: dict[str, DatasetComparison] = field(default_factory=dict)
    findings: list[FindingOutcome] = field(default_factory=list)
    duplicate_findings: int = 0
    suite: SuiteCheck = field(default_factory=SuiteCheck)
    skipped_datasets: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """What changed, per kind of thing counted, never summed across kinds:
        ``examples`` (those neither version was trained on, over every dataset),
        ``training_examples`` (those either was, counted apart) and
        ``probe_cases`` (generated probe cases; example-based findings are
        their examples, already counted)."""
        examples = dict.fromkeys(("n", *_OUTCOMES), 0)
        training = dict.fromkeys(("n", *_OUTCOMES), 0)
        for comparison in self.datasets.values():
            for totals, held in ((examples, True), (training, False)):
                values = comparison.counts(held)
                totals["n"] += sum(values)
                for name, value in zip(_OUTCOMES, values):
                    totals[name] += value
        cases = [f.outcome for f in self.findings if f.ref.get("mode") != "example"]
        probe_cases = {"n": len(cases), **{k: cases.count(k) for k in (*_OUTCOMES, "skipped")}}
        return {"examples": examples, "training_examples": training, "probe_cases": probe_cases}

    def gate(self, tolerance: float | None = None, budget: float | None = None) -> dict[str, Any]:
        return gate(self, tolerance, budget)

    def suite_additions(self) -> dict[str, Any]:
        """What the candidate fixed, as regression-suite items (never cut)."""
        examples = [{"dataset_id": c.dataset_id, "example_ids": [int(i) for i in c.all_fixed]}
                    for c in self.datasets.values() if len(c.all_fixed)]
        findings = [f.ref for f in self.findings
                    if f.outcome == "fixed" and f.ref.get("mode") != "example"]
        return {"examples": examples, "findings": findings}

    def to_json(self) -> dict[str, Any]:
        return {"format": REPORT_FORMAT, "candidate": version_json(self.candidate),
                "baseline": version_json(self.baseline), "created_at": self.created_at,
                "review_head": self.review_head, "tolerance": self.tolerance,
                "budget": self.budget, "seed": self.seed, **self.counts(), "gate": self.gate(),
                "summary": self._summary(),
                "per_dataset": {name: c.to_json(self.budget) for name, c in self.datasets.items()},
                "probes": self._probes_json(), "suite": self.suite.to_json(),
                "suite_additions": self.suite_additions(),
                "skipped_datasets": self.skipped_datasets}

    def _summary(self) -> list[str]:
        lines = [c.counts_text() for c in self.datasets.values()]
        cases = self.counts()["probe_cases"]
        if cases["n"]:
            lines.append(_cases_text(cases))
        return lines

    def _probes_json(self) -> dict[str, Any]:
        outcomes = [f.outcome for f in self.findings]
        counts = {k: outcomes.count(k) for k in ("fixed", "broken", "unchanged", "skipped")}
        return {**counts, "total": len(self.findings), "duplicates": self.duplicate_findings,
                "findings": [f.to_json() for f in self.findings[:ID_LIST_CAP]]}


# -- counts in words -------------------------------------------------------------

def counts_text(report: dict[str, Any]) -> str:
    """What a report's JSON counted, each count naming its kind: "23 examples: 1
    fixed, 0 broken, 22 unchanged; 73 probe cases: ..." (and, for a report an
    older workstation stored, its summed counts said to be summed)."""
    if isinstance(report.get("examples"), dict):
        parts = [_kind_text(report["examples"], "examples neither version was trained on")]
        training = report.get("training_examples") or {}
        if training.get("n"):
            parts.append(_kind_text(training, "training examples (counted apart, not gated)"))
        cases = report.get("probe_cases") or {}
        if cases.get("n"):
            parts.append(_cases_text(cases))
        return "; ".join(parts)
    if "fixed" in report:  # format 1: examples and generated probe cases summed
        return (f"{report.get('fixed', 0):,} fixed, {report.get('broken', 0):,} broken, "
                f"{report.get('unchanged', 0):,} unchanged (examples and probe cases together, "
                f"as an older workstation counted them)")
    return "no counts recorded"


def _kind_text(counts: dict[str, Any], what: str) -> str:
    return (f"{counts.get('n', 0):,} {what}: {counts.get('fixed', 0):,} fixed, "
            f"{counts.get('broken', 0):,} broken, {counts.get('unchanged', 0):,} unchanged")


def _cases_text(cases: dict[str, Any]) -> str:
    skipped = f", {cases['skipped']:,} not replayed" if cases.get("skipped") else ""
    return _kind_text(cases, "probe cases") + skipped
