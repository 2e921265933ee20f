"""The probe framework: registration, a suite run, stored findings."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_models import DIM, HashEncoder, insert_dataset, reward_mlp
from workstation.errors import Cancelled, WorkstationError
from workstation.models import add_model_bytes
from workstation.probes import PROBES, Finding, findings_page, register_probe, run_probes

ROWS = [{"prompt": "q", "response": f"reply {i}", "label": i % 2 == 0} for i in range(6)]


class LowScoreProbe:
    """Flags every safe-labeled example scoring below a cut-off."""

    name, version, kinds = "test-low-score", "1", ("labels",)
    description = "test probe"

    def run(self, ctx):
        rows = ctx.ws.execute("SELECT id, prompt, response, current_label FROM current_examples "
                              "WHERE dataset_id = ? ORDER BY id", [ctx.dataset_id]).fetchall()
        scores = ctx.score_texts([r[1] for r in rows], [r[2] for r in rows])
        cut = ctx.param("cut", 0.5)
        for (example_id, _, _, label), score in zip(rows, scores):
            ctx.progress.check()
            if label and score < cut:
                yield Finding(self.name, "safe example scores low", severity=cut - score,
                              triage="model-error", example_id=example_id, score_before=score)


@pytest.fixture
def setup(ws):
    probe = register_probe(LowScoreProbe(), replace=True)
    encoder = HashEncoder()
    add_model_bytes(ws, reward_mlp(DIM), "m", "text-embedding", encoder=encoder)
    insert_dataset(ws, "labels", ROWS, name="d")
    yield ws, encoder
    PROBES.pop(probe.name, None)


def test_suite_stores_findings_most_severe_first(setup):
    ws, encoder = setup
    run = run_probes(ws, "m", "d", probes=["test-low-score"], params={"cut": 2.0},
                     encoder=encoder)
    assert run.counts == {"test-low-score": 3}
    items, total = findings_page(ws, run.id)
    assert total == 3
    severities = [f["severity"] for f in items]
    assert severities == sorted(severities, reverse=True)
    assert all(f["probe"] == "test-low-score" and f["source_index"] is not None for f in items)
    kind = ws.execute("SELECT kind, n_failures FROM audit_runs WHERE id = ?", [run.id]).fetchall()
    assert kind == [("probe", 3)]


def test_unknown_probe_and_cancelled_suite_leave_nothing(setup):
    ws, encoder = setup
    with pytest.raises(WorkstationError, match="unknown probe 'nope'"):
        run_probes(ws, "m", "d", probes=["nope"], encoder=encoder)
    from workstation.progress import Progress

    progress = Progress()
    progress.cancel()
    with pytest.raises(Cancelled):
        run_probes(ws, "m", "d", probes=["test-low-score"], params={"cut": 2.0},
                   encoder=encoder, progress=progress)
    assert ws.execute("SELECT count(*) FROM findings").fetchall()[0][0] == 0
    assert ws.execute("SELECT count(*) FROM audit_runs").fetchall()[0][0] == 0


def test_finding_rejects_unknown_triage():
    with pytest.raises(ValueError):
        Finding("p", "r", 0.5, "maybe")
    assert Finding("p", "r", 7.0, "ambiguous").severity == 1.0
