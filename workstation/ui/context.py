"""The GUI's shared state: the open workspace, the job runner, and the
signals panels use to follow each other's selection.

Every panel takes an ``AppContext``. Panels never talk to each other
directly: they emit and listen to these signals, and call core functions
(through ``run_job`` for anything long).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from PySide6.QtCore import QObject, QSettings, Signal

from workstation.progress import Progress
from workstation.ui.jobs import Job, JobRunner
from workstation.workspace import Workspace

# An INI file to keep the settings in instead of the user's own (tests, or a
# second profile on a shared login).
SETTINGS_FILE_ENV = "WORKSTATION_SETTINGS"


class AppContext(QObject):
    """Shared state of one main window."""

    # The workspace was opened/closed (argument: the Workspace or None).
    workspace_changed = Signal(object)
    # The open workspace is about to close: stop reading from it.
    workspace_closing = Signal()
    # Core data changed; the argument names what: a set of words such as
    # {"datasets", "models", "runs", "review", "releases", "findings"}.
    data_changed = Signal(object)
    # Selections that panels follow.
    dataset_selected = Signal(object)   # dataset name or None
    run_selected = Signal(object)       # audit/probe run id or None
    example_selected = Signal(object)   # example id or None
    model_selected = Signal(object)     # model version id or None
    # A one-line message for the status bar.
    status = Signal(str)
    # A panel asks the window for a flywheel action ("import", "register",
    # "audit", "train") that it offers in an empty state.
    action_requested = Signal(str)

    def __init__(self, ws: Workspace | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.jobs = JobRunner(self)
        self.dataset: str | None = None
        self.run_id: int | None = None
        self.example_id: int | None = None
        self.model_version_id: int | None = None
        # The text encoder for text-embedding models; None = the workspace
        # default (tests put a small stand-in here).
        self.encoder: Any = None
        self.dataset_selected.connect(lambda v: setattr(self, "dataset", v))
        self.run_selected.connect(lambda v: setattr(self, "run_id", v))
        self.example_selected.connect(lambda v: setattr(self, "example_id", v))
        self.model_selected.connect(lambda v: setattr(self, "model_version_id", v))

    @staticmethod
    def settings() -> QSettings:
        """The user's settings (organisation and application "workstation"),
        or the INI file named by $WORKSTATION_SETTINGS."""
        path = os.environ.get(SETTINGS_FILE_ENV)
        if path:
            return QSettings(path, QSettings.Format.IniFormat)
        return QSettings("workstation", "workstation")

    def analyst(self) -> str:
        """Who is acting: the signed-in identity, else the name set in
        preferences, else the login."""
        from workstation.identity import session_signer
        from workstation.workspace import default_analyst

        signer = session_signer()
        return signer.name if signer else str(self.settings().value("review/analyst", "")
                                              or default_analyst())

    def set_workspace(self, ws: Workspace | None) -> None:
        if self.ws is not None and self.ws is not ws:
            self.workspace_closing.emit()
            self.jobs.cancel_all()
            self.jobs.wait(5000)
            self.ws.close()
        self.ws = ws
        self.dataset = self.run_id = self.example_id = self.model_version_id = None
        self.workspace_changed.emit(ws)

    def run_job(self, title: str, fn: Callable[[Workspace, Progress], Any],
                on_done: Callable[[Any], None] | None = None,
                changes: set[str] | None = None,
                on_failed: Callable[[str], None] | None = None) -> Job:
        """Run ``fn(ws, progress)`` in the background. When it succeeds,
        ``on_done(result)`` runs on the GUI thread and ``data_changed`` is
        emitted with ``changes``. When it fails, ``on_failed(message)`` shows
        the failure if given (else the window does)."""
        job = Job(title, fn, self.ws)
        if on_failed is not None:  # connected before the job can fail
            job.shows_own_failure = True
            job.signals.failed.connect(lambda message, _details: on_failed(message))

        def finished(result: Any) -> None:
            if on_done is not None:
                on_done(result)
            if changes:
                self.data_changed.emit(set(changes))
        job.signals.finished.connect(finished)
        return self.jobs.start(job)
