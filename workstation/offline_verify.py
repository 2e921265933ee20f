"""Offline verification of an exported release (a folder or .zip), with nothing
but its files and a set of trusted public keys: this module imports neither
the workspace nor DuckDB. The format itself is in workstation.release_format.

Any changed byte in any file is refused, and so is any file the signature
does not cover. A release of format /3 must carry as many valid approvals by
distinct keys as its request says (``approvals_required``, or
``min_approvals`` when the verifier asks for more), and with a trust set
(``trust``: a PEM file or a folder of them) that many of those keys must be
trusted. Without one the result is not ok (``no trusted key given``) unless
``allow_untrusted``, which checks the signatures with the keys inside the
release only and says ``trusted: false``. Releases of formats /1 and /2 have
one signature, which counts as their one approval.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from workstation.hashing import canonical_json, sha256_bytes
from workstation.release_format import (ALGORITHM, BATCH_FORMAT, MAX_FILE_BYTES, RELEASE_FILES,
                                        SIGNATURE_FILE, SIGNED_FILES, SINGLE_SIGNATURE_BATCHES,
                                        STATEMENT_FORMAT, approval_message, json_file, key_id_of,
                                        public_pem_of, raw_public, request_part)

# Re-exported: the release format was defined here before it had a module.
__all__ = ["ALGORITHM", "NO_TRUST", "RELEASE_FILES", "SIGNATURE_FILE", "SIGNED_FILES",
           "STATEMENT_FORMAT", "TrustedKeys", "VerifyResult", "batch_approvals", "json_file",
           "key_id_of", "load_trusted_keys", "public_pem_of", "verify_release",
           "verify_release_files"]

NO_TRUST = "no trusted key given"
_SIGNATURE_KEYS = {"algorithm", "key_id", "public_key_pem", "signature", "signature_encoding",
                   "statement", "files"}
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_PEM_RE = re.compile(rb"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", re.S)
_TRUST_SUFFIXES = (".pem", ".pub")

# key id -> the raw 32-byte public key (compared whole: a key id is only a prefix)
TrustedKeys = dict[str, bytes]


@dataclass
class VerifyResult:
    """The outcome of checking an exported release offline.

    ``reasons`` says why it is not ok (empty when ok); ``warnings`` holds
    caveats of an ok result. ``trusted``: enough approvals were made by keys
    of the trust set given. ``key_id``: the key that signed the release
    statement (the approver who completed it). ``approvals``: one entry per
    valid approval (``key_id``, ``name``, ``approved_at``, ``trusted``).
    """

    ok: bool
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    trusted: bool = False
    key_id: str | None = None
    model: str | None = None
    version: int | None = None
    files: dict[str, str] = field(default_factory=dict)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    approvals_required: int | None = None
    approvals_trusted: int = 0
    forced: bool | None = None
    force_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Refused(Exception):
    """Verification cannot go on; the message is the reason."""


def verify_release(path: str | os.PathLike, trust: str | os.PathLike | None = None, *,
                   allow_untrusted: bool = False, min_approvals: int | None = None
                   ) -> VerifyResult:
    """Check an exported release (folder or .zip) offline; never raises on bad input.

    ``trust`` is a PEM file (one or more public keys) or a folder of
    ``*.pem``/``*.pub`` files: the approvers the verifier trusts.
    """
    try:
        files = _read_release(Path(path))
        trusted = load_trusted_keys(trust) if trust is not None else None
    except _Refused as exc:
        return VerifyResult(False, [str(exc)])
    return verify_release_files(files, trusted, allow_untrusted=allow_untrusted,
                                min_approvals=min_approvals)


def verify_release_files(files: dict[str, bytes], trust: TrustedKeys | None = None, *,
                         allow_untrusted: bool = False, min_approvals: int | None = None
                         ) -> VerifyResult:
    """Check a release given as {file name: bytes} (what ``verify_release`` reads)."""
    result = VerifyResult(False)
    try:
        _check_file_set(files)
        doc = _signature_json(files[SIGNATURE_FILE])
        key = _embedded_key(doc)
        result.key_id = doc["key_id"]
        statement = _check_statement(doc)
        result.model, result.version = statement.get("model"), statement.get("version")
        result.files = dict(statement["files"])
        _check_signature(key, doc, statement)
        _check_hashes(files, statement, result)
        if not result.reasons:  # a changed file is reason enough; its content means nothing
            approvals = _check_governance(files, statement, doc, result)
            _check_trust(result, approvals, trust, allow_untrusted, min_approvals)
    except _Refused as exc:
        result.reasons.append(str(exc))
    result.ok = not result.reasons
    result.trusted = result.ok and trust is not None
    return result


# -- reading ---------------------------------------------------------------------------

def _read_release(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise _Refused(f"no release at {path}")
    try:
        size = path.stat().st_size
        if size > sum(MAX_FILE_BYTES.values()):
            raise _Refused(f"{path} is larger than a release can be; refused")
        data = path.read_bytes()
    except OSError as exc:
        raise _Refused(f"cannot read {path}: {exc.strerror}") from None
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise _Refused(f"{path} is neither a release folder nor a zip file")
    return _read_zip(data, path)


def _read_folder(path: Path) -> dict[str, bytes]:
    items = sorted(path.iterdir())
    for item in items:
        if not item.is_file():
            raise _Refused(f"unexpected entry '{item.name}' in the release folder")
    _refuse_extra([item.name for item in items])
    files: dict[str, bytes] = {}
    for item in items:
        try:
            _check_size(item.name, item.stat().st_size, str(path))
            files[item.name] = item.read_bytes()
        except OSError as exc:
            raise _Refused(f"cannot read {item}: {exc.strerror}") from None
    return files


def _read_zip(data: bytes, path: Path) -> dict[str, bytes]:
    """Read members in memory, refusing unsafe names and sizes before reading any content."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            for info in zf.infolist():
                _check_member_name(info.filename)
            names = _member_names(infos)
            _refuse_extra(names)
            for name, info in zip(names, infos):
                _check_size(name, info.file_size, str(path))
            # The reader stops at the declared size: no member unpacks to more.
            return {name: zf.read(info) for name, info in zip(names, infos)}
    except _Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - the stdlib zip reader fails in many ways
        # (BadZipFile, zlib.error, struct.error, EOFError, ...) on hostile input: one reason.
        raise _Refused(f"{path} is a damaged or unsupported zip ({type(exc).__name__}: "
                       f"{exc})") from None


def _check_size(name: str, size: int, where: str) -> None:
    limit = MAX_FILE_BYTES[name]
    if size > limit:
        raise _Refused(f"{where} unpacks to more than a release can hold: {name} is "
                       f"{size:,} bytes, more than its limit of {_bytes_text(limit)}; refused")


def _bytes_text(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB"


def _refuse_extra(names: list[str]) -> None:
    extra = sorted(set(names) - set(RELEASE_FILES))
    if extra:
        raise _Refused(f"unexpected file{'s' if len(extra) > 1 else ''} not covered by the "
                       f"signature: {', '.join(extra)}")


def _check_member_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if (name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts
            or "\\" in name or "\x00" in name):
        raise _Refused(f"zip entry '{name}' would escape the release folder; refused without "
                       "extracting")


def _member_names(infos: list[zipfile.ZipInfo]) -> list[str]:
    """Member names at the zip root, or all inside one top folder (a zipped release folder)."""
    names = [i.filename for i in infos]
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        names = [n.split("/", 1)[1] for n in names]
    if len(set(names)) != len(names):
        raise _Refused("the zip holds the same file twice")
    return names


# -- the trust set -----------------------------------------------------------------------

def load_trusted_keys(path: str | os.PathLike) -> TrustedKeys:
    """The public keys in a PEM file (one or more keys) or in the ``*.pem`` and
    ``*.pub`` files of a folder; refuses private keys and anything else."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in _TRUST_SUFFIXES)
        if not found:
            raise _Refused(f"trusted keys: no .pem or .pub file in {path}")
    else:
        found = [path]
    keys: TrustedKeys = {}
    for item in found:
        for key in _keys_in(item):
            keys[key_id_of(key)] = raw_public(key)
    return keys


def _keys_in(path: Path) -> list[Ed25519PublicKey]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Refused(f"cannot read trusted key {path}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY-----" in data:
        raise _Refused(f"trusted key {path} is a private key; pass the public key")
    blocks = _PEM_RE.findall(data)
    if not blocks:
        raise _Refused(f"trusted key {path} is not a public-key PEM file")
    keys = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, UnsupportedAlgorithm):
            raise _Refused(f"trusted key {path} is not a public-key PEM file") from None
        if not isinstance(key, Ed25519PublicKey):
            raise _Refused(f"trusted key {path} is not an Ed25519 key")
        keys.append(key)
    return keys


# -- signature.json and the files --------------------------------------------------------

def _check_file_set(files: dict[str, bytes]) -> None:
    missing = [n for n in RELEASE_FILES if n not in files]
    if missing:
        raise _Refused(f"missing file{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    _refuse_extra(list(files))


def _parse_json(name: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Refused(f"{name} is not valid JSON ({type(exc).__name__})") from None


def _signature_json(data: bytes) -> dict[str, Any]:
    doc = _parse_json(SIGNATURE_FILE, data)
    if not isinstance(doc, dict) or set(doc) != _SIGNATURE_KEYS:
        raise _Refused(f"{SIGNATURE_FILE} does not have the expected fields")
    _exact_form(SIGNATURE_FILE, doc, data)
    if doc["algorithm"] != ALGORITHM or doc["signature_encoding"] != "hex":
        raise _Refused(f"{SIGNATURE_FILE}: algorithm must be ed25519 with a hex signature")
    return doc


def _exact_form(name: str, doc: Any, data: bytes) -> None:
    """Byte-exact form: any edit, even to spacing, is a changed file."""
    try:
        if json_file(doc) != data:
            raise _Refused(f"{name} was changed after export (not in its exact form)")
    except (TypeError, ValueError):
        raise _Refused(f"{name} holds values JSON cannot write back") from None


def _embedded_key(doc: dict[str, Any]) -> Ed25519PublicKey:
    return _pem_key(doc["public_key_pem"], doc["key_id"], f"{SIGNATURE_FILE}: public_key_pem")


def _pem_key(pem: Any, key_id: Any, what: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (AttributeError, UnicodeEncodeError, ValueError, UnsupportedAlgorithm):
        raise _Refused(f"{what} is not a public-key PEM") from None
    if not isinstance(key, Ed25519PublicKey):
        raise _Refused(f"{what} is not an Ed25519 key")
    if public_pem_of(key) != pem or key_id_of(key) != key_id:
        raise _Refused(f"{what}: public key and key_id do not belong together")
    return key


def _check_statement(doc: dict[str, Any]) -> dict[str, Any]:
    statement = doc["statement"]
    if not isinstance(statement, dict) or statement.get("format") != STATEMENT_FORMAT:
        raise _Refused(f"{SIGNATURE_FILE}: the release statement is missing or of another format")
    files = statement.get("files")
    if (not isinstance(files, dict) or set(files) != set(SIGNED_FILES)
            or not all(isinstance(v, str) and _SHA_RE.match(v) for v in files.values())):
        raise _Refused(f"{SIGNATURE_FILE}: the statement does not list the sha256 of "
                       f"{', '.join(SIGNED_FILES)}")
    if doc["files"] != files or statement.get("key_id") != doc["key_id"]:
        raise _Refused(f"{SIGNATURE_FILE}: its file list or key_id disagrees with the signed statement")
    return statement


def _signature_bytes(text: Any, what: str) -> bytes:
    try:
        signature = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        signature = b""
    if len(signature) != 64 or signature.hex() != text:
        raise _Refused(f"{what}: the signature is not 64 bytes of lower-case hex")
    return signature


def _check_signature(key: Ed25519PublicKey, doc: dict[str, Any],
                     statement: dict[str, Any]) -> None:
    signature = _signature_bytes(doc["signature"], SIGNATURE_FILE)
    # An unverified statement's file hashes mean nothing: stop here on failure.
    try:
        key.verify(signature, canonical_json(statement).encode("utf-8"))
    except InvalidSignature:
        raise _Refused(f"the signature does not match the release statement ({SIGNATURE_FILE} "
                       "changed, or signed by another key)") from None
    except (TypeError, ValueError):
        raise _Refused(f"{SIGNATURE_FILE}: the release statement cannot be checked") from None


def _check_hashes(files: dict[str, bytes], statement: dict[str, Any],
                  result: VerifyResult) -> None:
    for name in SIGNED_FILES:
        actual = sha256_bytes(files[name])
        if actual != statement["files"][name]:
            result.reasons.append(f"{name} was changed: sha256 {actual[:12]}… is not the signed "
                                  f"{statement['files'][name][:12]}…")


# -- the governance batch and its approvals ---------------------------------------------

def _check_governance(files: dict[str, bytes], statement: dict[str, Any], doc: dict[str, Any],
                      result: VerifyResult) -> dict[str, bytes]:
    """The batch describes the signed model; its approvals (key id -> raw
    key), each checked. Format /1 and /2: the one release signature."""
    batch = _parse_json("governance.json", files["governance.json"])
    _parse_json("manifest.json", files["manifest.json"])
    to = batch.get("to_version") if isinstance(batch, dict) else None
    if not isinstance(to, dict) or to.get("sha256") != statement["files"]["model.onnx"] \
            or to.get("model") != statement.get("model") \
            or to.get("version") != statement.get("version"):
        raise _Refused("governance.json does not describe the signed model.onnx")
    gate = batch.get("gate")
    result.forced = gate.get("forced") if isinstance(gate, dict) else None
    result.force_reason = gate.get("force_reason") if isinstance(gate, dict) else None
    if batch.get("format") in SINGLE_SIGNATURE_BATCHES:
        result.approvals_required = 1
        result.approvals = [{"key_id": doc["key_id"], "name": batch.get("approved_by"),
                             "approved_at": batch.get("approved_at"), "trusted": False}]
        return {doc["key_id"]: raw_public(_embedded_key(doc))}
    if batch.get("format") != BATCH_FORMAT:
        raise _Refused(f"governance.json is of an unknown format ({str(batch.get('format'))[:60]})")
    return _check_approvals(batch, statement["files"]["manifest.json"], doc["key_id"], result)


def batch_approvals(batch: dict[str, Any], manifest_sha256: str, signer_key_id: str
                    ) -> tuple[dict[str, bytes], str | None]:
    """The approvals of a /3 batch (key id -> raw public key), each checked
    as ``verify_release`` does, or the first problem (for checks inside the
    workspace)."""
    try:
        return _check_approvals(batch, manifest_sha256, signer_key_id, VerifyResult(False)), None
    except _Refused as exc:
        return {}, str(exc)


def _check_approvals(batch: dict[str, Any], manifest_sha: str, signer_key_id: str,
                     result: VerifyResult) -> dict[str, bytes]:
    try:
        request = request_part(batch)
        required = request["approvals_required"]
        requester = request["requested_by"]
        approvals = batch["approvals"]
        request_signature = batch["request_signature"]
    except KeyError as exc:
        raise _Refused(f"governance.json: the request lacks its field {exc}") from None
    if not isinstance(required, int) or isinstance(required, bool) or required < 1 \
            or not isinstance(approvals, list) or not isinstance(requester, dict):
        raise _Refused("governance.json: approvals_required, approvals or requested_by is malformed")
    result.approvals_required = required
    _check_one(request, manifest_sha, "request", requester, request_signature, "the request")
    keys: dict[str, bytes] = {}
    for i, approval in enumerate(approvals):
        key = _check_one(request, manifest_sha, "approve", approval,
                         approval.get("signature") if isinstance(approval, dict) else None,
                         f"approval {i + 1}")
        if approval["key_id"] in keys:
            raise _Refused(f"governance.json: key {approval['key_id']} approved twice")
        keys[approval["key_id"]] = raw_public(key)
        result.approvals.append({"key_id": approval["key_id"], "name": approval.get("name"),
                                 "approved_at": approval.get("approved_at"), "trusted": False})
    if signer_key_id not in keys:
        raise _Refused(f"the release statement is signed by key {signer_key_id}, which made "
                       "none of the approvals")
    if request["separation"] and required >= 2 and requester.get("key_id") in keys:
        raise _Refused("governance.json: the requester approved their own release, which "
                       "separation forbids")
    return keys


def _check_one(request: dict[str, Any], manifest_sha: str, act: str, signer: Any,
               signature: Any, what: str) -> Ed25519PublicKey:
    """One request or approval signature, with the key the batch gives for it."""
    if not isinstance(signer, dict):
        raise _Refused(f"governance.json: {what} is malformed")
    key = _pem_key(signer.get("public_pem"), signer.get("key_id"),
                   f"governance.json: the public key of {what}")
    raw = _signature_bytes(signature, f"governance.json: {what}")
    try:
        key.verify(raw, approval_message(request, manifest_sha, act))
    except InvalidSignature:
        raise _Refused(f"governance.json: the signature of {what} (key {signer.get('key_id')}) "
                       "does not verify") from None
    except (TypeError, ValueError, KeyError, AttributeError):
        raise _Refused(f"governance.json: {what} cannot be checked") from None
    return key


def _check_trust(result: VerifyResult, approvals: dict[str, bytes], trust: TrustedKeys | None,
                 allow_untrusted: bool, min_approvals: int | None) -> None:
    required = max(result.approvals_required or 1, min_approvals or 0)
    if trust is None:
        if len(approvals) < required:
            result.reasons.append(f"{len(approvals)} approval(s), {required} required")
        if not allow_untrusted:
            result.reasons.append(NO_TRUST)
        else:
            result.warnings.append("signatures checked with the public keys inside the release "
                                   "only: no key was independently trusted (trusted: false)")
        return
    for approval in result.approvals:
        approval["trusted"] = trust.get(approval["key_id"]) == approvals[approval["key_id"]]
    result.approvals_trusted = sum(a["trusted"] for a in result.approvals)
    if trust.get(result.key_id) != approvals.get(result.key_id):
        result.reasons.append(f"signed by key {result.key_id}, which is not a trusted key")
    if result.approvals_trusted < required:
        result.reasons.append(f"{result.approvals_trusted} of the {required} approvals required "
                              "are by trusted keys")
