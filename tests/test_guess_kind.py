"""Guessing a dataset file's kind before importing it (``datasets.guess``):
from the first record's fields, the columns, or the format."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workstation.datasets.guess import guess_kind, kind_of_fields


def _jsonl(path, records, opener=open):
    with opener(path, "wt") as out:
        out.write("\n".join(json.dumps(r) for r in records) + "\n")
    return path


@pytest.mark.parametrize("record, kind", [
    ({"prompt": "p", "chosen": "a", "rejected": "b"}, "pairs"),
    ({"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "..."}, "pairs"),  # HH-RLHF
    ({"prompt": "p", "response": "r", "label": "safe"}, "labels"),
    ({"prompt": "p", "response": "r"}, "labels"),
    ({"obs": [[0.0, 1.0]], "acts": [0]}, "demos"),
    ({"prompt": "p", "answer": "a"}, None),
])
def test_the_first_record_says_the_kind(tmp_path, record, kind):
    assert guess_kind(_jsonl(tmp_path / "d.jsonl", [record, {"other": 1}])) == kind


def test_gzip_csv_and_parquet_are_read_by_their_fields(tmp_path):
    gz = _jsonl(tmp_path / "d.jsonl.gz", [{"prompt": "p", "response": "r", "label": 1}],
                gzip.open)
    assert guess_kind(gz) == "labels"
    csv = tmp_path / "pairs.csv"
    csv.write_text("prompt,chosen,rejected\np,a,b\n")
    assert guess_kind(csv) == "pairs"
    table = pa.table({"prompt": ["p"], "response": ["r"], "label": [True]})
    pq.write_table(table, tmp_path / "labels.parquet")
    assert guess_kind(tmp_path / "labels.parquet") == "labels"


def test_formats_that_name_their_kind(tmp_path, jailbreakbench_dir, cartpole_path):
    assert guess_kind(cartpole_path) == "demos"
    assert guess_kind(jailbreakbench_dir) == "labels"  # a folder of artifacts
    assert guess_kind(next(jailbreakbench_dir.glob("GCG_*.json"))) == "labels"
    np.savez(tmp_path / "any.npz", obs=np.zeros((2, 3)))
    assert guess_kind(tmp_path / "any.npz") == "demos"


def test_hh_rlhf_is_pairs(hh_rlhf_path):
    assert guess_kind(hh_rlhf_path) == "pairs"


def test_what_does_not_say_is_none(tmp_path):
    assert guess_kind(tmp_path / "missing.jsonl") is None
    (tmp_path / "empty.jsonl").write_text("")
    assert guess_kind(tmp_path / "empty.jsonl") is None
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    assert guess_kind(tmp_path / "broken.jsonl") is None
    (tmp_path / "notes.txt").write_text("prompt,chosen,rejected\n")
    assert guess_kind(tmp_path / "notes.txt") is None
    assert kind_of_fields(set()) is None
