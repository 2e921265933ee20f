"""The ``length-bias`` probe: does the model prefer longer responses?

Length is the response's length in characters (Unicode code points; the
prompt is shared and left out). Reported in the run's summary, overall and
per category:

* pairs: how often the longer side wins (the higher-scored side is the
  longer one, over pairs whose sides differ in both length and score); the
  Pearson and Spearman correlation of score with length over all responses
  (both sides pooled); the model's pairwise accuracy beside a length-only
  baseline that predicts "the longer side is chosen" (equal lengths count as
  a coin flip, 0.5).
* labeled responses: the correlations, and the model's AUROC beside the
  AUROC of length alone (0.5 = length says nothing about the label; far
  below 0.5 = shorter responses tend to be the safe ones).

Findings (pairs only): each pair the model decides against its label where
the longer side won, i.e. the rejected side scores higher and is longer.
Labeled responses get the summary only.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from workstation.audits.metrics import auroc, pairwise_accuracy
from workstation.models.scoring import ScoreResult, score_dataset
from workstation.probes.base import Finding, ProbeContext, register_probe
from workstation.probes.severity import score_scale, severity
from workstation.workspace import Workspace

RULE = "longer side won against the label"


# -- analysis on arrays ------------------------------------------------------

def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation; None when fewer than two values or one is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their average rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    out = np.empty(len(values))
    out[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (Pearson of average ranks)."""
    if len(x) < 2:
        return None
    return pearson(ranks(x), ranks(y))


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def pair_bias(score_chosen: np.ndarray, score_rejected: np.ndarray, len_chosen: np.ndarray,
              len_rejected: np.ndarray) -> dict[str, Any]:
    """Length-bias figures of pairs (see the module docstring)."""
    sc, sr = np.asarray(score_chosen, float), np.asarray(score_rejected, float)
    lc, lr = np.asarray(len_chosen, float), np.asarray(len_rejected, float)
    decided = (lc != lr) & (sc != sr)
    longer_won = np.where(sr > sc, lr > lc, lc > lr)
    scores, lengths = np.r_[sc, sr], np.r_[lc, lr]
    return {"n": len(sc), "n_decided": int(decided.sum()),
            "longer_wins_rate": _mean(longer_won[decided]),
            "pearson": pearson(scores, lengths), "spearman": spearman(scores, lengths),
            "model_accuracy": pairwise_accuracy(sc - sr),
            "length_baseline_accuracy": _mean((lc > lr) + 0.5 * (lc == lr))}


def pairs_against_label(score_chosen: np.ndarray, score_rejected: np.ndarray,
                        len_chosen: np.ndarray, len_rejected: np.ndarray) -> np.ndarray:
    """Positions of pairs decided against the label where the longer side won."""
    return np.flatnonzero((np.asarray(score_rejected) > np.asarray(score_chosen))
                          & (np.asarray(len_rejected) > np.asarray(len_chosen)))


def label_bias(scores: np.ndarray, safe: np.ndarray, labeled: np.ndarray,
               lengths: np.ndarray) -> dict[str, Any]:
    """Length-bias figures of labeled responses (see the module docstring)."""
    scores, lengths = np.asarray(scores, float), np.asarray(lengths, float)
    safe, labeled = np.asarray(safe, bool), np.asarray(labeled, bool)
    return {"n": len(scores), "n_labeled": int(labeled.sum()),
            "pearson": pearson(scores, lengths), "spearman": spearman(scores, lengths),
            "model_auroc": auroc(scores[labeled], safe[labeled]),
            "length_auroc": auroc(lengths[labeled], safe[labeled])}


def per_category(compute: Callable[[np.ndarray], dict[str, Any]], codes: np.ndarray,
                 names: list[str]) -> dict[str, dict[str, Any]]:
    """``compute(mask)`` for each category present (codes index ``names``)."""
    return {name: compute(codes == k) for k, name in enumerate(names) if (codes == k).any()}


# -- the probe ---------------------------------------------------------------

def response_lengths(ws: Workspace, dataset_id: int, kind: str,
                     example_ids: np.ndarray) -> list[np.ndarray]:
    """Character lengths of the current response side(s), aligned to ``example_ids``."""
    columns = ["current_chosen", "current_rejected"] if kind == "pairs" else ["response"]
    lengths = ", ".join(f"length(coalesce({c}, ''))" for c in columns)
    rows = ws.execute(f"SELECT id, {lengths} FROM current_examples WHERE dataset_id = ? "
                      f"ORDER BY id", [dataset_id]).fetchall()
    table = np.array(rows, dtype=np.int64).reshape(-1, len(columns) + 1)
    at = np.searchsorted(table[:, 0], example_ids)
    return [table[at, k + 1] for k in range(len(columns))]


class LengthBiasProbe:
    """See the module docstring."""

    name, version, kinds = "length-bias", "1", ("pairs", "labels")
    description = ("How often the longer response wins, the correlation of score with length, "
                   "and a length-only baseline; flags pairs lost to a longer rejected side.")

    def __init__(self) -> None:
        self.last_summary: dict[str, Any] = {}

    def run(self, ctx: ProbeContext) -> list[Finding]:
        self.last_summary = {}
        result = score_dataset(ctx.ws, ctx.version, ctx.dataset_id, encoder=ctx.encoder,
                               progress=ctx.progress)
        lengths = response_lengths(ctx.ws, ctx.dataset_id, ctx.kind, result.example_ids)
        ctx.progress.stage_start("length-bias analysis")
        if ctx.kind == "pairs":
            summary, findings = self._pairs(result, *lengths)
        else:
            summary, findings = self._labels(result, lengths[0]), []
        self.last_summary = {"length_unit": "characters", "correlation": "pearson and spearman",
                             "score_type": result.score_type, **summary,
                             "n_flagged": len(findings)}
        return findings

    def _pairs(self, result: ScoreResult, lc: np.ndarray,
               lr: np.ndarray) -> tuple[dict[str, Any], list[Finding]]:
        sc, sr = result.score_chosen, result.score_rejected
        summary = pair_bias(sc, sr, lc, lr)
        summary["per_category"] = per_category(
            lambda m: pair_bias(sc[m], sr[m], lc[m], lr[m]), result.category_codes,
            result.category_names)
        scale = score_scale(np.r_[sc, sr], result.score_type)
        findings = [self._finding(result, i, lc[i], lr[i], scale)
                    for i in pairs_against_label(sc, sr, lc, lr)]
        return summary, findings

    def _finding(self, result: ScoreResult, i: int, lc: int, lr: int, scale: float) -> Finding:
        margin = float(result.margin[i])
        return Finding(self.name, RULE, float(severity(-margin, scale)), "model-error",
                       example_id=int(result.example_ids[i]), score_before=margin,
                       details={"len_chosen": int(lc), "len_rejected": int(lr),
                                "score_chosen": float(result.score_chosen[i]),
                                "score_rejected": float(result.score_rejected[i])})

    def _labels(self, result: ScoreResult, lengths: np.ndarray) -> dict[str, Any]:
        s, safe, labeled = result.score, result.labels, result.labeled
        summary = label_bias(s, safe, labeled, lengths)
        summary["per_category"] = per_category(
            lambda m: label_bias(s[m], safe[m], labeled[m], lengths[m]), result.category_codes,
            result.category_names)
        return summary


register_probe(LengthBiasProbe())
