"""The importers' record rules applied to a whole Parquet batch at once, for
the batches where they reduce to column operations.

A scale run reads millions of rows; the per-record rules (``label_row``,
``trl_row``) cost more than scoring pre-embedded rows. When a batch's
columns have the types those rules accept as they are (strings, a boolean or
0/1 integer label, string or integer ids) and no required value is null, the
rules are: a null prompt is "", an empty category is none, the source id is
the first non-empty of ``id`` and ``index``. ``to_table`` computes exactly
that with Arrow; any other batch returns None and goes through the
per-record rules, which also name each bad row's reason.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# The columns each kind needs, and the optional ones the rules read.
REQUIRED = {"labels": ("response", "label"), "pairs": ("chosen", "rejected")}
ID_KEYS = ("id", "index")


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def to_table(batch: pa.RecordBatch, kind: str, source_file: str, first_index: int,
             schema: pa.Schema) -> pa.Table | None:
    """The batch as rows of ``schema`` (see the module docstring), or None
    when a column's type or a null needs the per-record rules."""
    names = set(batch.schema.names)
    if any(n not in names for n in REQUIRED[kind]):
        return None
    required = [batch.column(n) for n in REQUIRED[kind]]
    if any(c.null_count for c in required):
        return None
    texts = [n for n in REQUIRED[kind] if n != "label"] + ["prompt"] + (
        ["category"] if kind == "labels" else [])
    if any(n in names and not _is_text(batch.schema.field(n).type) for n in texts):
        return None
    label = _label(batch.column("label")) if kind == "labels" else None
    if kind == "labels" and label is None:
        return None
    source_id = _source_id(batch, names)
    if source_id is False:
        return None
    n = batch.num_rows
    nulls = pa.nulls(n, pa.string())

    def text(name: str) -> pa.Array:
        return pc.cast(batch.column(name), pa.string()) if name in names else nulls

    prompt = pc.fill_null(text("prompt"), "") if "prompt" in names else pa.array([""] * n)
    columns: dict[str, Any] = {
        "source_file": pa.array([source_file] * n, pa.string()),
        "row_index": pa.array(range(first_index, first_index + n), pa.int64()),
        "source_id": source_id if source_id is not None else nulls,
        "prompt": prompt,
        "chosen": text("chosen") if kind == "pairs" else nulls,
        "rejected": text("rejected") if kind == "pairs" else nulls,
        "response": text("response") if kind == "labels" else nulls,
        "label": label if label is not None else pa.nulls(n, pa.bool_()),
        "category": _empty_is_none(text("category")) if kind == "labels" else nulls,
        "error": nulls}
    return pa.table(columns, schema=schema)


def _label(column: pa.Array) -> pa.Array | None:
    """A boolean label column, or 0/1 integers as booleans; else None."""
    if pa.types.is_boolean(column.type):
        return column
    if pa.types.is_integer(column.type):
        if pc.all(pc.is_in(column, pa.array([0, 1], column.type))).as_py():
            return pc.not_equal(column, pa.scalar(0, column.type))
    return None


def _source_id(batch: pa.RecordBatch, names: set[str]) -> pa.Array | None | bool:
    """The first non-empty of ``id`` and ``index`` as text (None: neither
    column; False: a column whose type needs the per-record rules)."""
    found = None
    for key in ID_KEYS:
        if key not in names:
            continue
        column = batch.column(key)
        if _is_text(column.type):
            value = _empty_is_none(pc.cast(column, pa.string()))
        elif pa.types.is_integer(column.type):
            value = pc.cast(column, pa.string())
        elif pa.types.is_null(column.type):
            continue
        else:
            return False
        found = value if found is None else pc.coalesce(found, value)
    return found


def _empty_is_none(column: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
