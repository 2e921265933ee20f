"""Importing the real data sets, provenance, duplicates, format detection and
the importer registry."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from workstation.datasets import (
    IMPORTERS, Importer, ReadResult, detect_format, import_dataset, register_importer)
from workstation.errors import InputError, WorkstationError
from workstation.hashing import sha256_file
from workstation.progress import Progress


def _rows(ws, sql, params=None):
    return ws.execute(sql, params).fetchall() if params is not None else ws.execute(sql).fetchall()


# -- HH-RLHF ---------------------------------------------------------------

def test_hh_rlhf_counts_split_and_provenance(ws, hh_rlhf_path):
    report = import_dataset(ws, "pairs", hh_rlhf_path, "hh")
    assert (report.format, report.kind, report.imported, report.skipped) == ("hh-rlhf", "pairs", 2312, 0)
    sha = sha256_file(hh_rlhf_path)
    assert report.source_sha256 == sha
    assert any(note.startswith("5 records did not split") for note in report.notes)
    whole = _rows(ws, "SELECT source_index, prompt, chosen FROM examples "
                      "WHERE json_extract(meta, '$.split') = 'false' ORDER BY 1")
    assert len(whole) == 5
    assert all(prompt == "" and chosen.startswith("\n\nHuman:") for _, prompt, chosen in whole)
    assert _rows(ws, "SELECT count(*) FROM examples WHERE prompt LIKE '%\n\nAssistant:'") == [(2307,)]
    assert _rows(ws, "SELECT min(source_index), max(source_index), count(DISTINCT source_index), "
                     "count(DISTINCT source_sha256), min(source_sha256) FROM examples") == \
        [(0, 2311, 2312, 1, sha)]

    with gzip.open(hh_rlhf_path, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    for index in (0, 17, 1254, 2311):  # 1254 is one of the whole ones
        prompt, chosen, rejected, source_id = _rows(
            ws, "SELECT prompt, chosen, rejected, source_id FROM examples WHERE source_index = ?",
            [index])[0]
        assert prompt + chosen == records[index]["chosen"]
        assert prompt + rejected == records[index]["rejected"]
        assert source_id is None  # HH-RLHF records carry no id

    ds = _rows(ws, "SELECT name, kind, format, source_sha256, n_examples, report FROM datasets")[0]
    assert ds[:5] == ("hh", "pairs", "hh-rlhf", sha, 2312)
    assert json.loads(ds[5])["imported"] == 2312
    assert _rows(ws, "SELECT sha256, format FROM sources") == [(sha, "hh-rlhf")]


# -- JailbreakBench --------------------------------------------------------

def _jbb_truth(folder: Path) -> dict:
    """What is really in the files, counted independently of the importer."""
    kept, null, empty, categories, unsafe = 0, 0, 0, set(), 0
    for path in sorted(folder.glob("*.json")):
        for rec in json.loads(path.read_text(encoding="utf-8"))["jailbreaks"]:
            categories.add(rec["category"])
            if rec["response"] is None:
                null += 1
            elif not rec["response"].strip():
                empty += 1
            else:
                kept += 1
                unsafe += rec["jailbroken"]
    return {"kept": kept, "null": null, "empty": empty, "categories": len(categories),
            "unsafe": unsafe}


def test_jailbreakbench_folder_counts_labels_categories(ws, jailbreakbench_dir):
    truth = _jbb_truth(jailbreakbench_dir)
    # the README's figures, checked against what the files really hold
    assert truth == {"kept": 1637, "null": 163, "empty": 0, "categories": 10, "unsafe": 937}
    report = import_dataset(ws, "labels", jailbreakbench_dir, "jbb")
    assert report.format == "jailbreakbench"
    assert (report.imported, report.skipped) == (1637, 163)
    assert report.skipped_reasons == {"null response": 163}
    assert len(report.sources) == 18 and sum(s["imported"] for s in report.sources) == 1637
    assert _rows(ws, "SELECT label, count(*) FROM examples GROUP BY 1 ORDER BY 1") == \
        [(False, 937), (True, 700)]
    cats = _rows(ws, "SELECT category, count(*) FROM examples GROUP BY 1")
    assert len(cats) == 10
    assert _rows(ws, "SELECT count(DISTINCT source_sha256) FROM examples") == [(18,)]
    assert _rows(ws, "SELECT count(*) FROM sources") == [(18,)]


def test_jailbreakbench_provenance_spot_checks(ws, jailbreakbench_dir):
    import_dataset(ws, "labels", jailbreakbench_dir, "jbb")
    for name, position in (("PAIR_gpt-4-0125-preview.json", 3), ("GCG_vicuna-13b-v1.5.json", 99),
                           ("JBC_gpt-3.5-turbo-1106.json", 0)):
        path = jailbreakbench_dir / name
        records = json.loads(path.read_text(encoding="utf-8"))["jailbreaks"]
        rec = records[position]
        assert rec["response"]  # the spots chosen have a response
        got = _rows(ws, "SELECT prompt, response, label, category, source_id, meta FROM examples "
                        "WHERE source_sha256 = ? AND source_index = ?",
                    [sha256_file(path), position])
        assert len(got) == 1
        prompt, response, label, category, source_id, meta = got[0]
        assert (prompt, response, category) == (rec["prompt"], rec["response"], rec["category"])
        assert label is (not rec["jailbroken"])
        assert source_id == str(rec["index"])
        meta = json.loads(meta)
        assert meta["file"] == name and meta["goal"] == rec["goal"]


def test_jailbreakbench_single_file_and_goal_fallback(ws, tmp_path):
    doc = {"parameters": {"method": "X", "model": "m"}, "jailbreaks": [
        {"index": 7, "goal": "g0", "category": "Privacy", "prompt": None, "response": "r0",
         "jailbroken": True},
        {"index": 8, "goal": "g1", "category": "Privacy", "prompt": "p1", "response": "",
         "jailbroken": False},
        {"index": 9, "goal": "g2", "category": "Privacy", "prompt": "p2", "response": None,
         "jailbroken": False}]}
    path = tmp_path / "X_m.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert detect_format("labels", path) == "jailbreakbench"
    report = import_dataset(ws, "labels", path, "one")
    assert report.imported == 1
    assert report.skipped_reasons == {"empty response": 1, "null response": 1}
    assert _rows(ws, "SELECT prompt, label, source_id, source_index FROM examples") == \
        [("g0", False, "7", 0)]


# -- CartPole --------------------------------------------------------------

def test_cartpole_trajectories_and_steps(ws, cartpole_path, monkeypatch):
    touched: list[str] = []
    original = np.lib.npyio.NpzFile.__getitem__

    def spy(self, key):
        touched.append(key)
        return original(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", spy)
    report = import_dataset(ws, "demos", cartpole_path, "cartpole")
    assert "infos" not in touched and {"obs", "acts", "indices"} <= set(touched)
    assert (report.format, report.imported, report.skipped) == ("imitation-npz", 57, 0)
    assert _rows(ws, "SELECT count(*), sum(n_steps) FROM examples") == [(57, 26964)]
    assert _rows(ws, "SELECT count(*), count(action), count(*) - count(action) FROM demo_steps") == \
        [(27021, 26964, 57)]

    monkeypatch.undo()
    with np.load(cartpole_path, allow_pickle=False) as z:
        obs, acts, indices, rews = z["obs"], z["acts"], z["indices"], z["rews"]
    obs_parts = np.split(obs, indices + np.arange(len(indices)) + 1)
    act_parts = np.split(acts, indices)
    returns = [float(r.sum()) for r in np.split(rews, indices)]
    assert 393 <= min(returns) and max(returns) <= 500
    for t in (0, 5, 56):
        eid, n_steps, meta, sha = _rows(ws, "SELECT id, n_steps, meta, source_sha256 FROM examples "
                                            "WHERE source_index = ?", [t])[0]
        assert sha == sha256_file(cartpole_path)
        assert n_steps == len(act_parts[t])
        assert json.loads(meta)["return"] == pytest.approx(returns[t])
        steps = _rows(ws, "SELECT step, obs, action FROM demo_steps WHERE example_id = ? "
                          "ORDER BY step", [eid])
        assert [s[0] for s in steps] == list(range(len(obs_parts[t])))
        np.testing.assert_array_equal(np.array([s[1] for s in steps], dtype=np.float32), obs_parts[t])
        assert [s[2] for s in steps[:-1]] == [[float(a)] for a in act_parts[t]]
        assert steps[-1][2] is None  # the final observation has no action


# -- duplicates, names, detection ------------------------------------------

def _pairs_file(path: Path, n: int = 3, offset: int = 0) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"})
                            + "\n" for i in range(offset, offset + n)), encoding="utf-8")
    return path


def test_duplicate_file_refused_naming_dataset(ws, tmp_path):
    first = _pairs_file(tmp_path / "a.jsonl")
    import_dataset(ws, "pairs", first, "alpha")
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(first.read_bytes())
    with pytest.raises(WorkstationError, match=r"already imported as dataset 'alpha'"):
        import_dataset(ws, "pairs", copy, "beta")
    with pytest.raises(WorkstationError, match=r"named 'alpha' already exists"):
        import_dataset(ws, "pairs", _pairs_file(tmp_path / "b.jsonl", offset=10), "alpha")
    assert _rows(ws, "SELECT count(*) FROM datasets") == [(1,)]


def test_file_from_imported_folder_refused(ws, jailbreakbench_dir):
    import_dataset(ws, "labels", jailbreakbench_dir, "jbb")
    with pytest.raises(WorkstationError, match=r"already imported as dataset 'jbb'"):
        import_dataset(ws, "labels", jailbreakbench_dir / "GCG_gpt-4-0125-preview.json", "again")


def test_detect_format(tmp_path, hh_rlhf_path, jailbreakbench_dir, cartpole_path):
    assert detect_format("pairs", hh_rlhf_path) == "hh-rlhf"
    assert detect_format("labels", jailbreakbench_dir) == "jailbreakbench"
    assert detect_format("labels", jailbreakbench_dir / "DSN_vicuna-13b-v1.5.json") == "jailbreakbench"
    assert detect_format("demos", cartpole_path) == "imitation-npz"
    trl = _pairs_file(tmp_path / "t.jsonl")
    assert detect_format("pairs", trl) == "trl-jsonl"
    assert detect_format("labels", trl) == "labels-jsonl"
    assert detect_format("demos", trl) == "demos-jsonl"
    (tmp_path / "t.csv").write_text("prompt,chosen,rejected\na,b,c\n")
    assert detect_format("pairs", tmp_path / "t.csv") == "trl-csv"
    assert detect_format("labels", tmp_path / "t.csv") == "labels-csv"
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    assert detect_format("pairs", tmp_path / "t.parquet") == "trl-parquet"
    assert detect_format("labels", tmp_path / "t.parquet") == "labels-parquet"
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(InputError, match=r"t\.txt: cannot tell which pairs format"):
        detect_format("pairs", tmp_path / "t.txt")
    with pytest.raises(WorkstationError, match="unknown dataset kind"):
        detect_format("images", trl)


def test_wrong_format_for_kind_and_unknown_format(ws, tmp_path):
    path = _pairs_file(tmp_path / "a.jsonl")
    with pytest.raises(WorkstationError, match="holds labels, not pairs"):
        import_dataset(ws, "pairs", path, "x", format="labels-jsonl")
    with pytest.raises(WorkstationError, match="unknown format 'nope'"):
        import_dataset(ws, "pairs", path, "x", format="nope")


def test_trl_formats_and_extras(ws, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "blank.jsonl"
    path.write_text('\n{"id": "a1", "prompt": "p", "chosen": "c", "rejected": "r", "score": 0.5}\n'
                    '   \n{"chosen": "c2", "rejected": "r2", "tags": ["x"]}\n', encoding="utf-8")
    report = import_dataset(ws, "pairs", path, "blank")
    assert report.notes == ["1 records had non-scalar extra fields that were not kept"]
    # source_index counts non-blank lines; a missing prompt is stored as ""
    assert _rows(ws, "SELECT source_index, source_id, prompt, meta FROM examples ORDER BY id") == \
        [(0, "a1", "p", '{"extra":{"score":0.5}}'), (1, None, "", None)]
    pq.write_table(pa.table({"prompt": ["p"], "chosen": ["c"], "rejected": ["r"]}),
                   tmp_path / "x.parquet")
    assert import_dataset(ws, "pairs", tmp_path / "x.parquet", "pq").imported == 1
    (tmp_path / "x.csv").write_text('prompt,chosen,rejected,id\n"multi\nline","c,1","r ""q"""'
                                    ',9\n', encoding="utf-8")
    assert import_dataset(ws, "pairs", tmp_path / "x.csv", "csv").imported == 1
    assert _rows(ws, "SELECT prompt, chosen, rejected, source_id FROM examples "
                     "WHERE dataset_id = 3") == [("multi\nline", "c,1", 'r "q"', "9")]


def test_labels_accepts_label_spellings(ws, tmp_path):
    lines = [{"prompt": "p", "response": f"r{i}", "label": lab, "category": cat}
             for i, (lab, cat) in enumerate([("safe", "A"), ("UNSAFE", None), (1, ""), (0, "B"),
                                             (True, "B"), (False, "B"), ("1", "B"), ("0", "B")])]
    lines.append({"prompt": "p", "response": None, "label": "safe"})
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    report = import_dataset(ws, "labels", path, "labels")
    assert (report.imported, report.skipped_reasons) == (8, {"null response": 1})
    assert [r[0] for r in _rows(ws, "SELECT label FROM examples ORDER BY id")] == \
        [True, False, True, False, True, False, True, False]
    assert [r[0] for r in _rows(ws, "SELECT category FROM examples ORDER BY id")][:3] == \
        ["A", None, None]


def test_demos_jsonl(ws, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"id": "t0", "obs": [[0, 1], [2, 3], [4, 5]], "acts": [1, 0]}) + "\n"
                    + json.dumps({"obs": [[1.5, 2.5], [3.5, 4.5]]}) + "\n", encoding="utf-8")
    report = import_dataset(ws, "demos", path, "d")
    assert (report.format, report.imported) == ("demos-jsonl", 2)
    assert _rows(ws, "SELECT source_id, n_steps FROM examples ORDER BY id") == [("t0", 2), (None, 1)]
    assert _rows(ws, "SELECT step, obs, action FROM demo_steps ORDER BY example_id, step") == [
        (0, [0.0, 1.0], [1.0]), (1, [2.0, 3.0], [0.0]), (2, [4.0, 5.0], None),
        (0, [1.5, 2.5], None), (1, [3.5, 4.5], None)]


def test_user_importer_registers_and_is_detected_first(ws, tmp_path):
    def read(path, progress):
        for i, line in enumerate(path.read_text().splitlines()):
            prompt, chosen, rejected = line.split("|")
            yield {"source_index": i, "prompt": prompt, "chosen": chosen, "rejected": rejected}

    importer = Importer("pipe-pairs", "pairs", lambda p: p.read_text().count("|") >= 2, read)
    register_importer(importer)
    try:
        with pytest.raises(WorkstationError, match="already registered"):
            register_importer(importer)
        path = tmp_path / "p.jsonl"  # a .jsonl name: the user's sniffer is asked first
        path.write_text("a|b|c\nd|e|f\n")
        assert detect_format("pairs", path) == "pipe-pairs"
        report = import_dataset(ws, "pairs", path, "piped")
        assert (report.format, report.imported) == ("pipe-pairs", 2)
        assert isinstance(ReadResult([]), ReadResult)
    finally:
        IMPORTERS.pop("pipe-pairs", None)
    assert detect_format("pairs", path) == "trl-jsonl"


def test_progress_is_reported(ws, hh_rlhf_path):
    seen: list[tuple[str, int, int]] = []
    import_dataset(ws, "pairs", hh_rlhf_path, "hh", progress=Progress(lambda *a: seen.append(a)))
    reading = [s for s in seen if s[0].startswith("reading")]
    assert reading and reading[-1][1] == reading[-1][2] == hh_rlhf_path.stat().st_size
    assert any(s[0].startswith("writing") for s in seen)
