"""The label-errors probe on cases whose answer is known by construction:
separable data along a planted direction, a few flipped labels, a near tie,
and model versions that back or contradict the labels."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.test_models import insert_dataset
from workstation.models import add_model_bytes
from workstation.probes import PROBES, findings_page, run_probes
from workstation.probes.label_errors import label_issue_scores, out_of_fold
from workstation.review import Edit, apply

DIM = 16
PLANTED = np.eye(DIM)[0]  # the direction that separates good from bad


class PlantedEncoder:
    """Texts starting "good" lean along +PLANTED, "bad" along −PLANTED, "tie"
    texts share one vector (up to a tiny per-text wobble); anything else is a
    hash-seeded random direction orthogonal to PLANTED."""

    def __init__(self, encoder_id: str = "planted-encoder", strength: float = 1.5) -> None:
        self.id, self.dim, self.strength = encoder_id, DIM, strength

    def encode(self, texts, progress=None, batch_size=64) -> np.ndarray:
        return np.stack([self.vector(t or "") for t in texts]).astype(np.float32)

    def vector(self, text: str) -> np.ndarray:
        noise = _noise(text)
        if text.startswith("tie"):
            v = _noise("tie") + 1e-4 * noise
        else:
            sign = 1.0 if text.startswith("good") else -1.0 if text.startswith("bad") else 0.0
            v = noise + sign * self.strength * PLANTED
        return v / np.linalg.norm(v)


def _noise(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM)
    v[0] = 0.0
    return v / np.linalg.norm(v)


def linear_reward(weights: np.ndarray, scale: float = 4.0) -> bytes:
    """An ONNX reward model sigmoid(scale · x·w), one score per row."""
    w = (scale * np.asarray(weights, dtype=np.float32)).reshape(-1, 1)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["reward"])]
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", len(w)])],
        [helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]
                             ).SerializeToString()


def pairs_rows(n: int) -> list[dict]:
    return [{"prompt": f"question {i}", "chosen": f"good answer {i}",
             "rejected": f"bad answer {i}"} for i in range(n)]


def flip(ws, ids: list[int]) -> None:
    apply(ws, [Edit(i, "flipped", True, "planted flip") for i in ids])


def label_findings(ws, run_id: int) -> list[dict]:
    items, _ = findings_page(ws, run_id, probe="label-errors", limit=10_000)
    return items


@pytest.fixture
def encoder():
    return PlantedEncoder()


# -- the probe on preference pairs -------------------------------------------------

def test_flipped_pairs_are_the_label_errors_and_rank_first(ws, encoder):
    add_model_bytes(ws, linear_reward(PLANTED), "m", "text-embedding", encoder=encoder)
    dataset = insert_dataset(ws, "pairs", pairs_rows(80), name="p")
    ids = [r[0] for r in ws.execute("SELECT id FROM examples WHERE dataset_id = ? ORDER BY id",
                                    [dataset]).fetchall()]
    flipped = ids[3:80:16]  # 5 pairs
    flip(ws, flipped)
    run = run_probes(ws, "m", "p", probes=["label-errors"], encoder=encoder)
    items = label_findings(ws, run.id)
    errors = [f for f in items if f["triage"] == "label-error"]
    assert {f["example_id"] for f in errors} == set(flipped)
    assert [f["example_id"] for f in items[:5]] == [f["example_id"] for f in errors]
    top = errors[0]
    assert top["score_before"] < 0.2 and top["severity"] == pytest.approx(1 - top["score_before"])
    assert top["details"]["oof_margin"] < 0 and top["details"]["versions_disagreeing"] == 1
    assert top["rule"] == "label contradicted by the cross-validated model and model versions"
    assert top["case"] is None and top["flipped"] is True
    summary = run.summaries["label-errors"]
    assert summary["label_errors"] == 5 and summary["versions"] == ["m@1"]


def test_a_near_tie_is_ambiguous_not_a_label_error(ws, encoder):
    add_model_bytes(ws, linear_reward(PLANTED), "m", "text-embedding", encoder=encoder)
    rows = pairs_rows(60) + [{"prompt": "q", "chosen": "tie one", "rejected": "tie two"}]
    insert_dataset(ws, "pairs", rows, name="p")
    run = run_probes(ws, "m", "p", probes=["label-errors"], encoder=encoder)
    items = label_findings(ws, run.id)
    tie_id = ws.execute("SELECT id FROM examples WHERE chosen = 'tie one'").fetchall()[0][0]
    tie = [f for f in items if f["example_id"] == tie_id]
    assert len(tie) == 1 and tie[0]["triage"] == "ambiguous"
    assert tie[0]["rule"].startswith("near tie")
    assert abs(tie[0]["details"]["oof_margin"]) < 0.1 and tie[0]["severity"] < 0.5
    assert not [f for f in items if f["triage"] == "label-error"]


def test_versions_that_back_the_label_make_a_contradiction_ambiguous(ws, encoder):
    # A version that learned the opposite preference backs every flipped label.
    add_model_bytes(ws, linear_reward(-PLANTED), "anti", "text-embedding", encoder=encoder)
    dataset = insert_dataset(ws, "pairs", pairs_rows(60), name="p")
    first = ws.execute("SELECT min(id) FROM examples WHERE dataset_id = ?",
                       [dataset]).fetchall()[0][0]
    flip(ws, [first, first + 7, first + 30])
    run = run_probes(ws, "anti", "p", probes=["label-errors"], encoder=encoder)
    items = {f["example_id"]: f for f in label_findings(ws, run.id)}
    for example_id in (first, first + 7, first + 30):
        assert items[example_id]["triage"] == "ambiguous"
        assert items[example_id]["details"]["versions_agreeing"] == 1
        assert "model versions back it" in items[example_id]["rule"]
    # Without the versions' votes the same pairs are label errors.
    run = run_probes(ws, "anti", "p", probes=["label-errors"], params={"max_versions": 0},
                     encoder=encoder)
    errors = {f["example_id"] for f in label_findings(ws, run.id) if f["triage"] == "label-error"}
    assert errors == {first, first + 7, first + 30}


def test_versions_registered_for_another_encoder_do_not_vote(ws, encoder):
    add_model_bytes(ws, linear_reward(PLANTED), "m", "text-embedding", encoder=encoder)
    add_model_bytes(ws, linear_reward(-PLANTED), "other", "text-embedding",
                    encoder=PlantedEncoder("another-encoder"))
    insert_dataset(ws, "pairs", pairs_rows(20), name="p")
    run = run_probes(ws, "m", "p", probes=["label-errors"], encoder=encoder)
    summary = run.summaries["label-errors"]
    assert summary["versions"] == ["m@1"]
    assert summary["skipped_versions"] == {"other@1": "registered for another encoder"}


# -- the probe on labeled responses ---------------------------------------------------

def test_flipped_safety_labels_are_found(ws, encoder):
    add_model_bytes(ws, linear_reward(PLANTED), "m", "text-embedding", encoder=encoder,
                    score_type="probability")  # judged against 0.5
    rows = [{"prompt": f"ask {i}", "response": f"{'good' if i % 2 else 'bad'} reply {i}",
             "label": bool(i % 2), "category": "A" if i < 50 else "B"} for i in range(100)]
    flipped = {5, 12, 33, 60, 91, 98}
    for i in flipped:
        rows[i]["label"] = not rows[i]["label"]
    rows.append({"prompt": "unlabeled", "response": "bad reply", "label": None})
    dataset = insert_dataset(ws, "labels", rows, name="l")
    first = ws.execute("SELECT min(id) FROM examples WHERE dataset_id = ?",
                       [dataset]).fetchall()[0][0]
    run = run_probes(ws, "m", "l", probes=["label-errors"], encoder=encoder)
    items = label_findings(ws, run.id)
    errors = [f for f in items if f["triage"] == "label-error"]
    assert {f["example_id"] - first for f in errors} == flipped
    assert all(f["score_before"] < 0.5 for f in errors)
    assert run.summaries["label-errors"]["n_examples"] == 100  # the unlabeled one is skipped


def test_a_relabeled_example_is_judged_by_its_current_label(ws, encoder):
    add_model_bytes(ws, linear_reward(PLANTED), "m", "text-embedding", encoder=encoder,
                    score_type="probability")
    rows = [{"prompt": "p", "response": f"{'good' if i % 2 else 'bad'} {i}",
             "label": bool(i % 2)} for i in range(40)]
    dataset = insert_dataset(ws, "labels", rows, name="l")
    first = ws.execute("SELECT min(id) FROM examples WHERE dataset_id = ?",
                       [dataset]).fetchall()[0][0]
    apply(ws, [Edit(first + 4, "label", "safe", "mistaken review")])
    run = run_probes(ws, "m", "l", probes=["label-errors"], encoder=encoder)
    errors = [f["example_id"] for f in label_findings(ws, run.id) if f["triage"] == "label-error"]
    assert errors == [first + 4]


# -- the out-of-fold scores as a plain function -----------------------------------------

def planted_pairs(n: int, flips: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    diff = rng.standard_normal((n, DIM)) * 0.3
    diff[:, 0] += 1.0  # the chosen side is better along the planted direction
    labels = np.ones(n, dtype=bool)
    flipped = rng.choice(n, flips, replace=False)
    labels[flipped] = False
    return diff, labels, flipped


def test_label_issue_scores_rank_flipped_pairs_lowest():
    diff, labels, flipped = planted_pairs(200, 5)
    p = label_issue_scores(diff, labels, k=5, seed=0, pairwise=True)
    assert set(np.argsort(p)[:5]) == set(flipped)
    assert p.shape == (200,) and (p > 0).all() and (p < 1).all()
    np.testing.assert_array_equal(p, label_issue_scores(diff, labels, k=5, seed=0, pairwise=True))


def test_pairs_are_antisymmetric_swapping_sides_keeps_each_verdict():
    diff, labels, _ = planted_pairs(100, 3, seed=1)
    p = label_issue_scores(diff, labels, pairwise=True)
    swapped = label_issue_scores(-diff, ~labels, pairwise=True)
    np.testing.assert_allclose(p, swapped, atol=1e-9)


def test_each_fold_matches_scikit_learn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.standard_normal((150, 6))
    y = x[:, 0] - 0.5 * x[:, 1] + 0.8 * rng.standard_normal(150) > 0.3
    oof = out_of_fold(x, y, k=3, seed=2, lambdas=(2.0,))
    for f in range(3):
        train = oof.fold != f
        # sklearn penalises the bias too when it is a plain column, as ours does
        xb = np.hstack([x, np.ones((150, 1))])
        model = LogisticRegression(C=1 / 2.0, fit_intercept=False, tol=1e-10, max_iter=10_000)
        model.fit(xb[train], y[train])
        expected = model.predict_proba(xb[~train])[np.arange((~train).sum()), y[~train].astype(int)]
        np.testing.assert_allclose(oof.probability[~train], expected, atol=1e-5)


def test_weak_contradictions_are_ambiguous_and_the_cut_is_a_parameter(ws):
    weak = PlantedEncoder(strength=0.3)
    add_model_bytes(ws, linear_reward(PLANTED), "m", "text-embedding", encoder=weak)
    rows = pairs_rows(90)
    for row in rows[::3]:  # a third of the labels disagree with the planted direction
        row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    insert_dataset(ws, "pairs", rows, name="p")
    params = {"max_versions": 0}
    run = run_probes(ws, "m", "p", probes=["label-errors"], params=params, encoder=weak)
    items = label_findings(ws, run.id)
    weakly = [f for f in items if 0.25 < f["score_before"] < 0.5
              and abs(f["details"]["oof_margin"]) >= 0.1]
    assert weakly and all(f["triage"] == "ambiguous" for f in weakly)
    assert all(f["rule"] == "label weakly contradicted by the cross-validated model"
               for f in weakly)
    assert all(f["score_before"] <= 0.25 for f in items if f["triage"] == "label-error")
    run = run_probes(ws, "m", "p", probes=["label-errors"],
                     params={**params, "error_below": 0.49}, encoder=weak)
    summary = run.summaries["label-errors"]
    assert summary["error_below"] == 0.49 and summary["label_errors"] >= len(weakly)


def test_the_probe_is_registered_for_text_datasets():
    probe = PROBES["label-errors"]
    assert probe.kinds == ("pairs", "labels") and probe.version
