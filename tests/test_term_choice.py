"""The default demonstration reward weighs its terms by the demonstrations'
own time order: experts who hold a state are scored by where they dwell,
experts who reach for a place by their progress towards it, and either way
the reward ranks the task's states the way the task does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workstation.training.term_choice import choose_terms, end_percentile, order_accuracy

FAST = {"epochs": 30, "hidden": 16}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_order_accuracy_and_end_percentile_count_what_they_say():
    score = np.array([0.0, 1.0, 2.0, 2.0, 5.0])
    pairs = np.array([[0, 1], [1, 2], [2, 3], [4, 0]])  # rise, rise, tie, fall
    assert order_accuracy(score, pairs) == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert order_accuracy(score, np.zeros((0, 2), dtype=np.int64)) == 0.5
    # Two trajectories (0, 1, 2) and (3, 4): they end at scores 2.0 and 5.0,
    # whose percentiles among the five steps are (2 + 4) / 2 / 5 and 4.5 / 5.
    trajectory = np.array([0, 0, 0, 1, 1])
    ends = end_percentile(score, np.ones(5, dtype=bool), trajectory)
    assert ends == pytest.approx(np.mean([0.6, 0.9]))


def test_the_analysts_choice_overrides_the_measured_one():
    rng = np.random.default_rng(0)
    scores = {name: rng.standard_normal(50) for name in ("occupancy", "gaussian", "progress")}
    pairs = np.stack([np.arange(0, 49), np.arange(1, 50)], axis=1)
    rows, trajectory = np.ones(50, dtype=bool), np.repeat(np.arange(5), 10)
    chosen = choose_terms(scores, pairs, rows, trajectory, "gaussian", 0.25)
    assert chosen.density == "gaussian" and chosen.progress_weight == 0.25
    assert chosen.occupancy_share == 0.0


def _demos(kind: str, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """2-d trajectories. hold: from a random start, pulled to the origin and
    kept there with a little noise, 120 steps each. reach: from a random start
    on the left, straight to the goal at x = 1, where the trajectory ends."""
    out = []
    for _ in range(n):
        if kind == "hold":
            s, steps = rng.uniform(-1, 1, 2), []
            for _ in range(120):
                s = 0.9 * s + 0.02 * rng.standard_normal(2)
                steps.append(s.copy())
        else:
            start = np.array([rng.uniform(-1, 0), rng.uniform(-0.5, 0.5)])
            length = int(rng.integers(15, 40))
            t = np.linspace(0, 1, length)[:, None]
            steps = list(start + t * (np.array([1.0, 0.0]) - start)
                         + 0.01 * rng.standard_normal((length, 2)))
        out.append(np.array(steps, dtype=np.float32))
    return out


def _fit(demos: list[np.ndarray], **params):
    from workstation.progress import Progress
    from workstation.training.data import DemoData
    from workstation.training.demo_rewards import _steps, step_roles
    from workstation.training.occupancy import fit_occupancy
    from workstation.training.params import resolve_params

    ids = np.arange(1, len(demos) + 1, dtype=np.int64)
    data = DemoData(ids, np.concatenate(demos), np.repeat(ids, [len(d) for d in demos]))
    hp = resolve_params("demos", None, {**FAST, **params})
    return fit_occupancy(_steps(data, step_roles(data, hp)), hp, 0, Progress())


def _raw(fitted, states: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return fitted.scorer.raw(torch.from_numpy(states.astype(np.float32)))[0].numpy()


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_experts_who_hold_a_state_are_scored_by_where_they_dwell():
    rng = np.random.default_rng(1)
    fitted = _fit(_demos("hold", 30, rng))
    choice = fitted.choice
    # They end inside the cloud they hold, above its median density, so
    # progress weighs little (all of it at the 25th percentile or below).
    assert choice.end_percentile >= 0.55 and choice.progress_weight <= 0.3
    # States nearer the held state score higher.
    states = rng.uniform(-0.8, 0.8, size=(400, 2))
    assert _spearman(_raw(fitted, states), -np.linalg.norm(states, axis=1)) >= 0.9


def test_experts_who_reach_for_a_place_are_scored_by_their_progress():
    rng = np.random.default_rng(2)
    fitted = _fit(_demos("reach", 80, rng))
    choice = fitted.choice
    assert choice.end_percentile <= 0.25 and choice.progress_weight >= 0.9
    assert choice.order_accuracy["progress"] > max(choice.order_accuracy["occupancy"],
                                                   choice.order_accuracy["gaussian"])
    # On the experts' way, the nearer the goal the higher the score, though
    # the goal itself is where they spend the least time.
    states = np.stack([rng.uniform(-0.9, 0.95, 400), rng.uniform(-0.2, 0.2, 400)], axis=1)
    assert _spearman(_raw(fitted, states), states[:, 0]) >= 0.9


def test_a_density_leads_alone_only_by_more_than_noise():
    from workstation.training.term_choice import DECISIVE_Z, lead_z

    rng = np.random.default_rng(3)
    trajectory = np.repeat(np.arange(20), 10)
    t = np.tile(np.arange(10.0), 20)
    rows = np.ones(len(t), dtype=bool)
    pairs = np.array([(i, j) for k in range(20) for i in range(k * 10, k * 10 + 10)
                      for j in range(i + 1, k * 10 + 10)])
    rising, noise = t + 0.1 * rng.standard_normal(len(t)), rng.standard_normal(len(t))
    progress = rng.standard_normal(len(t))
    # The occupancy climbs with time, the Gaussian is noise: the occupancy alone.
    clear = choose_terms({"occupancy": rising, "gaussian": noise, "progress": progress},
                         pairs, rows, trajectory)
    assert clear.lead_z >= DECISIVE_Z and clear.density == "occupancy"
    assert clear.occupancy_share == 1.0
    # Two noises: neither leads by more than chance, so both weigh half.
    other = rng.standard_normal(len(t))
    tie = choose_terms({"occupancy": noise, "gaussian": other, "progress": progress},
                       pairs, rows, trajectory)
    assert abs(tie.lead_z) < DECISIVE_Z and tie.density == "both"
    assert tie.occupancy_share == 0.5
    assert lead_z(noise, rising, pairs, trajectory) <= -DECISIVE_Z


def _pump(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Energy pumping, like the acrobot's expert: from rest near the origin,
    an oscillation whose amplitude grows slowly at first (the experts dwell
    near where they start) and faster later, until it reaches 1 and the
    trajectory ends; a random phase and a little noise."""
    out = []
    for _ in range(n):
        length = int(rng.integers(60, 120))
        time = np.linspace(0, 1, length)
        amplitude = 0.05 + 0.95 * time ** 3
        phase = rng.uniform(0, 2 * np.pi) + np.linspace(0, 12 * np.pi, length)
        steps = amplitude[:, None] * np.stack([np.cos(phase), np.sin(phase)], axis=1)
        out.append((steps + 0.01 * rng.standard_normal(steps.shape)).astype(np.float32))
    return out


def test_a_density_the_experts_leave_gets_no_weight():
    rng = np.random.default_rng(4)
    fitted = _fit(_pump(60, rng))
    choice = fitted.choice
    # The density falls along the trajectories: it says where the experts
    # start, not what they pursue, so progress takes the whole weight, though
    # progress alone orders the steps imperfectly.
    assert choice.backwards and choice.density_z < -2.0
    assert choice.reliability < 1.0 and choice.progress_weight == 1.0
    # Scored by amplitude, as the task would: the farther out, the better.
    radius = rng.uniform(0.05, 0.95, 400)
    angle = rng.uniform(0, 2 * np.pi, 400)
    states = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    # (0.88 with the density kept at 1 - reliability, 0.99 without it.)
    assert _spearman(_raw(fitted, states), radius) >= 0.95


def test_a_density_that_rises_or_says_nothing_keeps_its_weight():
    rng = np.random.default_rng(5)
    trajectory = np.repeat(np.arange(20), 10)
    t = np.tile(np.arange(10.0), 20)
    pairs = np.array([(i, j) for k in range(20) for i in range(k * 10, k * 10 + 10)
                      for j in range(i + 1, k * 10 + 10)])
    rows = np.ones(len(t), dtype=bool)
    progress = t + 2.0 * rng.standard_normal(len(t))  # orders most pairs
    for density in (t + 0.1 * rng.standard_normal(len(t)), rng.standard_normal(len(t))):
        choice = choose_terms({"occupancy": density, "gaussian": density.copy(),
                               "progress": progress}, pairs, rows, trajectory)
        assert not choice.backwards and choice.density_z > -2.0
        assert choice.progress_weight == min(choice.reach_share, choice.reliability)
    falling = -t + 0.1 * rng.standard_normal(len(t))
    choice = choose_terms({"occupancy": falling, "gaussian": falling.copy(),
                           "progress": progress}, pairs, rows, trajectory)
    assert choice.backwards and choice.progress_weight == 1.0
    # The analyst's weight still wins.
    fixed = choose_terms({"occupancy": falling, "gaussian": falling.copy(),
                          "progress": progress}, pairs, rows, trajectory, "both", 0.4)
    assert fixed.progress_weight == 0.4


def test_one_trajectory_is_no_evidence_of_a_lead():
    from workstation.training.term_choice import lead_z

    t = np.arange(10.0)
    pairs = np.array([(i, j) for i in range(10) for j in range(i + 1, 10)])
    one = np.zeros(10, dtype=np.int64)
    # Rising against falling on every pair of one trajectory: still no
    # standard error to measure the lead in (it was infinite).
    assert lead_z(t, -t, pairs, one) == 0.0
    two = np.repeat([0, 1], 5)
    both = np.array([(i, j) for i in range(10) for j in range(i + 1, 10) if two[i] == two[j]])
    assert lead_z(t + 0.01 * np.random.default_rng(0).standard_normal(10), -t, both, two) > 2.0
    choice = choose_terms({"occupancy": -t, "gaussian": -t, "progress": t}, pairs,
                          np.ones(10, dtype=bool), one)
    assert not choice.backwards and choice.density_z == 0.0
