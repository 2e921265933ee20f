"""Signing in from the window (pytest-qt, offscreen): the first edit asks for
the passphrase once, the edit is signed by that identity, the status bar says
who is signed in; with no identity at all the window offers to create one."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QMessageBox

from tests.conftest import TEST_PASSPHRASE
from tests.gui_support import (copy_template, main_window, own_settings,  # noqa: F401
                               template)
from workstation import identity, review
from workstation.ui import identity_dialogs


@pytest.fixture
def window(qtbot, tmp_path, template, no_session):  # noqa: F811
    """The main window on a copy of the GUI template, nobody signed in."""
    with main_window(qtbot, copy_template(template, tmp_path / "ws.duckdb")) as win:
        qtbot.waitUntil(lambda: not win.browser.model.loading, timeout=10_000)
        yield win


def when_a_dialog_opens(qtbot, answer) -> list[str]:
    """Run ``answer(dialog)`` on the next modal dialog (as the analyst would
    type into it); returns what the dialogs said in their error line."""
    said: list[str] = []

    def poll() -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            QTimer.singleShot(10, poll)
            return
        answer(dialog, said)
    QTimer.singleShot(0, poll)
    return said


def click_ok(dialog) -> None:
    buttons = dialog.findChild(QDialogButtonBox)
    buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def flip_first_row(qtbot, win) -> None:
    win.browser.view.setFocus()
    qtbot.keyClick(win.browser.view, "f")


def test_unlock_once_then_edits_are_signed_by_that_identity(qtbot, window, make_identity,
                                                           monkeypatch):
    ana = make_identity("gui-ana")
    assert window.signed_in.text() == "Not signed in"

    def sign_in(dialog, said):
        assert isinstance(dialog, identity_dialogs.UnlockDialog)
        dialog.identities.setCurrentIndex(dialog.identities.findData("gui-ana"))
        dialog.passphrase.setText("not the passphrase")
        click_ok(dialog)
        said.append(dialog.error.text())  # the dialog stays open, saying why
        dialog.passphrase.setText(TEST_PASSPHRASE)
        click_ok(dialog)
    said = when_a_dialog_opens(qtbot, sign_in)
    flip_first_row(qtbot, window)
    assert said == ["wrong passphrase for identity 'gui-ana'"]
    [row] = review.entries(window.ctx.ws)
    assert (row["analyst"], row["key_id"]) == ("gui-ana", ana.key_id) and row["signature"]
    assert identity.session_signer().key_id == ana.key_id
    assert window.signed_in.text() == "Signed in as gui-ana"

    def never(*args, **kwargs):
        raise AssertionError("asked for the passphrase a second time")
    monkeypatch.setattr(identity_dialogs.UnlockDialog, "exec", never)
    window.reviewer.undo()  # Ctrl+Z's action
    assert [r["action"] for r in review.entries(window.ctx.ws)] == ["edit", "undo"]
    assert {r["key_id"] for r in review.entries(window.ctx.ws)} == {ana.key_id}


def test_with_no_identity_the_first_edit_offers_to_create_one(qtbot, window, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv(identity.HOME_ENV, str(tmp_path / "new-home"))
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args, **kwargs: asked.append(args[1]) or
                        QMessageBox.StandardButton.Yes)

    def create(dialog, said):
        assert isinstance(dialog, identity_dialogs.CreateIdentityDialog)
        dialog.name.setText("newcomer")
        dialog.passphrase.setText("a long passphrase")
        dialog.again.setText("a long passphrase")
        click_ok(dialog)
    when_a_dialog_opens(qtbot, create)
    flip_first_row(qtbot, window)
    assert asked == ["Create your identity"]
    made = identity.get("newcomer")
    assert identity.current_name() == "newcomer"
    [row] = review.entries(window.ctx.ws)
    assert (row["analyst"], row["key_id"]) == ("newcomer", made.key_id)
    assert (tmp_path / "new-home" / "identities" / "newcomer.key").stat().st_mode & 0o777 == 0o600


def test_declining_to_sign_in_changes_nothing(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setenv(identity.HOME_ENV, str(tmp_path / "empty-home"))
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args, **kwargs: QMessageBox.StandardButton.No)
    flip_first_row(qtbot, window)
    assert review.entries(window.ctx.ws) == []
    assert window.statusBar().currentMessage() == "not signed in: nothing changed"


def test_opening_an_old_workspace_says_which_backups_hold_its_key(qtbot, tmp_path):
    from tests.old_workspaces import make_v3_with_release
    from tests.test_releases import _onnx_bytes
    from workstation.ui.main_window import MainWindow

    path = tmp_path / "old.duckdb"
    make_v3_with_release(path, _onnx_bytes(1.0))
    win = MainWindow()
    qtbot.addWidget(win)
    assert win.open_workspace(str(path))
    message = win.statusBar().currentMessage()
    assert "no longer holds its private signing key" in message and "old.duckdb.v3.bak" in message
    win.close()
