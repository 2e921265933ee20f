"""Labeled-response importers: JSONL, CSV and Parquet tables, and
JailbreakBench artifacts.

Tables have ``prompt, response, label`` and an optional ``category``.
``label`` is "safe"/"unsafe", 1/0, or true/false, where 1 (and true) means
SAFE, matching ``examples.label`` (TRUE = safe). A missing or null prompt is
stored as "". A null response is skipped (counted in ``skipped_reasons``);
an empty-string response is kept. ``id`` (or ``index``) becomes
``source_id``; other scalar fields are kept in ``meta.extra``.

JailbreakBench: a JSON file ``{"parameters": {...}, "jailbreaks": [...]}``.
``jailbroken: true`` means the response is harmful, so label FALSE (unsafe);
``prompt`` is the prompt (``goal`` when prompt is null); ``index`` is the
source id; ``source_index`` is the position in ``jailbreaks``. Records whose
response is null or empty/blank are skipped and counted (an attack that
produced nothing leaves nothing to judge). A folder imports every ``*.json``
file in it (sorted by name) into one dataset: each file is its own source
with its own sha256, and ``meta.file`` names it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from workstation.datasets.pairs import note_dropped_extras, register_table_formats
from workstation.datasets.reading import (
    Location, has_suffix, head_bytes, optional_str, read_json_document, require, require_str,
    scalar_extras, source_id_of, type_name)
from workstation.datasets.registry import Importer, ReadResult, Row, register_importer
from workstation.progress import Progress

_SAFE = {"safe", "1", "true"}
_UNSAFE = {"unsafe", "0", "false"}
_TABLE_FIELDS = {"prompt", "response", "label", "category", "id"}
_JBB_FIELDS = {"prompt", "response", "category", "index", "jailbroken"}


def parse_label(value: Any, loc: Location) -> bool:
    """safe/unsafe, 1/0 or true/false as a bool (TRUE = safe)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _SAFE | _UNSAFE:
        return value.strip().lower() in _SAFE
    shown = repr(value) if isinstance(value, (str, int, float)) else type_name(value)
    raise loc.error(f"label {shown} is not one of safe/unsafe, 1/0, true/false (1 = safe)",
                    field="label")


def label_row(rec: dict, index: int, loc: Location) -> tuple[Row | None, int]:
    """One table record as an examples row, or None when the response is null."""
    response = require(rec, "response", loc)
    if response is None:
        return None, 0
    if not isinstance(response, str):
        raise loc.error(f"expected a string, got {type_name(response)}", field="response")
    prompt = rec.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise loc.error(f"expected a string or null, got {type_name(prompt)}", field="prompt")
    row: Row = {"source_index": index, "source_id": source_id_of(rec), "prompt": prompt or "",
                "response": response, "label": parse_label(require(rec, "label", loc), loc),
                "category": optional_str(rec, "category", loc)}
    extra, dropped = scalar_extras(rec, _TABLE_FIELDS)
    if extra:
        row["meta"] = {"extra": extra}
    return row, dropped


def read_label_table(records: Iterable[tuple[Location, int, dict]]) -> ReadResult:
    return ReadResult.lazy(lambda result: _label_rows(records, result))


def _label_rows(records: Iterable[tuple[Location, int, dict]],
                result: ReadResult) -> Iterator[Row]:
    dropped = 0
    for loc, index, rec in records:
        row, n = label_row(rec, index, loc)
        if row is None:
            result.skipped["null response"] += 1
            continue
        dropped += n > 0
        yield row
    note_dropped_extras(result, dropped)


# -- JailbreakBench --------------------------------------------------------

def read_jailbreakbench(path: Path, progress: Progress) -> ReadResult:
    return ReadResult.lazy(lambda result: _jbb_rows(path, progress, result))


def _jbb_rows(path: Path, progress: Progress, result: ReadResult) -> Iterator[Row]:
    records, base = _jbb_document(path, progress)
    from_goal = 0
    for index, rec in enumerate(records):
        row = _jbb_row(rec, index, Location(path, record=index), base, result.skipped)
        if row is not None:
            from_goal += row["meta"].get("prompt_from") == "goal"
            yield row
    if from_goal:
        result.notes.append(f"{path.name}: {from_goal} records had no prompt; used goal")


def _jbb_document(path: Path, progress: Progress) -> tuple[list, dict]:
    """The artifact's records, and the meta every row of it carries."""
    doc = read_json_document(path, progress)
    top = Location(path)
    if not isinstance(doc, dict):
        raise top.error(f"expected a JSON object with 'jailbreaks', got {type_name(doc)}")
    records = require(doc, "jailbreaks", top)
    if not isinstance(records, list):
        raise top.error(f"expected a list, got {type_name(records)}", field="jailbreaks")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise top.error(f"expected an object, got {type_name(params)}", field="parameters")
    return records, {"file": path.name, "method": params.get("method"),
                     "model": params.get("model")}


def _jbb_row(rec: Any, index: int, loc: Location, base: dict, skipped: Counter) -> Row | None:
    if not isinstance(rec, dict):
        raise loc.error(f"expected an object, got {type_name(rec)}")
    response = require(rec, "response", loc)
    if response is None:
        skipped["null response"] += 1
        return None
    if not isinstance(response, str):
        raise loc.error(f"expected a string or null, got {type_name(response)}", field="response")
    if not response.strip():
        skipped["empty response"] += 1
        return None
    jailbroken = require(rec, "jailbroken", loc)
    if not isinstance(jailbroken, bool):
        raise loc.error(f"expected true or false, got {type_name(jailbroken)}", field="jailbroken")
    meta = dict(base)
    prompt = rec.get("prompt")
    if prompt is None:
        prompt = require_str(rec, "goal", loc)
        meta["prompt_from"] = "goal"
    elif not isinstance(prompt, str):
        raise loc.error(f"expected a string or null, got {type_name(prompt)}", field="prompt")
    extra, _ = scalar_extras(rec, _JBB_FIELDS)
    meta.update(extra)
    return {"source_index": index, "source_id": source_id_of(rec, ("index", "id")),
            "prompt": prompt, "response": response, "label": not jailbroken,
            "category": optional_str(rec, "category", loc), "meta": meta}


def sniff_jailbreakbench(path: Path) -> bool:
    if path.is_dir():
        return any(_looks_like_jbb(p) for p in sorted(path.glob("*.json")))
    return _looks_like_jbb(path)


def _looks_like_jbb(path: Path) -> bool:
    if not (path.is_file() and has_suffix(path, ".json")):
        return False
    head = head_bytes(path, 1 << 20)
    return head.lstrip().startswith(b"{") and b'"jailbreaks"' in head


register_table_formats("labels", "labels", read_label_table,
                       "labeled responses (prompt, response, label, category)")
register_importer(Importer(
    "jailbreakbench", "labels", sniff_jailbreakbench, read_jailbreakbench,
    "JailbreakBench artifact JSON, or a folder of them", directory_glob="*.json"))
