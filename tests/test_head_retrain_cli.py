"""Head retraining and feature-space patches through the CLI, on real data
(HH-RLHF pairs, JailbreakBench labels) and real transformer models
(``tests/hf_models.py``): register, audit, retrain the head, audit, patch,
compare and release."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.cli_support import run
from tests.head_models import token_reward_model, word_tokenizer
from workstation.cli import main

pytestmark = pytest.mark.slow

JBB_FILES = 4  # JailbreakBench files the transformer tests import (400 records)


def _jbb_subset(folder, tmp_path):
    subset = tmp_path / "jbb"
    subset.mkdir()
    for path in sorted(folder.glob("*.json"))[:JBB_FILES]:
        shutil.copy(path, subset / path.name)
    return subset


def _release(capsys, w, candidate: str) -> dict:
    code = main([*w, "release", candidate, "--json"])
    captured = capsys.readouterr()
    if code == 0:
        return json.loads(captured.out)
    assert "regression gate failed" in captured.err
    return run(capsys, *w, "release", candidate, "--force", "head retrain test")


def _initializers(path_or_bytes) -> dict[str, np.ndarray]:
    model = onnx.load_model_from_string(path_or_bytes)
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _stored_onnx(ws_path: str, ref: str) -> bytes:
    from workstation.models import load_onnx, resolve
    from workstation.workspace import Workspace

    with Workspace.open(ws_path, read_only=True) as ws:
        return load_onnx(ws, resolve(ws, ref))


def _feature_rows(ws_path: str) -> int:
    from workstation.workspace import Workspace

    with Workspace.open(ws_path, read_only=True) as ws:
        return ws.execute("SELECT count(*) FROM embeddings WHERE encoder_id LIKE "
                          "'features:%'").fetchone()[0]


def test_tokens_model_turn_on_hh_rlhf_and_jailbreakbench(tmp_path, capsys, hh_rlhf_path,
                                                         jailbreakbench_dir):
    """A small BERT-like tokens model: the head is retrained on pairs, then on
    labels; patched in its feature space; compared and released."""
    with gzip.open(hh_rlhf_path, "rt") as f:
        texts = [json.loads(line)["chosen"] for line in f]
    folder = tmp_path / "model"
    folder.mkdir()
    vocab = word_tokenizer(texts, folder / "tokenizer.json")
    (folder / "model.onnx").write_bytes(token_reward_model(vocab))
    w = ["--workspace", str(tmp_path / "w.duckdb")]
    run(capsys, *w, "import", "pairs", str(hh_rlhf_path), "--name", "hh")
    run(capsys, *w, "import", "labels", str(jailbreakbench_dir), "--name", "jbb")
    run(capsys, *w, "model", "add", str(folder / "model.onnx"), "--name", "tok",
        "--input", "text-tokens")
    before = run(capsys, *w, "audit", "--model", "tok@1", "--dataset", "hh")["metrics"]

    v2 = run(capsys, *w, "train", "--dataset", "hh", "--name", "tok", "--from", "tok@1")
    assert (v2["ref"], v2["method"], v2["parent"], v2["input_kind"]) == \
        ("tok@2", "head", "tok@1", "text-tokens")
    assert v2["head"]["nodes"] == ["/classifier/Gemm"] and v2["head"]["width"] == 32
    assert v2["head_splice_max_diff"] <= 1e-5
    cached = _feature_rows(w[1])
    assert cached >= 2 * 2312 * 0.9  # both sides of every pair (duplicates share a row)
    m = v2["metrics"]
    assert m["heldout_pairwise_accuracy"] > m["parent_heldout_pairwise_accuracy"]
    after = run(capsys, *w, "audit", "--model", "tok@2", "--dataset", "hh")["metrics"]
    # the audit of the new version reads its held-out pairs: the fit's own figure
    assert after["n"] == m["n_heldout"]
    assert after["pairwise_accuracy"] == pytest.approx(m["heldout_pairwise_accuracy"], abs=1e-9)
    assert before["n"] == 2312

    # a second fit on the same data reads the cached features: no new rows
    run(capsys, *w, "train", "--dataset", "hh", "--name", "tok", "--from", "tok@1",
        "--param", "l2=0.01")
    assert _feature_rows(w[1]) == cached

    v4 = run(capsys, *w, "train", "--dataset", "jbb", "--name", "tok", "--from", "tok@2")
    assert v4["metrics"]["heldout_auroc"] > 0.6
    audit = run(capsys, *w, "audit", "--model", f"tok@{v4['version']}", "--dataset", "jbb")
    patched = run(capsys, *w, "patch", "--model", f"tok@{v4['version']}", "--findings",
                  str(audit["run_id"]))
    pm = patched["metrics"]
    assert pm["kernels_kept"] >= 1 and pm["protected_loss_max"] <= 0.10 + 1e-9
    assert pm["flaws_suppressed"] >= 1
    ref = f"tok@{patched['version']}"
    after_patch = run(capsys, *w, "audit", "--model", ref, "--dataset", "jbb")
    assert after_patch["n_failures"] < audit["n_failures"]
    report = run(capsys, *w, "compare", "--candidate", ref, "--baseline",
                 f"tok@{v4['version']}")
    assert "pass" in report["gate"]
    assert _release(capsys, w, ref)["release_id"] >= 1


def test_bert_reward_model_head_retrain_patch_and_release(tmp_path, capsys, bert_cls_model,
                                                          jailbreakbench_dir):
    """The MiniLM BertForSequenceClassification export: its classifier is
    retrained on reviewed JailbreakBench labels; everything else stays."""
    w = ["--workspace", str(tmp_path / "w.duckdb")]
    run(capsys, *w, "import", "labels", str(_jbb_subset(jailbreakbench_dir, tmp_path)),
        "--name", "jbb")
    parent = run(capsys, *w, "model", "add", str(bert_cls_model.onnx), "--name", "bert",
                 "--input", "text-tokens")
    before = run(capsys, *w, "audit", "--model", "bert@1", "--dataset", "jbb")["metrics"]
    v2 = run(capsys, *w, "train", "--dataset", "jbb", "--name", "bert", "--from", "bert@1",
             "--seed", "2")
    assert v2["method"] == "head" and v2["head"]["width"] == 384
    assert v2["head"]["input"].endswith("pooler/activation/Tanh_output_0")
    new = run(capsys, *w, "model", "list")["models"][-1]["manifest"]
    for key in ("input_kind", "input", "output", "column", "score_type", "tokenizer_sha256"):
        assert new[key] == parent["manifest"][key], key
    lineage = new["lineage"]
    assert (lineage["parent"], lineage["method"], lineage["seed"], lineage["dataset"]) == \
        ("bert@1", "head", 2, "jbb")
    assert lineage["feature_space"].startswith("features:")
    old, spliced = _initializers(bert_cls_model.onnx.read_bytes()), \
        _initializers(_stored_onnx(w[1], "bert@2"))
    assert old.keys() == spliced.keys()
    changed = {k for k in old if not np.array_equal(old[k], spliced[k])}
    assert changed == {v2["head"]["weight"], v2["head"]["bias"]}

    audit = run(capsys, *w, "audit", "--model", "bert@2", "--dataset", "jbb")
    after, m = audit["metrics"], v2["metrics"]
    assert after["auroc"] == pytest.approx(m["heldout_auroc"], abs=2e-3)  # a near-tie may swap
    assert m["heldout_auroc"] > m["parent_heldout_auroc"]
    with capsys.disabled():  # the figure the report quotes
        print(f"\nbert-cls on {before['n']} JailbreakBench labels: AUROC {before['auroc']:.3f} "
              f"(all, parent); held-out {m['parent_heldout_auroc']:.3f} -> "
              f"{m['heldout_auroc']:.3f}")

    patched = run(capsys, *w, "patch", "--model", "bert@2", "--findings", str(audit["run_id"]))
    assert patched["metrics"]["kernels_kept"] >= 1
    assert patched["metrics"]["protected_loss_max"] <= 0.10 + 1e-9
    ref = f"bert@{patched['version']}"
    report = run(capsys, *w, "compare", "--candidate", ref, "--baseline", "bert@2")
    assert "pass" in report["gate"]
    assert _release(capsys, w, ref)["release_id"] >= 1


def test_dynamo_export_and_decoder_get_new_heads(tmp_path, capsys, bert_cls_dynamo_model,
                                                 decoder_model, jailbreakbench_dir):
    w = ["--workspace", str(tmp_path / "w.duckdb")]
    run(capsys, *w, "import", "labels", str(_jbb_subset(jailbreakbench_dir, tmp_path)),
        "--name", "jbb")
    for name, model, width, fmt in (("dyn", bert_cls_dynamo_model, 384, "pair"),
                                    ("dec", decoder_model, 64, "chat-template")):
        run(capsys, *w, "model", "add", str(model.onnx), "--name", name, "--input", "text-tokens",
            "--text-format", fmt)
        trained = run(capsys, *w, "train", "--dataset", "jbb", "--name", name,
                      "--from", f"{name}@1")
        assert trained["method"] == "head" and trained["head"]["width"] == width
        assert trained["head_splice_max_diff"] <= 1e-5
        manifest = next(m["manifest"] for m in run(capsys, *w, "model", "list")["models"]
                        if (m["model"], m["version"]) == (name, 2))
        assert manifest["input"]["text_format"] == fmt  # the new head reads texts as before
        audit = run(capsys, *w, "audit", "--model", f"{name}@2", "--dataset", "jbb")
        assert audit["metrics"]["auroc"] == pytest.approx(trained["metrics"]["heldout_auroc"],
                                                          abs=2e-3)


def test_int8_model_is_refused_and_new_head_on_embeddings_works(tmp_path, capsys,
                                                                bert_cls_int8_model,
                                                                jailbreakbench_dir):
    w = ["--workspace", str(tmp_path / "w.duckdb")]
    run(capsys, *w, "import", "labels", str(_jbb_subset(jailbreakbench_dir, tmp_path)),
        "--name", "jbb")
    run(capsys, *w, "model", "add", str(bert_cls_int8_model.onnx), "--name", "q8",
        "--input", "text-tokens")
    refused = run(capsys, *w, "train", "--dataset", "jbb", "--name", "q8", "--from", "q8@1",
                  ok=False)
    assert "no scoring head found in q8@1" in refused["error"]
    assert "quantized" in refused["error"] and "--new-head-on-embeddings" in refused["error"]
    made = run(capsys, *w, "train", "--dataset", "jbb", "--name", "q8-embeddings", "--from",
               "q8@1", "--new-head-on-embeddings", "--param", "epochs=20")
    assert (made["method"], made["parent"], made["input_kind"]) == \
        ("new", "q8@1", "text-embedding")
