"""The Releases tab of the models view: every release and release request
with its status and approvals, and Approve / Reject for a pending request.

It only shows core state (``releases.release_history``) and asks the panel
to act (``approve_requested``, ``reject_requested``); the panel runs the
core calls as jobs.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from workstation.ui.widgets import compact, plain_label

NOT_APPROVER = "Only an approver of this workspace approves or rejects a release request."


class ReleasesView(QWidget):
    """Releases and requests, newest last; Approve / Reject act on the chosen one."""

    COLUMNS = ("Release", "Version", "Status", "Requested by", "Approvals", "When")
    approve_requested = Signal(int)
    reject_requested = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Any] = []
        self.may_decide = True
        self.caption = plain_label()
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        compact(self.table)
        self.approve_button = QPushButton("Approve…")
        self.reject_button = QPushButton("Reject…")
        self.approve_button.clicked.connect(lambda: self._ask(self.approve_requested))
        self.reject_button.clicked.connect(lambda: self._ask(self.reject_requested))
        self.table.itemSelectionChanged.connect(self._enable)
        buttons = QHBoxLayout()
        buttons.addWidget(self.approve_button)
        buttons.addWidget(self.reject_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self._enable()

    def fill(self, items: list[Any], approvals_required: int, may_decide: bool) -> None:
        """``items``: ``releases.release_history``; ``may_decide``: the one
        signed in may approve (an approver, or nobody signed in yet)."""
        chosen = self.chosen()
        self.items, self.may_decide = items, may_decide
        waiting = sum(r.status == "pending" for r in items)
        self.caption.setText(
            f"A release takes effect with {approvals_required} approval"
            f"{'s' if approvals_required != 1 else ''} (policy release.approvals). "
            + (f"{waiting} request{'s' if waiting != 1 else ''} pending." if waiting
               else "No request is pending."))
        self.table.setRowCount(len(items))
        for row, rel in enumerate(items):
            approvals = ", ".join(a["name"] for a in rel.approvals)
            status = f"{rel.status} · forced" if rel.forced else rel.status
            values = (str(rel.id), rel.ref, status, rel.requested_by or "",
                      f"{len(rel.approvals)} of {rel.approvals_required}"
                      + (f": {approvals}" if approvals else ""),
                      rel.created_at[:19].replace("T", " "))
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, rel.id)
                if rel.forced:  # an approver sees why before signing
                    item.setToolTip("Forced past a failed regression gate: "
                                    f"{(rel.batch.get('gate') or {}).get('force_reason')}")
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.choose(chosen)
        self._enable()

    def chosen(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return self.items[rows[0].row()].id if rows and rows[0].row() < len(self.items) else None

    def choose(self, release_id: int | None) -> None:
        ids = [r.id for r in self.items]
        if release_id in ids:
            self.table.selectRow(ids.index(release_id))
        else:
            self.table.clearSelection()

    def _status(self) -> str | None:
        chosen = self.chosen()
        return next((r.status for r in self.items if r.id == chosen), None)

    def _enable(self) -> None:
        status = self._status()
        self.approve_button.setEnabled(self.may_decide and status == "pending")
        self.reject_button.setEnabled(self.may_decide and status in ("pending", "outdated"))
        tip = "" if self.may_decide else NOT_APPROVER
        self.approve_button.setToolTip(tip)
        self.reject_button.setToolTip(tip)

    def _ask(self, signal: Any) -> None:
        chosen = self.chosen()
        if chosen is not None:
            signal.emit(chosen)
