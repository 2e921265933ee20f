"""What training refuses, and why: data it cannot learn from, and a result
that would add nothing.

* A labels set whose labels (or whose training split) hold one class: a
  classifier trained on it registers a model that has never seen the other
  class, so it is refused before any work.
* A trained model byte-identical to its parent (or to another version of the
  same model): registering it would announce a new version that changes
  nothing. The message says why the data did not change, from the review log
  since that version was trained and from ``training_data_sha256``, the
  fingerprint of everything training read (held-out rows do not count: they
  never reach the fit).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from workstation.errors import WorkstationError
from workstation.hashing import canonical_json
from workstation.models.membership import SPLIT_RULE, split_position, split_roles
from workstation.models.registry import ModelVersion
from workstation.training.data import HELDOUT, TRAIN, VALIDATION, DatasetRef, DemoData, \
    LabelData, PairData
from workstation.workspace import Workspace

# Review fields training reads; the others (notes, tags, categories) change no model.
_TRAINING_FIELDS = ("flipped", "label", "excluded")


# -- the data ---------------------------------------------------------------------------

def data_roles(data: PairData | LabelData | DemoData, hp: dict[str, Any]) -> np.ndarray:
    """TRAIN / VALIDATION / HELDOUT per example (per trajectory for demonstrations)."""
    return split_roles(data.example_ids, hp["heldout_fraction"], hp["split_seed"],
                       hp.get("validation_fraction") or 0.0)


def check_trainable(ref: DatasetRef, data: PairData | LabelData | DemoData,
                    roles: np.ndarray) -> None:
    """Refuse a labels set with one class, overall or in its training split."""
    if not isinstance(data, LabelData) or not len(data.safe):
        return  # an empty set is refused by the trainer with its own message
    safe = data.safe
    if safe.all() or not safe.any():
        only, other = ("safe", "unsafe") if safe.all() else ("unsafe", "safe")
        raise WorkstationError(
            f"all {len(safe)} labeled responses of '{ref.name}' are {only}: a classifier "
            f"needs both safe and unsafe examples to learn from (relabel some, or import "
            f"{other} ones); nothing trained")
    trained = safe[roles == TRAIN]
    if len(trained) and (trained.all() or not trained.any()):
        only, other = ("safe", "unsafe") if trained.all() else ("unsafe", "safe")
        raise WorkstationError(
            f"the training split of '{ref.name}' holds only {only} labels ({len(trained)} "
            f"examples; its {other} ones are all held out): a classifier needs both; import "
            f"more {other} examples or choose another split_seed; nothing trained")


def split_record(ref: DatasetRef, roles: np.ndarray, hp: dict[str, Any]) -> dict[str, Any]:
    """The lineage's ``split``: how the held-out examples were chosen, and how many."""
    return {"rule": SPLIT_RULE, "unit": "trajectory" if ref.kind == "demos" else "example",
            "heldout_fraction": hp["heldout_fraction"],
            "validation_fraction": hp.get("validation_fraction") or 0.0,
            "split_seed": hp["split_seed"], "n_training": int((roles == TRAIN).sum()),
            "n_validation": int((roles == VALIDATION).sum()),
            "n_heldout": int((roles == HELDOUT).sum())}


def training_data_sha256(ref: DatasetRef, data: PairData | LabelData | DemoData,
                         roles: np.ndarray, encoder_id: str | None) -> str:
    """A fingerprint of every input the fit reads (training and validation rows)."""
    used = roles != HELDOUT
    digest = hashlib.sha256(canonical_json({"kind": ref.kind, "dataset_id": ref.id,
                                            "encoder": encoder_id}).encode())
    digest.update(np.ascontiguousarray(data.example_ids[used]).tobytes())
    if isinstance(data, PairData):
        arrays = [data.chosen[used], data.rejected[used]]
    elif isinstance(data, LabelData):
        arrays = [data.inputs[used], data.safe[used]]
    else:
        steps = used[np.searchsorted(data.example_ids, data.owner)] if len(data.owner) \
            else np.zeros(0, dtype=bool)
        arrays = [data.obs[steps], data.owner[steps]]
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# -- the result ---------------------------------------------------------------------------

def check_not_identical(ws: Workspace, sha256: str, name: str, parent: ModelVersion | None,
                        lineage: dict[str, Any]) -> None:
    """Refuse a trained model whose bytes equal its parent's or another version of
    ``name``, saying why the data did not change."""
    rows = ws.execute(
        "SELECT id, model || '@' || version, manifest->'$.lineage' FROM model_versions "
        "WHERE sha256 = ? AND (id = ? OR model = ?) ORDER BY (id = ?) DESC, version DESC "
        "LIMIT 1", [sha256, parent.id if parent else -1, name,
                    parent.id if parent else -1]).fetchall()
    if not rows:
        return
    twin_ref, twin_lineage = rows[0][1], _as_dict(rows[0][2])
    what = "retrained" if parent is not None else "trained"
    head = f"the {what} model is identical to {twin_ref}"
    if twin_lineage.get("training_data_sha256") == lineage["training_data_sha256"]:
        why = edits_since(ws, lineage["dataset_id"], twin_lineage.get("dataset_snapshot"),
                          lineage["split"])
        raise WorkstationError(f"{head}: the training data did not change since {twin_ref} "
                               f"({why}); nothing registered")
    raise WorkstationError(f"{head} (the same ONNX bytes): training reproduced it exactly; "
                           f"nothing registered")


def edits_since(ws: Workspace, dataset_id: int, head: str | None,
                split: dict[str, Any]) -> str:
    """Why the review edits to a dataset since log head ``head`` change no training input."""
    seq = _seq_of(ws, head)
    if seq is None:
        return "the review log no longer holds the state it was trained at"
    rows = ws.execute(
        "SELECT l.example_id, l.field FROM review_log l JOIN examples e ON e.id = l.example_id "
        "WHERE e.dataset_id = ? AND l.seq > ? ORDER BY l.seq", [dataset_id, seq]).fetchall()
    if not rows:
        return "no review edits since"
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    held = split_position(ids, split["split_seed"]) < split["heldout_fraction"]
    read = np.array([r[1] in _TRAINING_FIELDS for r in rows])
    if (read & ~held).any():
        return "the edits since were undone or set values back"
    parts = []
    if (read & held).any():
        touched = sorted({int(i) for i in ids[read & held]})
        parts.append(f"touch held-out examples ({_ids(touched)})")
    if (~read).any():
        parts.append("change notes, tags or categories, which training does not read")
    return "the only edits since " + " or ".join(parts)


def _seq_of(ws: Workspace, head: str | None) -> int | None:
    if not head:
        return 0
    rows = ws.execute("SELECT seq FROM review_log WHERE hash = ?", [head]).fetchall()
    return int(rows[0][0]) if rows else None


def _ids(ids: list[int], shown: int = 10) -> str:
    text = "example" + ("s " if len(ids) > 1 else " ") + ", ".join(map(str, ids[:shown]))
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def _as_dict(value: Any) -> dict[str, Any]:
    import json

    value = json.loads(value) if isinstance(value, str) else value
    return value if isinstance(value, dict) else {}
