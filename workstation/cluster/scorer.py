"""Scoring Arrow batches of a corpus with a verified scoring bundle.

``BatchScorer`` is what every Ray actor holds (it does not import ray
itself): it verifies the bundle's files, loads the model through the oracle
bundle's loader with one onnxruntime session, and the bundle's encoder for a
text-embedding model, each with ``threads`` intra-op threads. Calling it on a
batch of ``inputs.SCHEMA`` rows returns the result rows (``RESULT_SCHEMA``):
provenance, scores, margin and pass/fail judged as a local audit judges the
labels as imported (pairs pass when chosen scores above rejected; labeled
responses when the score is on the label's side of the threshold). Rows
that arrive with an error keep it and get no scores; a non-finite score is
an error too. For a text-tokens model, ``truncated`` counts the row's texts
(sides of a pair) cut to the model's maximum length, as audits count them;
it is null for other models.

Texts are embedded as the workspace does (same encoder file, same
tokenizer), so scores equal a local audit's to float precision. An actor
keeps the embeddings of recent texts (``CACHE_TEXTS``), since prompts
repeat across the pairs of one prompt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workstation.cluster import bundle as bundles
from workstation.cluster.inputs import EMBEDDING_SUFFIX

CACHE_TEXTS = 50_000  # ~75 MB of 384-d float32 vectors per actor
RESULT_SCHEMA = pa.schema([
    ("source_file", pa.string()), ("row_index", pa.int64()), ("source_id", pa.string()),
    ("category", pa.string()), ("label", pa.bool_()), ("score", pa.float64()),
    ("score_chosen", pa.float64()), ("score_rejected", pa.float64()), ("margin", pa.float64()),
    ("passed", pa.bool_()), ("error", pa.string()), ("truncated", pa.int8())])


class BatchScorer:
    """One model session (and encoder) that scores batches of input rows."""

    def __init__(self, files: dict[str, bytes], kind: str, *, threshold: float | None = None,
                 threads: int | None = 1) -> None:
        from workstation.audits.runs import default_threshold
        from workstation.oracle import SafetyOracle

        self.bundle = bundles.verify_files(files)  # before anything is loaded from it
        folder = bundles.unpack(files)
        try:
            oracle = SafetyOracle.load(folder, threads=threads)
            self.encoder = _encoder(folder, threads) \
                if (folder / bundles.ENCODER_DIR).is_dir() else None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.runner, self.manifest, self.kind = oracle.runner, oracle.manifest, kind
        self.threshold = None if kind == "pairs" else (
            default_threshold(kind, self.runner.score_type) if threshold is None
            else float(threshold))
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def __call__(self, batch: pa.Table) -> pa.Table:
        batch = self._refuse_unembedded(batch)
        ok = pc.is_null(batch.column("error")).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(ok)
        good = batch if len(rows) == batch.num_rows else batch.take(pa.array(rows, pa.int64()))
        out = _empty_scores(batch.num_rows)
        if len(rows):
            sides = ("chosen", "rejected") if self.kind == "pairs" else ("response",)
            scores, truncated = self._score(good, sides)
            for side, values in zip(sides, scores):
                out["score_chosen" if side == "chosen" else "score_rejected"
                    if side == "rejected" else "score"][rows] = values
            if truncated is not None:
                out["truncated"][rows] = truncated
        return self._judge(batch, out)

    def _refuse_unembedded(self, batch: pa.Table) -> pa.Table:
        """Without an encoder, a row lacking a needed embedding is a bad row."""
        if self.encoder is not None or self.bundle["input_kind"] != "text-embedding":
            return batch
        lacking = np.zeros(batch.num_rows, dtype=bool)
        for column in self._text_columns():
            name = column + EMBEDDING_SUFFIX
            lacking |= (pc.is_null(batch.column(name)).to_numpy(zero_copy_only=False)
                        if name in batch.schema.names else True)
        if not lacking.any():
            return batch
        error = pc.if_else(pc.and_(pa.array(lacking), pc.is_null(batch.column("error"))),
                           "no precomputed embedding, and the bundle has no encoder",
                           batch.column("error"))
        return batch.set_column(batch.schema.get_field_index("error"), "error", error)

    def _text_columns(self) -> list[str]:
        sides = ["chosen", "rejected"] if self.kind == "pairs" else ["response"]
        paired = self.manifest["input"].get("layout") == "prompt+response"
        return (["prompt"] if paired else []) + sides

    def _embedding_width(self) -> int:
        return int(self.manifest["input"]["dim"])

    # -- scores ------------------------------------------------------------------
    def _score(self, batch: pa.Table,
               sides: tuple[str, ...]) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Each side's scores, and for a tokens model each row's count of
        texts cut to the maximum length (else None)."""
        if self.bundle["input_kind"] == "text-tokens":
            # Both sides in one call: repeated texts score once (see token_batches).
            n = batch.num_rows
            prompts = batch.column("prompt").to_pylist()
            texts = [t for s in sides for t in batch.column(s).to_pylist()]
            scores, cut = self.runner.score_tokens_counted(prompts * len(sides), texts)
            return ([scores[k * n:(k + 1) * n] for k in range(len(sides))],
                    cut.reshape(len(sides), n).sum(axis=0))
        return self._score_vectors(batch, sides), None

    def _score_vectors(self, batch: pa.Table, sides: tuple[str, ...]) -> list[np.ndarray]:
        paired = self.manifest["input"].get("layout") == "prompt+response"
        prompt_vecs = self._vectors(batch, "prompt") if paired else None
        features = []
        for side in sides:
            vecs = self._vectors(batch, side)
            features.append(np.concatenate([prompt_vecs, vecs], axis=1) if paired else vecs)
        both = self.runner.score_matrix(features[0] if len(features) == 1
                                        else np.concatenate(features, axis=0))
        n = batch.num_rows
        return [both[k * n:(k + 1) * n] for k in range(len(sides))]

    def _vectors(self, batch: pa.Table, column: str) -> np.ndarray:
        """Embeddings of one text column: given ones (``*_embedding``), else
        cached, else encoded now."""
        given = column + EMBEDDING_SUFFIX
        out = np.empty((batch.num_rows, self._embedding_width()), dtype=np.float32)
        todo = np.ones(batch.num_rows, dtype=bool)
        if given in batch.schema.names:
            todo = self._given(batch.column(given), out)
        if todo.any():
            self._encode(batch.column(column).to_pylist(), np.flatnonzero(todo), out)
        return out

    def _given(self, column: pa.ChunkedArray, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` from an embedding column; returns the rows it lacks."""
        column = column.combine_chunks()
        valid = np.ones(len(column), dtype=bool)
        if column.null_count:  # only then a mask and a filtered copy
            valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
            column = column.filter(pa.array(valid))
        if len(column):
            flat = column.flatten().to_numpy(zero_copy_only=False)
            if len(flat) != len(column) * out.shape[1]:
                raise ValueError(f"an embedding column's vectors are not "
                                 f"{out.shape[1]} wide, as the bundle's encoder gives")
            vectors = flat.reshape(-1, out.shape[1])  # converted to float32 as it is copied
            if len(column) == len(out):
                out[:] = vectors  # a plain copy: no boolean-mask assignment
            else:
                out[valid] = vectors
        return ~valid

    def _encode(self, texts: list[str | None], rows: np.ndarray, out: np.ndarray) -> None:
        keys = [hashlib.sha256((texts[i] or "").encode("utf-8")).digest() for i in rows]
        missing: dict[bytes, str] = {}
        for i, key in zip(rows, keys):
            vec = self._cache.get(key)
            if vec is None:
                missing.setdefault(key, texts[i] or "")
            else:
                self._cache.move_to_end(key)
        if missing:
            fresh = self.encoder.encode(list(missing.values()))
            for key, vec in zip(missing, fresh):
                self._cache[key] = vec
            new = dict(zip(missing, fresh))
        else:
            new = {}
        for i, key in zip(rows, keys):
            out[i] = new[key] if key in new else self._cache[key]
        while len(self._cache) > CACHE_TEXTS:
            self._cache.popitem(last=False)

    # -- verdicts ----------------------------------------------------------------
    def _judge(self, batch: pa.Table, out: dict[str, np.ndarray]) -> pa.Table:
        if self.kind == "pairs":
            out["margin"] = out["score_chosen"] - out["score_rejected"]
            passed = out["margin"] > 0
        else:
            safe = batch.column("label").to_numpy(zero_copy_only=False).astype(bool)
            score, t = out["score"], self.threshold
            out["margin"] = np.where(safe, score - t, t - score)
            passed = (score > t) == safe
        scored = pc.is_null(batch.column("error")).to_numpy(zero_copy_only=False)
        finite = np.isfinite(out["margin"])
        ok = scored & finite
        error = pc.if_else(pa.array(scored & ~finite), "non-finite score",
                           batch.column("error"))
        columns = {"source_file": batch.column("source_file"),
                   "row_index": batch.column("row_index"),
                   "source_id": batch.column("source_id"), "category": batch.column("category"),
                   "label": batch.column("label")}
        for name in ("score", "score_chosen", "score_rejected", "margin"):
            columns[name] = pa.array(out[name], pa.float64(), mask=~ok | np.isnan(out[name]))
        columns["passed"] = pa.array(passed, pa.bool_(), mask=~ok)
        columns["error"] = error
        tokens = self.bundle["input_kind"] == "text-tokens"
        columns["truncated"] = pa.array(out["truncated"], pa.int8(), mask=~ok | (not tokens))
        return pa.table(columns, schema=RESULT_SCHEMA)


def _empty_scores(n: int) -> dict[str, np.ndarray]:
    out = {name: np.full(n, np.nan) for name in ("score", "score_chosen", "score_rejected")}
    out["truncated"] = np.zeros(n, dtype=np.int8)
    return out


def _encoder(folder: Any, threads: int | None) -> Any:
    from workstation.encoder import Encoder

    info = json.loads((folder / bundles.ENCODER_DIR / "encoder.json").read_text())
    return Encoder(folder / bundles.ENCODER_DIR / "encoder.onnx",
                   folder / bundles.ENCODER_DIR / "tokenizer.json", info["id"],
                   int(info["dim"]), int(info["max_seq_length"]), threads=threads)


def score_unit(scorer: BatchScorer, unit: Any, fmt: Any, out_dir: str,
               block_rows: int) -> dict[str, Any]:
    """Score one unit of work (``inputs.WorkUnit``) into its own shard in
    ``out_dir``: written under a temporary name, then renamed, so that a
    shard is whole or absent, and a retried unit rewrites the same shard.
    Returns the unit's rows, its shard, the file's sha256 when the unit
    hashes it, and this process's id."""
    import pyarrow.parquet as pq

    from workstation.cluster.inputs import unit_blocks
    from workstation.hashing import sha256_file

    final = os.path.join(out_dir, unit.shard_name)
    tmp = os.path.join(out_dir, f".{unit.shard_name}.{os.getpid()}.tmp")
    rows = 0
    with pq.ParquetWriter(tmp, RESULT_SCHEMA) as writer:
        for block in unit_blocks(unit, fmt, block_rows):
            writer.write_table(scorer(block))
            rows += block.num_rows
    os.replace(tmp, final)
    return {"path": unit.path, "shard": unit.shard_name, "rows": rows, "pid": os.getpid(),
            "sha256": sha256_file(unit.path) if unit.hashes_file else None}
