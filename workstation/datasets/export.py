"""Export a dataset as reviewed, with a manifest beside it.

Rows come from the view ``current_examples``: flipped pairs are written with
chosen and rejected swapped, edited labels and categories replace the
imported ones. Columns:

- pairs: ``prompt, chosen, rejected`` (TRL's explicit-prompt format);
- labels: ``prompt, response, label, category`` with label "safe"/"unsafe";
- demos: JSONL only, one trajectory a line ``{"obs": [[...]], "acts": [...]}``
  (Parquet and CSV are refused: trajectories are nested lists);

and every row also carries ``source_sha256, source_index, source_id`` so the
provenance survives (the importers keep them in ``meta.extra`` on re-import).
Excluded examples are left out unless ``include_excluded`` (then an
``excluded`` column says which); ``reviewed_only`` keeps only examples with a
review state or review-log entries. Formats: ``jsonl``, ``parquet``, ``csv``.

The file is written to a temporary name in the same folder and renamed into
place; ``OUT.manifest.json`` records the workspace id, the dataset, its source
hashes, the number of review-log edits on its examples, the log's head hash,
the export time, the file's sha256, the row count and the filters.

CSV cells that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return, as OWASP lists them) are
written with a ``'`` in front, so opening the export cannot run anything;
a cell that already starts with quotes before such a character gets one
more, so the workstation's own CSV import (which reads the manifest) takes
exactly one off again. The manifest's ``csv_formula_guard`` says so and
counts the cells per column.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workstation import __version__
from workstation.datasets.reading import FORMULA_CHARS, FORMULA_PREFIX
from workstation.errors import WorkstationError
from workstation.hashing import sha256_file
from workstation.progress import Progress, null_progress
from workstation.workspace import Workspace, now_iso

FORMATS = ("jsonl", "parquet", "csv")
_PROVENANCE = "source_sha256, source_index, source_id"
_COLUMNS = {
    "pairs": "prompt, current_chosen AS chosen, current_rejected AS rejected",
    "labels": ("prompt, response, CASE current_label WHEN true THEN 'safe' "
               "WHEN false THEN 'unsafe' END AS label, current_category AS category"),
    "demos": "id, n_steps, meta",
}
_BATCH = 2048
# OWASP's CSV injection triggers; quotes before one are escaped too (see above).
FORMULA_START = f"^{FORMULA_PREFIX}*[{FORMULA_CHARS}]"


@dataclass
class ExportReport:
    path: Path
    manifest_path: Path
    rows: int
    sha256: str
    manifest: dict


@dataclass(frozen=True)
class _Dataset:
    id: int
    name: str
    kind: str
    format: str
    source_sha256: str
    report: Any


def export_dataset(ws: Workspace, dataset: str, fmt: str, out: str | Path,
                   reviewed_only: bool = False, include_excluded: bool = False,
                   progress: Progress | None = None) -> ExportReport:
    """Write ``dataset`` as reviewed to ``out`` in ``fmt``, plus its manifest."""
    progress = progress or null_progress()
    ds = _find_dataset(ws, dataset)
    fmt = _check_format(ds, fmt)
    out = _check_out(Path(out))
    manifest_path = out.with_name(out.name + ".manifest.json")
    where, params = _filters(ds, reviewed_only, include_excluded)
    columns = f"{_COLUMNS[ds.kind]}, {_PROVENANCE}" + (", excluded" if include_excluded else "")
    table = _arrow(ws, f"SELECT {columns} FROM current_examples WHERE {where} ORDER BY id",
                   params)
    progress.stage_start(f"exporting {ds.name}", max(table.num_rows, 1))
    guarded = None
    if fmt == "csv":
        table, guarded = guard_formulas(table)
    if ds.kind == "demos":
        def write(tmp: Path) -> None:
            _write_demos(ws, table, tmp, progress)
    else:
        def write(tmp: Path) -> None:
            _WRITERS[fmt](table, tmp, progress)
    sha = _write_atomically(out, write)
    manifest = _manifest(ws, ds, fmt, out, sha, table, reviewed_only, include_excluded)
    if guarded is not None:
        manifest["csv_formula_guard"] = {
            "prefix": FORMULA_PREFIX, "pattern": FORMULA_START, "cells": guarded,
            "note": "cells a spreadsheet would run as a formula start with ' (OWASP CSV "
                    "injection); `workstation import` of this file takes it off again"}
    _write_atomically(manifest_path, lambda tmp: tmp.write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))
    progress.step(max(table.num_rows, 1), max(table.num_rows, 1))
    return ExportReport(out, manifest_path, table.num_rows, sha, manifest)


def _arrow(ws: Workspace, sql: str, params: list) -> pa.Table:
    # DuckDB 2 refuses a new query while an earlier execute() result (e.g. a
    # fetchone() elsewhere) is still open: finish it first
    ws.con.complete()
    return ws.con.sql(sql, params=params).to_arrow_table()


# -- checks ----------------------------------------------------------------

def _find_dataset(ws: Workspace, name: str) -> _Dataset:
    row = ws.execute("SELECT id, name, kind, format, source_sha256, report FROM datasets "
                     "WHERE name = ?", [name]).fetchone()
    if row is None:
        names = [r[0] for r in ws.execute("SELECT name FROM datasets ORDER BY id").fetchall()]
        known = ", ".join(names) if names else "none yet"
        raise WorkstationError(f"no dataset named {name!r} (datasets: {known})")
    return _Dataset(*row)


def _check_format(ds: _Dataset, fmt: str) -> str:
    fmt = (fmt or "").lower().lstrip(".")
    if fmt not in FORMATS:
        raise WorkstationError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if ds.kind == "demos" and fmt != "jsonl":
        raise WorkstationError(f"dataset {ds.name!r} holds demonstrations, which export as "
                               f"jsonl only (trajectories are nested lists)")
    return fmt


def _check_out(out: Path) -> Path:
    if out.is_dir():
        raise WorkstationError(f"{out} is a folder; give a file name to export to")
    if not out.parent.is_dir():
        raise WorkstationError(f"folder {out.parent} does not exist")
    return out


def _filters(ds: _Dataset, reviewed_only: bool, include_excluded: bool) -> tuple[str, list]:
    where = ["dataset_id = ?"]
    if not include_excluded:
        where.append("NOT excluded")
    if reviewed_only:
        # review.py keeps example_state in step with the log; accept either sign
        where.append("(reviewed OR id IN (SELECT example_id FROM review_log))")
    return " AND ".join(where), [ds.id]


# -- writing ---------------------------------------------------------------

def _write_atomically(out: Path, write: Callable[[Path], None]) -> str:
    """Run ``write(tmp)``, then rename tmp onto ``out``; returns its sha256."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        sha = sha256_file(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sha


def _write_jsonl(table: pa.Table, tmp: Path, progress: Progress) -> None:
    done = 0
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for batch in table.to_batches(_BATCH):
            for row in batch.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            done += batch.num_rows
            progress.step(done, table.num_rows)


def _write_parquet(table: pa.Table, tmp: Path, progress: Progress) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, tmp)
    progress.step(table.num_rows, table.num_rows)


def _write_csv(table: pa.Table, tmp: Path, progress: Progress) -> None:
    import pyarrow.csv as pcsv

    pcsv.write_csv(table, tmp)
    progress.step(table.num_rows, table.num_rows)


def guard_formulas(table: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """``table`` with a ``'`` before every text cell matching ``FORMULA_START``,
    and how many cells of each text column got one."""
    counts = {}
    for i, name in enumerate(table.column_names):
        column = table.column(i)
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            continue
        hit = pc.fill_null(pc.match_substring_regex(column, FORMULA_START), False)
        counts[name] = int(pc.sum(hit).as_py() or 0)
        if counts[name]:
            quoted = pc.binary_join_element_wise(FORMULA_PREFIX, column, "")
            table = table.set_column(i, name, pc.if_else(hit, quoted, column))
    return table, counts


_WRITERS = {"jsonl": _write_jsonl, "parquet": _write_parquet, "csv": _write_csv}


def _write_demos(ws: Workspace, table: pa.Table, tmp: Path, progress: Progress) -> None:
    """One trajectory a line; steps are fetched in one query, then sliced."""
    ids = table.column("id").to_numpy()
    steps = _arrow(ws, "SELECT example_id, obs, action FROM demo_steps WHERE example_id IN "
                       "(SELECT unnest(?::BIGINT[])) ORDER BY example_id, step", [ids.tolist()])
    step_ids = steps.column("example_id").to_numpy()
    obs = _matrix(steps.column("obs"))
    acts, has_act = _matrix(steps.column("action")), ~steps.column("action").is_null().to_numpy(
        zero_copy_only=False)
    act_before = np.concatenate([[0], np.cumsum(has_act)])
    starts = np.searchsorted(step_ids, ids, side="left")
    ends = np.searchsorted(step_ids, ids, side="right")
    rows = table.drop_columns(["id", "meta", "n_steps"]).to_pylist()
    metas = table.column("meta").to_pylist()
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for i, (a, b) in enumerate(zip(starts, ends)):
            meta = json.loads(metas[i]) if metas[i] else {}
            traj_acts = acts[act_before[a]:act_before[b]] if acts is not None else None
            _write_trajectory(f, obs[a:b], traj_acts, meta, rows[i])
            if i % 256 == 0:
                progress.step(i, len(ids))


def _matrix(column: pa.ChunkedArray) -> np.ndarray | None:
    """A list column of equal-length lists (nulls dropped) as a 2-D array."""
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(column).drop_null().to_numpy(zero_copy_only=False)
    if not len(lengths):
        return None
    return flat.reshape(len(lengths), int(lengths[0]))


def _write_trajectory(f: TextIO, obs: np.ndarray, acts: np.ndarray | None, meta: dict,
                      provenance: dict) -> None:
    # float32 printed shortest-exact: re-importing gives the same float32 values
    text = obs.astype(np.float32).astype(str)
    obs_json = "[" + ",".join("[" + ",".join(r) + "]" for r in text) + "]"
    rest: dict[str, Any] = {}
    if acts is not None and len(acts):
        values = acts.astype(np.int64) if meta.get("act_int") else acts
        scalar = meta.get("act_scalar", True) and acts.shape[1] == 1
        rest["acts"] = values[:, 0].tolist() if scalar else values.tolist()
    if "return" in meta:
        rest["return"] = meta["return"]
    rest.update(provenance)
    f.write('{"obs":' + obs_json + "," + json.dumps(rest, ensure_ascii=False)[1:] + "\n")


# -- manifest --------------------------------------------------------------

def _manifest(ws: Workspace, ds: _Dataset, fmt: str, out: Path, sha: str, table: pa.Table,
              reviewed_only: bool, include_excluded: bool) -> dict:
    edits = ws.execute("SELECT count(*) FROM review_log WHERE example_id IN "
                       "(SELECT id FROM examples WHERE dataset_id = ?)", [ds.id]).fetchone()[0]
    head = ws.execute("SELECT hash FROM review_log ORDER BY seq DESC LIMIT 1").fetchone()
    shas = {r[0] for r in ws.execute("SELECT DISTINCT source_sha256 FROM examples "
                                     "WHERE dataset_id = ?", [ds.id]).fetchall()}
    columns = [c for c in table.column_names if c not in ("id", "meta", "n_steps")]
    if ds.kind == "demos":
        columns = ["obs", "acts", "return"] + columns
    return {
        "workspace_id": ws.id,
        "dataset": ds.name,
        "kind": ds.kind,
        "dataset_format": ds.format,
        "dataset_source_sha256": ds.source_sha256,
        "source_sha256s": sorted(shas),
        "edits_applied": int(edits),
        "review_log_head": head[0] if head else "",
        "exported_at": now_iso(),
        "format": fmt,
        "file": out.name,
        "sha256": sha,
        "rows": table.num_rows,
        "columns": columns,
        "filters": {"reviewed_only": reviewed_only, "include_excluded": include_excluded},
        "workstation_version": __version__,
    }
