"""The first half of the flywheel from the terminal, on real data.

Import HH-RLHF pairs and JailbreakBench labels, register reward models
trained here (scikit-learn over the workspace encoder's embeddings, exported
with skl2onnx), audit them, list the failures, correct labels with undo and
redo, read the log, export the reviewed data, re-import it, and verify.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.cli_support import run

pytestmark = pytest.mark.slow


def _train_skl(x: np.ndarray, y: np.ndarray, path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    onx = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    path.write_bytes(onx.SerializeToString())


@pytest.fixture
def flow(tmp_path, capsys, hh_rlhf_path, jailbreakbench_dir):
    ws_path = str(tmp_path / "audit.duckdb")
    w = ["--workspace", ws_path]
    hh = run(capsys, *w, "import", "pairs", str(hh_rlhf_path), "--name", "hh")
    jbb = run(capsys, *w, "import", "labels", str(jailbreakbench_dir), "--name", "jbb")
    return w, ws_path, hh, jbb


def _embeddings(ws_path: str, sql: str) -> tuple[np.ndarray, list]:
    from workstation.encoder import embed_texts
    from workstation.workspace import Workspace

    with Workspace.open(ws_path) as ws:
        rows = ws.execute(sql).fetchall()
        columns = list(zip(*rows))
        mats = [embed_texts(ws, list(c)) for c in columns[:-1]]
    return np.concatenate(mats, axis=1), list(columns[-1])


def test_cli_flywheel_first_half_on_real_data(flow, capsys, tmp_path):
    w, ws_path, hh, jbb = flow
    assert (hh["dataset"], hh["imported"], hh["skipped"]) == ("hh", 2312, 0)
    assert (jbb["imported"], jbb["skipped"]) == (1637, 163)

    # A labeled-response classifier over [prompt, response] embeddings.
    x, y = _embeddings(ws_path, "SELECT prompt, response, label FROM examples e "
                                "JOIN datasets d ON d.id = e.dataset_id WHERE d.name = 'jbb'")
    _train_skl(x, np.asarray(y, dtype=int), tmp_path / "jbb.onnx")
    added = run(capsys, *w, "model", "add", str(tmp_path / "jbb.onnx"), "--name", "safety",
                "--input", "text-embedding")
    assert added["model"] == "safety" and added["version"] == 1 and len(added["sha256"]) == 64

    audit = run(capsys, *w, "audit", "--model", "safety@1", "--dataset", "jbb")
    metrics = audit["metrics"]
    assert 0.5 < metrics["auroc"] <= 1.0 and 0 <= metrics["ece"] <= 1
    assert set(metrics["per_category"]) >= {"Malware/Hacking", "Privacy"}
    failures = run(capsys, *w, "failures", "--run", str(audit["run_id"]), "--limit", "5")
    items = failures["failures"]
    assert audit["failures"] == 0 or len(items) == min(5, audit["failures"])
    for item in items:
        assert {"example_id", "source_index", "source_sha256", "score", "label"} <= set(item)

    # A pairwise reward: logistic regression telling chosen from rejected responses.
    x, y = _embeddings(ws_path, "SELECT chosen, 1 FROM examples e JOIN datasets d "
                                "ON d.id = e.dataset_id WHERE d.name = 'hh'")
    xr, _ = _embeddings(ws_path, "SELECT rejected, 0 FROM examples e JOIN datasets d "
                                 "ON d.id = e.dataset_id WHERE d.name = 'hh'")
    _train_skl(np.concatenate([x, xr]), np.r_[np.ones(len(x)), np.zeros(len(xr))].astype(int),
               tmp_path / "hh.onnx")
    run(capsys, *w, "model", "add", str(tmp_path / "hh.onnx"), "--name", "rm",
        "--input", "text-embedding")
    audit = run(capsys, *w, "audit", "--model", "rm", "--dataset", "hh")
    accuracy = audit["metrics"]["pairwise_accuracy"]
    assert 0.5 < accuracy < 1.0
    top = run(capsys, *w, "failures", "--run", str(audit["run_id"]), "--limit", "3")["failures"]
    assert [f["margin"] for f in top] == sorted(f["margin"] for f in top)
    worst = top[0]["example_id"]

    # Review: flip the most confident disagreement, undo, redo.
    flipped = run(capsys, *w, "label", str(worst), "--flip", "--reason", "annotator error")
    assert flipped["changes"][0]["field"] == "flipped"
    run(capsys, *w, "undo")
    run(capsys, *w, "redo")
    log = run(capsys, *w, "log", "--example", str(worst))["entries"]
    assert [e["new"] for e in log] == [True, False, True]
    assert all({"example_id", "field", "old", "new", "reason", "analyst", "time", "hash",
                "key_id", "row_hash", "signature"} <= set(e) for e in log)
    assert {e["analyst"] for e in log} == {"test-analyst"}
    after = run(capsys, *w, "audit", "--model", "rm", "--dataset", "hh")
    assert after["metrics"]["pairwise_accuracy"] > accuracy  # the flip now agrees

    # Export as reviewed, re-import, same examples and labels.
    out = tmp_path / "hh-reviewed.jsonl"
    exported = run(capsys, *w, "export", "--dataset", "hh", "--format", "jsonl", str(out))
    assert exported["rows"] == 2312
    manifest = json.loads((tmp_path / "hh-reviewed.jsonl.manifest.json").read_text())
    assert manifest["edits_applied"] == 3  # flip, undo, redo
    assert manifest["review_log_head"] == log[-1]["hash"]
    assert manifest["sha256"] == exported["sha256"]
    again = run(capsys, *w, "import", "pairs", str(out), "--name", "hh-again")
    assert again["imported"] == 2312
    from workstation.workspace import Workspace

    with Workspace.open(ws_path, read_only=True) as ws:
        diff = ws.execute(
            "SELECT count(*) FROM current_examples a JOIN current_examples b "
            "ON a.source_index = b.source_index "
            "WHERE a.dataset_id = (SELECT id FROM datasets WHERE name = 'hh') "
            "AND b.dataset_id = (SELECT id FROM datasets WHERE name = 'hh-again') "
            "AND (a.current_chosen <> b.current_chosen OR a.current_rejected <> b.current_rejected)"
        ).fetchall()[0][0]
    assert diff == 0

    assert run(capsys, *w, "verify")["ok"] is True


def test_tampering_is_caught_by_verify(flow, capsys):
    w, ws_path, _, _ = flow
    run(capsys, *w, "label", "1", "--flip", "--reason", "r")
    run(capsys, *w, "label", "2", "--note", "look again", "--reason", "r")
    import duckdb

    con = duckdb.connect(ws_path)
    con.execute("UPDATE review_log SET reason = 'forged' WHERE seq = 1")
    con.close()
    result = run(capsys, *w, "verify", ok=False)
    assert result["ok"] is False and "row 1" in result["failures"][0]


def test_cli_errors_are_one_line(tmp_path):
    ws = str(tmp_path / "w.duckdb")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "c"}\n')
    proc = subprocess.run([sys.executable, "-m", "workstation", "--workspace", ws, "import",
                           "pairs", str(bad), "--name", "x"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "bad.jsonl" in proc.stderr and "rejected" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "workstation", "--workspace", ws, "audit",
                           "--model", "nope", "--dataset", "x"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "nope" in proc.stderr and "Traceback" not in proc.stderr
