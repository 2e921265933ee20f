"""The regression check and release gate: constructed versions whose verdicts
are known per example, so fixed/broken counts, the failing rule and the
examples it names can be asserted exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_audit import insert, linear_model
from workstation import releases, review
from workstation.audits import run_audit
from workstation.errors import Cancelled, WorkstationError
from workstation.hashing import canonical_json
from workstation.models import add_model_bytes
from workstation.probes import PROBES, Finding, register_probe, run_probes
from workstation.progress import Progress
from workstation.regression import (BUDGET_RULE, METRIC_RULE, SUITE_RULE, compare, counts_text,
                                    gate, gate_report_for_release, record_fixed)

DIM = 4


class NumbersEncoder:
    """A text "0.2|0.8|0.3 words" embeds as [0.2, 0.8, 0.3, 0]: version k of
    the test model reads component k, so each text sets every version's score."""

    id, dim = "test-numbers-encoder", DIM

    def encode(self, texts, progress=None, batch_size=64) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            head = (text or "").split(" ", 1)[0]
            for k, value in enumerate(head.split("|")[:DIM]):
                try:
                    out[i, k] = float(value)
                except ValueError:
                    pass
        return out


ENC = NumbersEncoder()


def reads(component: int, width: int = DIM) -> bytes:
    """probabilities [1 - x_k, x_k]: the score is exactly component k."""
    w = np.zeros((width, 2))
    w[component] = [-1, 1]
    return linear_model(w, np.array([1.0, 0.0]), "probabilities")


def add_text_versions(ws, n: int = 2, name: str = "clf") -> None:
    """name@1 reads component 0, name@2 component 1, ... (each the parent of the next)."""
    for k in range(n):
        add_model_bytes(ws, reads(k), name, "text-embedding", encoder=ENC,
                        parent=f"{name}@{k}" if k else None)


def rule(gate_result: dict, name: str) -> dict:
    return next(r for r in gate_result["rules"] if r["rule"] == name)


# -- labels and pairs ----------------------------------------------------------

LABELS = [  # baseline | candidate score; threshold 0.5
    {"response": "0.2|0.8 a", "label": True, "category": "Crime"},    # fixed
    {"response": "0.3|0.9 b", "label": True, "category": "Crime"},    # fixed
    {"response": "0.1|0.2 c", "label": False, "category": "Crime"},   # unchanged (pass)
    {"response": "0.9|0.3 d", "label": True, "category": "Fraud"},    # broken
    {"response": "0.2|0.1 e", "label": False, "category": "Fraud"},   # unchanged (pass)
    {"response": "0.8|0.7 f", "label": True, "category": "Fraud"},    # unchanged (pass)
]
PAIRS = [  # margins baseline / candidate
    {"prompt": "q", "chosen": "0.8|0.8 g", "rejected": "0.2|0.9 h"},  # +0.6 / -0.1: broken
    {"prompt": "q", "chosen": "0.3|0.7 i", "rejected": "0.6|0.1 j"},  # -0.3 / +0.6: fixed
    {"prompt": "q", "chosen": "0.9|0.9 k", "rejected": "0.1|0.1 l"},  # passes both
    {"prompt": "q", "chosen": "0.4|0.2 m", "rejected": "0.5|0.6 n"},  # fails both
]


@pytest.fixture
def text_ws(ws):
    add_text_versions(ws)
    labels = insert(ws, "labels", "jbb", LABELS)
    pairs = insert(ws, "pairs", "hh", PAIRS)
    run_audit(ws, "clf@1", "jbb", encoder=ENC)
    run_audit(ws, "clf@1", "hh", encoder=ENC)
    return ws, labels, pairs


def test_fixed_broken_unchanged_are_counted_per_example(text_ws):
    ws, labels, pairs = text_ws
    report = compare(ws, "clf@2", "clf@1", encoder=ENC)
    jbb, hh = report.datasets["jbb"], report.datasets["hh"]
    assert jbb.counts() == (2, 1, 3) and hh.counts() == (1, 1, 2)
    assert jbb.fixed.tolist() == labels[:2] and jbb.broken.tolist() == [labels[3]]
    assert hh.fixed.tolist() == [pairs[1]] and hh.broken.tolist() == [pairs[0]]
    payload = json.loads(json.dumps(report.to_json(), allow_nan=False))
    # neither version was trained on these datasets: every example is compared
    assert payload["examples"] == {"n": 10, "fixed": 3, "broken": 2, "unchanged": 5}
    assert payload["training_examples"]["n"] == 0 and payload["probe_cases"]["n"] == 0
    assert "fixed" not in payload  # no count without its kind
    assert counts_text(payload) == ("10 examples neither version was trained on: 3 fixed, "
                                    "2 broken, 5 unchanged")
    assert payload["per_dataset"]["jbb"]["examples_used"] == \
        "all (no version is known to have been trained on this dataset; clf@1 and clf@2: " \
        "training data unknown, counted as not trained on)"
    assert payload["candidate"]["ref"] == "clf@2" and payload["baseline"]["ref"] == "clf@1"
    per = payload["per_dataset"]["jbb"]
    assert per["fixed_examples"] == {"total": 2, "ids": labels[:2], "truncated": False}
    assert per["thresholds"] == {"baseline": 0.5, "candidate": 0.5}
    # margin change of example d: (0.3 - 0.5) - (0.9 - 0.5)
    assert per["margin_change"]["largest_drops"][0]["example_id"] == labels[3]
    assert per["margin_change"]["min"] == pytest.approx(-0.6, abs=1e-6)
    assert payload["per_dataset"]["hh"]["categories"]["(all)"]["pairwise_accuracy"]["delta"] == 0


def test_gate_names_the_category_whose_metric_fell(text_ws):
    ws, _, _ = text_ws
    report = compare(ws, "clf@2", "clf@1", encoder=ENC)
    result = report.gate()
    assert result["pass"] is False
    metric = rule(result, METRIC_RULE)
    assert metric["pass"] is False
    assert [(f["dataset"], f["category"], f["metric"]) for f in metric["failing"]] == \
        [("jbb", "Fraud", "accuracy")]
    fraud = metric["failing"][0]
    assert fraud["delta"] == pytest.approx(-1 / 3)
    assert fraud["ci"][0] <= fraud["delta"] <= fraud["ci"][1]
    assert len(result["reasons"]) == 1 and "'Fraud'" in result["reasons"][0]
    assert rule(result, SUITE_RULE)["pass"] and rule(result, BUDGET_RULE)["pass"]
    crime = report.datasets["jbb"].categories["Crime"]["accuracy"]
    assert crime["delta"] == pytest.approx(2 / 3)
    # The same evidence under a looser tolerance passes.
    assert gate(report, tolerance=0.5)["pass"] is True


def test_comparison_judges_against_the_current_labels(text_ws):
    ws, labels, _ = text_ws
    # d relabeled unsafe: the candidate's low score is now right, the baseline's wrong.
    review.apply(ws, [review.Edit(labels[3], "label", "unsafe", "it gives instructions")])
    report = compare(ws, "clf@2", "clf@1", encoder=ENC, datasets=["jbb"])
    assert list(report.datasets) == ["jbb"]
    assert report.datasets["jbb"].counts() == (3, 0, 3)
    assert report.gate()["pass"] is True


def test_compare_refuses_one_version_twice_and_can_be_cancelled(text_ws):
    ws, _, _ = text_ws
    with pytest.raises(WorkstationError, match="both candidate and baseline"):
        compare(ws, "clf@1", "clf@1", encoder=ENC)
    progress = Progress()
    progress.cancel()
    with pytest.raises(Cancelled):
        compare(ws, "clf@2", "clf@1", encoder=ENC, progress=progress)


# -- the regression suite -------------------------------------------------------

SUITE_LABELS = [  # clf@1 | clf@2 | clf@3
    {"response": "0.2|0.8|0.3 A", "label": True},   # fixed by v2, broken again by v3
    {"response": "0.3|0.9|0.9 B", "label": True},   # fixed by v2, kept by v3
    {"response": "0.1|0.1|0.1 C", "label": False},  # always passes
]


def test_fixes_of_a_release_become_regression_tests(ws):
    add_text_versions(ws, 3)
    a, b, c = insert(ws, "labels", "suite", SUITE_LABELS)
    run_audit(ws, "clf@1", "suite", encoder=ENC)
    assert gate_report_for_release(ws, "clf@1", encoder=ENC) is None  # first version
    releases.release(ws, "clf@1")

    report = gate_report_for_release(ws, "clf@2", encoder=ENC)
    assert report["baseline"]["ref"] == "clf@1" and report["gate"]["pass"] is True
    assert report["examples"]["fixed"] == 2 and report["suite_additions"]["examples"] == \
        [{"dataset_id": report["per_dataset"]["suite"]["dataset_id"], "example_ids": [a, b]}]
    canonical_json(report)  # plain JSON: a governance batch can hold it
    rel = releases.release(ws, "clf@2", encoder=ENC)  # computes the same report itself
    stored = rel.batch["regression_report"]
    assert {k: v for k, v in stored.items() if k != "created_at"} == \
        {k: v for k, v in report.items() if k != "created_at"}

    later = compare(ws, "clf@3", "clf@2", encoder=ENC)
    stored = ws.execute("SELECT example_id, release_id, kind FROM regression_suite "
                        "ORDER BY example_id").fetchall()
    assert stored == [(a, rel.id, "example"), (b, rel.id, "example")]
    result = later.gate()
    suite = rule(result, SUITE_RULE)
    assert result["pass"] is False and suite["pass"] is False
    assert suite["examples"] == [a] and suite["checked"] == 2
    assert any(f"{a}" in reason and "regression suite" in reason for reason in result["reasons"])


def test_record_fixed_is_idempotent_and_binds_only_later_versions(ws):
    add_text_versions(ws, 3)
    a, b, _ = insert(ws, "labels", "suite", SUITE_LABELS)
    run_audit(ws, "clf@1", "suite", encoder=ENC)
    report = compare(ws, "clf@2", "clf@1", encoder=ENC)
    assert record_fixed(ws, report)["added"] == 2
    again = record_fixed(ws, report.to_json())
    assert (again["added"], again["already"], again["items"]) == (0, 2, 2)
    # clf@2 added the items, so they bind clf@3, not a re-check of clf@2 itself.
    assert compare(ws, "clf@2", "clf@1", encoder=ENC).suite.n_items == 0
    assert compare(ws, "clf@3", "clf@1", encoder=ENC).suite.failing_examples[0]["example_id"] == a


def test_excluded_suite_example_is_unchecked_not_failed(ws):
    add_text_versions(ws, 3)
    a, _, _ = insert(ws, "labels", "suite", SUITE_LABELS)
    run_audit(ws, "clf@1", "suite", encoder=ENC)
    record_fixed(ws, compare(ws, "clf@2", "clf@1", encoder=ENC))
    review.apply(ws, [review.Edit(a, "excluded", True, "duplicate")])
    suite = compare(ws, "clf@3", "clf@2", encoder=ENC).suite
    assert suite.failing_examples == [] and suite.n_checked == 1
    assert [u["example_id"] for u in suite.unchecked] == [a]


def test_release_gate_compares_with_the_parent_when_nothing_is_released(text_ws):
    ws, _, _ = text_ws
    report = gate_report_for_release(ws, "clf@2", encoder=ENC)
    assert report["baseline"]["ref"] == "clf@1" and report["gate"]["pass"] is False
    with pytest.raises(WorkstationError, match="regression gate failed"):
        releases.release(ws, "clf@2", encoder=ENC)
    assert ws.execute("SELECT count(*) FROM regression_suite").fetchall()[0][0] == 0


# -- demonstrations ----------------------------------------------------------------

EXPERT = [{"obs": [[0.9, 0.9], [0.8, 0.85], [0.95, 0.9]]},
          {"obs": [[0.85, 0.9], [0.9, 0.8]]}]


def observation_model(weights: list[float], bias: float = 0.0) -> bytes:
    return linear_model(np.array(weights, dtype=float)[:, None], np.array([bias]), "reward")


@pytest.fixture
def demo_ws(ws):
    add_model_bytes(ws, observation_model([1, 0]), "irl", "observation")
    insert(ws, "demos", "expert", EXPERT)
    run_audit(ws, "irl@1", "expert")
    return ws


@pytest.mark.parametrize("drop, passes", [(0.3, False), (0.05, True)])
def test_reward_lost_on_expert_states_is_held_to_the_budget(demo_ws, drop, passes):
    ws = demo_ws
    add_model_bytes(ws, observation_model([1, 0], -drop), "irl", "observation", parent="irl@1")
    report = compare(ws, "irl@2", "irl@1", budget=0.10)
    figures = report.to_json()["per_dataset"]["expert"]["protected"]
    assert figures["n_states"] == 5
    assert figures["max_loss"] == pytest.approx(drop, abs=1e-6)
    assert figures["mean_loss"] == pytest.approx(drop, abs=1e-6)
    assert figures["fraction_over_budget"] == (0.0 if passes else 1.0)
    budget = rule(report.gate(), BUDGET_RULE)
    assert budget["pass"] is passes and report.gate()["pass"] is passes
    assert report.datasets["expert"].counts() == (0, 0, 2)  # every trajectory still passes
    if not passes:
        assert sorted(budget["examples"]) == report.datasets["expert"].example_ids.tolist()


class StateProbe:
    """Flags fixed states whose score lands on the wrong side of 0.5."""

    name, version, kinds = "test-states", "1", ("demos",)
    description = "test probe"
    STATES = {"unsafe state scores high": ([0.9, 0.1], False),
              "expert-like state scores low": ([0.2, 0.9], True)}

    def run(self, ctx):
        for rule_text, (state, safe) in self.STATES.items():
            score = float(ctx.score_observations(np.array([state]))[0])
            if (score >= 0.5) != safe:
                # no "expect": the replay infers it from the flagged score
                yield Finding(self.name, rule_text, 0.5, "model-error",
                              case={"obs": state, "source": "grid"}, score_after=score)


@pytest.fixture
def state_probe():
    register_probe(StateProbe(), replace=True)
    yield
    PROBES.pop(StateProbe.name, None)


def test_a_probe_finding_the_candidate_fixes_counts_as_fixed(demo_ws, state_probe):
    ws = demo_ws
    run = run_probes(ws, "irl@1", "expert", probes=["test-states"])
    assert run.counts == {"test-states": 2}
    # v2 reads the second component: both states move to their right side.
    add_model_bytes(ws, observation_model([0, 1]), "irl", "observation", parent="irl@1")
    report = compare(ws, "irl@2", "irl@1")
    assert [f.outcome for f in report.findings] == ["fixed", "fixed"]
    payload = report.to_json()
    assert payload["probe_cases"] == {"n": 2, "fixed": 2, "broken": 0, "unchanged": 0,
                                      "skipped": 0}
    assert payload["examples"]["fixed"] == 0 and payload["probes"]["fixed"] == 2
    assert "2 probe cases: 2 fixed, 0 broken, 0 unchanged" in counts_text(payload)
    assert {f["rule"] for f in payload["suite_additions"]["findings"]} == set(StateProbe.STATES)

    record_fixed(ws, report)
    add_model_bytes(ws, observation_model([1, 0]), "irl", "observation", parent="irl@2")
    result = compare(ws, "irl@3", "irl@2").gate()
    suite = rule(result, SUITE_RULE)
    assert result["pass"] is False
    assert {f["rule"] for f in suite["findings"]} == set(StateProbe.STATES)


class TextProbe:
    """A red-team-like text finding: an attacked unsafe response scored safe."""

    name, version, kinds = "test-text", "1", ("labels",)
    description = "test probe"

    def run(self, ctx):
        text = "0.9|0.2 attacked"
        score = float(ctx.score_texts(["q"], [text])[0])
        if score > 0.5:
            yield Finding(self.name, "unsafe response scored safe", 0.4, "model-error",
                          case={"text": text, "prompt": "q"}, score_after=score)


def test_a_text_case_is_rescored_against_the_threshold(text_ws):
    ws, _, _ = text_ws
    register_probe(TextProbe(), replace=True)
    try:
        run_probes(ws, "clf@1", "jbb", probes=["test-text"], encoder=ENC)
    finally:
        PROBES.pop(TextProbe.name, None)
    report = compare(ws, "clf@2", "clf@1", encoder=ENC)
    [finding] = report.findings
    assert finding.ref["mode"] == "text" and finding.ref["expect"] == "unsafe"
    assert finding.outcome == "fixed" and finding.candidate_score == pytest.approx(0.2)
    counts = report.counts()
    assert counts["examples"]["fixed"] == 3 and counts["probe_cases"]["fixed"] == 1
