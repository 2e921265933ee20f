"""Benchmark: finding planted label flips in real data, beside cleanlab.

Imports the HH-RLHF harmless-base test pairs and the JailbreakBench labeled
responses into a temporary workspace, flips 10% of the labels through the
review log (fixed seed: pairs get ``flipped``, labeled responses the other
safe/unsafe label), and runs the ``label-errors`` detector exactly as the
probe does (``load_features`` + ``out_of_fold`` on the real encoder's
embeddings; no model versions vote here, since none is registered). Our
ranking is the out-of-fold probability of the current label, lowest first;
we report precision and recall of its top k, k = the number of flips.

cleanlab's ``find_label_issues`` gets the SAME out-of-fold probabilities
framed as classification (pairs: label = "the imported chosen side is
preferred", pred_probs = [1 − q, q] with q that class's probability), ranked
by self-confidence; its precision is taken over its first min(k, m) issues
(m = how many it returns) and ours at the same list size. PASS when ours is
at least cleanlab's. Both rank by the same self-confidence, so the expected
outcome is a tie; the interesting figures are the precisions themselves.

Read the HH-RLHF figure with its ceiling in mind: published analyses put
annotator agreement on HH-RLHF near 63%, so hundreds of pairs were already
"flipped" before we planted any. Those compete with the planted flips for
the top k, and a detector that finds them is right about the data yet
counted wrong here. Random choice has precision 0.10.

    .venv/bin/python bench/bench_label_errors.py [--rate 0.1] [--seed 0] [--folds 5]
"""

from __future__ import annotations

import argparse
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
from workstation.encoder import get_encoder  # noqa: E402
from workstation.probes.label_errors import load_features, out_of_fold  # noqa: E402
from workstation.review import Edit, apply  # noqa: E402
from workstation.trust import ensure_owner  # noqa: E402
from workstation.workspace import Workspace  # noqa: E402

SHARED_DATA = Path(os.environ.get("WORKSTATION_SHARED_DATA", REPO.parent / "shared" / "data"))
HH_RLHF = SHARED_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"
JAILBREAKBENCH = SHARED_DATA / "jailbreakbench"
SOURCES = {"HH-RLHF": ("pairs", HH_RLHF, "hh"), "JailbreakBench": ("labels", JAILBREAKBENCH, "jbb")}


def trusted_signer(ws: Workspace) -> Any:
    """A throwaway identity (never written to disk) that signs the planted
    flips, made the owner of the fresh workspace so that its edits are taken."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from workstation.identity import Identity, Signer
    from workstation.offline_verify import key_id_of, public_pem_of

    key = Ed25519PrivateKey.generate()
    signer = Signer(Identity("bench", None, key_id_of(key.public_key()),
                             public_pem_of(key.public_key()), "", False), key)
    ensure_owner(ws, signer)
    return signer


def plant_flips(ws: Workspace, dataset: str, kind: str, rate: float, seed: int,
                signer: Any) -> np.ndarray:
    """Flip ``rate`` of the dataset's labels through the review log, signed by
    ``signer`` (trusted in ``ws``); returns the flipped example ids."""
    rows = ws.execute("SELECT ce.id, ce.current_label FROM current_examples ce JOIN datasets d "
                      "ON d.id = ce.dataset_id WHERE d.name = ? AND (d.kind = 'pairs' OR "
                      "ce.current_label IS NOT NULL) ORDER BY ce.id", [dataset]).fetchall()
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(rows), int(round(rate * len(rows))), replace=False))
    if kind == "pairs":
        edits = [Edit(rows[i][0], "flipped", True, "benchmark: planted flip") for i in chosen]
    else:
        edits = [Edit(rows[i][0], "label", "unsafe" if rows[i][1] else "safe",
                      "benchmark: planted flip") for i in chosen]
    apply(ws, edits, signer=signer)
    return np.array([rows[i][0] for i in chosen], dtype=np.int64)


def cleanlab_issues(given: np.ndarray, p_given: np.ndarray) -> np.ndarray:
    """cleanlab on the same probabilities: row indices of its issues, ranked.
    ``given`` is each example's current label as a class: 1 = "safe" (labels)
    or "the imported chosen side wins" (pairs)."""
    from cleanlab.filter import find_label_issues

    classes = given.astype(int)
    q = np.where(classes == 1, p_given, 1.0 - p_given)
    return np.asarray(find_label_issues(classes, np.column_stack([1.0 - q, q]),
                                        return_indices_ranked_by="self_confidence"))


def precision_recall(picked: np.ndarray, is_flip: np.ndarray) -> tuple[float, float]:
    hits = int(is_flip[picked].sum())
    return (hits / len(picked) if len(picked) else 0.0), hits / int(is_flip.sum())


def evaluate(ws: Workspace, name: str, rate: float, seed: int, folds: int,
             encoder: Any, signer: Any) -> dict[str, Any]:
    kind, path, dataset = SOURCES[name]
    import_dataset(ws, kind, path, dataset)
    flipped = plant_flips(ws, dataset, kind, rate, seed, signer)
    start = time.perf_counter()
    dataset_id = ws.execute("SELECT id FROM datasets WHERE name = ?", [dataset]).fetchall()[0][0]
    data = load_features(ws, dataset_id, kind, encoder)
    embed_seconds = time.perf_counter() - start
    start = time.perf_counter()
    oof = out_of_fold(data.features, data.labels, folds, seed, pairwise=data.pairwise)
    fit_seconds = time.perf_counter() - start
    is_flip = np.isin(data.ids, flipped)
    # the current label as a class: a pair says "the imported chosen side wins"
    # unless it was flipped; a labeled response says safe or unsafe
    given = ~is_flip if data.pairwise else data.labels
    k = len(flipped)
    ours = np.argsort(oof.probability, kind="stable")
    theirs = cleanlab_issues(given, oof.probability)
    n = min(k, len(theirs))
    ours_p, ours_r = precision_recall(ours[:k], is_flip)
    cl_p, cl_r = precision_recall(theirs[:n], is_flip)
    same_size_p, _ = precision_recall(ours[:n], is_flip)
    full_p, full_r = precision_recall(theirs, is_flip)
    return {"name": name, "n": int(len(data.ids)), "flips": k, "ours_precision": ours_p,
            "ours_recall": ours_r, "cleanlab_precision": cl_p, "cleanlab_recall": cl_r,
            "cleanlab_returned": int(len(theirs)), "cleanlab_all_precision": full_p,
            "cleanlab_all_recall": full_r, "compared_at": n,
            "ours_precision_at_compared": same_size_p, "lambda": oof.lam,
            "oof_agreement": float((oof.probability > 0.5).mean()),
            "embed_seconds": embed_seconds, "fit_seconds": fit_seconds,
            "passed": same_size_p >= cl_p - 1e-12}


def line(r: dict[str, Any]) -> str:
    verdict = "PASS" if r["passed"] else "FAIL"
    text = (f"label errors {r['name']} ({r['flips']} flips / {r['n']}): ours "
            f"P={r['ours_precision']:.2f} R={r['ours_recall']:.2f}, cleanlab "
            f"P={r['cleanlab_precision']:.2f} R={r['cleanlab_recall']:.2f} -> {verdict}")
    if r["compared_at"] < r["flips"]:
        text += (f"  [cleanlab returned {r['cleanlab_returned']}; ours at that size "
                 f"P={r['ours_precision_at_compared']:.2f}]")
    return text


def run(rate: float = 0.1, seed: int = 0, folds: int = 5) -> dict[str, Any]:
    """Both datasets in one temporary workspace; returns the figures."""
    encoder = get_encoder()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-label-errors-") as tmp:
        with Workspace.open(Path(tmp) / "ws.duckdb") as ws:
            signer = trusted_signer(ws)
            for name in SOURCES:
                results[name] = evaluate(ws, name, rate, seed, folds, encoder, signer)
    results["passed"] = all(r["passed"] for r in results.values() if isinstance(r, dict))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    for path in (HH_RLHF, JAILBREAKBENCH):
        if not path.exists():
            print(f"real data missing: {path}", file=sys.stderr)
            return 2
    results = run(args.rate, args.seed, args.folds)
    for name in SOURCES:
        r = results[name]
        print(line(r))
        print(f"  cleanlab's whole issue list: {r['cleanlab_returned']} examples, "
              f"P={r['cleanlab_all_precision']:.2f} R={r['cleanlab_all_recall']:.2f}; "
              f"random choice P={args.rate:.2f}")
        print(f"  lambda={r['lambda']:g}, out-of-fold agreement with current labels "
              f"{r['oof_agreement']:.3f}, embeddings {r['embed_seconds']:.1f} s, "
              f"cross-validation {r['fit_seconds']:.1f} s")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
