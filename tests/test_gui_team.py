"""The Team view and the team filters, as an analyst uses them: the agreement
figures and per-category plot, a conflict settled by taking one analyst's
value (by key), "labelled by" and "assigned to me" in the browser, assigning
a selection. Screenshots go to tests/screenshots/ (git-ignored)."""

from __future__ import annotations

import pytest

from tests.gui_support import distinct_colours
from tests.test_gui import SCREENSHOTS, _save, wait_rows
from tests.test_team_review import ANN, BOB, _exchange, _ids, laptops  # noqa: F401 (fixture)
from workstation import identity, review

pytestmark = pytest.mark.slow  # two laptops' edits, then a window


@pytest.fixture
def team_window(qtbot, laptops):  # noqa: F811
    """Ann's laptop after both analysts' bundles were merged, in a window."""
    from workstation.ui.main_window import MainWindow

    _exchange(laptops)
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    assert win.open_workspace(str(laptops["a"]))
    wait_rows(qtbot, win.browser)
    yield win, laptops
    win.ctx.jobs.cancel_all()
    win.ctx.jobs.wait(20_000)
    win.close()


def _team(qtbot, win):
    win.tabs.setCurrentIndex(3)
    panel = win.lazy_tabs[2].panel
    qtbot.waitUntil(lambda: panel.report is not None, timeout=60_000)
    return panel


def test_the_agreement_view_shows_the_figures_and_a_plot_per_category(qtbot, team_window):
    win, lap = team_window
    panel = _team(qtbot, win)
    assert panel.dataset.currentData() == "chat"
    both = [i for i in ANN if i in BOB]
    assert panel.report["n_items"] == len(both)
    assert panel.headline.text().startswith(f"{len(both)} examples labelled by two")
    rows = [panel.figures.item(r, 0).text() for r in range(panel.figures.rowCount())]
    assert rows[:3] == ["Percent agreement", "Krippendorff's alpha (nominal)",
                        "Cohen's kappa ann / bob"]
    agree = 100 * sum(ANN[i] == BOB[i] for i in both) / len(both)
    assert panel.figures.item(0, 1).text() == f"{agree:.1f}%"
    assert panel.figures.item(1, 2).text()  # an interval is shown
    assert panel.plot.stack.currentWidget() is panel.plot.plot
    _save(qtbot, {"team_view": panel})
    assert distinct_colours(SCREENSHOTS / "team_view.png") >= 8


def test_a_conflict_is_adjudicated_by_key_from_the_queue(qtbot, team_window):
    win, lap = team_window
    panel = _team(qtbot, win)
    ws = win.ctx.ws
    ids = _ids(ws)
    disputed = [ids[i] for i in ANN if i in BOB and ANN[i] != BOB[i]]
    assert [c.example_id for c in panel.conflicts] == disputed
    headers = [panel.queue.horizontalHeaderItem(c).text()
               for c in range(panel.queue.columnCount())]
    assert headers[:3] == ["Example", "Field", "In force"]
    assert headers[3:] == [f"ann ({lap['ann'].key_id[:8]})", f"bob ({lap['bob'].key_id[:8]})"]
    first = disputed[0]
    i = ids.index(first)
    assert [panel.queue.item(0, c).text() for c in (3, 4)] == [ANN[i], BOB[i]]

    panel.queue.selectRow(0)
    assert set(panel.choice_buttons) == {lap["ann"].key_id, lap["bob"].key_id}
    previous = identity.set_session_signer(lap["carl"])  # the adjudicator signs in
    try:
        panel.reason.setText("bob read the policy right")
        panel.choice_buttons[lap["bob"].key_id].click()
        qtbot.waitUntil(lambda: first not in [c.example_id for c in panel.conflicts],
                        timeout=10_000)
    finally:
        identity.set_session_signer(previous)
    assert "settled to" in panel.message.text()
    assert [c.example_id for c in panel.conflicts] == disputed[1:]
    assert review.current_values(ws, first)["label"] == BOB[i]
    [row] = [e for e in review.entries(ws, example_id=first) if e["action"] == "adjudicate"]
    assert row["key_id"] == lap["carl"].key_id and row["reason"] == "bob read the policy right"
    _save(qtbot, {"team_queue_settled": panel})


def test_labelled_by_and_assigned_to_me_filter_the_browser(qtbot, team_window, monkeypatch):
    win, lap = team_window
    browser, bar = win.browser, win.browser.filter_bar
    ids = _ids(win.ctx.ws)
    bar.labelled_by.setCurrentIndex(bar.labelled_by.findData(lap["bob"].key_id))
    bar.changed.emit()
    wait_rows(qtbot, browser)
    assert browser.model.rowCount() == len(BOB)
    assert f"labelled by {lap['bob'].key_id}" in bar.summary.text()
    bar.clear()
    wait_rows(qtbot, browser)

    # Ann (signed in) assigns the first three rows to Bob, then Bob looks at his.
    previous = identity.set_session_signer(lap["ann"])
    try:
        browser.view.selectRow(0)
        for row in (1, 2):
            browser.view.selectionModel().select(
                browser.model.index(row, 0),
                browser.view.selectionModel().SelectionFlag.Select |
                browser.view.selectionModel().SelectionFlag.Rows)
        win.reviewer.assign_to(lap["bob"].key_id)
        assert win.statusBar().currentMessage().startswith("3 examples assigned to bob")
        identity.set_session_signer(lap["bob"])
        browser.refresh()
        bar.mine.setChecked(True)
        wait_rows(qtbot, browser)
        assert browser.model.rowCount() == 3
        shown = {browser.model.row_values(r)["example_id"] for r in range(3)}
        assert shown == set(ids[:3])
        _save(qtbot, {"browser_assigned_to_me": win})
    finally:
        identity.set_session_signer(previous)
