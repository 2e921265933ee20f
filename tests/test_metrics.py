"""Audit metrics against scikit-learn and hand computations, edge cases,
and the bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from workstation.audits import metrics as m


def reference_ece(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE the textbook way: loop over equal-width bins, last bin closed."""
    total = 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        inside = (p >= lo) & ((p < hi) if k < n_bins - 1 else (p <= hi))
        if inside.any():
            total += inside.sum() / len(p) * abs(p[inside].mean() - y[inside].mean())
    return total


def exact_bootstrap(stat, n: int, resamples: int = 400, seed: int = 7) -> list[float]:
    rng = np.random.default_rng(seed)
    values = [stat(rng.integers(0, n, n)) for _ in range(resamples)]
    return m.percentile_ci(np.array([np.nan if v is None else v for v in values]))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_accuracy_and_ece_match_references_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 2000))
    y = rng.random(n) < rng.uniform(0.2, 0.8)
    p = np.clip(rng.beta(2, 2, n) + 0.2 * y - 0.1, 0, 1)
    if seed % 2:
        p = np.round(p, 1)  # many ties
    assert m.auroc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m.accuracy(p, y, 0.5) == pytest.approx(accuracy_score(y, p > 0.5))
    assert m.ece(p, y) == pytest.approx(reference_ece(p, y), abs=1e-12)


def test_ece_by_hand():
    p = np.array([0.05, 0.15, 0.95, 0.9, 1.0])
    y = np.array([0, 1, 1, 0, 1], dtype=bool)
    # bins: [0,.1): {.05 vs 0}, [.1,.2): {.15 vs 1}, [.9,1]: {.95,.9,1.0 vs 1,0,1}
    expected = (1 * 0.05 + 1 * 0.85 + 3 * abs(0.95 - 2 / 3)) / 5
    assert m.ece(p, y) == pytest.approx(expected, abs=1e-12)


def test_logits_enter_calibration_through_the_sigmoid():
    scores = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(m.to_probability(scores, "logit"), 1 / (1 + np.exp(-scores)))
    with np.errstate(all="raise"):  # extreme logits saturate without overflow
        assert m.to_probability(np.array([-800.0, 800.0]), "logit").tolist() == [0.0, 1.0]
    assert m.to_probability(np.array([1.2, -0.1]), "probability").tolist() == [1.0, 0.0]


def test_one_class_auroc_is_null_with_a_reason_not_a_crash():
    out = m.label_metrics(np.array([0.2, 0.9, 0.4]), np.array([True, True, True]),
                          threshold=0.5, score_type="probability")
    assert out["auroc"] is None and out["auroc_ci"] is None
    assert out["auroc_reason"] == "AUROC needs both classes; found 3 safe and 0 unsafe"
    assert out["accuracy"] == pytest.approx(1 / 3) and out["ece"] is not None


def test_empty_inputs_give_nulls():
    out = m.label_metrics(np.zeros(0), np.zeros(0, dtype=bool), threshold=0.5,
                          score_type="probability")
    assert out["n"] == 0 and out["auroc"] is None and out["accuracy_ci"] is None
    assert m.pair_metrics(np.zeros(0))["pairwise_accuracy"] is None
    assert m.demo_metrics(np.zeros(0), np.zeros(0), np.zeros(0), threshold=0.5)["min"] is None


def test_pairwise_accuracy_counts_ties_as_failures():
    out = m.pair_metrics(np.array([0.5, 0.0, -0.2, 1.0]))
    assert out["pairwise_accuracy"] == 0.5 and out["n_ties"] == 1
    assert out["mean_margin"] == pytest.approx(0.325)


@pytest.mark.parametrize("n", [40, 300, 5000])
def test_bootstrap_intervals_contain_the_point_estimate(n):
    rng = np.random.default_rng(n)
    y = rng.random(n) < 0.6
    s = rng.normal(size=n) + y
    out = m.label_metrics(s, y, threshold=0.0, score_type="logit", seed=3)
    for key in ("auroc", "accuracy"):
        low, high = out[f"{key}_ci"]
        assert low <= out[key] <= high, key
    pairs = m.pair_metrics(rng.normal(0.3, 1, n))
    for key in ("pairwise_accuracy", "mean_margin"):
        low, high = pairs[f"{key}_ci"]
        assert low <= pairs[key] <= high, key
    # ECE is biased upward under resampling, so only a large sample's
    # interval is sure to cover it.
    if n >= 5000:
        assert out["ece_ci"][0] <= out["ece"] <= out["ece_ci"][1]


def test_bootstrap_is_reproducible_and_seeded():
    rng = np.random.default_rng(0)
    margins = rng.normal(size=500)
    assert m.pair_metrics(margins, seed=1) == m.pair_metrics(margins, seed=1)
    assert m.pair_metrics(margins, seed=1)["mean_margin_ci"] != \
        m.pair_metrics(margins, seed=2)["mean_margin_ci"]


def test_small_samples_get_the_exact_bootstrap_distribution():
    # Below MAX_CELLS distinct values the cell bootstrap is the ordinary one:
    # its interval matches index resampling up to Monte Carlo noise.
    rng = np.random.default_rng(1)
    n = m.MAX_CELLS
    y = rng.random(n) < 0.5
    s = rng.normal(size=n) + 0.8 * y
    out = m.label_metrics(s, y, threshold=0.0, score_type="logit")
    reference = exact_bootstrap(lambda i: m.auroc(s[i], y[i]), n, resamples=2000)
    assert out["auroc_ci"] == pytest.approx(reference, abs=0.03)


def test_large_samples_resampled_by_cells_match_index_resampling():
    rng = np.random.default_rng(2)
    n = 20_000  # far more distinct scores than MAX_CELLS
    y = rng.random(n) < 0.4
    s = rng.normal(size=n) + 0.7 * y
    p = m.to_probability(s, "logit")
    out = m.label_metrics(s, y, threshold=0.0, score_type="logit")
    width = out["auroc_ci"][1] - out["auroc_ci"][0]
    for key, stat in (("auroc", lambda i: m.auroc(s[i], y[i])),
                      ("accuracy", lambda i: m.accuracy(s[i], y[i], 0.0)),
                      ("ece", lambda i: m.ece(p[i], y[i]))):
        reference = exact_bootstrap(stat, n, resamples=300)
        assert out[f"{key}_ci"] == pytest.approx(reference, abs=0.15 * width + 1e-3), key
    margins = rng.standard_t(3, n)  # heavy tails: the hardest case for cell means
    pairs = m.pair_metrics(margins)
    reference = exact_bootstrap(lambda i: margins[i].mean(), n, resamples=300)
    width = reference[1] - reference[0]
    assert pairs["mean_margin_ci"] == pytest.approx(reference, abs=0.1 * width)


def test_demo_metrics_resample_whole_trajectories():
    rewards = np.array([0.9, 0.8, 0.2, 0.1, 0.1, 0.6])
    counts = np.array([2, 3, 1])
    means = np.array([0.85, 0.4 / 3, 0.6])
    out = m.demo_metrics(rewards, counts, means, threshold=0.5)
    assert out["mean_reward"] == pytest.approx(rewards.mean())
    assert out["p50"] == pytest.approx(np.quantile(rewards, 0.5))
    assert out["trajectory_pass_rate"] == pytest.approx(2 / 3)
    low, high = out["mean_reward_ci"]
    # each resample is a mix of whole trajectories: between the lowest and
    # highest trajectory mean
    assert min(means) - 1e-12 <= low <= out["mean_reward"] <= high <= max(means) + 1e-12


def test_per_category_uses_only_named_categories():
    codes = np.array([0, 0, 1, -1])
    seen = {}

    def compute(mask, seed):
        seen[seed] = mask.tolist()
        return {"n": int(mask.sum())}
    out = m.per_category(compute, codes, ["A", "B"])
    assert out == {"A": {"n": 2}, "B": {"n": 1}}
    assert len(seen) == 2


def test_category_bootstraps_on_threads_give_the_serial_figures(monkeypatch):
    """Overall and per-category metrics run on a thread pool; each draws from
    its own seeded generator, so the figures equal a one-thread run's."""
    rng = np.random.default_rng(3)
    n = 30_000
    scores = rng.normal(size=n)
    safe = rng.random(n) < 1 / (1 + np.exp(-2 * scores))
    codes = rng.integers(-1, 6, n)

    def compute(mask, seed):
        return m.label_metrics(scores[mask], safe[mask], threshold=0.0, score_type="logit",
                               seed=seed)
    names = [f"C{k}" for k in range(6)]
    threaded = m.overall_and_per_category(compute, codes, names, seed=5)
    monkeypatch.setattr(m.os, "cpu_count", lambda: 1)
    serial = m.overall_and_per_category(compute, codes, names, seed=5)
    assert threaded == serial
    assert set(threaded[1]) == set(names)
    assert threaded[0]["n"] == n and threaded[1]["C0"]["n"] == int((codes == 0).sum())
    assert threaded[0]["auroc_ci"] != threaded[1]["C0"]["auroc_ci"]
