"""The process that tests/test_crash_safety.py kills: it works on a workspace
until SIGKILL stops it, and says on stdout what it had committed.

Run as ``python tests/crash_worker.py`` it serves the test: each line on
stdin is one JSON job ``{"op", "workspace", "out", "seed", "delay",
"small_checkpoints"}``. For
each job it forks a child that runs the operation ``op`` in an endless loop
on ``workspace`` with stdout and stderr going to ``out`` and ``out.err``,
kills the child with SIGKILL ``delay`` seconds later, reaps it, and answers
one JSON line ``{"killed", "exit_code", "seconds"}``. Forking from one warm
process (workstation, DuckDB and torch imported once) keeps a kill cycle
well under a second; the killing parent is the only one that could reap the
child, so its pid cannot be reused before the kill.

What the child prints, one line each, flushed at once:

* ``OPENED`` once the workspace is open;
* ``T+`` before an outermost transaction begins and ``T-`` after it ended
  (so a child whose last marker is ``T+`` died inside a transaction, or at
  its very edge);
* ``ACK <json>`` for each unit of work, only after its transaction committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

if __package__ in (None, ""):  # run as a script: make `workstation` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from workstation.workspace import Workspace  # noqa: E402

# Names in the template workspace that the test builds (tests/test_crash_safety.py).
PAIRS, LABELS, DEMOS = "pairs", "labels", "demos"
RELEASE_MODEL = "rm"
TRAINED_TEXT, TRAINED_DEMOS = "clf", "iirl"
IMPORT_RECORDS = 3000
MAX_EDIT_BATCH = 3
# Training: tiny heads and few epochs (the point is the registration, not the fit).
TRAIN_TEXT = {"members": 2, "hidden": 4, "epochs": 3, "batch_size": 32, "patience": 2}
TRAIN_DEMOS = {"experts": 2, "hidden": 4, "epochs": 3, "batch_size": 64, "patience": 2}


class KeywordEncoder:
    """A deterministic stand-in for the sentence encoder (8-d unit vectors from a hash)."""

    def __init__(self) -> None:
        self.id, self.dim = "crash-test-encoder", 8

    def encode(self, texts, progress=None, batch_size=64) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256((text or "").encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            v[0] += 2.0 * ("helpful" in (text or ""))
            out[i] = v / np.linalg.norm(v)
        return out


def say(*parts: str) -> None:
    print(*parts, flush=True)


def ack(**fields: Any) -> None:
    say("ACK", json.dumps(fields, sort_keys=True))


def label_records(tag: str, n: int) -> list[dict[str, Any]]:
    """``n`` labeled responses whose content (and so file hash) depends on ``tag``."""
    return [{"prompt": f"request {tag}-{i}",
             "response": f"{'helpful' if i % 2 else 'harmful'} reply {tag}-{i}",
             "label": "safe" if i % 2 else "unsafe", "category": f"c{i % 5}"}
            for i in range(n)]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


# -- the operations: each loops until killed -----------------------------------

def run_edits(ws: Workspace, rng: random.Random, scratch: Path) -> None:
    """Label edits in batches of 1..MAX_EDIT_BATCH, with an undo now and then."""
    from workstation import review

    examples = ws.execute(
        "SELECT e.id, d.kind FROM examples e JOIN datasets d ON d.id = e.dataset_id "
        "WHERE d.kind IN ('pairs', 'labels') ORDER BY e.id").fetchall()
    n = 0
    while True:
        if rng.random() < 0.1:
            change = review.undo(ws, reason="crash-test undo")
            if change is not None:
                ack(**_change(change))
            continue
        batch = [_edit(rng, *rng.choice(examples), n + i)
                 for i in range(rng.randint(1, MAX_EDIT_BATCH))]
        n += len(batch)
        for change in review.apply(ws, batch):
            ack(**_change(change))


def _edit(rng: random.Random, example_id: int, kind: str, n: int):
    from workstation import review

    field = rng.choice(["note", "tags", "excluded", "category",
                        "flipped" if kind == "pairs" else "label"])
    value = {"note": f"note {n}", "tags": [f"t{n % 7}"], "excluded": rng.random() < 0.5,
             "category": f"cat {n % 4}", "flipped": rng.random() < 0.5,
             "label": rng.choice(["safe", "unsafe"])}[field]
    return review.Edit(example_id, field, value, f"crash-test edit {n}")


def _change(change) -> dict[str, Any]:
    return {"seq": change.seq, "example_id": change.example_id, "field": change.field,
            "new": change.new, "action": change.action}


def run_import(ws: Workspace, rng: random.Random, scratch: Path) -> None:
    """Import new labeled-response files of IMPORT_RECORDS records, one after another."""
    from workstation.datasets import import_dataset

    k = 0
    while True:
        path = scratch / f"import-{k}.jsonl"
        tag = f"{rng.getrandbits(48):012x}"
        write_jsonl(path, label_records(tag, IMPORT_RECORDS))
        report = import_dataset(ws, "labels", path, f"imported-{tag}")
        ack(dataset=report.dataset, imported=report.imported, source_sha256=report.source_sha256)
        k += 1


def run_train(ws: Workspace, rng: random.Random, scratch: Path) -> None:
    """Train and register versions, text (labels, through the embedding cache) and demos."""
    from workstation.training import train

    encoder = KeywordEncoder()
    k = 0
    while True:
        # A seed of this child's own: the same data and seed would give a model
        # identical to one an earlier child registered, which training refuses.
        seed = rng.getrandbits(31)
        if k % 2 == 0:
            result = train(ws, LABELS, TRAINED_TEXT, encoder=encoder, params=TRAIN_TEXT,
                           seed=seed)
        else:
            result = train(ws, DEMOS, TRAINED_DEMOS, params=TRAIN_DEMOS, seed=seed)
        v = result.version
        ack(model=v.model, version=v.version, sha256=v.sha256)
        k += 1


def run_release(ws: Workspace, rng: random.Random, scratch: Path) -> None:
    """Release the template's versions of RELEASE_MODEL in turn, round and round
    (skipping the one a killed predecessor left current)."""
    from workstation import releases

    versions = [r[0] for r in ws.execute(
        "SELECT version FROM model_versions WHERE model = ? ORDER BY version",
        [RELEASE_MODEL]).fetchall()]
    k = rng.randrange(len(versions))
    current = releases.current_release(ws, RELEASE_MODEL)
    while True:
        version = versions[k % len(versions)]
        if current is not None and current.version == version:
            k += 1
            continue
        rel = releases.release(ws, f"{RELEASE_MODEL}@{version}",
                               notes=f"crash-test release {k}")
        current = rel
        ack(release_id=rel.id, model=rel.model, version=rel.version, ledger_seq=rel.ledger_seq)
        k += 1


def run_merge(ws: Workspace, rng: random.Random, scratch: Path) -> None:
    """Merge the template's review bundles in order (each holds the peer's rows so
    far, so each adds the next slice), then the last one again and again (no-ops)."""
    from workstation import review_bundles

    bundles = JOB["bundles"]
    k = 0
    while True:
        report = review_bundles.merge(ws, [bundles[k]])
        ack(bundle=k, added=report.added)
        k = min(k + 1, len(bundles) - 1)


# The approve operation's approvers (trusted in the test's approval template,
# where a release needs two approvals and the requester's does not count);
# unlocked once by the worker, before it forks.
APPROVERS = ("crash-approver-a", "crash-approver-b")
_approvers: list[Any] = []


def run_approve(ws: Workspace, rng: random.Random, scratch: Path) -> None:
    """Release requests of RELEASE_MODEL's versions, each approved by the two
    approvers in turn (the second puts it in force) or, now and then,
    rejected; a request a killed predecessor left pending is finished first."""
    from workstation import releases

    versions = [r[0] for r in ws.execute(
        "SELECT version FROM model_versions WHERE model = ? ORDER BY version",
        [RELEASE_MODEL]).fetchall()]
    k = rng.randrange(len(versions))
    while True:
        waiting = [r for r in releases.release_history(ws, RELEASE_MODEL)
                   if r.status == "pending"]
        if waiting:
            request = waiting[0]
        else:
            current = releases.current_release(ws, RELEASE_MODEL)
            version = versions[k % len(versions)]
            k += 1
            if current is not None and current.version == version:
                continue
            request = releases.release(ws, f"{RELEASE_MODEL}@{version}",
                                       notes=f"crash-test request {k}")
            ack(step="request", release_id=request.id, ledger_seq=request.ledger_seq)
        _decide(ws, rng, request)


def _decide(ws: Workspace, rng: random.Random, request: Any) -> None:
    from workstation import releases

    if rng.random() < 0.15:
        releases.reject(ws, request.id, "crash-test rejection", signer=_approvers[0])
        ack(step="reject", release_id=request.id)
        return
    done = {a["key_id"] for a in request.approvals}
    for approver in _approvers:
        if approver.key_id in done:
            continue
        rel = releases.approve(ws, request.id, signer=approver)
        if rel.status == "in-force":
            ack(step="complete", release_id=rel.id, ledger_seq=rel.ledger_seq)
        else:
            ack(step="approve", release_id=rel.id, key_id=approver.key_id)


OPERATIONS: dict[str, Callable[[Workspace, random.Random, Path], None]] = {
    "edits": run_edits, "import": run_import, "train": run_train, "release": run_release,
    "merge": run_merge, "approve": run_approve}
JOB: dict[str, Any] = {}  # the child's job (what an operation needs besides the workspace)


# -- the child -------------------------------------------------------------------

def _trace_transactions() -> None:
    """Mark the outermost transactions on stdout (behaviour otherwise unchanged)."""
    original = Workspace.transaction

    @contextlib.contextmanager
    def traced(self: Workspace, *args: Any, **kwargs: Any) -> Iterator[Any]:
        outer = not self._in_tx and not self.read_only
        if outer:
            say("T+")
        try:
            with original(self, *args, **kwargs) as con:
                yield con
        finally:
            if outer:
                say("T-")

    Workspace.transaction = traced  # type: ignore[method-assign]


def child(job: dict[str, Any]) -> None:
    """Run one job's operation until killed (never returns normally)."""
    out = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(job["out"] + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    try:
        rng = random.Random(job["seed"])
        JOB.update(job)
        _trace_transactions()
        ws = Workspace.open(job["workspace"])
        if job.get("small_checkpoints"):
            # Checkpoint at (nearly) every commit, as a large WAL does, so that
            # kills also land inside checkpoints.
            ws.execute("SET checkpoint_threshold = '1KB'")
        say("OPENED")
        OPERATIONS[job["op"]](ws, rng, Path(job["out"]).parent)
    except BaseException:  # the loop only ends by a failure: report it to the test
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(1)  # no atexit handlers, no flushing of the parent's buffers


def _warm_up() -> None:
    """Import what training loads lazily (the ONNX exporter pulls in much of
    torch), so that each forked child starts at once. Nothing runs: no thread
    pool is started before the fork."""
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import torch
    import torch.onnx  # noqa: F401

    # The first call imports torch._dynamo and torch._inductor (seconds); it sets
    # the flag to what it already is.
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())


def _wait_for(out: Path, pid: int, mark: bytes, limit: float = 120.0) -> None:
    """Until the child's log shows ``mark`` (OPENED: its workspace is open;
    T+: its first transaction began), so that the delay that follows lands in
    the work itself however long opening takes on a loaded machine; a child
    that ended first, or a generous limit, stops it."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if out.exists() and mark in out.read_bytes():
            return
        if _ended(pid):  # it failed first: the test reads why from its .err
            return
        time.sleep(0.002)


def _ended(pid: int) -> bool:
    """Whether a child has exited (a zombie, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def serve() -> None:
    """Answer jobs from stdin until it closes (see the module doc)."""
    import workstation.datasets  # noqa: F401  (imported once, here, before forking)
    import workstation.regression  # noqa: F401  (a release computes its gate)
    import workstation.releases  # noqa: F401
    import workstation.review  # noqa: F401
    import workstation.review_bundles  # noqa: F401
    import workstation.training  # noqa: F401
    from workstation import identity

    # Edits and releases are signed: the test's identity ($WORKSTATION_HOME,
    # $WORKSTATION_PASSPHRASE_FILE) is unlocked once, and every child inherits it.
    identity.unlock_session()
    _approvers.extend(identity.unlock(identity.get(name), identity.passphrase_for(name))
                      for name in APPROVERS if name in {i.name for i in identity.list_identities()})

    _warm_up()
    say("READY")
    for line in sys.stdin:
        job = json.loads(line)
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            child(job)
        if job.get("after"):
            _wait_for(Path(job["out"]), pid, job["after"].encode())
        time.sleep(job["delay"])
        os.kill(pid, signal.SIGKILL)  # a child that already ended is a zombie: harmless
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        say(json.dumps({"killed": killed, "seconds": time.monotonic() - start,
                        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}))


if __name__ == "__main__":
    serve()
