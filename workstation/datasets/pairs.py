"""Preference-pair importers: TRL files (JSONL, CSV, Parquet) and HH-RLHF.

TRL ("explicit prompt") records have ``prompt``, ``chosen``, ``rejected``
strings; ``prompt`` may be missing or null (TRL's implicit-prompt style) and
is then stored as "" so that every format round-trips. ``id`` (or ``index``)
becomes ``source_id``; other scalar fields are kept in ``meta.extra`` (so the
provenance columns of our own exports survive a re-import). Conversational
values (lists of messages) are refused with a clear message.

HH-RLHF records have only ``chosen`` and ``rejected`` transcripts
(``\\n\\nHuman: ... \\n\\nAssistant: ...``). When both share everything up
to and including the last ``\\n\\nAssistant:``, that prefix is the prompt
and the rest of each side is its response. Records that do not split that
way are imported whole (prompt "", full transcripts, ``meta = {"split":
false}``) and counted in the report's notes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from workstation.datasets.reading import (
    Location, has_suffix, iter_csv_records, iter_jsonl_records, iter_lines,
    iter_parquet_records, parse_json, require_str, scalar_extras, source_id_of)
from workstation.datasets.registry import Importer, ReadResult, Row, register_importer
from workstation.progress import Progress, null_progress

ASSISTANT = "\n\nAssistant:"
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
_TRL_FIELDS = {"prompt", "chosen", "rejected", "id"}


def pair_text(rec: dict, key: str, loc: Location) -> str:
    value = rec.get(key)
    if isinstance(value, list):
        raise loc.error("conversational (list of messages) values are not supported; "
                        "expected a string", field=key)
    return require_str(rec, key, loc)


def trl_row(rec: dict, index: int, loc: Location) -> tuple[Row, int]:
    """One TRL record as an examples row (and how many extras were dropped)."""
    prompt = rec.get("prompt")
    if prompt is not None:
        prompt = pair_text(rec, "prompt", loc)
    row: Row = {"source_index": index, "source_id": source_id_of(rec),
                "prompt": prompt or "",
                "chosen": pair_text(rec, "chosen", loc),
                "rejected": pair_text(rec, "rejected", loc)}
    extra, dropped = scalar_extras(rec, _TRL_FIELDS)
    if extra:
        row["meta"] = {"extra": extra}
    return row, dropped


def read_trl(records: Iterable[tuple[Location, int, dict]]) -> ReadResult:
    return ReadResult.lazy(lambda result: _trl_rows(records, result))


def _trl_rows(records: Iterable[tuple[Location, int, dict]], result: ReadResult) -> Iterator[Row]:
    dropped = 0
    for loc, index, rec in records:
        row, n = trl_row(rec, index, loc)
        dropped += n > 0
        yield row
    note_dropped_extras(result, dropped)


def note_dropped_extras(result: ReadResult, dropped: int) -> None:
    """Say in the report how many records lost non-scalar extra fields."""
    if dropped:
        result.notes.append(f"{dropped} records had non-scalar extra fields that were not kept")


def split_transcripts(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(prompt, chosen response, rejected response), or None when the two
    transcripts do not share a prefix ending at their last ``\\n\\nAssistant:``."""
    cut = chosen.rfind(ASSISTANT)
    if cut < 0 or rejected.rfind(ASSISTANT) != cut:
        return None
    end = cut + len(ASSISTANT)
    if chosen[:end] != rejected[:end]:
        return None
    return chosen[:end], chosen[end:], rejected[end:]


def read_hh_rlhf(path: Path, progress: Progress) -> ReadResult:
    return ReadResult.lazy(lambda result: _hh_rlhf_rows(path, progress, result))


def _hh_rlhf_rows(path: Path, progress: Progress, result: ReadResult) -> Iterator[Row]:
    whole = 0
    for loc, index, rec in iter_jsonl_records(path, progress):
        row = hh_rlhf_row(rec, index, loc)
        whole += row.get("meta", {}).get("split") is False
        yield row
    if whole:
        result.notes.append(f"{whole} records did not split into prompt/response at the last "
                            f"'\\n\\nAssistant:'; imported whole (prompt '', meta.split = false)")


def hh_rlhf_row(rec: dict, index: int, loc: Location) -> Row:
    """One HH-RLHF record as an examples row, split at the last assistant turn
    when both transcripts allow it, else whole with ``meta.split = false``."""
    chosen = pair_text(rec, "chosen", loc)
    rejected = pair_text(rec, "rejected", loc)
    row: Row = {"source_index": index, "source_id": source_id_of(rec)}
    parts = split_transcripts(chosen, rejected)
    if parts is None:
        row.update(prompt="", chosen=chosen, rejected=rejected, meta={"split": False})
    else:
        row.update(prompt=parts[0], chosen=parts[1], rejected=parts[2])
    extra, _ = scalar_extras(rec, {"chosen", "rejected", "id"})
    if extra:
        row["meta"] = {**row.get("meta", {}), "extra": extra}
    return row


def first_jsonl_record(path: Path) -> dict | None:
    """The first non-blank JSONL record, or None if it cannot be read (sniffing)."""
    try:
        for lineno, text in iter_lines(path, null_progress()):
            if text.strip():
                value = parse_json(text, Location(path, line=lineno))
                return value if isinstance(value, dict) else None
    except Exception:  # sniffing never fails; the real read reports the problem
        return None
    return None


def sniff_hh_rlhf(path: Path) -> bool:
    if not (path.is_file() and has_suffix(path, *JSONL_SUFFIXES)):
        return False
    rec = first_jsonl_record(path)
    return (rec is not None and "prompt" not in rec
            and isinstance(rec.get("chosen"), str) and isinstance(rec.get("rejected"), str)
            and ASSISTANT in rec["chosen"])


def _suffix_sniffer(*suffixes: str):
    return lambda path: path.is_file() and has_suffix(path, *suffixes)


def register_table_formats(prefix: str, kind: str, read_table: Callable[[Iterable[Row]], Any],
                           what: str) -> None:
    """Register the JSONL, CSV and Parquet importers of one tabular layout
    (``PREFIX-jsonl``, ``PREFIX-csv``, ``PREFIX-parquet``)."""
    for fmt, suffixes, records, how in (
            ("jsonl", JSONL_SUFFIXES, iter_jsonl_records, "JSONL, optionally gzip"),
            ("csv", CSV_SUFFIXES, iter_csv_records, "CSV with a header row"),
            ("parquet", PARQUET_SUFFIXES, iter_parquet_records, "Parquet")):
        register_importer(Importer(
            f"{prefix}-{fmt}", kind, _suffix_sniffer(*suffixes),
            lambda path, progress, records=records: read_table(records(path, progress)),
            f"{what} {how}"))


register_table_formats("trl", "pairs", read_trl, "TRL preference (prompt, chosen, rejected)")
register_importer(Importer(
    "hh-rlhf", "pairs", sniff_hh_rlhf, read_hh_rlhf,
    "Anthropic HH-RLHF JSONL(.gz): chosen/rejected whole transcripts"))
