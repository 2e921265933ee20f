"""The importer registry: format name -> how to sniff and read that format.

Built-in formats register themselves through ``register_importer`` exactly as
a user's plug-in would. ``detect_format`` tries the importers of one kind from
the most recently registered to the oldest, so a later (more specific, or a
user's) importer is asked before the generic built-ins it refines.

An importer's ``read(path, progress)`` parses ONE file and returns a
``ReadResult`` (or just an iterable of row dicts). A row is a dict with
``source_index`` (0-based position in the file) and any of ``source_id``,
``prompt``, ``chosen``, ``rejected``, ``response``, ``label`` (True = safe),
``category``, ``meta`` (a JSON-able dict); demonstration rows carry ``obs``
(2-D float array, one row per observation) and ``acts`` (2-D array or None)
instead of text.

Rows may come lazily (a generator): the import writes them in chunks as they
come, inside one transaction, so a big file never sits in memory whole.
``read`` must validate every row and raise ``InputError`` on bad input, at
any point: the transaction then rolls back and nothing is kept. It should
call ``progress.step(done, total)`` now and then (any unit: bytes or
records); the call raises ``Cancelled`` when the analyst cancels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from workstation.errors import WorkstationError
from workstation.progress import Progress

KINDS = ("pairs", "labels", "demos")

Row = dict[str, Any]


@dataclass
class ReadResult:
    """What an importer read from one file. ``rows`` may be lazy; then the
    reader fills ``skipped`` and ``notes`` as it goes, and they are complete
    once ``rows`` is exhausted."""

    rows: Iterable[Row]
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    notes: list[str] = field(default_factory=list)

    @classmethod
    def lazy(cls, rows_into: Callable[["ReadResult"], Iterator[Row]]) -> "ReadResult":
        """A result whose rows come from the generator ``rows_into(result)``,
        which tallies skips and notes into ``result`` as it goes."""
        result = cls([])
        result.rows = rows_into(result)
        return result


@dataclass(frozen=True)
class Importer:
    """One source format.

    ``directory_glob``: when set, a folder is accepted and every file in it
    matching the glob is read (each file is its own source, with its own
    sha256); when None, only single files are accepted.
    """

    name: str
    kind: str
    sniff: Callable[[Path], bool]
    read: Callable[[Path, Progress], ReadResult | Iterable[Row]]
    description: str = ""
    directory_glob: str | None = None


IMPORTERS: dict[str, Importer] = {}


def register_importer(importer: Importer, *, replace: bool = False) -> Importer:
    """Add ``importer`` to ``IMPORTERS`` (``replace=True`` to override a name)."""
    if importer.kind not in KINDS:
        raise WorkstationError(f"importer {importer.name!r}: kind must be one of "
                               f"{', '.join(KINDS)}")
    if importer.name in IMPORTERS and not replace:
        raise WorkstationError(f"an importer named {importer.name!r} is already registered")
    IMPORTERS.pop(importer.name, None)  # re-registering moves it to the end (asked first)
    IMPORTERS[importer.name] = importer
    return importer


def importers_for(kind: str) -> list[Importer]:
    """Importers of ``kind`` in detection order (latest registered first)."""
    return [imp for imp in reversed(IMPORTERS.values()) if imp.kind == kind]
