"""Crash safety: a workspace survives SIGKILL at any moment, and keeps what it acknowledged.

A warm worker process (tests/crash_worker.py) forks a child that applies
label edits, imports datasets, trains and registers versions, releases
versions, requests releases and approves or rejects them (two approvals
needed), or merges review bundles in an endless loop on a copy of a template
workspace, and kills it
with SIGKILL after a random delay (fixed seed). Kills come in chains on one
file: the next child opens what the last kill left, WAL included, so kills
also land in WAL replay; every other chain checkpoints at each commit, so
kills also land in checkpoints. After each kill the workspace must open,
pass ``verify``, hold every unit of work the child had acknowledged (printed
after its commit), and show nothing half-made.

The CLI's schema-upgrade notice is tested here too: an upgrade happens when
an old file is opened, and the analyst must learn where the old file went."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import duckdb
import numpy as np
import pytest

from tests import crash_worker as worker
from tests.old_workspaces import make_old_workspace
from tests.test_models import reward_mlp
from workstation import (identity, ledger, policy, release_requests, releases, review,
                         review_bundles, trust)
from workstation.cli import main
from workstation.datasets import import_dataset
from workstation.models import add_model_bytes
from workstation.schema import CURRENT_VERSION
from workstation.verify import verify_workspace
from workstation.workspace import Workspace

KILLS_PER_OPERATION = 32
KILLS_PER_CHAIN = 4
SEED = 20240611
# Kill delays, drawn uniformly per operation: long enough for several units
# of work, so kills land before, inside and between transactions. A kill's
# delay counts from one of three moments, in turn: the fork (opening the
# workspace takes the first ~50 ms on a quiet machine, so these also land in
# opening and WAL replay); the child's OPENED (on a loaded machine opening
# takes seconds, and kills timed from the fork would all land there); and the
# start of its first transaction, with a short delay (training spends nearly
# all its time fitting, outside transactions, so kills timed otherwise rarely
# land inside one).
TIMED_FROM = (None, "OPENED", "T+")
IN_TRANSACTION = (0.0, 0.03)
# A release computes its regression gate inside its transaction (~0.1 s here).
DELAY_RANGE = {"edits": (0.02, 0.5), "import": (0.05, 0.9), "train": (0.1, 1.2),
               "release": (0.05, 0.9), "approve": (0.05, 0.9), "merge": (0.1, 2.0)}
RELEASE_VERSIONS = 12
# `review merge`: a peer's review rows, in BUNDLES bundles of BUNDLE_STEP more rows each.
BUNDLES, BUNDLE_STEP = 8, 20


# -- the template workspace and the worker --------------------------------------------

@dataclass(frozen=True)
class Template:
    path: Path
    review_rows: int
    datasets: int
    versions: int
    releases: int
    bundles: tuple[str, ...] = ()
    peer_rows: tuple[str, ...] = ()     # the peer's row hashes, in order
    boundaries: tuple[int, ...] = ()    # how many of them each bundle holds


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Template:
    """Three small datasets, a dozen registered versions, one review edit (signed by
    the test identity, which so owns the workspace), a trusted peer reviewer and
    bundles of the peer's rows made on another copy; no releases."""
    folder = tmp_path_factory.mktemp("crash-template")
    worker.write_jsonl(folder / "pairs.jsonl", [
        {"prompt": f"q{i}", "chosen": f"helpful {i}", "rejected": f"harmful {i}"}
        for i in range(40)])
    worker.write_jsonl(folder / "labels.jsonl", worker.label_records("template", 60))
    rng = np.random.default_rng(0)
    worker.write_jsonl(folder / "demos.jsonl", [
        {"obs": rng.standard_normal((20, 3)).round(4).tolist()} for _ in range(8)])
    path = folder / "template.duckdb"
    with Workspace.open(path) as ws:
        for kind in (worker.PAIRS, worker.LABELS, worker.DEMOS):
            import_dataset(ws, kind, folder / f"{kind}.jsonl", kind)
        for v in range(RELEASE_VERSIONS):
            add_model_bytes(ws, reward_mlp(3, seed=v), worker.RELEASE_MODEL, "observation")
        review.apply(ws, [review.Edit(1, "note", "seen", "template")])
        peer = _peer()
        trust.add(ws, peer.public_pem, peer.name, "reviewer")
        counts = [ws.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("review_log", "datasets", "model_versions", "releases")]
    assert not path.with_name(path.name + ".wal").exists()  # closed clean: one file to copy
    return Template(path, *counts, *_peer_bundles(path, folder, peer))


def _peer():
    from tests.conftest import TEST_PASSPHRASE
    from workstation import identity

    known = {i.name: i for i in identity.list_identities()}
    made = known.get("crash-peer") or identity.create("crash-peer", TEST_PASSPHRASE)
    return identity.unlock(made, TEST_PASSPHRASE)


def _peer_bundles(path: Path, folder: Path, peer) -> tuple[tuple, tuple, tuple]:
    """The peer's edits on a copy of the template, exported after each slice."""
    laptop = folder / "peer.duckdb"
    shutil.copyfile(path, laptop)
    rng = random.Random(SEED)
    bundles, boundaries = [], []
    with Workspace.open(laptop) as ws:
        examples = ws.execute("SELECT e.id, d.kind FROM examples e JOIN datasets d ON "
                              "d.id = e.dataset_id WHERE d.name = ? ORDER BY e.id",
                              [worker.LABELS]).fetchall()
        for k in range(BUNDLES):
            review.apply(ws, [worker._edit(rng, *rng.choice(examples), k * BUNDLE_STEP + i)
                              for i in range(BUNDLE_STEP)], signer=peer)
            bundle = folder / f"peer-{k}.bundle"
            report = review_bundles.export(ws, worker.LABELS, bundle, signer=peer)
            bundles.append(str(bundle))
            boundaries.append(report.rows)
        rows = tuple(r[0] for r in ws.execute(
            "SELECT row_hash FROM review_log WHERE key_id = ? ORDER BY seq",
            [peer.key_id]).fetchall())
    laptop.unlink()
    return tuple(bundles), rows, tuple(boundaries)


class Worker:
    """The warm worker process: one job in, one answer out."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(worker.__file__))], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=Path(worker.__file__).parents[1])
        ready = self.proc.stdout.readline().strip()
        assert ready == "READY", f"the crash worker did not start ({ready!r})"

    def kill_after(self, op: str, workspace: Path, out: Path, seed: int, delay: float,
                   small_checkpoints: bool = False, **extra: Any) -> dict[str, Any]:
        job = {"op": op, "workspace": str(workspace), "out": str(out), "seed": seed,
               "delay": delay, "small_checkpoints": small_checkpoints, **extra}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, "the crash worker died"
        return json.loads(answer)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def approvers(session_identity) -> list:
    """The approve operation's two approvers (identities of the test's folder)."""
    from tests.conftest import TEST_PASSPHRASE

    known = {i.name for i in identity.list_identities()}
    return [identity.unlock(identity.get(name) if name in known
                            else identity.create(name, TEST_PASSPHRASE), TEST_PASSPHRASE)
            for name in worker.APPROVERS]


@pytest.fixture(scope="module")
def approval_template(template, approvers, tmp_path_factory) -> Template:
    """The template where a release needs two approvals (separation on: not the
    requester's), with the two approvers trusted."""
    path = tmp_path_factory.mktemp("crash-approval") / "template.duckdb"
    shutil.copyfile(template.path, path)
    with Workspace.open(path) as ws:
        for who in approvers:
            trust.add(ws, who.public_pem, who.name, "approver")
        policy.set(ws, "release.approvals", 2)
    return Template(path, template.review_rows, template.datasets, template.versions,
                    template.releases)


@pytest.fixture(scope="module")
def crash_worker(approvers):
    w = Worker()
    yield w
    w.close()


# -- what the killed child said ----------------------------------------------------

@dataclass
class ChildLog:
    acks: list[dict[str, Any]]
    moment: str  # where the kill landed: "opening", "mid-transaction" or "between"


def read_child_log(out: Path) -> ChildLog:
    acks, opened, in_tx = [], False, False
    for line in out.read_text().splitlines():
        if line == "OPENED":
            opened = True
        elif line in ("T+", "T-"):
            in_tx = line == "T+"
        elif line.startswith("ACK "):
            acks.append(json.loads(line[4:]))
        else:
            raise AssertionError(f"unexpected line from the child: {line!r}")
    moment = "mid-transaction" if in_tx else ("between" if opened else "opening")
    return ChildLog(acks, moment)


# -- what must hold after any kill --------------------------------------------------

def assert_nothing_half_made(ws: Workspace) -> None:
    def none(sql: str, what: str) -> None:
        rows = ws.execute(sql).fetchall()
        assert not rows, f"{what}: {rows[:3]}"

    none("SELECT d.name, d.n_examples, count(e.id) FROM datasets d "
         "LEFT JOIN examples e ON e.dataset_id = d.id GROUP BY d.name, d.n_examples "
         "HAVING count(e.id) <> d.n_examples", "a dataset row disagrees with its examples")
    none("SELECT id FROM examples WHERE dataset_id NOT IN (SELECT id FROM datasets)",
         "examples without their dataset")
    none("SELECT id FROM examples WHERE source_sha256 NOT IN (SELECT sha256 FROM sources)",
         "examples without their source")
    # n_steps counts actions: a trajectory has that many observations, or one more
    none("SELECT e.id FROM examples e WHERE n_steps IS NOT NULL AND (SELECT count(*) "
         "FROM demo_steps s WHERE s.example_id = e.id) NOT IN (n_steps, n_steps + 1)",
         "a demonstration without all its steps")
    none("SELECT DISTINCT example_id FROM demo_steps "
         "WHERE example_id NOT IN (SELECT id FROM examples)", "steps without their example")
    none("SELECT model FROM model_versions GROUP BY model HAVING max(version) <> count(*)",
         "a gap in a model's version numbers")
    none("SELECT seq FROM ledger WHERE kind = 'release' AND "
         "json_extract(payload, '$.release_id')::INTEGER NOT IN (SELECT id FROM releases)",
         "a ledger release row without its release")
    none("SELECT key_id FROM trust WHERE key_id NOT IN (SELECT "
         "json_extract_string(payload, '$.key_id') FROM ledger "
         "WHERE kind IN ('trust-owner', 'trust-add'))", "a trusted key the ledger never saw")
    none("SELECT seq FROM review_log WHERE signature IS NULL", "an unsigned review row")
    none("SELECT seq FROM ledger WHERE kind = 'release-request' AND "
         "json_extract(payload, '$.release_id')::INTEGER NOT IN (SELECT id FROM release_requests)",
         "a ledger request row without its request")
    none("SELECT id FROM release_requests WHERE ledger_seq NOT IN "
         "(SELECT seq FROM ledger WHERE kind = 'release-request')",
         "a release request without its ledger row")
    none("SELECT seq FROM ledger WHERE kind IN ('release-approve', 'release-reject') AND "
         "json_extract(payload, '$.release_id')::INTEGER NOT IN (SELECT id FROM release_requests)",
         "an approval or rejection of no request")
    owners = ws.execute("SELECT count(*) FROM ledger WHERE kind = 'trust-owner'").fetchone()[0]
    assert owners == 1, f"{owners} owner rows"


def check_edits(ws: Workspace, acks: list[dict], base: Template, kills: int) -> int:
    """Every acknowledged change is in the log as acknowledged; at most one batch
    more per kill (committed, killed before it was acknowledged)."""
    for a in acks:
        row = ws.execute("SELECT example_id, field, new, action FROM review_log WHERE seq = ?",
                         [a["seq"]]).fetchall()
        assert row, f"acknowledged review change {a['seq']} is lost"
        example_id, field_name, new, action = row[0]
        assert (example_id, field_name, json.loads(new), action) == \
            (a["example_id"], a["field"], a["new"], a["action"])
    seqs = [a["seq"] for a in acks]
    assert seqs == sorted(set(seqs)) and (not seqs or seqs[0] > base.review_rows)
    extra = ws.execute("SELECT count(*) FROM review_log").fetchone()[0] \
        - base.review_rows - len(acks)
    assert 0 <= extra <= worker.MAX_EDIT_BATCH * kills
    return extra


def check_import(ws: Workspace, acks: list[dict], base: Template, kills: int) -> int:
    for a in acks:
        row = ws.execute("SELECT n_examples, source_sha256 FROM datasets WHERE name = ?",
                         [a["dataset"]]).fetchall()
        assert row, f"acknowledged dataset {a['dataset']} is lost"
        assert row[0] == (a["imported"], a["source_sha256"]) and a["imported"] == \
            worker.IMPORT_RECORDS
    extra = ws.execute("SELECT count(*) FROM datasets").fetchone()[0] - base.datasets - len(acks)
    assert 0 <= extra <= kills
    return extra


def check_train(ws: Workspace, acks: list[dict], base: Template, kills: int) -> int:
    for a in acks:
        row = ws.execute("SELECT sha256 FROM model_versions WHERE model = ? AND version = ?",
                         [a["model"], a["version"]]).fetchall()
        assert row == [(a["sha256"],)], f"acknowledged version {a['model']}@{a['version']} is lost"
    extra = ws.execute("SELECT count(*) FROM model_versions").fetchone()[0] \
        - base.versions - len(acks)
    assert 0 <= extra <= kills
    return extra


def check_release(ws: Workspace, acks: list[dict], base: Template, kills: int) -> int:
    found = releases.list_releases(ws, worker.RELEASE_MODEL)
    by_id = {r.id: r for r in found}
    for a in acks:
        assert a["release_id"] in by_id, f"acknowledged release {a['release_id']} is lost"
        rel = by_id[a["release_id"]]
        assert (rel.version, rel.ledger_seq) == (a["version"], a["ledger_seq"])
    extra = len(found) - base.releases - len(acks)
    assert 0 <= extra <= kills
    if found:  # the newest release is the current one (the ledger agrees)
        assert releases.current_release(ws, worker.RELEASE_MODEL).id == found[-1].id
    return extra


def check_merge(ws: Workspace, acks: list[dict], base: Template, kills: int) -> int:
    """The peer's rows here are exactly those of one whole bundle (nothing
    half-merged), at least of the last acknowledged one, at most one more per kill."""
    here = {r[0] for r in ws.execute("SELECT row_hash FROM review_log WHERE key_id = "
                                     "(SELECT key_id FROM trust WHERE name = 'crash-peer')"
                                     ).fetchall()}
    n = len(here)
    assert n in (0, *base.boundaries), f"{n} of the peer's rows: a bundle was half-merged"
    assert here == set(base.peer_rows[:n]), "the peer's rows here are not a bundle's"
    acked = max((base.boundaries[a["bundle"]] for a in acks), default=0)
    assert n >= acked, f"acknowledged merges are lost ({n} rows, {acked} acknowledged)"
    extra = (base.boundaries.index(n) + 1 if n else 0) - \
        (base.boundaries.index(acked) + 1 if acked else 0)
    assert 0 <= extra <= kills
    return extra


def check_approve(ws: Workspace, acks: list[dict], base: Template, kills: int) -> int:
    """Every acknowledged request, approval, completion and rejection is there;
    at most one request more per kill."""
    history = {r.id: r for r in releases.release_history(ws, worker.RELEASE_MODEL)}
    approved = {(d.release_id, d.key_id) for d in release_requests.decisions(ws)
                if d.decision == "approve"}
    for a in acks:
        rel = history.get(a["release_id"])
        assert rel is not None, f"acknowledged release request {a['release_id']} is lost"
        if a["step"] == "request":
            assert release_requests.get(ws, rel.id).ledger_seq == a["ledger_seq"]
        elif a["step"] == "approve":
            assert (rel.id, a["key_id"]) in approved, f"approval of {rel.id} is lost"
        elif a["step"] == "complete":
            assert rel.status != "pending" and rel.ledger_seq == a["ledger_seq"]
        else:
            assert rel.status == "rejected", f"rejection of {rel.id} is lost"
    requested = sum(a["step"] == "request" for a in acks)
    extra = len(release_requests.all_requests(ws)) - requested
    assert 0 <= extra <= kills
    assert sum(r.status == "pending" for r in history.values()) <= 1
    return extra


CHECKS: dict[str, Callable[[Workspace, list[dict], Template, int], int]] = {
    "edits": check_edits, "import": check_import, "train": check_train,
    "release": check_release, "approve": check_approve, "merge": check_merge}


# -- the kill cycles ------------------------------------------------------------------

@dataclass
class Tally:
    kills: int = 0
    moments: dict[str, int] = field(default_factory=lambda: {
        "opening": 0, "mid-transaction": 0, "between": 0})
    opening_with_wal: int = 0  # killed while replaying the WAL a previous kill left
    checkpointing: int = 0  # kills of a child that checkpoints at every commit
    acknowledged: int = 0
    committed_unacknowledged: int = 0
    seconds: float = 0.0

    def line(self, op: str) -> str:
        m = self.moments
        return (f"crash safety [{op}]: {self.kills} kills survived: {m['mid-transaction']} "
                f"mid-transaction, {m['between']} between transactions, {m['opening']} while "
                f"opening ({self.opening_with_wal} of them with a WAL to replay); "
                f"{self.checkpointing} with a checkpoint at every commit; "
                f"{self.acknowledged} acknowledged units all kept; "
                f"{self.committed_unacknowledged} committed but not yet acknowledged at "
                f"the kill; {self.seconds:.1f} s")


def _copy_workspace(src: Path, dst_folder: Path) -> Path:
    """The file and its WAL, as the crash left them (same names, another folder)."""
    dst_folder.mkdir(exist_ok=True)
    for f in (src, src.with_name(src.name + ".wal")):
        if f.exists():
            shutil.copyfile(f, dst_folder / f.name)
    return dst_folder / src.name


def kill_cycles(op: str, template: Template, crash_worker: Worker, tmp_path: Path) -> Tally:
    """KILLS_PER_OPERATION kills in chains: each child of a chain carries on from the
    file (and WAL) the previous kill left, so later kills can land in WAL replay.
    After every kill a copy of the file is opened and checked (opening the file
    itself would checkpoint the WAL away)."""
    rng = random.Random(f"{SEED}:{op}")
    tally = Tally()
    start = time.monotonic()
    for chain in range(KILLS_PER_OPERATION // KILLS_PER_CHAIN):
        folder = tmp_path / f"{op}-{chain}"
        folder.mkdir()
        path = folder / "ws.duckdb"
        shutil.copyfile(template.path, path)
        small_checkpoints = chain % 2 == 1
        acks: list[dict[str, Any]] = []
        for kill in range(1, KILLS_PER_CHAIN + 1):
            had_wal = path.with_name(path.name + ".wal").exists()
            out = folder / f"child-{kill}.out"
            after = TIMED_FROM[kill % len(TIMED_FROM)]
            delay = rng.uniform(*(IN_TRANSACTION if after == "T+" else DELAY_RANGE[op]))
            answer = crash_worker.kill_after(op, path, out, rng.randrange(2 ** 31), delay,
                                             small_checkpoints, bundles=list(template.bundles),
                                             after=after)
            errors = Path(f"{out}.err").read_text()
            assert answer["killed"], f"the {op} child ended before the kill:\n{errors}"
            assert "Traceback" not in errors, errors
            child = read_child_log(out)
            acks += child.acks
            where = f"{op} chain {chain} kill {kill} ({child.moment})"
            with Workspace.open(_copy_workspace(path, folder / "check")) as ws:
                report = verify_workspace(ws)
                assert report.ok, f"{where}: {report.failures}"
                assert_nothing_half_made(ws)
                extra = CHECKS[op](ws, acks, template, kill)
                # and work goes on after the crash
                ledger.append(ws, "crash-check", {"op": op, "chain": chain}, actor="test")
                assert ledger.verify_ledger(ws) is None, where
            shutil.rmtree(folder / "check")
            tally.kills += 1
            tally.moments[child.moment] += 1
            tally.opening_with_wal += child.moment == "opening" and had_wal
            tally.checkpointing += small_checkpoints
            tally.acknowledged += len(child.acks)
        tally.committed_unacknowledged += extra
        shutil.rmtree(folder)  # passed: keep the disk small
    tally.seconds = time.monotonic() - start
    return tally


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash worker forks its children")
@pytest.mark.parametrize("op", ["edits", "import", "train", "release", "approve", "merge"])
def test_sigkill_never_loses_or_half_makes(op, template, approval_template, crash_worker,
                                          tmp_path, record_property):
    base = approval_template if op == "approve" else template
    tally = kill_cycles(op, base, crash_worker, tmp_path)
    record_property("kills", tally.kills)
    record_property("kill_moments", json.dumps(tally.moments))
    record_property("kills_opening_with_wal", tally.opening_with_wal)
    record_property("acknowledged", tally.acknowledged)
    print("\n" + tally.line(op))
    assert tally.kills >= 30
    # The kills must have hit the work itself, not only its start-up: some
    # inside transactions (training spends most of its time fitting, outside
    # them), and units acknowledged (whose keeping the checks above proved)
    # for at least every other kill.
    assert tally.moments["mid-transaction"] > 0
    assert tally.acknowledged >= tally.kills // 2


# -- the schema-upgrade notice --------------------------------------------------------

def _make_v1_workspace(path: Path) -> None:
    """A workspace as schema v1 wrote it."""
    make_old_workspace(path, 1)



def test_cli_names_the_backup_when_it_upgrades_a_workspace(tmp_path, capsys):
    assert CURRENT_VERSION > 1
    path = tmp_path / "old.duckdb"
    _make_v1_workspace(path)
    data = tmp_path / "labels.jsonl"
    worker.write_jsonl(data, worker.label_records("cli", 4))

    code = main(["--workspace", str(path), "--json", "import", "labels", str(data),
                 "--name", "x"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["imported"] == 4  # stdout is still one JSON object
    backup = path.with_name("old.duckdb.v1.bak")
    assert captured.err == (f"upgraded workspace schema v1 -> v{CURRENT_VERSION}; "
                            f"the old file is backed up at {backup}\n")
    old = duckdb.connect(str(backup), read_only=True)
    try:
        assert old.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
            == ("1",)
        assert old.execute("SELECT count(*) FROM datasets").fetchone() == (0,)  # as it was
    finally:
        old.close()
    with Workspace.open(path, read_only=True) as ws:
        assert ws.schema_version == CURRENT_VERSION

    assert main(["--workspace", str(path), "datasets"]) == 0
    assert capsys.readouterr().err == ""  # no upgrade, no notice


def test_cli_upgrade_notice_comes_before_a_later_error(tmp_path, capsys):
    path = tmp_path / "old.duckdb"
    _make_v1_workspace(path)
    code = main(["--workspace", str(path), "label", "999", "--note", "n", "--reason", "r"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err[0].startswith("upgraded workspace schema v1 -> ") and "old.duckdb.v1.bak" in err[0]
    assert err[1].startswith("error: ") and "999" in err[1]
