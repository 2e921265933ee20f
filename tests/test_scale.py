"""Beyond one laptop: the scoring bundle, scale runs on a local Ray instance
(2 CPUs, a small object store) and their results brought home."""

from __future__ import annotations

import gzip
import json
import os
import signal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import HH_RLHF, require_data
from workstation.audits import run_audit
from workstation.cli import main
from workstation.cluster import bundle as bundles
from workstation.cluster import inputs as corpus
from workstation.cluster.homecoming import import_results
from workstation.errors import WorkstationError
from workstation.models import add_model_bytes
from workstation.offline_verify import key_id_of, public_pem_of

DIM = 384


def mlp(width: int, hidden: int, seed: int = 0, output: str = "probabilities") -> bytes:
    """x [N, width] -> relu(x W1) W2 -> softmax: a small text-embedding reward model."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {"W1": rng.standard_normal((width, hidden)) / np.sqrt(width),
               "W2": rng.standard_normal((hidden, 2)) / np.sqrt(hidden) * 8}
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h0"]),
             helper.make_node("Relu", ["h0"], ["h1"]),
             helper.make_node("MatMul", ["h1", "W2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], [output], axis=1)]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]
                             ).SerializeToString()


class FixedEncoder:
    """The encoder identity a model registered for precomputed embeddings names."""

    id, dim = "test-encoder", DIM


def stranger():
    """A bundle signer nobody's workspace trusts: a fresh key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    return bundles.KeySigner(key_id_of(key.public_key()), public_pem_of(key.public_key()),
                             key.sign)


def signer():
    """The analyst's own identity (the test session's), as `scale bundle` signs."""
    from workstation import identity

    return identity.session_signer()


def trusting(ws):
    """``ws`` owned by the session's identity, as after its first signed act there
    (`scale bundle` makes it so): bundles it signs come home trusted."""
    from workstation import trust

    trust.ensure_owner(ws, signer())
    return ws


def hh_head(path: Path, n: int) -> Path:
    """The first n records of the real HH-RLHF file, as a file of their own."""
    with gzip.open(require_data(HH_RLHF), "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(n)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


# -- the bundle (no Ray) ------------------------------------------------------------------

@pytest.fixture
def text_bundle(ws, tmp_path):
    from workstation.datasets import import_dataset

    import_dataset(ws, "pairs", hh_head(tmp_path / "hh5.jsonl", 5), "hh5", format="hh-rlhf")
    add_model_bytes(ws, mlp(2 * DIM, 32), "rm", "text-embedding")
    run_audit(ws, "rm@1", "hh5")  # the oracle part of the bundle carries the audited space
    return bundles.make_bundle(ws, "rm@1", tmp_path / "bundle", signer())


def test_the_scoring_bundle_is_an_oracle_bundle_with_its_encoder(text_bundle):
    from workstation.oracle import SafetyOracle

    folder = Path(text_bundle.path)
    assert set(text_bundle.files) == {"model.onnx", "oracle.json", "oracle.npz",
                                      "encoder/encoder.onnx", "encoder/tokenizer.json",
                                      "encoder/encoder.json"}
    manifest = bundles.verify_files(bundles.read_files(folder))
    assert manifest["model"] == "rm@1" and manifest["input_kind"] == "text-embedding"
    answer = SafetyOracle.load(folder).query([{"prompt": "Hi", "chosen": "Hello!",
                                               "rejected": "Go away."}])[0]
    assert answer["version"] == "rm@1" and "margin" in answer


@pytest.mark.parametrize("change", ["byte", "extra", "missing", "signature"])
def test_a_changed_bundle_is_refused(text_bundle, change):
    files = bundles.read_files(text_bundle.path)
    if change == "byte":
        data = bytearray(files["encoder/tokenizer.json"])
        data[100] ^= 1
        files["encoder/tokenizer.json"] = bytes(data)
    elif change == "extra":
        files["notes.txt"] = b"added later"
    elif change == "missing":
        del files["oracle.npz"]
    else:
        statement = json.loads(files["bundle.json"])
        statement["model"] = "rm@2"
        files["bundle.json"] = json.dumps(statement).encode()
    with pytest.raises(WorkstationError, match="refused"):
        bundles.verify_files(files)


def test_the_oracle_refuses_a_model_that_is_not_its_manifests(text_bundle):
    from workstation.oracle import SafetyOracle

    folder = Path(text_bundle.path)
    (folder / "model.onnx").write_bytes(mlp(2 * DIM, 32, seed=1))
    with pytest.raises(WorkstationError, match="sha256"):
        SafetyOracle.load(folder)


def test_cli_scale_bundle_signs_with_the_analysts_identity(ws, tmp_path, capsys,
                                                          session_identity):
    add_model_bytes(ws, mlp(DIM, 8), "rm", "text-embedding")
    add_model_bytes(ws, mlp(DIM, 8), "other", "text-embedding", encoder=FixedEncoder())
    path = ws.path
    ws.close()
    assert main(["--workspace", str(path), "scale", "bundle", "--model", "rm@1",
                 str(tmp_path / "b0"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    manifest = bundles.verify_files(bundles.read_files(tmp_path / "b0"))
    assert record["key_id"] == session_identity.key_id == manifest["signature"]["key_id"]
    assert manifest["created_by"] == session_identity.name
    assert record["sha256"] == bundles.bundle_sha256(bundles.read_files(tmp_path / "b0"))
    # A model naming an encoder this installation does not have: refused, nothing left.
    assert main(["--workspace", str(path), "scale", "bundle", "--model", "other@1",
                 str(tmp_path / "b1"), "--json"]) == 1
    assert "test-encoder" in capsys.readouterr().err and not (tmp_path / "b1").exists()
    # Scale run refuses a bundle folder that is not one before starting anything.
    assert main(["scale", "run", "--bundle", str(tmp_path), "--input", str(tmp_path),
                 "--output", str(tmp_path / "out"), "--json"]) == 1
    assert "not a scoring bundle" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -- reading the corpus -------------------------------------------------------------------

def test_bad_records_are_counted_with_their_reason_and_reading_goes_on(tmp_path):
    path = tmp_path / "labels.jsonl"
    lines = [{"prompt": "p", "response": "fine", "label": "safe", "category": "A"},
             "{not json", [1, 2], {"prompt": "p", "label": 1},
             {"prompt": "p", "response": None, "label": 0},
             {"prompt": "p", "response": "bad", "label": "maybe"},
             {"response": "last", "label": 0}]
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
                    + "\n\n")
    assert corpus.detect_format([path]) == "labels-jsonl"
    records = list(corpus.read_records(path, corpus.FORMATS["labels-jsonl"]))
    assert [r.index for r in records] == list(range(7))
    assert [r.row is not None for r in records] == [True, False, False, False, False, False,
                                                    True]
    assert records[0].row["category"] == "A" and records[6].row["label"] is False
    assert "malformed JSON" in records[1].error and str(path) not in records[1].error
    assert "JSON object" in records[2].error
    assert "response" in records[3].error and "null response" in records[4].error
    assert "label 'maybe'" in records[5].error


def test_a_truncated_gzip_file_ends_with_one_row_saying_where(tmp_path):
    whole = gzip.compress(b"".join(json.dumps({"prompt": "p", "chosen": f"c{i}" * 50,
                                               "rejected": "r"}).encode() + b"\n"
                                   for i in range(2000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[:len(whole) // 2])
    records = list(corpus.read_records(path, corpus.FORMATS["trl-jsonl"]))
    assert records[-1].index == corpus.FILE_ERROR_INDEX
    assert "gzip" in records[-1].error and f"after record {len(records) - 1}" in records[-1].error
    assert [r.index for r in records[:-1]] == list(range(len(records) - 1))


# -- on Ray ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module: 2 CPUs, a 200 MB object store."""
    from workstation.cluster.ray_run import local_ray as instance

    with instance(num_cpus=2, object_store_mb=200):
        yield


@pytest.mark.slow
def test_scale_run_equals_the_local_audit_and_comes_home_as_one(ws, tmp_path, local_ray,
                                                                  capsys):
    from workstation.audits import failure_page, get_run
    from workstation.datasets import import_dataset

    source = hh_head(tmp_path / "hh.jsonl", 40)
    bad = tmp_path / "more.jsonl"
    bad.write_text(json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello",
                               "rejected": "\n\nHuman: hi\n\nAssistant: go"}) + "\n"
                   + "{broken\n" + json.dumps({"chosen": 3, "rejected": "x"}) + "\n")
    import_dataset(ws, "pairs", source, "hh", format="hh-rlhf")
    add_model_bytes(ws, mlp(2 * DIM, 64), "rm", "text-embedding")
    local = run_audit(ws, "rm@1", "hh")
    bundles.make_bundle(trusting(ws), "rm@1", tmp_path / "bundle", signer())
    path = ws.path
    ws.close()

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    os.replace(source, inputs / source.name)
    os.replace(bad, inputs / bad.name)
    assert main(["scale", "run", "--bundle", str(tmp_path / "bundle"), "--input", str(inputs),
                 "--output", str(tmp_path / "out"), "--batch-size", "16", "--format",
                 "hh-rlhf", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    by_name = {Path(f["path"]).name: f for f in run["files"]}
    assert by_name["hh.jsonl"]["rows"] == 40 and by_name["hh.jsonl"]["bad"] == 0
    assert by_name["more.jsonl"]["rows"] == 3 and by_name["more.jsonl"]["bad"] == 2
    assert sum(by_name["more.jsonl"]["bad_reasons"].values()) == 2
    assert run["complete"] and run["where"]["engine"] == "ray"
    shards = pq.read_table(sorted((tmp_path / "out").glob("*.parquet"))).to_pylist()
    assert len(shards) == 43

    from workstation.workspace import Workspace

    with Workspace.open(path) as ws:
        rows = {e["source_index"]: e for e in failure_page(ws, local.id, limit=100)[0]}
        ours = {r["row_index"]: r for r in shards if r["source_file"].endswith("hh.jsonl")}
        assert set(ours) == set(rows)
        for i, row in rows.items():
            assert abs(ours[i]["score_chosen"] - row["score_chosen"]) < 1e-6
            assert abs(ours[i]["score_rejected"] - row["score_rejected"]) < 1e-6
            assert ours[i]["passed"] == row["passed"]
        # The cluster's metrics over every scored row: the two good files' rows.
        assert run["metrics"]["n"] == 41

        # Home: into the dataset the local audit used (its source is one of the inputs).
        capsys.readouterr()
    assert main(["--workspace", str(path), "scale", "import", "--results",
                 str(tmp_path / "out"), "--dataset", "hh", "--model", "rm@1", "--json"]) == 1
    assert "does not hold more.jsonl" in capsys.readouterr().err
    with Workspace.open(path) as ws:
        home = import_results(ws, _only(tmp_path, "hh.jsonl"), "hh", "rm@1")
        assert home.imported is None and home.unmatched == 0
        run_home = get_run(ws, home.run.id)
        for key in ("pairwise_accuracy", "mean_margin", "n", "n_failures"):
            assert run_home.metrics[key] == pytest.approx(local.metrics[key], abs=1e-6)
        assert run_home.metrics["pairwise_accuracy_ci"] == local.metrics["pairwise_accuracy_ci"]
        assert run_home.membership["status"] == local.membership["status"]
        assert run_home.params["ran_on"]["engine"] == "ray"
        from workstation.ui.selection_bar import run_text  # the window's run picker

        assert " · scored on Ray · " in run_text(run_home)
        split = ws.execute("SELECT count(*) FILTER (WHERE split IS NULL), count(*) FROM "
                           "audit_results WHERE run_id = ?", [home.run.id]).fetchall()[0]
        assert split == (40, 40)


def _only(tmp_path: Path, name: str) -> Path:
    """A copy of the results folder as if only ``name`` had been the input."""
    import shutil

    from workstation.cluster import results

    out = tmp_path / f"only-{name}"
    shutil.copytree(tmp_path / "out", out)
    manifest = results.read_manifest(out)
    manifest["inputs"] = [f for f in manifest["inputs"] if f["path"].endswith(name)]
    manifest.pop("format")
    results.write_manifest(out, manifest)
    return out


def _embedding_corpus(folder: Path, files: int, rows: int) -> dict[str, int]:
    """Labeled responses with precomputed response embeddings, as Parquet files."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    sizes = {}
    for k in range(files):
        vectors = rng.standard_normal((rows, DIM)).astype(np.float32)
        table = pa.table({
            "prompt": ["p"] * rows, "response": [f"t{k}-{i}" for i in range(rows)],
            "label": rng.random(rows) < 0.5,
            "response_embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()),
                                                                    DIM)})
        path = folder / f"part-{k:02d}.parquet"
        pq.write_table(table, path, row_group_size=1000)
        sizes[str(path.resolve())] = rows
    return sizes


def _scorer_processes() -> list[int]:
    """The processes of Ray's scoring actors (Ray titles them after the class)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"ray::" in title and b"_RayScorer" in title:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_killed_actor_loses_and_doubles_no_row(ws, tmp_path, local_ray):
    from workstation.cluster.ray_run import run_scale
    from workstation.progress import Progress

    add_model_bytes(ws, mlp(DIM, 1024), "rm", "text-embedding", encoder=FixedEncoder())
    sizes = _embedding_corpus(tmp_path / "corpus", files=16, rows=5000)
    # A model on precomputed embeddings needs no encoder in its bundle.
    bundle = tmp_path / "bundle"
    bundles.make_bundle(ws, "rm@1", bundle, signer(), include_encoder=False)
    killed: list[tuple[int, int]] = []  # (pid, rows done when it was killed)

    def kill_one(stage: str, done: int, total: int) -> None:
        if done and not killed:
            victims = _scorer_processes()
            if victims:
                os.kill(victims[0], signal.SIGKILL)
                killed.append((victims[0], done))
    run = run_scale(bundle, str(tmp_path / "corpus"), tmp_path / "out", batch_size=500,
                    progress=Progress(kill_one))
    assert killed, "no scoring actor was found to kill"
    assert killed[0][1] < sum(sizes.values())  # killed mid-run, with units still to score
    manifest = run.manifest
    assert manifest["complete"] and manifest["bad"] == 0
    assert {f["path"]: f["rows"] for f in manifest["inputs"]} == sizes
    written = pq.read_table(sorted((tmp_path / "out").glob("*.parquet")),
                            columns=["source_file", "row_index"]).to_pylist()
    assert len(written) == sum(sizes.values())
    for path, n in sizes.items():
        indexes = sorted(r["row_index"] for r in written if r["source_file"] == path)
        assert indexes == list(range(n))


# -- home (results made in this process, without Ray) -------------------------------------

def results_here(bundle_dir: Path, spec: Path, out: Path, threshold: float | None = None):
    """A results folder as a scale run writes it (same reader, scorer and
    manifest), made in this process without Ray."""
    from workstation.cluster import results
    from workstation.cluster.scorer import BatchScorer, score_unit
    from workstation.hashing import sha256_file

    files = bundles.read_files(bundle_dir)
    paths = corpus.find_inputs(str(spec))
    form = corpus.check_format(corpus.detect_format(paths), paths)
    scorer = BatchScorer(files, form.kind, threshold=threshold)
    out.mkdir()
    for unit in corpus.work_units(paths, form):
        score_unit(scorer, unit, form, str(out), block_rows=100)
    return results.finish(out, files, paths, [sha256_file(p) for p in paths], form, threshold,
                          {"engine": "this process", "cluster": "none"}, 1.0)


def _shard_rows(out: Path) -> list[dict]:
    return pq.read_table(sorted(out.glob("*.parquet"))).to_pylist()


def cache_vectors(ws, texts: list[str], vectors: np.ndarray) -> None:
    """Put vectors into the workspace's embedding cache as FixedEncoder's."""
    from workstation.hashing import sha256_text

    table = pa.table({"encoder_id": [FixedEncoder.id] * len(texts),
                      "text_sha256": [sha256_text(t) for t in texts],
                      "vec": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)})
    ws.con.register("_test_vectors", table)
    ws.execute("INSERT OR IGNORE INTO embeddings SELECT encoder_id, text_sha256, vec::FLOAT[] "
               "FROM _test_vectors")
    ws.con.unregister("_test_vectors")


def _pairs_vectors(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The texts of n pairs (chosen sides, then rejected, then the prompt "p")
    and their vectors."""
    vectors = np.random.default_rng(seed).standard_normal((2 * n + 1, DIM)).astype(np.float32)
    texts = [f"chosen {i}" for i in range(n)] + [f"rejected {i}" for i in range(n)] + ["p"]
    return texts, vectors


def _pairs_corpus(folder: Path, n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """TRL pairs with both sides' embeddings, as one Parquet file."""
    folder.mkdir()
    texts, vectors = _pairs_vectors(n, seed)
    chosen, rejected = texts[:n], texts[n:2 * n]

    def column(rows: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), DIM)
    pq.write_table(pa.table({"prompt": ["p"] * n, "chosen": chosen, "rejected": rejected,
                             "id": [f"pair-{i}" for i in range(n)],
                             "prompt_embedding": column(np.repeat(vectors[-1:], n, axis=0)),
                             "chosen_embedding": column(vectors[:n]),
                             "rejected_embedding": column(vectors[n:2 * n])}),
                   folder / "pairs.parquet")
    return texts, vectors


@pytest.fixture
def pairs_home(ws, tmp_path):
    """A workspace with a pairs dataset (its vectors cached), a model, a local
    audit, and a results folder of the same file made without Ray."""
    from workstation.datasets import import_dataset

    texts, vectors = _pairs_corpus(tmp_path / "corpus", 300)
    cache_vectors(ws, texts, vectors)  # the pairs' texts and the prompt
    import_dataset(ws, "pairs", tmp_path / "corpus" / "pairs.parquet", "pairs",
                   format="trl-parquet")
    add_model_bytes(ws, mlp(DIM, 64), "rm", "text-embedding", encoder=FixedEncoder())
    bundles.make_bundle(trusting(ws), "rm@1", tmp_path / "bundle", signer(),
                        include_encoder=False)
    manifest = results_here(tmp_path / "bundle", tmp_path / "corpus", tmp_path / "out")
    return ws, tmp_path, manifest


def _state(ws) -> tuple:
    return ws.execute("SELECT (SELECT count(*) FROM audit_runs), (SELECT count(*) FROM "
                      "datasets), (SELECT count(*) FROM examples)").fetchall()[0]


def test_a_run_brought_home_is_judged_on_the_current_review_state(pairs_home):
    from workstation import review
    from workstation.audits import failure_page

    ws, tmp_path, manifest = pairs_home
    assert manifest["complete"] and manifest["rows"] == 300 and manifest["bad"] == 0
    ids = [r[0] for r in ws.execute("SELECT id FROM examples ORDER BY id").fetchall()]
    review.apply(ws, [review.Edit(ids[7], "flipped", True, "the rejected reply is better")])
    local = run_audit(ws, "rm@1", "pairs", encoder=FixedEncoder())
    home = import_results(ws, tmp_path / "out", "pairs", "rm@1")
    assert home.imported is None and home.run.n_examples == 300
    assert home.run.metrics["pairwise_accuracy"] == local.metrics["pairwise_accuracy"]
    assert home.run.n_failures == local.n_failures
    theirs = {r["example_id"]: r for r in failure_page(ws, home.run.id, limit=300)[0]}
    ours = {r["example_id"]: r for r in failure_page(ws, local.id, limit=300)[0]}
    for example_id, row in ours.items():
        assert theirs[example_id]["margin"] == pytest.approx(row["margin"], abs=1e-6)
        assert theirs[example_id]["passed"] == row["passed"]
        assert theirs[example_id]["rank"] == row["rank"]
    # The flip changed the sign of the cluster's margin for that pair, as it does locally.
    flipped = next(r for r in _shard_rows(tmp_path / "out") if r["row_index"] == 7)
    assert theirs[ids[7]]["margin"] == pytest.approx(-flipped["margin"], abs=1e-6)


def test_failures_only_brings_home_the_most_confident_failures_and_a_sample(pairs_home):
    from workstation.models import add_model_bytes as add
    from workstation.workspace import Workspace

    ws, tmp_path, manifest = pairs_home
    other = Workspace.open(tmp_path / "laptop.duckdb")  # the corpus is not in this one
    try:
        add(other, mlp(DIM, 64), "rm", "text-embedding", encoder=FixedEncoder())
        home = import_results(trusting(other), tmp_path / "out", "pairs-top", "rm@1",
                              failures_only=20)
        shards = _shard_rows(tmp_path / "out")
        failed = sorted((r for r in shards if not r["passed"]), key=lambda r: r["margin"])
        worst = {r["row_index"] for r in failed[:20]}
        held = {r[0] for r in other.execute("SELECT source_index FROM examples").fetchall()}
        assert len(held) == 40 and worst <= held
        assert home.imported == 40 and home.run.n_examples == 40
        assert home.selection["most_confident_failures"] == 20
        assert home.selection["uniform_sample"] == 20
        # The run's metrics are the cluster's, over all 300 rows, and say so.
        assert home.run.metrics["n"] == 300
        assert home.run.metrics["pairwise_accuracy"] == manifest["metrics"]["pairwise_accuracy"]
        assert "all 300 rows scored on the cluster" in home.run.membership["metrics_cover"]
        ids = other.execute("SELECT source_id FROM examples ORDER BY source_index").fetchall()
        assert ids[0][0].startswith("pair-")
        from workstation import catalog
        from workstation.ui.selection_bar import run_text  # the window's run picker

        picked = catalog.run(other, home.run.id)  # what the picker lists
        assert (f", 40 of 300 rows brought home · {home.run.n_failures} failures of 40"
                in run_text(picked))
        # compare takes the dataset audited on the cluster like one audited here.
        from workstation.regression import compare

        cache_vectors(other, *_pairs_vectors(300))
        add(other, mlp(DIM, 64, seed=3), "rm", "text-embedding", encoder=FixedEncoder())
        report = compare(other, "rm@2", "rm@1", encoder=FixedEncoder())
        assert [c.dataset for c in report.datasets.values()] == ["pairs-top"]
        assert len(next(iter(report.datasets.values())).example_ids) == 40
    finally:
        other.close()


@pytest.mark.parametrize("problem", ["other model", "bundle changed", "unfinished",
                                     "input changed", "input moved", "incomplete"])
def test_import_refuses_results_it_cannot_trust_and_changes_nothing(pairs_home, problem):
    import shutil

    from workstation.cluster import results

    ws, tmp_path, manifest = pairs_home
    out, model = tmp_path / "out", "rm@1"
    if problem == "other model":
        add_model_bytes(ws, mlp(DIM, 64, seed=5), "rm", "text-embedding", encoder=FixedEncoder())
        model = "rm@2"
    elif problem == "bundle changed":
        (out / "bundle.json").write_text((out / "bundle.json").read_text().replace("rm@1",
                                                                                   "rm@9"))
    elif problem == "unfinished":
        (out / "_SUCCESS").unlink()
    elif problem == "input changed":
        path = tmp_path / "corpus" / "pairs.parquet"
        path.write_bytes(path.read_bytes() + b"\0")
    elif problem == "incomplete":
        manifest["complete"] = False
        manifest.pop("format")
        results.write_manifest(out, manifest)
    else:
        shutil.move(tmp_path / "corpus", tmp_path / "elsewhere")
    before = _state(ws)
    dataset = "new-name" if problem in ("input changed", "input moved") else "pairs"
    with pytest.raises(WorkstationError) as refused:
        import_results(ws, out, dataset, model)
    assert _state(ws) == before
    expected = {"other model": "not by rm@2", "bundle changed": "not the bundle",
                "unfinished": "did not finish", "input changed": "not the file the run scored",
                "input moved": "--inputs DIR", "incomplete": "incomplete"}[problem]
    assert expected in str(refused.value)
    if problem == "input moved":  # told where the files are now, a laptop imports them
        from workstation.workspace import Workspace

        with Workspace.open(tmp_path / "laptop.duckdb") as laptop:
            add_model_bytes(laptop, mlp(DIM, 64), "rm", "text-embedding",
                            encoder=FixedEncoder())
            with pytest.raises(WorkstationError, match="not trusted in this workspace"):
                import_results(laptop, out, dataset, model, inputs_dir=tmp_path / "elsewhere")
            home = import_results(laptop, out, dataset, model,
                                  inputs_dir=tmp_path / "elsewhere", allow_untrusted=True)
            assert home.imported == 300 and home.run.n_examples == 300
            assert home.run.params["scale"]["bundle_trusted"] is False


def test_import_takes_only_bundles_signed_by_a_key_this_workspace_trusts(
        pairs_home, make_identity, capsys):
    """A valid signature by a stranger's key proves nothing about who made the
    bundle: refused unless --allow-untrusted, and then the run says so."""
    from workstation import trust
    from workstation.cli import main

    ws, tmp_path, _ = pairs_home
    bundles.make_bundle(ws, "rm@1", tmp_path / "s-bundle", stranger(), include_encoder=False)
    results_here(tmp_path / "s-bundle", tmp_path / "corpus", tmp_path / "s-out")
    before = _state(ws)
    with pytest.raises(WorkstationError, match="not trusted in this workspace.*--allow-untrusted"):
        import_results(ws, tmp_path / "s-out", "pairs", "rm@1")
    assert _state(ws) == before

    colleague = make_identity("scale-colleague")  # trusted, then revoked
    trust.add(ws, colleague.public_pem, "scale-colleague", "reviewer")
    bundles.make_bundle(ws, "rm@1", tmp_path / "c-bundle", colleague, include_encoder=False)
    results_here(tmp_path / "c-bundle", tmp_path / "corpus", tmp_path / "c-out")
    home = import_results(ws, tmp_path / "c-out", "pairs", "rm@1")
    assert home.run.params["scale"]["bundle_trusted"] is True
    assert home.run.params["scale"]["bundle_signer"] == "scale-colleague"
    trust.revoke(ws, colleague.key_id, "left the team")
    with pytest.raises(WorkstationError, match="revoked in this workspace.*left the team"):
        import_results(ws, tmp_path / "c-out", "pairs", "rm@1", allow_untrusted=True)

    path = ws.path
    ws.close()
    args = ["--workspace", str(path), "scale", "import", "--results", str(tmp_path / "s-out"),
            "--dataset", "pairs", "--model", "rm@1"]
    assert main(args) == 1
    assert "--allow-untrusted" in capsys.readouterr().err
    assert main(args + ["--allow-untrusted"]) == 0
    assert "UNTRUSTED" in capsys.readouterr().out
    assert main(args + ["--allow-untrusted", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["run"]["params"]["scale"]["bundle_trusted"] is False
    from workstation import catalog
    from workstation.ui.selection_bar import run_text  # the window's run picker
    from workstation.workspace import Workspace

    with Workspace.open(path) as again:
        assert "UNTRUSTED bundle key" in run_text(catalog.run(again, payload["run_id"]))
        assert "UNTRUSTED" not in run_text(catalog.run(again, home.run.id))


def test_a_token_model_scores_on_the_cluster_path_as_in_an_audit(ws, tmp_path):
    from tests.test_models import LABELS, token_model, token_sum, write_tokenizer
    from workstation.datasets import import_dataset
    from workstation.models import add_model

    (tmp_path / "model.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    add_model(ws, tmp_path / "model.onnx", "tok", "text-tokens")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "labels.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in LABELS))
    import_dataset(ws, "labels", tmp_path / "corpus" / "labels.jsonl", "labels")
    local = run_audit(ws, "tok@1", "labels")
    record = bundles.make_bundle(trusting(ws), "tok@1", tmp_path / "bundle", signer())
    assert "encoder/encoder.onnx" not in record.files  # a token model brings its tokenizer
    manifest = results_here(tmp_path / "bundle", tmp_path / "corpus", tmp_path / "out")
    rows = sorted(_shard_rows(tmp_path / "out"), key=lambda r: r["row_index"])
    assert [r["score"] for r in rows[:4]] == [token_sum(r["prompt"], r["response"])
                                              for r in LABELS[:4]]
    assert "null response" in rows[4]["error"] and manifest["bad"] == 1  # an import skips it
    assert manifest["metrics"]["auroc"] == local.metrics["auroc"]
    assert manifest["metrics"]["accuracy"] == local.metrics["accuracy"]
    home = import_results(ws, tmp_path / "out", "labels", "tok@1")
    assert home.run.metrics["per_category"] == local.metrics["per_category"]


def test_a_token_models_run_counts_truncated_texts_as_an_audit_does(ws, tmp_path):
    """A tokens model cut at 4 tokens: the pairs whose texts are longer are
    counted per row and per side in the run's metrics (what `scale run`
    prints), equal to a local audit's, and again once the run comes home."""
    from tests.test_models import token_model, write_tokenizer
    from workstation.cli.scale import _run_text
    from workstation.cluster.ray_run import ScaleRun
    from workstation.datasets import import_dataset
    from workstation.models import add_model

    (tmp_path / "model.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    add_model(ws, tmp_path / "model.onnx", "tok", "text-tokens", max_length=4)
    pairs = [("q", "good", "bad"),  # 2 tokens a side: nothing cut
             ("q", "very very very good", "bad"),  # the chosen side cut
             ("q", "very good good good", "bad bad bad bad"),  # both sides cut
             ("q", "ok", "ok bad")]
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "pairs.jsonl").write_text("".join(
        json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in pairs))
    import_dataset(ws, "pairs", tmp_path / "corpus" / "pairs.jsonl", "pairs")
    local = run_audit(ws, "tok@1", "pairs")
    assert (local.metrics["truncated"], local.metrics["truncated_sides"]) == (2, 3)
    bundles.make_bundle(trusting(ws), "tok@1", tmp_path / "bundle", signer())
    manifest = results_here(tmp_path / "bundle", tmp_path / "corpus", tmp_path / "out")
    rows = sorted(_shard_rows(tmp_path / "out"), key=lambda r: r["row_index"])
    assert [r["truncated"] for r in rows] == [0, 1, 2, 0]
    for key in ("truncated", "truncated_sides"):
        assert manifest["metrics"][key] == local.metrics[key]
    printed = _run_text({**ScaleRun(str(tmp_path / "out"), manifest).to_json(),
                         "where": {"cluster": "local", "actors": 1}})
    assert "cut to the model's maximum length: 2 rows (3 sides of pairs)" in printed
    home = import_results(ws, tmp_path / "out", "pairs", "tok@1")
    assert (home.run.metrics["truncated"], home.run.metrics["truncated_sides"]) == (2, 3)

    for shard in (tmp_path / "out").glob("*.parquet"):  # as written before runs counted it
        pq.write_table(pq.read_table(shard).drop_columns(["truncated"]), shard)
    older = import_results(ws, tmp_path / "out", "pairs", "tok@1")
    assert older.run.metrics["pairwise_accuracy"] == local.metrics["pairwise_accuracy"]
    assert "truncated" not in older.run.metrics  # not known, so not claimed to be 0


def test_an_embedding_models_run_counts_no_truncation(pairs_home):
    _, tmp_path, manifest = pairs_home
    assert "truncated" not in manifest["metrics"]
    assert {r["truncated"] for r in _shard_rows(tmp_path / "out")} == {None}


@pytest.mark.slow
def test_a_cancelled_run_stops_unfinished_and_ray_goes_on(ws, tmp_path, local_ray):
    from workstation.cluster.ray_run import run_scale
    from workstation.errors import Cancelled
    from workstation.progress import Progress

    add_model_bytes(ws, mlp(DIM, 512), "rm", "text-embedding", encoder=FixedEncoder())
    sizes = _embedding_corpus(tmp_path / "corpus", files=12, rows=4000)
    bundles.make_bundle(ws, "rm@1", tmp_path / "bundle", signer(), include_encoder=False)
    progress = Progress(lambda stage, done, total: progress.cancel() if done else None)
    with pytest.raises(Cancelled, match="unfinished"):
        run_scale(tmp_path / "bundle", str(tmp_path / "corpus"), tmp_path / "out",
                  batch_size=500, progress=progress)
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    assert len(list((tmp_path / "out").glob("*.parquet"))) < len(sizes)
    with pytest.raises(WorkstationError, match="did not finish"):
        import_results(ws, tmp_path / "out", "corpus", "rm@1")
    again = run_scale(tmp_path / "bundle", str(tmp_path / "corpus"), tmp_path / "again")
    assert again.manifest["complete"] and again.manifest["rows"] == sum(sizes.values())


def test_a_trained_versions_run_comes_home_with_its_held_out_split(pairs_home):
    from workstation.training import train

    ws, tmp_path, _ = pairs_home
    ref = train(ws, "pairs", "trained", encoder=FixedEncoder()).version.ref
    local = run_audit(ws, ref, "pairs", encoder=FixedEncoder())
    assert local.membership["status"] == "trained"
    bundles.make_bundle(ws, ref, tmp_path / "trained-bundle", signer(), include_encoder=False)
    results_here(tmp_path / "trained-bundle", tmp_path / "corpus", tmp_path / "trained-out")
    home = import_results(ws, tmp_path / "trained-out", "pairs", ref)
    splits = {}
    for run_id in (local.id, home.run.id):
        splits[run_id] = ws.execute("SELECT example_id, split FROM audit_results "
                                    "WHERE run_id = ? ORDER BY example_id", [run_id]).fetchall()
    assert splits[local.id] == splits[home.run.id]
    assert {s for _, s in splits[local.id]} >= {"training", "heldout"}
    assert home.run.metrics["pairwise_accuracy"] == local.metrics["pairwise_accuracy"]
    assert home.run.training_metrics["pairwise_accuracy"] == \
        local.training_metrics["pairwise_accuracy"]
    assert home.run.membership["counts"] == local.membership["counts"]


def sqrt_first(width: int = DIM) -> bytes:
    """reward = sqrt(x[:, 0]): NaN wherever the first component is negative."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Slice", ["x", "start", "stop", "axis"], ["first"]),
             helper.make_node("Sqrt", ["first"], ["reward"])]
    consts = [numpy_helper.from_array(np.array([v], dtype=np.int64), name)
              for name, v in (("start", 0), ("stop", 1), ("axis", 1))]
    graph = helper.make_graph(
        nodes, "sqrt", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["N", 1])], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]
                             ).SerializeToString()


def test_a_non_finite_score_is_a_bad_row_not_a_crash(ws, tmp_path):
    add_model_bytes(ws, sqrt_first(), "rm", "text-embedding", encoder=FixedEncoder())
    _embedding_corpus(tmp_path / "corpus", files=1, rows=200)
    bundles.make_bundle(ws, "rm@1", tmp_path / "bundle", signer(), include_encoder=False)
    manifest = results_here(tmp_path / "bundle", tmp_path / "corpus", tmp_path / "out")
    rows = _shard_rows(tmp_path / "out")
    vectors = pq.read_table(tmp_path / "corpus" / "part-00.parquet").column(
        "response_embedding").to_pylist()
    negative = {i for i, v in enumerate(vectors) if v[0] < 0}
    assert 0 < len(negative) < 200 and manifest["complete"]
    assert {r["row_index"] for r in rows if r["error"] == "non-finite score"} == negative
    assert all(r["score"] is None and r["passed"] is None for r in rows
               if r["row_index"] in negative)
    assert manifest["bad"] == len(negative) and manifest["metrics"]["n"] == 200 - len(negative)
    assert manifest["inputs"][0]["bad_reasons"] == {"non-finite score": len(negative)}


def test_the_sizing_table_follows_from_the_measured_rates():
    from bench.bench_scale_ray import sizing

    table = sizing([{"workload": "pairs", "rows_per_s_per_cpu": 250.0,
                     "output_bytes_per_row": 40.0}])
    assert len(table) == 3 and table[0].count("|") == table[2].count("|")
    # 10M pairs at 250 pairs/s per CPU: 40,000 CPU-seconds, 11.1 CPU-hours; 100M: 111.1;
    # 40 bytes a row: 400 MB and 4.0 GB of shards.
    assert "| 250 | 11.1 | 111.1 | 40 | 400 MB | 4.0 GB |" in table[2]


def test_rows_without_their_embedding_are_bad_rows_and_the_others_score_as_given(ws,
                                                                                 tmp_path):
    """A bundle without an encoder: rows whose embedding is null are counted
    bad with the reason; the rest score exactly as the model on the given
    vectors, in batches with missing rows (taken out before scoring) and in
    a batch without any."""
    import onnxruntime as ort

    model = mlp(DIM, 16)
    add_model_bytes(ws, model, "rm", "text-embedding", encoder=FixedEncoder())
    bundles.make_bundle(ws, "rm@1", tmp_path / "bundle", signer(), include_encoder=False)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, DIM)).astype(np.float32)
    missing = {5, 17, 250}  # in the first batch of 100 rows and in the third; none in the second
    column = pa.array([None if i in missing else vectors[i].tolist() for i in range(300)],
                      pa.list_(pa.float32(), DIM))
    (tmp_path / "corpus").mkdir()
    pq.write_table(pa.table({"response": [f"t{i}" for i in range(300)],
                             "label": rng.random(300) < 0.5, "response_embedding": column}),
                   tmp_path / "corpus" / "part.parquet", row_group_size=100)
    manifest = results_here(tmp_path / "bundle", tmp_path / "corpus", tmp_path / "out")
    rows = sorted(_shard_rows(tmp_path / "out"), key=lambda r: r["row_index"])
    assert manifest["complete"] and manifest["rows"] == 300 and manifest["bad"] == len(missing)
    assert manifest["inputs"][0]["bad_reasons"] == {
        "no precomputed embedding, and the bundle has no encoder": len(missing)}
    assert {r["row_index"] for r in rows if r["error"]} == missing
    expected = ort.InferenceSession(model).run(None, {"x": vectors})[0][:, 1]
    scored = [r for r in rows if not r["error"]]
    assert np.allclose([r["score"] for r in scored],
                       expected[[r["row_index"] for r in scored]], atol=1e-6)
