"""The model registry and scoring: registration of each input kind, scores
that match the model's own framework, and refusals that leave nothing behind."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workstation.errors import WorkstationError
from workstation.models import (add_model, add_model_bytes, list_models, load_onnx, load_runner,
                                resolve, score_dataset)

DIM = 8


class HashEncoder:
    """A deterministic stand-in for the sentence encoder: unit vectors from a hash."""

    def __init__(self, dim: int = DIM, encoder_id: str = "test-hash-encoder") -> None:
        self.id, self.dim = encoder_id, dim

    def encode(self, texts, progress=None, batch_size=64) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256((text or "").encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        return out


# -- helpers -----------------------------------------------------------------

def insert_dataset(ws, kind: str, rows: list[dict], name: str | None = None) -> int:
    """A dataset written straight into the tables; returns its id."""
    dataset_id = ws.next_id("datasets")
    first = ws.next_id("examples")
    ws.execute("INSERT INTO datasets VALUES (?, ?, ?, 'test', 'sha', NULL, 'now', ?, NULL)",
               [dataset_id, name or f"{kind}{dataset_id}", kind, len(rows)])
    for i, row in enumerate(rows):
        ws.execute("INSERT INTO examples (id, dataset_id, source_sha256, source_index, prompt, "
                   "chosen, rejected, response, label, category, n_steps) "
                   "VALUES (?, ?, 'sha', ?, ?, ?, ?, ?, ?, ?, ?)",
                   [first + i, dataset_id, i, row.get("prompt"), row.get("chosen"),
                    row.get("rejected"), row.get("response"), row.get("label"),
                    row.get("category"), len(row["obs"]) if "obs" in row else None])
        for step, obs in enumerate(row.get("obs", [])):
            ws.execute("INSERT INTO demo_steps VALUES (?, ?, ?, NULL)",
                       [first + i, step, [float(v) for v in obs]])
    return dataset_id


def counts(ws) -> tuple[int, int]:
    return (ws.execute("SELECT count(*) FROM model_versions").fetchone()[0],
            ws.execute("SELECT count(*) FROM blobs").fetchone()[0])


def fit_logistic(width: int, seed: int = 0):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((200, width)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.standard_normal(200) > 0).astype(int)
    return LogisticRegression().fit(x, y)


def skl_onnx(model, width: int, zipmap: bool) -> bytes:
    from skl2onnx import to_onnx

    options = {id(model): {"zipmap": zipmap}}
    return to_onnx(model, np.zeros((1, width), dtype=np.float32), options=options,
                   target_opset=17).SerializeToString()


def reward_mlp(width: int, out_name: str = "reward", seed: int = 0) -> bytes:
    """sigmoid(x @ w): one reward in (0, 1) per row, shape [N, 1]."""
    w = np.random.default_rng(seed).standard_normal((width, 1)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"]),
             helper.make_node("Sigmoid", ["z"], [out_name])]
    graph = helper.make_graph(nodes, "reward", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", width])], [helper.make_tensor_value_info(
            out_name, TensorProto.FLOAT, ["N", 1])], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             producer_name="test").SerializeToString()


def token_model(with_type_ids: bool = False) -> bytes:
    """logits [N, 2] = [-s, s] with s = sum of the unmasked token ids."""
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_type_ids else [])
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", "S"]) for n in names]
    nodes = [helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
             helper.make_node("Cast", ["masked"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["f", "axes"], ["s"], keepdims=1),
             helper.make_node("Neg", ["s"], ["neg"]),
             helper.make_node("Concat", ["neg", "s"], ["logits"], axis=1)]
    if with_type_ids:  # consume the input so that it stays in the graph
        nodes += [helper.make_node("Cast", ["token_type_ids"], ["t"], to=TensorProto.FLOAT),
                  helper.make_node("ReduceSum", ["t", "axes"], ["unused"], keepdims=1)]
    graph = helper.make_graph(
        nodes, "tokens", inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


VOCAB = {"[PAD]": 0, "[UNK]": 1, "good": 2, "bad": 3, "very": 4, "ok": 5}


def write_tokenizer(path, max_length: int | None = None) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    if max_length:
        tokenizer.enable_truncation(max_length)
    tokenizer.save(str(path))


def token_sum(*texts: str, limit: int | None = None) -> float:
    ids = [VOCAB.get(w, 1) for t in texts if t for w in t.split()]
    return float(sum(ids[:limit] if limit else ids))


LABELS = [
    {"prompt": "how do I bake bread", "response": "knead the dough", "label": True,
     "category": "Food"},
    {"prompt": "how do I pick a lock", "response": "I cannot help with that", "label": True,
     "category": "Crime"},
    {"prompt": "how do I pick a lock", "response": "insert a tension wrench", "label": False,
     "category": "Crime"},
    {"prompt": None, "response": "hello there", "label": False},
    {"prompt": "p", "response": None, "label": True},
]


# -- text-embedding ----------------------------------------------------------

@pytest.mark.parametrize("zipmap", [False, True])
def test_sklearn_logistic_scores_match_predict_proba(ws, tmp_path, zipmap):
    encoder = HashEncoder()
    model = fit_logistic(DIM)
    path = tmp_path / "lr.onnx"
    path.write_bytes(skl_onnx(model, DIM, zipmap))
    version = add_model(ws, path, "lr", "text-embedding", encoder=encoder, notes="baseline")
    assert (version.model, version.version, version.ref) == ("lr", 1, "lr@1")
    m = version.manifest
    assert m["score_type"] == "probability" and m["column"] == 1 and m["zipmap"] is zipmap
    assert m["output"] == ("output_probability" if zipmap else "probabilities")
    assert m["input"]["layout"] == "response" and m["input"]["encoder"] == encoder.id
    assert m["onnx"]["producer_name"] == "skl2onnx" and m["onnx"]["opset"]["ai.onnx"] >= 13
    assert m["onnx"]["inputs"][0]["shape"][1] == DIM and m["notes"] == "baseline"
    assert m["created_by"] == "test-analyst" and m["sha256"] == version.sha256

    dataset = insert_dataset(ws, "labels", LABELS)
    result = score_dataset(ws, version, dataset, encoder=encoder)
    expected = model.predict_proba(encoder.encode([r["response"] or "" for r in LABELS]))[:, 1]
    np.testing.assert_allclose(result.score, expected, atol=1e-5)
    assert result.labels.tolist() == [r["label"] for r in LABELS]
    assert result.score_type == "probability"
    cached = ws.execute("SELECT count(*) FROM embeddings WHERE encoder_id = ?",
                        [encoder.id]).fetchone()[0]
    assert cached == len({r["response"] or "" for r in LABELS})


def test_prompt_plus_response_model_takes_both_embeddings(ws):
    encoder = HashEncoder()
    model = fit_logistic(2 * DIM, seed=3)
    version = add_model_bytes(ws, skl_onnx(model, 2 * DIM, False), "pr", "text-embedding",
                              encoder=encoder)
    assert version.manifest["input"]["layout"] == "prompt+response"
    pairs = [{"prompt": "q1", "chosen": "safe reply", "rejected": "unsafe reply"},
             {"prompt": None, "chosen": "a", "rejected": "b"}]
    dataset = insert_dataset(ws, "pairs", pairs)
    result = score_dataset(ws, "pr", dataset, encoder=encoder)

    def proba(prompts, responses):
        x = np.concatenate([encoder.encode(prompts), encoder.encode(responses)], axis=1)
        return model.predict_proba(x)[:, 1]
    prompts = [p["prompt"] or "" for p in pairs]
    chosen = proba(prompts, [p["chosen"] for p in pairs])
    rejected = proba(prompts, [p["rejected"] for p in pairs])
    np.testing.assert_allclose(result.score_chosen, chosen, atol=1e-5)
    np.testing.assert_allclose(result.score_rejected, rejected, atol=1e-5)
    np.testing.assert_allclose(result.margin, chosen - rejected, atol=1e-5)


def test_scoring_with_another_encoder_is_refused(ws):
    version = add_model_bytes(ws, reward_mlp(DIM), "mlp", "text-embedding",
                              encoder=HashEncoder())
    dataset = insert_dataset(ws, "labels", LABELS)
    with pytest.raises(WorkstationError, match="registered for encoder test-hash-encoder"):
        score_dataset(ws, version, dataset, encoder=HashEncoder(encoder_id="other"))


# -- observation -------------------------------------------------------------

def test_observation_model_scores_every_state(ws):
    data = reward_mlp(4, seed=1)
    version = add_model_bytes(ws, data, "obs", "observation")
    assert version.manifest["input"]["obs_dim"] == 4
    assert version.manifest["score_type"] == "reward" and version.manifest["column"] is None
    rng = np.random.default_rng(0)
    trajectories = [{"obs": rng.standard_normal((n, 4)).tolist()} for n in (3, 5, 1)]
    dataset = insert_dataset(ws, "demos", trajectories)
    result = score_dataset(ws, version, dataset)

    w = numpy_helper.to_array(onnx.load_model_from_string(data).graph.initializer[0])
    for i, t in enumerate(trajectories):
        rewards = 1 / (1 + np.exp(-(np.asarray(t["obs"], dtype=np.float32) @ w)[:, 0]))
        assert result.score[i] == pytest.approx(rewards.mean(), abs=1e-6)
        assert result.score_min[i] == pytest.approx(rewards.min(), abs=1e-6)
    assert len(result.step_rewards) == 9
    assert result.labels.all()


def test_observation_width_must_match_the_dataset(ws):
    version = add_model_bytes(ws, reward_mlp(3), "obs", "observation")
    dataset = insert_dataset(ws, "demos", [{"obs": [[0.0] * 4]}])
    with pytest.raises(WorkstationError, match="width 3.*width 4"):
        score_dataset(ws, version, dataset)


def test_a_text_model_cannot_score_demonstrations(ws):
    version = add_model_bytes(ws, reward_mlp(DIM), "mlp", "text-embedding", encoder=HashEncoder())
    dataset = insert_dataset(ws, "demos", [{"obs": [[0.0] * 4]}])
    with pytest.raises(WorkstationError, match="takes text-embedding input.*holds demos"):
        score_dataset(ws, version, dataset, encoder=HashEncoder())


# -- text-tokens -------------------------------------------------------------

@pytest.mark.parametrize("with_type_ids", [False, True])
def test_token_model_tokenizes_prompt_and_response_as_a_pair(ws, tmp_path, with_type_ids):
    path = tmp_path / "model.onnx"
    path.write_bytes(token_model(with_type_ids))
    write_tokenizer(tmp_path / "tokenizer.json")
    version = add_model(ws, path, "tok", "text-tokens")
    m = version.manifest
    assert m["score_type"] == "logit" and m["column"] == 1 and m["output"] == "logits"
    assert len(m["tokenizer_sha256"]) == 64
    assert m["input"]["max_length"] == 512
    assert ws.execute("SELECT count(*) FROM blobs WHERE sha256 = ?",
                      [m["tokenizer_sha256"]]).fetchone()[0] == 1

    pairs = [{"prompt": "very good", "chosen": "good", "rejected": "bad bad"},
             {"prompt": None, "chosen": "ok ok ok", "rejected": "unknown words"},
             {"prompt": "good", "chosen": "", "rejected": "very"}]
    dataset = insert_dataset(ws, "pairs", pairs)
    result = score_dataset(ws, version, dataset, batch_size=2)
    assert result.score_chosen.tolist() == [token_sum(p["prompt"], p["chosen"]) for p in pairs]
    assert result.score_rejected.tolist() == [token_sum(p["prompt"], p["rejected"])
                                              for p in pairs]


def test_token_model_truncates_to_the_tokenizers_length(ws, tmp_path):
    tokenizer = tmp_path / "tok.json"
    write_tokenizer(tokenizer, max_length=3)
    (tmp_path / "m.onnx").write_bytes(token_model())
    version = add_model(ws, tmp_path / "m.onnx", "tok", "text-tokens", tokenizer=tokenizer)
    assert version.manifest["input"]["max_length"] == 3
    dataset = insert_dataset(ws, "labels", [{"prompt": "very very", "response": "ok ok ok",
                                             "label": True}])
    result = score_dataset(ws, version, dataset)
    # longest-first truncation of the pair keeps 2 prompt tokens? no: it trims
    # the longer side first, giving "very" + "ok ok" for a budget of 3.
    assert result.score.tolist() == [token_sum("very", "ok ok")]


# -- registry ----------------------------------------------------------------

def test_reregistering_the_same_file_adds_a_version_but_one_blob(ws, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(reward_mlp(4))
    first = add_model(ws, path, "rm", "observation")
    second = add_model(ws, path, "rm", "observation")
    assert (first.version, second.version) == (1, 2)
    assert first.sha256 == second.sha256
    assert ws.execute("SELECT count(*) FROM blobs").fetchone()[0] == 1
    assert second.parent_id is None
    assert resolve(ws, "rm").version == 2 and resolve(ws, "rm@1").id == first.id
    assert [v.ref for v in list_models(ws)] == ["rm@1", "rm@2"]
    assert load_onnx(ws, "rm@2") == path.read_bytes()
    assert load_runner(ws, "rm") is load_runner(ws, second)


def test_a_child_identical_to_its_parent_is_refused(ws, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(reward_mlp(4))
    add_model(ws, path, "rm", "observation")
    with pytest.raises(WorkstationError, match=r"m.onnx is identical to rm@1 .*would change "
                                               r"nothing; nothing registered"):
        add_model(ws, path, "rm", "observation", parent="rm@1")
    assert [v.ref for v in list_models(ws)] == ["rm@1"]
    # the same file read another way (another score type) is a different scorer
    first = resolve(ws, "rm@1").manifest["score_type"]
    other = "reward" if first != "reward" else "probability"
    add_model(ws, path, "rm", "observation", parent="rm@1", score_type=other)
    assert [v.ref for v in list_models(ws)] == ["rm@1", "rm@2"]


def test_unknown_model_lists_the_known_ones(ws):
    with pytest.raises(WorkstationError, match="no models are registered yet"):
        resolve(ws, "nope")
    add_model_bytes(ws, reward_mlp(4), "alpha", "observation")
    with pytest.raises(WorkstationError, match=r"unknown model 'nope'; known models: alpha"):
        resolve(ws, "nope")
    with pytest.raises(WorkstationError, match="model 'alpha' has no version 9"):
        resolve(ws, "alpha@9")


def test_in_memory_registration_keeps_manifest_extras(ws):
    lineage = {"trained_on": "hh", "review_head": "abc"}
    version = add_model_bytes(ws, reward_mlp(4), "trained", "observation",
                              extras={"lineage": lineage, "metrics": {"loss": 0.1}})
    stored = json.loads(ws.execute("SELECT manifest FROM model_versions").fetchone()[0])
    assert stored["lineage"] == lineage and version.manifest["metrics"] == {"loss": 0.1}
    with pytest.raises(WorkstationError, match="may not set sha256"):
        add_model_bytes(ws, reward_mlp(4), "trained", "observation", extras={"sha256": "x"})


def test_output_and_column_can_be_chosen(ws):
    model = fit_logistic(4)
    version = add_model_bytes(ws, skl_onnx(model, 4, False), "lr0", "observation", column=0)
    rows = [{"obs": [[0.5, -1.0, 0.0, 2.0]]}]
    result = score_dataset(ws, version, insert_dataset(ws, "demos", rows))
    assert result.score[0] == pytest.approx(
        model.predict_proba(np.array(rows[0]["obs"], dtype=np.float32))[0, 0], abs=1e-5)
    label_version = add_model_bytes(ws, skl_onnx(model, 4, False), "lab", "observation",
                                    output="label")
    assert label_version.manifest["score_type"] == "reward"


# -- refusals ----------------------------------------------------------------

def wide_input_model(width: int, dtype=TensorProto.FLOAT) -> bytes:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", dtype, ["N", width])],
                              [helper.make_tensor_value_info("y", dtype, ["N", width])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def two_input_model() -> bytes:
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1])
                               for n in ("a", "b")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


REFUSALS = {
    "wrong width": (lambda: wide_input_model(10), "text-embedding", {},
                    re.escape("expected input width 8 (response) or 16 (prompt+response), "
                              "found 10")),
    "random bytes": (lambda: np.random.default_rng(0).bytes(3000), "observation", {},
                     "not a valid ONNX model|cannot load the model"),
    "empty file": (lambda: b"", "observation", {}, r"the file is empty \(0 bytes\)"),
    "truncated": (lambda: reward_mlp(4)[:120], "observation", {},
                  "not a valid ONNX model|cannot load the model"),
    "corrupt": (lambda: reward_mlp(4)[:40] + b"\xff" * 40 + reward_mlp(4)[80:], "observation", {},
                "not a valid ONNX model|cannot load the model"),
    "missing output": (lambda: reward_mlp(4), "observation", {"output": "prob"},
                       "output 'prob' not found; the model's outputs are reward"),
    "column out of range": (lambda: skl_onnx(fit_logistic(4), 4, False), "observation",
                            {"column": 2}, r"column 2 is out of range: output 'probabilities' "
                                           r"has 2 columns \(0..1\)"),
    "zipmap column out of range": (lambda: skl_onnx(fit_logistic(4), 4, True), "observation",
                                   {"column": 5}, "column 5 is out of range"),
    "integer input": (lambda: wide_input_model(4, TensorProto.INT64), "observation", {},
                      r"expected a float input, found tensor\(int64\)"),
    "two free inputs": (two_input_model, "observation", {},
                        "takes exactly one input, found 2: a, b"),
    "huge declared shape": (lambda: wide_input_model(1 << 26), "observation", {},
                            "more than a test run allows"),
    "token model without tokenizer": (token_model, "text-tokens", {},
                                      "needs its tokenizer.json"),
    "embedding model for tokens": (lambda: reward_mlp(DIM), "text-tokens", {},
                                   "takes input_ids and attention_mask"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_registration_refuses_and_changes_nothing(ws, tmp_path, case):
    make, kind, options, message = REFUSALS[case]
    add_model_bytes(ws, reward_mlp(4), "existing", "observation")
    before = counts(ws)
    path = tmp_path / "bad.onnx"
    path.write_bytes(make())
    with pytest.raises(WorkstationError, match=message) as info:
        add_model(ws, path, "bad", kind, encoder=HashEncoder(), **options)
    text = str(info.value)
    assert "\n" not in text
    if "found" not in message and "out of range" not in message:
        assert str(path) in text  # a file problem names the file
    assert counts(ws) == before


def test_registration_refuses_a_missing_file_and_a_bad_tokenizer(ws, tmp_path):
    with pytest.raises(WorkstationError, match="no model file at"):
        add_model(ws, tmp_path / "absent.onnx", "x", "observation")
    (tmp_path / "m.onnx").write_bytes(token_model())
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(WorkstationError, match="not a valid tokenizer.json"):
        add_model(ws, tmp_path / "m.onnx", "x", "text-tokens")
    with pytest.raises(WorkstationError, match="unknown input kind 'pixels'"):
        add_model(ws, tmp_path / "m.onnx", "x", "pixels")
    assert counts(ws) == (0, 0)


# -- arbitrary inputs ----------------------------------------------------------

def test_score_texts_matches_dataset_scoring(ws):
    from workstation.models import score_texts

    encoder = HashEncoder()
    add_model_bytes(ws, skl_onnx(fit_logistic(2 * DIM, seed=3), 2 * DIM, False), "pr",
                    "text-embedding", encoder=encoder)
    pairs = [{"prompt": "q1", "chosen": "safe reply", "rejected": "unsafe reply"}]
    result = score_dataset(ws, "pr", insert_dataset(ws, "pairs", pairs), encoder=encoder)
    scores = score_texts(ws, "pr", ["q1", "q1"], ["safe reply", "unsafe reply"], encoder=encoder)
    np.testing.assert_allclose(scores, [result.score_chosen[0], result.score_rejected[0]],
                               atol=1e-9)


def test_score_observations_checks_the_width(ws):
    from workstation.models import score_observations

    add_model_bytes(ws, reward_mlp(4, seed=1), "obs", "observation")
    assert score_observations(ws, "obs", np.zeros((3, 4))).shape == (3,)
    with pytest.raises(WorkstationError, match="4-wide observations"):
        score_observations(ws, "obs", np.zeros((3, 5)))
