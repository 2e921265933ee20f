"""Audits and probes: run them, list runs, list failure cases."""

from __future__ import annotations


from workstation.cli.common import Commands, Output, fmt, open_workspace, param


def cmd_audit(args, out: Output) -> None:
    from workstation.audits import run_audit

    with open_workspace(args) as ws:
        run = run_audit(ws, args.model, args.dataset, threshold=args.threshold,
                        progress=out.progress())
        payload = run.to_json()
    payload.setdefault("run_id", run.id)
    payload["failures"] = run.n_failures
    held = run.metrics.get("n_failures", 0)
    payload["failures_by_split"] = {"heldout": held, "training": run.n_failures - held}
    out.result(payload, lambda: _audit_text(run))


def _audit_text(run) -> str:
    """Held-out figures first, the training-set ones apart, each saying what it covers."""
    membership = run.membership or {}
    held = run.metrics.get("n_failures", run.n_failures)
    split = f" ({held} on examples it was not trained on)" if run.training_metrics else ""
    lines = [f"audit run {run.id} of {run.model} on {run.dataset}: {run.n_examples} examples, "
             f"{run.n_failures} failures{split}"]
    trained = run.training_metrics is not None
    label = "held-out" if trained or membership.get("status") == "trained" else "metrics"
    lines.append(f"{label}: {membership.get('metrics_cover', 'all examples')}")
    lines.append("  " + _headline(run.metrics))
    if trained:
        lines.append(f"training set (apart; not a measure of generalisation): "
                     f"{membership.get('training_metrics_cover')}")
        lines.append("  " + _headline(run.training_metrics))
    return "\n".join(lines)


def _headline(metrics: dict) -> str:
    return ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)
                     and not k.endswith("_ci"))


def cmd_runs(args, out: Output) -> None:
    from workstation.audits import list_runs

    with open_workspace(args, read_only=True) as ws:
        runs = list_runs(ws)
    items = [r.to_json() for r in runs]
    text = "\n".join(f"run {r['run_id']:<4} {r.get('model', '')} on {r.get('dataset', '')}: "
                     f"{r.get('n_failures', '')} failures" for r in items) \
        or "no audit runs yet: run `workstation audit`"
    out.result({"runs": items}, text)


def cmd_failures(args, out: Output) -> None:
    from workstation.audits import list_failures

    with open_workspace(args, read_only=True) as ws:
        team = _team_filters(ws, args)
        items = list_failures(ws, args.run, limit=args.limit, offset=args.offset,
                              split=args.split, **team)
    out.result({"run_id": args.run, "split": args.split, "failures": items},
               lambda: _failures_text(items))


def _team_filters(ws, args) -> dict:
    from workstation.assignments import resolve_analyst

    return {name: resolve_analyst(ws, who, reviewers_only=False)
            for name, who in (("labelled_by", args.labelled_by),
                              ("assigned_to", args.assigned_to)) if who}


_SPLIT_WORDS = {"heldout": "held-out", "training": "training", "validation": "validation",
                None: "not trained on"}


def _failures_text(items: list[dict]) -> str:
    if not items:
        return "no failures"
    lines = []
    for f in items:
        if "probe" in f:
            lines.append(f"[{f['probe']}] severity {fmt(f['severity'])} example "
                         f"{f.get('example_id')} (source index {f.get('source_index')}): "
                         f"{f['rule']}; score {fmt(f.get('score_before'))} -> "
                         f"{fmt(f.get('score_after'))}; suggested {f['triage']}")
            continue
        scores = ", ".join(f"{k} {fmt(f[k])}" for k in ("score", "margin", "score_chosen",
                                                        "score_rejected") if f.get(k) is not None)
        lines.append(f"#{f.get('rank', '')} example {f['example_id']} "
                     f"(source index {f.get('source_index')}) [{_SPLIT_WORDS[f.get('split')]}]: "
                     f"{scores}; label {f.get('label')}")
    return "\n".join(lines)


def cmd_probe(args, out: Output) -> None:
    from workstation.probes import run_probes

    params = dict(param(p) for p in args.param or [])
    with open_workspace(args) as ws:
        run = run_probes(ws, args.model, args.dataset, probes=args.probe, params=params,
                         progress=out.progress(), seed=args.seed)
    payload = run.to_json()
    lines = [f"probe run {run.id}: {sum(run.counts.values())} findings"]
    lines += [f"  {name:<20} {n}" for name, n in run.counts.items()]
    lines += [f"  {name:<20} skipped: {why}" for name, why in run.skipped.items()]
    lines.append(f"list them with: workstation failures --run {run.id}")
    out.result(payload, "\n".join(lines))


def cmd_probes(args, out: Output) -> None:
    from workstation.probes import PROBES

    items = [{"name": p.name, "version": p.version, "kinds": list(p.kinds),
              "description": p.description} for p in PROBES.values()]
    out.result({"probes": items}, "\n".join(f"{p['name']:<20} {'/'.join(p['kinds']):<18} "
                                            f"{p['description']}" for p in items))


def cmd_coverage(args, out: Output) -> None:
    from workstation.probes.coverage import coverage_report

    with open_workspace(args) as ws:  # writable: runs not yet recorded are recorded first
        report = coverage_report(ws, args.model, args.dataset)
    out.result(report, lambda: _coverage_text(report))


def _coverage_text(report: dict) -> str:
    below = f"{report['covered_below']:g}"
    lines = [f"coverage of {report['dataset']} by the audits of {report['model']}'s input space "
             f"({report['n_points']} audited points); covered = coverage below {below}"]
    rows = [("overall", report["overall"])] + list(report["per_category"].items())
    for name, figures in rows:
        if not figures["n"]:
            lines.append(f"  {name:<24} no examples")
            continue
        lines.append(f"  {name:<24} {figures['covered']:>6} of {figures['n']:<6} covered "
                     f"({figures['covered_fraction']:.0%}), mean coverage "
                     f"{figures['mean_coverage']:.2f}")
    return "\n".join(lines)


def register(cli: Commands) -> None:
    add = cli.add
    p = add("audit", cmd_audit, "score a dataset with a model version and store the run")
    p.add_argument("--model", required=True, help="NAME or NAME@VERSION")
    p.add_argument("--dataset", required=True)
    p.add_argument("--threshold", type=float, help="decision threshold (default: 0.5 on probabilities)")

    add("runs", cmd_runs, "list audit runs")

    p = add("failures", cmd_failures, "list an audit run's failure cases, most confident first")
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--split", choices=["heldout", "training", "all"], default="all",
                   help="heldout: examples the version was not trained on; training: those "
                        "it was (default: all, each item says its split)")
    p.add_argument("--labelled-by", metavar="ANALYST",
                   help="only examples this analyst (name or key id) holds a label of")
    p.add_argument("--assigned-to", metavar="ANALYST",
                   help="only examples assigned to this analyst (`workstation assign`)")

    p = add("probe", cmd_probe, "run the automated probe suite on a dataset")
    p.add_argument("--model", required=True, help="NAME or NAME@VERSION")
    p.add_argument("--dataset", required=True)
    p.add_argument("--probe", action="append", metavar="NAME",
                   help="run only this probe (repeatable; default: all that apply)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a probe parameter, e.g. sample=500 (repeatable)")
    p.add_argument("--seed", type=int, default=0)

    add("probes", cmd_probes, "list the registered probes")

    p = add("coverage", cmd_coverage, "how well a model's audits cover a dataset, overall and "
                                      "per category (0 = audited here, 1 = nothing nearby)")
    p.add_argument("--model", required=True, help="NAME or NAME@VERSION")
    p.add_argument("--dataset", required=True)
