"""The trust store, roles and policy, and `verify` checking every signature
against them."""

from __future__ import annotations

import json

import pytest

from tests.test_review import _add_dataset
from workstation import identity, ledger, policy, review, trust
from workstation.cli import main
from workstation.errors import WorkstationError
from workstation.review import Edit
from workstation.verify import content_hash, verify_workspace
from workstation.workspace import Workspace


@pytest.fixture
def labels(ws):
    first = _add_dataset(ws, "labels", [
        {"prompt": "q", "response": f"r{i}", "label": True} for i in range(4)])
    return ws, first


@pytest.fixture
def team(labels, make_identity):
    """The session identity owns the workspace; bob is a reviewer, rita an
    approver; carl is an identity nobody trusted."""
    ws, first = labels
    review.apply(ws, [Edit(first, "note", "owner was here", "r")])
    bob, rita, carl = (make_identity(n) for n in ("bob", "rita", "carl"))
    trust.add(ws, bob.public_pem, "bob", "reviewer")
    trust.add(ws, rita.public_pem, "rita", "reviewer,approver")
    return ws, first, bob, rita, carl


def _forge(ws: Workspace, signer: identity.Signer, example_id: int, note: str) -> int:
    """A row signed by ``signer`` appended without the trust check (what a
    forger, or a careless merge, could write); its seq."""
    with ws.transaction():
        old = review.current_values(ws, example_id)["note"]
        return review.append(ws, example_id, "note", old, note, "forged", signer, "edit",
                              None).seq


def cli(capsys, ws: Workspace, *args: str) -> tuple[int, dict]:
    path = str(ws.path)
    ws.close()
    code = main(["--workspace", path, *args, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


# -- owner and roles -------------------------------------------------------------------

def test_the_first_signer_becomes_the_owner_with_every_role(labels, session_identity):
    ws, first = labels
    assert trust.list_keys(ws) == []
    review.apply(ws, [Edit(first, "note", "n", "r")])
    [owner] = trust.list_keys(ws)
    assert owner.key_id == session_identity.key_id and owner.owner and owner.active
    assert owner.roles == trust.ROLES
    [row] = ledger.entries(ws, kind="trust-owner")
    assert row["payload"]["public_pem"] == session_identity.public_pem
    assert row["signer_key_id"] == session_identity.key_id
    assert verify_workspace(ws).ok


def test_an_untrusted_identity_is_refused_in_one_line_and_nothing_changes(team):
    ws, first, _, _, carl = team
    before = content_hash(ws)
    with pytest.raises(WorkstationError) as info:
        review.apply(ws, [Edit(first, "label", "unsafe", "r")], signer=carl)
    message = str(info.value)
    assert "identity 'carl'" in message and "is not trusted in this workspace" in message
    assert "workstation trust add carl.pem --name carl --role reviewer" in message
    assert "\n" not in message and content_hash(ws) == before


def test_a_reviewer_edits_and_its_rows_carry_its_key(team):
    ws, first, bob, _, _ = team
    [change] = review.apply(ws, [Edit(first + 1, "label", "unsafe", "r")], signer=bob)
    undone = review.undo(ws, signer=bob)
    rows = review.entries(ws)[-2:]
    assert [r["key_id"] for r in rows] == [bob.key_id] * 2 and undone.target_seq == change.seq
    assert rows[1]["target_hash"] == rows[0]["row_hash"]
    assert verify_workspace(ws).ok


@pytest.mark.parametrize("action", [
    lambda ws, bob, carl: trust.add(ws, carl.public_pem, "carl", "reviewer", signer=bob),
    lambda ws, bob, carl: trust.revoke(ws, bob.key_id, "no", signer=bob),
    lambda ws, bob, carl: policy.set(ws, "release.approvals", 2, signer=bob),
])
def test_trust_and_policy_changes_are_refused_for_a_non_approver(team, action):
    ws, _, bob, _, carl = team
    before = content_hash(ws)
    with pytest.raises(WorkstationError, match="identity 'bob' .* is not an approver"):
        action(ws, bob, carl)
    assert content_hash(ws) == before


def test_roles_change_and_revocation_over_time(team):
    ws, first, bob, rita, _ = team
    t_reviewer = ledger.entries(ws)[-1]["time"]
    change = trust.add(ws, bob.public_pem, "bob", "reviewer,adjudicator", signer=rita)
    assert change.action == "roles-changed" and change.key.roles == ("reviewer", "adjudicator")
    revoked = trust.revoke(ws, bob.key_id, "left the team", signer=rita)
    assert revoked.key.revoked_by == rita.key_id and not revoked.key.active
    line = trust.timeline(ws)
    assert trust.roles_at(ws, bob.key_id, t_reviewer) == {"reviewer"}
    assert line.status(bob.key_id, change.key.added_at).roles == {"reviewer"}
    assert trust.roles_at(ws, bob.key_id, revoked.key.revoked_at) == frozenset()
    assert trust.roles_at(ws, bob.key_id, "1999-01-01") == frozenset()
    with pytest.raises(WorkstationError, match="was revoked in this workspace"):
        review.apply(ws, [Edit(first, "note", "again", "r")], signer=bob)
    with pytest.raises(WorkstationError, match="revocation is final"):
        trust.add(ws, bob.public_pem, "bob", "reviewer")
    kinds = [e["kind"] for e in ledger.entries(ws)]
    assert kinds == ["trust-owner", "trust-add", "trust-add", "trust-add", "trust-revoke"]
    assert verify_workspace(ws).ok


def test_the_last_approver_stays(labels, session_identity):
    ws, first = labels
    review.apply(ws, [Edit(first, "note", "n", "r")])
    with pytest.raises(WorkstationError, match="last approver"):
        trust.revoke(ws, session_identity.key_id, "leaving")
    with pytest.raises(WorkstationError, match="last approver"):
        trust.add(ws, session_identity.public_pem, "me", "reviewer")


def test_trust_add_checks_its_input(team, tmp_path):
    ws, _, bob, _, _ = team
    with pytest.raises(WorkstationError, match="roles must be one or more of"):
        trust.add(ws, bob.public_pem, "bob", "reviewer,boss")
    with pytest.raises(WorkstationError, match="already has exactly the roles reviewer"):
        trust.add(ws, bob.public_pem, "bob", "reviewer")
    with pytest.raises(WorkstationError, match="not a public-key PEM"):
        trust.add(ws, "hello", "x", "reviewer")
    (tmp_path / "private.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE "
                                          "KEY-----\n")
    with pytest.raises(WorkstationError, match="holds a private key"):
        trust.read_public_key(tmp_path / "private.pem")


# -- verify ------------------------------------------------------------------------------

def test_verify_names_the_first_row_signed_by_an_unknown_key(team):
    ws, first, _, _, carl = team
    review.apply(ws, [Edit(first, "note", "fine", "r")])
    seq = _forge(ws, carl, first, "by a stranger")
    review.apply(ws, [Edit(first, "note", "fine again", "r")])
    report = verify_workspace(ws)
    assert report.failures == [f"review log row {seq}: signed by key {carl.key_id}, which is "
                               "not in the trust store"]


def test_verify_names_a_row_by_a_key_revoked_before_it(team):
    ws, first, bob, rita, _ = team
    [before] = review.apply(ws, [Edit(first + 2, "note", "before", "r")], signer=bob)
    trust.revoke(ws, bob.key_id, "laptop stolen", signer=rita)
    assert verify_workspace(ws).ok  # rows signed before the revocation stay valid
    seq = _forge(ws, bob, first + 2, "after")
    [failure] = verify_workspace(ws).failures
    assert failure.startswith(f"review log row {seq}: signed by key {bob.key_id}, revoked at ")
    assert failure.endswith("before the row") and before.seq < seq


def test_verify_names_an_unsigned_row_and_a_bad_signature(team):
    ws, first, _, _, _ = team
    review.apply(ws, [Edit(first, "note", f"n{i}", "r") for i in range(3)])
    seq = review.entries(ws)[-2]["seq"]
    ws.execute("UPDATE review_log SET signature = ? WHERE seq = ?", ["00" * 64, seq])
    assert verify_workspace(ws).failures == [
        f"review log row {seq}: its signature does not verify with key "
        f"{review.entries(ws)[-2]['key_id']}"]
    # Re-chained without row hash or signature: the old formula, but after the upgrade.
    rows = review.entries(ws)
    with ws.transaction():
        prev = rows[seq - 2]["hash"]
        for row in rows[seq - 1:]:
            raw = {**row, "old": json.dumps(row["old"], separators=(",", ":")),
                   "new": json.dumps(row["new"], separators=(",", ":")), "prev_hash": prev}
            new_hash = review.review_rows.legacy_hash(raw) if row["seq"] == seq else \
                review.review_rows.chain_hash(raw)
            ws.execute("UPDATE review_log SET row_hash = ?, signature = ?, prev_hash = ?, "
                       "hash = ? WHERE seq = ?",
                       [None if row["seq"] == seq else row["row_hash"],
                        None if row["seq"] == seq else row["signature"], prev, new_hash,
                        row["seq"]])
            prev = new_hash
    assert verify_workspace(ws).failures == [
        f"review log row {seq}: not signed (written after the upgrade to schema v4 without a "
        "signature)"]


def test_verify_names_a_trust_row_signed_by_a_non_approver(team):
    ws, _, bob, _, carl = team
    row = ledger.append(ws, "trust-add", {"key_id": carl.key_id, "name": "carl", "email": None,
                                          "public_pem": carl.public_pem, "roles": ["approver"]},
                        signer=bob)
    assert verify_workspace(ws).failures == [
        f"ledger row {row.seq} (trust-add): signed by key {bob.key_id}, which was not an "
        f"approver at {row.time}",
        f"trust store entry {carl.key_id} does not follow from the ledger"]


def test_verify_finds_an_unsigned_policy_row_and_a_changed_trust_table(team):
    ws, _, bob, _, _ = team
    ws.execute("UPDATE trust SET roles = ['reviewer', 'approver'] WHERE key_id = ?",
               [bob.key_id])
    assert verify_workspace(ws).failures == [
        f"trust store entry {bob.key_id} does not follow from the ledger"]
    ws.execute("UPDATE trust SET roles = ['reviewer'] WHERE key_id = ?", [bob.key_id])
    seq = ledger.append(ws, "policy-set", {"key": "release.approvals", "value": 5,
                                           "previous": 1}).seq
    assert verify_workspace(ws).failures == [f"ledger row {seq} (policy-set): not signed"]


# -- policy ----------------------------------------------------------------------------

def test_policy_defaults_set_and_get(team):
    ws, _, _, rita, _ = team
    assert [(v.key, v.value, v.set_by) for v in policy.show(ws)] == [
        ("release.approvals", 1, None), ("release.separation", True, None),
        ("review.label_policy", "adjudicated", None)]
    policy.set(ws, "release.approvals", "2", signer=rita)
    policy.set(ws, "release.separation", "off")
    policy.set(ws, "review.label_policy", "Majority")
    assert policy.get(ws, "release.approvals") == 2
    assert policy.get(ws, "release.separation") is False
    assert policy.get(ws, "review.label_policy") == "majority"
    [row] = [e for e in ledger.entries(ws, kind="policy-set")][:1]
    assert row["payload"] == {"key": "release.approvals", "value": 2, "previous": 1}
    assert row["actor"] == "rita" and row["signer_key_id"] == rita.key_id
    assert verify_workspace(ws).ok


@pytest.mark.parametrize("key, value, message", [
    ("release.approvals", "0", "whole number from 1 to 100"),
    ("release.approvals", "two", "whole number"),
    ("release.separation", "maybe", "on or off"),
    ("review.label_policy", "loudest", "adjudicated or majority"),
    ("release.colour", "red", "unknown policy 'release.colour'"),
    ("release.approvals", "1", "already 1"),
])
def test_policy_values_are_checked(team, key, value, message):
    ws = team[0]
    before = content_hash(ws)
    with pytest.raises(WorkstationError, match=message):
        policy.set(ws, key, value)
    assert content_hash(ws) == before


# -- the CLI ---------------------------------------------------------------------------

def test_cli_trust_and_policy(team, tmp_path, capsys, make_identity):
    ws, _, bob, _, carl = team
    path, _ = identity.export_public(tmp_path / "carl.pem", "carl")
    code, added = cli(capsys, ws, "trust", "add", str(path), "--name", "carl",
                      "--role", "reviewer, adjudicator", "--email", "c@x.org")
    assert code == 0 and added["action"] == "added" and added["key_id"] == carl.key_id
    assert added["roles"] == ["reviewer", "adjudicator"] and added["email"] == "c@x.org"
    assert set(added) >= {"ledger_seq", "name", "public_pem", "added_at", "added_by",
                          "revoked_at", "revoked_by", "revoke_reason", "active", "owner"}
    code, listed = cli(capsys, ws, "trust", "list")
    assert [k["name"] for k in listed["keys"]] == ["test-analyst", "bob", "rita", "carl"]
    assert listed["keys"][0]["owner"] and not listed["keys"][1]["owner"]
    code, revoked = cli(capsys, ws, "trust", "revoke", carl.key_id, "--reason", "test")
    assert revoked["action"] == "revoked" and revoked["active"] is False
    code, value = cli(capsys, ws, "policy", "set", "release.approvals", "2")
    assert code == 0 and value["value"] == 2 and value["set_by"] == "test-analyst"
    code, shown = cli(capsys, ws, "policy", "show")
    assert shown["policy"] == {"release.approvals": 2, "release.separation": True,
                               "review.label_policy": "adjudicated"}
    assert [s["key"] for s in shown["settings"]] == list(policy.SETTINGS)
    code, refused = cli(capsys, ws, "--identity", "bob", "policy", "set",
                        "release.approvals", "3")
    assert code == 1 and "is not an approver" in refused["error"]
    with Workspace.open(ws.path) as again:
        assert policy.get(again, "release.approvals") == 2 and verify_workspace(again).ok
