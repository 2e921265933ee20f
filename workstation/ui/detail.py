"""The detail view: one example in full beside the failure table.

Pairs side by side (prompt above, chosen and rejected with their scores, the
margin as a bar, the differing spans highlighted); labeled responses with
score, label and category; trajectories in the view of ``trajectory`` (built
on the first one, so that start-up stays light). Below: the example's history
from the review log and the probe findings that touch it. Dataset text is
always shown as plain text, never interpreted.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QPlainTextEdit, QSizePolicy, QSplitter,
                               QStackedWidget, QTabWidget, QTextEdit, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from workstation.ui.context import AppContext
from workstation.ui.table_model import FAIL_COLOUR, PASS_COLOUR
from workstation.ui.verdicts import fmt, label_facts, pair_summary, stale_tip
from workstation.ui.widgets import plain_label
from workstation.ui.wording import change_words, value_words

# Texts longer than this are shown without a word diff (difflib is quadratic).
DIFF_LIMIT = 20_000
HISTORY_ROWS = 6
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def diff_spans(a: str, b: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Character spans of ``a`` and of ``b`` that differ, word by word."""
    if len(a) + len(b) > DIFF_LIMIT:
        return [], []
    ta, tb = _TOKEN.findall(a), _TOKEN.findall(b)
    oa, ob = _offsets(ta), _offsets(tb)
    spans_a: list[tuple[int, int]] = []
    spans_b: list[tuple[int, int]] = []
    matcher = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if i2 > i1:
            spans_a.append((oa[i1], oa[i2]))
        if j2 > j1:
            spans_b.append((ob[j1], ob[j2]))
    return _merge(spans_a, a), _merge(spans_b, b)


def _merge(spans: list[tuple[int, int]], text: str) -> list[tuple[int, int]]:
    """Join spans that only whitespace separates: one mark per changed phrase."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and not text[merged[-1][1]:start].strip():
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _offsets(tokens: list[str]) -> list[int]:
    out = [0]
    for token in tokens:
        out.append(out[-1] + len(token))
    return out


class MarginBar(QWidget):
    """The margin as a bar from the middle: right and green when the model
    agrees with the label, left and red when it does not."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.margin: float | None = None
        self.setMinimumHeight(14)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(200, 16)

    def set_margin(self, margin: float | None) -> None:
        self.margin = margin
        self.setToolTip("" if margin is None else f"margin {margin:+.4f}")
        self.update()

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        rect = QRectF(self.rect()).adjusted(0.5, 2.5, -0.5, -2.5)
        mid = rect.center().x()
        painter.setPen(self.palette().color(QPalette.ColorRole.Mid))
        painter.drawRect(rect)
        painter.drawLine(int(mid), int(rect.top()) - 2, int(mid), int(rect.bottom()) + 2)
        if self.margin is None:
            return
        import math

        width = (rect.width() / 2) * math.tanh(abs(self.margin))
        colour = PASS_COLOUR if self.margin > 0 else FAIL_COLOUR
        bar = QRectF(mid, rect.top(), width, rect.height()) if self.margin > 0 else \
            QRectF(mid - width, rect.top(), width, rect.height())
        painter.fillRect(bar, colour)


class TextPane(QWidget):
    """A titled, read-only, wrapped plain-text view that can mark spans."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = plain_label(title)  # wraps when the pane is narrow
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.view.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse |
                                          Qt.TextInteractionFlag.TextSelectableByKeyboard)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.view)

    def set_text(self, title: str, text: str | None,
                 spans: list[tuple[int, int]] | None = None) -> None:
        self.title.setText(title)
        self.view.setPlainText(text if text is not None else "")
        if text is None:
            self.view.setPlaceholderText("(empty)")
        self.view.setExtraSelections(self._marks(spans or []))

    def _marks(self, spans: list[tuple[int, int]]) -> list[QTextEdit.ExtraSelection]:
        colour = QColor(self.palette().color(QPalette.ColorRole.Highlight))
        colour.setAlpha(90)
        marks = []
        for start, end in spans:
            mark = QTextEdit.ExtraSelection()
            cursor = QTextCursor(self.view.document())
            cursor.setPosition(start)
            cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            mark.cursor = cursor
            form = QTextCharFormat()
            form.setBackground(colour)
            mark.format = form
            marks.append(mark)
        return marks

    def text(self) -> str:
        return self.view.toPlainText()


class PairBody(QWidget):
    """Prompt above, chosen and rejected side by side, the margin as a bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.prompt = TextPane("Prompt")
        self.chosen = TextPane("Chosen")
        self.rejected = TextPane("Rejected")
        self.scores = plain_label()
        self.bar = MarginBar()
        self.highlight = QCheckBox("Highlight differences")
        self.highlight.setChecked(True)
        self.highlight.toggled.connect(lambda _on: self._show_texts())
        sides = QSplitter(Qt.Orientation.Horizontal)
        sides.addWidget(self.chosen)
        sides.addWidget(self.rejected)
        lower = QWidget()
        column = QVBoxLayout(lower)
        column.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.scores, 1)
        row.addWidget(self.highlight)
        column.addLayout(row)
        column.addWidget(self.bar)
        column.addWidget(sides, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.prompt)
        split.addWidget(lower)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)
        self._example: dict[str, Any] = {}
        self._row: dict[str, Any] = {}

    def show_pair(self, example: dict[str, Any], row: dict[str, Any]) -> None:
        self._example, self._row = example, row
        self.prompt.set_text("Prompt", example.get("prompt"))
        margin = row.get("margin")
        self.bar.set_margin(margin)
        # After an edit the audit's margin no longer measures the pair as it is.
        self.bar.setVisible(margin is not None and not row.get("edited"))
        self.scores.setText(pair_summary(row))
        self.scores.setToolTip(stale_tip(row))
        self._show_texts()

    def _show_texts(self) -> None:
        chosen, rejected = self._example.get("chosen") or "", self._example.get("rejected") or ""
        spans = diff_spans(chosen, rejected) if self.highlight.isChecked() else ([], [])
        flipped = " (flipped in review)" if self._example.get("flipped") else ""
        self.chosen.set_text(f"Chosen{flipped} · score {fmt(self._row.get('score_chosen'))}",
                             self._example.get("chosen"), spans[0])
        self.rejected.set_text(f"Rejected · score {fmt(self._row.get('score_rejected'))}",
                               self._example.get("rejected"), spans[1])


class LabelBody(QWidget):
    """Prompt and response with score, label, category and verdict."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.facts = plain_label()
        self.bar = MarginBar()
        self.prompt = TextPane("Prompt")
        self.response = TextPane("Response")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.prompt)
        split.addWidget(self.response)
        split.setSizes([100, 200])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.facts)
        layout.addWidget(self.bar)
        layout.addWidget(split, 1)

    def show_response(self, example: dict[str, Any], row: dict[str, Any]) -> None:
        self.facts.setText(label_facts(example, row))
        self.facts.setToolTip(stale_tip(row))
        self.bar.set_margin(row.get("margin"))
        self.bar.setVisible(row.get("margin") is not None and not row.get("edited"))
        self.prompt.set_text("Prompt", example.get("prompt"))
        self.response.set_text("Response", example.get("response"))


class CaseBody(QWidget):
    """A generated probe case with no dataset example behind it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = TextPane("Probe case")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)

    def show_case(self, row: dict[str, Any]) -> None:
        body = {"rule": row.get("rule"), "case": row.get("case"), "details": row.get("details")}
        self.view.set_text(f"Finding {row.get('finding_id')} · {row.get('probe')}",
                           json.dumps(body, indent=2, ensure_ascii=False, default=str))


class HistoryTree(QTreeWidget):
    """The example's review log rows, oldest first."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["#", "When", "Who", "Change", "Action", "Reason"])
        self.setRootIsDecorated(False)
        self.setAlternatingRowColors(True)

    def show_entries(self, entries: list[dict[str, Any]]) -> None:
        self.clear()
        if not entries:
            _placeholder(self, "No review edits yet: the review keys (F1 lists them) "
                               "write here.")
            return
        for e in entries:
            change = change_words(e["field"], e["old"], e["new"])
            item = QTreeWidgetItem([str(e["seq"]), e["time"][:19].replace("T", " "),
                                    e["analyst"], change, e["action"], e["reason"]])
            item.setToolTip(3, f"{e['field']}: {value_words(e['old'], 2000)} → "
                               f"{value_words(e['new'], 2000)}")
            self.addTopLevelItem(item)
        for column in range(5):
            self.resizeColumnToContents(column)


class FindingsTree(QTreeWidget):
    """Probe findings that touch the example."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["Run", "Probe", "Rule", "Severity", "Triage", "Before", "After",
                              "Model"])
        self.setRootIsDecorated(False)
        self.setAlternatingRowColors(True)

    def show_findings(self, findings: list[dict[str, Any]]) -> None:
        self.clear()
        if not findings:
            _placeholder(self, "No probe findings touch this example.")
            return
        for f in findings:
            self.addTopLevelItem(QTreeWidgetItem([
                str(f["run_id"]), f["probe"], f["rule"], f"{f['severity']:.2f}", f["triage"],
                fmt(f["score_before"]), fmt(f["score_after"]), f["model"]]))
        for column in range(8):
            self.resizeColumnToContents(column)


def _placeholder(tree: QTreeWidget, text: str) -> None:
    item = QTreeWidgetItem([text])
    item.setFlags(Qt.ItemFlag.NoItemFlags)  # drawn in the palette's disabled colour
    tree.addTopLevelItem(item)
    item.setFirstColumnSpanned(True)


class DetailView(QWidget):
    """The selected example in full, its history and its findings."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.header = plain_label()
        font = self.header.font()
        font.setBold(True)
        self.header.setFont(font)
        self.facts = plain_label()
        self.empty = plain_label("Select a row to see its example here.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.pair, self.label, self.case = PairBody(), LabelBody(), CaseBody()
        self._trajectory: QWidget | None = None
        self.body = QStackedWidget()
        for widget in (self.empty, self.pair, self.label, self.case):
            self.body.addWidget(widget)
        self.history, self.findings = HistoryTree(), FindingsTree()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.history, "History")
        self.tabs.addTab(self.findings, "Findings")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.body)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        # The history shows at least this many rows, at any window size.
        row = self.history.fontMetrics().height() + 8
        self.history.setMinimumHeight(row * (HISTORY_ROWS + 1))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.addWidget(self.header)
        layout.addWidget(self.facts)
        layout.addWidget(split, 1)
        self.example: dict[str, Any] | None = None
        self.show_row(None, None)

    @property
    def trajectory(self) -> QWidget:
        """The trajectory view, built on first use (it loads pyqtgraph)."""
        if self._trajectory is None:
            from workstation.ui.trajectory import TrajectoryBody  # loads pyqtgraph

            self._trajectory = TrajectoryBody(self.ctx)
            self.body.addWidget(self._trajectory)
        return self._trajectory

    def show_row(self, row: dict[str, Any] | None, run: Any) -> None:
        """Show the example behind a table row (None: nothing selected)."""
        example_id = None if row is None else row.get("example_id")
        if row is None or (example_id is None and "finding_id" not in row):
            self._show_nothing()
            return
        if example_id is None:
            self._show_case(row)
            return
        from workstation import review
        from workstation.examples import example, findings_for

        ws = self.ctx.ws
        self.example = example(ws, example_id)
        self._show_header(self.example)
        self._show_body(self.example, row, run)
        entries = review.entries(ws, example_id=example_id)
        found = findings_for(ws, example_id)
        self.history.show_entries(entries)
        self.findings.show_findings(found)
        self.tabs.setTabText(0, f"History ({len(entries)})")
        self.tabs.setTabText(1, f"Findings ({len(found)})")

    def _show_nothing(self) -> None:
        self.example = None
        self.header.setText("")
        self.facts.setText("")
        self.body.setCurrentWidget(self.empty)
        self._no_history()

    def _no_history(self) -> None:
        """No example: no history, no findings, and no counts of the last one."""
        self.history.clear()
        self.findings.clear()
        self.tabs.setTabText(0, "History")
        self.tabs.setTabText(1, "Findings")

    def _show_case(self, row: dict[str, Any]) -> None:
        self.example = None
        self.header.setText(f"Finding {row.get('finding_id')} (a generated case)")
        self.facts.setText(f"{row.get('probe')} · {row.get('rule')} · severity "
                           f"{row.get('severity', 0):.2f}")
        self.case.show_case(row)
        self.body.setCurrentWidget(self.case)
        self._no_history()

    def _show_header(self, ex: dict[str, Any]) -> None:
        source = f" · source id {ex['source_id']}" if ex.get("source_id") else ""
        self.header.setText(f"Example {ex['id']} · {ex['dataset']} ({ex['kind']}) · "
                            f"source index {ex['source_index']}{source}")
        facts = []
        if ex.get("excluded"):
            facts.append("EXCLUDED")
        if ex.get("tags"):
            facts.append("tags " + ", ".join(ex["tags"]))
        if ex.get("note"):
            note = " ".join(ex["note"].split())
            facts.append("note: " + (note if len(note) < 160 else note[:157] + "…"))
        self.facts.setText(" · ".join(facts))
        self.facts.setVisible(bool(facts))

    def _show_body(self, ex: dict[str, Any], row: dict[str, Any], run: Any) -> None:
        if ex["kind"] == "pairs":
            self.pair.show_pair(ex, row)
            self.body.setCurrentWidget(self.pair)
        elif ex["kind"] == "labels":
            self.label.show_response(ex, row)
            self.body.setCurrentWidget(self.label)
        else:
            version = getattr(run, "model_version_id", None) or self.ctx.model_version_id
            self.trajectory.show_trajectory(ex, row, version)
            self.body.setCurrentWidget(self.trajectory)
