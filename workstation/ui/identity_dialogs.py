"""Signing in: unlock the analyst's identity once per session, create one at
the first edit when there is none, and show who is signed in.

``ensure_signer(parent)`` is what an action that signs (an edit, a release,
a rollback) calls on the GUI thread before it starts: it returns the session
signer, asking for the passphrase (or offering to create an identity) only
the first time. Background jobs then sign with the session signer.

workstation.identity (and with it the cryptography library) is imported only
when a dialog is needed: the window's start-up does not pay for it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel,
                               QLineEdit, QMessageBox, QPushButton, QVBoxLayout, QWidget)

from workstation.errors import WorkstationError

if TYPE_CHECKING:
    from workstation import identity


class _Session(QObject):
    """Tells widgets that the signed-in identity changed."""

    changed = Signal()


SESSION = _Session()


def ensure_signer(parent: QWidget | None) -> identity.Signer | None:
    """The session signer, unlocked now if need be; None if the analyst declined."""
    from workstation import identity

    signer = identity.session_signer()
    if signer is not None:
        return signer
    if not identity.list_identities():
        return _offer_create(parent)
    current = identity.current()
    if current is not None and current.demo:  # the demo's passphrase is stored: nothing to ask
        try:
            return _signed_in(identity.unlock_session(current.name))
        except WorkstationError:
            pass
    dialog = UnlockDialog(parent)
    return dialog.signer if dialog.exec() else None


def _signed_in(signer: identity.Signer) -> identity.Signer:
    SESSION.changed.emit()
    return signer


def _offer_create(parent: QWidget | None) -> identity.Signer | None:
    answer = QMessageBox.question(
        parent, "Create your identity",
        "Edits, approvals and releases are signed by your personal identity, and you have "
        "none yet.\n\nCreate one now? Its private key stays in your own folder, encrypted "
        "with a passphrase.")
    if answer != QMessageBox.StandardButton.Yes:
        return None
    dialog = CreateIdentityDialog(parent)
    return dialog.signer if dialog.exec() else None


class _Dialog(QDialog):
    """A form with an error line, and OK/Cancel; ``attempt`` runs on OK."""

    def __init__(self, title: str, ok_text: str, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.signer: identity.Signer | None = None
        self.form = QFormLayout()
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText(ok_text)
        buttons.accepted.connect(self._ok)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def _ok(self) -> None:
        try:
            self.signer = _signed_in(self.attempt())
        except WorkstationError as exc:
            self.error.setText(str(exc))  # stay open: the analyst tries again
            return
        self.accept()

    def attempt(self) -> identity.Signer:
        raise NotImplementedError


def _secret_field() -> QLineEdit:
    field = QLineEdit()
    field.setEchoMode(QLineEdit.EchoMode.Password)
    return field


class UnlockDialog(_Dialog):
    """Choose an identity and type its passphrase."""

    def __init__(self, parent: QWidget | None = None) -> None:
        from workstation import identity

        super().__init__("Sign in", "Sign in", parent)
        self.identities = QComboBox()
        current = identity.current_name()
        for item in identity.list_identities():
            self.identities.addItem(f"{item.name} ({item.key_id})", item.name)
            if item.name == current:
                self.identities.setCurrentIndex(self.identities.count() - 1)
        self.passphrase = _secret_field()
        self.form.addRow("Identity", self.identities)
        self.form.addRow("Passphrase", self.passphrase)
        self.passphrase.setFocus()

    def attempt(self) -> identity.Signer:
        from workstation import identity

        chosen = identity.get(self.identities.currentData())
        signer = identity.unlock(chosen, self.passphrase.text())
        self.passphrase.clear()
        identity.set_session_signer(signer)
        return signer


class CreateIdentityDialog(_Dialog):
    """A new identity: name, email, passphrase twice; it is signed in at once."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Create your identity", "Create", parent)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. ana")
        self.email = QLineEdit()
        self.email.setPlaceholderText("optional")
        self.passphrase, self.again = _secret_field(), _secret_field()
        self.form.addRow("Name", self.name)
        self.form.addRow("Email", self.email)
        self.form.addRow("Passphrase", self.passphrase)
        self.form.addRow("Passphrase again", self.again)

    def attempt(self) -> identity.Signer:
        from workstation import identity

        if self.passphrase.text() != self.again.text():
            raise WorkstationError("the two passphrases differ")
        made = identity.create(self.name.text().strip(), self.passphrase.text(),
                               email=self.email.text().strip() or None)
        identity.use(made.name)
        signer = identity.unlock(made, self.passphrase.text())
        identity.set_session_signer(signer)
        return signer


class SignedInButton(QPushButton):
    """The status bar's "signed in as …"; a click signs in when nobody is."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFlat(True)
        self.clicked.connect(lambda: ensure_signer(self.window()))
        SESSION.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        # Nobody can have unlocked an identity without importing the module.
        module = sys.modules.get("workstation.identity")
        signer = module.session_signer() if module else None
        if signer is None:
            self.setText("Not signed in")
            self.setToolTip("Sign in with your identity (asked at your first edit)")
        else:
            self.setText(f"Signed in as {signer.name}")
            self.setToolTip(f"Edits and releases are signed with key {signer.key_id}")
