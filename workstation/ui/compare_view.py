"""Two model versions side by side: pick a candidate and a baseline, compare
them (``regression.compare``, run by the Models panel as a job) and read the
report: the gate's verdict, the fixed and broken examples, and the metric
deltas per category.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from workstation.audits import plot_data as pd
from workstation.models.lineage import VersionNode
from workstation.ui.colours import semantic_colour
from workstation.ui.widgets import compact

REASONS_SHOWN = 3  # gate reasons in the verdict line; the tooltip holds them all
PICK_TEXT = "Pick two versions and compare them."


def default_baseline(nodes: dict[int, VersionNode], candidate: int | None) -> int | None:
    """What to compare ``candidate`` with: its parent, else its model's
    release in force, else its model's newest older version, else the newest
    other version; never itself (None when there is no other)."""
    others = {i: n for i, n in nodes.items() if i != candidate}
    if candidate not in nodes or not others:
        return max(others) if others else None
    node = nodes[candidate]
    if node.parent_id in others:
        return node.parent_id
    same = [n for n in others.values() if n.model == node.model]
    released = [n.id for n in same if n.released]
    if released:
        return released[0]
    older = [n for n in same if n.version < node.version]
    return max(older, key=lambda n: n.version).id if older else max(others)


class CompareView(QWidget):
    """Pick a candidate and a baseline, compare, and read the report: the gate's
    verdict, fixed and broken examples (click one to open it) and the
    per-category metric deltas."""

    compare_requested = Signal(int, int)   # candidate id, baseline id
    example_clicked = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        self.candidate, self.baseline = QComboBox(), QComboBox()
        self.compare_button = QPushButton("Compare")
        self.compare_button.clicked.connect(self._request)
        pick = QHBoxLayout()
        for text, box in (("Candidate:", self.candidate), ("Baseline:", self.baseline)):
            pick.addWidget(QLabel(text))
            pick.addWidget(box)
        pick.addWidget(self.compare_button)
        pick.addStretch(1)
        self.verdict = QLabel(PICK_TEXT, wordWrap=True)
        self.verdict.setTextFormat(Qt.TextFormat.RichText)
        self.fixed, self.broken = self._example_list(), self._example_list()
        self.deltas = QTableWidget(0, 7)
        self.deltas.setHorizontalHeaderLabels(
            ("Dataset", "Category", "Metric", "Baseline", "Candidate", "Delta", "95% CI"))
        compact(self.deltas)
        layout = QVBoxLayout(self)
        layout.addLayout(pick)
        layout.addWidget(self.verdict)
        layout.addWidget(self._body(), 1)

    def _body(self) -> QSplitter:
        lists = QSplitter(Qt.Orientation.Horizontal)
        self.fixed_label, self.broken_label = QLabel("Fixed"), QLabel("Broken")
        for label, widget in ((self.fixed_label, self.fixed), (self.broken_label, self.broken)):
            box = QWidget()
            column = QVBoxLayout(box)
            column.setContentsMargins(0, 0, 0, 0)
            column.addWidget(label)
            column.addWidget(widget)
            lists.addWidget(box)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(lists)
        body.addWidget(self.deltas)
        return body

    def _example_list(self) -> QListWidget:
        widget = QListWidget()
        widget.itemClicked.connect(
            lambda item: self.example_clicked.emit(item.data(Qt.ItemDataRole.UserRole)))
        return widget

    def set_versions(self, nodes: dict[int, VersionNode], candidate: int | None = None) -> None:
        """Offer ``nodes``; compare ``candidate`` with its default baseline when
        given (the analyst chose it), else keep the pair picked here."""
        kept = self.candidate.currentData(), self.baseline.currentData()
        for box in (self.candidate, self.baseline):
            box.clear()
            for node in nodes.values():
                box.addItem(node.ref, node.id)
        chosen = candidate if candidate in nodes else kept[0] if kept[0] in nodes else None
        if chosen is None and nodes:
            chosen = max(nodes)
        baseline = kept[1] if candidate not in nodes and kept[1] in nodes else None
        if baseline is None or baseline == chosen:
            baseline = default_baseline(nodes, chosen)
        self.candidate.setCurrentIndex(max(self.candidate.findData(chosen), 0))
        self.baseline.setCurrentIndex(max(self.baseline.findData(baseline), 0))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.PaletteChange and getattr(self, "report", None):
            self.show_report(self.report)  # the colours are baked into the items
        super().changeEvent(event)

    def clear(self) -> None:
        """No versions and no report (another workspace)."""
        for box in (self.candidate, self.baseline):
            box.clear()
        for widget in (self.fixed, self.broken):
            widget.clear()
        self.deltas.setRowCount(0)
        self.fixed_label.setText("Fixed")
        self.broken_label.setText("Broken")
        self.verdict.setText(PICK_TEXT)
        self.verdict.setToolTip("")
        self.report = None

    def _request(self) -> None:
        c, b = self.candidate.currentData(), self.baseline.currentData()
        if c is not None and b is not None:
            self.compare_requested.emit(c, b)

    def busy(self, text: str) -> None:
        self.verdict.setText(text)
        self.compare_button.setEnabled(False)

    def show_report(self, report: Any) -> None:
        self.compare_button.setEnabled(True)
        for widget in (self.fixed, self.broken):
            widget.clear()
        self.deltas.setRowCount(0)
        self.report = report
        self.verdict.setText(self._verdict_html(report))
        self._fill_lists(report)
        self._fill_deltas(pd.report_category_deltas(report))

    def _verdict_html(self, report: dict[str, Any]) -> str:
        gate = report.get("gate") or {}
        passed = bool(gate.get("pass"))
        colour = semantic_colour("fixed" if passed else "broken", self.palette()).name()
        head = (f'<span style="color:{colour}; font-weight:bold">Gate '
                f'{"PASSED" if passed else "FAILED"}</span> &nbsp; '
                f'{_esc(pd.report_ref(report.get("candidate"), "candidate"))} against '
                f'{_esc(pd.report_ref(report.get("baseline"), "baseline"))}: '
                f'{report.get("fixed", 0):,} fixed, {report.get("broken", 0):,} broken, '
                f'{report.get("unchanged", 0):,} unchanged')
        all_reasons = list(gate.get("reasons", []))
        self.verdict.setToolTip("\n".join(all_reasons))
        shown = all_reasons[:REASONS_SHOWN]
        if len(all_reasons) > len(shown):
            shown.append(f"… and {len(all_reasons) - len(shown)} more (hover for all; failing "
                         f"metrics are the red rows below)")
        skipped = report.get("skipped_datasets") or {}
        items = [_esc(r) for r in shown] + [f"skipped {_esc(k)}: {_esc(v)}"
                                            for k, v in skipped.items()]
        return head + ("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
                       if items else "")

    def _fill_lists(self, report: dict[str, Any]) -> None:
        rows = pd.report_examples(report)
        palette = self.palette()
        for outcome, widget in (("fixed", self.fixed), ("broken", self.broken)):
            colour = semantic_colour(outcome, palette)
            for r in (r for r in rows if r.outcome == outcome):
                margins = "" if r.baseline_margin is None else \
                    f" · margin {r.baseline_margin:+.3f} → {r.candidate_margin:+.3f}"
                item = QListWidgetItem(f"example {r.example_id} · {r.dataset}{margins}")
                item.setData(Qt.ItemDataRole.UserRole, r.example_id)
                item.setForeground(colour)
                widget.addItem(item)
        for outcome, label in (("fixed", self.fixed_label), ("broken", self.broken_label)):
            label.setText(f"{outcome.capitalize()} ({report.get(outcome, 0):,}; click one to "
                          f"open it)")

    def _fill_deltas(self, deltas: list[pd.CategoryDelta]) -> None:
        self.deltas.setRowCount(len(deltas))
        bad = semantic_colour("broken", self.palette())
        for row, d in enumerate(deltas):
            ci = f"[{d.ci[0]:+.3f}, {d.ci[1]:+.3f}]" if d.ci else ""
            values = (d.dataset, d.category, d.metric + (" (gated)" if d.gated else ""),
                      _num(d.baseline), _num(d.candidate), _num(d.delta, signed=True), ci)
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                if 3 <= col <= 5:
                    item.setTextAlignment(_RIGHT)
                if d.failing:
                    item.setForeground(bad)
                self.deltas.setItem(row, col, item)
        self.deltas.resizeColumnsToContents()


_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def _num(value: Any, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _esc(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
