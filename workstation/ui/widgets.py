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
        self.buttons = ActionButtons(self.action)
        self.button = self.buttons.first
        column = QVBoxLayout(self)
        column.addStretch(1)
        for widget in (self.title, self.text):
            widget.setAlignment(Qt.AlignmentFlag.AlignCenter)
            column.addWidget(widget)
        column.addWidget(self.buttons, 0, Qt.AlignmentFlag.AlignCenter)
        column.addStretch(2)

    def show_state(self, title: str, text: str, button: str = "", action: str = "",
                   other: str = "", other_action: str = "") -> None:
        """Say ``title`` and ``text``, offering up to two actions (button text, action)."""
        self.title.setText(title)
        self.text.setText(text)
        self.buttons.offer((button, action), (other, other_action))


class ActionButtons(QWidget):
    """One or two buttons in a row, each emitting its action on ``signal``."""

    def __init__(self, signal: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.first, self.second = QPushButton(), QPushButton()
        self.actions = ["", ""]
        self.first.clicked.connect(lambda: signal.emit(self.actions[0]))
        self.second.clicked.connect(lambda: signal.emit(self.actions[1]))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.first)
        row.addWidget(self.second)

    def offer(self, *choices: tuple[str, str]) -> None:
        for i, button in enumerate((self.first, self.second)):
            text, action = choices[i] if i < len(choices) else ("", "")
            button.setText(text)
            button.setVisible(bool(text))
            self.actions[i] = action


class HintBar(QFrame):
    """A one-line hint with one or two actions, above the table."""

    action = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text = plain_label()
        self.buttons = ActionButtons(self.action)
        self.button = self.buttons.first
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 2, 6, 2)
        row.addWidget(self.text, 1)
        row.addWidget(self.buttons)

    def show_hint(self, text: str, button: str, action: str, other: str = "",
                  other_action: str = "") -> None:
        self.text.setText(text)
        self.buttons.offer((button, action), (other, other_action))
        self.show()
