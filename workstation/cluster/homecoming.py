"""``scale import``: a scale run's results as an audit run in a workspace.

Checks first, nothing written until they pass: the results finished
(``_SUCCESS``) with every input row index present exactly once; their
bundle.json is the one the manifest names (sha256) and its signature
verifies; the key that signed it is trusted in this workspace and not
revoked (``allow_untrusted`` records the run as untrusted instead of
refusing); the bundle's model is the registered version (same ONNX sha256,
input kind and score type); each input file is where the manifest (or
``inputs_dir``) says and has the sha256 the run read.

Then, in one transaction:

* the examples: a new dataset is imported from the input files with the
  importers' rules (bad rows skipped and counted, as the run counted them);
  with ``failures_only`` N, only the N most confident failures and a
  uniform sample of N other rows (seeded), for corpora too large for a
  laptop. The name of an existing dataset uses its examples instead (its
  sources must be the run's inputs);
* the audit run: each result row is matched to its example by (file
  sha256, row index) and judged against the current review state exactly
  as a local audit judges it (a flipped pair swaps its sides' scores), with
  the held-out split of every example (``audit_results.split``) and, for a
  tokens model, the texts the run cut to its maximum length. With
  ``failures_only``, the run's metrics are the cluster's, over every row,
  kept as such (``membership.metrics_cover`` says so). ``params.ran_on``
  says where it ran (Ray, the cluster, the actors) and ``params.scale`` the
  results folder and bundle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from workstation.cluster import bundle as bundles
from workstation.cluster import inputs as corpus
from workstation.cluster import results
from workstation.errors import WorkstationError
from workstation.hashing import sha256_bytes, sha256_file
from workstation.progress import Progress

SAMPLE_SEED = 0


@dataclass
class Homecoming:
    """What ``import_results`` did."""

    run: Any  # AuditRun
    dataset: str
    imported: int | None  # examples imported (None: an existing dataset was used)
    selection: dict[str, Any]
    unmatched: int  # examples of the dataset without a scored row

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run.id, "dataset": self.dataset, "imported": self.imported,
                "selection": self.selection, "unmatched": self.unmatched,
                "failures": self.run.n_failures, "metrics": self.run.metrics,
                "ran_on": self.run.params.get("ran_on"), "run": self.run.to_json()}


def import_results(ws: Any, results_dir: str | Path, dataset: str, model: str, *,
                   failures_only: int | None = None, inputs_dir: str | Path | None = None,
                   analyst: str | None = None, progress: Progress | None = None,
                   seed: int = 0, allow_untrusted: bool = False) -> Homecoming:
    """Bring a scale run home as an audit run (see the module docstring)."""
    from workstation.models.registry import resolve

    progress = progress or Progress()
    folder = Path(results_dir)
    manifest = results.read_manifest(folder)
    bundle = _checked_bundle(folder, manifest)
    signer = _bundle_signer(ws, bundle, allow_untrusted)
    version = resolve(ws, model)
    _check_model(version, bundle, manifest)
    if failures_only is not None and failures_only < 1:
        raise WorkstationError("--failures-only takes a number of failures, at least 1")
    existing = ws.execute("SELECT id FROM datasets WHERE name = ?", [dataset]).fetchall()
    if existing and failures_only is not None:
        raise WorkstationError(f"dataset {dataset!r} exists; --failures-only imports a new "
                               f"dataset (choose a new name)")
    progress.stage_start("checking input files", len(manifest["inputs"]))
    files = _located_inputs(manifest, inputs_dir, progress) if not existing else {}
    with ws.transaction():
        selection = {"kind": "all", "rows": manifest["rows"]}
        imported = None
        if existing:
            dataset_id = int(existing[0][0])
            _check_sources(ws, dataset_id, manifest)
        else:
            chosen = None
            if failures_only is not None:
                chosen, selection = _select(folder, manifest, failures_only, seed)
            dataset_id, imported = _import_examples(ws, manifest, files, dataset, chosen,
                                                    progress)
        run, unmatched = _record(ws, version, folder, manifest, dataset_id, selection,
                                 analyst, seed, signer)
    return Homecoming(run, dataset, imported, selection, unmatched)


# -- checks ------------------------------------------------------------------------------

def _checked_bundle(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    path = folder / results.BUNDLE_COPY
    if not path.is_file():
        raise WorkstationError(f"{folder} has no {results.BUNDLE_COPY}: not a complete results "
                               f"folder")
    data = path.read_bytes()
    if sha256_bytes(data) != manifest["bundle"]["sha256"]:
        raise WorkstationError(f"{path} is not the bundle the run used (sha256 differs); "
                               f"refused")
    statement = json.loads(data)
    bundles.check_signature(statement)
    return statement


def _bundle_signer(ws: Any, bundle: dict[str, Any], allow_untrusted: bool) -> dict[str, Any]:
    """Who signed the bundle, and whether this workspace trusts that key: a
    valid signature by a stranger's key proves nothing about who made it."""
    from workstation import trust

    key_id = bundle["signature"]["key_id"]
    who = f"{bundle.get('created_by') or 'an unnamed analyst'} (key {key_id})"
    key = trust.get_key(ws, key_id)
    if key is not None and not key.active:
        raise WorkstationError(f"the scoring bundle was signed by {who}, revoked in this "
                               f"workspace at {key.revoked_at}: {key.revoke_reason}; refused")
    if key is None and not allow_untrusted:
        raise WorkstationError(
            f"the scoring bundle was signed by {who}, who is not trusted in this workspace: "
            f"an approver adds the key with `workstation trust add FILE.pem --name NAME "
            f"--role reviewer`, or pass --allow-untrusted to import the run marked untrusted")
    return {"key_id": key_id, "name": key.name if key else bundle.get("created_by"),
            "trusted": key is not None}


def _check_model(version: Any, bundle: dict[str, Any], manifest: dict[str, Any]) -> None:
    if version.sha256 != bundle["model_sha256"]:
        raise WorkstationError(f"the results were scored by {bundle['model']} (model sha256 "
                               f"{bundle['model_sha256'][:12]}), not by {version.ref} "
                               f"({version.sha256[:12]}); refused")
    for key in ("input_kind", "score_type"):
        theirs = bundle.get(key)
        ours = version.input_kind if key == "input_kind" else version.manifest.get(key)
        if theirs != ours:
            raise WorkstationError(f"the bundle read {bundle['model']} with {key} {theirs}; "
                                   f"{version.ref} is registered with {ours}; refused")
    if not manifest.get("complete"):
        bad = [f["path"] for f in manifest["inputs"]
               if not f["row_indexes_complete"] or f["file_error"]]
        raise WorkstationError(f"the results are incomplete (lost, doubled or unread rows in "
                               f"{bad[0] if bad else 'a file'}); run the job again")


def _located_inputs(manifest: dict[str, Any], inputs_dir: str | Path | None,
                    progress: Progress) -> dict[str, Path]:
    """Each input file (by the run's path) where it is now, its sha256 checked."""
    found = {}
    for done, item in enumerate(manifest["inputs"], 1):
        recorded = Path(item["path"])
        path = Path(inputs_dir) / recorded.name if inputs_dir else recorded
        if not path.is_file():
            raise WorkstationError(f"input file {recorded.name} is not at {path}; give "
                                   f"--inputs DIR, the folder that holds the run's input files")
        if sha256_file(path) != item["sha256"]:
            raise WorkstationError(f"{path} is not the file the run scored (sha256 differs); "
                                   f"refused")
        found[item["path"]] = path
        progress.step(done, len(manifest["inputs"]))
    return found


def _check_sources(ws: Any, dataset_id: int, manifest: dict[str, Any]) -> None:
    held = {r[0] for r in ws.execute("SELECT DISTINCT source_sha256 FROM examples "
                                     "WHERE dataset_id = ?", [dataset_id]).fetchall()}
    missing = [f for f in manifest["inputs"] if f["sha256"] not in held]
    if missing:
        raise WorkstationError(f"the dataset does not hold {Path(missing[0]['path']).name}, "
                               f"which the run scored; import into a new dataset instead")


# -- the examples ------------------------------------------------------------------------

def _select(folder: Path, manifest: dict[str, Any], n: int,
            seed: int) -> tuple[dict[str, set[int]], dict[str, Any]]:
    """The n most confident failures (most negative margin; ties by file and
    row) and a uniform sample of n other scored rows (the first n by a seeded
    hash of file and row), chosen in DuckDB over the shards, so that a corpus
    of 100M rows is never held in memory here."""
    import duckdb

    shards = f"read_parquet({_shard_list(folder)})"
    con = duckdb.connect()
    try:
        scored, failed = con.execute(f"SELECT count(*), count(*) FILTER (WHERE NOT passed) "
                                     f"FROM {shards} WHERE error IS NULL").fetchall()[0]
        con.execute(f"CREATE TEMP TABLE worst AS SELECT source_file, row_index FROM {shards} "
                    f"WHERE error IS NULL AND NOT passed "
                    f"ORDER BY margin, source_file, row_index LIMIT {int(n)}")
        sample = con.execute(
            f"SELECT source_file, row_index FROM {shards} s WHERE error IS NULL AND NOT EXISTS "
            f"(SELECT 1 FROM worst w WHERE w.source_file = s.source_file "
            f"AND w.row_index = s.row_index) "
            f"ORDER BY hash(source_file, row_index, {int(seed)}), source_file, row_index "
            f"LIMIT {int(n)}").fetchall()
        worst = con.execute("SELECT source_file, row_index FROM worst").fetchall()
    finally:
        con.close()
    chosen: dict[str, set[int]] = {}
    for source_file, row_index in worst + sample:
        chosen.setdefault(source_file, set()).add(int(row_index))
    selection = {"kind": "failures-only", "rows": manifest["rows"], "scored": int(scored),
                 "failures": int(failed), "most_confident_failures": len(worst),
                 "uniform_sample": len(sample), "sample_seed": seed}
    return chosen, selection


def _shard_list(folder: Path) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'"
                           for p in results.shards(folder)) + "]"


def _import_examples(ws: Any, manifest: dict[str, Any], files: dict[str, Path], name: str,
                     chosen: dict[str, set[int]] | None, progress: Progress) -> tuple[int, int]:
    from workstation.datasets import import_files
    from workstation.datasets.registry import Importer, ReadResult

    form = corpus.FORMATS[manifest["input_format"]]

    def read(path: Path, _progress: Progress) -> ReadResult:
        keep = None if chosen is None else chosen.get(by_path[str(path)], set())
        return ReadResult.lazy(lambda result: _good_rows(path, form, keep, result))
    by_path = {str(p): recorded for recorded, p in files.items()}
    paths = [files[f["path"]] for f in manifest["inputs"]]
    if chosen is not None:  # a file with no chosen row adds nothing
        paths = [p for p in paths if chosen.get(by_path[str(p)])]
    importer = Importer(form.name, form.kind, lambda _: True, read,
                        "the importers' rules, as a scale run read them")
    report = import_files(ws, importer, paths, name, progress)
    return report.dataset_id, report.imported


def _good_rows(path: Path, form: corpus.InputFormat, keep: set[int] | None,
               result: Any) -> Iterator[dict]:
    """The file's rows as the run read them; bad ones counted as skipped."""
    for record in corpus.read_records(path, form):
        if keep is not None and record.index not in keep:
            continue
        if record.row is None:
            result.skipped[record.error] += 1
            continue
        yield record.row
    if keep is not None:
        result.notes.append(f"{path.name}: {len(keep)} of its rows chosen (failures-only)")


# -- the run -----------------------------------------------------------------------------

def _record(ws: Any, version: Any, folder: Path, manifest: dict[str, Any], dataset_id: int,
            selection: dict[str, Any], analyst: str | None, seed: int,
            signer: dict[str, Any]) -> tuple[Any, int]:
    from workstation.audits.run_metrics import run_figures
    from workstation.audits.runs import judge, store_run
    from workstation.review import head_hash
    from workstation.workspace import default_analyst

    head = head_hash(ws)
    result, unmatched = _score_result(ws, version, folder, manifest, dataset_id)
    threshold = manifest["threshold"] if manifest["kind"] != "pairs" else None
    verdicts = judge(result, threshold)
    figures = run_figures(ws, version, result, verdicts, seed)
    if selection["kind"] == "failures-only":
        figures.metrics = {**manifest["metrics"], "computed_on": "cluster"}
        figures.training_metrics = None
        figures.membership = {**figures.membership, "metrics_cover": (
            f"all {manifest['scored']} rows scored on the cluster, labels as in the input "
            f"files (this dataset holds {len(result)} of them: the most confident failures "
            f"and a uniform sample)"), "training_metrics_cover": None}
    params = {"seed": seed, "batch_size": manifest["where"].get("batch_size"),
              "score_type": result.score_type,
              "encoder": version.manifest["input"].get("encoder"), "notes": result.notes,
              "ran_on": manifest["where"],
              "scale": {"results": str(folder.resolve()), "bundle_sha256":
                        manifest["bundle"]["sha256"], "bundle_key_id":
                        manifest["bundle"]["key_id"], "bundle_signer": signer["name"],
                        "bundle_trusted": signer["trusted"], "selection": selection,
                        "seconds": manifest["seconds"], "finished_at": manifest["finished_at"]}}
    run = store_run(ws, version, result, verdicts, head, params, analyst or default_analyst(),
                    figures)
    return run, unmatched


def _score_result(ws: Any, version: Any, folder: Path, manifest: dict[str, Any],
                  dataset_id: int) -> tuple[Any, int]:
    """The results matched to the dataset's current examples, as a ScoreResult."""
    from workstation.models.scoring import ScoreResult

    kind = manifest["kind"]
    truncated = "s.truncated" if _counts_truncation(version, folder) else "NULL"
    files = pa.table({"source_file": [f["path"] for f in manifest["inputs"]],
                      "sha": [f["sha256"] for f in manifest["inputs"]]})
    ws.con.complete()
    ws.con.register("_scale_files", files)
    try:
        label = "NOT ce.flipped" if kind == "pairs" else "ce.current_label"
        table = ws.con.sql(
            f"SELECT ce.id, {label} AS label, ce.current_category AS category, ce.flipped, "
            f"s.score, s.score_chosen, s.score_rejected, {truncated} AS truncated "
            f"FROM current_examples ce "
            f"JOIN _scale_files f ON f.sha = ce.source_sha256 "
            f"JOIN read_parquet({_shard_list(folder)}) s "
            f"  ON s.source_file = f.source_file AND s.row_index = ce.source_index "
            f"WHERE ce.dataset_id = ? AND NOT ce.excluded AND s.error IS NULL ORDER BY ce.id",
            params=[dataset_id]).to_arrow_table()
        total = ws.execute("SELECT count(*) FROM current_examples WHERE dataset_id = ? "
                           "AND NOT excluded", [dataset_id]).fetchall()[0][0]
    finally:
        ws.con.unregister("_scale_files")
    n = table.num_rows
    labels = table.column("label")
    codes, names = results.category_codes(table.column("category"))
    result = ScoreResult(
        model=version, dataset_id=dataset_id, dataset_kind=kind,
        score_type=manifest["score_type"], example_ids=table.column("id").to_numpy(),
        labels=labels.fill_null(False).to_numpy(zero_copy_only=False).astype(bool),
        labeled=labels.is_valid().to_numpy(zero_copy_only=False).astype(bool),
        category_codes=codes, category_names=names)
    if kind == "pairs":  # scores belong to texts: a flipped pair's current chosen was rejected
        flipped = table.column("flipped").to_numpy(zero_copy_only=False).astype(bool)
        chosen = table.column("score_chosen").to_numpy()
        rejected = table.column("score_rejected").to_numpy()
        result.score_chosen = np.where(flipped, rejected, chosen)
        result.score_rejected = np.where(flipped, chosen, rejected)
        result.margin = result.score_chosen - result.score_rejected
    else:
        result.score = table.column("score").to_numpy()
    if truncated != "NULL":  # per example, so the same whichever side is chosen now
        result.truncated = table.column("truncated").fill_null(0).to_numpy(
            zero_copy_only=False).astype(np.int64)
    unmatched = int(total) - n
    if unmatched:
        result.notes.append(f"{unmatched} examples have no scored row (bad rows on the "
                            f"cluster) and are left out")
    if n == 0:
        raise WorkstationError("no example of the dataset matches a scored row of the results")
    return result, unmatched


def _counts_truncation(version: Any, folder: Path) -> bool:
    """A tokens model's results that carry each row's truncation count
    (results written before scale runs counted it lack the column)."""
    import pyarrow.parquet as pq

    found = results.shards(folder)
    return version.input_kind == "text-tokens" and bool(found) and \
        "truncated" in pq.read_schema(found[0]).names
