"""The core reads behind the failure browser, headless: failure pages with the
browser's filters and without a run, the catalog of datasets and runs, one
example in full, and the reward landscape of a demonstrations dataset."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gui_support import demo_rows, insert_probe_run, label_rows, pairs_rows
from tests.test_models import DIM, HashEncoder, insert_dataset, reward_mlp
from workstation import catalog, review
from workstation.audits import failure_page, run_audit
from workstation.errors import WorkstationError
from workstation.examples import example, findings_for, trajectory
from workstation.landscape import extent, projection, reward_landscape
from workstation.models import add_model_bytes, score_observations


@pytest.fixture
def filled(ws):
    """hh (pairs), jbb (labels), cart (demos); rm audited on hh, irl on cart."""
    encoder = HashEncoder()
    insert_dataset(ws, "pairs", pairs_rows(30), "hh")
    insert_dataset(ws, "labels", label_rows(20), "jbb")
    insert_dataset(ws, "demos", demo_rows(4, 10), "cart")
    add_model_bytes(ws, reward_mlp(DIM), "rm", "text-embedding", encoder=encoder)
    add_model_bytes(ws, reward_mlp(4, seed=3), "irl", "observation")
    pairs_run = run_audit(ws, "rm", "hh", encoder=encoder)
    demos_run = run_audit(ws, "irl", "cart")
    return ws, pairs_run, demos_run


def _ids(ws, dataset: str) -> list[int]:
    return [r[0] for r in ws.execute("SELECT e.id FROM examples e JOIN datasets d ON "
                                     "d.id = e.dataset_id WHERE d.name = ? ORDER BY e.id",
                                     [dataset]).fetchall()]


# -- failure pages -------------------------------------------------------------------

def test_a_dataset_can_be_paged_without_a_run(filled):
    ws, _, _ = filled
    rows, total = failure_page(ws, None, dataset="jbb", limit=5, offset=5)
    assert total == 20 and [r["source_index"] for r in rows] == [5, 6, 7, 8, 9]
    assert all(r["score"] is None and r["passed"] is None and r["rank"] is None for r in rows)
    assert rows[0]["label"] in ("safe", "unsafe") and not rows[0]["label_changed"]
    rows, _ = failure_page(ws, None, dataset="jbb", order_by="category", descending=True)
    assert [r["category"] for r in rows] == sorted((r["category"] for r in rows), reverse=True)
    with pytest.raises(WorkstationError, match="needs an audit run or a dataset"):
        failure_page(ws, None)
    with pytest.raises(WorkstationError, match="no dataset 'nope'"):
        failure_page(ws, None, dataset="nope")


def test_tag_review_state_and_example_filters(filled):
    ws, run, _ = filled
    ids = _ids(ws, "hh")
    review.apply(ws, [review.Edit(ids[0], "tags", ["urgent"], "triage"),
                      review.Edit(ids[1], "note", "look again", "triage")])
    rows, total = failure_page(ws, run.id, tag="urgent")
    assert total == 1 and rows[0]["tags"] == ["urgent"] and rows[0]["reviewed"]
    rows, total = failure_page(ws, run.id, reviewed=True, order_by="example_id")
    assert total == 2 and rows[1]["note"] == "look again"
    _, unreviewed = failure_page(ws, run.id, reviewed=False)
    assert unreviewed == 28
    rows, total = failure_page(ws, run.id, example_id=ids[3])
    assert total == 1 and rows[0]["example_id"] == ids[3]
    rows, total = failure_page(ws, run.id, limit=3, count=False)
    assert total is None and len(rows) == 3


def test_every_column_the_browser_shows_can_order_the_page(filled):
    ws, run, _ = filled
    for key in ("prompt", "chosen", "flipped", "reviewed", "tags", "note", "label_at_audit"):
        rows, total = failure_page(ws, run.id, order_by=key, limit=100)
        assert total == 30 and len(rows) == 30
    rows, _ = failure_page(ws, run.id, order_by="chosen")
    texts = [r["chosen"] for r in rows]
    assert texts == sorted(texts)


def test_a_deep_page_matches_a_sort_in_python(filled):
    ws, run, _ = filled
    everything, _ = failure_page(ws, run.id, order_by="margin", descending=True, limit=1000)
    page, _ = failure_page(ws, run.id, order_by="margin", descending=True, limit=7, offset=11)
    assert [r["example_id"] for r in page] == [r["example_id"] for r in everything[11:18]]
    margins = [r["margin"] for r in everything]
    assert margins == sorted(margins, reverse=True)


# -- the catalog -----------------------------------------------------------------------

def test_the_catalog_lists_datasets_versions_runs_and_choices(filled):
    ws, pairs_run, demos_run = filled
    probe_run = insert_probe_run(ws)
    assert [d.name for d in catalog.datasets(ws)] == ["hh", "jbb", "cart"]
    assert catalog.dataset(ws, "jbb").n_examples == 20
    assert [(v.ref, v.input_kind) for v in catalog.model_versions(ws)] == [
        ("irl@1", "observation"), ("rm@1", "text-embedding")]
    runs = catalog.runs(ws, "hh")
    assert [(r.id, r.kind) for r in runs] == [(probe_run, "probe"), (pairs_run.id, "audit")]
    assert catalog.runs(ws, "hh", model_version_id=2) == []
    assert catalog.run(ws, demos_run.id).dataset == "cart"
    assert catalog.categories(ws, "hh") == ["harmless", "helpful", "privacy"]
    assert catalog.run_probes(ws, probe_run) == ["label-errors", "length-bias", "redteam-text"]
    ids = _ids(ws, "hh")
    review.apply(ws, [review.Edit(ids[2], "tags", ["b", "a"], "t")])
    assert catalog.tags(ws, "hh") == ["a", "b"] and catalog.tags(ws, "jbb") == []
    with pytest.raises(WorkstationError, match="no run 99"):
        catalog.run(ws, 99)


# -- one example -----------------------------------------------------------------------

def test_an_example_in_full_with_current_sides_and_findings(filled):
    ws, _, _ = filled
    insert_probe_run(ws)
    first = _ids(ws, "hh")[0]
    review.apply(ws, [review.Edit(first, "flipped", True, "swap")])
    item = example(ws, first)
    assert item["flipped"] and item["chosen"].startswith("Sure, here is answer 0")
    assert item["rejected"] == "<b>x</b> is shown literally, never bold."
    assert item["kind"] == "pairs" and item["dataset"] == "hh" and item["reviewed"]
    labelled = example(ws, _ids(ws, "jbb")[1])
    assert labelled["label"] == "safe" and labelled["category"] == "Fraud/Deception"
    found = findings_for(ws, first + 2)
    assert [(f["probe"], f["model"]) for f in found] == [("length-bias", "rm@1")]
    assert found[0]["case"] == {"text": "padded answer"}
    with pytest.raises(WorkstationError, match="no example with id 999"):
        example(ws, 999)


def test_a_trajectory_in_step_order(filled):
    ws, _, _ = filled
    demo = _ids(ws, "cart")[1]
    obs, actions = trajectory(ws, demo)
    assert obs.shape == (10, 4) and actions is None
    assert obs[3, 1] == pytest.approx(demo_rows(4, 10)[1]["obs"][3][1], abs=1e-6)
    empty, _ = trajectory(ws, _ids(ws, "hh")[0])
    assert empty.shape == (0, 0)


# -- the reward landscape --------------------------------------------------------------

def test_projections_map_observations_to_a_plane_and_back():
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((200, 5)) * [3, 2, 1, 0.5, 0.1]
    components = projection(obs, "components")
    assert np.allclose(components.project(obs), obs[:, :2])
    lifted = components.lift(np.array([[1.0, 2.0]]))[0]
    assert np.allclose(lifted[:2], [1, 2]) and np.allclose(lifted[2:], obs.mean(axis=0)[2:])
    pca = projection(obs, "pca")
    assert np.allclose(pca.basis @ pca.basis.T, np.eye(2), atol=1e-9)
    assert abs(pca.basis[0, 0]) > 0.9  # the widest direction first
    coords = pca.project(obs[:3])
    assert np.allclose(pca.project(pca.lift(coords)), coords)
    x0, x1, y0, y1 = extent(np.array([[0.0, 0.0], [1.0, 2.0]]), pad=0.1)
    assert (x0, x1, y0, y1) == pytest.approx((-0.1, 1.1, -0.2, 2.2))
    with pytest.raises(WorkstationError, match="at least two components"):
        projection(obs[:, :1])


def test_the_landscape_scores_the_model_on_the_plane(filled):
    ws, _, _ = filled
    from workstation.landscape import demo_observations

    sample = demo_observations(ws, "cart")
    assert sample.shape == (40, 4)
    assert demo_observations(ws, "cart", limit=15).shape[0] <= 15
    view = projection(sample, "components")
    land = reward_landscape(ws, "irl", view, (-1, 1, -2, 2), resolution=5)
    assert land.rewards.shape == (5, 5)
    point = view.lift(np.array([[land.xs[3], land.ys[1]]])).astype(np.float32)
    assert land.rewards[1, 3] == pytest.approx(float(score_observations(ws, "irl", point)[0]),
                                               rel=1e-5)
