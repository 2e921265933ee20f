"""Model versions as the Models panel lists them: the lineage tree (each
version under its parent, with its status and audits) and one version's
details (its manifest in words, training metrics, latest audit metrics:
held-out first, the training set's apart).
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QHeaderView, QLabel, QPlainTextEdit, QSplitter,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from workstation.models import lineage
from workstation.models.lineage import VersionNode
from workstation.ui import splits
from workstation.ui.wording import TEXT_FORMAT_WORDS, count, metric_name


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
        """Show ``nodes``, keeping the chosen version (the first time: the
        release in force, else the newest). Filling is no choice of the
        analyst's: it emits nothing."""
        chosen = self.chosen()
        self.blockSignals(True)
        try:
            self.clear()
            self.items = {}
            for root in lineage.roots(nodes):
                self._add(root, nodes, audits, None)
            self.expandAll()
            if chosen not in self.items:
                current = [n.id for n in nodes.values() if n.released]
                chosen = (current or sorted(self.items))[-1] if self.items else None
            if chosen is not None:
                self.setCurrentItem(self.items[chosen])
        finally:
            self.blockSignals(False)

    def _add(self, node: VersionNode, nodes: dict[int, VersionNode], audits: dict[int, list],
             parent: QTreeWidgetItem | None) -> None:
        runs = audits.get(node.id, [])
        status = "current release" if node.released else ("released before"
                                                          if node.ever_released else "")
        item = QTreeWidgetItem([node.ref, status, _audits_text(runs),
                                node.created_at[:16].replace("T", " ")])
        item.setData(0, Qt.ItemDataRole.UserRole, node.id)
        item.setToolTip(2, _audits_tip(runs))
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


def _audits_text(runs: list[lineage.AuditSummary]) -> str:
    """"2 · 42 failures, 13 on training examples": the latest audits' failures,
    saying how many are on examples the version was trained on (where a run
    records it; the tooltip has each run's)."""
    if not runs:
        return "none"
    text = f"{len(runs)} · {count(sum(a.n_failures for a in runs), 'failure')}"
    trained = sum(int((a.training_metrics or {}).get("n_failures") or 0) for a in runs)
    return text + (f", {trained:,} on training examples" if trained else "")


def _audits_tip(runs: list[lineage.AuditSummary]) -> str:
    """Each latest audit's failures, held-out and training apart."""
    lines = []
    for a in runs:
        line = f"{a.dataset} (run {a.run_id}): {count(a.n_failures, 'failure')}"
        if a.membership is None:
            line += f", {splits.NOT_TOLD_APART}"
        elif a.training_metrics:
            line += (f": {int(a.metrics.get('n_failures') or 0):,} held-out, "
                     f"{int(a.training_metrics.get('n_failures') or 0):,} on training examples")
        lines.append(line)
    return "\n".join(lines)


# -- details: metrics and manifest ----------------------------------------------------

class VersionDetails(QWidget):
    """A version in words (what it takes, what it was trained on, who made it),
    its training metrics and its latest audits' metrics; the manifest as JSON
    on request."""

    run_chosen = Signal(object)  # audit run id (double-click an audit)

    def __init__(self) -> None:
        super().__init__()
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.metrics = QTreeWidget()
        self.metrics.setHeaderLabels(("", "Value"))
        self.metrics.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.metrics.itemDoubleClicked.connect(self._double_clicked)
        self.show_json = QCheckBox("Show the manifest as JSON")
        self.manifest = QPlainTextEdit(readOnly=True)
        self.manifest.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.manifest.hide()
        self.show_json.toggled.connect(self.manifest.setVisible)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.metrics)
        split.addWidget(self.manifest)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(split, 1)
        layout.addWidget(self.show_json)

    def show_version(self, node: VersionNode | None, audits: list) -> None:
        self.metrics.clear()
        if node is None:
            self.title.setText("Select a model version.")
            self.manifest.setPlainText("")
            return
        self.title.setText(f"{node.ref} · parent {node.parent_ref or 'none'} · by "
                           f"{node.created_by}")
        self._section("Version", dict(manifest_facts(node.manifest)), None, words=False)
        self._section("Training", node.training_metrics or {"none recorded": None}, None)
        if isinstance(node.manifest.get("calibration"), dict):  # what a threshold of 0.5 means
            self._section("Calibration", node.manifest["calibration"], None)
        for audit in audits:
            self._audit_section(audit)
        self.metrics.expandAll()
        self.manifest.setPlainText(json.dumps(node.manifest, indent=2, ensure_ascii=False))

    def _section(self, title: str, values: dict[str, Any], run_id: int | None,
                 words: bool = True) -> QTreeWidgetItem:
        head = QTreeWidgetItem([title, "double-click to plot" if run_id else ""])
        head.setData(0, Qt.ItemDataRole.UserRole, run_id)
        _add_values(head, values, words)
        self.metrics.addTopLevelItem(head)
        return head

    def _audit_section(self, audit: lineage.AuditSummary) -> None:
        """An audit's metrics, held-out first and the training set's apart,
        each under a line saying which examples it covers."""
        head = self._section(f"Audit of {audit.dataset} (run {audit.run_id})", {},
                             audit.run_id)
        groups = [(splits.metrics_heading(audit.membership), audit.headline())]
        training = splits.training_heading(audit.membership)
        if training is not None and audit.training_metrics:
            groups.append((training, audit.headline(training=True)))
        for (title, cover), values in groups:
            group = QTreeWidgetItem([title, cover])
            group.setToolTip(1, cover)  # a long cover is elided in the column
            head.addChild(group)
            _add_values(group, values, words=True)

    def _double_clicked(self, item: QTreeWidgetItem, _column: int) -> None:
        while item.parent() is not None:
            item = item.parent()
        run_id = item.data(0, Qt.ItemDataRole.UserRole)
        if run_id is not None:
            self.run_chosen.emit(run_id)


def _add_values(parent: QTreeWidgetItem, values: dict[str, Any], words: bool) -> None:
    for key, value in _flat(values):
        item = QTreeWidgetItem([metric_name(key) if words else key, _fmt(value)])
        item.setToolTip(0, key)  # the name the CLI's JSON uses
        parent.addChild(item)


def manifest_facts(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """What a version's manifest says, in words, one fact a line."""
    model_input = manifest.get("input") or {}
    lineage = manifest.get("lineage") if isinstance(manifest.get("lineage"), dict) else {}
    takes = manifest.get("input_kind", "?")
    if model_input.get("encoder"):
        takes += f", encoded by {model_input['encoder']}"
    facts = [("takes", takes),
             ("scores as", f"{manifest.get('score_type', '?')} (output "
                           f"“{manifest.get('output', '?')}”)")]
    if manifest.get("input_kind") == "text-tokens":
        facts += _text_input_facts(model_input)
    if lineage.get("dataset"):
        facts.append(("trained on", str(lineage["dataset"])))
    facts += [("parent", manifest.get("parent") or "none"),
              ("made", f"{str(manifest.get('created_at', ''))[:16].replace('T', ' ')} by "
                       f"{manifest.get('created_by', '?')}")]
    if manifest.get("patches"):
        facts.append(("patches", ", ".join(manifest["patches"])))
    parity = (manifest.get("quantization") or {}).get("parity")
    if parity:
        facts.append(("int8 parity", _parity_words(parity)))
    if manifest.get("notes"):
        facts.append(("notes", str(manifest["notes"])))
    if manifest.get("sha256"):
        facts.append(("file", f"{manifest.get('size_bytes', 0):,} bytes, sha256 "
                              f"{manifest['sha256'][:12]}…"))
    return facts


def _parity_words(parity: dict[str, Any]) -> str:
    """A quantized version's parity with its parent, in one line."""
    rho = parity.get("spearman")
    deltas = ", ".join(f"{metric_name(k)} {d['delta']:+.4f}"
                       for k, d in (parity.get("metrics") or {}).items())
    return (f"Spearman {'n/a' if rho is None else f'{rho:.4f}'} with the parent on "
            f"'{parity.get('dataset')}' ({parity.get('n_scores', 0):,} scores)"
            + (f"; {deltas}" if deltas else ""))


def _text_input_facts(model_input: dict[str, Any]) -> list[tuple[str, str]]:
    """How texts reach a tokens model: format, maximum length, pooling."""
    kind = model_input.get("text_format", "pair")
    words = TEXT_FORMAT_WORDS.get(kind, kind)
    if model_input.get("chat_template_sha256"):
        words += f", template sha256 {model_input['chat_template_sha256'][:12]}…"
    facts = [("text format", words),
             ("max length", f"{model_input.get('max_length', '?')} tokens (longer texts are "
                            f"truncated and counted in audits)")]
    if model_input.get("pooling"):
        facts.append(("pooling", str(model_input["pooling"])))
    return facts


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
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)
