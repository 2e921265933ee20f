"""The release gate: three rules a candidate must pass to be released.

1. **no regression-suite breaks**: every item of the model's regression
   suite (failures fixed by earlier releases) still passes on the candidate;
2. **no category metric falls more than tolerance**: for every dataset and
   every category (and all examples together, ``(all)``), each gated metric
   (pairwise accuracy; AUROC and accuracy) has a point-estimate delta
   candidate - baseline of at least -tolerance. The bootstrap interval is
   reported beside it but does not decide: on small slices it is wide, and a
   gate that waved through any drop inside a wide interval would gate nothing;
3. **protected reward within budget**: on every demonstration dataset no
   expert state loses more than ``budget`` reward (max of baseline -
   candidate over the protected states).

``gate`` returns {"pass", "reasons", "tolerance", "budget", "rules": [...]}
and each rule names exactly what failed (examples, categories, states).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workstation.regression.deltas import GATED
from workstation.regression.limits import BUDGET_SLACK, ID_LIST_CAP

if TYPE_CHECKING:  # the report calls the gate; the gate needs it only as a type
    from workstation.regression.report import RegressionReport

SUITE_RULE = "no regression-suite breaks"
METRIC_RULE = "no category metric falls more than tolerance"
BUDGET_RULE = "protected reward within budget"
# Deltas are differences of ratios; ignore float noise at the tolerance's edge.
_DELTA_SLACK = 1e-9


def gate(report: "RegressionReport", tolerance: float | None = None,
         budget: float | None = None) -> dict[str, Any]:
    """The gate verdict for ``report`` (its own tolerance and budget by default)."""
    tolerance = report.tolerance if tolerance is None else float(tolerance)
    budget = report.budget if budget is None else float(budget)
    rules = [_suite_rule(report), _metric_rule(report, tolerance), _budget_rule(report, budget)]
    reasons = [reason for rule in rules for reason in rule.pop("_reasons")]
    return {"pass": all(r["pass"] for r in rules), "reasons": reasons, "tolerance": tolerance,
            "budget": budget, "rules": rules}


def _suite_rule(report: "RegressionReport") -> dict[str, Any]:
    suite = report.suite
    examples = [item["example_id"] for item in suite.failing_examples]
    findings = suite.failing_findings
    reasons = []
    if examples:
        reasons.append(f"regression suite: {len(examples)} example(s) fixed by an earlier "
                       f"release fail on {report.candidate.ref}: {_ids(examples)}")
    if findings:
        names = ", ".join(f"{f['probe']} finding {f['run_id']}/{f['finding_id']}"
                          for f in findings[:10])
        reasons.append(f"regression suite: {len(findings)} probe finding(s) fixed by an "
                       f"earlier release break again: {names}")
    return {"rule": SUITE_RULE, "pass": not examples and not findings,
            "examples": examples[:ID_LIST_CAP], "findings": findings[:ID_LIST_CAP],
            "items": suite.n_items, "checked": suite.n_checked,
            "unchecked": len(suite.unchecked), "_reasons": reasons}


def _metric_rule(report: "RegressionReport", tolerance: float) -> dict[str, Any]:
    entries = []
    for name, comparison in report.datasets.items():
        for category, metrics in comparison.categories.items():
            for metric in GATED[comparison.kind]:
                record = metrics.get(metric)
                if record is not None:
                    entries.append(_metric_entry(name, category, metric, record, tolerance))
    failing = [e for e in entries if not e["pass"]]
    reasons = [f"dataset '{e['dataset']}', category '{e['category']}': {e['metric']} fell "
               f"{-e['delta']:.4f} ({e['baseline']:.4f} -> {e['candidate']:.4f}), more than "
               f"the tolerance {tolerance:g}" for e in failing]
    return {"rule": METRIC_RULE, "pass": not failing, "tolerance": tolerance,
            "failing": failing, "categories": entries, "_reasons": reasons}


def _metric_entry(dataset: str, category: str, metric: str, record: dict[str, Any],
                  tolerance: float) -> dict[str, Any]:
    delta = record["delta"]
    # An undefined delta (e.g. AUROC of a one-class slice) cannot fail.
    passed = delta is None or delta >= -tolerance - _DELTA_SLACK
    return {"dataset": dataset, "category": category, "metric": metric,
            "baseline": record["baseline"], "candidate": record["candidate"], "delta": delta,
            "ci": record["ci"], "n": record["n"], "pass": passed}


def _budget_rule(report: "RegressionReport", budget: float) -> dict[str, Any]:
    datasets, examples, reasons = [], [], []
    for name, comparison in report.datasets.items():
        if comparison.protected is None:
            continue
        figures = comparison.protected.figures(budget)
        passed = figures["n_over_budget"] == 0
        datasets.append({"dataset": name, "pass": passed, **figures})
        if not passed:
            over = figures["trajectories_over_budget"]["ids"]
            examples.extend(over)
            reasons.append(
                f"dataset '{name}': protected (expert) states lose up to "
                f"{figures['max_loss']:.4f} reward, more than the budget {budget:g} "
                f"({figures['n_over_budget']} of {figures['n_states']} states, in trajectories "
                f"{_ids(over)})")
    return {"rule": BUDGET_RULE, "pass": not reasons, "budget": budget,
            "slack": BUDGET_SLACK, "datasets": datasets, "examples": examples[:ID_LIST_CAP],
            "_reasons": reasons}


def _ids(ids: list[int], shown: int = 20) -> str:
    text = ", ".join(str(i) for i in ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")
