"""The keyboard: every shortcut of the workstation in one table, the actions
made from it, and the text of the help dialog.

Review keys are single letters so that an analyst can triage at speed; they
act only while the browser has the focus (typing in a search box never
triggers them). Window keys (undo, redo, help) work anywhere in the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget


@dataclass(frozen=True)
class Shortcut:
    """One command: its id, menu text, keys, what it does, and its scope."""

    name: str
    text: str
    keys: tuple[str, ...]
    help: str
    scope: str = "browser"   # "browser" (focus in the browser) or "window"


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("next_row", "Next row", ("J",), "move to the next row (Down works too)"),
    Shortcut("previous_row", "Previous row", ("K",), "move to the previous row (Up works too)"),
    Shortcut("next_unreviewed", "Next unreviewed", ("Space", "]"),
             "jump to the next row the review log has not touched yet"),
    Shortcut("flip", "Flip preference", ("F",),
             "your judgement that the rejected reply of the selected pairs is better "
             "(press again to take it back)"),
    Shortcut("safe", "Label safe", ("S",), "set the label of the selected responses to safe"),
    Shortcut("unsafe", "Label unsafe", ("U",),
             "set the label of the selected responses to unsafe"),
    Shortcut("exclude", "Exclude / restore", ("X",),
             "exclude the selected examples from training and audits (again: restore)"),
    Shortcut("note", "Note…", ("N",), "write a note on the selected example"),
    Shortcut("tags", "Tags…", ("T",), "set the tags of the selected examples"),
    Shortcut("category", "Category…", ("C",), "set the category of the selected examples"),
    Shortcut("assign", "Assign to…", ("A",),
             "assign the selected examples to an analyst (the \"assigned to me\" filter "
             "finds them)"),
    Shortcut("undo", "Undo", ("Ctrl+Z",), "undo your newest review edit (logged as an undo)",
             "window"),
    Shortcut("redo", "Redo", ("Ctrl+Shift+Z", "Ctrl+Y"),
             "redo your newest undone edit (logged as a redo)", "window"),
    Shortcut("reason", "Reason for edits…", ("Ctrl+R",),
             "change the reason the review log records with every edit", "window"),
    Shortcut("search", "Search", ("Ctrl+F",), "type in the search box (Esc clears it)", "window"),
    Shortcut("clear_filters", "Clear filters", ("Ctrl+Backspace",), "show every row of the run",
             "window"),
    Shortcut("help", "Keyboard shortcuts", ("F1", "?"), "show this list", "window"),
)

BY_NAME = {s.name: s for s in SHORTCUTS}


def make_action(parent: QWidget, name: str, handler: Callable[[], None],
                browser: QWidget | None = None) -> QAction:
    """A QAction for the shortcut ``name``: browser-scoped keys are attached
    to ``browser`` and only fire while the focus is inside it."""
    spec = BY_NAME[name]
    action = QAction(spec.text, parent)
    action.setShortcuts([QKeySequence(k) for k in spec.keys])
    action.setToolTip(spec.help)
    action.setStatusTip(spec.help)
    action.triggered.connect(lambda _checked=False: handler())
    if spec.scope == "browser" and browser is not None:
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        browser.addAction(action)
    else:
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        parent.addAction(action)
    return action


def key_text(spec: Shortcut) -> str:
    """The keys as the platform writes them, e.g. "Ctrl+Shift+Z"."""
    return " or ".join(QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText)
                       for k in spec.keys)


def help_rows() -> list[tuple[str, str, str]]:
    """(keys, command, what it does) for every shortcut, for the help dialog."""
    return [("Up / Down", "Move", "move between rows")] + [
        (key_text(s), s.text.rstrip("…"), s.help) for s in SHORTCUTS]

