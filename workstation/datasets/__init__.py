"""Dataset import and export: the public API.

``import_dataset`` reads a source file (or, for formats that allow it, a
folder of files) with a registered importer, validating every record, and
writes the examples and the demonstration steps chunk by chunk as it reads
(bulk Arrow inserts; see ``store``), then a ``sources`` row per file and a
``datasets`` row, all in ONE transaction: memory stays bounded by the chunk,
not the file, and any error or a cancel, even in the last record, rolls it
all back and leaves the workspace exactly as it was. Bad input raises
``InputError`` naming the file, the line or record, and the field.

Each example keeps its provenance: ``source_sha256`` (sha256 of its file),
``source_index`` (0-based position of the record in the file; for JSONL the
count of non-blank lines before it) and ``source_id`` (the record's own id
field, when it has one).

A file whose sha256 is already held by a dataset is refused, naming that
dataset; dataset names are unique. For a folder, ``source_sha256`` of the
dataset is the sha256 of the canonical JSON list of its files' names and
hashes; each example still carries its own file's hash.

Formats (``IMPORTERS``): pairs ``trl-jsonl``, ``trl-csv``, ``trl-parquet``,
``hh-rlhf``; labels ``labels-jsonl``, ``labels-csv``, ``labels-parquet``,
``jailbreakbench``; demos ``imitation-npz``, ``demos-jsonl``. See the
modules ``pairs``, ``labels`` and ``demos`` for each format's rules, and
``export`` for writing a dataset back out as reviewed.
"""

from __future__ import annotations

import json
import os
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from workstation.datasets import demos as _demos  # noqa: F401  (registers built-ins)
from workstation.datasets import labels as _labels  # noqa: F401
from workstation.datasets import pairs as _pairs  # noqa: F401
from workstation.datasets import store
from workstation.datasets.export import FORMATS as EXPORT_FORMATS
from workstation.datasets.export import ExportReport, export_dataset
from workstation.datasets.registry import (
    IMPORTERS, KINDS, Importer, ReadResult, Row, importers_for, register_importer)
from workstation.errors import Cancelled, InputError, WorkstationError
from workstation.hashing import canonical_json, sha256_file, sha256_text
from workstation.progress import Progress, null_progress
from workstation.workspace import Workspace, now_iso

__all__ = [
    "ImportReport", "import_dataset", "import_files", "detect_format", "IMPORTERS", "Importer", "ReadResult",
    "register_importer", "ExportReport", "export_dataset", "EXPORT_FORMATS", "KINDS",
]


@dataclass
class ImportReport:
    """What an import did. ``sources`` lists each file read (path, sha256,
    size, imported, skipped)."""

    dataset: str
    dataset_id: int
    kind: str
    format: str
    source_sha256: str
    imported: int
    skipped: int
    skipped_reasons: dict[str, int]
    notes: list[str]
    sources: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class _Source:
    """One file of the import, and what reading it gave."""

    path: Path
    sha256: str
    size: int
    imported: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


def detect_format(kind: str, path: Path) -> str:
    """The name of the first importer of ``kind`` whose sniffer accepts ``path``
    (latest registered first)."""
    _check_kind(kind)
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "no such file or folder")
    for importer in importers_for(kind):
        try:
            if importer.sniff(path):
                return importer.name
        except Exception:  # a sniffer that trips over a file just says no
            continue
    names = ", ".join(imp.name for imp in importers_for(kind))
    raise InputError(str(path), f"cannot tell which {kind} format this is; "
                     f"name one of: {names}")


def import_dataset(ws: Workspace, kind: str, path: str | Path, name: str,
                   format: str | None = None, progress: Progress | None = None) -> ImportReport:
    """Import ``path`` as a new dataset ``name`` of ``kind``; see the module doc."""
    progress = progress or null_progress()
    if ws.read_only:  # say so before reading a large file for nothing
        raise WorkstationError(f"{ws.path} is open read-only; importing would change it")
    _check_kind(kind)
    name = _check_name(name)
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "no such file or folder")
    fmt = format or detect_format(kind, path)
    importer = _importer(kind, fmt)
    return import_files(ws, importer, _source_files(importer, path), name, progress,
                        described=path)


def import_files(ws: Workspace, importer: Importer, paths: list[Path], name: str,
                 progress: Progress | None = None, *,
                 described: Path | None = None) -> ImportReport:
    """Import the files ``paths`` with ``importer`` (registered or not: the
    cluster path reads with the importers' rules its own way) as one new
    dataset ``name``; ``described`` is the path the dataset records (default
    the file, or the folder holding several)."""
    progress = progress or null_progress()
    if ws.read_only:
        raise WorkstationError(f"{ws.path} is open read-only; importing would change it")
    name = _check_name(name)
    paths = [Path(p) for p in paths]
    path = Path(described) if described is not None else (
        paths[0] if len(paths) == 1 else Path(os.path.commonpath([p.parent for p in paths])))
    sources = [_hash(p) for p in paths]
    _refuse_repeats(sources)
    with ws.transaction():  # everything below rolls back on any error or a cancel
        _refuse_taken(ws, name, sources)
        dataset_id = ws.next_id("datasets")
        _read_all(ws, importer, path, dataset_id, sources, progress)
        _refuse_nothing_imported(path, sources)
        progress.stage_start(f"writing {name}", 1)
        report = _write(ws, importer.kind, importer.name, path, name, dataset_id, sources)
        progress.step(1, 1)  # a cancel here still rolls back: never after the commit
    return report


# -- steps -----------------------------------------------------------------

def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise WorkstationError(f"unknown dataset kind {kind!r}; use one of: {', '.join(KINDS)}")


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise WorkstationError("a dataset needs a name")
    if len(name) > 200 or any(ch in name for ch in "\n\r\t"):
        raise WorkstationError("dataset names are one line of at most 200 characters")
    return name


def _importer(kind: str, fmt: str) -> Importer:
    importer = IMPORTERS.get(fmt)
    if importer is None:
        names = ", ".join(imp.name for imp in importers_for(kind))
        raise WorkstationError(f"unknown format {fmt!r}; {kind} formats: {names}")
    if importer.kind != kind:
        raise WorkstationError(f"format {fmt} holds {importer.kind}, not {kind}")
    return importer


def _source_files(importer: Importer, path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    if importer.directory_glob is None:
        raise InputError(str(path), f"is a folder; format {importer.name} reads a single file")
    files = sorted(p for p in path.glob(importer.directory_glob) if p.is_file())
    if not files:
        raise InputError(str(path), f"the folder holds no {importer.directory_glob} files")
    return files


def _hash(path: Path) -> _Source:
    try:
        return _Source(path, sha256_file(path), path.stat().st_size)
    except OSError as exc:
        raise InputError(str(path), f"cannot read the file ({exc.strerror or exc})") from None


def _refuse_repeats(sources: list[_Source]) -> None:
    seen: dict[str, Path] = {}
    for s in sources:
        if s.sha256 in seen:
            raise InputError(str(s.path), f"has the same content as {seen[s.sha256].name}")
        seen[s.sha256] = s.path


def _refuse_taken(ws: Workspace, name: str, sources: list[_Source]) -> None:
    """Refuse a taken name, or a file some dataset already holds."""
    if ws.execute("SELECT 1 FROM datasets WHERE name = ?", [name]).fetchone():
        raise WorkstationError(f"a dataset named {name!r} already exists; choose another name")
    by_sha = {s.sha256: s for s in sources}
    for ds_name, ds_sha, report in ws.execute(
            "SELECT name, source_sha256, report FROM datasets ORDER BY id").fetchall():
        held = {ds_sha} | set(_report_shas(report))
        hits = [s for s in sources if s.sha256 in held]
        if hits:
            _raise_duplicate(hits[0], ds_name, len(hits) - 1)
    row = ws.execute(
        "SELECT e.source_sha256, d.name FROM examples e JOIN datasets d ON d.id = e.dataset_id "
        "WHERE e.source_sha256 IN (SELECT unnest(?::VARCHAR[])) LIMIT 1", [list(by_sha)]).fetchone()
    if row:
        _raise_duplicate(by_sha[row[0]], row[1])


def _report_shas(report: Any) -> list[str]:
    try:
        data = json.loads(report) if isinstance(report, str) else (report or {})
        return [s["sha256"] for s in data.get("sources", []) if isinstance(s, dict)]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []


def _raise_duplicate(source: _Source, dataset: str, others: int = 0) -> None:
    more = f" (and {others} more of these files)" if others else ""
    raise WorkstationError(f"{source.path}{more} was already imported as dataset {dataset!r} "
                           f"(sha256 {source.sha256[:12]}); a file is not imported twice")


def _read_all(ws: Workspace, importer: Importer, path: Path, dataset_id: int,
              sources: list[_Source], progress: Progress) -> None:
    """Read every file, writing its examples chunk by chunk as they come."""
    total = sum(s.size for s in sources) or 1
    done = 0
    next_id = ws.next_id("examples")
    progress.stage_start(f"reading {sources[0].path.name}" if len(sources) == 1
                         else f"reading {len(sources)} files", total)
    for s in sources:
        rows = _read_one(importer, s, _FileProgress(progress, done, s.size, total))
        s.imported = store.write_rows(ws, importer.kind, path, rows, next_id, dataset_id,
                                      s.sha256, progress)
        next_id += s.imported
        done += s.size
        progress.step(done, total)


def _read_one(importer: Importer, source: _Source, progress: Progress) -> Iterator[Row]:
    """The rows of one file, as the importer yields them; once they are all
    out, ``source`` holds the skips and notes. Errors of an importer that did
    not validate still become one readable line."""
    path = source.path
    try:
        result = importer.read(path, progress)
        if not isinstance(result, ReadResult):
            result = ReadResult(result)
        yield from result.rows
    except (WorkstationError, Cancelled):
        raise
    except RecursionError:
        raise InputError(str(path), "data is nested too deeply") from None
    except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, UnicodeError,
            zlib.error) as exc:
        raise InputError(str(path), f"{importer.name} could not read it "
                         f"({type(exc).__name__}: {exc})") from None
    source.skipped, source.notes = result.skipped, result.notes


def _refuse_nothing_imported(path: Path, sources: list[_Source]) -> None:
    if not any(s.imported for s in sources):
        skipped = sum(sum(s.skipped.values()) for s in sources)
        raise InputError(str(path), f"no importable records ({skipped} skipped)")


class _FileProgress(Progress):
    """Maps one file's ``step(done, total)`` (in any unit: bytes, records)
    onto the whole import's bytes, so several files make one bar."""

    def __init__(self, outer: Progress, base: int, size: int, grand_total: int) -> None:
        super().__init__()
        self._outer, self._base, self._size, self._grand = outer, base, size, grand_total

    def check(self) -> None:
        self._outer.check()

    def step(self, done: int, total: int) -> None:
        share = int(self._size * min(done, total) / total) if total > 0 else 0
        self._outer.step(self._base + share, self._grand)


def _write(ws: Workspace, kind: str, fmt: str, path: Path, name: str, dataset_id: int,
           sources: list[_Source]) -> ImportReport:
    """The ``sources`` and ``datasets`` rows, once every example is in."""
    imported = sum(s.imported for s in sources)
    report = _report(kind, fmt, path, name, dataset_id, sources, imported)
    now = now_iso()
    ws.con.executemany(
        "INSERT INTO sources VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
        [[s.sha256, str(s.path.resolve()), s.size, fmt, now] for s in sources])
    ws.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [dataset_id, name, kind, fmt, report.source_sha256, str(path.resolve()), now,
                imported, json.dumps(report.to_json(), ensure_ascii=False)])
    return report


def _report(kind: str, fmt: str, path: Path, name: str, dataset_id: int,
            sources: list[_Source], imported: int) -> ImportReport:
    reasons: Counter = Counter()
    notes: list[str] = []
    for s in sources:
        reasons.update(s.skipped)
        notes.extend(s.notes)
    if path.is_dir():
        digest = sha256_text(canonical_json([[s.path.name, s.sha256] for s in sources]))
        notes.append(f"folder of {len(sources)} files; source_sha256 is the digest of their "
                     f"names and hashes, and each example carries its own file's hash")
    else:
        digest = sources[0].sha256
    listed = [{"path": str(s.path.resolve()), "sha256": s.sha256, "size_bytes": s.size,
               "imported": s.imported, "skipped": sum(s.skipped.values())}
              for s in sources]
    return ImportReport(dataset=name, dataset_id=dataset_id, kind=kind, format=fmt,
                        source_sha256=digest, imported=imported,
                        skipped=sum(reasons.values()), skipped_reasons=dict(reasons),
                        notes=notes, sources=listed)
