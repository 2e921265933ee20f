"""Gymnasium's classic-control dynamics, vectorised over many states at once.

The reward-recovery benchmark needs the expert's return-to-go from thousands
of states; stepping gymnasium's environments one state at a time would take
minutes. These are the same equations as gymnasium 1.x (CartPole-v1,
Pendulum-v1, MountainCar-v0, Acrobot-v1, with their constants), written over
arrays of states [N, d]; ``tests/test_reward_recovery.py`` checks every step
function against the environment's own ``step`` on random states.

Each simulator has ``step(state, action) -> (state, reward, terminated)``,
``terminal(state)`` (the episode is over in that state), ``observe(state) ->
obs``, its inverse ``state_of(obs) -> (state, possible)`` (``possible`` is
False for an observation no state makes: cos/sin off the unit circle, a
speed beyond the simulator's clip) and the episode limit of the registered env.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# How far cos^2 + sin^2 may stray from 1 (as a radius) for an observed angle
# to still be an angle; float32 observations stray by ~1e-7.
CIRCLE_TOLERANCE = 0.05


def _f32(limit: float) -> float:
    """A clip as a float32 observation shows it: a speed clipped to 4 pi is
    observed as float32(4 pi), a hair above 4 pi in float64, and is possible."""
    return float(np.float32(limit))


def _angle(cos: np.ndarray, sin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The angle of (cos, sin), and whether the pair lies on the unit circle."""
    return np.arctan2(sin, cos), np.abs(np.hypot(cos, sin) - 1.0) <= CIRCLE_TOLERANCE


@dataclass(frozen=True)
class CartPole:
    """CartPole-v1: state (x, x_dot, theta, theta_dot), actions 0 (left) / 1 (right)."""

    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5
    force_mag: float = 10.0
    tau: float = 0.02
    x_threshold: float = 2.4
    theta_threshold: float = 12 * 2 * np.pi / 360
    max_steps: int = 500

    def step(self, s: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, x_dot, th, th_dot = s.T
        force = np.where(np.asarray(a) == 1, self.force_mag, -self.force_mag)
        total = self.masspole + self.masscart
        pml = self.masspole * self.length
        cos, sin = np.cos(th), np.sin(th)
        temp = (force + pml * th_dot ** 2 * sin) / total
        th_acc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * cos ** 2 / total))
        x_acc = temp - pml * th_acc * cos / total
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * x_acc
        th = th + self.tau * th_dot
        th_dot = th_dot + self.tau * th_acc
        new = np.stack([x, x_dot, th, th_dot], axis=1)
        done = self.failed(new)
        return new, np.ones(len(new)), done

    def failed(self, s: np.ndarray) -> np.ndarray:
        return (np.abs(s[:, 0]) > self.x_threshold) | (np.abs(s[:, 2]) > self.theta_threshold)

    def terminal(self, s: np.ndarray) -> np.ndarray:
        return self.failed(s)

    @staticmethod
    def observe(s: np.ndarray) -> np.ndarray:
        return s.astype(np.float32)

    @staticmethod
    def state_of(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = np.asarray(obs, dtype=np.float64)
        return obs, np.isfinite(obs).all(1)


def angle_normalize(x: np.ndarray) -> np.ndarray:
    return ((x + np.pi) % (2 * np.pi)) - np.pi


@dataclass(frozen=True)
class Pendulum:
    """Pendulum-v1: state (theta, theta_dot), theta = 0 upright; action a torque in [-2, 2]."""

    g: float = 10.0
    m: float = 1.0
    l: float = 1.0
    dt: float = 0.05
    max_speed: float = 8.0
    max_torque: float = 2.0
    max_steps: int = 200

    def step(self, s: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        th, th_dot = s.T
        u = np.clip(np.asarray(u, dtype=np.float64).reshape(-1), -self.max_torque,
                    self.max_torque)
        cost = self.cost(s) + 0.001 * u ** 2
        new_dot = th_dot + (3 * self.g / (2 * self.l) * np.sin(th)
                            + 3.0 / (self.m * self.l ** 2) * u) * self.dt
        new_dot = np.clip(new_dot, -self.max_speed, self.max_speed)
        new = np.stack([th + new_dot * self.dt, new_dot], axis=1)
        return new, -cost, np.zeros(len(new), dtype=bool)

    @staticmethod
    def terminal(s: np.ndarray) -> np.ndarray:
        return np.zeros(len(s), dtype=bool)  # only the time limit ends an episode

    @staticmethod
    def cost(s: np.ndarray) -> np.ndarray:
        """The state part of the task's cost: angle^2 + 0.1 * speed^2."""
        return angle_normalize(s[:, 0]) ** 2 + 0.1 * s[:, 1] ** 2

    @staticmethod
    def observe(s: np.ndarray) -> np.ndarray:
        return np.stack([np.cos(s[:, 0]), np.sin(s[:, 0]), s[:, 1]], axis=1).astype(np.float32)

    def state_of(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = np.asarray(obs, dtype=np.float64)
        th, on_circle = _angle(obs[:, 0], obs[:, 1])
        return np.stack([th, obs[:, 2]], 1), on_circle & (np.abs(obs[:, 2]) <= _f32(self.max_speed))


@dataclass(frozen=True)
class MountainCar:
    """MountainCar-v0: state (position, velocity); actions 0 (push left), 1 (none), 2 (right)."""

    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.5
    force: float = 0.001
    gravity: float = 0.0025
    max_steps: int = 200

    def step(self, s: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos, vel = s[:, 0].copy(), s[:, 1].copy()
        vel = vel + (np.asarray(a) - 1) * self.force + np.cos(3 * pos) * (-self.gravity)
        vel = np.clip(vel, -self.max_speed, self.max_speed)
        pos = np.clip(pos + vel, self.min_position, self.max_position)
        vel = np.where((pos == self.min_position) & (vel < 0), 0.0, vel)
        new = np.stack([pos, vel], axis=1)
        return new, -np.ones(len(s)), self.terminal(new)

    def terminal(self, s: np.ndarray) -> np.ndarray:
        return (s[:, 0] >= self.goal_position) & (s[:, 1] >= 0)

    @staticmethod
    def observe(s: np.ndarray) -> np.ndarray:
        return s.astype(np.float32)

    def state_of(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = np.asarray(obs, dtype=np.float64)
        inside = (obs[:, 0] >= _f32(self.min_position)) & (obs[:, 0] <= _f32(self.max_position)) \
            & (np.abs(obs[:, 1]) <= _f32(self.max_speed))
        return obs, inside


@dataclass(frozen=True)
class Acrobot:
    """Acrobot-v1 ("book" dynamics, RK4 over dt = 0.2): state (theta1, theta2,
    dtheta1, dtheta2); actions 0, 1, 2 = torque -1, 0, +1 on the second joint."""

    dt: float = 0.2
    max_vel_1: float = 4 * np.pi
    max_vel_2: float = 9 * np.pi
    max_steps: int = 500

    def step(self, s: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torque = np.asarray(a, dtype=np.float64) - 1.0
        y = s.astype(np.float64)
        half = self.dt / 2.0
        k1 = self._dsdt(y, torque)
        k2 = self._dsdt(y + half * k1, torque)
        k3 = self._dsdt(y + half * k2, torque)
        k4 = self._dsdt(y + self.dt * k3, torque)
        new = y + self.dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        new[:, 0] = _wrap(new[:, 0])
        new[:, 1] = _wrap(new[:, 1])
        new[:, 2] = np.clip(new[:, 2], -self.max_vel_1, self.max_vel_1)
        new[:, 3] = np.clip(new[:, 3], -self.max_vel_2, self.max_vel_2)
        done = self.terminal(new)
        return new, np.where(done, 0.0, -1.0), done

    def terminal(self, s: np.ndarray) -> np.ndarray:
        return self.height(s) > 1.0

    @staticmethod
    def height(s: np.ndarray) -> np.ndarray:
        """The tip's height above the pivot; the episode ends above 1."""
        return -np.cos(s[:, 0]) - np.cos(s[:, 1] + s[:, 0])

    @staticmethod
    def _dsdt(s: np.ndarray, a: np.ndarray) -> np.ndarray:
        m1 = m2 = l1 = i1 = i2 = 1.0
        lc1 = lc2 = 0.5
        g = 9.8
        th1, th2, d1_, d2_ = s.T
        d1 = m1 * lc1 ** 2 + m2 * (l1 ** 2 + lc2 ** 2 + 2 * l1 * lc2 * np.cos(th2)) + i1 + i2
        d2 = m2 * (lc2 ** 2 + l1 * lc2 * np.cos(th2)) + i2
        phi2 = m2 * lc2 * g * np.cos(th1 + th2 - np.pi / 2.0)
        phi1 = (-m2 * l1 * lc2 * d2_ ** 2 * np.sin(th2)
                - 2 * m2 * l1 * lc2 * d2_ * d1_ * np.sin(th2)
                + (m1 * lc1 + m2 * l1) * g * np.cos(th1 - np.pi / 2) + phi2)
        dd2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * d1_ ** 2 * np.sin(th2) - phi2) / (
            m2 * lc2 ** 2 + i2 - d2 ** 2 / d1)
        dd1 = -(d2 * dd2 + phi1) / d1
        return np.stack([d1_, d2_, dd1, dd2], axis=1)

    @staticmethod
    def observe(s: np.ndarray) -> np.ndarray:
        return np.stack([np.cos(s[:, 0]), np.sin(s[:, 0]), np.cos(s[:, 1]), np.sin(s[:, 1]),
                         s[:, 2], s[:, 3]], axis=1).astype(np.float32)

    def state_of(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = np.asarray(obs, dtype=np.float64)
        th1, on1 = _angle(obs[:, 0], obs[:, 1])
        th2, on2 = _angle(obs[:, 2], obs[:, 3])
        speeds = (np.abs(obs[:, 4]) <= _f32(self.max_vel_1)) \
            & (np.abs(obs[:, 5]) <= _f32(self.max_vel_2))
        return np.stack([th1, th2, obs[:, 4], obs[:, 5]], 1), on1 & on2 & speeds


def _wrap(x: np.ndarray) -> np.ndarray:
    """gymnasium's wrap(x, -pi, pi): shift by 2 pi until inside (pi itself stays)."""
    x = x.copy()
    while np.any(x > np.pi):
        x = np.where(x > np.pi, x - 2 * np.pi, x)
    while np.any(x < -np.pi):
        x = np.where(x < -np.pi, x + 2 * np.pi, x)
    return x
