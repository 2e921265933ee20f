"""Reading a corpus for a scale run: the importers' record rules, one row per record.

The formats are the importers' own (``trl-jsonl``, ``trl-parquet``,
``hh-rlhf``, ``labels-jsonl``, ``labels-parquet``) and every record becomes
the row the importer would store (same prompt split, label parsing and
``source_index``: the 0-based count of non-blank lines, or the Parquet row).
Unlike an import, a bad record does not stop the file: it becomes a row with
``error`` set (its reason, without the file and line) and no texts, so that
bad rows are counted per file and the job goes on. A file that cannot be
read on (corrupt gzip, an over-long line) ends with one row of
``row_index`` -1 saying where and why.

A Parquet file may also carry embeddings computed beforehand by the bundle's
encoder: list-of-float columns ``prompt_embedding``, ``chosen_embedding``,
``rejected_embedding``, ``response_embedding``. They pass through as Arrow
columns (never as Python lists) and the scorer uses them instead of encoding.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa

from workstation.datasets.labels import label_row
from workstation.datasets.pairs import (ASSISTANT, JSONL_SUFFIXES, PARQUET_SUFFIXES,
                                        first_jsonl_record, hh_rlhf_row, trl_row)
from workstation.datasets.reading import Location, has_suffix, iter_lines, parse_json, type_name
from workstation.errors import InputError, WorkstationError
from workstation.progress import null_progress

EMBEDDING_SUFFIX = "_embedding"
TEXT_SIDES = ("prompt", "chosen", "rejected", "response")
BLOCK_ROWS = 4096  # rows per Arrow block a read yields
FILE_ERROR_INDEX = -1
SCHEMA = pa.schema([
    ("source_file", pa.string()), ("row_index", pa.int64()), ("source_id", pa.string()),
    ("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()),
    ("response", pa.string()), ("label", pa.bool_()), ("category", pa.string()),
    ("error", pa.string())])


@dataclass(frozen=True)
class InputFormat:
    """One importer format as a scale run reads it."""

    name: str
    kind: str
    container: str  # "jsonl" or "parquet"
    row: Callable[[dict, int, Location], Any]


def _trl(rec: dict, index: int, loc: Location) -> dict:
    return trl_row(rec, index, loc)[0]


def _labels(rec: dict, index: int, loc: Location) -> dict:
    row, _ = label_row(rec, index, loc)
    if row is None:
        raise loc.error("null response (an import skips it)", field="response")
    return row


FORMATS = {f.name: f for f in (
    InputFormat("trl-jsonl", "pairs", "jsonl", _trl),
    InputFormat("trl-parquet", "pairs", "parquet", _trl),
    InputFormat("hh-rlhf", "pairs", "jsonl", hh_rlhf_row),
    InputFormat("labels-jsonl", "labels", "jsonl", _labels),
    InputFormat("labels-parquet", "labels", "parquet", _labels))}


# -- which files, which format ---------------------------------------------------------

def find_inputs(spec: str) -> list[Path]:
    """The files of ``spec``: a file, a folder (its JSONL and Parquet files) or
    a glob; sorted, absolute."""
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file()
                 and has_suffix(p, *JSONL_SUFFIXES, *PARQUET_SUFFIXES)]
    elif path.is_file():
        found = [path]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    if not found:
        raise WorkstationError(f"no input files at {spec} (a file, a folder of JSONL or "
                               f"Parquet files, or a glob)")
    return sorted(p.resolve() for p in found)


def detect_format(paths: list[Path]) -> str:
    """The format of the first file: Parquet or JSONL, pairs (TRL, or HH-RLHF
    transcripts) or labeled responses, from its first record's fields."""
    first = paths[0]
    fields = _first_fields(first)
    container = "parquet" if has_suffix(first, *PARQUET_SUFFIXES) else "jsonl"
    if {"chosen", "rejected"} <= fields:
        if container == "jsonl" and "prompt" not in fields and _looks_hh(first):
            return "hh-rlhf"
        return f"trl-{container}"
    if {"response", "label"} & fields:
        return f"labels-{container}"
    raise WorkstationError(f"{first}: cannot tell the layout from its fields "
                           f"({', '.join(sorted(fields)) or 'none readable'}); name it with "
                           f"--format ({', '.join(FORMATS)})")


def _first_fields(path: Path) -> set[str]:
    if has_suffix(path, *PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        try:
            return set(pq.read_schema(path).names)
        except (pa.ArrowException, OSError):
            return set()
    if has_suffix(path, *JSONL_SUFFIXES):
        return set(first_jsonl_record(path) or ())
    return set()


def _looks_hh(path: Path) -> bool:
    record = first_jsonl_record(path) or {}
    return isinstance(record.get("chosen"), str) and ASSISTANT in record["chosen"]


def check_format(name: str, paths: list[Path]) -> InputFormat:
    """The format named ``name``, refused when a file is not of its container."""
    if name not in FORMATS:
        raise WorkstationError(f"unknown input format {name!r}; scale runs read "
                               f"{', '.join(FORMATS)}")
    fmt = FORMATS[name]
    suffixes = PARQUET_SUFFIXES if fmt.container == "parquet" else JSONL_SUFFIXES
    wrong = [p for p in paths if not has_suffix(p, *suffixes)]
    if wrong:
        raise WorkstationError(f"{wrong[0]} is not a {fmt.container} file, as format "
                               f"{name} reads")
    return fmt


# -- records ---------------------------------------------------------------------------

@dataclass
class Record:
    """One record of a file: its row (as the importer stores it) or why not."""

    index: int
    row: dict | None
    error: str | None = None


def read_records(path: Path, fmt: InputFormat) -> Iterator[Record]:
    """Every record of ``path`` in order; bad ones with ``error``, and a last
    ``FILE_ERROR_INDEX`` record when the rest of the file cannot be read."""
    if fmt.container == "parquet":
        for records, _ in read_parquet_batches(path, fmt):
            yield from records
        return
    index = 0
    try:
        for lineno, text in iter_lines(path, null_progress()):
            if text.strip():
                yield _jsonl_record(text, index, Location(path, line=lineno), fmt)
                index += 1
    except InputError as exc:
        yield Record(FILE_ERROR_INDEX, None, f"unreadable after record {index}: "
                                              f"{reason_of(exc)}")


def _jsonl_record(text: str, index: int, loc: Location, fmt: InputFormat) -> Record:
    try:
        value = parse_json(text, loc)
        if not isinstance(value, dict):
            raise loc.error(f"expected a JSON object, got {type_name(value)}")
        return Record(index, fmt.row(value, index, loc))
    except InputError as exc:
        return Record(index, None, reason_of(exc))


def read_parquet_batches(path: Path, fmt: InputFormat, batch_rows: int = BLOCK_ROWS,
                         row_groups: tuple[int, ...] | None = None, first_index: int = 0,
                         columnwise: bool = False, source_file: str | None = None
                         ) -> Iterator[tuple[list[Record] | pa.Table, dict[str, pa.Array]]]:
    """(records, embedding columns) per batch of a Parquet file (or of its
    ``row_groups``, whose first row is record ``first_index``): the text
    columns go through the importer's rules, embedding columns stay Arrow.
    ``columnwise``: a batch the rules reduce to column operations on comes as
    a ``SCHEMA`` table instead of records (``workstation.cluster.columnwise``)."""
    import pyarrow.parquet as pq

    from workstation.cluster.columnwise import to_table

    index = first_index
    try:
        pf = pq.ParquetFile(path)
        # One thread: a scale run has one actor per CPU, and Arrow's own pool
        # only competes with them (a 65k-row group of 384-d float vectors
        # decoded in 0.24 s alone, 0.66 s with threads, beside another actor).
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=row_groups,
                                     use_threads=False):
            embedded = {n: batch.column(n) for n in batch.schema.names
                        if n.endswith(EMBEDDING_SUFFIX)}
            plain = batch.select([n for n in batch.schema.names if n not in embedded])
            table = (to_table(plain, fmt.kind, source_file or str(path), index, SCHEMA)
                     if columnwise else None)
            if table is not None:
                index += batch.num_rows
                yield table, embedded
                continue
            records = []
            for rec in plain.to_pylist():
                records.append(_parquet_record(rec, index, Location(path, record=index), fmt))
                index += 1
            yield records, embedded
    except (pa.ArrowException, OSError, ValueError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        yield [Record(FILE_ERROR_INDEX, None, f"unreadable Parquet after record {index}: "
                                              f"{text}")], {}


def _parquet_record(rec: dict, index: int, loc: Location, fmt: InputFormat) -> Record:
    try:
        return Record(index, fmt.row(rec, index, loc))
    except InputError as exc:
        return Record(index, None, reason_of(exc))


def reason_of(exc: InputError) -> str:
    """An input error's message without the file and line (what gets counted)."""
    text = str(exc)
    where = [str(exc.path)] + [f"{k} {v}" for k, v in (("line", exc.line),
                                                        ("record", exc.record)) if v is not None]
    prefix = ", ".join(where)
    text = text[len(prefix):] if text.startswith(prefix) else text
    return text.lstrip(", :") or "unreadable"


# -- units of work and their Arrow blocks ------------------------------------------------

UNIT_ROWS = 100_000  # a Parquet file is split into units of about this many rows


@dataclass(frozen=True)
class WorkUnit:
    """What one actor call scores: a whole file, or some row groups of a
    Parquet file (whose first row is record ``first_index``)."""

    path: str
    row_groups: tuple[int, ...] | None
    first_index: int
    hashes_file: bool  # the file's first unit also hashes the file

    @property
    def shard_name(self) -> str:
        """The unit's shard, the same each time it is scored (a retry overwrites it)."""
        import hashlib

        key = f"{self.path}\0{self.row_groups}".encode("utf-8")
        return f"part-{hashlib.sha256(key).hexdigest()[:16]}.parquet"


def work_units(paths: list[Path], fmt: InputFormat,
               unit_rows: int = UNIT_ROWS) -> list[WorkUnit]:
    """A JSONL file is one unit (its record numbering needs every line before);
    a Parquet file one unit per ``unit_rows`` rows of whole row groups."""
    units = []
    for path in paths:
        groups = _row_group_rows(path) if fmt.container == "parquet" else None
        if not groups:
            units.append(WorkUnit(str(path), None, 0, True))
            continue
        start, chosen, first = 0, [], 0
        for group, rows in enumerate(groups):
            if chosen and sum(groups[g] for g in chosen) + rows > unit_rows:
                units.append(WorkUnit(str(path), tuple(chosen), first, first == 0))
                first, chosen = start, []
            chosen.append(group)
            start += rows
        units.append(WorkUnit(str(path), tuple(chosen), first, first == 0))
    return units


def _row_group_rows(path: Path) -> list[int] | None:
    """Rows per row group, or None when the metadata cannot be read (the
    whole file is then one unit, and its reading reports the problem)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
        return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] or None
    except (pa.ArrowException, OSError, ValueError):
        return None


def unit_blocks(unit: WorkUnit, fmt: InputFormat, block_rows: int = BLOCK_ROWS
                ) -> Iterator[pa.Table]:
    """The unit's records as Arrow tables of ``SCHEMA`` (plus any embedding
    columns), ``block_rows`` records at a time."""
    if fmt.container == "parquet":
        for records, embedded in read_parquet_batches(Path(unit.path), fmt, block_rows,
                                                      unit.row_groups, unit.first_index,
                                                      columnwise=True, source_file=unit.path):
            if isinstance(records, pa.Table):
                yield _with_embeddings(records, None, embedded)
            else:
                yield _with_embeddings(records_table(unit.path, records), records, embedded)
        return
    yield from file_blocks(Path(unit.path), fmt, block_rows)


def file_blocks(path: Path, fmt: InputFormat, block_rows: int = BLOCK_ROWS
                ) -> Iterator[pa.Table]:
    """The whole file's records as Arrow tables of ``SCHEMA``, ``block_rows``
    records at a time."""
    name = str(path)
    if fmt.container == "parquet":
        yield from unit_blocks(WorkUnit(name, None, 0, True), fmt, block_rows)
        return
    chunk: list[Record] = []
    for record in read_records(path, fmt):
        chunk.append(record)
        if len(chunk) >= block_rows:
            yield records_table(name, chunk)
            chunk = []
    if chunk:
        yield records_table(name, chunk)


def records_table(source_file: str, records: list[Record]) -> pa.Table:
    """Records as one Arrow table of ``SCHEMA``."""
    def column(key: str) -> list[Any]:
        return [r.row.get(key) if r.row is not None else None for r in records]
    return pa.table({
        "source_file": pa.array([source_file] * len(records), pa.string()),
        "row_index": pa.array([r.index for r in records], pa.int64()),
        "source_id": pa.array(column("source_id"), pa.string()),
        **{side: pa.array(column(side), pa.string()) for side in TEXT_SIDES},
        "label": pa.array(column("label"), pa.bool_()),
        "category": pa.array(column("category"), pa.string()),
        "error": pa.array([r.error for r in records], pa.string())}, schema=SCHEMA)


def _with_embeddings(table: pa.Table, records: list[Record] | None,
                     embedded: dict[str, pa.Array]) -> pa.Table:
    rows = table.num_rows if records is None else len(records)
    if embedded and rows != len(next(iter(embedded.values()))):
        return table  # a file-error record: no embeddings to align
    for name, column in embedded.items():
        table = table.append_column(name, column)
    return table
