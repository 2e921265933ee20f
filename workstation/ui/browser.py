"""The failure-case browser: pick a dataset, a model version and a run, filter
and sort its rows, and review them from the keyboard with the example in full
beside the table.

The table is a ``LazyTableModel`` over ``failure_page`` (audit runs, or a
dataset browsed without a run) or ``findings_page`` (probe runs); filters and
sorting run in SQL. Review keys live in ``shortcuts``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from typing import Any, Iterator

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QDoubleValidator, QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFrame, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QPushButton, QSplitter, QStackedWidget,
                               QTableView, QVBoxLayout, QWidget)

from workstation.ui.context import AppContext
from workstation.ui.detail import DetailView, plain_label
from workstation.ui.table_model import Column, LazyTableModel, PageFetch

ALL = "All"


# -- what the table shows ----------------------------------------------------------

def columns_for(kind: str, mode: str) -> list[Column]:
    """The table's columns for a dataset kind in a mode ("run", "browse", "findings")."""
    if mode == "findings":
        return [Column("finding_id", "#", None, "int", 50), Column("probe", "Probe", width=120),
                Column("rule", "Rule", width=220), Column("severity", "Severity", None,
                                                         "number", 70),
                Column("triage", "Triage", width=90), Column("example_id", "Example", None,
                                                            "int", 70),
                Column("score_before", "Before", None, "number", 70),
                Column("score_after", "After", None, "number", 70),
                Column("label", "Label", None, "label", 70),
                Column("category", "Category", width=120)]
    label_key = "flipped" if kind == "pairs" else "current_label"
    head = [Column("rank", "Rank", "rank", "int", 60)] if mode == "run" else []
    head += [Column("example_id", "Example", "example_id", "int", 70),
             Column("category", "Category", "category", width=120),
             Column("label", "Label", label_key, width=90)]
    scores = _score_columns(kind) if mode == "run" else []
    texts = {"pairs": [Column("prompt", "Prompt", "prompt", width=220),
                       Column("chosen", "Chosen", "chosen", width=220),
                       Column("rejected", "Rejected", "rejected", width=220)],
             "labels": [Column("prompt", "Prompt", "prompt", width=240),
                        Column("response", "Response", "response", width=300)],
             "demos": [Column("n_steps", "Steps", "n_steps", "int", 60)]}[kind]
    tail = [Column("tags", "Tags", "tags", "list", 100), Column("note", "Note", "note", width=140),
            Column("reviewed", "Reviewed", "reviewed", "bool", 70)]
    return head + scores + texts + tail


def _score_columns(kind: str) -> list[Column]:
    verdict = Column("passed", "Verdict", "passed", "verdict", 60)
    margin = Column("margin", "Margin", "margin", "number", 70)
    if kind == "pairs":
        return [verdict, margin, Column("score_chosen", "Chosen score", "score_chosen", "number",
                                        100),
                Column("score_rejected", "Rejected score", "score_rejected", "number", 110)]
    return [verdict, Column("score", "Score", "score", "number", 70), margin]


@dataclass
class Filters:
    """The browser's filters; None means "any"."""

    verdict: str | None = None
    category: str | None = None
    tag: str | None = None
    reviewed: bool | None = None
    score_min: float | None = None
    score_max: float | None = None
    margin_min: float | None = None
    margin_max: float | None = None
    text: str | None = None
    probe: str | None = None

    def page_filters(self) -> dict[str, Any]:
        """Keyword arguments for ``failure_page``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "probe"}

    def describe(self) -> str:
        """The active filters in words ("" when none)."""
        words = {"verdict": "verdict", "category": "category", "tag": "tag",
                 "score_min": "score ≥", "score_max": "score ≤", "margin_min": "margin ≥",
                 "margin_max": "margin ≤", "text": "text contains", "probe": "probe"}
        parts = [f"{words[k]} {getattr(self, k)!r}" if k in ("text", "category", "tag")
                 else f"{words[k]} {getattr(self, k)}" for k in words
                 if getattr(self, k) is not None]
        if self.reviewed is not None:
            parts.append("reviewed" if self.reviewed else "unreviewed")
        return " · ".join(parts)


def failure_fetch(run_id: int | None, dataset: str, filters: Filters) -> PageFetch:
    """Pages of an audit run's results (or of a dataset without a run)."""
    kwargs = filters.page_filters()

    def fetch(ws: Any, offset: int, limit: int, order_by: str | None, descending: bool,
              count: bool) -> tuple[list[dict], int | None]:
        from workstation.audits.runs import failure_page

        return failure_page(ws, run_id, dataset=dataset, order_by=order_by or "rank",
                            descending=descending, limit=limit, offset=offset, count=count,
                            **kwargs)
    return fetch


def findings_fetch(run_id: int, probe: str | None) -> PageFetch:
    """Pages of a probe run's findings, most severe first."""
    def fetch(ws: Any, offset: int, limit: int, order_by: str | None, descending: bool,
              count: bool) -> tuple[list[dict], int | None]:
        from workstation.probes.base import findings_page

        return findings_page(ws, run_id, probe=probe, limit=limit, offset=offset)
    return fetch


# -- the pickers -------------------------------------------------------------------

def _combo(min_width: int = 0) -> QComboBox:
    combo = QComboBox()
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
    combo.setMinimumContentsLength(8)
    combo.setMinimumWidth(min_width)
    return combo


class SelectionBar(QWidget):
    """Dataset, model version and run pickers."""

    changed = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.dataset_box, self.model_box, self.run_box = _combo(160), _combo(120), _combo(320)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for text, box in (("Dataset", self.dataset_box), ("Model", self.model_box),
                          ("Run", self.run_box)):
            row.addWidget(QLabel(text))
            row.addWidget(box)
        row.addStretch(1)
        self.datasets: dict[str, Any] = {}
        self.runs: dict[int, Any] = {}
        self._filling = False
        self.dataset_box.activated.connect(lambda _i: self._dataset_chosen())
        self.model_box.activated.connect(lambda _i: self._model_chosen())
        self.run_box.activated.connect(lambda _i: self._emit())

    # -- reading the choice ----------------------------------------------------
    @property
    def dataset(self) -> Any:
        return self.datasets.get(self.dataset_box.currentData())

    @property
    def run(self) -> Any:
        return self.runs.get(self.run_box.currentData())

    @property
    def model_version_id(self) -> int | None:
        return self.model_box.currentData()

    # -- filling ---------------------------------------------------------------
    def refresh(self, select_run: int | None = None, dataset: str | None = None) -> None:
        """Re-read datasets, models and runs, keeping the choices that remain
        (or showing run ``select_run``, or dataset ``dataset``)."""
        from workstation import catalog

        ws = self.ctx.ws
        self._filling = True
        try:
            infos = catalog.datasets(ws) if ws is not None else []
            self.datasets = {d.name: d for d in infos}
            _refill(self.dataset_box, [(f"{d.name}  ({d.kind}, {d.n_examples:,})", d.name)
                                       for d in infos])
            if select_run is not None:
                dataset = catalog.run(ws, select_run).dataset
            if dataset in self.datasets:
                self.dataset_box.setCurrentIndex(self.dataset_box.findData(dataset))
            versions = catalog.model_versions(ws) if ws is not None else []
            _refill(self.model_box, [("Any model", None)] + [(v.ref, v.id) for v in versions])
            if select_run is not None:  # the run's own model may be filtered out
                self.model_box.setCurrentIndex(0)
            self._fill_runs(select_run)
        finally:
            self._filling = False
        self._emit()

    def _fill_runs(self, select_run: int | None = None) -> None:
        from workstation import catalog

        dataset = self.dataset
        runs = catalog.runs(self.ctx.ws, dataset.name, self.model_version_id) if dataset else []
        self.runs = {r.id: r for r in runs}
        keep = select_run if select_run in self.runs else self.run_box.currentData()
        items = [(run_text(r), r.id) for r in runs]
        self.run_box.clear()
        self.run_box.addItem("Browse all examples (no run)", None)
        for text, run_id in items:
            self.run_box.addItem(text, run_id)
        if keep in self.runs:
            self.run_box.setCurrentIndex(self.run_box.findData(keep))
        else:  # the newest audit, else browsing
            audits = [r.id for r in runs if r.kind == "audit"]
            self.run_box.setCurrentIndex(self.run_box.findData(audits[0]) if audits else 0)

    def _dataset_chosen(self) -> None:
        self._fill_runs()
        self._emit()

    def _model_chosen(self) -> None:
        self._fill_runs()
        self._emit()

    def _emit(self) -> None:
        if not self._filling:
            self.changed.emit()

    def select_dataset(self, name: str) -> None:
        """Show dataset ``name`` (browsing it, or its newest audit)."""
        self.dataset_box.setCurrentIndex(max(self.dataset_box.findData(name), 0))
        self._dataset_chosen()

    def select_run(self, run_id: int) -> None:
        """Show run ``run_id`` (switching dataset if needed)."""
        self.refresh(select_run=run_id)


def run_text(run: Any) -> str:
    """How a run reads in the picker."""
    when = run.created_at[:16].replace("T", " ")
    if run.kind == "probe":
        return f"Run {run.id} · probes · {run.model} · {when} · {run.n_failures:,} findings"
    return (f"Run {run.id} · audit · {run.model} · {when} · {run.n_failures:,} failures "
            f"of {run.n_examples:,}")


def _refill(combo: QComboBox, items: list[tuple[str, Any]]) -> None:
    keep = combo.currentData()
    combo.clear()
    for text, data in items:
        combo.addItem(text, data)
    at = combo.findData(keep)
    combo.setCurrentIndex(at if at >= 0 else 0)


# -- the filters -------------------------------------------------------------------

class FilterBar(QWidget):
    """Search, verdict, review state, category, tag, ranges and probe."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompts and responses…  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.verdict = self._choice([(ALL, None), ("Failed", "failed"), ("Passed", "passed")])
        self.reviewed = self._choice([(ALL, None), ("Unreviewed", False), ("Reviewed", True)])
        self.category = self._choice([(ALL, None)])
        self.tag = self._choice([(ALL, None)])
        self.probe = self._choice([(ALL, None)])
        self.ranges = {name: self._number(name) for name in
                       ("score_min", "score_max", "margin_min", "margin_max")}
        self.clear_button = QPushButton("Clear filters")
        self.clear_button.clicked.connect(lambda _checked=False: self.clear())
        self._typing = QTimer(self, singleShot=True, interval=300)
        self._typing.timeout.connect(self.changed.emit)
        self.search.textChanged.connect(lambda _t: self._typing.start())
        QShortcut(QKeySequence("Escape"), self.search, activated=self.search.clear,
                  context=Qt.ShortcutContext.WidgetShortcut)
        self._layout()

    def _choice(self, items: list[tuple[str, Any]]) -> QComboBox:
        combo = _combo()
        for text, data in items:
            combo.addItem(text, data)
        combo.activated.connect(lambda _i: self.changed.emit())
        return combo

    def _number(self, name: str) -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText("min" if name.endswith("min") else "max")
        edit.setValidator(QDoubleValidator())
        edit.setMaximumWidth(64)
        edit.editingFinished.connect(self.changed.emit)
        return edit

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.search, 3)
        self.labels: dict[str, QLabel] = {}
        for text, widget in (("Verdict", self.verdict), ("Review", self.reviewed),
                             ("Category", self.category), ("Tag", self.tag),
                             ("Probe", self.probe)):
            label = self.labels[text] = QLabel(text)
            label.setBuddy(widget)
            top.addWidget(label)
            top.addWidget(widget)
        second = QHBoxLayout()
        second.setContentsMargins(0, 0, 0, 0)
        for text, low, high in (("Score", "score_min", "score_max"),
                                ("Margin", "margin_min", "margin_max")):
            second.addWidget(QLabel(text))
            second.addWidget(self.ranges[low])
            second.addWidget(QLabel("to"))
            second.addWidget(self.ranges[high])
            second.addSpacing(8)
        self.summary = plain_label(wrap=False)
        self.count = plain_label(wrap=False)
        second.addWidget(self.summary, 1)
        second.addWidget(self.count)
        second.addWidget(self.clear_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(top)
        column.addLayout(second)

    # -- state -----------------------------------------------------------------
    def set_mode(self, mode: str, categories: list[str], tags: list[str],
                 probes: list[str]) -> None:
        """Enable what applies: probe runs filter by probe only; browsing has no scores."""
        _refill(self.category, [(ALL, None)] + [(c, c) for c in categories])
        _refill(self.tag, [(ALL, None)] + [(t, t) for t in tags])
        _refill(self.probe, [(ALL, None)] + [(p, p) for p in probes])
        findings = mode == "findings"
        for widget in (self.search, self.reviewed, self.category, self.tag):
            widget.setEnabled(not findings)
        for widget in (self.verdict, *self.ranges.values()):
            widget.setEnabled(mode == "run")
        self.probe.setEnabled(findings)
        self.probe.setVisible(findings)
        self.labels["Probe"].setVisible(findings)

    def filters(self) -> Filters:
        ranges = {k: _float(e.text()) if e.isEnabled() else None for k, e in self.ranges.items()}
        enabled = self.search.isEnabled()
        return Filters(
            verdict=self.verdict.currentData() if self.verdict.isEnabled() else None,
            category=self.category.currentData() if enabled else None,
            tag=self.tag.currentData() if enabled else None,
            reviewed=self.reviewed.currentData() if enabled else None,
            text=(self.search.text().strip() or None) if enabled else None,
            probe=self.probe.currentData() if self.probe.isEnabled() else None, **ranges)

    def restore(self, filters: Filters) -> None:
        """Show ``filters`` again (after the choices were refilled)."""
        for combo, value in ((self.verdict, filters.verdict), (self.category, filters.category),
                             (self.tag, filters.tag), (self.reviewed, filters.reviewed),
                             (self.probe, filters.probe)):
            combo.setCurrentIndex(max(combo.findData(value), 0))

    def set_verdict(self, verdict: str | None) -> None:
        self.verdict.setCurrentIndex(max(self.verdict.findData(verdict), 0))

    def clear(self, emit: bool = True) -> None:
        """Back to no filter (a run shows its failures)."""
        self._typing.stop()
        for combo in (self.reviewed, self.category, self.tag, self.probe):
            combo.setCurrentIndex(0)
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)
        for edit in self.ranges.values():
            edit.clear()
        self.verdict.setCurrentIndex(0)
        if emit:
            self.changed.emit()


def _float(text: str) -> float | None:
    try:
        return float(text.replace(",", ".")) if text.strip() else None
    except ValueError:
        return None


# -- empty states ------------------------------------------------------------------

class EmptyState(QWidget):
    """What to do next, when there is nothing to show."""

    action = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = plain_label()
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        self.title.setFont(font)
        self.text = plain_label()
        self.button = QPushButton()
        self.button.clicked.connect(lambda: self.action.emit(self._action))
        self._action = ""
        column = QVBoxLayout(self)
        column.addStretch(1)
        for widget in (self.title, self.text):
            widget.setAlignment(Qt.AlignmentFlag.AlignCenter)
            column.addWidget(widget)
        column.addWidget(self.button, 0, Qt.AlignmentFlag.AlignCenter)
        column.addStretch(2)

    def show_state(self, title: str, text: str, button: str = "", action: str = "") -> None:
        self.title.setText(title)
        self.text.setText(text)
        self.button.setText(button)
        self.button.setVisible(bool(button))
        self._action = action


class HintBar(QFrame):
    """A one-line hint with an action, above the table."""

    action = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text = plain_label()
        self.button = QPushButton()
        self.button.clicked.connect(lambda: self.action.emit(self._action))
        self._action = ""
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 2, 6, 2)
        row.addWidget(self.text, 1)
        row.addWidget(self.button)

    def show_hint(self, text: str, button: str, action: str) -> None:
        self.text.setText(text)
        self.button.setText(button)
        self._action = action
        self.show()


# -- the panel ---------------------------------------------------------------------

class BrowserPanel(QWidget):
    """Failure table, filters and detail; the review keys act on its selection."""

    request_action = Signal(str)  # "import", "register", "audit", ...

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.mode, self.kind = "browse", "pairs"
        self.selection = SelectionBar(ctx)
        self.filter_bar = FilterBar()
        self.hint = HintBar()
        self.hint.hide()
        self.model = LazyTableModel(self)
        self.view = self._table()
        self.empty = EmptyState()
        self.detail = DetailView(ctx)
        self._build()
        self._own_change = False
        self._choice: tuple[Any, Any] = (None, None)
        self._pending_row = -1
        self._detail_timer = QTimer(self, singleShot=True, interval=30)
        self._detail_timer.timeout.connect(self._show_detail)
        self._connect()

    def _table(self) -> QTableView:
        view = QTableView()
        view.setModel(self.model)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        view.setAlternatingRowColors(True)
        view.setWordWrap(False)
        view.setTextElideMode(Qt.TextElideMode.ElideRight)
        view.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        vertical = view.verticalHeader()
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(view.fontMetrics().height() + 8)
        vertical.hide()
        header = view.horizontalHeader()
        header.setSortIndicatorShown(True)
        header.setSectionsClickable(True)
        header.setStretchLastSection(True)
        header.sortIndicatorChanged.connect(self._sort_clicked)
        return view

    def _build(self) -> None:
        self.pages = QStackedWidget()
        self.pages.addWidget(self.view)
        self.pages.addWidget(self.empty)
        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.hint)
        column.addWidget(self.pages, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([700, 600])
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.selection)
        layout.addWidget(self.filter_bar)
        layout.addWidget(self.splitter, 1)
        self.no_data = EmptyState()  # the whole panel, before any dataset exists
        self.no_data.action.connect(self.request_action.emit)
        self.no_data.show_state("No datasets yet",
                                "Import a dataset (File ▸ Import dataset…, Ctrl+I) to browse "
                                "its examples and audit a model on it.",
                                "Import a dataset…", "import")
        self.outer = QStackedWidget()
        self.outer.addWidget(content)
        self.outer.addWidget(self.no_data)
        QVBoxLayout(self).addWidget(self.outer)

    def _connect(self) -> None:
        self.selection.changed.connect(self._choice_changed)
        self.filter_bar.changed.connect(self.requery)
        self.model.loaded.connect(self._loaded)
        self.model.failed.connect(lambda msg: self.ctx.status.emit(f"cannot load rows: {msg}"))
        self.view.selectionModel().currentRowChanged.connect(self._row_changed)
        self.empty.action.connect(self._empty_action)
        self.hint.action.connect(self.request_action.emit)
        self.ctx.workspace_changed.connect(lambda _ws: self.refresh())
        self.ctx.workspace_closing.connect(self.model.stop)
        self.ctx.data_changed.connect(self._data_changed)
        self.ctx.example_selected.connect(self._example_selected_elsewhere)

    # -- choices ---------------------------------------------------------------
    def refresh(self, select_run: int | None = None, dataset: str | None = None) -> None:
        """Re-read the workspace's datasets, models and runs."""
        self.selection.refresh(select_run, dataset)

    @property
    def run(self) -> Any:
        return self.selection.run

    def _choice_changed(self) -> None:
        dataset, run = self.selection.dataset, self.selection.run
        self.outer.setCurrentIndex(0 if dataset is not None or self.ctx.ws is None else 1)
        self.ctx.dataset_selected.emit(dataset.name if dataset else None)
        self.ctx.model_selected.emit(run.model_version_id if run
                                     else self.selection.model_version_id)
        self.ctx.run_selected.emit(run.id if run and run.kind == "audit" else None)
        self.mode = "findings" if run and run.kind == "probe" else "run" if run else "browse"
        self.kind = dataset.kind if dataset else "pairs"
        choice = (dataset.name if dataset else None, run.id if run else None)
        same = choice == self._choice
        self._choice = choice
        kept = self.filter_bar.filters()
        self._fill_filters(dataset, run)
        self._show_hint()
        if same:  # new data, same choice: keep the analyst's filters and order
            self.filter_bar.restore(kept)
            self.requery()
            return
        self.filter_bar.clear(emit=False)
        self.filter_bar.set_verdict("failed" if self.mode == "run" else None)
        self.requery(new_columns=True)

    def refresh_choices(self) -> None:
        """Re-read the category and tag choices (after such an edit)."""
        kept = self.filter_bar.filters()
        self._fill_filters(self.selection.dataset, self.selection.run)
        self.filter_bar.restore(kept)

    def _fill_filters(self, dataset: Any, run: Any) -> None:
        from workstation import catalog

        ws = self.ctx.ws
        categories = catalog.categories(ws, dataset.name) if dataset else []
        tags = catalog.tags(ws, dataset.name) if dataset else []
        probes = catalog.run_probes(ws, run.id) if run and run.kind == "probe" else []
        self.filter_bar.set_mode(self.mode, categories, tags, probes)

    def _show_hint(self) -> None:
        if self.mode != "browse" or self.selection.dataset is None:
            self.hint.hide()
        elif self.selection.model_box.count() <= 1:
            self.hint.show_hint("No reward model registered yet: register one to audit this "
                                "dataset.", "Register a model…", "register")
        else:
            self.hint.show_hint("Browsing without an audit run: audit a model on this dataset "
                                "to see its scores and failures.", "Run an audit…", "audit")

    # -- the query -------------------------------------------------------------
    def requery(self, new_columns: bool = False) -> None:
        """Run the table's query again with the current choices and filters."""
        dataset, run = self.selection.dataset, self.selection.run
        filters = self.filter_bar.filters()
        self.filter_bar.summary.setText(
            f"Filter: {filters.describe()}" if filters.describe() else "No filter")
        if dataset is None:
            self.model.set_query(self.ctx.ws, None, [])
            return
        columns = columns_for(self.kind, self.mode)
        if self.mode == "findings":
            fetch = findings_fetch(run.id, filters.probe)
        else:
            fetch = failure_fetch(run.id if run else None, dataset.name, filters)
        order = (None, False) if self.mode == "findings" else \
            (self.model.order_by or "rank", self.model.descending)
        if new_columns:
            order = (None if self.mode == "findings" else "rank", False)
        self.view.setSortingEnabled(False)
        self.model.set_query(self.ctx.ws, fetch, columns, *order)
        self._set_widths(columns, order[0])

    def _set_widths(self, columns: list[Column], order_by: str | None) -> None:
        header = self.view.horizontalHeader()
        header.blockSignals(True)
        for i, column in enumerate(columns):
            self.view.setColumnWidth(i, column.width)
        keys = [c.order_by for c in columns]
        section = keys.index(order_by) if order_by in keys else -1
        order = Qt.SortOrder.DescendingOrder if self.model.descending else \
            Qt.SortOrder.AscendingOrder
        header.setSortIndicator(section, order)
        header.setSortIndicatorShown(self.mode != "findings")
        header.blockSignals(False)

    def _sort_clicked(self, section: int, order: Qt.SortOrder) -> None:
        columns = self.model.columns
        if self.mode == "findings" or not 0 <= section < len(columns) \
                or columns[section].order_by is None:
            self.ctx.status.emit("this table cannot be sorted by that column")
            self._set_widths_only_indicator()
            return
        self.model.sort(section, order)

    def _set_widths_only_indicator(self) -> None:
        header = self.view.horizontalHeader()
        keys = [c.order_by for c in self.model.columns]
        header.blockSignals(True)
        header.setSortIndicator(keys.index(self.model.order_by)
                                if self.model.order_by in keys else -1,
                                Qt.SortOrder.DescendingOrder if self.model.descending
                                else Qt.SortOrder.AscendingOrder)
        header.blockSignals(False)

    def _loaded(self, total: int) -> None:
        self.update_count(total)
        if total == 0:
            self._show_empty()
        else:
            self.pages.setCurrentWidget(self.view)
            if not self.view.currentIndex().isValid():
                self.select_row(0)

    def update_count(self, total: int | None = None) -> None:
        """"1,234 of 2,312 failures", after a query or an edit."""
        if total is None:
            total = self.model.count_now()
        if total is None or self.selection.dataset is None:
            self.filter_bar.count.setText("")
            return
        self.filter_bar.count.setText(count_text(total, self.mode, self.filter_bar.filters(),
                                                 self.selection.dataset, self.selection.run))

    def _show_empty(self) -> None:
        self.pages.setCurrentWidget(self.empty)
        self.detail.show_row(None, None)
        if self.ctx.ws is None:
            self.empty.show_state("No workspace", "Open or create a workspace.")
        elif self.selection.dataset is None:
            self.empty.show_state("No datasets yet",
                                  "Import a dataset to browse its examples and audit a model "
                                  "on it.", "Import a dataset…", "import")
        elif self.filter_bar.filters().describe() not in ("", "verdict failed"):
            self.empty.show_state("Nothing matches the filter",
                                  f"Filter: {self.filter_bar.filters().describe()}",
                                  "Clear filters", "clear")
        elif self.mode == "run":
            self.empty.show_state("No failures in this run",
                                  "The model agrees with every label here.",
                                  "Show passing rows too", "all")
        else:
            self.empty.show_state("Nothing to show", "This run or dataset has no rows.")

    def _empty_action(self, action: str) -> None:
        if action == "clear":
            self.filter_bar.clear()
        elif action == "all":
            self.filter_bar.set_verdict(None)
            self.requery()
        else:
            self.request_action.emit(action)

    # -- rows and the detail ---------------------------------------------------
    def current_row(self) -> int:
        index = self.view.currentIndex()
        return index.row() if index.isValid() else -1

    def selected_rows(self) -> list[int]:
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        return rows or ([self.current_row()] if self.current_row() >= 0 else [])

    def select_row(self, row: int) -> None:
        if not 0 <= row < self.model.rowCount():
            return
        index = self.model.index(row, 0)
        self.view.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect |
            QItemSelectionModel.SelectionFlag.Rows)
        self.view.scrollTo(index)

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._pending_row = current.row() if current.isValid() else -1
        self._detail_timer.start()

    def _show_detail(self) -> None:
        row = self._pending_row
        values = self.model.row_values(row) if row >= 0 else None
        try:
            self.detail.show_row(values, self.selection.run)
        except Exception as exc:  # a broken row must not take the browser down
            self.ctx.status.emit(f"cannot show example: {exc}")
        if values is not None and values.get("example_id") is not None:
            self._own_change = True
            self.ctx.example_selected.emit(values["example_id"])
            self._own_change = False

    def show_detail_now(self) -> None:
        """Show the current row's example without waiting for the debounce."""
        self._detail_timer.stop()
        self._pending_row = self.current_row()
        self._show_detail()

    def _example_selected_elsewhere(self, example_id: Any) -> None:
        if self._own_change or example_id is None:
            return
        rows = self.model.rows_of_example(int(example_id))
        if rows:
            self.select_row(rows[0])
            return
        values = self.fresh_values(int(example_id))
        self.detail.show_row(values or {"example_id": int(example_id)}, self.selection.run)

    def fresh_values(self, example_id: int) -> dict[str, Any] | None:
        """The example's row as the table shows it, read again (after an edit)."""
        from workstation.audits.runs import failure_page

        dataset, run = self.selection.dataset, self.selection.run
        if dataset is None or (run is not None and run.kind == "probe"):
            return None
        rows, _ = failure_page(self.ctx.ws, run.id if run else None, dataset=dataset.name,
                               example_id=example_id, limit=1, count=False)
        return rows[0] if rows else None

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Emit ``data_changed`` for others without reloading this browser."""
        self._own_change = True
        try:
            yield
        finally:
            self._own_change = False

    def _data_changed(self, changes: Any) -> None:
        changes = set(changes or ())
        if self._own_change:
            return
        if changes & {"datasets", "models", "runs", "findings"}:
            self.refresh()
        elif "review" in changes:
            self.model.reload()


def count_text(total: int, mode: str, filters: Filters, dataset: Any, run: Any) -> str:
    """"1,234 of 2,312 failures": rows matching the filter out of the run's."""
    if mode == "findings":
        return f"{total:,} of {run.n_failures:,} findings"
    if mode == "browse":
        return f"{total:,} of {dataset.n_examples:,} examples"
    if filters.verdict == "failed":
        return f"{total:,} of {run.n_failures:,} failures"
    if filters.verdict == "passed":
        return f"{total:,} of {run.n_examples - run.n_failures:,} passing"
    return f"{total:,} of {run.n_examples:,} audited examples"
