"""What the analyst sees must be true: held-out figures first, counts that say
what they count, and no retrain that changes nothing.

A model trained in the workstation and audited on its own dataset reports its
metrics on the examples it was not trained on (equal to what training reported
as held-out), the training-set figures apart; the failure list filters by
split; compare and the gate use held-out examples; a retrain identical to its
parent and a one-class labels set are refused, saying why.

Small synthetic datasets and the keyword encoder of ``test_training`` keep
this fast; the real-data checks (HH-RLHF, JailbreakBench) are marked slow.
"""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pytest

from tests.test_training import FAST_DEMOS, FAST_TEXT, KeywordEncoder, _trajectory, _write_jsonl
from workstation import review
from workstation.audits import failure_page, get_run, list_failures, run_audit
from workstation.audits import plot_data as pd
from workstation.cli import main
from workstation.datasets import import_dataset
from workstation.errors import WorkstationError
from workstation.models import add_model_bytes
from workstation.models.membership import HELDOUT, TRAIN, split_roles
from workstation.regression import compare
from workstation.training import train
from workstation.workspace import Workspace

ENC = KeywordEncoder()
N_PAIRS, N_LABELS, N_TRAJECTORIES = 80, 120, 12


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    torch.set_num_threads(1)


def _pairs() -> list[dict]:
    # every fifth pair prefers the harmful answer: a model cannot fit them all
    return [{"prompt": f"question {i}",
             "chosen": f"a {'harmful' if i % 5 == 0 else 'helpful'} answer {i}",
             "rejected": f"a {'helpful' if i % 5 == 0 else 'harmful'} answer {i}",
             "category": ("A", "B")[i % 2]} for i in range(N_PAIRS)]


def _labels(all_safe: bool = False) -> list[dict]:
    # every seventh label is wrong, so held-out and training figures differ
    return [{"prompt": f"request {i}", "response": f"{'helpful' if i % 2 else 'harmful'} reply {i}",
             "label": "safe" if all_safe or (i % 2) != (i % 7 == 0) else "unsafe"}
            for i in range(N_LABELS)]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("heldout-template")
    _write_jsonl(folder / "pairs.jsonl", _pairs())
    _write_jsonl(folder / "labels.jsonl", _labels())
    _write_jsonl(folder / "safe.jsonl", _labels(all_safe=True))
    _write_jsonl(folder / "demos.jsonl", [{"obs": _trajectory(t)} for t in range(N_TRAJECTORIES)])
    path = folder / "template.duckdb"
    with Workspace.open(path) as ws:
        for kind, name in (("pairs", "pairs"), ("labels", "labels"), ("labels", "safe"),
                           ("demos", "demos")):
            import_dataset(ws, kind, folder / f"{name}.jsonl", name)
    return path


@pytest.fixture
def hws(template, tmp_path):
    path = tmp_path / "ws.duckdb"
    shutil.copy(template, path)
    ws = Workspace.open(path)
    yield ws
    ws.close()


def example_ids(ws, dataset: str) -> np.ndarray:
    return np.array([r[0] for r in ws.execute(
        "SELECT e.id FROM examples e JOIN datasets d ON d.id = e.dataset_id WHERE d.name = ? "
        "ORDER BY e.id", [dataset]).fetchall()], dtype=np.int64)


def stored_splits(ws, run_id: int) -> dict[int, str | None]:
    return dict(ws.execute("SELECT example_id, split FROM audit_results WHERE run_id = ?",
                           [run_id]).fetchall())


def edit(ws, ids, field, value) -> None:
    review.apply(ws, [review.Edit(int(i), field, value, "test") for i in ids])


def version_count(ws) -> int:
    return ws.execute("SELECT count(*) FROM model_versions").fetchone()[0]


# -- the split ----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [50, 25_000])  # a Python loop below 20,000 ids, DuckDB above
def test_the_split_position_is_the_sha256_of_seed_and_id(n):
    import hashlib

    from workstation.models.membership import split_position

    ids = np.arange(-3, n - 3, dtype=np.int64)
    want = [int.from_bytes(hashlib.sha256(f"7:{i}".encode()).digest()[:8], "little") / 2.0 ** 64
            for i in ids.tolist()]
    assert split_position(ids, 7).tolist() == want


# -- audits: held-out first ------------------------------------------------------------

def test_a_trained_pairs_model_is_audited_on_its_heldout_examples_first(hws):
    trained = train(hws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    run = run_audit(hws, "rm@1", "pairs", encoder=ENC)
    t = trained.metrics
    assert run.n_examples == N_PAIRS  # every example is scored and stored
    assert run.metrics["n"] == t["n_heldout"] and run.training_metrics["n"] == t["n_train"]
    assert run.metrics["pairwise_accuracy"] == pytest.approx(t["heldout_pairwise_accuracy"],
                                                             abs=1e-12)
    assert run.training_metrics["pairwise_accuracy"] == pytest.approx(
        t["train_pairwise_accuracy"], abs=1e-12)
    # the two figures differ here, so an audit mixing them would be caught
    assert run.metrics["pairwise_accuracy"] != run.training_metrics["pairwise_accuracy"]
    membership = run.membership
    assert (membership["status"], membership["trained_version"], membership["split_seed"]) == \
        ("trained", "rm@1", 0)
    assert membership["counts"] == {"heldout": t["n_heldout"], "training": t["n_train"],
                                    "validation": 0, "not_trained": 0}
    assert membership["metrics_cover"] == \
        f"the {t['n_heldout']} examples rm@1 was not trained on (its held-out split)"
    # each stored row carries the role the split gives it
    ids = example_ids(hws, "pairs")
    roles = split_roles(ids, 0.2, 0)
    want = {int(i): "heldout" if r == HELDOUT else "training" for i, r in zip(ids, roles)}
    assert stored_splits(hws, run.id) == want
    again = get_run(hws, run.id)
    assert (again.metrics, again.training_metrics, again.membership) == \
        (run.metrics, run.training_metrics, run.membership)


def test_a_trained_classifier_audit_equals_trainings_heldout_figures_and_plots_agree(hws):
    trained = train(hws, "labels", "clf", encoder=ENC, params=FAST_TEXT)
    run = run_audit(hws, "clf@1", "labels", encoder=ENC)
    t = trained.metrics
    assert run.metrics["n"] == t["n_heldout"]
    assert run.metrics["auroc"] == pytest.approx(t["heldout_auroc"], abs=1e-12)
    assert run.metrics["accuracy"] == pytest.approx(t["heldout_accuracy"], abs=1e-12)
    assert run.training_metrics["accuracy"] == pytest.approx(t["train_accuracy"], abs=1e-12)
    assert run.metrics["accuracy"] != run.training_metrics["accuracy"]
    # the run's plots show the same examples as its metrics, and say so
    roc = pd.roc(hws, run.id)
    assert roc.n_positive + roc.n_negative == t["n_heldout"]
    assert roc.auroc == pytest.approx(run.metrics["auroc"], abs=1e-12)
    assert pd.reliability(hws, run.id).ece == pytest.approx(run.metrics["ece"], abs=1e-12)
    assert roc.run.covers == run.membership["metrics_cover"]
    training_roc = pd.roc(hws, run.id, split="training")
    assert training_roc.auroc == pytest.approx(run.training_metrics["auroc"], abs=1e-12)
    bars = pd.category_bars(hws, run.id, "accuracy", split="training")
    assert bars.overall == run.training_metrics["accuracy"]


def test_the_failure_list_filters_by_split_and_each_item_says_its_split(hws):
    train(hws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    run = run_audit(hws, "rm@1", "pairs", encoder=ENC)
    every, n_all = failure_page(hws, run.id, verdict="failed", limit=1000)
    held, n_held = failure_page(hws, run.id, verdict="failed", split="heldout", limit=1000)
    trained, n_trained = failure_page(hws, run.id, verdict="failed", split="training",
                                      limit=1000)
    assert n_all == run.n_failures == n_held + n_trained and n_held and n_trained
    assert n_held == run.metrics["n_failures"]
    assert {r["split"] for r in held} == {"heldout"}
    assert {r["split"] for r in trained} == {"training"}
    assert {r["split"] for r in every} == {"heldout", "training"}
    # sorted by split, held-out rows come first
    by_split, _ = failure_page(hws, run.id, order_by="split", limit=1000)
    assert [r["split"] for r in by_split][:n_held] == ["heldout"] * n_held
    items = list_failures(hws, run.id, limit=1000, split="heldout")
    assert [i["example_id"] for i in items] == [r["example_id"] for r in held]
    with pytest.raises(WorkstationError, match="split must be one of all, heldout, training"):
        failure_page(hws, run.id, split="test")
    with pytest.raises(WorkstationError, match="needs an audit run"):
        failure_page(hws, None, dataset="pairs", split="heldout")


def test_a_model_from_outside_has_no_known_training_set(hws):
    from tests.test_models import reward_mlp

    add_model_bytes(hws, reward_mlp(2 * ENC.dim), "ext", "text-embedding", encoder=ENC)
    run = run_audit(hws, "ext@1", "labels", encoder=ENC)
    assert run.training_metrics is None and run.metrics["n"] == N_LABELS
    assert run.membership["status"] == "unknown"
    assert "training data is unknown (registered from outside the workstation)" in \
        run.membership["metrics_cover"]
    assert set(stored_splits(hws, run.id).values()) == {None}
    _, n_held = failure_page(hws, run.id, split="heldout")
    _, n_all = failure_page(hws, run.id)
    _, n_trained = failure_page(hws, run.id, split="training")
    assert n_held == n_all and n_trained == 0


def test_another_datasets_model_counts_every_example_as_heldout(hws):
    train(hws, "labels", "clf", encoder=ENC, params=FAST_TEXT)
    run = run_audit(hws, "clf@1", "safe", encoder=ENC)
    assert run.membership["status"] == "other-dataset" and run.training_metrics is None
    assert run.metrics["n"] == N_LABELS
    assert "was trained on dataset 'labels', not this one" in run.membership["metrics_cover"]


def test_a_patched_version_carries_its_roots_training_set(hws):
    from workstation.patching import create_patch

    train(hws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    first = run_audit(hws, "rm@1", "pairs", encoder=ENC)
    [worst] = list_failures(hws, first.id, limit=1)
    patched = create_patch(hws, "rm@1", example_ids=[worst["example_id"]], encoder=ENC).version
    run = run_audit(hws, patched, "pairs", encoder=ENC)
    assert (run.membership["status"], run.membership["version"],
            run.membership["trained_version"]) == ("trained", patched.ref, "rm@1")
    assert stored_splits(hws, run.id) == stored_splits(hws, first.id)


def test_a_retrain_from_a_parent_uses_its_own_split(hws):
    train(hws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    train(hws, "pairs", "rm", parent="rm@1", encoder=ENC, params={"split_seed": 7})
    run = run_audit(hws, "rm@2", "pairs", encoder=ENC)
    assert run.membership["split_seed"] == 7 and run.membership["trained_version"] == "rm@2"
    ids = example_ids(hws, "pairs")
    roles = split_roles(ids, 0.2, 7)
    assert [s == "heldout" for s in stored_splits(hws, run.id).values()] == \
        list(roles == HELDOUT)
    assert list(roles == HELDOUT) != list(split_roles(ids, 0.2, 0) == HELDOUT)


def test_an_example_excluded_at_training_is_not_trained_on_when_restored(hws):
    ids = example_ids(hws, "pairs")
    restored = int(ids[split_roles(ids, 0.2, 0) == TRAIN][0])
    edit(hws, [restored], "excluded", True)
    trained = train(hws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    edit(hws, [restored], "excluded", False)
    run = run_audit(hws, "rm@1", "pairs", encoder=ENC)
    assert stored_splits(hws, run.id)[restored] is None
    assert run.membership["counts"]["not_trained"] == 1
    assert run.metrics["n"] == trained.metrics["n_heldout"] + 1  # held-out: not trained on
    assert "and 1 not in its training snapshot" in run.membership["metrics_cover"]


def test_demonstrations_are_split_by_trajectory(hws):
    trained = train(hws, "demos", "iirl", params=FAST_DEMOS)
    run = run_audit(hws, "iirl@1", "demos")
    t = trained.metrics
    counts = run.membership["counts"]
    assert counts["heldout"] == t["n_heldout_trajectories"] == run.metrics["n"]
    assert counts["training"] == t["n_train_trajectories"]
    assert counts["validation"] == t["n_validation_trajectories"]
    # the validation trajectories steered the fit: they count with the training ones
    assert run.training_metrics["n"] == counts["training"] + counts["validation"]
    assert "training and validation split" in run.membership["training_metrics_cover"]


# -- the CLI -----------------------------------------------------------------------------

def run_cli(capsys, *args: str, ok: bool = True) -> dict:
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    assert (code == 0) == ok, captured.err
    return json.loads(captured.out) if ok else {"error": captured.err}


def test_cli_audit_failures_and_compare_say_which_examples(hws, capsys):
    train(hws, "demos", "iirl", params=FAST_DEMOS)
    train(hws, "demos", "iirl", parent="iirl@1", params=FAST_DEMOS, seed=1)
    path = str(hws.path)
    hws.close()
    w = ["--workspace", path]
    audit = run_cli(capsys, *w, "audit", "--model", "iirl@1", "--dataset", "demos",
                    "--threshold", "0.9")
    assert audit["membership"]["status"] == "trained"
    assert audit["metrics"]["n"] == audit["membership"]["counts"]["heldout"]
    assert audit["training_metrics"]["n"] > 0
    assert sum(audit["failures_by_split"].values()) == audit["failures"]
    assert main([*w, "audit", "--model", "iirl@1", "--dataset", "demos",
                 "--threshold", "0.9"]) == 0
    text = capsys.readouterr().out
    assert "held-out: the " in text and "training set (apart" in text
    run_id = str(audit["run_id"])
    held = run_cli(capsys, *w, "failures", "--run", run_id, "--split", "heldout")
    assert held["split"] == "heldout"
    assert {f["split"] for f in held["failures"]} <= {"heldout"}
    every = run_cli(capsys, *w, "failures", "--run", run_id, "--limit", "100")
    assert len(every["failures"]) == audit["failures"]
    assert all("split" in f for f in every["failures"])
    report = run_cli(capsys, *w, "compare", "--candidate", "iirl@2", "--baseline", "iirl@1")
    per = report["per_dataset"]["demos"]
    assert report["examples"]["n"] == per["n"] == audit["metrics"]["n"]
    assert report["training_examples"]["n"] == N_TRAJECTORIES - per["n"]
    assert per["examples_used"] == \
        "held-out (the examples iirl@1 and iirl@2 were not trained on)"
    assert main([*w, "compare", "--candidate", "iirl@2", "--baseline", "iirl@1"]) in (0, 1)
    text = capsys.readouterr().out
    assert f"{per['n']} examples neither version was trained on: " in text
    assert f"demos: {per['n']} examples, held-out (the examples iirl@1 and iirl@2" in text


# -- compare and the gate ----------------------------------------------------------------

def test_compare_counts_heldout_examples_and_keeps_training_ones_apart(hws):
    base = train(hws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    ids = example_ids(hws, "pairs")
    training_ids = ids[split_roles(ids, 0.2, 0) == TRAIN]
    edit(hws, training_ids[:10], "flipped", True)
    train(hws, "pairs", "rm", parent="rm@1", encoder=ENC, params=FAST_TEXT)
    report = compare(hws, "rm@2", "rm@1", encoder=ENC, datasets=["pairs"])
    pairs = report.datasets["pairs"]
    assert sum(pairs.counts()) == base.metrics["n_heldout"]
    assert sum(pairs.counts(held=False)) == base.metrics["n_train"]
    assert pairs.categories["(all)"]["pairwise_accuracy"]["n"] == base.metrics["n_heldout"]
    fixed_training = set(pairs.all_fixed.tolist()) - set(pairs.fixed.tolist())
    assert fixed_training and fixed_training <= set(training_ids.tolist())
    payload = report.to_json()
    assert payload["examples"]["n"] == base.metrics["n_heldout"]
    assert payload["training_examples"]["n"] == base.metrics["n_train"]
    # the regression suite still gets every example the candidate fixed
    additions = {i for g in payload["suite_additions"]["examples"] for i in g["example_ids"]}
    assert fixed_training <= additions


# -- retraining that changes nothing --------------------------------------------------------

def test_a_retrain_on_unchanged_data_is_refused_saying_why(hws):
    train(hws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    with pytest.raises(WorkstationError, match=r"^the retrained model is identical to rm@1: "
                       r"the training data did not change since rm@1 \(no review edits "
                       r"since\); nothing registered$"):
        train(hws, "pairs", "rm", parent="rm@1", encoder=ENC, params=FAST_TEXT)
    with pytest.raises(WorkstationError, match="^the trained model is identical to rm@1"):
        train(hws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    assert version_count(hws) == 1


def test_a_retrain_whose_only_edits_touch_heldout_examples_is_refused(hws):
    train(hws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    ids = example_ids(hws, "pairs")
    held = int(ids[split_roles(ids, 0.2, 0) == HELDOUT][0])
    edit(hws, [held], "flipped", True)
    edit(hws, [int(ids[0])], "note", "looked at it")
    with pytest.raises(WorkstationError) as refused:
        train(hws, "pairs", "rm", parent="rm@1", encoder=ENC, params=FAST_TEXT)
    assert str(refused.value) == (
        f"the retrained model is identical to rm@1: the training data did not change since "
        f"rm@1 (the only edits since touch held-out examples (example {held}) or change "
        f"notes, tags or categories, which training does not read); nothing registered")
    assert version_count(hws) == 1
    # an edit to a training example does change the model
    edit(hws, [int(ids[split_roles(ids, 0.2, 0) == TRAIN][0])], "flipped", True)
    assert train(hws, "pairs", "rm", parent="rm@1", encoder=ENC,
                 params=FAST_TEXT).version.ref == "rm@2"


def test_training_on_one_class_is_refused(hws):
    with pytest.raises(WorkstationError, match=rf"^all {N_LABELS} labeled responses of 'safe' "
                                               r"are safe: a classifier needs both"):
        train(hws, "safe", "clf", encoder=ENC, params=FAST_TEXT)
    ids = example_ids(hws, "labels")
    roles = split_roles(ids, 0.2, 0)
    edit(hws, ids[roles == TRAIN], "label", "safe")  # unsafe ones only among the held-out
    with pytest.raises(WorkstationError, match=r"^the training split of 'labels' holds only "
                                               r"safe labels \(\d+ examples; its unsafe ones "
                                               r"are all held out\)"):
        train(hws, "labels", "clf", encoder=ENC, params=FAST_TEXT)
    edit(hws, ids, "excluded", True)
    with pytest.raises(WorkstationError, match="no labeled responses left"):
        train(hws, "labels", "clf", encoder=ENC, params=FAST_TEXT)
    assert version_count(hws) == 0


def test_training_with_nothing_left_after_exclusions_is_refused(hws):
    edit(hws, example_ids(hws, "pairs"), "excluded", True)
    with pytest.raises(WorkstationError, match="^no preference pairs left to train on"):
        train(hws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
    edit(hws, example_ids(hws, "demos"), "excluded", True)
    with pytest.raises(WorkstationError, match="^no demonstration steps left to train on"):
        train(hws, "demos", "iirl", params=FAST_DEMOS)
    assert version_count(hws) == 0


# -- an older workspace --------------------------------------------------------------------

def test_an_older_workspace_is_migrated_and_its_runs_say_membership_was_not_recorded(
        template, tmp_path):
    path = tmp_path / "old.duckdb"
    shutil.copy(template, path)
    with Workspace.open(path) as ws:
        train(ws, "pairs", "rm", encoder=ENC, params=FAST_TEXT)
        old_run = run_audit(ws, "rm@1", "pairs", encoder=ENC).id
    con = duckdb.connect(str(path))  # back to schema 4, as the workstation before membership left it
    for table, column in (("audit_results", "split"), ("audit_runs", "training_metrics"),
                          ("audit_runs", "membership")):
        con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    for table in ("analyst_labels", "label_decisions", "assignments"):  # schema 7's tables
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute("DROP TABLE release_requests")  # schema 6's (release approvals)
    con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    con.close()
    with Workspace.open(path) as ws:
        assert ws.schema_version >= 5 and ws.migration_backup.exists()
        run = get_run(ws, old_run)
        assert run.membership is None and run.training_metrics is None
        with pytest.raises(WorkstationError, match="audited before the workstation recorded"):
            failure_page(ws, old_run, split="heldout")
        assert "was audited before training membership was recorded" in \
            pd.roc(ws, old_run).run.covers
        new = run_audit(ws, "rm@1", "pairs", encoder=ENC)
        assert new.membership["status"] == "trained"
        assert None not in set(stored_splits(ws, new.id).values())


# -- real data ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_hh_rlhf_audit_of_a_trained_model_reports_trainings_heldout_accuracy(
        hh_rlhf_path, tmp_path, capsys):
    w = ["--workspace", str(tmp_path / "hh.duckdb")]
    run_cli(capsys, *w, "import", "pairs", str(hh_rlhf_path), "--name", "hh")
    trained = run_cli(capsys, *w, "train", "--dataset", "hh", "--name", "rm", "--seed", "1")
    audit = run_cli(capsys, *w, "audit", "--model", "rm@1", "--dataset", "hh")
    t, held, training = trained["metrics"], audit["metrics"], audit["training_metrics"]
    assert audit["n_examples"] == 2312
    assert (held["n"], training["n"]) == (t["n_heldout"], t["n_train"])
    assert held["pairwise_accuracy"] == pytest.approx(t["heldout_pairwise_accuracy"], abs=1e-12)
    assert training["pairwise_accuracy"] == pytest.approx(t["train_pairwise_accuracy"],
                                                          abs=1e-12)
    assert training["pairwise_accuracy"] > held["pairwise_accuracy"]  # why they stay apart
    print(f"\nHH-RLHF rm@1: held-out {held['pairwise_accuracy']:.4f} on {held['n']} pairs, "
          f"training {training['pairwise_accuracy']:.4f} on {training['n']} pairs")


@pytest.mark.slow
def test_jailbreakbench_audit_of_a_trained_classifier_reports_trainings_heldout_figures(
        jailbreakbench_dir, tmp_path, capsys):
    w = ["--workspace", str(tmp_path / "jbb.duckdb")]
    run_cli(capsys, *w, "import", "labels", str(jailbreakbench_dir), "--name", "jbb")
    trained = run_cli(capsys, *w, "train", "--dataset", "jbb", "--name", "clf")
    audit = run_cli(capsys, *w, "audit", "--model", "clf@1", "--dataset", "jbb")
    t, held, training = trained["metrics"], audit["metrics"], audit["training_metrics"]
    assert audit["n_examples"] == 1637
    assert (held["n"], training["n"]) == (t["n_heldout"], t["n_train"])
    for metric in ("auroc", "accuracy"):
        assert held[metric] == pytest.approx(t[f"heldout_{metric}"], abs=1e-12), metric
        assert training[metric] == pytest.approx(t[f"train_{metric}"], abs=1e-12), metric
    print(f"\nJailbreakBench clf@1: held-out AUROC {held['auroc']:.4f} accuracy "
          f"{held['accuracy']:.4f} on {held['n']}, training AUROC {training['auroc']:.4f} "
          f"accuracy {training['accuracy']:.4f} on {training['n']}")
