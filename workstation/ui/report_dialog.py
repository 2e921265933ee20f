"""Report…: build a model version's signed audit report in the background (its
progress and Cancel in the dialog), preview what it says, and save it.

The report is built into a private temporary folder; Save copies that file
where the analyst chooses, so a cancelled or unsaved report leaves nothing
behind. The core (``workstation.report``) does all the work; this dialog only
wires it to a job.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QProgressBar, QPushButton, QTextBrowser,
                               QVBoxLayout, QWidget)

from workstation.ui.context import AppContext
from workstation.ui.jobs import Job

FORMATS = (("HTML (one self-contained file)", "html"), ("PDF", "pdf"), ("JSON", "json"))


def audited_versions(ws: Any) -> list[str]:
    """MODEL@V of every version with an audit run, newest first."""
    rows = ws.execute("SELECT DISTINCT mv.model || '@' || mv.version, mv.id FROM audit_runs r "
                      "JOIN model_versions mv ON mv.id = r.model_version_id "
                      "WHERE r.kind = 'audit' ORDER BY mv.id DESC").fetchall()
    return [r[0] for r in rows]


class ReportDialog(QDialog):
    """Choose a version and a format, build, preview, save."""

    def __init__(self, ctx: AppContext, versions: list[str], current: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Audit report")
        self.ctx = ctx
        self.job: Job | None = None
        self.written: Any = None
        self.folder = Path(tempfile.mkdtemp(prefix="workstation-report-"))
        self.model_box, self.format_box = QComboBox(), QComboBox()
        self.model_box.addItems(versions)
        if current in versions:
            self.model_box.setCurrentText(current)
        for text, fmt in FORMATS:
            self.format_box.addItem(text, fmt)
        self.progress, self.stage = QProgressBar(), QLabel("")
        self.preview = QTextBrowser()
        self.preview.setOpenLinks(False)
        self.preview.setPlaceholderText("Build the report to see its summary here.")
        self.build_button, self.cancel_button = QPushButton("&Build"), QPushButton("Cancel build")
        self.save_button = QPushButton("&Save…")
        self._lay_out()
        self._idle()

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Model version:", self.model_box)
        form.addRow("Format:", self.format_box)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.build_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.save_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.build_button.clicked.connect(self.build)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self.save)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.stage)
        layout.addLayout(row)
        layout.addWidget(self.preview, 1)
        layout.addWidget(buttons)
        self.resize(640, 480)

    def _idle(self) -> None:
        running = self.job is not None
        self.build_button.setEnabled(not running and self.model_box.count() > 0)
        self.cancel_button.setEnabled(running)
        self.save_button.setEnabled(not running and self.written is not None)
        self.progress.setVisible(running)

    # -- the job ---------------------------------------------------------------------
    def build(self) -> Job | None:
        from workstation.ui.identity_dialogs import ensure_signer

        signer = ensure_signer(self)  # the report is signed by the analyst's identity
        if signer is None:
            self.stage.setText("Not built: the report is signed by your identity.")
            return None
        model, fmt = self.model_box.currentText(), self.format_box.currentData()
        out = self.folder / f"{model.replace('@', '-v')}-report.{fmt}"
        encoder = self.ctx.encoder

        def work(ws: Any, progress: Any) -> Any:
            from workstation.report import build_report

            return build_report(ws, model, out, signer=signer, progress=progress,
                                encoder=encoder)
        self.written = None
        self.preview.clear()
        self.job = self.ctx.run_job(f"Report of {model}", work, self._done,
                                    on_failed=self._failed)
        self.job.signals.progress.connect(self._progress)
        self.job.signals.cancelled.connect(lambda: self._ended("Cancelled; nothing was written."))
        self._idle()
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _progress(self, stage: str, done: int, total: int) -> None:
        self.stage.setText(stage)
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(min(done, total) if total else 0)

    def _done(self, written: Any) -> None:
        self.written = written
        pages = f", {written.pages} pages" if written.pages else ""
        self._ended(f"Built {written.format.upper()} ({written.bytes:,} bytes{pages}) in "
                    f"{written.seconds:.1f} s, signed by {written.signer} (key "
                    f"{written.key_id}). Save it to keep it.")
        self.preview.setPlainText(f"{written.summary}\n\nRuns: "
                                  f"{', '.join(map(str, written.runs))}. {written.limits} "
                                  f"limits are listed in the report.")

    def _failed(self, message: str) -> None:
        self._ended(f"Not built: {message}")

    def _ended(self, text: str) -> None:
        self.job = None
        self.stage.setText(text)
        self._idle()

    def save(self, path: str | None = None) -> Path | None:
        """Copy the built report to ``path`` (asked for when not given)."""
        if self.written is None:
            return None
        source = Path(self.written.path)
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save the report", source.name,
                                                  f"Report (*{source.suffix})")
        if not path:
            return None
        shutil.copyfile(source, path)
        self.stage.setText(f"Saved to {path}.")
        return Path(path)

    def done(self, result: int) -> None:  # noqa: D401 (Qt's name): closing cleans up
        self.cancel()
        super().done(result)
        shutil.rmtree(self.folder, ignore_errors=True)
