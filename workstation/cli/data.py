"""Datasets in and out, and the workspace's own checks: import, datasets, export, verify,
content-hash, encoder prepare."""

from __future__ import annotations


from workstation.cli.common import (Commands, Output, exit_failed, open_workspace,
                                    workspace_path)


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
        exit_failed(f"verification failed: {report.failures[0]}")


def cmd_content_hash(args, out: Output) -> None:
    from workstation.verify import content_hash

    with open_workspace(args, read_only=True) as ws:
        digest = content_hash(ws)
    out.result({"content_hash": digest}, digest)


def cmd_encoder_prepare(args, out: Output) -> None:
    from workstation.encoder import get_encoder, prepare_encoder

    path = prepare_encoder(progress=out.progress())
    encoder = get_encoder(variant="fp32")
    payload = {"path": str(path), "encoder": encoder.id, "dim": encoder.dim}
    lines = [f"encoder {encoder.id} ready at {path}"]
    if args.int8:
        payload["int8"] = _prepare_int8(args, out, lines)
    out.result(payload, "\n".join(lines))


def _prepare_int8(args, out: Output, lines: list[str]) -> dict:
    """Build the int8 copy; its parity on the workspace's texts when one is given."""
    from workstation import encoder_variants as ev
    from workstation.encoder import get_encoder, prepare_int8

    path, record = prepare_int8(out.progress())
    int8 = get_encoder(variant="int8")
    info = {"path": str(path), "encoder": int8.id, "size_bytes": record["onnx_size_bytes"],
            "fp32_size_bytes": record["fp32_size_bytes"], "parity": None}
    lines.append(f"int8 encoder {int8.id} ready at {path} ({record['onnx_size_bytes']:,} "
                 f"bytes; fp32 {record['fp32_size_bytes']:,})")
    if workspace_path(args):
        with open_workspace(args, read_only=True) as ws:
            parity = ev.workspace_parity(ws, args.sample, out.progress())
        info["parity"] = parity.to_json()
        lines.append(f"parity: {parity.describe()}")
    else:
        lines.append("parity: give --workspace to measure it on that workspace's texts")
    return info


def cmd_encoder_use(args, out: Output) -> None:
    from workstation import encoder_variants as ev

    with open_workspace(args) as ws:
        current = ev.workspace_variant(ws)
        parity = None
        if args.variant == "int8" and current != "int8":
            parity = ev.workspace_parity(ws, args.sample, out.progress())
            if not _confirmed(args, out, parity.describe()):
                out.result({"switched": False, "variant": current, "requested": args.variant,
                            "parity": parity.to_json()},
                           f"{parity.describe()}\nnot switched: the workspace still encodes "
                           f"with {current}; confirm with --yes")
                return
        choice = ev.select_variant(ws, args.variant, out.progress())
    payload = {"switched": choice.changed, **choice.to_json(),
               "parity": parity.to_json() if parity else None}
    lines = ([parity.describe()] if parity else []) + [
        f"the workspace encodes with {choice.variant} ({choice.encoder_id})"
        + ("" if choice.changed else " already")]
    if choice.other_encoder_models:
        lines.append(f"registered for the other encoder, so they will refuse to score until "
                     f"you switch back: {', '.join(choice.other_encoder_models)}")
    out.result(payload, "\n".join(lines))


def _confirmed(args, out: Output, parity_text: str) -> bool:
    """--yes, or a yes typed at a terminal after seeing the parity."""
    import sys

    if args.yes:
        return True
    if out.as_json or not sys.stdin.isatty():
        return False
    print(parity_text)
    return input("switch this workspace to the int8 encoder? [y/N] ").strip().lower() in (
        "y", "yes")


def register(cli: Commands) -> None:
    add = cli.add
    p = add("import", cmd_import, "import a dataset file")
    p.add_argument("kind", choices=["pairs", "labels", "demos"])
    p.add_argument("file")
    p.add_argument("--name", required=True, help="dataset name (unique in the workspace)")
    p.add_argument("--format", help="source format (default: detected)")

    add("datasets", cmd_datasets, "list the imported datasets")

    p = add("export", cmd_export, "export a dataset as reviewed, with a manifest")
    p.add_argument("--dataset", required=True)
    p.add_argument("--format", required=True, choices=["jsonl", "parquet", "csv"])
    p.add_argument("out")
    p.add_argument("--reviewed-only", action="store_true", help="only examples with review edits")
    p.add_argument("--include-excluded", action="store_true", help="keep excluded examples")

    add("verify", cmd_verify, "recompute the review log chain and stored artifact hashes")
    add("content-hash", cmd_content_hash,
        "print a hash of the workspace's logical content (every table's rows, in order)")

    enc_sub = cli.group("encoder", "the text encoder")
    p = add("prepare", cmd_encoder_prepare,
            "convert the bundled sentence encoder to ONNX (once)", enc_sub)
    p.add_argument("--int8", action="store_true",
                   help="also build its int8 copy and report its parity with fp32 (on the "
                        "workspace's texts with --workspace)")
    p.add_argument("--sample", type=int, default=1000,
                   help="texts of the workspace the parity is measured on (default 1000)")
    p = add("use", cmd_encoder_use, "choose the encoder this workspace encodes with", enc_sub)
    p.add_argument("variant", choices=["fp32", "int8"])
    p.add_argument("--yes", action="store_true",
                   help="switch without asking (the parity is printed either way)")
    p.add_argument("--sample", type=int, default=1000,
                   help="texts of the workspace the parity is measured on (default 1000)")
