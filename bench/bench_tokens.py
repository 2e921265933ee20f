"""Benchmark: a tokens reward model through the workstation's scoring path
against the plain onnxruntime loop a user would write, same texts, same run.

Model: ``bert-cls`` from ``tests/hf_models.py`` (MiniLM BertForSequenceClassification,
fp32, legacy export, registered as ``text-tokens``, default ``pair`` format:
a text without prompt is encoded alone; truncation at the tokenizer's 128).
Texts: the first 5,000 distinct responses (the text after the last
``\\n\\nAssistant:`` of both sides) of HH-RLHF harmless-base test, in file order
(the file holds 4,565 distinct ones: all of them are used).

* ours: ``workstation.models.scoring.score_texts`` on a workspace holding the
  model (tokenize once, sort by token length, batch by token budget, pad
  within a batch, explicit session threads, scores back in input order);
* baseline: the model's ``tokenizer.json`` (truncation 128, padding to the
  longest of each batch) and a default ``onnxruntime.InferenceSession``, fixed
  batches of 32 in file order.

Sessions are made before timing. Rounds alternate which side goes first; the
medians count. Scores must agree to 1e-5.

Run: ``.venv/bin/python bench/bench_tokens.py [--rounds N] [--n N] [--models DIR]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from tests.hf_models import HH_RLHF, JAILBREAKBENCH, build_bert_cls  # noqa: E402,F401

TARGET_RATIO = 1.5
TOLERANCE = 1e-5
N_TEXTS = 5000
BASELINE_BATCH = 32


def load_responses(n: int, path: Path = HH_RLHF) -> list[str]:
    """The first ``n`` distinct responses of both sides, in file order."""
    seen: dict[str, None] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            for side in ("chosen", "rejected"):
                seen.setdefault(record[side].rsplit("\n\nAssistant:", 1)[-1].strip(), None)
            if len(seen) >= n:
                break
    return list(seen)[:n]


def baseline_scorer(model_dir: Path) -> Any:
    """What a user would write: default session, fixed batches of 32, padded
    to the longest of each batch, in file order."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    session = ort.InferenceSession(str(model_dir / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=128)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def score(texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), BASELINE_BATCH):
            enc = tokenizer.encode_batch(texts[start:start + BASELINE_BATCH])
            feeds = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                     "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                     "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
            out.append(session.run(["logits"], feeds)[0][:, 0])
        return np.concatenate(out).astype(np.float64)
    return score


def workstation_scorer(model_dir: Path, workspace: Path) -> Any:
    from workstation.models.registry import add_model, load_runner
    from workstation.models.scoring import score_texts
    from workstation.workspace import Workspace

    ws = Workspace.open(workspace)
    version = add_model(ws, model_dir / "model.onnx", "bert-cls", "text-tokens")
    load_runner(ws, version)  # the session is made before timing, as the baseline's

    def score(texts: list[str]) -> np.ndarray:
        return score_texts(ws, version, [None] * len(texts), texts)
    return score


def run(rounds: int = 3, n_texts: int = N_TEXTS, models: Path | None = None) -> dict[str, Any]:
    """Time both sides ``rounds`` times, alternating; medians and the ratio."""
    texts = load_responses(n_texts)
    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as tmp:
        model_dir = models / "bert-cls" if models else Path(tmp) / "bert-cls"
        if not (model_dir / "model.onnx").exists():
            build_bert_cls(model_dir)
        ours, theirs = workstation_scorer(model_dir, Path(tmp) / "ws.duckdb"), \
            baseline_scorer(model_dir)
        times: dict[str, list[float]] = {"ours": [], "baseline": []}
        scores: dict[str, np.ndarray] = {}
        for r in range(rounds):
            sides = [("ours", ours), ("baseline", theirs)]
            for name, fn in sides if r % 2 == 0 else sides[::-1]:
                start = time.perf_counter()
                scores[name] = fn(texts)
                times[name].append(time.perf_counter() - start)
    ours_s, base_s = statistics.median(times["ours"]), statistics.median(times["baseline"])
    diff = float(np.max(np.abs(scores["ours"] - scores["baseline"])))
    ratio = base_s / ours_s
    return {"n_texts": len(texts), "rounds": rounds, "ours_s": ours_s, "baseline_s": base_s,
            "ours_texts_per_s": len(texts) / ours_s, "baseline_texts_per_s": len(texts) / base_s,
            "ratio": ratio, "max_abs_diff": diff, "times": times,
            "passed": ratio >= TARGET_RATIO and diff <= TOLERANCE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=N_TEXTS)
    parser.add_argument("--models", type=Path, help="a folder of built test models to reuse")
    args = parser.parse_args()
    print(json.dumps(run(args.rounds, args.n, args.models), indent=1))


if __name__ == "__main__":
    main()
