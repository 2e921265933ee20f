"""Audit runs: score a dataset with a model version, judge every example
against its current label, store the results and metrics, page through failures.

Verdicts (``audit_results.passed``) and the signed ``margin``, where a
negative margin is a disagreement and the most negative the most confident:

* pairs: margin = score(chosen) - score(rejected) on the current sides; a
  pair passes when margin > 0 (a tie fails); pairs take no threshold.
* labeled responses: predicted safe when score > threshold (default 0.5 on
  probabilities, 0 on logits and rewards); margin = score - threshold for a
  safe label and threshold - score for an unsafe one, i.e. the distance from
  the threshold, negative on the wrong side. Unlabeled examples are skipped.
* demonstrations: a trajectory's score is its mean step reward (an expert
  trajectory is expected to reach the threshold, default 0.5); margin =
  mean - threshold (reversed for a trajectory relabeled unsafe).

Failures are ranked by margin, most negative first (rank 1), ties by example
id; passing rows have no rank. The run row records the review log head its
labels came from. Everything a run writes lands in one transaction: a
cancelled or failed audit leaves no trace.

Held-out first: each result row stores the example's role for the audited
version (``split``: heldout / training / validation, NULL when it was not
trained on it; ``workstation.models.membership``). The run's ``metrics`` are
over the examples the version was not trained on (the whole dataset when it
was not trained on this dataset, or its training data is unknown), so they
equal what training reported as held-out; ``training_metrics`` are over the
examples it was trained on (training and validation splits), apart; the run's
``membership`` says which is which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from workstation.audits.findings import findings_page
from workstation.audits.run_metrics import RunFigures, run_figures
from workstation.errors import WorkstationError
from workstation.models import membership as ms
from workstation.models.registry import ModelVersion, resolve
from workstation.models.scoring import ScoreResult, score_dataset
from workstation.progress import Progress
from workstation.workspace import Workspace, default_analyst, now_iso

RUN_KIND = "audit"
PREVIEW_CHARS = 200
_RUN_COLUMNS = ("id", "kind", "model_version_id", "dataset_id", "created_at", "created_by",
                "threshold", "review_head", "params", "metrics", "n_examples", "n_failures",
                "training_metrics", "membership")
# failure_page's ``split`` filter: "heldout" is every example the version was
# not trained on; "training" every one it was (training and validation splits).
SPLITS = {"all": None, "heldout": "(r.split IS NULL OR r.split = 'heldout')",
          "training": "r.split IN ('training', 'validation')"}


@dataclass
class AuditRun:
    """One audit: a model version scored on a dataset, with its metrics."""

    id: int
    model_version_id: int
    model: str
    dataset_id: int
    dataset: str
    dataset_kind: str
    metrics: dict[str, Any]
    n_examples: int
    n_failures: int
    threshold: float | None
    review_head: str
    created_at: str
    created_by: str
    kind: str = RUN_KIND
    params: dict[str, Any] = field(default_factory=dict)
    # Metrics on the examples the version was trained on (None: it was not
    # trained on this dataset, or the run predates membership records).
    training_metrics: dict[str, Any] | None = None
    # What ``metrics`` and ``training_metrics`` cover (None: not recorded).
    membership: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.id, "kind": self.kind, "model": self.model,
                "model_version_id": self.model_version_id, "dataset": self.dataset,
                "dataset_id": self.dataset_id, "dataset_kind": self.dataset_kind,
                "threshold": self.threshold, "review_head": self.review_head,
                "created_at": self.created_at, "created_by": self.created_by,
                "n_examples": self.n_examples, "n_failures": self.n_failures,
                "params": self.params, "metrics": self.metrics,
                "training_metrics": self.training_metrics, "membership": self.membership}


@dataclass
class Verdicts:
    """Per-example audit outcome, aligned with a ScoreResult's kept rows."""

    keep: np.ndarray          # which scored examples are audited (labeled)
    threshold: float | None
    margin: np.ndarray
    passed: np.ndarray
    rank: np.ndarray          # 0 for passing rows


# -- running -----------------------------------------------------------------

def run_audit(ws: Workspace, model_ref_or_version: str | int | ModelVersion, dataset_name: str,
              *, threshold: float | None = None, analyst: str | None = None,
              encoder: Any = None, progress: Progress | None = None, seed: int = 0,
              batch_size: int | None = None) -> AuditRun:
    """Score ``dataset_name`` with the model, store per-example results and
    metrics as one run, and return it (see the module docstring)."""
    from workstation.review import head_hash

    progress = progress or Progress()
    version = resolve(ws, model_ref_or_version)
    with ws.transaction():
        head = head_hash(ws)  # read in the same snapshot as the labels
        result = score_dataset(ws, version, dataset_name, encoder=encoder, progress=progress,
                               batch_size=batch_size)
        _check_finite(result)
        progress.stage_start("metrics")
        verdicts = judge(result, threshold)
        figures = run_figures(ws, version, result, verdicts, seed)
        progress.check()
        # scoring refuses any encoder but the model's, so the manifest names it
        params = {"seed": seed, "batch_size": batch_size, "score_type": result.score_type,
                  "encoder": version.manifest["input"].get("encoder"), "notes": result.notes}
        run = store_run(ws, version, result, verdicts, head, params,
                        analyst or default_analyst(), figures)
    return run


def _check_finite(result: ScoreResult) -> None:
    for name in ("score", "score_chosen", "score_rejected"):
        values = getattr(result, name)
        if values is not None and not np.isfinite(values).all():
            bad = np.flatnonzero(~np.isfinite(values))
            raise WorkstationError(
                f"model {result.model.ref} gave non-finite scores (nan/inf) for {len(bad)} "
                f"examples, e.g. example {int(result.example_ids[bad[0]])}; no audit stored")


def default_threshold(kind: str, score_type: str) -> float | None:
    """0.5 for probabilities and demonstration rewards, 0 for logits and
    rewards; none for pairs (judged by the sign of the margin)."""
    if kind == "pairs":
        return None
    if kind == "demos" or score_type == "probability":
        return 0.5
    return 0.0


def judge(result: ScoreResult, threshold: float | None = None) -> Verdicts:
    """Verdict, signed margin and failure rank of every audited example."""
    if result.dataset_kind == "pairs":
        if threshold is not None:
            raise WorkstationError("pairs are judged by the sign of the margin; a threshold "
                                   "applies to labeled responses and demonstrations only")
        t, margin = None, result.margin
        passed = margin > 0
    else:
        t = default_threshold(result.dataset_kind, result.score_type) if threshold is None \
            else float(threshold)
        safe = result.labels
        margin = np.where(safe, result.score - t, t - result.score)
        above = result.score >= t if result.dataset_kind == "demos" else result.score > t
        passed = above == safe
    keep = result.labeled.copy()
    rank = failure_ranks(margin, passed, result.example_ids, keep)
    return Verdicts(keep, t, margin, passed, rank)


def failure_ranks(margin: np.ndarray, passed: np.ndarray, example_ids: np.ndarray,
                  keep: np.ndarray) -> np.ndarray:
    """1 for the most confident failure (most negative margin; ties by id), 0 = passed."""
    failed = np.flatnonzero(~passed & keep)
    order = failed[np.lexsort((example_ids[failed], margin[failed]))]
    rank = np.zeros(len(margin), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


# -- storing -----------------------------------------------------------------

def store_run(ws: Workspace, version: ModelVersion, result: ScoreResult, verdicts: Verdicts,
              head: str, params: dict[str, Any], analyst: str, figures: RunFigures) -> AuditRun:
    """Write one audit run (its rows and metrics) from scores made here or
    elsewhere (a scale run's results); the caller holds the transaction."""
    metrics, training_metrics, membership = (figures.metrics, figures.training_metrics,
                                             figures.membership)
    run_id = ws.next_id("audit_runs")
    table = _results_table(run_id, result, verdicts, figures.roles)
    name = f"_audit_results_{run_id}"
    ws.con.complete()  # register() is refused while an execute() result is pending
    ws.con.register(name, table)
    try:
        ws.execute(f"INSERT INTO audit_results SELECT * FROM {name}")
    finally:
        ws.con.unregister(name)
    n_failures = int((verdicts.rank > 0).sum())
    dataset = _one(ws, "SELECT name FROM datasets WHERE id = ?", [result.dataset_id])[0]
    run = AuditRun(run_id, version.id, version.ref, result.dataset_id, dataset,
                   result.dataset_kind, metrics, table.num_rows, n_failures, verdicts.threshold,
                   head, now_iso(), analyst, RUN_KIND, params, training_metrics, membership)
    ws.execute(f"INSERT INTO audit_runs ({', '.join(_RUN_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_RUN_COLUMNS))})",
               [run.id, run.kind, run.model_version_id, run.dataset_id, run.created_at,
                run.created_by, run.threshold, run.review_head,
                json.dumps(params, allow_nan=False), json.dumps(metrics, allow_nan=False),
                run.n_examples, run.n_failures,
                None if training_metrics is None else json.dumps(training_metrics,
                                                                 allow_nan=False),
                json.dumps(membership, allow_nan=False)])
    return run


def _results_table(run_id: int, result: ScoreResult, verdicts: Verdicts,
                   roles: np.ndarray) -> pa.Table:
    """``audit_results`` rows in the table's column order, built column-wise."""
    keep = verdicts.keep
    n = int(keep.sum())
    kept_roles = roles[keep]
    split = pa.DictionaryArray.from_arrays(
        pa.array(kept_roles, pa.int8(), mask=kept_roles == ms.NOT_TRAINED),
        pa.array([ms.ROLE_NAMES[r] for r in range(len(ms.ROLE_NAMES))])).cast(pa.string())

    def floats(values: np.ndarray | None) -> pa.Array:
        return pa.nulls(n, pa.float64()) if values is None else pa.array(values[keep],
                                                                         pa.float64())
    rank = verdicts.rank[keep]
    return pa.table({
        "run_id": pa.array(np.full(n, run_id, dtype=np.int32)),
        "example_id": pa.array(result.example_ids[keep].astype(np.int64)),
        "score": floats(result.score), "score_chosen": floats(result.score_chosen),
        "score_rejected": floats(result.score_rejected), "margin": floats(verdicts.margin),
        "label": pa.array(result.labels[keep]), "passed": pa.array(verdicts.passed[keep]),
        "rank": pa.array(rank, pa.int64(), mask=rank == 0), "split": split})


# -- reading runs ------------------------------------------------------------

def get_run(ws: Workspace, run_id: int) -> AuditRun:
    """The audit run with id ``run_id``."""
    runs = _runs(ws, "WHERE r.id = ?", [run_id])
    if not runs:
        raise WorkstationError(f"no audit run {run_id}")
    return runs[0]


def list_runs(ws: Workspace, *, model: str | None = None, dataset: str | None = None,
              limit: int | None = None) -> list[AuditRun]:
    """Audit runs, newest first; optionally of one model (NAME or NAME@VERSION)
    or one dataset name."""
    where, params = ["r.kind = ?"], [RUN_KIND]
    if model is not None:
        if "@" in model:
            version = resolve(ws, model)
            where.append("r.model_version_id = ?")
            params.append(version.id)
        else:
            where.append("mv.model = ?")
            params.append(model)
    if dataset is not None:
        where.append("d.name = ?")
        params.append(dataset)
    tail = f" LIMIT {int(limit)}" if limit is not None else ""
    return _runs(ws, "WHERE " + " AND ".join(where), params, tail)


def _runs(ws: Workspace, where: str, params: list[Any], tail: str = "") -> list[AuditRun]:
    rows = ws.execute(
        "SELECT r.id, r.kind, r.model_version_id, mv.model || '@' || mv.version, r.dataset_id, "
        "d.name, d.kind, r.metrics, r.n_examples, r.n_failures, r.threshold, r.review_head, "
        "r.created_at, r.created_by, r.params, r.training_metrics, r.membership "
        "FROM audit_runs r JOIN model_versions mv ON mv.id = r.model_version_id "
        f"JOIN datasets d ON d.id = r.dataset_id {where} ORDER BY r.id DESC{tail}",
        params).fetchall()
    return [AuditRun(id=r[0], kind=r[1], model_version_id=r[2], model=r[3], dataset_id=r[4],
                     dataset=r[5], dataset_kind=r[6], metrics=_json(r[7]), n_examples=r[8],
                     n_failures=r[9], threshold=r[10], review_head=r[11], created_at=r[12],
                     created_by=r[13], params=_json(r[14]),
                     training_metrics=_json(r[15]) or None, membership=_json(r[16]) or None)
            for r in rows]


def _json(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


# -- failures ----------------------------------------------------------------

# Columns a page may be ordered by, and their SQL.
ORDER_COLUMNS = {
    "rank": "r.rank", "margin": "r.margin", "score": "r.score",
    "score_chosen": "r.score_chosen", "score_rejected": "r.score_rejected",
    "example_id": "r.example_id", "source_index": "ce.source_index",
    "category": "ce.current_category", "passed": "r.passed",
    "label_at_audit": "r.label", "current_label": "ce.current_label", "flipped": "ce.flipped",
    "excluded": "ce.excluded", "reviewed": "ce.reviewed", "source_id": "ce.source_id",
    "tags": "ce.tags", "note": "ce.note", "n_steps": "ce.n_steps", "prompt": "ce.prompt",
    "chosen": "ce.current_chosen", "rejected": "ce.current_rejected", "response": "ce.response",
    "split": "r.split",
}
_PAGE_FIELDS = (
    "example_id", "source_index", "source_sha256", "source_id", "dataset", "score",
    "score_chosen", "score_rejected", "margin", "passed", "rank", "label_at_audit", "category",
    "excluded", "flipped", "current_label", "n_steps", "prompt", "chosen", "rejected",
    "response", "tags", "note", "reviewed", "split")
# A dataset browsed without a run: its examples in audit_results' shape, unscored.
_BROWSE_SOURCE = (
    "(SELECT NULL::INTEGER AS run_id, e.id AS example_id, NULL::DOUBLE AS score, "
    "NULL::DOUBLE AS score_chosen, NULL::DOUBLE AS score_rejected, NULL::DOUBLE AS margin, "
    "NULL::BOOLEAN AS label, NULL::BOOLEAN AS passed, NULL::BIGINT AS rank, "
    "NULL::VARCHAR AS split FROM examples e WHERE e.dataset_id = {dataset_id})")


def failure_page(ws: Workspace, run_id: int | None, *, dataset: str | int | None = None,
                 verdict: str | None = None, category: str | Sequence[str] | None = None,
                 tag: str | None = None, reviewed: bool | None = None,
                 example_id: int | None = None, labelled_by: str | None = None,
                 assigned_to: str | None = None,
                 score_min: float | None = None, score_max: float | None = None,
                 margin_min: float | None = None, margin_max: float | None = None,
                 text: str | None = None, split: str | None = None,
                 order_by: str = "rank", descending: bool = False,
                 limit: int = 100, offset: int = 0,
                 count: bool = True) -> tuple[list[dict[str, Any]], int | None]:
    """One page of a run's results, filtered and sorted in SQL, joined to the
    current review state (labels shown are current); returns (rows, total
    matching). ``verdict`` is "failed", "passed" or None (both); ``text``
    matches prompt or response texts, case-insensitively; ``tag`` keeps
    examples carrying that tag; ``reviewed`` True/False keeps examples the
    review log has (not) touched; ``example_id`` picks one example;
    ``labelled_by`` / ``assigned_to`` (a key id) keep the examples that analyst
    holds a judgement of / is assigned; ``split``
    "heldout" keeps the examples the version was not trained on, "training"
    those it was (training and validation splits), "all" or None both (each
    row's ``split`` says which: heldout / training / validation, or None when
    the version was not trained on it). Rows are
    ordered by ``order_by`` (see ORDER_COLUMNS), empty values last, then
    example id.

    With ``run_id`` None, pages through ``dataset`` (a name or id) without a
    run: every example, unscored (score, margin, verdict and rank empty).
    ``count=False`` skips the count query (total comes back as None), for a
    table that already knows its row count."""
    source, kind, scope, scope_params = _page_scope(ws, run_id, dataset)
    where, params = _page_filters(scope, scope_params, verdict, category, tag, reviewed,
                                  example_id, score_min, score_max, margin_min, margin_max, text)
    where, params = _team_filters(where, params, labelled_by, assigned_to)
    where = _split_filter(ws, run_id, split, where)
    key, direction = _sort_key(order_by, descending)
    # Sort and page over (example id, sort key) only, then read this page's
    # results and text previews by id: a deep page (offset 500,000) sorts two
    # columns, and the texts are read for its rows alone.
    ids = [r[0] for r in ws.execute(
        f"SELECT r.example_id, {key} AS sort_key FROM {source} r{_page_joins(where + key)} "
        f"WHERE {where} ORDER BY sort_key {direction} NULLS LAST, r.example_id {direction} "
        f"LIMIT ? OFFSET ?", params + [int(limit), int(offset)]).fetchall()]
    rows = _rows_by_id(ws, source, scope, scope_params, ids)
    total = None
    if count:
        total = int(_one(ws, f"SELECT count(*) FROM {source} r{_page_joins(where)} "
                             f"WHERE {where}", params)[0])
    return [_page_row(dict(zip(_PAGE_FIELDS, row)), kind) for row in rows], total


def _rows_by_id(ws: Workspace, source: str, scope: str, scope_params: list[Any],
                ids: list[int]) -> list[tuple]:
    """The display rows of ``ids``, in that order. The ids go in as literals:
    an IN list of constants lets DuckDB skip to those rows."""
    if not ids:
        return []
    listed = ", ".join(str(int(i)) for i in ids)
    found = {row[0]: row for row in ws.execute(
        f"SELECT {_display_columns()} FROM {source} r "
        f"JOIN current_examples ce ON ce.id = r.example_id "
        f"JOIN datasets d ON d.id = ce.dataset_id "
        f"WHERE {scope} AND r.example_id IN ({listed})", scope_params).fetchall()}
    return [found[i] for i in ids if i in found]


def _page_scope(ws: Workspace, run_id: int | None,
                dataset: str | int | None) -> tuple[str, str, str, list[Any]]:
    """(row source aliased r, dataset kind, base filter, its params)."""
    if run_id is not None:
        return "audit_results", _run_kind(ws, run_id), "r.run_id = ?", [run_id]
    if dataset is None:
        raise WorkstationError("a page needs an audit run or a dataset to browse")
    column = "id" if isinstance(dataset, int) else "name"
    row = _one(ws, f"SELECT id, kind FROM datasets WHERE {column} = ?", [dataset])
    if row is None:
        raise WorkstationError(f"no dataset {dataset!r}")
    return _BROWSE_SOURCE.format(dataset_id=int(row[0])), row[1], "TRUE", []


def _page_filters(where: str, params: list[Any], verdict: str | None,
                  category: str | Sequence[str] | None, tag: str | None,
                  reviewed: bool | None, example_id: int | None,
                  score_min: float | None, score_max: float | None, margin_min: float | None,
                  margin_max: float | None, text: str | None) -> tuple[str, list[Any]]:
    clauses, params = [where], list(params)
    if verdict not in (None, "failed", "passed"):
        raise WorkstationError(f"verdict must be 'failed', 'passed' or empty, not {verdict!r}")
    if verdict is not None:
        clauses.append("r.passed" if verdict == "passed" else "NOT r.passed")
    if category is not None:
        names = [category] if isinstance(category, str) else list(category)
        clauses.append(f"ce.current_category IN ({', '.join('?' * len(names))})")
        params += names
    _review_filters(clauses, params, tag, reviewed, example_id)
    for column, low, high in (("r.score", score_min, score_max),
                              ("r.margin", margin_min, margin_max)):
        if low is not None:
            clauses.append(f"{column} >= ?")
            params.append(float(low))
        if high is not None:
            clauses.append(f"{column} <= ?")
            params.append(float(high))
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        fields = ("ce.prompt", "ce.chosen", "ce.rejected", "ce.response")
        clauses.append("(" + " OR ".join(f"{f} ILIKE ? ESCAPE '\\'" for f in fields) + ")")
        params += [pattern] * len(fields)
    return " AND ".join(clauses), params


def _split_filter(ws: Workspace, run_id: int | None, split: str | None, where: str) -> str:
    if split is not None and split not in SPLITS:
        raise WorkstationError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if SPLITS.get(split) is None:
        return where
    if run_id is None:
        raise WorkstationError("a split filter needs an audit run (whose version's training "
                               "set it refers to)")
    if _one(ws, "SELECT membership IS NULL FROM audit_runs WHERE id = ?", [run_id])[0]:
        raise WorkstationError(f"run {run_id} was audited before the workstation recorded "
                               f"which examples a version was trained on; audit again to "
                               f"filter by split")
    return f"{where} AND {SPLITS[split]}"


def _review_filters(clauses: list[str], params: list[Any], tag: str | None,
                    reviewed: bool | None, example_id: int | None) -> None:
    if tag:
        clauses.append("list_contains(ce.tags, ?)")
        params.append(str(tag))
    if reviewed is not None:
        clauses.append("ce.reviewed" if reviewed else "NOT ce.reviewed")
    if example_id is not None:
        clauses.append("r.example_id = ?")
        params.append(int(example_id))


def _team_filters(where: str, params: list[Any], labelled_by: str | None,
                  assigned_to: str | None) -> tuple[str, list[Any]]:
    for key, table in ((labelled_by, "analyst_labels"), (assigned_to, "assignments")):
        if key:
            where += (f" AND EXISTS (SELECT 1 FROM {table} t WHERE t.example_id = r.example_id "
                      "AND t.key_id = ?)")
            params = params + [str(key)]
    return where, params


def _page_joins(where: str) -> str:
    # The review state is only joined when a filter needs current values.
    return " JOIN current_examples ce ON ce.id = r.example_id" if "ce." in where else ""


def _sort_key(order_by: str, descending: bool) -> tuple[str, str]:
    if order_by not in ORDER_COLUMNS:
        raise WorkstationError(f"cannot order by {order_by!r}; choose one of "
                               f"{', '.join(ORDER_COLUMNS)}")
    return ORDER_COLUMNS[order_by], "DESC" if descending else "ASC"


def _display_columns() -> str:
    preview = [f"left(ce.{c}, {PREVIEW_CHARS})" for c in ("prompt",)] + [
        f"left(ce.current_chosen, {PREVIEW_CHARS})", f"left(ce.current_rejected, {PREVIEW_CHARS})",
        f"left(ce.response, {PREVIEW_CHARS})"]
    return ", ".join([
        "r.example_id", "ce.source_index", "ce.source_sha256", "ce.source_id", "d.name",
        "r.score", "r.score_chosen", "r.score_rejected", "r.margin", "r.passed", "r.rank",
        "r.label", "ce.current_category", "ce.excluded", "ce.flipped", "ce.current_label",
        "ce.n_steps", *preview, "ce.tags", f"left(ce.note, {PREVIEW_CHARS})", "ce.reviewed",
        "r.split"])


def _run_kind(ws: Workspace, run_id: int) -> str:
    row = _one(ws, "SELECT d.kind FROM audit_runs r JOIN datasets d ON d.id = r.dataset_id "
               "WHERE r.id = ?", [run_id])
    if row is None:
        raise WorkstationError(f"no audit run {run_id}")
    return row[0]


def _page_row(row: dict[str, Any], kind: str) -> dict[str, Any]:
    """Shape a row for display: the current label in the dataset's terms."""
    if kind == "pairs":
        row["label"] = "flipped" if row["flipped"] else "as imported"
        current = not row["flipped"]
        for key in ("response", "current_label", "n_steps"):
            row.pop(key)
    else:
        current = row["current_label"]
        if kind == "demos" and current is None:
            current = True  # an imported demonstration is expert behaviour
        row["label"] = None if current is None else ("safe" if current else "unsafe")
        row.pop("chosen")
        row.pop("rejected")
        if kind == "labels":
            row.pop("n_steps")
    row["label_changed"] = row["label_at_audit"] is not None and current != row["label_at_audit"]
    row.pop("current_label", None)
    return row


def list_failures(ws: Workspace, run_id: int, limit: int = 50, offset: int = 0, *,
                  order_by: str = "rank", descending: bool = False,
                  **filters: Any) -> list[dict[str, Any]]:
    """A run's failure cases, most confident disagreement first (rank 1);
    ``filters`` as in ``failure_page``. For a probe run: its findings, most
    severe first (``findings_page``; the only filter is ``probe``)."""
    if get_run(ws, run_id).kind == "probe":
        if filters.get("split") not in (None, "all"):
            raise WorkstationError(f"run {run_id} is a probe run; a split filter applies to "
                                   f"audit runs")
        items, _ = findings_page(ws, run_id, probe=filters.get("probe"), limit=limit,
                                 offset=offset)
        return items
    rows, _ = failure_page(ws, run_id, verdict="failed", order_by=order_by,
                           descending=descending, limit=limit, offset=offset, **filters)
    return rows


def _one(ws: Workspace, sql: str, params: Any = None) -> tuple | None:
    """The first row, reading the result to its end: DuckDB keeps a half-read
    result open, which would block a later sql()/register() on the connection."""
    rows = ws.execute(sql, params).fetchall()
    return rows[0] if rows else None
