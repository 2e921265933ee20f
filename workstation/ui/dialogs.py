"""Dialogs: readable errors, the note editor, the shortcut list, preferences,
and what every form is made of (a path field, a combo box, a form that
refuses OK while something is missing). The forms that start flywheel jobs
are in ``forms``. Everything a dialog shows from a dataset is plain text.
"""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMessageBox,
                               QPlainTextEdit, QPushButton, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from workstation.ui.shortcuts import help_rows



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

def buttons(dialog: QDialog, ok_text: str = "OK") -> QDialogButtonBox:
    box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                           QDialogButtonBox.StandardButton.Cancel)
    box.button(QDialogButtonBox.StandardButton.Ok).setText(ok_text)
    box.accepted.connect(dialog.accept)
    box.rejected.connect(dialog.reject)
    return box


def combo(items: Sequence[tuple[str, Any]], current: Any = None) -> QComboBox:
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


class Form(QDialog):
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
        layout.addWidget(buttons(self, ok_text))

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
        layout.addWidget(buttons(self, "Save note"))
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


class PreferencesDialog(Form):
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
