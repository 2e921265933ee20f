"""Local retraining: each dataset kind trains, exports and registers a version
with its lineage; the registered ONNX scores what torch scores; runs repeat
exactly; cancelling or a failed check registers nothing; reviewed data
(flips, relabels, exclusions) is what gets trained on.

Small synthetic datasets and a keyword encoder (dim 8) keep this fast: a text
containing "helpful" leans one way along the first axis, "harmful" the other,
so a head has something real to learn.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

import torch  # noqa: E402

from workstation import review  # noqa: E402
from workstation.datasets import import_dataset  # noqa: E402
from workstation.encoder import embed_texts  # noqa: E402
from workstation.errors import Cancelled, WorkstationError  # noqa: E402
from workstation.models import load_onnx, resolve, score_dataset  # noqa: E402
from workstation.models.onnx_model import make_session  # noqa: E402
from workstation.progress import Progress  # noqa: E402
from workstation.training import DEFAULTS, split_roles, train  # noqa: E402
from workstation.workspace import Workspace  # noqa: E402

N_PAIRS = 60
N_LABELS = 120
N_TRAJECTORIES = 12
FAST_TEXT = {"epochs": 60, "batch_size": 16, "lr": 0.01}
FAST_DEMOS = {"epochs": 40, "hidden": 8}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


class KeywordEncoder:
    """Deterministic 8-d unit vectors: hash noise plus a +/- "helpful"/"harmful" axis."""

    def __init__(self) -> None:
        self.id, self.dim = "test-keyword-encoder", 8

    def encode(self, texts, progress=None, batch_size=64) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            text = text or ""
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = 0.3 * np.random.default_rng(seed).standard_normal(self.dim)
            v[0] += 2.0 * ("helpful" in text) - 2.0 * ("harmful" in text)
            out[i] = v / np.linalg.norm(v)
        return out


ENC = KeywordEncoder()


# -- the template workspace (built once, copied per test) ------------------------

def _write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _trajectory(t: int) -> list[list[float]]:
    """Expert states on a ring in the first two coordinates, small noise in the third."""
    rng = np.random.default_rng(t)
    angles = np.linspace(0, 2 * np.pi, 30) + rng.uniform(0, 1)
    return [[float(np.cos(a)), float(np.sin(a)), float(0.05 * rng.standard_normal())]
            for a in angles]


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("training-template")
    _write_jsonl(folder / "pairs.jsonl", [
        {"prompt": f"question {i}", "chosen": f"a helpful answer {i}",
         "rejected": f"a harmful answer {i}"} for i in range(N_PAIRS)])
    _write_jsonl(folder / "labels.jsonl", [
        {"prompt": f"request {i}", "response": f"{'helpful' if i % 2 else 'harmful'} reply {i}",
         "label": "safe" if i % 2 else "unsafe"} for i in range(N_LABELS)])
    _write_jsonl(folder / "demos.jsonl", [{"obs": _trajectory(t)} for t in range(N_TRAJECTORIES)])
    path = folder / "template.duckdb"
    with Workspace.open(path) as ws:
        import_dataset(ws, "pairs", folder / "pairs.jsonl", "pairs")
        import_dataset(ws, "labels", folder / "labels.jsonl", "labels")
        import_dataset(ws, "demos", folder / "demos.jsonl", "demos")
    return path


@pytest.fixture
def tws(template, tmp_path):
    path = tmp_path / "ws.duckdb"
    shutil.copy(template, path)
    ws = Workspace.open(path)
    yield ws
    ws.close()


# -- helpers -------------------------------------------------------------------

def example_ids(ws, dataset: str) -> list[int]:
    return [r[0] for r in ws.execute(
        "SELECT e.id FROM examples e JOIN datasets d ON d.id = e.dataset_id "
        "WHERE d.name = ? ORDER BY e.id", [dataset]).fetchall()]


def edit(ws, ids, field, value) -> None:
    review.apply(ws, [review.Edit(i, field, value, "test") for i in ids])


def counts(ws) -> tuple[int, int]:
    return (ws.execute("SELECT count(*) FROM model_versions").fetchone()[0],
            ws.execute("SELECT count(*) FROM blobs").fetchone()[0])


def pair_inputs(ws) -> tuple[np.ndarray, np.ndarray]:
    rows = ws.execute("SELECT prompt, current_chosen, current_rejected FROM current_examples "
                      "WHERE NOT excluded AND chosen IS NOT NULL ORDER BY id").fetchall()
    p, c, r = (embed_texts(ws, [row[k] for row in rows], ENC) for k in range(3))
    return np.hstack([p, c]), np.hstack([p, r])


def new_responses(ws, word: str, n: int = 20) -> np.ndarray:
    """[prompt, response] embeddings of unseen requests answered with ``word``."""
    prompts = embed_texts(ws, [f"request {1000 + i}" for i in range(n)], ENC)
    replies = embed_texts(ws, [f"{word} reply {1000 + i}" for i in range(n)], ENC)
    return np.hstack([prompts, replies])


def torch_outputs(result, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [o.double().numpy() for o in result.module(torch.from_numpy(
            np.ascontiguousarray(x, dtype=np.float32)))]


def onnx_outputs(ws, ref: str, x: np.ndarray) -> dict[str, np.ndarray]:
    session = make_session(load_onnx(ws, ref))
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: x.astype(np.float32)})
    return dict(zip(names, values))


def demo_obs(ws) -> np.ndarray:
    rows = ws.execute("SELECT obs FROM demo_steps ORDER BY example_id, step").fetchall()
    return np.array([r[0] for r in rows], dtype=np.float32)


# -- each kind -----------------------------------------------------------------

def test_pairs_training_registers_a_version_with_its_lineage(tws):
    edit(tws, example_ids(tws, "pairs")[:1], "note", "seen")  # a non-empty review log
    result = train(tws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    version = result.version
    manifest = version.manifest
    assert version.ref == "rm@1" and resolve(tws, "rm@1").sha256 == version.sha256
    assert manifest["input_kind"] == "text-embedding"
    assert manifest["input"]["layout"] == "prompt+response"
    assert manifest["input"]["encoder"] == ENC.id
    assert (manifest["output"], manifest["score_type"]) == ("reward", "reward")
    lineage = manifest["lineage"]
    assert lineage["parent"] is None and lineage["dataset"] == "pairs"
    assert lineage["dataset_snapshot"] == review.head_hash(tws) != ""
    assert lineage["seed"] == 0 and lineage["torch_version"] == torch.__version__
    assert lineage["hyperparameters"] == {**DEFAULTS["pairs"], **FAST_TEXT}
    assert lineage["training_metrics"] == result.metrics and lineage["trained_at"]
    assert 0 <= manifest["onnx_parity_max_abs_diff"] <= 1e-4
    metrics = result.metrics
    assert metrics["n_train"] + metrics["n_heldout"] == N_PAIRS and metrics["n_heldout"] > 0
    assert metrics["heldout_pairwise_accuracy"] >= 0.9
    assert result.to_json()["model"] == "rm" and result.to_json()["version"] == 1
    assert result.to_json()["metrics"]["heldout_pairwise_accuracy"] == \
        metrics["heldout_pairwise_accuracy"]


def test_labels_training_gives_a_logit_ensemble(tws):
    result = train(tws, "labels", "clf", encoder=ENC, params=FAST_TEXT)
    manifest = result.version.manifest
    assert (manifest["output"], manifest["score_type"]) == ("reward", "logit")
    assert result.metrics["heldout_auroc"] >= 0.9
    assert result.metrics["heldout_accuracy"] >= 0.8
    helpful, harmful = new_responses(tws, "helpful"), new_responses(tws, "harmful")
    out = onnx_outputs(tws, "clf@1", np.vstack([helpful, harmful]))
    assert out["members"].shape == (2 * len(helpful), DEFAULTS["labels"]["members"])
    assert np.allclose(out["reward"], out["members"].mean(1), atol=1e-6)
    assert np.allclose(out["uncertainty"], out["members"].std(1), atol=1e-5)
    # safe (here: helpful) is the positive class: its logit is the higher reward
    good, bad = np.split(out["reward"], 2)
    assert np.mean(good > 0) >= 0.9 and np.mean(bad < 0) >= 0.9


FAR = np.array([[4.0, 4.0, 1.0], [0.0, 0.0, 2.0], [-5.0, 0.0, 0.0]], dtype=np.float32)


def check_demo_outputs(ws, ref: str, experts: int) -> np.ndarray:
    """The four outputs have their shapes and meaning; returns the rewards of
    the demonstration states followed by three far-away states."""
    out = onnx_outputs(ws, ref, np.vstack([demo_obs(ws), FAR]))
    reward, expert_rewards, gate = out["reward"], out["expert_rewards"], out["gate"]
    assert reward.min() >= 0 and reward.max() <= 1
    assert np.all(reward[-3:] < 0.05) and np.median(reward[:-3]) > 0.5
    assert expert_rewards.shape == gate.shape == (len(reward), experts)
    assert np.allclose(gate.sum(1), 1, atol=1e-5)
    centre = (expert_rewards * gate).sum(1, keepdims=True)
    assert np.allclose(out["uncertainty"], np.sqrt(((expert_rewards - centre) ** 2 * gate)
                                                   .sum(1)), atol=1e-5)
    return reward


def heldout_obs(ws, result) -> np.ndarray:
    hp = result.version.manifest["lineage"]["hyperparameters"]
    ids = np.array(example_ids(ws, "demos"))
    held = ids[split_roles(ids, hp["heldout_fraction"], hp["split_seed"],
                           hp["validation_fraction"]) == 2]
    rows = ws.execute("SELECT obs FROM demo_steps WHERE example_id IN (SELECT unnest(?)) "
                      "ORDER BY example_id, step", [held.tolist()]).fetchall()
    return np.array([r[0] for r in rows], dtype=np.float32)


def test_demos_training_rewards_expert_states_and_calibrates(tws):
    result = train(tws, "demos", "iirl", params=FAST_DEMOS)
    manifest = result.version.manifest
    assert manifest["input_kind"] == "observation" and manifest["input"]["obs_dim"] == 3
    assert (manifest["output"], manifest["score_type"]) == ("reward", "reward")
    assert manifest["uncertainty"]["members_output"] == "expert_rewards"
    assert manifest["lineage"]["objective"] == "occupancy-and-progress"
    assert manifest["lineage"]["hyperparameters"]["model"] == "occupancy-progress"
    assert 0 <= manifest["onnx_parity_max_abs_diff"] <= 1e-4
    metrics = result.metrics
    assert metrics["n_heldout_trajectories"] > 0 and metrics["heldout_mean_reward"] > 0.5
    assert 0 <= metrics["progress_weight"] <= 1
    check_demo_outputs(tws, "iirl@1", DEFAULTS["demos"]["experts"])
    # Calibrated on the held-out steps: 0.5 at their 5th percentile, 0.9 at the median.
    calibration = manifest["calibration"]
    assert calibration["threshold"] == 0.5 and calibration["fitted_on"] == "held-out"
    held = onnx_outputs(tws, "iirl@1", heldout_obs(tws, result))["reward"]
    assert calibration["n_steps"] == len(held)
    assert np.percentile(held, 5) == pytest.approx(0.5, abs=0.01)
    assert np.median(held) == pytest.approx(0.9, abs=0.01)
    assert calibration["share_at_or_above_threshold"] == pytest.approx(np.mean(held >= 0.5))
    assert metrics["density"] in ("occupancy", "gaussian", "both")
    assert set(metrics["order_accuracy"]) == {"occupancy", "gaussian", "progress"}
    # The analyst may set the mix: the kernel occupancy alone.
    alone = train(tws, "demos", "iirl", params={**FAST_DEMOS, "progress_weight": 0,
                                                "density": "occupancy"})
    assert alone.metrics["progress_weight"] == 0.0 and alone.metrics["occupancy_weight"] == 1.0
    assert alone.metrics["density"] == "occupancy" and alone.metrics["density_weight"] == 1.0
    assert alone.version.sha256 != result.version.sha256


def test_the_papers_mixture_of_autoencoders_is_kept(tws):
    result = train(tws, "demos", "moe", params={**FAST_DEMOS, "model": "moe-ae"})
    manifest = result.version.manifest
    assert manifest["lineage"]["objective"] == "mixture-of-autoencoders"
    metrics = result.metrics
    assert metrics["e_max"] > metrics["e_min"] and metrics["heldout_mean_reward"] > 0.5
    check_demo_outputs(tws, "moe@1", DEFAULTS["demos"]["experts"])
    # k is calibrated: the held-out steps' 5th percentile scores 0.5.
    held = onnx_outputs(tws, "moe@1", heldout_obs(tws, result))["reward"]
    assert np.percentile(held, 5) == pytest.approx(0.5, abs=0.02)
    assert manifest["calibration"]["threshold"] == 0.5
    # The paper's fixed k is still there, uncalibrated.
    fixed = train(tws, "demos", "moe", params={**FAST_DEMOS, "model": "moe-ae", "k": 1.0})
    assert "calibration" not in fixed.version.manifest and fixed.metrics["k"] == 1.0
    x = demo_obs(tws)
    with torch.no_grad():
        error = fixed.module.mixture(torch.from_numpy(x)).double().numpy()
    m = fixed.metrics
    paper = np.clip(np.exp(-(error - m["e_min"]) / (m["e_max"] - m["e_min"])), 0, 1)
    assert np.abs(onnx_outputs(tws, "moe@2", x)["reward"] - paper).max() < 1e-4


def test_a_parent_from_before_the_model_choice_keeps_the_papers_model(tws):
    from workstation.training.params import resolve_params

    old = {"experts": 4, "bottleneck": 2, "hidden": 8, "k": 1.0}
    assert resolve_params("demos", old, None)["model"] == "moe-ae"
    assert resolve_params("demos", {**old, "model": "occupancy-progress"},
                          None)["model"] == "occupancy-progress"
    assert resolve_params("demos", None, None)["model"] == "occupancy-progress"
    with pytest.raises(WorkstationError, match="model must be one of"):
        resolve_params("demos", None, {"model": "flow"})
    with pytest.raises(WorkstationError, match="progress_weight must lie in"):
        resolve_params("demos", None, {"progress_weight": "1.5"})
    assert resolve_params("demos", old, None)["density"] == "both"
    with pytest.raises(WorkstationError, match="density must be one of"):
        resolve_params("demos", None, {"density": "flow"})


# -- the registered artifact ----------------------------------------------------

def test_scores_through_the_workstation_equal_torch(tws):
    pairs = train(tws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    scored = score_dataset(tws, "rm@1", "pairs", encoder=ENC)
    chosen, rejected = pair_inputs(tws)
    assert np.max(np.abs(scored.score_chosen - torch_outputs(pairs, chosen)[0])) <= 1e-5
    assert np.max(np.abs(scored.score_rejected - torch_outputs(pairs, rejected)[0])) <= 1e-5
    demos = train(tws, "demos", "iirl", params=FAST_DEMOS)
    scored = score_dataset(tws, "iirl@1", "demos")
    assert np.max(np.abs(scored.step_rewards - torch_outputs(demos, demo_obs(tws))[0])) <= 1e-5


@pytest.mark.parametrize("dataset, params", [("pairs", FAST_TEXT), ("demos", FAST_DEMOS)])
def test_same_data_and_seed_give_the_same_model(tws, dataset, params):
    first = train(tws, dataset, "a", encoder=ENC, params=params, seed=3)
    again = train(tws, dataset, "b", encoder=ENC, params=params, seed=3)
    other = train(tws, dataset, "c", encoder=ENC, params=params, seed=4)
    assert first.version.sha256 == again.version.sha256
    assert first.metrics == again.metrics
    assert other.version.sha256 != first.version.sha256


@pytest.mark.parametrize("stage", ["reading", "training", "exporting"])
def test_cancelling_registers_nothing(tws, stage):
    progress = Progress()
    seen: list[str] = []

    def callback(name, done, total):
        seen.append(name)
        if name.startswith(stage) and (stage != "training" or done >= 2):
            progress.cancel()

    progress._callback = callback
    before = counts(tws)
    with pytest.raises(Cancelled):
        train(tws, "pairs", "rm", encoder=ENC, params=FAST_TEXT, progress=progress)
    assert counts(tws) == before == (0, 0)
    assert any(s.startswith(stage) for s in seen)


def test_a_failed_parity_check_registers_nothing(tws, monkeypatch):
    from workstation.training import export

    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(WorkstationError, match="differs from torch"):
        train(tws, "demos", "iirl", params=FAST_DEMOS)
    assert counts(tws) == (0, 0)


# -- reviewed data ---------------------------------------------------------------

def _training_role_ids(ws, dataset: str) -> list[int]:
    ids = np.array(example_ids(ws, dataset))
    return [int(i) for i in ids[split_roles(ids, 0.2, 0) == 0]]


def test_excluded_examples_are_left_out(tws):
    base = train(tws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    excluded = _training_role_ids(tws, "pairs")[:5]
    edit(tws, excluded, "excluded", True)
    after = train(tws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    assert after.metrics["n_train"] == base.metrics["n_train"] - 5
    assert after.metrics["n_heldout"] == base.metrics["n_heldout"]
    assert after.version.manifest["lineage"]["n_examples"] == N_PAIRS - 5
    assert after.version.sha256 != base.version.sha256
    demo_base = train(tws, "demos", "iirl", params=FAST_DEMOS)
    edit(tws, _training_role_ids(tws, "demos")[:1], "excluded", True)
    demo_after = train(tws, "demos", "iirl", params=FAST_DEMOS)
    assert demo_after.metrics["n_train_steps"] == demo_base.metrics["n_train_steps"] - 30


def test_flipped_preferences_are_trained_on(tws):
    base = train(tws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    edit(tws, _training_role_ids(tws, "pairs")[:1], "flipped", True)
    one_flip = train(tws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    assert one_flip.version.sha256 != base.version.sha256
    assert one_flip.version.manifest["lineage"]["dataset_snapshot"] == review.head_hash(tws)
    edit(tws, example_ids(tws, "pairs"), "flipped", True)  # now "harmful" is preferred
    flipped = train(tws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    assert flipped.metrics["heldout_pairwise_accuracy"] >= 0.9
    chosen, rejected = pair_inputs(tws)  # current sides: chosen = the harmful answer
    assert np.mean(torch_outputs(flipped, chosen)[0] > torch_outputs(flipped, rejected)[0]) >= 0.9
    assert np.mean(torch_outputs(base, chosen)[0] > torch_outputs(base, rejected)[0]) <= 0.1


def test_relabeled_responses_are_trained_on(tws):
    ids = example_ids(tws, "labels")
    edit(tws, ids[1::2], "label", "unsafe")  # the helpful replies, now called unsafe
    edit(tws, ids[0::2], "label", "safe")
    result = train(tws, "labels", "clf", encoder=ENC, params=FAST_TEXT)
    assert result.metrics["heldout_auroc"] >= 0.9  # against the current labels
    reward = onnx_outputs(tws, "clf@1", new_responses(tws, "helpful"))["reward"]
    assert np.mean(reward < 0) >= 0.9


def test_retraining_from_a_parent_records_lineage_and_reuses_its_settings(tws):
    # hidden=0: a linear head, which the child must inherit
    first = train(tws, "pairs", "rm", encoder=ENC, params={**FAST_TEXT, "members": 3,
                                                          "hidden": 0})
    second = train(tws, "pairs", "rm", parent="rm@1", encoder=ENC, params={"lr": 0.02})
    assert second.version.ref == "rm@2"
    assert second.version.parent_id == first.version.id
    lineage = second.version.manifest["lineage"]
    assert lineage["parent"] == "rm@1" and second.version.manifest["parent"] == "rm@1"
    hp = lineage["hyperparameters"]
    assert (hp["members"], hp["hidden"], hp["epochs"], hp["lr"]) == (3, 0, 60, 0.02)
    assert second.metrics["heldout_pairwise_accuracy"] >= 0.9
    x = np.zeros((1, 2 * ENC.dim), dtype=np.float32)
    assert onnx_outputs(tws, "rm@2", x)["members"].shape == (1, 3)


# -- refusals --------------------------------------------------------------------

def test_bad_requests_are_refused_before_training(tws):
    with pytest.raises(WorkstationError, match="unknown training parameter 'experts'"):
        train(tws, "pairs", "rm", encoder=ENC, params={"experts": 3})
    with pytest.raises(WorkstationError, match="lr must lie in"):
        train(tws, "pairs", "rm", encoder=ENC, params={"lr": 0})
    with pytest.raises(WorkstationError, match="unknown dataset 'nope'"):
        train(tws, "nope", "rm", encoder=ENC)
    with pytest.raises(WorkstationError, match="not usable"):
        train(tws, "pairs", "rm@2", encoder=ENC)
    train(tws, "demos", "iirl", params=FAST_DEMOS)
    with pytest.raises(WorkstationError, match="takes observation input"):
        train(tws, "pairs", "rm", parent="iirl@1", encoder=ENC)
    with pytest.raises(WorkstationError, match="takes observation input"):
        train(tws, "pairs", "iirl", encoder=ENC)
    edit(tws, example_ids(tws, "labels"), "excluded", True)
    with pytest.raises(WorkstationError, match="no labeled responses left"):
        train(tws, "labels", "clf", encoder=ENC)
    assert counts(tws)[0] == 1


def test_a_read_only_workspace_is_refused(template, tmp_path):
    path = tmp_path / "ro.duckdb"
    shutil.copy(template, path)
    with Workspace.open(path, read_only=True) as ws:
        with pytest.raises(WorkstationError, match="read-only"):
            train(ws, "demos", "iirl", params=FAST_DEMOS)
