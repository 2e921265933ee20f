"""Personal identities: an analyst's own Ed25519 key pair, kept in their own
folder with the private key encrypted by a passphrase, never in a workspace.

The folder is ``$WORKSTATION_HOME``, else the platform's user config folder
(``$XDG_CONFIG_HOME/workstation`` or ``~/.config/workstation`` on Linux,
``~/Library/Application Support/workstation`` on macOS,
``%APPDATA%\\workstation`` on Windows). It holds, owner-only::

    current                  the name of the identity in use (``use``)
    identities/NAME.json     name, email, key id, public key (not secret)
    identities/NAME.key      the private key: PKCS#8, scrypt + AES-256-CBC (0600)

Unlocking an identity gives a ``Signer``: it signs, and never hands out its
private key. One process holds at most one unlocked identity, the session
signer (``session_signer``/``set_session_signer``): the GUI unlocks once per
session, the CLI once per command. Core functions that sign take an optional
``signer`` and fall back to it (``require_signer``).

The demo identity (``workstation demo``) is the one exception to "the
passphrase is never stored": its passphrase lies beside its key (0600) so that
the demo needs nothing typed; it is marked ``demo`` everywhere it is listed.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import re
import secrets
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workstation import key_files
from workstation.errors import WorkstationError
from workstation.offline_verify import key_id_of, public_pem_of

HOME_ENV = "WORKSTATION_HOME"
PASSPHRASE_FILE_ENV = "WORKSTATION_PASSPHRASE_FILE"
IDENTITY_FORMAT = "workstation.identity/1"
DEMO_NAME = "demo"
MIN_PASSPHRASE = 8
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CREATE_HINT = "create one with `workstation identity create --name NAME`"


# -- records ---------------------------------------------------------------------

@dataclass(frozen=True)
class Identity:
    """An identity on disk (its public part; the key file stays encrypted)."""

    name: str
    email: str | None
    key_id: str
    public_pem: str
    created_at: str
    demo: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Signer:
    """An unlocked identity: signs bytes; the private key is not an attribute
    (it lives in a closure) and the object refuses to be pickled or copied."""

    __slots__ = ("name", "email", "key_id", "public_pem", "demo", "_sign")

    def __init__(self, identity: Identity, key: Ed25519PrivateKey) -> None:
        self.name, self.email, self.key_id = identity.name, identity.email, identity.key_id
        self.public_pem, self.demo = identity.public_pem, identity.demo
        self._sign = key.sign

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._sign(data)

    def sign_hash(self, row_hash: str) -> str:
        """How log and ledger rows are signed: the signature of the row hash's
        hex text (ASCII), as lower-case hex."""
        return self._sign(row_hash.encode("ascii")).hex()

    def __repr__(self) -> str:
        return f"Signer({self.name!r}, key {self.key_id})"

    def __reduce__(self) -> Any:
        raise TypeError("an unlocked identity cannot be pickled")


# -- the folder ------------------------------------------------------------------

def home() -> Path:
    """The identity folder (not created here)."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "workstation"
    if os.name == "nt":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "workstation"
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "workstation"


def _folder(create: bool = False) -> Path:
    folder = home() / "identities"
    if create:
        try:
            folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)  # ours alone, whatever the umask made of it
        except OSError as exc:
            raise WorkstationError(f"cannot create the identity folder {folder}: "
                                   f"{exc.strerror or exc}") from None
    return folder


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively with ``mode`` (never overwrite, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise WorkstationError(f"identity name '{name}' must be 1-64 letters, digits, '.', '_' "
                               "or '-', starting with a letter or digit")
    return name


# -- reading ---------------------------------------------------------------------

def list_identities() -> list[Identity]:
    """Every identity in the folder, by name."""
    folder = _folder()
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        identity = _read(path)
        if identity is not None:
            found.append(identity)
    return found


def _read(path: Path) -> Identity | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != IDENTITY_FORMAT or not path.with_suffix(".key").exists():
            return None
        return Identity(doc["name"], doc.get("email"), doc["key_id"], doc["public_pem"],
                        doc["created_at"], bool(doc.get("demo")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a foreign or damaged file is not an identity


def get(name: str) -> Identity:
    """The identity called ``name``; a one-line error naming the others if none."""
    identity = _read(_folder() / f"{check_name(name)}.json")
    if identity is None:
        names = ", ".join(i.name for i in list_identities())
        have = f" (you have: {names})" if names else ""
        raise WorkstationError(f"no identity '{name}'{have}; {CREATE_HINT}")
    return identity


_override: str | None = None


def select(name: str | None) -> None:
    """Act as ``name`` in this process (the CLI's ``--identity``); None: back to ``current``."""
    global _override
    _override = check_name(name) if name else None


def current() -> Identity | None:
    """The identity in use: the process's selection, else the one chosen by
    ``use`` (``create`` chooses the first one made); None when there is none."""
    if _override:
        return get(_override)
    name = current_name()
    return _read(_folder() / f"{name}.json") if name else None


def acting_name() -> str | None:
    """The name records carry: the unlocked identity's, else the current one's."""
    signer = session_signer()
    if signer is not None:
        return signer.name
    try:
        identity = current()
    except WorkstationError:
        return None
    return identity.name if identity else None


# -- writing ---------------------------------------------------------------------

def create(name: str, passphrase: str, email: str | None = None, *, demo: bool = False
           ) -> Identity:
    """A new key pair under ``name``: the private key encrypted with
    ``passphrase`` (0600), made the current identity if there is none (or
    only the demo identity)."""
    check_name(name)
    if len(passphrase) < MIN_PASSPHRASE:
        raise WorkstationError(f"a passphrase needs at least {MIN_PASSPHRASE} characters")
    if email is not None and ("@" not in email or any(c.isspace() for c in email)):
        raise WorkstationError(f"'{email}' is not an email address")
    folder = _folder(create=True)
    if (folder / f"{name}.json").exists() or (folder / f"{name}.key").exists():
        raise WorkstationError(f"an identity '{name}' already exists in {folder}")
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    identity = Identity(name, email, key_id_of(public), public_pem_of(public), created, demo)
    # The key first: an identity without its .json is not listed; the reverse would be.
    _write_new(folder / f"{name}.key", key_files.encrypt_private_key(key, passphrase), 0o600)
    doc = {"format": IDENTITY_FORMAT, **identity.to_json()}
    _write_new(folder / f"{name}.json", (json.dumps(doc, indent=2) + "\n").encode(), 0o600)
    chosen = current_name()
    if chosen is None or (not demo and _read(folder / f"{chosen}.json").demo):
        use(name)  # the first identity, or the analyst's own after the demo's
    return identity


def current_name() -> str | None:
    """The name chosen by ``use`` if that identity exists (ignores ``select``)."""
    try:
        name = (home() / "current").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return name if _NAME_RE.match(name) and _read(_folder() / f"{name}.json") else None


def use(name: str) -> Identity:
    """Make ``name`` the current identity (for later commands and sessions)."""
    identity = get(name)
    target = home() / "current"
    tmp = target.with_name(f".current.{secrets.token_hex(4)}")
    _write_new(tmp, (identity.name + "\n").encode(), 0o600)
    os.replace(tmp, target)
    return identity


def export_public(path: str | os.PathLike, name: str | None = None, *,
                  overwrite: bool = False) -> tuple[Path, Identity]:
    """Write the public key of ``name`` (default: the current identity) as PEM:
    what another analyst passes to ``trust add``."""
    identity = get(name) if name else require_current()
    out = Path(path)
    if out.exists() and not overwrite:
        raise WorkstationError(f"{out} already exists; choose another path")
    try:
        if overwrite:
            out.unlink(missing_ok=True)
        _write_new(out, identity.public_pem.encode("ascii"), 0o644)
    except OSError as exc:
        raise WorkstationError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out, identity


def require_current() -> Identity:
    identity = current()
    if identity is not None:
        return identity
    names = [i.name for i in list_identities()]
    if not names:
        raise WorkstationError(f"no identity yet: {CREATE_HINT}")
    raise WorkstationError(f"no identity chosen: run `workstation identity use NAME` "
                           f"(you have: {', '.join(names)})")


# -- unlocking -------------------------------------------------------------------

def unlock(identity: Identity, passphrase: str) -> Signer:
    """Open the identity's key file; a one-line error for a wrong passphrase."""
    path = _folder() / f"{identity.name}.key"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkstationError(f"cannot read the key of identity '{identity.name}' ({path}): "
                               f"{exc.strerror or exc}") from None
    try:
        key = key_files.decrypt_private_key(data, passphrase)
    except key_files.WrongPassphrase:
        raise WorkstationError(f"wrong passphrase for identity '{identity.name}'") from None
    except ValueError as exc:
        raise WorkstationError(f"the key file of identity '{identity.name}' ({path}) cannot be "
                               f"read: {exc}") from None
    if key_id_of(key.public_key()) != identity.key_id:
        raise WorkstationError(f"the key file of identity '{identity.name}' does not match its "
                               f"public key ({identity.key_id})")
    return Signer(identity, key)


def read_passphrase_file(path: str | os.PathLike) -> str:
    """A passphrase from a file: its text without the final line break."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise WorkstationError(f"cannot read passphrase file {path}: {why}") from None
    passphrase = text[:-1] if text.endswith("\n") else text
    passphrase = passphrase[:-1] if passphrase.endswith("\r") else passphrase
    if not passphrase:
        raise WorkstationError(f"passphrase file {path} is empty")
    return passphrase


def passphrase_for(identity_name: str, passphrase_file: str | os.PathLike | None = None, *,
                   confirm: bool = False) -> str:
    """The passphrase, from (in order) ``passphrase_file``,
    ``$WORKSTATION_PASSPHRASE_FILE``, or a no-echo prompt when stdin is a
    terminal; else a one-line error naming the two options."""
    if passphrase_file:
        return read_passphrase_file(passphrase_file)
    if os.environ.get(PASSPHRASE_FILE_ENV):
        return read_passphrase_file(os.environ[PASSPHRASE_FILE_ENV])
    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass(f"passphrase for identity '{identity_name}': ")
        if confirm and getpass.getpass("the same passphrase again: ") != first:
            raise WorkstationError("the two passphrases differ; nothing was created")
        return first
    raise WorkstationError(f"identity '{identity_name}' needs its passphrase: give "
                           f"--passphrase-file FILE or set {PASSPHRASE_FILE_ENV}")


def unlock_session(name: str | None = None,
                   passphrase_file: str | os.PathLike | None = None) -> Signer:
    """Unlock ``name`` (default: the current identity) as this process's
    session signer and return it. An identity already unlocked is reused."""
    identity = get(name) if name else require_current()
    signer = session_signer()
    if signer is not None and signer.key_id == identity.key_id:
        return signer
    if identity.demo:
        signer = unlock(identity, _demo_passphrase(identity.name))
    else:
        signer = unlock(identity, passphrase_for(identity.name, passphrase_file))
    set_session_signer(signer)
    return signer


# -- the session -----------------------------------------------------------------

_session: Signer | None = None
_session_lock = threading.Lock()


def session_signer() -> Signer | None:
    """The identity unlocked in this process, if any."""
    return _session


def set_session_signer(signer: Signer | None) -> Signer | None:
    """Make ``signer`` the session's (None: lock it again); returns the previous one."""
    global _session
    with _session_lock:
        previous, _session = _session, signer
    return previous


def require_signer(signer: Signer | None = None) -> Signer:
    """``signer``, else the session's; a one-line error saying how to get one."""
    signer = signer or session_signer()
    if signer is not None:
        return signer
    if not list_identities():
        raise WorkstationError(f"this needs your identity and there is none yet: {CREATE_HINT}")
    who = current_name()
    raise WorkstationError(
        f"this needs your identity{f' ({who})' if who else ''} unlocked: give "
        f"--passphrase-file FILE or set {PASSPHRASE_FILE_ENV} (the window asks for it)")


# -- the demo identity -------------------------------------------------------------

def demo_signer() -> Signer:
    """The demo identity, created (with a stored passphrase) when missing, unlocked."""
    folder = _folder(create=True)
    try:
        identity = get(DEMO_NAME)
    except WorkstationError:
        passphrase = secrets.token_urlsafe(24)
        stored = folder / f"{DEMO_NAME}.passphrase"
        stored.unlink(missing_ok=True)  # left by an identity removed by hand
        _write_new(stored, passphrase.encode("ascii"), 0o600)
        identity = create(DEMO_NAME, passphrase, demo=True)
    if not identity.demo:
        raise WorkstationError(f"an identity named '{DEMO_NAME}' exists and is not the demo "
                               "identity; the demo needs that name")
    return unlock(identity, _demo_passphrase(identity.name))


def _demo_passphrase(name: str) -> str:
    return read_passphrase_file(_folder() / f"{name}.passphrase")
