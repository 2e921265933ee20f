"""Report… in the window: the action (menu and shortcut) opens a dialog that
builds the signed report in the background, shows its progress, previews its
summary and saves it; Cancel stops a build and leaves nothing behind."""

from __future__ import annotations

import time

import pytest
from PySide6.QtGui import QKeySequence

from tests.gui_support import copy_template, main_window, own_settings, template  # noqa: F401
from workstation.report import verify_report


@pytest.fixture
def window(qtbot, tmp_path, template):  # noqa: F811
    with main_window(qtbot, copy_template(template, tmp_path / "ws.duckdb")) as win:
        yield win


def test_report_builds_in_the_background_previews_and_saves(window, qtbot, tmp_path):
    action = window.actions["report"]
    assert action.isEnabled() and action.shortcut() == QKeySequence("Ctrl+Shift+R")
    action.trigger()
    dialog = window.report_dialog
    assert dialog.isVisible() and dialog.model_box.count() == 2  # rm@1 and irl@1 were audited
    dialog.model_box.setCurrentText("rm@1")
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("html"))
    assert not dialog.save_button.isEnabled()  # nothing built yet
    stages = []
    job = dialog.build()
    job.signals.progress.connect(lambda stage, done, total: stages.append(stage))
    assert not dialog.build_button.isEnabled() and dialog.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.written is not None, timeout=120_000)
    assert dialog.save_button.isEnabled() and not dialog.cancel_button.isEnabled()
    assert "rm@1 was audited on 2 datasets" in dialog.preview.toPlainText()
    assert dialog.stage.text().startswith("Built HTML")
    saved = dialog.save(str(tmp_path / "rm-report.html"))
    check = verify_report(saved)
    assert check.ok and check.model == "rm@1" and check.kind == "html"
    folder = dialog.folder
    dialog.close()
    assert not folder.exists()  # the unsaved build goes with the dialog


def test_cancel_stops_a_build_and_writes_nothing(window, qtbot, monkeypatch):
    import workstation.report.content as content

    def held(ws, model, *, progress, **kwargs):
        """Holds the build until it is cancelled: the click is sure to land inside it."""
        progress.stage_start("gathering the audit runs", 4)
        progress.step(1, 4)
        while True:
            progress.check()
            time.sleep(0.01)
    monkeypatch.setattr(content, "gather", held)
    window.actions["report"].trigger()
    dialog = window.report_dialog
    dialog.build()
    qtbot.waitUntil(lambda: dialog.stage.text() == "gathering the audit runs", timeout=20_000)
    assert dialog.progress.isVisible() and dialog.progress.maximum() == 4
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: dialog.job is None, timeout=20_000)
    assert dialog.stage.text() == "Cancelled; nothing was written."
    assert dialog.written is None and not dialog.save_button.isEnabled()
    assert not list(dialog.folder.iterdir())
