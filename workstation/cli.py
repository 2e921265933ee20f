"""The `workstation` command: wiring only.

Every sub-command opens the workspace, calls one core function and prints
its result, as text or (with --json) as exactly one JSON object on stdout.
Errors print one line on stderr and exit non-zero; --debug shows the
traceback. Core modules are imported inside the commands so that start-up
stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from workstation import __version__
from workstation.errors import WorkstationError

EXIT_ERROR = 1
EXIT_USAGE = 2



class UsageError(WorkstationError):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line, not usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


# -- output ----------------------------------------------------------------

class Output:
    """Prints results for humans or as one JSON object, and owns the progress bar."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.bar = None

    def progress(self):
        from workstation.progress import Progress, TerminalBar

        if self.as_json or not sys.stderr.isatty():
            return Progress()
        self.bar = TerminalBar()
        return Progress(self.bar)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def result(self, payload: dict[str, Any], text: str | Callable[[], str]) -> None:
        self.done()
        if self.as_json:
            print(json.dumps(payload, ensure_ascii=False, default=str))
        else:
            print(text() if callable(text) else text)


# -- workspace -------------------------------------------------------------

@contextmanager
def open_workspace(args: argparse.Namespace, read_only: bool = False) -> Iterator[Any]:
    from workstation.workspace import NeedsUpgrade, Workspace

    path = args.workspace or os.environ.get("WORKSTATION_WORKSPACE")
    if not path:
        raise UsageError("no workspace given: pass --workspace PATH (or set WORKSTATION_WORKSPACE)")
    try:
        ws = Workspace.open(path, read_only=read_only or args.read_only)
    except NeedsUpgrade:
        if args.read_only:
            raise
        # Read-only by our choice, not the analyst's: upgrade it (with a backup) instead.
        ws = Workspace.open(path)
    try:
        _say_if_upgraded(ws)
        yield ws
    finally:
        ws.close()


def _say_if_upgraded(ws: Any) -> None:
    """One line on stderr when opening migrated the file: where the old one went."""
    backup = getattr(ws, "migration_backup", None)
    if backup is None:
        return
    old = next((v for v in range(ws.schema_version) if ws.backup_path(v) == backup), "?")
    print(f"upgraded workspace schema v{old} -> v{ws.schema_version}; "
          f"the old file is backed up at {backup}", file=sys.stderr)


# -- commands --------------------------------------------------------------

def cmd_import(args, out: Output) -> None:
    from workstation.datasets import import_dataset

    with open_workspace(args) as ws:
        report = import_dataset(ws, args.kind, args.file, args.name, format=args.format,
                                progress=out.progress())
    payload = report.to_json()
    lines = [f"imported {report.imported} {report.kind} examples into dataset "
             f"'{report.dataset}' (format {report.format}); skipped {report.skipped}"]
    lines += [f"  skipped {n}: {why}" for why, n in report.skipped_reasons.items()]
    lines += [f"  note: {note}" for note in report.notes]
    out.result(payload, "\n".join(lines))


def cmd_datasets(args, out: Output) -> None:
    with open_workspace(args, read_only=True) as ws:
        rows = ws.execute("SELECT id, name, kind, format, n_examples, source_sha256, created_at "
                          "FROM datasets ORDER BY id").fetchall()
    items = [dict(zip(("id", "name", "kind", "format", "examples", "source_sha256", "created_at"), r))
             for r in rows]
    text = "\n".join(f"{d['name']:<24} {d['kind']:<7} {d['examples']:>8} examples  ({d['format']})"
                     for d in items) or "no datasets yet: import one with `workstation import`"
    out.result({"datasets": items}, text)


def cmd_model_add(args, out: Output) -> None:
    from workstation.models import add_model

    with open_workspace(args) as ws:
        version = add_model(ws, args.file, args.name, args.input, output=args.output,
                            column=args.column, parent=args.parent, notes=args.notes or "",
                            analyst=args.analyst, tokenizer=args.tokenizer)
    payload = {"model": version.model, "version": version.version, "sha256": version.sha256,
               "input_kind": version.input_kind, "manifest": version.manifest}
    out.result(payload, f"registered {version.model}@{version.version} "
                        f"({version.input_kind}, sha256 {version.sha256[:12]}…)")


def cmd_model_list(args, out: Output) -> None:
    from workstation.models import list_models

    with open_workspace(args, read_only=True) as ws:
        versions = list_models(ws)
    items = [{"model": v.model, "version": v.version, "sha256": v.sha256,
              "input_kind": v.input_kind, "parent_id": v.parent_id, "created_by": v.created_by,
              "created_at": v.created_at, "manifest": v.manifest} for v in versions]
    text = "\n".join(f"{v.model}@{v.version:<4} {v.input_kind:<15} {v.sha256[:12]}  "
                     f"{v.created_at[:19]} by {v.created_by}" for v in versions) \
        or "no models yet: register one with `workstation model add`"
    out.result({"models": items}, text)


def cmd_audit(args, out: Output) -> None:
    from workstation.audits import run_audit

    with open_workspace(args) as ws:
        run = run_audit(ws, args.model, args.dataset, threshold=args.threshold,
                        analyst=args.analyst, progress=out.progress())
        payload = run.to_json()
    payload.setdefault("run_id", run.id)
    payload["failures"] = run.n_failures
    headline = {k: v for k, v in run.metrics.items()
                if isinstance(v, (int, float)) and not k.endswith("_ci")}
    out.result(payload, f"audit run {run.id}: {run.n_examples} examples, "
                        f"{run.n_failures} failures; " +
               ", ".join(f"{k} {_fmt(v)}" for k, v in headline.items()))


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
        items = list_failures(ws, args.run, limit=args.limit, offset=args.offset)
    out.result({"run_id": args.run, "failures": items}, lambda: _failures_text(items))


def _failures_text(items: list[dict]) -> str:
    if not items:
        return "no failures"
    lines = []
    for f in items:
        if "probe" in f:
            lines.append(f"[{f['probe']}] severity {_fmt(f['severity'])} example "
                         f"{f.get('example_id')} (source index {f.get('source_index')}): "
                         f"{f['rule']}; score {_fmt(f.get('score_before'))} -> "
                         f"{_fmt(f.get('score_after'))}; suggested {f['triage']}")
            continue
        scores = ", ".join(f"{k} {_fmt(f[k])}" for k in ("score", "margin", "score_chosen",
                                                        "score_rejected") if f.get(k) is not None)
        lines.append(f"#{f.get('rank', '')} example {f['example_id']} "
                     f"(source index {f.get('source_index')}): {scores}; "
                     f"label {f.get('label')}")
    return "\n".join(lines)


def cmd_probe(args, out: Output) -> None:
    from workstation.probes import run_probes

    params = dict(_param(p) for p in args.param or [])
    with open_workspace(args) as ws:
        run = run_probes(ws, args.model, args.dataset, probes=args.probe, params=params,
                         progress=out.progress(), analyst=args.analyst, seed=args.seed)
    payload = run.to_json()
    lines = [f"probe run {run.id}: {sum(run.counts.values())} findings"]
    lines += [f"  {name:<20} {n}" for name, n in run.counts.items()]
    lines += [f"  {name:<20} skipped: {why}" for name, why in run.skipped.items()]
    lines.append(f"list them with: workstation failures --run {run.id}")
    out.result(payload, "\n".join(lines))


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UsageError(f"--param takes NAME=VALUE, not '{text}'")
    name, value = text.split("=", 1)
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def cmd_probes(args, out: Output) -> None:
    from workstation.probes import PROBES

    items = [{"name": p.name, "version": p.version, "kinds": list(p.kinds),
              "description": p.description} for p in PROBES.values()]
    out.result({"probes": items}, "\n".join(f"{p['name']:<20} {'/'.join(p['kinds']):<18} "
                                            f"{p['description']}" for p in items))


def cmd_label(args, out: Output) -> None:
    from workstation import review

    field, value = _label_change(args)
    with open_workspace(args) as ws:
        if field == "flipped":
            value = not review.current_values(ws, args.example_id)["flipped"]
        elif field == "tags":
            current = review.current_values(ws, args.example_id)["tags"]
            value = sorted(set(current) | {value}) if args.tag else [t for t in current if t != value]
        changes = review.apply(ws, [review.Edit(args.example_id, field, value, args.reason)],
                               analyst=args.analyst)
    payload = {"changes": [c.to_json() for c in changes]}
    out.result(payload, "\n".join(f"example {c.example_id}: {c.field} {c.old!r} -> {c.new!r} "
                                  f"(log row {c.seq})" for c in changes) or "nothing changed")


def _label_change(args) -> tuple[str, Any]:
    if args.flip:
        return "flipped", None  # resolved below: flipping toggles the current state
    for attr, field in (("set_label", "label"), ("category", "category"), ("note", "note")):
        if getattr(args, attr) is not None:
            return field, getattr(args, attr)
    if args.tag is not None or args.untag is not None:
        return "tags", args.tag if args.tag is not None else args.untag
    return "excluded", bool(args.exclude)


def cmd_undo_redo(args, out: Output) -> None:
    from workstation import review

    step = review.undo if args.command == "undo" else review.redo
    with open_workspace(args) as ws:
        change = step(ws, analyst=args.analyst)
    if change is None:
        raise WorkstationError(f"nothing to {args.command}")
    out.result({"change": change.to_json()},
               f"{args.command}: example {change.example_id} {change.field} "
               f"{change.old!r} -> {change.new!r} (log row {change.seq})")


def cmd_log(args, out: Output) -> None:
    from workstation import review

    with open_workspace(args, read_only=True) as ws:
        items = review.entries(ws, example_id=args.example, limit=args.limit)
    text = "\n".join(f"{e['seq']:>5} {e['time'][:19]} {e['analyst']}: example {e['example_id']} "
                     f"{e['field']} {e['old']!r} -> {e['new']!r} [{e['action']}] {e['reason']}"
                     for e in items) or "the review log is empty"
    out.result({"entries": items}, text)


def cmd_export(args, out: Output) -> None:
    from workstation.datasets import export_dataset

    with open_workspace(args, read_only=True) as ws:
        report = export_dataset(ws, args.dataset, args.format, args.out,
                                reviewed_only=args.reviewed_only,
                                include_excluded=args.include_excluded, progress=out.progress())
    payload = {"path": str(report.path), "manifest": str(report.manifest_path),
               "rows": report.rows, "sha256": report.sha256}
    out.result(payload, f"wrote {report.rows} rows to {report.path} "
                        f"(manifest {report.manifest_path})")


def cmd_verify(args, out: Output) -> None:
    from workstation.verify import verify_workspace

    with open_workspace(args, read_only=True) as ws:
        report = verify_workspace(ws)
    out.result(report.to_json(), "ok: " + ", ".join(f"{v} {k.replace('_', ' ')}"
                                                    for k, v in report.checked.items())
               if report.ok else "\n".join(f"FAILED: {f}" for f in report.failures))
    if not report.ok:
        _exit_failed(f"verification failed: {report.failures[0]}")


def cmd_content_hash(args, out: Output) -> None:
    from workstation.verify import content_hash

    with open_workspace(args, read_only=True) as ws:
        digest = content_hash(ws)
    out.result({"content_hash": digest}, digest)


def cmd_encoder_prepare(args, out: Output) -> None:
    from workstation.encoder import get_encoder, prepare_encoder

    path = prepare_encoder(progress=out.progress())
    encoder = get_encoder()
    out.result({"path": str(path), "encoder": encoder.id, "dim": encoder.dim},
               f"encoder {encoder.id} ready at {path}")


def cmd_release(args, out: Output) -> None:
    from workstation import releases

    with open_workspace(args) as ws:
        report = _regression_report(ws, args)
        gate = (report or {}).get("gate") or {}
        if gate.get("pass") is False and not args.force:
            raise WorkstationError(
                f"release of {args.version} refused by the regression gate: "
                + "; ".join(gate.get("reasons") or ["gate failed"])
                + " (see `workstation compare`; --force REASON releases anyway, recorded)")
        rel = releases.release(ws, args.version, approver=args.analyst, regression_report=report,
                               notes=args.notes or "", force=bool(args.force),
                               force_reason=args.force or "")
    payload = {"release_id": rel.id, "model": rel.model, "version": rel.version,
               "sha256": rel.sha256, "key_id": rel.key_id, "gate": (report or {}).get("gate")}
    out.result(payload, f"released {rel.ref} as release {rel.id} "
                        f"(signed with key {rel.key_id})")


def _regression_report(ws, args) -> dict | None:
    """The regression gate's report for this release (None for a first version)."""
    from workstation.regression import gate_report_for_release

    return gate_report_for_release(ws, args.version, progress=None)


def cmd_compare(args, out: Output) -> None:
    from workstation.regression import compare

    with open_workspace(args) as ws:
        report = compare(ws, args.candidate, args.baseline, datasets=args.dataset,
                         progress=out.progress(), tolerance=args.tolerance, budget=args.budget)
    payload = report.to_json()
    gate = payload["gate"]
    lines = [f"{payload['candidate']} vs {payload['baseline']}: fixed {payload['fixed']}, "
             f"broken {payload['broken']}, unchanged {payload['unchanged']}",
             f"gate: {'PASS' if gate['pass'] else 'FAIL'}"]
    lines += [f"  - {reason}" for reason in gate.get("reasons", [])]
    out.result(payload, "\n".join(lines))


def cmd_rollback(args, out: Output) -> None:
    from workstation import releases

    with open_workspace(args) as ws:
        rel = releases.rollback(ws, args.model, actor=args.analyst, reason=args.reason or "")
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
        _exit_failed(f"release does not verify: {result.reasons[0]}")


def cmd_key(args, out: Output) -> None:
    from workstation import releases

    with open_workspace(args, read_only=args.key_command != "import") as ws:
        if args.key_command == "import":
            key = releases.import_key(ws, args.path, actor=args.analyst)
            out.result(key.to_json(), f"imported key {key.key_id}; it signs new releases")
            return
        if args.key_command == "export-public":
            path = releases.export_public_key(ws, args.path)
        else:
            path = releases.export_private_key(ws, args.path)
    out.result({"path": str(path)}, f"wrote {path}")


def cmd_train(args, out: Output) -> None:
    from workstation.training import train

    params = dict(_param(p) for p in args.param or [])
    with open_workspace(args) as ws:
        result = train(ws, args.dataset, args.name, parent=args.parent, seed=args.seed,
                       params=params or None, progress=out.progress(), analyst=args.analyst)
    payload = result.to_json()
    headline = {k: v for k, v in result.metrics.items() if k.startswith("heldout_")
                and isinstance(v, (int, float))}
    out.result(payload, f"trained {result.version.ref} on '{args.dataset}': " +
               ", ".join(f"{k} {_fmt(v)}" for k, v in headline.items()))


def cmd_patch(args, out: Output) -> None:
    from workstation.patching import create_patch

    if not args.examples and args.findings is None:
        raise UsageError("patch needs --examples IDS or --findings RUN")
    with open_workspace(args) as ws:
        result = create_patch(ws, args.model, example_ids=_ids(args.examples),
                              finding_run=args.findings, finding_ids=_ids(args.finding_ids),
                              budget=args.budget, strength=args.strength,
                              protected=args.protected, analyst=args.analyst,
                              notes=args.notes or "", progress=out.progress())
    payload = result.to_json()
    m = payload["metrics"]
    lines = [f"patched {payload['model']}@{payload['version']} (patch {m.get('patch_id')}): "
             f"{m.get('kernels_kept')} kernels kept, {m.get('kernels_refused')} refused; "
             f"protected loss at most {_fmt(m.get('protected_loss_max'))} "
             f"(budget {_fmt(m.get('budget'))})"]
    lines += [f"  refused: {r}" for r in m.get("refused") or []]
    out.result(payload, "\n".join(lines))


def _ids(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UsageError(f"expected comma-separated example ids, not '{text}'") from None


def cmd_unpatch(args, out: Output) -> None:
    from workstation.patching import remove_patch

    with open_workspace(args) as ws:
        result = remove_patch(ws, args.model, args.patch, analyst=args.analyst)
    payload = result.to_json()
    out.result(payload, f"removed patch {args.patch}: {payload['model']}@{payload['version']} "
                        f"({payload['metrics'].get('kernels_remaining')} kernels remain)")


def cmd_patches(args, out: Output) -> None:
    from workstation.patching import list_patches

    with open_workspace(args, read_only=True) as ws:
        items = list_patches(ws, args.model)
    out.result({"patches": items}, "\n".join(
        f"{p.get('id')}: {len(p.get('kernels') or []) or p.get('kernel_count', '')} kernels, "
        f"made in {p.get('created_in')} by {p.get('created_by')}" for p in items)
        or "no patches on this version")


def cmd_oracle(args, out: Output) -> None:
    from workstation.models.registry import resolve
    from workstation.oracle import Policy, SafetyOracle, check_queries, read_queries

    policy = Policy(block_below=args.block_below, max_uncertainty=args.max_uncertainty,
                    max_coverage=args.max_coverage)
    items = read_queries(args.input)
    with open_workspace(args) as ws:
        # Every input is checked before the oracle is built, which records
        # pending coverage runs in the workspace: a refused query writes nothing.
        version = resolve(ws, args.model)
        check_queries(items, version.input_kind, version.manifest["input"].get("obs_dim"))
        oracle = SafetyOracle.from_workspace(ws, args.model, policy=policy)
    if args.save_bundle:
        oracle.save(args.save_bundle)
    out.done()
    for start in range(0, len(items), 256):  # answers stream out in batches
        for answer in oracle.query(items[start:start + 256], first=start + 1):
            print(json.dumps(answer, ensure_ascii=False))
        sys.stdout.flush()


def cmd_gui(args, out: Output) -> None:
    from workstation.ui.app import run_gui

    path = args.workspace or os.environ.get("WORKSTATION_WORKSPACE")
    raise SystemExit(run_gui(path))


def cmd_demo(args, out: Output) -> None:
    from workstation.demo import build_demo, default_demo_path

    path = args.workspace or os.environ.get("WORKSTATION_WORKSPACE") or default_demo_path()
    report = build_demo(path, progress=out.progress(), overwrite=args.overwrite)
    out.result(report.to_json(), "demo workspace ready at " + str(report.path) + ": " +
               ", ".join(report.models) + (("; " + "; ".join(report.notes)) if report.notes else ""))
    if not args.no_gui:
        from workstation.ui.app import run_gui

        raise SystemExit(run_gui(str(report.path)))


def _exit_failed(message: str) -> None:
    """A check that ran and found a problem: its report is on stdout; one line on stderr."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_ERROR)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# -- parser ----------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--workspace", "-w", metavar="PATH", default=argparse.SUPPRESS,
                        help="the workspace file (default: $WORKSTATION_WORKSPACE)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print exactly one JSON object on stdout")
    common.add_argument("--read-only", action="store_true", default=argparse.SUPPRESS,
                        help="open the workspace read-only")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    common.add_argument("--analyst", default=argparse.SUPPRESS,
                        help="who is acting (default: $WORKSTATION_ANALYST or the login name)")

    parser = _Parser(prog="workstation", parents=[common],
                     description="Audit, repair and release reward models, offline.")
    parser.add_argument("--version", action="version", version=f"workstation {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, func: Callable, help: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, parents=[common], description=help)
        p.set_defaults(func=func)
        return p

    p = add("import", cmd_import, "import a dataset file")
    p.add_argument("kind", choices=["pairs", "labels", "demos"])
    p.add_argument("file")
    p.add_argument("--name", required=True, help="dataset name (unique in the workspace)")
    p.add_argument("--format", help="source format (default: detected)")

    add("datasets", cmd_datasets, "list the imported datasets")

    model = sub.add_parser("model", help="register and list reward models", parents=[common])
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", parser_class=_Parser,
                                     required=True)
    p = add("add", cmd_model_add, "register an ONNX reward model", model_sub)
    p.add_argument("file")
    p.add_argument("--name", required=True)
    p.add_argument("--input", required=True, choices=["text-embedding", "text-tokens", "observation"])
    p.add_argument("--output", help="the ONNX output to use (default: the probability or only output)")
    p.add_argument("--column", type=int, help="column of that output that scores safe (default: last)")
    p.add_argument("--tokenizer", help="tokenizer.json for text-tokens (default: beside the .onnx)")
    p.add_argument("--parent", help="parent version, NAME@VERSION")
    p.add_argument("--notes", help="free notes kept in the manifest")
    add("list", cmd_model_list, "list registered model versions", model_sub)

    p = add("audit", cmd_audit, "score a dataset with a model version and store the run")
    p.add_argument("--model", required=True, help="NAME or NAME@VERSION")
    p.add_argument("--dataset", required=True)
    p.add_argument("--threshold", type=float, help="decision threshold (default: 0.5 on probabilities)")

    add("runs", cmd_runs, "list audit runs")

    p = add("failures", cmd_failures, "list an audit run's failure cases, most confident first")
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)

    p = add("probe", cmd_probe, "run the automated probe suite on a dataset")
    p.add_argument("--model", required=True, help="NAME or NAME@VERSION")
    p.add_argument("--dataset", required=True)
    p.add_argument("--probe", action="append", metavar="NAME",
                   help="run only this probe (repeatable; default: all that apply)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a probe parameter, e.g. sample=500 (repeatable)")
    p.add_argument("--seed", type=int, default=0)

    add("probes", cmd_probes, "list the registered probes")

    p = add("label", cmd_label, "change an example's label, category, tags, note or exclusion")
    p.add_argument("example_id", type=int)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--flip", action="store_true", help="swap chosen and rejected (pairs)")
    what.add_argument("--set-label", metavar="L", help="safe or unsafe (labeled responses)")
    what.add_argument("--category", metavar="C")
    what.add_argument("--tag", metavar="T", help="add a tag")
    what.add_argument("--untag", metavar="T", help="remove a tag")
    what.add_argument("--note", metavar="N")
    what.add_argument("--exclude", action="store_true", help="leave out of audits, training, export")
    what.add_argument("--restore", action="store_true", help="undo an exclusion")
    p.add_argument("--reason", required=True, help="why (kept in the review log)")

    add("undo", cmd_undo_redo, "undo the newest review change (logged, never deleted)")
    add("redo", cmd_undo_redo, "redo the newest undone review change")

    p = add("log", cmd_log, "show the review log")
    p.add_argument("--example", type=int, help="only this example's history")
    p.add_argument("--limit", type=int, help="only the newest N entries")

    p = add("export", cmd_export, "export a dataset as reviewed, with a manifest")
    p.add_argument("--dataset", required=True)
    p.add_argument("--format", required=True, choices=["jsonl", "parquet", "csv"])
    p.add_argument("out")
    p.add_argument("--reviewed-only", action="store_true", help="only examples with review edits")
    p.add_argument("--include-excluded", action="store_true", help="keep excluded examples")

    add("verify", cmd_verify, "recompute the review log chain and stored artifact hashes")
    add("content-hash", cmd_content_hash,
        "print a hash of the workspace's logical content (every table's rows, in order)")

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

    key = sub.add_parser("key", help="the workspace's signing key", parents=[common])
    key_sub = key.add_subparsers(dest="key_command", metavar="ACTION", parser_class=_Parser,
                                 required=True)
    for name, help_text in (("export-public", "write the public key (PEM)"),
                            ("export-private", "write the private key (PEM, owner-only)"),
                            ("import", "make a private key (PEM) this workspace's signing key")):
        add(name, cmd_key, help_text, key_sub).add_argument("path")

    p = add("train", cmd_train, "train a reward model on a dataset as reviewed (PyTorch, CPU)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--name", required=True, help="model name; a new version if it exists")
    p.add_argument("--from", dest="parent", metavar="MODEL@V",
                   help="the version this retrains (lineage; its hyper-parameters are reused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a hyper-parameter, e.g. epochs=50 (repeatable)")

    p = add("patch", cmd_patch, "suppress confirmed flaws with a local patch (a new version)")
    p.add_argument("--model", required=True, metavar="MODEL@V")
    p.add_argument("--examples", metavar="IDS", help="comma-separated example ids")
    p.add_argument("--findings", type=int, metavar="RUN", help="the failures of an audit or probe run")
    p.add_argument("--finding-ids", metavar="IDS", help="only these findings of --findings")
    p.add_argument("--budget", type=float, default=0.10,
                   help="largest reward a protected example may lose (default 0.10)")
    p.add_argument("--strength", type=float, help="kernel strength (default: chosen per rule)")
    p.add_argument("--protected", metavar="DATASET",
                   help="protect this dataset's examples (default: the flaws' datasets)")
    p.add_argument("--notes")

    p = add("unpatch", cmd_unpatch, "remove a patch ('unlearn' a correction) as a new version")
    p.add_argument("--model", required=True, metavar="MODEL@V")
    p.add_argument("--patch", required=True, metavar="ID")

    p = add("patches", cmd_patches, "list the patches a version carries")
    p.add_argument("--model", required=True, metavar="MODEL@V")

    p = add("oracle", cmd_oracle, "answer safety-oracle queries (JSON lines in, JSON lines out)")
    p.add_argument("--model", required=True, metavar="MODEL@V")
    p.add_argument("input", nargs="?", default="-", metavar="FILE|-",
                   help="JSON lines ({\"prompt\", \"response\"}, {\"chosen\", \"rejected\"} or "
                        "{\"obs\": [...]}) or plain text lines; - or nothing for stdin")
    p.add_argument("--block-below", type=float,
                   help="block below this score (default: the model's threshold)")
    p.add_argument("--max-uncertainty", type=float, default=0.25,
                   help="escalate above this uncertainty (default 0.25)")
    p.add_argument("--max-coverage", type=float, default=0.8,
                   help="escalate above this coverage value, i.e. too little audited nearby "
                        "(default 0.8)")
    p.add_argument("--save-bundle", metavar="FOLDER",
                   help="also write a self-contained oracle bundle (no workspace needed)")

    add("gui", cmd_gui, "open the desktop workstation (the default with no command)")

    p = add("demo", cmd_demo, "build a demo workspace (shipped data, a first model, audits) "
                              "and open it")
    p.add_argument("--no-gui", action="store_true", help="build it, do not open the window")
    p.add_argument("--overwrite", action="store_true", help="replace the file if it exists")

    enc = sub.add_parser("encoder", help="the text encoder", parents=[common])
    enc_sub = enc.add_subparsers(dest="encoder_command", metavar="ACTION", parser_class=_Parser,
                                 required=True)
    add("prepare", cmd_encoder_prepare, "convert the bundled sentence encoder to ONNX (once)",
        enc_sub)
    return parser


DEFAULTS = {"workspace": None, "json": False, "read_only": False, "debug": False, "analyst": None}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_json = "--json" in argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        for key, value in DEFAULTS.items():
            if not hasattr(args, key):
                setattr(args, key, value)
        if getattr(args, "command", None) is None:
            from workstation.ui.app import run_gui

            return run_gui(args.workspace or os.environ.get("WORKSTATION_WORKSPACE"))
        out = Output(args.json)
        try:
            args.func(args, out)
        finally:
            out.done()
        return 0
    except UsageError as exc:
        return _fail(exc, EXIT_USAGE, debug, as_json)
    except WorkstationError as exc:
        return _fail(exc, EXIT_ERROR, debug, as_json)
    except KeyboardInterrupt:
        print("\ninterrupted; nothing was changed", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # an unexpected fault: still one line unless --debug
        if debug:
            raise
        return _fail(WorkstationError(f"internal error: {type(exc).__name__}: {exc}"),
                     EXIT_ERROR, debug, as_json)


def _fail(exc: Exception, code: int, debug: bool, as_json: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"ok": False, "error": message}, ensure_ascii=False))
    return code
