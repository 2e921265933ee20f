"""Safe readers for untrusted dataset files: JSONL (plain or gzip), whole
JSON documents, CSV and Parquet.

Everything that can go wrong with a file becomes an ``InputError`` naming the
file, the line or record, and the field: malformed or truncated JSON, NaN or
infinite numbers (``NaN``/``Infinity`` tokens, or literals like ``1e999``
that overflow), JSON nested too deeply, unpaired surrogate escapes
(``\\ud800``: valid JSON, not text), non-UTF-8 bytes, truncated gzip or
Parquet data, and over-long lines.

Limits: a line (JSONL, CSV) may hold at most ``MAX_LINE_BYTES`` = 16 MiB; a
longer one is refused after reading at most 16 MiB of it, without handing it
to a JSON parser. A whole-document JSON file may be at most
``MAX_DOCUMENT_BYTES`` = 512 MiB.

Numbering: line numbers count from 1 (as editors do); record numbers count
from 0, like ``examples.source_index``. In JSONL the record number is the
position among non-blank lines.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from workstation.errors import InputError
from workstation.progress import Progress

MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_BYTES = 1 << 20  # report progress about once per MiB
_BOM = "\ufeff"
# \ud800-\udfff escapes: valid JSON, but an unpaired one is not text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


@dataclass(frozen=True)
class Location:
    """Where a record sits in its file, for error messages."""

    path: Path
    line: int | None = None
    record: int | None = None

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(str(self.path), message, line=self.line, record=self.record, field=field)


# -- small helpers ---------------------------------------------------------

def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def has_suffix(path: Path, *suffixes: str) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def head_bytes(path: Path, n: int = 65536) -> bytes:
    """The first ``n`` bytes of a file (decompressed when gzip), for sniffing."""
    with open(path, "rb") as raw:
        start = raw.read(2)
        raw.seek(0)
        if start == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw) as gz:
                return gz.read(n)
        return raw.read(n)


def require_nonempty(path: Path) -> None:
    if not path.is_file():
        raise InputError(str(path), "no such file" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise InputError(str(path), "the file is empty")


# -- JSON ------------------------------------------------------------------

class _NonFinite(ValueError):
    pass


def _reject_constant(token: str) -> Any:
    raise _NonFinite(token)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999 parses to inf
        raise _NonFinite(text)
    return value


# one decoder for every record: json.loads with hooks would build one per call
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def parse_json(text: str | bytes, loc: Location) -> Any:
    """Parse one JSON value strictly: no NaN/Infinity, bounded nesting, no
    unpaired surrogates."""
    try:
        text = _json_text(text)
        value = _DECODER.decode(text)
    except _NonFinite as exc:
        raise loc.error(f"non-finite number {exc} is not allowed") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} " if loc.line is None else ""
        raise loc.error(f"malformed JSON ({exc.msg} at {where}column {exc.colno}); "
                        f"the file may be truncated or not JSON") from None
    except RecursionError:
        raise loc.error("JSON is nested too deeply") from None
    except ValueError as exc:  # e.g. integers with thousands of digits
        raise loc.error(f"unreadable JSON value: {exc}") from None
    if _may_hold_surrogates(text) and _has_lone_surrogate(value):
        raise loc.error("a string holds an unpaired surrogate escape (\\ud800-\\udfff); "
                        "it is not valid Unicode text")
    return value


def _json_text(text: str | bytes) -> str:
    """What json.loads checks and decodes before it parses."""
    if isinstance(text, bytes):
        return text.decode(json.detect_encoding(text), "surrogatepass")
    if text.startswith(_BOM):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return text


def _may_hold_surrogates(text: str) -> bool:
    # the substring tests are much faster than the regex, and almost always false
    return (("\\ud" in text or "\\uD" in text)
            and _SURROGATE_ESCAPE.search(text) is not None)


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:  # iterative: the value may be nested as deeply as JSON allows
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_json_document(path: Path, progress: Progress) -> Any:
    """Read a whole-file JSON document (size-limited, strict UTF-8)."""
    require_nonempty(path)
    size = path.stat().st_size
    if size > MAX_DOCUMENT_BYTES:
        raise InputError(str(path), f"file is {size} bytes; JSON documents are limited to "
                         f"{MAX_DOCUMENT_BYTES // (1 << 20)} MiB")
    progress.step(0, size)
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(str(path), f"not valid UTF-8 (byte offset {exc.start})",
                         line=line) from None
    if not text.lstrip(_BOM).strip():
        raise InputError(str(path), "the file is empty")
    value = parse_json(text.lstrip(_BOM), Location(path))
    progress.step(size, size)
    return value


# -- lines -----------------------------------------------------------------

@contextmanager
def _open_stream(path: Path) -> Iterator[tuple[BinaryIO, BinaryIO, int]]:
    """(decoded stream, raw file, raw size); gzip is recognised by magic bytes."""
    size = os.stat(path).st_size
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw) as gz:
                yield gz, raw, size
        else:
            yield raw, raw, size


def iter_lines(path: Path, progress: Progress) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line, decoded as strict UTF-8.

    Refuses lines longer than ``MAX_LINE_BYTES`` after reading at most that
    much of them; turns truncated or corrupt gzip data into ``InputError``.
    """
    require_nonempty(path)
    with _open_stream(path) as (stream, raw, size):
        lineno, unreported = 0, 0
        while True:
            try:
                line = stream.readline(MAX_LINE_BYTES + 1)
            except (EOFError, OSError, zlib.error) as exc:
                raise InputError(str(path), f"truncated or corrupt gzip data ({exc})",
                                 line=lineno + 1) from None
            if not line:
                break
            lineno += 1
            if len(line) > MAX_LINE_BYTES and not (len(line) == MAX_LINE_BYTES + 1
                                                   and line.endswith(b"\n")):
                raise InputError(str(path), f"line is longer than the "
                                 f"{MAX_LINE_BYTES // (1 << 20)} MiB limit; refused", line=lineno)
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(str(path), f"not valid UTF-8 (byte {exc.start + 1} of the line)",
                                 line=lineno) from None
            if lineno == 1:
                text = text.lstrip(_BOM)
            unreported += len(line)  # decompressed bytes: at least the raw ones
            if unreported >= _PROGRESS_BYTES:
                progress.step(raw.tell(), size)
                unreported = 0
            yield lineno, text
        progress.step(size, size)


def iter_jsonl_records(path: Path, progress: Progress) -> Iterator[tuple[Location, int, dict]]:
    """Yield ``(location, index, object)`` for every non-blank line of a JSONL
    file. ``index`` is the 0-based count of non-blank lines before it (what
    importers store as ``source_index``); the location names the line.
    """
    index = 0
    for lineno, text in iter_lines(path, progress):
        if not text.strip():
            continue
        loc = Location(path, line=lineno)
        value = parse_json(text, loc)
        if not isinstance(value, dict):
            raise loc.error(f"expected a JSON object, got {type_name(value)}")
        yield loc, index, value
        index += 1
    if index == 0:
        raise InputError(str(path), "the file holds no records")


# -- CSV -------------------------------------------------------------------

# OWASP's CSV-injection triggers: a cell starting with one runs as a formula in
# a spreadsheet. Our CSV export puts FORMULA_PREFIX before such cells (and before
# quotes leading up to one), so one prefix comes off on import.
FORMULA_CHARS = r"=+\-@\t\r"
FORMULA_PREFIX = "'"
_GUARDED = re.compile(f"^{FORMULA_PREFIX}+[{FORMULA_CHARS}]")


def unguard_formula(value: str) -> str:
    """A cell of a workstation CSV export as it was before the export guarded it."""
    return value[1:] if _GUARDED.match(value) else value


def iter_csv_records(path: Path, progress: Progress) -> Iterator[tuple[Location, int, dict]]:
    """Yield ``(location, index, {column: text})`` for every data row of a CSV
    file with a header row. The location names the line the row starts on;
    ``index`` counts data rows from 0, blank lines excluded. A workstation
    export (its manifest beside it says so) has the ``'`` it put before
    formula-like cells taken off again."""
    # Python's default field limit (128 KiB) is too small for long responses.
    if csv.field_size_limit() < MAX_LINE_BYTES:
        csv.field_size_limit(MAX_LINE_BYTES)
    current = [0]

    def texts() -> Iterator[str]:
        for lineno, text in iter_lines(path, progress):
            current[0] = lineno
            yield text

    guarded = _formula_guarded(path)
    reader = csv.reader(texts(), strict=True)
    header = _next_csv_row(reader, path, current)
    if header is None:
        raise InputError(str(path), "the file holds no header row")
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or not all(header):
        raise InputError(str(path), f"the header row has empty or repeated column names: {header}",
                         line=1)
    index = 0
    while True:
        start = current[0] + 1
        row = _next_csv_row(reader, path, current)
        if row is None:
            break
        if not row:  # a blank line
            continue
        loc = Location(path, line=start)
        if len(row) != len(header):
            raise loc.error(f"has {len(row)} fields; the header has {len(header)}")
        if guarded:
            row = [unguard_formula(cell) for cell in row]
        yield loc, index, dict(zip(header, row))
        index += 1
    if index == 0:
        raise InputError(str(path), "the file holds no records")


def _formula_guarded(path: Path) -> bool:
    """True when ``path`` is a workstation CSV export whose formula-like cells
    start with a ``'`` (its manifest, ``PATH.manifest.json``, says so)."""
    beside = path.with_name(path.name + ".manifest.json")
    try:
        manifest = json.loads(beside.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(manifest, dict) and manifest.get("file") == path.name
            and isinstance(manifest.get("csv_formula_guard"), dict))


def _next_csv_row(reader: Any, path: Path, current: list[int]) -> list[str] | None:
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise InputError(str(path), f"malformed CSV ({exc}); the file may be truncated",
                         line=current[0]) from None


# -- Parquet ---------------------------------------------------------------

def iter_parquet_records(path: Path, progress: Progress,
                         batch_size: int = 4096) -> Iterator[tuple[Location, int, dict]]:
    """Yield ``(location, index, {column: value})`` for every row of a Parquet
    file; the location names the 0-based record."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    require_nonempty(path)
    try:
        pf = pq.ParquetFile(path)
        total = pf.metadata.num_rows
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(str(path), f"not a readable Parquet file; it may be truncated "
                         f"({_first_line(exc)})") from None
    if total == 0:
        raise InputError(str(path), "the file holds no records")
    index = 0
    batches = pf.iter_batches(batch_size=batch_size)
    while True:
        try:
            batch = next(batches, None)
            records = batch.to_pylist() if batch is not None else None
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(str(path), f"unreadable Parquet data ({_first_line(exc)})",
                             record=index) from None
        if records is None:
            break
        for rec in records:
            yield Location(path, record=index), index, rec
            index += 1
        progress.step(index, total)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- fields ----------------------------------------------------------------

def require(rec: dict, key: str, loc: Location) -> Any:
    if key not in rec:
        raise loc.error("missing field", field=key)
    return rec[key]


def require_str(rec: dict, key: str, loc: Location) -> str:
    value = require(rec, key, loc)
    if not isinstance(value, str):
        raise loc.error(f"expected a string, got {type_name(value)}", field=key)
    return value


def optional_str(rec: dict, key: str, loc: Location) -> str | None:
    """A string field that may be absent or null (empty means absent too)."""
    value = rec.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise loc.error(f"expected a string or null, got {type_name(value)}", field=key)
    return value


def source_id_of(rec: dict, keys: tuple[str, ...] = ("id", "index")) -> str | None:
    """The source's own id for a record: the first scalar of ``keys`` present."""
    for key in keys:
        value = rec.get(key)
        if isinstance(value, bool) or value is None or value == "":
            continue
        if isinstance(value, (str, int)):
            return str(value)
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
    return None


def scalar_extras(rec: dict, known: set[str]) -> tuple[dict, int]:
    """Fields outside ``known`` with scalar values (kept in ``meta.extra``),
    and how many non-scalar extras were dropped."""
    extra, dropped = {}, 0
    for key, value in rec.items():
        if key in known:
            continue
        if value is None or isinstance(value, (str, bool, int)):
            extra[key] = value
        elif isinstance(value, float) and math.isfinite(value):
            extra[key] = value
        else:
            dropped += 1
    return extra, dropped
