"""Scoring a dataset with a model version, in batches, as currently reviewed.

* pairs: score(prompt, current_chosen) and score(prompt, current_rejected)
  per example, and their margin (chosen - rejected);
* labeled responses: score(prompt, response);
* demonstrations: the reward of every observation in ``demo_steps``, and per
  trajectory its mean and minimum.

Excluded examples are left out. Text-embedding models read their embeddings
from the workspace cache with one join per batch (Arrow fixed-size lists
turned into numpy matrices without per-row Python), encoding only texts not
cached yet; everything returned is ordered by example id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workstation.errors import WorkstationError
from workstation.models.onnx_model import OnnxRunner
from workstation.models.registry import ModelVersion, load_runner, resolve
from workstation.progress import Progress
from workstation.workspace import Workspace

# Rows per onnxruntime call: embedding/observation models are cheap per row,
# so big batches amortise the call overhead; token models pad per batch.
# (Tokens models batch by token budget instead: see token_batches.)
DEFAULT_BATCH = {"text-embedding": 8192, "observation": 8192, "text-tokens": 4096}
_KIND_FOR_INPUT = {"text-embedding": ("pairs", "labels"), "text-tokens": ("pairs", "labels"),
                   "observation": ("demos",)}


@dataclass
class ScoreResult:
    """Scores of one dataset by one model version, ordered by example id.

    ``labels`` is the current label at scoring time: pairs TRUE while the
    imported chosen side is still preferred (not flipped); labeled responses
    TRUE = safe (``labeled`` marks which have a label at all); demonstrations
    TRUE (expert, unless relabeled). ``category_codes`` index ``category_names``
    (-1 = no category)."""

    model: ModelVersion
    dataset_id: int
    dataset_kind: str
    score_type: str
    example_ids: np.ndarray
    labels: np.ndarray
    labeled: np.ndarray
    category_codes: np.ndarray
    category_names: list[str]
    score: np.ndarray | None = None
    score_chosen: np.ndarray | None = None
    score_rejected: np.ndarray | None = None
    margin: np.ndarray | None = None
    score_min: np.ndarray | None = None
    step_rewards: np.ndarray | None = None
    step_example_ids: np.ndarray | None = None
    # Tokens models: per example, how many of its texts (sides of a pair) were
    # cut to the model's maximum length; None for other models.
    truncated: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.example_ids)


def score_dataset(ws: Workspace, version: str | int | ModelVersion, dataset_id: int | str,
                  encoder: Any = None, progress: Progress | None = None,
                  batch_size: int | None = None) -> ScoreResult:
    """Score every non-excluded example of a dataset (see the module docstring).

    ``encoder`` (text-embedding models) defaults to the workspace encoder and
    must be the one the model was registered with."""
    version = resolve(ws, version)
    dataset_id, kind, name = _dataset(ws, dataset_id)
    _check_fits(version, kind, name)
    progress = progress or Progress()
    runner = load_runner(ws, version)
    size = batch_size or DEFAULT_BATCH[version.input_kind]
    if version.input_kind == "text-embedding":
        encoder = _encoder_for(version, encoder)
        return _score_embedded(ws, version, runner, dataset_id, kind, encoder, progress, size)
    if version.input_kind == "text-tokens":
        return _score_tokenized(ws, version, runner, dataset_id, kind, progress, size)
    return _score_demos(ws, version, runner, dataset_id, progress, size)


def _dataset(ws: Workspace, dataset: int | str) -> tuple[int, str, str]:
    column = "id" if isinstance(dataset, int) else "name"
    row = _one(ws, f"SELECT id, kind, name FROM datasets WHERE {column} = ?", [dataset])
    if row is None:
        names = [r[0] for r in ws.execute("SELECT name FROM datasets ORDER BY name").fetchall()]
        known = ", ".join(names) if names else "none imported yet"
        raise WorkstationError(f"unknown dataset {dataset!r}; datasets: {known}")
    return int(row[0]), row[1], row[2]


def scorable_kinds(input_kind: str) -> tuple[str, ...]:
    """The dataset kinds a model of ``input_kind`` can score."""
    return _KIND_FOR_INPUT.get(input_kind, ())


def _check_fits(version: ModelVersion, kind: str, dataset: str) -> None:
    if kind not in _KIND_FOR_INPUT[version.input_kind]:
        raise WorkstationError(f"model {version.ref} takes {version.input_kind} input and cannot "
                               f"score dataset '{dataset}', which holds {kind}")


def _encoder_for(version: ModelVersion, encoder: Any) -> Any:
    if encoder is None:
        from workstation.encoder import get_encoder

        encoder = get_encoder()
    info = version.manifest["input"]
    wanted = info.get("encoder")
    if wanted and wanted != encoder.id:
        raise WorkstationError(f"model {version.ref} was registered for encoder {wanted}; "
                               f"this workspace encodes with {encoder.id}")
    if int(encoder.dim) != int(info["dim"]):
        raise WorkstationError(f"model {version.ref} expects {info['dim']}-d embeddings; "
                               f"encoder {encoder.id} gives {encoder.dim}")
    return encoder


# -- shared reading ----------------------------------------------------------

def _text_columns(kind: str) -> list[str]:
    return ["current_chosen", "current_rejected"] if kind == "pairs" else ["response"]


def _label_sql(kind: str) -> str:
    return "NOT ce.flipped" if kind == "pairs" else "ce.current_label"


def _count(ws: Workspace, dataset_id: int) -> int:
    return int(_one(ws, "SELECT count(*) FROM current_examples WHERE dataset_id = ? "
                    "AND NOT excluded", [dataset_id])[0])


@dataclass
class _Columns:
    """Per-example columns gathered batch by batch."""

    ids: list[np.ndarray] = field(default_factory=list)
    labels: list[pa.Array] = field(default_factory=list)
    categories: list[pa.Array] = field(default_factory=list)
    scores: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, batch: pa.RecordBatch, **scores: np.ndarray) -> None:
        self.ids.append(batch.column("id").to_numpy())
        self.labels.append(batch.column("label"))
        self.categories.append(batch.column("category"))
        for name, values in scores.items():
            self.scores.setdefault(name, []).append(values)


def _finish(cols: _Columns, version: ModelVersion, runner: OnnxRunner, dataset_id: int,
            kind: str) -> ScoreResult:
    ids = np.concatenate(cols.ids) if cols.ids else np.zeros(0, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    labels = pa.chunked_array(cols.labels, pa.bool_())
    codes, names = _category_codes(pa.chunked_array(cols.categories, pa.string()))
    result = ScoreResult(
        model=version, dataset_id=dataset_id, dataset_kind=kind,
        score_type=runner.score_type, example_ids=ids[order],
        labels=_bools(labels.fill_null(False))[order],
        labeled=_bools(pc.is_valid(labels))[order], category_codes=codes[order],
        category_names=names)
    names = ("score_chosen", "score_rejected", "margin") if kind == "pairs" else ("score",)
    for name in names:  # an empty dataset still gets (empty) score arrays
        parts = cols.scores.get(name, [np.zeros(0)])
        setattr(result, name, np.concatenate(parts)[order])
    if "truncated" in cols.scores:
        result.truncated = np.concatenate(cols.scores["truncated"])[order]
    return result


def _bools(array: pa.ChunkedArray) -> np.ndarray:
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def _category_codes(categories: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Dictionary codes (-1 for none) and names, names sorted for stable output."""
    if len(categories) == 0:
        return np.zeros(0, dtype=np.int32), []
    encoded = categories.combine_chunks().dictionary_encode()
    names = encoded.dictionary.to_pylist()
    order = np.argsort(np.array(names, dtype=object)) if names else np.zeros(0, dtype=np.int64)
    remap = np.empty(len(names) + 1, dtype=np.int32)
    remap[order] = np.arange(len(names), dtype=np.int32)
    remap[-1] = -1
    raw = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return remap[raw], [names[i] for i in order]


def _relation(ws: Workspace, sql: str, params: Any) -> Any:
    """A lazy relation for Arrow output (no extra copy of the rows). DuckDB
    refuses one while an execute() result is pending, so finish that first."""
    ws.con.complete()
    return ws.con.sql(sql, params=params)


def _stream(ws: Workspace, sql: str, params: Any, rows: int) -> Iterator[pa.RecordBatch]:
    reader = _relation(ws, sql, params).to_arrow_reader(rows)
    for batch in reader:
        if batch.num_rows:
            yield batch


# -- text embeddings ---------------------------------------------------------

def _score_embedded(ws: Workspace, version: ModelVersion, runner: OnnxRunner, dataset_id: int,
                    kind: str, encoder: Any, progress: Progress, size: int) -> ScoreResult:
    paired = runner.input_info["layout"] == "prompt+response"
    texts = (["prompt"] if paired else []) + _text_columns(kind)
    sql, params = _embedded_sql(kind, texts, encoder, dataset_id)
    for attempt in range(2):
        try:
            return _read_embedded(ws, version, runner, dataset_id, kind, sql, params, progress,
                                  size, paired, len(texts))
        except _MissingEmbeddings:
            if attempt:
                raise WorkstationError("embeddings are still missing after encoding; "
                                       "the workspace cache is inconsistent") from None
            _embed_missing(ws, texts, encoder, dataset_id, progress)
    raise AssertionError("unreachable")


class _MissingEmbeddings(Exception):
    """Some texts have no cached embedding yet (encode, then read again)."""


def _embedded_sql(kind: str, texts: list[str], encoder: Any,
                  dataset_id: int) -> tuple[str, list[Any]]:
    dim = int(encoder.dim)
    # sha256 of the text (NULL as ''), the key embed_texts caches under.
    joins = "".join(
        f" LEFT JOIN embeddings e{i} ON e{i}.encoder_id = $encoder"
        f" AND e{i}.text_sha256 = sha256(coalesce(ce.{col}, ''))"
        for i, col in enumerate(texts))
    vectors = ", ".join(f"e{i}.vec::FLOAT[{dim}] AS v{i}" for i in range(len(texts)))
    sql = (f"SELECT ce.id, {_label_sql(kind)} AS label, ce.current_category AS category, "
           f"{vectors} FROM current_examples ce{joins} "
           f"WHERE ce.dataset_id = $dataset AND NOT ce.excluded")
    return sql, {"encoder": encoder.id, "dataset": dataset_id}  # type: ignore[return-value]


def _read_embedded(ws: Workspace, version: ModelVersion, runner: OnnxRunner, dataset_id: int,
                   kind: str, sql: str, params: Any, progress: Progress, size: int,
                   paired: bool, n_texts: int) -> ScoreResult:
    total = _count(ws, dataset_id)
    progress.stage_start("scoring", total)
    cols, done = _Columns(), 0
    for batch in _stream(ws, sql, params, size):
        vectors = [_matrix(batch.column(f"v{i}")) for i in range(n_texts)]
        if paired:
            prompt, responses = vectors[0], vectors[1:]
            vectors = [np.concatenate([prompt, r], axis=1) for r in responses]
        cols.add(batch, **_score_sides(runner, kind, vectors, progress))
        done += batch.num_rows
        progress.step(done, total)
    return _finish(cols, version, runner, dataset_id, kind)


def _matrix(column: pa.Array) -> np.ndarray:
    """A FLOAT[D] Arrow column as a float32 [N, D] matrix (one flat buffer)."""
    if column.null_count:
        raise _MissingEmbeddings()
    width = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


def _score_sides(runner: OnnxRunner, kind: str, inputs: list[np.ndarray],
                 progress: Progress) -> dict[str, np.ndarray]:
    if kind != "pairs":
        return {"score": runner.score_matrix(inputs[0], progress)}
    n = len(inputs[0])
    # One call for both sides: fewer, larger onnxruntime runs.
    both = runner.score_matrix(np.concatenate(inputs, axis=0), progress)
    chosen, rejected = both[:n], both[n:]
    return {"score_chosen": chosen, "score_rejected": rejected, "margin": chosen - rejected}


def _embed_missing(ws: Workspace, texts: list[str], encoder: Any, dataset_id: int,
                   progress: Progress) -> None:
    from workstation.encoder import embed_texts

    union = " UNION ".join(f"SELECT coalesce({c}, '') AS t FROM current_examples "
                           f"WHERE dataset_id = $dataset AND NOT excluded" for c in texts)
    missing = ws.execute(
        f"SELECT t FROM ({union}) u WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
        f"WHERE e.encoder_id = $encoder AND e.text_sha256 = sha256(u.t)) ORDER BY t",
        {"dataset": dataset_id, "encoder": encoder.id}).fetchall()
    embed_texts(ws, [r[0] for r in missing], encoder=encoder, progress=progress)


# -- model tokens ------------------------------------------------------------

def _score_tokenized(ws: Workspace, version: ModelVersion, runner: OnnxRunner, dataset_id: int,
                     kind: str, progress: Progress, size: int) -> ScoreResult:
    """Both sides of a chunk of ``size`` examples go to the runner in one call,
    so that repeated texts are scored once and batches mix the sides."""
    sides = _text_columns(kind)
    texts = ", ".join(f"ce.{c} AS t{i}" for i, c in enumerate(sides))
    sql = (f"SELECT ce.id, {_label_sql(kind)} AS label, ce.current_category AS category, "
           f"ce.prompt, {texts} FROM current_examples ce "
           f"WHERE ce.dataset_id = ? AND NOT ce.excluded")
    total = _count(ws, dataset_id)
    progress.stage_start("scoring", total)
    cols, done = _Columns(), 0
    for batch in _stream(ws, sql, [dataset_id], size):
        n = batch.num_rows
        prompts = batch.column("prompt").to_pylist() * len(sides)
        responses = [t for i in range(len(sides)) for t in batch.column(f"t{i}").to_pylist()]
        scores, cut = runner.score_tokens_counted(prompts, responses, progress)
        truncated = cut.reshape(len(sides), n).sum(axis=0)
        if kind == "pairs":
            chosen, rejected = scores[:n], scores[n:]
            cols.add(batch, score_chosen=chosen, score_rejected=rejected,
                     margin=chosen - rejected, truncated=truncated)
        else:
            cols.add(batch, score=scores, truncated=truncated)
        done += n
        progress.step(done, total)
    return _finish(cols, version, runner, dataset_id, kind)


# -- demonstrations ----------------------------------------------------------

def _score_demos(ws: Workspace, version: ModelVersion, runner: OnnxRunner, dataset_id: int,
                 progress: Progress, size: int) -> ScoreResult:
    width = int(runner.input_info["obs_dim"])
    _check_obs_width(ws, version, dataset_id, width)
    meta = _relation(
        ws, "SELECT ce.id, coalesce(ce.current_label, true) AS label, "
        "ce.current_category AS category FROM current_examples ce "
        "WHERE ce.dataset_id = ? AND NOT ce.excluded ORDER BY ce.id",
        [dataset_id]).to_arrow_table()
    total = int(_one(
        ws, "SELECT count(*) FROM demo_steps s JOIN current_examples ce ON ce.id = s.example_id "
        "WHERE ce.dataset_id = ? AND NOT ce.excluded", [dataset_id])[0])
    rewards, owners = _step_rewards(ws, runner, dataset_id, width, progress, total, size)
    return _demo_result(version, runner, dataset_id, meta, rewards, owners)


def _check_obs_width(ws: Workspace, version: ModelVersion, dataset_id: int, width: int) -> None:
    row = _one(
        ws, "SELECT min(len(s.obs)), max(len(s.obs)) FROM demo_steps s JOIN examples e "
        "ON e.id = s.example_id WHERE e.dataset_id = ?", [dataset_id])
    if row[0] is not None and (row[0] != width or row[1] != width):
        found = row[0] if row[0] == row[1] else f"{row[0]}..{row[1]}"
        raise WorkstationError(f"model {version.ref} takes observations of width {width}; "
                               f"the dataset's observations have width {found}")


def _step_rewards(ws: Workspace, runner: OnnxRunner, dataset_id: int, width: int,
                  progress: Progress, total: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    sql = (f"SELECT s.example_id, s.obs::FLOAT[{width}] AS obs FROM demo_steps s "
           f"JOIN current_examples ce ON ce.id = s.example_id "
           f"WHERE ce.dataset_id = ? AND NOT ce.excluded ORDER BY s.example_id, s.step")
    progress.stage_start("scoring", total)
    rewards, owners, done = [], [], 0
    for batch in _stream(ws, sql, [dataset_id], size):
        rewards.append(runner.score_matrix(_matrix_or_fail(batch.column("obs")), progress))
        owners.append(batch.column("example_id").to_numpy())
        done += batch.num_rows
        progress.step(done, total)
    if not rewards:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(rewards), np.concatenate(owners)


def _matrix_or_fail(column: pa.Array) -> np.ndarray:
    if column.null_count:
        raise WorkstationError("a demonstration step has no observation")
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, column.type.list_size)


def _demo_result(version: ModelVersion, runner: OnnxRunner, dataset_id: int, meta: pa.Table,
                 rewards: np.ndarray, owners: np.ndarray) -> ScoreResult:
    ids = meta.column("id").to_numpy()
    # Steps arrive sorted by example id, so each trajectory is one run.
    starts = np.searchsorted(owners, ids, side="left")
    ends = np.searchsorted(owners, ids, side="right")
    has_steps = ends > starts
    sums = np.add.reduceat(rewards, starts[has_steps]) if len(rewards) else np.zeros(0)
    counts = (ends - starts)[has_steps]
    mins = np.minimum.reduceat(rewards, starts[has_steps]) if len(rewards) else np.zeros(0)
    keep = meta.filter(pa.array(has_steps))
    codes, names = _category_codes(keep.column("category"))
    result = ScoreResult(
        model=version, dataset_id=dataset_id, dataset_kind="demos",
        score_type=runner.score_type, example_ids=ids[has_steps],
        labels=_bools(keep.column("label")), labeled=np.ones(int(has_steps.sum()), dtype=bool),
        category_codes=codes, category_names=names, score=sums / np.maximum(counts, 1),
        score_min=mins, step_rewards=rewards, step_example_ids=owners)
    if not has_steps.all():
        result.notes.append(f"{int((~has_steps).sum())} trajectories without steps were left out")
    return result


def _one(ws: Workspace, sql: str, params: Any = None) -> tuple | None:
    """The first row, reading the result to its end: DuckDB keeps a half-read
    result open, which would block a later sql()/register() on the connection."""
    rows = ws.execute(sql, params).fetchall()
    return rows[0] if rows else None


# -- arbitrary inputs (probes, the oracle, patches, the GUI) -----------------

def text_features(ws: Workspace, version: ModelVersion, prompts: Sequence[str | None],
                  responses: Sequence[str | None], encoder: Any = None,
                  progress: Progress | None = None) -> np.ndarray:
    """The model's input matrix for (prompt, response) texts of a
    text-embedding model: response embeddings, or prompt embeddings followed by
    response embeddings, per the model's layout (cached embeddings)."""
    from workstation.encoder import embed_texts

    encoder = _encoder_for(version, encoder)
    prompts = ["" if p is None else p for p in prompts]
    responses = ["" if r is None else r for r in responses]
    paired = version.manifest["input"]["layout"] == "prompt+response"
    texts = (prompts if paired else []) + responses
    vectors = embed_texts(ws, texts, encoder=encoder, progress=progress)
    if not paired:
        return vectors
    n = len(responses)
    return np.concatenate([vectors[:n], vectors[n:]], axis=1)


def score_texts(ws: Workspace, version: str | int | ModelVersion,
                prompts: Sequence[str | None], responses: Sequence[str | None],
                encoder: Any = None, progress: Progress | None = None) -> np.ndarray:
    """Scores of (prompt, response) texts, in input order, by a text model."""
    version = resolve(ws, version)
    runner = load_runner(ws, version)
    if version.input_kind == "text-tokens":
        return runner.score_tokens(list(prompts), list(responses), progress)
    if version.input_kind != "text-embedding":
        raise WorkstationError(f"model {version.ref} takes {version.input_kind}, not text")
    return runner.score_matrix(text_features(ws, version, prompts, responses, encoder, progress),
                               progress)


def score_observations(ws: Workspace, version: str | int | ModelVersion,
                       obs: np.ndarray) -> np.ndarray:
    """Scores of observation vectors [N, obs_dim] by an observation model."""
    version = resolve(ws, version)
    if version.input_kind != "observation":
        raise WorkstationError(f"model {version.ref} takes {version.input_kind}, not observations")
    obs = np.asarray(obs, dtype=np.float32)
    width = int(version.manifest["input"]["obs_dim"])
    if obs.ndim != 2 or obs.shape[1] != width:
        raise WorkstationError(f"model {version.ref} takes {width}-wide observations, "
                               f"got shape {tuple(obs.shape)}")
    return load_runner(ws, version).score_matrix(obs)
