"""Head retraining: a model registered from outside keeps its body and gets a
new head, fitted on the reviewed data in the model's own feature space.

The features are the head's input (``workstation.models.features``, cached in
the workspace). The new head has the old one's form (the score's linear
logit s(x) = x·v + c, see ``score_head``): pairs fit it by Bradley-Terry on
feature differences (c, which cancels, is kept), labels by logistic
regression; both start from the old head's weights and are pulled towards
them by an L2 penalty (``l2``), and use the same held-out split rule as every
training run. The weights are spliced into a copy of the user's graph
(nothing else changes), and the spliced graph must score the cached features
as the fitted head does before anything is registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from workstation.audits.metrics import auroc, pairwise_accuracy
from workstation.errors import WorkstationError
from workstation.hashing import sha256_bytes
from workstation.models.derived import check_same_input, input_kwargs
from workstation.models.features import FeatureSpace, feature_space, tail_runner, text_features
from workstation.models.registry import ModelVersion, add_model_bytes, load_onnx
from workstation.models.score_head import NoHead, splice, tail_model
from workstation.progress import Progress
from workstation.review import head_hash
from workstation.training.data import (HELDOUT, TRAIN, DatasetRef, LabelData, PairData,
                                       Snapshot)
from workstation.training.fit import TRAINING_THREADS, deterministic
from workstation.training.params import _float, _int
from workstation.training.refusals import (check_not_identical, check_trainable, data_roles,
                                           split_record, training_data_sha256)
from workstation.workspace import Workspace, now_iso

PRODUCER = "workstation.training"
SPLICE_TOLERANCE = 1e-5
# l2: the pull towards the old head per unit of mean loss; max_iter: L-BFGS steps.
HEAD_DEFAULTS: dict[str, Any] = {"l2": 1e-3, "max_iter": 200, "heldout_fraction": 0.2,
                                 "split_seed": 0}
_CHECKS = {"l2": _float(0.0), "max_iter": _int(1), "heldout_fraction": _float(0.0, 1.0),
           "split_seed": _int(None)}
_SNAPSHOT_ATTEMPTS = 3


def trained_here(version: ModelVersion) -> bool:
    """Whether the version's graph was exported by workstation training."""
    return (version.manifest.get("onnx") or {}).get("producer_name") == PRODUCER


@dataclass
class HeadFit:
    """A fitted head: the score logit's (v, c) and its figures."""

    v: np.ndarray
    c: float
    metrics: dict[str, Any]


def retrain_head(ws: Workspace, ref: DatasetRef, name: str, parent: ModelVersion, *,
                 seed: int = 0, params: dict[str, Any] | None = None, encoder: Any = None,
                 progress: Progress, analyst: str | None = None) -> tuple[ModelVersion, dict]:
    """Register ``name``'s next version: ``parent`` with a head fitted on ``ref``."""
    space = _space(ws, parent)
    if ref.kind not in ("pairs", "labels"):
        raise WorkstationError(f"dataset '{ref.name}' holds {ref.kind}; a head is retrained on "
                               f"pairs or labeled responses")
    hp = resolve_head_params(parent, params)
    snapshot = read_features(ws, ref, space, encoder, progress)
    roles = data_roles(snapshot.data, hp)
    check_trainable(ref, snapshot.data, roles)
    progress.stage_start("training the head", 1)
    with deterministic():
        torch.manual_seed(seed)
        fitted = fit_head(snapshot.data, roles, space, hp)
    progress.step(1, 1)
    data = splice(load_onnx(ws, parent), space.head, *space.head.with_linear(fitted.v, fitted.c))
    worst = check_splice(data, space, snapshot.data, fitted)
    lineage = _lineage(ref, snapshot, parent, space, seed, hp, fitted.metrics)
    lineage["split"] = split_record(ref, roles, hp)
    lineage["training_data_sha256"] = training_data_sha256(ref, snapshot.data, roles, space.id)
    check_not_identical(ws, sha256_bytes(data), name, parent, lineage)
    version = _register(ws, data, name, parent, ref, lineage, worst, analyst)
    return version, fitted.metrics


def _space(ws: Workspace, parent: ModelVersion) -> FeatureSpace:
    if parent.manifest.get("patches"):
        raise WorkstationError(f"{parent.ref} carries suppression patches: retrain its "
                               f"unpatched root {parent.manifest.get('patch_root')}, or pass "
                               f"--new-head-on-embeddings")
    try:
        return feature_space(ws, parent)
    except NoHead as exc:
        raise WorkstationError(f"no scoring head found in {parent.ref} ({exc}); "
                               f"--new-head-on-embeddings trains a new model on the "
                               f"workspace's text embeddings instead") from None


def resolve_head_params(parent: ModelVersion, overrides: dict[str, Any] | None) -> dict:
    """Defaults, then a head-retrained parent's values, then ``overrides``."""
    unknown = sorted(set(overrides or {}) - set(HEAD_DEFAULTS))
    if unknown:
        raise WorkstationError(f"unknown training parameter '{unknown[0]}' for head "
                               f"retraining; known: {', '.join(sorted(HEAD_DEFAULTS))}")
    lineage = parent.manifest.get("lineage") or {}
    inherited = lineage.get("hyperparameters") if lineage.get("method") == "head" else {}
    merged = {**HEAD_DEFAULTS, **{k: v for k, v in (inherited or {}).items()
                                  if k in HEAD_DEFAULTS}, **(overrides or {})}
    return {k: _CHECKS[k](k, v) for k, v in merged.items()}


# -- the data --------------------------------------------------------------------

def read_features(ws: Workspace, ref: DatasetRef, space: FeatureSpace, encoder: Any,
                  progress: Progress) -> Snapshot:
    """The dataset as reviewed now, in the model's features, at one review-log state."""
    for _ in range(_SNAPSHOT_ATTEMPTS):
        before = head_hash(ws)
        data = _read(ws, ref, space, encoder, progress)
        if head_hash(ws) == before:
            return Snapshot(data, before)
    raise WorkstationError(f"dataset {ref.name} kept changing while its training data "
                           f"was read; try again once the edits are done")


def _read(ws: Workspace, ref: DatasetRef, space: FeatureSpace, encoder: Any,
          progress: Progress) -> PairData | LabelData:
    progress.stage_start(f"reading {ref.name}", 0)
    if ref.kind == "pairs":
        rows = ws.execute(
            "SELECT id, prompt, current_chosen, current_rejected FROM current_examples "
            "WHERE dataset_id = ? AND NOT excluded ORDER BY id", [ref.id]).fetchall()
        prompts = [r[1] for r in rows] * 2
        x = text_features(ws, space, prompts, [r[2] for r in rows] + [r[3] for r in rows],
                          encoder, progress)
        n = len(rows)
        return PairData(np.array([r[0] for r in rows], dtype=np.int64), x[:n], x[n:])
    rows = ws.execute(
        "SELECT id, prompt, response, current_label FROM current_examples "
        "WHERE dataset_id = ? AND NOT excluded ORDER BY id", [ref.id]).fetchall()
    labeled = [r for r in rows if r[3] is not None]
    x = text_features(ws, space, [r[1] for r in labeled], [r[2] for r in labeled], encoder,
                      progress)
    return LabelData(np.array([r[0] for r in labeled], dtype=np.int64), x,
                     np.array([bool(r[3]) for r in labeled], dtype=bool),
                     len(rows) - len(labeled))


# -- the fit ----------------------------------------------------------------------

def fit_head(data: PairData | LabelData, roles: np.ndarray, space: FeatureSpace,
             hp: dict[str, Any]) -> HeadFit:
    """The new head's (v, c), warm-started from and pulled towards the old one.
    The offset c is fitted on labels when the head has a bias to hold it;
    Bradley-Terry sees differences only, so pairs keep the old offset."""
    v0, c0 = space.head.linear()
    train = roles == TRAIN
    if not train.any():
        raise WorkstationError("no training examples: every example is held out")
    pairs = isinstance(data, PairData)
    fit_offset = not pairs and space.head.bias_source is not None
    start = torch.tensor(v0, dtype=torch.float64)
    v = start.clone().requires_grad_(True)
    c = torch.tensor(float(c0), dtype=torch.float64, requires_grad=fit_offset)
    loss_of = _pair_loss(data, train) if pairs else _label_loss(data, train)
    optimiser = torch.optim.LBFGS([v, c] if fit_offset else [v], lr=1.0,
                                  max_iter=int(hp["max_iter"]), tolerance_grad=1e-10,
                                  tolerance_change=1e-12, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_of(v, c) + 0.5 * hp["l2"] * ((v - start) ** 2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    new = (v.detach().numpy().copy(), float(c.detach()))
    metrics = _metrics(data, roles, (v0, c0), new)
    metrics["objective"] = "bradley-terry" if pairs else "logistic"
    return HeadFit(new[0], new[1], metrics)


def _pair_loss(data: PairData, train: np.ndarray) -> Any:
    diff = torch.from_numpy((data.chosen[train].astype(np.float64)
                             - data.rejected[train].astype(np.float64)))
    return lambda v, c: torch.nn.functional.softplus(-(diff @ v)).mean()


def _label_loss(data: LabelData, train: np.ndarray) -> Any:
    x = torch.from_numpy(data.inputs[train].astype(np.float64))
    y = torch.from_numpy(data.safe[train].astype(np.float64))
    return lambda v, c: torch.nn.functional.binary_cross_entropy_with_logits(x @ v + c, y)


def _metrics(data: PairData | LabelData, roles: np.ndarray, old: tuple, new: tuple) -> dict:
    out: dict[str, Any] = {"n_training": int((roles == TRAIN).sum()),
                           "n_heldout": int((roles == HELDOUT).sum())}
    for split, rows in (("train", roles == TRAIN), ("heldout", roles == HELDOUT)):
        for who, (v, c) in (("", new), ("parent_", old)):
            if isinstance(data, PairData):
                margin = (data.chosen[rows].astype(np.float64)
                          - data.rejected[rows].astype(np.float64)) @ v
                out[f"{who}{split}_pairwise_accuracy"] = pairwise_accuracy(margin)
            else:
                logit = data.inputs[rows].astype(np.float64) @ v + c
                out[f"{who}{split}_auroc"] = auroc(logit, data.safe[rows])
    return {k: (None if v is None else float(v)) if not isinstance(v, int) else v
            for k, v in out.items()}


# -- the splice, checked ------------------------------------------------------------

def check_splice(data: bytes, space: FeatureSpace, rows: PairData | LabelData,
                 fitted: HeadFit) -> float:
    """Largest relative difference between the spliced graph and the fitted
    head on the cached features; above ``SPLICE_TOLERANCE`` nothing is registered."""
    x = np.vstack([rows.chosen, rows.rejected]) if isinstance(rows, PairData) else rows.inputs
    runner = tail_runner(tail_model(data, space.head, space.version.manifest["output"]),
                         space.version.manifest, space.dim)
    got = runner.score_matrix(x)
    expected = space.head.score_of(x.astype(np.float64) @ fitted.v + fitted.c)
    worst = float(np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected)))) \
        if len(x) else 0.0
    if worst > SPLICE_TOLERANCE:
        raise WorkstationError(f"the spliced graph disagrees with the fitted head by "
                               f"{worst:.3g} on the cached features; nothing registered")
    return worst


def _lineage(ref: DatasetRef, snapshot: Snapshot, parent: ModelVersion, space: FeatureSpace,
             seed: int, hp: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    return {"parent": parent.ref, "method": "head", "head": space.head.to_json(),
            "feature_space": space.id, "dataset": ref.name, "dataset_id": ref.id,
            "dataset_kind": ref.kind, "dataset_snapshot": snapshot.head,
            "n_examples": len(snapshot.data), "objective": metrics["objective"],
            "seed": int(seed), "hyperparameters": dict(hp), "training_metrics": metrics,
            "trained_at": now_iso(), "torch_version": torch.__version__,
            "torch_threads": TRAINING_THREADS}


def _register(ws: Workspace, data: bytes, name: str, parent: ModelVersion, ref: DatasetRef,
              lineage: dict[str, Any], worst: float, analyst: str | None) -> ModelVersion:
    m = parent.manifest
    with ws.transaction():
        version = add_model_bytes(
            ws, data, name, parent.input_kind, source=f"{parent.ref} with its head retrained "
            f"on {ref.name}", output=m["output"], column=m.get("column"),
            score_type=m["score_type"], parent=parent, analyst=analyst,
            notes=f"head of {parent.ref} retrained on {ref.name} ({lineage['objective']})",
            extras={"lineage": lineage, "head_splice_max_diff": worst},
            **input_kwargs(ws, parent))
        check_same_input(version, parent)
    return version
