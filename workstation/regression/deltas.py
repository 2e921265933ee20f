"""Per-category metric deltas between two versions, with paired bootstrap intervals.

The point estimates are the audit metrics themselves (``audits.metrics``):
pairwise accuracy for pairs, AUROC and accuracy for labeled responses, the
trajectory pass rate for demonstrations. The interval of a delta
(candidate - baseline) resamples *examples*, both versions together, so each
resample keeps the pairing. As in the audit metrics, a resample is drawn as
multinomial counts over cells of identical data: here a cell is (baseline
verdict, candidate verdict), and for AUROC also (baseline score bucket,
candidate score bucket, label). Verdict-based deltas are then the exact
bootstrap; AUROC keeps each bucket's exact internal ordering (exact while a
version has at most ``PAIRED_CELLS`` distinct scores).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from workstation.audits import metrics as m

ALL = "(all)"
# Metrics the release gate holds to the tolerance, per dataset kind. Demos
# are held to the protected-reward budget instead; their pass rate is shown.
GATED = {"pairs": ("pairwise_accuracy",), "labels": ("auroc", "accuracy"), "demos": ()}
# Score buckets per version for AUROC: the cells are their product, so fewer
# than the audit metrics' MAX_CELLS keep a 200k-example comparison to seconds.
PAIRED_CELLS = 32


def category_deltas(kind: str, base_scores: np.ndarray, cand_scores: np.ndarray,
                    base_passed: np.ndarray, cand_passed: np.ndarray, safe: np.ndarray,
                    codes: np.ndarray, names: list[str], seed: int = 0
                    ) -> dict[str, dict[str, dict[str, Any]]]:
    """{category: {metric: record}} for all examples (``ALL``) and each named
    category. Scores are margins for pairs, scores otherwise."""
    if kind == "labels":
        compute = _labels_compute(base_scores, cand_scores, base_passed, cand_passed, safe)
    else:
        metric = "pairwise_accuracy" if kind == "pairs" else "trajectory_pass_rate"
        compute = _verdict_compute(metric, base_passed, cand_passed, kind)
    everything, per_category = m.overall_and_per_category(compute, codes, names, seed)
    return {ALL: everything, **per_category}


def _record(baseline: float | None, candidate: float | None, samples: np.ndarray | None,
            n: int, gated: bool) -> dict[str, Any]:
    delta = None if baseline is None or candidate is None else candidate - baseline
    ci = m.percentile_ci(samples) if samples is not None and delta is not None else None
    return {"baseline": baseline, "candidate": candidate, "delta": delta, "ci": ci, "n": n,
            "gated": gated}


# -- verdict metrics (pairwise accuracy, pass rate) --------------------------

def _verdict_compute(metric: str, base_passed: np.ndarray, cand_passed: np.ndarray,
                     kind: str) -> Callable[[np.ndarray, int], dict[str, Any]]:
    gated = metric in GATED[kind]

    def compute(mask: np.ndarray, seed: int) -> dict[str, Any]:
        b, c = base_passed[mask], cand_passed[mask]
        if not len(b):
            return {metric: _record(None, None, None, 0, gated)}
        counts, cell_b, cell_c = _verdict_cells(b, c)
        resampled = m.resample_counts(counts, np.random.default_rng(seed))
        samples = resampled @ (cell_c.astype(float) - cell_b) / len(b)
        return {metric: _record(float(b.mean()), float(c.mean()), samples, len(b), gated)}
    return compute


def _verdict_cells(b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of the (baseline, candidate) verdict cells present, and their verdicts."""
    key = b.astype(np.int64) * 2 + c
    cells, counts = np.unique(key, return_counts=True)
    return counts, cells // 2, cells % 2


# -- labeled responses -------------------------------------------------------

def _labels_compute(base_scores: np.ndarray, cand_scores: np.ndarray, base_passed: np.ndarray,
                    cand_passed: np.ndarray, safe: np.ndarray
                    ) -> Callable[[np.ndarray, int], dict[str, Any]]:
    def compute(mask: np.ndarray, seed: int) -> dict[str, Any]:
        sb, sc, y = base_scores[mask], cand_scores[mask], safe[mask]
        pb, pc = base_passed[mask], cand_passed[mask]
        n = len(y)
        if not n:
            return {k: _record(None, None, None, 0, True) for k in ("auroc", "accuracy")}
        cells = _LabelPairCells(sb, sc, y, pb, pc)
        resampled = m.resample_counts(cells.counts, np.random.default_rng(seed))
        accuracy = resampled @ (cells.cand_passed - cells.base_passed) / n
        auroc = cells.auroc(resampled, "cand") - cells.auroc(resampled, "base")
        return {"auroc": _record(m.auroc(sb, y), m.auroc(sc, y), auroc, n, True),
                "accuracy": _record(float(pb.mean()), float(pc.mean()), accuracy, n, True)}
    return compute


class _LabelPairCells:
    """Examples grouped by (baseline bucket, candidate bucket, label, both verdicts)."""

    def __init__(self, sb: np.ndarray, sc: np.ndarray, y: np.ndarray, pb: np.ndarray,
                 pc: np.ndarray) -> None:
        gb, gc = m.value_groups(sb, PAIRED_CELLS), m.value_groups(sc, PAIRED_CELLS)
        keys = np.stack([gb, gc, y, pb, pc], axis=1).astype(np.int64)
        cells, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
        self.counts = counts
        self.safe = cells[:, 2].astype(bool)
        self.base_passed, self.cand_passed = cells[:, 3].astype(float), cells[:, 4].astype(float)
        self.group = {"base": cells[:, 0], "cand": cells[:, 1]}
        self.share = {"base": _within_group_share(sb, y, gb),
                      "cand": _within_group_share(sc, y, gc)}

    def auroc(self, resampled: np.ndarray, side: str) -> np.ndarray:
        """AUROC of each resample from its cell counts (NaN when a class is missing)."""
        group, share = self.group[side], self.share[side]
        pos = _by_group(resampled[:, self.safe], group[self.safe], len(share))
        neg = _by_group(resampled[:, ~self.safe], group[~self.safe], len(share))
        # Groups are in score order: a safe item beats every unsafe one in lower groups.
        neg_before = np.cumsum(neg, axis=1) - neg
        wins = (pos * (neg_before + share * neg)).sum(axis=1)
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        return np.divide(wins, pairs, out=np.full(len(wins), np.nan), where=pairs > 0)


def _by_group(counts: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the columns of ``counts`` [B, cells] into [B, n_groups]."""
    out = np.zeros((counts.shape[0], n_groups))
    if not len(group):
        return out
    order = np.argsort(group, kind="stable")
    ordered = group[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    out[:, ordered[starts]] = np.add.reduceat(counts[:, order], starts, axis=1)
    return out


def _within_group_share(scores: np.ndarray, safe: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per score group, the share of its (safe, unsafe) pairs ordered right (0.5 if none)."""
    share = np.full(int(groups.max(initial=-1)) + 1, 0.5)
    for g in np.unique(groups):
        inside = groups == g
        value = m.auroc(scores[inside], safe[inside])
        if value is not None:
            share[g] = value
    return share
