"""Automated audits: the probe registry and the built-in probes.

Importing this package registers the built-in probes through the same
``register_probe`` a user's own probe would call.
"""

from workstation.probes.base import (PROBES, Finding, Probe, ProbeContext, ProbeRun,
                                     findings_page, probes_for, register_probe, run_probes)

__all__ = ["PROBES", "Finding", "Probe", "ProbeContext", "ProbeRun", "findings_page",
           "probes_for", "register_probe", "run_probes"]

# Built-in probes: importing a module registers its probes.
import workstation.probes.format  # noqa: E402,F401  (position-swap, format-invariance)
import workstation.probes.label_errors  # noqa: E402,F401  (label-errors)
import workstation.probes.length_bias  # noqa: E402,F401
import workstation.probes.redteam_demos  # noqa: E402,F401  (unsafe-states)
import workstation.probes.redteam_text  # noqa: E402,F401  (red-team, over-refusal)
