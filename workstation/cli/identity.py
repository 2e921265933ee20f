"""Personal identities: create, list, use, export the public key."""

from __future__ import annotations

from workstation.cli.common import Commands, Output


def _identity_json(identity, current: str | None) -> dict:
    return {**identity.to_json(), "current": identity.name == current}


def cmd_create(args, out: Output) -> None:
    from workstation import identity

    identity.check_name(args.name)
    passphrase = identity.passphrase_for(args.name, args.passphrase_file, confirm=True)
    made = identity.create(args.name, passphrase, email=args.email)
    current = identity.current_name()
    payload = {**_identity_json(made, current), "home": str(identity.home())}
    note = " (now the current identity)" if current == made.name else \
        f"; `workstation identity use {made.name}` makes it the current one"
    out.result(payload, f"created identity {made.name} (key {made.key_id}) in "
                        f"{identity.home()}{note}")


def cmd_list(args, out: Output) -> None:
    from workstation import identity

    current = identity.current_name()
    items = identity.list_identities()
    text = "\n".join(f"{'*' if i.name == current else ' '} {i.name:<20} {i.key_id}  "
                     f"{i.email or ''}{'  (demo)' if i.demo else ''}" for i in items) \
        or f"no identity yet: {identity.CREATE_HINT}"
    out.result({"identities": [_identity_json(i, current) for i in items], "current": current,
                "home": str(identity.home())}, text)


def cmd_use(args, out: Output) -> None:
    from workstation import identity

    chosen = identity.use(args.name)
    out.result({"current": chosen.name, "key_id": chosen.key_id},
               f"{chosen.name} (key {chosen.key_id}) is now the current identity")


def cmd_export_public(args, out: Output) -> None:
    from workstation import identity

    path, who = identity.export_public(args.out, args.name or args.identity)
    out.result({"path": str(path), "name": who.name, "key_id": who.key_id},
               f"wrote the public key of {who.name} (key {who.key_id}) to {path}; an approver "
               f"trusts it with `workstation trust add {path} --name {who.name} --role ROLES`")


def register(cli: Commands) -> None:
    add = cli.add
    sub = cli.group("identity", "your personal signing identities (kept outside workspaces)")
    p = add("create", cmd_create, "create an identity: an Ed25519 key pair, the private key "
                                  "encrypted with a passphrase", sub)
    p.add_argument("--name", required=True)
    p.add_argument("--email")
    add("list", cmd_list, "list your identities (* marks the current one)", sub)
    p = add("use", cmd_use, "make an identity the current one", sub)
    p.add_argument("name")
    p = add("export-public", cmd_export_public,
            "write an identity's public key (PEM) for another workspace's `trust add`", sub)
    p.add_argument("out", metavar="OUT.pem")
    p.add_argument("--name", help="which identity (default: the current one)")
