"""Signing and checking a report file, offline (no workspace, no DuckDB).

A report is signed by the analyst's identity (Ed25519). The signed statement
names the report's format, the SHA-256 of the report's bytes (``body``), the
SHA-256 of its content as canonical JSON, the model, the creation time and
the signer; the signature document (statement, signature, public key) rides
in the file in the way each format allows:

* HTML: a last line ``<!-- workstation-report-signature {json} -->``;
* PDF: a last line ``%workstation-report-signature {json}`` after ``%%EOF``
  (a PDF comment; readers ignore what follows the end marker);
* JSON: the document ``{"report": ..., "signature": ...}``, written in one
  exact form (sorted keys, two-space indent), whose ``body`` is the report's
  canonical JSON.

The body is everything before the signature line (HTML, PDF) or the canonical
report (JSON, whose file must also be byte-for-byte its exact form), so one
changed byte anywhere in the file is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from workstation.hashing import canonical_json, sha256_bytes
from workstation.offline_verify import ALGORITHM, json_file, key_id_of

STATEMENT_FORMAT = "workstation.report-statement/1"
MARK = "workstation-report-signature"
_LINES = {"html": (f"<!-- {MARK} ".encode(), b" -->\n"), "pdf": (f"%{MARK} ".encode(), b"\n")}
_DOC_KEYS = {"algorithm", "key_id", "signer", "public_key_pem", "signature", "statement"}


def content_sha256(content: dict[str, Any]) -> str:
    return sha256_bytes(canonical_json(content).encode("utf-8"))


def statement(kind: str, body: bytes, content: dict[str, Any], signer: Any) -> dict[str, Any]:
    return {"format": STATEMENT_FORMAT, "kind": kind, "report_format": content["format"],
            "body_sha256": sha256_bytes(body), "content_sha256": content_sha256(content),
            "model": content["scope"]["model"]["ref"], "created_at": content["created_at"],
            "key_id": signer.key_id, "signer": signer.name}


def signature_doc(kind: str, body: bytes, content: dict[str, Any], signer: Any) -> dict[str, Any]:
    stated = statement(kind, body, content, signer)
    signature = signer.sign(canonical_json(stated).encode("utf-8")).hex()
    return {"algorithm": ALGORITHM, "key_id": signer.key_id, "signer": signer.name,
            "public_key_pem": signer.public_pem, "signature": signature, "statement": stated}


def signed_file(kind: str, body: bytes, content: dict[str, Any], signer: Any) -> bytes:
    """The report file's bytes: ``body`` (HTML or PDF bytes; ignored for JSON) signed."""
    if kind == "json":
        canonical = canonical_json(content).encode("utf-8")
        return json_file({"report": content,
                          "signature": signature_doc(kind, canonical, content, signer)})
    head, tail = _LINES[kind]
    body = body if body.endswith(b"\n") else body + b"\n"
    doc = signature_doc(kind, body, content, signer)
    return body + head + canonical_json(doc).encode("utf-8") + tail


# -- checking ---------------------------------------------------------------------------------

@dataclass
class ReportCheck:
    """The outcome of ``verify_report``: ``ok`` only when the signature and every
    byte check; ``key_trusted`` when the key is one of the trusted keys given."""

    ok: bool
    kind: str | None = None
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    key_id: str | None = None
    signer: str | None = None
    key_trusted: bool = False
    model: str | None = None
    created_at: str | None = None
    content_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Refused(Exception):
    pass


def verify_report(path: str | os.PathLike, trust: str | os.PathLike | None = None) -> ReportCheck:
    """Check a report file offline; never raises on bad input. ``trust``: a
    public-key PEM file, or a folder of them; the signer's key must be one."""
    result = ReportCheck(False)
    try:
        data = _read(Path(path))
        trusted = _trusted_keys(Path(trust)) if trust is not None else None
        result.kind, body, doc, content = _split(data)
        key = _check_doc(doc, result)
        stated = doc["statement"]
        _check_signature(key, doc)
        result.model, result.created_at = stated.get("model"), stated.get("created_at")
        result.content_sha256 = stated.get("content_sha256")
        _check_body(result.kind, body, content, stated)
        _check_trust(result, trusted)
    except _Refused as exc:
        result.reasons.append(str(exc))
    result.ok = not result.reasons
    if result.ok and trust is None:
        result.warnings.append(f"the signature is valid for key {result.key_id} "
                               f"({result.signer}), whose public key is inside the report and "
                               f"was not independently trusted (pass --trust KEY.pem)")
    return result


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Refused(f"cannot read {path}: {exc.strerror or exc}") from None


def _split(data: bytes) -> tuple[str, bytes, dict[str, Any], dict[str, Any] | None]:
    """(kind, signed body, signature document, report content for JSON)."""
    for kind, (head, tail) in _LINES.items():
        if not data.endswith(tail):
            continue
        start = data.rfind(b"\n" + head)
        if start >= 0:
            body, line = data[:start + 1], data[start + 1:]
            doc = _parse(line[len(head):-len(tail)], "the signature line")
            if head + canonical_json(doc).encode("utf-8") + tail != line:
                raise _Refused("the signature line was changed (not in its exact form)")
            return kind, body, doc, None
    if data.lstrip()[:1] == b"{":
        whole = _parse(data, "the report")
        if not isinstance(whole, dict) or set(whole) != {"report", "signature"}:
            raise _Refused("the JSON report does not have the fields report and signature")
        try:
            exact = json_file(whole)
        except (TypeError, ValueError):
            exact = b""
        if exact != data:
            raise _Refused("the JSON report was changed (not in its exact form)")
        content = whole["report"]
        return "json", canonical_json(content).encode("utf-8"), whole["signature"], content
    raise _Refused("no report signature found: not a signed workstation report (HTML, PDF or "
                   "JSON)")


def _parse(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Refused(f"{what} is not valid JSON") from None


def _check_doc(doc: Any, result: ReportCheck) -> Ed25519PublicKey:
    if not isinstance(doc, dict) or set(doc) != _DOC_KEYS or doc.get("algorithm") != ALGORITHM:
        raise _Refused("the signature does not have the expected fields")
    result.key_id, result.signer = doc["key_id"], doc["signer"]
    try:
        key = serialization.load_pem_public_key(str(doc["public_key_pem"]).encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise _Refused("the signature's public key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey) or key_id_of(key) != doc["key_id"]:
        raise _Refused("the signature's public key and key id do not belong together")
    stated = doc["statement"]
    if not isinstance(stated, dict) or stated.get("format") != STATEMENT_FORMAT \
            or stated.get("key_id") != doc["key_id"] or stated.get("signer") != doc["signer"]:
        raise _Refused("the signed statement is missing, of another format, or names "
                       "another signer")
    return key


def _check_signature(key: Ed25519PublicKey, doc: dict[str, Any]) -> None:
    try:
        signature = bytes.fromhex(doc["signature"]) if isinstance(doc["signature"], str) else b""
        key.verify(signature, canonical_json(doc["statement"]).encode("utf-8"))
    except (ValueError, InvalidSignature, TypeError):
        raise _Refused(f"the signature does not match the signed statement (changed, or not "
                       f"made by key {doc['key_id']})") from None


def _check_body(kind: str, body: bytes, content: dict[str, Any] | None,
                stated: dict[str, Any]) -> None:
    if stated.get("kind") != kind:
        raise _Refused(f"the statement signs a {stated.get('kind')} report, this file is {kind}")
    actual = sha256_bytes(body)
    if actual != stated.get("body_sha256"):
        raise _Refused(f"the report was changed after signing: its sha256 {actual[:12]}… is not "
                       f"the signed {str(stated.get('body_sha256'))[:12]}…")
    if content is not None and content_sha256(content) != stated.get("content_sha256"):
        raise _Refused("the report's content is not the signed content")


def _trusted_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    files = sorted(p for p in path.iterdir() if p.suffix == ".pem") if path.is_dir() else [path]
    keys = {}
    for file in files:
        data = _read(file)
        if b"PRIVATE KEY-----" in data:
            raise _Refused(f"{file} holds a private key; trust a public key")
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise _Refused(f"{file} is not a public-key PEM file") from None
        if isinstance(key, Ed25519PublicKey):
            keys[key_id_of(key)] = key
    if not keys:
        raise _Refused(f"no Ed25519 public key in {path}")
    return keys


def _check_trust(result: ReportCheck, trusted: dict[str, Ed25519PublicKey] | None) -> None:
    if trusted is None:
        return
    if (result.key_id or "") not in trusted:
        listed = ", ".join(sorted(trusted))
        raise _Refused(f"signed by key {result.key_id} ({result.signer}), which is not a trusted "
                       f"key ({listed})")
    result.key_trusted = True
