"""The start page, shown while no workspace is open: recent workspaces, Open,
New and the demo; and the list of recent workspaces kept in the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

MAX_RECENT = 8
DEMO_TEXT = "Build &demo workspace…"
DEMO_HELP = ("A ready-made workspace to look around in: the shipped example datasets (a few "
             "labels deliberately wrong), a first model of each, its audit and probe findings. "
             "Takes about 20 seconds.")


class StartPage(QWidget):
    """No workspace open: recent workspaces, Open, New, and the demo."""

    open_recent = Signal(str)   # the path of a recent workspace
    open_requested = Signal()
    new_requested = Signal()
    demo_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("Open a workspace")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        title.setFont(font)
        text = QLabel("A workspace is one file that holds a whole audit project: datasets, "
                      "models, audit runs and the review log.")
        text.setWordWrap(True)
        self.recent = QListWidget()
        self.recent.itemActivated.connect(
            lambda item: self.open_recent.emit(item.data(Qt.ItemDataRole.UserRole)))
        open_button = QPushButton("&Open workspace…")
        new_button = QPushButton("&New workspace…")
        open_button.clicked.connect(self.open_requested)
        new_button.clicked.connect(self.new_requested)
        self.demo_button = QPushButton(DEMO_TEXT)
        self.demo_button.setToolTip(DEMO_HELP)
        self.demo_button.clicked.connect(self.demo_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(open_button)
        buttons.addWidget(new_button)
        buttons.addSpacing(16)
        buttons.addWidget(self.demo_button)
        buttons.addStretch(1)
        self.recent_label = QLabel("Recent workspaces")
        self.recent.setMaximumHeight(240)
        column = QVBoxLayout()
        column.addStretch(1)
        column.addWidget(title)
        column.addWidget(text)
        column.addSpacing(8)
        column.addLayout(buttons)
        column.addSpacing(16)
        column.addWidget(self.recent_label)
        column.addWidget(self.recent)
        column.addStretch(2)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(column, 2)
        outer.addStretch(1)

    def show_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        for path in paths:
            missing = not Path(path).exists()
            item = QListWidgetItem(f"{Path(path).name}    {path}" + ("  (missing)" if missing
                                                                    else ""))
            item.setData(Qt.ItemDataRole.UserRole, path)
            if missing:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            self.recent.addItem(item)
        self.recent_label.setText("Recent workspaces (double-click to open)" if paths else
                                  "No recent workspaces yet: open or create one, or build the "
                                  "demo workspace to look around.")
        self.recent.setVisible(bool(paths))

    def demo_running(self, running: bool) -> None:
        self.demo_button.setEnabled(not running)
        self.demo_button.setText("Building the demo…" if running else DEMO_TEXT)


class RecentWorkspaces:
    """The workspaces opened lately, newest first, kept in the settings."""

    KEY = "recent/workspaces"

    def __init__(self, settings: Callable[[], QSettings]) -> None:
        self.settings = settings

    def paths(self) -> list[str]:
        value = self.settings().value(self.KEY, []) or []
        return [value] if isinstance(value, str) else list(value)

    def remember(self, path: str) -> None:
        paths = [path] + [p for p in self.paths() if p != path]
        self.settings().setValue(self.KEY, paths[:MAX_RECENT])

    def last_folder(self) -> str:
        """Where the newest workspace is (the home folder when there is none)."""
        paths = self.paths()
        return str(Path(paths[0]).parent) if paths else str(Path.home())
