"""Starting the desktop workstation: ``run_gui`` (the `workstation` command
with no sub-command, and `workstation --workspace W gui`).

Start-up stays light: only Qt, DuckDB and the browser load here; heavy core
modules load inside the actions that need them, pyqtgraph with the first
plot, and torch only when training starts (or the encoder's one-time
conversion runs, on the first encoding of a fresh install).
"""

from __future__ import annotations

import gc
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QStyle

_windows: list[Any] = []  # open windows, kept alive while the event loop runs


def make_app(argv: Sequence[str] | None = None) -> QApplication:
    """The QApplication (created once), named for QSettings."""
    app = QApplication.instance()
    if app is None:
        QApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(list(argv) if argv is not None else sys.argv[:1])
    app.setOrganizationName("workstation")
    app.setApplicationName("workstation")
    app.setApplicationDisplayName("Workstation")
    app.setWindowIcon(_icon(app))
    return app


def _icon(app: QApplication) -> QIcon:
    """The workstation's icon from resources/, else a standard one."""
    path = Path(__file__).resolve().parents[2] / "resources" / "icons" / "workstation.svg"
    icon = QIcon(str(path)) if path.exists() else QIcon()
    if icon.isNull():
        icon = app.style().standardIcon(QStyle.StandardPixmap.SP_FileDialogDetailedView)
    return icon


def open_main_window(workspace: str | None = None) -> Any:
    """Show a main window with its saved geometry; open ``workspace`` (created
    when missing, as the CLI does) or offer recent workspaces."""
    from workstation.ui.main_window import MainWindow

    window = MainWindow()
    window.restore_state()
    window.show()
    if workspace:
        window.open_workspace(str(workspace), create=True)
    _windows.append(window)
    gc.freeze()  # start-up objects stay: spare them the collector's full passes
    return window


def run_gui(workspace: str | None = None, argv: Sequence[str] | None = None) -> int:
    """Run the workstation window until it is closed; returns the exit code."""
    app = make_app(argv)
    previous_hook = sys.excepthook
    sys.excepthook = _show_unexpected
    try:
        window = open_main_window(workspace)
        code = app.exec()
    finally:
        sys.excepthook = previous_hook
    if window in _windows:
        _windows.remove(window)
    return int(code)


def _show_unexpected(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    """A fault in a slot: a readable message with the traceback, never silence."""
    details = "".join(traceback.format_exception(kind, error, tb))
    sys.stderr.write(details)
    from workstation.ui.dialogs import show_error

    parent = _windows[-1] if _windows else None
    show_error(parent, f"Something went wrong: {kind.__name__}: {error}", details)
