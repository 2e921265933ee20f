"""One training run: reviewed data in, a registered model version out.

``train`` reads the dataset as currently reviewed, fits the head its kind
calls for (pairs: Bradley-Terry ensemble; labels: classifier ensemble;
demos: occupancy and progress, or the paper's mixture of autoencoder
experts), exports it to ONNX, checks the
export against torch, and registers it as the next version of ``name`` with
its lineage. Nothing is registered when it is cancelled or a check fails,
when a labels set holds one class, or when the model comes out identical to
its parent or another version of ``name`` (``refusals``).

The lineage records what the audits need to keep held-out apart: the dataset,
the review-log head its data was read at, the hyper-parameters (the split's
among them) and ``split`` (rule and counts), plus ``training_data_sha256``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from workstation.errors import WorkstationError
from workstation.hashing import sha256_bytes
from workstation.models.registry import ModelVersion, add_model_bytes, resolve
from workstation.progress import Progress, null_progress
from workstation.training.data import DatasetRef, Snapshot, dataset_ref, read_snapshot
from workstation.training.ensemble import train_labels, train_pairs
from workstation.training.export import TrainedHead, check_parity, parity, to_onnx
from workstation.training.fit import TRAINING_THREADS, deterministic
from workstation.training.demo_rewards import train_demos
from workstation.training.params import resolve_params
from workstation.training.refusals import (check_not_identical, check_trainable, data_roles,
                                           split_record, training_data_sha256)
from workstation.workspace import Workspace, now_iso

TRAINERS: dict[str, Callable[..., TrainedHead]] = {
    "pairs": train_pairs, "labels": train_labels, "demos": train_demos}
INPUT_KIND = {"pairs": "text-embedding", "labels": "text-embedding", "demos": "observation"}


@dataclass
class TrainResult:
    """What a training run registered. ``module`` is the torch scorer the ONNX
    file was exported from (same outputs), for checks; it is not persisted."""

    version: ModelVersion
    metrics: dict[str, Any]
    module: torch.nn.Module | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        lineage = self.version.manifest.get("lineage", {})
        return {"model": self.version.model, "version": self.version.version,
                "ref": self.version.ref, "sha256": self.version.sha256,
                "input_kind": self.version.input_kind, "method": lineage.get("method", "new"),
                "head": lineage.get("head"),
                "metrics": self.metrics, "parent": lineage.get("parent"),
                "dataset": lineage.get("dataset"), "seed": lineage.get("seed"),
                "hyperparameters": lineage.get("hyperparameters"),
                "onnx_parity_max_abs_diff": self.version.manifest.get("onnx_parity_max_abs_diff"),
                "head_splice_max_diff": self.version.manifest.get("head_splice_max_diff"),
                "calibration": self.version.manifest.get("calibration")}


def train(ws: Workspace, dataset: str, name: str, *, parent: str | None = None, seed: int = 0,
          params: dict[str, Any] | None = None, progress: Progress | None = None,
          encoder: Any = None, analyst: str | None = None, head_only: bool = False,
          new_head_on_embeddings: bool = False) -> TrainResult:
    """Train a new version of ``name`` on ``dataset`` as currently reviewed.

    ``parent`` ("NAME@V") is recorded as the lineage parent and lends its
    hyper-parameters (``params`` overrides them); ``encoder`` (text datasets)
    defaults to the workspace encoder. A text parent registered from outside
    (not exported by workstation training), or any parent with ``head_only``,
    keeps its graph and gets a new head (``head_retrain``);
    ``new_head_on_embeddings`` asks for a new model on text embeddings
    instead, whatever the parent. Raises ``Cancelled`` when ``progress``
    is cancelled and ``WorkstationError`` on bad input or a failed check;
    either way nothing is registered.
    """
    progress = progress or null_progress()
    _check_writable(ws, name)
    ref = dataset_ref(ws, dataset)
    if head_only and new_head_on_embeddings:
        raise WorkstationError("--head-only and --new-head-on-embeddings exclude each other")
    if parent and not new_head_on_embeddings:
        retrained = _retrain_head(ws, ref, name, resolve(ws, parent), head_only, seed, params,
                                  encoder, progress, analyst)
        if retrained is not None:
            return retrained
    input_kind = INPUT_KIND[ref.kind]
    parent_version = _parent(ws, parent, input_kind, any_kind=new_head_on_embeddings)
    _check_model_kind(ws, name, input_kind)
    hp = resolve_params(ref.kind, _inherited(parent_version), params)
    if input_kind == "text-embedding" and encoder is None:
        from workstation.encoder import get_encoder

        encoder = get_encoder(progress)
    snapshot = read_snapshot(ws, ref, encoder, progress)
    roles = data_roles(snapshot.data, hp)
    check_trainable(ref, snapshot.data, roles)
    with deterministic():
        trained = TRAINERS[ref.kind](snapshot.data, hp, seed, progress)
        data, worst = _export(trained, progress)
    lineage = _lineage(ref, snapshot, parent_version, seed, hp, trained)
    lineage["split"] = split_record(ref, roles, hp)
    lineage["training_data_sha256"] = training_data_sha256(
        ref, snapshot.data, roles, encoder.id if input_kind == "text-embedding" else None)
    check_not_identical(ws, sha256_bytes(data), name, parent_version, lineage)
    extras = {"lineage": lineage, "onnx_parity_max_abs_diff": worst["reward"],
              "onnx_parity": worst, "uncertainty": trained.uncertainty,
              "outputs": list(trained.output_names)}
    if trained.calibration is not None:
        extras["calibration"] = trained.calibration
    version = add_model_bytes(
        ws, data, name, input_kind, source=f"trained on dataset {ref.name}", output="reward",
        score_type=trained.score_type, parent=parent_version,
        notes=f"trained on {ref.name} ({trained.objective})", analyst=analyst,
        encoder=encoder if input_kind == "text-embedding" else None, extras=extras)
    return TrainResult(version, trained.metrics, trained.module)


def _retrain_head(ws: Workspace, ref: DatasetRef, name: str, parent: ModelVersion,
                  head_only: bool, seed: int, params: dict[str, Any] | None, encoder: Any,
                  progress: Progress, analyst: str | None) -> TrainResult | None:
    """The parent with a new head, when that is what retraining it means."""
    from workstation.training.head_retrain import retrain_head, trained_here

    text_model = parent.input_kind in ("text-embedding", "text-tokens")
    if not head_only and (trained_here(parent) or not text_model):
        return None
    _check_model_kind(ws, name, parent.input_kind)
    version, metrics = retrain_head(ws, ref, name, parent, seed=seed, params=params,
                                    encoder=encoder, progress=progress, analyst=analyst)
    return TrainResult(version, metrics)


def _export(trained: TrainedHead, progress: Progress) -> tuple[bytes, dict[str, float]]:
    progress.stage_start("exporting", 2)
    data = to_onnx(trained.module, trained.width, trained.input_name, trained.output_names,
                   {"workstation.objective": trained.objective,
                    "workstation.outputs": ",".join(trained.output_names)})
    progress.step(1, 2)
    worst = parity(data, trained.module, trained.check_inputs, trained.output_names)
    check_parity(worst)
    progress.step(2, 2)  # the last cancel point: registration follows
    return data, worst


def _lineage(ref: DatasetRef, snapshot: Snapshot, parent: ModelVersion | None, seed: int,
             hp: dict[str, Any], trained: TrainedHead) -> dict[str, Any]:
    return {"parent": parent.ref if parent else None, "dataset": ref.name,
            "dataset_id": ref.id, "dataset_kind": ref.kind, "dataset_snapshot": snapshot.head,
            "n_examples": len(snapshot.data), "objective": trained.objective,
            "seed": int(seed), "hyperparameters": dict(hp), "training_metrics": trained.metrics,
            "trained_at": now_iso(), "torch_version": torch.__version__,
            "torch_threads": TRAINING_THREADS}


# -- checks --------------------------------------------------------------------

def _check_writable(ws: Workspace, name: str) -> None:
    if ws.read_only:
        raise WorkstationError(f"{ws.path} is open read-only; training registers a model")
    if not name or not name.strip() or "@" in name or name != name.strip():
        raise WorkstationError(f"model name {name!r} is not usable: give a non-empty name "
                               f"without '@' or surrounding spaces")


def _parent(ws: Workspace, parent: str | None, input_kind: str,
            any_kind: bool = False) -> ModelVersion | None:
    if not parent:
        return None
    version = resolve(ws, parent)
    if version.input_kind != input_kind and not any_kind:
        raise WorkstationError(f"parent {version.ref} takes {version.input_kind} input; "
                               f"this dataset trains a model that takes {input_kind} input")
    return version


def _check_model_kind(ws: Workspace, name: str, input_kind: str) -> None:
    rows = ws.execute("SELECT input_kind FROM model_versions WHERE model = ? "
                      "ORDER BY version DESC LIMIT 1", [name]).fetchall()
    if rows and rows[0][0] != input_kind:
        raise WorkstationError(f"model '{name}' takes {rows[0][0]} input; a model that takes "
                               f"{input_kind} input needs another name")


def _inherited(parent: ModelVersion | None) -> dict[str, Any]:
    lineage = parent.manifest.get("lineage", {}) if parent is not None else {}
    if parent is None or lineage.get("method") == "head":
        return {}  # a head's settings are not an ensemble's
    return dict(parent.manifest.get("lineage", {}).get("hyperparameters") or {})
