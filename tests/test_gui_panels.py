"""The plots and models panels, driven as an analyst would (pytest-qt, offscreen).

Each screen is saved under tests/screenshots/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QPointF, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtTest import QTest

from tests.gui_support import own_settings, workspace_copy  # noqa: F401 (own_settings: a fixture)
from tests.test_models import DIM, HashEncoder, insert_dataset, reward_mlp
from workstation import releases
from workstation.audits import plot_data as pd
from workstation.audits.runs import run_audit
from workstation.models import add_model_bytes
from workstation.ui import models_panel
from workstation.ui.context import AppContext
from workstation.ui.models_panel import ModelsPanel
from workstation.ui.plots import EMPTY_TEXT, PlotsPanel


def _pyside_drops_none_references() -> bool:
    """PySide6 6.12.0 on Python < 3.12 releases a reference to None on every
    call that returns nothing, so a GUI session aborts after a few thousand
    calls ("deallocating None"). pyproject pins pyside6-essentials < 6.12."""
    if sys.version_info >= (3, 12):
        return False  # None is immortal
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    before = sys.getrefcount(None)
    for _ in range(50):
        app.processEvents()
    return sys.getrefcount(None) < before - 25


def test_the_installed_pyside_keeps_its_references_to_none():
    import PySide6

    assert not _pyside_drops_none_references(), (
        f"PySide6 {PySide6.__version__} drops references to None on Python "
        f"{sys.version_info.major}.{sys.version_info.minor}: the GUI would abort; install "
        "pyside6-essentials<6.12")


SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
WORDS = ("the a model safe harm help cannot will steal lock bread tool code kill sorry yes "
         "no").split()
CATEGORIES = ("Crime", "Self-harm", "Privacy", "Violence", "Fraud")
WAIT = 30_000


def _text(rng: np.random.Generator, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS, int(rng.integers(low, high))))


def build_workspace(ws) -> dict:
    """rm@1 -> rm@2 -> rm@3, each audited on a labeled and a pairs dataset."""
    encoder = HashEncoder()
    rng = np.random.default_rng(1)
    labels = [{"prompt": f"question {i}", "response": _text(rng, 2, 60),
               "label": bool(rng.random() < 0.6), "category": CATEGORIES[i % 5]}
              for i in range(300)]
    pairs = [{"prompt": f"p{i}", "chosen": _text(rng, 1, 40), "rejected": _text(rng, 1, 40),
              "category": CATEGORIES[i % 3]} for i in range(200)]
    insert_dataset(ws, "labels", labels, name="safety-labels")
    insert_dataset(ws, "pairs", pairs, name="hh-pairs")
    options = {"encoder": encoder, "score_type": "probability"}
    add_model_bytes(ws, reward_mlp(DIM, seed=1), "rm", "text-embedding",
                    extras={"metrics": {"loss": 0.41, "accuracy": 0.71}}, **options)
    add_model_bytes(ws, reward_mlp(DIM, seed=2), "rm", "text-embedding", parent="rm@1",
                    extras={"lineage": {"training_metrics": {"loss": 0.33, "heldout": {
                        "accuracy": 0.78}}, "dataset": "safety-labels"}}, **options)
    add_model_bytes(ws, reward_mlp(DIM, seed=3), "rm", "text-embedding", parent="rm@2",
                    **options)
    return {(ref, d): run_audit(ws, ref, d, encoder=encoder).id
            for ref in ("rm@1", "rm@2", "rm@3") for d in ("safety-labels", "hh-pairs")}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The workspace built once per module; each test gets a copy."""
    from workstation.workspace import Workspace

    path = tmp_path_factory.mktemp("template") / "ws.duckdb"
    with Workspace.open(path) as ws:
        runs = build_workspace(ws)
        ws.execute("CHECKPOINT")
    return path, runs


@pytest.fixture
def ws(template, tmp_path):
    with workspace_copy(template[0], tmp_path) as workspace:
        yield workspace


@pytest.fixture
def runs(template):
    return template[1]


@pytest.fixture
def ctx(ws, qtbot):
    context = AppContext(ws)
    context.encoder = HashEncoder()
    yield context
    context.jobs.wait(WAIT)


def shot(widget, name: str) -> Path:
    """Save a screenshot of ``widget`` for a person to look at."""
    SCREENSHOTS.mkdir(exist_ok=True)
    QCoreApplication.processEvents()
    path = SCREENSHOTS / f"{name}.png"
    assert widget.grab().save(str(path))
    return path


def show(qtbot, widget, size=(1100, 700)):
    qtbot.addWidget(widget)
    widget.resize(*size)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


# -- plots ----------------------------------------------------------------------


def _plots(qtbot, ctx, run_id=None) -> PlotsPanel:
    panel = show(qtbot, PlotsPanel(ctx))
    if run_id is not None:
        with qtbot.waitSignal(panel.rendered, timeout=WAIT):
            ctx.run_selected.emit(run_id)
    return panel


def test_plots_show_an_empty_state_without_a_run(qtbot, ctx, runs):
    panel = _plots(qtbot, ctx)
    assert panel.pages.currentWidget() is panel.empty and panel.empty.text() == EMPTY_TEXT
    shot(panel, "plots-empty")
    with qtbot.waitSignal(panel.rendered, timeout=WAIT):
        ctx.run_selected.emit(runs[("rm@2", "safety-labels")])
    ctx.run_selected.emit(None)
    assert panel.pages.currentWidget() is panel.empty
    ctx.ws.execute("INSERT INTO audit_runs SELECT 99, 'probe', model_version_id, dataset_id, "
                   "created_at, created_by, NULL, review_head, NULL, '{}', 0, 0, NULL, NULL "
                   "FROM audit_runs "
                   "WHERE id = 1")
    with qtbot.waitSignal(panel.rendered, timeout=WAIT):
        ctx.run_selected.emit(99)
    assert "run 99 is a probe run" in panel.empty.text() and EMPTY_TEXT in panel.empty.text()


def test_plots_of_a_labeled_run_render_every_tab(qtbot, ctx, runs):
    run_id = runs[("rm@2", "safety-labels")]
    panel = _plots(qtbot, ctx, run_id)
    assert "rm@2" in panel.header.text() and "safety-labels" in panel.header.text()
    names = []
    for i in range(panel.tabs.count()):
        panel.tabs.setCurrentIndex(i)
        tab = panel.tabs.widget(i)
        assert tab.stack.currentWidget() is tab.plot, (panel.tabs.tabText(i), tab.message.text())
        assert tab.plot.getPlotItem().listDataItems() or tab.plot.getPlotItem().items
        names.append(panel.tabs.tabText(i))
        shot(panel, f"plots-{names[-1].lower()}")
    assert names == ["Scores", "Calibration", "ROC", "Categories", "Length", "Versions",
                     "Flywheel"]
    assert "AUROC" in panel.roc_tab.caption.text()
    assert panel.baseline_box.currentText().startswith("rm@1 (parent)")
    fixed = panel.bundle.comparison.counts["fixed"]
    assert f"fixed ({fixed:,})" in panel.versions_tab.caption.text()


def _isolated_point(item) -> tuple[float, float, int]:
    """The point farthest from its nearest neighbour (a click hits it alone)."""
    x, y = item.getData()
    vb = item.getViewBox()
    pixels = np.array([[p.x(), p.y()] for p in (vb.mapViewToScene(QPointF(a, b))
                                                 for a, b in zip(x, y))])
    distance = np.linalg.norm(pixels[:, None] - pixels[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    i = int(distance.min(axis=1).argmax())
    return float(x[i]), float(y[i]), int(item.data["data"][i])


def test_clicking_a_point_selects_its_example(qtbot, ctx, runs):
    panel = _plots(qtbot, ctx, runs[("rm@2", "safety-labels")])
    panel.tabs.setCurrentWidget(panel.length_tab)
    qtbot.wait(50)
    plot = panel.length_tab.plot
    item = max(panel.length_tab.items, key=lambda it: len(it.getData()[0]))
    x, y, example_id = _isolated_point(item)
    scene = item.getViewBox().mapViewToScene(QPointF(x, y))
    at = plot.mapFromScene(scene)
    with qtbot.waitSignal(ctx.example_selected, timeout=5000) as picked:
        QTest.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=at)
    assert picked.args == [example_id]
    # The version comparison's points carry their example ids too.
    fixed = panel.versions_tab.items[pd.FIXED]
    point = fixed.points()[0]
    with qtbot.waitSignal(ctx.example_selected, timeout=5000) as picked:
        fixed.sigClicked.emit(fixed, [point], None)
    assert picked.args == [int(point.data())]
    assert picked.args[0] in panel.bundle.comparison.ids_of("fixed")


def test_plots_of_a_pairs_run_say_what_does_not_apply(qtbot, ctx, runs):
    panel = _plots(qtbot, ctx, runs[("rm@3", "hh-pairs")])
    assert panel.calibration_tab.stack.currentWidget() is panel.calibration_tab.message
    assert "labeled responses" in panel.calibration_tab.message.text()
    panel.tabs.setCurrentWidget(panel.calibration_tab)
    shot(panel, "plots-pairs-calibration")
    assert "pooled" in panel.roc_tab.caption.text()
    panel.tabs.setCurrentWidget(panel.length_tab)
    assert "chosen side" in panel.length_tab.caption.text()
    shot(panel, "plots-pairs-length")


def test_changing_the_baseline_and_metric_reloads(qtbot, ctx, runs):
    panel = _plots(qtbot, ctx, runs[("rm@3", "safety-labels")])
    assert panel.baseline_box.count() == 2
    other = runs[("rm@1", "safety-labels")]
    with qtbot.waitSignal(panel.rendered, timeout=WAIT):
        panel.baseline_box.setCurrentIndex(panel.baseline_box.findData(other))
        panel.baseline_box.activated.emit(panel.baseline_box.currentIndex())
    assert panel.bundle.comparison.old_label == "rm@1"
    assert panel.baseline_box.currentData() == other
    with qtbot.waitSignal(panel.rendered, timeout=WAIT):
        panel.metric_box.setCurrentIndex(panel.metric_box.findData("auroc"))
        assert panel.metric_box.currentText() == "AUROC"  # in words
        panel.metric_box.activated.emit(panel.metric_box.currentIndex())
    assert panel.bundle.bars.metric == "auroc"


def _tick_numbers(axis) -> list[float]:
    """The numbers an axis writes at its ticks, as it draws them."""
    low, high = axis.range
    size = axis.width() if axis.orientation in ("left", "right") else axis.height()
    out = []
    for spacing, values in axis.tickValues(low, high, max(size, 100)):
        scale = axis.autoSIPrefixScale * axis.scale
        out += [float(t) for t in axis.tickStrings(values, scale, spacing) if t]
    return out


def _reads_its_range(tab, sides=("bottom", "left")) -> None:
    for side in sides:
        axis = tab.plot.getAxis(side)
        low, high = sorted(axis.range)
        slack = (high - low) * 0.05 + 1e-9
        numbers = _tick_numbers(axis)
        assert numbers and all(low - slack <= n <= high + slack for n in numbers), \
            (side, axis.range, numbers)


def test_axes_read_the_data_range_after_switching_runs(qtbot, ctx, runs):
    panel = _plots(qtbot, ctx)
    for tab in (panel.scores_tab, panel.length_tab):
        panel.tabs.setCurrentWidget(tab)
        for key in (("rm@2", "safety-labels"), ("rm@3", "hh-pairs"), ("rm@1", "safety-labels")):
            with qtbot.waitSignal(panel.rendered, timeout=WAIT):
                ctx.run_selected.emit(runs[key])
            QCoreApplication.processEvents()
            _reads_its_range(tab)
    counts = _tick_numbers(panel.scores_tab.plot.getAxis("left"))  # examples per bin
    assert counts and all(n == int(n) for n in counts), counts
    shot(panel, "plots-length-after-switch")


def test_the_categories_range_is_the_new_metrics_not_the_last_ones(qtbot, ctx, runs):
    panel = _plots(qtbot, ctx, runs[("rm@3", "hh-pairs")])
    panel.tabs.setCurrentWidget(panel.categories_tab)
    assert panel.bundle.bars.metric == "pairwise_accuracy"  # a rate: drawn over 0..1
    with qtbot.waitSignal(panel.rendered, timeout=WAIT):
        panel.metric_box.setCurrentIndex(panel.metric_box.findData("mean_margin"))
        panel.metric_box.activated.emit(panel.metric_box.currentIndex())
    bars = panel.bundle.bars
    ends = np.r_[bars.values, bars.ci_low, bars.ci_high]
    assert ends.min() < 0  # margins below zero: outside the last metric's 0..1
    view = panel.categories_tab.plot.getViewBox()
    qtbot.waitUntil(lambda: view.viewRange()[0][0] <= ends.min() <= ends.max()
                    <= view.viewRange()[0][1], timeout=5000)  # auto-range: on the next pass
    _reads_its_range(panel.categories_tab, ["bottom"])  # the left one names categories
    shot(panel, "plots-categories-mean-margin")


def test_plots_follow_a_dark_palette(qtbot, ctx, runs):
    panel = _plots(qtbot, ctx, runs[("rm@2", "safety-labels")])
    dark = QPalette()
    for role, colour in ((QPalette.ColorRole.Window, "#202124"),
                         (QPalette.ColorRole.Base, "#17181a"),
                         (QPalette.ColorRole.WindowText, "#e8e8e8"),
                         (QPalette.ColorRole.Text, "#e8e8e8"),
                         (QPalette.ColorRole.Button, "#2b2c2f"),
                         (QPalette.ColorRole.ButtonText, "#e8e8e8")):
        dark.setColor(role, QColor(colour))
    panel.setPalette(dark)
    qtbot.waitUntil(lambda: panel.scores_tab.plot.backgroundBrush().color().name() == "#17181a",
                    timeout=5000)
    for tab in ("versions_tab", "flywheel_tab"):
        panel.tabs.setCurrentWidget(getattr(panel, tab))
        shot(panel, f"plots-dark-{tab.split('_')[0]}")


# -- models panel --------------------------------------------------------------------


@pytest.fixture
def answers(monkeypatch):
    """Dialogs answered automatically; what they showed is recorded."""
    shown: dict[str, list] = {"confirm": [], "inform": [], "ask": []}
    replies = {"confirm": True, "ask": "checked by the lead"}

    def confirm(_parent, title, text, accept="OK"):
        shown["confirm"].append((title, text, accept))
        reply = replies["confirm"]
        return reply(title) if callable(reply) else reply

    def ask(_parent, title, label):
        shown["ask"].append((title, label))
        return replies["ask"]
    monkeypatch.setattr(models_panel, "confirm", confirm)
    monkeypatch.setattr(models_panel, "ask_text", ask)
    monkeypatch.setattr(models_panel, "inform",
                        lambda _p, title, text, ok=True: shown["inform"].append((title, text, ok)))
    return shown, replies


def _models(qtbot, ctx) -> ModelsPanel:
    return show(qtbot, ModelsPanel(ctx))


def _select(panel: ModelsPanel, ref: str) -> None:
    node = next(n for n in panel.nodes.values() if n.ref == ref)
    panel.tree.setCurrentItem(panel.tree.items[node.id])


def test_models_panel_lists_versions_with_lineage(qtbot, ctx, runs):
    selected = []
    ctx.model_selected.connect(selected.append)
    panel = _models(qtbot, ctx)
    [root] = [panel.tree.topLevelItem(i) for i in range(panel.tree.topLevelItemCount())]
    assert root.text(0) == "rm@1" and root.child(0).text(0) == "rm@2"
    assert root.child(0).child(0).text(0) == "rm@3"
    assert root.text(2).startswith("2 · ") and "failures" in root.text(2)  # two audits
    assert panel.tree.currentItem().text(0) == "rm@3"  # nothing released: the newest
    _select(panel, "rm@2")
    assert selected[-1] == panel.tree.chosen()
    details = panel.details
    assert "parent rm@1" in details.title.text()

    def section(i):
        head = details.metrics.topLevelItem(i)
        return head.text(0), {head.child(k).text(0): head.child(k).text(1)
                              for k in range(head.childCount())}
    title, facts = section(0)  # the manifest in words, not JSON
    assert title == "Version"
    assert facts["takes"] == "text-embedding, encoded by test-hash-encoder"
    assert facts["trained on"] == "safety-labels" and facts["parent"] == "rm@1"
    assert facts["scores as"] == "probability (output “reward”)"
    title, training = section(1)  # metric names in words; the keys in tooltips
    assert (title, training) == ("Training", {"loss": "0.33", "held-out: accuracy": "0.78"})
    assert details.metrics.topLevelItem(1).child(1).toolTip(0) == "heldout.accuracy"
    head = details.metrics.topLevelItem(3)
    assert head.text(0) == f"Audit of safety-labels (run {runs[('rm@2', 'safety-labels')]})"
    [group] = [head.child(k) for k in range(head.childCount())]  # registered from outside
    assert (group.text(0), group.text(1)) == (
        "All examples", "training membership unknown: all 300 counted as not trained on "
                        "(registered from outside the workstation)")
    audit = {group.child(k).text(0): group.child(k).text(1) for k in range(group.childCount())}
    assert {"examples", "failures", "AUROC", "calibration error (ECE)"} <= set(audit)
    assert not any("_" in name for name in audit)
    assert section(2)[0] == f"Audit of hh-pairs (run {runs[('rm@2', 'hh-pairs')]})"
    assert details.manifest.isHidden()  # the JSON, on request
    details.show_json.setChecked(True)
    manifest = json.loads(details.manifest.toPlainText())
    assert manifest["parent"] == "rm@1" and details.manifest.isReadOnly()
    assert not details.manifest.isHidden()
    with qtbot.waitSignal(ctx.run_selected) as chosen:
        details.metrics.itemDoubleClicked.emit(details.metrics.topLevelItem(3), 0)
    assert chosen.args == [runs[("rm@2", "safety-labels")]]
    shot(panel, "models-details")


def test_compare_never_defaults_to_the_candidate_as_its_own_baseline(qtbot, ctx, runs):
    panel = _models(qtbot, ctx)
    view = panel.compare_view
    _select(panel, "rm@2")
    assert (view.candidate.currentText(), view.baseline.currentText()) == ("rm@2", "rm@1")
    _select(panel, "rm@1")  # no parent: the newest other version
    assert (view.candidate.currentText(), view.baseline.currentText()) == ("rm@1", "rm@3")
    releases.release(ctx.ws, "rm@2", encoder=ctx.encoder, force=True,
                     force_reason="the test needs rm@2 in force")
    ctx.data_changed.emit({"releases"})
    assert (view.candidate.currentText(), view.baseline.currentText()) == ("rm@1", "rm@3")
    _select(panel, "rm@3")
    _select(panel, "rm@1")  # chosen again: now the release in force
    assert (view.candidate.currentText(), view.baseline.currentText()) == ("rm@1", "rm@2")


def test_compare_two_versions_shows_fixed_and_broken(qtbot, ctx, runs):
    panel = _models(qtbot, ctx)
    _select(panel, "rm@2")
    view = panel.compare_view
    assert (view.candidate.currentText(), view.baseline.currentText()) == ("rm@2", "rm@1")
    view.compare_button.click()
    qtbot.waitUntil(lambda: view.fixed.count() > 0 and view.compare_button.isEnabled(),
                    timeout=WAIT)
    labels_run = pd.compare_runs(ctx.ws, runs[("rm@1", "safety-labels")],
                                 runs[("rm@2", "safety-labels")])
    pairs_run = pd.compare_runs(ctx.ws, runs[("rm@1", "hh-pairs")], runs[("rm@2", "hh-pairs")])
    ids = [view.fixed.item(i).data(Qt.ItemDataRole.UserRole) for i in range(view.fixed.count())]
    assert sorted(ids) == sorted(labels_run.ids_of("fixed") + pairs_run.ids_of("fixed"))
    assert view.broken.count() == labels_run.counts["broken"] + pairs_run.counts["broken"]
    assert "Gate" in view.verdict.text() and view.deltas.rowCount() > 0
    with qtbot.waitSignal(ctx.example_selected) as picked:
        view.fixed.itemClicked.emit(view.fixed.item(0))
    assert picked.args == [ids[0]]
    shot(panel, "models-compare")


def test_release_and_roll_back_from_the_panel(qtbot, ctx, runs, answers):
    shown, replies = answers
    panel = _models(qtbot, ctx)
    _select(panel, "rm@1")
    panel.buttons["release"].click()
    qtbot.waitUntil(lambda: releases.current_release(ctx.ws, "rm") is not None, timeout=WAIT)
    title, text, _ = shown["confirm"][0]
    assert title == "Release rm@1" and "From: nothing" in text and "To:   rm@1" in text
    qtbot.waitUntil(lambda: panel.tree.items and "current" in panel.tree.currentItem().text(1),
                    timeout=WAIT)
    _select(panel, "rm@2")
    panel.buttons["release"].click()
    qtbot.waitUntil(lambda: releases.current_release(ctx.ws, "rm").version == 2, timeout=WAIT)
    title, text, _ = shown["confirm"][1]
    assert "From: rm@1" in text and "To:   rm@2" in text and "Regression gate:" in text
    batch = releases.current_release(ctx.ws, "rm").batch
    assert batch["regression_report"]["baseline"]["ref"] == "rm@1"
    if batch["gate"]["pass"] is False:  # forced, with the reason given
        assert batch["gate"]["force_reason"] == replies["ask"]
    qtbot.waitUntil(lambda: any("rm@2 released" in panel.ledger_view.table.item(r, 4).text()
                                for r in range(panel.ledger_view.table.rowCount())),
                    timeout=WAIT)
    panel.buttons["rollback"].click()
    qtbot.waitUntil(lambda: releases.current_release(ctx.ws, "rm").version == 1, timeout=WAIT)
    title, text, _ = shown["confirm"][-1]
    assert title == "Roll back rm" and "From: rm@2" in text and "To:   rm@1" in text
    table = panel.ledger_view.table
    qtbot.waitUntil(lambda: "rolled back" in table.item(table.rowCount() - 1, 4).text(),
                    timeout=WAIT)
    assert [table.item(r, 3).text() for r in range(table.rowCount())] == [
        "trust-owner", "release", "release", "rollback"]
    panel.tabs.setCurrentWidget(panel.ledger_view)
    shot(panel, "models-ledger")


def test_a_failed_gate_needs_release_anyway_and_a_reason(qtbot, ctx, runs, answers, monkeypatch):
    shown, replies = answers
    failing = {"gate": {"pass": False, "reasons": ["accuracy fell 0.1 in Crime"]}, "fixed": 1,
               "broken": 9, "unchanged": 5, "baseline": {"ref": "rm@2"}}
    import workstation.regression as regression

    # What the panel shows and what the release computes again itself.
    monkeypatch.setattr(regression, "gate_report_for_release", lambda *a, **k: dict(failing))
    panel = _models(qtbot, ctx)
    _select(panel, "rm@3")
    replies["confirm"] = False
    panel.buttons["release"].click()
    qtbot.waitUntil(lambda: len(shown["confirm"]) == 1, timeout=WAIT)
    title, text, accept = shown["confirm"][0]
    assert "gate failed" in title and accept == "Release anyway…"
    assert "FAILED" in text and "accuracy fell 0.1 in Crime" in text
    replies["confirm"], replies["ask"] = True, "   "
    jobs = []
    ctx.jobs.started.connect(jobs.append)
    panel.buttons["release"].click()
    qtbot.waitUntil(lambda: len(shown["ask"]) == 1, timeout=WAIT)
    # The release job would start as the answer came back: none did.
    assert [j.title for j in jobs] == ["Regression gate for rm@3"]
    assert releases.current_release(ctx.ws, "rm") is None  # no reason: nothing released
    replies["ask"] = "hotfix approved by the safety board"
    panel.buttons["release"].click()
    qtbot.waitUntil(lambda: releases.current_release(ctx.ws, "rm") is not None, timeout=WAIT)
    gate = releases.current_release(ctx.ws, "rm").batch["gate"]
    assert gate == {"pass": False, "forced": True,
                    "force_reason": "hotfix approved by the safety board"}


def test_verify_shows_ok_and_then_a_problem(qtbot, ctx, runs, answers):
    shown, _ = answers
    panel = _models(qtbot, ctx)
    panel.buttons["verify"].click()
    qtbot.waitUntil(lambda: bool(shown["inform"]), timeout=WAIT)
    title, text, ok = shown["inform"][-1]
    assert ok and "every hash matches" in text
    assert "Verify: OK" in panel.ledger_view.verify_result.text()
    ctx.ws.execute("UPDATE blobs SET data = 'tampered'::BLOB WHERE sha256 = "
                   "(SELECT min(sha256) FROM blobs)")
    panel.buttons["verify"].click()
    qtbot.waitUntil(lambda: len(shown["inform"]) == 2, timeout=WAIT)
    title, text, ok = shown["inform"][-1]
    assert not ok and "does NOT verify" in text and "does not match its sha256" in text
    assert "problem" in panel.ledger_view.verify_result.text()
    panel.tabs.setCurrentWidget(panel.ledger_view)
    shot(panel, "models-verify-failed")


def test_nothing_of_the_last_workspace_stays_on_the_models_panel(qtbot, ctx, runs, answers,
                                                                 tmp_path, template):
    from workstation.workspace import Workspace

    shown, _ = answers
    panel = _models(qtbot, ctx)
    panel.buttons["verify"].click()
    qtbot.waitUntil(lambda: bool(shown["inform"]), timeout=WAIT)
    assert "Verify: OK" in panel.ledger_view.verify_result.text()
    ctx.data_changed.emit({"review"})  # an edit since: the result is of an earlier state
    assert "before later changes" in panel.ledger_view.verify_result.text()
    _select(panel, "rm@2")
    panel.compare_view.compare_button.click()
    qtbot.waitUntil(lambda: panel.compare_view.fixed.count() > 0, timeout=WAIT)
    shutil.copy(template[0], tmp_path / "other.duckdb")
    ctx.set_workspace(Workspace.open(tmp_path / "other.duckdb"))
    assert "Verify:" not in panel.ledger_view.verify_result.text()
    view = panel.compare_view
    assert view.fixed.count() == view.broken.count() == view.deltas.rowCount() == 0
    assert view.verdict.text() == "Pick two versions and compare them."
    assert panel.tree.currentItem().text(0) == "rm@3"  # chosen afresh: the newest


def test_export_a_release_to_a_zip(qtbot, ctx, runs, answers, monkeypatch, tmp_path,
                                   session_identity):
    shown, _ = answers
    releases.release(ctx.ws, "rm@1")
    out = tmp_path / "rm-1.zip"
    proposed = []
    monkeypatch.setattr(models_panel, "choose_export_path",
                        lambda _p, suggested: proposed.append(suggested) or str(out))
    panel = _models(qtbot, ctx)
    _select(panel, "rm@1")
    assert panel.buttons["export"].isEnabled()
    panel.buttons["export"].click()
    qtbot.waitUntil(lambda: bool(shown["inform"]), timeout=WAIT)
    (tmp_path / "approver.pem").write_text(session_identity.public_pem)
    assert releases.verify_release(out, tmp_path / "approver.pem").ok
    assert str(out) in shown["inform"][-1][1] and "--trust" in shown["inform"][-1][1]
    # Proposed beside the workspace, not in the home folder.
    assert Path(proposed[0]) == Path(ctx.ws.path).parent / "rm-1.zip"
    _select(panel, "rm@3")
    assert not panel.buttons["export"].isEnabled()  # never released


def _finished(qtbot, ctx, jobs: list) -> None:
    """Until every job started so far has ended."""
    qtbot.waitUntil(lambda: jobs and not ctx.jobs.running, timeout=120_000)


@pytest.mark.slow
def test_retrain_from_the_models_panel_records_the_windows_analyst(qtbot, ctx, runs, answers,
                                                                   monkeypatch, no_session,
                                                                   session_identity):
    """Nobody signed in: the Preferences name; signed in: the identity's name."""
    from workstation import identity
    from workstation.models import resolve

    shown, _ = answers
    from workstation.ui import forms

    ctx.settings().setValue("review/analyst", "dr-lee")  # Preferences ▸ Analyst name
    monkeypatch.setattr(forms.RetrainDialog, "exec", lambda self: True)  # as proposed
    jobs = []
    ctx.jobs.started.connect(jobs.append)
    panel = _models(qtbot, ctx)
    _select(panel, "rm@3")
    panel.buttons["retrain"].click()
    _finished(qtbot, ctx, jobs)
    assert jobs[0].error is None, jobs[0].error
    assert shown["inform"][-1] == ("Retrain", "Trained rm@4 on safety-labels.", True)
    version = resolve(ctx.ws, "rm@4")
    assert version.created_by == "dr-lee"  # not the login name
    assert version.parent_id == resolve(ctx.ws, "rm@3").id
    identity.set_session_signer(session_identity)
    assert ctx.analyst() == "test-analyst"  # who signs is who is recorded


@pytest.mark.parametrize("cause", ["an error", "no regression module"])
def test_no_release_without_the_regression_report(qtbot, ctx, runs, answers, monkeypatch, cause):
    import workstation.regression as regression
    from workstation.errors import WorkstationError

    shown, _ = answers

    def cannot(*_a, **_k):
        raise WorkstationError("cannot score hh-pairs: the encoder is missing")
    if cause == "an error":
        monkeypatch.setattr(regression, "gate_report_for_release", cannot)
    else:
        monkeypatch.setitem(sys.modules, "workstation.regression", None)  # import fails
    jobs = []
    ctx.jobs.started.connect(jobs.append)
    panel = _models(qtbot, ctx)
    _select(panel, "rm@2")
    panel.buttons["release"].click()
    _finished(qtbot, ctx, jobs)
    [job] = jobs
    assert job.title == "Regression gate for rm@2"
    expected = "encoder is missing" if cause == "an error" else "import of workstation.regression"
    assert expected in job.error
    assert shown["confirm"] == [] and releases.current_release(ctx.ws, "rm") is None


@pytest.fixture
def signed_in():
    """``signed_in(signer)``: who the window acts as; the test identity again afterwards."""
    from workstation import identity

    previous = identity.session_signer()
    yield identity.set_session_signer
    identity.set_session_signer(previous)


def test_approve_and_reject_release_requests_from_the_panel(qtbot, ctx, runs, answers,
                                                            make_identity, signed_in):
    from workstation import policy, trust

    shown, replies = answers
    lead, bo, rita = make_identity("lead"), make_identity("bo"), make_identity("rita")
    for who, roles in ((lead, "approver"), (bo, "approver"), (rita, "reviewer")):
        trust.add(ctx.ws, who.public_pem, who.name, roles)
    policy.set(ctx.ws, "release.approvals", 2)
    asked = releases.release(ctx.ws, "rm@1", encoder=ctx.encoder)  # no baseline: no gate
    other = releases.release(ctx.ws, "rm@3", encoder=ctx.encoder, force=True,
                             force_reason="compared by hand")
    assert (asked.status, other.status) == ("pending", "pending") and other.forced
    panel = _models(qtbot, ctx)
    view = panel.releases_view
    table = view.table
    assert "2 requests pending" in view.caption.text()
    view.choose(asked.id)
    jobs = []
    ctx.jobs.started.connect(jobs.append)
    view.approve_button.click()  # the requester: separation refuses it
    _finished(qtbot, ctx, jobs)
    assert "cannot approve it too" in jobs[-1].error
    signed_in(rita)
    panel.refresh()
    view.choose(asked.id)
    assert not view.approve_button.isEnabled() and "Only an approver" in \
        view.approve_button.toolTip()
    for approver, status in ((lead, "pending"), (bo, "in-force")):
        signed_in(approver)
        panel.refresh()
        view.choose(asked.id)
        assert view.approve_button.isEnabled()
        view.approve_button.click()
        _finished(qtbot, ctx, jobs)
        assert jobs[-1].error is None, jobs[-1].error
        qtbot.waitUntil(lambda: table.item(0, 2).text() == status, timeout=WAIT)
    assert shown["confirm"][-1][0] == f"Approve release {asked.id}"
    assert shown["inform"][-1] == ("Approved", f"rm@1 (release {asked.id}) is now the "
                                               "release in force.", True)
    rel = releases.current_release(ctx.ws, "rm")
    assert rel.id == asked.id and [a["name"] for a in rel.approvals] == ["lead", "bo"]
    assert table.item(0, 4).text() == "2 of 2: lead, bo"
    view.choose(other.id)  # overtaken by rm@1's release: it can only be rejected
    assert table.item(1, 2).text() == "outdated · forced" and not view.approve_button.isEnabled()
    assert table.item(1, 2).toolTip() == ("Forced past a failed regression gate: "
                                          "compared by hand")  # seen before anyone signs
    replies["ask"] = "overtaken by release 1"
    view.reject_button.click()
    _finished(qtbot, ctx, jobs)
    qtbot.waitUntil(lambda: table.item(1, 2).text() == "rejected · forced", timeout=WAIT)
    assert releases.get_release(ctx.ws, other.id).rejection["reason"] == "overtaken by release 1"
    panel.tabs.setCurrentWidget(view)
    shot(panel, "models-releases")
