"""Reviewed data as training arrays: what the workspace holds *now*.

Pairs use the current preference (``current_chosen``/``current_rejected``,
i.e. after flips), labeled responses the current label (TRUE = safe; rows
without a label are left out and counted), demonstrations every step of
every trajectory. Excluded examples never reach training.

Text inputs follow the registry's ``text-embedding`` convention: the prompt
embedding followed by the response embedding (2·D floats), read through the
workspace's embedding cache (``embed_texts``), so texts are encoded once.

The held-out split is a pure function of (split seed, example id)
(``workstation.models.membership``): an example keeps its role when others
are added, excluded or relabeled, so two versions trained on the same dataset
are compared on the same held-out set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workstation.errors import WorkstationError
# The split lives with the models (audits need it without torch); re-exported here.
from workstation.models.membership import (  # noqa: F401
    HELDOUT, TRAIN, VALIDATION, split_roles)
from workstation.progress import Progress
from workstation.review import head_hash
from workstation.workspace import Workspace

# Rebuilding the data while an analyst edits on another thread could mix two
# review states; retry the read until the log head is the same before and after.
_SNAPSHOT_ATTEMPTS = 3


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as training sees it."""

    id: int
    name: str
    kind: str


@dataclass
class PairData:
    """Preference pairs as model inputs: row i prefers ``chosen[i]`` over ``rejected[i]``."""

    example_ids: np.ndarray  # int64 [N]
    chosen: np.ndarray  # float32 [N, 2D]: prompt embedding, chosen response embedding
    rejected: np.ndarray  # float32 [N, 2D]

    def __len__(self) -> int:
        return len(self.example_ids)


@dataclass
class LabelData:
    """Labeled responses as model inputs (``safe`` is the positive class)."""

    example_ids: np.ndarray  # int64 [N]
    inputs: np.ndarray  # float32 [N, 2D]: prompt embedding, response embedding
    safe: np.ndarray  # bool [N]
    n_unlabeled: int

    def __len__(self) -> int:
        return len(self.example_ids)


@dataclass
class DemoData:
    """Demonstration steps: one observation per row, owned by a trajectory."""

    example_ids: np.ndarray  # int64 [T]: the trajectories
    obs: np.ndarray  # float32 [S, obs_dim]
    owner: np.ndarray  # int64 [S]: the trajectory (example id) of each step

    def __len__(self) -> int:
        return len(self.example_ids)


@dataclass
class Snapshot:
    """Data read at one review-log state (``head`` is the log's head hash)."""

    data: PairData | LabelData | DemoData
    head: str


def dataset_ref(ws: Workspace, name: str) -> DatasetRef:
    """The dataset called ``name``; unknown names list the known ones."""
    rows = ws.execute("SELECT id, name, kind FROM datasets WHERE name = ?", [name]).fetchall()
    if rows:
        return DatasetRef(int(rows[0][0]), rows[0][1], rows[0][2])
    known = [r[0] for r in ws.execute("SELECT name FROM datasets ORDER BY name").fetchall()]
    listing = ", ".join(known) if known else "none imported yet"
    raise WorkstationError(f"unknown dataset '{name}' (datasets: {listing})")


def read_snapshot(ws: Workspace, ref: DatasetRef, encoder: Any, progress: Progress) -> Snapshot:
    """The dataset's training data and the review-log head it reflects."""
    for _ in range(_SNAPSHOT_ATTEMPTS):
        before = head_hash(ws)
        data = _read(ws, ref, encoder, progress)
        if head_hash(ws) == before:
            return Snapshot(data, before)
    raise WorkstationError(f"dataset {ref.name} kept changing while its training data "
                           f"was read; try again once the edits are done")


def _read(ws: Workspace, ref: DatasetRef, encoder: Any,
          progress: Progress) -> PairData | LabelData | DemoData:
    progress.stage_start(f"reading {ref.name}", 0)
    if ref.kind == "pairs":
        return load_pairs(ws, ref.id, encoder, progress)
    if ref.kind == "labels":
        return load_labels(ws, ref.id, encoder, progress)
    return load_demos(ws, ref.id)


# -- text datasets -------------------------------------------------------------

def load_pairs(ws: Workspace, dataset_id: int, encoder: Any, progress: Progress) -> PairData:
    """Non-excluded pairs with their current preference, ordered by example id."""
    rows = ws.execute(
        "SELECT id, prompt, current_chosen, current_rejected FROM current_examples "
        "WHERE dataset_id = ? AND NOT excluded ORDER BY id", [dataset_id]).fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    prompt, chosen, rejected = _embed_columns(ws, rows, 3, encoder, progress)
    return PairData(ids, _paired(prompt, chosen), _paired(prompt, rejected))


def load_labels(ws: Workspace, dataset_id: int, encoder: Any, progress: Progress) -> LabelData:
    """Non-excluded labeled responses with their current label, ordered by id."""
    rows = ws.execute(
        "SELECT id, prompt, response, current_label FROM current_examples "
        "WHERE dataset_id = ? AND NOT excluded ORDER BY id", [dataset_id]).fetchall()
    labeled = [r for r in rows if r[3] is not None]
    ids = np.array([r[0] for r in labeled], dtype=np.int64)
    prompt, response = _embed_columns(ws, labeled, 2, encoder, progress)
    safe = np.array([bool(r[3]) for r in labeled], dtype=bool)
    return LabelData(ids, _paired(prompt, response), safe, len(rows) - len(labeled))


def _embed_columns(ws: Workspace, rows: list[tuple], n_texts: int, encoder: Any,
                   progress: Progress) -> list[np.ndarray]:
    """Embeddings of text columns 1..n_texts of ``rows``, one matrix per column."""
    from workstation.encoder import embed_texts

    texts = [r[c] for c in range(1, n_texts + 1) for r in rows]
    vectors = embed_texts(ws, texts, encoder=encoder, progress=progress)
    n = len(rows)
    return [vectors[c * n:(c + 1) * n] for c in range(n_texts)]


def _paired(prompt: np.ndarray, response: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate([prompt, response], axis=1), dtype=np.float32)


# -- demonstrations ------------------------------------------------------------

def load_demos(ws: Workspace, dataset_id: int) -> DemoData:
    """Every step of every non-excluded trajectory, ordered by (trajectory, step)."""
    width = _obs_width(ws, dataset_id)
    ws.con.complete()  # DuckDB refuses sql() while an execute() result is pending
    table = ws.con.sql(
        f"SELECT s.example_id, s.obs::FLOAT[{width}] AS obs FROM demo_steps s "
        f"JOIN current_examples ce ON ce.id = s.example_id "
        f"WHERE ce.dataset_id = ? AND NOT ce.excluded ORDER BY s.example_id, s.step",
        params=[dataset_id]).to_arrow_table()
    column = table.column("obs").combine_chunks()
    if column.null_count:
        raise WorkstationError("a demonstration step has no observation")
    obs = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    owner = table.column("example_id").to_numpy().astype(np.int64)
    # A copy: Arrow's buffer is read-only, and torch wants memory it may own.
    return DemoData(np.unique(owner), np.array(obs, dtype=np.float32, order="C"), owner)


def _obs_width(ws: Workspace, dataset_id: int) -> int:
    low, high = ws.execute(
        "SELECT min(len(s.obs)), max(len(s.obs)) FROM demo_steps s "
        "JOIN current_examples ce ON ce.id = s.example_id "
        "WHERE ce.dataset_id = ? AND NOT ce.excluded", [dataset_id]).fetchall()[0]
    if low is None:
        return 1  # no steps at all: the caller reports the empty dataset
    if low != high:
        raise WorkstationError(f"observations have different widths ({low}..{high}); "
                               f"a demonstration dataset needs one width")
    return int(low)
