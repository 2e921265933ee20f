"""Audit coverage: 0 at audited points, 1 far from them, monotone in between,
recorded from audits and probe runs (their generated cases included), and a
per-category report on a dataset built so the right figures are known."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.test_models import insert_dataset, reward_mlp
from workstation.audits import run_audit
from workstation.errors import WorkstationError
from workstation.models import add_model_bytes
from workstation.probes import PROBES, Finding, register_probe, run_probes
from workstation.probes import coverage as cov
from workstation.probes.coverage import (coverage, coverage_index, coverage_report,
                                         record_coverage, reference_distance, space_of)
from workstation.review import Edit, apply

DIM = 8
E = np.eye(DIM, dtype=np.float32)


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


# A tight cluster around e0 (neighbours about 0.1 apart), and texts far from it.
VECTORS = {f"a{j}": unit(E[0] + 0.1 * E[j]) for j in range(1, 5)}
VECTORS.update({"far0": E[6], "far1": E[7], "generated": unit(E[5] + E[6])})


class TableEncoder:
    """Fixed vectors for the texts in VECTORS; any other text a hashed direction."""

    id, dim = "table-encoder", DIM

    def encode(self, texts, progress=None, batch_size=64) -> np.ndarray:
        return np.stack([VECTORS.get(t or "", None) if (t or "") in VECTORS else _hashed(t or "")
                         for t in texts])


def _hashed(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return unit(np.random.default_rng(seed).standard_normal(DIM))


@pytest.fixture
def text_ws(ws):
    encoder = TableEncoder()
    add_model_bytes(ws, reward_mlp(DIM), "m", "text-embedding", encoder=encoder)
    rows = [{"prompt": "q", "response": f"a{j}", "label": True} for j in range(1, 5)]
    insert_dataset(ws, "labels", rows, name="audited")
    return ws, encoder


# -- embedding spaces ----------------------------------------------------------

def test_report_per_category_on_a_constructed_dataset(text_ws):
    ws, encoder = text_ws
    run_audit(ws, "m", "audited", encoder=encoder)
    rows = [{"prompt": "q", "response": "a1", "label": True, "category": "Near"},
            {"prompt": "q", "response": "a2", "label": False, "category": "Near"},
            {"prompt": "q", "response": "far0", "label": True, "category": "Far"},
            {"prompt": "q", "response": "far1", "label": False, "category": "Far"}]
    insert_dataset(ws, "labels", rows, name="new")
    report = coverage_report(ws, "m", "new", encoder=encoder)
    assert report["space"] == "embedding:table-encoder" and report["n_points"] == 4
    assert report["per_category"]["Near"] == {"n": 2, "covered": 2, "covered_fraction": 1.0,
                                              "mean_coverage": 0.0}
    assert report["per_category"]["Far"] == {"n": 2, "covered": 0, "covered_fraction": 0.0,
                                             "mean_coverage": 1.0}
    assert report["overall"]["covered_fraction"] == 0.5
    assert report["overall"]["mean_coverage"] == pytest.approx(0.5)


def test_zero_at_audited_points_one_far_away_monotone_between(text_ws):
    ws, encoder = text_ws
    run_audit(ws, "m", "audited", encoder=encoder)
    audited = np.stack([VECTORS[f"a{j}"] for j in range(1, 5)])
    assert coverage(ws, "m", audited).tolist() == [0.0] * 4
    assert coverage(ws, "m", np.stack([E[6], -E[0]])).tolist() == [1.0, 1.0]
    # walk from an audited point towards e6: coverage rises and saturates at 1
    path = np.stack([unit((1 - t) * VECTORS["a1"] + t * E[6]) for t in np.linspace(0, 1, 30)])
    walk = coverage(ws, "m", path)
    assert walk[0] == 0.0 and walk[-1] == 1.0 and (np.diff(walk) >= 0).all()
    index = coverage_index(ws, "m")
    rng = np.random.default_rng(0)
    queries = np.stack([unit(v) for v in rng.standard_normal((200, DIM))])
    dist, _ = index.nearest(queries)
    values = index.coverage(queries)[np.argsort(dist)]
    assert (np.diff(values) >= 0).all()
    np.testing.assert_allclose(index.coverage(queries), np.minimum(1, dist / index.d_ref))


def test_pairs_count_both_sides_and_the_worse_side_decides(ws):
    encoder = TableEncoder()
    add_model_bytes(ws, reward_mlp(DIM), "m", "text-embedding", encoder=encoder)
    insert_dataset(ws, "pairs", [{"prompt": "q", "chosen": "a1", "rejected": "a2"},
                                 {"prompt": "q", "chosen": "a3", "rejected": "a4"}], name="p")
    run_audit(ws, "m", "p", encoder=encoder)
    insert_dataset(ws, "pairs", [{"prompt": "q", "chosen": "a1", "rejected": "a4"},
                                 {"prompt": "q", "chosen": "a1", "rejected": "far0"}], name="n")
    report = coverage_report(ws, "m", "n", encoder=encoder)
    assert report["n_points"] == 4
    assert report["overall"] == {"n": 2, "covered": 1, "covered_fraction": 0.5,
                                 "mean_coverage": 0.5}


def test_audits_are_recorded_lazily_once_and_excluded_examples_are_not_audited(text_ws):
    ws, encoder = text_ws
    a4 = ws.execute("SELECT id FROM examples WHERE response = 'a4'").fetchall()[0][0]
    apply(ws, [Edit(a4, "excluded", True, "out of scope")])
    first = run_audit(ws, "m", "audited", encoder=encoder)
    assert ws.execute("SELECT count(*) FROM coverage_runs").fetchall()[0][0] == 0
    values = coverage(ws, "m", np.stack([VECTORS["a1"], VECTORS["a4"]]))
    assert values[0] == 0.0 and values[1] > 0.0  # the excluded a4 was not audited
    assert ws.execute("SELECT run_id FROM coverage_runs").fetchall() == [(first.id,)]
    again = record_coverage(ws, first.id, encoder)
    assert (again.n_points, again.n_new) == (3, 0)
    second = run_audit(ws, "m", "audited", encoder=encoder)
    assert record_coverage(ws, second.id, encoder).n_new == 0
    assert ws.execute("SELECT count(*) FROM coverage_points").fetchall()[0][0] == 3


def test_nothing_audited_means_no_coverage(text_ws):
    ws, _ = text_ws
    assert coverage(ws, "m", np.stack([VECTORS["a1"]])).tolist() == [1.0]
    assert coverage(ws, "embedding:unknown", np.zeros((2, DIM))).tolist() == [1.0, 1.0]


class CaseProbe:
    """Emits one generated case: a text or an observation, as configured."""

    name, version, kinds = "test-case", "1", ("labels", "demos")
    description = "test probe"

    def run(self, ctx):
        case = ctx.param("case", {})
        return [Finding(self.name, "generated", 0.5, "model-error", case=case)]


@pytest.fixture
def case_probe():
    probe = register_probe(CaseProbe(), replace=True)
    yield probe
    PROBES.pop(probe.name, None)


def test_probe_cases_with_texts_are_audited_points(text_ws, case_probe):
    ws, encoder = text_ws
    far_before = coverage(ws, "m", VECTORS["generated"][None])
    run = run_probes(ws, "m", "audited", probes=["test-case"],
                     params={"case": {"text": "generated", "transformation": "x"}},
                     encoder=encoder)
    assert ws.execute("SELECT run_id, n_points FROM coverage_runs").fetchall() == [(run.id, 5)]
    assert far_before.tolist() == [1.0]
    assert coverage(ws, "m", VECTORS["generated"][None]).tolist() == [0.0]


# -- observation spaces ---------------------------------------------------------

@pytest.fixture
def obs_ws(ws):
    add_model_bytes(ws, reward_mlp(2, seed=1), "obs", "observation")
    trajectories = [{"obs": [[float(x), 0.0] for x in range(4)]},
                    {"obs": [[float(x), 1.0] for x in range(4)]}]
    insert_dataset(ws, "demos", trajectories, name="demos")
    return ws


def test_observation_coverage_is_calibrated_on_standardised_steps(obs_ws):
    ws = obs_ws
    run_audit(ws, "obs", "demos")
    index = coverage_index(ws, "obs")
    assert index.space == "observation:2" == space_of(_version(ws, "obs")) and len(index) == 8
    # x spreads with std 1.118, y with 0.5: each step's nearest neighbour is
    # one x-step away, 1/1.118 = 0.894 scaled, so d_ref = 2 * 0.894
    sx = np.std([0, 1, 2, 3])
    assert index.d_ref == pytest.approx(2 / sx, rel=1e-5)
    assert coverage(ws, "obs", np.array([[0.0, 0.0], [3.0, 1.0]])).tolist() == [0.0, 0.0]
    assert coverage(ws, "obs", np.array([[0.5, 0.0]]))[0] == pytest.approx(0.25, rel=1e-5)
    ray = np.array([[0.0, -s] for s in np.linspace(0, 5, 40)])
    walk = coverage(ws, "obs", ray)
    assert walk[0] == 0.0 and walk[-1] == 1.0 and (np.diff(walk) >= 0).all()
    with pytest.raises(WorkstationError, match="2-wide vectors"):
        coverage(ws, "obs", np.zeros((1, 3)))


def test_probe_cases_with_observations_are_audited_points(obs_ws, case_probe):
    ws = obs_ws
    run_probes(ws, "obs", "demos", probes=["test-case"],
               params={"case": {"obs": [10.0, 10.0], "source": "grid"}})
    assert coverage(ws, "obs", np.array([[10.0, 10.0]])).tolist() == [0.0]
    report = coverage_report(ws, "obs", "demos")
    assert report["overall"] == {"n": 2, "covered": 2, "covered_fraction": 1.0,
                                 "mean_coverage": 0.0}


def test_a_text_model_cannot_report_on_demonstrations(obs_ws):
    ws = obs_ws
    add_model_bytes(ws, reward_mlp(DIM), "m", "text-embedding", encoder=TableEncoder())
    with pytest.raises(WorkstationError, match="cannot read dataset 'demos'"):
        coverage_report(ws, "m", "demos", encoder=TableEncoder())


def _version(ws, ref):
    from workstation.models import resolve

    return resolve(ws, ref)


# -- the nearest-neighbour search ------------------------------------------------

def test_blocked_search_matches_brute_force(monkeypatch):
    monkeypatch.setattr(cov, "_POINT_BLOCK", 7)
    monkeypatch.setattr(cov, "_QUERY_BLOCK", 5)
    rng = np.random.default_rng(1)
    points = rng.standard_normal((100, 3)).astype(np.float32)
    queries = rng.standard_normal((23, 3)).astype(np.float32)
    brute = np.linalg.norm(queries[:, None] - points[None], axis=2)
    index = cov.CoverageIndex("observation:3", points, np.arange(100), None,
                              reference_distance(points))
    dist, nearest = index.nearest(queries)
    np.testing.assert_array_equal(nearest, brute.argmin(axis=1))
    np.testing.assert_allclose(dist, brute.min(axis=1), rtol=1e-5)


def test_reference_distance_ignores_duplicates_and_has_a_fallback():
    line = np.array([[0.0], [1.0], [1.0], [3.0]], dtype=np.float32)
    # nearest distinct neighbours: 1, 1, 1, 2 -> median 1 -> d_ref 2
    assert reference_distance(line) == pytest.approx(2.0)
    # three unrelated (orthogonal) points: 2 x spacing would be 2.83, but c
    # already reaches 1 at the distance between unrelated audited points
    assert reference_distance(E[:3]) == pytest.approx(np.sqrt(2), rel=1e-6)
    assert reference_distance(line[:1]) == cov.FALLBACK_REF
    assert reference_distance(np.zeros((3, 2), dtype=np.float32)) == cov.FALLBACK_REF


def test_the_cli_reports_a_datasets_coverage(tmp_path, capsys):
    """`workstation coverage` before a release: which of a new dataset's
    categories the audits reach (JSON for scripts, a table for a person)."""
    import json

    from workstation.cli import main
    from workstation.workspace import Workspace

    path = tmp_path / "cli.duckdb"
    with Workspace.open(path) as ws:
        add_model_bytes(ws, reward_mlp(2, seed=1), "obs", "observation")
        insert_dataset(ws, "demos", [{"obs": [[float(x), 0.0] for x in range(4)]},
                                     {"obs": [[float(x), 1.0] for x in range(4)]}], name="old")
        run_audit(ws, "obs", "old")
        insert_dataset(ws, "demos", [{"obs": [[1.0, 0.0], [2.0, 1.0]], "category": "seen"},
                                     {"obs": [[40.0, 30.0]], "category": "unseen"}], name="new")
    assert main(["-w", str(path), "coverage", "--model", "obs@1", "--dataset", "new",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "obs@1" and report["space"] == "observation:2"
    assert report["overall"]["n"] == 2 and report["overall"]["covered"] == 1
    assert report["per_category"]["seen"]["mean_coverage"] == 0.0
    assert report["per_category"]["unseen"]["mean_coverage"] == 1.0
    assert main(["-w", str(path), "coverage", "--model", "obs", "--dataset", "new"]) == 0
    text = capsys.readouterr().out
    assert "1 of 2      covered (50%)" in text and "unseen" in text
    assert main(["-w", str(path), "coverage", "--model", "obs", "--dataset", "nope"]) == 1
    assert "no dataset named 'nope'" in capsys.readouterr().err
