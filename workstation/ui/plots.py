"""The plots of an audit run: score distributions, calibration, ROC,
per-category metrics, length against score, version comparison and the
flywheel history.

The numbers come from ``workstation.audits.plot_data`` (run in a background
job); this module only draws them with pyqtgraph. Clicking a point selects its
example. Colours follow the system palette (light or dark); the semantic ones
(fixed green, broken red) come in a light-background and a dark-background
shade so that both stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QStackedWidget, QTabWidget,
                               QVBoxLayout, QWidget)

from workstation.audits import plot_data as pd
from workstation.errors import WorkstationError
from workstation.ui.context import AppContext
from workstation.workspace import Workspace

pg.setConfigOptions(antialias=True)

EMPTY_TEXT = "Run an audit to see its plots"

# Okabe-Ito hues (colour-blind safe), a darker shade for light backgrounds and
# a lighter one for dark backgrounds.
_SEMANTIC = {
    "fixed": ("#007a55", "#3ddc97"), "broken": ("#c0392b", "#ff7b6b"),
    "safe": ("#0072b2", "#56b4e9"), "unsafe": ("#d55e00", "#f0a35e"),
    "chosen": ("#0072b2", "#56b4e9"), "rejected": ("#d55e00", "#f0a35e"),
    "accent": ("#7b3fa0", "#c79be0"),
}


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def semantic_colour(name: str, palette: QPalette) -> QColor:
    """A semantic colour (fixed, broken, safe, unsafe, ...) readable on ``palette``."""
    light, dark = _SEMANTIC[name]
    return QColor(dark if is_dark(palette) else light)


def _with_alpha(colour: QColor, alpha: int) -> QColor:
    c = QColor(colour)
    c.setAlpha(alpha)
    return c


# -- one tab: a plot, its caption, and a message when it does not apply ------------

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
        style_plot(self.plot, palette)
        fg = palette.color(QPalette.ColorRole.WindowText).name()
        self.plot.setLabel("bottom", self.x_label, color=fg)
        self.plot.setLabel("left", self.y_label, color=fg)
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


def style_plot(plot: pg.PlotWidget, palette: QPalette) -> None:
    """Background, axes and text in the palette's colours."""
    fg = palette.color(QPalette.ColorRole.WindowText)
    plot.setBackground(palette.color(QPalette.ColorRole.Base))
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(_with_alpha(fg, 160)))
        axis.setTextPen(pg.mkPen(fg))
        axis.setTicks(None)
        axis.enableAutoSIPrefix(False)  # "score (x0.001)" reads worse than 0.25


# -- what a job computes for one run -------------------------------------------------

@dataclass
class PlotBundle:
    """Every plot's data for one run (or the reason a plot is missing)."""

    run: pd.RunInfo
    distributions: pd.ScoreDistributions
    reliability: pd.Reliability
    roc: pd.RocCurve
    bars: pd.CategoryBars | str
    length: pd.LengthScatter
    baselines: list[dict[str, Any]]
    comparison: pd.VersionComparison | str
    baseline: int | None
    history: list[pd.HistoryPoint]


def load_bundle(ws: Workspace, run_id: int, metric: str | None = None,
                baseline: int | None = None) -> PlotBundle:
    """All plot data of ``run_id`` (runs on a job thread)."""
    run = pd.run_info(ws, run_id)
    baselines = pd.comparable_runs(ws, run_id)
    if baseline is None and baselines:
        baseline = baselines[0]["run_id"]
    return PlotBundle(
        run, pd.score_distributions(ws, run_id), pd.reliability(ws, run_id), pd.roc(ws, run_id),
        _or_reason(lambda: pd.category_bars(ws, run_id, metric)), pd.length_vs_score(ws, run_id),
        baselines, _comparison(ws, baseline, run_id), baseline,
        pd.flywheel_history(ws, run.model.rpartition("@")[0]))


def _comparison(ws: Workspace, baseline: int | None, run_id: int) -> pd.VersionComparison | str:
    if baseline is None:
        return ("No other audit of this dataset to compare with: audit another version "
                "(e.g. the parent) on it")
    return _or_reason(lambda: pd.compare_runs(ws, baseline, run_id))


def _or_reason(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except WorkstationError as exc:
        return str(exc)


# -- the panel -----------------------------------------------------------------------

class PlotsPanel(QWidget):
    """Plots of the selected audit run; follows ``ctx.run_selected``."""

    rendered = Signal(object)  # run id, after the plots of a run are drawn

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.run_id: int | None = None
        self.bundle: PlotBundle | None = None
        self._request = 0
        self._build()
        ctx.run_selected.connect(self.show_run)
        ctx.data_changed.connect(self._data_changed)
        ctx.workspace_changed.connect(lambda _ws: self.show_run(None))
        self.show_run(ctx.run_id)

    # -- layout --------------------------------------------------------------------
    def _build(self) -> None:
        self.empty = QLabel(EMPTY_TEXT, alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.header = QLabel()
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.tabs = QTabWidget()
        self._build_tabs()
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.header)
        column.addWidget(self.tabs, 1)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.empty)
        self.pages.addWidget(content)
        QVBoxLayout(self).addWidget(self.pages)

    def _build_tabs(self) -> None:
        self.scores_tab = PlotTab("score", "examples")
        self.calibration_tab = PlotTab("predicted probability of safe", "observed share safe")
        self.roc_tab = PlotTab("false positive rate", "true positive rate")
        self.categories_tab = PlotTab("", "")
        self.length_tab = PlotTab("response length", "score")
        self.versions_tab = PlotTab("old margin", "new margin")
        self.flywheel_tab = PlotTab(pd.FLYWHEEL_X_LABEL, pd.FLYWHEEL_Y_LABEL)
        self.metric_box = QComboBox()
        self.baseline_box = QComboBox()
        self._add_control(self.categories_tab, "Metric:", self.metric_box)
        self._add_control(self.versions_tab, "Compare with:", self.baseline_box)
        self.metric_box.activated.connect(lambda _i: self._reload())
        self.baseline_box.activated.connect(lambda _i: self._reload())
        for tab, name in ((self.scores_tab, "Scores"), (self.calibration_tab, "Calibration"),
                          (self.roc_tab, "ROC"), (self.categories_tab, "Categories"),
                          (self.length_tab, "Length"), (self.versions_tab, "Versions"),
                          (self.flywheel_tab, "Flywheel")):
            self.tabs.addTab(tab, name)

    @staticmethod
    def _add_control(tab: PlotTab, label: str, box: QComboBox) -> None:
        box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        tab.controls.addWidget(QLabel(label))
        tab.controls.addWidget(box)
        tab.controls.addStretch(1)

    # -- following the selection ---------------------------------------------------
    def show_run(self, run_id: int | None) -> None:
        """Plot ``run_id`` (None: the empty state)."""
        self.run_id = run_id
        self._request += 1
        if run_id is None or self.ctx.ws is None:
            self.bundle = None
            self.empty.setText(EMPTY_TEXT)
            self.pages.setCurrentWidget(self.empty)
            return
        self._load(run_id, None, None)

    def _reload(self) -> None:
        if self.run_id is not None:
            self._request += 1
            self._load(self.run_id, self.metric_box.currentText() or None,
                       self.baseline_box.currentData())

    def _data_changed(self, changes: Any) -> None:
        if self.run_id is not None and set(changes or ()) & {"runs", "models", "findings"}:
            self._reload()

    def _load(self, run_id: int, metric: str | None, baseline: int | None) -> None:
        request = self._request

        def done(bundle: PlotBundle | str) -> None:
            if request == self._request:  # a newer selection wins
                self._show(bundle)
        self.ctx.run_job(f"Plotting run {run_id}",
                         lambda ws, _p: _or_reason(lambda: load_bundle(ws, run_id, metric,
                                                                       baseline)), done)

    def _show(self, bundle: PlotBundle | str) -> None:
        if isinstance(bundle, str):
            self.bundle = None
            self.empty.setText(f"{bundle}\n\n{EMPTY_TEXT}.")
            self.pages.setCurrentWidget(self.empty)
            self.rendered.emit(self.run_id)
            return
        self.bundle = bundle
        self.pages.setCurrentWidget(self.pages.widget(1))
        self._render()
        self.rendered.emit(bundle.run.run_id)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.PaletteChange and self.bundle is not None:
            self._render()  # colours are baked into the items: draw again
        super().changeEvent(event)

    # -- drawing -------------------------------------------------------------------
    def _render(self) -> None:
        b, p = self.bundle, self.palette()
        run = b.run
        self.header.setText(
            f"<b>{run.model}</b> on <b>{run.dataset}</b> ({run.kind}) &nbsp;·&nbsp; run "
            f"{run.run_id} &nbsp;·&nbsp; {run.metrics.get('n_failures', '?')} failures among "
            f"{run.covers}")
        draw_scores(self.scores_tab, b.distributions, p)
        draw_calibration(self.calibration_tab, b.reliability, p)
        draw_roc(self.roc_tab, b.roc, p)
        self._fill_metric_box(b)
        draw_categories(self.categories_tab, b.bars, p)
        draw_length(self.length_tab, b.length, p, self._clicked)
        self._fill_baseline_box(b)
        draw_versions(self.versions_tab, b.comparison, p, self._clicked)
        draw_flywheel(self.flywheel_tab, b.history, run.model_version_id, p)

    def _fill_metric_box(self, b: PlotBundle) -> None:
        current = b.bars.metric if isinstance(b.bars, pd.CategoryBars) else ""
        names = b.bars.metrics_available if isinstance(b.bars, pd.CategoryBars) \
            else pd.interval_metrics(b.run.metrics)
        self.metric_box.clear()
        self.metric_box.addItems(names)
        self.metric_box.setCurrentText(current)

    def _fill_baseline_box(self, b: PlotBundle) -> None:
        self.baseline_box.clear()
        for r in b.baselines:
            parent = " (parent)" if r["is_parent"] else ""
            self.baseline_box.addItem(f"{r['model']}{parent} · run {r['run_id']}", r["run_id"])
        index = self.baseline_box.findData(b.baseline)
        self.baseline_box.setCurrentIndex(max(index, 0))
        self.baseline_box.setEnabled(bool(b.baselines))

    def _clicked(self, example_id: int) -> None:
        self.ctx.example_selected.emit(int(example_id))


# -- drawing, one function per plot ------------------------------------------------

def _fg(palette: QPalette, alpha: int = 255) -> QColor:
    return _with_alpha(palette.color(QPalette.ColorRole.WindowText), alpha)


def _neutral(palette: QPalette) -> QColor:
    """Halfway between text and background: for points that carry no verdict."""
    a, b = palette.color(QPalette.ColorRole.WindowText), palette.color(QPalette.ColorRole.Base)
    return QColor((a.red() + b.red()) // 2, (a.green() + b.green()) // 2,
                  (a.blue() + b.blue()) // 2)


def _dashed(palette: QPalette) -> Any:
    return pg.mkPen(_fg(palette, 110), width=1, style=Qt.PenStyle.DashLine)


def _scatter(points_x: np.ndarray, points_y: np.ndarray, ids: np.ndarray, colour: QColor,
             on_click: Callable[[int], None], symbol: str = "o",
             size: int = 7) -> pg.ScatterPlotItem:
    """Clickable points, each carrying its example id."""
    item = pg.ScatterPlotItem(
        x=points_x, y=points_y, data=ids, symbol=symbol, size=size,
        pen=pg.mkPen(colour.darker(140), width=0.8), brush=pg.mkBrush(_with_alpha(colour, 190)),
        hoverable=True, hoverSize=size + 4,
        tip=lambda x, y, data: f"example {data}\nx = {x:.4g}\ny = {y:.4g}")
    item.sigClicked.connect(lambda _item, points, _ev: on_click(int(points[0].data())))
    return item


def _headroom(tab: PlotTab, top: float, factor: float = 1.06) -> None:
    # A little below zero too, so that the axis can label its 0.
    tab.plot.setYRange(-0.04 * max(top, 1), max(top, 1) * factor, padding=0)


def draw_scores(tab: PlotTab, d: pd.ScoreDistributions, p: QPalette) -> None:
    tab.x_label = d.x_label
    tab.clear(p)
    if d.reason:
        return tab.show_reason(d.reason)
    legend = []
    for h in d.series:
        colour = semantic_colour(h.name, p)
        tab.plot.addItem(pg.PlotDataItem(
            h.edges, h.counts, stepMode="center", fillLevel=0,
            pen=pg.mkPen(colour, width=2), brush=pg.mkBrush(_with_alpha(colour, 45))))
        legend.append((colour, "■", f"{h.name} (n = {h.n:,})"))
    _headroom(tab, max(int(h.counts.max()) for h in d.series))
    threshold = d.run.threshold
    if threshold is not None:
        tab.plot.addItem(pg.InfiniteLine(threshold, angle=90, pen=_dashed(p)))
        legend.append((_fg(p), "┆", f"threshold {threshold:g}"))
    sides = "per side as audited" if d.run.kind == "pairs" else "per label at audit time"
    tab.set_caption(f"Score distributions {sides}, {len(d.series[0].counts)} bins.", legend)


def draw_calibration(tab: PlotTab, r: pd.Reliability, p: QPalette) -> None:
    tab.clear(p)
    if r.reason:
        return tab.show_reason(r.reason)
    accent = semantic_colour("accent", p)
    centres = (r.lower + r.upper) / 2
    filled = r.counts > 0
    tab.plot.addItem(pg.BarGraphItem(
        x=centres[filled], height=r.observed[filled], width=(r.upper - r.lower)[filled] * 0.9,
        brush=_with_alpha(accent, 50), pen=pg.mkPen(_with_alpha(accent, 120))))
    tab.plot.addItem(pg.PlotDataItem([0, 1], [0, 1], pen=_dashed(p)))
    sizes = 6 + 14 * np.sqrt(r.counts[filled] / r.counts.max())
    tab.plot.addItem(pg.PlotDataItem(
        r.mean_probability[filled], r.observed[filled], pen=pg.mkPen(accent, width=2),
        symbol="o", symbolSize=sizes, symbolBrush=accent, symbolPen=pg.mkPen(accent.darker())))
    tab.plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.03)
    tab.set_caption(f"ECE {r.ece:.3f} over {len(r.counts)} equal-width bins.", [
        (_with_alpha(accent, 110), "■", "observed share safe per bin"),
        (accent, "●", "at the bin's mean predicted probability (size ~ examples)"),
        (_fg(p), "┄", "perfect calibration")])


def draw_roc(tab: PlotTab, c: pd.RocCurve, p: QPalette) -> None:
    tab.clear(p)
    if c.reason:
        return tab.show_reason(c.reason)
    accent, marker = semantic_colour("accent", p), semantic_colour("unsafe", p)
    tab.plot.addItem(pg.PlotDataItem([0, 1], [0, 1], pen=_dashed(p)))
    tab.plot.addItem(pg.PlotDataItem(c.fpr, c.tpr, pen=pg.mkPen(accent, width=2.5)))
    legend = [(accent, "━", f"AUROC {c.auroc:.3f}")]
    if c.operating_point is not None:
        x, y = c.operating_point
        tab.plot.addItem(pg.ScatterPlotItem([x], [y], symbol="star", size=16, brush=marker,
                                            pen=pg.mkPen(_fg(p))))
        legend.append((marker, "★", f"the run's threshold {c.run.threshold:g} "
                                    f"(FPR {x:.2f}, TPR {y:.2f})"))
    tab.plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.03)
    what = ("chosen responses (positive) against rejected ones, pooled" if c.positive == "chosen"
            else "safe (positive) against unsafe")
    tab.set_caption(f"ROC of {what}: {c.n_positive:,} positive, {c.n_negative:,} negative.",
                    legend)


def draw_categories(tab: PlotTab, bars: pd.CategoryBars | str, p: QPalette) -> None:
    if isinstance(bars, str):
        tab.clear(p)
        return tab.show_reason(bars)
    tab.x_label, tab.y_label = bars.metric, ""
    tab.clear(p)
    if bars.reason:
        return tab.show_reason(bars.reason)
    ys = np.arange(len(bars.categories))
    shown = np.isfinite(bars.values)
    accent = semantic_colour("safe", p)
    tab.plot.addItem(pg.BarGraphItem(x0=0, y=ys[shown], height=0.6, width=bars.values[shown],
                                     brush=_with_alpha(accent, 200), pen=pg.mkPen(accent)))
    has_ci = shown & np.isfinite(bars.ci_low) & np.isfinite(bars.ci_high)
    v = bars.values[has_ci]
    tab.plot.addItem(pg.ErrorBarItem(x=v, y=ys[has_ci], left=v - bars.ci_low[has_ci],
                                     right=bars.ci_high[has_ci] - v, beam=0.25,
                                     pen=pg.mkPen(_fg(p), width=2)))
    if bars.overall is not None:
        tab.plot.addItem(pg.InfiniteLine(bars.overall, angle=90, pen=_dashed(p)))
    labels = [f"{c} (n={n})" if ok else f"{c} (n={n}, no value)"
              for c, n, ok in zip(bars.categories, bars.n, shown)]
    tab.plot.getAxis("left").setTicks([list(zip(ys.tolist(), labels))])
    tab.plot.showGrid(x=True, y=False, alpha=0.15)
    tab.plot.invertY(True)
    if _is_rate(bars):
        tab.plot.setXRange(0, 1, padding=0.02)
    tab.set_caption(f"{bars.metric} per category.", [
        (accent, "■", bars.metric), (_fg(p), "├┤", "95% bootstrap interval"),
        (_fg(p), "┆", f"overall {_fmt(bars.overall)} {_fmt_ci(bars.overall_ci)}")])


def _is_rate(bars: pd.CategoryBars) -> bool:
    values = np.r_[bars.values, bars.ci_low, bars.ci_high]
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() >= 0 and values.max() <= 1


def draw_length(tab: PlotTab, s: pd.LengthScatter, p: QPalette,
                on_click: Callable[[int], None]) -> None:
    tab.x_label, tab.y_label = s.x_label, s.y_label
    tab.clear(p)
    if s.reason:
        return tab.show_reason(s.reason)
    legend: list[tuple[QColor, str, str]] = []
    for series in s.series:
        for item, key in _length_items(series, s.run.kind, p, on_click):
            tab.items.append(item)
            tab.plot.addItem(item)
            legend.append(key)
    shown = sum(len(x.x) for x in s.series)
    thinned = "" if shown == s.n_total else (f" Showing {shown:,} of {s.n_total:,} points "
                                             f"(every failure included).")
    tab.set_caption(f"Click a point to open its example.{thinned}", legend)


def _length_items(series: pd.ScatterSeries, kind: str, p: QPalette,
                  on_click: Callable[[int], None]) -> list[tuple[pg.ScatterPlotItem, tuple]]:
    if kind == "pairs":
        colour = semantic_colour(series.name, p)
        symbol, glyph = ("o", "●") if series.name == "chosen" else ("t", "▼")
        return [(_scatter(series.x, series.y, series.example_ids, colour, on_click, symbol),
                 (colour, glyph, f"{series.name} side ({len(series.x):,})"))]
    out = []
    for passed, name, colour in ((True, "passed", _neutral(p)),
                                 (False, "failed", semantic_colour("broken", p))):
        mask = series.passed == passed
        item = _scatter(series.x[mask], series.y[mask], series.example_ids[mask], colour, on_click)
        out.append((item, (colour, "●", f"{name} ({int(mask.sum()):,})")))
    return out


def draw_versions(tab: PlotTab, c: pd.VersionComparison | str, p: QPalette,
                  on_click: Callable[[int], None]) -> None:
    tab.clear(p)
    if isinstance(c, str) or c.reason:
        return tab.show_reason(c if isinstance(c, str) else c.reason)
    tab.plot.setLabel("bottom", f"margin under {c.old_label} (baseline)", color=_fg(p).name())
    tab.plot.setLabel("left", f"margin under {c.new_label}", color=_fg(p).name())
    for line in (pg.InfiniteLine(0, angle=90, pen=_dashed(p)),
                 pg.InfiniteLine(0, angle=0, pen=_dashed(p))):
        tab.plot.addItem(line)
    low, high = _span(c.old_margin, c.new_margin)
    tab.plot.addItem(pg.PlotDataItem([low, high], [low, high], pen=pg.mkPen(_fg(p, 60))))
    colours = {"fixed": semantic_colour("fixed", p), "broken": semantic_colour("broken", p),
               "unchanged": _neutral(p)}
    legend, items = [], {}
    for index in (pd.UNCHANGED, pd.FIXED, pd.BROKEN):  # semantic points drawn on top
        name = pd.CLASSES[index]
        mask = c.classes == index
        items[index] = _scatter(c.old_margin[mask], c.new_margin[mask], c.example_ids[mask],
                                colours[name], on_click, size=6 if index == pd.UNCHANGED else 9)
        tab.plot.addItem(items[index])
        legend.append((colours[name], "●", f"{name} ({c.counts[name]:,})"))
    tab.items = [items[i] for i in range(len(pd.CLASSES))]  # indexed like pd.CLASSES
    tab.set_caption(f"{c.dataset}: {c.counts_text}. Above the horizontal line passes now, "
                    f"right of the vertical line passed before. Click a point to open its "
                    f"example.", legend)


def _span(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    both = np.r_[a, b]
    both = both[np.isfinite(both)]
    return (float(both.min()), float(both.max())) if len(both) else (-1.0, 1.0)


def draw_flywheel(tab: PlotTab, history: list[pd.HistoryPoint], current: int,
                  p: QPalette) -> None:
    tab.clear(p)
    if not history:
        return tab.show_reason("no model versions")
    legend, top = [], 0
    series = pd.flywheel_series(history)
    width = 0.8 / len(series)
    for k, s in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        colour = semantic_colour(s.colour, p)
        known = [(i, v) for i, v in enumerate(s.values) if v is not None]  # no parent: no bar
        if known:
            xs, heights = zip(*known)
            tab.plot.addItem(pg.BarGraphItem(x=np.array(xs) + offset, height=heights,
                                             width=width * 0.9, brush=_with_alpha(colour, 190),
                                             pen=pg.mkPen(colour)))
            top = max(top, max(heights))
        legend.append((colour, "■", s.name))
    for i, h in enumerate(history):
        if h.fixed is None:  # say why a version has no fixed/broken bars
            note = pg.TextItem("no parent audit to compare" if h.parent_ref else "no parent",
                               color=_fg(p, 160), anchor=(0.5, 1.0))
            note.setPos(i + 0.13, 0)
            tab.plot.addItem(note)
    ticks = [(float(i), f"{h.ref}{' (this run)' if h.version_id == current else ''}")
             for i, h in enumerate(history)]
    tab.plot.getAxis("bottom").setTicks([ticks])
    tab.plot.showGrid(x=False, y=True, alpha=0.15)
    tab.plot.setXRange(-0.6, len(history) - 0.4, padding=0)
    _headroom(tab, top)
    tab.set_caption(pd.FLYWHEEL_CAPTION, legend)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _fmt_ci(ci: tuple[float, float] | None) -> str:
    return "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
