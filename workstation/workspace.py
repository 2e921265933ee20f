"""The workspace: one DuckDB file holding a whole audit project.

Opening handles the file lock (a second writer gets a one-line message naming
the holder's pid), schema versions and forward migrations (with a backup of
the file first), and gives every mutation a transaction so that a failed
import or edit leaves the file exactly as it was.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import duckdb

from workstation.errors import SchemaTooNew, WorkspaceInUse, WorkstationError


class NeedsUpgrade(WorkstationError):
    """An older workspace opened read-only: it must be opened once for writing."""
from workstation.schema import CURRENT_VERSION, MIGRATIONS

_PID_RE = re.compile(r"PID (\d+)")


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string (what the logs store)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def default_analyst() -> str:
    """Who is acting, when the caller does not say: $WORKSTATION_ANALYST or the login."""
    name = os.environ.get("WORKSTATION_ANALYST")
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): still record something
        return "unknown"


class Workspace:
    """An open workspace file. Not thread-safe: use ``cursor()`` per thread
    for reads and route writes through the owning thread."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        self.path = path
        self.con = con
        self.read_only = read_only
        self._in_tx = False

    # -- opening -----------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, read_only: bool = False,
             create: bool = True) -> "Workspace":
        """Open (or create) the workspace at ``path``.

        Raises ``WorkspaceInUse`` when another process holds it, and
        ``SchemaTooNew`` when a newer workstation wrote it.
        """
        path = Path(path)
        exists = path.exists()
        if not exists and (read_only or not create):
            raise WorkstationError(f"no workspace at {path}")
        if exists and path.is_dir():
            raise WorkstationError(f"{path} is a folder, not a workspace file")
        con = _connect(path, read_only)
        ws = cls(path, con, read_only)
        try:
            ws._prepare(new=not exists)
        except BaseException:
            con.close()
            raise
        return ws

    def _prepare(self, new: bool) -> None:
        tables = {r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        if "meta" not in tables:
            if tables or not (new or self._is_empty()):
                raise WorkstationError(f"{self.path} is a DuckDB file but not a workstation workspace")
            if self.read_only:
                raise WorkstationError(f"{self.path} is empty; open it without --read-only first")
            self._create()
            return
        version = self.schema_version
        if version > CURRENT_VERSION:
            raise SchemaTooNew(
                f"{self.path} was written by a newer workstation (schema v{version}; "
                f"this one understands up to v{CURRENT_VERSION}): upgrade the workstation")
        if version < CURRENT_VERSION:
            if self.read_only:
                raise NeedsUpgrade(
                    f"{self.path} uses schema v{version} and needs an upgrade to "
                    f"v{CURRENT_VERSION}: open it once without --read-only")
            self._migrate(version)

    def _is_empty(self) -> bool:
        return not self.con.execute(
            "SELECT count(*) FROM information_schema.tables").fetchone()[0]

    def _create(self) -> None:
        with self.transaction():
            self.con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
            self.con.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("schema_version", "0"), ("workspace_id", str(uuid.uuid4())),
                ("created_at", now_iso())])
            self._apply_migrations(0)

    def _migrate(self, from_version: int) -> None:
        backup = self.backup_path(from_version)
        self.con.execute("CHECKPOINT")
        shutil.copy2(self.path, backup)
        self.migration_backup = backup
        with self.transaction():
            self._apply_migrations(from_version)

    def backup_path(self, version: int) -> Path:
        return self.path.with_name(f"{self.path.name}.v{version}.bak")

    def _apply_migrations(self, from_version: int) -> None:
        for version, statements in MIGRATIONS:
            if version <= from_version:
                continue
            for sql in statements:
                self.con.execute(sql)
            self.con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(version)])

    # -- facts -------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        # fetchall, not fetchone: DuckDB keeps a half-read result open, which
        # blocks a later register()/sql() on this connection.
        rows = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        return rows[0][0] if rows else None

    @property
    def schema_version(self) -> int:
        return int(self.meta("schema_version") or 0)

    @property
    def id(self) -> str:
        return self.meta("workspace_id") or ""

    # -- work --------------------------------------------------------------
    def execute(self, sql: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(sql, params) if params is not None else self.con.execute(sql)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for reading from another thread."""
        return self.con.cursor()

    def for_thread(self) -> "Workspace":
        """The same workspace through a connection of its own, for use on
        another thread (a DuckDB connection must not be shared across
        threads). Close it when the thread is done."""
        return Workspace(self.path, self.con.cursor(), self.read_only)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run a block atomically; nested use joins the outer transaction."""
        if self.read_only:
            raise WorkstationError(f"{self.path} is open read-only; this would change it")
        if self._in_tx:
            yield self.con
            return
        self.con.execute("BEGIN TRANSACTION")
        self._in_tx = True
        try:
            yield self.con
        except BaseException:
            self._in_tx = False
            self.con.execute("ROLLBACK")
            raise
        self._in_tx = False
        self.con.execute("COMMIT")

    def next_id(self, table: str, column: str = "id") -> int:
        return int(self.con.execute(
            f"SELECT coalesce(max({column}), 0) + 1 FROM {table}").fetchall()[0][0])

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            pid = _PID_RE.search(text)
            holder = f" (pid {pid.group(1)})" if pid else ""
            raise WorkspaceInUse(
                f"workspace {path} is in use by another process{holder}; "
                f"close it there first") from None
        raise WorkstationError(f"cannot open workspace {path}: {_first_line(text)}") from None
    except duckdb.Error as exc:
        raise WorkstationError(f"cannot open workspace {path}: {_first_line(str(exc))}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
