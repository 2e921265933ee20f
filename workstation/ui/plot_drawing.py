"""Drawing the plots of an audit run, one function per plot: each takes its
tab, the numbers ``audits.plot_data`` computed and the palette, and draws
them with pyqtgraph. Clickable points carry their example ids; each version of
the Flywheel plot has a tooltip saying its counts in words.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QPalette, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from workstation.audits import plot_data as pd
from workstation.ui.colours import semantic_colour, with_alpha
from workstation.ui.plot_tab import PlotTab, axis_label, count_axis
from workstation.ui.wording import count, metric_name


def _fg(palette: QPalette, alpha: int = 255) -> QColor:
    return with_alpha(palette.color(QPalette.ColorRole.WindowText), alpha)


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
        pen=pg.mkPen(colour.darker(140), width=0.8), brush=pg.mkBrush(with_alpha(colour, 190)),
        hoverable=True, hoverSize=size + 4,
        tip=lambda x, y, data: f"example {data}\nx = {x:.4g}\ny = {y:.4g}")
    item.sigClicked.connect(lambda _item, points, _ev: on_click(int(points[0].data())))
    return item


def _headroom(tab: PlotTab, top: float, factor: float = 1.06) -> None:
    """The range of a count axis, a little room above and below, whole-number ticks."""
    # A little below zero too, so that the axis can label its 0.
    tab.plot.setYRange(-0.04 * max(top, 1), max(top, 1) * factor, padding=0)
    count_axis(tab.plot, "left", top)


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
            pen=pg.mkPen(colour, width=2), brush=pg.mkBrush(with_alpha(colour, 45))))
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
        brush=with_alpha(accent, 50), pen=pg.mkPen(with_alpha(accent, 120))))
    tab.plot.addItem(pg.PlotDataItem([0, 1], [0, 1], pen=_dashed(p)))
    sizes = 6 + 14 * np.sqrt(r.counts[filled] / r.counts.max())
    tab.plot.addItem(pg.PlotDataItem(
        r.mean_probability[filled], r.observed[filled], pen=pg.mkPen(accent, width=2),
        symbol="o", symbolSize=sizes, symbolBrush=accent, symbolPen=pg.mkPen(accent.darker())))
    tab.plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.03)
    tab.set_caption(f"ECE {r.ece:.3f} over {len(r.counts)} equal-width bins.", [
        (with_alpha(accent, 110), "■", "observed share safe per bin"),
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
    name = metric_name(bars.metric)
    tab.x_label, tab.y_label = name, ""
    tab.clear(p)
    if bars.reason:
        return tab.show_reason(bars.reason)
    ys = np.arange(len(bars.categories))
    shown = np.isfinite(bars.values)
    accent = semantic_colour("safe", p)
    tab.plot.addItem(pg.BarGraphItem(x0=0, y=ys[shown], height=0.6, width=bars.values[shown],
                                     brush=with_alpha(accent, 200), pen=pg.mkPen(accent)))
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
    tab.set_caption(f"{name[:1].upper()}{name[1:]} per category.", [
        (accent, "■", name), (_fg(p), "├┤", "95% bootstrap interval"),
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
    axis_label(tab.plot, "bottom", f"margin under {c.old_label} (baseline)", _fg(p).name())
    axis_label(tab.plot, "left", f"margin under {c.new_label}", _fg(p).name())
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
                                             width=width * 0.9, brush=with_alpha(colour, 190),
                                             pen=pg.mkPen(colour)))
            top = max(top, max(heights))
        legend.append((colour, "■", s.name))
    for i, h in enumerate(history):
        tab.plot.addItem(_hover_area(i, max(top, 1) * 1.06, flywheel_tip(h)))
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
    tab.set_caption(f"{pd.FLYWHEEL_CAPTION} Hover over a version for its counts in words.",
                    legend)


def _hover_area(x: float, height: float, tip: str) -> QGraphicsRectItem:
    """An invisible rectangle over one version's bars that holds its tooltip."""
    area = QGraphicsRectItem(x - 0.45, 0.0, 0.9, height)
    area.setPen(QPen(Qt.PenStyle.NoPen))
    area.setBrush(QBrush(Qt.BrushStyle.NoBrush))
    area.setToolTip(tip)
    return area


def flywheel_tip(h: pd.HistoryPoint) -> str:
    """One version's turn in words, each count saying what it counts."""
    lines = [f"{h.ref}" + (f" (parent {h.parent_ref})" if h.parent_ref else ""),
             f"{count(h.failing_examples, 'failing example')} in its latest audit of each "
             f"dataset, {h.heldout_failing_examples:,} of them held-out (not trained on by "
             f"{h.ref})",
             f"{count(h.probe_findings, 'probe finding')} in its latest probe runs"]
    if h.fixed is None:
        lines.append("No parent to compare with." if not h.parent_ref else
                     f"No audit of the same dataset by {h.parent_ref} to compare with.")
    else:
        lines.append(f"Against {h.parent_ref}: {h.fixed:,} fixed, {h.broken:,} broken among "
                     f"{count(h.n_compared or 0, 'held-out example')} compared (neither "
                     f"version trained on them; {', '.join(h.datasets_compared)})")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _fmt_ci(ci: tuple[float, float] | None) -> str:
    return "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
