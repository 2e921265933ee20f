"""The reward-recovery and patch-locality benchmarks at small size: the
simulators are gymnasium's dynamics, the experts are good, the references
rank like the tasks, and the default demonstration reward recovers the tasks
far better than the paper's model (and is patched locally)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.control_sims import Acrobot, CartPole, MountainCar, Pendulum
from bench.reward_tasks import Sizes, build_tasks, cliffwalking_task

import torch  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("env_id, sim, low, high, actions", [
    ("CartPole-v1", CartPole(), [-2.4, -2, -0.2, -2], [2.4, 2, 0.2, 2], 2),
    ("Pendulum-v1", Pendulum(), [-np.pi, -8], [np.pi, 8], None),
    ("MountainCar-v0", MountainCar(), [-1.2, -0.07], [0.6, 0.07], 3),
    ("Acrobot-v1", Acrobot(), [-np.pi, -np.pi, -12, -28], [np.pi, np.pi, 12, 28], 3),
])
def test_the_simulators_step_like_gymnasium(env_id, sim, low, high, actions):
    import gymnasium as gym

    rng = np.random.default_rng(0)
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    states = rng.uniform(low, high, size=(200, len(low)))
    for state in states:
        if actions is None:  # a torque, beyond the limits now and then (both clip it)
            action = rng.uniform(-2.5, 2.5, size=1)
            ours_action = action
        else:
            action = int(rng.integers(actions))
            ours_action = np.array([action])
        env.state = state.copy()
        if env_id == "CartPole-v1":
            env.steps_beyond_terminated = None
        obs, reward, terminated, _, _ = env.step(action)
        new, ours, done = sim.step(state[None], ours_action)
        np.testing.assert_allclose(sim.observe(new)[0], obs, atol=1e-5)
        assert ours[0] == pytest.approx(reward, abs=1e-5) and bool(done[0]) == terminated


@pytest.fixture(scope="module")
def tasks():
    return {t.name: t for t in build_tasks(Sizes.quick())}


@pytest.mark.slow
def test_every_expert_reaches_the_known_good_return(tasks):
    assert list(tasks) == ["CartPole", "Pendulum", "MountainCar", "Acrobot", "CliffWalking"]
    for task in tasks.values():
        assert task.expert_ok, f"{task.name}: {task.expert_return} < {task.known_good}"
        assert task.obs.shape[0] >= 900 and len(task.failure) > 0
        assert np.isfinite(task.uniform_reference).all()


def test_split_half_reliability_tells_signal_from_rollout_noise():
    from bench.reward_tasks import _split_half

    rng = np.random.default_rng(0)
    truth = rng.normal(size=(2000, 1))
    assert _split_half(truth + 0.05 * rng.normal(size=(2000, 16))) > 0.99
    assert abs(_split_half(rng.normal(size=(2000, 16)))) < 0.1  # nothing but noise
    # Half the spread is noise in every rollout: 8 of them per half agree at
    # 8 / 9, so the whole 16 at about 0.94 (Spearman-Brown).
    assert _split_half(truth + rng.normal(size=(2000, 16))) == pytest.approx(16 / 17, abs=0.02)


def test_only_the_noisy_experts_reference_reports_its_reliability(tasks):
    from bench.bench_reward_recovery import reliability_line

    reliability = tasks["CartPole"].notes["reference_reliability"]
    assert reliability["rollouts"] == 64
    assert 0.5 < reliability["random"] <= 1.0 and 0.5 < reliability["uniform"] <= 1.0
    assert all("reference_reliability" not in t.notes for n, t in tasks.items() if n != "CartPole")
    line = reliability_line("CartPole", reliability)
    assert "64 noisy expert rollouts" in line and f"{np.sqrt(reliability['random']):.2f}" in line


def test_cliffwalking_reference_is_the_experts_exact_return_to_go():
    task = cliffwalking_task(Sizes.quick())
    value = dict(zip(map(tuple, task.uniform.tolist()), task.uniform_reference))
    assert value[(3.0, 11.0)] == pytest.approx(0.0)  # the goal ends the episode
    assert value[(2.0, 11.0)] > value[(3.0, 0.0)]  # nearer the goal is better
    cliff = [value[(3.0, c)] for c in range(1, 11)]
    assert max(cliff) < min(v for k, v in value.items() if k[0] < 3)  # the cliff is the worst
    assert task.expert_return == pytest.approx(value[(3.0, 0.0)])
    assert task.expert_ok


def test_a_scorer_equal_to_the_reference_ranks_perfectly():
    from bench.bench_reward_recovery import measure, split

    task = cliffwalking_task(Sizes.quick())
    table = dict(zip(map(tuple, task.uniform.tolist()), task.uniform_reference))
    _, held = split(task)
    exact = measure(task, lambda x: np.array([table[tuple(r)] for r in x.tolist()]), held)
    assert exact["rho_uniform"] == pytest.approx(1.0) and exact["rho_random"] == pytest.approx(1.0)
    assert exact["auroc"] == 1.0  # the expert never stands on the cliff
    blind = measure(task, lambda x: np.zeros(len(x)), held)
    assert blind["rho_uniform"] == 0.0 and blind["auroc"] == 0.5


def test_the_supervised_ceiling_tells_a_learnable_reference_from_noise():
    from bench.bench_reward_recovery import supervised_ceiling, yardstick_line

    states = np.random.default_rng(0).uniform(-1, 1, size=(600, 3))
    smooth = -np.linalg.norm(states - 0.3, axis=1)  # a function of the state alone
    noise = np.random.default_rng(1).normal(size=len(states))  # nothing to learn
    assert supervised_ceiling(states, smooth) > 0.9
    assert abs(supervised_ceiling(states, noise)) < 0.15
    # Each task's ceiling prints beside ours, with their mean.
    results = [{"task": name, "methods": {"ours": {"rho": 0.5}},
                "supervised_ceiling": {"rho": value}}
               for name, value in (("A", 0.9), ("B", 0.5))]
    line = yardstick_line(results)
    assert "A 0.900 (ours 0.500)" in line and line.endswith("mean 0.700")


def test_the_demonstrations_reach_tells_covering_demonstrations_from_one_place():
    from bench.bench_reward_recovery import demonstrations_reach, yardstick_line
    from bench.reward_tasks import TaskData

    rng = np.random.default_rng(0)

    def reference(x):
        return -np.linalg.norm(x - 0.3, axis=1)

    uniform, random = rng.uniform(-1, 1, size=(400, 2)), rng.uniform(-0.5, 0.5, size=(400, 2))
    task = TaskData("T", "T-v0", [], 0.0, 0.0, uniform, reference(uniform), random,
                    reference(random), np.zeros((1, 2)), "task reward", "none",
                    judge=lambda x: (reference(x), np.ones(len(x), bool)))
    everywhere = [rng.uniform(-1, 1, size=(100, 2)) for _ in range(6)]
    one_place = [np.full((100, 2), 0.9) for _ in range(6)]  # one state, one label
    covered = demonstrations_reach(task, everywhere)
    assert covered["rho_uniform"] > 0.9 and covered["rho_random"] > 0.8
    assert demonstrations_reach(task, one_place)["rho"] == 0.0  # a constant ranks nothing
    results = [{"task": "T", "methods": {"ours": {"rho": 0.5}},
                "demonstrations_reach": {"rho": 0.25}}]
    line = yardstick_line(results, "demonstrations_reach")
    assert line.startswith("demonstrations' reach") and "T 0.250 (ours 0.500); mean 0.250" in line


@pytest.mark.slow
def test_the_default_reward_recovers_the_tasks_better_than_the_papers_model(tasks):
    from bench.bench_reward_recovery import run_task, verdict

    results = [run_task(t, ("ours", "moe-ae", "gauss")) for t in tasks.values()]
    rho = {m: [r["methods"][m]["rho"] for r in results] for m in ("ours", "moe-ae", "gauss")}
    print("\nquick reward recovery rho:", {m: np.round(v, 3).tolist() for m, v in rho.items()})
    assert np.mean(rho["ours"]) >= np.mean(rho["moe-ae"]) + 0.25
    assert np.mean(rho["ours"]) >= np.mean(rho["gauss"]) + 0.15
    # The experts who balance are scored by where they dwell, those who reach
    # a goal by their progress: read from the demonstrations alone.
    weight = {r["task"]: r["methods"]["ours"]["progress_weight"] for r in results}
    # (Pendulum's trajectories end near the 60th percentile of the density, so
    # progress keeps about 0.3 there: the density still weighs most.)
    assert weight["CartPole"] < 0.5 and weight["Pendulum"] < 0.5
    assert min(weight["MountainCar"], weight["Acrobot"], weight["CliffWalking"]) >= 0.7
    # Failure states score below held-out expert states. On CliffWalking less
    # cleanly: progress scores the cliff cells near the goal above the
    # expert's own start cell, and only the occupancy (1 - w) pulls them down.
    auroc = {r["task"]: r["methods"]["ours"]["auroc"] for r in results}
    assert all(value >= 0.9 for task, value in auroc.items() if task != "CliffWalking")
    assert auroc["CliffWalking"] >= 0.75
    assert verdict(results)["mean_rho"] == pytest.approx(np.mean(rho["ours"]))


@pytest.mark.slow
def test_patches_fix_the_flaws_the_probe_finds_and_stay_local():
    from bench.bench_patch_locality import run, table

    report = run(quick=True, tasks=["CliffWalking", "Pendulum"])
    print("\n" + "\n".join(table(report)))
    cliff = next(r for r in report["results"] if r["task"] == "CliffWalking")
    assert cliff["env"] == "CliffWalking-v1" and cliff["flaws_before"] > 0
    assert cliff["flaws_after"] < cliff["flaws_before"]
    for result in report["results"]:
        if result["patched"]:
            assert result["fixed_share"] >= 0.9 and result["heldout_beyond_budget"] <= 0.01
            assert result["heldout_drop_max"] <= 0.10 + 1e-6
            assert result["compare"]["examples"]["broken"] == 0
            assert result["compare"]["training_examples"]["broken"] == 0
    assert report["verdict"]["passed"]


def test_a_state_where_the_episode_is_over_has_no_return_to_go():
    from bench.reward_tasks import acrobot_task, mountaincar_task, return_to_go

    acrobot, car = acrobot_task(), mountaincar_task()
    # The tip above the line but swinging down: stepping on falls below it
    # (rolled on, its return would be about -3), and a state hanging at rest.
    tip_up = np.array([[0.75 * np.pi, 0.0, -6.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    assert acrobot.sim.terminal(tip_up).tolist() == [True, False]
    values = return_to_go(acrobot.sim, acrobot.policy(), tip_up, acrobot.sim.max_steps)
    assert values[0] == 0.0 and values[1] < -10  # the goal, then a state at rest far from it
    at_flag = np.array([[0.55, 0.01], [-0.5, 0.0]])
    values = return_to_go(car.sim, car.policy(), at_flag, car.sim.max_steps)
    assert values[0] == 0.0 and values[1] < -10


@pytest.mark.parametrize("sim, state", [
    (CartPole(), [0.5, -1.0, 0.1, 0.3]),
    (Pendulum(), [2.5, -3.0]),
    (MountainCar(), [-0.5, 0.02]),
    (Acrobot(), [-2.0, 1.0, 5.0, -9.0]),
])
def test_an_observation_gives_back_its_state_and_an_impossible_one_is_told(sim, state):
    state = np.array([state])
    back, possible = sim.state_of(sim.observe(state))
    np.testing.assert_allclose(back, state, atol=1e-5)
    assert possible.tolist() == [True]
    if isinstance(sim, (Pendulum, Acrobot)):  # cos and sin both 0.3: off the unit circle
        off = sim.observe(state).astype(np.float64)
        off[:, :2] = 0.3
        assert sim.state_of(off)[1].tolist() == [False]


@pytest.mark.parametrize("sim, at_clip, beyond", [
    (Pendulum(), [0.0, 8.0], [0.0, 8.01]),
    (MountainCar(), [-1.2, -0.07], [-1.21, 0.0]),
    (Acrobot(), [0.0, 0.0, 4 * np.pi, -9 * np.pi], [0.0, 0.0, 0.0, 9.01 * np.pi]),
])
def test_a_speed_at_the_clip_is_possible_and_beyond_it_is_not(sim, at_clip, beyond):
    """Observations are float32: a clipped 4 pi shows as float32(4 pi), above
    4 pi in float64, and is still an observation the simulator makes."""
    assert sim.state_of(sim.observe(np.array([at_clip])))[1].tolist() == [True]
    assert sim.state_of(sim.observe(np.array([beyond])))[1].tolist() == [False]


def test_findings_are_judged_by_the_task_reference():
    from bench.bench_findings_truth import judge
    from bench.bench_reward_recovery import split

    task = cliffwalking_task(Sizes.quick())
    _, held = split(task)
    # A cliff cell (worse than any expert state), the cell beside the goal
    # (better than most), and a point off the grid.
    verdict = judge(task, np.array([[3.0, 5.0], [2.0, 11.0], [7.0, 2.0]]), held)
    assert (verdict["true"], verdict["false"], verdict["impossible"]) == (1, 1, 1)
