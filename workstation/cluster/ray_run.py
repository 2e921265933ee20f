"""``scale run``: score a corpus with a scoring bundle on Ray Data.

The only module of the workstation that imports ray (the ``cluster`` extra).
Without an address it starts a local Ray instance sized by ``num_cpus`` with
a small object store, no dashboard and no usage statistics; with one it
joins that cluster. The plan:

* the work: units (``inputs.work_units``): a JSONL file, or about 100k rows
  of whole row groups of a Parquet file, as a Ray dataset of one unit a block.
  The bundle, the inputs and the output folder are paths every node reads
  (and, for the output, writes) alike: a shared filesystem on a cluster;
* ``map_batches`` with a callable class on an actor pool of one actor per
  CPU: each actor holds one ``BatchScorer`` (the bundle is read and
  verified in the actor before it is loaded) and, per unit, reads the
  records with the importers' rules
  (``ray.data.read_parquet`` would give no row index within a file, which
  the results need to be matched at home and checked for lost or doubled
  rows), scores them ``batch_size`` rows at a time and writes the unit's
  Parquet shard itself; only a one-row summary goes back. Reading, scoring
  and writing in the actor keep the corpus out of the object store and
  start no process per file or block, which on 2 CPUs cost more than the
  scoring (measured: 200k rows 10x slower than the local audit). Ray
  restarts a killed actor and retries its unit, which rewrites the same
  shard;
* the driver follows the summaries (progress; a cancel stops the job), then
  reads the shards back (small columns) to count rows per file and check
  that every row index is there exactly once, and writes ``_SUCCESS`` last.
"""

from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before ray is imported
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # no per-job INFO or notes on stderr

import ray  # noqa: E402
import ray.data  # noqa: E402

from workstation.cluster import bundle as bundles  # noqa: E402
from workstation.cluster import inputs as corpus  # noqa: E402
from workstation.cluster import results  # noqa: E402
from workstation.cluster.scorer import BatchScorer, score_unit  # noqa: E402
from workstation.errors import Cancelled, WorkstationError  # noqa: E402
from workstation.models.onnx_model import core_count  # noqa: E402
from workstation.progress import Progress  # noqa: E402

DEFAULT_BATCH = 1024  # rows per scoring batch of texts (the encoder's work)
# Rows per batch when the inputs carry their embeddings: scoring is cheap and
# per-batch costs (a Parquet row group written, a session run) dominate; one
# 125k-row unit took 34.7 s in batches of 1,024 and 23.7 s in 16,384 (loaded
# 2-core machine, one process).
EMBEDDED_BATCH = 16_384
OBJECT_STORE_MB = 300  # a local instance's shared memory (Ray would size it to the RAM)


@dataclass
class ScaleRun:
    """What ``run_scale`` wrote: the results folder and its manifest."""

    output: str
    manifest: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {"output": self.output, "rows": m["rows"], "scored": m["scored"], "bad": m["bad"],
                "complete": m["complete"], "files": m["inputs"], "bundle": m["bundle"],
                "metrics": m["metrics"], "where": m["where"], "seconds": m["seconds"],
                "rows_per_second": m["rows_per_second"]}


def run_scale(bundle_dir: str | Path, input_spec: str, output_dir: str | Path, *,
              address: str | None = None, num_cpus: int | None = None,
              batch_size: int | None = None, fmt: str | None = None,
              threshold: float | None = None, object_store_mb: int = OBJECT_STORE_MB,
              progress: Progress | None = None) -> ScaleRun:
    """Score every record of ``input_spec`` with the bundle; see the module docstring."""
    progress = progress or Progress()
    files = bundles.read_files(bundle_dir)
    bundles.verify_files(files)  # on the driver too: refuse before starting anything
    paths = corpus.find_inputs(input_spec)
    form = corpus.check_format(fmt or corpus.detect_format(paths), paths)
    out = _new_output(Path(output_dir))
    started_here = _connect(address, num_cpus, object_store_mb)
    try:
        return _run(bundle_dir, files, paths, form, out, address, num_cpus,
                    batch_size or default_batch(paths, form), threshold, progress)
    finally:
        if started_here:
            ray.shutdown()


def default_batch(paths: list[Path], form: corpus.InputFormat) -> int:
    """Rows per scoring batch: larger when the first file carries embeddings."""
    if form.container != "parquet":
        return DEFAULT_BATCH
    import pyarrow.parquet as pq

    try:
        names = pq.ParquetFile(paths[0]).schema_arrow.names
    except Exception:  # an unreadable file is reported by the run itself
        return DEFAULT_BATCH
    embedded = any(n.endswith(corpus.EMBEDDING_SUFFIX) for n in names)
    return EMBEDDED_BATCH if embedded else DEFAULT_BATCH


def _new_output(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WorkstationError(f"{out} exists and is not empty; results go into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextmanager
def local_ray(num_cpus: int | None = None,
              object_store_mb: int = OBJECT_STORE_MB) -> Iterator[None]:
    """A local Ray instance for several runs (tests, benchmarks): a run started
    inside uses it rather than starting its own."""
    started = _connect(None, num_cpus, object_store_mb)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _connect(address: str | None, num_cpus: int | None, object_store_mb: int) -> bool:
    """Join the cluster at ``address`` or start a local instance; True when
    this call started it (and so stops it). An instance already running in
    this process is used as it is."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False,
             "logging_level": "ERROR", "configure_logging": True}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=num_cpus or core_count(), object_store_memory=object_store_mb << 20,
                 **quiet)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    return True


# -- the job -------------------------------------------------------------------------

def _run(bundle_dir: str | Path, files: dict[str, bytes], paths: list[Path],
         form: corpus.InputFormat, out: Path, address: str | None, num_cpus: int | None,
         batch_size: int, threshold: float | None, progress: Progress) -> ScaleRun:
    start = time.perf_counter()
    units = corpus.work_units(paths, form)
    actors = max(1, min(len(units), int(num_cpus or ray.cluster_resources().get("CPU", 1))))
    ds = ray.data.from_items([{"unit": i} for i in range(len(units))],
                             override_num_blocks=len(units))
    ds = ds.map_batches(
        _RayScorer, fn_constructor_kwargs={
            "bundle_dir": str(Path(bundle_dir).resolve()), "units": units, "form": form,
            "threshold": threshold, "out_dir": str(out), "batch_size": batch_size},
        batch_size=1, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1)
    done = _follow(ds, units, form, paths, progress)
    _remove_leftovers(out)
    where = _where(address, actors, batch_size)
    where["actor_processes"] = len({d["pid"] for d in done})  # more than actors: restarts
    hashes = {d["path"]: d["sha256"] for d in done if d["sha256"]}
    manifest = results.finish(out, files, paths, [hashes[str(p)] for p in paths], form,
                              threshold, where, time.perf_counter() - start)
    return ScaleRun(str(out), manifest)


def _follow(ds: Any, units: list[corpus.WorkUnit], form: corpus.InputFormat,
            paths: list[Path], progress: Progress) -> list[dict[str, Any]]:
    """Run the job, reporting rows as units finish; a cancel stops it."""
    expected = _expected_rows(paths, form)
    progress.stage_start("scoring on Ray", expected)
    done: list[dict[str, Any]] = []
    rows = 0
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            done.extend(batch.to_pylist())
            rows = sum(d["rows"] for d in done)
            progress.step(rows, max(expected, rows))
    except Cancelled:
        raise Cancelled("cancelled; the results folder is unfinished (no _SUCCESS)") from None
    except Exception as exc:  # Ray wraps a worker's error in its own
        raise WorkstationError(f"the scale run failed: {_one_line(exc)}") from exc
    if len(done) != len(units):
        raise WorkstationError(f"the scale run finished {len(done)} of {len(units)} units")
    return done


def _remove_leftovers(out: Path) -> None:
    """Temporary files of units whose actor was killed while writing."""
    for tmp in out.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _expected_rows(paths: list[Path], form: corpus.InputFormat) -> int:
    """Rows known before reading (Parquet metadata); 0 when unknown."""
    if form.container != "parquet":
        return 0
    import pyarrow.parquet as pq

    try:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    except Exception:  # the read reports an unreadable file as its bad row
        return 0


def _where(address: str | None, actors: int, batch_size: int) -> dict[str, Any]:
    resources = ray.cluster_resources()
    return {"engine": "ray", "ray_version": ray.__version__,
            "cluster": address or "local", "driver_host": platform.node(),
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
            "cluster_cpus": resources.get("CPU"), "actors": actors, "batch_size": batch_size}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():  # Ray wraps the worker's error in its own lines
        if "WorkstationError" in line or "Error:" in line:
            return line.strip()[:300]
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


# -- the actor -------------------------------------------------------------------------

class _RayScorer:
    """The map_batches callable: a BatchScorer of the bundle (read and
    verified here, in the actor), scoring one unit of work per call into its
    shard."""

    def __init__(self, bundle_dir: str, units: list[corpus.WorkUnit],
                 form: corpus.InputFormat, threshold: float | None, out_dir: str,
                 batch_size: int) -> None:
        self.scorer = BatchScorer(bundles.read_files(bundle_dir), form.kind,
                                  threshold=threshold, threads=1)
        self.units, self.form, self.out_dir, self.batch_size = units, form, out_dir, batch_size

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        done = [score_unit(self.scorer, self.units[i], self.form, self.out_dir,
                           self.batch_size) for i in batch.column("unit").to_pylist()]
        return {key: [d[key] for d in done] for key in done[0]}

