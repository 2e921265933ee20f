"""`verify`: recompute every hash the workspace depends on.

Checks the review log's hash chain and every row's signature against the
trust store, that the cached review state follows from the log, the ledger's
hash chain, its signatures, every release signature and approval, every release
request, and the review-log heads the releases name, that the trust store
follows from the ledger, and that every stored artifact (ONNX models,
tokenizers) still has the sha256 it is filed under. Names the first row or
artifact that does not match.

``content_hash`` digests the logical content (every table's rows, ordered),
so that a command can be shown to have changed nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from workstation import release_checks, review, trust
from workstation.hashing import sha256_bytes
from workstation.workspace import Workspace


@dataclass
class VerifyReport:
    ok: bool
    failures: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"ok": self.ok, "failures": self.failures, "checked": self.checked}


def verify_workspace(ws: Workspace) -> VerifyReport:
    failures: list[str] = []
    for check in (review.verify_chain, review.verify_state, verify_blobs, verify_model_refs,
                  release_checks.verify_releases, trust.verify_ledger_signatures, trust.verify_store):
        problem = check(ws)
        if problem:
            failures.append(problem)
    checked = {
        "review_log_rows": ws.execute("SELECT count(*) FROM review_log").fetchone()[0],
        "artifacts": ws.execute("SELECT count(*) FROM blobs").fetchone()[0],
        "model_versions": ws.execute("SELECT count(*) FROM model_versions").fetchone()[0],
        "ledger_rows": ws.execute("SELECT count(*) FROM ledger").fetchone()[0],
        "releases": ws.execute("SELECT count(*) FROM releases").fetchone()[0],
        "release_requests": ws.execute("SELECT count(*) FROM release_requests").fetchone()[0],
        "signed_review_rows": ws.execute(
            "SELECT count(*) FROM review_log WHERE signature IS NOT NULL").fetchone()[0],
        "trusted_keys": ws.execute("SELECT count(*) FROM trust").fetchone()[0],
    }
    return VerifyReport(not failures, failures, checked)


def verify_blobs(ws: Workspace) -> str | None:
    """Each stored artifact must hash to the name it is stored under."""
    cur = ws.cursor()
    cur.execute("SELECT sha256, data FROM blobs ORDER BY sha256")
    while row := cur.fetchone():
        if sha256_bytes(row[1]) != row[0]:
            return f"artifact {row[0][:12]}… does not match its sha256 (changed after it was stored)"
    return None


def verify_model_refs(ws: Workspace) -> str | None:
    """Every model version must point at a stored artifact."""
    row = ws.execute(
        "SELECT model, version, sha256 FROM model_versions "
        "WHERE sha256 NOT IN (SELECT sha256 FROM blobs) ORDER BY id LIMIT 1").fetchone()
    if row:
        return f"model {row[0]}@{row[1]}: its ONNX artifact {row[2][:12]}… is missing"
    return None


# Derived caches: recomputable from the rest, so not part of the logical content.
CACHE_TABLES = frozenset({"embeddings"})


def content_hash(ws: Workspace) -> str:
    """sha256 of the workspace's logical content: every table's rows, ordered.

    Two workspaces (or one before and after a command) with the same rows in
    every table hash alike, whatever their file bytes; the ``embeddings``
    cache is left out. Rows are streamed, so large tables are not held in memory.
    """
    digest = hashlib.sha256()
    tables = [r[0] for r in ws.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]
    cur = ws.cursor()
    for table in tables:
        if table in CACHE_TABLES:
            continue
        digest.update(f"\x00table {table}\x00".encode())
        cur.execute(f'SELECT * FROM "{table}" ORDER BY ALL')
        while rows := cur.fetchmany(1024):
            for row in rows:
                digest.update(_row_bytes(row))
    cur.close()
    return digest.hexdigest()


def _row_bytes(row: tuple) -> bytes:
    """An unambiguous encoding of one row (blobs by their sha256)."""
    parts = [sha256_bytes(v) if isinstance(v, (bytes, bytearray, memoryview)) else repr(v)
             for v in row]
    return ("\x1f".join(parts) + "\x1e").encode("utf-8", "surrogatepass")
