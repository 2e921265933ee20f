"""Background jobs: core work on a thread pool, reported through signals.

A job runs one core function with its own workspace connection and a
``Progress`` whose cancel flag the Cancel button sets. It never touches
widgets; the ``JobRunner`` turns its signals into a progress bar, a Cancel
button and readable error messages.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal

from workstation.errors import Cancelled, WorkstationError
from workstation.progress import Progress
from workstation.workspace import Workspace

JobFunction = Callable[[Workspace, Progress], Any]


class JobSignals(QObject):
    progress = Signal(str, int, int)
    finished = Signal(object)
    failed = Signal(str, str)  # one-line message, details
    cancelled = Signal()
    ended = Signal()


class Job(QRunnable):
    """One piece of core work. ``fn(ws, progress)`` runs on a pool thread
    with a connection of its own."""

    # Progress is forwarded at most this often, so a fast loop cannot flood
    # the GUI thread's event queue.
    EMIT_INTERVAL = 0.05

    def __init__(self, title: str, fn: JobFunction, ws: Workspace | None) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.title = title
        self.fn = fn
        self.ws = ws
        self.signals = JobSignals()
        self.progress = Progress(self._report)
        self._last_emit = 0.0
        # The newest report the throttle held back: the runner's timer sends
        # it on, so the last figure before a long pause is never lost.
        self._held: tuple[str, int, int] | None = None
        self._lock = threading.Lock()
        self.result: Any = None
        self.error: str | None = None
        # True when whoever started the job shows its failure (the window
        # then shows no message of its own).
        self.shows_own_failure = False

    def cancel(self) -> None:
        self.progress.cancel()

    def _report(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            if not (now - self._last_emit >= self.EMIT_INTERVAL or (total and done >= total)):
                self._held = (stage, done, total)
                return
            self._last_emit, self._held = now, None
        self.signals.progress.emit(stage or self.title, done, total)

    def send_held_progress(self) -> None:
        """Emit the report the throttle held back, if it is still the newest
        (called on the GUI thread by the runner's timer)."""
        with self._lock:
            held, self._held = self._held, None
            if held is not None:
                self._last_emit = time.monotonic()
        if held is not None:
            stage, done, total = held
            self.signals.progress.emit(stage or self.title, done, total)

    def run(self) -> None:
        thread_ws = self.ws.for_thread() if self.ws is not None else None
        if thread_ws is not None:  # a window has no terminal for DuckDB's bars
            thread_ws.execute("SET enable_progress_bar = false")
        try:
            self.result = self.fn(thread_ws, self.progress)
        except Cancelled:
            self.signals.cancelled.emit()
        except WorkstationError as exc:
            self.error = str(exc)
            self.signals.failed.emit(str(exc), "")
        except Exception as exc:  # a fault: readable line, traceback on demand
            self.error = f"{type(exc).__name__}: {exc}"
            self.signals.failed.emit(self.error, traceback.format_exc())
        else:
            self.signals.finished.emit(self.result)
        finally:
            if thread_ws is not None:
                thread_ws.close()
            self.signals.ended.emit()


class JobRunner(QObject):
    """Starts jobs and tracks the running ones."""

    started = Signal(object)   # Job
    ended = Signal(object)     # Job

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.running: list[Job] = []
        self._held_timer = QTimer(self)
        self._held_timer.setInterval(int(Job.EMIT_INTERVAL * 2000))
        self._held_timer.timeout.connect(self._send_held_progress)

    def start(self, job: Job, on_done: Callable[[Any], None] | None = None) -> Job:
        if on_done is not None:
            job.signals.finished.connect(on_done)
        job.signals.ended.connect(lambda: self._ended(job))
        self.running.append(job)
        self.started.emit(job)
        self.pool.start(job)
        self._held_timer.start()
        return job

    def _send_held_progress(self) -> None:
        for job in list(self.running):
            job.send_held_progress()

    def _ended(self, job: Job) -> None:
        if job in self.running:
            self.running.remove(job)
        if not self.running:
            self._held_timer.stop()
        self.ended.emit(job)

    def cancel_all(self) -> None:
        for job in list(self.running):
            job.cancel()

    def wait(self, msecs: int = -1) -> bool:
        return self.pool.waitForDone(msecs)
