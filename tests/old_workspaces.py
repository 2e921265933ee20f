"""Workspaces as older workstations wrote them, built here from the migrations
and the old formulas (no binary fixtures): for the schema-upgrade tests.

``make_old_workspace(path, version)`` applies migrations 1..version only.
``make_v3_with_release(path)`` is a schema-v3 workspace as the last
workstation before identities left it: a labeled dataset, review edits
hash-chained by the v3 formula (no signatures), and a release of a real ONNX
model signed with the workspace's own Ed25519 key, whose private half is
stored unencrypted in ``signing_keys``; the key-created and release ledger
rows are hash-chained by the v3 formula too.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workstation.hashing import canonical_json, sha256_bytes, sha256_text
from workstation.offline_verify import (ALGORITHM, STATEMENT_FORMAT, json_file, key_id_of,
                                        public_pem_of)
from workstation.schema import MIGRATIONS

GENESIS = "0" * 64
T0 = "2026-01-02T03:04:05.000000+00:00"


def make_old_workspace(path: Path, version: int) -> None:
    """An empty workspace at schema ``version``."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("schema_version", str(version)), ("workspace_id", str(uuid.uuid4())),
        ("created_at", T0)])
    for number, statements in MIGRATIONS:
        if number <= version:
            for sql in statements:
                con.execute(sql)
    con.close()


@dataclass
class OldRelease:
    """What the v3 workspace holds, for the test to check against."""

    private_key: Ed25519PrivateKey
    key_id: str
    private_pem: str
    raw_private: bytes
    model_sha256: str
    review_rows: int
    ledger_rows: int


def make_v3_with_release(path: Path, onnx_bytes: bytes) -> OldRelease:
    make_old_workspace(path, 3)
    con = duckdb.connect(str(path))
    try:
        workspace_id = con.execute("SELECT value FROM meta WHERE key = 'workspace_id'"
                                   ).fetchall()[0][0]
        _dataset(con)
        heads = _review_rows(con)
        key = Ed25519PrivateKey.generate()
        key_id, private_pem = _store_key(con, key)
        sha = _model(con, onnx_bytes)
        _release(con, key, key_id, workspace_id, sha, heads[-1])
    finally:
        con.close()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return OldRelease(key, key_id, private_pem, raw, sha, len(heads), 2)


def _dataset(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSERT INTO datasets VALUES (1, 'old', 'labels', 'labels-jsonl', 'abc', NULL, "
                "?, 3, NULL)", [T0])
    for i in range(3):
        con.execute("INSERT INTO examples (id, dataset_id, source_sha256, source_index, prompt, "
                    "response, label) VALUES (?, 1, 'abc', ?, 'q', ?, true)", [i + 1, i, f"r{i}"])


_V3_REVIEW = ("seq", "example_id", "field", "old", "new", "reason", "analyst", "time", "action",
              "target_seq", "prev_hash")


def _review_rows(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Two label edits by 'old-analyst', chained with the v3 formula; their hashes."""
    prev, heads = GENESIS, []
    for seq, example_id in ((1, 1), (2, 2)):
        row = {"seq": seq, "example_id": example_id, "field": "label", "old": '"safe"',
               "new": '"unsafe"', "reason": "old edit", "analyst": "old-analyst", "time": T0,
               "action": "edit", "target_seq": None, "prev_hash": prev}
        row["hash"] = sha256_text(canonical_json({c: row[c] for c in _V3_REVIEW}))
        con.execute(f"INSERT INTO review_log VALUES ({', '.join('?' * 12)})",
                    [row[c] for c in _V3_REVIEW + ("hash",)])
        con.execute("INSERT INTO example_state VALUES (?, false, false, NULL, [], NULL, false, ?)",
                    [example_id, seq])
        prev = row["hash"]
        heads.append(prev)
    return heads


def _store_key(con: duckdb.DuckDBPyConnection, key: Ed25519PrivateKey) -> tuple[str, str]:
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode("ascii")
    key_id, pem = key_id_of(key.public_key()), public_pem_of(key.public_key())
    con.execute("INSERT INTO signing_keys VALUES (?, ?, ?, ?, true)", [key_id, pem, private_pem, T0])
    _ledger(con, 1, "key-created", {"key_id": key_id, "public_pem": pem}, GENESIS)
    return key_id, private_pem


def _model(con: duckdb.DuckDBPyConnection, data: bytes) -> str:
    sha = sha256_bytes(data)
    con.execute("INSERT INTO blobs VALUES (?, ?, ?)", [sha, len(data), data])
    con.execute("INSERT INTO model_versions VALUES (1, 'rm', 1, ?, 'features', NULL, "
                "'old-analyst', ?, ?)", [sha, T0, json.dumps({"input": {"kind": "features"}})])
    return sha


def _release(con: duckdb.DuckDBPyConnection, key: Ed25519PrivateKey, key_id: str,
             workspace_id: str, sha: str, head: str) -> None:
    to = {"model_version_id": 1, "model": "rm", "version": 1, "sha256": sha,
          "input_kind": "features", "parent_id": None}
    batch = {"format": "workstation.governance-batch/1", "workspace_id": workspace_id,
             "release_id": 1, "model": "rm", "from_version": None, "to_version": to,
             "label_edits": {"basis": "review-head-at-release", "from_head": "", "head": head,
                             "count": 2, "edits": []},
             "patches": [], "regression_report": None,
             "gate": {"pass": None, "forced": False, "force_reason": None},
             "approved_by": "old-login", "approved_at": T0, "notes": "released before v4"}
    manifest = {"input": {"kind": "features"}}
    statement = {"format": STATEMENT_FORMAT, "algorithm": ALGORITHM, "key_id": key_id,
                 "workspace_id": workspace_id, "release_id": 1, "model": "rm", "version": 1,
                 "files": {"model.onnx": sha, "manifest.json": sha256_bytes(json_file(manifest)),
                           "governance.json": sha256_bytes(json_file(batch))}}
    signature = key.sign(canonical_json(statement).encode("utf-8")).hex()
    payload = {"release_id": 1, "model": "rm", "version": 1, "model_version_id": 1,
               "sha256": sha, "from_release_id": None, "from_version": None,
               "governance_sha256": statement["files"]["governance.json"], "key_id": key_id,
               "signature": signature, "forced": False}
    prev = con.execute("SELECT hash FROM ledger WHERE seq = 1").fetchall()[0][0]
    _ledger(con, 2, "release", payload, prev)
    con.execute("INSERT INTO releases VALUES (1, 'rm', 1, NULL, ?, ?, ?, ?, 'old-login', 2)",
                [canonical_json(batch), signature, key_id, T0])


def _ledger(con: duckdb.DuckDBPyConnection, seq: int, kind: str, payload: dict[str, Any],
            prev: str) -> None:
    row = {"seq": seq, "time": T0, "actor": "old-login", "kind": kind,
           "payload": canonical_json(payload), "prev_hash": prev}
    row["hash"] = sha256_text(canonical_json(row))
    con.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?)",
                [row[c] for c in ("seq", "time", "actor", "kind", "payload", "prev_hash", "hash")])
