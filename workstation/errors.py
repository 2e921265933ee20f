"""User-facing errors: one readable line, never a traceback."""

from __future__ import annotations


class WorkstationError(Exception):
    """An error whose message is meant for the analyst, as one line."""


class WorkspaceInUse(WorkstationError):
    """The workspace file is held for writing by another process."""


class SchemaTooNew(WorkstationError):
    """The workspace was written by a newer workstation."""


class InputError(WorkstationError):
    """A source file (dataset, model, release) is malformed.

    The message names the file, the record or line, and the field.
    """

    def __init__(self, path: str, message: str, *, line: int | None = None,
                 record: int | None = None, field: str | None = None) -> None:
        where = [str(path)]
        if line is not None:
            where.append(f"line {line}")
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}")
        self.path, self.line, self.record, self.field = path, line, record, field


class Cancelled(WorkstationError):
    """Long work was cancelled by the analyst; nothing was changed."""

    def __init__(self, message: str = "cancelled; nothing was changed") -> None:
        super().__init__(message)
