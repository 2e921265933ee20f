"""Benchmark: scoring with a patched model vs its unpatched base.

Registers a text-embedding reward model built with onnx.helper (an MLP over
[prompt, response] embeddings: 2·384 -> HIDDEN -> 2 logits, softmax
probabilities) and the same model with a 100-kernel suppression patch
(``workstation.patching.graph``), then scores the same 100k random
[unit, unit] vectors with both through the registry's runners, in batches of
8192 as audits do. The ratio is throughput, patched / base (target >= 0.8),
the median over interleaved repeats of each repeat's paired ratio.

The patch's cost is fixed per row: one [768 x 100] MatMul for the squared
distances (||x||² − 2x·Cᵀ + ||c||², not a broadcast subtraction) and a few
[N, 100] element-wise ops. The ratio therefore depends on the base's size:
it is about 0.9 for HIDDEN = 1024 (the audit benchmark's model), but a
logistic regression, which does almost nothing per row, would be dominated
by the kernels. The second line printed gives the kernels' own throughput.

    .venv/bin/python bench/bench_patch.py [--n 100000] [--hidden 1024] [--kernels 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_audit import mlp  # noqa: E402
from workstation.models import add_model_bytes, load_onnx, load_runner  # noqa: E402
from workstation.patching import SuppressionKernel, patched_scores  # noqa: E402
from workstation.patching.graph import build_patched_model  # noqa: E402
from workstation.workspace import Workspace  # noqa: E402

N = 100_000
DIM = 384
HIDDEN = 1024
KERNELS = 100
BATCH = 8192
REPEATS = 5
TARGET = 0.8


class EncoderIdentity:
    """Registration only needs the encoder's id and width."""

    id, dim = "bench-encoder", DIM


def unit_pairs(n: int, seed: int = 1) -> np.ndarray:
    """[prompt, response] rows, each half a random unit vector."""
    rng = np.random.default_rng(seed)
    halves = rng.standard_normal((2, n, DIM)).astype(np.float32)
    halves /= np.linalg.norm(halves, axis=2, keepdims=True)
    return np.concatenate([halves[0], halves[1]], axis=1)


def kernels_on(x: np.ndarray, k: int, seed: int = 2) -> list[SuppressionKernel]:
    """k kernels centered on rows of ``x`` (so that they fire on some inputs)."""
    rows = np.random.default_rng(seed).choice(len(x), size=k, replace=False)
    return [SuppressionKernel(x[i].astype(np.float64), 0.3, 1.0, 1.0, "bench-patch",
                              {"row": int(i)}) for i in rows]


def _throughput(runner, x: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    scores = np.concatenate([runner.score_matrix(x[i:i + BATCH])
                             for i in range(0, len(x), BATCH)])
    return len(x) / (time.perf_counter() - start), scores


def run(n: int = N, hidden: int = HIDDEN, n_kernels: int = KERNELS) -> dict:
    """Time both models; returns the rates, the ratio and the agreement check."""
    x = unit_pairs(n)
    kernels = kernels_on(x, n_kernels)
    with tempfile.TemporaryDirectory() as tmp, Workspace.open(Path(tmp) / "b.duckdb") as ws:
        base = add_model_bytes(ws, mlp(hidden, width=2 * DIM), "bench", "text-embedding",
                               encoder=EncoderIdentity())
        data = build_patched_model(load_onnx(ws, base), base.manifest, kernels, "bounded")
        patched = add_model_bytes(ws, data, "bench", "text-embedding", output="reward",
                                  parent=base, score_type="probability",
                                  encoder=EncoderIdentity())
        runners = {"base": load_runner(ws, base), "patched": load_runner(ws, patched)}
        _throughput(runners["base"], x[:BATCH])  # warm-up
        _throughput(runners["patched"], x[:BATCH])
        rates = {"base": [], "patched": []}
        for _ in range(REPEATS):  # interleaved, so load from elsewhere hits both alike
            for name, runner in runners.items():
                rate, scores = _throughput(runner, x)
                rates[name].append(rate)
                if name == "base":
                    base_scores = scores
                else:
                    patched_out = scores
    check = slice(0, 5000)
    want = patched_scores(base_scores[check], x[check].astype(np.float64), kernels, "bounded")
    # The median of the paired ratios: robust to a busy machine's slow phases.
    ratio = statistics.median(p / b for b, p in zip(rates["base"], rates["patched"]))
    base_rate, patched_rate = statistics.median(rates["base"]), statistics.median(rates["patched"])
    return {"n": n, "hidden": hidden, "kernels": n_kernels, "base_rows_per_s": base_rate,
            "patched_rows_per_s": patched_rate, "ratio": ratio, "target": TARGET,
            "passed": ratio >= TARGET, "repeats": REPEATS,
            "rows_changed": int((np.abs(patched_out - base_scores) > 1e-6).sum()),
            "max_abs_error_vs_core": float(np.abs(patched_out[check] - want).max()),
            "kernel_rows_per_s": 1.0 / max(1e-12, 1.0 / patched_rate - 1.0 / base_rate)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--kernels", type=int, default=KERNELS)
    args = parser.parse_args(argv)
    r = run(args.n, args.hidden, args.kernels)
    verdict = "PASS" if r["passed"] else "FAIL"
    print(f"patched scoring ({r['kernels']} kernels): base {r['base_rows_per_s']:,.0f} rows/s, "
          f"patched {r['patched_rows_per_s']:,.0f} rows/s, ratio {r['ratio']:.2f} "
          f"(target >= {TARGET}) {verdict}")
    print(f"  MLP hidden {r['hidden']}, {r['n']:,} rows; kernels alone ~"
          f"{r['kernel_rows_per_s']:,.0f} rows/s; {r['rows_changed']:,} rows changed; "
          f"max |ONNX - core| {r['max_abs_error_vs_core']:.2g}")
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
