"""Dialogs: readable errors, the note editor, the shortcut list, preferences,
and the small forms that start flywheel jobs (import, export, register,
audit, probes, retrain).

The forms only collect choices and hand them back with ``values()``; the
main window runs the core call as a job. Everything a dialog shows from a
dataset is plain text.
"""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QListWidget, QListWidgetItem, QMessageBox,
                               QPlainTextEdit, QPushButton, QSpinBox, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from workstation.ui.shortcuts import help_rows

KINDS = (("pairs", "Preference pairs"), ("labels", "Labeled responses"),
         ("demos", "Demonstrations (trajectories)"))


# -- messages ------------------------------------------------------------------

def show_error(parent: QWidget | None, message: str, details: str = "",
               title: str = "Workstation") -> QMessageBox:
    """A warning with the one-line message; "Show Details…" holds the
    traceback when there is one. Non-blocking (window-modal)."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok,
                      parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    if details:
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def show_info(parent: QWidget | None, message: str, title: str = "Workstation") -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Information, title, message,
                      QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


# -- small helpers ---------------------------------------------------------------

def _buttons(dialog: QDialog, ok_text: str = "OK") -> QDialogButtonBox:
    box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                           QDialogButtonBox.StandardButton.Cancel)
    box.button(QDialogButtonBox.StandardButton.Ok).setText(ok_text)
    box.accepted.connect(dialog.accept)
    box.rejected.connect(dialog.reject)
    return box


def _combo(items: Sequence[tuple[str, Any]], current: Any = None) -> QComboBox:
    combo = QComboBox()
    for text, data in items:
        combo.addItem(text, data)
    if current is not None:
        at = combo.findData(current)
        combo.setCurrentIndex(max(at, 0))
    return combo


class PathField(QWidget):
    """A path with a Browse… button that opens the platform's file dialog."""

    def __init__(self, mode: str, caption: str, filters: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.mode, self.caption, self.filters = mode, caption, filters
        self.edit = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)

    def _browse(self) -> None:
        if self.mode == "save":
            path, _ = QFileDialog.getSaveFileName(self, self.caption, self.edit.text(),
                                                  self.filters)
        elif self.mode == "folder":
            path = QFileDialog.getExistingDirectory(self, self.caption, self.edit.text())
        else:
            path, _ = QFileDialog.getOpenFileName(self, self.caption, self.edit.text(),
                                                  self.filters)
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        return self.edit.text().strip()


class _Form(QDialog):
    """A titled form with OK/Cancel that refuses OK until ``problem()`` is None."""

    def __init__(self, title: str, ok_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(460)
        self.form = QFormLayout()
        self.hint = QLabel()
        self.hint.setTextFormat(Qt.TextFormat.PlainText)
        self.hint.setWordWrap(True)
        self.hint.hide()
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.hint)
        layout.addWidget(_buttons(self, ok_text))

    def problem(self) -> str | None:
        return None

    def accept(self) -> None:
        problem = self.problem()
        if problem:
            self.hint.setText(problem)
            self.hint.show()
            return
        super().accept()


# -- review ------------------------------------------------------------------------

class NoteDialog(QDialog):
    """A small editor for an example's note; Ctrl+Enter saves."""

    def __init__(self, note: str | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Note")
        self.edit = QPlainTextEdit(note or "")
        self.edit.setPlaceholderText("What should the next analyst know about this example?")
        layout = QVBoxLayout(self)
        hint = QLabel("Ctrl+Enter saves; an empty note removes it.")
        hint.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.edit)
        layout.addWidget(hint)
        layout.addWidget(_buttons(self, "Save note"))
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.accept)
        self.resize(420, 220)

    def note(self) -> str | None:
        return self.edit.toPlainText().strip() or None


class HelpDialog(QDialog):
    """Every keyboard shortcut, in one table."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = help_rows()
        table = QTableWidget(len(rows), 3)
        table.setHorizontalHeaderLabels(["Keys", "Command", "What it does"])
        for r, values in enumerate(rows):
            for c, text in enumerate(values):
                table.setItem(r, c, QTableWidgetItem(text))
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        table.setWordWrap(True)
        table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table = table
        note = QLabel("Review keys act on the selected rows while the browser has the focus; "
                      "every edit is written to the review log with the reason set in "
                      "Review ▸ Reason for edits… (Ctrl+R).")
        note.setWordWrap(True)
        note.setTextFormat(Qt.TextFormat.PlainText)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(note)
        layout.addWidget(close)
        table.resizeRowsToContents()
        height = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in
                                                         range(table.rowCount()))
        self.resize(720, min(height + 130, 900))


class PreferencesDialog(_Form):
    """Who edits, and the reason logged with each edit."""

    def __init__(self, analyst: str, reason: str, parent: QWidget | None = None) -> None:
        super().__init__("Preferences", "Save", parent)
        self.analyst = QLineEdit(analyst)
        self.analyst.setPlaceholderText("your login name")
        self.reason = QLineEdit(reason)
        self.form.addRow("Analyst name", self.analyst)
        self.form.addRow("Reason for edits", self.reason)

    def problem(self) -> str | None:
        return None if self.reason.text().strip() else "Every edit needs a reason."

    def values(self) -> dict[str, str]:
        return {"analyst": self.analyst.text().strip(), "reason": self.reason.text().strip()}


# -- flywheel forms ------------------------------------------------------------------

class ImportDialog(_Form):
    """File (or folder), kind, name, format."""

    def __init__(self, formats: dict[str, list[str]], parent: QWidget | None = None) -> None:
        super().__init__("Import dataset", "Import", parent)
        self.formats = formats
        self.path = PathField("open", "Dataset file",
                              "Datasets (*.jsonl *.json *.gz *.csv *.parquet *.npz);;All files (*)")
        self.kind = _combo([(text, kind) for kind, text in KINDS])
        self.name = QLineEdit()
        self.format = QComboBox()
        self.kind.currentIndexChanged.connect(self._fill_formats)
        self.path.edit.textChanged.connect(self._suggest_name)
        self.form.addRow("File", self.path)
        self.form.addRow("Holds", self.kind)
        self.form.addRow("Format", self.format)
        self.form.addRow("Dataset name", self.name)
        self._fill_formats()

    def _fill_formats(self) -> None:
        self.format.clear()
        self.format.addItem("Detect from the file", None)
        for name in self.formats.get(self.kind.currentData(), []):
            self.format.addItem(name, name)

    def _suggest_name(self, path: str) -> None:
        from pathlib import Path

        if not self.name.isModified():
            stem = Path(path).name.split(".")[0]
            self.name.setText(stem)

    def problem(self) -> str | None:
        if not self.path.text():
            return "Choose the file to import."
        return None if self.name.text().strip() else "Give the dataset a name."

    def values(self) -> dict[str, Any]:
        return {"path": self.path.text(), "kind": self.kind.currentData(),
                "name": self.name.text().strip(), "format": self.format.currentData()}


class ExportDialog(_Form):
    """Dataset, format, output file, what to include."""

    def __init__(self, datasets: Sequence[tuple[str, str]], formats: Sequence[str],
                 current: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Export dataset", "Export", parent)
        self.dataset = _combo([(f"{name} ({kind})", name) for name, kind in datasets], current)
        self.format = _combo([(f, f) for f in formats])
        self.path = PathField("save", "Export to")
        self.reviewed_only = QCheckBox("Only examples the review log has touched")
        self.include_excluded = QCheckBox("Include excluded examples (with a column saying so)")
        self.form.addRow("Dataset", self.dataset)
        self.form.addRow("Format", self.format)
        self.form.addRow("File", self.path)
        self.form.addRow("", self.reviewed_only)
        self.form.addRow("", self.include_excluded)

    def problem(self) -> str | None:
        if self.dataset.currentData() is None:
            return "There is no dataset to export yet."
        return None if self.path.text() else "Choose where to write the file."

    def values(self) -> dict[str, Any]:
        return {"dataset": self.dataset.currentData(), "fmt": self.format.currentData(),
                "out": self.path.text(), "reviewed_only": self.reviewed_only.isChecked(),
                "include_excluded": self.include_excluded.isChecked()}


class RegisterModelDialog(_Form):
    """An ONNX file, its name, input kind, optional parent and tokenizer."""

    def __init__(self, input_kinds: Sequence[str], models: Sequence[str],
                 parent: QWidget | None = None) -> None:
        super().__init__("Register model", "Register", parent)
        self.path = PathField("open", "ONNX model", "ONNX models (*.onnx);;All files (*)")
        self.name = QLineEdit()
        self.input_kind = _combo([(k, k) for k in input_kinds])
        self.parent_model = _combo([("(none)", None)] + [(m, m) for m in models])
        self.tokenizer = PathField("open", "tokenizer.json", "Tokenizers (*.json)")
        self.notes = QLineEdit()
        self.form.addRow("ONNX file", self.path)
        self.form.addRow("Model name", self.name)
        self.form.addRow("Input", self.input_kind)
        self.form.addRow("Parent version", self.parent_model)
        self.form.addRow("Tokenizer (text-tokens)", self.tokenizer)
        self.form.addRow("Notes", self.notes)

    def problem(self) -> str | None:
        if not self.path.text():
            return "Choose the ONNX file."
        return None if self.name.text().strip() else "Give the model a name."

    def values(self) -> dict[str, Any]:
        return {"path": self.path.text(), "name": self.name.text().strip(),
                "input_kind": self.input_kind.currentData(),
                "parent": self.parent_model.currentData(),
                "tokenizer": self.tokenizer.text() or None, "notes": self.notes.text()}


class AuditDialog(_Form):
    """Model version, dataset and an optional threshold."""

    def __init__(self, models: Sequence[tuple[str, int]], datasets: Sequence[tuple[str, str]],
                 model: int | None = None, dataset: str | None = None,
                 parent: QWidget | None = None, title: str = "Audit") -> None:
        super().__init__(title, "Start", parent)
        self.model = _combo(models, model)
        self.dataset = _combo([(f"{name} ({kind})", name) for name, kind in datasets], dataset)
        self.form.addRow("Model version", self.model)
        self.form.addRow("Dataset", self.dataset)
        self.use_threshold = QCheckBox("Own threshold (labels and demonstrations)")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(-1000, 1000)
        self.threshold.setDecimals(3)
        self.threshold.setValue(0.5)
        self.threshold.setEnabled(False)
        self.use_threshold.toggled.connect(self.threshold.setEnabled)
        if title == "Audit":
            self.form.addRow("", self.use_threshold)
            self.form.addRow("Threshold", self.threshold)

    def problem(self) -> str | None:
        if self.model.currentData() is None:
            return "Register a model first (Model ▸ Register model…)."
        return None if self.dataset.currentData() else "Import a dataset first."

    def values(self) -> dict[str, Any]:
        threshold = self.threshold.value() if self.use_threshold.isChecked() else None
        return {"model": self.model.currentData(), "dataset": self.dataset.currentData(),
                "threshold": threshold}


class ProbeDialog(AuditDialog):
    """Model, dataset and which probes to run (all that apply by default)."""

    def __init__(self, models: Sequence[tuple[str, int]], datasets: Sequence[tuple[str, str]],
                 probes: Sequence[tuple[str, str, tuple[str, ...]]], model: int | None = None,
                 dataset: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(models, datasets, model, dataset, parent, title="Run probes")
        self.kinds = dict(datasets)
        self.probes = QListWidget()
        for name, description, kinds in probes:
            item = QListWidgetItem(f"{name}: {description}" if description else name)
            item.setData(Qt.ItemDataRole.UserRole, (name, kinds))
            item.setCheckState(Qt.CheckState.Checked)
            self.probes.addItem(item)
        self.form.addRow("Probes", self.probes)
        self.dataset.currentIndexChanged.connect(self._applicable)
        self._applicable()

    def _applicable(self) -> None:
        kind = self.kinds.get(self.dataset.currentData())
        for i in range(self.probes.count()):
            item = self.probes.item(i)
            _, kinds = item.data(Qt.ItemDataRole.UserRole)
            item.setHidden(kind not in kinds)

    def chosen(self) -> list[str]:
        return [self.probes.item(i).data(Qt.ItemDataRole.UserRole)[0]
                for i in range(self.probes.count())
                if not self.probes.item(i).isHidden()
                and self.probes.item(i).checkState() == Qt.CheckState.Checked]

    def problem(self) -> str | None:
        if self.probes.count() == 0:
            return "No probes are registered in this workstation yet."
        return super().problem() or (None if self.chosen() else
                                     "Tick at least one probe that applies to this dataset.")

    def values(self) -> dict[str, Any]:
        values = super().values()
        values.pop("threshold")
        return {**values, "probes": self.chosen()}


class RetrainDialog(_Form):
    """Dataset (as reviewed), model name, parent version, seed."""

    def __init__(self, datasets: Sequence[tuple[str, str]], models: Sequence[tuple[str, int]],
                 dataset: str | None = None, parent_version: int | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__("Retrain", "Train", parent)
        self.dataset = _combo([(f"{name} ({kind})", name) for name, kind in datasets], dataset)
        self.parent_version = _combo([("(none: a new model)", None)] + list(models),
                                     parent_version)
        self.name = QLineEdit()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.parent_version.currentIndexChanged.connect(self._suggest_name)
        self.form.addRow("Dataset (as reviewed)", self.dataset)
        self.form.addRow("Parent version", self.parent_version)
        self.form.addRow("Model name", self.name)
        self.form.addRow("Seed", self.seed)
        self._suggest_name()

    def _suggest_name(self) -> None:
        text = self.parent_version.currentText()
        if self.parent_version.currentData() is not None and not self.name.isModified():
            self.name.setText(text.split("@")[0])

    def problem(self) -> str | None:
        if not self.dataset.currentData():
            return "Import a dataset first."
        return None if self.name.text().strip() else "Name the model to train."

    def values(self) -> dict[str, Any]:
        return {"dataset": self.dataset.currentData(), "name": self.name.text().strip(),
                "parent": self.parent_version.currentData(), "seed": self.seed.value()}
