"""Benchmark: an audit of 200k labeled responses with cached embeddings.

Synthesises a workspace with 200k random unit vectors in ``embeddings`` and
200k labeled-response examples whose texts ("t0", "t1", ...) hash to them,
registers a text-embedding reward model built with onnx.helper (a small MLP:
384 -> HIDDEN -> 2 logits, softmax probabilities), then times ``run_audit``
end to end (read labels and embeddings from the workspace, score, compute
metrics with bootstrap intervals, write 200k result rows) against
onnxruntime's ``InferenceSession.run`` alone on the same float32 array held
in memory. The ratio is throughput, workstation / onnxruntime (target >= 0.7).

The workstation feeds onnxruntime runs of ``ROWS_PER_RUN`` (1024) rows,
which keeps the model's activations in the CPU caches; the baseline is the
single run over the whole array that the issue names. Part of the margin comes
from that choice, so the second line also prints onnxruntime alone in runs of
the same size: that ratio isolates the workstation's own work, which is fixed
per row: reading ~300 MB of vectors through DuckDB (~0.1 s, competing with
inference for the two cores), the bootstrap intervals overall and for each of
10 categories (~0.1 s on a thread pool, nearly all of it numpy drawing the
multinomials) and the bulk write (~0.05 s). A model that does less per row
than this MLP gets a lower ratio; with a logistic regression (~30 ms in
onnxruntime) no workspace-backed audit gets near 0.7.

    .venv/bin/python bench/bench_audit.py [--n 200000] [--hidden 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workstation.audits import run_audit  # noqa: E402
from workstation.hashing import sha256_text  # noqa: E402
from workstation.models import add_model_bytes, score_dataset  # noqa: E402
from workstation.models.onnx_model import ROWS_PER_RUN, make_session  # noqa: E402
from workstation.workspace import Workspace  # noqa: E402

N = 200_000
DIM = 384
HIDDEN = 1024
REPEATS = 5
TARGET = 0.7
CATEGORIES = [f"Category {k}" for k in range(10)]


class CachedOnlyEncoder:
    """The encoder identity the embeddings are filed under; encoding is never
    needed because every text is cached (it would be a benchmark bug)."""

    id, dim = "bench-encoder", DIM

    def encode(self, texts, progress=None, batch_size=64):
        raise AssertionError(f"benchmark texts should all be cached; asked to encode {len(texts)}")


def mlp(hidden: int, seed: int = 0, width: int = DIM) -> bytes:
    """x [N, width] -> relu(x W1 + b1) W2 + b2 -> softmax -> probabilities [N, 2]
    (width 384: a response embedding; 768: prompt and response)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {"W1": rng.standard_normal((width, hidden)) / np.sqrt(width),
               "b1": np.zeros(hidden), "W2": rng.standard_normal((hidden, 2)) / np.sqrt(hidden),
               "b2": np.zeros(2)}
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h0"]),
             helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]),
             helper.make_node("MatMul", ["h2", "W2"], ["z0"]),
             helper.make_node("Add", ["z0", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             producer_name="bench").SerializeToString()


def build(ws: Workspace, n: int, hidden: int) -> np.ndarray:
    """Fill the workspace; returns the embeddings in example order."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"t{i}" for i in range(n)]
    embeddings = pa.table({
        "encoder_id": pa.array([CachedOnlyEncoder.id] * n),
        "text_sha256": pa.array([sha256_text(t) for t in texts]),
        "vec": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)})
    examples = pa.table({
        "id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "source_index": pa.array(np.arange(n, dtype=np.int64)),
        "response": pa.array(texts),
        "label": pa.array(rng.random(n) < 0.55),
        "category": pa.array([CATEGORIES[k] for k in rng.integers(0, len(CATEGORIES), n)])})
    with ws.transaction():
        ws.con.register("bench_embeddings", embeddings)
        ws.con.register("bench_examples", examples)
        ws.execute("INSERT INTO embeddings SELECT encoder_id, text_sha256, vec::FLOAT[] "
                   "FROM bench_embeddings")
        ws.execute("INSERT INTO datasets VALUES (1, 'bench', 'labels', 'synthetic', 'bench', "
                   "NULL, 'now', ?, NULL)", [n])
        ws.execute("INSERT INTO examples (id, dataset_id, source_sha256, source_index, prompt, "
                   "response, label, category) SELECT id, 1, 'bench', source_index, 'p', "
                   "response, label, category FROM bench_examples")
        ws.con.unregister("bench_embeddings")
        ws.con.unregister("bench_examples")
    ws.execute("CHECKPOINT")
    add_model_bytes(ws, mlp(hidden), "bench-mlp", "text-embedding", encoder=CachedOnlyEncoder())
    return vectors


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(n: int = N, hidden: int = HIDDEN, repeats: int = REPEATS) -> dict:
    """Build, time both sides (interleaved, so that load from other processes
    hits both alike), and return the medians."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "bench.duckdb")
        try:
            vectors = build(ws, n, hidden)
            session = make_session(mlp(hidden))
            session.run(["probabilities"], {"x": vectors[:64]})  # warm up
            encoder = CachedOnlyEncoder()
            times: dict[str, list[float]] = {"alone": [], "audit": [], "scoring": [],
                                             "alone_runs": []}
            runs = []
            for _ in range(repeats):
                times["alone"].append(timed(
                    lambda: session.run(["probabilities"], {"x": vectors})))
                times["alone_runs"].append(timed(lambda: [
                    session.run(["probabilities"], {"x": vectors[i:i + ROWS_PER_RUN]})
                    for i in range(0, len(vectors), ROWS_PER_RUN)]))
                times["audit"].append(timed(lambda: runs.append(
                    run_audit(ws, "bench-mlp", "bench", encoder=encoder))))
                # The read + score part alone, to show where the rest goes.
                times["scoring"].append(timed(
                    lambda: score_dataset(ws, "bench-mlp", "bench", encoder=encoder)))
        finally:
            ws.close()
    alone, workstation, scoring, alone_runs = (
        statistics.median(times[k]) for k in ("alone", "audit", "scoring", "alone_runs"))
    audit = runs[-1]
    ratio = alone / workstation
    return {"n": n, "hidden": hidden, "workstation_s": workstation, "onnxruntime_s": alone,
            "scoring_s": scoring, "onnxruntime_runs_s": alone_runs,
            "ratio_same_runs": alone_runs / workstation, "overhead_s": workstation - alone,
            "ratio": ratio,
            "target": TARGET, "passed": ratio >= TARGET, "n_failures": audit.n_failures,
            "auroc": audit.metrics["auroc"], "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    r = run(args.n, args.hidden, args.repeats)
    label = f"{r['n'] // 1000}k" if r["n"] % 1000 == 0 else str(r["n"])
    print(f"audit scoring {label}: workstation {r['workstation_s']:.2f} s, onnxruntime alone "
          f"{r['onnxruntime_s']:.2f} s, ratio (throughput) {r['ratio']:.2f} "
          f"(target >= {TARGET}) {'PASS' if r['passed'] else 'FAIL'}")
    print(f"  model: MLP {DIM}->{r['hidden']}->2; reading + scoring alone took "
          f"{r['scoring_s']:.2f} s (ratio {r['onnxruntime_s'] / r['scoring_s']:.2f}), the rest "
          f"is metrics with bootstrap intervals (overall + per category) and the bulk write; "
          f"onnxruntime alone in runs of {ROWS_PER_RUN} rows, as the workstation feeds it: "
          f"{r['onnxruntime_runs_s']:.2f} s (ratio {r['ratio_same_runs']:.2f})")
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
