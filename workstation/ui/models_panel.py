"""The models view: versions and their lineage, metrics and manifests; the
regression comparison of two versions; release (a request, approved by as
many approvers as the policy asks), approve or reject, rollback and export;
the ledger and workspace verification.

Everything here shows core state and calls core functions through jobs:
``models.lineage`` (what is shown), and through ``version_jobs`` the
regression report (compare, the release gate: shown before a release, which
computes it again itself and refuses without it) and training; ``releases``
(release, approve, reject, rollback, export) and ``verify``. The tree and
details are in ``versions``, the comparison in ``compare_view``, releases and
requests in ``releases_view``. The small dialog functions at the top are
module functions so that tests can answer them.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QInputDialog, QLabel,
                               QMessageBox, QPushButton, QSplitter, QStackedWidget,
                               QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout,
                               QWidget)

from workstation import policy, releases, trust
from workstation.models import lineage
from workstation.models.lineage import VersionNode
from workstation.ui import forms, version_jobs
from workstation.ui.colours import semantic_colour
from workstation.ui.compare_view import CompareView
from workstation.ui.context import AppContext
from workstation.ui.identity_dialogs import ensure_signer
from workstation.ui.releases_view import ReleasesView
from workstation.ui.versions import VersionDetails, VersionTree
from workstation.ui.widgets import EmptyState, compact
from workstation.ui.wording import count

VERIFY_HINT = ("“Verify workspace” recomputes every hash: review log, ledger, release "
               "signatures and stored artifacts.")


# -- dialogs (module functions: tests replace them) ------------------------------------

def confirm(parent: QWidget, title: str, text: str, accept: str = "OK") -> bool:
    """Ask before a consequential step; True when the analyst accepts."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    yes = box.addButton(accept, QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(box.addButton(QMessageBox.StandardButton.Cancel))
    box.exec()
    return box.clickedButton() is yes


def ask_text(parent: QWidget, title: str, label: str) -> str | None:
    text, ok = QInputDialog.getText(parent, title, label)
    return text if ok else None


def ask_retrain(parent: QWidget, node: VersionNode, ws: Any,
                dataset: str | None) -> dict[str, Any] | None:
    """The Retrain form with ``node`` as the parent (and ``dataset`` when it
    fits); its values, or None when cancelled."""
    dialog = forms.RetrainDialog(forms.dataset_choices(ws), forms.model_choices(ws), dataset,
                                 node.id, parent)
    return dialog.values() if dialog.exec() else None


def choose_export_path(parent: QWidget, suggested: str) -> str | None:
    """A .zip file, or a new folder (the "Folder" filter) to export a release to."""
    path, chosen = QFileDialog.getSaveFileName(
        parent, "Export release", suggested, "Zip archive (*.zip);;Folder (*)")
    if path and chosen.startswith("Zip") and not path.lower().endswith(".zip"):
        path += ".zip"
    return path or None


def inform(parent: QWidget, title: str, text: str, ok: bool = True) -> None:
    """A result the analyst should see (non-blocking)."""
    icon = QMessageBox.Icon.Information if ok else QMessageBox.Icon.Warning
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()


# -- the ledger -------------------------------------------------------------------------

class LedgerView(QWidget):
    """The ledger's rows, newest last, and the last verification's result."""

    COLUMNS = ("Seq", "Time", "Actor", "Kind", "Summary")

    def __init__(self) -> None:
        super().__init__()
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        compact(self.table)
        self.caption = QLabel(wordWrap=True)
        self.verify_result = QLabel(VERIFY_HINT, wordWrap=True)
        self.verify_result.setTextFormat(Qt.TextFormat.RichText)
        self.verified: tuple[Any, str] | None = None  # (report, when)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.verify_result)

    def fill(self, rows: list[lineage.LedgerRow]) -> None:
        self.caption.setText(
            f"{len(rows):,} ledger rows, append-only and hash-chained." if rows else
            "The ledger is empty: releases, rollbacks and signing-key changes are recorded "
            "here.")
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            values = (str(r.seq), r.time[:19].replace("T", " "), r.actor, r.kind, r.summary)
            for col, text in enumerate(values):
                self.table.setItem(i, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.scrollToBottom()

    def show_verify(self, report: Any) -> None:
        """The verification's result, with the time it was made."""
        self.verified = (report, time.strftime("%H:%M:%S"))
        self._show_verified(older=False)

    def verify_is_older(self) -> None:
        """The workspace changed since: the result says it is of an earlier state."""
        if self.verified is not None:
            self._show_verified(older=True)

    def forget_verify(self) -> None:
        """Another workspace: no result of the last one."""
        self.verified = None
        self.verify_result.setText(VERIFY_HINT)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.PaletteChange and self.verified is not None:
            self._show_verified(self._older)  # the colour is baked into the text
        super().changeEvent(event)

    def _show_verified(self, older: bool) -> None:
        self._older = older
        report, when = self.verified
        colour = semantic_colour("fixed" if report.ok else "broken", self.palette()).name()
        what = "OK" if report.ok else count(len(report.failures), "problem")
        problems = "".join(f"<br>• {html.escape(f, quote=False)}" for f in report.failures)
        checked = html.escape(_checked_text(report.checked), quote=False)
        since = ", before later changes (verify again)" if older else ""
        self.verify_result.setText(f'<span style="color:{colour}; font-weight:bold">Verify: '
                                   f'{what}</span> · at {when}{since} · checked {checked}'
                                   f'{problems}')


def _approved_text(rel: releases.Release) -> str:
    if rel.status == "in-force":
        return f"{rel.ref} (release {rel.id}) is now the release in force."
    return (f"Release {rel.id} ({rel.ref}) is still pending: {len(rel.approvals)} of "
            f"{rel.approvals_required} approvals.")


def _checked_text(checked: dict[str, int]) -> str:
    """"0 review log rows, 1 release" (the report names what it counted, in plural)."""
    def words(name: str, n: int) -> str:
        name = name.replace("_", " ")
        return name[:-1] if n == 1 and name.endswith("s") else name
    return ", ".join(f"{v:,} {words(k, v)}" for k, v in checked.items())


# -- the panel -----------------------------------------------------------------------------

class ModelsPanel(QWidget):
    """Model versions with lineage, comparison, release, rollback, export,
    the ledger and verification."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.nodes: dict[int, VersionNode] = {}
        self.audits: dict[int, list] = {}
        self._build()
        ctx.data_changed.connect(self._data_changed)
        ctx.workspace_changed.connect(self._workspace_changed)
        ctx.model_selected.connect(self.tree.choose)
        self.refresh()

    # -- layout ----------------------------------------------------------------------
    def _build(self) -> None:
        self.tree = VersionTree()
        self.details = VersionDetails()
        self.compare_view = CompareView()
        self.ledger_view = LedgerView()
        self.releases_view = ReleasesView()
        self.tabs = QTabWidget()
        for widget, name in ((self.details, "Details"), (self.compare_view, "Compare"),
                             (self.releases_view, "Releases"), (self.ledger_view, "Ledger")):
            self.tabs.addTab(widget, name)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.tree)
        split.addWidget(self.tabs)
        split.setStretchFactor(1, 2)
        split.setSizes([380, 720])
        self.no_models = EmptyState()  # no version yet: how to get a first one
        self.no_models.action.connect(self.ctx.action_requested.emit)
        self.pages = QStackedWidget()
        self.pages.addWidget(split)
        self.pages.addWidget(self.no_models)
        layout = QVBoxLayout(self)
        layout.addLayout(self._toolbar())
        layout.addWidget(self.pages, 1)
        self.tree.version_chosen.connect(self._version_chosen)
        self.details.run_chosen.connect(self.ctx.run_selected.emit)
        self.compare_view.compare_requested.connect(self.compare)
        self.compare_view.example_clicked.connect(self.ctx.example_selected.emit)
        self.releases_view.approve_requested.connect(self.approve)
        self.releases_view.reject_requested.connect(self.reject)

    def _toolbar(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for key, text, slot in (("release", "Release…", self.release),
                                ("rollback", "Roll back…", self.rollback),
                                ("export", "Export release…", self.export),
                                ("retrain", "Retrain…", self.retrain),
                                ("verify", "Verify workspace", self.verify)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            self.buttons[key] = button
            row.addWidget(button)
        row.addStretch(1)
        return row

    # -- state -------------------------------------------------------------------------
    def refresh(self) -> None:
        ws = self.ctx.ws
        self.nodes = lineage.version_tree(ws) if ws is not None else {}
        self.audits = {vid: lineage.latest_audits(ws, vid) for vid in self.nodes} \
            if ws is not None else {}
        self.tree.fill(self.nodes, self.audits)  # keeps the analyst's choice
        self.compare_view.set_versions(self.nodes)  # keeps the pair picked there
        self.ledger_view.fill(lineage.ledger_rows(ws) if ws is not None else [])
        self._fill_releases(ws)
        node = self.selected()
        self.details.show_version(node, self.audits.get(self.tree.chosen(), []))
        self._enable(node)
        self._show_first_steps(ws)

    def _fill_releases(self, ws: Any) -> None:
        if ws is None:
            self.releases_view.fill([], 1, False)
            return
        self.releases_view.fill(releases.release_history(ws),
                                policy.get(ws, "release.approvals"), self._may_approve(ws))

    @staticmethod
    def _may_approve(ws: Any) -> bool:
        """Whoever is signed in is an approver here (nobody yet: they may be)."""
        from workstation.identity import session_signer

        signer = session_signer()
        key = trust.get_key(ws, signer.key_id) if signer is not None else None
        return signer is None or (key is not None and key.active and "approver" in key.roles)

    def _show_first_steps(self, ws: Any) -> None:
        """With no version yet, what to do for a first one."""
        self.pages.setCurrentIndex(0 if self.nodes or ws is None else 1)
        if ws is None or self.nodes:
            return
        if lineage.datasets(ws):
            self.no_models.show_state(
                "No model yet", "Train a reward model on a dataset as you reviewed it, or "
                "register an ONNX model you already have.", "Train a model…", "train",
                "Register a model…", "register")
        else:
            self.no_models.show_state(
                "No model yet", "Import a dataset first: a model is trained on one, and "
                "audited on it.", "Import a dataset…", "import", "Register a model…",
                "register")

    def _workspace_changed(self, _ws: Any) -> None:
        """Another workspace: nothing of the last one's stays on screen."""
        self.tree.clear()
        self.tree.items = {}
        self.compare_view.clear()
        self.ledger_view.forget_verify()
        self.refresh()

    def _data_changed(self, changes: Any) -> None:
        changes = set(changes or ())
        if changes:  # verification covers every table: a change dates it
            self.ledger_view.verify_is_older()
        if changes & {"models", "releases", "runs", "ledger", "datasets"}:
            self.refresh()

    def selected(self) -> VersionNode | None:
        return self.nodes.get(self.tree.chosen())

    def _version_chosen(self, version_id: int | None) -> None:
        """The analyst chose a version (here, or a run of it elsewhere)."""
        node = self.nodes.get(version_id)
        self.details.show_version(node, self.audits.get(version_id, []))
        if node is not None:
            self.compare_view.set_versions(self.nodes, node.id)
            self.ctx.model_selected.emit(node.id)
        self._enable(node)

    def _enable(self, node: VersionNode | None) -> None:
        self.buttons["release"].setEnabled(node is not None and not node.released)
        self.buttons["rollback"].setEnabled(node is not None and self._can_roll_back(node.model))
        self.buttons["export"].setEnabled(node is not None and node.ever_released)
        self.buttons["retrain"].setEnabled(node is not None)

    def _can_roll_back(self, model: str) -> bool:
        return self.ctx.ws is not None and \
            lineage.rollback_target(self.ctx.ws, model)[1] is not None

    def _encoder(self) -> Any:
        return self.ctx.encoder

    def _analyst(self) -> str:
        return self.ctx.analyst()

    # -- compare -----------------------------------------------------------------------
    def compare(self, candidate: int, baseline: int) -> None:
        if candidate == baseline:
            self.compare_view.verdict.setText("Pick two different versions.")
            return
        refs = self.nodes[candidate].ref, self.nodes[baseline].ref
        self.compare_view.busy(f"Comparing {refs[0]} with {refs[1]}…")
        self.tabs.setCurrentWidget(self.compare_view)
        job = self.ctx.run_job(f"Compare {refs[0]} with {refs[1]}",
                               lambda ws, p: version_jobs.compare_versions(
                                   ws, candidate, baseline, p, self._encoder()),
                               self.compare_view.show_report)
        job.signals.failed.connect(lambda msg, _d: self.compare_view.busy(f"Comparison failed: "
                                                                          f"{msg}"))
        job.signals.ended.connect(lambda: self.compare_view.compare_button.setEnabled(True))

    # -- release, rollback, export ------------------------------------------------------
    def release(self) -> None:
        node = self.selected()
        if node is None:
            return
        self.ctx.status.emit(f"Checking the regression gate for {node.ref}…")
        self.ctx.run_job(f"Regression gate for {node.ref}",
                         lambda ws, p: version_jobs.gate_report(ws, node.id, p, self._encoder()),
                         lambda report: self._confirm_release(node, report))

    def _confirm_release(self, node: VersionNode, report: Any) -> None:
        current = lineage.release_ref(self.ctx.ws, lineage.rollback_target(self.ctx.ws,
                                                                            node.model)[0])
        text = version_jobs.release_text(node, current, report,
                                         policy.get(self.ctx.ws, "release.approvals"))
        evidence = report if isinstance(report, dict) else None
        failed = evidence is not None and (evidence.get("gate") or {}).get("pass") is False
        if not failed:
            if confirm(self, f"Release {node.ref}", text, "Release"):
                self._release(node, evidence)
            return
        if not confirm(self, f"Release {node.ref}: the gate failed",
                       text + "\n\nRelease anyway? You will be asked for a reason, which the "
                              "signed governance batch records.", "Release anyway…"):
            return
        reason = ask_text(self, "Release anyway", "Why release past the failed regression gate?")
        if reason and reason.strip():
            self._release(node, evidence, force=True, reason=reason.strip())

    def _release(self, node: VersionNode, report: dict | None, force: bool = False,
                 reason: str = "") -> None:
        if ensure_signer(self) is None:
            return

        def done(rel: releases.Release) -> None:
            if rel.status == "in-force":
                inform(self, "Released", f"{rel.ref} is the release in force, signed with key "
                                         f"{rel.key_id}.")
                return
            self.releases_view.choose(rel.id)
            self.tabs.setCurrentWidget(self.releases_view)
            inform(self, "Release requested",
                   f"{rel.ref} is release request {rel.id}, pending: {len(rel.approvals)} of "
                   f"{rel.approvals_required} approvals. An approver approves it under "
                   f"Releases (or `workstation approve {rel.id}`).")
        encoder = self._encoder()
        # The release computes the regression report again, inside its own
        # transaction, and refuses when it cannot: what was shown is a preview.
        self.ctx.run_job(f"Release {node.ref}",
                         lambda ws, p: releases.release(ws, node.id, force=force,
                                                        force_reason=reason, encoder=encoder,
                                                        progress=p),
                         done, {"releases", "models"})

    def approve(self, release_id: int) -> None:
        rel = releases.get_release(self.ctx.ws, release_id)
        if not confirm(self, f"Approve release {rel.id}",
                       f"Approve {rel.ref} (release {rel.id}, requested by "
                       f"{rel.requested_by})?\n\nApprovals so far: {len(rel.approvals)} of "
                       f"{rel.approvals_required}. Your signature is recorded in the ledger "
                       f"and in the exported release.", "Approve"):
            return
        if ensure_signer(self) is None:
            return
        self.ctx.run_job(f"Approve release {rel.id}",
                         lambda ws, _p: releases.approve(ws, release_id),
                         lambda done: inform(self, "Approved", _approved_text(done)),
                         {"releases", "models"})

    def reject(self, release_id: int) -> None:
        rel = releases.get_release(self.ctx.ws, release_id)
        reason = ask_text(self, f"Reject release {rel.id}",
                          f"Why reject {rel.ref}? (recorded in the ledger)")
        if not reason or not reason.strip() or ensure_signer(self) is None:
            return
        self.ctx.run_job(f"Reject release {rel.id}",
                         lambda ws, _p: releases.reject(ws, release_id, reason.strip()),
                         lambda done: inform(self, "Rejected", f"Release {done.id} "
                                                               f"({done.ref}) is rejected."),
                         {"releases"})

    def rollback(self) -> None:
        node = self.selected()
        if node is None:
            return
        current, previous = lineage.rollback_target(self.ctx.ws, node.model)
        from_ref, to_ref = (lineage.release_ref(self.ctx.ws, r) for r in (current, previous))
        if previous is None:
            inform(self, "Roll back", f"{node.model} has no earlier release in force to roll "
                                      f"back to.", ok=False)
            return
        if not confirm(self, f"Roll back {node.model}",
                       f"Roll back {node.model}?\n\nFrom: {from_ref} (the release in force)\n"
                       f"To:   {to_ref}\n\nThe rollback is recorded in the ledger.", "Roll back"):
            return
        reason = ask_text(self, "Roll back", "Reason (recorded in the ledger):") or ""
        if ensure_signer(self) is None:
            return
        self.ctx.run_job(f"Roll back {node.model}",
                         lambda ws, _p: releases.rollback(ws, node.model, reason),
                         lambda rel: inform(self, "Rolled back",
                                            f"{rel.ref} is the release in force again."),
                         {"releases", "models"})

    def export(self) -> None:
        node = self.selected()
        if node is None or not node.ever_released:
            return
        beside = Path(self.ctx.ws.path).parent  # where the analyst keeps this project
        path = choose_export_path(self, str(beside / f"{node.model}-{node.version}.zip"))
        if not path:
            return
        self.ctx.run_job(f"Export {node.ref}",
                         lambda ws, _p: releases.export_release(ws, node.ref, path),
                         lambda out: inform(self, "Exported",
                                            f"{node.ref} was exported to {out}.\nCheck it "
                                            f"offline with `workstation verify-release "
                                            f"{out} --trust APPROVERS.pem`."))

    # -- verify and retrain --------------------------------------------------------------
    def verify(self) -> None:
        from workstation.verify import verify_workspace

        self.ledger_view.verify_result.setText("Verifying…")
        self.ctx.run_job("Verify workspace", lambda ws, _p: verify_workspace(ws),
                         self._verified)

    def _verified(self, report: Any) -> None:
        self.ledger_view.show_verify(report)
        if report.ok:
            inform(self, "Verify", "The workspace verifies: every hash matches.\n\nChecked "
                                   + _checked_text(report.checked) + ".")
        else:
            inform(self, "Verify", "The workspace does NOT verify:\n\n"
                                   + "\n".join(f"• {f}" for f in report.failures), ok=False)

    def retrain(self) -> None:
        node = self.selected()
        if node is None or self.ctx.ws is None:
            return
        values = ask_retrain(self, node, self.ctx.ws, self.ctx.dataset)
        if not values:
            return
        analyst, encoder = self._analyst(), self._encoder()
        dataset = values["dataset"]
        self.ctx.run_job(f"Training {values['name']} on {dataset}",
                         lambda ws, p: version_jobs.train_version(
                             ws, dataset, values["name"], values["parent"], values["seed"], p,
                             encoder, analyst),
                         lambda result: inform(self, "Retrain", f"Trained {result.version.ref} "
                                                                f"on {dataset}."),
                         {"models"})
