"""One training run: reviewed data in, a registered model version out.

``train`` reads the dataset as currently reviewed, fits the head its kind
calls for (pairs: Bradley-Terry ensemble; labels: classifier ensemble;
demos: mixture of autoencoder experts), exports it to ONNX, checks the
export against torch, and registers it as the next version of ``name`` with
its lineage. Nothing is registered when it is cancelled or a check fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from workstation.errors import WorkstationError
from workstation.models.registry import ModelVersion, add_model_bytes, resolve
from workstation.progress import Progress, null_progress
from workstation.training.data import DatasetRef, Snapshot, dataset_ref, read_snapshot
from workstation.training.ensemble import train_labels, train_pairs
from workstation.training.export import TrainedHead, check_parity, parity, to_onnx
from workstation.training.fit import TRAINING_THREADS, deterministic
from workstation.training.iirl import train_demos
from workstation.training.params import resolve_params
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
                "metrics": self.metrics, "parent": lineage.get("parent"),
                "dataset": lineage.get("dataset"), "seed": lineage.get("seed"),
                "hyperparameters": lineage.get("hyperparameters"),
                "onnx_parity_max_abs_diff": self.version.manifest.get("onnx_parity_max_abs_diff")}


def train(ws: Workspace, dataset: str, name: str, *, parent: str | None = None, seed: int = 0,
          params: dict[str, Any] | None = None, progress: Progress | None = None,
          encoder: Any = None, analyst: str | None = None) -> TrainResult:
    """Train a new version of ``name`` on ``dataset`` as currently reviewed.

    ``parent`` ("NAME@V") is recorded as the lineage parent and lends its
    hyper-parameters (``params`` overrides them); ``encoder`` (text datasets)
    defaults to the workspace encoder. Raises ``Cancelled`` when ``progress``
    is cancelled and ``WorkstationError`` on bad input or a failed check;
    either way nothing is registered.
    """
    progress = progress or null_progress()
    _check_writable(ws, name)
    ref = dataset_ref(ws, dataset)
    input_kind = INPUT_KIND[ref.kind]
    parent_version = _parent(ws, parent, input_kind)
    _check_model_kind(ws, name, input_kind)
    hp = resolve_params(ref.kind, _inherited(parent_version), params)
    if input_kind == "text-embedding" and encoder is None:
        from workstation.encoder import get_encoder

        encoder = get_encoder(progress)
    snapshot = read_snapshot(ws, ref, encoder, progress)
    with deterministic():
        trained = TRAINERS[ref.kind](snapshot.data, hp, seed, progress)
        data, worst = _export(trained, progress)
    lineage = _lineage(ref, snapshot, parent_version, seed, hp, trained)
    version = add_model_bytes(
        ws, data, name, input_kind, source=f"trained on dataset {ref.name}", output="reward",
        score_type=trained.score_type, parent=parent_version,
        notes=f"trained on {ref.name} ({trained.objective})", analyst=analyst,
        encoder=encoder if input_kind == "text-embedding" else None,
        extras={"lineage": lineage, "onnx_parity_max_abs_diff": worst["reward"],
                "onnx_parity": worst, "uncertainty": trained.uncertainty,
                "outputs": list(trained.output_names)})
    return TrainResult(version, trained.metrics, trained.module)


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
            "split": "held-out = sha256(f'{split_seed}:{example_id}') as a fraction of 2^64 "
                     "< heldout_fraction",
            "trained_at": now_iso(), "torch_version": torch.__version__,
            "torch_threads": TRAINING_THREADS}


# -- checks --------------------------------------------------------------------

def _check_writable(ws: Workspace, name: str) -> None:
    if ws.read_only:
        raise WorkstationError(f"{ws.path} is open read-only; training registers a model")
    if not name or not name.strip() or "@" in name or name != name.strip():
        raise WorkstationError(f"model name {name!r} is not usable: give a non-empty name "
                               f"without '@' or surrounding spaces")


def _parent(ws: Workspace, parent: str | None, input_kind: str) -> ModelVersion | None:
    if not parent:
        return None
    version = resolve(ws, parent)
    if version.input_kind != input_kind:
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
    if parent is None:
        return {}
    return dict(parent.manifest.get("lineage", {}).get("hyperparameters") or {})
