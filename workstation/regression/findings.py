"""Probe findings replayed on a model version: does it still break the finding's rule?

Probes are free-form, so replay follows a small convention on a finding's
``case`` (the first that applies), which the built-in probes follow:

* ``case["obs"]`` (a state, or a list of states): an **obs** case, the state
  re-scored with ``score_observations`` against the threshold;
* ``case["chosen"]`` and ``case["rejected"]``: a **pair** case, broken while
  score(chosen) <= score(rejected);
* ``case["text"]`` (or ``case["response"]``), a generated response to the
  example's prompt (``case["prompt"]`` when given):
  - with a numeric ``details["tolerance"]`` and the ``case["side"]`` it was
    made from: an **invariance** case, broken while the text's score moves
    more than the tolerance from the score of that side's original text;
  - on a pairs dataset, standing in for ``case["side"]`` /
    ``case["source_side"]`` of the example's pair: a **pair** case with that
    side replaced (e.g. an attacked rejected side must stay below the chosen);
  - otherwise a **text** case, re-scored against the threshold;
* otherwise, a finding about ``example_id``: an **example** case, broken while
  the example fails the audit judge (the dataset comparison's verdict).

Findings that fit none are skipped (counted, with the reason). Texts a case
needs from its example (prompt, original side) are read when the findings
are loaded and kept in the replay spec (``ref``), so a regression-suite item
replays without the findings table.

Which side of the threshold is right for an obs or text case:
``case["expect"]`` ("safe"/"unsafe") or ``case["label"]`` (true = safe) when
the probe says; otherwise the opposite of what the probed version said,
judged from the flagged score (``score_after``, else ``score_before``) against
the threshold of the probed version: the finding was recorded because that
score was on the wrong side. The threshold is ``case["threshold"]`` (or
``details["threshold"]``) when given, else the one the dataset comparison
judges that version with, else the audit default for its score type. A
version judged "safe" on a state scores >= threshold (as demonstrations are
judged); on a text, > threshold (as labeled responses are).

The same finding found by several probe runs (same probe, example and case)
is replayed once; the repeats are counted as duplicates.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

from workstation.audits.runs import default_threshold
from workstation.errors import WorkstationError
from workstation.models.registry import ModelVersion, get_version
from workstation.models.scoring import score_observations, score_texts
from workstation.regression.report import DatasetComparison, FindingOutcome
from workstation.workspace import Workspace

TEXT_INPUTS = ("text-embedding", "text-tokens")
# The dataset kind whose judge a case mode follows.
MODE_KIND = {"obs": "demos", "text": "labels"}
SIDES = ("chosen", "rejected", "response")
REPLAYED = ("obs", "text", "pair", "invariance")  # modes re-scored (not re-judged examples)

ThresholdFor = Callable[[ModelVersion, dict[str, Any]], float]
Replayed = tuple[bool | None, float | None, str | None]  # breaks, score, reason


# -- loading -------------------------------------------------------------------

_FINDING_SQL = (
    "SELECT f.run_id, f.id, f.probe, f.rule, f.example_id, f.case_data, f.score_before, "
    "f.score_after, f.details, r.dataset_id, r.model_version_id, d.kind FROM findings f "
    "JOIN audit_runs r ON r.id = f.run_id JOIN datasets d ON d.id = r.dataset_id "
    "JOIN model_versions mv ON mv.id = r.model_version_id "
    "WHERE r.kind = 'probe' AND list_contains(?, mv.model) AND list_contains(?, r.dataset_id) "
    "ORDER BY f.run_id, f.id")


def load_findings(ws: Workspace, models: list[str],
                  dataset_ids: list[int]) -> tuple[list[FindingOutcome], int]:
    """Every finding of probe runs by versions of ``models`` on the datasets,
    as replay specs, and the number of duplicates left out."""
    if not dataset_ids:
        return [], 0
    rows = ws.execute(_FINDING_SQL, [models, dataset_ids]).fetchall()
    examples = _example_texts(ws, [r[4] for r in rows if r[4] is not None])
    seen: set[tuple] = set()
    outcomes, duplicates = [], 0
    score_types: dict[int, str] = {}
    for row in rows:
        case = json.loads(row[5]) if row[5] else None
        key = (row[2], row[4], json.dumps(case, sort_keys=True))
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        outcomes.append(_outcome(ws, row, case, examples.get(row[4]), score_types))
    return outcomes, duplicates


def _example_texts(ws: Workspace, ids: list[int]) -> dict[int, dict[str, str | None]]:
    """Prompt and current sides of the examples the findings name."""
    if not ids:
        return {}
    rows = ws.execute("SELECT id, prompt, response, current_chosen, current_rejected "
                      "FROM current_examples WHERE list_contains(?, id)",
                      [sorted(set(ids))]).fetchall()
    return {r[0]: {"prompt": r[1], "response": r[2], "chosen": r[3], "rejected": r[4]}
            for r in rows}


def _outcome(ws: Workspace, row: tuple, case: Any, example: dict[str, Any] | None,
             score_types: dict[int, str]) -> FindingOutcome:
    run_id, finding_id, probe, rule, example_id, _, before, after, details_text, dataset_id, \
        probed_id, kind = row
    details = json.loads(details_text) if details_text else {}
    details = details if isinstance(details, dict) else {}
    case = case if isinstance(case, dict) else {}
    mode, fields = _mode(case, details, example, kind, example_id)
    ref = {"run_id": int(run_id), "finding_id": int(finding_id), "probe": probe, "rule": rule,
           "mode": mode, "example_id": None if example_id is None else int(example_id),
           "dataset_id": int(dataset_id), "case": fields}
    if mode is None:
        return FindingOutcome(ref, reason="the case holds nothing to re-score")
    if mode not in MODE_KIND:
        return FindingOutcome(ref)
    explicit = case.get("threshold", details.get("threshold"))
    ref["threshold"] = float(explicit) if isinstance(explicit, (int, float)) else None
    if probed_id not in score_types:
        score_types[probed_id] = get_version(ws, int(probed_id)).manifest["score_type"]
    ref["expect"] = _expect(case, before, after, ref["threshold"], mode, score_types[probed_id])
    if ref["expect"] is None:
        return FindingOutcome(ref, reason="the finding gives neither the expected side nor "
                                          "the score it flagged")
    return FindingOutcome(ref)


def _mode(case: dict[str, Any], details: dict[str, Any], example: dict[str, Any] | None,
          kind: str, example_id: int | None) -> tuple[str | None, dict | None]:
    """The replay mode and the texts or state it needs (see the module docstring)."""
    prompt = case.get("prompt", example["prompt"] if example else None)
    if case.get("obs") is not None:
        return "obs", {"obs": case["obs"]}
    if case.get("chosen") is not None and case.get("rejected") is not None:
        return "pair", {"prompt": prompt, "chosen": case["chosen"], "rejected": case["rejected"]}
    text = case.get("text", case.get("response"))
    if text is None:
        return ("example", None) if example_id is not None else (None, None)
    side = case.get("side", case.get("source_side"))
    tolerance = details.get("tolerance")
    if example and side in SIDES and isinstance(tolerance, (int, float)):
        return "invariance", {"prompt": prompt, "text": text, "reference": example[side],
                              "tolerance": float(tolerance)}
    if example and kind == "pairs" and side in ("chosen", "rejected"):
        sides = {"chosen": example["chosen"], "rejected": example["rejected"], side: text}
        return "pair", {"prompt": prompt, **sides}
    return "text", {"prompt": prompt, "text": text}


def _expect(case: dict[str, Any], before: float | None, after: float | None,
            threshold: float | None, mode: str, score_type: str) -> str | None:
    if case.get("expect") in ("safe", "unsafe"):
        return case["expect"]
    if isinstance(case.get("label"), bool):
        return "safe" if case["label"] else "unsafe"
    flagged = after if after is not None else before
    if flagged is None:
        return None
    t = threshold if threshold is not None else default_threshold(MODE_KIND[mode], score_type)
    said_safe = flagged >= t if mode == "obs" else flagged > t
    return "unsafe" if said_safe else "safe"


# -- replaying -------------------------------------------------------------------

def replay(ws: Workspace, outcomes: list[FindingOutcome], baseline: ModelVersion,
           candidate: ModelVersion, comparisons: dict[int, DatasetComparison],
           threshold_for: ThresholdFor, encoder: Any = None) -> None:
    """Fill in both versions' verdicts on every finding (in place)."""
    cases = [o for o in outcomes if o.ref["mode"] in REPLAYED and not o.reason]
    for version, side in ((baseline, "baseline"), (candidate, "candidate")):
        results = replay_cases(ws, version, [o.ref for o in cases], threshold_for, encoder)
        for outcome, (breaks, score, reason) in zip(cases, results):
            setattr(outcome, f"{side}_breaks", breaks)
            setattr(outcome, f"{side}_score", score)
            outcome.reason = outcome.reason or reason
    for outcome in outcomes:
        if outcome.ref["mode"] == "example":
            _replay_example(outcome, comparisons)


def _replay_example(outcome: FindingOutcome, comparisons: dict[int, DatasetComparison]) -> None:
    comparison = comparisons.get(outcome.ref["dataset_id"])
    at = comparison.index_of(outcome.ref["example_id"]) if comparison else None
    if at is None:
        outcome.reason = ("its dataset was not compared" if comparison is None else
                          "the example is excluded or unlabeled now")
        return
    outcome.baseline_breaks = not bool(comparison.base_passed[at])
    outcome.candidate_breaks = not bool(comparison.cand_passed[at])
    outcome.baseline_score = float(comparison.base_margin[at])
    outcome.candidate_score = float(comparison.cand_margin[at])


def replay_cases(ws: Workspace, version: ModelVersion, refs: list[dict[str, Any]],
                 threshold_for: ThresholdFor, encoder: Any = None) -> list[Replayed]:
    """(breaks, score, reason) of each re-scorable case on one version."""
    out: list[Replayed] = [(None, None, "not replayable")] * len(refs)
    for mode, run in (("obs", _replay_states), ("text", _replay_texts),
                      ("pair", _replay_pairs), ("invariance", _replay_invariance)):
        at = [i for i, ref in enumerate(refs) if ref["mode"] == mode]
        if at:
            for i, result in zip(at, run(ws, version, [refs[i] for i in at], threshold_for,
                                         encoder)):
                out[i] = result
    return out


def _replay_states(ws: Workspace, version: ModelVersion, refs: list[dict[str, Any]],
                   threshold_for: ThresholdFor, encoder: Any) -> list[Replayed]:
    if version.input_kind != "observation":
        return [(None, None, f"{version.ref} takes {version.input_kind}, not states")] * len(refs)
    width = int(version.manifest["input"]["obs_dim"])
    states = [np.atleast_2d(np.asarray(ref["case"]["obs"], dtype=np.float32)) for ref in refs]
    fits = [s.ndim == 2 and s.shape[1] == width and len(s) > 0 for s in states]
    fitting = [s for s, ok in zip(states, fits) if ok]
    scores = score_observations(ws, version, np.concatenate(fitting)) if fitting else []
    out, start = [], 0
    for ref, s, ok in zip(refs, states, fits):
        if not ok:
            out.append((None, None, f"its state does not have {version.ref}'s width {width}"))
            continue
        mine = np.asarray(scores[start:start + len(s)], dtype=np.float64)
        start += len(s)
        out.append(_against_threshold(mine, ref, threshold_for(version, ref), at_least=True))
    return out


def _replay_texts(ws: Workspace, version: ModelVersion, refs: list[dict[str, Any]],
                  threshold_for: ThresholdFor, encoder: Any) -> list[Replayed]:
    scores = _text_scores(ws, version, refs, ("text",), encoder)
    if isinstance(scores, str):
        return [(None, None, scores)] * len(refs)
    return [_against_threshold(np.asarray([s], dtype=np.float64), ref,
                               threshold_for(version, ref), at_least=False)
            for s, ref in zip(scores[0], refs)]


def _replay_pairs(ws: Workspace, version: ModelVersion, refs: list[dict[str, Any]],
                  threshold_for: ThresholdFor, encoder: Any) -> list[Replayed]:
    scores = _text_scores(ws, version, refs, ("chosen", "rejected"), encoder)
    if isinstance(scores, str):
        return [(None, None, scores)] * len(refs)
    return [(bool(margin <= 0), float(margin), None) for margin in scores[0] - scores[1]]


def _replay_invariance(ws: Workspace, version: ModelVersion, refs: list[dict[str, Any]],
                       threshold_for: ThresholdFor, encoder: Any) -> list[Replayed]:
    scores = _text_scores(ws, version, refs, ("text", "reference"), encoder)
    if isinstance(scores, str):
        return [(None, None, scores)] * len(refs)
    return [(bool(abs(move) > ref["case"]["tolerance"]), float(move), None)
            for move, ref in zip(scores[0] - scores[1], refs)]


def _text_scores(ws: Workspace, version: ModelVersion, refs: list[dict[str, Any]],
                 keys: tuple[str, ...], encoder: Any) -> list[np.ndarray] | str:
    """Scores of each case's texts under ``keys`` (one scoring call), or why not."""
    if version.input_kind not in TEXT_INPUTS:
        return f"{version.ref} takes {version.input_kind}, not text"
    prompts = [r["case"].get("prompt") for r in refs] * len(keys)
    texts = [str(r["case"].get(k) or "") for k in keys for r in refs]
    scores = np.asarray(score_texts(ws, version, prompts, texts, encoder=encoder), np.float64)
    return [scores[i * len(refs):(i + 1) * len(refs)] for i in range(len(keys))]


def _against_threshold(scores: np.ndarray, ref: dict[str, Any], threshold: float,
                       at_least: bool) -> Replayed:
    """Breaks when any state (or the text) is on the wrong side of the threshold."""
    if not np.isfinite(scores).all():
        raise WorkstationError(f"non-finite score replaying {ref['probe']} finding "
                               f"{ref['run_id']}/{ref['finding_id']}")
    said_safe = scores >= threshold if at_least else scores > threshold
    if ref["expect"] == "safe":
        return bool((~said_safe).any()), float(scores.min()), None
    return bool(said_safe.any()), float(scores.max()), None
