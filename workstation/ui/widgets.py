"""Small widgets shared by the panels: labels that never read their text as
rich text, what-to-do-next states and hints, compact read-only tables, and
combo boxes that keep their choice when refilled.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFrame, QHBoxLayout, QLabel,
                               QPushButton, QTableWidget, QVBoxLayout, QWidget)


def plain_label(text: str = "", wrap: bool = True) -> QLabel:
    """A label that never interprets its text as rich text."""
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def small_combo(min_width: int = 0) -> QComboBox:
    """A combo box as wide as its longest choice (at least ``min_width``)."""
    combo = QComboBox()
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
    combo.setMinimumContentsLength(8)
    combo.setMinimumWidth(min_width)
    return combo


def refill(combo: QComboBox, items: list[tuple[str, Any]]) -> None:
    """Replace the choices, keeping the current one when it remains."""
    keep = combo.currentData()
    combo.clear()
    for text, data in items:
        combo.addItem(text, data)
    at = combo.findData(keep)
    combo.setCurrentIndex(at if at >= 0 else 0)


def compact(table: QTableWidget) -> None:
    """Rows one text line high, read-only, no row numbers."""
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 8)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setStretchLastSection(True)


class EmptyState(QWidget):
    """What to do next, when there is nothing to show."""

    action = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = plain_label()
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        self.title.setFont(font)
        self.text = plain_label()
        self.button = QPushButton()
        self.button.clicked.connect(lambda: self.action.emit(self._action))
        self._action = ""
        column = QVBoxLayout(self)
        column.addStretch(1)
        for widget in (self.title, self.text):
            widget.setAlignment(Qt.AlignmentFlag.AlignCenter)
            column.addWidget(widget)
        column.addWidget(self.button, 0, Qt.AlignmentFlag.AlignCenter)
        column.addStretch(2)

    def show_state(self, title: str, text: str, button: str = "", action: str = "") -> None:
        self.title.setText(title)
        self.text.setText(text)
        self.button.setText(button)
        self.button.setVisible(bool(button))
        self._action = action


class HintBar(QFrame):
    """A one-line hint with an action, above the table."""

    action = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text = plain_label()
        self.button = QPushButton()
        self.button.clicked.connect(lambda: self.action.emit(self._action))
        self._action = ""
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 2, 6, 2)
        row.addWidget(self.text, 1)
        row.addWidget(self.button)

    def show_hint(self, text: str, button: str, action: str) -> None:
        self.text.setText(text)
        self.button.setText(button)
        self._action = action
        self.show()
