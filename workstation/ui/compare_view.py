"""Two model versions side by side: pick a candidate and a baseline, compare
them (``regression.compare``, run by the Models panel as a job) and read the
report: the gate's verdict, per dataset the examples compared and the training
examples counted apart, the fixed and broken examples, and the metric deltas
per category.
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
        self.per_dataset = QTableWidget(0, len(PER_DATASET_COLUMNS))
        self.per_dataset.setHorizontalHeaderLabels(PER_DATASET_COLUMNS)
        self.per_dataset.horizontalHeaderItem(len(PER_DATASET_COLUMNS) - 1).setToolTip(
            "Examples either version was trained on: counted apart and not gated (the gate "
            "reads the examples compared).")
        compact(self.per_dataset)
        fit_rows(self.per_dataset)
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
        body.addWidget(self.per_dataset)
        body.addWidget(lists)
        body.addWidget(self.deltas)
        body.setStretchFactor(0, 1)
        body.setStretchFactor(1, 2)
        body.setStretchFactor(2, 2)
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
        self.per_dataset.setRowCount(0)
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
        self._fill_per_dataset(report)
        self._fill_lists(report)
        self._fill_deltas(pd.report_category_deltas(report))

    def _verdict_html(self, report: dict[str, Any]) -> str:
        from workstation.regression.report import counts_text

        gate = report.get("gate") or {}
        passed = bool(gate.get("pass"))
        colour = semantic_colour("fixed" if passed else "broken", self.palette()).name()
        head = (f'<span style="color:{colour}; font-weight:bold">Gate '
                f'{"PASSED" if passed else "FAILED"}</span> &nbsp; '
                f'{_esc(pd.report_ref(report.get("candidate"), "candidate"))} against '
                f'{_esc(pd.report_ref(report.get("baseline"), "baseline"))}: '
                f'{_esc(counts_text(report))}')
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
        examples = report.get("examples") or report  # format /1 kept its counts on top
        for outcome, label in (("fixed", self.fixed_label), ("broken", self.broken_label)):
            label.setText(f"{outcome.capitalize()} examples ({examples.get(outcome, 0):,}; "
                          f"click one to open it)")

    def _fill_per_dataset(self, report: dict[str, Any]) -> None:
        """Per dataset: the examples compared (which, in words) and the
        training examples counted apart, never summed."""
        rows = dataset_rows(report)
        self.per_dataset.setRowCount(len(rows))
        for row, (values, tip) in enumerate(rows):
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if 2 <= col <= 4:
                    item.setTextAlignment(_RIGHT)
                self.per_dataset.setItem(row, col, item)
        self.per_dataset.resizeColumnsToContents()
        fit_rows(self.per_dataset)

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
PER_DATASET_COLUMNS = ("Dataset", "Examples compared", "Fixed", "Broken", "Unchanged",
                       "Training examples (apart)")


def fit_rows(table: QTableWidget, most: int = 4) -> None:
    """As high as its rows (up to ``most``; more scroll) and a scroll bar, so
    that no row is cut in half."""
    rows = min(table.rowCount(), most)
    body = sum(table.rowHeight(r) for r in range(rows)) if rows else \
        table.verticalHeader().defaultSectionSize()
    table.setFixedHeight(table.horizontalHeader().sizeHint().height() + body +
                         2 * table.frameWidth() + table.horizontalScrollBar().sizeHint().height())


def dataset_rows(report: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """One row per dataset of a report: (cells, tooltip). A report from before
    training examples were kept apart says so rather than guess."""
    rows = []
    for name, entry in (report.get("per_dataset") or {}).items():
        used = entry.get("examples_used")
        training = entry.get("training_examples")
        n = entry.get("n", sum(int(entry.get(k) or 0) for k in ("fixed", "broken", "unchanged")))
        which = str(used).split(" (")[0] if used else ""  # the words after it: the tooltip
        compared = f"{n:,} held-out" if which == "held-out" else \
            f"{which} {n:,}" if which else f"{n:,} (training ones not told apart)"
        cells = (str(name), compared, *(f"{int(entry.get(k) or 0):,}"
                                        for k in ("fixed", "broken", "unchanged")),
                 _training_text(training))
        rows.append((cells, _membership_tip(used, entry.get("membership") or {})))
    return rows


def _training_text(training: Any) -> str:
    if not isinstance(training, dict):
        return "not recorded (an older report)"
    if not training.get("n"):
        return "none"
    return (f"{training['n']:,}: {training.get('fixed', 0):,} fixed, "
            f"{training.get('broken', 0):,} broken, {training.get('unchanged', 0):,} unchanged")


def _membership_tip(used: str | None, members: dict[str, Any]) -> str:
    lines = [f"Examples compared: {used}." if used else ""]
    for side in ("baseline", "candidate"):
        m = members.get(side)
        if isinstance(m, dict):
            status = {"trained": f"trained on this dataset (split seed {m.get('split_seed')}, "
                                 f"held-out fraction {m.get('heldout_fraction')})",
                      "other-dataset": f"trained on '{m.get('dataset')}', not this dataset",
                      }.get(m.get("status"), f"training membership unknown ({m.get('reason')})")
            lines.append(f"{side.capitalize()} {m.get('version')}: {status}.")
    return "\n".join(line for line in lines if line)


def _num(value: Any, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _esc(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
