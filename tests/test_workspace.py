"""The workspace file: creation, schema versions, locking, transactions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import pytest

from workstation.errors import SchemaTooNew, WorkspaceInUse, WorkstationError
from workstation.schema import CURRENT_VERSION
from workstation.workspace import Workspace


def test_new_workspace_has_current_schema_and_an_id(tmp_path):
    with Workspace.open(tmp_path / "a.duckdb") as ws:
        assert ws.schema_version == CURRENT_VERSION
        assert len(ws.id) == 36
        first_id = ws.id
    with Workspace.open(tmp_path / "a.duckdb") as ws:
        assert ws.id == first_id


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "a.duckdb"
    Workspace.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(CURRENT_VERSION + 1)])
    con.close()
    with pytest.raises(SchemaTooNew, match="newer workstation"):
        Workspace.open(path)


def test_older_schema_is_migrated_after_a_backup(tmp_path, monkeypatch):
    from workstation import schema, workspace

    path = tmp_path / "a.duckdb"
    Workspace.open(path).close()
    extra = (CURRENT_VERSION + 1, ["CREATE TABLE later_feature (x INTEGER)"])
    monkeypatch.setattr(workspace, "MIGRATIONS", schema.MIGRATIONS + [extra])
    monkeypatch.setattr(workspace, "CURRENT_VERSION", CURRENT_VERSION + 1)
    with Workspace.open(path) as ws:
        assert ws.schema_version == CURRENT_VERSION + 1
        assert ws.migration_backup.exists()
        ws.execute("SELECT * FROM later_feature")
    assert ws.migration_backup.stat().st_mode & 0o777 == 0o600
    old = duckdb.connect(str(ws.migration_backup), read_only=True)
    assert old.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == \
        str(CURRENT_VERSION)
    old.close()


def test_workspace_files_are_owner_only_whatever_the_umask(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        with Workspace.open(tmp_path / "a.duckdb") as ws:
            with ws.transaction():
                ws.execute("INSERT INTO sources VALUES ('x', 'p', 1, 'f', 't')")
            wal = tmp_path / "a.duckdb.wal"
            assert wal.exists()  # the commit wrote the log, and made it owner-only
            assert wal.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "a.duckdb").stat().st_mode & 0o777 == 0o600
        (tmp_path / "other.txt").write_text("x")  # the process umask is as it was
        assert (tmp_path / "other.txt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(previous)


def test_a_file_that_is_not_a_workspace_is_refused(tmp_path):
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(WorkstationError, match="cannot open workspace"):
        Workspace.open(junk)
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    with pytest.raises(WorkstationError, match="not a workstation workspace"):
        Workspace.open(other)


def test_failed_transaction_leaves_nothing(ws):
    with pytest.raises(RuntimeError):
        with ws.transaction():
            ws.execute("INSERT INTO sources VALUES ('x', 'p', 1, 'f', 't')")
            raise RuntimeError("boom")
    assert ws.execute("SELECT count(*) FROM sources").fetchone()[0] == 0


def test_read_only_workspace_refuses_writes(tmp_path):
    Workspace.open(tmp_path / "a.duckdb").close()
    with Workspace.open(tmp_path / "a.duckdb", read_only=True) as ws:
        with pytest.raises(WorkstationError, match="read-only"):
            with ws.transaction():
                pass


def _hold_open(path, read_only: bool):
    code = textwrap.dedent(f"""
        import sys, time
        from workstation.workspace import Workspace
        ws = Workspace.open(r'{path}', read_only={read_only})
        print('open', flush=True)
        sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "open"
    return proc


def test_second_writer_gets_one_line_naming_the_pid(tmp_path):
    path = tmp_path / "a.duckdb"
    Workspace.open(path).close()
    holder = _hold_open(path, read_only=False)
    try:
        with pytest.raises(WorkspaceInUse) as info:
            Workspace.open(path)
        message = str(info.value)
        assert "in use by another process" in message and f"pid {holder.pid}" in message
        assert "\n" not in message
        cli = subprocess.run([sys.executable, "-m", "workstation", "--workspace", str(path),
                              "datasets"], capture_output=True, text=True, timeout=60)
        assert cli.returncode != 0
        assert cli.stderr.strip().count("\n") == 0 and "Traceback" not in cli.stderr
        assert f"pid {holder.pid}" in cli.stderr
    finally:
        holder.communicate("\n", timeout=30)


def test_read_only_opens_beside_a_reader(tmp_path):
    path = tmp_path / "a.duckdb"
    Workspace.open(path).close()
    reader = _hold_open(path, read_only=True)
    try:
        with Workspace.open(path, read_only=True) as ws:
            assert ws.schema_version == CURRENT_VERSION
    finally:
        reader.communicate("\n", timeout=30)


# -- DuckDB's memory ---------------------------------------------------------------

def _limit(ws) -> str:
    return ws.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def _as_duckdb_says(limit: str) -> str:
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{limit}'")
    return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_a_workspace_holds_duckdb_to_a_quarter_of_memory_by_default(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("WORKSTATION_DUCKDB_MEMORY", raising=False)
    quarter = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4 // 2**20
    duckdb_default = duckdb.connect().execute(
        "SELECT current_setting('memory_limit')").fetchone()[0]
    with Workspace.open(tmp_path / "ws.duckdb") as ws:
        assert _limit(ws) == _as_duckdb_says(f"{quarter}MiB") != duckdb_default
    with Workspace.open(tmp_path / "ws.duckdb", read_only=True) as ws:  # readers too
        assert _limit(ws) == _as_duckdb_says(f"{quarter}MiB")


@pytest.mark.parametrize("setting, expect", [("512MB", "488.2 MiB"), ("2 GiB", "2.0 GiB"),
                                             ("10%", None), ("duckdb", "default")])
def test_the_memory_limit_is_a_setting(tmp_path, monkeypatch, setting, expect):
    import os

    monkeypatch.setenv("WORKSTATION_DUCKDB_MEMORY", setting)
    if expect is None:
        tenth = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 10 // 2**20
        expect = _as_duckdb_says(f"{tenth}MiB")
    elif expect == "default":
        expect = duckdb.connect().execute("SELECT current_setting('memory_limit')").fetchone()[0]
    with Workspace.open(tmp_path / "ws.duckdb") as ws:
        assert _limit(ws) == expect


@pytest.mark.parametrize("setting", ["lots", "0%", "150%", "5", "1GB; DROP TABLE meta"])
def test_a_bad_memory_setting_is_one_line_and_touches_nothing(tmp_path, monkeypatch, capsys,
                                                              setting):
    from workstation.cli import main

    monkeypatch.delenv("WORKSTATION_DUCKDB_MEMORY", raising=False)
    Workspace.open(tmp_path / "old.duckdb").close()
    monkeypatch.setenv("WORKSTATION_DUCKDB_MEMORY", setting)
    with pytest.raises(WorkstationError, match="WORKSTATION_DUCKDB_MEMORY=.* is not a memory "
                                               "limit: give a size"):
        Workspace.open(tmp_path / "new.duckdb")
    assert not (tmp_path / "new.duckdb").exists()
    assert main(["-w", str(tmp_path / "old.duckdb"), "datasets"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: WORKSTATION_DUCKDB_MEMORY=") and err.count("\n") == 1
