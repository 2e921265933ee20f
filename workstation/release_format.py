"""The release format, shared by the workspace (workstation.releases) and the
offline verifier (workstation.offline_verify): file names and their exact
JSON form, key identity, what an approver signs. Imports neither the
workspace nor DuckDB.

A release is four files: model.onnx, manifest.json and governance.json,
whose sha256 the **release statement** lists, and signature.json, which holds
that statement, its Ed25519 signature and the signer's public key.

Governance batches of format /3 (k-of-n approval) split in two. The
**request** (``REQUEST_FIELDS``: what is released, from what, with which
evidence, the regression gate, who asked, how many approvals it needs) is
fixed when the release is requested. Each approver (and the requester)
signs an **approval statement** over the request's sha256 and the hashes of
model.onnx and manifest.json, with ``act`` "approve" (or "request"), so that
no request signature counts as an approval. The batch then lists the
approvals (key id, public key, signature), and the release statement signed
by the approver who completed the quorum covers the whole governance.json,
so that no approval can be removed afterwards.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from workstation.hashing import canonical_json, sha256_bytes, sha256_text

ALGORITHM = "ed25519"
STATEMENT_FORMAT = "workstation.release-statement/1"
APPROVAL_FORMAT = "workstation.release-approval/1"
SIGNED_FILES = ("model.onnx", "manifest.json", "governance.json")
SIGNATURE_FILE = "signature.json"
RELEASE_FILES = SIGNED_FILES + (SIGNATURE_FILE,)
# The largest file a release can hold: protobuf caps one self-contained
# .onnx file at 2 GiB (workstation.models.inspection.MAX_DECLARED_BYTES);
# the three JSON files are small (the largest, governance.json, lists the
# label edits and the regression report).
MAX_FILE_BYTES = {"model.onnx": 2 << 30, "manifest.json": 256 << 20,
                  "governance.json": 256 << 20, SIGNATURE_FILE: 16 << 20}

# /1: approved_by was the OS login (schema < 4); /2: one approving identity
# (approved_by, approver_key_id); /3: a request and k approvals.
BATCH_FORMAT = "workstation.governance-batch/3"
SINGLE_SIGNATURE_BATCHES = ("workstation.governance-batch/1", "workstation.governance-batch/2")
REQUEST_FIELDS = ("format", "workspace_id", "release_id", "model", "from_version", "to_version",
                  "label_edits", "patches", "regression_report", "gate", "notes",
                  "requested_by", "requested_at", "approvals_required", "separation")
ACTS = ("request", "approve")


def key_id_of(key: Ed25519PublicKey) -> str:
    """sha256 of the raw 32-byte public key, first 16 hex digits."""
    return sha256_bytes(raw_public(key))[:16]


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem_of(key: Ed25519PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM text."""
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def json_file(value: Any) -> bytes:
    """The exact bytes of a release JSON file (sorted keys, 2-space indent, final newline)."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


def request_part(batch: dict[str, Any]) -> dict[str, Any]:
    """The request of a /3 batch (KeyError when a field is missing)."""
    return {name: batch[name] for name in REQUEST_FIELDS}


def request_sha256(request: dict[str, Any]) -> str:
    return sha256_text(canonical_json(request_part(request)))


def approval_statement(request: dict[str, Any], manifest_sha256: str, act: str
                       ) -> dict[str, Any]:
    """What a requester (``act`` "request") or an approver ("approve") signs."""
    if act not in ACTS:
        raise ValueError(f"act must be one of {ACTS}")
    to = request["to_version"]
    return {"format": APPROVAL_FORMAT, "act": act, "algorithm": ALGORITHM,
            "workspace_id": request["workspace_id"], "release_id": request["release_id"],
            "model": to["model"], "version": to["version"],
            "files": {"model.onnx": to["sha256"], "manifest.json": manifest_sha256},
            "request_sha256": request_sha256(request)}


def approval_message(request: dict[str, Any], manifest_sha256: str, act: str) -> bytes:
    """The bytes an approval signature is over."""
    return canonical_json(approval_statement(request, manifest_sha256, act)).encode("utf-8")


def release_statement(batch: dict[str, Any], manifest: dict[str, Any], key_id: str
                      ) -> dict[str, Any]:
    """What the release signature covers: the hashes of the three release
    files, and whose release it is."""
    to = batch["to_version"]
    files = {"model.onnx": to["sha256"], "manifest.json": sha256_bytes(json_file(manifest)),
             "governance.json": sha256_bytes(json_file(batch))}
    return {"format": STATEMENT_FORMAT, "algorithm": ALGORITHM, "key_id": key_id,
            "workspace_id": batch["workspace_id"], "release_id": batch["release_id"],
            "model": to["model"], "version": to["version"], "files": files}


def signature_doc(statement: dict[str, Any], signature_hex: str, public_pem: str
                  ) -> dict[str, Any]:
    """signature.json: the statement, its signature and the signer's public key."""
    return {"algorithm": ALGORITHM, "key_id": statement["key_id"], "public_key_pem": public_pem,
            "signature": signature_hex, "signature_encoding": "hex", "statement": statement,
            "files": statement["files"]}
