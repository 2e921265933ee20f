"""A trajectory in full: its per-step reward under a model, its observation
components, and a reward heat-map in a 2-D projection with the expert path,
the findings and the patch kernels drawn on it (pyqtgraph; the detail view
builds this on the first trajectory so that start-up stays light).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QSplitter, QVBoxLayout, QWidget

from workstation.ui.context import AppContext
from workstation.ui.plot_tab import axis_label
from workstation.ui.table_model import FAIL_COLOUR, PASS_COLOUR
from workstation.ui.verdicts import stale_verdict
from workstation.ui.widgets import plain_label

MAX_COMPONENTS = 8   # observation components drawn as curves
# Okabe-Ito hues (colour-blind safe, readable on light and dark backgrounds).
COMPONENT_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9",
                     "#f0e442", "#999999")
GRID = 64            # heat-map resolution


def _pg() -> Any:
    """pyqtgraph, configured to follow the application palette."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    palette = QApplication.palette()
    pg.setConfigOptions(antialias=True,
                        background=palette.color(QPalette.ColorRole.Base),
                        foreground=palette.color(QPalette.ColorRole.Text))
    return pg


class TrajectoryBody(QWidget):
    """Per-step reward, observation components, and the reward landscape."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.pg = pg = _pg()
        self.method = QComboBox()
        self.method.addItem("First two components", "components")
        self.method.addItem("Principal components", "pca")
        self.method.currentIndexChanged.connect(lambda _i: self._request_landscape())
        self.note = plain_label()
        self.reward_plot = self._plot("Reward per step", "step", "reward")
        self.obs_plot = self._plot("Observation components", "step", "value")
        self.map_plot = self._plot("Reward landscape", "", "")
        self.map_plot.setMinimumWidth(250)  # room for the colour bar's numbers
        self._build_map(pg)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.reward_plot)
        left.addWidget(self.obs_plot)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.map_plot)
        row = QHBoxLayout()
        row.addWidget(self.note, 1)
        row.addWidget(plain_label("2-D view:", wrap=False))
        row.addWidget(self.method)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(split, 1)
        self._cache: dict[tuple, Any] = {}
        self._obs: Any = None
        self._example: dict[str, Any] = {}
        self._version: int | None = None

    def _plot(self, title: str, x: str, y: str) -> Any:
        plot = self.pg.PlotWidget(title=title)
        axis_label(plot, "bottom", x)
        axis_label(plot, "left", y)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setMinimumSize(200, 110)  # with the history below, it fits 1024x700
        return plot

    def _build_map(self, pg: Any) -> None:
        self.cmap = pg.colormap.get("viridis")
        self.image = pg.ImageItem()
        self.map_plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=self.cmap, interactive=False,
                                        width=12)
        self.colorbar.setImageItem(self.image, insert_in=self.map_plot.getPlotItem())
        self.path_under = pg.PlotDataItem(pen=pg.mkPen((0, 0, 0), width=4))
        self.path = pg.PlotDataItem(pen=pg.mkPen((255, 255, 255), width=2))
        self.start = pg.ScatterPlotItem(symbol="o", size=9, brush=(255, 255, 255),
                                        pen=pg.mkPen((0, 0, 0)))
        self.marks = pg.ScatterPlotItem(symbol="x", size=14, brush=FAIL_COLOUR,
                                        pen=pg.mkPen(FAIL_COLOUR, width=2))
        for item in (self.path_under, self.path, self.start, self.marks):
            self.map_plot.addItem(item)
        self.kernels: list[Any] = []

    # -- showing ---------------------------------------------------------------
    def show_trajectory(self, example: dict[str, Any], row: dict[str, Any],
                        version_id: int | None) -> None:
        from workstation.examples import trajectory

        self._example, self._version = example, version_id
        self._obs, _ = trajectory(self.ctx.ws, example["id"])
        self._draw_components(self._obs)
        rewards = self._step_rewards(version_id, self._obs)
        self._draw_rewards(rewards, row)
        self._request_landscape()

    def _draw_components(self, obs: Any) -> None:
        self.obs_plot.clear()
        width = obs.shape[1] if obs.ndim == 2 else 0
        for k in range(min(width, MAX_COMPONENTS)):
            self.obs_plot.plot(obs[:, k], pen=self.pg.mkPen(COMPONENT_COLOURS[k], width=1.5),
                               name=f"obs[{k}]")
        # The key in the title: a legend inside a narrow plot hides the curves.
        key = " ".join(f'<span style="color:{COMPONENT_COLOURS[k]}">■</span>{k}'
                       for k in range(min(width, MAX_COMPONENTS)))
        more = f" of {width}" if width > MAX_COMPONENTS else ""
        self.obs_plot.setTitle(f"obs {key}{more}", size="9pt")
        self.obs_plot.setToolTip(f"Observation components 0-{min(width, MAX_COMPONENTS) - 1}"
                                 f"{more} per step, coloured as in the title.")

    def _step_rewards(self, version_id: int | None, obs: Any) -> Any:
        if version_id is None or len(obs) == 0:
            return None
        from workstation.errors import WorkstationError
        from workstation.models import resolve, score_observations

        try:
            version = resolve(self.ctx.ws, int(version_id))
            if version.input_kind != "observation":
                return None
            return score_observations(self.ctx.ws, version, obs)
        except WorkstationError as exc:
            self.note.setText(str(exc))
            return None

    def _draw_rewards(self, rewards: Any, row: dict[str, Any]) -> None:
        self.reward_plot.clear()
        # The table's Steps count actions; the plots run over every observation.
        n = self._example.get("n_steps")
        steps = (f"{n:,} steps ({len(self._obs):,} observations)" if n is not None
                 else f"{len(self._obs):,} observations")
        if rewards is None:
            self.reward_plot.setTitle("Reward per step: no model to score")
            self.note.setText(f"{steps}; pick a run or a model version to score them.")
            return
        self.reward_plot.plot(rewards, pen=self.pg.mkPen(PASS_COLOUR, width=2))
        self.reward_plot.addLine(y=0.5, pen=self.pg.mkPen(FAIL_COLOUR, style=Qt.PenStyle.DashLine))
        self.reward_plot.setYRange(0, 1.05)
        self.reward_plot.setTitle("Reward per step")
        verdict = "" if row.get("passed") is None else f" · {stale_verdict(row)}"
        label = self._example.get("label") or "safe (an expert demonstration)"
        self.note.setText(f"{steps} · mean reward {float(rewards.mean()):.3f} · label {label}"
                          f"{verdict}")

    # -- the landscape ---------------------------------------------------------
    def _request_landscape(self) -> None:
        obs, version = self._obs, self._version
        if obs is None or version is None or obs.ndim != 2 or obs.shape[1] < 2:
            self._clear_map("Reward landscape: needs a model")
            return
        key = (version, self._example.get("dataset"), self.method.currentData())
        if key in self._cache:
            self._draw_map(*self._cache[key])
            return
        self._clear_map("Reward landscape…")
        dataset, method = key[1], key[2]

        def compute(ws: Any, progress: Any) -> Any:
            return landscape_for(ws, version, dataset, method)

        def done(result: Any) -> None:
            self._cache[key] = result
            if key == (self._version, self._example.get("dataset"), self.method.currentData()):
                self._draw_map(*result)
        self.ctx.run_job("Reward landscape", compute, on_done=done)

    def _clear_map(self, title: str) -> None:
        self.image.clear()
        for item in (self.path_under, self.path):
            item.setData([], [])
        self.start.setData([], [])
        self.marks.setData([], [])
        for item in self.kernels:
            self.map_plot.removeItem(item)
        self.kernels = []
        self.map_plot.setTitle(title)

    def _draw_map(self, view: Any, land: Any, kernels: list[tuple[Any, float]]) -> None:
        from PySide6.QtCore import QRectF as Rect

        x0, x1, y0, y1 = land.xs[0], land.xs[-1], land.ys[0], land.ys[-1]
        self.image.setImage(land.rewards.T, autoLevels=False)
        low, high = float(land.rewards.min()), float(land.rewards.max())
        self.colorbar.setLevels((low, max(high, low + 1e-9)))
        self.image.setRect(Rect(x0, y0, x1 - x0, y1 - y0))
        points = view.project(self._obs)
        for item in (self.path_under, self.path):
            item.setData(points[:, 0], points[:, 1])
        self.start.setData([points[0, 0]], [points[0, 1]])
        self._draw_findings(view)
        self._draw_kernels(view, kernels)
        axis_label(self.map_plot, "bottom", view.axis_names[0])
        axis_label(self.map_plot, "left", view.axis_names[1])
        self.map_plot.setTitle("Reward landscape")
        self.map_plot.setToolTip("The model's reward over a plane of observation space; the "
                                 "other components are held at the demonstrations' mean. White "
                                 "line: this trajectory (dot: its start); crosses: findings; "
                                 "circles: patch kernels.")

    def _draw_kernels(self, view: Any, kernels: list[tuple[Any, float]]) -> None:
        """Each patch kernel as a dashed circle of its bandwidth around its center."""
        from PySide6.QtWidgets import QGraphicsEllipseItem

        for item in self.kernels:
            self.map_plot.removeItem(item)
        self.kernels = []
        pen = self.pg.mkPen(FAIL_COLOUR, width=2, style=Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        for center, bandwidth in kernels:
            if len(center) != self._obs.shape[1]:
                continue
            x, y = view.project(center[None, :])[0]
            circle = QGraphicsEllipseItem(x - bandwidth, y - bandwidth, 2 * bandwidth,
                                          2 * bandwidth)
            circle.setPen(pen)
            self.map_plot.addItem(circle)
            self.kernels.append(circle)

    def _draw_findings(self, view: Any) -> None:
        from workstation.examples import findings_for

        points = [p for f in findings_for(self.ctx.ws, self._example["id"])
                  if (p := finding_point(f, self._obs)) is not None]
        if points:
            import numpy as np

            xy = view.project(np.asarray(points))
            self.marks.setData(xy[:, 0], xy[:, 1])
        else:
            self.marks.setData([], [])


def landscape_for(ws: Any, version: int, dataset: str,
                  method: str) -> tuple[Any, Any, list[tuple[Any, float]]]:
    """(projection, landscape, patch kernels) of a demos dataset under a
    model (runs as a job)."""
    from workstation.landscape import demo_observations, extent, projection, reward_landscape

    sample = demo_observations(ws, dataset)
    view = projection(sample, method)
    land = reward_landscape(ws, version, view, extent(view.project(sample)), GRID)
    return view, land, patch_kernels(ws, version)


def patch_kernels(ws: Any, version: int) -> list[tuple[Any, float]]:
    """(center, bandwidth) of every suppression kernel the version carries."""
    from workstation.models import resolve
    from workstation.patching.layers import current_layer

    return [(k.center, k.bandwidth) for k in current_layer(ws, resolve(ws, version)).kernels()]


def finding_point(finding: dict[str, Any], obs: Any) -> Any:
    """Where a finding sits in observation space: the observation its case
    holds, or the step it names; None when it says neither."""
    case = finding.get("case") or {}
    details = finding.get("details") or {}
    for key in ("obs", "observation", "state"):
        value = case.get(key) if isinstance(case, dict) else None
        if isinstance(value, list) and len(value) == obs.shape[1]:
            return value
    for source in (case, details):
        step = source.get("step") if isinstance(source, dict) else None
        if isinstance(step, int) and 0 <= step < len(obs):
            return obs[step]
    return None
