"""Bias probes: length-bias, position-swap and format-invariance, on cases
whose right answer is known by construction."""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.test_models import DIM, HashEncoder, insert_dataset, reward_mlp
from workstation.audits import list_failures
from workstation.models import add_model_bytes
from workstation.probes import findings_page, run_probes
from workstation.probes.format import (TRANSFORMATIONS, format_tolerance, format_variants,
                                       strip_markdown, swap_errors, swap_violations)
from workstation.probes.length_bias import (label_bias, pair_bias, pairs_against_label, pearson,
                                            spearman)


class FeatureEncoder:
    """A stand-in encoder whose dimensions are readable text features, so that
    a linear model over them scores by a known rule (length, markers...)."""

    def __init__(self, features: list[Callable[[str], float]], name: str) -> None:
        self.features, self.id, self.dim = features, f"test-features-{name}", DIM

    def encode(self, texts, progress=None, batch_size=64) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i, :len(self.features)] = [f(text or "") for f in self.features]
        return out


def linear_model(weights: list[float], bias: float = 0.0, output: str = "reward",
                 sigmoid: bool = False) -> bytes:
    """score = x @ w + b over the first len(weights) features (sigmoid optional)."""
    w = np.zeros((DIM, 1), dtype=np.float32)
    w[:len(weights), 0] = weights
    z = "z" if sigmoid else output
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], [z])]
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["z"], [output]))
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", DIM])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(np.array([bias], dtype=np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def batch_cumsum_model() -> bytes:
    """A deliberately order-dependent model: each row's score adds up the rows
    before it in the batch (CumSum over the batch axis)."""
    w = np.random.default_rng(1).standard_normal((DIM, 1)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("CumSum", ["xw", "axis"], ["reward"])]
    graph = helper.make_graph(
        nodes, "cumsum", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", DIM])],
        [helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(np.array(0, dtype=np.int64), "axis")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


LENGTH = FeatureEncoder([lambda t: len(t) / 100.0], "length")


def length_pairs(n: int = 24, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a, b = rng.choice(np.arange(5, 80), size=2, replace=False)
        rows.append({"prompt": f"question {i}", "chosen": "c" * int(a), "rejected": "r" * int(b),
                     "category": "A" if i % 2 else "B"})
    return rows


# -- length-bias: the analysis on arrays --------------------------------------

def test_length_scoring_model_wins_by_length_and_is_flagged_exactly_where_longer_lost():
    rng = np.random.default_rng(3)
    lc, lr = rng.integers(1, 500, 200), rng.integers(1, 500, 200)
    sc, sr = lc * 0.01, lr * 0.01  # a model that scores by length alone
    summary = pair_bias(sc, sr, lc, lr)
    assert summary["longer_wins_rate"] == 1.0
    assert summary["pearson"] == pytest.approx(1.0) and summary["spearman"] == pytest.approx(1.0)
    # the model is the length baseline: same accuracy (ties count a half in the baseline)
    ties = (lc == lr).mean()
    assert summary["model_accuracy"] == pytest.approx(summary["length_baseline_accuracy"]
                                                      - ties / 2)
    assert pairs_against_label(sc, sr, lc, lr).tolist() == np.flatnonzero(lr > lc).tolist()


def test_length_blind_model_shows_no_bias_and_nothing_flagged():
    rng = np.random.default_rng(4)
    lc, lr = rng.integers(1, 500, 400), rng.integers(1, 500, 400)
    sc, sr = np.ones(400), np.zeros(400)  # always right, whatever the lengths
    summary = pair_bias(sc, sr, lc, lr)
    assert summary["model_accuracy"] == 1.0
    assert 0.4 < summary["longer_wins_rate"] < 0.6
    assert len(pairs_against_label(sc, sr, lc, lr)) == 0


def test_correlations_match_scipy():
    from scipy import stats

    rng = np.random.default_rng(5)
    x = rng.integers(0, 20, 300).astype(float)  # many ties
    y = x + rng.standard_normal(300) * 5
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert pearson(np.ones(3), np.arange(3)) is None


def test_label_length_baseline_auroc():
    lengths = np.arange(1, 101, dtype=float)
    safe = lengths <= 50  # short answers are the safe ones
    summary = label_bias(-lengths, safe, np.ones(100, bool), lengths)
    assert summary["length_auroc"] == 0.0 and summary["model_auroc"] == 1.0
    assert summary["spearman"] == pytest.approx(-1.0)


# -- length-bias through the registry -----------------------------------------

def test_length_bias_probe_flags_pairs_lost_to_a_longer_rejected_side(ws):
    rows = length_pairs()
    add_model_bytes(ws, linear_model([1.0]), "len", "text-embedding", encoder=LENGTH)
    insert_dataset(ws, "pairs", rows, name="p")
    run = run_probes(ws, "len", "p", probes=["length-bias"], encoder=LENGTH)
    expected = {i for i, r in enumerate(rows) if len(r["rejected"]) > len(r["chosen"])}
    items, total = findings_page(ws, run.id, limit=100)
    assert total == len(expected) > 0
    assert {f["source_index"] for f in items} == expected
    assert all(f["rule"] == "longer side won against the label" and f["triage"] == "model-error"
               for f in items)
    first = items[0]
    assert first["score_before"] == pytest.approx(
        (first["details"]["len_chosen"] - first["details"]["len_rejected"]) / 100, abs=1e-5)
    summary = run.summaries["length-bias"]
    assert summary["longer_wins_rate"] == 1.0 and summary["pearson"] == pytest.approx(1.0)
    assert summary["length_unit"] == "characters" and set(summary["per_category"]) == {"A", "B"}
    # stored in the run's metrics too
    stored = ws.execute("SELECT metrics FROM audit_runs WHERE id = ?", [run.id]).fetchall()[0][0]
    assert '"longer_wins_rate"' in stored


def test_length_bias_probe_on_labels_reports_summary_only(ws):
    rows = [{"prompt": "q", "response": "x" * n, "label": n < 30, "category": "C"}
            for n in range(5, 60, 5)]
    add_model_bytes(ws, linear_model([-1.0]), "len", "text-embedding", encoder=LENGTH)
    insert_dataset(ws, "labels", rows, name="l")
    run = run_probes(ws, "len", "l", probes=["length-bias"], encoder=LENGTH)
    summary = run.summaries["length-bias"]
    assert run.counts == {"length-bias": 0}
    assert summary["length_auroc"] == 0.0 and summary["model_auroc"] == 1.0
    assert summary["per_category"]["C"]["n"] == len(rows)


# -- position-swap -------------------------------------------------------------

def test_swap_rule_on_arrays():
    fc, fr = np.array([0.9, 0.2, 0.5]), np.array([0.1, 0.4, 0.5])
    errors = swap_errors(fc, fr, fc, fr)  # the same scores in either order: consistent
    assert swap_violations(errors, np.ones(3), 1e-6).tolist() == []
    errors = swap_errors(fc, fr, fc + [0, 0.01, 0], fr)
    assert swap_violations(errors, np.ones(3), 1e-6).tolist() == [1]


def test_position_swap_finds_nothing_for_a_per_response_model(ws):
    encoder = HashEncoder()
    add_model_bytes(ws, reward_mlp(DIM), "m", "text-embedding", encoder=encoder)
    insert_dataset(ws, "pairs", length_pairs(10), name="p")
    run = run_probes(ws, "m", "p", probes=["position-swap"], encoder=encoder)
    assert run.counts == {"position-swap": 0}
    assert run.summaries["position-swap"]["n_checked"] == 10
    assert run.summaries["position-swap"]["max_abs_error"] <= 1e-6


def test_position_swap_flags_an_order_dependent_model(ws):
    encoder = HashEncoder()
    add_model_bytes(ws, batch_cumsum_model(), "cum", "text-embedding", encoder=encoder)
    insert_dataset(ws, "pairs", length_pairs(10), name="p")
    run = run_probes(ws, "cum", "p", probes=["position-swap"], encoder=encoder)
    items, total = findings_page(ws, run.id, limit=100)
    assert total == 10  # every pair's swapped margin differs
    assert all(abs(f["score_after"] + f["score_before"]) > 1e-3 for f in items)


# -- format-invariance ---------------------------------------------------------

def test_transformations_change_text_as_named():
    assert strip_markdown("## Title\n- **a** and `b`\n* c") == "Title\na and b\nc"
    variants = dict(format_variants("Plain answer. Second sentence.", list(TRANSFORMATIONS)))
    assert variants["bold"] == "**Plain answer. Second sentence.**"
    assert variants["bullets"] == "- Plain answer.\n- Second sentence."
    assert variants["polite-closing"].endswith("I hope this helps!")
    assert "strip-markdown" not in variants  # nothing to strip: no case
    assert format_variants("", list(TRANSFORMATIONS)) == []
    assert format_tolerance(np.array([0.2, 0.9]), "probability") == 0.05
    assert format_tolerance(np.array([1.0, 3.0]), "reward") == pytest.approx(0.1)


def test_format_invariance_flags_bold_for_a_model_that_likes_asterisks(ws):
    stars = FeatureEncoder([lambda t: t.count("**")], "stars")
    rows = [{"prompt": "q", "response": f"answer number {i}.", "label": True} for i in range(8)]
    rows.append({"prompt": "q", "response": "a **bold** claim.", "label": True})
    add_model_bytes(ws, linear_model([1.0]), "stars", "text-embedding", encoder=stars)
    insert_dataset(ws, "labels", rows, name="l")
    run = run_probes(ws, "stars", "l", probes=["format-invariance"], encoder=stars)
    items, total = findings_page(ws, run.id, limit=100)
    by_kind = {}
    for f in items:
        by_kind.setdefault(f["case"]["transformation"], []).append(f)
    assert set(by_kind) == {"bold", "strip-markdown"}
    assert len(by_kind["bold"]) == len(rows) and len(by_kind["strip-markdown"]) == 1
    bold = by_kind["bold"][0]
    assert bold["score_after"] - bold["score_before"] == pytest.approx(2.0)
    assert bold["case"]["text"].startswith("**") and bold["triage"] == "model-error"
    assert run.summaries["format-invariance"]["violations_per_transformation"]["bold"] == 9
    assert all(f["severity"] == 1.0 for f in items)  # a move of 2 when the scores do not vary


def test_format_invariance_samples_at_most_n_responses_reproducibly(ws):
    encoder = HashEncoder()
    add_model_bytes(ws, reward_mlp(DIM), "m", "text-embedding", encoder=encoder)
    insert_dataset(ws, "pairs", length_pairs(30), name="p")
    runs = [run_probes(ws, "m", "p", probes=["format-invariance"], params={"sample": 7},
                       encoder=encoder, seed=11) for _ in range(2)]
    summaries = [r.summaries["format-invariance"] for r in runs]
    assert summaries[0]["n_responses"] == 7 and summaries[0] == summaries[1]
    # hashed embeddings change with any edit, so a tiny tolerance flags every case
    run = run_probes(ws, "m", "p", probes=["format-invariance"],
                     params={"sample": 5, "tolerance": 1e-9}, encoder=encoder)
    assert run.counts["format-invariance"] == run.summaries["format-invariance"]["n_cases"] > 0


def test_failures_of_a_probe_run_list_findings_most_severe_first(ws):
    add_model_bytes(ws, linear_model([1.0]), "len", "text-embedding", encoder=LENGTH)
    insert_dataset(ws, "pairs", length_pairs(), name="p")
    run = run_probes(ws, "len", "p", probes=["length-bias"], encoder=LENGTH)
    items = list_failures(ws, run.id, limit=5)
    assert len(items) == 5
    assert [f["severity"] for f in items] == sorted((f["severity"] for f in items), reverse=True)
    for f in items:
        assert {"example_id", "source_index", "probe", "severity", "score_before",
                "score_after"} <= set(f)
        assert f["probe"] == "length-bias" and f["source_index"] is not None


@pytest.mark.slow
def test_bias_probes_on_hh_rlhf(ws, hh_rlhf_path):
    from workstation.datasets import import_dataset

    encoder = FeatureEncoder([lambda t: np.log1p(len(t)), lambda t: len(re.findall(r"\n", t))],
                             "hh")
    import_dataset(ws, "pairs", hh_rlhf_path, "hh")
    add_model_bytes(ws, linear_model([1.0, 0.1]), "len", "text-embedding", encoder=encoder)
    run = run_probes(ws, "len", "hh", probes=["length-bias", "position-swap",
                                              "format-invariance"], encoder=encoder)
    summary = run.summaries["length-bias"]
    assert summary["n"] == 2312 and summary["spearman"] > 0.9
    assert run.counts["length-bias"] > 0 and run.counts["position-swap"] == 0
    assert run.counts["format-invariance"] > 0  # the model scores length and newlines
    items, total = findings_page(ws, run.id, probe="length-bias", limit=3)
    assert total == run.counts["length-bias"] and items[0]["source_index"] is not None
