"""Reward models: register, list, train, patch and unpatch."""

from __future__ import annotations


from workstation.cli.common import (Commands, Output, UsageError, fmt, ids,
                                    open_workspace, param)


def cmd_model_add(args, out: Output) -> None:
    from workstation.models import add_model

    with open_workspace(args) as ws:
        version = add_model(ws, args.file, args.name, args.input, output=args.output,
                            column=args.column, parent=args.parent, notes=args.notes or "",
                            tokenizer=args.tokenizer, text_format=args.text_format,
                            max_length=args.max_length, tokenizer_config=args.tokenizer_config)
    payload = {"model": version.model, "version": version.version, "sha256": version.sha256,
               "input_kind": version.input_kind, "manifest": version.manifest,
               **_text_input(version.manifest)}
    tokens = f", {_text_input_words(version.manifest)}" if version.input_kind == "text-tokens" \
        else ""
    out.result(payload, f"registered {version.model}@{version.version} "
                        f"({version.input_kind}{tokens}, sha256 {version.sha256[:12]}…)")


def _text_input(manifest: dict) -> dict:
    """How texts reach a tokens model (``text_format``, ``max_length``,
    ``pooling``); empty for other models."""
    info = manifest.get("input") or {}
    if manifest.get("input_kind") != "text-tokens":
        return {}
    return {"text_format": info.get("text_format", "pair"), "max_length": info.get("max_length"),
            "pooling": info.get("pooling")}


def _text_input_words(manifest: dict) -> str:
    facts = _text_input(manifest)
    words = f"{facts['text_format']}, max {facts['max_length']} tokens"
    return words + (f", {facts['pooling']} pooling" if facts["pooling"] else "")


def cmd_model_list(args, out: Output) -> None:
    from workstation.models import list_models

    with open_workspace(args, read_only=True) as ws:
        versions = list_models(ws)
    items = [{"model": v.model, "version": v.version, "sha256": v.sha256,
              "input_kind": v.input_kind, "parent_id": v.parent_id, "created_by": v.created_by,
              "created_at": v.created_at, "manifest": v.manifest, **_text_input(v.manifest)}
             for v in versions]
    text = "\n".join(f"{v.model}@{v.version:<4} {v.input_kind:<15} {v.sha256[:12]}  "
                     f"{v.created_at[:19]} by {v.created_by}" +
                     (f"  ({_text_input_words(v.manifest)})" if v.input_kind == "text-tokens"
                      else "") + _parity_note(v.manifest) for v in versions) \
        or "no models yet: register one with `workstation model add`"
    out.result({"models": items}, text)


def _parity_note(manifest: dict) -> str:
    """The int8 parity of a quantized version, in a few words (else nothing)."""
    parity = (manifest.get("quantization") or {}).get("parity")
    if not parity:
        return ""
    deltas = ", ".join(f"{name} {d['delta']:+.4f}" for name, d in parity["metrics"].items())
    rho = parity.get("spearman")
    return (f"  int8 of {manifest.get('parent')}: Spearman "
            f"{'n/a' if rho is None else f'{rho:.4f}'} on '{parity['dataset']}'"
            + (f", {deltas}" if deltas else ""))


def cmd_model_quantize(args, out: Output) -> None:
    from workstation.models.quantize import quantize_model

    with open_workspace(args) as ws:
        result = quantize_model(ws, args.model, dataset=args.dataset, notes=args.notes or "",
                                progress=out.progress())
    q = result.quantization
    p = q["parity"]
    lines = [f"registered {result.version.ref}: int8 of {result.parent.ref} "
             f"({q['parent_size_bytes']:,} -> {q['size_bytes']:,} bytes)",
             f"  parity on '{p['dataset']}' ({p['n_scores']:,} scores; audits "
             f"{p['parent_audit_run']} and {p['audit_run']}): Spearman "
             f"{fmt(p['spearman'])}, largest score difference {p['max_abs_score_diff']:.4g}"]
    lines += [f"  {name}: {fmt(d['parent'])} -> {fmt(d['quantized'])} ({d['delta']:+.4f})"
              for name, d in p["metrics"].items()]
    out.result(result.to_json(), "\n".join(lines))


def cmd_train(args, out: Output) -> None:
    from workstation.training import train

    params = dict(param(p) for p in args.param or [])
    with open_workspace(args) as ws:
        result = train(ws, args.dataset, args.name, parent=args.parent, seed=args.seed,
                       params=params or None, progress=out.progress(),
                       head_only=args.head_only,
                       new_head_on_embeddings=args.new_head_on_embeddings)
    payload = result.to_json()
    headline = {k: v for k, v in result.metrics.items() if k.startswith("heldout_")
                and isinstance(v, (int, float))}
    what = "retrained the head of" if payload["method"] == "head" else "trained"
    out.result(payload, f"{what} {result.version.ref} on '{args.dataset}': " +
               ", ".join(f"{k} {fmt(v)}" for k, v in headline.items()))


def cmd_patch(args, out: Output) -> None:
    from workstation.patching import create_patch

    if not args.examples and args.findings is None:
        raise UsageError("patch needs --examples IDS or --findings RUN")
    with open_workspace(args) as ws:
        result = create_patch(ws, args.model, example_ids=ids(args.examples),
                              finding_run=args.findings, finding_ids=ids(args.finding_ids),
                              budget=args.budget, strength=args.strength,
                              protected=args.protected,
                              notes=args.notes or "", progress=out.progress())
    payload = result.to_json()
    m = payload["metrics"]
    lines = [f"patched {payload['model']}@{payload['version']} (patch {m.get('patch_id')}): "
             f"{m.get('kernels_kept')} kernels kept, {m.get('kernels_refused')} refused; "
             f"protected loss at most {fmt(m.get('protected_loss_max'))} "
             f"(budget {fmt(m.get('budget'))})"]
    lines += [f"  refused: {r}" for r in m.get("refused") or []]
    out.result(payload, "\n".join(lines))


def cmd_unpatch(args, out: Output) -> None:
    from workstation.patching import remove_patch

    with open_workspace(args) as ws:
        result = remove_patch(ws, args.model, args.patch)
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


def register(cli: Commands) -> None:
    add = cli.add
    model_sub = cli.group("model", "register and list reward models")
    p = add("add", cmd_model_add, "register an ONNX reward model", model_sub)
    p.add_argument("file")
    p.add_argument("--name", required=True)
    p.add_argument("--input", required=True, choices=["text-embedding", "text-tokens", "observation"])
    p.add_argument("--output", help="the ONNX output to use (default: the probability or only output)")
    p.add_argument("--column", type=int, help="column of that output that scores safe (default: last)")
    p.add_argument("--tokenizer", help="tokenizer.json for text-tokens (default: beside the .onnx)")
    p.add_argument("--text-format", choices=["pair", "response", "chat-template"],
                   help="text-tokens: what the tokenizer encodes: prompt and response as a pair "
                        "(default), the response alone, or the chat template")
    p.add_argument("--max-length", type=int, metavar="N",
                   help="text-tokens: cut texts to N tokens (default: the tokenizer's own "
                        "truncation length, or the graph's fixed length, else 512)")
    p.add_argument("--tokenizer-config", metavar="PATH",
                   help="tokenizer_config.json holding the chat template "
                        "(default: beside the .onnx)")
    p.add_argument("--parent", help="parent version, NAME@VERSION")
    p.add_argument("--notes", help="free notes kept in the manifest")
    add("list", cmd_model_list, "list registered model versions", model_sub)
    p = add("quantize", cmd_model_quantize,
            "make an int8 copy of a version (a new version) and report its parity", model_sub)
    p.add_argument("model", metavar="MODEL@V")
    p.add_argument("--dataset", help="measure parity on this dataset (default: the dataset of "
                                     "the version's latest audit)")
    p.add_argument("--notes", help="free notes kept in the manifest")

    p = add("train", cmd_train, "train a reward model on a dataset as reviewed (PyTorch, CPU)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--name", required=True, help="model name; a new version if it exists")
    p.add_argument("--from", dest="parent", metavar="MODEL@V",
                   help="the version this retrains (lineage; its hyper-parameters are reused)")
    p.add_argument("--seed", type=int, default=0)
    how = p.add_mutually_exclusive_group()
    how.add_argument("--head-only", action="store_true",
                     help="keep the --from model's graph and fit only its scoring head "
                          "(the default for a model registered with `model add`)")
    how.add_argument("--new-head-on-embeddings", action="store_true",
                     help="train a new model on the workspace's text embeddings instead of "
                          "retraining the --from model's own head")
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
