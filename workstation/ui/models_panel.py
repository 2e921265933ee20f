"""The models view: versions and their lineage, metrics and manifests; the
regression comparison of two versions; release, rollback and export; the
ledger and workspace verification.

Everything here shows core state and calls core functions through jobs:
``models.lineage`` (what is shown), ``regression`` (compare, the release
gate), ``releases`` (release, rollback, export), ``verify`` and, when
present, ``training``. The small dialog functions at the top are module
functions so that tests can answer them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout,
                               QHeaderView, QInputDialog, QLabel, QListWidget, QListWidgetItem,
                               QMessageBox, QPlainTextEdit, QPushButton, QSplitter,
                               QTableWidget, QTableWidgetItem, QTabWidget, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from workstation import releases
from workstation.audits import plot_data as pd
from workstation.models import lineage
from workstation.models.lineage import VersionNode
from workstation.progress import Progress
from workstation.ui.context import AppContext
from workstation.ui.identity_dialogs import ensure_signer
from workstation.ui.plots import semantic_colour
from workstation.workspace import Workspace

NOT_AVAILABLE = object()  # a core module that is not there yet
REASONS_SHOWN = 3  # gate reasons in the verdict line; the tooltip holds them all


# -- dialogs (module functions: tests replace them) ------------------------------------

def confirm(parent: QWidget, title: str, text: str, accept: str = "OK") -> bool:
    """Ask before a consequential step; True when the analyst accepts."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    yes = box.addButton(accept, QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(box.addButton(QMessageBox.StandardButton.Cancel))
    box.exec()
    return box.clickedButton() is yes


def ask_text(parent: QWidget, title: str, label: str) -> str | None:
    text, ok = QInputDialog.getText(parent, title, label)
    return text if ok else None


def choose_item(parent: QWidget, title: str, label: str, items: list[str]) -> str | None:
    item, ok = QInputDialog.getItem(parent, title, label, items, 0, False)
    return item if ok else None


def choose_export_path(parent: QWidget, suggested: str) -> str | None:
    """A .zip file, or a new folder (the "Folder" filter) to export a release to."""
    path, chosen = QFileDialog.getSaveFileName(
        parent, "Export release", suggested, "Zip archive (*.zip);;Folder (*)")
    if path and chosen.startswith("Zip") and not path.lower().endswith(".zip"):
        path += ".zip"
    return path or None


def inform(parent: QWidget, title: str, text: str, ok: bool = True) -> None:
    """A result the analyst should see (non-blocking)."""
    icon = QMessageBox.Icon.Information if ok else QMessageBox.Icon.Warning
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()


# -- core calls run as jobs -----------------------------------------------------------

def gate_report(ws: Workspace, version_id: int, progress: Progress,
                encoder: Any = None) -> Any:
    """The regression report a release of the version is gated on (None:
    nothing to compare with; NOT_AVAILABLE: no regression module yet)."""
    try:
        from workstation.regression import gate_report_for_release
    except ImportError:
        return NOT_AVAILABLE
    return gate_report_for_release(ws, version_id, progress, encoder=encoder)


def compare_versions(ws: Workspace, candidate: int, baseline: int, progress: Progress,
                     encoder: Any = None) -> Any:
    try:
        from workstation.regression import compare
    except ImportError:
        return NOT_AVAILABLE
    return compare(ws, candidate, baseline, progress=progress, encoder=encoder).to_json()


def retrain(ws: Workspace, dataset: str, node: VersionNode, progress: Progress,
            encoder: Any = None) -> Any:
    try:
        from workstation.training import train
    except ImportError:
        return NOT_AVAILABLE
    return train(ws, dataset, node.model, parent=node.ref, progress=progress, encoder=encoder)


def release_text(node: VersionNode, current: str | None, report: Any) -> str:
    """What the release confirmation says: from, to, and the gate's verdict."""
    lines = [f"Release {node.ref}?", "",
             f"From: {current or 'nothing (the first release of ' + node.model + ')'}",
             f"To:   {node.ref}", ""]
    return "\n".join(lines + gate_lines(report))


def gate_lines(report: Any) -> list[str]:
    if report is NOT_AVAILABLE:
        return ["Regression gate: not available yet (no regression module); the release "
                "records no regression evidence."]
    if report is None:
        return ["Regression gate: nothing to compare with (no release in force and no "
                "parent); the release records no regression evidence."]
    gate = report.get("gate") or {}
    baseline = pd.report_ref(report.get("baseline"), "the baseline")
    counts = (f"Against {baseline}: {report.get('fixed', 0):,} fixed, "
              f"{report.get('broken', 0):,} broken, {report.get('unchanged', 0):,} unchanged.")
    if gate.get("pass"):
        return ["Regression gate: PASSED.", counts]
    return ["Regression gate: FAILED.", counts, ""] + [f"• {r}" for r in gate.get("reasons", [])]


# -- the version tree ---------------------------------------------------------------------

class VersionTree(QTreeWidget):
    """Model versions, each under its parent."""

    version_chosen = Signal(object)  # version id

    COLUMNS = ("Version", "Status", "Audits", "Created")

    def __init__(self) -> None:
        super().__init__()
        self.setHeaderLabels(self.COLUMNS)
        self.setAlternatingRowColors(True)
        self.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.items: dict[int, QTreeWidgetItem] = {}
        self.currentItemChanged.connect(self._changed)

    def fill(self, nodes: dict[int, VersionNode], audits: dict[int, list]) -> None:
        chosen = self.chosen()
        self.blockSignals(True)
        self.clear()
        self.items = {}
        for root in lineage.roots(nodes):
            self._add(root, nodes, audits, None)
        self.expandAll()
        self.blockSignals(False)
        if chosen not in self.items:  # first fill: the release in force, else the newest
            current = [n.id for n in nodes.values() if n.released]
            chosen = (current or sorted(self.items))[-1] if self.items else None
        if chosen is not None:
            self.setCurrentItem(self.items[chosen])

    def _add(self, node: VersionNode, nodes: dict[int, VersionNode], audits: dict[int, list],
             parent: QTreeWidgetItem | None) -> None:
        runs = audits.get(node.id, [])
        failures = sum(a.n_failures for a in runs)
        status = "current release" if node.released else ("released before"
                                                          if node.ever_released else "")
        item = QTreeWidgetItem([node.ref, status,
                                f"{len(runs)} · {failures:,} failures" if runs else "none",
                                node.created_at[:16].replace("T", " ")])
        item.setData(0, Qt.ItemDataRole.UserRole, node.id)
        if node.released:
            font = item.font(0)
            font.setBold(True)
            item.setFont(0, font)
            item.setFont(1, font)
        (parent.addChild if parent is not None else self.addTopLevelItem)(item)
        self.items[node.id] = item
        for child in node.children:
            self._add(nodes[child], nodes, audits, item)

    def chosen(self) -> int | None:
        item = self.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None

    def choose(self, version_id: int | None) -> None:
        if version_id in self.items and version_id != self.chosen():
            self.setCurrentItem(self.items[version_id])

    def _changed(self, current: QTreeWidgetItem | None, _previous: Any) -> None:
        self.version_chosen.emit(current.data(0, Qt.ItemDataRole.UserRole) if current else None)


# -- details: metrics and manifest ----------------------------------------------------

class VersionDetails(QWidget):
    """A version's training metrics, latest audit metrics and manifest."""

    run_chosen = Signal(object)  # audit run id (double-click an audit)

    def __init__(self) -> None:
        super().__init__()
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.metrics = QTreeWidget()
        self.metrics.setHeaderLabels(("Metric", "Value"))
        self.metrics.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.metrics.itemDoubleClicked.connect(self._double_clicked)
        self.manifest = QPlainTextEdit(readOnly=True)
        self.manifest.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.metrics)
        split.addWidget(self.manifest)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(split, 1)

    def show_version(self, node: VersionNode | None, audits: list) -> None:
        self.metrics.clear()
        if node is None:
            self.title.setText("Select a model version.")
            self.manifest.setPlainText("")
            return
        parent = node.parent_ref or "none"
        self.title.setText(f"{node.ref} · parent {parent} · by {node.created_by}")
        self._section("Training", node.training_metrics or {"(none recorded)": ""}, None)
        for audit in audits:
            self._section(f"Audit of {audit.dataset} (run {audit.run_id})", audit.headline(),
                          audit.run_id)
        self.metrics.expandAll()
        self.manifest.setPlainText(json.dumps(node.manifest, indent=2, ensure_ascii=False))

    def _section(self, title: str, values: dict[str, Any], run_id: int | None) -> None:
        head = QTreeWidgetItem([title, "double-click to plot" if run_id else ""])
        head.setData(0, Qt.ItemDataRole.UserRole, run_id)
        for key, value in _flat(values):
            head.addChild(QTreeWidgetItem([key, _fmt(value)]))
        self.metrics.addTopLevelItem(head)
        head.setFirstColumnSpanned(False)

    def _double_clicked(self, item: QTreeWidgetItem, _column: int) -> None:
        while item.parent() is not None:
            item = item.parent()
        run_id = item.data(0, Qt.ItemDataRole.UserRole)
        if run_id is not None:
            self.run_chosen.emit(run_id)


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested metrics as dotted keys (one level of nesting is common in training metrics)."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
        elif not isinstance(value, list):
            out.append((f"{prefix}{key}", value))
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


# -- compare two versions ---------------------------------------------------------------

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
        self.verdict = QLabel("Pick two versions and compare them.", wordWrap=True)
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

    def set_versions(self, nodes: dict[int, VersionNode], candidate: int | None) -> None:
        for box in (self.candidate, self.baseline):
            keep = box.currentData()
            box.clear()
            for node in nodes.values():
                box.addItem(node.ref, node.id)
            box.setCurrentIndex(max(box.findData(keep), 0))
        if candidate in nodes:
            self.candidate.setCurrentIndex(self.candidate.findData(candidate))
            parent = nodes[candidate].parent_id
            if parent in nodes:
                self.baseline.setCurrentIndex(self.baseline.findData(parent))

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
        if report is NOT_AVAILABLE:
            self.verdict.setText("Comparison is not available yet: the regression module is "
                                 "not part of this workstation.")
            return
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


def compact(table: QTableWidget) -> None:
    """Rows one text line high, read-only, no row numbers."""
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 8)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setStretchLastSection(True)


_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def _num(value: Any, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _esc(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- the ledger -------------------------------------------------------------------------

class LedgerView(QWidget):
    """The ledger's rows, newest last, and the last verification's result."""

    COLUMNS = ("Seq", "Time", "Actor", "Kind", "Summary")

    def __init__(self) -> None:
        super().__init__()
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        compact(self.table)
        self.caption = QLabel(wordWrap=True)
        self.verify_result = QLabel("“Verify workspace” recomputes every hash: review log, "
                                    "ledger, release signatures and stored artifacts.",
                                    wordWrap=True)
        self.verify_result.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.verify_result)

    def fill(self, rows: list[lineage.LedgerRow]) -> None:
        self.caption.setText(
            f"{len(rows):,} ledger rows, append-only and hash-chained." if rows else
            "The ledger is empty: releases, rollbacks and signing-key changes are recorded "
            "here.")
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            values = (str(r.seq), r.time[:19].replace("T", " "), r.actor, r.kind, r.summary)
            for col, text in enumerate(values):
                self.table.setItem(i, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.scrollToBottom()

    def show_verify(self, report: Any) -> None:
        palette = self.palette()
        colour = semantic_colour("fixed" if report.ok else "broken", palette).name()
        what = "OK" if report.ok else f"{len(report.failures)} problem(s)"
        problems = "".join(f"<br>• {_esc(f)}" for f in report.failures)
        self.verify_result.setText(f'<span style="color:{colour}; font-weight:bold">Verify: '
                                   f'{what}</span> · checked '
                                   + _esc(_checked_text(report.checked)) + problems)


def _checked_text(checked: dict[str, int]) -> str:
    return ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in checked.items())


# -- the panel -----------------------------------------------------------------------------

class ModelsPanel(QWidget):
    """Model versions with lineage, comparison, release, rollback, export,
    the ledger and verification."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.nodes: dict[int, VersionNode] = {}
        self.audits: dict[int, list] = {}
        self._build()
        ctx.data_changed.connect(self._data_changed)
        ctx.workspace_changed.connect(lambda _ws: self.refresh())
        ctx.model_selected.connect(self.tree.choose)
        self.refresh()

    # -- layout ----------------------------------------------------------------------
    def _build(self) -> None:
        self.tree = VersionTree()
        self.details = VersionDetails()
        self.compare_view = CompareView()
        self.ledger_view = LedgerView()
        self.tabs = QTabWidget()
        for widget, name in ((self.details, "Details"), (self.compare_view, "Compare"),
                             (self.ledger_view, "Ledger")):
            self.tabs.addTab(widget, name)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.tree)
        split.addWidget(self.tabs)
        split.setStretchFactor(1, 2)
        split.setSizes([380, 720])
        layout = QVBoxLayout(self)
        layout.addLayout(self._toolbar())
        layout.addWidget(split, 1)
        self.tree.version_chosen.connect(self._version_chosen)
        self.details.run_chosen.connect(self.ctx.run_selected.emit)
        self.compare_view.compare_requested.connect(self.compare)
        self.compare_view.example_clicked.connect(self.ctx.example_selected.emit)

    def _toolbar(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for key, text, slot in (("release", "Release…", self.release),
                                ("rollback", "Roll back…", self.rollback),
                                ("export", "Export release…", self.export),
                                ("retrain", "Retrain…", self.retrain),
                                ("verify", "Verify workspace", self.verify)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            self.buttons[key] = button
            row.addWidget(button)
        row.addStretch(1)
        return row

    # -- state -------------------------------------------------------------------------
    def refresh(self) -> None:
        ws = self.ctx.ws
        self.nodes = lineage.version_tree(ws) if ws is not None else {}
        self.audits = {vid: lineage.latest_audits(ws, vid) for vid in self.nodes} \
            if ws is not None else {}
        self.tree.fill(self.nodes, self.audits)
        self.compare_view.set_versions(self.nodes, self.tree.chosen())
        self.ledger_view.fill(lineage.ledger_rows(ws) if ws is not None else [])
        self._version_chosen(self.tree.chosen())

    def _data_changed(self, changes: Any) -> None:
        if set(changes or ()) & {"models", "releases", "runs", "ledger"}:
            self.refresh()

    def selected(self) -> VersionNode | None:
        return self.nodes.get(self.tree.chosen())

    def _version_chosen(self, version_id: int | None) -> None:
        node = self.nodes.get(version_id)
        self.details.show_version(node, self.audits.get(version_id, []))
        if node is not None:
            self.compare_view.set_versions(self.nodes, node.id)
            self.ctx.model_selected.emit(node.id)
        self._enable(node)

    def _enable(self, node: VersionNode | None) -> None:
        self.buttons["release"].setEnabled(node is not None and not node.released)
        self.buttons["rollback"].setEnabled(node is not None and self._can_roll_back(node.model))
        self.buttons["export"].setEnabled(node is not None and node.ever_released)
        self.buttons["retrain"].setEnabled(node is not None)

    def _can_roll_back(self, model: str) -> bool:
        return self.ctx.ws is not None and \
            lineage.rollback_target(self.ctx.ws, model)[1] is not None

    def _encoder(self) -> Any:
        return getattr(self.ctx, "encoder", None)

    # -- compare -----------------------------------------------------------------------
    def compare(self, candidate: int, baseline: int) -> None:
        if candidate == baseline:
            self.compare_view.verdict.setText("Pick two different versions.")
            return
        refs = self.nodes[candidate].ref, self.nodes[baseline].ref
        self.compare_view.busy(f"Comparing {refs[0]} with {refs[1]}…")
        self.tabs.setCurrentWidget(self.compare_view)
        job = self.ctx.run_job(f"Compare {refs[0]} with {refs[1]}",
                               lambda ws, p: compare_versions(ws, candidate, baseline, p,
                                                              self._encoder()),
                               self.compare_view.show_report)
        job.signals.failed.connect(lambda msg, _d: self.compare_view.busy(f"Comparison failed: "
                                                                          f"{msg}"))
        job.signals.ended.connect(lambda: self.compare_view.compare_button.setEnabled(True))

    # -- release, rollback, export ------------------------------------------------------
    def release(self) -> None:
        node = self.selected()
        if node is None:
            return
        self.ctx.status.emit(f"Checking the regression gate for {node.ref}…")
        self.ctx.run_job(f"Regression gate for {node.ref}",
                         lambda ws, p: gate_report(ws, node.id, p, self._encoder()),
                         lambda report: self._confirm_release(node, report))

    def _confirm_release(self, node: VersionNode, report: Any) -> None:
        current = lineage.release_ref(self.ctx.ws, lineage.rollback_target(self.ctx.ws,
                                                                            node.model)[0])
        text = release_text(node, current, report)
        evidence = report if isinstance(report, dict) else None
        failed = evidence is not None and (evidence.get("gate") or {}).get("pass") is False
        if not failed:
            if confirm(self, f"Release {node.ref}", text, "Release"):
                self._release(node, evidence)
            return
        if not confirm(self, f"Release {node.ref}: the gate failed",
                       text + "\n\nRelease anyway? You will be asked for a reason, which the "
                              "signed governance batch records.", "Release anyway…"):
            return
        reason = ask_text(self, "Release anyway", "Why release past the failed regression gate?")
        if reason and reason.strip():
            self._release(node, evidence, force=True, reason=reason.strip())

    def _release(self, node: VersionNode, report: dict | None, force: bool = False,
                 reason: str = "") -> None:
        if ensure_signer(self) is None:
            return

        def done(rel: releases.Release) -> None:
            inform(self, "Released", f"{rel.ref} is the release in force, signed with key "
                                     f"{rel.key_id}.")
        self.ctx.run_job(f"Release {node.ref}",
                         lambda ws, _p: releases.release(ws, node.id,
                                                         regression_report=report, force=force,
                                                         force_reason=reason),
                         done, {"releases", "models"})

    def rollback(self) -> None:
        node = self.selected()
        if node is None:
            return
        current, previous = lineage.rollback_target(self.ctx.ws, node.model)
        from_ref, to_ref = (lineage.release_ref(self.ctx.ws, r) for r in (current, previous))
        if previous is None:
            inform(self, "Roll back", f"{node.model} has no earlier release in force to roll "
                                      f"back to.", ok=False)
            return
        if not confirm(self, f"Roll back {node.model}",
                       f"Roll back {node.model}?\n\nFrom: {from_ref} (the release in force)\n"
                       f"To:   {to_ref}\n\nThe rollback is recorded in the ledger.", "Roll back"):
            return
        reason = ask_text(self, "Roll back", "Reason (recorded in the ledger):") or ""
        if ensure_signer(self) is None:
            return
        self.ctx.run_job(f"Roll back {node.model}",
                         lambda ws, _p: releases.rollback(ws, node.model, reason),
                         lambda rel: inform(self, "Rolled back",
                                            f"{rel.ref} is the release in force again."),
                         {"releases", "models"})

    def export(self) -> None:
        node = self.selected()
        if node is None or not node.ever_released:
            return
        path = choose_export_path(self, str(Path.home() / f"{node.model}-{node.version}.zip"))
        if not path:
            return
        self.ctx.run_job(f"Export {node.ref}",
                         lambda ws, _p: releases.export_release(ws, node.ref, path),
                         lambda out: inform(self, "Exported",
                                            f"{node.ref} was exported to {out}.\nCheck it "
                                            f"offline with `workstation verify-release`."))

    # -- verify and retrain --------------------------------------------------------------
    def verify(self) -> None:
        from workstation.verify import verify_workspace

        self.ledger_view.verify_result.setText("Verifying…")
        self.ctx.run_job("Verify workspace", lambda ws, _p: verify_workspace(ws),
                         self._verified)

    def _verified(self, report: Any) -> None:
        self.ledger_view.show_verify(report)
        if report.ok:
            inform(self, "Verify", "The workspace verifies: every hash matches.\n\nChecked "
                                   + _checked_text(report.checked) + ".")
        else:
            inform(self, "Verify", "The workspace does NOT verify:\n\n"
                                   + "\n".join(f"• {f}" for f in report.failures), ok=False)

    def retrain(self) -> None:
        node = self.selected()
        names = lineage.datasets(self.ctx.ws) if self.ctx.ws is not None else []
        if node is None or not names:
            return
        dataset = choose_item(self, f"Retrain {node.model}",
                              f"Train the next version of {node.model} (parent {node.ref}) on:",
                              names)
        if not dataset:
            return

        def done(result: Any) -> None:
            if result is NOT_AVAILABLE:
                inform(self, "Retrain", "Training is not available yet.", ok=False)
            else:
                inform(self, "Retrain", f"Trained {result.version.ref} on {dataset}.")
        self.ctx.run_job(f"Retrain {node.model} on {dataset}",
                         lambda ws, p: retrain(ws, dataset, node, p, self._encoder()),
                         done, {"models"})
