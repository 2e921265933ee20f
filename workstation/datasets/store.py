"""Bulk writes of parsed rows into the workspace, through Arrow tables.

Rows come in chunks (at most ``CHUNK_ROWS`` rows or about ``CHUNK_BYTES`` of
text and observations, whichever comes first), so that memory is bounded by
the chunk, not by the file. Each chunk becomes one Arrow table per target
table, inserted with a single ``INSERT ... SELECT`` (never row by row). The
caller holds the transaction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa

from workstation.datasets.registry import Row
from workstation.errors import InputError
from workstation.progress import Progress
from workstation.workspace import Workspace

CHUNK_ROWS = 20_000
CHUNK_BYTES = 32 * 1024 * 1024
_TEXT_COLUMNS = ("source_id", "prompt", "chosen", "rejected", "response", "category")
_EXAMPLE_COLUMNS = ("id, dataset_id, source_sha256, source_index, source_id, prompt, chosen, "
                    "rejected, response, label, category, n_steps, meta")


def write_rows(ws: Workspace, kind: str, path: Path, rows: Iterable[Row], first_id: int,
               dataset_id: int, sha: str, progress: Progress) -> int:
    """Insert one source file's rows (file hash ``sha``), chunk by chunk, with
    ids from ``first_id`` on; returns how many rows it inserted."""
    widths: dict[str, int] = {}  # demonstration widths, checked across the file's chunks
    written = 0
    for chunk in chunks(rows):
        start = first_id + written
        insert_examples(ws, examples_table(path, chunk, start, dataset_id, sha))
        if kind == "demos":
            insert_steps(ws, steps_table(path, chunk, start, widths))
        written += len(chunk)
        del chunk  # so that the next chunk is not built while this one is still held
        progress.check()
    return written


def chunks(rows: Iterable[Row]) -> Iterator[list[Row]]:
    """``rows`` in lists of at most ``CHUNK_ROWS`` rows and about ``CHUNK_BYTES``."""
    chunk: list[Row] = []
    size = 0
    for row in rows:
        chunk.append(row)
        size += _row_bytes(row)
        if len(chunk) >= CHUNK_ROWS or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _row_bytes(row: Row) -> int:
    """About how much memory a row's texts and observations take."""
    size = getattr(row.get("obs"), "nbytes", 0)
    for value in row.values():
        if type(value) is str:
            size += len(value)
    return size


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
                   sha: str) -> pa.Table:
    """The ``examples`` rows, all from the source file ``sha``, as an Arrow table."""
    n = len(rows)
    cols: dict[str, pa.Array] = {
        "id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        "dataset_id": pa.array(np.full(n, dataset_id, dtype=np.int32)),
        "source_sha256": pa.array([sha] * n, pa.string()),
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


def steps_table(path: Path, rows: list[Row], first_id: int, widths: dict[str, int]) -> pa.Table:
    """The ``demo_steps`` rows: one per observation, NULL action after the last
    action. ``widths`` carries the obs/acts widths of the file's earlier chunks."""
    obs_parts = [np.asarray(r["obs"], dtype=np.float32) for r in rows]
    message = "observations must be 2-D with one width across the file"
    if any(o.ndim != 2 for o in obs_parts):
        raise InputError(str(path), message, field="obs")
    width = _one_width(path, widths, "obs", {o.shape[1] for o in obs_parts}, message)
    lengths = np.array([len(o) for o in obs_parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total = int(lengths.sum())
    obs_all = np.concatenate(obs_parts)
    obs_arr = pa.FixedSizeListArray.from_arrays(pa.array(obs_all.ravel()), width)
    return pa.table({
        "example_id": pa.array(np.repeat(np.arange(first_id, first_id + len(rows)), lengths)),
        "step": pa.array((np.arange(total) - np.repeat(offsets, lengths)).astype(np.int32)),
        "obs": obs_arr.cast(pa.list_(pa.float32())),
        "action": _actions(path, rows, offsets, total, widths),
    })


def _one_width(path: Path, widths: dict[str, int], field: str, found: set[int],
               message: str) -> int:
    """The single width of ``field`` in this chunk and the file's earlier ones."""
    found = found | ({widths[field]} if field in widths else set())
    if len(found) != 1:
        raise InputError(str(path), message, field=field)
    widths[field] = found.pop()
    return widths[field]


def _actions(path: Path, rows: list[Row], offsets: np.ndarray, total: int,
             widths: dict[str, int]) -> pa.Array:
    acts = [None if r.get("acts") is None else np.asarray(r["acts"], dtype=np.float64)
            for r in rows]
    acts = [a.reshape(len(a), -1) if a is not None and len(a) else None for a in acts]
    found = {a.shape[1] for a in acts if a is not None}
    if not found:
        return pa.nulls(total, pa.list_(pa.float64()))
    width = _one_width(path, widths, "acts", found,
                       "actions must have one width across the file")
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
