"""The audit report: build a signed HTML, PDF or JSON report, and check one."""

from __future__ import annotations

from workstation.cli.common import Commands, Output, acting_signer, exit_failed, ids, open_workspace


def cmd_report(args, out: Output) -> None:
    from workstation.report import build_report, format_of

    format_of(args.out, args.format)  # a bad name fails before anything is unlocked or read
    signer = acting_signer(args)
    with open_workspace(args) as ws:
        written = build_report(ws, args.model, args.out, fmt=args.format, datasets=args.dataset,
                               run_ids=ids(args.runs), signer=signer, progress=out.progress(),
                               regression=not args.no_regression)
    pages = f", {written.pages} pages" if written.pages else ""
    out.result(written.to_json(),
               f"wrote the {written.format.upper()} report of {written.model} to {written.path} "
               f"({written.bytes:,} bytes{pages}; runs {', '.join(map(str, written.runs))}; "
               f"{written.limits} limits listed), signed by {written.signer} "
               f"(key {written.key_id}) in {written.seconds:.1f} s")


def cmd_verify_report(args, out: Output) -> None:
    from workstation.report import verify_report

    result = verify_report(args.path, trust=args.trust)
    if result.ok:
        trusted = "a trusted key" if result.key_trusted else "a key not independently trusted"
        lines = [f"ok: {result.kind} report of {result.model} ({result.created_at}) signed by "
                 f"{result.signer}, key {result.key_id} ({trusted})"]
    else:
        signer = f" (signature names key {result.key_id}, {result.signer})" if result.key_id \
            else ""
        lines = [f"FAILED: {r}{signer}" for r in result.reasons]
    lines += [f"warning: {w}" for w in result.warnings]
    out.result(result.to_json(), "\n".join(lines))
    if not result.ok:
        exit_failed(f"report does not verify: {result.reasons[0]}")


def register(cli: Commands) -> None:
    p = cli.add("report", cmd_report,
                "write a signed audit report of a model version (HTML, PDF or JSON)")
    p.add_argument("out", metavar="OUT", help="the report file: .html, .pdf or .json")
    p.add_argument("--model", required=True, metavar="MODEL@V")
    p.add_argument("--dataset", action="append", metavar="NAME",
                   help="only this dataset (repeatable; default: every dataset the version "
                        "was audited on)")
    p.add_argument("--runs", metavar="IDS",
                   help="comma-separated audit and probe run ids of the version (default: its "
                        "newest audit and probe run per dataset)")
    p.add_argument("--format", choices=["html", "pdf", "json"],
                   help="the format (default: from OUT's extension)")
    p.add_argument("--no-regression", action="store_true",
                   help="leave out the regression check against the release in force "
                        "(listed under Limits)")

    p = cli.add("verify-report", cmd_verify_report,
                "check a report's signature offline: one changed byte is refused")
    p.add_argument("path", metavar="REPORT")
    p.add_argument("--trust", metavar="FILE_OR_DIR",
                   help="a trusted public key (PEM) or a folder of them; the signer's key must "
                        "be one (default: the key inside the report, with a warning)")
