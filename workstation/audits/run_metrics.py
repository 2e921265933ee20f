"""An audit run's metrics, held-out apart from training.

``run_figures`` finds which examples the audited version was trained on
(``workstation.models.membership``) and computes the run's metrics JSON
twice: ``metrics`` over the examples it was not trained on (its held-out
split; every example when it was not trained on this dataset or its training
data is unknown) and ``training_metrics`` over those it was (training and
validation splits), with ``membership`` saying in words what each covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from workstation.audits import metrics as m
from workstation.models import membership as ms
from workstation.models.registry import ModelVersion
from workstation.models.scoring import ScoreResult
from workstation.workspace import Workspace

if TYPE_CHECKING:
    from workstation.audits.runs import Verdicts


@dataclass
class RunFigures:
    """What a run stores besides its rows: the two metric sets and what they cover."""

    metrics: dict[str, Any]
    training_metrics: dict[str, Any] | None
    membership: dict[str, Any]
    roles: np.ndarray  # per scored example: TRAIN / VALIDATION / HELDOUT / NOT_TRAINED


def run_figures(ws: Workspace, version: ModelVersion, result: ScoreResult, verdicts: "Verdicts",
                seed: int = 0) -> RunFigures:
    """Held-out metrics, training metrics and the membership record of a run."""
    membership = ms.membership_for(ws, version, result.dataset_id)
    roles = ms.example_roles(membership, result.example_ids)
    held = ms.not_trained_on(roles)
    metrics = audit_metrics(result, verdicts, seed, rows=held)
    trained = ~held
    training_metrics = audit_metrics(result, verdicts, seed, rows=trained) \
        if (trained & verdicts.keep).any() else None
    return RunFigures(metrics, training_metrics, membership_record(membership, roles, verdicts),
                      roles)


def membership_record(membership: ms.Membership, roles: np.ndarray,
                      verdicts: "Verdicts") -> dict[str, Any]:
    """The run's ``membership``: what the version was trained on, how many
    audited examples hold each role, and in words what each metric set covers."""
    counts = ms.role_counts(roles[verdicts.keep])
    held = counts["heldout"] + counts["not_trained"]
    trained = counts["training"] + counts["validation"]
    if membership.status == ms.TRAINED:
        extra = (f", and {counts['not_trained']} not in its training snapshot"
                 if counts["not_trained"] else "")
        cover = (f"the {held} examples {membership.version} was not trained on (its held-out "
                 f"split{extra})")
    else:
        cover = f"all {held} examples ({membership.describe()})"
    validation = " and validation" if counts["validation"] else ""
    training_cover = (f"the {trained} examples {membership.version} was trained on (its "
                      f"training{validation} split)") if trained else None
    return {**membership.to_json(), "counts": counts, "metrics_cover": cover,
            "training_metrics_cover": training_cover, "description": membership.describe()}


def audit_metrics(result: ScoreResult, verdicts: "Verdicts", seed: int = 0,
                  rows: np.ndarray | None = None) -> dict[str, Any]:
    """The metrics JSON of the scored examples ``rows`` (default: all):
    overall, then ``per_category``."""
    rows = np.ones(len(result.example_ids), dtype=bool) if rows is None else rows
    keep = verdicts.keep & rows
    codes = result.category_codes[keep]
    if result.dataset_kind == "pairs":
        margins = result.margin[keep]
        compute = _pairs_metrics(margins)
    elif result.dataset_kind == "labels":
        compute = _labels_metrics(result.score[keep], result.labels[keep], verdicts.threshold,
                                  result.score_type)
    else:
        compute = _demos_metrics(result, verdicts.threshold, keep)
    out, per_category = m.overall_and_per_category(compute, codes, result.category_names, seed)
    out.update(kind=result.dataset_kind, score_type=result.score_type,
               threshold=verdicts.threshold, n_failures=int((verdicts.rank[keep] > 0).sum()),
               n_unlabeled=int((~verdicts.keep & rows).sum()))
    if result.truncated is not None:  # tokens models: texts cut to the maximum length
        out["truncated"] = int((result.truncated[keep] > 0).sum())
        if result.dataset_kind == "pairs":
            out["truncated_sides"] = int(result.truncated[keep].sum())
    out["per_category"] = per_category
    return out


def _pairs_metrics(margins: np.ndarray):
    def compute(mask: np.ndarray, seed: int) -> dict[str, Any]:
        return m.pair_metrics(margins[mask], seed=seed)
    return compute


def _labels_metrics(scores: np.ndarray, safe: np.ndarray, threshold: float, score_type: str):
    def compute(mask: np.ndarray, seed: int) -> dict[str, Any]:
        return m.label_metrics(scores[mask], safe[mask], threshold=threshold,
                               score_type=score_type, seed=seed)
    return compute


def _demos_metrics(result: ScoreResult, threshold: float, keep: np.ndarray):
    owner = np.searchsorted(result.example_ids, result.step_example_ids)
    counts = np.bincount(owner, minlength=len(result.example_ids))
    kept = np.flatnonzero(keep)

    def compute(mask: np.ndarray, seed: int) -> dict[str, Any]:
        chosen = np.zeros(len(result.example_ids), dtype=bool)
        chosen[kept[mask]] = True  # ``mask`` runs over the kept trajectories
        return m.demo_metrics(result.step_rewards[chosen[owner]], counts[chosen],
                              result.score[chosen], threshold=threshold, seed=seed)
    return compute
