"""The window stays responsive: a 20 ms heartbeat keeps beating while an audit
runs in the background, and a 1,000,000-row run scrolls (to the middle and
the end) with the GUI thread never blocked and the process under 500 MB.

The 1M-row check is bench/bench_gui_scroll.py: it builds the workspace with
SQL ``range()`` in one process and measures the window in a fresh one, so
that the memory measured is the workstation's own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.gui_support import own_settings, template  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
HEARTBEAT_MS = 20
MAX_GAP_MS = 100
# During the audit, on a 2-core machine that other work shares: a stall of the
# GUI thread (a blocking call) lasts the audit's seconds, far above this; the
# 100 ms figure itself is bench_gui_scroll's, measured in a process of its own.
GENEROUS_GAP_MS = 400
MAX_RSS_MB = 500


# -- the heartbeat during an audit ---------------------------------------------------

def test_heartbeat_keeps_beating_while_an_audit_runs(qtbot, tmp_path, template):
    from PySide6.QtCore import QTimer

    from tests.test_gui import _big_labels, wait_rows
    from tests.gui_support import copy_template, encoder
    from workstation.ui.main_window import MainWindow

    win = MainWindow()
    win.ctx.encoder = encoder()
    qtbot.addWidget(win)
    win.show()
    assert win.open_workspace(str(copy_template(template, tmp_path / "ws.duckdb")))
    _big_labels(win.ctx.ws, 60_000)
    win.browser.refresh()
    win.browser.selection.select_dataset("big")  # the GUI reads the same dataset meanwhile
    wait_rows(qtbot, win.browser)
    # Modules a job needs load in the background after start-up (a C
    # extension's first import holds the GIL); the analyst is looking around.
    warm = win.warm_up()
    qtbot.waitUntil(lambda: not warm.is_alive(), timeout=30_000)
    beats: list[float] = []
    timer = QTimer()
    timer.setInterval(HEARTBEAT_MS)
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    timer.start()
    qtbot.wait(100)
    start = time.perf_counter()
    job = win.flywheel.start_audit("rm", "big")
    with qtbot.waitSignal(job.signals.ended, timeout=120_000):
        pass
    elapsed = time.perf_counter() - start
    qtbot.wait(100)
    timer.stop()
    assert job.error is None and job.result.n_examples == 60_000
    during = [b for b in beats if start <= b <= start + elapsed]
    gaps = [1000 * (b - a) for a, b in zip(during, during[1:])]
    long_gaps = [(round(g), round(b - start, 2)) for g, b in zip(gaps, during[1:]) if g > 50]
    print(f"audit of 60,000 examples took {elapsed:.2f} s; {len(during)} beats, "
          f"max gap {max(gaps):.0f} ms; gaps over 50 ms (ms, at s): {long_gaps}")
    assert elapsed > 0.5 and len(during) > 10  # the audit really ran for a while
    assert max(gaps) < GENEROUS_GAP_MS, long_gaps
    win.close()


# -- a million rows --------------------------------------------------------------------

@pytest.mark.slow
def test_a_million_row_run_scrolls_without_blocking_and_stays_small(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    import bench_gui_scroll

    result = bench_gui_scroll.run(1_000_000, str(tmp_path))
    print(json.dumps(result, indent=1))
    assert result["rows"] > 800_000  # the failures of the 1M-row run
    assert result["middle_loaded"] and result["end_loaded"]
    assert result["pages_cached"] <= 16  # the LRU, not the run
    assert result["max_gap_ms"] < MAX_GAP_MS, result
    assert result["peak_rss_mb"] < MAX_RSS_MB, result
