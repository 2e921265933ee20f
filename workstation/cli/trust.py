"""Who may do what in a workspace: the trust store and the policy."""

from __future__ import annotations

from workstation.cli.common import Commands, Output, acting_signer, open_workspace


def _key_line(k) -> str:
    state = f"revoked {k.revoked_at[:19]}: {k.revoke_reason}" if k.revoked_at else \
        ", ".join(k.roles)
    return f"{k.key_id}  {k.name:<20} {state}{'  (owner)' if k.owner else ''}"


def cmd_trust_add(args, out: Output) -> None:
    from workstation import trust

    pem = trust.read_public_key(args.public_key)
    acting_signer(args)
    with open_workspace(args) as ws:
        change = trust.add(ws, pem, args.name, args.role, email=args.email)
    out.result(change.to_json(), f"{change.action.replace('-', ' ')}: {_key_line(change.key)} "
                                 f"(ledger row {change.ledger_seq})")


def cmd_trust_list(args, out: Output) -> None:
    from workstation import trust

    with open_workspace(args, read_only=True) as ws:
        keys = trust.list_keys(ws)
    text = "\n".join(_key_line(k) for k in keys) or \
        "nobody is trusted yet: the first identity to sign here becomes the owner"
    out.result({"keys": [k.to_json() for k in keys]}, text)


def cmd_trust_revoke(args, out: Output) -> None:
    from workstation import trust

    acting_signer(args)
    with open_workspace(args) as ws:
        change = trust.revoke(ws, args.key_id, args.reason)
    out.result(change.to_json(), f"revoked {change.key.key_id} ({change.key.name}) "
                                 f"(ledger row {change.ledger_seq})")


def cmd_policy_set(args, out: Output) -> None:
    from workstation import policy

    acting_signer(args)
    with open_workspace(args) as ws:
        value = policy.set(ws, args.key, args.value)
    out.result(value.to_json(), f"{value.key} = {policy.text(value.value)} "
                                f"(ledger row {value.ledger_seq})")


def cmd_policy_show(args, out: Output) -> None:
    from workstation import policy

    with open_workspace(args, read_only=True) as ws:
        values = policy.show(ws)
    text = "\n".join(f"{v.key:<22} {policy.text(v.value):<12} "
                     + (f"set by {v.set_by} {v.set_at[:19]}" if v.set_by else "(default)")
                     for v in values)
    out.result({"policy": {v.key: v.value for v in values},
                "settings": [v.to_json() for v in values]}, text)


def register(cli: Commands) -> None:
    add = cli.add
    sub = cli.group("trust", "which identities may review, adjudicate and approve here")
    p = add("add", cmd_trust_add, "trust a public key with roles, or change a key's roles "
                                  "(approvers only; signed, in the ledger)", sub)
    p.add_argument("public_key", metavar="PUB.pem")
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True, metavar="ROLES",
                   help="comma-separated: reviewer, adjudicator, approver")
    p.add_argument("--email")
    add("list", cmd_trust_list, "list the trusted keys (revoked ones too)", sub)
    p = add("revoke", cmd_trust_revoke, "revoke a key for good (approvers only)", sub)
    p.add_argument("key_id", metavar="KEY_ID")
    p.add_argument("--reason", required=True)

    sub = cli.group("policy", "the workspace's release and review policy")
    p = add("set", cmd_policy_set, "set a policy value (approvers only; signed, in the ledger)",
            sub)
    p.add_argument("key", metavar="KEY",
                   help="release.approvals, release.separation or review.label_policy")
    p.add_argument("value", metavar="VALUE")
    add("show", cmd_policy_show, "show the policy in force", sub)
