"""The desktop workstation, driven as an analyst would (pytest-qt, offscreen):
open a workspace, filter, sort, select, review by key, undo, start a job and
cancel it, read errors; plus start-up cost and a screenshot of every screen
(under tests/screenshots/, to look at)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox

from tests.gui_support import (copy_template, distinct_colours, encoder,  # noqa: F401
                               gated_encoder, own_settings, template)

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "tests" / "screenshots"
GENEROUS_START_S = 8.0


# -- fixtures -----------------------------------------------------------------------

@pytest.fixture
def window(qtbot, tmp_path, template):
    from workstation.ui.main_window import MainWindow

    win = MainWindow()
    win.ctx.encoder = encoder()
    qtbot.addWidget(win)
    win.resize(1400, 850)
    win.show()
    qtbot.waitExposed(win)
    assert win.open_workspace(str(copy_template(template, tmp_path / "ws.duckdb")))
    win.activateWindow()
    wait_rows(qtbot, win.browser)
    yield win
    win.ctx.jobs.cancel_all()
    win.ctx.jobs.wait(10_000)
    win.close()


def wait_rows(qtbot, browser, timeout: int = 10_000) -> None:
    """Until the table's query has answered and the detail shows the row."""
    qtbot.waitUntil(lambda: not browser.model.loading, timeout=timeout)
    browser.show_detail_now()


def press(qtbot, browser, key: str, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    browser.view.setFocus()
    qtbot.keyClick(browser.view, key, modifier)


def log_rows(win) -> list[dict]:
    from workstation import review

    return review.entries(win.ctx.ws)


def expected_page(win, **filters):
    from workstation.audits.runs import failure_page

    browser = win.browser
    return failure_page(win.ctx.ws, browser.run.id if browser.run else None,
                        dataset=browser.selection.dataset.name, limit=1000, **filters)


# -- opening ----------------------------------------------------------------------

def test_opening_a_workspace_shows_the_newest_audit_of_the_first_dataset(window):
    browser = window.browser
    assert browser.selection.dataset.name == "hh" and browser.run.kind == "audit"
    rows, total = expected_page(window, verdict="failed")
    assert browser.model.rowCount() == total > 0
    assert browser.filter_bar.count.text() == f"{total} of {browser.run.n_failures} failures"
    assert [browser.model.row_values(i)["example_id"] for i in range(3)] == \
        [r["example_id"] for r in rows[:3]]
    assert browser.detail.example["id"] == rows[0]["example_id"]  # first row selected
    assert "ws.duckdb" in window.windowTitle()
    assert window.recent()[0].endswith("ws.duckdb")


def test_run_gui_opens_the_workspace_and_returns_when_the_window_closes(tmp_path, template,
                                                                        own_settings):
    # In a fresh process: after its event loop ends, a QApplication runs no more.
    path = copy_template(template, tmp_path / "run.duckdb")
    real, real_before = _real_settings()
    script = textwrap.dedent(f"""
        from PySide6.QtCore import QTimer
        from workstation.ui import app as gui

        def close_it():  # once the window shows its first rows
            window = gui._windows[-1] if gui._windows else None
            if window is None or window.browser.model.rowCount() == 0:
                return
            timer.stop()
            print(window.windowTitle(), window.browser.model.rowCount())
            window.close()
            app.quit()
        app = gui.make_app([])
        timer = QTimer()
        timer.timeout.connect(close_it)
        timer.start(20)
        code = gui.run_gui(r"{path}")
        print(code, len(gui._windows))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPO, timeout=60, env={**_env(), "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr
    shown, ended = result.stdout.strip().splitlines()[-2:]
    assert shown.startswith("run.duckdb — Workstation") and int(shown.split()[-1]) > 0
    assert ended == "0 0"
    # The process inherited the test's settings file: the recent list went there.
    assert str(path.resolve()) in own_settings.read_text()
    assert _read(real) == real_before


def test_recording_a_recent_workspace_never_touches_the_analysts_own_settings(
        qtbot, tmp_path, template, own_settings):
    from workstation.ui.main_window import MainWindow

    real, before = _real_settings()
    win = MainWindow()
    qtbot.addWidget(win)
    path = copy_template(template, tmp_path / "recent.duckdb")
    assert win.open_workspace(str(path))
    win.close()  # saves the geometry too
    assert Path(win.ctx.settings().fileName()) == own_settings != real
    assert own_settings.is_relative_to(tmp_path)
    assert win.recent()[0] == str(path.resolve())
    assert str(path.resolve()) in own_settings.read_text()
    assert _read(real) == before


def test_without_a_workspace_the_start_page_offers_recent_ones(qtbot, tmp_path, template):
    from workstation.ui.app import open_main_window
    from workstation.ui.context import AppContext

    AppContext.settings().setValue("recent/workspaces", [str(template)])
    win = open_main_window(None)
    qtbot.addWidget(win)
    assert win.pages.currentWidget() is win.start_page
    assert win.start_page.recent.count() == 1
    win.start_page.recent.itemActivated.emit(win.start_page.recent.item(0))
    assert win.pages.currentWidget() is win.tabs and win.ctx.ws is not None
    wait_rows(qtbot, win.browser)
    win.close()


# -- the demo workspace ---------------------------------------------------------------

@pytest.fixture
def start_window(qtbot, tmp_path, monkeypatch):
    """A window on its start page; the save dialog answers ``chosen["path"]``
    (and notes the path it proposed), and $HOME is a scratch folder."""
    from PySide6.QtWidgets import QFileDialog

    from workstation.ui.main_window import MainWindow

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    chosen: dict = {"path": str(tmp_path / "my-demo.duckdb")}

    def save_dialog(parent, caption, default, *args, **kwargs):
        chosen["proposed"] = default
        return chosen["path"], ""
    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    win = MainWindow()
    win.ctx.encoder = encoder()
    win.chosen = chosen
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.pages.currentWidget() is win.start_page
    yield win
    win.ctx.jobs.cancel_all()
    win.ctx.jobs.wait(30_000)
    win.close()


@pytest.mark.slow
def test_the_start_page_builds_the_demo_and_opens_it(qtbot, start_window, tmp_path):
    win, page = start_window, start_window.start_page
    win.ctx.encoder = held = gated_encoder()  # the build waits in its first encoding
    qtbot.mouseClick(page.demo_button, Qt.MouseButton.LeftButton)
    job = win.demo.job
    assert job is not None and not page.demo_button.isEnabled()
    # Proposed where `workstation demo` builds: ~/workstation-demo/demo.duckdb.
    assert win.chosen["proposed"] == str(tmp_path / "home" / "workstation-demo" / "demo.duckdb")
    # The status bar names the stage (torch's first import may stall the window).
    qtbot.waitUntil(lambda: win.job_bar.isVisible() and win.job_bar.label.text().startswith(
        "Building the demo workspace: "), timeout=30_000)
    _save(qtbot, {"start_page_demo_building": win})
    assert not page.demo_button.isEnabled()  # still building: nothing opened yet
    assert win.pages.currentWidget() is page
    with qtbot.waitSignal(job.signals.ended, timeout=120_000):
        held.release.set()
    assert job.error is None, job.error
    qtbot.waitUntil(lambda: win.pages.currentWidget() is win.tabs, timeout=5000)
    box = win.browser.selection.dataset_box
    assert [box.itemData(i) for i in range(box.count())] == \
        ["demo-pairs", "demo-labels", "cliff-demos"]
    assert win.windowTitle().startswith("my-demo.duckdb")
    assert win.recent()[0] == str(tmp_path / "my-demo.duckdb")
    assert "demo workspace ready" in win.statusBar().currentMessage()
    assert sorted(p.name for p in tmp_path.glob("my-demo*")) == ["my-demo.duckdb"]
    assert page.demo_button.isEnabled()


def test_cancelling_the_demo_dialog_makes_nothing(start_window, tmp_path):
    win = start_window
    win.chosen["path"] = ""  # the analyst closes the save dialog
    win.build_demo()
    assert win.demo.job is None
    assert win.chosen["proposed"].endswith("demo.duckdb")
    assert not (tmp_path / "home" / "workstation-demo").exists()


def test_cancelling_the_demo_build_leaves_no_file_and_stays_on_the_start_page(
        qtbot, start_window, tmp_path):
    win, page = start_window, start_window.start_page
    win.ctx.encoder = gated_encoder()  # the build waits in its first encoding until cancelled
    win.build_demo()
    job = win.demo.job
    qtbot.waitUntil(win.job_bar.isVisible, timeout=30_000)
    with qtbot.waitSignal(job.signals.cancelled, timeout=60_000):
        qtbot.mouseClick(win.job_bar.cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(page.demo_button.isEnabled, timeout=5000)
    assert list(tmp_path.glob("*my-demo*")) == []
    assert win.pages.currentWidget() is page and win.ctx.ws is None
    assert "cancelled; nothing was changed" in win.statusBar().currentMessage()
    assert page.demo_button.text().replace("&", "") == "Build demo workspace…"


def test_a_demo_over_a_workspace_in_use_is_a_message_and_the_file_is_kept(
        qtbot, start_window, tmp_path):
    from tests.test_demo import held_open
    from workstation.workspace import Workspace

    win, target = start_window, tmp_path / "my-demo.duckdb"
    Workspace.open(target).close()
    before = target.read_bytes()
    with held_open(target):
        win.build_demo()  # the dialog confirmed replacing the file
        with qtbot.waitSignal(win.demo.job.signals.ended, timeout=30_000):
            pass
        box = _message_box(qtbot)
        assert box.text().startswith("Building the demo workspace failed: ")
        assert "in use by another process" in box.text()
        box.close()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.glob("*my-demo*")] == ["my-demo.duckdb"]
    assert win.pages.currentWidget() is win.start_page and win.start_page.demo_button.isEnabled()


def test_the_demo_never_replaces_the_workspace_open_in_the_window(qtbot, window, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    open_path = str(window.ctx.ws.path)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (open_path, ""))
    window.actions["demo"].trigger()
    box = _message_box(qtbot)
    assert "is open in this window" in box.text()
    box.close()
    assert window.demo.job is None and window.ctx.jobs.running == []


def test_alt_d_on_the_start_page_asks_where_to_build_the_demo(qtbot, start_window):
    win = start_window
    win.chosen["path"] = ""  # the analyst closes the dialog
    win.activateWindow()
    qtbot.keyClick(win, Qt.Key.Key_D, Qt.KeyboardModifier.AltModifier)
    qtbot.waitUntil(lambda: "proposed" in win.chosen, timeout=2000)  # a mnemonic animates
    assert win.demo.job is None and win.pages.currentWidget() is win.start_page


def test_an_unopenable_workspace_is_a_readable_message_not_a_crash(qtbot, window):
    from workstation.ui.main_window import MainWindow

    other = MainWindow()
    qtbot.addWidget(other)
    assert not other.open_workspace("/nonexistent/folder/x.duckdb", create=False)
    box = _message_box(qtbot)
    assert "no workspace" in box.text()
    box.close()


def test_window_geometry_and_splitter_are_restored(qtbot, window):
    from workstation.ui.main_window import MainWindow

    window.resize(790, 570)  # within the offscreen screen (800x600), above minimum sizes
    window.browser.splitter.setSizes([200, 480])
    size = (window.width(), window.height())
    assert size != (1400, 850)
    window.close()
    again = MainWindow()
    qtbot.addWidget(again)
    again.restore_state()
    again.show()
    assert (again.width(), again.height()) == size
    left, right = again.browser.splitter.sizes()
    assert left < right


# -- filtering and sorting ------------------------------------------------------------

def test_filters_narrow_rows_in_sql_update_the_count_and_clear(qtbot, window):
    browser, bar = window.browser, window.browser.filter_bar
    everything = browser.model.rowCount()
    bar.category.setCurrentIndex(bar.category.findData("privacy"))
    bar.category.activated.emit(bar.category.currentIndex())
    wait_rows(qtbot, browser)
    _, total = expected_page(window, verdict="failed", category="privacy")
    assert browser.model.rowCount() == total < everything
    assert bar.count.text() == f"{total} of {browser.run.n_failures} failures"
    assert "category 'privacy'" in bar.summary.text()
    qtbot.keyClicks(bar.search, "question 1")
    qtbot.waitUntil(lambda: "text contains" in bar.summary.text(), timeout=3000)
    wait_rows(qtbot, browser)
    _, total = expected_page(window, verdict="failed", category="privacy", text="question 1")
    assert browser.model.rowCount() == total
    bar.ranges["margin_max"].setText("-0.3")
    bar.ranges["margin_max"].editingFinished.emit()
    wait_rows(qtbot, browser)
    _, total = expected_page(window, verdict="failed", category="privacy", text="question 1",
                             margin_max=-0.3)
    assert browser.model.rowCount() == total
    qtbot.mouseClick(bar.clear_button, Qt.MouseButton.LeftButton)
    wait_rows(qtbot, browser)
    assert bar.summary.text() == "No filter" and browser.model.rowCount() == 120


def test_nothing_matching_says_so_and_offers_to_clear(qtbot, window):
    browser, bar = window.browser, window.browser.filter_bar
    qtbot.keyClicks(bar.search, "no such text anywhere")
    qtbot.waitUntil(lambda: browser.pages.currentWidget() is browser.empty, timeout=3000)
    assert browser.empty.title.text() == "Nothing matches the filter"
    qtbot.mouseClick(browser.empty.button, Qt.MouseButton.LeftButton)
    wait_rows(qtbot, browser)
    assert browser.pages.currentWidget() is browser.view and bar.search.text() == ""


def test_a_header_click_sorts_in_sql(qtbot, window):
    browser = window.browser
    keys = [c.key for c in browser.model.columns]
    header = browser.view.horizontalHeader()
    section = keys.index("margin")
    header.setSortIndicator(section, Qt.SortOrder.DescendingOrder)
    wait_rows(qtbot, browser)
    rows, _ = expected_page(window, verdict="failed", order_by="margin", descending=True)
    shown = [browser.model.row_values(i)["example_id"] for i in range(len(rows))]
    assert shown == [r["example_id"] for r in rows]
    assert browser.model.order_by == "margin" and browser.model.descending


def test_the_table_pages_lazily(qtbot, window):
    browser, model = window.browser, window.browser.model
    browser.selection.run_box.setCurrentIndex(0)  # browse the dataset, no run
    browser.selection.run_box.activated.emit(0)
    wait_rows(qtbot, browser)
    assert model.rowCount() == 120
    model.PAGE_SIZE = 50
    model.reload()
    wait_rows(qtbot, browser)
    assert set(model._pages) == {0}  # only the first page is loaded
    browser.view.scrollToBottom()
    qtbot.waitUntil(lambda: 2 in model._pages, timeout=5000)
    assert model.cached_row(119)["source_index"] == 119


# -- reviewing from the keyboard ---------------------------------------------------------

def test_flip_by_key_refreshes_only_that_row_then_undo_and_redo(qtbot, window):
    browser = window.browser
    resets = []
    browser.model.modelReset.connect(lambda: resets.append(1))
    first = browser.model.row_values(0)
    press(qtbot, browser, "f")
    assert [(e["example_id"], e["field"], e["new"]) for e in log_rows(window)] == \
        [(first["example_id"], "flipped", True)]
    assert log_rows(window)[0]["reason"] == "reviewed in the workstation"
    row = browser.model.row_values(0)
    assert row["label"] == "flipped" and row["reviewed"] and resets == []
    assert browser.detail.pair.chosen.text() == browser.detail.example["chosen"]
    assert "Ctrl+Z" in window.statusBar().currentMessage()
    press(qtbot, browser, "z", Qt.KeyboardModifier.ControlModifier)
    assert browser.model.row_values(0)["label"] == "as imported"
    assert [e["action"] for e in log_rows(window)] == ["edit", "undo"]
    press(qtbot, browser, "z", Qt.KeyboardModifier.ControlModifier |
          Qt.KeyboardModifier.ShiftModifier)
    assert browser.model.row_values(0)["label"] == "flipped"
    assert [e["action"] for e in log_rows(window)] == ["edit", "undo", "redo"]
    assert resets == []
    assert browser.detail.history.topLevelItemCount() == 3


def test_typing_in_the_search_box_never_triggers_review_keys(qtbot, window):
    bar = window.browser.filter_bar
    bar.search.setFocus()
    qtbot.keyClicks(bar.search, "fsux ]")
    assert bar.search.text() == "fsux ]"
    assert log_rows(window) == []


def test_label_keys_on_responses_and_a_plain_refusal_on_pairs(qtbot, window):
    browser = window.browser
    press(qtbot, browser, "s")  # pairs take flips, not labels
    assert log_rows(window) == []
    assert "applies to labels only" in window.statusBar().currentMessage()
    browser.selection.select_dataset("jbb")
    wait_rows(qtbot, browser)
    target = browser.model.row_values(0)
    assert target["label"] == "unsafe"
    press(qtbot, browser, "s")
    assert browser.model.row_values(0)["label"] == "safe"
    assert browser.model.row_values(0)["label_changed"]
    press(qtbot, browser, "u")
    assert [e["new"] for e in log_rows(window)] == ["safe", "unsafe"]


def test_exclude_note_tags_and_next_unreviewed(qtbot, window, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from workstation.ui.dialogs import NoteDialog

    browser = window.browser
    press(qtbot, browser, "x")
    assert browser.model.row_values(0)["excluded"]

    def fill_note(dialog):
        dialog.edit.setPlainText("<i>check</i> with the policy team")
        return True
    monkeypatch.setattr(NoteDialog, "exec", fill_note)
    press(qtbot, browser, "n")
    assert browser.model.row_values(0)["note"] == "<i>check</i> with the policy team"
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("urgent, later", True))
    press(qtbot, browser, "t")
    assert browser.model.row_values(0)["tags"] == ["later", "urgent"]
    assert "tags: none → later, urgent (log row 3)" in window.statusBar().currentMessage()
    assert "note: none → <i>check</i> with the policy team" in \
        browser.detail.history.topLevelItem(1).text(3)
    press(qtbot, browser, "j")
    press(qtbot, browser, "f")  # row 1 reviewed too
    press(qtbot, browser, "k")
    assert browser.current_row() == 0
    press(qtbot, browser, " ")
    assert browser.current_row() == 2  # rows 0 and 1 are reviewed
    press(qtbot, browser, "]")
    assert browser.current_row() == 3
    bar = browser.filter_bar  # the tag is now a filter choice
    assert bar.tag.findData("urgent") > 0


def test_the_reason_for_edits_is_editable_and_logged(qtbot, window, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("second look", True))
    window.actions["reason"].trigger()
    press(qtbot, window.browser, "f")
    assert log_rows(window)[-1]["reason"] == "second look"


def test_f1_and_question_mark_open_the_shortcut_list(qtbot, window):
    from workstation.ui.dialogs import HelpDialog
    from workstation.ui.shortcuts import SHORTCUTS

    press(qtbot, window.browser, "?")
    dialog = _dialog(qtbot, HelpDialog)
    table = dialog.table
    shown = {table.item(r, 1).text() for r in range(table.rowCount())}
    assert {s.text.rstrip("…") for s in SHORTCUTS} <= shown
    assert any("Ctrl+Shift+Z" in table.item(r, 0).text() for r in range(table.rowCount()))
    dialog.close()
    qtbot.keyClick(window.browser.view, Qt.Key.Key_F1)
    _dialog(qtbot, HelpDialog).close()


# -- the detail view -----------------------------------------------------------------

def test_dataset_text_is_shown_literally_never_as_rich_text(qtbot, window):
    browser = window.browser
    browser.selection.run_box.setCurrentIndex(0)
    browser.selection.run_box.activated.emit(0)
    wait_rows(qtbot, browser)
    browser.select_row(0)  # example 1: chosen is "<b>x</b> is shown literally..."
    browser.show_detail_now()
    chosen = browser.detail.pair.chosen
    assert chosen.text().startswith("<b>x</b> is shown literally")
    labels = browser.detail.findChildren(QLabel)
    assert labels and all(label.textFormat() == Qt.TextFormat.PlainText for label in labels)
    index = browser.model.index(0, [c.key for c in browser.model.columns].index("chosen"))
    assert browser.model.data(index) == "<b>x</b> is shown literally, never bold."
    tip = browser.model.data(index, Qt.ItemDataRole.ToolTipRole)
    assert "&lt;b&gt;x&lt;/b&gt;" in tip and "<b>x</b>" not in tip


def test_pairs_mark_the_differing_words(window):
    from workstation.ui.detail import diff_spans

    pair = window.browser.detail.pair
    chosen, rejected = pair.chosen.text(), pair.rejected.text()
    (a_start, a_end), = diff_spans(chosen, rejected)[0]
    assert chosen[a_start:a_end] == "refuses the harmful part politely"
    assert len(pair.chosen.view.extraSelections()) == 1
    assert pair.scores.text().startswith("chosen ")
    assert pair.bar.margin == pytest.approx(window.browser.model.row_values(0)["margin"])


def test_labeled_responses_and_trajectories_in_detail(qtbot, window):
    browser = window.browser
    browser.selection.select_dataset("jbb")
    wait_rows(qtbot, browser)
    facts = browser.detail.label.facts.text()
    assert "label unsafe" in facts and "FAIL" in facts and "category" in facts
    browser.selection.select_dataset("cart")
    wait_rows(qtbot, browser)
    body = browser.detail.trajectory
    assert browser.detail.body.currentWidget() is body
    curves = body.reward_plot.getPlotItem().listDataItems()
    assert len(curves) == 1 and len(curves[0].yData) == 60
    assert len(body.obs_plot.getPlotItem().listDataItems()) == 4
    qtbot.waitUntil(lambda: body.image.image is not None, timeout=10_000)
    assert body.image.image.shape == (64, 64)
    assert len(body.path.xData) == 60


def test_patch_kernels_are_drawn_on_the_landscape(qtbot, window, monkeypatch):
    import numpy as np

    from workstation.ui import trajectory

    monkeypatch.setattr(trajectory, "patch_kernels",
                        lambda ws, version: [(np.array([0.2, -0.3, 0.0, 0.0]), 0.25)])
    browser = window.browser
    browser.selection.select_dataset("cart")
    wait_rows(qtbot, browser)
    body = browser.detail.trajectory
    qtbot.waitUntil(lambda: len(body.kernels) == 1, timeout=10_000)
    circle = body.kernels[0].rect()
    assert circle.center().x() == pytest.approx(0.2) and circle.width() == pytest.approx(0.5)


def _cell(browser, row: int, key: str) -> str:
    column = [c.key for c in browser.model.columns].index(key)
    return browser.model.data(browser.model.index(row, column))


def test_after_a_flip_each_score_stays_with_its_text_and_the_verdict_says_it_is_as_audited(
        qtbot, window):
    browser, pair = window.browser, window.browser.detail.pair
    audited = browser.model.row_values(0)  # a failure of the pairs audit
    chosen, rejected = pair.chosen.text(), pair.rejected.text()
    s_chosen, s_rejected = audited["score_chosen"], audited["score_rejected"]
    assert pair.chosen.title.text() == f"Chosen · score {s_chosen:.3f}"
    assert _cell(browser, 0, "passed") == "FAIL"
    press(qtbot, browser, "f")
    assert (pair.chosen.text(), pair.rejected.text()) == (rejected, chosen)
    # The score of each text moves with it...
    assert pair.chosen.title.text() == f"Chosen (flipped in review) · score {s_rejected:.3f}"
    assert pair.rejected.title.text() == f"Rejected · score {s_chosen:.3f}"
    assert pair.scores.text().startswith(f"chosen {s_rejected:.3f}   rejected {s_chosen:.3f}")
    assert (_cell(browser, 0, "score_chosen"), _cell(browser, 0, "score_rejected")) == \
        (f"{s_rejected:.3f}", f"{s_chosen:.3f}")
    # ...and the audit's verdict says it is from before the flip.
    assert f"as audited, before your edit: FAIL (margin {audited['margin']:+.3f})" in \
        pair.scores.text()
    assert "the model prefers the text now under Chosen" in pair.scores.text()
    assert pair.bar.isHidden()
    assert _cell(browser, 0, "passed") == "FAIL before edit"
    press(qtbot, browser, "z", Qt.KeyboardModifier.ControlModifier)  # as audited again
    assert pair.chosen.title.text() == f"Chosen · score {s_chosen:.3f}"
    assert "before your edit" not in pair.scores.text() and not pair.bar.isHidden()
    assert _cell(browser, 0, "passed") == "FAIL"


def test_after_a_relabel_the_verdict_says_it_is_as_audited(qtbot, window):
    browser = window.browser
    browser.selection.select_dataset("jbb")
    wait_rows(qtbot, browser)
    row = browser.model.row_values(0)
    facts = browser.detail.label.facts
    assert facts.text().startswith(f"score {row['score']:.3f} · label unsafe · ")
    assert facts.text().endswith(f"FAIL (margin {row['margin']:+.3f})")
    press(qtbot, browser, "s")
    assert facts.text().startswith(f"score {row['score']:.3f} · label safe (unsafe when "
                                   f"audited) · ")
    assert facts.text().endswith(f"as audited, before your edit: FAIL (margin "
                                 f"{row['margin']:+.3f})")
    assert "Audit again to judge it as it is now." in facts.toolTip()
    assert _cell(browser, 0, "passed") == "FAIL before edit"


def test_history_and_findings_counts_never_stay_from_another_example(qtbot, window, tmp_path):
    browser, detail = window.browser, window.browser.detail
    press(qtbot, browser, "f")
    press(qtbot, browser, "x")
    assert detail.tabs.tabText(0) == "History (2)"
    browser.selection.select_run(_probe_run(window))
    wait_rows(qtbot, browser)
    case = next(r for r in range(browser.model.rowCount())
                if browser.model.row_values(r)["example_id"] is None)
    browser.select_row(case)  # a generated case: no example, no history
    browser.show_detail_now()
    assert detail.example is None and detail.body.currentWidget() is detail.case
    assert (detail.tabs.tabText(0), detail.tabs.tabText(1)) == ("History", "Findings")
    assert detail.history.topLevelItemCount() == 0
    browser.select_row(0)
    browser.show_detail_now()
    assert detail.tabs.tabText(1) == "Findings (1)"
    window.open_workspace(str(tmp_path / "empty.duckdb"), create=True)
    assert (detail.tabs.tabText(0), detail.tabs.tabText(1)) == ("History", "Findings")


def test_the_plots_follow_the_browser_into_another_workspace(qtbot, window, tmp_path, template):
    window.tabs.setCurrentWidget(window.lazy_tabs[0])
    plots = window.lazy_tabs[0].panel
    qtbot.waitUntil(lambda: plots.bundle is not None, timeout=20_000)
    window.browser.selection.select_dataset("jbb")
    qtbot.waitUntil(lambda: plots.bundle is not None and plots.bundle.run.dataset == "jbb",
                    timeout=20_000)
    other = copy_template(template, tmp_path / "other.duckdb")
    with qtbot.waitSignal(plots.rendered, timeout=20_000):
        assert window.open_workspace(str(other))
    wait_rows(qtbot, window.browser)
    run = window.browser.run
    assert plots.run_id == run.id and plots.bundle.run.dataset == run.dataset
    assert plots.pages.currentWidget() is not plots.empty


def _visible(view, key: str) -> bool:
    column = [c.key for c in view.model().columns].index(key)
    right = view.columnViewportPosition(column) + view.columnWidth(column)
    return view.columnViewportPosition(column) >= 0 and right <= view.viewport().width()


def test_at_1024_by_700_the_scores_and_six_history_rows_are_on_screen(qtbot, window):
    browser = window.browser
    window.resize(1024, 700)
    qtbot.waitUntil(lambda: window.width() == 1024, timeout=5000)
    wait_rows(qtbot, browser)
    for key in ("rank", "passed", "margin", "score_chosen", "score_rejected"):
        assert _visible(browser.view, key), key
    history = browser.detail.history
    assert history.height() >= 6 * (history.fontMetrics().height() + 8)
    browser.selection.select_dataset("jbb")
    wait_rows(qtbot, browser)
    assert all(_visible(browser.view, key) for key in ("passed", "score"))
    # A response's margin is its score's distance from the threshold: not a second column.
    assert "margin" not in [c.key for c in browser.model.columns]
    _save(qtbot, {"browser_labels_1024x700": window})


def test_passing_rows_say_they_have_no_rank(qtbot, window):
    browser = window.browser
    browser.filter_bar.set_verdict(None)  # failures and passing rows
    browser.requery()
    wait_rows(qtbot, browser)
    rank = [c.key for c in browser.model.columns].index("rank")
    passing = next(r for r in range(browser.model.rowCount())
                   if browser.model.row_values(r)["passed"])
    index = browser.model.index(passing, rank)
    assert browser.model.data(index) == "—"
    assert "only failures are ranked" in browser.model.data(index, Qt.ItemDataRole.ToolTipRole)


def test_a_trajectory_counts_its_steps_as_the_table_does(qtbot, window):
    browser = window.browser
    browser.selection.select_dataset("cart")
    wait_rows(qtbot, browser)
    steps = browser.model.data(browser.model.index(
        0, [c.key for c in browser.model.columns].index("n_steps")))
    body = browser.detail.trajectory
    assert body.note.text().startswith(f"{steps} steps ({len(body._obs)} observations) · ")


def test_history_lists_the_examples_review_log(qtbot, window):
    browser = window.browser
    press(qtbot, browser, "f")
    press(qtbot, browser, "x")
    history = browser.detail.history
    assert history.topLevelItemCount() == 2
    assert history.topLevelItem(1).text(3) == "excluded: no → yes"
    assert window.statusBar().currentMessage().startswith(
        f"example {browser.detail.example['id']} excluded: no → yes (log row 2)")
    assert browser.detail.tabs.tabText(0) == "History (2)"


def test_a_probe_run_lists_findings_filtered_by_probe(qtbot, window):
    browser = window.browser
    browser.selection.select_run(_probe_run(window))
    wait_rows(qtbot, browser)
    assert browser.mode == "findings" and browser.model.rowCount() == 3
    assert browser.filter_bar.count.text() == "3 of 3 findings"
    bar = browser.filter_bar
    bar.probe.setCurrentIndex(bar.probe.findData("label-errors"))
    bar.probe.activated.emit(bar.probe.currentIndex())
    wait_rows(qtbot, browser)
    assert browser.model.rowCount() == 1
    assert browser.detail.findings.topLevelItemCount() == 1
    press(qtbot, browser, "f")  # review keys act on the finding's example
    assert log_rows(window)[0]["example_id"] == browser.model.row_values(0)["example_id"]


# -- jobs -----------------------------------------------------------------------------

def test_the_models_list_keeps_its_choice_after_a_release(qtbot, window, monkeypatch):
    from workstation import releases
    from workstation.ui import models_panel

    monkeypatch.setattr(models_panel, "confirm", lambda *a, **k: True)
    monkeypatch.setattr(models_panel, "inform", lambda *a, **k: None)
    window.tabs.setCurrentWidget(window.lazy_tabs[1])
    panel = window.lazy_tabs[1].panel
    irl = next(n for n in panel.nodes.values() if n.ref == "irl@1")
    panel.tree.setCurrentItem(panel.tree.items[irl.id])  # the browser shows rm@1's run
    view = panel.compare_view
    assert view.candidate.currentText() == "irl@1" != view.baseline.currentText()
    panel.buttons["release"].click()
    qtbot.waitUntil(lambda: releases.current_release(window.ctx.ws, "irl") is not None,
                    timeout=20_000)
    qtbot.waitUntil(lambda: not window.ctx.jobs.running, timeout=20_000)
    assert panel.tree.currentItem().text(0) == "irl@1"
    assert "current release" in panel.tree.currentItem().text(1)
    assert view.candidate.currentText() == "irl@1"  # Compare's candidate did not move
    assert window.browser.run.model == "rm@1"


def test_an_audit_job_runs_in_the_background_and_shows_the_new_run(qtbot, window):
    browser = window.browser
    job = window.flywheel.start_audit("rm", "jbb")
    with qtbot.waitSignal(job.signals.ended, timeout=20_000):
        pass
    qtbot.waitUntil(lambda: browser.run is not None and browser.run.id == job.result.id)
    wait_rows(qtbot, browser)
    assert browser.selection.dataset.name == "jbb"
    assert "audit run" in window.statusBar().currentMessage()


def test_patch_selected_asks_first_then_registers_a_patched_version(qtbot, window,
                                                                    monkeypatch):
    from workstation import catalog
    from workstation.models import resolve
    from workstation.ui import forms

    browser = window.browser
    browser.select_row(0)
    qtbot.keyClick(browser.view, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    assert browser.selected_rows() == [0, 1]
    jobs, asked = [], []
    window.ctx.jobs.started.connect(jobs.append)
    monkeypatch.setattr(forms.PatchDialog, "exec", lambda form: asked.append(form) and False)
    window.actions["patch"].trigger()
    form = asked[0]  # nothing runs before the analyst says so
    assert form.windowTitle() == "Patch rm@1" and jobs == []
    assert form.values() == {"budget": 0.1, "strength": None, "notes": ""}
    text = form.summary.text()
    assert text.startswith("Suppress 2 selected cases of rm@1 with Gaussian kernels, and "
                           "register the result as a new version of rm whose parent is rm@1.")

    def accept(form):
        form.budget.setValue(0.05)
        form.notes.setText("two confident failures")
        return True
    monkeypatch.setattr(forms.PatchDialog, "exec", accept)
    window.actions["patch"].trigger()
    qtbot.waitUntil(lambda: jobs and not window.ctx.jobs.running, timeout=30_000)
    assert jobs[0].error is None, jobs[0].error
    assert "rm@2" in [v.ref for v in catalog.model_versions(window.ctx.ws)]
    record = resolve(window.ctx.ws, "rm@2").manifest["patch"]
    assert record["budget"] == 0.05
    message = window.statusBar().currentMessage()
    assert message.startswith("patched rm@1 as rm@2: 2 of 2 failure cases suppressed by 2 "
                              "kernels; protected examples lose at most 0.")
    assert message.endswith(" (budget 0.050)") and "kernels)" not in message


def test_a_long_audit_shows_progress_and_cancel_leaves_nothing(qtbot, window):
    from workstation import catalog

    ws = window.ctx.ws
    _big_labels(ws, 6000)
    before = len(catalog.runs(ws))
    window.ctx.encoder = gated_encoder()  # runs until cancelled
    job = window.flywheel.start_audit("rm", "big")
    bar = window.job_bar
    qtbot.waitUntil(bar.isVisible, timeout=5000)
    assert bar.shown is job and "Auditing big" in bar.label.text()
    qtbot.waitUntil(lambda: bar.bar.maximum() > 0, timeout=5000)  # real progress
    qtbot.waitUntil(lambda: " of " in bar.label.text(), timeout=5000)  # "· 640 of 6,000"
    with qtbot.waitSignal(job.signals.cancelled, timeout=20_000):
        qtbot.mouseClick(bar.cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not bar.isVisible(), timeout=5000)
    assert len(catalog.runs(ws)) == before
    assert "cancelled; nothing was changed" in window.statusBar().currentMessage()


def _finish(qtbot, job) -> None:
    with qtbot.waitSignal(job.signals.ended, timeout=60_000):
        pass
    assert job.error is None, job.error


def test_import_then_export_run_as_jobs(qtbot, window, tmp_path):
    import json

    source = tmp_path / "tiny.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": f"good {i}",
                                          "rejected": f"bad {i}"}) + "\n" for i in range(3)))
    _finish(qtbot, window.flywheel.start_import(str(source), "pairs", "tiny"))
    browser = window.browser
    qtbot.waitUntil(lambda: browser.selection.dataset.name == "tiny")
    wait_rows(qtbot, browser)
    assert browser.mode == "browse" and browser.model.rowCount() == 3
    assert browser.hint.isVisible() and browser.hint.button.text() == "Run an audit…"
    out = tmp_path / "out.jsonl"
    _finish(qtbot, window.flywheel.start_export("tiny", "jsonl", str(out)))
    assert len(out.read_text().splitlines()) == 3
    assert "exported 3 examples" in window.statusBar().currentMessage()


def test_the_import_form_detects_the_kind_and_says_when_the_choice_does_not_fit(
        qtbot, tmp_path):
    import json

    from workstation.ui import forms

    labels = tmp_path / "judged.jsonl"
    labels.write_text(json.dumps({"prompt": "p", "response": "r", "label": "safe"}) + "\n")
    form = forms.ImportDialog({"pairs": ["trl-jsonl"], "labels": ["labels-jsonl"]})
    qtbot.addWidget(form)
    form.path.edit.setText(str(labels))
    assert form.kind.currentData() == "labels" and form.name.text() == "judged"
    assert form.guess.text() == "Detected from the file: labeled responses."
    assert form.problem() is None
    form.kind.setCurrentIndex(form.kind.findData("pairs"))  # the analyst insists on pairs
    assert form.problem().startswith("This file looks like labeled responses, not preference "
                                     "pairs: choose “Labeled responses” above")
    form.accept()
    assert form.hint.isVisibleTo(form) and form.result() == 0  # the form stays open


def test_a_failed_import_opens_the_form_again_as_it_was(qtbot, window, tmp_path, monkeypatch):
    from workstation.ui import forms

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": oops\n')
    opened = _opened(monkeypatch, forms.ImportDialog)
    job = window.flywheel.start_import(str(broken), "pairs", "mine", "trl-jsonl")
    qtbot.waitUntil(lambda: bool(opened), timeout=20_000)
    form = opened[0]
    assert job.error.startswith(f"{broken}, line 2") and "malformed JSON" in job.error
    assert form.values() == {"path": str(broken), "kind": "pairs", "name": "mine",
                             "format": "trl-jsonl"}
    assert form.hint.text() == f"The import failed: {job.error}"
    assert not any(isinstance(w, QMessageBox) and w.isVisible()
                   for w in QApplication.topLevelWidgets())  # the form says it, once


def test_register_a_model_then_run_probes_as_jobs(qtbot, window, tmp_path):
    from tests.test_models import reward_mlp
    from workstation import catalog

    path = tmp_path / "obs.onnx"
    path.write_bytes(reward_mlp(4, seed=9))
    _finish(qtbot, window.flywheel.start_register(str(path), "irl", "observation",
                                                  parent="irl@1"))
    assert "irl@2" in [v.ref for v in catalog.model_versions(window.ctx.ws)]
    assert window.browser.selection.model_box.findText("irl@2") > 0
    job = window.flywheel.start_probes("rm", "hh", ["length-bias"])
    _finish(qtbot, job)
    browser = window.browser
    qtbot.waitUntil(lambda: browser.run is not None and browser.run.id == job.result.id)
    wait_rows(qtbot, browser)
    assert browser.mode == "findings"
    assert browser.model.rowCount() == job.result.counts["length-bias"] > 0


def test_register_a_tokens_model_with_its_text_format_and_max_length(qtbot, window,
                                                                     tmp_path, monkeypatch):
    """Model ▸ Register model… with text-tokens, "the response alone" and 64
    tokens: the version is registered so, and its details say so."""
    from tests.test_models import token_model, write_tokenizer
    from workstation.models import resolve
    from workstation.ui import forms
    from workstation.ui.versions import manifest_facts

    (tmp_path / "tok.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")  # found beside the model

    def fill(form):
        form.path.edit.setText(str(tmp_path / "tok.onnx"))
        form.name.setText("tok")
        form.input_kind.setCurrentIndex(form.input_kind.findData("text-tokens"))
        form.text_format.setCurrentIndex(form.text_format.findData("response"))
        form.max_length.setValue(64)
        assert form.problem() is None
        return True
    monkeypatch.setattr(forms.RegisterModelDialog, "exec", fill)
    jobs = []
    window.ctx.jobs.started.connect(jobs.append)
    window.actions["register"].trigger()
    qtbot.waitUntil(lambda: jobs and not window.ctx.jobs.running, timeout=30_000)
    assert jobs[0].error is None, jobs[0].error
    version = resolve(window.ctx.ws, "tok@1")
    assert version.input_kind == "text-tokens"
    assert (version.manifest["input"]["text_format"],
            version.manifest["input"]["max_length"]) == ("response", 64)
    facts = dict(manifest_facts(version.manifest))
    assert facts["text format"] == "the response alone (prompt ignored)"
    assert facts["max length"].startswith("64 tokens")


def test_the_text_fields_of_register_model_apply_to_text_tokens_only(qtbot, tmp_path):
    """Tokenizer, text format, max length and chat template config are off
    (and not passed on) unless the input is text-tokens; the chat template
    format is refused without a tokenizer_config.json (chosen or beside the
    model), and accepted with one beside it."""
    from workstation.models import INPUT_KINDS
    from workstation.ui.forms import RegisterModelDialog

    form = RegisterModelDialog(list(INPUT_KINDS), [])
    qtbot.addWidget(form)
    fields = (form.tokenizer, form.text_format, form.max_length, form.tokenizer_config)
    form.path.edit.setText(str(tmp_path / "m.onnx"))
    form.name.setText("m")
    form.input_kind.setCurrentIndex(form.input_kind.findData("observation"))
    assert not any(f.isEnabled() for f in fields)
    form.max_length.setValue(64)
    form.text_format.setCurrentIndex(form.text_format.findData("chat-template"))
    assert form.problem() is None  # a chat template means nothing to an observation model
    assert [form.values()[k] for k in ("tokenizer", "text_format", "max_length",
                                       "tokenizer_config")] == [None] * 4

    form.input_kind.setCurrentIndex(form.input_kind.findData("text-tokens"))
    assert all(f.isEnabled() for f in fields)
    form.accept()
    assert not form.result() and "tokenizer_config.json" in form.hint.text()
    assert str(tmp_path / "tokenizer_config.json") in form.hint.text()  # where it looked
    (tmp_path / "tokenizer_config.json").write_text("{}")
    assert form.problem() is None
    form.text_format.setCurrentIndex(form.text_format.findData("pair"))
    form.max_length.setValue(0)
    assert form.max_length.text() == "the tokenizer's own default"
    assert (form.values()["text_format"], form.values()["max_length"]) == ("pair", None)


@pytest.mark.slow
def test_retrain_runs_as_a_job_and_registers_a_version(qtbot, window):
    from workstation import catalog

    job = window.flywheel.start_retrain("cart", "irl", parent=2, seed=0)
    _finish(qtbot, job)
    assert job.result.version.ref == "irl@2"
    assert job.result.version.manifest.get("lineage", {}).get("parent") == "irl@1"
    assert "irl@2" in [v.ref for v in catalog.model_versions(window.ctx.ws)]
    assert window.statusBar().currentMessage() == "trained irl@2"


def test_dialogs_collect_choices_and_refuse_incomplete_ones(qtbot):
    from workstation.ui import forms

    form = forms.ImportDialog({"pairs": ["trl-jsonl", "hh-rlhf"]})
    qtbot.addWidget(form)
    assert form.problem() == "Choose the file to import."
    form.path.edit.setText("/data/harmless-base.jsonl.gz")
    assert form.name.text() == "harmless-base"
    form.format.setCurrentIndex(2)
    assert form.values() == {"path": "/data/harmless-base.jsonl.gz", "kind": "pairs",
                             "name": "harmless-base", "format": "hh-rlhf"}
    models = [("rm@1", 1, ("pairs", "labels")), ("irl@1", 2, ("demos",))]
    probes = forms.ProbeDialog(models, [("hh", "pairs"), ("cart", "demos")],
                               [("length-bias", "longer scores higher", ("pairs",)),
                                ("unsafe-states", "", ("demos",))])
    qtbot.addWidget(probes)
    assert probes.values() == {"model": 1, "dataset": "hh", "probes": ["length-bias"]}
    assert [probes.dataset.itemData(i) for i in range(probes.dataset.count())] == ["hh"]
    probes.model.setCurrentIndex(1)  # an observation model: demonstrations only
    assert probes.dataset.currentData() == "cart" and probes.chosen() == ["unsafe-states"]
    audit = forms.AuditDialog([], [("hh", "pairs")])
    qtbot.addWidget(audit)
    assert "Register a model first" in audit.problem()


def _opened(monkeypatch, form_class) -> list:
    """Forms of ``form_class`` the window opens, each cancelled at once."""
    opened = []

    def cancel(form):
        opened.append(form)
        return False
    monkeypatch.setattr(form_class, "exec", cancel)
    return opened


def _version_id(window, ref: str) -> int:
    from workstation.models import resolve

    return resolve(window.ctx.ws, ref).id


def _offered(box) -> list:
    return [box.itemData(i) for i in range(box.count())]


def test_retrain_offers_what_the_chosen_model_learns_from(qtbot, window, monkeypatch):
    from workstation.ui import forms

    opened = _opened(monkeypatch, forms.RetrainDialog)
    window.browser.selection.select_dataset("cart")  # the browser shows demonstrations
    wait_rows(qtbot, window.browser)
    window.ctx.model_selected.emit(_version_id(window, "rm@1"))  # chosen in the Models list
    window.actions["retrain"].trigger()
    form = opened[-1]
    assert form.parent_version.currentText() == "rm@1"
    assert _offered(form.dataset) == ["hh", "jbb"] and form.dataset.currentData() == "hh"
    assert form.name.text() == "rm" and form.problem() is None
    form.parent_version.setCurrentIndex(form.parent_version.findText("irl@1"))
    assert _offered(form.dataset) == ["cart"] and form.name.text() == "irl"
    form.parent_version.setCurrentIndex(0)  # a new model: any dataset, named after it
    assert _offered(form.dataset) == ["hh", "jbb", "cart"]


def test_audit_defaults_to_the_chosen_model_and_what_it_can_score(qtbot, window, monkeypatch):
    from workstation.ui import forms

    opened = _opened(monkeypatch, forms.AuditDialog)
    window.ctx.model_selected.emit(_version_id(window, "irl@1"))  # the browser shows hh
    window.actions["audit"].trigger()
    form = opened[-1]
    assert form.model.currentText() == "irl@1"
    assert _offered(form.dataset) == ["cart"] and form.problem() is None
    form.model.setCurrentIndex(form.model.findText("rm@1"))
    assert _offered(form.dataset) == ["hh", "jbb"]


WORKSPACE_ACTIONS = ("import", "export", "register", "train", "audit", "probes", "retrain",
                     "patch", "flip", "undo", "close")


def _enabled(win) -> set[str]:
    return {name for name in WORKSPACE_ACTIONS if win.actions[name].isEnabled()}


def test_actions_are_offered_only_when_they_can_run(qtbot, tmp_path):
    import json

    from workstation.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    assert _enabled(win) == set()  # no workspace: nothing to complain about later
    assert win.open_workspace(str(tmp_path / "new.duckdb"), create=True)
    assert _enabled(win) == {"import", "register", "close"}
    source = tmp_path / "tiny.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": f"good {i}",
                                          "rejected": f"bad {i}"}) + "\n" for i in range(3)))
    job = win.flywheel.start_import(str(source), "pairs", "tiny")
    qtbot.waitUntil(lambda: job not in win.ctx.jobs.running, timeout=20_000)
    assert _enabled(win) == {"import", "register", "close", "export", "train", "flip", "undo"}
    win.close_workspace()
    assert _enabled(win) == set()


def test_a_first_model_is_offered_where_there_is_none(qtbot, tmp_path, monkeypatch):
    import json

    from workstation.ui import forms
    from workstation.ui.main_window import MainWindow

    opened = _opened(monkeypatch, forms.RetrainDialog)
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    assert win.open_workspace(str(tmp_path / "new.duckdb"), create=True)
    window_models = win.lazy_tabs[1]
    win.tabs.setCurrentWidget(window_models)
    empty = window_models.panel.no_models
    assert window_models.panel.pages.currentWidget() is empty
    assert empty.button.text() == "Import a dataset…"  # nothing to train on yet
    source = tmp_path / "tiny.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": f"good {i}",
                                          "rejected": f"bad {i}"}) + "\n" for i in range(3)))
    job = win.flywheel.start_import(str(source), "pairs", "tiny")
    qtbot.waitUntil(lambda: job not in win.ctx.jobs.running, timeout=20_000)
    assert (empty.button.text(), empty.buttons.second.text()) == \
        ("Train a model…", "Register a model…")
    empty.button.click()
    form = opened[-1]
    assert form.windowTitle() == "Train a model" and form.parent_version.currentData() is None
    assert form.dataset.currentData() == "tiny" and form.name.text() == "tiny-rm"
    win.tabs.setCurrentWidget(win.browser)  # the browser offers it too
    hint = win.browser.hint
    assert hint.isVisible() and hint.button.text() == "Train a model…"
    hint.button.click()
    assert len(opened) == 2 and opened[-1].dataset.currentData() == "tiny"
    win.close()


def test_a_failing_job_shows_its_one_line_message(qtbot, window):
    window.flywheel.start_audit("irl", "hh")  # an observation model cannot score pairs
    box = _message_box(qtbot)
    assert box.text().startswith("Auditing hh failed: model irl@1 takes observation input")
    assert box.detailedText() == ""
    box.close()


def test_a_fault_in_a_job_offers_the_traceback(qtbot, window):
    window.ctx.run_job("Dividing", lambda ws, progress: 1 / 0)
    box = _message_box(qtbot)
    assert box.text() == "Dividing failed: ZeroDivisionError: division by zero."
    assert "Traceback" in box.detailedText()
    box.close()


def test_the_plots_and_models_tabs_build_their_panels_when_first_shown(window):
    from workstation.ui.models_panel import ModelsPanel
    from workstation.ui.plots import PlotsPanel

    plots, models, team = window.lazy_tabs
    assert plots.panel is None and models.panel is None and team.panel is None  # light start-up
    window.tabs.setCurrentWidget(plots)
    window.tabs.setCurrentWidget(models)
    assert isinstance(plots.panel, PlotsPanel) and isinstance(models.panel, ModelsPanel)
    assert models.panel.tree.topLevelItemCount() == 2  # rm and irl


# -- start-up ------------------------------------------------------------------------

def test_cold_start_is_quick_and_does_not_import_torch(template, tmp_path):
    script = textwrap.dedent(f"""
        import time
        start = time.perf_counter()
        import sys
        from PySide6.QtCore import QSettings
        QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope,
                          r"{tmp_path}")
        from PySide6.QtWidgets import QApplication
        from workstation.ui.app import make_app, open_main_window
        from PySide6.QtCore import QTimer
        app = make_app([])
        window = open_main_window(r"{template}")

        def check():
            if window.browser.model.loading:
                return
            print(round(time.perf_counter() - start, 3), "torch" in sys.modules,
                  window.browser.model.rowCount())
            window.close()
            app.quit()
        timer = QTimer()
        timer.timeout.connect(check)
        timer.start(5)
        app.exec()
    """)
    times = []
    for _ in range(2):  # the better of two: the first may pay for a cold disk cache
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                cwd=REPO, timeout=120,
                                env={**_env(), "QT_QPA_PLATFORM": "offscreen"})
        assert result.returncode == 0, result.stderr
        seconds, torch_loaded, rows = result.stdout.split()
        assert torch_loaded == "False" and int(rows) > 0
        times.append(float(seconds))
    # The 2 s target is measured by bench/bench_gui_start.py on a quiet machine; on a
    # loaded one only a bound this generous is sure to hold (torch alone costs more).
    assert min(times) <= GENEROUS_START_S, times


# -- screenshots ----------------------------------------------------------------------

def test_screenshots_of_every_screen(qtbot, window, tmp_path):
    """Writes tests/screenshots/*.png to look at; asserts each is drawn."""
    browser = window.browser
    shots = {"browser_pairs": window, "detail_pair": browser.detail}
    _save(qtbot, shots)
    browser.selection.select_dataset("jbb")
    wait_rows(qtbot, browser)
    _save(qtbot, {"detail_labels": browser.detail, "browser_labels": window})
    browser.selection.select_dataset("cart")
    wait_rows(qtbot, browser)
    qtbot.waitUntil(lambda: browser.detail.trajectory.image.image is not None, timeout=10_000)
    _save(qtbot, {"detail_trajectory": browser.detail, "browser_trajectories": window})
    browser.selection.select_run(_probe_run(window))
    wait_rows(qtbot, browser)
    _save(qtbot, {"browser_findings": window})
    browser.selection.select_run(1)  # the pairs audit
    wait_rows(qtbot, browser)
    app = QApplication.instance()
    light = app.palette()
    app.setPalette(_dark_palette())
    try:
        _save(qtbot, {"browser_pairs_dark": window})
    finally:
        app.setPalette(light)
    window.show_help()
    from workstation.ui.dialogs import HelpDialog

    _save(qtbot, {"help_dialog": _dialog(qtbot, HelpDialog)})
    window.open_workspace(str(tmp_path / "empty.duckdb"), create=True)
    _save(qtbot, {"empty_workspace": window})
    window.close_workspace()
    _save(qtbot, {"start_page": window})
    for name in ("browser_pairs", "detail_pair", "detail_labels", "detail_trajectory",
                 "browser_findings", "browser_pairs_dark", "help_dialog", "empty_workspace",
                 "start_page"):
        assert distinct_colours(SCREENSHOTS / f"{name}.png") >= 8, name  # drawn, not blank


# -- helpers ----------------------------------------------------------------------------

def _save(qtbot, widgets: dict) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)  # git-ignored: absent in a fresh clone
    for _ in range(3):
        qtbot.wait(50)
    for name, widget in widgets.items():
        assert widget.grab().save(str(SCREENSHOTS / f"{name}.png"))


def _dark_palette():
    """A dark system palette, as a dark desktop theme would give."""
    from PySide6.QtGui import QColor, QPalette

    palette = QPalette()
    role = QPalette.ColorRole
    for which, colour in ((role.Window, "#2b2b2b"), (role.WindowText, "#e6e6e6"),
                          (role.Base, "#1e1e1e"), (role.AlternateBase, "#262626"),
                          (role.Text, "#e6e6e6"), (role.Button, "#353535"),
                          (role.ButtonText, "#e6e6e6"), (role.Highlight, "#2f65ca"),
                          (role.HighlightedText, "#ffffff"), (role.PlaceholderText, "#8a8a8a"),
                          (role.Mid, "#555555")):
        palette.setColor(which, QColor(colour))
    for which in (role.WindowText, role.Text, role.ButtonText):  # as a dark theme greys them
        palette.setColor(QPalette.ColorGroup.Disabled, which, QColor("#7a7a7a"))
    return palette


def _message_box(qtbot) -> QMessageBox:
    qtbot.waitUntil(lambda: any(isinstance(w, QMessageBox) and w.isVisible()
                                for w in QApplication.topLevelWidgets()), timeout=10_000)
    return next(w for w in QApplication.topLevelWidgets()
                if isinstance(w, QMessageBox) and w.isVisible())


def _dialog(qtbot, kind):
    qtbot.waitUntil(lambda: any(isinstance(w, kind) and w.isVisible()
                                for w in QApplication.topLevelWidgets()), timeout=5000)
    return next(w for w in QApplication.topLevelWidgets() if isinstance(w, kind) and w.isVisible())


def _probe_run(win) -> int:
    from workstation import catalog

    return next(r.id for r in catalog.runs(win.ctx.ws) if r.kind == "probe")


def _big_labels(ws, n: int) -> None:
    """A labels dataset "big" of ``n`` examples, made in SQL."""
    dataset_id = ws.next_id("datasets")
    first = ws.next_id("examples")
    with ws.transaction():
        ws.execute("INSERT INTO datasets VALUES (?, 'big', 'labels', 'test', 'big', NULL, 'now', "
                   "?, NULL)", [dataset_id, n])
        ws.execute("INSERT INTO examples (id, dataset_id, source_sha256, source_index, prompt, "
                   "response, label, category) SELECT ? + i, ?, 'big', i, 'prompt ' || i, "
                   "'response number ' || i, i % 2 = 0, 'c' || (i % 5) FROM range(?) t(i)",
                   [first, dataset_id, n])


def _real_settings() -> tuple[Path, bytes | None]:
    """The analyst's own settings file (where QSettings puts it without
    $WORKSTATION_SETTINGS) and its bytes now, None when there is none."""
    real = Path(QSettings("workstation", "workstation").fileName())
    return real, _read(real)


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items()}
