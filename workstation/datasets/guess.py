"""Which kind of dataset a file holds, guessed before importing it: from its
first record's fields (JSONL, CSV), its columns (Parquet), or its format
(an imitation .npz, a JailbreakBench artifact). A guess to propose, never a
check: the importer still validates every record.
"""

from __future__ import annotations

from pathlib import Path

from workstation.datasets.labels import sniff_jailbreakbench
from workstation.datasets.pairs import (CSV_SUFFIXES, JSONL_SUFFIXES, PARQUET_SUFFIXES,
                                        first_jsonl_record)
from workstation.datasets.reading import has_suffix, iter_csv_records
from workstation.progress import null_progress

# The fields that say which kind a record is, most telling first.
_TELLING = (("pairs", {"chosen", "rejected"}), ("demos", {"obs"}),
            ("labels", {"response", "label"}))


def guess_kind(path: str | Path) -> str | None:
    """"pairs", "labels" or "demos" for the file or folder at ``path``; None
    when it does not say (unreadable, empty, or fields of no kind)."""
    path = Path(path)
    if not path.exists():
        return None
    if has_suffix(path, ".npz"):
        return "demos"
    try:
        if sniff_jailbreakbench(path):
            return "labels"
        return kind_of_fields(_first_fields(path))
    except Exception:  # a guess never fails: the import reports what is wrong
        return None


def kind_of_fields(fields: set[str]) -> str | None:
    """The kind whose telling fields a record has (all of them for pairs and
    demonstrations, either for labels); None when none match."""
    for kind, telling in _TELLING:
        if (telling & fields) if kind == "labels" else (telling <= fields):
            return kind
    return None


def _first_fields(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    if has_suffix(path, *JSONL_SUFFIXES):
        return set(first_jsonl_record(path) or ())
    if has_suffix(path, *CSV_SUFFIXES):
        for _, _, record in iter_csv_records(path, null_progress()):
            return set(record)
        return set()
    if has_suffix(path, *PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        return set(pq.read_schema(path).names)
    return set()
