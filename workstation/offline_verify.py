"""Offline verification of an exported release (a folder or .zip), with nothing
but its files and, ideally, a trusted public key: this module imports neither
the workspace nor DuckDB. It also defines the release format (file names,
JSON form, key identity) that workstation.releases writes and
workstation.signing builds the workspace's keys on.

A release is four files: model.onnx, manifest.json and governance.json, whose
sha256 the release statement lists, and signature.json, which holds the
statement, its Ed25519 signature and the signer's public key. Any changed
byte in any file is refused, and so is any file the signature does not cover.
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

STATEMENT_FORMAT = "workstation.release-statement/1"
SIGNED_FILES = ("model.onnx", "manifest.json", "governance.json")
SIGNATURE_FILE = "signature.json"
RELEASE_FILES = SIGNED_FILES + (SIGNATURE_FILE,)
_SIGNATURE_KEYS = {"algorithm", "key_id", "public_key_pem", "signature", "signature_encoding",
                   "statement", "files"}
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_ZIP_BYTES = 8 << 30  # refuse zips that claim more than this when unpacked
ALGORITHM = "ed25519"


def key_id_of(key: Ed25519PublicKey) -> str:
    """sha256 of the raw 32-byte public key, first 16 hex digits."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_bytes(raw)[:16]


def public_pem_of(key: Ed25519PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM text."""
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


@dataclass
class VerifyResult:
    """The outcome of checking an exported release offline.

    ``reasons`` says why it is not ok (empty when ok); ``warnings`` holds
    caveats of an ok result, e.g. that no trusted key was given.
    """

    ok: bool
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    key_trusted: bool = False
    key_id: str | None = None
    model: str | None = None
    version: int | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Refused(Exception):
    """Verification cannot go on; the message is the reason."""


def json_file(value: Any) -> bytes:
    """The exact bytes of a release JSON file (sorted keys, 2-space indent, final newline)."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


def verify_release(path: str | os.PathLike, public_key: str | os.PathLike | None = None
                   ) -> VerifyResult:
    """Check an exported release (folder or .zip) offline; never raises on bad input.

    With ``public_key`` (a PEM file) the signature must be made by that key;
    without it the key embedded in signature.json is used and the result
    warns that it was not independently trusted.
    """
    try:
        files = _read_release(Path(path))
        trusted = _load_trusted_key(Path(public_key)) if public_key is not None else None
    except _Refused as exc:
        return VerifyResult(False, [str(exc)])
    return verify_release_files(files, trusted)


def verify_release_files(files: dict[str, bytes],
                         trusted: Ed25519PublicKey | None = None) -> VerifyResult:
    """Check a release given as {file name: bytes} (what ``verify_release`` reads)."""
    result = VerifyResult(False, key_trusted=trusted is not None)
    try:
        _check_file_set(files)
        doc = _signature_json(files[SIGNATURE_FILE])
        embedded = _embedded_key(doc)
        result.key_id = doc["key_id"]
        key = _choose_key(embedded, trusted, result)
        statement = _check_statement(doc)
        result.model, result.version = statement.get("model"), statement.get("version")
        result.files = dict(statement["files"])
        _check_signature(key, doc, statement)
        _check_hashes(files, statement, result)
        _check_governance(files, statement, result)
    except _Refused as exc:
        result.reasons.append(str(exc))
    result.ok = not result.reasons
    if result.ok and trusted is None:
        result.warnings.append("signature is valid for the public key inside signature.json, "
                               "which was not independently trusted (pass a trusted public key)")
    return result


def _read_release(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise _Refused(f"no release at {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Refused(f"cannot read {path}: {exc.strerror}") from None
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise _Refused(f"{path} is neither a release folder nor a zip file")
    return _read_zip(data, path)


def _read_folder(path: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for item in sorted(path.iterdir()):
        if not item.is_file():
            raise _Refused(f"unexpected entry '{item.name}' in the release folder")
        try:
            files[item.name] = item.read_bytes()
        except OSError as exc:
            raise _Refused(f"cannot read {item}: {exc.strerror}") from None
    return files


def _read_zip(data: bytes, path: Path) -> dict[str, bytes]:
    """Read members in memory, refusing unsafe names before reading any content."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            for info in zf.infolist():
                _check_member_name(info.filename)
            if sum(i.file_size for i in infos) > _MAX_ZIP_BYTES:
                raise _Refused(f"{path} unpacks to more than {_MAX_ZIP_BYTES >> 30} GiB; refused")
            names = _member_names(infos)
            return {name: zf.read(info) for name, info in zip(names, infos)}
    except _Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - the stdlib zip reader fails in many ways
        # (BadZipFile, zlib.error, struct.error, EOFError, ...) on hostile input: one reason.
        raise _Refused(f"{path} is a damaged or unsupported zip ({type(exc).__name__}: "
                       f"{exc})") from None


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


def _load_trusted_key(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Refused(f"cannot read trusted key {path}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY-----" in data:
        raise _Refused(f"trusted key {path} is a private key; pass the public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise _Refused(f"trusted key {path} is not a public-key PEM file") from None
    if not isinstance(key, Ed25519PublicKey):
        raise _Refused(f"trusted key {path} is not an Ed25519 key")
    return key


def _check_file_set(files: dict[str, bytes]) -> None:
    missing = [n for n in RELEASE_FILES if n not in files]
    extra = sorted(set(files) - set(RELEASE_FILES))
    if missing:
        raise _Refused(f"missing file{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    if extra:
        raise _Refused(f"unexpected file{'s' if len(extra) > 1 else ''} not covered by the "
                       f"signature: {', '.join(extra)}")


def _parse_json(name: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Refused(f"{name} is not valid JSON ({type(exc).__name__})") from None


def _signature_json(data: bytes) -> dict[str, Any]:
    doc = _parse_json(SIGNATURE_FILE, data)
    if not isinstance(doc, dict) or set(doc) != _SIGNATURE_KEYS:
        raise _Refused(f"{SIGNATURE_FILE} does not have the expected fields")
    # Byte-exact form: any edit, even to spacing, is a changed file.
    try:
        if json_file(doc) != data:
            raise _Refused(f"{SIGNATURE_FILE} was changed after export (not in its exact form)")
    except (TypeError, ValueError):
        raise _Refused(f"{SIGNATURE_FILE} holds values JSON cannot write back") from None
    if doc["algorithm"] != ALGORITHM or doc["signature_encoding"] != "hex":
        raise _Refused(f"{SIGNATURE_FILE}: algorithm must be ed25519 with a hex signature")
    return doc


def _embedded_key(doc: dict[str, Any]) -> Ed25519PublicKey:
    pem = doc["public_key_pem"]
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (AttributeError, UnicodeEncodeError, ValueError, UnsupportedAlgorithm):
        raise _Refused(f"{SIGNATURE_FILE}: public_key_pem is not a public-key PEM") from None
    if not isinstance(key, Ed25519PublicKey):
        raise _Refused(f"{SIGNATURE_FILE}: public_key_pem is not an Ed25519 key")
    if public_pem_of(key) != pem or key_id_of(key) != doc["key_id"]:
        raise _Refused(f"{SIGNATURE_FILE}: public key and key_id do not belong together")
    return key


def _choose_key(embedded: Ed25519PublicKey, trusted: Ed25519PublicKey | None,
                result: VerifyResult) -> Ed25519PublicKey:
    if trusted is None:
        return embedded
    if key_id_of(trusted) != key_id_of(embedded):
        result.reasons.append(f"signed with key {key_id_of(embedded)}, not the trusted key "
                              f"{key_id_of(trusted)}")
    return trusted


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


def _check_signature(key: Ed25519PublicKey, doc: dict[str, Any],
                     statement: dict[str, Any]) -> None:
    text = doc["signature"]
    try:
        signature = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        signature = b""
    if len(signature) != 64 or signature.hex() != text:
        raise _Refused(f"{SIGNATURE_FILE}: the signature is not 64 bytes of lower-case hex")
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


def _check_governance(files: dict[str, bytes], statement: dict[str, Any],
                      result: VerifyResult) -> None:
    if result.reasons:
        return  # a changed file is reason enough; its content cannot be trusted
    batch = _parse_json("governance.json", files["governance.json"])
    _parse_json("manifest.json", files["manifest.json"])
    to = batch.get("to_version") if isinstance(batch, dict) else None
    if not isinstance(to, dict) or to.get("sha256") != statement["files"]["model.onnx"] \
            or to.get("model") != statement.get("model") \
            or to.get("version") != statement.get("version"):
        result.reasons.append("governance.json does not describe the signed model.onnx")
