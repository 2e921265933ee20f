"""The window shows held-out and training figures apart (issue 10 §2, the GUI
half): the Models details, the plots' header and split selector, the failure
list's Split column and filter, the Flywheel tooltip, the Compare view's counts
per dataset, and a retrain refused as identical.

The workspace: a pairs dataset, rm@1 trained on it and rm@2 retrained after
ten training pairs were flipped, both audited on it; ext@1 registered from
outside (its training data unknown) and audited on it; and an audit of rm@1
on a labels dataset stored as a workstation before membership records left it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QApplication, QGraphicsRectItem, QMessageBox, QToolTip

from tests.gui_support import own_settings, workspace_copy  # noqa: F401 (own_settings: a fixture)
from tests.test_gui import SCREENSHOTS, wait_rows
from tests.test_heldout import _labels, _pairs, edit, example_ids
from tests.test_training import FAST_TEXT, KeywordEncoder, _write_jsonl
from workstation.audits import plot_data as pd
from workstation.audits.runs import failure_page, get_run

ENC = KeywordEncoder()
WAIT = 60_000
SIZES = {"small": (1024, 700), "large": (1600, 1000)}


def build(folder: Path) -> tuple[Path, dict[str, int]]:
    """The workspace of the module docstring; returns its path and run ids."""
    from tests.test_models import reward_mlp
    from workstation.audits import run_audit
    from workstation.datasets import import_dataset
    from workstation.models import add_model_bytes
    from workstation.models.membership import TRAIN, split_roles
    from workstation.training import train
    from workstation.workspace import Workspace

    _write_jsonl(folder / "pairs.jsonl", _pairs())
    _write_jsonl(folder / "labels.jsonl", _labels())
    path = folder / "template.duckdb"
    with Workspace.open(path) as ws:
        import_dataset(ws, "pairs", folder / "pairs.jsonl", "pairs")
        import_dataset(ws, "labels", folder / "labels.jsonl", "labels")
        train(ws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
        runs = {"old": run_audit(ws, "rm@1", "labels", encoder=ENC).id,
                "rm@1": run_audit(ws, "rm@1", "pairs", encoder=ENC).id}
        ids = example_ids(ws, "pairs")
        edit(ws, ids[split_roles(ids, 0.2, 0) == TRAIN][:10], "flipped", True)
        train(ws, "pairs", "rm", parent="rm@1", encoder=ENC, params=FAST_TEXT)
        runs["rm@2"] = run_audit(ws, "rm@2", "pairs", encoder=ENC).id
        add_model_bytes(ws, reward_mlp(2 * ENC.dim), "ext", "text-embedding", encoder=ENC)
        runs["ext@1"] = run_audit(ws, "ext@1", "pairs", encoder=ENC).id
        # as the workstation before training membership left its runs
        ws.execute("UPDATE audit_runs SET membership = NULL, training_metrics = NULL "
                   "WHERE id = ?", [runs["old"]])
        ws.execute("UPDATE audit_results SET split = NULL WHERE run_id = ?", [runs["old"]])
        ws.execute("CHECKPOINT")
    return path, runs


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return build(tmp_path_factory.mktemp("gui-heldout"))


@pytest.fixture
def runs(template) -> dict[str, int]:
    return template[1]


@pytest.fixture
def ws(template, tmp_path):
    with workspace_copy(template[0], tmp_path) as workspace:
        yield workspace


@pytest.fixture
def ctx(ws, qtbot):
    from workstation.ui.context import AppContext

    context = AppContext(ws)
    context.encoder = ENC
    yield context
    context.jobs.cancel_all()
    context.jobs.wait(WAIT)


@pytest.fixture
def window(qtbot, template, tmp_path):
    from workstation.ui.main_window import MainWindow

    win = MainWindow()
    win.ctx.encoder = ENC
    qtbot.addWidget(win)
    win.resize(1400, 850)
    win.show()
    qtbot.waitExposed(win)
    copy = tmp_path / "window.duckdb"
    shutil.copy(template[0], copy)
    assert win.open_workspace(str(copy))
    wait_rows(qtbot, win.browser)
    yield win
    win.ctx.jobs.cancel_all()
    win.ctx.jobs.wait(WAIT)
    win.close()


def show(qtbot, widget, size=(1100, 700)):
    qtbot.addWidget(widget)
    widget.resize(*size)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def grab(widget, name: str) -> Path:
    """A screenshot for a person to look at (tests/screenshots, git-ignored)."""
    from tests.gui_support import distinct_colours

    SCREENSHOTS.mkdir(exist_ok=True)
    QApplication.processEvents()
    path = SCREENSHOTS / f"{name}.png"
    assert widget.grab().save(str(path))
    assert distinct_colours(path) >= 8, name  # drawn, not blank
    return path


def children(item) -> list:
    return [item.child(i) for i in range(item.childCount())]


# -- the Models panel's details ---------------------------------------------------------

def _models(qtbot, ctx, size=(1100, 700)):
    from workstation.ui.models_panel import ModelsPanel

    return show(qtbot, ModelsPanel(ctx), size)


def _select(panel, ref: str) -> None:
    node = next(n for n in panel.nodes.values() if n.ref == ref)
    panel.tree.setCurrentItem(panel.tree.items[node.id])


def _audit_section(panel, run_id: int):
    tree = panel.details.metrics
    heads = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    return next(h for h in heads if h.text(0).endswith(f"(run {run_id})"))


def _values(group) -> dict[str, str]:
    return {c.text(0): c.text(1) for c in children(group)}


def test_a_versions_audit_shows_heldout_metrics_first_and_the_training_sets_apart(
        qtbot, ctx, runs):
    panel = _models(qtbot, ctx)
    _select(panel, "rm@1")
    run = get_run(ctx.ws, runs["rm@1"])
    head = _audit_section(panel, run.id)
    assert head.text(0) == f"Audit of pairs (run {run.id})"
    held, training = children(head)
    assert (held.text(0), held.text(1)) == (
        "Held-out", "the 13 examples rm@1 was not trained on (its held-out split)")
    assert (training.text(0), training.text(1)) == (
        "Training set (apart)", "the 67 examples rm@1 was trained on (its training split)")
    assert _values(held)["pairwise accuracy"] == f"{run.metrics['pairwise_accuracy']:.4g}"
    assert _values(held)["examples"] == "13" and _values(training)["examples"] == "67"
    assert _values(training)["pairwise accuracy"] == \
        f"{run.training_metrics['pairwise_accuracy']:.4g}"
    assert run.metrics["pairwise_accuracy"] != run.training_metrics["pairwise_accuracy"]
    # the audit it was given before membership was recorded does not pretend
    [old] = children(_audit_section(panel, runs["old"]))
    assert (old.text(0), old.text(1)) == (
        "All examples", "held-out and training not told apart (audited before membership was "
                        "recorded)")
    # the tree's failure count says how many are on training examples, each run in the tip
    item = panel.tree.items[run.model_version_id]
    old_failures = get_run(ctx.ws, runs["old"]).n_failures
    trained = run.training_metrics["n_failures"]
    assert item.text(2) == f"2 · {run.n_failures + old_failures} failures, {trained} on " \
                           f"training examples"
    assert item.toolTip(2).splitlines() == [
        f"labels (run {runs['old']}): {old_failures} failures, held-out and training not told "
        f"apart (audited before membership was recorded)",
        f"pairs (run {run.id}): {run.n_failures} failures: {run.metrics['n_failures']} "
        f"held-out, {trained} on training examples"]


def test_an_outside_models_audit_says_its_training_membership_is_unknown(qtbot, ctx, runs):
    panel = _models(qtbot, ctx)
    _select(panel, "ext@1")
    [group] = children(_audit_section(panel, runs["ext@1"]))
    assert group.text(0) == "All examples"
    assert group.text(1) == ("training membership unknown: all 80 counted as not trained "
                             "on (registered from outside the workstation)")
    assert group.toolTip(1) == group.text(1)
    assert _values(group)["examples"] == "80"


# -- the failure list ---------------------------------------------------------------------

def _column(browser, key: str) -> int | None:
    keys = [c.key for c in browser.model.columns]
    return keys.index(key) if key in keys else None


def _shown_splits(browser) -> list[str]:
    col = _column(browser, "split")
    model = browser.model
    return [model.data(model.index(r, col)) for r in range(model.rowCount())]


def _choose_split(qtbot, browser, value: str | None) -> None:
    combo = browser.filter_bar.split
    combo.setCurrentIndex(combo.findData(value))
    combo.activated.emit(combo.currentIndex())
    wait_rows(qtbot, browser)


def test_the_failure_list_shows_each_rows_split_sorts_and_filters_by_it(qtbot, window, runs):
    browser = window.browser
    browser.selection.select_run(runs["rm@1"])
    wait_rows(qtbot, browser)
    run = get_run(window.ctx.ws, runs["rm@1"])
    held_failures = run.metrics["n_failures"]
    # every failure by default: those on training examples are the likeliest label errors
    assert browser.filter_bar.split.isEnabled() and browser.filter_bar.split.currentData() is None
    assert browser.model.rowCount() == run.n_failures
    assert sorted(_shown_splits(browser)) == sorted(
        ["held-out"] * held_failures + ["training"] * (run.n_failures - held_failures))
    assert browser.filter_bar.count.text() == f"{run.n_failures} of {run.n_failures} failures"
    # the Split column sorts in SQL: held-out rows first
    header = browser.view.horizontalHeader()
    header.setSortIndicator(_column(browser, "split"), Qt.SortOrder.AscendingOrder)
    wait_rows(qtbot, browser)
    assert browser.model.order_by == "split"
    assert _shown_splits(browser)[:held_failures] == ["held-out"] * held_failures
    _choose_split(qtbot, browser, "heldout")
    assert browser.model.rowCount() == held_failures
    assert set(_shown_splits(browser)) == {"held-out"}
    assert "held-out only" in browser.filter_bar.summary.text()
    _choose_split(qtbot, browser, "training")
    assert browser.model.rowCount() == run.n_failures - held_failures
    want, _ = failure_page(window.ctx.ws, run.id, verdict="failed", split="training",
                           order_by="split", limit=100)
    assert [browser.model.row_values(r)["example_id"] for r in range(len(want))] == \
        [r["example_id"] for r in want]
    # another run of the same choice keeps no split of the last one's
    browser.selection.select_run(runs["rm@2"])
    wait_rows(qtbot, browser)
    assert browser.filter_bar.split.currentData() is None
    assert browser.model.rowCount() == get_run(window.ctx.ws, runs["rm@2"]).n_failures


def test_runs_that_cannot_tell_their_splits_apart_disable_the_filter_saying_why(
        qtbot, window, runs):
    browser, bar = window.browser, window.browser.filter_bar
    browser.selection.select_run(runs["old"])
    wait_rows(qtbot, browser)
    assert not bar.split.isEnabled() and _column(browser, "split") is None
    assert bar.split.toolTip() == (f"Run {runs['old']} was audited before the workstation "
                                   f"recorded which examples a version was trained on: audit "
                                   f"again to tell them apart.")
    assert bar.labels["Split"].toolTip() == bar.split.toolTip()
    browser.selection.select_run(runs["ext@1"])
    wait_rows(qtbot, browser)
    assert not bar.split.isEnabled() and _column(browser, "split") is None
    assert bar.split.toolTip().startswith("Training membership unknown: ext@1's training data")
    browser.selection.select_run(runs["rm@1"])
    wait_rows(qtbot, browser)
    assert bar.split.isEnabled() and _column(browser, "split") is not None
    assert bar.split.toolTip().startswith("Held-out: the examples rm@1 was not trained on")


# -- the plots --------------------------------------------------------------------------

def _plots(qtbot, ctx, run_id: int, size=(1100, 700)):
    from workstation.ui.plots import PlotsPanel

    panel = show(qtbot, PlotsPanel(ctx), size)
    with qtbot.waitSignal(panel.rendered, timeout=WAIT):
        ctx.run_selected.emit(run_id)
    return panel


def _pick(qtbot, panel, split: str) -> None:
    box = panel.split_box
    with qtbot.waitSignal(panel.rendered, timeout=WAIT):
        box.setCurrentIndex(box.findData(split))
        box.activated.emit(box.currentIndex())


def test_the_plots_show_heldout_examples_first_and_switch_to_the_training_set(
        qtbot, ctx, runs):
    panel = _plots(qtbot, ctx, runs["rm@1"])
    run = get_run(ctx.ws, runs["rm@1"])
    held, trained = run.metrics, run.training_metrics
    box = panel.split_box
    assert box.currentData() == "heldout" and box.isEnabled()
    header = panel.header.text()
    assert (f"held-out pairwise accuracy {held['pairwise_accuracy']:.3f} · training set "
            f"pairwise accuracy {trained['pairwise_accuracy']:.3f}") in header
    assert ("Showing the 13 examples rm@1 was not trained on (its held-out split) "
            f"&nbsp;·&nbsp; {held['n_failures']} failure") in header
    assert panel.bundle.roc.n_positive == 13  # the chosen sides of the held-out pairs
    assert panel.bundle.bars.overall == held["pairwise_accuracy"]
    _pick(qtbot, panel, "training")
    assert panel.bundle.roc.n_positive == 67
    assert panel.bundle.bars.overall == trained["pairwise_accuracy"]
    assert "Showing the 67 examples rm@1 was trained on (its training split) &nbsp;·&nbsp; " \
           f"{trained['n_failures']} failures" in panel.header.text()
    _pick(qtbot, panel, "all")
    assert panel.bundle.roc.n_positive == 80
    assert "Showing all 80 audited examples" in panel.header.text()
    assert panel.categories_tab.message.text().startswith("Category bars come from a run's")
    # the next run opens on its held-out examples again
    with qtbot.waitSignal(panel.rendered, timeout=WAIT):
        ctx.run_selected.emit(runs["rm@2"])
    assert box.currentData() == "heldout"
    assert panel.bundle.roc.n_positive == 13


def test_the_plots_of_runs_without_a_training_set_offer_none(qtbot, ctx, runs):
    panel = _plots(qtbot, ctx, runs["ext@1"])
    box = panel.split_box
    training = box.model().item(box.findData("training"))
    assert box.isEnabled() and not training.isEnabled()
    assert box.toolTip().startswith("Training membership unknown: ext@1's training data")
    assert "· training membership unknown" in panel.header.text()
    with qtbot.waitSignal(panel.rendered, timeout=WAIT):
        ctx.run_selected.emit(runs["old"])
    assert not box.isEnabled() and box.currentText() == "All examples"
    assert "(held-out and training examples not told apart)" in panel.header.text()
    assert "was audited before training membership was recorded" in panel.header.text()


# -- the Flywheel tooltip ---------------------------------------------------------------

def _tooltip_at(tab, x: float, y: float) -> str:
    """The tooltip a person sees hovering over (x, y) in data coordinates."""
    plot = tab.plot
    at = plot.mapFromScene(plot.getPlotItem().vb.mapViewToScene(QPointF(x, y)))
    QToolTip.hideText()
    QApplication.sendEvent(plot.viewport(), QHelpEvent(QEvent.Type.ToolTip, at,
                                                       plot.viewport().mapToGlobal(at)))
    return QToolTip.text() if QToolTip.isVisible() else ""


def test_the_flywheel_says_per_version_what_is_held_out_and_how_many_were_compared(
        qtbot, ctx, runs):
    panel = _plots(qtbot, ctx, runs["rm@2"], size=(1400, 900))
    panel.tabs.setCurrentWidget(panel.flywheel_tab)
    qtbot.waitExposed(panel.flywheel_tab.plot)
    first, second = pd.flywheel_history(ctx.ws, "rm")
    assert (second.heldout_failing_examples, second.n_compared) == (5, 13)
    tip = _tooltip_at(panel.flywheel_tab, 1.0, 1.0)  # over rm@2's bars
    assert tip.splitlines() == [
        "rm@2 (parent rm@1)",
        f"{second.failing_examples} failing examples in its latest audit of each dataset, 5 of "
        f"them held-out (not trained on by rm@2)",
        "0 probe findings in its latest probe runs",
        f"Against rm@1: {second.fixed} fixed, {second.broken} broken among 13 held-out examples "
        f"compared (neither version trained on them; pairs)"]
    tip = _tooltip_at(panel.flywheel_tab, 0.0, 1.0)
    assert tip.splitlines()[1].endswith(f"{first.heldout_failing_examples} of them held-out "
                                        f"(not trained on by rm@1)")
    assert tip.splitlines()[-1] == "No parent to compare with."
    areas = [i for i in panel.flywheel_tab.plot.getPlotItem().items
             if isinstance(i, QGraphicsRectItem)]
    assert len(areas) == 2  # one per version, nothing left of another run


# -- the Compare view -------------------------------------------------------------------

def _compare(qtbot, panel) -> None:
    view = panel.compare_view
    _select(panel, "rm@2")
    assert (view.candidate.currentText(), view.baseline.currentText()) == ("rm@2", "rm@1")
    view.compare_button.click()
    qtbot.waitUntil(lambda: view.per_dataset.rowCount() > 0 and view.compare_button.isEnabled(),
                    timeout=WAIT)


def test_compare_counts_per_dataset_the_examples_used_and_the_training_ones_apart(
        qtbot, ctx, runs):
    from workstation.regression import compare

    panel = _models(qtbot, ctx)
    _compare(qtbot, panel)
    report = compare(ctx.ws, "rm@2", "rm@1", encoder=ENC).to_json()
    view = panel.compare_view
    cells = {view.per_dataset.item(r, 0).text(): [view.per_dataset.item(r, c).text()
                                                  for c in range(view.per_dataset.columnCount())]
             for r in range(view.per_dataset.rowCount())}
    pairs = report["per_dataset"]["pairs"]
    t = pairs["training_examples"]
    assert cells["pairs"] == [
        "pairs", "13 held-out",
        str(pairs["fixed"]), str(pairs["broken"]), str(pairs["unchanged"]),
        f"67: {t['fixed']} fixed, {t['broken']} broken, {t['unchanged']} unchanged"]
    labels = report["per_dataset"]["labels"]
    assert cells["labels"][1] == "all 120" and labels["n"] == 120
    assert cells["labels"][5] == "none"  # neither was trained on it: every example compared
    row = list(cells).index("pairs")
    assert view.per_dataset.item(row, 1).toolTip().splitlines() == [
        "Examples compared: held-out (the examples rm@1 and rm@2 were not trained on).",
        "Baseline rm@1: trained on this dataset (split seed 0, held-out fraction 0.2).",
        "Candidate rm@2: trained on this dataset (split seed 0, held-out fraction 0.2)."]
    labels_row = list(cells).index("labels")
    assert view.per_dataset.item(labels_row, 1).toolTip().splitlines()[1:] == [
        "Baseline rm@1: trained on 'pairs', not this dataset.",
        "Candidate rm@2: trained on 'pairs', not this dataset."]
    header = [view.per_dataset.horizontalHeaderItem(c).text()
              for c in range(view.per_dataset.columnCount())]
    assert header[1:] == ["Examples compared", "Fixed", "Broken", "Unchanged",
                          "Training examples (apart)"]
    assert "not gated" in view.per_dataset.horizontalHeaderItem(5).toolTip()


# -- a retrain identical to its parent ----------------------------------------------------

def _message_box(qtbot) -> QMessageBox:
    qtbot.waitUntil(lambda: any(isinstance(w, QMessageBox) and w.isVisible()
                                for w in QApplication.topLevelWidgets()), timeout=WAIT)
    return next(w for w in QApplication.topLevelWidgets()
                if isinstance(w, QMessageBox) and w.isVisible())


@pytest.mark.slow
def test_a_retrain_identical_to_its_parent_is_refused_in_one_sentence(qtbot, window, runs):
    from workstation.models import resolve

    parent = resolve(window.ctx.ws, "rm@2").id
    job = window.flywheel.start_retrain("pairs", "rm", parent=parent)
    box = _message_box(qtbot)
    assert job.error is not None
    assert box.text() == ("Training rm on pairs failed: the retrained model is identical to "
                          "rm@2: the training data did not change since rm@2 (no review edits "
                          "since); nothing registered.")
    assert box.detailedText() == ""
    grab(box, "heldout_retrain_refused")
    box.close()


# -- screenshots ----------------------------------------------------------------------------

@pytest.fixture(params=sorted(SIZES))
def sized(request, qtbot, template, tmp_path):
    """A window of each size on a copy of the workspace."""
    from workstation.ui.main_window import MainWindow

    win = MainWindow()
    win.ctx.encoder = ENC
    qtbot.addWidget(win)
    win.resize(*SIZES[request.param])
    win.show()
    qtbot.waitExposed(win)
    copy = tmp_path / "sized.duckdb"
    shutil.copy(template[0], copy)
    assert win.open_workspace(str(copy))
    wait_rows(qtbot, win.browser)
    win.size_name = request.param
    yield win
    win.ctx.jobs.cancel_all()
    win.ctx.jobs.wait(WAIT)
    win.close()


def _tip_label():
    return next(w for w in QApplication.topLevelWidgets()
                if w.inherits("QTipLabel") and w.isVisible())


@pytest.mark.slow
def test_screens_of_heldout_and_training_figures(qtbot, sized, runs):
    """Every screen this change touched, for a person to look at."""
    win, size = sized, sized.size_name
    browser = win.browser
    browser.selection.select_run(runs["rm@1"])
    wait_rows(qtbot, browser)
    browser.view.horizontalHeader().setSortIndicator(_column(browser, "split"),
                                                     Qt.SortOrder.AscendingOrder)
    wait_rows(qtbot, browser)
    grab(win, f"heldout_browser_split_column_{size}")
    _choose_split(qtbot, browser, "training")
    grab(win, f"heldout_browser_training_only_{size}")
    browser.selection.select_run(runs["old"])
    wait_rows(qtbot, browser)
    grab(win, f"heldout_browser_unrecorded_run_{size}")
    win.tabs.setCurrentWidget(win.lazy_tabs[0])
    plots = win.lazy_tabs[0].panel
    with qtbot.waitSignal(plots.rendered, timeout=WAIT):
        win.ctx.run_selected.emit(runs["rm@1"])
    grab(win, f"heldout_plots_heldout_{size}")
    _pick(qtbot, plots, "training")
    grab(win, f"heldout_plots_training_{size}")
    with qtbot.waitSignal(plots.rendered, timeout=WAIT):
        win.ctx.run_selected.emit(runs["old"])
    grab(win, f"heldout_plots_unrecorded_run_{size}")
    with qtbot.waitSignal(plots.rendered, timeout=WAIT):
        win.ctx.run_selected.emit(runs["rm@2"])
    plots.tabs.setCurrentWidget(plots.flywheel_tab)
    assert "held-out" in _tooltip_at(plots.flywheel_tab, 1.0, 1.0)
    grab(win, f"heldout_plots_flywheel_{size}")
    grab(_tip_label(), f"heldout_flywheel_tooltip_{size}")
    QToolTip.hideText()
    win.tabs.setCurrentWidget(win.lazy_tabs[1])
    models = win.lazy_tabs[1].panel
    _select(models, "rm@1")
    grab(win, f"heldout_models_details_{size}")
    models.tabs.setCurrentWidget(models.compare_view)
    _compare(qtbot, models)
    grab(win, f"heldout_models_compare_{size}")
