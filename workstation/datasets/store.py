"""Bulk writes of parsed rows into the workspace, through Arrow tables.

Rows are turned into one Arrow table per target table and inserted with a
single ``INSERT ... SELECT`` each (never row by row). The caller holds the
transaction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from workstation.datasets.registry import Row
from workstation.errors import InputError
from workstation.workspace import Workspace

_TEXT_COLUMNS = ("source_id", "prompt", "chosen", "rejected", "response", "category")
_EXAMPLE_COLUMNS = ("id, dataset_id, source_sha256, source_index, source_id, prompt, chosen, "
                    "rejected, response, label, category, n_steps, meta")


def _column(path: Path, name: str, values: list[Any], type_: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        # only a third-party importer can get here: the built-ins validate first
        raise InputError(str(path), f"the importer produced a value of the wrong type ({exc})",
                         field=name) from None


def _meta_json(path: Path, row: Row) -> str | None:
    meta = row.get("meta")
    if not meta:
        return None
    try:
        return json.dumps(meta, ensure_ascii=False, allow_nan=False, sort_keys=True,
                          separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InputError(str(path), f"metadata is not JSON-serialisable ({exc})",
                         record=row.get("source_index"), field="meta") from None


def examples_table(path: Path, rows: list[Row], first_id: int, dataset_id: int,
                   shas: list[str]) -> pa.Table:
    """The ``examples`` rows as an Arrow table; ``shas[i]`` is row i's source."""
    n = len(rows)
    cols: dict[str, pa.Array] = {
        "id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        "dataset_id": pa.array(np.full(n, dataset_id, dtype=np.int32)),
        "source_sha256": pa.array(shas, pa.string()),
        "source_index": _column(path, "source_index", [r.get("source_index") for r in rows],
                                pa.int64()),
    }
    for name in _TEXT_COLUMNS:
        cols[name] = _column(path, name, [r.get(name) for r in rows], pa.string())
    cols["label"] = _column(path, "label", [r.get("label") for r in rows], pa.bool_())
    cols["n_steps"] = _column(path, "n_steps", [r.get("n_steps") for r in rows], pa.int32())
    cols["meta"] = pa.array([_meta_json(path, r) for r in rows], pa.string())
    if cols["source_index"].null_count:
        raise InputError(str(path), "the importer gave a record without a source index",
                         field="source_index")
    return pa.table(cols)


def steps_table(path: Path, rows: list[Row], first_id: int) -> pa.Table:
    """The ``demo_steps`` rows: one per observation, NULL action after the last action."""
    obs_parts = [np.asarray(r["obs"], dtype=np.float32) for r in rows]
    widths = {o.shape[1] for o in obs_parts if o.ndim == 2}
    if len(widths) != 1 or any(o.ndim != 2 for o in obs_parts):
        raise InputError(str(path), "observations must be 2-D with one width across the file",
                         field="obs")
    lengths = np.array([len(o) for o in obs_parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total = int(lengths.sum())
    obs_all = np.concatenate(obs_parts)
    obs_arr = pa.FixedSizeListArray.from_arrays(pa.array(obs_all.ravel()), widths.pop())
    return pa.table({
        "example_id": pa.array(np.repeat(np.arange(first_id, first_id + len(rows)), lengths)),
        "step": pa.array((np.arange(total) - np.repeat(offsets, lengths)).astype(np.int32)),
        "obs": obs_arr.cast(pa.list_(pa.float32())),
        "action": _actions(path, rows, offsets, total),
    })


def _actions(path: Path, rows: list[Row], offsets: np.ndarray, total: int) -> pa.Array:
    acts = [None if r.get("acts") is None else np.asarray(r["acts"], dtype=np.float64)
            for r in rows]
    acts = [a.reshape(len(a), -1) if a is not None and len(a) else None for a in acts]
    widths = {a.shape[1] for a in acts if a is not None}
    if not widths:
        return pa.nulls(total, pa.list_(pa.float64()))
    if len(widths) != 1:
        raise InputError(str(path), "actions must have one width across the file", field="acts")
    width = widths.pop()
    values = np.zeros((total, width), dtype=np.float64)
    missing = np.ones(total, dtype=bool)
    for a, start in zip(acts, offsets):
        if a is not None:
            values[start:start + len(a)] = a
            missing[start:start + len(a)] = False
    arr = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), width,
                                            mask=pa.array(missing))
    return arr.cast(pa.list_(pa.float64()))


def insert(ws: Workspace, table: str, columns: str, select: str, data: pa.Table) -> None:
    """``INSERT INTO table (columns) SELECT select FROM <data>`` in one statement.

    DuckDB finds the Arrow table through its Python replacement scan on the
    local name ``_ws_arrow_rows``; unlike ``register`` this also works while
    an earlier single-row ``fetchone()`` result is still open on the
    connection (DuckDB 2 refuses ``register`` then).
    """
    _ws_arrow_rows = data  # noqa: F841  (read by DuckDB by name)
    ws.con.execute(f"INSERT INTO {table} ({columns}) SELECT {select} FROM _ws_arrow_rows")


def insert_examples(ws: Workspace, data: pa.Table) -> None:
    select = _EXAMPLE_COLUMNS.replace("meta", "CAST(meta AS JSON)")
    insert(ws, "examples", _EXAMPLE_COLUMNS, select, data)


def insert_steps(ws: Workspace, data: pa.Table) -> None:
    cols = "example_id, step, obs, action"
    insert(ws, "demo_steps", cols, cols, data)
