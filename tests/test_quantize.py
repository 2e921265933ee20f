"""``model quantize``: an int8 copy of a real transformer reward model through the
CLI, with a parity report that the test recomputes from both versions' scores."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from tests.cli_support import run
from workstation.cli import main
from workstation.models import resolve
from workstation.models.scoring import score_dataset
from workstation.workspace import Workspace

N_LABELED = 48  # JailbreakBench responses audited (BERT is slow on a busy laptop)


@pytest.fixture
def labels_file(tmp_path, jailbreakbench_dir):
    """JailbreakBench responses with their labels, taken from the end of the
    round-robin (the bert-cls head was fitted on the first 320)."""
    from tests.hf_models import jailbreakbench_examples

    prompts, responses, safe = jailbreakbench_examples(320 + N_LABELED, jailbreakbench_dir)
    path = tmp_path / "jbb.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for p, r, s in zip(prompts[320:], responses[320:], safe[320:]):
            f.write(json.dumps({"prompt": p, "response": r,
                                "label": "safe" if s else "unsafe"}) + "\n")
    return path


@pytest.mark.slow
def test_quantize_a_tokens_model_reports_true_parity(tmp_path, capsys, bert_cls_model,
                                                     labels_file):
    w = ["--workspace", str(tmp_path / "q.duckdb")]
    run(capsys, *w, "import", "labels", str(labels_file), "--name", "jbb")
    run(capsys, *w, "model", "add", str(bert_cls_model.onnx), "--name", "bert",
        "--input", "text-tokens")
    # No audit yet and no --dataset: refused, nothing registered.
    refused = run(capsys, *w, "model", "quantize", "bert@1", ok=False)
    assert "has no audit" in refused["error"] and "--dataset" in refused["error"]
    parent_audit = run(capsys, *w, "audit", "--model", "bert@1", "--dataset", "jbb")

    made = run(capsys, *w, "model", "quantize", "bert@1")
    assert made["ref"] == "bert@2" and made["parent"] == "bert@1"
    q = made["quantization"]
    parity = q["parity"]
    assert parity["dataset"] == "jbb" and parity["parent_audit_run"] == parent_audit["run_id"]
    assert q["size_bytes"] < q["parent_size_bytes"] / 3  # int8 weights

    with Workspace.open(w[1], read_only=True) as ws:
        parent, child = resolve(ws, "bert@1"), resolve(ws, "bert@2")
        assert child.manifest["quantization"] == q  # the report is in the manifest
        assert child.manifest["lineage"]["method"] == "quantize-int8"
        assert child.manifest["lineage"]["parent"] == "bert@1"
        for key in ("input_kind", "input", "output", "column", "score_type",
                    "tokenizer_sha256"):
            assert child.manifest[key] == parent.manifest[key], key
        ops = {n.op_type for n in onnx.load_from_string(
            bytes(ws.execute("SELECT data FROM blobs WHERE sha256 = ?",
                             [child.sha256]).fetchall()[0][0])).graph.node}
        assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}
        a = score_dataset(ws, parent, "jbb")
        b = score_dataset(ws, child, "jbb")

    assert np.array_equal(a.example_ids, b.example_ids) and parity["n_scores"] == len(a)
    assert parity["spearman"] == pytest.approx(spearmanr(a.score, b.score).statistic, abs=1e-9)
    assert parity["spearman"] > 0.95
    worst = float(np.max(np.abs(a.score - b.score)))
    assert worst == pytest.approx(parity["max_abs_score_diff"], rel=1e-9, abs=1e-12)
    assert worst > 0  # it really is a different graph
    auroc = parity["metrics"]["auroc"]
    assert auroc["parent"] == pytest.approx(roc_auc_score(a.labels, a.score))
    assert auroc["quantized"] == pytest.approx(roc_auc_score(b.labels, b.score))
    assert auroc["delta"] == pytest.approx(auroc["quantized"] - auroc["parent"])

    listing = run(capsys, *w, "model", "list")
    assert [m["manifest"].get("quantization", {}).get("parity", {}).get("dataset")
            for m in listing["models"]] == [None, "jbb"]
    main([*w, "model", "list"])
    text = capsys.readouterr().out
    assert "int8 of bert@1: Spearman" in text and "auroc" in text

    again = run(capsys, *w, "model", "quantize", "bert@2", ok=False)
    assert "already quantized" in again["error"]


def test_quantize_refuses_a_graph_without_weights(tmp_path, capsys):
    """A graph with no MatMul/Gemm weights (here: a sum of its input) has nothing to quantize."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["N", 1])
    graph = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["reward"], axes=[1],
                                                keepdims=1)],
                              "sum", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    path = tmp_path / "sum.onnx"
    path.write_bytes(model.SerializeToString())
    w = ["--workspace", str(tmp_path / "q.duckdb")]
    run(capsys, *w, "model", "add", str(path), "--name", "sum", "--input", "observation")
    refused = run(capsys, *w, "model", "quantize", "sum@1", "--dataset", "none", ok=False)
    assert "no float MatMul, Gemm or Attention weights" in refused["error"]
    listing = run(capsys, *w, "model", "list")
    assert len(listing["models"]) == 1


@pytest.mark.slow
def test_the_parity_of_pairs_counts_the_pairs_int8_reorders(tmp_path, capsys, bert_cls_model,
                                                           hh_rlhf_path):
    """On preference pairs the report says how many pairs the int8 version
    put the other way round, each way, and how far the accuracy delta they
    make could move by chance: the reader of a -0.007 needs both."""
    import gzip

    pairs = tmp_path / "hh.jsonl"
    with gzip.open(hh_rlhf_path, "rt", encoding="utf-8") as f, open(pairs, "w") as out:
        for _, line in zip(range(60), f):
            out.write(line)
    w = ["--workspace", str(tmp_path / "q.duckdb")]
    run(capsys, *w, "import", "pairs", str(pairs), "--name", "hh", "--format", "hh-rlhf")
    run(capsys, *w, "model", "add", str(bert_cls_model.onnx), "--name", "bert",
        "--input", "text-tokens")
    run(capsys, *w, "audit", "--model", "bert@1", "--dataset", "hh")
    parity = run(capsys, *w, "model", "quantize", "bert@1")["quantization"]["parity"]
    with Workspace.open(w[1], read_only=True) as ws:
        a, b = score_dataset(ws, "bert@1", "hh"), score_dataset(ws, "bert@2", "hh")
    before, after = a.margin > 0, b.margin > 0
    changed = parity["pairs_changed"]
    assert changed["n_pairs"] == len(a.margin) == 60 and changed["over"] == "every scored pair"
    assert changed["now_right"] == int((after & ~before).sum())
    assert changed["now_wrong"] == int((before & ~after).sum())
    delta = parity["metrics"]["pairwise_accuracy"]["delta"]
    assert delta == pytest.approx((changed["now_right"] - changed["now_wrong"]) / 60)
    flips = changed["now_right"] + changed["now_wrong"]
    expected = np.sqrt((flips / 60 - delta ** 2) / 60)
    assert changed["delta_standard_error"] == pytest.approx(expected)
