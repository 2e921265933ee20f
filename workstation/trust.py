"""The trust store: which identities' keys may do what in this workspace.

Roles are ``reviewer`` (edit labels), ``adjudicator`` (settle disagreements)
and ``approver`` (trust changes, policy, releases and rollbacks). The first
identity to sign anything in a workspace becomes its owner with every role
(a ``trust-owner`` ledger row, signed by that identity itself). After that,
only an approver changes trust: ``trust-add`` (a new key, or new roles for a
known one) and ``trust-revoke`` rows, signed by the approver. Revocation is
final. A workspace always keeps at least one approver.

The ledger rows are the record; the ``trust`` table (one row per key, with
its current roles) is derived from them in the same transaction, and
``verify_store`` checks that the two agree. ``Timeline`` replays the rows to
say what a key could do at a given time: the review log and the ledger
check every signature against it.

Ledger payloads: trust-owner / trust-add ``{key_id, name, email, public_pem,
roles}``; trust-revoke ``{key_id, reason}``.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from workstation import ledger
from workstation.errors import WorkstationError
from workstation.identity import Signer, require_signer
from workstation.offline_verify import key_id_of, public_pem_of
from workstation.workspace import Workspace

ROLES = ("reviewer", "adjudicator", "approver")
TRUST_KINDS = ("trust-owner", "trust-add", "trust-revoke")
# Ledger kinds only an approver may sign, and that must be signed when
# written since schema v4.
APPROVER_KINDS = ("trust-add", "trust-revoke", "policy-set", "release", "rollback",
                  "release-approve", "release-reject")
# Ledger kinds any trusted key may sign, and that must be signed (a release
# request by someone who is not an approver).
SIGNED_KINDS = ("release-request",)
_COLUMNS = ("key_id", "name", "email", "public_pem", "roles", "added_at", "added_by",
            "revoked_at", "revoked_by", "revoke_reason")


@dataclass(frozen=True)
class TrustedKey:
    """One key of the trust store as it stands now."""

    key_id: str
    name: str
    email: str | None
    public_pem: str
    roles: tuple[str, ...]
    added_at: str
    added_by: str        # key id of the approver who added it (the owner: itself)
    revoked_at: str | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def owner(self) -> bool:
        return self.added_by == self.key_id

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "roles": list(self.roles), "active": self.active,
                "owner": self.owner}


@dataclass(frozen=True)
class TrustChange:
    """What a trust call changed: the key as it now stands, and the ledger row."""

    action: str          # "owner", "added", "roles-changed" or "revoked"
    key: TrustedKey
    ledger_seq: int

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "ledger_seq": self.ledger_seq, **self.key.to_json()}


# -- reading -----------------------------------------------------------------------

def list_keys(ws: Workspace) -> list[TrustedKey]:
    """Every key ever trusted here (revoked ones too), in the order added."""
    rows = ws.execute(f"SELECT {', '.join(_COLUMNS)} FROM trust ORDER BY added_at, key_id"
                      ).fetchall()
    return [_key(r) for r in rows]


def get_key(ws: Workspace, key_id: str) -> TrustedKey | None:
    rows = ws.execute(f"SELECT {', '.join(_COLUMNS)} FROM trust WHERE key_id = ?",
                      [key_id]).fetchall()
    return _key(rows[0]) if rows else None


def _key(row: tuple) -> TrustedKey:
    values = dict(zip(_COLUMNS, row))
    values["roles"] = tuple(r for r in ROLES if r in (values["roles"] or []))
    return TrustedKey(**values)


def parse_roles(text: str | Iterable[str]) -> tuple[str, ...]:
    """Comma-separated role names (or a list of them), checked, in canonical order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = {r.strip().lower() for r in items if r and r.strip()}
    unknown = sorted(names - set(ROLES))
    if unknown or not names:
        raise WorkstationError(f"roles must be one or more of {', '.join(ROLES)} "
                               f"(comma-separated){f', not {unknown[0]!r}' if unknown else ''}")
    return tuple(r for r in ROLES if r in names)


def read_public_key(path: str | Path) -> str:
    """An Ed25519 public key from a PEM file, as canonical PEM text."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WorkstationError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY-----" in data:
        raise WorkstationError(f"{path} holds a private key; give the public key "
                               "(`workstation identity export-public OUT.pem` writes it)")
    return public_pem_from_text(data, str(path))


def public_pem_from_text(data: bytes | str, what: str = "the public key") -> str:
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, UnsupportedAlgorithm):
        raise WorkstationError(f"{what} is not a public-key PEM file") from None
    if not isinstance(key, Ed25519PublicKey):
        raise WorkstationError(f"{what} is not an Ed25519 key (identities are Ed25519)")
    return public_pem_of(key)


def public_pem(ws: Workspace, key_id: str) -> str | None:
    """The PEM of a trusted (or once trusted) key, or None."""
    key = get_key(ws, key_id)
    return key.public_pem if key else None


def roles_at(ws: Workspace, key_id: str, time: str) -> frozenset[str]:
    """The roles ``key_id`` held at ``time`` (ISO-8601 UTC): none if it was not
    yet trusted or already revoked then."""
    return timeline(ws).status(key_id, time).roles


# -- the timeline ------------------------------------------------------------------

@dataclass
class KeyStatus:
    """What a key could do at one moment."""

    known: bool                      # ever in the trust store
    roles: frozenset[str]            # held at that moment
    revoked_at: str | None = None    # when it was revoked, if by that moment
    public_pem: str | None = None


@dataclass
class _History:
    public_pem: str
    times: list[str] = field(default_factory=list)
    roles: list[frozenset[str]] = field(default_factory=list)   # empty set: revoked
    revoked_at: str | None = None
    key: Ed25519PublicKey | None = None  # loaded once: verify checks every row with it


class Timeline:
    """Trust over time, replayed from the ledger's trust rows in order."""

    def __init__(self) -> None:
        self.keys: dict[str, _History] = {}
        self.has_owner = False

    def apply(self, entry: dict[str, Any]) -> None:
        """Add the effect of one ledger row (payload decoded); other kinds are ignored."""
        kind, payload, time = entry["kind"], entry["payload"], entry["time"]
        if kind in ("trust-owner", "trust-add"):
            history = self.keys.setdefault(payload["key_id"], _History(payload["public_pem"]))
            history.times.append(time)
            history.roles.append(frozenset(payload["roles"]))
            self.has_owner = True
        elif kind == "trust-revoke" and payload.get("key_id") in self.keys:
            history = self.keys[payload["key_id"]]
            history.times.append(time)
            history.roles.append(frozenset())
            history.revoked_at = history.revoked_at or time

    def status(self, key_id: str, time: str) -> KeyStatus:
        history = self.keys.get(key_id)
        if history is None:
            return KeyStatus(False, frozenset())
        at = bisect.bisect_right(history.times, time)
        roles = history.roles[at - 1] if at else frozenset()
        revoked = history.revoked_at if history.revoked_at and history.revoked_at <= time \
            else None
        return KeyStatus(True, frozenset() if revoked else roles, revoked, history.public_pem)

    def check_signature(self, key_id: str, time: str, row_hash: str, signature: str,
                        role: str | None = None) -> str | None:
        """Why a row signed by ``key_id`` at ``time`` does not hold, or None:
        an unknown key, a key revoked before the row, a missing ``role``, or
        a signature that does not verify."""
        status = self.status(key_id, time)
        if not status.known:
            return f"signed by key {key_id}, which is not in the trust store"
        if status.revoked_at is not None:
            return f"signed by key {key_id}, revoked at {status.revoked_at}, before the row"
        if role is not None and role not in status.roles:
            return f"signed by key {key_id}, which was not an {role} at {time}"
        history = self.keys[key_id]
        if history.key is None:
            history.key = _load_public(history.public_pem)
        if history.key is None or not _verifies(history.key, row_hash, signature):
            return f"its signature does not verify with key {key_id}"
        return None


def timeline(ws: Workspace) -> Timeline:
    """The trust timeline of this workspace, from its ledger."""
    line = Timeline()
    for entry in ledger.entries(ws):
        if entry["kind"] in TRUST_KINDS:
            line.apply(entry)
    return line


def signature_ok(public_pem_text: str, row_hash: str, signature_hex: str | None) -> bool:
    """Does ``signature_hex`` sign ``row_hash`` (its hex text) under that key?"""
    key = _load_public(public_pem_text)
    return key is not None and _verifies(key, row_hash, signature_hex)


def _load_public(pem: str) -> Ed25519PublicKey | None:
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, AttributeError, UnicodeEncodeError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def _verifies(key: Ed25519PublicKey, row_hash: str, signature_hex: str | None) -> bool:
    try:
        key.verify(bytes.fromhex(signature_hex or ""), row_hash.encode("ascii"))
        return True
    except (InvalidSignature, ValueError, TypeError, UnicodeEncodeError):
        return False


# -- checking who acts -------------------------------------------------------------

def require(ws: Workspace, signer: Signer | None, role: str) -> Signer:
    """The signer (default: the session's), trusted with ``role`` here; the
    first signer of a workspace becomes its owner. A one-line refusal that
    says how to get trusted otherwise. Joins the caller's transaction."""
    signer = require_trusted(ws, signer, role)
    key = get_key(ws, signer.key_id)
    if role not in key.roles:
        raise WorkstationError(
            f"identity '{signer.name}' (key {signer.key_id}) is not an {role} in this "
            f"workspace (roles: {', '.join(key.roles)}); an approver grants it with "
            f"`workstation trust add {signer.name}.pem --name {signer.name} --role "
            f"{','.join(sorted(set(key.roles) | {role}))}`")
    return signer


def require_trusted(ws: Workspace, signer: Signer | None, role: str = "ROLES") -> Signer:
    """The signer (default: the session's), trusted here with any role and
    not revoked (``role`` names the role the refusal suggests); the first
    signer of a workspace becomes its owner."""
    signer = require_signer(signer)
    with ws.transaction():
        ensure_owner(ws, signer)
        key = get_key(ws, signer.key_id)
    who = f"identity '{signer.name}' (key {signer.key_id})"
    if key is None:
        raise WorkstationError(
            f"{who} is not trusted in this workspace: an approver adds it with `workstation "
            f"trust add {signer.name}.pem --name {signer.name} --role {role}` (the file "
            f"`workstation identity export-public` writes)")
    if not key.active:
        raise WorkstationError(f"{who} was revoked in this workspace at {key.revoked_at}: "
                               f"{key.revoke_reason}")
    return signer


def ensure_owner(ws: Workspace, signer: Signer) -> TrustChange | None:
    """Make ``signer`` the owner (every role) if nobody is trusted here yet."""
    with ws.transaction():
        if ws.execute("SELECT count(*) FROM ledger WHERE kind = 'trust-owner'").fetchall()[0][0]:
            return None
        payload = _key_payload(signer.key_id, signer.name, signer.email, signer.public_pem,
                               ROLES)
        entry = ledger.append(ws, "trust-owner", payload, signer=signer)
        _insert(ws, payload, entry.time, signer.key_id)
        return TrustChange("owner", get_key(ws, signer.key_id), entry.seq)


# -- changing trust ------------------------------------------------------------------

def add(ws: Workspace, public_key_pem: str, name: str, roles: str | Iterable[str],
        email: str | None = None, *, signer: Signer | None = None) -> TrustChange:
    """Trust a key with ``roles`` (or give a trusted key new roles); approvers only."""
    roles = parse_roles(roles)
    pem = public_pem_from_text(public_key_pem)
    key_id = key_id_of(serialization.load_pem_public_key(pem.encode("ascii")))
    if not (name or "").strip():
        raise WorkstationError("a trusted key needs a name (--name)")
    with ws.transaction():
        signer = require(ws, signer, "approver")
        known = get_key(ws, key_id)
        if known is not None and not known.active:
            raise WorkstationError(f"key {key_id} ({known.name}) was revoked; revocation is "
                                   "final: its owner makes a new identity")
        if known is not None and set(known.roles) == set(roles):
            raise WorkstationError(f"key {key_id} ({known.name}) already has exactly the "
                                   f"roles {', '.join(roles)}")
        if known is not None and "approver" not in roles:
            _keep_an_approver(ws, key_id)
        payload = _key_payload(key_id, name.strip(), email, pem, roles)
        entry = ledger.append(ws, "trust-add", payload, signer=signer)
        if known is None:
            _insert(ws, payload, entry.time, signer.key_id)
        else:
            ws.execute("UPDATE trust SET name = ?, email = ?, roles = ? WHERE key_id = ?",
                       [payload["name"], email, list(roles), key_id])
        return TrustChange("added" if known is None else "roles-changed",
                           get_key(ws, key_id), entry.seq)


def revoke(ws: Workspace, key_id: str, reason: str, *, signer: Signer | None = None
           ) -> TrustChange:
    """Revoke a key for good (approvers only): rows it signs from now on fail ``verify``."""
    if not (reason or "").strip():
        raise WorkstationError("a revocation needs a reason (--reason)")
    with ws.transaction():
        signer = require(ws, signer, "approver")
        known = get_key(ws, key_id)
        if known is None:
            raise WorkstationError(f"no key {key_id} in this workspace's trust store "
                                   "(`workstation trust list`)")
        if not known.active:
            raise WorkstationError(f"key {key_id} ({known.name}) is already revoked")
        _keep_an_approver(ws, key_id)
        entry = ledger.append(ws, "trust-revoke", {"key_id": key_id, "reason": reason.strip()},
                              signer=signer)
        ws.execute("UPDATE trust SET revoked_at = ?, revoked_by = ?, revoke_reason = ? "
                   "WHERE key_id = ?", [entry.time, signer.key_id, reason.strip(), key_id])
        return TrustChange("revoked", get_key(ws, key_id), entry.seq)


def _keep_an_approver(ws: Workspace, losing: str) -> None:
    others = ws.execute("SELECT count(*) FROM trust WHERE revoked_at IS NULL AND key_id <> ? "
                        "AND list_contains(roles, 'approver')", [losing]).fetchall()[0][0]
    if not others:
        raise WorkstationError(f"key {losing} is the last approver here; trust another "
                               "approver first")


def _key_payload(key_id: str, name: str, email: str | None, pem: str,
                 roles: Iterable[str]) -> dict[str, Any]:
    return {"key_id": key_id, "name": name, "email": email, "public_pem": pem,
            "roles": list(roles)}


def _insert(ws: Workspace, payload: dict[str, Any], time: str, added_by: str) -> None:
    ws.execute("INSERT INTO trust VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
               [payload["key_id"], payload["name"], payload["email"], payload["public_pem"],
                payload["roles"], time, added_by])


# -- verification --------------------------------------------------------------------

def verify_ledger_signatures(ws: Workspace) -> str | None:
    """Every signed ledger row against the trust as it stood before it; rows
    of APPROVER_KINDS written since v4 must be signed by an approver, the
    owner row by the owner's own key. The first failing row, or None."""
    line, end = Timeline(), ledger.legacy_end(ws)
    for entry in ledger.entries(ws):
        problem = _check_ledger_row(entry, line, end)
        if problem:
            return f"ledger row {entry['seq']} ({entry['kind']}): {problem}"
        line.apply(entry)
    return None


def _check_ledger_row(entry: dict[str, Any], line: Timeline, end: int) -> str | None:
    kind, signed = entry["kind"], entry["signature"] is not None
    needs = kind in APPROVER_KINDS or kind in TRUST_KINDS or kind in SIGNED_KINDS
    if not signed:
        return "not signed" if needs and entry["seq"] > end else None
    if kind == "trust-owner":
        payload = entry["payload"]
        if line.has_owner:
            return "a second owner row"
        if entry["signer_key_id"] != payload.get("key_id") or not signature_ok(
                payload.get("public_pem", ""), entry["row_hash"], entry["signature"]):
            return "the owner row is not signed by the owner's key"
        return None
    return line.check_signature(entry["signer_key_id"], entry["time"], entry["row_hash"] or "",
                                entry["signature"],
                                "approver" if kind in APPROVER_KINDS else None)


def verify_store(ws: Workspace) -> str | None:
    """The trust table must be what the ledger's trust rows make of it."""
    expected: dict[str, dict[str, Any]] = {}
    for entry in ledger.entries(ws):
        kind, payload, signer = entry["kind"], entry["payload"], entry["signer_key_id"]
        if kind in ("trust-owner", "trust-add") and payload["key_id"] not in expected:
            expected[payload["key_id"]] = {
                **payload, "roles": tuple(r for r in ROLES if r in payload["roles"]),
                "added_at": entry["time"], "added_by": signer, "revoked_at": None,
                "revoked_by": None, "revoke_reason": None}
        elif kind == "trust-add":
            expected[payload["key_id"]].update(
                name=payload["name"], email=payload["email"],
                roles=tuple(r for r in ROLES if r in payload["roles"]))
        elif kind == "trust-revoke" and payload.get("key_id") in expected:
            expected[payload["key_id"]].update(revoked_at=entry["time"], revoked_by=signer,
                                               revoke_reason=payload["reason"])
    stored = {k.key_id: asdict(k) for k in list_keys(ws)}
    for key_id in sorted(set(stored) | set(expected)):
        want = expected.get(key_id)
        if want is None or stored.get(key_id) != {c: want[c] for c in _COLUMNS}:
            return f"trust store entry {key_id} does not follow from the ledger"
    return None
