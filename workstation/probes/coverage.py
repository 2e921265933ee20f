"""Audit coverage: where audited examples and probe cases sit in a model's
input space, and how far a new input is from the nearest of them.

The safety oracle's ``coverage`` c of an input is calibrated so that
c = 0 means "audited here" and c = 1 "nothing audited nearby":

    c = min(1, d / d_ref),  d = distance to the nearest audited point,
    d_ref = min(2 × the median distance from an audited point to its
                nearest (non-identical) audited neighbour,
                the median distance between two random audited points).

So an input as close to the audited set as audited points typically are to
their neighbours gets c ≤ 0.5 ("well covered"), an audited input itself
exactly 0, and one as far away as unrelated audited points are from each
other c = 1, however sparse the audits. d_ref is estimated on a fixed-seed
sample of at most 1,024 points; with fewer than two distinct points it is 1.

Spaces (one per kind of model input, shared by every version that reads it):

* ``embedding:<encoder id>``, for text models: the *response* embedding,
  whatever the model's layout (prompt+response models included), because
  coverage asks whether responses like this one were audited; text-tokens
  models use the workspace encoder. Distances are Euclidean between the unit
  vectors (√(2 − 2·cos)).
* ``observation:<dim>``, for observation models: the observation, each
  dimension divided by its standard deviation over the audited points so that
  no single coordinate's units dominate.

Audited points of a space: the (non-excluded) examples of every dataset with
an audit or probe run by a version in the space — both sides of a pair, the
response of a labeled example, every step of a demonstration — and every
probe case of those runs with a ``text``/``response``/``chosen``/``rejected``
text or an ``obs`` vector (or list of vectors). ``record_coverage`` stores
them in ``coverage_points`` (one row per distinct point; text points keep only
their SHA-256, the vector lives in the ``embeddings`` cache) and marks the run
in ``coverage_runs``. Probe suites record themselves; queries first record
any run not recorded yet, so nothing depends on every caller remembering.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from workstation.encoder import embed_texts, get_encoder
from workstation.errors import WorkstationError
from workstation.hashing import sha256_bytes, sha256_text
from workstation.models.registry import ModelVersion, get_version, resolve
from workstation.workspace import Workspace, now_iso

COVERED_BELOW = 0.5
REF_FACTOR = 2.0
REF_SAMPLE = 1024
FALLBACK_REF = 1.0
_ZERO = 1e-6            # distances below this are the same point (float32 round-off)
_DUPLICATE = 1e-5       # squared distance, relative to the squared norms: a copy
_QUERY_BLOCK = 1024
_POINT_BLOCK = 16384
_TEXT_KEYS = ("text", "response", "chosen", "rejected")
_SIDES = {"pairs": ("current_chosen", "current_rejected"), "labels": ("response",)}


# -- spaces ------------------------------------------------------------------

def space_of(version: ModelVersion, encoder: Any = None) -> str:
    """The input space a version's coverage is measured in (see the module docstring)."""
    if version.input_kind == "observation":
        return f"observation:{int(version.manifest['input']['obs_dim'])}"
    if version.input_kind == "text-embedding":
        return f"embedding:{version.manifest['input']['encoder']}"
    return f"embedding:{_encoder(encoder).id}"


def _encoder(encoder: Any) -> Any:
    return encoder if encoder is not None else get_encoder()


def _space(ws: Workspace, space_or_version: str | int | ModelVersion, encoder: Any) -> str:
    if isinstance(space_or_version, str) and space_or_version.startswith(
            ("embedding:", "observation:")):
        return space_or_version
    return space_of(resolve(ws, space_or_version), encoder)


# -- recording ---------------------------------------------------------------

@dataclass(frozen=True)
class CoverageRecord:
    """What ``record_coverage`` did: the run's space, its audited points, and
    how many of them were new to the space."""

    run_id: int
    space: str
    n_points: int
    n_new: int


def record_coverage(ws: Workspace, run_id: int, encoder: Any = None) -> CoverageRecord:
    """Store where run ``run_id`` (audit or probe) looked, once per run.

    ``encoder`` embeds texts not cached yet (it must be the space's encoder;
    texts it cannot embed are left out of the space until they are cached)."""
    done = ws.execute("SELECT space, n_points FROM coverage_runs WHERE run_id = ?",
                      [run_id]).fetchall()
    if done:
        return CoverageRecord(run_id, done[0][0], int(done[0][1]), 0)
    row = ws.execute("SELECT r.model_version_id, r.dataset_id, d.kind FROM audit_runs r "
                     "JOIN datasets d ON d.id = r.dataset_id WHERE r.id = ?",
                     [run_id]).fetchall()
    if not row:
        raise WorkstationError(f"no audit run {run_id}")
    version_id, dataset_id, kind = row[0]
    version = get_version(ws, int(version_id))
    space = space_of(version, encoder)
    with ws.transaction():
        before = _count(ws, space)
        if space.startswith("embedding:"):
            n = _record_texts(ws, space, run_id, int(dataset_id), kind, encoder)
        else:
            n = _record_observations(ws, space, run_id, int(dataset_id), kind)
        ws.execute("INSERT INTO coverage_runs VALUES (?, ?, ?, ?)",
                   [run_id, space, n, now_iso()])
        return CoverageRecord(run_id, space, n, _count(ws, space) - before)


def _count(ws: Workspace, space: str) -> int:
    return int(ws.execute("SELECT count(*) FROM coverage_points WHERE space = ?",
                          [space]).fetchall()[0][0])


def _record_texts(ws: Workspace, space: str, run_id: int, dataset_id: int, kind: str,
                  encoder: Any) -> int:
    sides = _SIDES.get(kind, ())
    union = " UNION ALL ".join(
        f"SELECT id, coalesce({c}, '') AS t FROM current_examples "
        f"WHERE dataset_id = $dataset AND NOT excluded" for c in sides)
    texts = ws.execute(f"SELECT id, t FROM ({union}) u ORDER BY id", {"dataset": dataset_id}
                       ).fetchall() if sides else []
    cases = [(None, fid, t) for fid, case in _cases(ws, run_id) for t in _case_texts(case)]
    rows = [(eid, None, t) for eid, t in texts] + cases
    _embed_missing(ws, space, [t for _, _, t in rows], encoder)
    keyed = {}
    for example_id, finding_id, text in rows:  # the first owner of a text names it
        keyed.setdefault(sha256_text(text), (example_id, finding_id))
    _insert(ws, space, run_id, list(keyed), [v[0] for v in keyed.values()],
            [v[1] for v in keyed.values()], None)
    return len(keyed)


def _embed_missing(ws: Workspace, space: str, texts: list[str], encoder: Any) -> None:
    """Cache embeddings of texts not cached yet, if an encoder of this space is at hand."""
    encoder_id = space.split(":", 1)[1]
    unique = sorted(set(texts))
    if not unique:
        return
    table = pa.table({"h": [sha256_text(t) for t in unique], "i": range(len(unique))})
    missing = _with_table(ws, table, lambda name: ws.execute(
        f"SELECT q.i FROM {name} q WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE "
        f"e.encoder_id = ? AND e.text_sha256 = q.h)", [encoder_id]).fetchall())
    if not missing:
        return
    try:
        encoder = _encoder(encoder)
    except WorkstationError:
        return
    if encoder.id == encoder_id:
        embed_texts(ws, [unique[r[0]] for r in missing], encoder=encoder)


def _record_observations(ws: Workspace, space: str, run_id: int, dataset_id: int,
                         kind: str) -> int:
    dim = int(space.split(":", 1)[1])
    n = 0
    if kind == "demos":
        n = int(ws.execute(
            "SELECT count(*) FROM demo_steps s JOIN current_examples ce ON ce.id = s.example_id "
            "WHERE ce.dataset_id = ? AND NOT ce.excluded AND len(s.obs) = ?",
            [dataset_id, dim]).fetchall()[0][0])
        ws.execute(
            "INSERT OR IGNORE INTO coverage_points SELECT ?, 'step:' || s.example_id || ':' || "
            "s.step, ?, s.example_id, NULL, s.obs FROM demo_steps s JOIN current_examples ce "
            "ON ce.id = s.example_id WHERE ce.dataset_id = ? AND NOT ce.excluded "
            "AND len(s.obs) = ?", [space, run_id, dataset_id, dim])
    keyed: dict[str, tuple[int, np.ndarray]] = {}
    for finding_id, case in _cases(ws, run_id):
        for vec in _case_obs(case, dim):
            keyed.setdefault("obs:" + sha256_bytes(vec.tobytes()), (finding_id, vec))
    if keyed:
        _insert(ws, space, run_id, list(keyed), [None] * len(keyed),
                [v[0] for v in keyed.values()], np.stack([v[1] for v in keyed.values()]))
    return n + len(keyed)


def _cases(ws: Workspace, run_id: int) -> Iterable[tuple[int, dict[str, Any]]]:
    rows = ws.execute("SELECT id, case_data FROM findings WHERE run_id = ? AND case_data "
                      "IS NOT NULL ORDER BY id", [run_id]).fetchall()
    for finding_id, text in rows:
        case = json.loads(text)
        if isinstance(case, dict):
            yield int(finding_id), case


def _case_texts(case: dict[str, Any]) -> list[str]:
    return [case[k] for k in _TEXT_KEYS if isinstance(case.get(k), str)]


def _case_obs(case: dict[str, Any], dim: int) -> list[np.ndarray]:
    """The case's observation(s) of width ``dim`` (one vector or a list of them)."""
    try:
        obs = np.asarray(case.get("obs"), dtype=np.float32)
    except (TypeError, ValueError):
        return []
    if obs.ndim == 1:
        obs = obs[None, :]
    if obs.ndim != 2 or obs.shape[1] != dim or not np.isfinite(obs).all():
        return []
    return list(obs)


def _insert(ws: Workspace, space: str, run_id: int, keys: list[str], example_ids: list,
            finding_ids: list, vecs: np.ndarray | None) -> None:
    n = len(keys)
    if not n:
        return
    vec_column = pa.nulls(n, pa.list_(pa.float32())) if vecs is None else \
        pa.array(list(np.asarray(vecs, dtype=np.float32)), pa.list_(pa.float32()))
    table = pa.table({"k": pa.array(keys, pa.string()),
                      "e": pa.array(example_ids, pa.int64()),
                      "f": pa.array(finding_ids, pa.int64()), "v": vec_column})
    _with_table(ws, table, lambda name: ws.execute(
        f"INSERT OR IGNORE INTO coverage_points SELECT ?, k, ?, e, f, v FROM {name}",
        [space, run_id]))


def _with_table(ws: Workspace, table: pa.Table, work: Any) -> Any:
    name = f"_coverage_{id(table):x}"
    ws.con.complete()  # register() is refused while an execute() result is pending
    ws.con.register(name, table)
    try:
        return work(name)
    finally:
        ws.con.unregister(name)


def record_pending(ws: Workspace, space: str | None = None, encoder: Any = None) -> list[
        CoverageRecord]:
    """Record every run not recorded yet (only those of ``space``, if given).
    A read-only workspace is left as it is."""
    if ws.read_only:
        return []
    rows = ws.execute("SELECT r.id, r.model_version_id FROM audit_runs r WHERE NOT EXISTS "
                      "(SELECT 1 FROM coverage_runs c WHERE c.run_id = r.id) ORDER BY r.id"
                      ).fetchall()
    versions: dict[int, ModelVersion] = {}
    out = []
    for run_id, version_id in rows:
        version = versions.setdefault(version_id, get_version(ws, int(version_id)))
        if space is not None and not _may_be_in(version, space, encoder):
            continue
        out.append(record_coverage(ws, int(run_id), encoder))
    return out


def _may_be_in(version: ModelVersion, space: str, encoder: Any) -> bool:
    # Decided without loading the default encoder when the answer is plain.
    if version.input_kind == "text-tokens":
        return space.startswith("embedding:") and space_of(version, encoder) == space
    return space_of(version) == space


# -- the nearest audited point ------------------------------------------------

@dataclass
class CoverageIndex:
    """The audited points of one space, loaded for nearest-neighbour queries."""

    space: str
    points: np.ndarray        # float32 [N, D], scaled (observation spaces)
    example_ids: np.ndarray   # -1 where the point is a probe case
    scale: np.ndarray | None  # per-dimension divisor (observation spaces)
    d_ref: float

    def __len__(self) -> int:
        return len(self.points)

    def nearest(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to, and index of, the nearest audited point of each row
        (inf and -1 when nothing is audited in this space)."""
        queries = self._scaled(vectors)
        if not len(self.points):
            return np.full(len(queries), np.inf), np.full(len(queries), -1, dtype=np.int64)
        index = _nearest_index(queries, self.points)
        dist = _exact(queries, self.points[index])  # an audited point comes out exactly 0
        dist[dist < _ZERO] = 0.0
        return dist, index

    def coverage(self, vectors: np.ndarray) -> np.ndarray:
        """c = min(1, d / d_ref) per row; 1 when nothing is audited."""
        dist, _ = self.nearest(vectors)
        return np.minimum(1.0, dist / self.d_ref)

    def _scaled(self, vectors: np.ndarray) -> np.ndarray:
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or (len(self.points) and queries.shape[1] != self.points.shape[1]):
            width = self.points.shape[1] if len(self.points) else "?"
            raise WorkstationError(f"coverage in {self.space} takes {width}-wide vectors, "
                                   f"got shape {tuple(queries.shape)}")
        return queries / self.scale if self.scale is not None else queries


def _nearest_index(queries: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the nearest point per query: blocked float32 products,
    |q − p|² = |p|² − 2 q·p + const, so memory stays bounded for any N."""
    norms = np.einsum("ij,ij->i", points, points)
    best = np.empty(len(queries), dtype=np.int64)
    for qs in range(0, len(queries), _QUERY_BLOCK):
        q = queries[qs:qs + _QUERY_BLOCK]
        low = np.full(len(q), np.inf, dtype=np.float32)
        arg = np.zeros(len(q), dtype=np.int64)
        for ps in range(0, len(points), _POINT_BLOCK):
            d2 = norms[ps:ps + _POINT_BLOCK] - 2.0 * (q @ points[ps:ps + _POINT_BLOCK].T)
            j = np.argmin(d2, axis=1)
            val = d2[np.arange(len(q)), j]
            better = val < low
            low[better], arg[better] = val[better], j[better] + ps
        best[qs:qs + _QUERY_BLOCK] = arg
    return best


def reference_distance(points: np.ndarray, seed: int = 0) -> float:
    """The distance at which coverage reaches 1: REF_FACTOR × the median
    distance from a sampled point to its nearest distinct neighbour, capped at
    the median distance between two random audited points (so that an input
    as far from the audited set as unrelated audited points are from each
    other is never called covered, however sparse the audits). FALLBACK_REF
    without two distinct points."""
    if len(points) < 2:
        return FALLBACK_REF
    points = np.asarray(points, dtype=np.float32)
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(points), min(REF_SAMPLE, len(points)), replace=False)
    neighbour = _nearest_distinct(points[sample], points)
    found = neighbour >= 0
    if not found.any():
        return FALLBACK_REF
    spacing = np.median(_exact(points[sample[found]], points[neighbour[found]]))
    partner = rng.integers(0, len(points), len(sample))
    apart = _exact(points[sample], points[partner])
    apart = apart[apart >= _ZERO]  # a point paired with itself or a copy says nothing
    cap = float(np.median(apart)) if len(apart) else np.inf
    return float(min(REF_FACTOR * spacing, cap))


def _exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise distances in float64 (the searches themselves run in float32)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


def _nearest_distinct(queries: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of each query's nearest point that is not (a copy of) itself; -1 if none."""
    norms = np.einsum("ij,ij->i", points, points)
    q_norms = np.einsum("ij,ij->i", queries, queries)
    low = np.full(len(queries), np.inf, dtype=np.float32)
    arg = np.full(len(queries), -1, dtype=np.int64)
    for ps in range(0, len(points), _POINT_BLOCK):
        block = norms[ps:ps + _POINT_BLOCK]
        d2 = q_norms[:, None] + block[None] - 2.0 * (queries @ points[ps:ps + _POINT_BLOCK].T)
        # float32 round-off is ~1e-7 of the squared norms: below that it is the same point
        d2[d2 <= _DUPLICATE * (q_norms[:, None] + block[None])] = np.inf
        j = np.argmin(d2, axis=1)
        val = d2[np.arange(len(queries)), j]
        better = val < low
        low[better], arg[better] = val[better], j[better] + ps
    return arg


_indexes: dict[tuple, tuple[tuple, CoverageIndex]] = {}
_indexes_lock = threading.Lock()


def coverage_index(ws: Workspace, space_or_version: str | int | ModelVersion,
                   encoder: Any = None) -> CoverageIndex:
    """The loaded index of a space (or a version's space), after recording any
    pending run; cached per process until the space's points change."""
    space = _space(ws, space_or_version, encoder)
    record_pending(ws, space, encoder)
    state = tuple(ws.execute("SELECT count(*), max(run_id) FROM coverage_points WHERE space = ?",
                             [space]).fetchall()[0])
    key = (str(ws.path), ws.id, space)
    with _indexes_lock:
        cached = _indexes.get(key)
        if cached is not None and cached[0] == state:
            return cached[1]
    index = _load_index(ws, space)
    with _indexes_lock:
        _indexes[key] = (state, index)
    return index


def _load_index(ws: Workspace, space: str) -> CoverageIndex:
    encoder_id = space.split(":", 1)[1] if space.startswith("embedding:") else ""
    table = _arrow(
        ws, "SELECT coalesce(c.example_id, -1) AS example_id, coalesce(c.vec, e.vec) AS vec "
        "FROM coverage_points c LEFT JOIN embeddings e ON c.vec IS NULL "
        "AND e.encoder_id = ? AND e.text_sha256 = c.point_key "
        "WHERE c.space = ? AND coalesce(c.vec, e.vec) IS NOT NULL "
        "ORDER BY c.point_key", [encoder_id, space])
    points = _matrix(table.column("vec"), space)
    ids = table.column("example_id").to_numpy().astype(np.int64)
    scale = None
    if space.startswith("observation:"):
        scale = _obs_scale(points)
        points = (points / scale).astype(np.float32)
    return CoverageIndex(space, points, ids, scale, reference_distance(points))


def _arrow(ws: Workspace, sql: str, params: list[Any]) -> pa.Table:
    ws.con.complete()  # a relation is refused while an execute() result is pending
    return ws.con.sql(sql, params=params).to_arrow_table()


def _matrix(column: pa.ChunkedArray, space: str) -> np.ndarray:
    if not len(column):
        width = int(space.split(":", 1)[1]) if space.startswith("observation:") else 0
        return np.zeros((0, width), dtype=np.float32)
    lists = column.combine_chunks()
    widths = np.unique(lists.value_lengths().to_numpy(zero_copy_only=False))
    if len(widths) != 1:
        raise WorkstationError(f"coverage points of {space} have mixed widths {widths.tolist()}")
    flat = lists.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(lists), int(widths[0]))


def _obs_scale(points: np.ndarray) -> np.ndarray:
    if len(points) < 2:
        return np.ones(points.shape[1], dtype=np.float32)
    std = points.astype(np.float64).std(axis=0)
    floor = max(float(std.max()) * 1e-6, 1e-12)
    return np.where(std > floor, std, 1.0).astype(np.float32)  # constant dims keep units


def coverage(ws: Workspace, space_or_version: str | int | ModelVersion, vectors: np.ndarray,
             encoder: Any = None) -> np.ndarray:
    """Coverage in [0, 1] of each row of ``vectors`` (response embeddings or
    observations): 0 = audited here, 1 = nothing audited nearby."""
    return coverage_index(ws, space_or_version, encoder).coverage(vectors)


# -- a dataset's coverage, per category ----------------------------------------

def coverage_report(ws: Workspace, version: str | int | ModelVersion, dataset: str,
                    encoder: Any = None) -> dict[str, Any]:
    """How well the audits of ``version``'s space cover ``dataset``: overall and
    per category, the number of examples, the fraction with coverage below 0.5
    ("well covered") and the mean coverage. An example's coverage is its worse
    side for a pair, its response for a labeled example, and the mean over its
    steps for a demonstration. Excluded examples are left out."""
    version = resolve(ws, version)
    index = coverage_index(ws, version, encoder)
    ids, categories, values = _dataset_coverage(ws, version, index, dataset, encoder)
    report = {"space": index.space, "model": version.ref, "dataset": dataset,
              "n_points": len(index), "d_ref": index.d_ref, "covered_below": COVERED_BELOW,
              "overall": _figures(values), "per_category": {}}
    for name in sorted({c for c in categories if c is not None}):
        mask = np.array([c == name for c in categories], dtype=bool)
        report["per_category"][name] = _figures(values[mask])
    return report


def _figures(values: np.ndarray) -> dict[str, Any]:
    n = int(len(values))
    covered = int((values < COVERED_BELOW).sum())
    return {"n": n, "covered": covered, "covered_fraction": covered / n if n else None,
            "mean_coverage": float(values.mean()) if n else None}


def _dataset_coverage(ws: Workspace, version: ModelVersion, index: CoverageIndex,
                      dataset: str, encoder: Any) -> tuple[np.ndarray, list, np.ndarray]:
    rows = ws.execute("SELECT id, kind FROM datasets WHERE name = ?", [dataset]).fetchall()
    if not rows:
        raise WorkstationError(f"no dataset named '{dataset}'")
    dataset_id, kind = int(rows[0][0]), rows[0][1]
    if (kind == "demos") != index.space.startswith("observation:"):
        raise WorkstationError(f"model {version.ref} cannot read dataset '{dataset}' ({kind})")
    if kind == "demos":
        return _demo_coverage(ws, index, dataset_id)
    return _text_coverage(ws, index, dataset_id, kind, encoder)


def _text_coverage(ws: Workspace, index: CoverageIndex, dataset_id: int, kind: str,
                   encoder: Any) -> tuple[np.ndarray, list, np.ndarray]:
    encoder = _encoder(encoder)
    if f"embedding:{encoder.id}" != index.space:
        raise WorkstationError(f"coverage in {index.space} needs that encoder; "
                               f"this one is {encoder.id}")
    sides = _SIDES[kind]
    rows = ws.execute(f"SELECT id, current_category, {', '.join(sides)} FROM current_examples "
                      f"WHERE dataset_id = ? AND NOT excluded ORDER BY id",
                      [dataset_id]).fetchall()
    texts = [r[2 + s] for s in range(len(sides)) for r in rows]
    per_side = index.coverage(embed_texts(ws, texts, encoder=encoder)).reshape(len(sides), -1)
    values = per_side.max(axis=0) if len(rows) else np.zeros(0)
    return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows], values


def _demo_coverage(ws: Workspace, index: CoverageIndex,
                   dataset_id: int) -> tuple[np.ndarray, list, np.ndarray]:
    dim = int(index.space.split(":", 1)[1])
    meta = ws.execute("SELECT id, current_category FROM current_examples WHERE dataset_id = ? "
                      "AND NOT excluded ORDER BY id", [dataset_id]).fetchall()
    steps = _arrow(
        ws, f"SELECT s.example_id, s.obs::FLOAT[{dim}] AS obs FROM demo_steps s JOIN "
        f"current_examples ce ON ce.id = s.example_id WHERE ce.dataset_id = ? "
        f"AND NOT ce.excluded ORDER BY s.example_id, s.step", [dataset_id])
    owners = steps.column("example_id").to_numpy()
    obs = steps.column("obs").combine_chunks().flatten().to_numpy(
        zero_copy_only=False).reshape(-1, dim) if len(owners) else np.zeros((0, dim))
    values = index.coverage(obs) if len(owners) else np.zeros(0)
    ids = np.array([m[0] for m in meta], dtype=np.int64)
    at = np.searchsorted(ids, owners)
    sums = np.bincount(at, weights=values, minlength=len(ids))
    counts = np.bincount(at, minlength=len(ids))
    has = counts > 0  # a trajectory without steps has no place in the space
    return ids[has], [m[1] for m, h in zip(meta, has) if h], sums[has] / counts[has]
