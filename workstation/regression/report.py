"""What a regression check found: per dataset, per probe finding, per suite item.

The records keep the raw per-example arrays (so that ``gate`` can be
re-evaluated with another tolerance or budget); ``RegressionReport.to_json``
turns them into the plain JSON a governance batch stores, with id lists cut
at ``ID_LIST_CAP`` (the totals are always given). Only ``suite_additions``,
what this comparison would add to the regression suite, is never cut: a
release must be able to record every example it fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workstation.models.registry import ModelVersion

REPORT_FORMAT = "workstation.regression-report/1"
ID_LIST_CAP = 1000
LARGEST_DROPS = 10
# Scores come from float32 models: a loss this close to the budget is within it.
BUDGET_SLACK = 1e-6


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

    @property
    def fixed(self) -> np.ndarray:
        return self.example_ids[~self.base_passed & self.cand_passed]

    @property
    def broken(self) -> np.ndarray:
        return self.example_ids[self.base_passed & ~self.cand_passed]

    def counts(self) -> tuple[int, int, int]:
        fixed, broken = len(self.fixed), len(self.broken)
        return fixed, broken, len(self.example_ids) - fixed - broken

    def index_of(self, example_id: int) -> int | None:
        """Where an example sits in the arrays (None: not judged here, e.g. excluded)."""
        at = int(np.searchsorted(self.example_ids, example_id))
        if at < len(self.example_ids) and self.example_ids[at] == example_id:
            return at
        return None

    def to_json(self, budget: float) -> dict[str, Any]:
        fixed, broken, unchanged = self.counts()
        return {"dataset_id": self.dataset_id, "kind": self.kind, "n": len(self.example_ids),
                "thresholds": self.thresholds, "fixed": fixed, "broken": broken,
                "unchanged": unchanged, "fixed_examples": id_list(self.fixed),
                "broken_examples": id_list(self.broken), "margin_change": self._margins(),
                "categories": self.categories,
                "protected": self.protected.figures(budget) if self.protected else None,
                "notes": self.notes}

    def _margins(self) -> dict[str, Any]:
        change = self.cand_margin - self.base_margin
        if not len(change):
            return {"mean": None, "min": None, "max": None, "largest_drops": []}
        worst = np.lexsort((self.example_ids, change))[:LARGEST_DROPS]
        drops = [{"example_id": int(self.example_ids[i]), "baseline": float(self.base_margin[i]),
                  "candidate": float(self.cand_margin[i]), "change": float(change[i])}
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

    def counts(self) -> dict[str, int]:
        """fixed / broken / unchanged over every dataset's examples plus the
        generated probe cases (example-based findings are already counted as
        their examples)."""
        totals = dict.fromkeys(("fixed", "broken", "unchanged"), 0)
        for comparison in self.datasets.values():
            for name, value in zip(totals, comparison.counts()):
                totals[name] += value
        for f in self.findings:
            if f.ref.get("mode") != "example" and f.outcome in totals:
                totals[f.outcome] += 1
        return totals

    def gate(self, tolerance: float | None = None, budget: float | None = None) -> dict[str, Any]:
        from workstation.regression.gate import gate

        return gate(self, tolerance, budget)

    def suite_additions(self) -> dict[str, Any]:
        """What the candidate fixed, as regression-suite items (never cut)."""
        examples = [{"dataset_id": c.dataset_id, "example_ids": [int(i) for i in c.fixed]}
                    for c in self.datasets.values() if len(c.fixed)]
        findings = [f.ref for f in self.findings
                    if f.outcome == "fixed" and f.ref.get("mode") != "example"]
        return {"examples": examples, "findings": findings}

    def to_json(self) -> dict[str, Any]:
        return {"format": REPORT_FORMAT, "candidate": version_json(self.candidate),
                "baseline": version_json(self.baseline), "created_at": self.created_at,
                "review_head": self.review_head, "tolerance": self.tolerance,
                "budget": self.budget, "seed": self.seed, **self.counts(), "gate": self.gate(),
                "per_dataset": {name: c.to_json(self.budget) for name, c in self.datasets.items()},
                "probes": self._probes_json(), "suite": self.suite.to_json(),
                "suite_additions": self.suite_additions(),
                "skipped_datasets": self.skipped_datasets}

    def _probes_json(self) -> dict[str, Any]:
        outcomes = [f.outcome for f in self.findings]
        counts = {k: outcomes.count(k) for k in ("fixed", "broken", "unchanged", "skipped")}
        return {**counts, "total": len(self.findings), "duplicates": self.duplicate_findings,
                "findings": [f.to_json() for f in self.findings[:ID_LIST_CAP]]}
