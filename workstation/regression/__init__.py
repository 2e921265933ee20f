"""The regression check and release gate of the flywheel.

``compare`` scores a candidate version and a baseline (usually its parent or
the release in force) on every audit suite and probe finding of the model,
example by example: fixed, broken, unchanged, margin changes, per-category
metric deltas with paired bootstrap intervals, and for demonstrations the
reward lost on the expert states. ``gate`` turns a report into the release
verdict; failures a release fixed become the model's regression suite, which
every later version must keep passing.

Modules: ``compare`` (the comparison), ``deltas`` (metric deltas and their
intervals), ``findings`` (probe findings replayed), ``suite`` (the regression
suite), ``gate`` (the three rules), ``report`` (the records and their JSON, the
gate's verdict included), ``limits`` (the caps both share),
``release_gate`` (what a release is gated on).
"""

from workstation.regression.compare import DEFAULT_BUDGET, DEFAULT_TOLERANCE, compare
from workstation.regression.gate import BUDGET_RULE, METRIC_RULE, SUITE_RULE, gate
from workstation.regression.release_gate import gate_report_for_release, release_baseline
from workstation.regression.report import REPORT_FORMAT, RegressionReport, counts_text
from workstation.regression.suite import SuiteItem, record_fixed, suite_for

__all__ = ["BUDGET_RULE", "DEFAULT_BUDGET", "DEFAULT_TOLERANCE", "METRIC_RULE", "REPORT_FORMAT",
           "RegressionReport", "SUITE_RULE", "SuiteItem", "compare", "counts_text", "gate",
           "gate_report_for_release", "record_fixed", "release_baseline", "suite_for"]
