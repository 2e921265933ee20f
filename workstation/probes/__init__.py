"""Automated audits: the probe registry and the built-in probes.

Importing this package registers the built-in probes through the same
``register_probe`` a user's own probe would call.
"""

from workstation.probes.base import (PROBES, Finding, Probe, ProbeContext, ProbeRun,
                                     findings_page, probes_for, register_probe, run_probes)

__all__ = ["PROBES", "Finding", "Probe", "ProbeContext", "ProbeRun", "findings_page",
           "probes_for", "register_probe", "run_probes"]
