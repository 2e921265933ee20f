"""The running job in the status bar: what it does, how far it has come (a
count, the rate and the time left once they can be told), and its Cancel
button; shown only once a job has run for more than half a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from workstation.ui.jobs import Job, JobRunner

SHOW_JOB_AFTER_MS = 500
BAR_STEPS = 1000        # the bar's range: counts of any size (bytes too) fit in it
RATE_AFTER_S = 2.0      # a rate measured over less time says little
COUNTS_BELOW = 1_000_000  # larger totals (bytes) read better as a share


@dataclass
class StageClock:
    """When the job's current stage began, and the last report of it."""

    stage: str
    started: float
    done: int = 0
    total: int = 0


def progress_text(done: int, total: int, seconds: float) -> str:
    """"1,234 of 9,000 · 52/s · about 3 min left", from ``seconds`` spent on
    the stage so far; a share for totals too large to count by eye."""
    if total <= 0:
        return f"{done:,} so far" if done > 0 else ""
    done = min(done, total)
    counted = total < COUNTS_BELOW
    text = f"{done:,} of {total:,}" if counted else f"{done / total:.0%}"
    if seconds >= RATE_AFTER_S and 0 < done < total:
        rate = done / seconds
        if counted:
            text += f" · {rate:,.0f}/s" if rate >= 10 else f" · {rate:.1f}/s"
        text += f" · about {duration_text((total - done) / rate)} left"
    return text


def duration_text(seconds: float) -> str:
    """A time left as a person would say it: "5 s", "40 s", "3 min", "1 h 20 min"."""
    if seconds < 60:
        return f"{max(5, int(round(seconds / 5)) * 5)} s"
    if seconds < 3600:
        return f"{int(round(seconds / 60))} min"
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class JobBar(QWidget):
    """The running job in the status bar: what it does, how far, Cancel.
    Shown only once a job has run for more than half a second."""

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.clock = time.monotonic  # tests set their own
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
        self.stages: dict[int, StageClock] = {}
        runner.started.connect(self._started)
        runner.ended.connect(self._ended)
        self.hide()

    def _started(self, job: Job) -> None:
        self.stages[id(job)] = StageClock(job.title, self.clock())
        job.signals.progress.connect(lambda stage, done, total: self._progress(job, stage,
                                                                                done, total))
        QTimer.singleShot(SHOW_JOB_AFTER_MS, lambda: self._maybe_show(job))

    def _maybe_show(self, job: Job) -> None:
        if job in self.runner.running and self.shown is None:
            self.shown = job
            self.cancel.setEnabled(True)
            self._draw(job)
            self.show()

    def _progress(self, job: Job, stage: str, done: int, total: int) -> None:
        clock = self.stages.get(id(job))
        if clock is None:
            return
        if stage != clock.stage:  # a new stage: its own rate and time left
            clock = self.stages[id(job)] = StageClock(stage, self.clock())
        clock.done, clock.total = done, total
        if job is self.shown:
            self._draw(job)

    def _draw(self, job: Job) -> None:
        if job.progress.cancelled:
            self.label.setText(f"{job.title}: cancelling…")
            return
        clock = self.stages[id(job)]
        what = f"{job.title}: {clock.stage}" if clock.stage and clock.stage != job.title \
            else job.title
        how_far = progress_text(clock.done, clock.total, self.clock() - clock.started)
        self.label.setText(f"{what} · {how_far}" if how_far else what)
        if clock.total > 0:
            self.bar.setRange(0, BAR_STEPS)
            self.bar.setValue(int(BAR_STEPS * min(clock.done, clock.total) / clock.total))
        else:
            self.bar.setRange(0, 0)  # how far cannot be told: a busy bar

    def _ended(self, job: Job) -> None:
        self.stages.pop(id(job), None)
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
