"""The Team view: how far a dataset's analysts agree (figures with their 95%
intervals, a per-category plot, agreement with the model) and the conflict
queue, each analyst's value side by side, settled by an adjudicator with one
button per analyst (by key). Agreement is computed in a background job; an
adjudication is signed like an edit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QLineEdit, QPushButton, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)
from PySide6.QtCore import Qt

from workstation.ui.colours import semantic_colour, with_alpha
from workstation.ui.context import AppContext
from workstation.ui.plot_tab import PlotTab
from workstation.ui.widgets import compact, plain_label, refill, small_combo

FIELDS = (("Label", "label"), ("Flipped (pairs)", "flipped"), ("Category", "category"))
BOOTSTRAP = 500
DEFAULT_REASON = "adjudicated in the Team view"


def value_text(value: Any) -> str:
    """A judgement as the analyst reads it."""
    if value is True:
        return "flipped"
    if value is False:
        return "as imported"
    return "—" if value is None else str(value)


def figure_text(figure: dict[str, Any], percent: bool = False) -> tuple[str, str]:
    """(value, 95% interval) of a figure's JSON, as table cells."""
    if figure["value"] is None:
        return "n/a", ""
    ci = figure.get("ci95")
    shown = (lambda v: f"{v:.1f}%") if percent else (lambda v: f"{v:.3f}")
    return shown(figure["value"]), f"{shown(ci[0])} – {shown(ci[1])}" if ci else ""


class TeamPanel(QWidget):
    """Agreement figures and plot above, the conflict queue below."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.report: dict[str, Any] | None = None
        self.conflicts: list[Any] = []
        self.dataset = small_combo(160)
        self.field = small_combo()
        for text, name in FIELDS:
            self.field.addItem(text, name)
        self.headline = plain_label()
        self.figures = QTableWidget(0, 4)
        self.figures.setHorizontalHeaderLabels(["Figure", "Value", "95% interval", "Items"])
        compact(self.figures)
        self.plot = PlotTab("percent agreement", "")
        self.queue = QTableWidget(0, 3)
        compact(self.queue)
        self.queue.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.queue.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.reason = QLineEdit(DEFAULT_REASON)
        self.choices = QHBoxLayout()
        self.message = plain_label()
        self._build()
        self.dataset.activated.connect(lambda _i: self.refresh())
        self.field.activated.connect(lambda _i: self.refresh())
        self.queue.itemSelectionChanged.connect(self._offer_choices)
        self.queue.cellDoubleClicked.connect(self._open_example)
        ctx.workspace_changed.connect(lambda _ws: self.refresh(datasets=True))
        ctx.data_changed.connect(self._data_changed)
        self.refresh(datasets=True)

    def _build(self) -> None:
        top = QHBoxLayout()
        for text, widget in (("Dataset", self.dataset), ("Field", self.field)):
            label = QLabel(text)
            label.setBuddy(widget)
            top.addWidget(label)
            top.addWidget(widget)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(lambda _c=False: self.refresh())
        top.addWidget(refresh)
        top.addWidget(self.headline, 1)
        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(self.figures)
        upper.addWidget(self.plot)
        upper.setSizes([520, 480])
        lower = QWidget()
        column = QVBoxLayout(lower)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(plain_label("Conflicts: analysts who hold different values. Select "
                                     "one and take an analyst's value (adjudicators)."))
        column.addWidget(self.queue, 1)
        settle = QHBoxLayout()
        settle.addWidget(QLabel("Reason"))
        settle.addWidget(self.reason, 1)
        settle.addLayout(self.choices)
        column.addLayout(settle)
        column.addWidget(self.message)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(upper)
        split.addWidget(lower)
        split.setSizes([330, 370])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)

    # -- reading -------------------------------------------------------------------
    def _data_changed(self, changes: Any) -> None:
        if set(changes or ()) & {"review", "datasets", "runs"}:
            self.refresh(datasets="datasets" in set(changes or ()))

    def refresh(self, datasets: bool = False) -> None:
        """Read the conflicts again and start the agreement job."""
        from workstation import catalog

        ws = self.ctx.ws
        if datasets:
            names = [d.name for d in catalog.datasets(ws)] if ws is not None else []
            refill(self.dataset, [(n, n) for n in names])
            if self.ctx.dataset in names:
                self.dataset.setCurrentIndex(self.dataset.findData(self.ctx.dataset))
        name = self.dataset.currentData()
        if ws is None or name is None:
            self._show_conflicts([])
            self.headline.setText("No dataset yet.")
            return
        from workstation import conflicts

        self._show_conflicts(conflicts.conflicts(ws, name, field=self.field.currentData()))
        field_name = self.field.currentData()
        self.headline.setText("computing agreement…")
        self.ctx.run_job("Agreement", lambda w, _p: _agreement(w, name, field_name),
                         on_done=self.show_report,
                         on_failed=lambda m: self.headline.setText(f"agreement: {m}"))

    def show_report(self, report: dict[str, Any]) -> None:
        """Fill the figures and draw the per-category plot."""
        self.report = report
        self.headline.setText(f"{report['n_items']} examples labelled by two or more of "
                              f"{report['n_analysts']} analysts")
        rows = [("Percent agreement", *figure_text(report["percent_agreement"], True),
                 report["n_items"]),
                ("Krippendorff's alpha (nominal)", *figure_text(report["krippendorff_alpha"]),
                 report["n_items"])]
        rows += [(f"Cohen's kappa {k['analyst_a']} / {k['analyst_b']}", *figure_text(k),
                  k["n_items"]) for k in report["cohen_kappa"]]
        for a in (report.get("model_agreement") or {}).get("analysts", []):
            rows.append((f"{a['analyst']} agrees with the model",
                         *figure_text(a["percent_agreement"], True), a["n_items"]))
        self.figures.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.figures.setItem(r, c, QTableWidgetItem(str(text)))
        self.figures.resizeColumnsToContents()
        self._draw(report)

    def _draw(self, report: dict[str, Any]) -> None:
        palette = self.palette()
        self.plot.clear(palette)
        cats = [c for c in report["per_category"] if c["percent_agreement"]["value"] is not None]
        if not cats:
            self.plot.show_reason("No category has examples labelled by two analysts yet.")
            return
        ys = np.arange(len(cats))
        values = np.array([c["percent_agreement"]["value"] for c in cats])
        accent = semantic_colour("safe", palette)
        self.plot.plot.addItem(pg.BarGraphItem(x0=0, y=ys, height=0.6, width=values,
                                               brush=with_alpha(accent, 200), pen=pg.mkPen(accent)))
        cis = [c["percent_agreement"]["ci95"] for c in cats]
        has = np.array([ci is not None for ci in cis])
        if has.any():
            low = np.array([ci[0] if ci else np.nan for ci in cis])[has]
            high = np.array([ci[1] if ci else np.nan for ci in cis])[has]
            self.plot.plot.addItem(pg.ErrorBarItem(
                x=values[has], y=ys[has], left=values[has] - low, right=high - values[has],
                beam=0.25, pen=pg.mkPen(palette.color(QPalette.ColorRole.WindowText), width=2)))
        self.plot.plot.getAxis("left").setTicks([[(int(y), f"{c['category']} (n={c['n_items']})")
                                                  for y, c in zip(ys, cats)]])
        self.plot.plot.invertY(True)
        self.plot.plot.setXRange(0, 100, padding=0.06)  # room for the 100 tick's label
        self.plot.set_caption("Percent agreement per category (the category in force).", [
            (accent, "■", "percent agreement"),
            (palette.color(QPalette.ColorRole.WindowText), "├┤", "95% bootstrap interval")])

    # -- the queue -------------------------------------------------------------------
    def _show_conflicts(self, found: list[Any]) -> None:
        self.conflicts = found
        analysts: dict[str, str] = {}
        for c in found:
            for v in c.values:
                analysts.setdefault(v["key_id"], v["analyst"])
        self.analyst_keys = list(analysts)
        self.queue.setColumnCount(3 + len(analysts))
        self.queue.setHorizontalHeaderLabels(["Example", "Field", "In force"] + [
            f"{name} ({key[:8]})" for key, name in analysts.items()])
        self.queue.setRowCount(len(found))
        for r, c in enumerate(found):
            held = {v["key_id"]: v["value"] for v in c.values}
            cells = [str(c.example_id), c.field, value_text(c.value_in_force)] + [
                value_text(held[k]) if k in held else "" for k in analysts]
            for col, text in enumerate(cells):
                self.queue.setItem(r, col, QTableWidgetItem(text))
        self.queue.resizeColumnsToContents()
        self._offer_choices()

    def selected_conflict(self) -> Any:
        rows = {i.row() for i in self.queue.selectedIndexes()}
        return self.conflicts[min(rows)] if rows and min(rows) < len(self.conflicts) else None

    def _offer_choices(self) -> None:
        while self.choices.count():
            item = self.choices.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.choice_buttons: dict[str, QPushButton] = {}
        conflict = self.selected_conflict()
        if conflict is None:
            return
        for v in conflict.values:
            button = QPushButton(f"Take {v['analyst']}'s: {value_text(v['value'])}")
            button.setToolTip(f"settle example {conflict.example_id} ({conflict.field}) with "
                              f"the value of key {v['key_id']}")
            button.clicked.connect(lambda _c=False, key=v["key_id"]: self.adjudicate(key))
            self.choices.addWidget(button)
            self.choice_buttons[v["key_id"]] = button

    def adjudicate(self, key_id: str) -> bool:
        """Settle the selected conflict with ``key_id``'s value (signed by the
        session's identity); the outcome goes to the message line."""
        from workstation import conflicts
        from workstation.errors import WorkstationError
        from workstation.ui.identity_dialogs import ensure_signer

        conflict = self.selected_conflict()
        if conflict is None or self.ctx.ws is None:
            return False
        if ensure_signer(self) is None:
            self.message.setText("not signed in: nothing changed")
            return False
        try:
            change = conflicts.adjudicate(self.ctx.ws, conflict.example_id, choose=key_id,
                                          field=conflict.field,
                                          reason=self.reason.text().strip() or DEFAULT_REASON)
        except WorkstationError as exc:
            self.message.setText(str(exc))
            return False
        self.message.setText(f"example {change.example_id} {change.field}: settled to "
                             f"{value_text(change.new)} (log row {change.seq})")
        self.ctx.data_changed.emit({"review"})
        return True

    def _open_example(self, row: int, _column: int) -> None:
        if 0 <= row < len(self.conflicts):
            self.ctx.example_selected.emit(self.conflicts[row].example_id)


def _agreement(ws: Any, dataset: str, field_name: str) -> dict[str, Any]:
    from workstation import agreement

    return agreement.agreement(ws, dataset, field_name, n_boot=BOOTSTRAP).to_json()
