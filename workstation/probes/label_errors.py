"""The ``label-errors`` probe: examples whose current label is probably wrong.

Evidence, per example (preference pairs and labeled responses):

* the out-of-fold probability ``p`` of its *current* label under a small
  model retrained per fold on the cached text embeddings (k folds, default 5,
  fixed seed), so no example is judged by a model that saw its label:
  - pairs: Bradley–Terry, i.e. logistic regression without intercept on the
    feature difference f(prompt, chosen) − f(prompt, rejected) of the current
    sides. With f = [prompt embedding, response embedding] the prompt part
    cancels, so the feature is the response-embedding difference. Symmetric
    augmentation (each pair also as (−d, "rejected wins")) gives the same fit
    as this one-sided form with λ halved, so the model is exactly antisymmetric:
    swapping the sides swaps p and 1 − p;
  - labeled responses: logistic regression on [prompt, response, 1].
  Both are L2-regularised; λ is chosen from a fixed grid by the out-of-fold
  log-likelihood of the current labels (one number for the whole dataset).
* where available, the registered model versions that can score the dataset:
  each votes for the current label when its margin is on the label's side
  (see ``workstation.audits.runs.judge``), against it on the other side, and
  abstains on an exact tie. A version trained on these labels has seen them,
  so its vote is only supporting evidence.

Triage (examples the model supports, p ≥ 0.5 and not a tie, are not reported):

* ``ambiguous``, near tie: |oof margin| < ``tie_margin`` (logit units; the
  two sides, or the two labels, are almost equally likely);
* ``label-error``: a confident contradiction, p ≤ ``error_below`` (default
  0.25: odds of 3:1 or more against the label; λ is chosen by held-out
  likelihood, so these probabilities are roughly calibrated) — unless the
  versions' votes back the current label or are split, which makes it
  ``ambiguous``;
* ``ambiguous``, weak contradiction: ``error_below`` < p < 0.5.

Severity is 1 − p for label errors (so they rank by how confidently the label
is contradicted) and (1 − p) / 2 for the ambiguous group, which therefore
always sorts after every label error. ``label_issue_scores`` gives the
out-of-fold probabilities alone, for benchmarks and other callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from workstation.audits.runs import judge
from workstation.encoder import embed_texts, get_encoder
from workstation.errors import WorkstationError
from workstation.models.registry import ModelVersion, list_models
from workstation.models.scoring import score_dataset
from workstation.probes.base import Finding, ProbeContext, register_probe
from workstation.progress import Progress
from workstation.workspace import Workspace

PROBE_VERSION = "1"
DEFAULT_K = 5
# Descending, so that each fit warm-starts from the previous, more regularised one.
LAMBDAS = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1)
TIE_MARGIN = 0.1      # |logit| below this: p within about 0.475..0.525
ERROR_BELOW = 0.25    # p of the label at or below this: a confident contradiction
MAX_VERSIONS = 5
_TOL = 1e-5           # largest preconditioned weight change at convergence
_MAX_ITER = 500


# -- out-of-fold probabilities (numpy only) ----------------------------------

@dataclass
class OutOfFold:
    """Out-of-fold evidence per example: the probability and logit of its
    given label, the fold it was held out in, and the λ chosen."""

    probability: np.ndarray
    margin: np.ndarray
    fold: np.ndarray
    lam: float
    log_likelihood: dict[float, float] = field(default_factory=dict)


def label_issue_scores(features: np.ndarray, labels: np.ndarray, k: int = DEFAULT_K,
                       seed: int = 0, *, pairwise: bool = False) -> np.ndarray:
    """Out-of-fold probability of each example's given label (low = likely error).

    ``pairwise``: ``features`` are f(chosen) − f(rejected) and ``labels`` say
    whether the chosen side is the preferred one (Bradley–Terry); otherwise
    ``features`` are per-example inputs and ``labels`` binary classes."""
    return out_of_fold(features, labels, k, seed, pairwise=pairwise).probability


def out_of_fold(features: np.ndarray, labels: np.ndarray, k: int = DEFAULT_K, seed: int = 0,
                *, pairwise: bool = False, lambdas: Sequence[float] = LAMBDAS,
                on_fold: Callable[[int, int], None] | None = None) -> OutOfFold:
    """Cross-validated L2 logistic regression (see the module docstring);
    ``on_fold(done, k)`` is called between folds (a cancel point)."""
    x, y = _design(np.asarray(features, dtype=np.float64), np.asarray(labels, dtype=bool),
                   pairwise)
    n = len(y)
    if n < 2:  # nothing to hold out against: no evidence either way
        return OutOfFold(np.full(n, 0.5), np.zeros(n), np.zeros(n, dtype=np.int64),
                         float(lambdas[0]))
    folds = _folds(y if not pairwise else np.ones(n, bool), min(k, n), seed)
    logits = _cross_validate(x, y, folds, list(lambdas), on_fold)
    return _choose_lambda(logits, y, folds, list(lambdas))


def _design(features: np.ndarray, labels: np.ndarray, pairwise: bool) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """Pairs: each difference oriented so that its label is "first side wins"
    (target 1, no intercept keeps the model antisymmetric). Labels: features
    plus a constant column for the intercept."""
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError("features must be [N, D] with one label per row")
    if pairwise:
        return features * np.where(labels, 1.0, -1.0)[:, None], np.ones(len(labels))
    return np.hstack([features, np.ones((len(features), 1))]), labels.astype(np.float64)


def _folds(strata: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold of each example: a seeded shuffle dealt round-robin within each
    class, so every fold sees both labels in their overall proportion."""
    order = np.random.default_rng(seed).permutation(len(strata))
    folds = np.empty(len(strata), dtype=np.int64)
    for value in (False, True):
        members = order[strata[order] == value]
        folds[members] = np.arange(len(members)) % k
    return folds


def _cross_validate(x: np.ndarray, y: np.ndarray, folds: np.ndarray, lambdas: list[float],
                    on_fold: Callable[[int, int], None] | None) -> np.ndarray:
    """Held-out logits of the target class, one row per λ.

    One eigendecomposition of the whole Gram matrix serves every fold: a
    fold's Gram is smaller (the difference is positive semi-definite), so the
    whole one still bounds each fold's Hessian (see ``_fit``)."""
    k = int(folds.max()) + 1
    eigen, basis = np.linalg.eigh(x.T @ x)
    eigen = np.maximum(eigen, 0.0)
    z = x @ basis
    logits = np.zeros((len(lambdas), len(y)))
    for f in range(k):
        if on_fold is not None:
            on_fold(f, k)
        held = folds == f
        if held.all():
            continue
        weights = _fit_path(z[~held], eigen, y[~held], lambdas)
        logits[:, held] = weights @ z[held].T
    if on_fold is not None:
        on_fold(k, k)
    return logits


def _fit_path(z: np.ndarray, eigen: np.ndarray, y: np.ndarray, lambdas: list[float]) -> np.ndarray:
    """Weights (in the eigenbasis) for each λ, each fit warm-started from the last."""
    w = np.zeros(z.shape[1])
    out = np.empty((len(lambdas), z.shape[1]))
    for i, lam in enumerate(lambdas):
        w = _fit(z, eigen, y, lam, w)
        out[i] = w
    return out


def _fit(z: np.ndarray, eigen: np.ndarray, y: np.ndarray, lam: float,
         w: np.ndarray) -> np.ndarray:
    """Minimise Σ logloss + λ/2·|w|² by bound optimisation: 0.25·ZᵀZ + λI bounds
    the Hessian everywhere (Böhning; ``eigen`` may come from a superset of the
    rows, which only loosens the bound), and is diagonal in the eigenbasis, so
    each step is one pass over the data and never overshoots. Nesterov momentum with
    a gradient restart makes it converge in tens of steps, not hundreds."""
    bound = 0.25 * eigen + lam
    w = w.copy()
    look, t = w.copy(), 1.0
    for _ in range(_MAX_ITER):
        grad = z.T @ (_sigmoid(z @ look) - y) + lam * look
        new = look - grad / bound
        if grad @ (new - w) > 0:  # momentum points uphill: restart from w
            look, t = w.copy(), 1.0
            continue
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        look = new + ((t - 1.0) / t_next) * (new - w)
        step = np.max(np.abs(new - w) * np.sqrt(bound))
        w, t = new, t_next
        if step < _TOL:
            break
    return w


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warnings for large |z|


def _choose_lambda(logits: np.ndarray, y: np.ndarray, folds: np.ndarray,
                   lambdas: list[float]) -> OutOfFold:
    """The λ whose held-out logits give the current labels the highest likelihood."""
    signed = np.where(y > 0.5, logits, -logits)  # logit of the given label
    ll = -np.logaddexp(0.0, -signed).mean(axis=1)
    best = int(np.argmax(ll))
    margin = signed[best]
    return OutOfFold(_sigmoid(margin), margin, folds, float(lambdas[best]),
                     {float(lam): float(v) for lam, v in zip(lambdas, ll)})


# -- reading a dataset --------------------------------------------------------

@dataclass
class LabelData:
    """A dataset as the detector sees it: example ids (ascending), current
    labels (pairs: True, the current chosen side wins) and features."""

    ids: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    pairwise: bool


def load_features(ws: Workspace, dataset_id: int, kind: str, encoder: Any = None,
                  progress: Progress | None = None) -> LabelData:
    """Current labels and embedding features of a dataset's non-excluded,
    labeled examples (embeddings through the workspace cache)."""
    if kind == "pairs":
        rows = ws.execute(
            "SELECT id, current_chosen, current_rejected FROM current_examples "
            "WHERE dataset_id = ? AND NOT excluded ORDER BY id", [dataset_id]).fetchall()
        vecs = embed_texts(ws, [r[1] for r in rows] + [r[2] for r in rows], encoder=encoder,
                           progress=progress)
        n = len(rows)
        return LabelData(_ids(rows), np.ones(n, dtype=bool), vecs[:n] - vecs[n:], True)
    rows = ws.execute(
        "SELECT id, prompt, response, current_label FROM current_examples "
        "WHERE dataset_id = ? AND NOT excluded AND current_label IS NOT NULL ORDER BY id",
        [dataset_id]).fetchall()
    vecs = embed_texts(ws, [r[1] for r in rows] + [r[2] for r in rows], encoder=encoder,
                       progress=progress)
    n = len(rows)
    labels = np.array([bool(r[3]) for r in rows], dtype=bool)
    return LabelData(_ids(rows), labels, np.hstack([vecs[:n], vecs[n:]]), False)


def _ids(rows: list[tuple]) -> np.ndarray:
    return np.array([r[0] for r in rows], dtype=np.int64)


# -- model versions as extra evidence ----------------------------------------

@dataclass
class _Votes:
    refs: list[str]
    votes: np.ndarray        # [N, V]: +1 backs the current label, -1 contradicts, 0 abstains
    skipped: dict[str, str]

    def counts(self, i: int) -> tuple[int, int]:
        row = self.votes[i]
        return int((row > 0).sum()), int((row < 0).sum())


def _version_votes(ctx: ProbeContext, ids: np.ndarray, limit: int) -> _Votes:
    versions, skipped = _scoring_versions(ctx, limit)
    refs, columns = [], []
    for version in versions:
        try:
            result = score_dataset(ctx.ws, version, ctx.dataset_id, encoder=ctx.encoder,
                                   progress=ctx.progress)
        except WorkstationError as exc:  # e.g. a model that cannot read this dataset
            skipped[version.ref] = str(exc)
            continue
        refs.append(version.ref)
        columns.append(_vote_column(ids, result.example_ids, judge(result)))
    votes = np.stack(columns, axis=1) if columns else np.zeros((len(ids), 0), dtype=np.int8)
    return _Votes(refs, votes, skipped)


def _vote_column(ids: np.ndarray, scored_ids: np.ndarray, verdicts: Any) -> np.ndarray:
    """+1 / -1 / 0 per example of ``ids``: the sign of the version's margin on
    the current label (unscored or unlabeled examples abstain)."""
    column = np.zeros(len(ids), dtype=np.int8)
    if not len(ids):
        return column
    at = np.minimum(np.searchsorted(ids, scored_ids), len(ids) - 1)
    ok = verdicts.keep & (ids[at] == scored_ids)
    column[at[ok]] = np.sign(verdicts.margin[ok]).astype(np.int8)
    return column


def _scoring_versions(ctx: ProbeContext, limit: int) -> tuple[list[ModelVersion],
                                                              dict[str, str]]:
    """The audited version first, then the newest others that take text and,
    for embedding models, the encoder in use."""
    # The features were embedded with ctx.encoder or, without one, the default.
    encoder_id = (ctx.encoder or get_encoder()).id
    others = sorted((v for v in list_models(ctx.ws) if v.id != ctx.version.id),
                    key=lambda v: -v.id)
    chosen, skipped = [], {}
    for v in [ctx.version, *others]:
        if v.input_kind == "text-embedding" and v.manifest["input"].get("encoder") != encoder_id:
            skipped[v.ref] = "registered for another encoder"
        elif v.input_kind in ("text-embedding", "text-tokens") and len(chosen) < limit:
            chosen.append(v)
    return chosen, skipped


# -- triage -------------------------------------------------------------------

def _triage(p: float, margin: float, error_below: float, agree: int, disagree: int,
            tie_margin: float, pairwise: bool) -> tuple[str, str] | None:
    """(triage, rule) of one example, or None when the model supports its label."""
    if abs(margin) < tie_margin:
        return "ambiguous", ("near tie: both sides about equally preferred" if pairwise
                             else "near tie: on the boundary between safe and unsafe")
    if p >= 0.5:
        return None
    if p > error_below:
        return "ambiguous", "label weakly contradicted by the cross-validated model"
    if agree > disagree:
        return "ambiguous", "cross-validated model contradicts the label; model versions back it"
    if agree and agree == disagree:
        return "ambiguous", "cross-validated model contradicts the label; model versions split"
    if disagree:
        return "label-error", "label contradicted by the cross-validated model and model versions"
    return "label-error", "label contradicted by the cross-validated model"


class LabelErrorProbe:
    """Flags examples whose current label is probably wrong (see the module docstring).

    Parameters (``ctx.params``): ``k`` folds (5), ``seed`` (the run's seed),
    ``tie_margin`` (0.1), ``error_below`` (0.25), ``max_versions`` (5; 0 = no
    version votes)."""

    name = "label-errors"
    version = PROBE_VERSION
    kinds = ("pairs", "labels")
    description = ("examples whose current label a cross-validated model (and the model "
                   "versions) confidently contradict; near ties reported as ambiguous")

    def __init__(self) -> None:
        self.last_summary: dict[str, Any] = {}

    def run(self, ctx: ProbeContext) -> list[Finding]:
        k, seed = int(ctx.param("k", DEFAULT_K)), int(ctx.param("seed", ctx.seed))
        data = load_features(ctx.ws, ctx.dataset_id, ctx.kind, ctx.encoder, ctx.progress)
        ctx.progress.stage_start("label-errors: cross-validation", k)
        oof = out_of_fold(data.features, data.labels, k, seed, pairwise=data.pairwise,
                          on_fold=ctx.progress.step)
        limit = int(ctx.param("max_versions", MAX_VERSIONS))
        votes = _version_votes(ctx, data.ids, limit) if limit > 0 else \
            _Votes([], np.zeros((len(data.ids), 0), dtype=np.int8), {})
        cuts = (float(ctx.param("error_below", ERROR_BELOW)),
                float(ctx.param("tie_margin", TIE_MARGIN)))
        findings = self._findings(data, oof, votes, *cuts)
        self.last_summary = _summary(oof, votes, findings, k, seed, *cuts)
        return findings

    def _findings(self, data: LabelData, oof: OutOfFold, votes: _Votes, error_below: float,
                  tie_margin: float) -> list[Finding]:
        order = np.argsort(oof.probability, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(1, len(order) + 1)
        out = []
        for i in order:
            p, margin = float(oof.probability[i]), float(oof.margin[i])
            agree, disagree = votes.counts(i)
            verdict = _triage(p, margin, error_below, agree, disagree, tie_margin,
                              data.pairwise)
            if verdict is None:
                continue
            triage, rule = verdict
            severity = 1.0 - p if triage == "label-error" else 0.5 * (1.0 - p)
            details = {"oof_margin": margin, "oof_probability": p, "fold": int(oof.fold[i]),
                       "rank": int(rank[i]), "lambda": oof.lam, "versions_agreeing": agree,
                       "versions_disagreeing": disagree, "versions": len(votes.refs),
                       "votes": {ref: int(v) for ref, v in zip(votes.refs, votes.votes[i])}}
            out.append(Finding(self.name, rule, severity, triage, example_id=int(data.ids[i]),
                               score_before=p, details=details, probe_version=self.version))
        return out


def _summary(oof: OutOfFold, votes: _Votes, findings: list[Finding], k: int, seed: int,
             error_below: float, tie_margin: float) -> dict[str, Any]:
    p = oof.probability
    return {"n_examples": int(len(p)), "k": k, "seed": seed, "lambda": oof.lam,
            "oof_agreement": float((p > 0.5).mean()) if len(p) else None,
            "oof_log_likelihood": oof.log_likelihood.get(oof.lam),
            "error_below": error_below, "tie_margin": tie_margin,
            "label_errors": sum(f.triage == "label-error" for f in findings),
            "ambiguous": sum(f.triage == "ambiguous" for f in findings),
            "versions": votes.refs, "skipped_versions": votes.skipped}


register_probe(LabelErrorProbe())
