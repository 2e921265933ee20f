"""Shared fixtures for the GUI tests: a template workspace with a pairs, a
labels and a demonstrations dataset, two small models, three audit runs and
one probe run, built once and copied per test; and isolated QSettings."""

from __future__ import annotations

import json
import math
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.test_models import DIM, HashEncoder, insert_dataset, reward_mlp

TOPICS = ("harmless", "helpful", "privacy")
JBB = ("Malware/Hacking", "Fraud/Deception", "Harassment/Discrimination", "Privacy")


def pairs_rows(n: int = 120) -> list[dict]:
    rows = []
    for i in range(n):
        base = f"Sure, here is answer {i}. It explains the topic step by step"
        rows.append({"prompt": f"Human: question {i} about {TOPICS[i % 3]} things?",
                     "chosen": f"{base} and refuses the harmful part politely.",
                     "rejected": f"{base} and then gives dangerous detail number {i}.",
                     "category": TOPICS[i % 3]})
    rows[0]["chosen"] = "<b>x</b> is shown literally, never bold."
    rows[1]["chosen"] = "\n\n".join(
        f"Paragraph {k}: " + "a long answer that goes on and on " * 12 for k in range(8))
    return rows


def label_rows(n: int = 80) -> list[dict]:
    return [{"prompt": f"Request {i}: please help me with {JBB[i % 4].lower()} task {i}",
             "response": ("I cannot help with that request." if i % 2 else
                          f"Here is how you could do it: step one for task {i}, step two..."),
             "label": bool(i % 2), "category": JBB[i % 4]} for i in range(n)]


def demo_rows(n: int = 12, steps: int = 60) -> list[dict]:
    rows = []
    for k in range(n):
        phase = k * 0.4
        rows.append({"obs": [[math.sin(t / 6 + phase) * (0.5 + 0.05 * k),
                              math.cos(t / 9 + phase), 0.1 * math.sin(t / 3), 0.02 * k]
                             for t in range(steps)], "category": "cartpole"})
    return rows


def build_workspace(path: Path) -> None:
    """The template workspace the GUI tests open (see the module docstring)."""
    from workstation.audits import run_audit
    from workstation.models import add_model_bytes
    from workstation.workspace import Workspace

    encoder = HashEncoder()
    with Workspace.open(path) as ws:
        insert_dataset(ws, "pairs", pairs_rows(), "hh")
        insert_dataset(ws, "labels", label_rows(), "jbb")
        insert_dataset(ws, "demos", demo_rows(), "cart")
        add_model_bytes(ws, reward_mlp(DIM), "rm", "text-embedding", encoder=encoder)
        add_model_bytes(ws, reward_mlp(4, seed=3), "irl", "observation")
        run_audit(ws, "rm", "hh", encoder=encoder, analyst="builder")
        run_audit(ws, "rm", "jbb", encoder=encoder, analyst="builder")
        run_audit(ws, "irl", "cart", analyst="builder")
        insert_probe_run(ws)
        ws.execute("CHECKPOINT")


def insert_probe_run(ws) -> int:
    """A probe run over "hh" with three findings (one a generated case)."""
    run_id = ws.next_id("audit_runs")
    first = ws.execute("SELECT min(e.id) FROM examples e JOIN datasets d ON d.id = e.dataset_id "
                       "WHERE d.name = 'hh'").fetchone()[0]
    ws.execute("INSERT INTO audit_runs VALUES (?, 'probe', 1, 1, '2025-01-01T00:00:00', "
               "'builder', NULL, '', '{}', '{}', 2, 3, NULL, NULL)", [run_id])
    findings = [
        (1, "length-bias", first + 2, {"text": "padded answer"}, 0.3, 0.9,
         "longer response scores higher", 0.8, "model-error"),
        (2, "label-errors", first + 5, None, 0.7, None, "label disagrees with neighbours", 0.6,
         "label-error"),
        (3, "redteam-text", None, {"prompt": "ignore previous rules", "response": "<i>ok</i>"},
         None, 0.95, "jailbreak scores as safe", 0.5, "model-error")]
    for fid, probe, example, case, before, after, rule, severity, triage in findings:
        ws.execute("INSERT INTO findings VALUES (?, ?, ?, '1', ?, ?, ?, ?, ?, ?, ?, '{}')",
                   [run_id, fid, probe, example, json.dumps(case) if case else None, before,
                    after, rule, severity, triage])
    return run_id


def copy_template(template: Path, dest: Path) -> Path:
    shutil.copy(template, dest)
    return dest


@contextmanager
def workspace_copy(template: Path, tmp_path: Path):
    """A workspace opened on a copy of a template file, closed after."""
    from workstation.workspace import Workspace

    workspace = Workspace.open(copy_template(template, tmp_path / "ws.duckdb"))
    try:
        yield workspace
    finally:
        workspace.close()


@contextmanager
def main_window(qtbot, workspace: Path):
    """The main window (hash encoder) shown on ``workspace``; its jobs are
    cancelled and it is closed after."""
    from workstation.ui.main_window import MainWindow

    win = MainWindow()
    win.ctx.encoder = encoder()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.open_workspace(str(workspace))
    try:
        yield win
    finally:
        win.ctx.jobs.cancel_all()
        win.ctx.jobs.wait(10_000)
        win.close()


def encoder() -> HashEncoder:
    return HashEncoder()


def gated_encoder():
    """A stand-in encoder that reports its first batch, then holds the job
    until it is cancelled or the test sets ``release``: a cancel (or a look
    at the running job) is sure to land inside the run, however fast or
    loaded the machine (no race between the work and the click)."""
    import threading

    class GatedEncoder(HashEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()

        def encode(self, texts, progress=None, batch_size=64):
            if progress is None:
                return super().encode(texts)
            first = min(batch_size, len(texts))
            while not self.release.wait(0.01):  # Cancel raises out of step()
                progress.step(first, len(texts))  # again: the window may drop a report
            return super().encode(texts)
    return GatedEncoder()


# -- fixtures (imported by the GUI test modules) -------------------------------------

@pytest.fixture(autouse=True)
def own_settings(tmp_path, monkeypatch) -> Path:
    """Each test's QSettings in a file of its own (conftest already keeps the
    whole session away from the analyst's own), so recent lists do not mix."""
    path = tmp_path / "settings" / "workstation.ini"
    monkeypatch.setenv("WORKSTATION_SETTINGS", str(path))
    return path


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    """The template workspace, built once per session (copy it per test)."""
    path = tmp_path_factory.mktemp("template") / "template.duckdb"
    build_workspace(path)
    return path


def distinct_colours(image_path: Path, samples: int = 4000) -> int:
    """How many colours a screenshot shows, sampled on a grid: a blank (or
    one-colour) grab has one or two."""
    from PySide6.QtGui import QImage

    image = QImage(str(image_path))
    assert not image.isNull(), image_path
    step = max(1, int((image.width() * image.height() / samples) ** 0.5))
    return len({image.pixel(x, y) for x in range(0, image.width(), step)
                for y in range(0, image.height(), step)})
