"""Building the demo workspace from the window, as `workstation demo` does on
the command line: the core's ``build_demo`` runs as a background job (progress
and Cancel in the status bar) and the window opens the demo once it is ready.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from workstation.ui import dialogs
from workstation.ui.jobs import Job

TITLE = "Building the demo workspace"


class DemoBuilder(QObject):
    """Builds one demo at a time for a window, then opens it there."""

    running_changed = Signal(bool)

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.job: Job | None = None

    def start(self, path: str | Path, overwrite: bool = False) -> Job | None:
        """Build the demo at ``path`` in the background (replacing a file
        there only if ``overwrite``); None when refused, with a message."""
        target = Path(path).resolve()
        refusal = self._refusal(target)
        if refusal:
            dialogs.show_error(self.window, refusal)
            return None
        encoder = self.window.ctx.encoder

        def work(_ws: Any, progress: Any) -> Any:
            from workstation.demo import build_demo  # gymnasium and torch load here

            return build_demo(target, progress=progress, encoder=encoder, overwrite=overwrite)

        # The demo is a workspace of its own: the job gets no connection to the open one.
        job = Job(TITLE, work, None)
        job.signals.finished.connect(self._built)
        job.signals.ended.connect(self._ended)
        self.job = job
        self.running_changed.emit(True)
        return self.window.ctx.jobs.start(job)

    def _refusal(self, target: Path) -> str | None:
        if self.job is not None:
            return "A demo workspace is already being built: wait for it, or cancel it first."
        ws = self.window.ctx.ws
        if ws is not None and Path(ws.path).resolve() == target:
            return f"{target} is open in this window; choose another file for the demo."
        return None

    def _built(self, report: Any) -> None:
        if self.window.open_workspace(str(report.path)):
            self.window.ctx.status.emit(f"demo workspace ready at {report.path}: "
                                        + ", ".join(report.models))

    def _ended(self) -> None:
        self.job = None
        self.running_changed.emit(False)
