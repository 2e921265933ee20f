"""Audit runs and their metrics: score a dataset, judge each example against
its current label, store the run, and page through its failure cases."""

from workstation.audits.runs import (AuditRun, failure_page, get_run, list_failures, list_runs,
                                     run_audit)

__all__ = ["AuditRun", "failure_page", "get_run", "list_failures", "list_runs", "run_audit"]
