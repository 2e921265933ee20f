"""The plots of an audit run: score distributions, calibration, ROC,
per-category metrics, length against score, version comparison and the
flywheel history.

The numbers come from ``workstation.audits.plot_data`` (run in a background
job); ``plot_drawing`` draws them with pyqtgraph, each in a ``PlotTab``.
Clicking a point selects its example. Colours follow the system palette
(light or dark); the semantic ones come from ``colours``. The run's own plots
show its held-out examples first (what its metrics cover); the split
selector switches to the training set or every example.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QStackedWidget, QTabWidget,
                               QVBoxLayout, QWidget)

from workstation.audits import plot_data as pd
from workstation.errors import WorkstationError
from workstation.ui import splits
from workstation.ui.context import AppContext
from workstation.ui.plot_drawing import (draw_calibration, draw_categories, draw_flywheel,
                                         draw_length, draw_roc, draw_scores, draw_versions)
from workstation.ui.plot_tab import PlotTab
from workstation.ui.wording import count, metric_name
from workstation.workspace import Workspace

EMPTY_TEXT = "Run an audit to see its plots"


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
                baseline: int | None = None, split: str = splits.HELDOUT) -> PlotBundle:
    """All plot data of ``run_id`` (runs on a job thread); the run's own plots
    show the examples of ``split`` (the comparison and history are per version)."""
    run = pd.run_info(ws, run_id, split)
    baselines = pd.comparable_runs(ws, run_id)
    if baseline is None and baselines:
        baseline = baselines[0]["run_id"]
    return PlotBundle(
        run, pd.score_distributions(ws, run_id, split=split),
        pd.reliability(ws, run_id, split=split), pd.roc(ws, run_id, split=split),
        _or_reason(lambda: pd.category_bars(ws, run_id, metric, split=split)),
        pd.length_vs_score(ws, run_id, split=split), baselines,
        _comparison(ws, baseline, run_id), baseline,
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
        # The run the browser picked in the new workspace, if it came first;
        # else None, and the browser's pick follows.
        ctx.workspace_changed.connect(lambda _ws: self.show_run(ctx.run_id))
        self.show_run(ctx.run_id)

    # -- layout --------------------------------------------------------------------
    def _build(self) -> None:
        self.empty = QLabel(EMPTY_TEXT, alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.header = QLabel(wordWrap=True)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.split_box = QComboBox()
        for key, text in splits.PLOT_CHOICES:
            self.split_box.addItem(text, key)
        self.split_box.activated.connect(self._split_chosen)
        self.split_label = QLabel("Examples:")
        self.split_label.setBuddy(self.split_box)
        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.split_label)
        top.addWidget(self.split_box)
        self.tabs = QTabWidget()
        self._build_tabs()
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(top)
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
        self.split = splits.HELDOUT  # a run's plots open on what its metrics cover
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
            self._load(self.run_id, self.metric_box.currentData() or None,
                       self.baseline_box.currentData())

    def _split_chosen(self, _index: int) -> None:
        self.split = self.split_box.currentData()
        self._reload()

    def _data_changed(self, changes: Any) -> None:
        if self.run_id is not None and set(changes or ()) & {"runs", "models", "findings"}:
            self._reload()

    def _load(self, run_id: int, metric: str | None, baseline: int | None) -> None:
        request, split = self._request, self.split

        def done(bundle: PlotBundle | str) -> None:
            if request == self._request:  # a newer selection wins
                self._show(bundle)
        self.ctx.run_job(f"Plotting run {run_id}",
                         lambda ws, _p: _or_reason(lambda: load_bundle(ws, run_id, metric,
                                                                       baseline, split)), done)

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
        self.header.setText(header_html(b.run))
        self._fill_split_box(b.run)
        draw_scores(self.scores_tab, b.distributions, p)
        draw_calibration(self.calibration_tab, b.reliability, p)
        draw_roc(self.roc_tab, b.roc, p)
        self._fill_metric_box(b)
        draw_categories(self.categories_tab, b.bars, p)
        draw_length(self.length_tab, b.length, p, self._clicked)
        self._fill_baseline_box(b)
        draw_versions(self.versions_tab, b.comparison, p, self._clicked)
        draw_flywheel(self.flywheel_tab, b.history, b.run.model_version_id, p)

    def _fill_metric_box(self, b: PlotBundle) -> None:
        current = b.bars.metric if isinstance(b.bars, pd.CategoryBars) else ""
        names = b.bars.metrics_available if isinstance(b.bars, pd.CategoryBars) \
            else pd.interval_metrics(b.run.metrics)
        self.metric_box.clear()
        for name in names:  # in words; the key goes back to the core
            self.metric_box.addItem(metric_name(name), name)
        self.metric_box.setCurrentIndex(max(self.metric_box.findData(current), 0))

    def _fill_split_box(self, run: pd.RunInfo) -> None:
        """Held-out, training set or all: the training set only where the run
        has one; no choice at all for a run that cannot tell them apart."""
        told_apart = splits.has_training_split(run.membership) and \
            run.training_metrics is not None
        why = "" if told_apart else splits.why_no_split(run.run_id, run.membership)
        model = self.split_box.model()
        model.item(self.split_box.findData(splits.TRAINING)).setEnabled(told_apart)
        shown = run.split if told_apart or run.membership is not None else splits.ALL
        self.split_box.setCurrentIndex(self.split_box.findData(shown))
        # A run audited before membership was recorded: its "held-out" is every example.
        self.split_box.setEnabled(run.membership is not None)
        tip = why or ("Held-out: the examples the run's metrics cover (the version was not "
                      "trained on them). Training set: those it was trained on, apart.")
        for widget in (self.split_box, self.split_label):
            widget.setToolTip(tip)

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


def header_html(run: pd.RunInfo) -> str:
    """The run, its headline metric (held-out first, the training set's apart)
    and which examples the plots show, with their failures."""
    failures = splits.failures_of(run.split, run.metrics, run.training_metrics)
    return (f"<b>{_esc(run.model)}</b> on <b>{_esc(run.dataset)}</b> ({run.kind}) "
            f"&nbsp;·&nbsp; run {run.run_id} &nbsp;·&nbsp; {_esc(_headline(run))}<br>"
            f"Showing {_esc(run.covers)} &nbsp;·&nbsp; {_counted(failures, 'failure')}")


def _headline(run: pd.RunInfo) -> str:
    key = pd.HEADLINE_METRIC.get(run.kind, "")
    held = splits.headline(run.metrics, key) or "no metrics"
    membership = run.membership
    if membership is None:
        return f"{held} (held-out and training examples not told apart)"
    if membership.get("status") == "unknown":
        return f"{held} · training membership unknown"
    training = splits.headline(run.training_metrics, key)
    return f"held-out {held}" + (f" · training set {training}" if training else "")


def _esc(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _counted(n: Any, noun: str) -> str:
    return count(int(n), noun) if isinstance(n, (int, float)) else f"? {noun}s"
