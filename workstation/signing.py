"""Which public key checks a release signature, and writing public keys out.

Releases are signed by personal identities (workstation.identity), whose
public keys are in the trust store (workstation.trust). Workspaces written
before schema v4 signed with a workspace key kept in the file; migration 4
kept only its public half, as a verification-only **legacy key**
(``legacy_keys``), so that releases it signed keep verifying. No workspace
holds a private key any more.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workstation import trust
from workstation.errors import WorkstationError
from workstation.offline_verify import ALGORITHM, key_id_of, public_pem_of
from workstation.workspace import Workspace

__all__ = ["ALGORITHM", "LegacyKey", "export_public_key", "key_id_of", "legacy_keys",
           "public_pem_for", "public_pem_of"]


@dataclass(frozen=True)
class LegacyKey:
    """A pre-v4 workspace signing key, kept for verification only."""

    key_id: str
    public_pem: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def legacy_keys(ws: Workspace) -> list[LegacyKey]:
    rows = ws.execute("SELECT key_id, public_pem, created_at FROM legacy_keys "
                      "ORDER BY created_at").fetchall()
    return [LegacyKey(*r) for r in rows]


def public_pem_for(ws: Workspace, key_id: str) -> str | None:
    """The public key with ``key_id``: a trusted identity's, else a legacy key's."""
    pem = trust.public_pem(ws, key_id)
    if pem is not None:
        return pem
    rows = ws.execute("SELECT public_pem FROM legacy_keys WHERE key_id = ?", [key_id]).fetchall()
    return rows[0][0] if rows else None


def export_public_key(ws: Workspace, path: str | os.PathLike, key_id: str | None = None, *,
                      overwrite: bool = False) -> Path:
    """Write a public key as PEM for ``verify-release --trust``: ``key_id`` (a
    trusted identity's or a legacy key's), default the newest legacy key."""
    if key_id is None:
        found = legacy_keys(ws)
        if not found:
            raise WorkstationError("this workspace has no legacy workspace key; name the key "
                                   "(--key-id, see `workstation trust list`) or use "
                                   "`workstation identity export-public`")
        pem = found[-1].public_pem
    else:
        pem = public_pem_for(ws, key_id)
        if pem is None:
            raise WorkstationError(f"no key {key_id} in this workspace (trusted or legacy)")
    out = Path(path)
    # O_EXCL: the open itself refuses an existing file (or link); no check-then-open.
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(out, flags, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(pem.encode("ascii"))
    except FileExistsError:
        raise WorkstationError(f"{out} already exists; choose another path") from None
    except OSError as exc:
        raise WorkstationError(f"cannot write {out}: {exc.strerror}") from None
    return out
