"""The main window: menus, the start page, the Browser / Plots / Models tabs,
and the status bar with the running job's progress and its Cancel button.

Flywheel actions (import, export, register, audit, probes, retrain, patch)
collect their choices in a dialog and run the core call as a background job
(``ctx.run_job``); a part of the core that is not built yet says so instead.
Window geometry, state and recent workspaces live in QSettings.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QMainWindow, QProgressBar, QPushButton, QStackedWidget, QStyle,
                               QTabWidget, QVBoxLayout, QWidget)

from workstation.ui import dialogs
from workstation.ui.browser import BrowserPanel
from workstation.ui.context import AppContext
from workstation.ui.demo_builder import DemoBuilder
from workstation.ui.identity_dialogs import SignedInButton
from workstation.ui.jobs import Job, JobRunner
from workstation.ui.shortcuts import Reviewer, make_action

MAX_RECENT = 8
SHOW_JOB_AFTER_MS = 500
WARM_UP_AFTER_MS = 1000
# Loaded ahead, while the analyst looks around: a C extension's first import
# holds the GIL for 100-300 ms, which would otherwise stall the window the
# first time a job needs it.
WARM_UP_MODULES = ("onnxruntime", "workstation.audits.runs", "workstation.models.scoring",
                   "workstation.probes.base", "workstation.examples")
WORKSPACE_FILTER = "Workspaces (*.duckdb *.db);;All files (*)"
DEMO_TEXT = "Build &demo workspace…"
DEMO_HELP = ("A ready-made workspace to look around in: the shipped example datasets (a few "
             "labels deliberately wrong), a first model of each, its audit and probe findings. "
             "Takes about 20 seconds.")


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


class StartPage(QWidget):
    """No workspace open: recent workspaces, Open, New, and the demo."""

    def __init__(self, window: "MainWindow") -> None:
        super().__init__(window)
        title = QLabel("Open a workspace")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        title.setFont(font)
        text = QLabel("A workspace is one file that holds a whole audit project: datasets, "
                      "models, audit runs and the review log.")
        text.setWordWrap(True)
        self.recent = QListWidget()
        self.recent.itemActivated.connect(lambda item: window.open_workspace(
            item.data(Qt.ItemDataRole.UserRole), create=False))
        open_button = QPushButton("&Open workspace…")
        new_button = QPushButton("&New workspace…")
        open_button.clicked.connect(window.choose_workspace)
        new_button.clicked.connect(window.new_workspace)
        self.demo_button = QPushButton(DEMO_TEXT)
        self.demo_button.setToolTip(DEMO_HELP)
        self.demo_button.clicked.connect(window.build_demo)
        window.demo.running_changed.connect(self._demo_running)
        buttons = QHBoxLayout()
        buttons.addWidget(open_button)
        buttons.addWidget(new_button)
        buttons.addSpacing(16)
        buttons.addWidget(self.demo_button)
        buttons.addStretch(1)
        self.recent_label = QLabel("Recent workspaces")
        self.recent.setMaximumHeight(240)
        column = QVBoxLayout()
        column.addStretch(1)
        column.addWidget(title)
        column.addWidget(text)
        column.addSpacing(8)
        column.addLayout(buttons)
        column.addSpacing(16)
        column.addWidget(self.recent_label)
        column.addWidget(self.recent)
        column.addStretch(2)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(column, 2)
        outer.addStretch(1)

    def show_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        for path in paths:
            missing = not Path(path).exists()
            item = QListWidgetItem(f"{Path(path).name}    {path}" + ("  (missing)" if missing
                                                                    else ""))
            item.setData(Qt.ItemDataRole.UserRole, path)
            if missing:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            self.recent.addItem(item)
        self.recent_label.setText("Recent workspaces (double-click to open)" if paths else
                                  "No recent workspaces yet: open or create one, or build the "
                                  "demo workspace to look around.")
        self.recent.setVisible(bool(paths))

    def _demo_running(self, running: bool) -> None:
        self.demo_button.setEnabled(not running)
        self.demo_button.setText("Building the demo…" if running else DEMO_TEXT)


class LazyTab(QWidget):
    """A tab whose panel is built the first time it is shown (its module may
    be heavy, or not built yet)."""

    def __init__(self, module: str, cls: str, what: str, ctx: AppContext) -> None:
        super().__init__()
        self.module, self.cls, self.what, self.ctx = module, cls, what, ctx
        self.panel: QWidget | None = None
        QVBoxLayout(self).setContentsMargins(0, 0, 0, 0)

    def build(self) -> None:
        if self.panel is not None:
            return
        import importlib

        try:
            panel_class = getattr(importlib.import_module(self.module), self.cls)
            self.panel = panel_class(self.ctx)
        except ModuleNotFoundError as exc:
            if exc.name != self.module:
                raise
            self.panel = QLabel(f"The {self.what} panel is being built; it will appear here.")
            self.panel.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.layout().addWidget(self.panel)


class MainWindow(QMainWindow):
    """One workstation window over one workspace at a time."""

    def __init__(self, ctx: AppContext | None = None) -> None:
        super().__init__()
        self.ctx = ctx or AppContext(parent=self)
        self.setWindowTitle("Workstation")
        self.browser = BrowserPanel(self.ctx)
        self.reviewer = Reviewer(self.browser, self.ctx)
        self.demo = DemoBuilder(self)
        self.start_page = StartPage(self)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.browser, "Browser")
        self.lazy_tabs = [LazyTab("workstation.ui.plots", "PlotsPanel", "plots", self.ctx),
                          LazyTab("workstation.ui.models_panel", "ModelsPanel", "models",
                                  self.ctx)]
        self.tabs.addTab(self.lazy_tabs[0], "Plots")
        self.tabs.addTab(self.lazy_tabs[1], "Models")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.start_page)
        self.pages.addWidget(self.tabs)
        self.setCentralWidget(self.pages)
        self.job_bar = JobBar(self.ctx.jobs)
        self.statusBar().addPermanentWidget(self.job_bar)
        self.signed_in = SignedInButton()  # who signs edits and releases
        self.statusBar().addPermanentWidget(self.signed_in)
        self.actions: dict[str, QAction] = {}
        self.flywheel = Flywheel(self)
        self._build_menus()
        self._connect()
        self.resize(1280, 800)
        self._show_start()

    # -- wiring ----------------------------------------------------------------
    def _connect(self) -> None:
        self.ctx.status.connect(lambda text: self.statusBar().showMessage(text, 10_000))
        self.ctx.jobs.started.connect(self._job_started)
        self.ctx.example_selected.connect(self._example_selected)
        self.browser.request_action.connect(self._requested)

    def _job_started(self, job: Job) -> None:
        title = job.title
        job.signals.failed.connect(
            lambda message, details: dialogs.show_error(self, f"{title} failed: {message}",
                                                        details))
        job.signals.cancelled.connect(
            lambda: self.ctx.status.emit(f"{title}: cancelled; nothing was changed"))

    def _example_selected(self, _example_id: Any) -> None:
        if not self.browser._own_change and self.tabs.currentWidget() is not self.browser:
            self.tabs.setCurrentWidget(self.browser)

    def _tab_changed(self, index: int) -> None:
        widget = self.tabs.widget(index)
        if isinstance(widget, LazyTab):
            widget.build()

    def _requested(self, action: str) -> None:
        handler = {"import": self.flywheel.import_dataset,
                   "register": self.flywheel.register_model,
                   "audit": self.flywheel.audit}.get(action)
        if handler is not None:
            handler()

    # -- menus -----------------------------------------------------------------
    def _action(self, menu: Any, text: str, handler: Callable[[], Any],
                keys: str | QKeySequence.StandardKey | None = None,
                icon: QStyle.StandardPixmap | None = None) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(lambda _checked=False: handler())
        if keys is not None:
            action.setShortcut(QKeySequence(keys))
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        self._file_menu(bar.addMenu("&File"))
        self._review_menu(bar.addMenu("&Review"))
        self._model_menu(bar.addMenu("&Model"))
        view = bar.addMenu("&View")
        for name, handler in (("search", self._focus_search),
                              ("clear_filters", self.browser.filter_bar.clear)):
            self.actions[name] = make_action(self, name, handler)
            view.addAction(self.actions[name])
        view.addSeparator()
        for i, text in enumerate(("Browser", "Plots", "Models")):
            self._action(view, text, lambda i=i: self.tabs.setCurrentIndex(i), f"Ctrl+{i + 1}")
        help_menu = bar.addMenu("&Help")
        self.actions["help"] = make_action(self, "help", self.show_help)
        help_menu.addAction(self.actions["help"])
        self._action(help_menu, "About the workstation", self._about)

    def _file_menu(self, menu: Any) -> None:
        sp = QStyle.StandardPixmap
        self._action(menu, "&New workspace…", self.new_workspace, QKeySequence.StandardKey.New,
                     sp.SP_FileIcon)
        self._action(menu, "&Open workspace…", self.choose_workspace,
                     QKeySequence.StandardKey.Open, sp.SP_DialogOpenButton)
        self.recent_menu = menu.addMenu("Open &recent")
        self.actions["demo"] = self._action(menu, DEMO_TEXT, self.build_demo)
        self.actions["demo"].setStatusTip(DEMO_HELP)
        self.demo.running_changed.connect(lambda running: self.actions["demo"].setEnabled(
            not running))
        self._action(menu, "&Close workspace", self.close_workspace)
        menu.addSeparator()
        self.actions["import"] = self._action(menu, "&Import dataset…",
                                              self.flywheel.import_dataset, "Ctrl+I")
        self.actions["export"] = self._action(menu, "&Export dataset…",
                                              self.flywheel.export_dataset, "Ctrl+E",
                                              sp.SP_DialogSaveButton)
        menu.addSeparator()
        self._action(menu, "&Preferences…", self.preferences, QKeySequence.StandardKey.Preferences)
        menu.addSeparator()
        self._action(menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

    def _review_menu(self, menu: Any) -> None:
        r = self.reviewer
        groups = [[("flip", r.flip), ("safe", r.safe), ("unsafe", r.unsafe),
                   ("exclude", r.exclude), ("note", r.note), ("tags", r.tags),
                   ("category", r.category)],
                  [("next_unreviewed", r.next_unreviewed), ("next_row", r.next_row),
                   ("previous_row", r.previous_row)],
                  [("undo", r.undo), ("redo", r.redo)], [("reason", r.set_reason)]]
        for group in groups:
            for name, handler in group:
                self.actions[name] = make_action(self, name, handler, self.browser)
                menu.addAction(self.actions[name])
            menu.addSeparator()

    def _model_menu(self, menu: Any) -> None:
        f = self.flywheel
        for name, text, handler in (("register", "&Register model…", f.register_model),
                                    ("audit", "&Audit…", f.audit),
                                    ("probes", "Run &probes…", f.run_probes),
                                    ("retrain", "Re&train…", f.retrain),
                                    ("patch", "&Patch selected…", f.patch_selected)):
            self.actions[name] = self._action(menu, text, handler)

    def _focus_search(self) -> None:
        self.tabs.setCurrentWidget(self.browser)
        self.browser.filter_bar.search.setFocus()
        self.browser.filter_bar.search.selectAll()

    # -- workspaces ------------------------------------------------------------
    def open_workspace(self, path: str, create: bool = False) -> bool:
        """Open the workspace at ``path``; errors are shown, never raised."""
        from workstation.errors import WorkstationError
        from workstation.workspace import Workspace

        try:
            ws = Workspace.open(path, create=create)
        except WorkstationError as exc:
            dialogs.show_error(self, str(exc))
            return False
        ws.execute("SET enable_progress_bar = false")  # no terminal bars from a window
        self.browser.model.stop()
        self.ctx.set_workspace(ws)
        self._remember(str(Path(path).resolve()))
        self.setWindowTitle(f"{Path(path).name} — Workstation")
        self.pages.setCurrentWidget(self.tabs)
        self.browser.view.setFocus()
        QTimer.singleShot(WARM_UP_AFTER_MS, self.warm_up)
        if ws.key_backups:  # the upgrade to identities left the old private key only there
            self.ctx.status.emit("upgraded: the workspace no longer holds its private signing "
                                 f"key, but {', '.join(b.name for b in ws.key_backups)} still "
                                 "do; delete them once you no longer need them")
        return True

    def warm_up(self) -> threading.Thread:
        """Import what jobs need on an idle background thread (once)."""
        if getattr(self, "_warm", None) is None:
            self._warm = threading.Thread(target=_import_ahead, name="warm-up", daemon=True)
            self._warm.start()
        return self._warm

    def choose_workspace(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open workspace", self._last_folder(),
                                              WORKSPACE_FILTER)
        if path:
            self.open_workspace(path, create=False)

    def new_workspace(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New workspace",
                                              str(Path(self._last_folder()) / "audit.duckdb"),
                                              WORKSPACE_FILTER)
        if path:
            self.open_workspace(path, create=True)

    def build_demo(self) -> None:
        """Ask where to put the demo workspace (by default where `workstation
        demo` would), then build it in the background and open it."""
        from workstation.demo import default_demo_path

        proposed = default_demo_path(make_folder=False)
        path, _ = QFileDialog.getSaveFileName(self, "Build demo workspace", str(proposed),
                                              WORKSPACE_FILTER)
        if not path:
            return  # cancelled: nothing made, not even the proposed folder
        if Path(path).parent == proposed.parent:
            proposed.parent.mkdir(exist_ok=True)
        # the dialog has asked before an existing file is replaced
        self.demo.start(path, overwrite=Path(path).exists())

    def close_workspace(self) -> None:
        self.browser.model.stop()
        self.ctx.set_workspace(None)
        self.setWindowTitle("Workstation")
        self._show_start()

    def _show_start(self) -> None:
        self.start_page.show_recent(self.recent())
        self.pages.setCurrentWidget(self.start_page)

    def recent(self) -> list[str]:
        value = self.ctx.settings().value("recent/workspaces", []) or []
        return [value] if isinstance(value, str) else list(value)

    def _remember(self, path: str) -> None:
        paths = [path] + [p for p in self.recent() if p != path]
        self.ctx.settings().setValue("recent/workspaces", paths[:MAX_RECENT])
        self._fill_recent_menu()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.recent():
            self._action(self.recent_menu, path,
                         lambda p=path: self.open_workspace(p, create=False))
        self.recent_menu.setEnabled(bool(self.recent()))

    def _last_folder(self) -> str:
        recent = self.recent()
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    # -- window state ----------------------------------------------------------
    def restore_state(self) -> None:
        settings = self.ctx.settings()
        geometry = settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = settings.value("window/state")
        if state is not None:
            self.restoreState(state)
        splitter = settings.value("browser/splitter")
        if splitter is not None:
            self.browser.splitter.restoreState(splitter)
        self._fill_recent_menu()

    def save_state(self) -> None:
        settings = self.ctx.settings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        settings.setValue("browser/splitter", self.browser.splitter.saveState())

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self.save_state()
        self.ctx.jobs.cancel_all()
        self.ctx.jobs.wait(10_000)
        self.browser.model.stop()
        if self.ctx.ws is not None:
            self.ctx.ws.close()
            self.ctx.ws = None
        super().closeEvent(event)

    # -- help and preferences ----------------------------------------------------
    def show_help(self) -> dialogs.HelpDialog:
        dialog = dialogs.HelpDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def preferences(self) -> None:
        dialog = dialogs.PreferencesDialog(self.ctx.analyst(), self.reviewer.reason(), self)
        if dialog.exec():
            values = dialog.values()
            self.ctx.settings().setValue("review/analyst", values["analyst"])
            self.reviewer.set_reason(values["reason"])

    def _about(self) -> None:
        from workstation import __version__

        dialogs.show_info(self, f"Workstation {__version__}: audit, repair and release reward "
                                "models, offline.")


class Flywheel:
    """The window's flywheel actions: a dialog for the choices, then the core
    call as a background job; on success the browser shows what changed."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.ctx = window.ctx
        self.browser = window.browser

    # -- shared ------------------------------------------------------------------
    def _ready(self) -> bool:
        if self.ctx.ws is None:
            dialogs.show_info(self.window, "Open or create a workspace first (File menu).")
            return False
        return True

    def _datasets(self) -> list[tuple[str, str]]:
        from workstation import catalog

        return [(d.name, d.kind) for d in catalog.datasets(self.ctx.ws)]

    def _models(self) -> list[tuple[str, int]]:
        from workstation import catalog

        return [(v.ref, v.id) for v in reversed(catalog.model_versions(self.ctx.ws))]

    def _current(self) -> tuple[int | None, str | None]:
        sel = self.browser.selection
        run = sel.run
        model = run.model_version_id if run else sel.model_version_id
        return model, sel.dataset.name if sel.dataset else None

    def _announce(self, changes: set[str], message: str, select_run: int | None = None,
                  dataset: str | None = None) -> None:
        self.browser.refresh(select_run, dataset)
        with self.browser.quiet():
            self.ctx.data_changed.emit(changes)
        self.ctx.status.emit(message)

    def _not_built(self, what: str) -> None:
        dialogs.show_info(self.window, f"{what} is not built into this workstation yet; "
                                       "everything else works.")

    # -- import and export -------------------------------------------------------
    def import_dataset(self) -> None:
        if not self._ready():
            return
        from workstation.datasets import IMPORTERS

        formats: dict[str, list[str]] = {}
        for importer in IMPORTERS.values():
            formats.setdefault(importer.kind, []).append(importer.name)
        dialog = dialogs.ImportDialog(formats, self.window)
        if dialog.exec():
            self.start_import(**dialog.values())

    def start_import(self, path: str, kind: str, name: str, format: str | None = None) -> Job:
        def work(ws: Any, progress: Any) -> Any:
            from workstation.datasets import import_dataset

            return import_dataset(ws, kind, path, name, format=format, progress=progress)

        def done(report: Any) -> None:
            self._announce({"datasets"}, f"imported {report.imported:,} examples into "
                           f"{report.dataset!r} (skipped {report.skipped:,})",
                           dataset=report.dataset)
        return self.ctx.run_job(f"Importing {Path(path).name}", work, done)

    def export_dataset(self) -> None:
        if not self._ready():
            return
        from workstation.datasets import EXPORT_FORMATS

        dialog = dialogs.ExportDialog(self._datasets(), list(EXPORT_FORMATS),
                                      self._current()[1], self.window)
        if dialog.exec():
            self.start_export(**dialog.values())

    def start_export(self, dataset: str, fmt: str, out: str, reviewed_only: bool = False,
                     include_excluded: bool = False) -> Job:
        def work(ws: Any, progress: Any) -> Any:
            from workstation.datasets import export_dataset

            return export_dataset(ws, dataset, fmt, out, reviewed_only=reviewed_only,
                                  include_excluded=include_excluded, progress=progress)
        return self.ctx.run_job(f"Exporting {dataset}", work, lambda report: self.ctx.status.emit(
            f"exported {report.rows:,} examples to {report.path}"))

    # -- models ------------------------------------------------------------------
    def register_model(self) -> None:
        if not self._ready():
            return
        from workstation import catalog
        from workstation.models import INPUT_KINDS

        names = sorted({v.ref for v in catalog.model_versions(self.ctx.ws)})
        dialog = dialogs.RegisterModelDialog(list(INPUT_KINDS), names, self.window)
        if dialog.exec():
            self.start_register(**dialog.values())

    def start_register(self, path: str, name: str, input_kind: str, parent: str | None = None,
                       tokenizer: str | None = None, notes: str = "") -> Job:
        encoder, analyst = self.ctx.encoder, self.ctx.analyst()

        def work(ws: Any, progress: Any) -> Any:
            from workstation.models import add_model

            return add_model(ws, path, name, input_kind, parent=parent, notes=notes,
                             analyst=analyst, tokenizer=tokenizer, encoder=encoder)
        return self.ctx.run_job(f"Registering {name}", work, lambda v: self._announce(
            {"models"}, f"registered {v.ref} ({v.input_kind})"))

    def audit(self) -> None:
        if not self._ready():
            return
        model, dataset = self._current()
        dialog = dialogs.AuditDialog(self._models(), self._datasets(), model, dataset,
                                     self.window)
        if dialog.exec():
            self.start_audit(**dialog.values())

    def start_audit(self, model: int | str, dataset: str, threshold: float | None = None) -> Job:
        encoder, analyst = self.ctx.encoder, self.ctx.analyst()

        def work(ws: Any, progress: Any) -> Any:
            from workstation.audits import run_audit

            return run_audit(ws, model, dataset, threshold=threshold, analyst=analyst,
                             encoder=encoder, progress=progress)
        return self.ctx.run_job(f"Auditing {dataset}", work, lambda run: self._announce(
            {"runs"}, f"audit run {run.id}: {run.n_failures:,} failures of "
            f"{run.n_examples:,}", select_run=run.id))

    def run_probes(self) -> None:
        if not self._ready():
            return
        from workstation.probes import PROBES
        from workstation.probes.base import _load_builtins

        _load_builtins()
        probes = [(p.name, getattr(p, "description", ""), tuple(p.kinds))
                  for p in PROBES.values()]
        model, dataset = self._current()
        dialog = dialogs.ProbeDialog(self._models(), self._datasets(), probes, model, dataset,
                                     self.window)
        if dialog.exec():
            self.start_probes(**dialog.values())

    def start_probes(self, model: int | str, dataset: str, probes: list[str] | None = None) -> Job:
        encoder, analyst = self.ctx.encoder, self.ctx.analyst()

        def work(ws: Any, progress: Any) -> Any:
            from workstation.probes import run_probes

            return run_probes(ws, model, dataset, probes=probes, progress=progress,
                              analyst=analyst, encoder=encoder)
        return self.ctx.run_job(f"Probing {dataset}", work, lambda run: self._announce(
            {"runs", "findings"}, f"probe run {run.id}: {sum(run.counts.values()):,} findings",
            select_run=run.id))

    def retrain(self) -> None:
        if not self._ready():
            return
        if not _available("workstation.training"):
            self._not_built("Retraining")
            return
        model, dataset = self._current()
        dialog = dialogs.RetrainDialog(self._datasets(), self._models(), dataset, model,
                                       self.window)
        if dialog.exec():
            self.start_retrain(**dialog.values())

    def start_retrain(self, dataset: str, name: str, parent: int | str | None = None,
                      seed: int = 0) -> Job:
        encoder, analyst = self.ctx.encoder, self.ctx.analyst()

        def work(ws: Any, progress: Any) -> Any:
            from workstation.models import resolve
            from workstation.training import train  # torch loads here, and only here

            parent_ref = resolve(ws, parent).ref if parent is not None else None
            return train(ws, dataset, name, parent=parent_ref, seed=seed, progress=progress,
                         encoder=encoder, analyst=analyst)
        return self.ctx.run_job(f"Training {name}", work, lambda result: self._announce(
            {"models"}, f"trained {_version_ref(result)}"))

    def patch_selected(self) -> None:
        if not self._ready():
            return
        if not _available("workstation.patching"):
            self._not_built("Patching")
            return
        run = self.browser.selection.run
        rows = [self.browser.model.row_values(r) for r in self.browser.selected_rows()]
        rows = [r for r in rows if r]
        if run is None or not rows:
            dialogs.show_info(self.window, "Select failure cases of an audit or probe run in "
                                           "the browser, then patch them.")
            return
        self.start_patch(run, rows)

    def start_patch(self, run: Any, rows: list[dict[str, Any]]) -> Job:
        encoder, analyst = self.ctx.encoder, self.ctx.analyst()
        if run.kind == "probe":
            target = {"finding_run": run.id, "finding_ids": [r["finding_id"] for r in rows]}
        else:
            target = {"example_ids": [r["example_id"] for r in rows]}

        def work(ws: Any, progress: Any) -> Any:
            from workstation.patching import create_patch

            return create_patch(ws, run.model_version_id, analyst=analyst, progress=progress,
                                encoder=encoder, **target)

        def done(result: Any) -> None:
            refused = f"; {len(result.refused)} cases refused" if result.refused else ""
            self._announce({"models"}, f"patched: {result.version.ref} (patch "
                           f"{result.patch_id}, {len(result.kernels)} kernels{refused})")
        return self.ctx.run_job(f"Patching {run.model}", work, done)


def _import_ahead() -> None:
    import gc
    import importlib

    for name in WARM_UP_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # What is loaded now lives as long as the process: keep it out of the
    # cyclic collector, whose full passes over it (100+ ms with the GIL held)
    # would stall the window while a job allocates.
    gc.freeze()


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _version_ref(result: Any) -> str:
    version = getattr(result, "version", None)
    return getattr(version, "ref", None) or str(result)
