"""Suppression patches: flaws suppressed, protected inputs within the budget,
refusals with reasons, the exported graph equal to the core's own scores,
locality, removal, stacking, lineage, and transactions."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.test_models import (DIM, HashEncoder, fit_logistic, insert_dataset, reward_mlp,
                               skl_onnx, token_model, write_tokenizer)
from workstation.audits import run_audit
from workstation.audits.runs import default_threshold
from workstation.errors import Cancelled, WorkstationError
from workstation.models import (add_model, add_model_bytes, load_onnx, load_runner, resolve,
                                score_observations, score_texts, text_features)
from workstation.patching import (create_patch, get_patch, kernel_activations, list_patches,
                                  patched_scores, remove_patch)
from workstation.patching.graph import build_patched_model
from workstation.patching.kernels import SuppressionKernel
from workstation.progress import Progress

OBS_DIM = 3
BUDGET = 0.10
EXPERT_CENTER = np.array([-0.4, 0.0, 0.0])
UNSAFE_CENTER = np.array([0.35, 0.0, 0.0])


# -- helpers -----------------------------------------------------------------

def gaussian_reward(dim: int = OBS_DIM) -> bytes:
    """reward = exp(−||x||²) as [N, 1]: bounded, highest at the origin."""
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("MatMul", ["sq", "ones"], ["norm2"]),
             helper.make_node("Neg", ["norm2"], ["neg"]),
             helper.make_node("Exp", ["neg"], ["reward"])]
    graph = helper.make_graph(
        nodes, "gaussian", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.ones((dim, 1), np.float32), "ones")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def linear_logit(width: int, seed: int = 0) -> bytes:
    """logit = x @ w (an unbounded score), [N, 1]."""
    w = 3.0 * np.random.default_rng(seed).standard_normal((width, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logit"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def counts(ws) -> dict[str, int]:
    return {t: ws.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("model_versions", "blobs", "ledger")}


def layer_kernels(ws, version) -> tuple[list[SuppressionKernel], str]:
    """The kernels a version's manifest says it carries, and its rule."""
    manifest = resolve(ws, version).manifest
    kernels = []
    for pid in manifest["patches"]:
        record = get_patch(ws, pid)
        kernels += [SuppressionKernel.from_json(k, record["scale"], pid)
                    for k in record["kernels"]]
    return kernels, manifest["patch_layer"]["rule"]


def graph_outputs(ws, version, x: np.ndarray) -> dict[str, np.ndarray]:
    session = load_runner(ws, version).session
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"x": x.astype(np.float32)})))


def expert_states(seed: int = 0, n: int = 6, steps: int = 10) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"obs": (EXPERT_CENTER + 0.05 * rng.standard_normal((steps, OBS_DIM))).tolist()}
            for _ in range(n)]


@pytest.fixture
def demos(ws):
    """An observation model, expert demonstrations near one state and one
    trajectory, relabeled unsafe, that the model scores as highly as them."""
    base = add_model_bytes(ws, gaussian_reward(), "iirl", "observation")
    experts = expert_states()
    rng = np.random.default_rng(1)
    unsafe = {"obs": (UNSAFE_CENTER + 0.02 * rng.standard_normal((4, OBS_DIM))).tolist(),
              "label": False}
    insert_dataset(ws, "demos", experts + [unsafe], name="demos")
    unsafe_id = ws.execute("SELECT max(id) FROM examples").fetchone()[0]
    expert_x = np.array([s for e in experts for s in e["obs"]], dtype=np.float32)
    return base, unsafe_id, expert_x, np.array(unsafe["obs"], dtype=np.float32)


def add_probe_run(ws, dataset: str, model_version_id: int, findings: list[dict]) -> int:
    """A probe run with the given findings, written straight into the tables."""
    run_id = ws.next_id("audit_runs")
    dataset_id = ws.execute("SELECT id FROM datasets WHERE name = ?", [dataset]).fetchone()[0]
    ws.execute("INSERT INTO audit_runs (id, kind, model_version_id, dataset_id, created_at, "
               "created_by, review_head, n_examples, n_failures) "
               "VALUES (?, 'probe', ?, ?, 'now', 't', '', 0, ?)",
               [run_id, model_version_id, dataset_id, len(findings)])
    for i, f in enumerate(findings, start=1):
        ws.execute("INSERT INTO findings VALUES (?, ?, 'test', '1', ?, ?, NULL, ?, 'rule', 0.5, "
                   "?, ?)", [run_id, i, f.get("example_id"), json.dumps(f.get("case")),
                             f.get("score"), f.get("triage", "model-error"),
                             json.dumps(f.get("details", {}))])
    return run_id


# -- observation models ------------------------------------------------------

def test_patch_suppresses_an_unsafe_state_within_the_budget(ws, demos):
    base, unsafe_id, expert_x, unsafe_x = demos
    assert (score_observations(ws, base, unsafe_x) > 0.8).all()  # the flaw: scored expert-like
    result = create_patch(ws, base.ref, example_ids=[unsafe_id], budget=BUDGET)

    patched = result.version
    assert (score_observations(ws, patched, unsafe_x) < 0.5).all()
    loss = score_observations(ws, base, expert_x) - score_observations(ws, patched, expert_x)
    assert loss.max() <= BUDGET + 1e-6
    assert loss.max() == pytest.approx(result.metrics["protected_loss_max"], abs=1e-5)
    m = result.metrics
    assert (m["rule"], m["kernels_kept"], m["kernels_refused"]) == ("bounded", 4, 0)
    assert m["flaws_suppressed"] == m["flaws"] == 4
    assert m["protected_count"] == len(expert_x)


def test_audit_of_the_patched_version_no_longer_fails_the_unsafe_trajectory(ws, demos):
    base, unsafe_id, _, _ = demos
    before = run_audit(ws, base.ref, "demos")
    patched = create_patch(ws, base.ref, example_ids=[unsafe_id]).version
    after = run_audit(ws, patched.ref, "demos")
    assert (before.n_failures, after.n_failures) == (1, 0)


def test_a_kernel_whose_flaw_sits_on_a_protected_state_is_refused(ws, demos):
    base, _, expert_x, _ = demos
    run = add_probe_run(ws, "demos", base.id, [
        {"case": {"obs": [0.3, 0.1, 0.0]}},
        {"case": {"obs": [float(v) for v in expert_x[7]]}},
        {"case": {"obs": [0.3, -0.1, 0.0]}, "triage": "label-error"}])
    result = create_patch(ws, base.ref, finding_run=run)

    assert (result.metrics["kernels_kept"], result.metrics["kernels_refused"]) == (1, 2)
    reasons = {r["finding_id"]: r["reason"] for r in result.refused}
    assert "sits on the flaw" in reasons[2] and "protected example" in reasons[2]
    assert "label error" in reasons[3]
    assert get_patch(ws, result.patch_id)["refused"] == result.refused


def test_when_every_kernel_is_refused_nothing_is_registered(ws, demos):
    base, _, expert_x, _ = demos
    run = add_probe_run(ws, "demos", base.id,
                        [{"case": {"obs": [float(v) for v in expert_x[3]]}}])
    before = counts(ws)
    with pytest.raises(WorkstationError, match="no kernel could be kept.*sits on the flaw"):
        create_patch(ws, base.ref, finding_run=run)
    assert counts(ws) == before


def test_an_expert_or_passing_case_is_refused_with_its_reason(ws, demos):
    base, unsafe_id, _, _ = demos
    result = create_patch(ws, base.ref, example_ids=[unsafe_id, 1, 999])
    reasons = {r["example_id"]: r["reason"] for r in result.refused}
    assert "expert demonstration" in reasons[1]
    assert reasons[999] == "no such example"
    run = add_probe_run(ws, "demos", base.id, [{"case": {"obs": [3.0, 3.0, 3.0]}}])
    with pytest.raises(WorkstationError, match="not above the threshold|no state"):
        create_patch(ws, base.ref, finding_run=run)


def test_exported_scores_equal_the_core_patched_scores(ws, demos):
    base, unsafe_id, expert_x, unsafe_x = demos
    patched = create_patch(ws, base.ref, example_ids=[unsafe_id]).version
    kernels, rule = layer_kernels(ws, patched)
    rng = np.random.default_rng(5)
    x = np.vstack([expert_x, unsafe_x, UNSAFE_CENTER + 0.3 * rng.standard_normal((500, OBS_DIM)),
                   rng.standard_normal((500, OBS_DIM))]).astype(np.float32)
    base_scores = score_observations(ws, base, x)
    want = patched_scores(base_scores, x.astype(np.float64), kernels, rule)
    got = graph_outputs(ws, patched, x)
    assert np.abs(got["reward"] - want).max() <= 1e-5
    act = kernel_activations(x.astype(np.float64), kernels)
    assert np.abs(got["kernel_activations"] - act).max() <= 1e-5
    assert np.abs(got["patch_activation"] - np.minimum(act.sum(1), 1)).max() <= 1e-5
    assert np.abs(got["base_score"] - base_scores).max() <= 1e-6
    assert np.abs(base_scores - want).max() > 0.8  # the patch does act here


def test_patch_locality_far_points_keep_their_scores(ws, demos):
    base, unsafe_id, _, _ = demos
    patched = create_patch(ws, base.ref, example_ids=[unsafe_id]).version
    kernels, _ = layer_kernels(ws, patched)
    reach = max(k.bandwidth for k in kernels)
    rng = np.random.default_rng(2)
    directions = rng.standard_normal((400, OBS_DIM))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    far = (UNSAFE_CENTER + (10 * reach + 0.1 + rng.random((400, 1))) * directions)
    far = far.astype(np.float32)
    nearest = np.sqrt(((far[:, None, :] - np.stack([k.center for k in kernels])[None]) ** 2)
                      .sum(-1)).min(1)
    assert nearest.min() > 8 * reach
    diff = np.abs(score_observations(ws, patched, far) - score_observations(ws, base, far))
    assert diff.max() <= 1e-6


def test_remove_patch_restores_the_base_scores_exactly(ws, demos):
    base, unsafe_id, expert_x, unsafe_x = demos
    patched = create_patch(ws, base.ref, example_ids=[unsafe_id]).version
    pid = patched.manifest["patches"][0]
    result = remove_patch(ws, patched.ref, pid)

    restored = result.version
    assert (restored.version, restored.parent_id) == (3, patched.id)
    x = np.vstack([expert_x, unsafe_x, np.random.default_rng(3).standard_normal((200, 3))])
    assert np.array_equal(score_observations(ws, restored, x), score_observations(ws, base, x))
    assert list_patches(ws, restored.ref) == []
    assert restored.manifest["unpatch"]["patch_id"] == pid
    assert result.metrics["kernels_remaining"] == 0
    assert [v[0] for v in ws.execute("SELECT version FROM model_versions WHERE model = 'iirl' "
                                     "ORDER BY version").fetchall()] == [1, 2, 3]
    with pytest.raises(WorkstationError, match="does not carry patch"):
        remove_patch(ws, restored.ref, pid)


def test_patches_stack_and_one_can_be_removed(ws, demos):
    base, unsafe_id, _, unsafe_x = demos
    first = create_patch(ws, base.ref, example_ids=[unsafe_id])
    run = add_probe_run(ws, "demos", base.id, [{"case": {"obs": [0.0, 0.35, 0.0]}}])
    second = create_patch(ws, first.version.ref, finding_run=run)
    stacked = second.version
    assert stacked.manifest["patches"] == [first.patch_id, second.patch_id]
    assert [p["id"] for p in list_patches(ws, stacked.ref)] == [first.patch_id, second.patch_id]
    other = np.array([[0.0, 0.35, 0.0]], dtype=np.float32)
    assert score_observations(ws, stacked, np.vstack([unsafe_x, other])).max() < 0.5

    kept = remove_patch(ws, stacked.ref, first.patch_id).version
    assert kept.manifest["patches"] == [second.patch_id]
    assert (score_observations(ws, kept, unsafe_x) > 0.5).all()  # the first flaw is back
    assert score_observations(ws, kept, other)[0] < 0.5
    kernels, rule = layer_kernels(ws, kept)
    assert {k.patch_id for k in kernels} == {second.patch_id}
    x = np.vstack([unsafe_x, np.random.default_rng(4).standard_normal((300, 3)) * 0.5])
    x = x.astype(np.float32)
    want = patched_scores(score_observations(ws, base, x), x.astype(np.float64), kernels, rule)
    assert np.abs(score_observations(ws, kept, x) - want).max() <= 1e-5


def test_lineage_manifest_and_ledger(ws, demos):
    base, unsafe_id, _, _ = demos
    result = create_patch(ws, base.ref, example_ids=[unsafe_id], analyst="ana", notes="fix")
    v = result.version
    assert (v.model, v.version, v.parent_id, v.manifest["parent"]) == ("iirl", 2, base.id,
                                                                       "iirl@1")
    patch = v.manifest["patch"]
    assert (patch["id"], patch["base"], patch["created_by"], patch["budget"]) == (
        result.patch_id, "iirl@1", "ana", BUDGET)
    assert all(set(k) >= {"center", "bandwidth", "strength", "source"} for k in patch["kernels"])
    assert patch["kernels"][0]["source"]["example_id"] == unsafe_id
    assert v.manifest["patches"] == [result.patch_id] and v.manifest["patch_root"] == "iirl@1"
    assert v.manifest["output"] == "reward"
    assert len(v.manifest["patch_layer"]["columns"]) == 4
    assert result.to_json() == {"model": "iirl", "version": 2, "metrics": result.metrics}
    row = ws.execute("SELECT kind, actor, payload FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    assert (row[0], row[1], json.loads(row[2])["patch_id"]) == ("patch-created", "ana",
                                                                 result.patch_id)


def test_cancelling_leaves_nothing(ws, demos):
    base, unsafe_id, _, _ = demos
    progress = Progress()
    progress.cancel()
    before = counts(ws)
    with pytest.raises(Cancelled):
        create_patch(ws, base.ref, example_ids=[unsafe_id], progress=progress)
    assert counts(ws) == before


# -- text-embedding models ---------------------------------------------------

def labeled_with_one_flaw(ws, version, encoder, n: int = 60):
    """Labels that agree with the model, except the highest-scored response,
    labeled unsafe: one failing example. Returns the dataset's rows and the
    flaw's example id."""
    responses = [f"reply {i}" for i in range(n)]
    scores = score_texts(ws, version, ["q"] * n, responses, encoder=encoder)
    threshold = default_threshold("labels", version.manifest["score_type"])
    flaw = int(np.argmax(scores))
    rows = [{"prompt": "q", "response": r, "label": bool(s > threshold) and i != flaw}
            for i, (r, s) in enumerate(zip(responses, scores))]
    insert_dataset(ws, "labels", rows, name="labels")
    first = ws.execute("SELECT min(id) FROM examples").fetchone()[0]
    return rows, first + flaw, threshold


TEXT_MODELS = {
    "mlp-reward": lambda: reward_mlp(DIM),
    "logistic-zipmap": lambda: skl_onnx(fit_logistic(DIM), DIM, zipmap=True),
    "logit-prompt+response": lambda: linear_logit(2 * DIM),
}


@pytest.mark.parametrize("name", sorted(TEXT_MODELS))
def test_text_patch_flips_a_failing_label_and_spares_safe_examples(ws, name):
    encoder = HashEncoder()
    base = add_model_bytes(ws, TEXT_MODELS[name](), "m", "text-embedding", encoder=encoder)
    rows, flaw_id, threshold = labeled_with_one_flaw(ws, base, encoder)
    before = run_audit(ws, base.ref, "labels", encoder=encoder)
    assert before.n_failures == 1

    result = create_patch(ws, base.ref, example_ids=[flaw_id], encoder=encoder)
    patched = result.version
    flaw = rows[flaw_id - 1]
    assert score_texts(ws, patched, ["q"], [flaw["response"]], encoder=encoder)[0] <= threshold
    safe = [r["response"] for r in rows if r["label"]]
    loss = (score_texts(ws, base, ["q"] * len(safe), safe, encoder=encoder)
            - score_texts(ws, patched, ["q"] * len(safe), safe, encoder=encoder))
    assert loss.max() <= BUDGET + 1e-6
    after = run_audit(ws, patched.ref, "labels", encoder=encoder)
    assert ws.execute("SELECT passed FROM audit_results WHERE run_id = ? AND example_id = ?",
                      [after.id, flaw_id]).fetchone()[0]
    expected_rule = "unbounded" if name.startswith("logit") else "bounded"
    assert result.metrics["rule"] == expected_rule

    responses = [r["response"] for r in rows] + ["unrelated text", "another"]
    x = text_features(ws, base, ["q"] * len(responses), responses, encoder).astype(np.float64)
    kernels, rule = layer_kernels(ws, patched)
    want = patched_scores(score_texts(ws, base, ["q"] * len(responses), responses,
                                      encoder=encoder), x, kernels, rule)
    got = score_texts(ws, patched, ["q"] * len(responses), responses, encoder=encoder)
    assert np.abs(got - want).max() <= 1e-5


def test_text_patch_from_an_audit_run_refuses_safe_failures(ws):
    encoder = HashEncoder()
    base = add_model_bytes(ws, TEXT_MODELS["logistic-zipmap"](), "m", "text-embedding",
                           encoder=encoder)
    rows, flaw_id, _ = labeled_with_one_flaw(ws, base, encoder)
    low_safe = 1 + min((i for i, r in enumerate(rows) if not r["label"] and i + 1 != flaw_id))
    ws.execute("UPDATE examples SET label = true WHERE id = ?", [low_safe])  # safe, scored low
    run = run_audit(ws, base.ref, "labels", encoder=encoder)
    assert run.n_failures == 2

    result = create_patch(ws, base.ref, finding_run=run.id, encoder=encoder)
    assert result.metrics["kernels_kept"] == 1
    assert [r["example_id"] for r in result.refused] == [low_safe]
    assert "labeled safe" in result.refused[0]["reason"]
    assert result.refused[0]["audit_run"] == run.id


def test_pairs_patch_puts_the_rejected_side_below_the_chosen_side(ws):
    encoder = HashEncoder()
    base = add_model_bytes(ws, reward_mlp(DIM), "m", "text-embedding", encoder=encoder)
    texts = [f"answer {i}" for i in range(42)]
    order = np.argsort(score_texts(ws, base, ["q"] * 42, texts, encoder=encoder))
    pairs = [{"prompt": "q", "chosen": texts[order[41 - i]], "rejected": texts[order[i]]}
             for i in range(19)]
    # the flaw: its rejected side outscores its chosen side
    pairs.append({"prompt": "q", "chosen": texts[order[19]], "rejected": texts[order[22]]})
    insert_dataset(ws, "pairs", pairs, name="pairs")
    assert run_audit(ws, base.ref, "pairs", encoder=encoder).n_failures == 1

    patched = create_patch(ws, base.ref, example_ids=[20], encoder=encoder).version
    run = run_audit(ws, patched.ref, "pairs", encoder=encoder)
    assert ws.execute("SELECT passed, margin > 0 FROM audit_results WHERE run_id = ? AND "
                      "example_id = 20", [run.id]).fetchone() == (True, True)
    chosen = [p["chosen"] for p in pairs]
    loss = (score_texts(ws, base, ["q"] * 20, chosen, encoder=encoder)
            - score_texts(ws, patched, ["q"] * 20, chosen, encoder=encoder))
    assert loss.max() <= BUDGET + 1e-6


def test_text_tokens_models_without_a_head_cannot_be_patched(ws, tmp_path):
    (tmp_path / "m.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    version = add_model(ws, tmp_path / "m.onnx", "tok", "text-tokens")
    insert_dataset(ws, "labels", [{"prompt": "q", "response": "good", "label": False}])
    before = counts(ws)
    with pytest.raises(WorkstationError, match="takes text tokens and no scoring head was found "
                                               "in it .*needs a vector space"):
        create_patch(ws, version.ref, example_ids=[1])
    assert counts(ws) == before


# -- the graph on its own ----------------------------------------------------

def test_graph_keeps_extra_outputs_and_renames_a_reward_score(ws):
    """A base whose score output is itself called ``reward`` and that has an
    extra output (an ensemble's ``members``)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["members"]),
             helper.make_node("ReduceMean", ["members"], ["reward"], axes=[1], keepdims=0)]
    w = np.random.default_rng(0).random((OBS_DIM, 3)).astype(np.float32) / OBS_DIM
    graph = helper.make_graph(
        nodes, "ensemble", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("members", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w, "w")])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    base = add_model_bytes(ws, data, "ens", "observation")
    kernels = [SuppressionKernel(np.array([0.5, 0.5, 0.5]), 0.2, 1.0, 1.0, "p")]
    patched = build_patched_model(load_onnx(ws, base), base.manifest, kernels, "bounded")
    outputs = [o.name for o in onnx.load_model_from_string(patched).graph.output]
    assert outputs == ["reward", "base_score", "patch_activation", "kernel_activations",
                       "members"]
    version = add_model_bytes(ws, patched, "ens", "observation", output="reward")
    x = np.array([[0.5, 0.5, 0.5], [5, 5, 5]], dtype=np.float32)
    out = graph_outputs(ws, version, x)
    base_scores = score_observations(ws, base, x)
    assert np.allclose(out["reward"], patched_scores(base_scores, x, kernels, "bounded"),
                       atol=1e-6)
    assert out["reward"][0] == 0 and out["reward"][1] == pytest.approx(base_scores[1])
    assert np.allclose(out["members"].mean(1), base_scores, atol=1e-6)


def test_float_graph_for_wide_inputs_matches_the_core(ws):
    """Inputs wider than 256 (text embeddings) get a float kernel layer."""
    width = 400
    base = add_model_bytes(ws, reward_mlp(width), "wide", "observation")
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((5, width))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    kernels = [SuppressionKernel(c, 0.3, 1.0, 1.0, "p") for c in centers]
    data = build_patched_model(load_onnx(ws, base), base.manifest, kernels, "bounded")
    types = {t.name: t.data_type for t in onnx.load_model_from_string(data).graph.initializer}
    assert types["suppression_patch/centers_m2"] == TensorProto.FLOAT
    version = add_model_bytes(ws, data, "wide", "observation", output="reward")
    x = np.vstack([centers, centers + 0.2 * rng.standard_normal((5, width)) / np.sqrt(width),
                   rng.standard_normal((50, width))]).astype(np.float32)
    want = patched_scores(score_observations(ws, base, x), x.astype(np.float64), kernels,
                          "bounded")
    assert np.abs(score_observations(ws, version, x) - want).max() <= 1e-5


def test_an_explicit_protected_set_replaces_the_default(ws, demos):
    base, unsafe_id, _, unsafe_x = demos
    with pytest.raises(WorkstationError, match="protected input 0 sits on the flaw"):
        create_patch(ws, base.ref, example_ids=[unsafe_id],
                     protected=unsafe_x[[0, 1, 2, 3]].astype(np.float64))
    far = np.array([[5.0, 5.0, 5.0]])
    result = create_patch(ws, base.ref, example_ids=[unsafe_id], protected=far)
    assert result.metrics["protected_count"] == 1
    # with only a far point to spare, the kernels grow to the width that point allows
    assert min(k["bandwidth"] for k in result.kernels) > 1.0
