"""Screenshots of the screens the analyst works in, at 1024x700 (a laptop) and
1600x1000, light and dark where colour carries meaning; written under
tests/screenshots/ (git-ignored) for a person to look at. Each test also
asserts what the screen must show, and that every image is drawn."""

from __future__ import annotations

import json

import pytest
from PySide6.QtWidgets import QApplication

from tests.gui_support import (copy_template, distinct_colours, encoder,  # noqa: F401
                               gated_encoder, own_settings, template)
from tests.test_gui import (SCREENSHOTS, _big_labels, _dark_palette, _opened, _probe_run,
                            _save, press, wait_rows)

SIZES = {"small": (1024, 700), "large": (1600, 1000)}
pytestmark = pytest.mark.slow  # each builds windows and draws several screens


@pytest.fixture(params=sorted(SIZES))
def sized(request, qtbot, tmp_path, template):
    """A window of each size on a copy of the template workspace."""
    from workstation.ui.main_window import MainWindow

    win = MainWindow()
    win.ctx.encoder = encoder()
    qtbot.addWidget(win)
    win.resize(*SIZES[request.param])
    win.show()
    qtbot.waitExposed(win)
    assert win.open_workspace(str(copy_template(template, tmp_path / "ws.duckdb")))
    wait_rows(qtbot, win.browser)
    win.size_name = request.param
    yield win
    win.ctx.jobs.cancel_all()
    win.ctx.jobs.wait(20_000)
    win.close()


def _shoot(qtbot, win, shots: dict) -> None:
    named = {f"{name}_{win.size_name}": widget for name, widget in shots.items()}
    _save(qtbot, named)
    for name in named:
        assert distinct_colours(SCREENSHOTS / f"{name}.png") >= 8, name


def _dark(qtbot, win, shots: dict) -> None:
    app = QApplication.instance()
    light = app.palette()
    app.setPalette(_dark_palette())
    try:
        _shoot(qtbot, win, {f"{name}_dark": widget for name, widget in shots.items()})
    finally:
        app.setPalette(light)


def test_screens_of_the_browser(qtbot, sized):
    win, browser = sized, sized.browser
    press(qtbot, browser, "f")  # scores move with their texts; the verdict is as audited
    assert "as audited, before your edit" in browser.detail.pair.scores.text()
    _shoot(qtbot, win, {"screen_browser_pairs_flipped": win})
    _dark(qtbot, win, {"screen_browser_pairs_flipped": win})
    browser.selection.select_dataset("jbb")
    wait_rows(qtbot, browser)
    press(qtbot, browser, "s")
    _shoot(qtbot, win, {"screen_browser_labels_relabelled": win})
    _dark(qtbot, win, {"screen_browser_labels_relabelled": win})
    browser.selection.select_dataset("cart")
    wait_rows(qtbot, browser)
    qtbot.waitUntil(lambda: browser.detail.trajectory.image.image is not None, timeout=20_000)
    _shoot(qtbot, win, {"screen_browser_trajectory": win})
    browser.selection.select_run(_probe_run(win))
    wait_rows(qtbot, browser)
    browser.select_row(2)  # the generated case: no history, no counts
    browser.show_detail_now()
    assert browser.detail.tabs.tabText(0) == "History"
    _shoot(qtbot, win, {"screen_browser_findings_case": win})


def test_screens_of_a_long_job(qtbot, sized):
    win = sized
    _big_labels(win.ctx.ws, 6000)
    win.ctx.encoder = gated_encoder()  # holds the audit after its first batch
    bar = win.job_bar
    ticks = iter(range(0, 10**6, 10))
    bar.clock = lambda: float(next(ticks))  # 10 s a reading: long enough for a rate
    job = win.flywheel.start_audit("rm", "big")
    qtbot.waitUntil(lambda: bar.isVisible() and "left" in bar.label.text(), timeout=30_000)
    _shoot(qtbot, win, {"screen_status_long_job": win})
    job.cancel()
    qtbot.waitUntil(lambda: job not in win.ctx.jobs.running, timeout=30_000)


def test_screens_of_the_models_panel(qtbot, sized, monkeypatch):
    from workstation.ui import models_panel

    monkeypatch.setattr(models_panel, "inform", lambda *a, **k: None)
    win = sized
    win.tabs.setCurrentWidget(win.lazy_tabs[1])
    panel = win.lazy_tabs[1].panel
    _shoot(qtbot, win, {"screen_models_details": win})
    panel.compare_view.baseline.setCurrentIndex(panel.compare_view.baseline.findText("irl@1"))
    panel.tabs.setCurrentWidget(panel.ledger_view)
    panel.buttons["verify"].click()
    qtbot.waitUntil(lambda: "Verify: OK" in panel.ledger_view.verify_result.text(),
                    timeout=20_000)
    _shoot(qtbot, win, {"screen_models_ledger_verified": win})
    _dark(qtbot, win, {"screen_models_ledger_verified": win})


def test_screens_of_a_workspace_without_a_model(qtbot, sized, tmp_path):
    win = sized
    assert win.open_workspace(str(tmp_path / "first.duckdb"), create=True)
    source = tmp_path / "tiny.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"question {i}", "chosen": f"good {i}",
                                          "rejected": f"bad {i}"}) + "\n" for i in range(3)))
    job = win.flywheel.start_import(str(source), "pairs", "tiny")
    qtbot.waitUntil(lambda: job not in win.ctx.jobs.running, timeout=20_000)
    wait_rows(qtbot, win.browser)
    assert win.browser.hint.button.text() == "Train a model…"
    _shoot(qtbot, win, {"screen_browser_first_model_hint": win})
    win.tabs.setCurrentWidget(win.lazy_tabs[1])
    _shoot(qtbot, win, {"screen_models_no_model": win})


def test_screens_of_the_plots(qtbot, sized):
    win = sized
    win.tabs.setCurrentWidget(win.lazy_tabs[0])
    plots = win.lazy_tabs[0].panel
    qtbot.waitUntil(lambda: plots.bundle is not None, timeout=20_000)
    win.browser.selection.select_dataset("jbb")  # a labels run after the pairs run
    qtbot.waitUntil(lambda: plots.bundle is not None and plots.bundle.run.dataset == "jbb",
                    timeout=20_000)
    win.tabs.setCurrentWidget(win.lazy_tabs[0])
    for tab in ("scores_tab", "categories_tab", "length_tab", "flywheel_tab"):
        plots.tabs.setCurrentWidget(getattr(plots, tab))
        _shoot(qtbot, win, {f"screen_plots_{tab.split('_')[0]}": win})
    plots.tabs.setCurrentWidget(plots.scores_tab)
    _dark(qtbot, win, {"screen_plots_scores": win})


def test_screens_of_the_forms(qtbot, sized, monkeypatch, tmp_path):
    from workstation.ui import forms

    win = sized
    shots = {}
    for form_class, action in ((forms.AuditDialog, "audit"), (forms.ProbeDialog, "probes"),
                               (forms.RetrainDialog, "train"), (forms.PatchDialog, "patch")):
        opened = _opened(monkeypatch, form_class)
        win.actions[action].trigger()
        assert opened, action
        opened[-1].show()
        shots[f"screen_form_{action}"] = opened[-1]
    labels = tmp_path / "judged.jsonl"
    labels.write_text(json.dumps({"prompt": "p", "response": "r", "label": "safe"}) + "\n")
    opened = _opened(monkeypatch, forms.ImportDialog)
    win.flywheel.import_dataset({"path": str(labels), "kind": "pairs", "name": "judged",
                                 "format": None}, "the file could not be read as pairs")
    form = opened[-1]
    form.kind.setCurrentIndex(form.kind.findData("pairs"))
    form.accept()  # refused: it says why, and stays
    form.show()
    shots["screen_form_import"] = form
    _shoot(qtbot, win, shots)
    for form in shots.values():  # each at its own size
        form.close()
