"""Whole turns of the flywheel from the CLI, on real data.

Text: import HH-RLHF pairs, train v1, audit, flip a handful of labels,
retrain v2, compare, release v1 then v2, roll back to v1, verify the ledger
and the exported release's signature.
Demonstrations: learn the CartPole reward, find unsafe states that still
score high, patch them within the budget, compare, release.
"""

from __future__ import annotations

import json

import pytest

from workstation.cli import main

pytestmark = pytest.mark.slow


def run(capsys, *args: str, ok: bool = True) -> dict:
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    assert (code == 0) == ok, captured.err
    return json.loads(captured.out)


def test_text_flywheel_turn(tmp_path, capsys, hh_rlhf_path):
    w = ["--workspace", str(tmp_path / "w.duckdb")]
    run(capsys, *w, "import", "pairs", str(hh_rlhf_path), "--name", "hh")
    v1 = run(capsys, *w, "train", "--dataset", "hh", "--name", "rm", "--seed", "1")
    assert v1["version"] == 1 and 0.55 < v1["metrics"]["heldout_pairwise_accuracy"] < 0.8
    audit = run(capsys, *w, "audit", "--model", "rm@1", "--dataset", "hh")
    worst = run(capsys, *w, "failures", "--run", str(audit["run_id"]), "--limit", "8")["failures"]
    for failure in worst:
        run(capsys, *w, "label", str(failure["example_id"]), "--flip",
            "--reason", "reviewed: the rejected reply is the safer one")
    v2 = run(capsys, *w, "train", "--dataset", "hh", "--name", "rm", "--from", "rm@1",
             "--seed", "1")
    assert v2["version"] == 2
    report = run(capsys, *w, "compare", "--candidate", "rm@2", "--baseline", "rm@1")
    held, training = report["examples"], report["training_examples"]
    # compared (and gated) on the pairs neither version was trained on; the rest apart
    assert held["n"] == v1["metrics"]["n_heldout"] == v2["metrics"]["n_heldout"]
    assert held["n"] + training["n"] == 2312
    assert held["fixed"] + held["broken"] + held["unchanged"] == held["n"]
    assert held["fixed"] + held["broken"] >= 1  # v2 differs from v1 on held-out pairs
    assert "pass" in report["gate"]

    first = run(capsys, *w, "release", "rm@1")
    second = run(capsys, *w, "release", "rm@2", "--force", "turn test") \
        if not report["gate"]["pass"] else run(capsys, *w, "release", "rm@2")
    assert second["release_id"] > first["release_id"]
    back = run(capsys, *w, "rollback", "rm")
    assert (back["model"], back["version"]) == ("rm", 1)

    out = tmp_path / "release.zip"
    run(capsys, *w, "export-release", "rm", str(out))
    refused = run(capsys, "verify-release", str(out), ok=False)
    assert refused["ok"] is False and refused["reasons"] == ["no trusted key given"]
    run(capsys, "identity", "export-public", str(tmp_path / "approver.pem"))
    checked = run(capsys, "verify-release", str(out), "--trust", str(tmp_path / "approver.pem"))
    assert checked["ok"] is True and checked["trusted"] is True
    verified = run(capsys, *w, "verify")
    assert verified["ok"] is True and verified["checked"]["ledger_rows"] >= 3
    print(f"\nHH turn: v1 heldout {v1['metrics']['heldout_pairwise_accuracy']:.4f}, "
          f"v2 heldout {v2['metrics']['heldout_pairwise_accuracy']:.4f}, "
          f"audit v1 held-out {audit['metrics']['pairwise_accuracy']:.4f} (training "
          f"{audit['training_metrics']['pairwise_accuracy']:.4f}), held-out pairs fixed "
          f"{held['fixed']}, broken {held['broken']}, gate {report['gate']['pass']}")


def test_demonstration_flywheel_turn(tmp_path, capsys, cartpole_path):
    w = ["--workspace", str(tmp_path / "w.duckdb")]
    run(capsys, *w, "import", "demos", str(cartpole_path), "--name", "cartpole")
    v1 = run(capsys, *w, "train", "--dataset", "cartpole", "--name", "cp", "--seed", "0")
    run(capsys, *w, "audit", "--model", "cp@1", "--dataset", "cartpole")
    # The calibrated threshold (0.5, from the model's manifest): no tuning.
    probe = run(capsys, *w, "probe", "--model", "cp@1", "--dataset", "cartpole",
                "--probe", "unsafe-states")
    found = probe["findings"]["unsafe-states"]
    assert found > 0, "no unsafe state scored above the threshold"
    findings = run(capsys, *w, "failures", "--run", str(probe["run_id"]), "--limit", "5")
    top = [f["finding_id"] for f in findings["failures"]]

    patched = run(capsys, *w, "patch", "--model", "cp@1", "--findings", str(probe["run_id"]),
                  "--finding-ids", ",".join(map(str, top)), "--budget", "0.10")
    metrics = patched["metrics"]
    assert metrics["kernels_kept"] >= 1
    assert metrics["protected_loss_max"] <= 0.10 + 1e-6
    report = run(capsys, *w, "compare", "--candidate", f"cp@{patched['version']}",
                 "--baseline", "cp@1")
    assert report["examples"]["broken"] == 0
    assert report["gate"]["pass"] is True, report["gate"]["reasons"]
    release = run(capsys, *w, "release", f"cp@{patched['version']}")
    assert release["release_id"] >= 1
    assert run(capsys, *w, "verify")["ok"] is True
    print(f"\nCartPole turn: {v1['metrics']}, unsafe findings {found}, kernels kept "
          f"{metrics['kernels_kept']}, refused {metrics['kernels_refused']}, protected loss max "
          f"{metrics['protected_loss_max']:.4f}, compare: {report['summary']}, probe cases "
          f"{report['probe_cases']}")
