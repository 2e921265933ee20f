"""Benchmark: our ONNX encoder against sentence-transformers, same texts, same run.

Texts: the last assistant turn of both sides of every HH-RLHF harmless-base
test record (4,624 texts, duplicates kept: neither side gets to dedupe).
Both encoders use batch size 64, sort by length, and get the same thread
count (all cores). Each side is warmed up on one batch, then timed
``rounds`` times, alternating which goes first; the best time of each side
counts. Nothing is cached between timed runs (``Encoder.encode`` has no cache;
the workspace cache lives in ``embed_texts``, which is not used here).

Run: ``.venv/bin/python bench/bench_encoder.py [--rounds N]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from workstation.encoder import get_encoder, model_dir, prepare_encoder  # noqa: E402

SHARED_DATA = Path(os.environ.get("WORKSTATION_SHARED_DATA", REPO.parent / "shared" / "data"))
HH_RLHF = SHARED_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"
TARGET_RATIO = 1.5
BATCH_SIZE = 64


def load_texts(path: Path = HH_RLHF) -> list[str]:
    """The last assistant turn of both sides of every record."""
    texts = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            for side in ("chosen", "rejected"):
                texts.append(record[side].rsplit("\n\nAssistant:", 1)[-1].strip())
    return texts


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    # Let the other library's idle worker threads stop spinning first, so
    # neither side is timed while the other still burns a core.
    time.sleep(1.0)
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(rounds: int = 2, n_texts: int | None = None) -> dict[str, Any]:
    """Time both encoders on the HH-RLHF responses (the first ``n_texts`` of
    them, default all); return the figures."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # keep the output to the one result line

    cores = _cores()
    torch.set_num_threads(cores)
    texts = load_texts()[:n_texts]
    prepare_encoder()  # one-time conversion, never inside the timing
    ours = get_encoder()  # its session uses intra_op_num_threads = cores
    st = SentenceTransformer(str(model_dir()), device="cpu")

    def run_ours() -> np.ndarray:
        return ours.encode(texts, batch_size=BATCH_SIZE)

    def run_st() -> np.ndarray:
        return st.encode(texts, batch_size=BATCH_SIZE, convert_to_numpy=True,
                         show_progress_bar=False)

    ours.encode(texts[:BATCH_SIZE])  # warm-up: first-run allocations
    st.encode(texts[:BATCH_SIZE], batch_size=BATCH_SIZE, show_progress_bar=False)
    best = {"ours": float("inf"), "st": float("inf")}
    outputs: dict[str, np.ndarray] = {}
    for r in range(rounds):
        order = [("ours", run_ours), ("st", run_st)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            seconds, outputs[name] = _timed(fn)
            best[name] = min(best[name], seconds)

    ref = outputs["st"]
    cosines = np.sum(outputs["ours"] * ref, axis=1) / np.linalg.norm(ref, axis=1)
    ours_tps, st_tps = len(texts) / best["ours"], len(texts) / best["st"]
    ratio = ours_tps / st_tps
    min_cos = float(cosines.min())
    return {"n_texts": len(texts), "threads": cores, "rounds": rounds, "batch_size": BATCH_SIZE,
            "ours_texts_per_s": ours_tps, "st_texts_per_s": st_tps, "ratio": ratio,
            "target_ratio": TARGET_RATIO, "parity_min_cosine": min_cos,
            "passed": bool(ratio >= TARGET_RATIO and min_cos >= 0.9999),
            "encoder_id": ours.id}


def format_line(result: dict[str, Any]) -> str:
    verdict = "PASS" if result["passed"] else "FAIL"
    return (f"encoder throughput: ours {result['ours_texts_per_s']:.1f} texts/s, "
            f"sentence-transformers {result['st_texts_per_s']:.1f} texts/s, "
            f"ratio {result['ratio']:.2f} (target >= {TARGET_RATIO}) {verdict}; "
            f"parity min cosine {result['parity_min_cosine']:.7f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2,
                        help="timed runs per encoder (the best one counts)")
    result = run(parser.parse_args().rounds)
    print(format_line(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
