"""The protected set: inputs a patch must leave (almost) alone.

By default it comes from the datasets the flaws come from:

* demonstrations: every state of the expert demonstrations (trajectories
  not relabeled unsafe, not excluded);
* labeled responses: the responses currently labeled safe (not excluded);
* preference pairs: the current chosen side of every pair (not excluded).

An explicit set replaces it: a dataset name (its default protected inputs),
example ids (all their states; their response; a pair's chosen side), or a
matrix of model inputs [P, width].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from workstation.errors import WorkstationError
from workstation.models.registry import ModelVersion
from workstation.workspace import Workspace

Protected = str | Sequence[int] | np.ndarray | None


@dataclass
class ProtectedSet:
    """Protected model inputs [P, width] and where each came from
    (``example_ids``/``steps`` are -1 for vectors given directly)."""

    x: np.ndarray
    example_ids: np.ndarray
    steps: np.ndarray
    description: str

    def __len__(self) -> int:
        return len(self.x)

    def label(self, i: int) -> str:
        """How a refusal names protected row ``i``."""
        if self.example_ids[i] < 0:
            return f"protected input {i}"
        step = f" step {self.steps[i]}" if self.steps[i] >= 0 else ""
        return f"protected example {self.example_ids[i]}{step}"


def protected_set(ws: Workspace, root: ModelVersion, dataset_ids: Iterable[int],
                  explicit: Protected, encoder: Any) -> ProtectedSet:
    """The protected inputs (see the module docstring); refuses an empty set,
    since a patch with nothing to protect has no limit on its reach."""
    if isinstance(explicit, np.ndarray):
        out = _vectors(ws, root, explicit)
    elif isinstance(explicit, str):
        out = _from_datasets(ws, root, [_dataset_id(ws, explicit)], encoder,
                             f"dataset '{explicit}'")
    elif explicit is not None:
        out = _from_examples(ws, root, [int(i) for i in explicit], encoder)
    else:
        ids = sorted({int(i) for i in dataset_ids})
        out = _from_datasets(ws, root, ids, encoder, _dataset_names(ws, ids))
    if not len(out):
        raise WorkstationError(f"no protected examples in {out.description}: give a protected "
                               f"set (a dataset name, example ids or input vectors)")
    return out


def _vectors(ws: Workspace, root: ModelVersion, x: np.ndarray) -> ProtectedSet:
    width = _width(ws, root)
    if x.ndim != 2 or x.shape[1] != width:
        raise WorkstationError(f"protected inputs must be a [P, {width}] matrix, got shape "
                               f"{tuple(x.shape)}")
    none = np.full(len(x), -1, dtype=np.int64)
    return ProtectedSet(np.asarray(x, np.float64), none, none.copy(), "the given inputs")


def _width(ws: Workspace, root: ModelVersion) -> int:
    from workstation.patching.space import kernel_space

    return kernel_space(ws, root).width


def _dataset_names(ws: Workspace, ids: list[int]) -> str:
    rows = ws.execute("SELECT name FROM datasets WHERE id IN (SELECT unnest(?::INTEGER[])) "
                      "ORDER BY name", [ids]).fetchall()
    return "dataset " + ", ".join(f"'{r[0]}'" for r in rows) if rows else "no dataset"


def _dataset_id(ws: Workspace, name: str) -> int:
    rows = ws.execute("SELECT id FROM datasets WHERE name = ?", [name]).fetchall()
    if not rows:
        raise WorkstationError(f"no dataset named '{name}' to protect")
    return int(rows[0][0])


# Default protected rows of a dataset, per kind (see the module docstring).
_DEFAULT_WHERE = ("NOT ce.excluded AND (d.kind = 'pairs' OR (d.kind = 'labels' AND "
                  "ce.current_label) OR (d.kind = 'demos' AND coalesce(ce.current_label, true)))")


def _from_datasets(ws: Workspace, root: ModelVersion, ids: list[int], encoder: Any,
                   description: str) -> ProtectedSet:
    where = f"ce.dataset_id IN (SELECT unnest(?::INTEGER[])) AND {_DEFAULT_WHERE}"
    return _read(ws, root, where, [ids], encoder, description)


def _from_examples(ws: Workspace, root: ModelVersion, ids: list[int],
                   encoder: Any) -> ProtectedSet:
    where = "ce.id IN (SELECT unnest(?::BIGINT[]))"
    return _read(ws, root, where, [ids], encoder, f"{len(ids)} given examples")


def _read(ws: Workspace, root: ModelVersion, where: str, params: list[Any], encoder: Any,
          description: str) -> ProtectedSet:
    if root.input_kind == "observation":
        return _states(ws, root, where, params, description)
    return _texts(ws, root, where, params, encoder, description)


def _states(ws: Workspace, root: ModelVersion, where: str, params: list[Any],
            description: str) -> ProtectedSet:
    width = _width(ws, root)
    sql = (f"SELECT s.example_id, s.step, s.obs::FLOAT[{width}] AS obs FROM demo_steps s "
           f"JOIN current_examples ce ON ce.id = s.example_id "
           f"JOIN datasets d ON d.id = ce.dataset_id "
           f"WHERE {where} ORDER BY s.example_id, s.step")
    try:
        ws.con.complete()  # sql() is refused while an execute() result is pending
        table = ws.con.sql(sql, params=params).to_arrow_table()
    except Exception as exc:
        raise WorkstationError(f"cannot read the protected states as {width}-wide "
                               f"observations ({str(exc).splitlines()[0]})") from None
    obs = table.column("obs").combine_chunks()
    x = obs.flatten().to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float64)
    return ProtectedSet(x, table.column("example_id").to_numpy().astype(np.int64),
                        table.column("step").to_numpy().astype(np.int64), description)


def _texts(ws: Workspace, root: ModelVersion, where: str, params: list[Any], encoder: Any,
           description: str) -> ProtectedSet:
    from workstation.patching.space import kernel_space

    rows = ws.execute(
        f"SELECT ce.id, ce.prompt, CASE WHEN d.kind = 'pairs' THEN ce.current_chosen "
        f"ELSE ce.response END FROM current_examples ce JOIN datasets d ON d.id = ce.dataset_id "
        f"WHERE d.kind IN ('labels', 'pairs') AND {where} ORDER BY ce.id", params).fetchall()
    if not rows:
        empty = np.zeros((0, _width(ws, root)))
        return ProtectedSet(empty, np.zeros(0, np.int64), np.zeros(0, np.int64), description)
    x = kernel_space(ws, root).texts(ws, [r[1] for r in rows], [r[2] for r in rows], encoder)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return ProtectedSet(np.asarray(x, np.float64), ids, np.full(len(ids), -1, np.int64),
                        description)
