"""The reward landscape of an observation model over a 2-D view of a
demonstrations dataset, for drawing as a heat-map.

The view is a plane through observation space: either the first two
observation components ("components"), or the top two principal components
of the demonstrations' observations ("pca"). The reward is scored on a grid
in that plane with every other direction held at the demonstrations' mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workstation.errors import WorkstationError
from workstation.models.registry import ModelVersion
from workstation.workspace import Workspace

METHODS = ("components", "pca")
# Observations read to estimate the mean and principal directions.
SAMPLE_STEPS = 100_000


@dataclass(frozen=True)
class Projection:
    """A plane ``origin + a·basis[0] + b·basis[1]`` in observation space."""

    method: str
    origin: np.ndarray      # [D]
    basis: np.ndarray       # [2, D], orthonormal rows
    axis_names: tuple[str, str]

    def project(self, obs: np.ndarray) -> np.ndarray:
        """Plane coordinates [N, 2] of observations [N, D]."""
        return (np.asarray(obs, dtype=np.float64) - self.origin) @ self.basis.T

    def lift(self, coords: np.ndarray) -> np.ndarray:
        """Observations [N, D] at plane coordinates [N, 2]."""
        return self.origin + np.asarray(coords, dtype=np.float64) @ self.basis


@dataclass(frozen=True)
class Landscape:
    """Rewards on a grid: ``rewards[i, j]`` is at (xs[j], ys[i])."""

    xs: np.ndarray
    ys: np.ndarray
    rewards: np.ndarray


def demo_observations(ws: Workspace, dataset: str, limit: int = SAMPLE_STEPS) -> np.ndarray:
    """Up to ``limit`` observations of the dataset's current, non-excluded
    demonstrations (a deterministic spread when there are more)."""
    total = ws.execute(
        "SELECT count(*) FROM demo_steps s JOIN current_examples ce ON ce.id = s.example_id "
        "JOIN datasets d ON d.id = ce.dataset_id WHERE d.name = ? AND NOT ce.excluded",
        [dataset]).fetchall()[0][0]
    every = max(1, -(-int(total) // limit))
    rows = ws.execute(
        "SELECT obs FROM (SELECT s.obs, row_number() OVER (ORDER BY s.example_id, s.step) AS i "
        "FROM demo_steps s JOIN current_examples ce ON ce.id = s.example_id "
        "JOIN datasets d ON d.id = ce.dataset_id WHERE d.name = ? AND NOT ce.excluded) "
        "WHERE i % ? = 0 ORDER BY i", [dataset, every]).fetchall()
    return np.asarray([r[0] for r in rows], dtype=np.float64)


def projection(obs: np.ndarray, method: str = "components") -> Projection:
    """The plane to view observations [N, D] in (see the module docstring)."""
    obs = np.asarray(obs, dtype=np.float64)
    if method not in METHODS:
        raise WorkstationError(f"projection must be one of {', '.join(METHODS)}, not {method!r}")
    if obs.ndim != 2 or obs.shape[0] == 0 or obs.shape[1] < 2:
        raise WorkstationError("a 2-D view needs observations with at least two components")
    mean = obs.mean(axis=0)
    if method == "components":
        origin = mean.copy()
        origin[:2] = 0.0
        basis = np.eye(2, obs.shape[1])
        return Projection(method, origin, basis, ("obs[0]", "obs[1]"))
    _, _, vt = np.linalg.svd(obs - mean, full_matrices=False)
    basis = vt[:2] if vt.shape[0] >= 2 else np.eye(2, obs.shape[1])
    return Projection(method, mean, basis, ("PC 1", "PC 2"))


def extent(points: np.ndarray, pad: float = 0.15) -> tuple[float, float, float, float]:
    """(xmin, xmax, ymin, ymax) around plane points [N, 2], padded."""
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.maximum(high - low, 1e-6)
    low, high = low - pad * span, high + pad * span
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


def reward_landscape(ws: Workspace, version: str | int | ModelVersion, view: Projection,
                     bounds: tuple[float, float, float, float], resolution: int = 64) -> Landscape:
    """Score the model on a ``resolution`` x ``resolution`` grid of the plane."""
    from workstation.models.scoring import score_observations

    xs = np.linspace(bounds[0], bounds[1], resolution)
    ys = np.linspace(bounds[2], bounds[3], resolution)
    gx, gy = np.meshgrid(xs, ys)
    coords = np.stack([gx.ravel(), gy.ravel()], axis=1)
    rewards = score_observations(ws, version, view.lift(coords).astype(np.float32))
    return Landscape(xs, ys, np.asarray(rewards, dtype=np.float64).reshape(resolution, resolution))
