"""Benchmark: how import, encode, audit and page times grow with the dataset size.

For each size (default 10k, 100k and 1M labeled responses), in a fresh
process of its own (so that one size's memory does not weigh on the next, and
each reports its own peak memory):

* import: a labels JSONL file of that size (written untimed; prompts and
  responses are the real HH-RLHF texts, each response made unique with its row
  number, so lengths are realistic) timed through ``import_dataset``, once;
  "import peak" is the process's peak memory right after it (which includes
  the setup before it: ``setup_rss_mb`` in the JSON), "peak RSS" the peak at
  the end, after the audit;
* encode: the real encoder (``embed_texts`` into a scratch workspace, nothing
  cached) on the dataset's responses, only up to ``--encode-limit`` texts
  (10k by default: the encoder runs a few hundred texts/s on a laptop, so 1M
  would take about an hour). Larger sizes are EXTRAPOLATED linearly from the
  largest measured size and printed as such, never as measurements;
* audit: ``run_audit`` with every embedding already cached (random unit
  vectors synthesised into the workspace under the model's encoder id, as
  bench_audit.py does) and a small MLP (384 -> 64 -> 2), so that the
  workstation's own work, not the model, dominates; median of ``--repeats``;
* page: ``failure_page`` of the failed rows in rank order at the middle
  offset, limit 100, with the total count; median of 7.

The verdict per column compares the time per row at the largest size with the
time per row at the smallest: a ratio up to 1.25 reads "linear or better".

    .venv/bin/python bench/bench_scale.py [--sizes 10000 100000 1000000]
        [--encode-limit 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

SIZES = (10_000, 100_000, 1_000_000)
ENCODE_LIMIT = 10_000
REPEATS = 3
PAGE_REPEATS = 7
HIDDEN = 64
DIM = 384
CHUNK = 100_000  # embeddings synthesised per insert, to bound memory at 1M
LINEAR = 1.25  # per-row time ratio up to which growth reads "linear or better"
COLUMNS = ("import", "encode", "audit", "page")


# -- one size ----------------------------------------------------------------

@lru_cache(maxsize=1)
def texts() -> tuple[list[str], list[str]]:
    """Prompts and responses to cycle through: the HH-RLHF texts when the
    shared data is there, else generated sentences of similar length."""
    from bench.bench_train import HH_RLHF, load_texts
    if HH_RLHF.exists():
        return load_texts()
    rng = np.random.default_rng(0)
    words = ["model", "answer", "safe", "request", "please", "cannot", "help", "with", "this",
             "here", "is", "how", "you", "could", "do", "it", "instead", "sorry", "the", "a"]

    def sentence(length: int) -> str:
        return " ".join(rng.choice(words, length))
    return [sentence(80) for _ in range(500)], [sentence(30) for _ in range(1000)]


def responses_of(n: int) -> list[str]:
    """The dataset's responses: real texts made unique by their row number."""
    responses = texts()[1]
    return [f"{responses[i % len(responses)]} [{i}]" for i in range(n)]


def write_labels(path: Path, n: int) -> None:
    prompts = texts()[0]
    with open(path, "w", encoding="utf-8") as f:
        for i, response in enumerate(responses_of(n)):
            f.write(json.dumps({"prompt": prompts[i % len(prompts)], "response": response,
                                "label": "safe" if (i * 7919) % 100 < 55 else "unsafe",
                                "category": f"Category {i % 10}"}) + "\n")


def synthesise_embeddings(ws: Any, encoder_id: str) -> None:
    """A random unit vector for every response, cached under ``encoder_id``
    (keyed as scoring looks them up: sha256 of the text)."""
    import pyarrow as pa

    hashes = ws.con.sql("SELECT DISTINCT sha256(coalesce(response, '')) AS h FROM examples"
                        ).to_arrow_table().column("h").combine_chunks()
    rng = np.random.default_rng(0)
    for start in range(0, len(hashes), CHUNK):
        part = hashes.slice(start, CHUNK)
        vectors = rng.standard_normal((len(part), DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        table = pa.table({"h": part, "vec": pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.ravel()), DIM)})
        ws.con.register("bench_vectors", table)
        ws.execute("INSERT INTO embeddings (encoder_id, text_sha256, vec) "
                   "SELECT ?, h, vec::FLOAT[] FROM bench_vectors", [encoder_id])
        ws.con.unregister("bench_vectors")
    ws.execute("CHECKPOINT")


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def point(n: int, repeats: int = REPEATS) -> dict[str, Any]:
    """Import, audit and page at size ``n``, and this process's peak memory."""
    from bench.bench_audit import CachedOnlyEncoder, mlp
    from workstation.audits import failure_page, run_audit
    from workstation.datasets import import_dataset
    from workstation.models import add_model_bytes
    from workstation.workspace import Workspace

    out: dict[str, Any] = {"n": n}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        _warm_up_import(Path(tmp))
        path = Path(tmp) / f"labels-{n}.jsonl"
        write_labels(path, n)
        with Workspace.open(Path(tmp) / "scale.duckdb") as ws:
            out["setup_rss_mb"] = _peak_rss_mb()
            out["import"], _ = _timed(lambda: import_dataset(ws, "labels", path, "scale",
                                                             format="labels-jsonl"))
            out["import_rss_mb"] = _peak_rss_mb()  # the peak so far: setup, then the import
            encoder = CachedOnlyEncoder()
            synthesise_embeddings(ws, encoder.id)
            add_model_bytes(ws, mlp(HIDDEN), "scale-mlp", "text-embedding", encoder=encoder)
            audits = [_timed(lambda: run_audit(ws, "scale-mlp", "scale", encoder=encoder))
                      for _ in range(repeats)]
            out["audit"] = statistics.median(t for t, _ in audits)
            run = audits[-1][1]
            middle = run.n_failures // 2
            out["page"] = statistics.median(
                _timed(lambda: failure_page(ws, run.id, verdict="failed", order_by="rank",
                                            offset=middle, limit=100))[0]
                for _ in range(PAGE_REPEATS))
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far (it never goes down)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_up_import(folder: Path) -> None:
    """One small import first, so that the timed one does not pay for loading
    the importer's modules (a cost paid once per process, not per row)."""
    from workstation.datasets import import_dataset
    from workstation.workspace import Workspace

    path = folder / "warm-up.jsonl"
    write_labels(path, 100)
    with Workspace.open(folder / "warm-up.duckdb") as ws:
        import_dataset(ws, "labels", path, "warm-up", format="labels-jsonl")


def encode_point(n: int) -> dict[str, Any]:
    """The real encoder on the size-``n`` dataset's responses, through the
    workspace cache (``embed_texts``) into an empty workspace."""
    from workstation.encoder import embed_texts, get_encoder
    from workstation.workspace import Workspace

    responses = responses_of(n)
    encoder = get_encoder()
    encoder.encode(responses[:64])  # warm-up: first-run allocations
    with tempfile.TemporaryDirectory(prefix="bench-scale-encode-") as tmp:
        with Workspace.open(Path(tmp) / "encode.duckdb") as empty:
            seconds, _ = _timed(lambda: embed_texts(empty, responses, encoder))
    return {"n": n, "encode": seconds}


# -- all sizes -----------------------------------------------------------------

def run(sizes: tuple[int, ...] = SIZES, encode_limit: int = ENCODE_LIMIT,
        repeats: int = REPEATS) -> list[dict[str, Any]]:
    """Each size in a fresh process (the encoder in another, so that its
    memory stays out of the size's peak); returns one dict per size."""
    points = []
    for n in sizes:
        p = _child(["--point", str(n), "--repeats", str(repeats)])
        if n <= encode_limit:
            p["encode"] = _child(["--encode-point", str(n)])["encode"]
        points.append(p)
    return points


def _child(args: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args],
                          capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def _encode_cells(points: list[dict[str, Any]]) -> list[str]:
    """Measured encode times, and the rest extrapolated from the largest
    measured size's rate, marked as such."""
    measured = [p for p in points if "encode" in p]
    if not measured:
        return ["not measured"] * len(points)
    rate = measured[-1]["n"] / measured[-1]["encode"]
    return [_seconds(p["encode"]) if "encode" in p else
            f"~{_seconds(p['n'] / rate)} EXTRAPOLATED" for p in points]


def verdicts(points: list[dict[str, Any]]) -> list[str]:
    """One line per column: per-row time at the largest size / at the smallest."""
    first, last = points[0], points[-1]
    span = f"{_size(first['n'])} -> {_size(last['n'])}"
    lines = []
    for column in COLUMNS:
        have = [p for p in points if column in p]
        if column == "encode" and len(have) < len(points):
            if not have:
                lines.append("  encode: not measured (the encode limit is below the smallest "
                             "size)")
                continue
            if len(have) < 2:
                lines.append(f"  encode: measured at {', '.join(_size(p['n']) for p in have)} "
                             f"only; the larger sizes are a linear extrapolation from it, "
                             f"not a measurement (growth not measured)")
                continue
            lines.append(f"  encode: {_growth(have[0], have[-1], column)} (measured "
                         f"{_size(have[0]['n'])} -> {_size(have[-1]['n'])}; larger sizes "
                         f"extrapolated)")
            continue
        text = _growth(first, last, column)
        if not text.startswith("linear"):
            text += f"; {_where(points, column)}"
        lines.append(f"  {column}: {text} ({span})")
    return lines


def _per_row(p: dict[str, Any], column: str) -> float:
    return p[column] / p["n"]


def _growth(small: dict[str, Any], large: dict[str, Any], column: str) -> str:
    ratio = _per_row(large, column) / _per_row(small, column)
    if ratio <= LINEAR:
        return f"linear or better, time per row x{ratio:.2f}"
    return f"NOT linear: time per row x{ratio:.2f}"


def _where(points: list[dict[str, Any]], column: str) -> str:
    steps = [f"{_size(a['n'])}->{_size(b['n'])} x{_per_row(b, column) / _per_row(a, column):.2f}"
             for a, b in zip(points, points[1:])]
    return "per step: " + ", ".join(steps)


def table(points: list[dict[str, Any]]) -> list[str]:
    """The printed table: one row per size, then the verdicts."""
    encode = _encode_cells(points)
    widths = (8, 10, 26, 10, 10, 10, 12)
    head = ("size", "import", "encode", "audit", "page", "peak RSS", "import peak")
    rows = [head] + [(_size(p["n"]), _seconds(p["import"]), encode[i], _seconds(p["audit"]),
                      _seconds(p["page"]), f"{p['peak_rss_mb']:.0f} MB",
                      f"{p['import_rss_mb']:.0f} MB") for i, p in enumerate(points)]
    lines = ["  " + "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip()
             for row in rows]
    return lines + ["growth (time per row, largest size vs smallest):"] + verdicts(points)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--encode-limit", type=int, default=ENCODE_LIMIT)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--point", type=int, help=argparse.SUPPRESS)  # one size, as JSON
    parser.add_argument("--encode-point", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.point or args.encode_point:
        result = point(args.point, args.repeats) if args.point else encode_point(args.encode_point)
        print(json.dumps(result))
        return 0
    print("scale: labels dataset; audit with cached embeddings, MLP 384->64->2")
    for line in table(run(tuple(args.sizes), args.encode_limit, args.repeats)):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
