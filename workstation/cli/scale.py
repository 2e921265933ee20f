"""Beyond one laptop: make a scoring bundle, score a corpus on Ray, bring the
results home (``workstation scale bundle|run|import``)."""

from __future__ import annotations

from workstation.cli.common import (Commands, Output, UsageError, acting_signer, fmt,
                                    open_workspace)
from workstation.errors import WorkstationError


def cmd_bundle(args, out: Output) -> None:
    from workstation.cluster.bundle import make_bundle

    from workstation import trust

    signer = acting_signer(args)  # the bundle is signed by the analyst's identity
    with open_workspace(args) as ws:
        trust.ensure_owner(ws, signer)  # as every signing act: the first signer owns the workspace
        record = make_bundle(ws, args.model, args.out_dir, signer, analyst=signer.name)
        key = trust.get_key(ws, signer.key_id)
    trusted = key is not None and key.active
    payload = {**record.to_json(), "signer_trusted_here": trusted}
    out.result(payload, lambda: (
        f"scoring bundle of {record.model} in {record.path}: {len(record.files)} files, "
        f"bundle sha256 {record.sha256[:16]}, signed by {signer.name} (key {record.key_id})"
        + ("" if trusted else "; this key is not trusted in this workspace, so `scale import` "
           "here will refuse the results until an approver adds it")))


def cmd_run(args, out: Output) -> None:
    try:
        from workstation.cluster.ray_run import run_scale
    except ImportError as exc:
        if "ray" not in str(exc):
            raise
        raise WorkstationError("scale run needs Ray Data: pip install 'workstation[cluster]'"
                               ) from None
    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError("--num-cpus takes a number of CPUs, at least 1")
    run = run_scale(args.bundle, args.input, args.output, address=args.address,
                    num_cpus=args.num_cpus, batch_size=args.batch_size, fmt=args.format,
                    threshold=args.threshold, progress=out.progress())
    payload = run.to_json()
    out.result(payload, lambda: _run_text(payload))


def _run_text(p: dict) -> str:
    lines = [f"scored {p['scored']} of {p['rows']} rows ({p['bad']} bad) in {p['seconds']:.1f} s "
             f"on Ray ({p['where']['cluster']}, {p['where']['actors']} actors): {p['output']}"]
    for f in p["files"]:
        reasons = "; ".join(f"{n} {r}" for r, n in f["bad_reasons"].items())
        lines.append(f"  {f['path']}: {f['rows']} rows, {f['bad']} bad"
                     + (f" ({reasons})" if reasons else "")
                     + (f"; {f['file_error']}" if f["file_error"] else ""))
    headline = {k: v for k, v in p["metrics"].items()
                if isinstance(v, float) and not k.endswith("_ci")}
    lines.append("metrics over every scored row: "
                 + ", ".join(f"{k} {fmt(v)}" for k, v in headline.items()))
    if "truncated" in p["metrics"]:
        lines.append(_truncated_text(p["metrics"]))
    return "\n".join(lines)


def _truncated_text(metrics: dict) -> str:
    """Rows (and sides of pairs) cut to the tokens model's maximum length."""
    sides = metrics.get("truncated_sides")
    return (f"cut to the model's maximum length: {metrics['truncated']} rows"
            + (f" ({sides} sides of pairs)" if sides is not None else ""))


def cmd_import(args, out: Output) -> None:
    from workstation.cluster.homecoming import import_results

    with open_workspace(args) as ws:
        home = import_results(ws, args.results, args.dataset, args.model,
                              failures_only=args.failures_only, inputs_dir=args.inputs,
                              progress=out.progress(), allow_untrusted=args.allow_untrusted)
    payload = home.to_json()
    where = payload["ran_on"] or {}
    out.result(payload, lambda: (
        f"audit run {home.run.id} of {home.run.model} on {home.dataset}, scored on "
        f"{where.get('engine', '?')} ({where.get('cluster', '?')}): {home.run.n_examples} "
        f"examples, {home.run.n_failures} failures"
        + (f"; {home.imported} examples imported" if home.imported is not None else "")
        + ("" if home.run.params["scale"]["bundle_trusted"] else
           f"; UNTRUSTED: the bundle's key {home.run.params['scale']['bundle_key_id']} is not "
           f"trusted in this workspace")))


def register(cli: Commands) -> None:
    scale = cli.group("scale", "score corpora too big for a laptop on Ray, bring results home")
    p = cli.add("bundle", cmd_bundle, "write a signed scoring bundle of a model version",
                parent=scale)
    p.add_argument("--model", required=True, metavar="M@V")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p = cli.add("run", cmd_run, "score input files with a bundle on Ray Data", parent=scale)
    p.add_argument("--bundle", required=True, metavar="DIR")
    p.add_argument("--input", required=True, metavar="PATH_OR_GLOB")
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument("--address", default=None, help="a Ray cluster to join (default: start a "
                   "local instance)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="scoring actors, one CPU each (default: every CPU)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="rows per batch (default 1024; 16384 when the Parquet inputs carry "
                        "embeddings)")
    p.add_argument("--format", default=None,
                   help="trl-jsonl, trl-parquet, hh-rlhf, labels-jsonl or labels-parquet "
                   "(default: detected)")
    p.add_argument("--threshold", type=float, default=None,
                   help="labeled responses: the safe threshold (default as for an audit)")
    p = cli.add("import", cmd_import, "import a scale run's results as an audit run",
                parent=scale)
    p.add_argument("--results", required=True, metavar="DIR")
    p.add_argument("--dataset", required=True, metavar="NAME")
    p.add_argument("--model", required=True, metavar="M@V")
    p.add_argument("--failures-only", type=int, default=None, metavar="N",
                   help="import only the N most confident failures and a uniform sample of N")
    p.add_argument("--inputs", default=None, metavar="DIR",
                   help="where the run's input files are now (default: where the run read them)")
    p.add_argument("--allow-untrusted", action="store_true",
                   help="import results whose bundle was signed by a key this workspace does "
                        "not trust; the run is recorded as untrusted")
