"""A scale run reads clean Parquet batches column-wise: the rows must be the
ones the importer's per-record rules give, and any batch the column rules
cannot decide goes through the per-record rules (which name bad rows)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workstation.cluster import inputs as corpus
from workstation.cluster.columnwise import to_table


def per_record(path, fmt, rows: int):
    """The rows as the per-record rules make them (no column-wise path)."""
    out = []
    for records, _ in corpus.read_parquet_batches(path, fmt, rows):
        out.extend(corpus.records_table(str(path), records).to_pylist())
    return out


def scale_rows(path, fmt, rows: int):
    unit = corpus.WorkUnit(str(path), None, 0, True)
    return [r for block in corpus.unit_blocks(unit, fmt, rows) for r in block.to_pylist()]


LABELS = {
    "response": ["fine", "bad", "ok", "x"],
    "prompt": ["p", None, "", "q"],
    "label": [True, False, True, False],
    "category": ["a", "", None, "b"],
    "id": ["s1", "", None, "s4"],
    "index": [10, 11, None, 13],
}
PAIRS = {
    "prompt": ["p", None, "r", ""],
    "chosen": ["c1", "c2", "c3", "c4"],
    "rejected": ["r1", "r2", "r3", "r4"],
    "id": [1, 2, None, 4],
}


@pytest.mark.parametrize("kind, columns", [
    ("labels-parquet", LABELS),
    ("labels-parquet", {**LABELS, "label": [1, 0, 1, 1]}),
    ("labels-parquet", {k: v for k, v in LABELS.items() if k not in ("id", "prompt")}),
    ("trl-parquet", PAIRS),
    ("trl-parquet", {k: v for k, v in PAIRS.items() if k != "id"}),
])
def test_clean_batches_read_column_wise_give_the_importers_rows(tmp_path, kind, columns):
    path = tmp_path / "part.parquet"
    pq.write_table(pa.table(columns), path)
    fmt = corpus.FORMATS[kind]
    batch = next(pq.ParquetFile(path).iter_batches())
    assert to_table(batch, fmt.kind, str(path), 0, corpus.SCHEMA) is not None  # the fast path
    assert scale_rows(path, fmt, 3) == per_record(path, fmt, 3)


@pytest.mark.parametrize("change, reason", [
    ({"response": ["fine", None, "ok", "x"]}, "null response"),
    ({"label": ["safe", "unsafe", "maybe", "safe"]}, "label 'maybe'"),
    ({"label": [1, 0, 2, 1]}, "label 2"),
    ({"id": [1.5, 2.0, None, 4.0]}, None),
    ({"category": [1, 2, 3, 4]}, "expected a string or null"),
])
def test_batches_the_column_rules_cannot_decide_take_the_per_record_rules(tmp_path, change,
                                                                           reason):
    path = tmp_path / "part.parquet"
    pq.write_table(pa.table({**LABELS, **change}), path)
    fmt = corpus.FORMATS["labels-parquet"]
    batch = next(pq.ParquetFile(path).iter_batches())
    assert to_table(batch, fmt.kind, str(path), 0, corpus.SCHEMA) is None
    rows = scale_rows(path, fmt, 10)
    assert rows == per_record(path, fmt, 10)
    errors = [r["error"] for r in rows if r["error"]]
    if reason:
        assert errors and reason in errors[0]
    else:
        assert not errors and [r["source_id"] for r in rows][:2] == ["10", "2"]  # 1.5: no id


def test_row_indexes_run_on_across_batches_and_row_groups(tmp_path):
    path = tmp_path / "part.parquet"
    n = 1000
    pq.write_table(pa.table({"response": [f"t{i}" for i in range(n)],
                             "label": [i % 3 == 0 for i in range(n)]}), path,
                   row_group_size=300)
    fmt = corpus.FORMATS["labels-parquet"]
    rows = scale_rows(path, fmt, 128)
    assert [r["row_index"] for r in rows] == list(range(n))
    assert rows == per_record(path, fmt, 128)
