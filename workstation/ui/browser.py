"""The failure-case browser: pick a dataset, a model version and a run, filter
and sort its rows, and review them from the keyboard with the example in full
beside the table.

The table is a ``LazyTableModel`` over ``failure_page`` (audit runs, or a
dataset browsed without a run) or ``findings_page`` (probe runs); filters and
sorting run in SQL. The pickers are in ``selection_bar``, the filters in
``filter_bar``; what the review keys do is in ``reviewer``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QSplitter, QStackedWidget,
                               QTableView, QVBoxLayout, QWidget)

from workstation.ui import splits
from workstation.ui.context import AppContext
from workstation.ui.detail import DetailView
from workstation.ui.filter_bar import FilterBar, Filters
from workstation.ui.selection_bar import SelectionBar
from workstation.ui.table_model import Column, LazyTableModel, PageFetch
from workstation.ui.verdicts import as_shown
from workstation.ui.widgets import EmptyState, HintBar
from workstation.ui.wording import count


# -- what the table shows ----------------------------------------------------------

def columns_for(kind: str, mode: str, split: bool = False) -> list[Column]:
    """The table's columns for a dataset kind in a mode ("run", "browse",
    "findings"); ``split`` adds each row's training split (a run whose version
    was trained on the dataset)."""
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
    # The audit's columns come first: at 1024 px the scores must not be off-screen.
    head = [Column("rank", "Rank", "rank", "rank", 58)] + _score_columns(kind) \
        if mode == "run" else []
    head += [Column("split", "Split", "split", "split", 84)] if mode == "run" and split else []
    head += [Column("example_id", "Example", "example_id", "int", 64),
             Column("category", "Category", "category", width=110),
             Column("label", "Label", label_key, width=90)]
    texts = {"pairs": [Column("prompt", "Prompt", "prompt", width=220),
                       Column("chosen", "Chosen", "chosen", width=220),
                       Column("rejected", "Rejected", "rejected", width=220)],
             "labels": [Column("prompt", "Prompt", "prompt", width=240),
                        Column("response", "Response", "response", width=300)],
             "demos": [Column("n_steps", "Steps", "n_steps", "int", 60)]}[kind]
    tail = [Column("tags", "Tags", "tags", "list", 100), Column("note", "Note", "note", width=140),
            Column("reviewed", "Reviewed", "reviewed", "bool", 70)]
    return head + texts + tail


def _score_columns(kind: str) -> list[Column]:
    # Wide enough for "FAIL before edit"; a response's margin is its score's
    # distance from the threshold (often the score itself): the detail says it.
    verdict = Column("passed", "Verdict", "passed", "verdict", 104)
    if kind == "pairs":
        return [verdict, Column("margin", "Margin", "margin", "number", 66),
                Column("score_chosen", "Chosen score", "score_chosen", "number", 96),
                Column("score_rejected", "Rejected score", "score_rejected", "number", 106)]
    return [verdict, Column("score", "Score", "score", "number", 66)]


def failure_fetch(run_id: int | None, dataset: str, filters: Filters) -> PageFetch:
    """Pages of an audit run's results (or of a dataset without a run), as shown."""
    kwargs = filters.page_filters()

    def fetch(ws: Any, offset: int, limit: int, order_by: str | None, descending: bool,
              count: bool) -> tuple[list[dict], int | None]:
        from workstation.audits.runs import failure_page

        rows, total = failure_page(ws, run_id, dataset=dataset, order_by=order_by or "rank",
                                   descending=descending, limit=limit, offset=offset,
                                   count=count, **kwargs)
        return [as_shown(r) for r in rows], total
    return fetch


def findings_fetch(run_id: int, probe: str | None) -> PageFetch:
    """Pages of a probe run's findings, most severe first."""
    def fetch(ws: Any, offset: int, limit: int, order_by: str | None, descending: bool,
              count: bool) -> tuple[list[dict], int | None]:
        from workstation.probes.base import findings_page

        return findings_page(ws, run_id, probe=probe, limit=limit, offset=offset)
    return fetch


# -- the panel ---------------------------------------------------------------------

class BrowserPanel(QWidget):
    """Failure table, filters and detail; the review keys act on its selection."""

    request_action = Signal(str)  # "import", "register", "audit", ...

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.mode, self.kind = "browse", "pairs"
        self.has_split = False  # the run shown tells held-out from training examples
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
        self._choice: tuple[Any, ...] | None = None  # (dataset, run, model) shown
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
        self.ctx.workspace_changed.connect(self._workspace_changed)
        self.ctx.workspace_closing.connect(self.model.stop)
        self.ctx.data_changed.connect(self._data_changed)
        self.ctx.example_selected.connect(self._example_selected_elsewhere)

    # -- choices ---------------------------------------------------------------
    def _workspace_changed(self, _ws: Any) -> None:
        self._choice = None  # whatever it shows in the new workspace is a new choice
        self.refresh()

    def refresh(self, select_run: int | None = None, dataset: str | None = None) -> None:
        """Re-read the workspace's datasets, models and runs."""
        self.selection.refresh(select_run, dataset)

    @property
    def run(self) -> Any:
        return self.selection.run

    def _choice_changed(self) -> None:
        dataset, run = self.selection.dataset, self.selection.run
        self.outer.setCurrentIndex(0 if dataset is not None or self.ctx.ws is None else 1)
        model = run.model_version_id if run else self.selection.model_version_id
        choice = (dataset.name if dataset else None, run.id if run else None, model)
        same = choice == self._choice
        self._choice = choice
        if not same:  # a refresh that keeps the choice moves no other panel
            self.ctx.dataset_selected.emit(choice[0])
            self.ctx.model_selected.emit(model)
            self.ctx.run_selected.emit(run.id if run and run.kind == "audit" else None)
        self.mode = "findings" if run and run.kind == "probe" else "run" if run else "browse"
        self.kind = dataset.kind if dataset else "pairs"
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
        self.filter_bar.set_analysts(*_analysts(ws))
        self._fill_split(run)

    def _fill_split(self, run: Any) -> None:
        """The split filter and column, where the run tells held-out from
        training examples (its version was trained on this dataset)."""
        from workstation.audits.runs import get_run

        membership = get_run(self.ctx.ws, run.id).membership if self.mode == "run" else None
        self.has_split = splits.has_training_split(membership)
        if self.mode != "run":
            why = "Pick an audit run: the split is of the audited version's training set."
        elif not self.has_split:
            why = splits.why_no_split(run.id, membership)
        else:
            why = splits.SPLIT_FILTER_TIP.format(version=run.model)
        self.filter_bar.set_split(self.has_split, why)

    def _show_hint(self) -> None:
        if self.mode != "browse" or self.selection.dataset is None:
            self.hint.hide()
        elif self.selection.model_box.count() <= 1:
            self.hint.show_hint("No reward model yet: train one on this dataset as reviewed, "
                                "or register an ONNX model you have.", "Train a model…",
                                "train", "Register a model…", "register")
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
        columns = columns_for(self.kind, self.mode, self.has_split)
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
        return as_shown(rows[0]) if rows else None

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


def _analysts(ws: Any) -> tuple[list[tuple[str, str]], str | None]:
    """The trusted keys as (name, key id), and the key of who is signed in
    (else the current identity's): whose assignments "assigned to me" shows."""
    from workstation import identity, trust

    if ws is None:
        return [], None
    signer = identity.session_signer()
    mine = signer.key_id if signer else getattr(identity.current(), "key_id", None)
    return [(k.name, k.key_id) for k in trust.list_keys(ws)], mine


def count_text(total: int, mode: str, filters: Filters, dataset: Any, run: Any) -> str:
    """"1,234 of 2,312 failures": rows matching the filter out of the run's."""
    if mode == "findings":
        of, noun = run.n_failures, "finding"
    elif mode == "browse":
        of, noun = dataset.n_examples, "example"
    elif filters.verdict == "failed":
        of, noun = run.n_failures, "failure"
    elif filters.verdict == "passed":
        return f"{total:,} of {run.n_examples - run.n_failures:,} passing"
    else:
        of, noun = run.n_examples, "audited example"
    return f"{total:,} of {count(of, noun)}"
