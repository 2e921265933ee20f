"""Workspace signing keys (Ed25519): created on the first release, exported,
imported; every change of key is written to the ledger.

The private half stays in the workspace (``signing_keys``) unless exported on
purpose (PKCS#8 PEM, optionally password-protected, owner-only file mode);
verifiers are given the public half.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workstation import ledger
from workstation.errors import WorkstationError
from workstation.offline_verify import ALGORITHM, key_id_of, public_pem_of
from workstation.workspace import Workspace, now_iso

__all__ = ["ALGORITHM", "SigningKey", "active_key", "ensure_key", "export_private_key",
           "export_public_key", "import_key", "key_id_of", "list_keys", "private_key_for",
           "private_pem_of", "public_pem_of"]


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


def private_pem_of(key: Ed25519PrivateKey, password: str | None = None) -> str:
    """The private key as PKCS#8 PEM text, encrypted when a password is given."""
    encryption = (serialization.BestAvailableEncryption(password.encode("utf-8")) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption).decode("ascii")


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
    key_id, pem, now = key_id_of(public), public_pem_of(public), now_iso()
    ws.execute("UPDATE signing_keys SET active = false WHERE active")
    if ws.execute("SELECT 1 FROM signing_keys WHERE key_id = ?", [key_id]).fetchone():
        # Re-importing a known key (e.g. one exported earlier) re-activates it.
        ws.execute("UPDATE signing_keys SET private_pem = ?, active = true WHERE key_id = ?",
                   [private_pem_of(private), key_id])
    else:
        ws.execute("INSERT INTO signing_keys VALUES (?, ?, ?, ?, true)",
                   [key_id, pem, private_pem_of(private), now])
    ledger.append(ws, kind, {"key_id": key_id, "public_pem": pem, **extra}, actor)
    return SigningKey(key_id, pem, now, True, True)


def private_key_for(ws: Workspace, key_id: str) -> Ed25519PrivateKey:
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
    private = private_key_for(ws, key.key_id)
    return _write_new_file(Path(path), private_pem_of(private, password).encode("ascii"),
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
