"""Regression check and release: compare, release, rollback, releases, export and
verify a release, the public keys that check releases."""

from __future__ import annotations


from workstation.cli.common import Commands, Output, acting_signer, exit_failed, open_workspace
from workstation.errors import WorkstationError


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
        report = _regression_report(ws, args)
        gate = (report or {}).get("gate") or {}
        if gate.get("pass") is False and not args.force:
            raise WorkstationError(
                f"release of {args.version} refused by the regression gate: "
                + "; ".join(gate.get("reasons") or ["gate failed"])
                + " (see `workstation compare`; --force REASON releases anyway, recorded)")
        rel = releases.release(ws, args.version, regression_report=report,
                               notes=args.notes or "", force=bool(args.force),
                               force_reason=args.force or "")
    payload = {"release_id": rel.id, "model": rel.model, "version": rel.version,
               "sha256": rel.sha256, "key_id": rel.key_id, "gate": (report or {}).get("gate")}
    out.result(payload, f"released {rel.ref} as release {rel.id} "
                        f"(signed by {rel.created_by}, key {rel.key_id})")


def _regression_report(ws, args) -> dict | None:
    """The regression gate's report for this release (None for a first version)."""
    from workstation.regression import gate_report_for_release

    return gate_report_for_release(ws, args.version, progress=None)


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
        items = releases.list_releases(ws, args.model)
    text = "\n".join(f"release {r.id:<4} {r.ref:<20} {r.created_at[:19]} by {r.created_by}"
                     f"{'  (current)' if r.current else ''}" for r in items) \
        or "no releases yet: `workstation release MODEL@V`"
    out.result({"releases": [r.to_json() for r in items]}, text)


def cmd_export_release(args, out: Output) -> None:
    from workstation import releases

    with open_workspace(args, read_only=True) as ws:
        path = releases.export_release(ws, args.model, args.out)
    out.result({"path": str(path)}, f"wrote release to {path}")


def cmd_verify_release(args, out: Output) -> None:
    from workstation import releases

    result = releases.verify_release(args.path, public_key=args.key)
    lines = ([f"ok: {result.model}@{result.version} signed by key {result.key_id}"]
             if result.ok else [f"FAILED: {r}" for r in result.reasons])
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

    p = add("release", cmd_release, "release a model version: gate, governance batch, signature")
    p.add_argument("version", metavar="MODEL@V")
    p.add_argument("--notes")
    p.add_argument("--force", metavar="REASON", help="release although the gate fails (recorded)")

    p = add("rollback", cmd_rollback, "make the previous release of a model current again")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--reason")

    p = add("releases", cmd_releases, "list releases")
    p.add_argument("model", metavar="MODEL", nargs="?")

    p = add("export-release", cmd_export_release,
            "write a release (ONNX, manifest, governance batch, signature) to a folder or .zip")
    p.add_argument("model", metavar="MODEL[@V]")
    p.add_argument("out")

    p = add("verify-release", cmd_verify_release, "check an exported release offline")
    p.add_argument("path")
    p.add_argument("--key", help="trusted public key (PEM); default: the key inside the release")

    key_sub = cli.group("key", "public keys that check this workspace's releases")
    p = add("export-public", cmd_key_export_public,
            "write a public key (PEM) for `verify-release --key`: the legacy workspace key "
            "(releases made before identities) or --key-id ID (a trusted identity's)", key_sub)
    p.add_argument("path")
    p.add_argument("--key-id", metavar="ID", help="a key of `trust list` (default: the legacy key)")
