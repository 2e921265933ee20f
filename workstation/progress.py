"""Progress reporting and cancellation for long core work.

Long operations take a ``Progress`` and call ``progress.step(done, total)``
between units of work; the call raises ``Cancelled`` once the analyst has
asked to cancel, so work stops at a safe point (inside a transaction that is
then rolled back). The CLI renders it as a terminal bar, the GUI as a
progress bar with a Cancel button.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

from workstation.errors import Cancelled

Callback = Callable[[str, int, int], None]


class Progress:
    """A progress sink with a cancel flag. Thread-safe to cancel."""

    def __init__(self, callback: Callback | None = None) -> None:
        self._callback = callback
        self._cancel = threading.Event()
        self._on_cancel: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self.stage = ""

    def cancel(self) -> None:
        with self._lock:
            self._cancel.set()
            hooks = list(self._on_cancel.values())
        for hook in hooks:
            hook()

    def on_cancel(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call ``hook`` (in the cancelling thread) when cancellation is
        requested, or at once if it already was: for work that cannot reach a
        ``step`` soon, e.g. one long onnxruntime run. Returns the function that
        removes the hook again."""
        with self._lock:
            key = id(hook)
            self._on_cancel[key] = hook
            already = self._cancel.is_set()
        if already:
            hook()

        def remove() -> None:
            with self._lock:
                self._on_cancel.pop(key, None)
        return remove

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` if cancellation was requested."""
        if self._cancel.is_set():
            raise Cancelled()

    def stage_start(self, stage: str, total: int = 0) -> None:
        self.stage = stage
        self.step(0, total)

    def step(self, done: int, total: int) -> None:
        self.check()
        if self._callback is not None:
            self._callback(self.stage, done, total)


NULL_PROGRESS = Progress()


def null_progress() -> Progress:
    """A fresh progress that reports nowhere (a new one each call, so that a
    cancel of one never leaks into another)."""
    return Progress()


class TerminalBar:
    """Renders progress as a one-line bar on a terminal (stderr)."""

    def __init__(self, stream: TextIO = sys.stderr, min_interval: float = 0.1) -> None:
        self.stream = stream
        self.min_interval = min_interval
        self._last = 0.0
        self._stage = None
        self._drawn = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished = total and done >= total
        if stage == self._stage and not finished and now - self._last < self.min_interval:
            return
        if stage != self._stage and self._drawn:
            self.stream.write("\n")
        self._stage, self._last = stage, now
        if total:
            width = 30
            filled = int(width * min(done, total) / total)
            bar = "#" * filled + "-" * (width - filled)
            line = f"\r{stage:<24} [{bar}] {done}/{total}"
        else:
            line = f"\r{stage:<24} {done}"
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
