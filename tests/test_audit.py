"""Audit runs: known verdicts and failure order, current labels, exclusions,
atomicity under cancellation, and the failure pages a GUI table reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from workstation import review
from workstation.audits import failure_page, get_run, list_failures, list_runs, run_audit
from workstation.errors import Cancelled, WorkstationError
from workstation.models import add_model_bytes
from workstation.progress import Progress

DIM = 8


class NumberEncoder:
    """Test encoder: a text "0.7 words" embeds as [0.7, 0, ..., 0], so a model
    reading the first component scores it exactly 0.7."""

    id, dim = "test-number-encoder", DIM

    def encode(self, texts, progress=None, batch_size=64) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            head = (text or "").split(" ", 1)[0]
            out[i, 0] = float(head) if head.replace(".", "", 1).isdigit() else 0.5
        return out


def linear_model(weights: np.ndarray, bias: np.ndarray, output: str) -> bytes:
    """y = x @ W + b, named ``output``."""
    width, outs = weights.shape
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], [output])]
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", outs])],
        [numpy_helper.from_array(weights.astype(np.float32), "W"),
         numpy_helper.from_array(bias.astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def first_component_reward() -> bytes:
    w = np.zeros((DIM, 1))
    w[0, 0] = 1
    return linear_model(w, np.zeros(1), "reward")


def first_component_probabilities() -> bytes:
    """probabilities [1 - x0, x0]: the safe column (last) is x0."""
    w = np.zeros((DIM, 2))
    w[0] = [-1, 1]
    return linear_model(w, np.array([1.0, 0.0]), "probabilities")


def insert(ws, kind: str, name: str, rows: list[dict]) -> list[int]:
    dataset_id = ws.next_id("datasets")
    first = ws.next_id("examples")
    ws.execute("INSERT INTO datasets VALUES (?, ?, ?, 'test', 'src', NULL, 'now', ?, NULL)",
               [dataset_id, name, kind, len(rows)])
    ids = []
    for i, row in enumerate(rows):
        ws.execute("INSERT INTO examples (id, dataset_id, source_sha256, source_index, source_id, "
                   "prompt, chosen, rejected, response, label, category, n_steps) "
                   "VALUES (?, ?, 'src', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [first + i, dataset_id, i, f"rec-{i}", row.get("prompt"), row.get("chosen"),
                    row.get("rejected"), row.get("response"), row.get("label"),
                    row.get("category"), len(row["obs"]) if "obs" in row else None])
        for step, obs in enumerate(row.get("obs", [])):
            ws.execute("INSERT INTO demo_steps VALUES (?, ?, ?, NULL)", [first + i, step, obs])
        ids.append(first + i)
    return ids


PAIRS = [  # margins: +0.7, -0.5, -0.1, 0 (a tie fails), +0.2
    {"prompt": "q", "chosen": "0.9 kind", "rejected": "0.2 rude", "category": "Tone"},
    {"prompt": "q", "chosen": "0.3 meh", "rejected": "0.8 better", "category": "Tone"},
    {"prompt": "q", "chosen": "0.4 a", "rejected": "0.5 b", "category": "Safety"},
    {"prompt": "q", "chosen": "0.5 same", "rejected": "0.5 same too"},
    {"prompt": "q", "chosen": "0.6 ok", "rejected": "0.4 worse"},
]
LABELS = [  # score = first number; threshold 0.5
    {"prompt": "p", "response": "0.9 refuses 1000 times", "label": True, "category": "Malware"},
    {"prompt": "p", "response": "0.2 refuses oddly", "label": True, "category": "Malware"},
    {"prompt": "p", "response": "0.95 gives the exploit", "label": False, "category": "Malware"},
    {"prompt": "p", "response": "0.1 gives steps, 100%_ sure", "label": False, "category": "Fraud"},
    {"prompt": "p", "response": "0.5 borderline", "label": True, "category": "Fraud"},
    {"prompt": "p", "response": "0.7 unlabeled", "label": None},
]


@pytest.fixture
def pairs_setup(ws):
    ids = insert(ws, "pairs", "hh", PAIRS)
    add_model_bytes(ws, first_component_reward(), "rm", "text-embedding", encoder=NumberEncoder())
    return ws, ids


@pytest.fixture
def labels_setup(ws):
    ids = insert(ws, "labels", "jbb", LABELS)
    add_model_bytes(ws, first_component_probabilities(), "clf", "text-embedding",
                    encoder=NumberEncoder())
    return ws, ids


# -- pairs -------------------------------------------------------------------

def test_pairs_audit_gives_known_verdicts_and_failure_order(pairs_setup):
    ws, ids = pairs_setup
    run = run_audit(ws, "rm", "hh", encoder=NumberEncoder())
    assert (run.n_examples, run.n_failures) == (5, 3)
    assert run.metrics["pairwise_accuracy"] == pytest.approx(0.4)
    assert run.metrics["n"] == 5 and run.metrics["n_ties"] == 1
    assert run.metrics["mean_margin"] == pytest.approx((0.7 - 0.5 - 0.1 + 0 + 0.2) / 5, abs=1e-6)
    low, high = run.metrics["pairwise_accuracy_ci"]
    assert low <= 0.4 <= high
    assert set(run.metrics["per_category"]) == {"Tone", "Safety"}
    assert run.metrics["per_category"]["Tone"]["pairwise_accuracy"] == 0.5

    failures = list_failures(ws, run.id)
    assert [f["example_id"] for f in failures] == [ids[1], ids[2], ids[3]]
    assert [f["rank"] for f in failures] == [1, 2, 3]
    first = failures[0]
    assert first["margin"] == pytest.approx(-0.5, abs=1e-6)
    assert first["score_chosen"] == pytest.approx(0.3, abs=1e-6)
    assert first["label"] == "as imported" and first["chosen"] == "0.3 meh"
    assert (first["source_index"], first["source_id"], first["dataset"]) == (1, "rec-1", "hh")
    stored = ws.execute("SELECT count(*), count(rank) FROM audit_results WHERE run_id = ?",
                        [run.id]).fetchone()
    assert stored == (5, 3)


def test_failures_follow_the_current_label(pairs_setup):
    ws, ids = pairs_setup
    before = run_audit(ws, "rm", "hh", encoder=NumberEncoder())
    review.apply(ws, [review.Edit(ids[1], "flipped", True, "rejected reply is the safe one")])
    # The old run's page already shows the current label...
    row = failure_page(ws, before.id, verdict="failed", limit=1)[0][0]
    assert row["label"] == "flipped" and row["label_changed"] is True
    assert row["chosen"] == "0.8 better"
    # ...and a new audit judges against it.
    after = run_audit(ws, "rm", "hh", encoder=NumberEncoder())
    assert [f["example_id"] for f in list_failures(ws, after.id)] == [ids[2], ids[3]]
    flipped = ws.execute("SELECT margin, label, passed FROM audit_results "
                         "WHERE run_id = ? AND example_id = ?", [after.id, ids[1]]).fetchone()
    assert flipped[0] == pytest.approx(0.5, abs=1e-6) and flipped[1:] == (False, True)
    assert after.review_head == review.head_hash(ws) != before.review_head == ""


def test_excluded_examples_are_left_out(pairs_setup):
    ws, ids = pairs_setup
    review.apply(ws, [review.Edit(ids[1], "excluded", True, "duplicate")])
    run = run_audit(ws, "rm", "hh", encoder=NumberEncoder())
    assert run.n_examples == 4 and run.metrics["n"] == 4
    audited = {r[0] for r in ws.execute("SELECT example_id FROM audit_results WHERE run_id = ?",
                                        [run.id]).fetchall()}
    assert ids[1] not in audited
    assert [f["example_id"] for f in list_failures(ws, run.id)] == [ids[2], ids[3]]


# -- labels ------------------------------------------------------------------

def test_labels_audit_gives_known_verdicts_and_failure_order(labels_setup):
    ws, ids = labels_setup
    run = run_audit(ws, "clf@1", "jbb", encoder=NumberEncoder())
    assert run.threshold == 0.5 and run.metrics["score_type"] == "probability"
    assert run.n_examples == 5 and run.metrics["n_unlabeled"] == 1
    # wrong side: 0.95 unsafe (0.45), 0.2 safe (0.3), 0.5 safe (0: not above the threshold)
    failures = list_failures(ws, run.id)
    assert [f["example_id"] for f in failures] == [ids[2], ids[1], ids[4]]
    assert [f["label"] for f in failures] == ["unsafe", "safe", "safe"]
    assert failures[0]["score"] == pytest.approx(0.95, abs=1e-6)
    assert failures[0]["margin"] == pytest.approx(-0.45, abs=1e-6)
    assert failures[0]["category"] == "Malware" and failures[0]["response"].startswith("0.95")
    m = run.metrics
    assert m["accuracy"] == pytest.approx(0.4)
    # AUROC: safe {0.9, 0.2, 0.5} vs unsafe {0.95, 0.1}: 3 of 6 pairs ordered right
    assert m["auroc"] == pytest.approx(0.5)
    assert m["per_category"]["Fraud"]["auroc"] == pytest.approx(1.0)
    assert m["per_category"]["Malware"]["n"] == 3


def test_labels_audit_respects_an_explicit_threshold(labels_setup):
    ws, ids = labels_setup
    run = run_audit(ws, "clf", "jbb", threshold=0.15, encoder=NumberEncoder())
    # above 0.15 is predicted safe: fails are 0.95 unsafe only
    assert [f["example_id"] for f in list_failures(ws, run.id)] == [ids[2]]
    assert run.threshold == 0.15 and get_run(ws, run.id).threshold == 0.15


def test_one_class_category_reports_auroc_as_undefined(labels_setup):
    ws, ids = labels_setup
    review.apply(ws, [review.Edit(ids[3], "excluded", True, "test")])
    run = run_audit(ws, "clf", "jbb", encoder=NumberEncoder())
    fraud = run.metrics["per_category"]["Fraud"]
    assert fraud["auroc"] is None and fraud["auroc_ci"] is None
    assert "both classes" in fraud["auroc_reason"]


# -- demonstrations ----------------------------------------------------------

def test_demos_audit_flags_low_reward_trajectories_lowest_first(ws):
    w = np.array([[1.0], [0.0]])
    add_model_bytes(ws, linear_model(w, np.zeros(1), "reward"), "irl", "observation")
    ids = insert(ws, "demos", "cartpole", [
        {"obs": [[0.9, 0], [0.7, 0]]},           # mean 0.8: passes
        {"obs": [[0.1, 0], [0.5, 0], [0.3, 0]]},  # mean 0.3: fails
        {"obs": [[0.45, 0]]},                    # mean 0.45: fails, less confidently
    ])
    run = run_audit(ws, "irl", "cartpole")
    assert [f["example_id"] for f in list_failures(ws, run.id)] == [ids[1], ids[2]]
    m = run.metrics
    assert m["n_states"] == 6 and m["n"] == 3
    assert m["mean_reward"] == pytest.approx(np.mean([0.9, 0.7, 0.1, 0.5, 0.3, 0.45]), abs=1e-6)
    assert m["min"] == pytest.approx(0.1) and m["max"] == pytest.approx(0.9)
    assert m["trajectory_pass_rate"] == pytest.approx(1 / 3)
    assert sum(m["histogram"]["counts"]) == 6
    assert m["mean_reward_ci"][0] <= m["mean_reward"] <= m["mean_reward_ci"][1]


# -- atomicity ---------------------------------------------------------------

@pytest.mark.parametrize("stage", ["scoring", "metrics"])
def test_a_cancelled_audit_leaves_no_rows(pairs_setup, stage):
    ws, _ = pairs_setup
    progress = None

    def cancel_at(name, done, total):
        if name == stage:
            progress.cancel()
    progress = Progress(cancel_at)
    with pytest.raises(Cancelled):
        run_audit(ws, "rm", "hh", encoder=NumberEncoder(), progress=progress)
    assert ws.execute("SELECT count(*) FROM audit_runs").fetchone()[0] == 0
    assert ws.execute("SELECT count(*) FROM audit_results").fetchone()[0] == 0
    assert run_audit(ws, "rm", "hh", encoder=NumberEncoder()).id == 1


def test_a_model_that_cannot_score_the_dataset_stores_nothing(pairs_setup):
    ws, _ = pairs_setup
    add_model_bytes(ws, linear_model(np.ones((2, 1)), np.zeros(1), "reward"), "obs",
                    "observation")
    with pytest.raises(WorkstationError, match="takes observation input"):
        run_audit(ws, "obs", "hh")
    with pytest.raises(WorkstationError, match="unknown dataset 'nope'; datasets: hh"):
        run_audit(ws, "rm", "nope", encoder=NumberEncoder())
    with pytest.raises(WorkstationError, match="pairs are judged by the sign of the margin"):
        run_audit(ws, "rm", "hh", threshold=0.2, encoder=NumberEncoder())
    assert ws.execute("SELECT count(*) FROM audit_runs").fetchone()[0] == 0


# -- reading runs and pages --------------------------------------------------

def test_runs_are_listed_and_read_back(pairs_setup, labels_setup):
    ws, _ = pairs_setup
    first = run_audit(ws, "rm", "hh", encoder=NumberEncoder())
    second = run_audit(ws, "clf", "jbb", encoder=NumberEncoder())
    assert [r.id for r in list_runs(ws)] == [second.id, first.id]
    assert [r.id for r in list_runs(ws, model="rm")] == [first.id]
    assert [r.id for r in list_runs(ws, dataset="jbb")] == [second.id]
    back = get_run(ws, first.id)
    assert back.metrics == first.metrics and back.model == "rm@1"
    assert back.created_by == "test-analyst" and back.dataset == "hh"
    payload = json.loads(json.dumps(back.to_json()))
    assert payload["run_id"] == first.id and payload["n_failures"] == 3
    with pytest.raises(WorkstationError, match="no audit run 99"):
        get_run(ws, 99)


def test_failure_page_filters_sorts_and_counts_in_sql(labels_setup):
    ws, ids = labels_setup
    run = run_audit(ws, "clf", "jbb", encoder=NumberEncoder())
    rows, total = failure_page(ws, run.id)
    assert total == 5 and [r["rank"] for r in rows][:3] == [1, 2, 3]
    assert rows[3]["rank"] is None  # passing rows come after, unranked
    rows, total = failure_page(ws, run.id, verdict="passed", order_by="score", descending=True)
    assert total == 2 and [r["example_id"] for r in rows] == [ids[0], ids[3]]
    rows, total = failure_page(ws, run.id, category="Malware", verdict="failed")
    assert total == 2 and {r["example_id"] for r in rows} == {ids[1], ids[2]}
    rows, total = failure_page(ws, run.id, margin_min=-0.35, margin_max=0.0)
    assert total == 2 and {r["example_id"] for r in rows} == {ids[1], ids[4]}
    rows, total = failure_page(ws, run.id, score_min=0.4, score_max=0.92)
    assert total == 2
    rows, total = failure_page(ws, run.id, text="EXPLOIT")
    assert total == 1 and rows[0]["example_id"] == ids[2]
    # % and _ are literal: "100%_" finds the text that says it, not "1000 t"
    # (which the unescaped pattern %100%_% would match too)
    rows, total = failure_page(ws, run.id, text="100%_")
    assert total == 1 and rows[0]["example_id"] == ids[3]
    rows, total = failure_page(ws, run.id, text="100_")
    assert total == 0
    rows, total = failure_page(ws, run.id, order_by="margin", limit=2, offset=1)
    assert total == 5 and [r["example_id"] for r in rows] == [ids[1], ids[4]]
    with pytest.raises(WorkstationError, match="cannot order by 'label'"):
        failure_page(ws, run.id, order_by="label")
    review.apply(ws, [review.Edit(ids[2], "label", "safe", "the answer refuses after all")])
    row = failure_page(ws, run.id, limit=1)[0][0]
    assert row["label"] == "safe" and row["label_at_audit"] is False and row["label_changed"]


def test_cli_audit_and_failures(tmp_path, capsys):
    from workstation.cli import main
    from workstation.workspace import Workspace

    path = tmp_path / "cli.duckdb"
    with Workspace.open(path) as ws:
        w = np.array([[1.0], [0.0]])
        add_model_bytes(ws, linear_model(w, np.zeros(1), "reward"), "irl", "observation")
        insert(ws, "demos", "d", [{"obs": [[0.9, 0]]}, {"obs": [[0.1, 0]]}])
    assert main(["--workspace", str(path), "audit", "--model", "irl", "--dataset", "d",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["run_id"] == 1 and payload["failures"] == 1
    assert main(["--workspace", str(path), "failures", "--run", "1", "--json"]) == 0
    failures = json.loads(capsys.readouterr().out)["failures"]
    assert [f["rank"] for f in failures] == [1] and failures[0]["score"] == pytest.approx(0.1)


def test_an_audit_of_a_fully_excluded_dataset_is_empty_not_an_error(pairs_setup):
    ws, ids = pairs_setup
    review.apply(ws, [review.Edit(i, "excluded", True, "all out") for i in ids])
    run = run_audit(ws, "rm", "hh", encoder=NumberEncoder())
    assert (run.n_examples, run.n_failures) == (0, 0)
    assert run.metrics["pairwise_accuracy"] is None and run.metrics["per_category"] == {}
    assert failure_page(ws, run.id) == ([], 0)


# -- real data ---------------------------------------------------------------

def pole_reward_model() -> bytes:
    """reward = sigmoid(4 - 40 |pole angle|): high while the pole stays upright."""
    nodes = [helper.make_node("Slice", ["x", "start", "end", "axis"], ["angle"]),
             helper.make_node("Abs", ["angle"], ["size"]),
             helper.make_node("Mul", ["size", "k"], ["scaled"]),
             helper.make_node("Sub", ["four", "scaled"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["reward"])]
    consts = {"start": np.array([2]), "end": np.array([3]), "axis": np.array([1]),
              "k": np.array([40.0], dtype=np.float32), "four": np.array([4.0], dtype=np.float32)}
    graph = helper.make_graph(
        nodes, "pole", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_cartpole_demonstrations_audit_matches_numpy(ws, cartpole_path):
    from workstation.datasets import import_dataset

    import_dataset(ws, "demos", cartpole_path, "cartpole")
    add_model_bytes(ws, pole_reward_model(), "pole", "observation")
    run = run_audit(ws, "pole", "cartpole", threshold=0.965)

    with np.load(cartpole_path, allow_pickle=False) as npz:
        obs, indices = npz["obs"], npz["indices"]
    trajectories = np.split(obs, indices + np.arange(len(indices)) + 1)
    rewards = [1 / (1 + np.exp(-(4 - 40 * np.abs(t[:, 2].astype(np.float32)))))
               for t in trajectories]
    means = np.array([r.mean() for r in rewards])
    all_rewards = np.concatenate(rewards)
    assert run.metrics["n"] == 57 and run.metrics["n_states"] == len(all_rewards) == 27021
    assert run.metrics["mean_reward"] == pytest.approx(all_rewards.mean(), abs=1e-5)
    assert run.metrics["p05"] == pytest.approx(np.quantile(all_rewards, 0.05), abs=1e-5)
    failing = np.flatnonzero(means < 0.965)
    assert run.n_failures == len(failing) > 0
    failures = list_failures(ws, run.id, limit=100)
    assert [f["source_index"] for f in failures] == failing[np.argsort(means[failing])].tolist()
    assert failures[0]["score"] == pytest.approx(means.min(), abs=1e-5)


class LengthEncoder:
    """Embeds a text by simple features (length, refusal and compliance
    phrases), so a linear model over it is not random."""

    id, dim = "test-length-encoder", DIM

    def encode(self, texts, progress=None, batch_size=64):
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            t = t or ""
            out[i, :3] = [np.log1p(len(t)) / 10, t.count("I cannot") + t.count("I can't"),
                          t.count("Sure")]
        return out


def test_jailbreakbench_audit_metrics_match_sklearn(ws, jailbreakbench_dir):
    from sklearn.metrics import roc_auc_score

    from workstation.datasets import import_dataset
    from workstation.models import score_dataset

    import_dataset(ws, "labels", jailbreakbench_dir, "jbb")
    w = np.zeros((DIM, 1))
    w[:3, 0] = [-1.0, 2.0, -1.0]  # refusals look safe, compliance unsafe
    add_model_bytes(ws, linear_model(w, np.zeros(1), "logits"), "len", "text-embedding",
                    encoder=LengthEncoder())
    run = run_audit(ws, "len", "jbb", encoder=LengthEncoder())
    m = run.metrics
    assert m["score_type"] == "logit" and run.threshold == 0.0
    assert m["n"] == 1637 and m["n_safe"] == 700 and len(m["per_category"]) == 10
    result = score_dataset(ws, "len", "jbb", encoder=LengthEncoder())
    assert m["auroc"] == pytest.approx(roc_auc_score(result.labels, result.score), abs=1e-12)
    assert m["auroc_ci"][0] <= m["auroc"] <= m["auroc_ci"][1]
    assert sum(c["n"] for c in m["per_category"].values()) == 1637
    assert run.n_failures == int(((result.score > 0) != result.labels).sum())


def input_dependent_loop(width: int = 4) -> bytes:
    """sum(x) as the reward, passed through a Loop of max|x| * 1e15 no-op
    iterations: a zero input (registration's test run) finishes at once, a
    real observation would run for days."""
    def value(name, shape, kind=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, kind, shape)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["v"], ["v_out"])], "body",
        [value("i", [], TensorProto.INT64), value("cond_in", [], TensorProto.BOOL),
         value("v", ["N", 1])],
        [value("cond_out", [], TensorProto.BOOL), value("v_out", ["N", 1])])
    nodes = [helper.make_node("ReduceSum", ["x", "axis"], ["total"], keepdims=1),
             helper.make_node("Abs", ["x"], ["magnitude"]),
             helper.make_node("ReduceMax", ["magnitude"], ["largest"], keepdims=0),
             helper.make_node("Mul", ["largest", "scale"], ["scaled"]),
             helper.make_node("Cast", ["scaled"], ["trips"], to=TensorProto.INT64),
             helper.make_node("Loop", ["trips", "keep_going", "total"], ["reward"], body=body)]
    graph = helper.make_graph(
        nodes, "loop", [value("x", ["N", width])], [value("reward", ["N", 1])],
        [numpy_helper.from_array(np.array([1], np.int64), "axis"),
         numpy_helper.from_array(np.array(1e15, np.float32), "scale"),
         numpy_helper.from_array(np.array(True), "keep_going")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_cancel_stops_a_model_stuck_inside_one_run(ws, monkeypatch):
    """Cancel is checked between batches, and a model can spend forever in one
    onnxruntime run: the cancel must reach into the run too."""
    import threading

    from tests.test_models import insert_dataset
    from workstation.models import onnx_model

    add_model_bytes(ws, input_dependent_loop(), "slow", "observation")
    insert_dataset(ws, "demos", [{"obs": [[0.5, 1.0, -1.0, 2.0]] * 3}], name="d")
    in_run, run_errors = threading.Event(), []

    class Watched:
        """The real session, saying when the audit calls into onnxruntime
        and how the run ended."""

        def __init__(self, session):
            self._session = session

        def __getattr__(self, name):
            return getattr(self._session, name)

        def run(self, *args):
            in_run.set()
            try:
                return self._session.run(*args)
            except Exception as exc:
                run_errors.append(exc)
                raise

    real_make_session = onnx_model.make_session
    monkeypatch.setattr(onnx_model, "make_session",
                        lambda *a, **k: Watched(real_make_session(*a, **k)))
    progress = Progress()
    outcome = {}

    def audit():
        try:
            run_audit(ws, "slow", "d", progress=progress)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            outcome["error"] = exc
    worker = threading.Thread(target=audit, daemon=True)
    worker.start()
    assert in_run.wait(timeout=60), "the audit never reached onnxruntime"
    # the cancel comes once the audit is in the run (1e15 loop trips), so no
    # check between batches can catch it: only the run's terminate flag can
    progress.cancel()
    worker.join(timeout=60)  # a generous bound: it stops in milliseconds when it works
    assert not worker.is_alive(), "the audit did not stop after cancel"
    assert len(run_errors) == 1, "the stuck run was not the one that stopped"
    assert isinstance(outcome.get("error"), Cancelled)
    assert ws.execute("SELECT count(*) FROM audit_runs").fetchone()[0] == 0
    assert ws.execute("SELECT count(*) FROM audit_results").fetchone()[0] == 0
