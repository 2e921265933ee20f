"""The failure cases a patch suppresses, read from the workspace.

A case becomes one kernel center (or, for a trajectory, one per offending
state) in the model's input space:

* a labeled response (labels dataset) currently labeled unsafe: the model
  input of (prompt, response);
* a preference pair: the input of (prompt, current rejected side), the side
  that should score lower; the current chosen side is its rival, which the
  flaw must end up below;
* a demonstration relabeled unsafe: its states scoring at or above the
  threshold (the highest ``MAX_STATES_PER_DEMO``);
* a probe finding: ``case.obs`` (an observation), or ``case.text`` /
  ``case.response`` (a generated response to the example's prompt), or else
  the finding's example as above; findings triaged as label errors are
  refused (edit the label instead);
* an audit run's failures (``audit_results`` rows that did not pass).

A case must currently fail, i.e. score above its threshold (labels: > t;
states: ≥ t) or not below its rival (pairs): a suppression patch only lowers
scores, so a safe example scoring too low is refused with that reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from workstation.errors import WorkstationError
from workstation.models.registry import ModelVersion
from workstation.workspace import Workspace

MAX_STATES_PER_DEMO = 16
_FITS = {"text-embedding": ("labels", "pairs"), "text-tokens": ("labels", "pairs"),
         "observation": ("demos",)}


@dataclass
class Case:
    """A selected failure case before it is scored: where it came from, its
    candidate inputs (``texts`` to embed or ``states``) and what it must end
    up below (``threshold``, or the ``rival_text`` side's score)."""

    source: dict[str, Any]
    dataset_id: int | None
    kind: str
    threshold: float | None
    texts: list[tuple[str | None, str | None]] | None = None
    rival_text: tuple[str | None, str | None] | None = None
    states: np.ndarray | None = None
    steps: list[int] | None = None
    rival: np.ndarray | None = None


@dataclass
class Flaw:
    """One input to suppress: its vector, its current (parent) score and the
    score it must go below (the threshold, or the rival's current score)."""

    source: dict[str, Any]
    x: np.ndarray
    score: float
    target: float
    kind: str
    dataset_id: int | None
    rival_x: np.ndarray | None = None


@dataclass
class Selection:
    """Cases chosen for a patch and the ones refused before any kernel."""

    cases: list[Case] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, source: dict[str, Any], reason: str) -> None:
        self.refused.append({**source, "reason": reason})


# -- selecting ---------------------------------------------------------------

def select_cases(ws: Workspace, root: ModelVersion, *, example_ids: Sequence[int] | None,
                 finding_run: int | None, finding_ids: Sequence[int] | None) -> Selection:
    """The cases named by example ids and/or a finding run (see the module docstring)."""
    if finding_run is None and finding_ids:
        raise WorkstationError("finding ids need the run they belong to (finding_run)")
    if finding_run is None and not example_ids:
        raise WorkstationError("select the failure cases to patch: give example ids or a "
                               "finding run")
    selection = Selection()
    if finding_run is None:
        for row in _example_rows(ws, example_ids or [], selection):
            _add_example(ws, root, row, {"example_id": row["id"]}, None, selection)
        return selection
    _add_run(ws, root, int(finding_run), finding_ids, example_ids, selection)
    return selection


_EXAMPLE_SQL = ("SELECT ce.id, ce.dataset_id, d.kind, ce.prompt, ce.response, ce.current_chosen, "
                "ce.current_rejected, ce.current_label, ce.excluded FROM current_examples ce "
                "JOIN datasets d ON d.id = ce.dataset_id "
                "WHERE ce.id IN (SELECT unnest(?::BIGINT[])) ORDER BY ce.id")
_EXAMPLE_FIELDS = ("id", "dataset_id", "kind", "prompt", "response", "chosen", "rejected",
                   "label", "excluded")


def _example_rows(ws: Workspace, ids: Sequence[int], selection: Selection) -> list[dict]:
    wanted = list(dict.fromkeys(int(i) for i in ids))
    rows = [dict(zip(_EXAMPLE_FIELDS, r))
            for r in ws.execute(_EXAMPLE_SQL, [wanted]).fetchall()]
    found = {r["id"] for r in rows}
    for missing in (i for i in wanted if i not in found):
        selection.refuse({"example_id": missing}, "no such example")
    return rows


def _add_example(ws: Workspace, root: ModelVersion, row: dict[str, Any], source: dict[str, Any],
                 threshold: float | None, selection: Selection) -> None:
    """The example's own flaw input, per its dataset kind and current label."""
    reason = _unfit(root, row["kind"]) or _not_a_flaw(row)
    if reason:
        selection.refuse(source, reason)
        return
    case = Case(source, row["dataset_id"], row["kind"], _threshold(root, row["kind"], threshold))
    if row["kind"] == "labels":
        case.texts = [(row["prompt"], row["response"])]
    elif row["kind"] == "pairs":
        case.texts = [(row["prompt"], row["rejected"])]
        case.rival_text = (row["prompt"], row["chosen"])
    else:
        width = int(root.manifest["input"]["obs_dim"])
        case.steps, case.states = _demo_states(ws, row["id"], width)
    selection.cases.append(case)


def _unfit(root: ModelVersion, kind: str) -> str | None:
    if kind in _FITS[root.input_kind]:
        return None
    return (f"a {kind} example cannot be scored by {root.ref}, which takes "
            f"{root.input_kind} input")


def _not_a_flaw(row: dict[str, Any]) -> str | None:
    if row["excluded"]:
        return "excluded from its dataset"
    if row["kind"] == "labels" and row["label"] is None:
        return "unlabeled: label it unsafe first"
    if row["kind"] == "labels" and row["label"]:
        return ("labeled safe: a suppression patch only lowers scores (edit the label if it "
                "is wrong)")
    if row["kind"] == "demos" and row["label"] is not False:
        return ("an expert demonstration: a suppression patch only lowers scores (relabel it "
                "unsafe first)")
    return None


def _threshold(root: ModelVersion, kind: str, given: float | None) -> float | None:
    from workstation.audits.runs import default_threshold
    from workstation.calibration import threshold_of

    if given is not None:
        return float(given)
    fallback = default_threshold(kind, root.manifest["score_type"])
    return fallback if fallback is None else threshold_of(root.manifest, fallback)


def _demo_states(ws: Workspace, example_id: int, width: int) -> tuple[list[int], np.ndarray]:
    rows = ws.execute("SELECT step, obs FROM demo_steps WHERE example_id = ? ORDER BY step",
                      [example_id]).fetchall()
    bad = [r[0] for r in rows if len(r[1]) != width]
    if bad:
        raise WorkstationError(f"example {example_id} step {bad[0]} is not {width} wide")
    return [r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.float32).reshape(-1, width)


# -- runs ----------------------------------------------------------------------

def _add_run(ws: Workspace, root: ModelVersion, run_id: int, finding_ids: Sequence[int] | None,
             example_ids: Sequence[int] | None, selection: Selection) -> None:
    rows = ws.execute("SELECT kind, threshold FROM audit_runs WHERE id = ?", [run_id]).fetchall()
    if not rows:
        raise WorkstationError(f"no audit or probe run {run_id}")
    kind, threshold = rows[0]
    if kind == "probe":
        _add_findings(ws, root, run_id, finding_ids, example_ids, selection)
        return
    if finding_ids:
        raise WorkstationError(f"run {run_id} is an audit run: select its failures by example "
                               f"id, finding ids name probe findings")
    failed = [r[0] for r in ws.execute(
        "SELECT example_id FROM audit_results WHERE run_id = ? AND NOT passed ORDER BY rank",
        [run_id]).fetchall()]
    if example_ids:
        wanted = {int(i) for i in example_ids}
        for i in sorted(wanted - set(failed)):
            selection.refuse({"audit_run": run_id, "example_id": i},
                             f"not a failure of audit run {run_id}")
        failed = [i for i in failed if i in wanted]
    for row in _example_rows(ws, failed, selection):
        _add_example(ws, root, row, {"audit_run": run_id, "example_id": row["id"]}, threshold,
                     selection)


_FINDING_FIELDS = ("id", "example_id", "case", "triage", "probe", "details", "dataset_id",
                   "kind")


def _add_findings(ws: Workspace, root: ModelVersion, run_id: int,
                  finding_ids: Sequence[int] | None, example_ids: Sequence[int] | None,
                  selection: Selection) -> None:
    rows = [dict(zip(_FINDING_FIELDS, r)) for r in ws.execute(
        "SELECT f.id, f.example_id, f.case_data, f.triage, f.probe, f.details, r.dataset_id, "
        "d.kind FROM findings f JOIN audit_runs r ON r.id = f.run_id "
        "JOIN datasets d ON d.id = r.dataset_id WHERE f.run_id = ? ORDER BY f.id",
        [run_id]).fetchall()]
    rows = _chosen_findings(rows, run_id, finding_ids, example_ids, selection)
    examples = {r["id"]: r for r in _example_rows(
        ws, [f["example_id"] for f in rows if f["example_id"] is not None], Selection())}
    for finding in rows:
        _add_finding(ws, root, run_id, finding, examples.get(finding["example_id"]), selection)


def _chosen_findings(rows: list[dict], run_id: int, finding_ids: Sequence[int] | None,
                     example_ids: Sequence[int] | None, selection: Selection) -> list[dict]:
    if finding_ids:
        wanted = {int(i) for i in finding_ids}
        for i in sorted(wanted - {r["id"] for r in rows}):
            selection.refuse({"finding_run": run_id, "finding_id": i}, f"no finding {i} in run "
                                                                       f"{run_id}")
        rows = [r for r in rows if r["id"] in wanted]
    if example_ids:
        wanted = {int(i) for i in example_ids}
        rows = [r for r in rows if r["example_id"] in wanted]
    return rows


def _add_finding(ws: Workspace, root: ModelVersion, run_id: int, finding: dict[str, Any],
                 example: dict[str, Any] | None, selection: Selection) -> None:
    source = {"finding_run": run_id, "finding_id": finding["id"]}
    if finding["example_id"] is not None:
        source["example_id"] = finding["example_id"]
    case = json.loads(finding["case"]) if finding["case"] else {}
    details = json.loads(finding["details"]) if finding["details"] else {}
    bar = details.get("bar", details.get("threshold"))
    if finding["triage"] == "label-error":
        selection.refuse(source, "triaged as a label error: edit the label instead of patching")
    elif _unfit(root, finding["kind"]):
        selection.refuse(source, _unfit(root, finding["kind"]))
    elif case.get("obs") is not None:
        _add_state(root, case["obs"], source, finding, bar, selection)
    elif case.get("text", case.get("response")) is not None:
        _add_text(root, case, source, finding, example, bar, selection)
    elif example is not None:
        _add_example(ws, root, example, source, bar, selection)
    else:
        selection.refuse(source, "the finding names neither an input nor an example")


def _add_state(root: ModelVersion, obs: Any, source: dict[str, Any], finding: dict[str, Any],
               bar: float | None, selection: Selection) -> None:
    width = int(root.manifest["input"]["obs_dim"])
    state = np.asarray(obs, dtype=np.float32).reshape(1, -1)
    if state.shape[1] != width:
        selection.refuse(source, f"its observation is {state.shape[1]} wide; the model takes "
                                 f"{width}")
        return
    selection.cases.append(Case(source, finding["dataset_id"], "demos",
                                _threshold(root, "demos", bar), states=state))


def _add_text(root: ModelVersion, case: dict[str, Any], source: dict[str, Any],
              finding: dict[str, Any], example: dict[str, Any] | None, bar: float | None,
              selection: Selection) -> None:
    """A generated response (e.g. an attacked unsafe text) to the example's prompt."""
    kind = finding["kind"]
    side = case.get("side", case.get("source_side"))
    if kind == "labels" and example is not None and example["label"]:
        selection.refuse(source, "the probe case comes from a safe-labeled example: a "
                                 "suppression patch only lowers scores")
        return
    if kind == "pairs" and side == "chosen":
        selection.refuse(source, "the probe case is the preferred side of its pair: a "
                                 "suppression patch only lowers scores")
        return
    prompt = case.get("prompt", example["prompt"] if example else None)
    text = case.get("text", case.get("response"))
    out = Case(source, finding["dataset_id"], kind, _threshold(root, kind, bar),
               texts=[(prompt, text)])
    if out.threshold is None and example is not None:  # pairs: end below the chosen side
        out.rival_text = (example["prompt"], example["chosen"])
    if out.threshold is None and out.rival_text is None:
        selection.refuse(source, "a pairs finding without its example has nothing to end "
                                 "up below")
        return
    selection.cases.append(out)


# -- inputs and scores ---------------------------------------------------------

def featurize(ws: Workspace, root: ModelVersion, cases: list[Case], encoder: Any) -> None:
    """Fill ``states`` (and ``rival``) of text cases with their points in the
    kernel space (``space``), featurising every text in one call."""
    from workstation.patching.space import kernel_space

    pending = [c for c in cases if c.texts is not None]
    if not pending:
        return
    pairs = [t for c in pending for t in c.texts] + [c.rival_text for c in pending
                                                     if c.rival_text is not None]
    vectors = kernel_space(ws, root).texts(ws, [p for p, _ in pairs], [r for _, r in pairs],
                                           encoder)
    at = 0
    for case in pending:
        case.states, at = vectors[at:at + len(case.texts)], at + len(case.texts)
    for case in pending:
        if case.rival_text is not None:
            case.rival, at = vectors[at], at + 1


def to_flaws(cases: list[Case], parent: Callable[[np.ndarray], np.ndarray],
             selection: Selection) -> list[Flaw]:
    """The failing inputs of each case, with their current scores and targets;
    a case with none is refused."""
    flaws = []
    for case in cases:
        scores = parent(case.states)
        rival = float(parent(case.rival[None, :])[0]) if case.rival is not None else None
        target = case.threshold if case.threshold is not None else rival
        failing = _failing(case.kind, scores, target, case.threshold is None)
        if not len(failing):
            selection.refuse(case.source, _passing_reason(case, scores, target))
            continue
        for i in failing:
            source = dict(case.source)
            if case.steps is not None:
                source["step"] = case.steps[i]
            flaws.append(Flaw(source, np.asarray(case.states[i], np.float64), float(scores[i]),
                              float(target), case.kind, case.dataset_id,
                              None if case.rival is None or case.threshold is not None
                              else np.asarray(case.rival, np.float64)))
    return flaws


def _failing(kind: str, scores: np.ndarray, target: float, versus_rival: bool) -> np.ndarray:
    """Indices of failing inputs, highest score first, at most MAX_STATES_PER_DEMO."""
    if versus_rival:
        bad = scores >= target  # a tie fails, as in audits
    elif kind == "demos":
        bad = scores >= target
    else:
        bad = scores > target
    order = np.flatnonzero(bad)
    return order[np.argsort(-scores[order], kind="stable")][:MAX_STATES_PER_DEMO]


def _passing_reason(case: Case, scores: np.ndarray, target: float) -> str:
    if case.threshold is None:
        return (f"its rejected side already scores below the chosen side "
                f"({scores[0]:.4g} < {target:.4g}): nothing to suppress")
    if case.steps is not None:
        return f"no state scores at or above the threshold {target:.4g}: nothing to suppress"
    return f"scores {scores[0]:.4g}, not above the threshold {target:.4g}: nothing to suppress"
