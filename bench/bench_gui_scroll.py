"""Benchmark: the failure browser on a 1,000,000-row audit run.

Builds (in a separate process, with SQL ``range()`` as bench_failures_page.py
does) one labels dataset of N examples and an audit run over it, then opens
the workstation window on it offscreen in a fresh process, drags the scroll
bar to the middle, jumps to the middle row and to the end, selects the last
row, and reports: time to the first page, the longest gap of a 20 ms
heartbeat while scrolling (the GUI thread must never block on a query), and
resident memory now and at its peak (VmRSS / VmHWM).

    .venv/bin/python bench/bench_gui_scroll.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEARTBEAT_MS = 20


def build(path: str, n: int) -> None:
    """The bench's labels dataset and audit run, made in SQL."""
    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(REPO))
    from bench_failures_page import build as bench_build

    from workstation.workspace import Workspace

    with Workspace.open(path) as ws:
        bench_build(ws, n)


def measure(path: str, settings: str) -> dict:
    """Open, scroll, select; returns what was measured."""
    sys.path.insert(0, str(REPO))
    from PySide6.QtCore import QSettings, QTimer

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, settings)
    from workstation.ui.app import make_app, open_main_window

    app = make_app([])  # noqa: F841 (the application must exist)
    start = time.perf_counter()
    window = open_main_window(path)
    browser, model = window.browser, window.browser.model
    beats: list[float] = []
    heart = QTimer()
    heart.timeout.connect(lambda: beats.append(time.perf_counter()))
    heart.start(HEARTBEAT_MS)
    run_until(lambda: not model.loading, 120)
    first = time.perf_counter() - start
    rows = model.rowCount()
    run_until(lambda: not window.warm_up().is_alive(), 60)  # what an idle window loads
    scroll_start = time.perf_counter()
    bar = browser.view.verticalScrollBar()
    for step in range(1, 21):  # drag the scroll bar down to the middle
        bar.setValue(bar.maximum() * step // 40)
        run_until(lambda: False, 0.03)
    middle = rows // 2
    browser.view.scrollTo(model.index(middle, 0))
    middle_loaded = run_until(lambda: model.cached_row(middle) is not None, 120)
    bar.setValue(bar.maximum())
    end_loaded = run_until(lambda: model.cached_row(rows - 1) is not None, 120)
    browser.select_row(rows - 1)
    run_until(lambda: False, 0.3)
    scrolled = [b for b in beats if b >= scroll_start]
    gaps = [1000 * (b - a) for a, b in zip(scrolled, scrolled[1:])]
    status = memory()
    window.close()
    return {"rows": rows, "first_page_s": round(first, 2),
            "scroll_s": round(time.perf_counter() - scroll_start, 2),
            "middle_loaded": middle_loaded, "end_loaded": end_loaded,
            "max_gap_ms": round(max(gaps), 1), "pages_cached": len(model._pages),
            "rss_mb": status["VmRSS"], "peak_rss_mb": status["VmHWM"]}


def run_until(condition, seconds: float) -> bool:
    """Run the event loop until ``condition()`` holds or ``seconds`` pass."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.perf_counter() + seconds
    poll = QTimer()

    def check() -> None:
        if condition() or time.perf_counter() >= deadline:
            loop.quit()
    poll.timeout.connect(check)
    poll.start(5)
    loop.exec()
    poll.stop()
    return bool(condition())


def memory() -> dict[str, float]:
    """This process's resident memory now and at its peak, in MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def in_process(code: str) -> str:
    """Run ``code`` in a fresh offscreen interpreter; its stdout."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout


def run(n: int, folder: str) -> dict:
    """Build in one process, measure in another; returns the measurement."""
    target = Path(folder) / "big.duckdb"
    bench = f"import sys; sys.path.insert(0, r'{REPO / 'bench'}'); import bench_gui_scroll as b"
    in_process(f"{bench}; b.build(r'{target}', {n})")
    out = in_process(f"{bench}; import json; "
                     f"print(json.dumps(b.measure(r'{target}', r'{folder}/settings')))")
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        result = run(args.n, folder)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
