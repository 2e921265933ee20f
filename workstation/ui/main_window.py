"""The main window: menus, the start page, the Browser / Plots / Models / Team tabs,
and the status bar with the running job's progress and its Cancel button.

The flywheel actions behind the menus are in ``flywheel``, the start page and
the recent workspaces in ``start``, the job's bar in ``job_bar``. Window
geometry, state and recent workspaces live in QSettings.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QMainWindow, QStackedWidget, QStyle,
                               QTabWidget, QVBoxLayout, QWidget)

from workstation.ui import dialogs
from workstation.ui.browser import BrowserPanel
from workstation.ui.context import AppContext
from workstation.ui.demo_builder import DemoBuilder
from workstation.ui.flywheel import Flywheel
from workstation.ui.identity_dialogs import SignedInButton
from workstation.ui.job_bar import JobBar
from workstation.ui.jobs import Job
from workstation.ui.reviewer import Reviewer
from workstation.ui.shortcuts import make_action
from workstation.ui.start import DEMO_HELP, DEMO_TEXT, RecentWorkspaces, StartPage

WARM_UP_AFTER_MS = 1000
# Loaded ahead, while the analyst looks around: a C extension's first import
# holds the GIL for 100-300 ms, which would otherwise stall the window the
# first time a job needs it.
WARM_UP_MODULES = ("onnxruntime", "workstation.audits.runs", "workstation.models.scoring",
                   "workstation.probes.base", "workstation.examples")
WORKSPACE_FILTER = "Workspaces (*.duckdb *.db);;All files (*)"
# Actions on a dataset's rows: nothing to act on without one.
REVIEW_ACTIONS = ("flip", "safe", "unsafe", "exclude", "note", "tags", "category", "assign",
                  "next_unreviewed", "next_row", "previous_row", "undo", "redo", "search",
                  "clear_filters")


class LazyTab(QWidget):
    """A tab whose panel is built the first time it is shown (its module
    loads pyqtgraph, which start-up does without)."""

    def __init__(self, module: str, cls: str, ctx: AppContext) -> None:
        super().__init__()
        self.module, self.cls, self.ctx = module, cls, ctx
        self.panel: QWidget | None = None
        QVBoxLayout(self).setContentsMargins(0, 0, 0, 0)

    def build(self) -> None:
        if self.panel is not None:
            return
        import importlib

        panel_class = getattr(importlib.import_module(self.module), self.cls)
        self.panel = panel_class(self.ctx)
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
        self.recent_workspaces = RecentWorkspaces(self.ctx.settings)
        self.start_page = StartPage(self)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.browser, "Browser")
        self.lazy_tabs = [LazyTab("workstation.ui.plots", "PlotsPanel", self.ctx),
                          LazyTab("workstation.ui.models_panel", "ModelsPanel", self.ctx),
                          LazyTab("workstation.ui.team_view", "TeamPanel", self.ctx)]
        self.tabs.addTab(self.lazy_tabs[0], "Plots")
        self.tabs.addTab(self.lazy_tabs[1], "Models")
        self.tabs.addTab(self.lazy_tabs[2], "Team")
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
        self.flywheel = Flywheel(self, self.ctx, self.browser)
        self._build_menus()
        self._connect()
        self.resize(1280, 800)
        self._show_start()

    # -- wiring ----------------------------------------------------------------
    def _connect(self) -> None:
        page = self.start_page
        page.open_recent.connect(lambda path: self.open_workspace(path, create=False))
        page.open_requested.connect(self.choose_workspace)
        page.new_requested.connect(self.new_workspace)
        page.demo_requested.connect(self.build_demo)
        self.demo.running_changed.connect(page.demo_running)
        self.ctx.status.connect(lambda text: self.statusBar().showMessage(text, 10_000))
        self.ctx.jobs.started.connect(self._job_started)
        self.ctx.example_selected.connect(self._example_selected)
        self.browser.request_action.connect(self._requested)
        self.ctx.action_requested.connect(self._requested)
        self.ctx.workspace_changed.connect(lambda _ws: self.update_actions())
        self.ctx.data_changed.connect(lambda _changes: self.update_actions())
        self.update_actions()

    def update_actions(self) -> None:
        """Offer only what can run: nothing of a workspace without one open;
        export, training and audits once there is a dataset (and a model)."""
        from workstation import catalog

        ws = self.ctx.ws
        datasets = bool(ws is not None and catalog.datasets(ws))
        models = bool(ws is not None and catalog.model_versions(ws))
        needs = {"close": ws is not None, "import": ws is not None, "register": ws is not None,
                 "export": datasets, "train": datasets, "retrain": datasets and models,
                 "audit": datasets and models, "probes": datasets and models,
                 "patch": datasets and models, "report": datasets and models}
        for name in REVIEW_ACTIONS:
            needs[name] = datasets
        for name, possible in needs.items():
            self.actions[name].setEnabled(possible)

    def _job_started(self, job: Job) -> None:
        title = job.title
        job.signals.failed.connect(
            lambda message, details: job.shows_own_failure or dialogs.show_error(
                self, _sentence(f"{title} failed: {message}"), details))
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
                   "audit": self.flywheel.audit,
                   "train": self.flywheel.train_new}.get(action)
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
        for i, text in enumerate(("Browser", "Plots", "Models", "Team")):
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
        self.actions["close"] = self._action(menu, "&Close workspace", self.close_workspace)
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
                   ("category", r.category), ("assign", r.assign)],
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
                                    ("train", "Train a &new model…", f.train_new),
                                    ("audit", "&Audit…", f.audit),
                                    ("probes", "Run &probes…", f.run_probes),
                                    ("retrain", "Re&train…", f.retrain),
                                    ("patch", "&Patch selected…", f.patch_selected)):
            self.actions[name] = self._action(menu, text, handler)
        menu.addSeparator()
        self.actions["report"] = self._action(menu, "Re&port…", self.report, "Ctrl+Shift+R")
        self.actions["report"].setStatusTip("write a signed audit report (HTML, PDF or JSON) of "
                                            "a model version")

    def report(self) -> None:
        """Report…: the dialog that builds, previews and saves a signed audit report."""
        from workstation.ui.report_dialog import ReportDialog, audited_versions

        ws = self.ctx.ws
        if ws is None:
            return
        versions = audited_versions(ws)
        if not versions:
            dialogs.show_error(self, "No model version has been audited yet: run Model > "
                                     "Audit… first; the report shows audit runs.")
            return
        current = None
        if self.ctx.model_version_id is not None:
            from workstation.models.registry import get_version

            current = get_version(ws, self.ctx.model_version_id).ref
        self.report_dialog = ReportDialog(self.ctx, versions, current, self)
        self.report_dialog.show()

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
        from workstation.encoder_variants import use_workspace_encoder

        use_workspace_encoder(ws)  # its encoder choice (fp32 or int8) for every text job
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
        return self.recent_workspaces.paths()

    def _remember(self, path: str) -> None:
        self.recent_workspaces.remember(path)
        self._fill_recent_menu()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.recent():
            self._action(self.recent_menu, path,
                         lambda p=path: self.open_workspace(p, create=False))
        self.recent_menu.setEnabled(bool(self.recent()))

    def _last_folder(self) -> str:
        return self.recent_workspaces.last_folder()

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


def _sentence(text: str) -> str:
    """A message as one sentence: it ends with a full stop."""
    return text if text.endswith((".", "?", "!")) else text + "."
