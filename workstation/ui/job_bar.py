"""The running job in the status bar: what it does, how far it has come, and
its Cancel button; shown only once a job has run for more than half a second.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from workstation.ui.jobs import Job, JobRunner

SHOW_JOB_AFTER_MS = 500


class JobBar(QWidget):
    """The running job in the status bar: what it does, how far, Cancel.
    Shown only once a job has run for more than half a second."""

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(False)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self._cancel)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label)
        row.addWidget(self.bar)
        row.addWidget(self.cancel)
        self.shown: Job | None = None
        self.started_at: dict[int, float] = {}
        runner.started.connect(self._started)
        runner.ended.connect(self._ended)
        self.hide()

    def _started(self, job: Job) -> None:
        self.started_at[id(job)] = time.monotonic()
        job.signals.progress.connect(lambda stage, done, total: self._progress(job, stage,
                                                                                done, total))
        QTimer.singleShot(SHOW_JOB_AFTER_MS, lambda: self._maybe_show(job))

    def _maybe_show(self, job: Job) -> None:
        if job in self.runner.running and self.shown is None:
            self.shown = job
            self.label.setText(job.title)
            self.bar.setRange(0, 0)
            self.cancel.setEnabled(True)
            self.show()

    def _progress(self, job: Job, stage: str, done: int, total: int) -> None:
        if job is not self.shown:
            return
        self.label.setText(f"{job.title}: {stage}" if stage and stage != job.title else job.title)
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
        else:
            self.bar.setRange(0, 0)

    def _ended(self, job: Job) -> None:
        self.started_at.pop(id(job), None)
        if job is not self.shown:
            return
        self.shown = None
        self.hide()
        for other in self.runner.running:  # another long job still running
            self._maybe_show(other)
            break

    def _cancel(self) -> None:
        if self.shown is not None:
            self.shown.cancel()
            self.label.setText(f"{self.shown.title}: cancelling…")
            self.cancel.setEnabled(False)
