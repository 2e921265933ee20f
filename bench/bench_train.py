"""Benchmark: retraining a reward head on 20k cached preference pairs, ours
(``workstation.training.train``) against scikit-learn's LogisticRegression on
the same features and the same held-out split.

Data: HH-RLHF harmless-base has only 2,312 pairs, so 20,000 pairs are
*synthesised from its real texts*: each pair takes a real prompt and two
distinct real responses (the last assistant turns of the HH records, 4,624
texts, all embedded by the real encoder). The preference is planted: a hidden
linear direction w over the standardised response embeddings gives each
response a utility u = w.z, and the first response is preferred with
probability sigmoid(BETA (u_a - u_b)), so labels carry Bradley-Terry noise
(the Bayes accuracy is printed). The pairs are imported as an ordinary
dataset whose texts are all already in the workspace embedding cache, so
the timed call is a retrain on cached pairs: reading the cache, fitting,
ONNX export, the parity check and registration.

sklearn gets the features the head sees, x = [prompt, response] embeddings,
framed as in the quality test: differences x_chosen - x_rejected labelled 1,
their negatives labelled 0; a held-out pair is right when w.(x_c - x_r) > 0.
Its time is the fit alone (the features are handed to it ready-made).

Run: ``.venv/bin/python bench/bench_train.py [--pairs N]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from workstation.datasets import import_dataset  # noqa: E402
from workstation.encoder import embed_texts, get_encoder  # noqa: E402
from workstation.progress import Progress  # noqa: E402
from workstation.workspace import Workspace  # noqa: E402

SHARED_DATA = Path(os.environ.get("WORKSTATION_SHARED_DATA", REPO.parent / "shared" / "data"))
HH_RLHF = SHARED_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"
ASSISTANT = "\n\nAssistant:"
N_PAIRS = 20_000
BETA = 3.0  # preference sharpness: utility gaps of ~1 std are right ~90% of the time
SEED = 0


def load_texts(path: Path = HH_RLHF) -> tuple[list[str], list[str]]:
    """Prompts (up to the last assistant turn) and the responses of both sides."""
    prompts, responses = [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            for side in ("chosen", "rejected"):
                head, _, tail = record[side].rpartition(ASSISTANT)
                responses.append(tail.strip())
            prompts.append(head + ASSISTANT)
    return sorted(set(prompts)), sorted(set(responses))


def synthesise(prompts: list[str], responses: np.ndarray, vectors: np.ndarray,
               n: int, rng: np.random.Generator) -> tuple[list[dict], float]:
    """``n`` pairs with a planted preference; returns them and their Bayes accuracy."""
    std = vectors.std(0)
    # all-MiniLM has a few dimensions that are ~0 for every text: leave them out.
    z = np.where(std > 1e-6, (vectors - vectors.mean(0)) / np.maximum(std, 1e-6), 0.0)
    w = rng.standard_normal(z.shape[1])
    utility = z @ (w / np.linalg.norm(w))
    utility /= utility.std()
    a = rng.integers(0, len(responses), n)
    b = (a + rng.integers(1, len(responses), n)) % len(responses)  # b != a
    gap = BETA * (utility[a] - utility[b])
    first_wins = rng.random(n) < 1 / (1 + np.exp(-gap))
    bayes = float(np.mean(1 / (1 + np.exp(-np.abs(gap)))))
    p = rng.integers(0, len(prompts), n)
    records = [{"prompt": prompts[p[i]],
                "chosen": str(responses[a[i] if first_wins[i] else b[i]]),
                "rejected": str(responses[b[i] if first_wins[i] else a[i]])} for i in range(n)]
    return records, bayes


def _prepare(ws: Workspace, folder: Path, n: int) -> float:
    """Embed the HH texts into the cache and import the synthetic pairs (untimed)."""
    encoder = get_encoder()
    prompts, responses = load_texts()
    embed_texts(ws, prompts, encoder)
    vectors = embed_texts(ws, responses, encoder)
    records, bayes = synthesise(prompts, np.array(responses, dtype=object), vectors, n,
                                np.random.default_rng(SEED))
    path = folder / "synthetic-pairs.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    import_dataset(ws, "pairs", path, "synthetic", format="trl-jsonl")
    return bayes


class _StageClock:
    """Wall time spent in each progress stage."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._stage, self._start = None, time.perf_counter()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self.close()
            self._stage, self._start = stage, time.perf_counter()

    def close(self) -> None:
        if self._stage is not None:
            self.times[self._stage] = self.times.get(self._stage, 0.0) + \
                time.perf_counter() - self._start
        self._stage = None


def _sklearn(ws: Workspace, hp: dict[str, Any]) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    from workstation.training import split_roles
    from workstation.training.data import HELDOUT, dataset_ref, load_pairs

    data = load_pairs(ws, dataset_ref(ws, "synthetic").id, get_encoder(), Progress())
    heldout = split_roles(data.example_ids, hp["heldout_fraction"], hp["split_seed"]) == HELDOUT
    diff = data.chosen - data.rejected
    rows = diff[~heldout]
    features = np.vstack([rows, -rows])
    target = np.r_[np.ones(len(rows)), np.zeros(len(rows))]
    start = time.perf_counter()
    model = LogisticRegression(max_iter=5000).fit(features, target)
    seconds = time.perf_counter() - start
    return seconds, float(np.mean(model.decision_function(diff[heldout]) > 0))


def run(n: int = N_PAIRS) -> dict[str, Any]:
    """Prepare the data, time both sides, return the figures."""
    from workstation.training import train

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        with Workspace.open(Path(tmp) / "bench.duckdb") as ws:
            bayes = _prepare(ws, Path(tmp), n)
            clock = _StageClock()
            start = time.perf_counter()
            result = train(ws, "synthetic", "bench-rm", seed=SEED, progress=Progress(clock))
            ours_s = time.perf_counter() - start
            clock.close()
            hp = result.version.manifest["lineage"]["hyperparameters"]
            sk_s, sk_acc = _sklearn(ws, hp)
    ours_acc = result.metrics["heldout_pairwise_accuracy"]
    return {"n_pairs": n, "n_train": result.metrics["n_train"],
            "n_heldout": result.metrics["n_heldout"], "bayes_accuracy": bayes,
            "ours_s": ours_s, "ours_stage_s": clock.times, "ours_epochs": result.metrics["epochs"],
            "ours_heldout_acc": ours_acc, "sklearn_s": sk_s, "sklearn_heldout_acc": sk_acc,
            "time_ratio": ours_s / sk_s, "accuracy_delta": ours_acc - sk_acc,
            "onnx_parity_max_abs_diff": result.version.manifest["onnx_parity_max_abs_diff"]}


def format_line(r: dict[str, Any]) -> str:
    n = f"{r['n_pairs'] // 1000}k" if r["n_pairs"] % 1000 == 0 else str(r["n_pairs"])
    return (f"train {n} pairs: ours {r['ours_s']:.2f} s heldout_acc {r['ours_heldout_acc']:.4f}, "
            f"sklearn logistic {r['sklearn_s']:.2f} s heldout_acc {r['sklearn_heldout_acc']:.4f}, "
            f"time ratio {r['time_ratio']:.2f}, accuracy delta {r['accuracy_delta']:+.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=N_PAIRS, help="synthetic pairs to train on")
    parser.add_argument("--json", action="store_true", help="also print every figure as JSON")
    args = parser.parse_args()
    result = run(args.pairs)
    if args.json:
        print(json.dumps(result, indent=1))
    print(format_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
