"""Import in chunks: the importer never holds more than one chunk of a file,
a file split into many chunks gives exactly the rows of one chunk, and an
error or a cancel in a late chunk still leaves the workspace unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import test_bad_input
from tests.test_bad_input import snapshot
from workstation.datasets import (
    IMPORTERS, Importer, import_dataset, labels, register_importer, store)
from workstation.errors import Cancelled, InputError
from workstation.progress import Progress
from workstation.workspace import Workspace

CHUNK = 7  # rows per chunk in these tests; the files hold many times more
seeded = test_bad_input.seeded  # a workspace that already holds a pairs and a demos dataset


def _labels_records(n: int) -> list[dict]:
    """Labeled responses with every kind of row: kept, skipped (null
    response), with extras kept and extras dropped."""
    return [{"id": f"r{i}", "prompt": f"prompt {i}" if i % 5 else None,
             "response": None if i % 11 == 3 else f"response {i} ✓",
             "label": ["safe", "unsafe", 1, 0, True][i % 5],
             "category": f"Category {i % 4}" if i % 3 else None,
             "score": i / 7, "tags": ["x"] if i % 13 == 0 else "y"} for i in range(n)]


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _labels_jsonl(tmp_path: Path) -> Path:
    return _write_jsonl(tmp_path / "labels.jsonl", _labels_records(100))


def _pairs_csv(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.csv"
    lines = ["id,prompt,chosen,rejected"] + [f'{i},"p{i}\nsecond line",c{i},r{i}'
                                             for i in range(60)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _labels_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"prompt": [f"p{i}" for i in range(60)],
                             "response": [None if i == 30 else f"r{i}" for i in range(60)],
                             "label": [i % 2 for i in range(60)]}), path, row_group_size=16)
    return path


def _demos_jsonl(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    records = []
    for i in range(40):
        steps = 2 + i % 4
        rec = {"id": f"t{i}", "obs": rng.standard_normal((steps + 1, 3)).round(3).tolist()}
        if i % 6:
            rec["acts"] = [int(a) for a in rng.integers(0, 2, steps)]
        records.append(rec)
    return _write_jsonl(tmp_path / "demos.jsonl", records)


SOURCES = {"labels-jsonl": ("labels", _labels_jsonl), "trl-csv": ("pairs", _pairs_csv),
           "labels-parquet": ("labels", _labels_parquet), "demos-jsonl": ("demos", _demos_jsonl)}


def _contents(ws: Workspace) -> dict:
    return {"examples": ws.execute("SELECT * FROM examples ORDER BY id").fetchall(),
            "steps": ws.execute("SELECT * FROM demo_steps ORDER BY example_id, step").fetchall()}


def _count_inserts(monkeypatch) -> list[int]:
    """The sizes of the ``examples`` inserts from now on."""
    sizes: list[int] = []
    insert = store.insert_examples

    def counting(ws, data):
        sizes.append(len(data))
        insert(ws, data)

    monkeypatch.setattr(store, "insert_examples", counting)
    return sizes


EARLIER = {"pairs": {"prompt": "p", "chosen": "c", "rejected": "r"},
           "labels": {"prompt": "p", "response": "r", "label": 1},
           "demos": {"obs": [[0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]]}}


def _import_into(folder: Path, name: str, kind: str, path: Path,
                 inserts: list[int]) -> tuple[dict, dict]:
    """Import ``path`` into a fresh workspace that already holds a dataset
    (so that ids do not start at 1): its report and its tables."""
    with Workspace.open(folder / f"{name}.duckdb") as ws:
        earlier = _write_jsonl(folder / f"{name}-earlier.jsonl", [EARLIER[kind]])
        import_dataset(ws, kind, earlier, "earlier")
        inserts.clear()
        report = import_dataset(ws, kind, path, "data").to_json()
        return report, _contents(ws)


def _same_in_one_chunk_and_many(folder: Path, monkeypatch, kind: str, path: Path,
                                chunk: int = CHUNK) -> int:
    """Import ``path`` in one chunk and in chunks of ``chunk`` rows: the
    reports and the tables must be identical. Returns the number of chunks."""
    inserts = _count_inserts(monkeypatch)
    one = _import_into(folder, "one", kind, path, inserts)
    assert len(inserts) == len(one[0]["sources"])  # one chunk per file
    monkeypatch.setattr(store, "CHUNK_ROWS", chunk)
    many = _import_into(folder, "many", kind, path, inserts)
    assert many == one
    assert max(inserts) <= chunk and sum(inserts) == one[0]["imported"]
    return len(inserts)


@pytest.mark.parametrize("fmt", SOURCES)
def test_many_chunks_give_the_rows_of_one(tmp_path, monkeypatch, fmt):
    kind, make = SOURCES[fmt]
    assert _same_in_one_chunk_and_many(tmp_path, monkeypatch, kind, make(tmp_path)) > 5


@pytest.mark.parametrize("kind,data,chunk", [("pairs", "hh_rlhf_path", 100),
                                             ("labels", "jailbreakbench_dir", 100),
                                             ("demos", "cartpole_path", CHUNK)])
def test_many_chunks_of_real_data(tmp_path, monkeypatch, request, kind, data, chunk):
    path = request.getfixturevalue(data)
    assert _same_in_one_chunk_and_many(tmp_path, monkeypatch, kind, path, chunk) > 5


def test_chunks_also_bound_bytes(monkeypatch):
    monkeypatch.setattr(store, "CHUNK_BYTES", 1000)
    rows = [{"source_index": i, "response": "x" * 300} for i in range(10)]
    assert [len(c) for c in store.chunks(rows)] == [4, 4, 2]


def test_reader_is_never_more_than_a_chunk_ahead(seeded, tmp_path, monkeypatch):
    """Each chunk is written before the next is parsed, so memory is bounded
    by the chunk, not by the file."""
    monkeypatch.setattr(store, "CHUNK_ROWS", CHUNK)
    parsed, written = [0], [0]
    label_row, insert = labels.label_row, store.insert_examples

    def parse(*args):
        parsed[0] += 1
        return label_row(*args)

    def write(ws, data):
        assert parsed[0] - written[0] == len(data) <= CHUNK  # nothing read ahead
        written[0] += len(data)
        insert(ws, data)

    monkeypatch.setattr(labels, "label_row", parse)
    monkeypatch.setattr(store, "insert_examples", write)
    records = [r for r in _labels_records(100) if r["response"] is not None]
    report = import_dataset(seeded, "labels", _write_jsonl(tmp_path / "x.jsonl", records), "x")
    assert report.imported == written[0] == parsed[0] == len(records)


def test_error_in_the_last_chunk_leaves_the_workspace_unchanged(seeded, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "CHUNK_ROWS", CHUNK)
    inserts = _count_inserts(monkeypatch)
    records = _labels_records(100)
    records[-1] = {**records[-1], "response": "r", "label": "maybe"}
    before = snapshot(seeded)
    with pytest.raises(InputError, match=r"x\.jsonl, line 100, field 'label': label 'maybe'"):
        import_dataset(seeded, "labels", _write_jsonl(tmp_path / "x.jsonl", records), "x")
    assert len(inserts) > 10  # the earlier chunks were written, then rolled back
    assert snapshot(seeded) == before
    records[-1]["label"] = "safe"  # the fixed file takes the ids the failed one had
    first = seeded.execute("SELECT max(id) + 1 FROM examples").fetchone()[0]
    import_dataset(seeded, "labels", _write_jsonl(tmp_path / "fixed.jsonl", records), "x")
    assert seeded.execute("SELECT min(e.id), d.id FROM examples e JOIN datasets d "
                          "ON d.id = e.dataset_id WHERE d.name = 'x' GROUP BY d.id"
                          ).fetchone() == (first, 3)


def test_cancel_between_chunks_leaves_the_workspace_unchanged(seeded, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "CHUNK_ROWS", CHUNK)
    progress = Progress()
    insert, written = store.insert_examples, [0]

    def write(ws, data):
        insert(ws, data)
        written[0] += 1
        if written[0] == 3:  # the analyst presses Cancel while the third chunk is written
            progress.cancel()

    monkeypatch.setattr(store, "insert_examples", write)
    before = snapshot(seeded)
    with pytest.raises(Cancelled):
        import_dataset(seeded, "labels", _labels_jsonl(tmp_path), "x", progress=progress)
    assert written[0] == 3
    assert snapshot(seeded) == before


def test_width_of_observations_is_checked_across_chunks(seeded, tmp_path, monkeypatch):
    """A third-party demos importer whose widths change only in a later chunk."""
    def read(path, progress):
        for i in range(3 * CHUNK):
            width = 2 if i < 2 * CHUNK else 3
            yield {"source_index": i, "obs": np.zeros((2, width)), "acts": None, "n_steps": 1}

    monkeypatch.setattr(store, "CHUNK_ROWS", CHUNK)
    register_importer(Importer("widths-demo", "demos", lambda p: False, read))
    try:
        path = tmp_path / "w.demo"
        path.write_text("anything")
        before = snapshot(seeded)
        with pytest.raises(InputError, match="one width across the file"):
            import_dataset(seeded, "demos", path, "w", format="widths-demo")
        assert snapshot(seeded) == before
    finally:
        IMPORTERS.pop("widths-demo", None)
