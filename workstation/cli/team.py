"""Team review from the command line: review export / merge, conflicts,
adjudicate, agreement, assign."""

from __future__ import annotations

from typing import Any

from workstation.cli.common import Commands, Output, UsageError, acting_signer, ids, \
    open_workspace


def cmd_export(args, out: Output) -> None:
    from workstation import review_bundles

    signer = acting_signer(args)
    with open_workspace(args, read_only=True) as ws:
        report = review_bundles.export(ws, args.dataset, args.out, signer=signer,
                                       every_author=args.all_authors)
    out.result(report.to_json(),
               f"wrote {_count(report.rows, 'review row')} of '{report.dataset}' "
               f"({', '.join(report.analysts) or 'none'}) to {report.path}, signed by "
               f"{signer.name}")


def cmd_merge(args, out: Output) -> None:
    from workstation import review_bundles

    with open_workspace(args) as ws:
        report = review_bundles.merge(ws, args.bundles, out.progress())
    lines = [f"{b.path}: {_count(b.added, 'new row')} of '{b.dataset}' (exported by "
             f"{b.exported_by}), {b.already_here} already here" for b in report.bundles]
    lines.append(f"{_count(report.added, 'row')} added on {_count(report.examples, 'example')}; "
                 f"{_count(report.conflicts, 'open conflict')} among them"
                 + (" (`workstation conflicts --dataset D`)" if report.conflicts else ""))
    out.result(report.to_json(), "\n".join(lines))


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def cmd_conflicts(args, out: Output) -> None:
    from workstation import conflicts

    with open_workspace(args, read_only=True) as ws:
        found = conflicts.conflicts(ws, args.dataset, field=args.field,
                                    include_settled=args.all)
    text = "\n".join(
        f"example {c.example_id} {c.field}: " + ", ".join(
            f"{v['analyst']} [{v['key_id']}] {v['value']!r}" for v in c.values)
        + f"; in force {c.value_in_force!r}" + (" (settled)" if c.settled else "")
        for c in found) or "no open conflicts"
    out.result({"dataset": args.dataset, "conflicts": [c.to_json() for c in found]}, text)


def cmd_adjudicate(args, out: Output) -> None:
    from workstation import conflicts, review_state

    field, value = args.field, review_state.UNSET
    for flag, name, given in (("flip", "flipped", True), ("no_flip", "flipped", False),
                              ("set_label", "label", None), ("set_category", "category", None)):
        chosen = getattr(args, flag)
        if chosen not in (None, False):
            field, value = name, given if given is not None else chosen
    acting_signer(args)
    with open_workspace(args) as ws:
        change = conflicts.adjudicate(ws, args.example_id, reason=args.reason,
                                      choose=args.choose, field=field, value=value)
    out.result({"change": change.to_json()},
               f"example {change.example_id} {change.field}: settled to {change.new!r} "
               f"(log row {change.seq}, signed by {change.analyst})")


def cmd_agreement(args, out: Output) -> None:
    from workstation import agreement

    with open_workspace(args, read_only=True) as ws:
        report = agreement.agreement(ws, args.dataset, args.field, n_boot=args.boot)
    out.result(report.to_json(), lambda: _agreement_text(report))


def _agreement_text(report: Any) -> str:
    def fig(f: Any, unit: str = "") -> str:
        return "n/a" if f.value is None else (
            f"{f.value:.3g}{unit}" if unit else f"{f.value:.3f}") + (
            f" (95% CI {f.ci[0]:.3g} to {f.ci[1]:.3g}{unit})" if f.ci else "")
    lines = [f"{report.dataset} · {report.field}: {report.n_items} items labelled by two or "
             f"more of {report.n_analysts} analysts",
             f"percent agreement {fig(report.percent_agreement, '%')}",
             f"Krippendorff's alpha (nominal) {fig(report.krippendorff_alpha)}"]
    for k in report.cohen_kappa:
        lines.append(f"Cohen's kappa {k['analyst_a']} / {k['analyst_b']} "
                     f"({_count(k['n_items'], 'item')}) {fig(_figure(k))}")
    for c in report.per_category:
        lines.append(f"  {c['category'] or '(no category)'}: {_count(c['n_items'], 'item')}, "
                     f"agreement {fig(_figure(c['percent_agreement']), '%')}")
    if report.model_agreement:
        for a in report.model_agreement["analysts"]:
            lines.append(f"{a['analyst']} agrees with the model (run "
                         f"{report.model_agreement['run_id']}) on "
                         f"{fig(_figure(a['percent_agreement']), '%')} of "
                         f"{_count(a['n_items'], 'example')}")
    return "\n".join(lines)


def _figure(entry: dict[str, Any]) -> Any:
    from workstation.agreement import Figure

    ci = entry.get("ci95")
    return Figure(entry.get("value"), None if ci is None else tuple(ci))


def cmd_assign(args, out: Output) -> None:
    from workstation import assignments

    if (args.to is None) == (not args.unassign):
        raise UsageError("assign: give --to ANALYST or --unassign")
    acting_signer(args)
    with open_workspace(args) as ws:
        chosen = ids(args.examples) if args.examples else \
            assignments.failure_ids(ws, args.run, args.offset, args.limit)
        changes = assignments.assign(ws, chosen or [], args.to, args.reason)
        key_id = changes[0].new if changes else None
    out.result({"assignee": key_id, "examples": chosen,
                "changes": [c.to_json() for c in changes]},
               f"{len(changes)} of {len(chosen or [])} examples "
               f"{'assigned to ' + args.to if args.to else 'unassigned'}")


def register(cli: Commands) -> None:
    review = cli.group("review", "carry review rows between copies of a workspace (bundles)")
    p = cli.add("export", cmd_export, "write your review rows of a dataset to a signed bundle",
                review)
    p.add_argument("--dataset", required=True)
    p.add_argument("out", metavar="OUT.bundle")
    p.add_argument("--all-authors", action="store_true",
                   help="every analyst's signed rows of the dataset, not only yours")
    p = cli.add("merge", cmd_merge, "merge review bundles from other laptops (all or nothing)",
                review)
    p.add_argument("bundles", nargs="+", metavar="BUNDLE")

    p = cli.add("conflicts", cmd_conflicts, "examples on which analysts disagree")
    p.add_argument("--dataset", required=True)
    p.add_argument("--field", choices=["label", "flipped", "category"])
    p.add_argument("--all", action="store_true", help="also disagreements already adjudicated")

    p = cli.add("adjudicate", cmd_adjudicate,
                "settle a disagreement (adjudicators; logged and signed like an edit)")
    p.add_argument("example_id", type=int)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--choose", metavar="KEY_ID", help="take this analyst's value")
    how.add_argument("--flip", action="store_true", help="the rejected reply is better (pairs)")
    how.add_argument("--no-flip", action="store_true", help="the chosen reply is better (pairs)")
    how.add_argument("--set-label", metavar="L", help="safe or unsafe")
    how.add_argument("--set-category", metavar="C")
    p.add_argument("--field", choices=["label", "flipped", "category"],
                   help="which disagreement, when the example has several (with --choose)")
    p.add_argument("--reason", required=True)

    p = cli.add("agreement", cmd_agreement, "agreement between analysts, and with the model")
    p.add_argument("--dataset", required=True)
    p.add_argument("--field", choices=["label", "flipped", "category"],
                   help="default: flipped for a pairs dataset, label for the others")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples for the CIs")

    p = cli.add("assign", cmd_assign, "assign examples to an analyst (a signed log row each)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--examples", metavar="IDS", help="comma-separated example ids")
    which.add_argument("--run", type=int, help="a slice of this audit run's failure list")
    p.add_argument("--offset", type=int, default=0, help="with --run: skip the first K failures")
    p.add_argument("--limit", type=int, default=50, help="with --run: this many failures")
    p.add_argument("--to", metavar="ANALYST", help="a trusted reviewer's name or key id")
    p.add_argument("--unassign", action="store_true")
    p.add_argument("--reason", default="assigned for review")
