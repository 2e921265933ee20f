"""Export as reviewed: round trips through every format, filters, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workstation.datasets import export_dataset, import_dataset
from workstation.errors import WorkstationError
from workstation.hashing import sha256_file

# awkward text: newlines, CRLF, quotes, commas, unicode, empty strings
TEXTS = ["plain", "two\nlines", 'say "hi", ok', "crlf\r\nline", "ünï cödé ✓", "", "a,b,,c", " lead"]


def _pairs_source(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"s{i}", "prompt": TEXTS[i % len(TEXTS)],
                                        "chosen": f"good {TEXTS[(i + 1) % len(TEXTS)]}",
                                        "rejected": f"bad {TEXTS[(i + 2) % len(TEXTS)]}"}) + "\n"
                            for i in range(12)), encoding="utf-8")
    return path


def _labels_source(path: Path) -> Path:
    cats = ["Privacy", None, "Malware/Hacking"]
    path.write_text("".join(json.dumps({"prompt": TEXTS[i % len(TEXTS)], "response": f"r{i} {TEXTS[i % 3]}",
                                        "label": "safe" if i % 3 else "unsafe",
                                        "category": cats[i % 3]}) + "\n"
                            for i in range(12)), encoding="utf-8")
    return path


def _ids(ws, dataset: str) -> list[int]:
    return [r[0] for r in ws.execute("SELECT e.id FROM examples e JOIN datasets d ON d.id = "
                                     "e.dataset_id WHERE d.name = ? ORDER BY e.id", [dataset]).fetchall()]


def _set_state(ws, example_id: int, *, flipped=False, label=None, category=None,
               excluded=False, seq: int = 1) -> None:
    """What review.py would write; inserted directly for these tests."""
    row = ws.execute("SELECT label, category FROM examples WHERE id = ?", [example_id]).fetchone()
    ws.execute("INSERT INTO example_state VALUES (?, ?, ?, ?, []::VARCHAR[], NULL, ?, ?)",
               [example_id, flipped, row[0] if label is None else label,
                row[1] if category is None else category, excluded, seq])


def _current(ws, dataset: str, columns: str) -> list[tuple]:
    return ws.execute(f"SELECT {columns} FROM current_examples c JOIN datasets d ON "
                      f"d.id = c.dataset_id WHERE d.name = ? AND NOT c.excluded ORDER BY c.id",
                      [dataset]).fetchall()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_pairs_round_trip_after_flip(ws, tmp_path, fmt):
    import_dataset(ws, "pairs", _pairs_source(tmp_path / "src.jsonl"), "pairs")
    ids = _ids(ws, "pairs")
    _set_state(ws, ids[2], flipped=True, seq=1)
    _set_state(ws, ids[5], excluded=True, seq=2)
    report = export_dataset(ws, "pairs", fmt, tmp_path / f"out.{fmt}")
    assert report.rows == 11
    again = import_dataset(ws, "pairs", report.path, "again")
    assert again.format == f"trl-{fmt}" and again.imported == 11
    cols = "c.prompt, c.current_chosen, c.current_rejected"
    assert _current(ws, "again", cols) == _current(ws, "pairs", cols)
    flipped = ws.execute("SELECT chosen, rejected FROM examples WHERE id = ?", [ids[2]]).fetchone()
    assert (flipped[1], flipped[0]) in _current(ws, "again", "c.current_chosen, c.current_rejected")
    # provenance came along and is kept in meta.extra on re-import
    meta = json.loads(ws.execute("SELECT meta FROM examples WHERE id = ?",
                                 [_ids(ws, "again")[2]]).fetchone()[0])["extra"]
    assert meta["source_sha256"] == sha256_file(tmp_path / "src.jsonl")
    assert str(meta["source_index"]) == "2" and meta["source_id"] == "s2"


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_labels_round_trip_after_relabel(ws, tmp_path, fmt):
    import_dataset(ws, "labels", _labels_source(tmp_path / "src.jsonl"), "labels")
    ids = _ids(ws, "labels")
    _set_state(ws, ids[0], label=True, category="Expert advice", seq=1)  # was unsafe
    _set_state(ws, ids[4], label=False, seq=2)  # was safe
    report = export_dataset(ws, "labels", fmt, tmp_path / f"out.{fmt}")
    assert report.rows == 12
    again = import_dataset(ws, "labels", report.path, "again")
    assert again.format == f"labels-{fmt}" and again.imported == 12
    cols = "c.prompt, c.response, c.current_label, c.current_category"
    assert _current(ws, "again", cols) == _current(ws, "labels", cols)
    assert _current(ws, "again", "c.label")[0] == (True,)
    assert _current(ws, "again", "c.category")[0] == ("Expert advice",)


def test_real_hh_rlhf_round_trip_csv(ws, tmp_path, hh_rlhf_path):
    import_dataset(ws, "pairs", hh_rlhf_path, "hh")
    report = export_dataset(ws, "hh", "csv", tmp_path / "hh.csv")
    import_dataset(ws, "pairs", report.path, "again")
    cols = "c.prompt, c.current_chosen, c.current_rejected"
    assert _current(ws, "again", cols) == _current(ws, "hh", cols)


def test_excluded_and_reviewed_only_filters(ws, tmp_path):
    import_dataset(ws, "labels", _labels_source(tmp_path / "src.jsonl"), "labels")
    ids = _ids(ws, "labels")
    _set_state(ws, ids[1], excluded=True, seq=1)
    _set_state(ws, ids[3], label=True, seq=2)
    default = export_dataset(ws, "labels", "jsonl", tmp_path / "a.jsonl")
    rows = [json.loads(line) for line in default.path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 11 and 1 not in [r["source_index"] for r in rows]
    assert set(rows[0]) == {"prompt", "response", "label", "category", "source_sha256",
                            "source_index", "source_id"}
    everything = export_dataset(ws, "labels", "jsonl", tmp_path / "b.jsonl", include_excluded=True)
    rows = [json.loads(line) for line in everything.path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 12 and [r["excluded"] for r in rows].count(True) == 1
    reviewed = export_dataset(ws, "labels", "jsonl", tmp_path / "c.jsonl", reviewed_only=True)
    rows = [json.loads(line) for line in reviewed.path.read_text(encoding="utf-8").splitlines()]
    assert [r["source_index"] for r in rows] == [3] and rows[0]["label"] == "safe"
    both = export_dataset(ws, "labels", "csv", tmp_path / "d.csv", reviewed_only=True,
                          include_excluded=True)
    assert both.rows == 2 and both.manifest["filters"] == {"reviewed_only": True,
                                                           "include_excluded": True}


def test_manifest(ws, tmp_path):
    src = _pairs_source(tmp_path / "src.jsonl")
    import_dataset(ws, "pairs", src, "pairs")
    ids = _ids(ws, "pairs")
    for seq, (eid, h) in enumerate([(ids[0], "h1"), (ids[1], "h2")], start=1):
        ws.execute("INSERT INTO review_log (seq, example_id, field, old, new, reason, analyst, "
                   "time, action, target_seq, prev_hash, hash) VALUES (?, ?, 'flipped', "
                   "'false', 'true', 'why', 'me', 't', 'edit', NULL, ?, ?)",
                   [seq, eid, "0" * 64 if seq == 1 else "h1", h])
    report = export_dataset(ws, "pairs", "parquet", tmp_path / "out.parquet")
    manifest = json.loads(report.manifest_path.read_text(encoding="utf-8"))
    assert report.manifest_path == tmp_path / "out.parquet.manifest.json"
    assert manifest == report.manifest
    assert manifest["workspace_id"] == ws.id and ws.id
    assert (manifest["dataset"], manifest["kind"], manifest["format"]) == ("pairs", "pairs", "parquet")
    assert manifest["source_sha256s"] == [sha256_file(src)]
    assert manifest["edits_applied"] == 2 and manifest["review_log_head"] == "h2"
    assert manifest["sha256"] == report.sha256 == sha256_file(report.path)
    assert manifest["rows"] == report.rows == 12
    assert manifest["exported_at"] and manifest["filters"] == {"reviewed_only": False,
                                                               "include_excluded": False}
    # written via a temp file: nothing else is left in the folder
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))) == \
        ["out.parquet", "out.parquet.manifest.json"]


def test_manifest_with_empty_review_log(ws, tmp_path):
    import_dataset(ws, "pairs", _pairs_source(tmp_path / "src.jsonl"), "pairs")
    report = export_dataset(ws, "pairs", "jsonl", tmp_path / "out.jsonl")
    assert report.manifest["edits_applied"] == 0 and report.manifest["review_log_head"] == ""


def test_demos_round_trip(ws, tmp_path, cartpole_path):
    import_dataset(ws, "demos", cartpole_path, "cartpole")
    exclude = _ids(ws, "cartpole")[4]
    _set_state(ws, exclude, excluded=True)
    report = export_dataset(ws, "cartpole", "jsonl", tmp_path / "cp.jsonl")
    assert report.rows == 56
    first = json.loads(report.path.read_text(encoding="utf-8").splitlines()[0])
    assert len(first["obs"]) == len(first["acts"]) + 1 and all(isinstance(a, int) for a in first["acts"])
    again = import_dataset(ws, "demos", report.path, "again")
    assert (again.format, again.imported) == ("demos-jsonl", 56)

    def steps(dataset: str) -> list[tuple]:
        return ws.execute(
            "SELECT e.n_steps, s.step, s.obs, s.action FROM demo_steps s JOIN examples e ON "
            "e.id = s.example_id JOIN datasets d ON d.id = e.dataset_id "
            "WHERE d.name = ? AND e.id <> ? ORDER BY e.id, s.step", [dataset, exclude]).fetchall()

    original, reimported = steps("cartpole"), steps("again")
    excluded_steps = ws.execute("SELECT n_steps + 1 FROM examples WHERE id = ?", [exclude]).fetchone()[0]
    assert len(original) == 27021 - excluded_steps
    assert original == reimported  # float32 observations survive exactly
    assert np.isclose(json.loads(ws.execute("SELECT meta FROM examples WHERE id = ?",
                                            [_ids(ws, "again")[0]]).fetchone()[0])["return"],
                      json.loads(ws.execute("SELECT meta FROM examples WHERE id = ?",
                                            [_ids(ws, "cartpole")[0]]).fetchone()[0])["return"])


def test_refusals(ws, tmp_path):
    demo = tmp_path / "d.jsonl"
    demo.write_text(json.dumps({"obs": [[0.0], [1.0]], "acts": [0]}) + "\n")
    import_dataset(ws, "demos", demo, "demo")
    with pytest.raises(WorkstationError, match="export as jsonl only"):
        export_dataset(ws, "demo", "parquet", tmp_path / "d.parquet")
    with pytest.raises(WorkstationError, match="no dataset named 'nope'.*demo"):
        export_dataset(ws, "nope", "jsonl", tmp_path / "x.jsonl")
    with pytest.raises(WorkstationError, match="unknown export format"):
        export_dataset(ws, "demo", "xlsx", tmp_path / "x.xlsx")
    with pytest.raises(WorkstationError, match="does not exist"):
        export_dataset(ws, "demo", "jsonl", tmp_path / "missing" / "x.jsonl")
    assert not (tmp_path / "d.parquet").exists()


FORMULAS = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\r=1",
            "'=already quoted", "'plain quote", "a = b", "fine"]


def test_csv_cells_a_spreadsheet_would_run_are_neutralised_and_come_back_on_import(ws,
                                                                                   tmp_path):
    import csv
    import shutil

    from workstation.datasets.reading import iter_csv_records
    from workstation.progress import null_progress

    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps({"prompt": text, "response": f"answer {i}",
                                       "label": "safe", "category": "@cat" if i == 0 else None})
                           + "\n" for i, text in enumerate(FORMULAS)), encoding="utf-8")
    import_dataset(ws, "labels", src, "labels")
    report = export_dataset(ws, "labels", "csv", tmp_path / "out.csv")
    with open(report.path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # what a spreadsheet reads: no cell starts with a formula character
    starts = {row[c][:1] for row in rows for c in ("prompt", "response", "category")}
    assert not starts & set("=+-@\t\r")
    assert [row["prompt"] for row in rows][:3] == ["'" + t for t in FORMULAS[:3]]
    assert rows[6]["prompt"] == "''=already quoted" and rows[7]["prompt"] == "'plain quote"
    assert rows[8]["prompt"] == "a = b" and rows[0]["category"] == "'@cat"
    guard = report.manifest["csv_formula_guard"]
    assert guard["prefix"] == "'" and guard["cells"] == {
        "prompt": 7, "response": 0, "label": 0, "category": 1, "source_sha256": 0,
        "source_id": 0}
    assert json.loads(report.manifest_path.read_text())["csv_formula_guard"] == guard
    # the workstation's own import takes the quote off again (its manifest says so)
    import_dataset(ws, "labels", report.path, "again")
    cols = "c.prompt, c.response, c.current_category"
    assert _current(ws, "again", cols) == _current(ws, "labels", cols)
    assert [p for p, *_ in _current(ws, "again", cols)] == FORMULAS
    # a file without its manifest is read as it stands
    bare = tmp_path / "bare" / "out.csv"
    bare.parent.mkdir()
    shutil.copy(report.path, bare)
    _, _, first = next(iter_csv_records(bare, null_progress()))
    assert first["prompt"] == "'" + FORMULAS[0]
    # JSONL and Parquet keep the text as it is, and say nothing of a guard
    plain = export_dataset(ws, "labels", "jsonl", tmp_path / "out.jsonl")
    assert "csv_formula_guard" not in plain.manifest
    assert json.loads(plain.path.read_text().splitlines()[0])["prompt"] == FORMULAS[0]
