"""The safety oracle: score, uncertainty, coverage, evidence, decision."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.test_models import DIM, HashEncoder, insert_dataset, reward_mlp
from workstation import review
from workstation.audits import run_audit
from workstation.cli import main
from workstation.models import add_model_bytes, score_observations
from workstation.errors import WorkstationError
from workstation.oracle import Policy, SafetyOracle

RNG = np.random.default_rng(0)
TRAJECTORIES = [{"obs": RNG.normal(0, 1, (20, 4)).tolist()} for _ in range(5)]


@pytest.fixture
def demos(ws):
    add_model_bytes(ws, reward_mlp(4, seed=1), "obs", "observation")
    insert_dataset(ws, "demos", TRAJECTORIES, name="d")
    run_audit(ws, "obs", "d")
    first = ws.execute("SELECT min(id) FROM examples").fetchall()[0][0]
    review.apply(ws, [review.Edit(first, "note", "looked at it", "check")])
    return ws, first


def test_audited_state_is_covered_and_far_state_is_not(demos):
    ws, first = demos
    oracle = SafetyOracle.from_workspace(ws, "obs@1", policy=Policy(block_below=-1.0))
    audited = TRAJECTORIES[0]["obs"][3]
    far = [40.0, -40.0, 40.0, -40.0]
    near, away = oracle.query([{"obs": audited}, {"obs": far}])
    assert near["coverage"] == 0.0 and away["coverage"] == 1.0
    assert near["version"] == "obs@1"
    expected = score_observations(ws, "obs@1", np.array([audited, far]))
    assert near["score"] == pytest.approx(expected[0], abs=1e-6)
    assert away["score"] == pytest.approx(expected[1], abs=1e-6)
    # No uncertainty output: distance outside the audited range, 0 inside it.
    assert near["uncertainty_kind"] == "distance outside the audited range"
    assert near["uncertainty"] == 0.0 and away["uncertainty"] > 1.0
    assert near["decision"]["action"] == "allow"
    assert away["decision"]["action"] == "escalate"
    assert any("coverage" in r for r in away["decision"]["reasons"])
    assert near["evidence"]["nearest_reviewed"][0]["example_id"] == first
    assert near["evidence"]["patches_fired"] == []


def test_block_below_the_policy_floor(demos):
    ws, _ = demos
    state = TRAJECTORIES[1]["obs"][0]
    score = float(score_observations(ws, "obs@1", np.array([state]))[0])
    oracle = SafetyOracle.from_workspace(ws, "obs@1", policy=Policy(block_below=score + 0.01))
    [answer] = oracle.query([state])
    assert answer["decision"]["action"] == "block"
    assert "below" in answer["decision"]["reasons"][0]


def test_a_calibrated_model_blocks_below_its_own_threshold(ws):
    # The same network registered twice: once plain (threshold 0.5, the audit
    # default), once carrying a calibration whose threshold sits above the score.
    insert_dataset(ws, "demos", TRAJECTORIES, name="d")
    add_model_bytes(ws, reward_mlp(4, seed=1), "plain", "observation")
    state = TRAJECTORIES[1]["obs"][0]
    score = float(score_observations(ws, "plain@1", np.array([state]))[0])
    add_model_bytes(ws, reward_mlp(4, seed=1), "calibrated", "observation",
                    extras={"calibration": {"threshold": score + 0.01}})
    plain = SafetyOracle.from_workspace(ws, "plain@1")
    calibrated = SafetyOracle.from_workspace(ws, "calibrated@1")
    assert plain.threshold == 0.5 and calibrated.threshold == pytest.approx(score + 0.01)
    [answer] = calibrated.query([state])
    assert answer["decision"]["action"] == "block"
    assert f"below {score + 0.01:.4g}" in answer["decision"]["reasons"][0]


def test_bundle_answers_without_the_workspace_or_duckdb(demos, tmp_path):
    ws, _ = demos
    oracle = SafetyOracle.from_workspace(ws, "obs@1")
    queries = [{"obs": TRAJECTORIES[2]["obs"][5]}, {"obs": [3.0, 3.0, 3.0, 3.0]}]
    expected = oracle.query(queries)
    oracle.save(tmp_path / "bundle")
    code = textwrap.dedent(f"""
        import json, sys
        sys.modules["duckdb"] = None      # importing it would fail
        sys.modules["pyarrow"] = None
        sys.modules["torch"] = None
        from workstation.oracle import SafetyOracle
        answers = SafetyOracle.load(r"{tmp_path / 'bundle'}").query({queries!r})
        print(json.dumps(answers))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(json.dumps(expected))


def test_a_bundle_whose_model_changed_is_refused_when_it_loads(demos, tmp_path):
    ws, _ = demos
    oracle = SafetyOracle.from_workspace(ws, "obs@1")
    bundle = oracle.save(tmp_path / "bundle")
    meta = json.loads((bundle / "oracle.json").read_text())
    assert meta["manifest"]["sha256"] == ws.execute(
        "SELECT sha256 FROM model_versions WHERE model = 'obs'").fetchall()[0][0]
    assert SafetyOracle.load(bundle).version == "obs@1"
    model = bytearray((bundle / "model.onnx").read_bytes())
    model[len(model) // 2] ^= 0x01
    (bundle / "model.onnx").write_bytes(bytes(model))
    with pytest.raises(WorkstationError, match="model.onnx does not match the sha256"):
        SafetyOracle.load(bundle)
    del meta["manifest"]["sha256"]
    (bundle / "oracle.json").write_text(json.dumps(meta))
    with pytest.raises(WorkstationError, match="names no sha256"):
        SafetyOracle.load(bundle)


def test_text_oracle_gives_pair_margin_and_reviewed_evidence(ws):
    encoder = HashEncoder()
    add_model_bytes(ws, reward_mlp(DIM), "t", "text-embedding", encoder=encoder)
    rows = [{"prompt": "q", "response": f"reply {i}", "label": i % 2 == 0} for i in range(6)]
    insert_dataset(ws, "labels", rows, name="lab")
    run_audit(ws, "t", "lab", encoder=encoder)
    reviewed = ws.execute("SELECT id FROM examples WHERE response = 'reply 3'").fetchall()[0][0]
    review.apply(ws, [review.Edit(reviewed, "label", "safe", "relabel")])
    oracle = SafetyOracle.from_workspace(ws, "t", encoder=encoder)
    single, pair = oracle.query([{"prompt": "q", "response": "reply 3"},
                                 {"prompt": "q", "chosen": "reply 3", "rejected": "reply 4"}])
    assert single["coverage"] == 0.0
    assert single["evidence"]["nearest_reviewed"][0] == {
        "example_id": reviewed, "distance": 0.0, "kind": "labels", "label": "safe",
        "category": None, "preview": "reply 3"}
    assert pair["margin"] == pytest.approx(pair["scores"]["chosen"] - pair["scores"]["rejected"])
    assert pair["score"] == pytest.approx(single["score"])


def test_cli_oracle_prints_one_json_object_per_line(demos, tmp_path, capsys):
    ws, _ = demos
    path = ws.path
    ws.close()
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"obs": t["obs"][0]}) + "\n" for t in TRAJECTORIES))
    assert main(["--workspace", str(path), "oracle", "--model", "obs@1", str(queries)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(TRAJECTORIES)
    for line in lines:
        answer = json.loads(line)
        assert {"score", "uncertainty", "coverage", "evidence", "version", "decision"} <= set(answer)
        assert answer["decision"]["action"] in ("allow", "block", "escalate")


def test_cli_oracle_refuses_bad_input_in_one_line(demos, tmp_path, capsys):
    ws, _ = demos
    path = ws.path
    ws.close()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"obs": [1, 2, 3, 4]}\n{"obs": [1, NaN, 3, 4]}\n')
    assert main(["--workspace", str(path), "oracle", "--model", "obs@1", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2" in err


@pytest.mark.parametrize("bad, says", [
    ('{"obs": [1, 2, 3, 4]}\n{"obs": [1, 2, 3]}\n', "input 2: the model takes 4-wide"),
    ('{"obs": [1, 2, 3, 4]}\n"a string"\n', "input 2: an observation model takes"),
])
def test_cli_oracle_checks_every_input_before_touching_the_workspace(demos, tmp_path, capsys,
                                                                     bad, says):
    """The audit's coverage is recorded lazily, on the oracle's first use; a
    refused query must not be that first use."""
    ws, _ = demos
    path = ws.path
    assert ws.execute("SELECT count(*) FROM coverage_runs").fetchall()[0][0] == 0
    ws.close()
    queries = tmp_path / "bad.jsonl"
    queries.write_text(bad)
    assert main(["--workspace", str(path), "oracle", "--model", "obs@1", str(queries)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err
    from workstation.workspace import Workspace
    with Workspace.open(path) as again:
        assert again.execute("SELECT count(*) FROM coverage_runs").fetchall()[0][0] == 0
