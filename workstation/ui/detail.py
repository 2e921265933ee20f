"""The detail view: one example in full beside the failure table.

Pairs side by side (prompt above, chosen and rejected with their scores, the
margin as a bar, the differing spans highlighted); labeled responses with
score, label and category; trajectories with their per-step reward, their
observation components and a reward heat-map in a 2-D projection with the
expert path and the findings drawn on it (pyqtgraph, loaded on the first
trajectory so that start-up stays light). Below:
the example's history from the review log and the probe findings that touch
it. Dataset text is always shown as plain text, never interpreted.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QPlainTextEdit,
                               QSizePolicy, QSplitter, QStackedWidget, QTabWidget, QTextEdit,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from workstation.ui.context import AppContext
from workstation.ui.table_model import FAIL_COLOUR, PASS_COLOUR

# Texts longer than this are shown without a word diff (difflib is quadratic).
DIFF_LIMIT = 20_000
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def plain_label(text: str = "", wrap: bool = True) -> QLabel:
    """A label that never interprets its text as rich text."""
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def fmt(value: Any) -> str:
    """A score as text ("—" when there is none)."""
    return "—" if value is None else f"{value:.3f}"


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
        self.title = plain_label(title, wrap=False)
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
        self.bar.setVisible(margin is not None)
        if margin is None:
            self.scores.setText("Not scored here: pick an audit run to see scores.")
        else:
            verdict = "the model prefers chosen" if margin > 0 else "the model prefers rejected"
            self.scores.setText(f"chosen {fmt(row.get('score_chosen'))}   rejected "
                                f"{fmt(row.get('score_rejected'))}   margin {margin:+.3f} "
                                f"({verdict})")
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
        self.bar.set_margin(row.get("margin"))
        self.bar.setVisible(row.get("margin") is not None)
        self.prompt.set_text("Prompt", example.get("prompt"))
        self.response.set_text("Response", example.get("response"))


def label_facts(example: dict[str, Any], row: dict[str, Any]) -> str:
    """"score 0.812 · label unsafe · category X · FAIL (margin -0.312)"."""
    parts = [f"score {fmt(row.get('score'))}" if row.get("score") is not None else "not scored",
             f"label {example.get('label') or 'none'}",
             f"category {example.get('category') or 'none'}"]
    if row.get("passed") is not None:
        parts.append(f"{'pass' if row['passed'] else 'FAIL'} (margin {row['margin']:+.3f})")
    return " · ".join(parts)


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
            change = f"{e['field']}: {_short(e['old'])} → {_short(e['new'])}"
            item = QTreeWidgetItem([str(e["seq"]), e["time"][:19].replace("T", " "),
                                    e["analyst"], change, e["action"], e["reason"]])
            item.setToolTip(3, change)
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


def _short(value: Any) -> str:
    text = "none" if value is None else json.dumps(value, ensure_ascii=False) \
        if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "…"


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
        self.history.clear()
        self.findings.clear()

    def _show_case(self, row: dict[str, Any]) -> None:
        self.example = None
        self.header.setText(f"Finding {row.get('finding_id')} (a generated case)")
        self.facts.setText(f"{row.get('probe')} · {row.get('rule')} · severity "
                           f"{row.get('severity', 0):.2f}")
        self.case.show_case(row)
        self.body.setCurrentWidget(self.case)
        self.history.clear()
        self.findings.clear()

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


# -- trajectories ---------------------------------------------------------------

MAX_COMPONENTS = 8   # observation components drawn as curves
# Okabe-Ito hues (colour-blind safe, readable on light and dark backgrounds).
COMPONENT_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9",
                     "#f0e442", "#999999")
GRID = 64            # heat-map resolution


def _pg() -> Any:
    """pyqtgraph, configured to follow the application palette."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    palette = QApplication.palette()
    pg.setConfigOptions(antialias=True,
                        background=palette.color(QPalette.ColorRole.Base),
                        foreground=palette.color(QPalette.ColorRole.Text))
    return pg


class TrajectoryBody(QWidget):
    """Per-step reward, observation components, and the reward landscape."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.pg = pg = _pg()
        self.method = QComboBox()
        self.method.addItem("First two components", "components")
        self.method.addItem("Principal components", "pca")
        self.method.currentIndexChanged.connect(lambda _i: self._request_landscape())
        self.note = plain_label()
        self.reward_plot = self._plot("Reward per step", "step", "reward")
        self.obs_plot = self._plot("Observation components", "step", "value")
        base = QColor(self.palette().color(QPalette.ColorRole.Base))
        base.setAlpha(210)
        self.obs_plot.addLegend(offset=(-5, 5), brush=base)
        self.map_plot = self._plot("Reward landscape", "", "")
        self._build_map(pg)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.reward_plot)
        left.addWidget(self.obs_plot)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.map_plot)
        row = QHBoxLayout()
        row.addWidget(self.note, 1)
        row.addWidget(plain_label("2-D view:", wrap=False))
        row.addWidget(self.method)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(split, 1)
        self._cache: dict[tuple, Any] = {}
        self._obs: Any = None
        self._example: dict[str, Any] = {}
        self._version: int | None = None

    def _plot(self, title: str, x: str, y: str) -> Any:
        plot = self.pg.PlotWidget(title=title)
        plot.setLabel("bottom", x)
        plot.setLabel("left", y)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setMinimumSize(220, 160)
        return plot

    def _build_map(self, pg: Any) -> None:
        self.cmap = pg.colormap.get("viridis")
        self.image = pg.ImageItem()
        self.map_plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=self.cmap, interactive=False,
                                        width=12)
        self.colorbar.setImageItem(self.image, insert_in=self.map_plot.getPlotItem())
        self.path_under = pg.PlotDataItem(pen=pg.mkPen((0, 0, 0), width=4))
        self.path = pg.PlotDataItem(pen=pg.mkPen((255, 255, 255), width=2))
        self.start = pg.ScatterPlotItem(symbol="o", size=9, brush=(255, 255, 255),
                                        pen=pg.mkPen((0, 0, 0)))
        self.marks = pg.ScatterPlotItem(symbol="x", size=14, brush=FAIL_COLOUR,
                                        pen=pg.mkPen(FAIL_COLOUR, width=2))
        for item in (self.path_under, self.path, self.start, self.marks):
            self.map_plot.addItem(item)
        self.kernels: list[Any] = []

    # -- showing ---------------------------------------------------------------
    def show_trajectory(self, example: dict[str, Any], row: dict[str, Any],
                        version_id: int | None) -> None:
        from workstation.examples import trajectory

        self._example, self._version = example, version_id
        self._obs, _ = trajectory(self.ctx.ws, example["id"])
        self._draw_components(self._obs)
        rewards = self._step_rewards(version_id, self._obs)
        self._draw_rewards(rewards, row)
        self._request_landscape()

    def _draw_components(self, obs: Any) -> None:
        self.obs_plot.clear()
        width = obs.shape[1] if obs.ndim == 2 else 0
        for k in range(min(width, MAX_COMPONENTS)):
            self.obs_plot.plot(obs[:, k], pen=self.pg.mkPen(COMPONENT_COLOURS[k], width=1.5),
                               name=f"obs[{k}]")
        more = f" (first {MAX_COMPONENTS} of {width} shown)" if width > MAX_COMPONENTS else ""
        self.obs_plot.setTitle(f"Observation components{more}")

    def _step_rewards(self, version_id: int | None, obs: Any) -> Any:
        if version_id is None or len(obs) == 0:
            return None
        from workstation.errors import WorkstationError
        from workstation.models import resolve, score_observations

        try:
            version = resolve(self.ctx.ws, int(version_id))
            if version.input_kind != "observation":
                return None
            return score_observations(self.ctx.ws, version, obs)
        except WorkstationError as exc:
            self.note.setText(str(exc))
            return None

    def _draw_rewards(self, rewards: Any, row: dict[str, Any]) -> None:
        self.reward_plot.clear()
        steps = len(self._obs)
        if rewards is None:
            self.reward_plot.setTitle("Reward per step: choose an observation model to score")
            self.note.setText(f"{steps} steps; pick a run or a model version to score them.")
            return
        self.reward_plot.plot(rewards, pen=self.pg.mkPen(PASS_COLOUR, width=2))
        self.reward_plot.addLine(y=0.5, pen=self.pg.mkPen(FAIL_COLOUR, style=Qt.PenStyle.DashLine))
        self.reward_plot.setYRange(0, 1.05)
        self.reward_plot.setTitle(f"Reward per step (mean {float(rewards.mean()):.3f})")
        verdict = "" if row.get("passed") is None else \
            f" · {'pass' if row['passed'] else 'FAIL'} (margin {row['margin']:+.3f})"
        label = self._example.get("label") or "safe (an expert demonstration)"
        self.note.setText(f"{steps} steps · label {label}{verdict}")

    # -- the landscape ---------------------------------------------------------
    def _request_landscape(self) -> None:
        obs, version = self._obs, self._version
        if obs is None or version is None or obs.ndim != 2 or obs.shape[1] < 2:
            self._clear_map("Reward landscape: needs a model")
            return
        key = (version, self._example.get("dataset"), self.method.currentData())
        if key in self._cache:
            self._draw_map(*self._cache[key])
            return
        self._clear_map("Reward landscape…")
        dataset, method = key[1], key[2]

        def compute(ws: Any, progress: Any) -> Any:
            return landscape_for(ws, version, dataset, method)

        def done(result: Any) -> None:
            self._cache[key] = result
            if key == (self._version, self._example.get("dataset"), self.method.currentData()):
                self._draw_map(*result)
        self.ctx.run_job("Reward landscape", compute, on_done=done)

    def _clear_map(self, title: str) -> None:
        self.image.clear()
        for item in (self.path_under, self.path):
            item.setData([], [])
        self.start.setData([], [])
        self.marks.setData([], [])
        for item in self.kernels:
            self.map_plot.removeItem(item)
        self.kernels = []
        self.map_plot.setTitle(title)

    def _draw_map(self, view: Any, land: Any, kernels: list[tuple[Any, float]]) -> None:
        from PySide6.QtCore import QRectF as Rect

        x0, x1, y0, y1 = land.xs[0], land.xs[-1], land.ys[0], land.ys[-1]
        self.image.setImage(land.rewards.T, autoLevels=False)
        low, high = float(land.rewards.min()), float(land.rewards.max())
        self.colorbar.setLevels((low, max(high, low + 1e-9)))
        self.image.setRect(Rect(x0, y0, x1 - x0, y1 - y0))
        points = view.project(self._obs)
        for item in (self.path_under, self.path):
            item.setData(points[:, 0], points[:, 1])
        self.start.setData([points[0, 0]], [points[0, 1]])
        self._draw_findings(view)
        self._draw_kernels(view, kernels)
        self.map_plot.setLabel("bottom", view.axis_names[0])
        self.map_plot.setLabel("left", view.axis_names[1])
        self.map_plot.setTitle("Reward landscape")
        self.map_plot.setToolTip("The model's reward over a plane of observation space; the "
                                 "other components are held at the demonstrations' mean. White "
                                 "line: this trajectory (dot: its start); crosses: findings; "
                                 "circles: patch kernels.")

    def _draw_kernels(self, view: Any, kernels: list[tuple[Any, float]]) -> None:
        """Each patch kernel as a dashed circle of its bandwidth around its center."""
        from PySide6.QtWidgets import QGraphicsEllipseItem

        for item in self.kernels:
            self.map_plot.removeItem(item)
        self.kernels = []
        pen = self.pg.mkPen(FAIL_COLOUR, width=2, style=Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        for center, bandwidth in kernels:
            if len(center) != self._obs.shape[1]:
                continue
            x, y = view.project(center[None, :])[0]
            circle = QGraphicsEllipseItem(x - bandwidth, y - bandwidth, 2 * bandwidth,
                                          2 * bandwidth)
            circle.setPen(pen)
            self.map_plot.addItem(circle)
            self.kernels.append(circle)

    def _draw_findings(self, view: Any) -> None:
        from workstation.examples import findings_for

        points = [p for f in findings_for(self.ctx.ws, self._example["id"])
                  if (p := finding_point(f, self._obs)) is not None]
        if points:
            import numpy as np

            xy = view.project(np.asarray(points))
            self.marks.setData(xy[:, 0], xy[:, 1])
        else:
            self.marks.setData([], [])


def landscape_for(ws: Any, version: int, dataset: str,
                  method: str) -> tuple[Any, Any, list[tuple[Any, float]]]:
    """(projection, landscape, patch kernels) of a demos dataset under a
    model (runs as a job)."""
    from workstation.landscape import demo_observations, extent, projection, reward_landscape

    sample = demo_observations(ws, dataset)
    view = projection(sample, method)
    land = reward_landscape(ws, version, view, extent(view.project(sample)), GRID)
    return view, land, patch_kernels(ws, version)


def patch_kernels(ws: Any, version: int) -> list[tuple[Any, float]]:
    """(center, bandwidth) of every suppression kernel the version carries."""
    try:
        from workstation.models import resolve
        from workstation.patching.layers import current_layer
    except ImportError:  # patching not built into this workstation
        return []
    return [(k.center, k.bandwidth) for k in current_layer(ws, resolve(ws, version)).kernels()]


def finding_point(finding: dict[str, Any], obs: Any) -> Any:
    """Where a finding sits in observation space: the observation its case
    holds, or the step it names; None when it says neither."""
    case = finding.get("case") or {}
    details = finding.get("details") or {}
    for key in ("obs", "observation", "state"):
        value = case.get(key) if isinstance(case, dict) else None
        if isinstance(value, list) and len(value) == obs.shape[1]:
            return value
    for source in (case, details):
        step = source.get("step") if isinstance(source, dict) else None
        if isinstance(step, int) and 0 <= step < len(obs):
            return obs[step]
    return None
