"""Datasets in and out, and the workspace's own checks: import, datasets, export, verify,
content-hash, encoder prepare."""

from __future__ import annotations


from workstation.cli.common import (Commands, Output, exit_failed, open_workspace)


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
    encoder = get_encoder()
    out.result({"path": str(path), "encoder": encoder.id, "dim": encoder.dim},
               f"encoder {encoder.id} ready at {path}")


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
    add("prepare", cmd_encoder_prepare, "convert the bundled sentence encoder to ONNX (once)",
        enc_sub)
