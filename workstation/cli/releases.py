"""Regression check and release: compare, release (a request), approve or
reject, rollback, releases, export and verify a release, the public keys that
check releases."""

from __future__ import annotations


from workstation.cli.common import (Commands, Output, UsageError, acting_signer, exit_failed,
                                    open_workspace)


def cmd_compare(args, out: Output) -> None:
    from workstation.regression import compare
    from workstation.regression.report import counts_text

    with open_workspace(args) as ws:
        report = compare(ws, args.candidate, args.baseline, datasets=args.dataset,
                         progress=out.progress(), tolerance=args.tolerance, budget=args.budget)
    payload = report.to_json()
    gate = payload["gate"]
    lines = [f"{report.candidate.ref} against {report.baseline.ref}: {counts_text(payload)}"]
    lines += [f"  {line}" for line in payload["summary"]]
    lines += [f"  skipped {name}: {why}" for name, why in payload["skipped_datasets"].items()]
    lines.append(f"gate (on held-out figures): {'PASS' if gate['pass'] else 'FAIL'}")
    lines += [f"  - {reason}" for reason in gate.get("reasons", [])]
    out.result(payload, "\n".join(lines))


def cmd_release(args, out: Output) -> None:
    from workstation import releases

    acting_signer(args)
    with open_workspace(args) as ws:
        rel = releases.release(ws, args.version, notes=args.notes or "", force=bool(args.force),
                               force_reason=args.force or "", progress=out.progress())
    if rel.status == "in-force":
        text = (f"released {rel.ref} as release {rel.id} (signed by {rel.created_by}, key "
                f"{rel.key_id})")
    else:
        text = (f"requested {rel.ref} as release {rel.id}: pending, {_approvals_text(rel)}; "
                f"an approver approves it with `workstation approve {rel.id}`")
    out.result(_summary(rel), text + _forced_text(rel))


def _summary(rel) -> dict:
    """What `release` and `approve` print with --json."""
    report = rel.batch.get("regression_report")
    return {"release_id": rel.id, "model": rel.model, "version": rel.version,
            "sha256": rel.sha256, "status": rel.status, "current": rel.current,
            "key_id": rel.key_id, "requested_by": rel.requested_by,
            "approvals": rel.approvals, "approvals_required": rel.approvals_required,
            "forced": rel.forced, "rejection": rel.rejection,
            "gate": report.get("gate") if isinstance(report, dict) else None}


def _forced_text(rel) -> str:
    """What an approver must see before signing: the gate failed and why it was forced."""
    if not rel.forced:
        return ""
    return f"\n  forced past a failed regression gate: {rel.batch['gate'].get('force_reason')}"


def _approvals_text(rel) -> str:
    names = ", ".join(a["name"] for a in rel.approvals)
    return (f"{len(rel.approvals)} of {rel.approvals_required} approval"
            f"{'s' if rel.approvals_required != 1 else ''}" + (f" ({names})" if names else ""))


def cmd_approve(args, out: Output) -> None:
    from workstation import releases

    if args.reason and not args.reject:
        raise UsageError("approve: --reason goes with --reject (an approval needs none)")
    acting_signer(args)
    with open_workspace(args) as ws:
        if args.reject:
            rel = releases.reject(ws, args.release_id, args.reason or "")
        else:
            rel = releases.approve(ws, args.release_id)
    if args.reject:
        text = f"rejected release {rel.id} ({rel.ref}): {args.reason}"
    elif rel.status == "in-force":
        text = f"approved: {rel.ref} (release {rel.id}) is in force, {_approvals_text(rel)}"
    else:
        text = f"approved release {rel.id} ({rel.ref}): still pending, {_approvals_text(rel)}"
    if not args.reject:
        text += _forced_text(rel)
    out.result({**_summary(rel), "decision": "reject" if args.reject else "approve"}, text)


def cmd_rollback(args, out: Output) -> None:
    from workstation import releases

    acting_signer(args)
    with open_workspace(args) as ws:
        rel = releases.rollback(ws, args.model, reason=args.reason or "")
    out.result({"release_id": rel.id, "model": rel.model, "version": rel.version,
                "current": rel.ref}, f"rolled back: {rel.ref} (release {rel.id}) is current")


def cmd_releases(args, out: Output) -> None:
    from workstation import releases

    with open_workspace(args, read_only=True) as ws:
        items = releases.release_history(ws, args.model)
    text = "\n".join(_release_line(r) for r in items) \
        or "no releases yet: `workstation release MODEL@V`"
    out.result({"releases": [r.to_json() for r in items]}, text)


def _release_line(rel) -> str:
    line = f"release {rel.id:<4} {rel.ref:<20} {rel.status:<12} {rel.created_at[:19]} "
    if rel.status in ("pending", "outdated"):
        line += f"requested by {rel.requested_by}, {_approvals_text(rel)}"
    elif rel.status == "rejected":
        return line + f"rejected by {rel.rejection['name']}: {rel.rejection['reason']}"
    else:
        line += f"by {rel.created_by}"
    return line + _forced_text(rel)


def cmd_export_release(args, out: Output) -> None:
    from workstation import releases

    with open_workspace(args, read_only=True) as ws:
        path = releases.export_release(ws, args.model, args.out)
    out.result({"path": str(path)}, f"wrote release to {path}")


def cmd_verify_release(args, out: Output) -> None:
    from workstation import offline_verify

    if args.min_approvals is not None and args.min_approvals < 1:
        raise UsageError("verify-release: --min-approvals must be 1 or more")
    result = offline_verify.verify_release(args.path, args.trust,
                                           allow_untrusted=args.allow_untrusted,
                                           min_approvals=args.min_approvals)
    if result.ok:
        who = ", ".join(f"{a['name']} ({a['key_id']}{', trusted' if a['trusted'] else ''})"
                        for a in result.approvals)
        lines = [f"ok: {result.model}@{result.version}, {len(result.approvals)} approval(s) of "
                 f"{result.approvals_required} required: {who}"
                 + ("" if result.trusted else " — NOT checked against trusted keys")]
        if result.forced:
            lines.append(f"forced past a failed regression gate: {result.force_reason}")
    else:
        lines = [f"FAILED: {r}" for r in result.reasons]
        if result.reasons == [offline_verify.NO_TRUST]:
            lines.append("pass the approvers' public keys: --trust FILE_OR_DIR "
                         "(`workstation identity export-public`), or --allow-untrusted")
    lines += [f"warning: {w}" for w in result.warnings]
    out.result(result.to_json(), "\n".join(lines))
    if not result.ok:
        exit_failed(f"release does not verify: {result.reasons[0]}")


def cmd_key_export_public(args, out: Output) -> None:
    from workstation import releases

    with open_workspace(args, read_only=True) as ws:
        path = releases.export_public_key(ws, args.path, args.key_id)
        key_id = args.key_id or releases.legacy_keys(ws)[-1].key_id
    out.result({"path": str(path), "key_id": key_id}, f"wrote the public key {key_id} to {path}")


def register(cli: Commands) -> None:
    add = cli.add
    p = add("compare", cmd_compare,
            "compare two versions example by example and apply the release gate")
    p.add_argument("--candidate", required=True, metavar="MODEL@V")
    p.add_argument("--baseline", required=True, metavar="MODEL@V")
    p.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="largest allowed fall of a category metric (default 0.02)")
    p.add_argument("--budget", type=float, default=0.10,
                   help="largest allowed reward loss on protected states (default 0.10)")

    p = add("release", cmd_release,
            "request a release of a model version: regression gate, governance batch, "
            "signature; in force at once when your approval is enough")
    p.add_argument("version", metavar="MODEL@V")
    p.add_argument("--notes")
    p.add_argument("--force", metavar="REASON", help="release although the gate fails (recorded)")

    p = add("approve", cmd_approve,
            "approve a release request (an approver's signature), or reject it with a reason")
    p.add_argument("release_id", metavar="RELEASE_ID", type=int)
    p.add_argument("--reject", action="store_true", help="reject the request for good")
    p.add_argument("--reason", help="why it is rejected (with --reject)")

    p = add("rollback", cmd_rollback, "make the previous release of a model current again")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--reason")

    p = add("releases", cmd_releases,
            "list releases and requests: pending, in-force, superseded, rolled-back, rejected, "
            "outdated")
    p.add_argument("model", metavar="MODEL", nargs="?")

    p = add("export-release", cmd_export_release,
            "write a release (ONNX, manifest, governance batch, signature) to a folder or .zip")
    p.add_argument("model", metavar="MODEL[@V]")
    p.add_argument("out")

    p = add("verify-release", cmd_verify_release,
            "check an exported release offline: files, signatures, enough trusted approvals")
    p.add_argument("path")
    p.add_argument("--trust", "--key", metavar="FILE_OR_DIR",
                   help="the trusted approvers' public keys: a PEM file, or a folder of "
                        ".pem/.pub files (--key is the older name)")
    p.add_argument("--allow-untrusted", action="store_true",
                   help="without --trust: check the signatures with the keys inside the "
                        "release only (trusted: false)")
    p.add_argument("--min-approvals", type=int, metavar="N",
                   help="require at least N trusted approvals (default: what the release asks)")

    key_sub = cli.group("key", "public keys that check this workspace's releases")
    p = add("export-public", cmd_key_export_public,
            "write a public key (PEM) for `verify-release --trust`: the legacy workspace key "
            "(releases made before identities) or --key-id ID (a trusted identity's)", key_sub)
    p.add_argument("path")
    p.add_argument("--key-id", metavar="ID", help="a key of `trust list` (default: the legacy key)")
