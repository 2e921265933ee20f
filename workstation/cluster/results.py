"""A scale run's results folder: Parquet shards, ``bundle.json`` and ``_SUCCESS``.

Every input record is one row of ``scorer.RESULT_SCHEMA`` in some shard
(``*.parquet``): its source file, row index and source id, the scores,
margin and pass/fail, or the reason it could not be scored (``error``).
``_SUCCESS`` is written last, so a folder without it is an unfinished run:
the format, the bundle (its hash, the model and its sha256), the input
format and kind, each input file with its sha256, rows, scored and bad
rows (by reason) and whether its row indexes are exactly 0..n-1 once each,
the totals, the metrics over every scored row (labels as in the input
files; for a tokens model with the rows and sides cut to its maximum
length, as an audit counts them), where and how it ran, and the shards
with their sizes.

``summarise`` reads the shards back (only the small columns) to count and
check what was written: a lost or doubled row shows as an incomplete file.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workstation.errors import WorkstationError

FORMAT = "workstation.scale-results/1"
SUCCESS = "_SUCCESS"
BUNDLE_COPY = "bundle.json"
SHARD_GLOB = "*.parquet"
_SUMMARY_COLUMNS = ["source_file", "row_index", "category", "label", "score", "margin", "error",
                    "truncated"]


@dataclass
class FileSummary:
    """What the shards hold for one input file."""

    path: str
    rows: int = 0
    bad: Counter = field(default_factory=Counter)
    indexes: list[np.ndarray] = field(default_factory=list)
    file_error: str | None = None

    def record(self) -> dict[str, Any]:
        records = np.sort(np.concatenate(self.indexes)) if self.indexes else np.zeros(0, np.int64)
        complete = bool(np.array_equal(records, np.arange(len(records))))
        bad = sum(self.bad.values())
        return {"path": self.path, "rows": len(records), "scored": len(records) - bad,
                "bad": bad, "bad_reasons": dict(self.bad.most_common()),
                "row_indexes_complete": complete, "file_error": self.file_error}


@dataclass
class Summary:
    """Per-file records and the scored rows' columns (for the metrics)."""

    files: dict[str, FileSummary]
    margin: np.ndarray
    score: np.ndarray
    label: np.ndarray
    category: pa.ChunkedArray
    truncated: np.ndarray  # per scored row, its texts cut to the maximum length (tokens models)


def shards(folder: str | Path) -> list[Path]:
    return sorted(Path(folder).glob(SHARD_GLOB))


def summarise(folder: str | Path, inputs: list[str]) -> Summary:
    """Read the shards' small columns back and count per input file."""
    import pyarrow.dataset as pads

    files = {p: FileSummary(p) for p in inputs}
    margins, scores, labels, categories, truncated = [], [], [], [], []
    found = shards(folder)
    if not found:
        return Summary(files, np.zeros(0), np.zeros(0), np.zeros(0, bool),
                       pa.chunked_array([], pa.string()), np.zeros(0, np.int64))
    data = pads.dataset([str(p) for p in found], format="parquet")
    for batch in data.to_batches(columns=_SUMMARY_COLUMNS, batch_size=1 << 16):
        _add_batch(files, batch)
        ok = pc.is_null(batch.column("error")).to_numpy(zero_copy_only=False)
        keep = pa.array(ok)
        margins.append(batch.column("margin").filter(keep).to_numpy(zero_copy_only=False))
        scores.append(batch.column("score").filter(keep).fill_null(np.nan)
                      .to_numpy(zero_copy_only=False))
        labels.append(batch.column("label").filter(keep).fill_null(False)
                      .to_numpy(zero_copy_only=False))
        categories.append(batch.column("category").filter(keep))
        truncated.append(batch.column("truncated").filter(keep).fill_null(0)
                         .to_numpy(zero_copy_only=False))
    return Summary(files, np.concatenate(margins), np.concatenate(scores),
                   np.concatenate(labels).astype(bool), pa.chunked_array(categories, pa.string()),
                   np.concatenate(truncated).astype(np.int64))


def _add_batch(files: dict[str, FileSummary], batch: pa.RecordBatch) -> None:
    """Count one batch of shard rows per input file: row indexes, bad rows
    by reason, and a file's own error (row index < 0). Only the rows with an
    error are turned into Python objects."""
    names = batch.column("source_file")
    index = batch.column("row_index").to_numpy(zero_copy_only=False)
    error = batch.column("error")
    erred = pc.is_valid(error).to_numpy(zero_copy_only=False)
    real = index >= 0
    for name in pc.unique(names).to_pylist():
        mine = pc.equal(names, name).to_numpy(zero_copy_only=False)
        summary = files.setdefault(str(name), FileSummary(str(name)))
        summary.indexes.append(index[mine & real])
        for i in np.flatnonzero(mine & ~real):
            summary.file_error = error[int(i)].as_py()
        bad = np.flatnonzero(mine & real & erred)
        if len(bad):
            summary.bad.update(error.take(pa.array(bad, pa.int64())).to_pylist())


# -- metrics over every scored row -----------------------------------------------------

def metrics_of(summary: Summary, kind: str, score_type: str,
               threshold: float | None, seed: int = 0, tokens: bool = False) -> dict[str, Any]:
    """The audit metrics JSON over every scored row, as a local audit of the
    unreviewed files would compute them (``audits.run_metrics.audit_metrics``);
    ``tokens``: a text-tokens model's, with its truncation counts."""
    from workstation.audits.run_metrics import audit_metrics
    from workstation.audits.runs import judge
    from workstation.models.scoring import ScoreResult

    n = len(summary.margin)
    codes, names = category_codes(summary.category)
    result = ScoreResult(
        model=None, dataset_id=0, dataset_kind=kind, score_type=score_type,  # type: ignore[arg-type]
        example_ids=np.arange(n, dtype=np.int64),
        labels=np.ones(n, bool) if kind == "pairs" else summary.label,
        labeled=np.ones(n, bool), category_codes=codes, category_names=names,
        truncated=summary.truncated if tokens else None)
    if kind == "pairs":
        result.margin = summary.margin
    else:
        result.score = summary.score
    return audit_metrics(result, judge(result, threshold), seed)


def category_codes(categories: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Codes into the sorted category names (-1: none), as scoring makes them."""
    if len(categories) == 0:
        return np.zeros(0, np.int32), []
    encoded = categories.combine_chunks().dictionary_encode()
    names = encoded.dictionary.to_pylist()
    order = sorted(range(len(names)), key=lambda k: names[k])
    remap = np.full(len(names) + 1, -1, dtype=np.int32)
    remap[order] = np.arange(len(names), dtype=np.int32)
    raw = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return remap[raw], [names[k] for k in order]


# -- the manifest --------------------------------------------------------------------------

def finish(folder: str | Path, files: dict[str, bytes], paths: list[Path], hashes: list[str],
           form: Any, threshold: float | None, where: dict[str, Any],
           seconds: float) -> dict[str, Any]:
    """Read the written shards back, then write bundle.json and ``_SUCCESS``
    (``files``: the bundle's; ``hashes``: the inputs' sha256, in order)."""
    from workstation.cluster import bundle as bundles

    folder = Path(folder)
    summary = summarise(folder, [str(p) for p in paths])
    listed = [{**summary.files[str(p)].record(), "sha256": sha, "size": p.stat().st_size}
              for p, sha in zip(paths, hashes)]
    statement = json.loads(files[bundles.MANIFEST])
    metrics = metrics_of(summary, form.kind, statement["score_type"],
                         None if form.kind == "pairs" else threshold,
                         tokens=statement["input_kind"] == "text-tokens")
    rows = sum(f["rows"] for f in listed)
    scored = sum(f["scored"] for f in listed)
    manifest = {
        "bundle": {"sha256": bundles.bundle_sha256(files), "model": statement["model"],
                   "model_sha256": statement["model_sha256"],
                   "key_id": statement["signature"]["key_id"]},
        "kind": form.kind, "input_format": form.name, "score_type": statement["score_type"],
        "threshold": metrics["threshold"], "inputs": listed, "rows": rows, "scored": scored,
        "bad": rows - scored,
        "complete": all(f["row_indexes_complete"] and not f["file_error"] for f in listed),
        "metrics": metrics, "where": where, "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1) if seconds > 0 else None,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "shards": shard_listing(folder)}
    (folder / BUNDLE_COPY).write_bytes(files[bundles.MANIFEST])
    write_manifest(folder, manifest)
    return {"format": FORMAT, **manifest}


# -- reading and writing the manifest -----------------------------------------------------

def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``_SUCCESS`` last and atomically: its presence means finished."""
    folder = Path(folder)
    tmp = folder / f".{SUCCESS}.tmp"
    tmp.write_text(json.dumps({"format": FORMAT, **manifest}, indent=1, sort_keys=True,
                              allow_nan=False))
    os.replace(tmp, folder / SUCCESS)
    return folder / SUCCESS


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The results' ``_SUCCESS`` manifest; refused when the run did not finish."""
    path = Path(folder) / SUCCESS
    if not Path(folder).is_dir():
        raise WorkstationError(f"no results folder at {folder}")
    if not path.is_file():
        raise WorkstationError(f"{folder} has no {SUCCESS}: the scale run did not finish "
                               f"(or this is not a results folder); run it again")
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise WorkstationError(f"{path} is not readable JSON") from None
    if manifest.get("format") != FORMAT:
        raise WorkstationError(f"{path}: not scale results of format {FORMAT}")
    return manifest


def shard_listing(folder: str | Path) -> list[dict[str, Any]]:
    return [{"name": p.name, "size": p.stat().st_size} for p in shards(folder)]
