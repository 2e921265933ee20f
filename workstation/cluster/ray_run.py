"""``scale run``: score a corpus with a scoring bundle on Ray Data.

The only module of the workstation that imports ray (the ``cluster`` extra).
Without an address it starts a local Ray instance sized by ``num_cpus`` with
a small object store, no dashboard and no usage statistics; with one it
joins that cluster. The plan:

* read: a Ray ``Datasource`` with one read task per input file, applying the
  importers' record rules (``inputs``). ``ray.data.read_parquet`` would give
  no row index within a file, which the results need (they are matched to
  the records at home, and checked for lost or doubled rows);
* score: ``map_batches`` with a callable class: one actor per CPU, each
  holding one verified ``BatchScorer`` (the bundle travels once through the
  object store and is verified in every actor before it is loaded). Ray
  restarts a killed actor and retries its batches;
* write: Parquet shards into the output folder; then the shards are read
  back (small columns) to count rows per file and check that every row
  index is there exactly once, the inputs' sha256 come from tasks run beside
  the job, and ``_SUCCESS`` is written last.
"""

from __future__ import annotations

import os
import platform
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before ray is imported

import ray  # noqa: E402
import ray.data  # noqa: E402
from ray.data.block import BlockMetadata  # noqa: E402
from ray.data.datasource import Datasource, ReadTask  # noqa: E402

from workstation.cluster import bundle as bundles  # noqa: E402
from workstation.cluster import inputs as corpus  # noqa: E402
from workstation.cluster import results  # noqa: E402
from workstation.cluster.scorer import BatchScorer  # noqa: E402
from workstation.errors import Cancelled, WorkstationError  # noqa: E402
from workstation.hashing import sha256_file  # noqa: E402
from workstation.progress import Progress  # noqa: E402

DEFAULT_BATCH = 1024
OBJECT_STORE_MB = 300  # a local instance's shared memory (Ray would size it to the RAM)
_POLL_S = 0.5


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
        return _run(files, paths, form, out, address, num_cpus, batch_size or DEFAULT_BATCH,
                    threshold, progress)
    finally:
        if started_here:
            ray.shutdown()


def _new_output(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WorkstationError(f"{out} exists and is not empty; results go into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


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
        ray.init(num_cpus=num_cpus or _cores(), object_store_memory=object_store_mb << 20,
                 **quiet)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return True


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# -- the job -------------------------------------------------------------------------

def _run(files: dict[str, bytes], paths: list[Path], form: corpus.InputFormat, out: Path,
         address: str | None, num_cpus: int | None, batch_size: int, threshold: float | None,
         progress: Progress) -> ScaleRun:
    start = time.perf_counter()
    actors = int(num_cpus or ray.cluster_resources().get("CPU", 1))
    hashes = [_hash.remote(str(p)) for p in paths]
    counter = _Counter.remote()
    ds = ray.data.read_datasource(CorpusSource(paths, form), num_cpus=0)
    ds = ds.map_batches(
        _RayScorer, fn_constructor_kwargs={
            "bundle": [ray.put(files)], "kind": form.kind, "threshold": threshold,
            "counter": counter},
        batch_size=batch_size, batch_format="pyarrow", concurrency=actors, num_cpus=1)
    _write(ds, out, counter, _expected_rows(paths, form), progress)
    where = _where(address, actors, batch_size)
    # More processes than actors: Ray restarted some (their batches were retried).
    where["actor_processes"] = ray.get(counter.processes.remote())
    manifest = results.finish(out, files, paths, ray.get(hashes), form, threshold, where,
                              time.perf_counter() - start)
    return ScaleRun(str(out), manifest)


def _write(ds: Any, out: Path, counter: Any, expected: int, progress: Progress) -> None:
    """Run the job to Parquet shards in a thread, reporting rows scored and
    stopping the actors at a cancel."""
    failure: list[BaseException] = []

    def write() -> None:
        try:
            ds.write_parquet(str(out), ray_remote_args={"num_cpus": 0})
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)
    worker = threading.Thread(target=write, name="scale-run", daemon=True)
    progress.stage_start("scoring on Ray", expected)
    worker.start()
    while worker.is_alive():
        worker.join(_POLL_S)
        done, _ = ray.get(counter.state.remote())
        try:
            progress.step(done, max(expected, done))
        except Cancelled:
            ray.get(counter.cancel.remote())
            worker.join()
            raise
    if failure:
        if ray.get(counter.state.remote())[1]:
            raise Cancelled("cancelled; the results folder is unfinished (no _SUCCESS)")
        raise WorkstationError(f"the scale run failed: {_one_line(failure[0])}") from failure[0]


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


# -- Ray pieces ------------------------------------------------------------------------

class CorpusSource(Datasource):
    """One read task per input file, each yielding Arrow blocks of records."""

    def __init__(self, paths: list[Path], form: corpus.InputFormat) -> None:
        super().__init__()
        self.paths, self.form = [str(p) for p in paths], form

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(os.path.getsize(p) for p in self.paths)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        return [ReadTask(lambda path=path, form=self.form: corpus.file_blocks(Path(path), form),
                         BlockMetadata(num_rows=None, size_bytes=os.path.getsize(path),
                                       exec_stats=None, input_files=[path]))
                for path in self.paths]


class _RayScorer:
    """The map_batches callable: a BatchScorer built from the bundle in the
    object store (the reference comes in a list so Ray does not resolve it)."""

    def __init__(self, bundle: list[Any], kind: str, threshold: float | None,
                 counter: Any) -> None:
        self.counter = counter
        self.scorer = BatchScorer(ray.get(bundle[0]), kind, threshold=threshold, threads=1,
                                  report=self._report)

    def _report(self, rows: int, pid: int) -> None:
        if ray.get(self.counter.add.remote(rows, pid)):
            raise Cancelled()

    def __call__(self, batch: Any) -> Any:
        return self.scorer(batch)


@ray.remote(num_cpus=0)
class _Counter:
    """Rows scored so far (and by which actor processes), and the cancel flag."""

    def __init__(self) -> None:
        self.rows, self.pids, self.cancelled = 0, set(), False

    def add(self, rows: int, pid: int) -> bool:
        self.rows += rows
        self.pids.add(pid)
        return self.cancelled

    def state(self) -> tuple[int, bool]:
        return self.rows, self.cancelled

    def cancel(self) -> None:
        self.cancelled = True

    def processes(self) -> int:
        return len(self.pids)


@ray.remote(num_cpus=0)
def _hash(path: str) -> str:
    return sha256_file(path)


def remove_unfinished(out: str | Path) -> None:
    """Remove a results folder a failed run left without ``_SUCCESS``."""
    out = Path(out)
    if out.is_dir() and not (out / results.SUCCESS).exists():
        shutil.rmtree(out)
