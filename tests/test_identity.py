"""Personal identities: the key files, passphrases, the CLI's identity commands,
and who a command acts as."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import TEST_IDENTITY, TEST_PASSPHRASE
from workstation import identity, key_files
from workstation.cli import main
from workstation.errors import WorkstationError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch, no_session):
    """An empty identity folder of this test, no passphrase file, nobody unlocked."""
    folder = tmp_path / "home"
    monkeypatch.setenv(identity.HOME_ENV, str(folder))
    monkeypatch.delenv(identity.PASSPHRASE_FILE_ENV)
    return folder


def _secret(tmp_path: Path, text: str, name: str = "pass") -> Path:
    path = tmp_path / name
    path.write_text(text + "\n")
    return path


def cli(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    out = captured.out.strip()
    return code, json.loads(out) if out else None, captured.err


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the key files ---------------------------------------------------------------------

def test_create_writes_an_encrypted_owner_only_key_and_makes_it_current(home):
    made = identity.create("ana", "correct horse battery", email="ana@example.org")
    folder = home / "identities"
    key_file, meta = folder / "ana.key", folder / "ana.json"
    assert _mode(home) == _mode(folder) == 0o700
    assert _mode(key_file) == _mode(meta) == 0o600
    pem = key_file.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError, match="encrypted"):  # no passphrase: not readable
        serialization.load_pem_private_key(pem, password=None)
    key = key_files.decrypt_private_key(pem, "correct horse battery")
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    assert raw not in pem and raw not in meta.read_bytes()
    assert identity.current() == made and made.email == "ana@example.org"
    assert json.loads(meta.read_text())["key_id"] == made.key_id
    assert identity.list_identities() == [made]


def test_the_key_file_is_pkcs8_pbes2_with_scrypt(home):
    identity.create("ana", "correct horse battery")
    der = b"".join(__import__("base64").b64decode(line) for line in
                   (home / "identities" / "ana.key").read_text().splitlines()[1:-1])
    pbes2_oid = bytes.fromhex("06092a864886f70d01050d")  # 1.2.840.113549.1.5.13
    scrypt_oid = bytes.fromhex("06092b06010401da47040b")  # 1.3.6.1.4.1.11591.4.11
    aes256_cbc_oid = bytes.fromhex("060960864801650304012a")  # 2.16.840.1.101.3.4.1.42
    cost = bytes.fromhex("020240000201080201010201") + b"\x20"  # N=2^14, r=8, p=1, 32-byte key
    assert pbes2_oid in der and scrypt_oid in der and aes256_cbc_oid in der and cost in der


def test_unlock_signs_and_a_wrong_passphrase_is_one_line(home):
    made = identity.create("ana", "correct horse battery")
    signer = identity.unlock(made, "correct horse battery")
    public = serialization.load_pem_public_key(made.public_pem.encode())
    public.verify(signer.sign(b"hello"), b"hello")
    assert signer.key_id == made.key_id and "private" not in repr(signer).lower()
    with pytest.raises(TypeError):
        __import__("pickle").dumps(signer)
    with pytest.raises(WorkstationError) as info:
        identity.unlock(made, "wrong horse battery")
    assert str(info.value) == "wrong passphrase for identity 'ana'"


@pytest.mark.parametrize("name, passphrase, email, message", [
    ("a b", "long enough", None, "must be 1-64 letters"),
    ("../x", "long enough", None, "must be 1-64 letters"),
    ("ana", "short", None, "at least 8 characters"),
    ("ana", "long enough", "not an email", "is not an email address"),
])
def test_create_refuses_bad_input(home, name, passphrase, email, message):
    with pytest.raises(WorkstationError, match=message):
        identity.create(name, passphrase, email=email)
    assert identity.list_identities() == []


def test_use_switches_and_a_second_identity_does_not_take_over(home):
    ana = identity.create("ana", "correct horse battery")
    bob = identity.create("bob", "correct horse battery")
    assert identity.current() == ana  # the first one made stays current
    assert identity.use("bob") == bob and identity.current() == bob
    with pytest.raises(WorkstationError, match="an identity 'bob' already exists"):
        identity.create("bob", "correct horse battery")
    with pytest.raises(WorkstationError, match=r"no identity 'carl' \(you have: ana, bob\)"):
        identity.use("carl")


def test_passphrase_sources_in_order(home, tmp_path, monkeypatch):
    explicit, env = _secret(tmp_path, "from the file", "a"), _secret(tmp_path, "from env", "b")
    monkeypatch.setenv(identity.PASSPHRASE_FILE_ENV, str(env))
    assert identity.passphrase_for("ana", explicit) == "from the file"
    assert identity.passphrase_for("ana") == "from env"
    monkeypatch.delenv(identity.PASSPHRASE_FILE_ENV)
    monkeypatch.setattr(sys, "stdin", type("Pipe", (), {"isatty": lambda self: False})())
    with pytest.raises(WorkstationError) as info:
        identity.passphrase_for("ana")
    assert str(info.value) == ("identity 'ana' needs its passphrase: give --passphrase-file "
                               "FILE or set WORKSTATION_PASSPHRASE_FILE")
    (tmp_path / "empty").write_text("")
    with pytest.raises(WorkstationError, match="is empty"):
        identity.passphrase_for("ana", tmp_path / "empty")
    with pytest.raises(WorkstationError, match="cannot read passphrase file"):
        identity.passphrase_for("ana", tmp_path / "absent")


def test_a_terminal_prompt_asks_without_echo(home, monkeypatch):
    asked = []
    monkeypatch.setattr(sys, "stdin", type("Tty", (), {"isatty": lambda self: True})())
    monkeypatch.setattr(identity.getpass, "getpass",
                        lambda prompt: asked.append(prompt) or "typed passphrase")
    assert identity.passphrase_for("ana", confirm=True) == "typed passphrase"
    assert asked == ["passphrase for identity 'ana': ", "the same passphrase again: "]


def test_export_public_writes_what_trust_add_reads(home, tmp_path):
    from workstation import trust

    made = identity.create("ana", "correct horse battery")
    path, who = identity.export_public(tmp_path / "ana.pem")
    assert who == made and trust.read_public_key(path) == made.public_pem
    assert b"PRIVATE" not in path.read_bytes()
    with pytest.raises(WorkstationError, match="already exists"):
        identity.export_public(tmp_path / "ana.pem")


def test_require_signer_says_how_to_get_one(home, tmp_path):
    with pytest.raises(WorkstationError) as info:
        identity.require_signer()
    assert str(info.value) == ("this needs your identity and there is none yet: create one "
                               "with `workstation identity create --name NAME`")
    identity.create("ana", "correct horse battery")
    with pytest.raises(WorkstationError, match=r"\(ana\) unlocked: give --passphrase-file"):
        identity.require_signer()
    signer = identity.unlock_session(passphrase_file=_secret(tmp_path, "correct horse battery"))
    assert identity.require_signer() is signer is identity.session_signer()


# -- the CLI -----------------------------------------------------------------------------

def test_cli_identity_create_list_use_export(home, tmp_path, capsys):
    secret = _secret(tmp_path, "correct horse battery")
    code, made, _ = cli(capsys, "identity", "create", "--name", "ana", "--email", "a@x.org",
                        "--passphrase-file", str(secret))
    assert code == 0 and made["name"] == "ana" and made["current"] is True
    assert set(made) >= {"name", "email", "key_id", "public_pem", "created_at", "demo",
                         "current", "home"} and made["home"] == str(home)
    cli(capsys, "identity", "create", "--name", "bob", "--passphrase-file", str(secret))
    code, listed, _ = cli(capsys, "identity", "list")
    assert listed["current"] == "ana" and [i["name"] for i in listed["identities"]] == \
        ["ana", "bob"]
    assert cli(capsys, "identity", "use", "bob")[1] == {
        "current": "bob", "key_id": listed["identities"][1]["key_id"]}
    code, out, _ = cli(capsys, "identity", "export-public", str(tmp_path / "b.pem"))
    assert out == {"path": str(tmp_path / "b.pem"), "name": "bob",
                   "key_id": listed["identities"][1]["key_id"]}
    code, out, _ = cli(capsys, "--identity", "ana", "identity", "export-public",
                       str(tmp_path / "a.pem"))
    assert out["name"] == "ana" and identity.current_name() == "bob"  # --identity: this command


def test_cli_wrong_passphrase_is_one_line(home, tmp_path, capsys):
    identity.create("ana", "correct horse battery")
    workspace = str(tmp_path / "w.duckdb")
    code, out, err = cli(capsys, "--workspace", workspace, "--passphrase-file",
                         str(_secret(tmp_path, "wrong horse battery")), "undo")
    assert code == 1 and err == "error: wrong passphrase for identity 'ana'\n"
    assert out == {"ok": False, "error": "wrong passphrase for identity 'ana'"}


def test_cli_without_an_identity_says_how_to_create_one(home, tmp_path, capsys):
    code, _, err = cli(capsys, "--workspace", str(tmp_path / "w.duckdb"), "undo")
    assert code == 1
    assert err == ("error: no identity yet: create one with "
                   "`workstation identity create --name NAME`\n")


@pytest.mark.parametrize("flag", ["--passphrase", "--passphrase=hunter22", "--pass",
                                  "--password", "--passphr"])
def test_a_passphrase_is_never_accepted_on_the_command_line(home, tmp_path, capsys, flag):
    args = [flag, "hunter22"] if "=" not in flag else [flag]
    code = main(["identity", "create", "--name", "ana", *args])
    err = capsys.readouterr().err
    assert code == 2 and "never given on the command line" in err and "hunter22" not in err
    assert identity.list_identities() == []


def test_the_cli_acts_as_the_unlocked_identity_once_per_command(tmp_path, capsys,
                                                                session_identity, no_session):
    """In a subprocess with only the environment: $WORKSTATION_PASSPHRASE_FILE unlocks."""
    ws = tmp_path / "w.duckdb"
    data = tmp_path / "l.jsonl"
    data.write_text(json.dumps({"prompt": "q", "response": "r", "label": "safe"}) + "\n")
    for args in (["import", "labels", str(data), "--name", "l"],
                 ["label", "1", "--set-label", "unsafe", "--reason", "r"]):
        proc = subprocess.run([sys.executable, "-m", "workstation", "--workspace", str(ws),
                               *args, "--json"], capture_output=True, text=True, timeout=120,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, proc.stderr
    [change] = json.loads(proc.stdout)["changes"]
    assert change["analyst"] == TEST_IDENTITY and change["key_id"] == session_identity.key_id
    assert identity.session_signer() is None  # this process stayed locked


def test_main_restores_the_session_it_found(tmp_path, capsys, session_identity, make_identity):
    other = make_identity("cli-other")
    ws = str(tmp_path / "w.duckdb")
    assert main(["--workspace", ws, "--identity", "cli-other", "undo"]) == 1  # nothing to undo
    assert "nothing to undo" in capsys.readouterr().err
    assert identity.session_signer() is session_identity
    assert identity.current_name() == TEST_IDENTITY and other.name == "cli-other"


# -- the demo identity ---------------------------------------------------------------------

def test_the_demo_identity_needs_nothing_typed_and_yields_to_the_analysts_own(home, tmp_path):
    demo = identity.demo_signer()
    assert demo.demo and identity.current_name() == "demo"
    stored = home / "identities" / "demo.passphrase"
    assert _mode(stored) == 0o600
    assert identity.unlock_session().key_id == demo.key_id  # no passphrase file, no prompt
    identity.set_session_signer(None)
    assert identity.demo_signer().key_id == demo.key_id  # made once
    identity.create("ana", TEST_PASSPHRASE)
    assert identity.current_name() == "ana"  # the analyst's own replaces the demo's
