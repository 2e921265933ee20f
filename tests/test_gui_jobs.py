"""How far a long job has come, as the status bar says it: a count, the rate
and the time left once they can be told, a bar that moves for every stage
(probes included), and "cancelling…" once asked."""

from __future__ import annotations

import pytest

from tests.gui_support import copy_template, encoder, own_settings, template  # noqa: F401
from workstation.ui.job_bar import JobBar, duration_text, progress_text
from workstation.ui.jobs import Job, JobRunner


@pytest.mark.parametrize("done, total, seconds, text", [
    (0, 9000, 0.0, "0 of 9,000"),
    (1234, 9000, 1.0, "1,234 of 9,000"),  # too soon for a rate
    (1040, 9000, 20.0, "1,040 of 9,000 · 52/s · about 3 min left"),
    (3, 10, 10.0, "3 of 10 · 0.3/s · about 25 s left"),
    (9000, 9000, 60.0, "9,000 of 9,000"),
    (2_500_000, 10_000_000, 10.0, "25% · about 30 s left"),  # bytes: a share
    (0, 0, 5.0, ""),
    (17, 0, 5.0, "17 so far"),
])
def test_progress_reads_as_a_count_a_rate_and_the_time_left(done, total, seconds, text):
    assert progress_text(done, total, seconds) == text


def test_times_left_are_said_as_a_person_would():
    assert [duration_text(s) for s in (1, 38, 61, 170, 3600, 4800)] == \
        ["5 s", "40 s", "1 min", "3 min", "1 h", "1 h 20 min"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bar_counts_each_stage_with_its_own_rate_and_time_left(qtbot):
    runner = JobRunner()
    bar = JobBar(runner)
    qtbot.addWidget(bar)
    bar.clock = clock = FakeClock()
    job = Job("Auditing hh", lambda ws, p: None, None)
    runner.running.append(job)  # as start() does, without running it
    bar._started(job)
    bar._progress(job, "encoding texts", 0, 9000)
    bar._maybe_show(job)
    assert bar.label.text() == "Auditing hh: encoding texts · 0 of 9,000"
    assert (bar.bar.minimum(), bar.bar.maximum(), bar.bar.value()) == (0, 1000, 0)
    clock.now += 30
    bar._progress(job, "encoding texts", 3000, 9000)
    assert bar.label.text() == ("Auditing hh: encoding texts · 3,000 of 9,000 · 100/s · "
                                "about 1 min left")
    assert bar.bar.value() == 333
    bar._progress(job, "probe red-team (2 of 3)", 1, 3)  # a stage starts its own clock
    assert bar.label.text() == "Auditing hh: probe red-team (2 of 3) · 1 of 3"
    bar._progress(job, "metrics", 0, 0)
    assert bar.label.text() == "Auditing hh: metrics" and bar.bar.maximum() == 0  # busy
    bar._progress(job, "reading", 3_000_000_000, 6_000_000_000)  # bytes past 2**31
    assert bar.bar.value() == 500 and "50%" in bar.label.text()
    job.cancel()
    bar._progress(job, "reading", 3_100_000_000, 6_000_000_000)
    assert bar.label.text() == "Auditing hh: cancelling…"


def test_probes_report_which_of_how_many_runs(tmp_path, template):
    from workstation.probes import run_probes
    from workstation.progress import Progress
    from workstation.workspace import Workspace

    seen: list[tuple[str, int, int]] = []
    path = copy_template(template, tmp_path / "ws.duckdb")
    with Workspace.open(path) as ws:
        run_probes(ws, "rm", "hh", probes=["position-swap", "length-bias"], encoder=encoder(),
                   progress=Progress(lambda stage, done, total: seen.append((stage, done,
                                                                             total))))
    probe_steps = [s for s in seen if s[0].startswith("probe ")]
    assert ("probe position-swap (1 of 2)", 0, 2) in probe_steps
    assert ("probe length-bias (2 of 2)", 1, 2) in probe_steps
    assert all(total == 2 for _, _, total in probe_steps)


def test_the_last_report_before_a_pause_reaches_the_window(qtbot):
    """The throttle drops reports that come too soon after the last one sent;
    the one it dropped last must still arrive while the job pauses (it read
    '0 of 6,000' for minutes after the encoder had reported 64)."""
    import threading

    paused, release = threading.Event(), threading.Event()

    def work(ws, progress):
        progress.stage_start("encoding texts", 6000)
        progress.step(0, 6000)
        progress.step(64, 6000)  # at once: held back by the throttle
        paused.set()
        release.wait(60)  # a generous bound: the test releases it

    runner = JobRunner()
    seen: list[tuple[str, int, int]] = []
    job = Job("Auditing hh", work, None)
    job.signals.progress.connect(lambda stage, done, total: seen.append((stage, done, total)))
    runner.start(job)
    try:
        qtbot.waitUntil(paused.is_set)
        qtbot.waitUntil(lambda: seen and seen[-1][1] == 64, timeout=5000)
        assert seen[0] == ("encoding texts", 0, 6000)
    finally:
        release.set()
        runner.wait(10_000)
