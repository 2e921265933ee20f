"""Head retraining: a model registered from outside keeps its graph and gets a
new head fitted in its own feature space; models without a head are refused
in one line naming --new-head-on-embeddings."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from tests.head_models import nonlinear_after_matmul, tree_model
from tests.test_models import (HashEncoder, counts, fit_logistic, insert_dataset, reward_mlp,
                               skl_onnx, token_model, write_tokenizer)
from workstation.errors import WorkstationError
from workstation.models import add_model, add_model_bytes, load_onnx, resolve
from workstation.models.features import feature_space, text_features
from workstation.models.inspection import inspect_model
from workstation.models.onnx_model import OnnxRunner
from workstation.models.score_head import NoHead, find_head, splice
from workstation.training import train

DIM = 8
FAST_TEXT = {"epochs": 20, "batch_size": 16, "lr": 0.01, "members": 2}


def _manifest(data: bytes, kind: str = "text-embedding", width: int = DIM) -> dict:
    manifest = inspect_model(data, kind, encoder_dim=width)
    return {**manifest, "input_kind": kind}


def _torch_head_model(width: int, dynamo: bool = False) -> bytes:
    """x -> tanh(Linear) -> Linear(1): a body and a Gemm head."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(width, 6), torch.nn.Tanh(),
                                 torch.nn.Linear(6, 1)).eval()
    buffer = io.BytesIO()
    torch.onnx.export(module, (torch.zeros(2, width),), buffer, dynamo=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    return buffer.getvalue()


LINEAR_MODELS = {
    "logistic": (lambda: skl_onnx(fit_logistic(DIM), DIM, False),
                 ("LinearClassifier", "sigmoid", 2, 1, True)),
    "logistic zipmap": (lambda: skl_onnx(fit_logistic(DIM), DIM, True),
                        ("LinearClassifier", "sigmoid", 2, 1, True)),
    "linear regression": (lambda: _linear_regression(), ("LinearRegressor", "none", 1, 0, True)),
    "matmul + sigmoid": (lambda: reward_mlp(DIM), ("MatMul", "sigmoid", 1, 0, True)),
    "torch gemm": (lambda: _torch_head_model(DIM), ("Gemm", "none", 1, 0, False)),
}


def _linear_regression() -> bytes:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(1).standard_normal((50, DIM)).astype(np.float32)
    model = LinearRegression().fit(x, x[:, 0] - x[:, 1])
    return to_onnx(model, x[:1], target_opset=17).SerializeToString()


@pytest.mark.parametrize("name", list(LINEAR_MODELS))
def test_the_head_is_found_and_a_spliced_head_scores_as_fitted(name):
    make, (op, transform, outputs, column, at_input) = LINEAR_MODELS[name]
    data = make()
    manifest = _manifest(data)
    head = find_head(data, manifest)
    assert (head.op, head.transform, head.outputs, head.column, head.input_is_model_input) == \
        (op, transform, outputs, column, at_input)
    assert head.width == (DIM if at_input else 6)

    x = np.random.default_rng(2).standard_normal((40, DIM)).astype(np.float32)
    features = x if at_input else _cut(data, head, x)
    v, c = head.linear()
    np.testing.assert_allclose(head.score_of(features.astype(np.float64) @ v + c),
                               OnnxRunner(data, manifest).score_matrix(x), atol=1e-5)
    v2 = v + np.linspace(-0.5, 0.5, len(v))
    c2 = c + 0.25 if head.bias_source else c  # a bias-free head keeps its zero offset
    spliced = splice(data, head, *head.with_linear(v2, c2))
    np.testing.assert_allclose(OnnxRunner(spliced, manifest).score_matrix(x),
                               head.score_of(features.astype(np.float64) @ v2 + c2), atol=1e-5)
    _only_head_changed(data, spliced, head)


def _cut(data: bytes, head, x: np.ndarray) -> np.ndarray:
    from workstation.models.onnx_model import make_session
    from workstation.models.score_head import feature_model

    session = make_session(feature_model(data, head))
    return session.run([head.input], {"x": x})[0]


def _only_head_changed(before: bytes, after: bytes, head) -> None:
    """The spliced graph equals the original but for the head's weights."""
    a, b = onnx.load_model_from_string(before), onnx.load_model_from_string(after)
    assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
    assert [i.name for i in a.graph.input] == [i.name for i in b.graph.input]
    old = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    new = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    assert old.keys() == new.keys()
    changed = {k for k in old if not np.array_equal(old[k], new[k])}
    assert changed <= {head.weight_source, head.bias_source}
    for x, y in zip(a.graph.node, b.graph.node):
        if (x.name or x.op_type) not in head.nodes:
            assert x == y
    assert changed or head.op in ("LinearClassifier", "LinearRegressor")


NO_HEAD = {
    "relu after the last matmul": (lambda: nonlinear_after_matmul(DIM),
                                   "non-linear 'Relu' node"),
    "tree ensemble": (lambda: tree_model(*_regression_data()), "non-linear 'TreeEnsemble"),
}


def _regression_data() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(3).standard_normal((60, DIM)).astype(np.float32)
    return x, x[:, 0]


@pytest.mark.parametrize("name", list(NO_HEAD))
def test_models_without_a_head_are_refused_in_one_line(ws, name):
    make, reason = NO_HEAD[name]
    encoder = HashEncoder()
    data = make()
    with pytest.raises(NoHead, match=reason):
        find_head(data, _manifest(data))
    add_model_bytes(ws, data, "m", "text-embedding", encoder=encoder)
    insert_dataset(ws, "labels", _labels(40), name="lab")
    before = counts(ws)
    with pytest.raises(WorkstationError) as error:
        train(ws, "lab", "m", parent="m@1", encoder=encoder)
    message = str(error.value)
    assert "no scoring head found in m@1" in message and reason.split()[0] in message
    assert "--new-head-on-embeddings" in message and "\n" not in message
    assert counts(ws) == before


def test_new_head_on_embeddings_gives_todays_model(ws):
    encoder = HashEncoder()
    add_model_bytes(ws, nonlinear_after_matmul(2 * DIM), "m", "text-embedding", encoder=encoder)
    insert_dataset(ws, "labels", _labels(40), name="lab")
    result = train(ws, "lab", "m", parent="m@1", encoder=encoder, params=FAST_TEXT,
                   new_head_on_embeddings=True)
    payload = result.to_json()
    assert payload["method"] == "new" and payload["parent"] == "m@1"
    assert payload["hyperparameters"]["members"] == 2  # the ensemble trainer's own settings
    assert resolve(ws, "m@2").manifest["onnx"]["producer_name"] == "workstation.training"


def test_a_tokens_model_without_a_head_is_refused(ws, tmp_path):
    (tmp_path / "m.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    add_model(ws, tmp_path / "m.onnx", "tok", "text-tokens")
    insert_dataset(ws, "labels", _labels(10), name="lab")
    with pytest.raises(WorkstationError, match=r"no scoring head found in tok@1 \(the score is "
                                               r"computed by a non-linear 'Concat'.*--new-head"):
        train(ws, "lab", "tok", parent="tok@1")
    # the suggested flag trains a model on embeddings, which needs another name
    with pytest.raises(WorkstationError, match="takes text-tokens input; a model that takes "
                                               "text-embedding input needs another name"):
        train(ws, "lab", "tok", parent="tok@1", new_head_on_embeddings=True,
              encoder=HashEncoder())


def _labels(n: int, seed: int = 0) -> list[dict]:
    """Responses whose label follows the hash embedding's first coordinate."""
    encoder = HashEncoder(2 * DIM)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        response = f"reply {i} {rng.integers(1_000_000)}"
        safe = bool(encoder.encode([response])[0, 0] > 0)
        rows.append({"prompt": f"question {i}", "response": response, "label": safe})
    return rows


def _pairs(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"prompt": f"q{i}", "chosen": f"good {rng.integers(10**6)}",
             "rejected": f"bad {rng.integers(10**6)}"} for i in range(n)]


@pytest.mark.parametrize("kind", ["labels", "pairs"])
def test_an_outside_embedding_model_gets_a_new_head(ws, kind):
    encoder = HashEncoder()
    rows = _labels(120) if kind == "labels" else _pairs(120)
    dataset = insert_dataset(ws, kind, rows, name="data")
    parent = add_model_bytes(ws, skl_onnx(fit_logistic(DIM, seed=5), DIM, False), "lr",
                             "text-embedding", encoder=encoder)
    result = train(ws, "data", "lr", parent="lr@1", encoder=encoder, seed=3)
    new = result.version
    lineage = new.manifest["lineage"]
    assert (new.ref, lineage["parent"], lineage["method"], lineage["seed"]) == \
        ("lr@2", "lr@1", "head", 3)
    assert lineage["head"]["nodes"] == ["LinearClassifier"] and lineage["head"]["width"] == DIM
    assert lineage["dataset"] == "data" and lineage["split"]["n_heldout"] > 0
    assert lineage["objective"] == ("logistic" if kind == "labels" else "bradley-terry")
    for key in ("input", "output", "column", "score_type", "zipmap"):
        assert new.manifest[key] == parent.manifest[key]
    metric = "heldout_auroc" if kind == "labels" else "heldout_pairwise_accuracy"
    assert result.metrics[metric] is not None and f"parent_{metric}" in result.metrics

    # the spliced graph scores the cached features as the fitted head does
    space = feature_space(ws, new)
    texts = [(r["prompt"], r.get("response") or r.get("chosen")) for r in rows]
    x = text_features(ws, space, [p for p, _ in texts], [t for _, t in texts], encoder)
    v, c = space.head.linear()
    np.testing.assert_allclose(OnnxRunner(load_onnx(ws, new), new.manifest).score_matrix(x),
                               space.head.score_of(x.astype(np.float64) @ v + c), atol=1e-5)
    assert new.manifest["head_splice_max_diff"] <= 1e-5
    old_head = find_head(load_onnx(ws, parent), parent.manifest)
    assert not np.allclose(old_head.weight, space.head.weight)
    assert dataset  # the held-out split is the dataset's, as every training run's


def test_retraining_the_same_head_twice_is_refused_and_one_class_labels_too(ws):
    encoder = HashEncoder()
    insert_dataset(ws, "labels", _labels(80), name="lab")
    add_model_bytes(ws, skl_onnx(fit_logistic(DIM), DIM, False), "lr", "text-embedding",
                    encoder=encoder)
    train(ws, "lab", "lr", parent="lr@1", encoder=encoder)
    before = counts(ws)
    with pytest.raises(WorkstationError, match="identical to lr@2: the training data did not "
                                               "change"):
        train(ws, "lab", "lr", parent="lr@1", encoder=encoder)
    assert counts(ws) == before
    insert_dataset(ws, "labels", [{"prompt": "q", "response": f"r{i}", "label": True}
                                  for i in range(10)], name="safe-only")
    with pytest.raises(WorkstationError, match="are safe: a classifier needs both"):
        train(ws, "safe-only", "lr", parent="lr@1", encoder=encoder)
    assert counts(ws) == before


def test_workstation_trained_models_keep_todays_retraining(ws):
    encoder = HashEncoder()
    insert_dataset(ws, "labels", _labels(60), name="lab")
    train(ws, "lab", "rm", encoder=encoder, params=FAST_TEXT)
    second = train(ws, "lab", "rm", parent="rm@1", encoder=encoder, params={"epochs": 21})
    assert second.to_json()["method"] == "new"
    # the ensemble's reward is a mean over members: --head-only finds no head
    with pytest.raises(WorkstationError, match="no scoring head found in rm@1.*ReduceMean"):
        train(ws, "lab", "rm", parent="rm@1", encoder=encoder, head_only=True)


def test_head_parameters_are_checked(ws):
    encoder = HashEncoder()
    insert_dataset(ws, "labels", _labels(30), name="lab")
    add_model_bytes(ws, reward_mlp(2 * DIM), "mlp", "text-embedding", encoder=encoder)
    with pytest.raises(WorkstationError, match="unknown training parameter 'epochs' for head "
                                               "retraining; known: heldout_fraction, l2"):
        train(ws, "lab", "mlp", parent="mlp@1", encoder=encoder, params={"epochs": 3})
    result = train(ws, "lab", "mlp", parent="mlp@1", encoder=encoder,
                   params={"l2": "0.5", "heldout_fraction": 0.3})
    assert result.version.manifest["lineage"]["hyperparameters"]["l2"] == 0.5
    assert result.version.manifest["lineage"]["split"]["heldout_fraction"] == 0.3
    # a bias-free head keeps its form: only the weight changes
    head = result.version.manifest["lineage"]["head"]
    assert (head["op"], head["bias"], head["transform"]) == ("MatMul", None, "sigmoid")
    assert json.dumps(result.to_json())  # plain JSON for the CLI


# -- text-tokens models ---------------------------------------------------------------

def _token_model_files(tmp_path, texts):
    from tests.head_models import token_reward_model, word_tokenizer

    vocab = word_tokenizer(texts, tmp_path / "tokenizer.json")
    (tmp_path / "model.onnx").write_bytes(token_reward_model(vocab, dim=16))
    return tmp_path / "model.onnx"


def test_token_features_are_cached_and_score_as_the_whole_model(ws, tmp_path):
    from workstation.models.registry import load_runner

    rows = _labels(30)
    path = _token_model_files(tmp_path, [r["response"] + " " + r["prompt"] for r in rows])
    version = add_model(ws, path, "tok", "text-tokens")
    space = feature_space(ws, version)
    assert space.id.startswith("features:") and space.dim == 16
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    x = text_features(ws, space, prompts, responses)
    cached = ws.execute("SELECT count(*) FROM embeddings WHERE encoder_id = ?",
                        [space.id]).fetchone()[0]
    assert cached == len(rows) and x.shape == (len(rows), 16)
    # input order survives the runner's length-sorted batches, and a cache hit
    np.testing.assert_allclose(text_features(ws, space, prompts[::-1], responses[::-1]),
                               x[::-1], atol=1e-6)
    np.testing.assert_allclose(space.score_runner().score_matrix(x),
                               load_runner(ws, version).score_tokens(prompts, responses),
                               atol=1e-5)


def test_a_tokens_model_gets_a_new_head_and_a_patch_in_its_feature_space(ws, tmp_path):
    from workstation.models import score_dataset
    from workstation.patching import create_patch

    rows = _labels(80)
    path = _token_model_files(tmp_path, [r["response"] + " " + r["prompt"] for r in rows])
    parent = add_model(ws, path, "tok", "text-tokens")
    insert_dataset(ws, "labels", rows, name="lab")
    new = train(ws, "lab", "tok", parent="tok@1").version
    assert new.manifest["lineage"]["method"] == "head"
    for key in ("input", "tokenizer_sha256", "output", "score_type"):
        assert new.manifest[key] == parent.manifest[key]
    scores = score_dataset(ws, new, "lab")
    unsafe_high = [int(i) for i, s, ok in zip(scores.example_ids, scores.score, scores.labels)
                   if not ok and s > 0]
    assert unsafe_high, "the retrained head still scores some unsafe response above 0"
    patched = create_patch(ws, new.ref, example_ids=unsafe_high[:2], budget=0.5)
    assert patched.metrics["kernels_kept"] >= 1
    assert patched.version.manifest["tokenizer_sha256"] == parent.manifest["tokenizer_sha256"]
    after = score_dataset(ws, patched.version, "lab")
    fixed = np.isin(after.example_ids, unsafe_high[:2])
    assert (after.score[fixed] < scores.score[fixed]).all()
    safe = after.labels & ~fixed
    assert (scores.score[safe] - after.score[safe]).max() <= 0.5 + 1e-6
