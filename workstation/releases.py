"""Releases: governance batches, Ed25519 signing, rollback, export and offline verification.

Releasing a model version writes a **governance batch** (what changed from
the currently released version: label edits, patches, regression evidence,
who approved it), signs a **release statement** over the three release files
(model.onnx, manifest.json, governance.json) with the workspace's Ed25519 key,
and appends a ``release`` row to the ledger, all in one transaction. Which
release is current is derived from the ledger alone: the newest release not
undone by a ``rollback``. ``export_release`` writes the signed files to a
folder or .zip, and ``verify_release`` checks one offline, with nothing but
the files and (ideally) a trusted public key.

Label edits in a batch are the review-log rows after the previous release's
review head, up to the new version's ``manifest.lineage.dataset_snapshot``
(the review head it was trained on) when the manifest names one, else up to
the review head at release time. The batch says which (``basis``).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workstation import ledger, review
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json, sha256_bytes
from workstation.models.registry import ModelVersion, get_version, split_ref
from workstation.workspace import Workspace, default_analyst, now_iso

ALGORITHM = "ed25519"
BATCH_FORMAT = "workstation.governance-batch/1"
STATEMENT_FORMAT = "workstation.release-statement/1"
SIGNED_FILES = ("model.onnx", "manifest.json", "governance.json")
SIGNATURE_FILE = "signature.json"
RELEASE_FILES = SIGNED_FILES + (SIGNATURE_FILE,)
_SIGNATURE_KEYS = {"algorithm", "key_id", "public_key_pem", "signature", "signature_encoding",
                   "statement", "files"}
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_ZIP_BYTES = 8 << 30  # refuse zips that claim more than this when unpacked


# -- records ---------------------------------------------------------------

@dataclass(frozen=True)
class Release:
    """One release: a model version promoted, with its signed governance batch."""

    id: int
    model: str
    version: int
    model_version_id: int
    sha256: str
    from_version_id: int | None
    from_version: int | None
    batch: dict[str, Any]
    signature: str
    key_id: str
    created_at: str
    created_by: str
    ledger_seq: int
    current: bool = False

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SigningKey:
    """A workspace signing key (the private part never leaves through this record)."""

    key_id: str
    public_pem: str
    created_at: str
    active: bool
    has_private: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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


# -- model versions --------------------------------------------------------

def _version_by_id(ws: Workspace, version_id: int) -> ModelVersion | None:
    try:
        return get_version(ws, version_id)
    except WorkstationError:
        return None


def _resolve_version(ws: Workspace, ref: str | int) -> ModelVersion:
    """A model version from its id or NAME@VERSION (a release names its version exactly)."""
    if isinstance(ref, int):
        return get_version(ws, ref)
    name, version = split_ref(ref)
    if version is None:
        raise WorkstationError(f"say which version of '{name}' to release: {name}@VERSION")
    rows = ws.execute("SELECT id FROM model_versions WHERE model = ? AND version = ?",
                      [name, version]).fetchall()
    if not rows:
        raise WorkstationError(f"no model version {name}@{version}")
    return get_version(ws, int(rows[0][0]))


def _blob(ws: Workspace, sha256: str, what: str) -> bytes:
    row = ws.execute("SELECT data FROM blobs WHERE sha256 = ?", [sha256]).fetchone()
    if row is None:
        raise WorkstationError(f"{what}: its ONNX artifact {sha256[:12]}… is missing")
    data = bytes(row[0])
    # Content-addressed: never sign or ship bytes that no longer match their name.
    if sha256_bytes(data) != sha256:
        raise WorkstationError(f"{what}: its ONNX artifact {sha256[:12]}… does not match its sha256")
    return data


# -- signing keys ----------------------------------------------------------

def _public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _private_pem(key: Ed25519PrivateKey, password: str | None = None) -> str:
    encryption = (serialization.BestAvailableEncryption(password.encode("utf-8")) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption).decode("ascii")


def key_id_of(key: Ed25519PublicKey) -> str:
    """sha256 of the raw 32-byte public key, first 16 hex digits."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_bytes(raw)[:16]


_KEY_COLUMNS = "key_id, public_pem, created_at, active, private_pem IS NOT NULL"


def list_keys(ws: Workspace) -> list[SigningKey]:
    rows = ws.execute(f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY created_at").fetchall()
    return [SigningKey(*r) for r in rows]


def active_key(ws: Workspace) -> SigningKey | None:
    row = ws.execute(f"SELECT {_KEY_COLUMNS} FROM signing_keys WHERE active "
                     "ORDER BY created_at DESC LIMIT 1").fetchone()
    return SigningKey(*row) if row else None


def ensure_key(ws: Workspace, actor: str | None = None) -> SigningKey:
    """The active signing key, created (and logged) if the workspace has none."""
    with ws.transaction():
        key = active_key(ws)
        if key is not None:
            return key
        private = Ed25519PrivateKey.generate()
        return _store_key(ws, private, "key-created", actor, {})


def _store_key(ws: Workspace, private: Ed25519PrivateKey, kind: str, actor: str | None,
               extra: dict[str, Any]) -> SigningKey:
    public = private.public_key()
    key_id, pem, now = key_id_of(public), _public_pem(public), now_iso()
    ws.execute("UPDATE signing_keys SET active = false WHERE active")
    if ws.execute("SELECT 1 FROM signing_keys WHERE key_id = ?", [key_id]).fetchone():
        # Re-importing a known key (e.g. one exported earlier) re-activates it.
        ws.execute("UPDATE signing_keys SET private_pem = ?, active = true WHERE key_id = ?",
                   [_private_pem(private), key_id])
    else:
        ws.execute("INSERT INTO signing_keys VALUES (?, ?, ?, ?, true)",
                   [key_id, pem, _private_pem(private), now])
    ledger.append(ws, kind, {"key_id": key_id, "public_pem": pem, **extra}, actor)
    return SigningKey(key_id, pem, now, True, True)


def _signing_private_key(ws: Workspace, key_id: str) -> Ed25519PrivateKey:
    row = ws.execute("SELECT private_pem FROM signing_keys WHERE key_id = ?", [key_id]).fetchone()
    if row is None or row[0] is None:
        raise WorkstationError(f"signing key {key_id} has no private part in this workspace")
    return serialization.load_pem_private_key(row[0].encode("ascii"), password=None)


def export_public_key(ws: Workspace, path: str | os.PathLike, *,
                      overwrite: bool = False) -> Path:
    """Write the active key's public half as PEM (what verifiers should trust)."""
    key = _require_active(ws)
    return _write_new_file(Path(path), key.public_pem.encode("ascii"), 0o644, overwrite)


def export_private_key(ws: Workspace, path: str | os.PathLike, *, password: str | None = None,
                       overwrite: bool = False) -> Path:
    """Write the active key's private half as PKCS#8 PEM (owner-only file mode)."""
    key = _require_active(ws)
    private = _signing_private_key(ws, key.key_id)
    return _write_new_file(Path(path), _private_pem(private, password).encode("ascii"),
                           0o600, overwrite)


def _require_active(ws: Workspace) -> SigningKey:
    key = active_key(ws)
    if key is None:
        raise WorkstationError("this workspace has no signing key yet: it is created on the "
                               "first release, or import one")
    return key


def _write_new_file(path: Path, data: bytes, mode: int, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise WorkstationError(f"{path} already exists; choose another path")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(path, flags, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise WorkstationError(f"cannot write {path}: {exc.strerror}") from None
    return path


def import_key(ws: Workspace, path: str | os.PathLike, *, password: str | None = None,
               actor: str | None = None) -> SigningKey:
    """Make the Ed25519 private key in the PEM file at ``path`` the active signing key."""
    private = _read_private_key(Path(path), password)
    with ws.transaction():
        return _store_key(ws, private, "key-imported", actor, {"source": Path(path).name})


def _read_private_key(path: Path, password: str | None) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkstationError(f"cannot read key file {path}: {exc.strerror}") from None
    if b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise WorkstationError(f"{path} holds a public key; importing needs the private key")
    try:
        key = serialization.load_pem_private_key(
            data, password=password.encode("utf-8") if password else None)
    except TypeError:
        raise WorkstationError(f"{path} is encrypted: give its password" if not password
                               else f"{path} is not encrypted: give no password") from None
    except (ValueError, UnsupportedAlgorithm):
        raise WorkstationError(f"{path} is not a readable private-key PEM (or the password "
                               "is wrong)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise WorkstationError(f"{path} holds a {type(key).__name__.lstrip('_')}; "
                               "releases are signed with Ed25519 keys")
    return key


def _sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    """The one place a signature is made (tests replace it to simulate a failure)."""
    return key.sign(message)


# -- the governance batch ---------------------------------------------------

def _gate(report: dict[str, Any] | None, force: bool, force_reason: str) -> dict[str, Any]:
    """The regression gate's verdict; a failed gate blocks unless forced with a reason."""
    passed = _gate_pass(report)
    if passed is False and not force:
        raise WorkstationError("the regression gate failed (pass=false); release refused "
                               "(force it only with a reason)")
    if passed is False and not (force_reason or "").strip():
        raise WorkstationError("forcing a release past a failed regression gate needs a reason")
    forced = passed is False
    return {"pass": passed, "forced": forced, "force_reason": force_reason if forced else None}


def _gate_pass(report: dict[str, Any] | None) -> bool | None:
    """``report['gate']['pass']`` (or ``report['gate']`` / ``report['pass']``); None if absent."""
    if report is None:
        return None
    if not isinstance(report, dict):
        raise WorkstationError("the regression report must be a JSON object")
    gate = report.get("gate")
    value = gate.get("pass") if isinstance(gate, dict) else gate
    if value is None:
        value = report.get("pass")
    if value is not None and not isinstance(value, bool):
        raise WorkstationError("the regression report's gate 'pass' must be true or false")
    return value


def _patches(manifest: dict[str, Any]) -> list[Any]:
    patches = manifest.get("patches", manifest.get("patch"))
    if patches is None:
        return []
    return list(patches) if isinstance(patches, list) else [patches]


def _snapshot_head(manifest: dict[str, Any]) -> str | None:
    """The review head the version was trained on, if its manifest says."""
    lineage = manifest.get("lineage")
    snapshot = lineage.get("dataset_snapshot") if isinstance(lineage, dict) else None
    if isinstance(snapshot, dict):
        snapshot = snapshot.get("review_head")
    if snapshot is not None and not isinstance(snapshot, str):
        raise WorkstationError("manifest lineage.dataset_snapshot must be a review-head hash")
    return snapshot


def _review_seq(ws: Workspace, head: str, what: str) -> int:
    if head in ("", review.GENESIS):
        return 0
    row = ws.execute("SELECT seq FROM review_log WHERE hash = ?", [head]).fetchone()
    if row is None:
        raise WorkstationError(f"{what} names review head {head[:12]}…, which is not in this "
                               "workspace's review log")
    return int(row[0])


def _label_edits(ws: Workspace, previous: Release | None, target: ModelVersion) -> dict[str, Any]:
    start = previous.batch["label_edits"]["head"] if previous else ""
    snapshot = _snapshot_head(target.manifest)
    end, basis = ((snapshot, "model-dataset-snapshot") if snapshot is not None
                  else (review.head_hash(ws), "review-head-at-release"))
    lo = _review_seq(ws, start, f"release {previous.ref}" if previous else "release")
    hi = _review_seq(ws, end, f"manifest of {target.model}@{target.version}")
    # A version trained on an older snapshot than the previous release lists no edits.
    rows = ws.execute("SELECT seq, example_id, field, old, new, action FROM review_log "
                      "WHERE seq > ? AND seq <= ? ORDER BY seq", [lo, hi]).fetchall()
    edits = [{"seq": s, "example_id": e, "field": f, "old": json.loads(o), "new": json.loads(n),
              "action": a} for s, e, f, o, n, a in rows]
    return {"basis": basis, "from_head": start, "head": end, "count": len(edits), "edits": edits}


def _version_json(v: ModelVersion) -> dict[str, Any]:
    return {"model_version_id": v.id, "model": v.model, "version": v.version,
            "sha256": v.sha256, "input_kind": v.input_kind, "parent_id": v.parent_id}


def _governance_batch(ws: Workspace, release_id: int, target: ModelVersion,
                      previous: Release | None, report: dict[str, Any] | None,
                      gate: dict[str, Any], approver: str, notes: str) -> dict[str, Any]:
    from_version = None if previous is None else {
        "release_id": previous.id, "model_version_id": previous.model_version_id,
        "model": previous.model, "version": previous.version, "sha256": previous.sha256}
    batch = {"format": BATCH_FORMAT, "workspace_id": ws.id, "release_id": release_id,
             "model": target.model, "from_version": from_version,
             "to_version": _version_json(target),
             "label_edits": _label_edits(ws, previous, target),
             "patches": _patches(target.manifest), "regression_report": report, "gate": gate,
             "approved_by": approver, "approved_at": now_iso(), "notes": notes or ""}
    try:
        # Round-trip so the signed batch is exactly what the workspace stores.
        return json.loads(canonical_json(batch))
    except (TypeError, ValueError) as exc:
        raise WorkstationError(f"the regression report is not plain JSON: {exc}") from None


# -- the signed files ------------------------------------------------------

def _json_file(value: Any) -> bytes:
    """The exact bytes of a release JSON file (sorted keys, 2-space indent, final newline)."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


def _statement(batch: dict[str, Any], manifest: dict[str, Any], key_id: str) -> dict[str, Any]:
    """What is signed: the hashes of the three release files, and whose release it is."""
    to = batch["to_version"]
    files = {"model.onnx": to["sha256"], "manifest.json": sha256_bytes(_json_file(manifest)),
             "governance.json": sha256_bytes(_json_file(batch))}
    return {"format": STATEMENT_FORMAT, "algorithm": ALGORITHM, "key_id": key_id,
            "workspace_id": batch["workspace_id"], "release_id": batch["release_id"],
            "model": to["model"], "version": to["version"], "files": files}


def _signature_doc(statement: dict[str, Any], signature_hex: str, public_pem: str) -> dict[str, Any]:
    return {"algorithm": ALGORITHM, "key_id": statement["key_id"], "public_key_pem": public_pem,
            "signature": signature_hex, "signature_encoding": "hex", "statement": statement,
            "files": statement["files"]}


# -- release and rollback --------------------------------------------------

def release(ws: Workspace, model_ref_or_version_id: str | int, *, approver: str | None = None,
            regression_report: dict[str, Any] | None = None, notes: str = "",
            force: bool = False, force_reason: str = "") -> Release:
    """Promote a model version: governance batch, signature, release row and ledger entry."""
    approver = approver or default_analyst()
    with ws.transaction():
        target = _resolve_version(ws, model_ref_or_version_id)
        previous = current_release(ws, target.model)
        if previous is not None and previous.model_version_id == target.id:
            raise WorkstationError(f"{previous.ref} is already the current release")
        gate = _gate(regression_report, force, force_reason)
        _blob(ws, target.sha256, f"{target.model}@{target.version}")
        key = ensure_key(ws, approver)
        release_id = ws.next_id("releases")
        batch = _governance_batch(ws, release_id, target, previous, regression_report, gate,
                                  approver, notes)
        statement = _statement(batch, target.manifest, key.key_id)
        signature = _sign(_signing_private_key(ws, key.key_id),
                          canonical_json(statement).encode("utf-8")).hex()
        entry = ledger.append(ws, "release", _release_payload(batch, statement, signature), approver)
        _insert_release(ws, batch, signature, key.key_id, approver, entry.seq)
        return replace(_get_release(ws, release_id), current=True)


def _release_payload(batch: dict[str, Any], statement: dict[str, Any],
                     signature: str) -> dict[str, Any]:
    to, frm = batch["to_version"], batch["from_version"]
    return {"release_id": batch["release_id"], "model": batch["model"], "version": to["version"],
            "model_version_id": to["model_version_id"], "sha256": to["sha256"],
            "from_release_id": frm and frm["release_id"], "from_version": frm and frm["version"],
            "governance_sha256": statement["files"]["governance.json"],
            "key_id": statement["key_id"], "signature": signature,
            "forced": batch["gate"]["forced"]}


def _insert_release(ws: Workspace, batch: dict[str, Any], signature: str, key_id: str,
                    actor: str, ledger_seq: int) -> None:
    frm = batch["from_version"]
    ws.execute("INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [batch["release_id"], batch["model"], batch["to_version"]["model_version_id"],
                frm and frm["model_version_id"], canonical_json(batch), signature, key_id,
                batch["approved_at"], actor, ledger_seq])


_RELEASE_COLUMNS = ("id, model, model_version_id, from_version_id, batch, signature, key_id, "
                    "created_at, created_by, ledger_seq")


def _from_row(row: tuple) -> Release:
    (rid, model, version_id, from_id, batch_text, signature, key_id, created_at, created_by,
     seq) = row
    batch = json.loads(batch_text)
    to, frm = batch["to_version"], batch["from_version"]
    return Release(rid, model, to["version"], version_id, to["sha256"], from_id,
                   frm and frm["version"], batch, signature, key_id, created_at, created_by, seq)


def _get_release(ws: Workspace, release_id: int) -> Release:
    row = ws.execute(f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE id = ?",
                     [release_id]).fetchone()
    if row is None:
        raise WorkstationError(f"the ledger names release {release_id}, which is missing")
    return _from_row(row)


def release_stack(ws: Workspace, model: str) -> list[int]:
    """Release ids of ``model`` in force, oldest first: each rollback undoes the newest."""
    stack: list[int] = []
    for kind, payload in ws.execute(
            "SELECT kind, payload FROM ledger WHERE kind IN ('release', 'rollback') "
            "AND json_extract_string(payload, '$.model') = ? ORDER BY seq", [model]).fetchall():
        if kind == "release":
            stack.append(int(json.loads(payload)["release_id"]))
        elif stack:
            stack.pop()
    return stack


def current_release(ws: Workspace, model: str) -> Release | None:
    """The release of ``model`` in force now, according to the ledger."""
    stack = release_stack(ws, model)
    return replace(_get_release(ws, stack[-1]), current=True) if stack else None


def list_releases(ws: Workspace, model: str | None = None) -> list[Release]:
    """Every release (of ``model`` when given), oldest first, the current ones flagged."""
    sql, params = f"SELECT {_RELEASE_COLUMNS} FROM releases", []
    if model is not None:
        sql, params = sql + " WHERE model = ?", [model]
    found = [_from_row(r) for r in ws.execute(sql + " ORDER BY id", params).fetchall()]
    current = {m: (release_stack(ws, m) or [None])[-1] for m in {r.model for r in found}}
    return [replace(r, current=current[r.model] == r.id) for r in found]


def rollback(ws: Workspace, model: str, actor: str | None = None, reason: str = "") -> Release:
    """Make the release before the current one current again (logged); returns it."""
    actor = actor or default_analyst()
    if "@" in model:
        raise WorkstationError(f"rollback takes a model name, not a version ('{model}')")
    with ws.transaction():
        stack = release_stack(ws, model)
        if not stack:
            raise WorkstationError(f"model '{model}' has no release to roll back")
        undone = _get_release(ws, stack[-1])
        if len(stack) < 2:
            raise WorkstationError(f"{undone.ref} is the first release of '{model}' in force; "
                                   "there is no earlier release to roll back to")
        restored = _get_release(ws, stack[-2])
        ledger.append(ws, "rollback", {
            "model": model, "from_release_id": undone.id, "from_version": undone.version,
            "to_release_id": restored.id, "to_version": restored.version,
            "reason": reason or ""}, actor)
        return replace(restored, current=True)


# -- export ----------------------------------------------------------------

def export_release(ws: Workspace, model_ref: str, out: str | os.PathLike) -> Path:
    """Write a release's four files to the folder ``out``, or a zip if it ends in .zip.

    ``model_ref`` is NAME (its current release) or NAME@VERSION (that version's
    newest release, current or not).
    """
    rel = _release_for(ws, model_ref)
    files = release_files(ws, rel)
    out = Path(out)
    as_zip = out.suffix.lower() == ".zip"
    # An empty folder may receive a folder export; nothing existing is overwritten.
    if out.exists() and (as_zip or not out.is_dir() or any(out.iterdir())):
        raise WorkstationError(f"{out} already exists; export to a new path")
    try:
        (_write_zip if as_zip else _write_folder)(files, out)
    except OSError as exc:
        raise WorkstationError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def _release_for(ws: Workspace, model_ref: str) -> Release:
    name, version = split_ref(model_ref)
    if version is None:
        found = current_release(ws, name)
        if found is None:
            raise WorkstationError(f"model '{name}' has no current release")
        return found
    row = ws.execute(f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE model = ? AND "
                     "model_version_id IN (SELECT id FROM model_versions WHERE model = ? "
                     "AND version = ?) ORDER BY id DESC LIMIT 1", [name, name, version]).fetchone()
    if row is None:
        raise WorkstationError(f"{name}@{version} was never released")
    return _from_row(row)


def release_files(ws: Workspace, rel: Release) -> dict[str, bytes]:
    """The four files of a release, checked against its stored signature first."""
    problem = check_release(ws, rel)
    if problem:
        raise WorkstationError(f"{problem}; not exported")
    manifest = _version_manifest(ws, rel)
    statement = _statement(rel.batch, manifest, rel.key_id)
    public_pem = _key_public_pem(ws, rel.key_id)
    return {"model.onnx": _blob(ws, rel.sha256, rel.ref),
            "manifest.json": _json_file(manifest),
            "governance.json": _json_file(rel.batch),
            SIGNATURE_FILE: _json_file(_signature_doc(statement, rel.signature, public_pem))}


def _version_manifest(ws: Workspace, rel: Release) -> dict[str, Any]:
    version = _version_by_id(ws, rel.model_version_id)
    if version is None:
        raise WorkstationError(f"release {rel.id}: model version {rel.ref} is missing")
    return version.manifest


def _key_public_pem(ws: Workspace, key_id: str) -> str | None:
    row = ws.execute("SELECT public_pem FROM signing_keys WHERE key_id = ?", [key_id]).fetchone()
    return row[0] if row else None


def _write_folder(files: dict[str, bytes], out: Path) -> None:
    # Written beside the target and renamed, so a failure leaves no half release.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if out.exists():
            out.rmdir()  # only ever an empty folder (checked by the caller)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_zip(files: dict[str, bytes], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in RELEASE_FILES:
                # A fixed timestamp: the same release zips to the same bytes.
                zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), files[name],
                            compress_type=zipfile.ZIP_DEFLATED)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# -- checks inside the workspace --------------------------------------------

def check_release(ws: Workspace, rel: Release) -> str | None:
    """Does the stored signature still cover the stored batch, manifest and ledger row?"""
    public_pem = _key_public_pem(ws, rel.key_id)
    if public_pem is None:
        return f"release {rel.id} ({rel.ref}): its signing key {rel.key_id} is missing"
    version = _version_by_id(ws, rel.model_version_id)
    if version is None or version.sha256 != rel.sha256:
        return f"release {rel.id} ({rel.ref}): its model version is missing or changed"
    statement = _statement(rel.batch, version.manifest, rel.key_id)
    if not _signature_ok(public_pem, rel.signature, statement):
        return (f"release {rel.id} ({rel.ref}): signature does not match its governance "
                "batch and manifest (changed after signing)")
    entry = ledger.get(ws, rel.ledger_seq)
    if entry is None or entry.kind != "release" or entry.payload.get("release_id") != rel.id \
            or entry.payload.get("signature") != rel.signature:
        return f"release {rel.id} ({rel.ref}): its ledger row {rel.ledger_seq} does not match"
    return None


def _signature_ok(public_pem: str, signature_hex: str, statement: dict[str, Any]) -> bool:
    try:
        key = serialization.load_pem_public_key(public_pem.encode("ascii"))
        key.verify(bytes.fromhex(signature_hex), canonical_json(statement).encode("utf-8"))
        return True
    except (InvalidSignature, ValueError, TypeError, AttributeError, UnsupportedAlgorithm):
        return False


def verify_releases(ws: Workspace) -> str | None:
    """The ledger chain, then every release's signature; the first problem, or None."""
    problem = ledger.verify_ledger(ws)
    if problem:
        return problem
    for rel in list_releases(ws):
        problem = check_release(ws, rel)
        if problem:
            return problem
    return None


# -- offline verification ---------------------------------------------------

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
        if _json_file(doc) != data:
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
    if _public_pem(key) != pem or key_id_of(key) != doc["key_id"]:
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
