"""Plot data (Qt-free): each plot's numbers against known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from tests.test_models import DIM, HashEncoder, insert_dataset, reward_mlp
from tests.test_releases import add_version
from workstation import review
from workstation.audits import metrics as m
from workstation.audits import plot_data as pd
from workstation.audits.runs import run_audit
from workstation.errors import WorkstationError
from workstation.models import add_model_bytes
from workstation.models import lineage
from workstation.releases import release, rollback
from workstation.review import Edit

# -- helpers -----------------------------------------------------------------------


def fake_run(ws, version_id: int, dataset_id: int, rows: list[dict], *, kind: str = "audit",
             metrics: dict | None = None, n_failures: int | None = None,
             run_id: int | None = None, membership: dict | None = None) -> int:
    """An audit (or probe) run written straight into the tables; returns its id.
    A row's ``split`` is its training role (absent: not trained on it)."""
    run_id = ws.next_id("audit_runs") if run_id is None else run_id
    failures = sum(not r["passed"] for r in rows) if n_failures is None else n_failures
    ws.execute("INSERT INTO audit_runs (id, kind, model_version_id, dataset_id, created_at, "
               "created_by, review_head, metrics, n_examples, n_failures, membership) "
               "VALUES (?, ?, ?, ?, 'now', 'test', '', ?, ?, ?, ?)",
               [run_id, kind, version_id, dataset_id,
                json.dumps(metrics or {"score_type": "probability"}), len(rows), failures,
                None if membership is None else json.dumps(membership)])
    for r in rows:
        ws.execute("INSERT INTO audit_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                   [run_id, r["example_id"], r.get("score"), r.get("score_chosen"),
                    r.get("score_rejected"), r.get("margin"), r.get("label", True),
                    r["passed"], r.get("split")])
    return run_id


def first_example(ws, dataset_id: int) -> int:
    return ws.execute("SELECT min(id) FROM examples WHERE dataset_id = ?",
                      [dataset_id]).fetchone()[0]


LABELED = [{"prompt": f"q{i}", "response": "x" * (5 + i), "label": i % 3 != 0,
            "category": ("Crime", "Food", "Health")[i % 3]} for i in range(60)]
PAIRS = [{"prompt": f"p{i}", "chosen": "c" * (3 + i), "rejected": "r" * (10 + 2 * i),
          "category": ("A", "B")[i % 2]} for i in range(30)]


@pytest.fixture
def audited(ws):
    """A real audit of a labeled-response dataset by a text-embedding model."""
    encoder = HashEncoder()
    add_model_bytes(ws, reward_mlp(DIM), "rm", "text-embedding", encoder=encoder)
    insert_dataset(ws, "labels", LABELED, name="labels")
    run = run_audit(ws, "rm@1", "labels", encoder=encoder)
    return ws, run


@pytest.fixture
def audited_pairs(ws):
    encoder = HashEncoder()
    add_model_bytes(ws, reward_mlp(DIM, seed=4), "rm", "text-embedding", encoder=encoder)
    dataset_id = insert_dataset(ws, "pairs", PAIRS, name="pairs")
    flipped = first_example(ws, dataset_id) + 1
    review.apply(ws, [Edit(flipped, "flipped", True, "the rejected side is better")])
    run = run_audit(ws, "rm@1", "pairs", encoder=encoder)
    return ws, run, flipped


# -- ROC -----------------------------------------------------------------------------


def test_roc_matches_sklearn_and_the_stored_auroc(audited):
    ws, run = audited
    curve = pd.roc(ws, run.id)
    scores, labels = map(np.array, zip(*ws.execute(
        "SELECT score, label FROM audit_results WHERE run_id = ? ORDER BY example_id",
        [run.id]).fetchall()))
    fpr, tpr, thresholds = roc_curve(labels.astype(int), scores, drop_intermediate=False)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    np.testing.assert_allclose(curve.thresholds[1:], thresholds[1:])
    assert curve.auroc == pytest.approx(roc_auc_score(labels, scores))
    assert curve.auroc == pytest.approx(run.metrics["auroc"])
    assert (curve.n_positive, curve.n_negative) == (40, 20) and curve.positive == "safe"
    predicted = scores > run.threshold
    assert curve.operating_point == pytest.approx((predicted[~labels].mean(),
                                                   predicted[labels].mean()))


def test_roc_with_tied_scores_matches_sklearn():
    scores = np.array([0.9, 0.4, 0.4, 0.4, 0.1, 0.7, 0.7])
    positive = np.array([1, 1, 0, 0, 0, 1, 0], dtype=bool)
    fpr, tpr, thresholds = pd.roc_points(scores, positive)
    ref = roc_curve(positive, scores, drop_intermediate=False)
    for ours, theirs in zip((fpr, tpr, thresholds[1:]), (ref[0], ref[1], ref[2][1:])):
        np.testing.assert_allclose(ours, theirs)
    assert np.trapezoid(tpr, fpr) == pytest.approx(m.auroc(scores, positive))


def test_roc_of_pairs_pools_chosen_against_rejected(audited_pairs):
    ws, run, _ = audited_pairs
    curve = pd.roc(ws, run.id)
    chosen, rejected = map(np.array, zip(*ws.execute(
        "SELECT score_chosen, score_rejected FROM audit_results WHERE run_id = ?",
        [run.id]).fetchall()))
    expected = roc_auc_score(np.r_[np.ones(30), np.zeros(30)], np.r_[chosen, rejected])
    assert curve.positive == "chosen" and curve.auroc == pytest.approx(expected)
    assert curve.operating_point is None  # pairs take no threshold


def test_roc_with_one_class_says_why(ws):
    version = add_version(ws, "rm", 1)
    dataset = insert_dataset(ws, "labels", [{"response": "a", "label": True}] * 3)
    first = first_example(ws, dataset)
    run = fake_run(ws, version, dataset, [{"example_id": first + i, "score": 0.1 * i,
                                           "label": True, "passed": True} for i in range(3)])
    curve = pd.roc(ws, run)
    assert curve.auroc is None and "both classes" in curve.reason and not len(curve.fpr)


# -- reliability ---------------------------------------------------------------


def test_reliability_bins_by_hand(ws):
    version = add_version(ws, "rm", 1)
    probs = [0.05, 0.08, 0.35, 0.31, 0.9, 0.95, 1.0]
    safe = [False, True, False, True, True, True, True]
    dataset = insert_dataset(ws, "labels", [{"response": "r", "label": s} for s in safe])
    first = first_example(ws, dataset)
    run = fake_run(ws, version, dataset, [
        {"example_id": first + i, "score": p, "label": s, "passed": (p > 0.5) == s}
        for i, (p, s) in enumerate(zip(probs, safe))])
    diagram = pd.reliability(ws, run)
    assert diagram.counts.tolist() == [2, 0, 0, 2, 0, 0, 0, 0, 0, 3]
    assert diagram.mean_probability[[0, 3, 9]] == pytest.approx([0.065, 0.33, 0.95])
    assert diagram.observed[[0, 3, 9]] == pytest.approx([0.5, 0.5, 1.0])
    assert np.isnan(diagram.observed[1]) and np.isnan(diagram.mean_probability[5])
    assert diagram.lower[3] == pytest.approx(0.3) and diagram.upper[3] == pytest.approx(0.4)
    by_hand = (2 * 0.435 + 2 * 0.17 + 3 * 0.05) / 7
    assert diagram.ece == pytest.approx(by_hand)
    assert diagram.ece == pytest.approx(m.ece(np.array(probs), np.array(safe)))


def test_reliability_of_logits_uses_the_sigmoid(audited, ws):
    _, run = audited
    diagram = pd.reliability(ws, run.id)
    assert diagram.reason is None and diagram.counts.sum() == 60
    assert diagram.ece == pytest.approx(run.metrics["ece"])


def test_reliability_does_not_apply_to_pairs(audited_pairs):
    ws, run, _ = audited_pairs
    diagram = pd.reliability(ws, run.id)
    assert "labeled responses" in diagram.reason and diagram.ece is None


# -- distributions, categories, lengths -------------------------------------------------


def test_score_distributions_per_label_on_shared_edges(audited):
    ws, run = audited
    dist = pd.score_distributions(ws, run.id, bins=12)
    safe, unsafe = dist.series
    assert (safe.name, unsafe.name) == ("safe", "unsafe")
    assert (safe.n, unsafe.n) == (40, 20)
    assert np.array_equal(safe.edges, unsafe.edges) and len(safe.edges) == 13
    scores = np.array([r[0] for r in ws.execute(
        "SELECT score FROM audit_results WHERE run_id = ? AND NOT label", [run.id]).fetchall()])
    assert unsafe.counts.tolist() == np.histogram(scores, bins=unsafe.edges)[0].tolist()


def test_score_distributions_of_pairs_per_side(audited_pairs):
    ws, run, _ = audited_pairs
    dist = pd.score_distributions(ws, run.id)
    assert [s.name for s in dist.series] == ["chosen", "rejected"]
    assert [s.n for s in dist.series] == [30, 30]


def test_category_bars_come_from_the_metrics_json(audited):
    ws, run = audited
    bars = pd.category_bars(ws, run.id)
    assert bars.metric == "accuracy" and bars.categories == ["Crime", "Food", "Health"]
    per = run.metrics["per_category"]
    assert bars.values.tolist() == [per[c]["accuracy"] for c in bars.categories]
    assert bars.ci_low.tolist() == [per[c]["accuracy_ci"][0] for c in bars.categories]
    assert bars.ci_high.tolist() == [per[c]["accuracy_ci"][1] for c in bars.categories]
    assert bars.n.tolist() == [20, 20, 20] and bars.overall == run.metrics["accuracy"]
    assert {"accuracy", "auroc", "ece"} <= set(bars.metrics_available)
    auroc = pd.category_bars(ws, run.id, "auroc")
    assert np.isnan(auroc.values[0])  # Crime holds unsafe examples only: no AUROC
    with pytest.raises(WorkstationError, match="no metric 'nope'"):
        pd.category_bars(ws, run.id, "nope")


def test_length_vs_score_uses_response_length_and_keeps_ids(audited):
    ws, run = audited
    scatter = pd.length_vs_score(ws, run.id)
    [series] = scatter.series
    first = int(series.example_ids[0])
    assert series.x.tolist() == [len(LABELED[int(i) - first]["response"])
                                 for i in series.example_ids]
    scores = dict(ws.execute("SELECT example_id, score FROM audit_results WHERE run_id = ?",
                             [run.id]).fetchall())
    assert series.y.tolist() == [scores[int(i)] for i in series.example_ids]
    assert scatter.n_total == 60 and "characters" in scatter.x_label


def test_length_vs_score_of_pairs_follows_the_audited_sides(audited_pairs):
    ws, run, flipped = audited_pairs
    scatter = pd.length_vs_score(ws, run.id)
    chosen, rejected = scatter.series
    first = int(chosen.example_ids[0])
    index = flipped - first
    # The flip swapped the sides before the audit: the chosen side is the imported rejected.
    assert chosen.x[index] == len(PAIRS[index]["rejected"])
    assert rejected.x[index] == len(PAIRS[index]["chosen"])
    assert chosen.x[0] == len(PAIRS[0]["chosen"])


def test_thinning_keeps_every_failure():
    priority = np.zeros(1000, dtype=bool)
    priority[[3, 500, 999]] = True
    keep = pd.thin(priority, 50)
    assert len(keep) == 50 and {3, 500, 999} <= set(keep.tolist())
    assert pd.thin(priority, 1000) is None


# -- version comparison ----------------------------------------------------------------


def _two_runs(ws):
    v1 = add_version(ws, "rm", 1)
    v2 = add_version(ws, "rm", 2, parent_id=v1)
    dataset = insert_dataset(ws, "pairs", PAIRS[:6], name="six")
    first = first_example(ws, dataset)
    old = [1.0, -1.0, 0.5, -0.5, 2.0, -2.0]
    new = [1.5, 0.7, -0.2, 0.1, 2.5, -3.0]
    runs = [fake_run(ws, v, dataset, [{"example_id": first + i, "margin": mm, "passed": mm > 0}
                                      for i, mm in enumerate(margins)])
            for v, margins in ((v1, old), (v2, new))]
    return runs, first, old, new, (v1, v2), dataset


def test_compare_runs_classes_fixed_broken_unchanged(ws):
    (old_run, new_run), first, old, new, _, _ = _two_runs(ws)
    c = pd.compare_runs(ws, old_run, new_run)
    assert c.old_label == "rm@1" and c.new_label == "rm@2"
    assert c.old_margin.tolist() == old and c.new_margin.tolist() == new
    assert c.counts == {"fixed": 2, "broken": 1, "unchanged": 3}
    assert c.ids_of("fixed") == [first + 1, first + 3]
    assert c.ids_of("broken") == [first + 2]


def _trained_runs(ws):
    """Like _two_runs, but rm@2 was trained on examples 1 and 2 (the fix of 1 and the
    break of 2 happened on its training examples)."""
    v1 = add_version(ws, "rm", 1)
    v2 = add_version(ws, "rm", 2, parent_id=v1)
    dataset = insert_dataset(ws, "pairs", PAIRS[:6], name="six")
    first = first_example(ws, dataset)
    old = [1.0, -1.0, 0.5, -0.5, 2.0, -2.0]
    new = [1.5, 0.7, -0.2, 0.1, 2.5, -3.0]
    unknown = {"status": "unknown", "metrics_cover": "all 6 examples"}
    trained = {"status": "trained", "metrics_cover": "the 4 examples rm@2 was not trained on"}
    old_run = fake_run(ws, v1, dataset, [{"example_id": first + i, "margin": m, "passed": m > 0}
                                         for i, m in enumerate(old)], membership=unknown)
    new_run = fake_run(ws, v2, dataset, [
        {"example_id": first + i, "margin": m, "passed": m > 0,
         "split": "training" if i in (1, 2) else "heldout"} for i, m in enumerate(new)],
        membership=trained)
    return old_run, new_run, first


def test_compare_runs_counts_only_examples_neither_version_was_trained_on(ws):
    old_run, new_run, first = _trained_runs(ws)
    c = pd.compare_runs(ws, old_run, new_run)
    assert c.counts == {"fixed": 1, "broken": 0, "unchanged": 3} and c.n_left_out == 2
    assert c.ids_of("fixed") == [first + 3] and first + 1 not in c.example_ids.tolist()
    assert c.what == "held-out examples (those rm@2 was not trained on)"
    assert c.counts_text == ("4 held-out examples (those rm@2 was not trained on): 1 fixed, "
                             "0 broken, 3 unchanged; 2 training examples counted apart")
    [point] = [h for h in pd.flywheel_history(ws, "rm") if h.ref == "rm@2"]
    assert (point.fixed, point.broken, point.n_compared) == (1, 0, 4)
    assert point.failing_examples == 2 and point.heldout_failing_examples == 1


def test_flywheel_series_say_what_they_count(ws):
    (_, _), _, _, _, (_, v2), dataset = _two_runs(ws)
    fake_run(ws, v2, dataset, [], kind="probe", n_failures=4)
    series = pd.flywheel_series(pd.flywheel_history(ws, "rm"))
    assert [(s.name, s.values) for s in series] == [
        ("failing examples (latest audit per dataset)", [3, 2]),
        ("probe findings (latest probe run per dataset)", [0, 4]),
        ("held-out examples fixed vs parent", [None, 2]),
        ("held-out examples broken vs parent", [None, 1])]
    assert pd.FLYWHEEL_Y_LABEL != "examples" and "findings" in pd.FLYWHEEL_CAPTION


def test_compare_runs_refuses_runs_of_different_datasets(ws):
    (old_run, _), *_ = _two_runs(ws)
    other = insert_dataset(ws, "pairs", PAIRS[:2], name="other")
    run = fake_run(ws, 1, other, [{"example_id": first_example(ws, other), "margin": 1.0,
                                   "passed": True}])
    with pytest.raises(WorkstationError, match="different datasets"):
        pd.compare_runs(ws, old_run, run)


def test_comparison_from_a_hand_written_report():
    report = {"baseline": {"ref": "rm@1"}, "candidate": {"ref": "rm@2"}, "per_dataset": {
        "six": {"fixed": 2, "broken": 1, "unchanged": 3,
                "fixed_examples": {"total": 2, "ids": [11, 13], "truncated": False},
                "broken_examples": {"total": 1, "ids": [12], "truncated": False},
                "margin_change": {"largest_drops": [
                    {"example_id": 12, "baseline": 0.5, "candidate": -0.2, "change": -0.7}]},
                "categories": {"A": {"accuracy": {"baseline": 0.5, "candidate": 0.4,
                                                  "delta": -0.1, "ci": [-0.2, 0.0], "n": 4,
                                                  "gated": True}}}}},
        "gate": {"pass": False, "rules": [{"failing": [
            {"dataset": "six", "category": "A", "metric": "accuracy"}]}]}}
    c = pd.comparison_from_report(report)
    assert (c.old_label, c.new_label, c.dataset) == ("rm@1", "rm@2", "six")
    assert c.counts == {"fixed": 2, "broken": 1, "unchanged": 3}
    assert c.example_ids.tolist() == [12]  # the only example the report gives margins for
    assert (c.old_margin[0], c.new_margin[0], c.classes[0]) == (0.5, -0.2, pd.BROKEN)
    rows = pd.report_examples(report)
    assert [(r.example_id, r.outcome) for r in rows] == [(11, "fixed"), (13, "fixed"),
                                                         (12, "broken")]
    [delta] = pd.report_category_deltas(report)
    assert (delta.category, delta.metric, delta.delta, delta.failing) == ("A", "accuracy",
                                                                          -0.1, True)
    assert pd.comparison_from_report({"per_dataset": []}).reason


def test_a_real_regression_report_agrees_with_the_audit_runs(ws):
    from workstation.regression import compare

    encoder = HashEncoder()
    add_model_bytes(ws, reward_mlp(DIM, seed=1), "rm", "text-embedding", encoder=encoder,
                    score_type="probability")
    add_model_bytes(ws, reward_mlp(DIM, seed=2), "rm", "text-embedding", encoder=encoder,
                    score_type="probability", parent="rm@1")
    insert_dataset(ws, "labels", LABELED, name="labels")
    old, new = (run_audit(ws, ref, "labels", encoder=encoder).id for ref in ("rm@1", "rm@2"))
    report = compare(ws, "rm@2", "rm@1", encoder=encoder).to_json()
    from_runs = pd.compare_runs(ws, old, new)
    from_report = pd.comparison_from_report(report)
    assert from_report.counts == from_runs.counts and from_runs.counts["fixed"] > 0
    rows = pd.report_examples(report)
    assert [r.example_id for r in rows if r.outcome == "fixed"] == from_runs.ids_of("fixed")
    assert [r.example_id for r in rows if r.outcome == "broken"] == from_runs.ids_of("broken")
    deltas = pd.report_category_deltas(report)
    assert {d.category for d in deltas} >= {"Crime", "Food", "Health"}


def test_comparable_runs_put_the_parents_first(ws):
    (old_run, new_run), *_ = _two_runs(ws)
    assert [r["run_id"] for r in pd.comparable_runs(ws, new_run)] == [old_run]
    assert pd.comparable_runs(ws, new_run)[0]["is_parent"]
    assert not pd.comparable_runs(ws, old_run)[0]["is_parent"]


# -- flywheel history ------------------------------------------------------------------


def test_flywheel_history_counts_failures_fixed_and_broken_per_version(ws):
    (old_run, new_run), first, _, _, (v1, v2), dataset = _two_runs(ws)
    # An older audit of v2 is superseded by the newer one above; it must not count.
    fake_run(ws, v2, dataset, [{"example_id": first, "margin": -1.0, "passed": False}],
             run_id=0)
    fake_run(ws, v2, dataset, [], kind="probe", n_failures=4)
    v3 = add_version(ws, "rm", 3, parent_id=v2)
    history = pd.flywheel_history(ws, "rm")
    assert [p.ref for p in history] == ["rm@1", "rm@2", "rm@3"]
    one, two, three = history
    assert (one.failing_examples, one.fixed, one.broken, one.parent_ref) == (3, None, None, None)
    # failing examples and probe findings are different things: never summed
    assert (two.failing_examples, two.probe_findings) == (2, 4)
    assert (two.fixed, two.broken, two.n_compared, two.datasets_compared) == (2, 1, 6, ["six"])
    assert (three.failing_examples, three.probe_findings, three.fixed, three.parent_ref) == \
        (0, 0, None, "rm@2")
    assert three.version_id == v3
    with pytest.raises(WorkstationError, match="no model named"):
        pd.flywheel_history(ws, "nope")


def test_flywheel_history_follows_lineage_across_names(ws):
    v1 = add_version(ws, "base", 1)
    add_version(ws, "tuned", 1, parent_id=v1)
    assert [p.ref for p in pd.flywheel_history(ws, "tuned")] == ["base@1", "tuned@1"]


# -- lineage for the models view ----------------------------------------------------------


def test_version_tree_children_releases_and_ledger_lines(ws):
    v1 = add_version(ws, "rm", 1, manifest={"metrics": {"loss": 0.3}})
    v2 = add_version(ws, "rm", 2, parent_id=v1, manifest={
        "parent": "rm@1", "lineage": {"training_metrics": {"loss": 0.1}}})
    add_version(ws, "rm", 3, parent_id=v1)
    release(ws, "rm@1")
    second = release(ws, "rm@2")
    current, previous = lineage.rollback_target(ws, "rm")
    assert current == second.id and lineage.release_ref(ws, previous) == "rm@1"
    restored = rollback(ws, "rm", reason="bad latency")
    assert restored.id == previous and lineage.rollback_target(ws, "rm") == (previous, None)
    nodes = lineage.version_tree(ws)
    assert nodes[v1].children == [v2, 3] and [n.id for n in lineage.roots(nodes)] == [v1]
    assert nodes[v1].released and not nodes[v2].released and nodes[v2].ever_released
    assert nodes[v1].training_metrics == {"loss": 0.3}
    assert nodes[v2].training_metrics == {"loss": 0.1} and nodes[v2].parent_ref == "rm@1"
    lines = [(r.kind, r.summary) for r in lineage.ledger_rows(ws)]
    assert lines[1:] == [("release", "rm@1 released"),
                         ("release", "rm@2 released (replacing rm@1)"),
                         ("rollback", "rm rolled back from version 2 to 1: bad latency")]
    assert lines[0][0] == "trust-owner" and "test-analyst" in lines[0][1] and "owns" in lines[0][1]


def test_latest_audits_one_per_dataset(audited):
    ws, run = audited
    again = run_audit(ws, "rm@1", "labels", encoder=HashEncoder())
    [summary] = lineage.latest_audits(ws, run.model_version_id)
    assert summary.run_id == again.id and summary.dataset == "labels"
    assert summary.headline()["accuracy"] == again.metrics["accuracy"]
    assert "per_category" not in summary.headline()
