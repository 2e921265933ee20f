"""Bad input: every case gives an InputError naming the file, the line or
record and the field, and leaves the workspace exactly as it was."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workstation.datasets import import_dataset, store
from workstation.datasets.reading import MAX_LINE_BYTES
from workstation.errors import Cancelled, InputError
from workstation.progress import Progress


def snapshot(ws) -> str:
    """A hash of every table's full contents."""
    tables = [r[0] for r in ws.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
        "ORDER BY 1").fetchall()]
    h = hashlib.sha256()
    for table in tables:
        h.update(repr((table, ws.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall())).encode())
    return h.hexdigest()


@pytest.fixture
def seeded(ws, tmp_path):
    """A workspace that already holds a pairs and a demos dataset."""
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    import_dataset(ws, "pairs", good, "good")
    demo = tmp_path / "good_demo.jsonl"
    demo.write_text(json.dumps({"obs": [[0.0, 1.0], [1.0, 2.0]], "acts": [1]}) + "\n")
    import_dataset(ws, "demos", demo, "good-demo")
    return ws


def refused(ws, kind: str, path: Path, *parts: str, format: str | None = None,
            progress: Progress | None = None) -> str:
    """Import must fail with InputError mentioning the file and ``parts``,
    leaving the workspace unchanged; returns the message."""
    before = snapshot(ws)
    with pytest.raises(InputError) as info:
        import_dataset(ws, kind, path, "bad", format=format, progress=progress)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for part in parts:
        assert part in message, message
    assert snapshot(ws) == before
    return message


def jsonl(path: Path, *records, raw: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + raw, encoding="utf-8")
    return path


PAIR = {"prompt": "p", "chosen": "c", "rejected": "r"}
LABEL = {"prompt": "p", "response": "r", "label": "safe"}


# -- JSON ------------------------------------------------------------------

def test_malformed_json(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", PAIR, PAIR, raw='{"prompt": "a", "chosen": "b" "rejected": "c"}\n')
    refused(seeded, "pairs", path, "line 3", "malformed JSON")


def test_truncated_json_line(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", PAIR, raw='{"prompt": "a", "chosen": "b", "rej')
    refused(seeded, "pairs", path, "line 2", "malformed JSON")


def test_line_that_is_not_an_object(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", PAIR, [1, 2])
    refused(seeded, "pairs", path, "line 2", "expected a JSON object")


def test_missing_field(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", PAIR, {"prompt": "p", "chosen": "c"})
    refused(seeded, "pairs", path, "line 2", "field 'rejected'", "missing field")


def test_missing_label_column_in_csv(seeded, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("prompt,response\np,r\n")
    refused(seeded, "labels", path, "line 2", "field 'label'", "missing field")


def test_chosen_is_a_number(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", {"prompt": "p", "chosen": 3, "rejected": "r"})
    refused(seeded, "pairs", path, "line 1", "field 'chosen'", "expected a string, got a number")


def test_conversational_values_refused(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", {"prompt": "p", "chosen": [{"role": "user"}], "rejected": "r"})
    refused(seeded, "pairs", path, "line 1", "field 'chosen'", "conversational")


def test_label_maybe(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", LABEL, {**LABEL, "label": "maybe"})
    refused(seeded, "labels", path, "line 2", "field 'label'", "'maybe'", "1 = safe")


def test_label_maybe_in_csv(seeded, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('prompt,response,label\np,"two\nlines",safe\np,r,maybe\n')
    refused(seeded, "labels", path, "line 4", "field 'label'", "'maybe'")


def test_wrong_type_in_parquet(seeded, tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": [1, 2]}), path)
    refused(seeded, "pairs", path, "record 0", "field 'rejected'", "expected a string")


def test_jailbreakbench_wrong_type(seeded, tmp_path):
    path = tmp_path / "J_m.json"
    rec = {"index": 0, "goal": "g", "prompt": "p", "response": "r", "jailbroken": True}
    path.write_text(json.dumps({"parameters": {}, "jailbreaks": [rec, {**rec, "jailbroken": "yes"}]}))
    refused(seeded, "labels", path, "record 1", "field 'jailbroken'", "expected true or false")


def test_jailbreakbench_malformed_document(seeded, tmp_path):
    path = tmp_path / "J_m.json"
    path.write_text('{"parameters": {},\n "jailbreaks": [\n {"index": 0,,}]}')
    refused(seeded, "labels", path, "malformed JSON", "line 3", format="jailbreakbench")


def test_bad_file_in_folder_names_that_file(seeded, tmp_path):
    folder = tmp_path / "jbb"
    folder.mkdir()
    rec = {"index": 0, "goal": "g", "prompt": "p", "response": "r", "jailbroken": True}
    (folder / "A_m.json").write_text(json.dumps({"parameters": {}, "jailbreaks": [rec]}))
    (folder / "B_m.json").write_text(json.dumps({"parameters": {}, "jailbreaks": [{"index": 1}]}))
    message = refused(seeded, "labels", folder, "B_m.json", "record 0", "field 'response'")
    assert "A_m.json" not in message


def test_obs_not_numeric(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", {"obs": [[0.0, 1.0], [1.0, "a"]]})
    refused(seeded, "demos", path, "line 1", "field 'obs'", "expected numbers, got a string")


def test_deeply_nested_json(seeded, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    refused(seeded, "pairs", path, "line 1", "nested too deeply")


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_json_numbers(seeded, tmp_path, token):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(LABEL) + "\n" + '{"prompt": "p", "response": "r", "label": "safe", '
                    f'"score": {token}}}\n')
    refused(seeded, "labels", path, "line 2", "non-finite number")


def test_nan_in_demo_obs_json(seeded, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"obs": [[0.0, 1.0], [NaN, 2.0]]}\n')
    refused(seeded, "demos", path, "line 1", "non-finite number")


def test_obs_overflowing_float32(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", {"obs": [[0.0, 1.0], [1e300, 2.0]]})
    refused(seeded, "demos", path, "line 1", "field 'obs'", "float32")


# -- bytes and sizes --------------------------------------------------------

@pytest.mark.parametrize("kind,name", [("pairs", "x.jsonl"), ("labels", "x.csv"),
                                       ("pairs", "x.parquet"), ("demos", "x.npz"),
                                       ("labels", "J_x.json")])
def test_empty_file(seeded, tmp_path, kind, name):
    path = tmp_path / name
    path.write_bytes(b"")
    fmt = "jailbreakbench" if name.endswith(".json") else None
    refused(seeded, kind, path, "empty", format=fmt)


def test_blank_lines_only(seeded, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("\n   \n\n")
    refused(seeded, "pairs", path, "no records")


def test_non_utf8_bytes(seeded, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(json.dumps(PAIR).encode() + b'\n{"prompt": "caf\xe9", "chosen": "c", "rejected": "r"}\n')
    refused(seeded, "pairs", path, "line 2", "UTF-8")


def test_non_utf8_bytes_in_csv(seeded, tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"prompt,chosen,rejected\na,b,c\na,\xff\xfe,c\n")
    refused(seeded, "pairs", path, "line 3", "UTF-8")


def test_non_utf8_bytes_in_json_document(seeded, tmp_path):
    path = tmp_path / "J_m.json"
    path.write_bytes(b'{"parameters": {},\n"jailbreaks": [\n"\xc3\x28"]}')
    refused(seeded, "labels", path, "line 3", "UTF-8", format="jailbreakbench")


def test_fifty_megabyte_line(seeded, tmp_path):
    path = tmp_path / "x.jsonl"
    with open(path, "wb") as f:
        f.write(json.dumps(PAIR).encode() + b"\n")
        f.write(b'{"prompt": "' + b"a" * (50 * 1024 * 1024) + b'", "chosen": "c", "rejected": "r"}\n')
    assert MAX_LINE_BYTES == 16 * 1024 * 1024
    refused(seeded, "pairs", path, "line 2", "16 MiB limit")


def test_csv_field_count_mismatch(seeded, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("prompt,chosen,rejected\na,b,c\na,b\n")
    refused(seeded, "pairs", path, "line 3", "has 2 fields; the header has 3")


# -- truncation -------------------------------------------------------------

def test_truncated_gzip(seeded, tmp_path):
    data = gzip.compress("".join(json.dumps({**PAIR, "prompt": f"p{i}" * 50}) + "\n"
                                 for i in range(2000)).encode())
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    refused(seeded, "pairs", path, "truncated or corrupt gzip")


def test_truncated_csv(seeded, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('prompt,chosen,rejected\na,b,c\na,"b is cut')
    refused(seeded, "pairs", path, "line 3", "malformed CSV")


def test_truncated_parquet(seeded, tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"prompt": ["a"] * 100, "chosen": ["b"] * 100, "rejected": ["c"] * 100}),
                   path)
    path.write_bytes(path.read_bytes()[:-40])
    refused(seeded, "pairs", path, "Parquet", "truncated")


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _rollouts(n_traj: int = 3, steps: int = 5) -> dict:
    acts = np.arange(n_traj * steps) % 2
    obs = np.random.default_rng(0).standard_normal((n_traj * (steps + 1), 4)).astype(np.float32)
    return {"obs": obs, "acts": acts, "indices": np.arange(1, n_traj) * steps,
            "rews": np.ones(n_traj * steps)}


def test_truncated_npz(seeded, tmp_path):
    data = _npz_bytes(**_rollouts())
    path = tmp_path / "x.npz"
    path.write_bytes(data[: len(data) - 60])
    refused(seeded, "demos", path, "truncated")


# -- demonstrations ---------------------------------------------------------

def test_ragged_obs_within_a_trajectory(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", {"obs": [[0.0, 1.0], [1.0, 2.0, 3.0]]})
    refused(seeded, "demos", path, "line 1", "field 'obs'", "ragged")


def test_ragged_obs_across_trajectories(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", {"obs": [[0.0, 1.0], [1.0, 2.0]]},
                 {"obs": [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]})
    refused(seeded, "demos", path, "line 2", "field 'obs'", "ragged")


def test_actions_do_not_match_observations(seeded, tmp_path):
    path = jsonl(tmp_path / "x.jsonl", {"obs": [[0.0], [1.0], [2.0], [3.0]], "acts": [1]})
    refused(seeded, "demos", path, "line 1", "field 'acts'")


def test_nan_and_inf_in_npz(seeded, tmp_path):
    arrays = _rollouts()
    arrays["obs"][8, 2] = np.nan  # row 8 is in trajectory 1 (rows 6..11)
    path = tmp_path / "nan.npz"
    path.write_bytes(_npz_bytes(**arrays))
    refused(seeded, "demos", path, "record 1", "field 'obs'", "NaN")
    arrays = _rollouts()
    arrays["acts"] = arrays["acts"].astype(float)
    arrays["acts"][14] = np.inf
    path = tmp_path / "inf.npz"
    path.write_bytes(_npz_bytes(**arrays))
    refused(seeded, "demos", path, "record 2", "field 'acts'")


class _Boom:
    """Unpickling this creates a marker file: proof that nothing was unpickled."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_npz_with_pickled_objects_refused_never_unpickled(seeded, tmp_path):
    marker = tmp_path / "unpickled.txt"
    _Boom.marker = str(marker)
    arrays = _rollouts()
    arrays["obs"] = np.array([_Boom() for _ in range(len(arrays["obs"]))], dtype=object)
    path = tmp_path / "x.npz"
    path.write_bytes(_npz_bytes(**arrays))
    refused(seeded, "demos", path, "field 'obs'", "pickled")
    assert not marker.exists()


def test_npz_pickled_infos_is_ignored(ws, tmp_path):
    marker = tmp_path / "unpickled.txt"
    _Boom.marker = str(marker)
    arrays = _rollouts()
    arrays["infos"] = np.array([_Boom()], dtype=object)
    path = tmp_path / "x.npz"
    path.write_bytes(_npz_bytes(**arrays))
    assert import_dataset(ws, "demos", path, "ok").imported == 3
    assert not marker.exists()


def test_npz_missing_key_and_bad_shapes(seeded, tmp_path):
    arrays = _rollouts()
    del arrays["acts"]
    path = tmp_path / "a.npz"
    path.write_bytes(_npz_bytes(**arrays))
    refused(seeded, "demos", path, "field 'acts'", "missing")
    arrays = _rollouts()
    arrays["obs"] = arrays["obs"][:-1]
    path = tmp_path / "b.npz"
    path.write_bytes(_npz_bytes(**arrays))
    refused(seeded, "demos", path, "field 'obs'", "one more than the actions")
    arrays = _rollouts()
    arrays["indices"] = np.array([10, 5])
    path = tmp_path / "c.npz"
    path.write_bytes(_npz_bytes(**arrays))
    refused(seeded, "demos", path, "field 'indices'")
    arrays = _rollouts()
    arrays["obs"] = arrays["obs"].astype(str)
    path = tmp_path / "d.npz"
    path.write_bytes(_npz_bytes(**arrays))
    refused(seeded, "demos", path, "field 'obs'", "expected numbers")


def test_not_an_npz(seeded, tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("hello")
    refused(seeded, "demos", path, "not an .npz")


# -- atomicity ---------------------------------------------------------------

def test_failure_while_writing_rolls_back(seeded, tmp_path, monkeypatch):
    path = tmp_path / "x.npz"
    path.write_bytes(_npz_bytes(**_rollouts()))
    before = snapshot(seeded)

    def fail(*args, **kwargs):  # the examples are already inserted when this runs
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "insert_steps", fail)
    with pytest.raises(RuntimeError):
        import_dataset(seeded, "demos", path, "x")
    assert snapshot(seeded) == before


@pytest.mark.parametrize("stage", ["reading", "writing"])
def test_cancel_leaves_workspace_unchanged(seeded, hh_rlhf_path, stage):
    before = snapshot(seeded)

    def callback(name: str, done: int, total: int) -> None:
        if name.startswith(stage):  # the analyst presses Cancel in this stage
            progress.cancel()

    progress = Progress(callback)
    with pytest.raises(Cancelled):
        import_dataset(seeded, "pairs", hh_rlhf_path, "hh", progress=progress)
    assert snapshot(seeded) == before


def test_missing_file(seeded, tmp_path):
    refused(seeded, "pairs", tmp_path / "nope.jsonl", "no such file")
