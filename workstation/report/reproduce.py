"""The report's reproduce section: the CLI commands that recreate every figure
of the report from the workspace."""

from __future__ import annotations

import json
import shlex
from typing import Any

from workstation.audits.runs import default_threshold


def commands(content: dict[str, Any], workspace: str, out_name: str) -> list[dict[str, str]]:
    """Each command with what it recreates."""
    ref = content["scope"]["model"]["ref"]
    w = f"workstation --workspace {shlex.quote(workspace)}"
    found = []
    for run in content["metrics"]:
        found.append({"what": f"audit run {run['run_id']} (metrics, plots) on {run['dataset']}",
                      "command": f"{w} audit --model {ref} --dataset {shlex.quote(run['dataset'])}"
                                 f"{_threshold(run)}"})
        found.append({"what": f"the failure cases of audit run {run['run_id']}",
                      "command": f"{w} failures --run {run['run_id']} --limit 50"})
    for probe in content["probes"]:
        found.append({"what": f"probe run {probe['run_id']} on {probe['dataset']}",
                      "command": f"{w} probe --model {ref} --dataset "
                                 f"{shlex.quote(probe['dataset'])}{_probe_args(probe)}"})
    regression = content["regression"]
    if regression["status"] == "compared":
        found.append({"what": "the regression check and gate",
                      "command": f"{w} compare --candidate {ref} --baseline "
                                 f"{regression['release']}"})
    runs = ",".join(str(r["run_id"]) for r in content["metrics"] + content["probes"])
    found.append({"what": "this report from the same runs",
                  "command": f"{w} report --model {ref} --runs {runs} {shlex.quote(out_name)}"})
    found.append({"what": "check this report's signature",
                  "command": f"workstation verify-report {shlex.quote(out_name)} --trust KEY.pem"})
    return found


def _threshold(run: dict[str, Any]) -> str:
    t = run["threshold"]
    if t is None or t == default_threshold(run["kind"], run["score_type"] or "reward"):
        return ""
    return f" --threshold {t!r}"


def _probe_args(probe: dict[str, Any]) -> str:
    args = "".join(f" --probe {p}" for p in probe["probes_run"])
    args += "".join(f" --param {shlex.quote(f'{k}={_value(v)}')}"
                    for k, v in sorted(probe["params"].items()))
    return args + (f" --seed {probe['seed']}" if probe.get("seed") else "")


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
