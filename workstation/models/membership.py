"""Which examples a model version was trained on, so audits can keep held-out apart.

The split is a pure function of (split seed, example id): an example keeps its
role when others are added, excluded or relabeled. A trained version's lineage
records its dataset, the review-log head its data was read at
(``dataset_snapshot``) and the split parameters; the examples it was trained
on are those the dataset offered for training at that head (not excluded;
labeled, for labeled responses; demonstrations whole trajectories) whose role
is training or validation. A patched version carries its root's training set;
a model registered from outside has none known, and then every example counts
as not trained on (the membership says it is unknown rather than inventing one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from typing import Any

import duckdb
import numpy as np

from workstation.errors import WorkstationError
from workstation.models.registry import ModelVersion, resolve
from workstation.workspace import Workspace

TRAIN, VALIDATION, HELDOUT = 0, 1, 2
NOT_TRAINED = -1  # not in the version's training snapshot (or its training set is unknown)
ROLE_NAMES = {TRAIN: "training", VALIDATION: "validation", HELDOUT: "heldout"}
SPLIT_RULE = ("held-out = sha256(f'{split_seed}:{example_id}') (first 8 bytes, little-endian) "
              "as a fraction of 2^64 < heldout_fraction; validation the next "
              "validation_fraction; the rest trains")

TRAINED = "trained"               # trained on this very dataset: held-out known
OTHER_DATASET = "other-dataset"   # trained in the workstation on another dataset
UNKNOWN = "unknown"               # registered from outside: training data unknown


# -- the split ------------------------------------------------------------------------

_VECTORISED_FROM = 20_000  # ids from which DuckDB computes the digests

def split_position(example_ids: np.ndarray, split_seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per example id, fixed by (split_seed, id):
    the first 8 bytes of sha256(f"{split_seed}:{id}"), little-endian, over 2^64."""
    ids = np.ascontiguousarray(example_ids, dtype=np.int64)
    if len(ids) >= _VECTORISED_FROM:
        return _positions_in_duckdb(ids, split_seed)
    digests = (hashlib.sha256(f"{int(split_seed)}:{i}".encode()).digest()[:8]
               for i in ids.tolist())
    return np.frombuffer(b"".join(digests), dtype="<u8") / 2.0 ** 64


def _positions_in_duckdb(ids: np.ndarray, split_seed: int) -> np.ndarray:
    """The same numbers from DuckDB's vectorised sha256: a million ids in about
    half a second, where the loop above takes several times as long (but an
    in-memory connection costs more than the loop for a few thousand ids)."""
    con = duckdb.connect()
    try:
        con.register("split_ids", {"id": ids})
        column = con.execute("SELECT left(sha256(? || ':' || id::VARCHAR), 16) FROM split_ids",
                             [str(int(split_seed))]).fetchnumpy()
    finally:
        con.close()
    hexes = next(iter(column.values()))
    return np.frombuffer(bytes.fromhex("".join(hexes.tolist())), dtype="<u8") / 2.0 ** 64


def split_roles(example_ids: np.ndarray, heldout_fraction: float, split_seed: int,
                validation_fraction: float = 0.0) -> np.ndarray:
    """TRAIN / VALIDATION / HELDOUT per example id.

    Held-out: position < heldout_fraction; validation: the next
    ``validation_fraction``; the rest trains. A dataset too small to leave
    a training example trains on everything (and reports no held-out figures).
    """
    u = split_position(example_ids, split_seed)
    roles = np.full(len(u), TRAIN, dtype=np.int8)
    roles[u < heldout_fraction + validation_fraction] = VALIDATION
    roles[u < heldout_fraction] = HELDOUT
    if len(roles) and not (roles == TRAIN).any():
        roles[:] = TRAIN
    return roles


# -- a version's training set -----------------------------------------------------------

@dataclass(frozen=True)
class Membership:
    """What is known about which examples of one dataset a version was trained on."""

    status: str                  # TRAINED, OTHER_DATASET or UNKNOWN
    version: str                 # NAME@VERSION asked about
    trained_version: str | None  # whose training it carries (a patch's root)
    dataset: str | None          # the dataset it was trained on
    dataset_id: int | None
    dataset_kind: str | None = None
    snapshot: str | None = None  # review-log head the training data was read at
    heldout_fraction: float | None = None
    validation_fraction: float = 0.0
    split_seed: int | None = None
    n_snapshot: int | None = None  # examples training read (held-out ones included)
    reason: str | None = None    # why the training set is unknown
    # The training snapshot's example ids (sorted), for TRAINED only.
    snapshot_ids: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "snapshot_ids"}

    def describe(self) -> str:
        """One line on what an audit of this dataset by this version can tell apart."""
        if self.status == TRAINED:
            via = f" (through {self.trained_version})" if self.trained_version != self.version \
                else ""
            return (f"{self.version} was trained on this dataset{via} with split seed "
                    f"{self.split_seed} and held-out fraction {self.heldout_fraction:g}")
        if self.status == OTHER_DATASET:
            return (f"{self.version} was trained on dataset '{self.dataset}', not this one: "
                    f"every example here is held-out")
        return (f"{self.version}'s training data is unknown ({self.reason}): every example "
                f"counts as not trained on")


def membership_for(ws: Workspace, version: str | int | ModelVersion,
                   dataset_id: int) -> Membership:
    """What ``version`` was trained on, seen from dataset ``dataset_id``."""
    version = resolve(ws, version)
    root = _training_root(ws, version)
    lineage = root.manifest.get("lineage") if root is not None else None
    if not isinstance(lineage, dict) or lineage.get("dataset_id") is None:
        reason = ("registered from outside the workstation" if root is not None
                  else f"its patch root {version.manifest.get('patch_root')} is missing")
        return Membership(UNKNOWN, version.ref, None, None, None, reason=reason)
    if int(lineage["dataset_id"]) != int(dataset_id):
        return Membership(OTHER_DATASET, version.ref, root.ref, lineage.get("dataset"),
                          int(lineage["dataset_id"]), lineage.get("dataset_kind"))
    return _trained(ws, version, root, lineage)


def _trained(ws: Workspace, version: ModelVersion, root: ModelVersion,
             lineage: dict[str, Any]) -> Membership:
    hp = lineage.get("hyperparameters") or {}
    head = lineage.get("dataset_snapshot") or ""
    kind = lineage.get("dataset_kind")
    dataset_id = int(lineage["dataset_id"])
    unknown = Membership(UNKNOWN, version.ref, root.ref, lineage.get("dataset"), dataset_id,
                         kind)
    if head and not ws.execute("SELECT count(*) FROM review_log WHERE hash = ?",
                               [head]).fetchall()[0][0]:
        return replace(unknown, reason=f"the review-log state {root.ref} was trained at "
                                        f"is not in this workspace's log")
    ids = training_snapshot_ids(ws, dataset_id, kind, head)
    expected = lineage.get("n_examples")
    if expected is not None and int(expected) != len(ids):
        return replace(unknown, reason=f"{root.ref} trained on {expected} examples but "
                                        f"{len(ids)} were there at its snapshot")
    return Membership(TRAINED, version.ref, root.ref, lineage.get("dataset"), dataset_id, kind,
                      head, float(hp.get("heldout_fraction", 0.0)),
                      float(hp.get("validation_fraction") or 0.0), int(hp.get("split_seed", 0)),
                      len(ids), snapshot_ids=ids)


def _training_root(ws: Workspace, version: ModelVersion) -> ModelVersion | None:
    """The version whose training a version carries: itself, or its patch root."""
    root_ref = version.manifest.get("patch_root")
    if not root_ref or root_ref == version.ref:
        return version
    try:
        return resolve(ws, root_ref)
    except WorkstationError:  # a root that is gone: the training set is unknown
        return None


def example_roles(membership: Membership, example_ids: np.ndarray) -> np.ndarray:
    """TRAIN / VALIDATION / HELDOUT / NOT_TRAINED (int8) per example id.

    Only a version trained on this dataset has roles; an example that was not
    in its training snapshot (excluded or unlabeled then) is NOT_TRAINED."""
    roles = np.full(len(example_ids), NOT_TRAINED, dtype=np.int8)
    if membership.status != TRAINED or not len(example_ids):
        return roles
    snapshot_ids = membership.snapshot_ids
    # split_roles over the whole snapshot: its small-dataset rule depends on the set.
    snapshot_roles = split_roles(snapshot_ids, membership.heldout_fraction,
                                 membership.split_seed, membership.validation_fraction)
    at = np.searchsorted(snapshot_ids, example_ids)
    at_clipped = np.minimum(at, max(len(snapshot_ids) - 1, 0))
    found = (at < len(snapshot_ids)) & (snapshot_ids[at_clipped] == example_ids) \
        if len(snapshot_ids) else np.zeros(len(example_ids), dtype=bool)
    roles[found] = snapshot_roles[at_clipped[found]]
    return roles


def training_snapshot_ids(ws: Workspace, dataset_id: int, kind: str | None,
                          head: str) -> np.ndarray:
    """The dataset's example ids training read at review-log head ``head``
    (sorted): the log replayed up to that head for exclusions and labels."""
    label_rule = "AND (lab.new IS NOT NULL OR e.label IS NOT NULL)" if kind == "labels" else ""
    steps_rule = ("AND e.id IN (SELECT DISTINCT example_id FROM demo_steps)"
                  if kind == "demos" else "")
    rows = ws.execute(
        "WITH upto AS (SELECT coalesce(max(seq), 0) AS seq FROM review_log WHERE hash = ?), "
        "edits AS (SELECT l.example_id, l.field, arg_max(l.new::VARCHAR, l.seq) AS new "
        "  FROM review_log l, upto WHERE l.seq <= upto.seq AND l.field IN ('excluded', 'label') "
        "  AND l.example_id IN (SELECT id FROM examples WHERE dataset_id = ?) "
        "  GROUP BY l.example_id, l.field) "
        "SELECT e.id FROM examples e "
        "LEFT JOIN edits x ON x.example_id = e.id AND x.field = 'excluded' "
        "LEFT JOIN edits lab ON lab.example_id = e.id AND lab.field = 'label' "
        f"WHERE e.dataset_id = ? AND coalesce(x.new, 'false') <> 'true' {label_rule} "
        f"{steps_rule} ORDER BY e.id",
        [head, dataset_id, dataset_id]).fetchnumpy()
    return np.asarray(rows["id"], dtype=np.int64)


def role_counts(roles: np.ndarray) -> dict[str, int]:
    """How many examples hold each role (``not_trained`` for NOT_TRAINED)."""
    return {"heldout": int((roles == HELDOUT).sum()), "training": int((roles == TRAIN).sum()),
            "validation": int((roles == VALIDATION).sum()),
            "not_trained": int((roles == NOT_TRAINED).sum())}


def not_trained_on(roles: np.ndarray) -> np.ndarray:
    """Examples the version did not learn from: held-out or not in its training snapshot."""
    return (roles == HELDOUT) | (roles == NOT_TRAINED)
