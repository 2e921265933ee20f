"""The workspace: one DuckDB file holding a whole audit project.

Opening handles the file lock (a second writer gets a one-line message naming
the holder's pid), schema versions and forward migrations (with a backup of
the file first), and gives every mutation a transaction so that a failed
import or edit leaves the file exactly as it was. The file, its write-ahead
log and its backups are created owner-only (0600).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import duckdb

from workstation.errors import SchemaTooNew, WorkspaceInUse, WorkstationError
from workstation.schema import AFTER_MIGRATION, CURRENT_VERSION, MIGRATIONS, REWRITE_KEY


class NeedsUpgrade(WorkstationError):
    """An older workspace opened read-only: it must be opened once for writing."""


_PID_RE = re.compile(r"PID (\d+)")
# The schema version from which a workspace holds no private key (migration 4
# moved signing to personal identities and removed the workspace's key).
NO_PRIVATE_KEY_VERSION = 4


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string (what the logs store)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def default_analyst() -> str:
    """Who is acting, when the caller does not say: the unlocked or current
    identity's name (workstation.identity), else the login."""
    from workstation import identity

    name = identity.acting_name()
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): still record something
        return "unknown"


# DuckDB creates files with the process umask (usually 0644). The umask is
# process-wide, so it is narrowed only around the calls that create the
# workspace file or its write-ahead log (a commit creates the log), under a
# lock so that concurrent narrowings restore the right value.
_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def owner_only_files() -> Iterator[None]:
    """Files created inside the block are readable by their owner only."""
    with _UMASK_LOCK:
        previous = os.umask(0o077)
        os.umask(previous | 0o077)
        try:
            yield
        finally:
            os.umask(previous)


def copy_owner_only(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` (replaced if there) as an owner-only file."""
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            while block := inp.read(1 << 20):
                out.write(block)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


# How long a transaction waits for another thread's transaction that appends
# to the same table (they cannot both take the next id).
APPEND_WAIT_SECONDS = 120


class _AppendLocks:
    """One lock per table, shared by a workspace and its ``for_thread`` copies:
    a transaction that takes a table's next id (max + 1) holds the table's lock
    until it ends, so that two threads never take the same id or chain two rows
    to the same head (DuckDB would refuse the second commit)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._tables: dict[str, threading.Lock] = {}

    def of(self, table: str) -> threading.Lock:
        with self._guard:
            return self._tables.setdefault(table, threading.Lock())


class Workspace:
    """An open workspace file. Not thread-safe: use ``cursor()`` per thread
    for reads and route writes through the owning thread."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool,
                 append_locks: _AppendLocks | None = None) -> None:
        self.path = path
        self.con = con
        self.read_only = read_only
        self._in_tx = False
        self._append_locks = append_locks or _AppendLocks()
        self._held: list[threading.Lock] = []
        self.migration_backup: Path | None = None
        # Backups made before schema v4 that still hold the workspace's old
        # private signing key (set when opening migrated such a file).
        self.key_backups: list[Path] = []

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
            ws.con.close()  # (a rewrite may have replaced the first connection)
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
        if not self.read_only and self.meta(REWRITE_KEY):
            self._rewrite()  # a rewrite a crash interrupted
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
            self.con.execute("DELETE FROM meta WHERE key = ?", [REWRITE_KEY])  # nothing old in it

    def _migrate(self, from_version: int) -> None:
        backup = self.backup_path(from_version)
        had_key = from_version < NO_PRIVATE_KEY_VERSION and bool(self.con.execute(
            "SELECT count(*) FROM signing_keys WHERE private_pem IS NOT NULL").fetchall()[0][0])
        self.con.execute("CHECKPOINT")
        copy_owner_only(self.path, backup)
        self.migration_backup = backup
        with self.transaction():
            self._apply_migrations(from_version)
        if self.meta(REWRITE_KEY):
            self._rewrite()
        if had_key:
            self.key_backups = [b for v in range(NO_PRIVATE_KEY_VERSION)
                                if (b := self.backup_path(v)).exists()]

    def _rewrite(self) -> None:
        """Copy the live data into a fresh file and put it in place of this one.

        Deleted rows and dropped columns stay in a DuckDB file's free blocks
        until overwritten; a migration that removes a secret (the old
        workspace private key) asks for this so that no byte of it remains.
        The request is a meta row written in the migration's transaction, so
        a crash before the swap repeats the rewrite at the next open.
        """
        fresh = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.rewrite")
        database = self.con.execute("SELECT current_database()").fetchall()[0][0]
        quoted = str(fresh).replace("'", "''")
        try:
            with owner_only_files():
                self.con.execute(f"ATTACH '{quoted}' AS ws_rewrite")
                self.con.execute(f'COPY FROM DATABASE "{database}" TO ws_rewrite')
                self.con.execute("DELETE FROM ws_rewrite.meta WHERE key = ?", [REWRITE_KEY])
                self.con.execute("CHECKPOINT ws_rewrite")
            self.con.execute("DETACH ws_rewrite")
            self.con.close()
            os.replace(fresh, self.path)
        finally:
            for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
                leftover.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".wal").unlink(missing_ok=True)
        self.con = _connect(self.path, self.read_only)

    def backup_path(self, version: int) -> Path:
        return self.path.with_name(f"{self.path.name}.v{version}.bak")

    def _apply_migrations(self, from_version: int) -> None:
        for version, statements in MIGRATIONS:
            if version <= from_version:
                continue
            for sql in statements:
                self.con.execute(sql)
            self.con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(version)])
            if version in AFTER_MIGRATION:
                import importlib

                module, function = AFTER_MIGRATION[version].split(":")
                getattr(importlib.import_module(module), function)(self)

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
        return Workspace(self.path, self.con.cursor(), self.read_only, self._append_locks)

    @contextlib.contextmanager
    def transaction(self, appends: tuple[str, ...] = ()) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run a block atomically; nested use joins the outer transaction.
        ``appends`` names the tables the block will append to with ``next_id``:
        an outermost transaction holds them from before its first read."""
        if self.read_only:
            raise WorkstationError(f"{self.path} is open read-only; this would change it")
        if self._in_tx:
            yield self.con
            return
        try:
            for table in appends:
                self._hold_append(table)
            self.con.execute("BEGIN TRANSACTION")
        except BaseException:
            self._release_appends()
            raise
        self._in_tx = True
        try:
            yield self.con
        except BaseException:
            self._in_tx = False
            try:
                self.con.execute("ROLLBACK")
            finally:
                self._release_appends()
            raise
        self._in_tx = False
        try:
            with owner_only_files():  # the commit may create the write-ahead log
                self.con.execute("COMMIT")
        finally:
            self._release_appends()

    def next_id(self, table: str, column: str = "id") -> int:
        """max + 1 of ``column``; inside a transaction, the table is this
        transaction's to append to until it ends (see ``_AppendLocks``)."""
        sql = f"SELECT coalesce(max({column}), 0) + 1 FROM {table}"
        if self._in_tx and self._hold_append(table):
            # Taken after this transaction's first read: a commit by another
            # thread since then is not in its snapshot; refuse rather than clash.
            fresh = self.con.cursor()
            try:
                committed = fresh.execute(sql).fetchall()[0][0]
            finally:
                fresh.close()
            if committed != self.con.execute(sql).fetchall()[0][0]:
                raise WorkstationError(f"another task wrote to {table} meanwhile; nothing was "
                                       "changed: try again")
        return int(self.con.execute(sql).fetchall()[0][0])

    def _hold_append(self, table: str) -> bool:
        """Hold ``table``'s append lock until the transaction ends; True if newly taken."""
        lock = self._append_locks.of(table)
        if lock in self._held:
            return False
        if not lock.acquire(timeout=APPEND_WAIT_SECONDS):
            raise WorkstationError(f"another task has been writing {table} for "
                                   f"{APPEND_WAIT_SECONDS} s; try again when it is done")
        self._held.append(lock)
        return True

    def _release_appends(self) -> None:
        while self._held:
            self._held.pop().release()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    limit = memory_limit()  # a bad setting fails before the file is touched
    con = _open_file(path, read_only)
    if limit is not None:
        con.execute(f"SET memory_limit = '{limit}'")  # validated by memory_limit
    return con


# DuckDB keeps cached blocks up to 80% of RAM by default: on a laptop that
# crowds out the window and the models (bench/bench_duckdb_memory.py measures it).
MEMORY_ENV = "WORKSTATION_DUCKDB_MEMORY"
DEFAULT_MEMORY_SHARE = 0.25
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
_SHARE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def memory_limit() -> str | None:
    """The DuckDB ``memory_limit`` for the workspaces this process opens:
    ``$WORKSTATION_DUCKDB_MEMORY`` as a size ("2GB", "512MiB"), a share of
    the machine's memory ("25%") or "duckdb" (DuckDB's own default, 80%);
    unset, 25% of the machine's memory. None leaves DuckDB's default."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text.lower() == "duckdb":
        return None
    size = _SIZE_RE.match(text)
    if size:
        return f"{size.group(1)}{size.group(2)}"
    share = _SHARE_RE.match(text)
    if text and not share or share and not 0 < float(share.group(1)) <= 100:
        raise WorkstationError(f"{MEMORY_ENV}={text!r} is not a memory limit: give a size "
                               f"(2GB, 512MB), a share of memory (25%) or 'duckdb'")
    total = _physical_memory()
    if total is None:
        return None
    fraction = float(share.group(1)) / 100 if share else DEFAULT_MEMORY_SHARE
    return f"{max(1, int(total * fraction / 2**20))}MiB"


def _physical_memory() -> int | None:
    """The machine's memory in bytes, where the platform says (not Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _open_file(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        if read_only:
            return duckdb.connect(str(path), read_only=True)
        with owner_only_files():  # a new file, or a log left by a crash, is created here
            return duckdb.connect(str(path), read_only=False)
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
