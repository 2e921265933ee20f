"""One tab of the plots: a pyqtgraph plot styled from the system palette, its
axes (labelled without SI scaling; whole-number ticks for counts), its
caption with the legend, and a message in its place when the plot does not
apply.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QStackedWidget, QVBoxLayout, QWidget

from workstation.ui.colours import with_alpha

pg.setConfigOptions(antialias=True)


class PlotTab(QWidget):
    """A pyqtgraph plot with a caption line, optional controls, and a message
    shown instead of the plot when it does not apply."""

    def __init__(self, x_label: str = "", y_label: str = "") -> None:
        super().__init__()
        self.plot = pg.PlotWidget()
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setMenuEnabled(False)
        self.x_label, self.y_label = x_label, y_label
        self.items: list[pg.ScatterPlotItem] = []  # the clickable points
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.message = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.plot)
        self.stack.addWidget(self.message)
        self.controls = QHBoxLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(self.controls)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.caption)

    def clear(self, palette: QPalette) -> None:
        """Remove every item and restyle the axes from ``palette``."""
        self.plot.clear()
        self.items = []
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.invertY(False)
        # A range set for the previous run (a rate's 0..1) must not clip this one's.
        self.plot.enableAutoRange()
        style_plot(self.plot, palette)
        fg = palette.color(QPalette.ColorRole.WindowText).name()
        axis_label(self.plot, "bottom", self.x_label, fg)
        axis_label(self.plot, "left", self.y_label, fg)
        self.stack.setCurrentWidget(self.plot)

    def show_reason(self, text: str) -> None:
        self.message.setText(text[:1].upper() + text[1:])
        self.caption.setText("")
        self.stack.setCurrentWidget(self.message)

    def set_caption(self, text: str, legend: list[tuple[QColor, str, str]] = ()) -> None:
        """The caption, led by a legend of (colour, symbol, text) entries: kept
        out of the plot so that it never hides data."""
        keys = " &nbsp; ".join(f'<span style="color:{c.name()}">{sym}</span>&nbsp;{_esc(t)}'
                               for c, sym, t in legend)
        self.caption.setText((keys + "<br>" if keys else "") + _esc(text))


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def axis_label(plot: pg.PlotWidget, side: str, text: str, colour: str | None = None) -> None:
    """Name an axis whose tick labels are the values themselves. pyqtgraph
    scales the ticks of a range within 0..1 by 1000 while the label shows no
    prefix (auto SI prefix off) and keeps that scale as the range changes,
    so that the next run's -3.5..2 read -3000..2000: no range may scale."""
    axis = plot.getAxis(side)
    style = {"color": colour} if colour else {}
    axis.setLabel(text, siPrefixEnableRanges=(), **style)
    axis.enableAutoSIPrefix(False)  # recomputes the scale: 1 with no range enabled
    plot.showAxis(side)


def style_plot(plot: pg.PlotWidget, palette: QPalette) -> None:
    """Background, axes and text in the palette's colours."""
    fg = palette.color(QPalette.ColorRole.WindowText)
    plot.setBackground(palette.color(QPalette.ColorRole.Base))
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(with_alpha(fg, 160)))
        axis.setTextPen(pg.mkPen(fg))
        axis.setTicks(None)
        axis.setTickSpacing()  # automatic again after a count axis
        axis.enableAutoSIPrefix(False)  # "score (x0.001)" reads worse than 0.25


def count_axis(plot: pg.PlotWidget, side: str, top: float) -> None:
    """Whole-number ticks for an axis of counts up to ``top``: no 2.5 examples."""
    major = nice_step(max(top, 1.0) / 5)
    minor = major / 5 if major >= 5 else major
    plot.getAxis(side).setTickSpacing(major, minor)


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 5, 10, 20, 50, … that is at least ``raw``."""
    step = 1.0
    while step < raw:
        for factor in (2, 2.5, 2):  # 1 -> 2 -> 5 -> 10
            step *= factor
            if step >= raw:
                break
    return step
