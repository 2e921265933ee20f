"""Training quality on real data (slow): HH-RLHF preference pairs against
scikit-learn's logistic regression, and the CartPole demonstrations reward
against a k-nearest-neighbour baseline. Both report their figures (run with
``-s`` to see them) and fail, not skip, in CI when the data is missing.

Baselines and framing:

* HH-RLHF: logistic regression on the same features and the same held-out
  split. A linear reward r(x) = w.x with x = [prompt, response] embeddings
  gives P(chosen > rejected) = sigmoid(w.(x_chosen - x_rejected)), so the
  classifier sees the differences x_chosen - x_rejected labelled 1 and their
  negatives labelled 0 (symmetric augmentation, so there is no side bias to
  learn), and a held-out pair counts as right when w.(x_c - x_r) > 0.
  Default settings (C = 1).
* CartPole: positives are the states of held-out expert trajectories (never
  trained on); negatives are the terminal states of random-policy episodes
  of gymnasium's CartPole-v1 (the observation returned with
  ``terminated=True``: the state *after* the failing step, pole past 12
  degrees or cart past 2.4). The kNN baseline scores a state by minus its
  mean distance to the 5 nearest training expert states, on observations
  standardised with the training states' mean and deviation.
"""

from __future__ import annotations

import numpy as np
import pytest

from workstation.datasets import import_dataset
from workstation.models import load_runner, score_dataset
from workstation.progress import Progress
from workstation.workspace import Workspace

pytestmark = pytest.mark.slow

RANDOM_EPISODES = 200


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    torch.set_num_threads(1)


def logistic_heldout_accuracy(data, heldout: np.ndarray) -> float:
    """Held-out pairwise accuracy of sklearn's logistic regression (see the module doc)."""
    from sklearn.linear_model import LogisticRegression

    diff = data.chosen - data.rejected
    rows = diff[~heldout]
    features = np.vstack([rows, -rows])
    target = np.r_[np.ones(len(rows)), np.zeros(len(rows))]
    logistic = LogisticRegression(max_iter=5000).fit(features, target)
    return float(np.mean(logistic.decision_function(diff[heldout]) > 0))


def test_hh_rlhf_pairs_head_beats_logistic_regression(hh_rlhf_path, tmp_path):
    from workstation.encoder import get_encoder
    from workstation.training import split_roles, train
    from workstation.training.data import HELDOUT, dataset_ref, load_pairs

    with Workspace.open(tmp_path / "hh.duckdb") as ws:
        import_dataset(ws, "pairs", hh_rlhf_path, "hh")
        result = train(ws, "hh", "hh-rm", seed=0)
        hp = result.version.manifest["lineage"]["hyperparameters"]
        data = load_pairs(ws, dataset_ref(ws, "hh").id, get_encoder(), Progress())
        heldout = split_roles(data.example_ids, hp["heldout_fraction"],
                              hp["split_seed"]) == HELDOUT
        baseline = logistic_heldout_accuracy(data, heldout)
        ours = result.metrics["heldout_pairwise_accuracy"]
        # The registered ONNX, scored the way audits score, agrees with the metric.
        scored = score_dataset(ws, result.version, "hh")
        held_ids = set(data.example_ids[heldout].tolist())
        rows = np.array([i in held_ids for i in scored.example_ids.tolist()])
        assert float(np.mean(scored.margin[rows] > 0)) == pytest.approx(ours, abs=1e-9)
        # One split of ~500 pairs is a noisy judge: four more splits, on average.
        others = [(train(ws, "hh", "hh-rm", params={"split_seed": s}).metrics
                   ["heldout_pairwise_accuracy"],
                   logistic_heldout_accuracy(data, split_roles(
                       data.example_ids, hp["heldout_fraction"], s) == HELDOUT))
                  for s in range(1, 5)]
    ours_mean = float(np.mean([ours] + [o for o, _ in others]))
    baseline_mean = float(np.mean([baseline] + [b for _, b in others]))
    print(f"\nHH-RLHF harmless-base, {int(heldout.sum())} held-out pairs: "
          f"ours {ours:.4f} (train {result.metrics['train_pairwise_accuracy']:.4f}, "
          f"{result.metrics['epochs']} epochs), sklearn logistic {baseline:.4f}; "
          f"over 5 splits: ours {ours_mean:.4f}, sklearn {baseline_mean:.4f} "
          f"(per split: {', '.join(f'{o:.3f}/{b:.3f}' for o, b in [(ours, baseline)] + others)})")
    assert heldout.sum() > 400
    assert ours >= baseline
    assert ours_mean >= baseline_mean
    assert 0.55 <= ours <= 0.8  # HH-RLHF is noisy (~63% annotator agreement)


def random_policy_terminal_states(episodes: int = RANDOM_EPISODES) -> np.ndarray:
    """The terminal (unsafe) observation of each random-policy episode that failed."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    states = []
    try:
        for episode in range(episodes):
            env.reset(seed=episode)
            env.action_space.seed(episode)
            while True:
                obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if terminated:
                    states.append(obs)
                if terminated or truncated:
                    break
    finally:
        env.close()
    return np.array(states, dtype=np.float32)


def knn_scores(reference: np.ndarray, states: np.ndarray, k: int = 5) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    mean, std = reference.mean(0), reference.std(0)
    index = NearestNeighbors(n_neighbors=k).fit((reference - mean) / std)
    distances, _ = index.kneighbors((states - mean) / std)
    return -distances.mean(1)


def test_cartpole_reward_separates_expert_from_unsafe_states(cartpole_path, tmp_path):
    from sklearn.metrics import roc_auc_score

    from workstation.training import split_roles, train
    from workstation.training.data import HELDOUT, TRAIN, dataset_ref, load_demos

    with Workspace.open(tmp_path / "cartpole.duckdb") as ws:
        import_dataset(ws, "demos", cartpole_path, "cartpole")
        result = train(ws, "cartpole", "cartpole-iirl", seed=0)
        hp = result.version.manifest["lineage"]["hyperparameters"]
        demos = load_demos(ws, dataset_ref(ws, "cartpole").id)
        roles = split_roles(demos.example_ids, hp["heldout_fraction"], hp["split_seed"],
                            hp["validation_fraction"])
        step_roles = roles[np.searchsorted(demos.example_ids, demos.owner)]
        expert = demos.obs[step_roles == HELDOUT]
        unsafe = random_policy_terminal_states()
        runner = load_runner(ws, result.version)  # the registered ONNX, as scoring runs it
        learned = runner.score_matrix(np.vstack([expert, unsafe]))
    labels = np.r_[np.ones(len(expert)), np.zeros(len(unsafe))]
    learned_auroc = roc_auc_score(labels, learned)
    knn_auroc = roc_auc_score(labels, knn_scores(demos.obs[step_roles == TRAIN],
                                                 np.vstack([expert, unsafe])))
    print(f"\nCartPole: {len(expert)} held-out expert states vs {len(unsafe)} terminal states "
          f"of random play: learned reward AUROC {learned_auroc:.4f} (mean reward expert "
          f"{learned[:len(expert)].mean():.3f}, unsafe {learned[len(expert):].mean():.3g}), "
          f"kNN (k=5) AUROC {knn_auroc:.4f}")
    assert len(unsafe) >= 150 and len(expert) > 1000
    assert learned_auroc >= 0.9
    assert learned_auroc >= knn_auroc - 0.02
    assert result.metrics["heldout_mean_reward"] > 0.5  # expert states score high


def test_states_ever_farther_from_the_demonstrations_score_ever_lower_never_zero(
        cartpole_path, tmp_path):
    """The calibrated reward keeps its order far from the demonstrations: the
    exported graph once returned exactly 0 for most of the benchmark's uniform
    CartPole states (onnxruntime's Sigmoid is 0 from -18 down), so which of
    two bad states is worse was lost."""
    from workstation.calibration import Calibration, calibrated_torch, compressed
    from workstation.training import train

    with Workspace.open(tmp_path / "cartpole.duckdb") as ws:
        import_dataset(ws, "demos", cartpole_path, "cartpole")
        result = train(ws, "cartpole", "cartpole-far", seed=0)
        runner = load_runner(ws, result.version)
        centre = np.zeros(4, dtype=np.float32)
        direction = np.array([1.0, 1.0, 1.0, 1.0], dtype=np.float32)
        steps = np.geomspace(0.5, 1e4, 40).astype(np.float32)
        far = centre + steps[:, None] * direction
        reward = runner.score_matrix(far)
    assert (reward > 0).all()
    assert (np.diff(reward) < 0).all(), reward
    # The compression changes nothing above the knee, and the torch graph is
    # the numpy rule.
    import torch

    cal = Calibration(1.0, 2.0, 5.0, "held-out", 10, "sigmoid of the raw score")
    raw = np.array([-1e6, -500.0, -40.0, -19.0, 0.0, 1.0, 30.0])
    exact = cal.reward(raw)
    assert exact[-3:] == pytest.approx(1 / (1 + np.exp(-(raw[-3:] - 1.0) / 2.0)))
    assert (np.diff(exact) > 0).all() and exact[0] > 0
    assert compressed(np.array([-20.0]))[0] == -20.0
    graph = calibrated_torch(torch.tensor(raw, dtype=torch.float32), 1.0, 0.5).numpy()
    np.testing.assert_allclose(graph, exact, rtol=1e-5)
