"""Review bundles: an analyst's review rows carried to another copy of the
workspace (another laptop) and merged there, offline.

A bundle is one UTF-8 JSON-lines file::

    {"format": "workstation.review-bundle/1", "dataset": {name, kind, content_hash,
     n_examples}, "log_head": {seq, hash}, "exported_by": {name, key_id},
     "exported_at", "n_rows"}
    {one review row: source_sha256, source_index, field, old, new, reason, analyst,
     key_id, time, action, target_hash, row_hash, signature}     (n_rows lines)
    {"sha256": <of every byte above>, "key_id": <exporter>, "signature": <hex>}

Each row keeps its author's own signature over its row hash (which names the
example by its source file and index, not a local id: workstation.review_rows);
the last line is the exporter's signature over the sha256 of the lines above
(Ed25519 over the hex text, like a row's). ``log_head`` is the exporter's
review-log head when the bundle was cut; ``content_hash`` names the dataset's
content (kind, source file, every example), so a bundle for other data is
refused.

``merge`` checks a bundle against the local trust store (the exporter and
every author must be trusted here, not revoked, and authors must hold the
role their rows need, now), the dataset's content, every row hash and
signature, and refuses with one line and the workspace unchanged; otherwise
it appends the rows it does not have yet (by row hash: merging twice changes
nothing), in one transaction, chained to the local log.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from workstation import review, review_rows, review_state, trust
from workstation.conflicts import dataset_id
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json, sha256_bytes, sha256_text
from workstation.identity import Signer, require_signer
from workstation.progress import Progress
from workstation.workspace import Workspace, now_iso

FORMAT = "workstation.review-bundle/1"
MAX_BYTES = 1 << 30   # a bundle is text rows; a larger file is not one
ROW_KEYS = review_rows.CONTENT + ("row_hash", "signature")
ACTIONS = ("edit", "undo", "redo", "adjudicate")


@dataclass
class ExportReport:
    path: str
    dataset: str
    content_hash: str
    log_head: dict[str, Any]
    rows: int
    analysts: list[str]
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BundleMerge:
    path: str
    dataset: str
    exported_by: str
    exporter_key_id: str
    rows: int
    added: int
    already_here: int


@dataclass
class MergeReport:
    bundles: list[BundleMerge] = field(default_factory=list)
    added: int = 0
    already_here: int = 0
    examples: int = 0
    conflicts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"bundles": [asdict(b) for b in self.bundles], "added": self.added,
                "already_here": self.already_here, "examples": self.examples,
                "conflicts": self.conflicts}


# -- the dataset's content -----------------------------------------------------

def content_hash(ws: Workspace, dataset: int) -> str:
    """sha256 of a dataset's content: its kind, source file and every example
    (source index, texts, label, category, steps), in source order."""
    kind, source, n = ws.execute("SELECT kind, source_sha256, n_examples FROM datasets "
                                 "WHERE id = ?", [dataset]).fetchall()[0]
    digest = ws.execute(
        "SELECT coalesce(sha256(string_agg(sha256(to_json(struct_pack(i := source_index, "
        "s := source_sha256, p := prompt, c := chosen, r := rejected, t := response, "
        "l := label, k := category, n := n_steps))::VARCHAR), '' ORDER BY source_index, "
        "source_sha256)), '') FROM examples WHERE dataset_id = ?", [dataset]).fetchall()[0][0]
    return sha256_text(canonical_json({"kind": kind, "source_sha256": source, "n_examples": n,
                                       "examples": digest}))


# -- export ------------------------------------------------------------------------

def export(ws: Workspace, dataset: str, path: str | Path, *, signer: Signer | None = None,
           every_author: bool = False) -> ExportReport:
    """Write the signer's own signed review rows of ``dataset`` (``every_author``:
    every signed row of it, each with its author's signature) to ``path``."""
    signer = require_signer(signer)
    did = dataset_id(ws, dataset)
    kind, n = ws.execute("SELECT kind, n_examples FROM datasets WHERE id = ?",
                         [did]).fetchall()[0]
    who = "" if every_author else " AND r.key_id = ?"
    rows = ws.execute(
        f"SELECT {', '.join('e.' + c if c.startswith('source_') else 'r.' + c for c in ROW_KEYS)}"
        " FROM review_log r JOIN examples e ON e.id = r.example_id WHERE e.dataset_id = ? "
        f"AND r.signature IS NOT NULL{who} ORDER BY r.seq",
        [did] + ([] if every_author else [signer.key_id])).fetchall()
    head = ws.execute("SELECT seq, hash FROM review_log ORDER BY seq DESC LIMIT 1").fetchall()
    header = {"format": FORMAT,
              "dataset": {"name": dataset, "kind": kind, "content_hash": content_hash(ws, did),
                          "n_examples": n},
              "log_head": {"seq": head[0][0], "hash": head[0][1]} if head else
              {"seq": 0, "hash": ""},
              "exported_by": {"name": signer.name, "key_id": signer.key_id},
              "exported_at": now_iso(), "n_rows": len(rows)}
    lines = [canonical_json(header)] + [canonical_json(dict(zip(ROW_KEYS, r))) for r in rows]
    body = ("\n".join(lines) + "\n").encode("utf-8")
    digest = sha256_bytes(body)
    seal = {"sha256": digest, "key_id": signer.key_id, "signature": signer.sign_hash(digest)}
    data = body + (canonical_json(seal) + "\n").encode("utf-8")
    _write(Path(path), data)
    return ExportReport(str(path), dataset, header["dataset"]["content_hash"], header["log_head"],
                        len(rows), sorted({r[ROW_KEYS.index("analyst")] for r in rows}),
                        sha256_bytes(data))


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WorkstationError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- reading -----------------------------------------------------------------------

@dataclass
class Bundle:
    path: str
    header: dict[str, Any]
    rows: list[dict[str, Any]]
    seal: dict[str, Any]


def read(path: str | Path) -> Bundle:
    """Parse a bundle file (nothing checked against a workspace yet)."""
    name = Path(path).name
    try:
        size = Path(path).stat().st_size
        if size > MAX_BYTES:
            raise WorkstationError(f"{name} is {size:,} bytes: too large for a review bundle")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WorkstationError(f"cannot read {path}: {exc.strerror or exc}") from None
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    try:
        seal = json.loads(last)
        lines = [json.loads(line) for line in body.split(b"\n")]
    except (ValueError, UnicodeDecodeError):
        raise WorkstationError(f"{name} is not a review bundle (or was changed: it does not "
                               "parse)") from None
    if not lines or not isinstance(seal, dict) or not all(isinstance(x, dict) for x in lines) \
            or lines[0].get("format") != FORMAT:
        raise WorkstationError(f"{name} is not a review bundle ({FORMAT})")
    if seal.get("sha256") != sha256_bytes(body + b"\n"):
        raise WorkstationError(f"{name} was changed after it was signed (its content does not "
                               "match the sha256 its exporter signed)")
    header, rows = lines[0], lines[1:]
    if header.get("n_rows") != len(rows) or any(set(r) != set(ROW_KEYS) for r in rows):
        raise WorkstationError(f"{name} is not a well-formed review bundle")
    return Bundle(str(path), header, rows, seal)


# -- merge -------------------------------------------------------------------------

def merge(ws: Workspace, paths: Iterable[str | Path], progress: Progress | None = None
          ) -> MergeReport:
    """Merge bundles into this workspace, all or nothing (see the module doc)."""
    bundles = [read(p) for p in paths]
    if not bundles:
        raise WorkstationError("no bundle to merge")
    progress = progress or Progress()
    report = MergeReport()
    touched: set[int] = set()
    with ws.transaction(appends=("review_log",)):
        line = trust.timeline(ws)
        now = now_iso()
        progress.stage_start("merging review bundles", len(bundles))
        for k, bundle in enumerate(bundles):
            progress.check()
            report.bundles.append(_merge_one(ws, bundle, line, now, touched))
            progress.step(k + 1, len(bundles))
        review_state.refresh(ws, touched)
        report.added = sum(b.added for b in report.bundles)
        report.already_here = sum(b.already_here for b in report.bundles)
        report.examples = len(touched)
        if touched:
            report.conflicts = int(ws.execute(
                "SELECT count(*) FROM label_decisions WHERE open_conflict AND example_id IN "
                f"({', '.join(map(str, sorted(touched)))})").fetchall()[0][0])
    return report


def _merge_one(ws: Workspace, bundle: Bundle, line: trust.Timeline, now: str,
               touched: set[int]) -> BundleMerge:
    name = Path(bundle.path).name
    _check_seal(bundle, line, now, name)
    did = _local_dataset(ws, bundle, name)
    kind = ws.execute("SELECT kind FROM datasets WHERE id = ?", [did]).fetchall()[0][0]
    examples = {(s, i): e for e, s, i in ws.execute(
        "SELECT id, source_sha256, source_index FROM examples WHERE dataset_id = ?",
        [did]).fetchall()}
    known = {h: s for s, h in ws.execute(
        "SELECT seq, coalesce(row_hash, hash) FROM review_log WHERE example_id IN "
        "(SELECT id FROM examples WHERE dataset_id = ?)", [did]).fetchall()}
    added = 0
    for n, row in enumerate(bundle.rows, start=1):
        where = f"{name}, row {n}"
        _check_row(row, kind, line, now, where, verify=row.get("row_hash") not in known)
        if row["row_hash"] in known:
            continue
        example_id = examples.get((row["source_sha256"], row["source_index"]))
        if example_id is None:
            raise WorkstationError(f"{where}: names example {row['source_index']} of source "
                                   f"{str(row['source_sha256'])[:12]}…, which is not here")
        target = None
        if row["target_hash"] is not None:
            target = known.get(row["target_hash"])
            if target is None:
                raise WorkstationError(f"{where}: its target row is neither here nor earlier "
                                       "in the bundle")
        entry = {k: row[k] for k in ROW_KEYS}
        entry["example_id"] = example_id
        review.insert(ws, entry, target)
        known[row["row_hash"]] = entry["seq"]
        touched.add(example_id)
        added += 1
    exporter = bundle.header.get("exported_by") or {}
    return BundleMerge(bundle.path, bundle.header["dataset"]["name"], str(exporter.get("name")),
                       str(bundle.seal["key_id"]), len(bundle.rows), added,
                       len(bundle.rows) - added)


def _check_seal(bundle: Bundle, line: trust.Timeline, now: str, name: str) -> None:
    key_id = str(bundle.seal.get("key_id"))
    problem = _key_problem(line, key_id, now, None, "the bundle")
    if problem is None and line.check_signature(key_id, now, bundle.seal["sha256"],
                                                str(bundle.seal.get("signature"))):
        problem = f"the bundle's signature does not verify with key {key_id}"
    if problem:
        raise WorkstationError(f"{name}: {problem}")


def _key_problem(line: trust.Timeline, key_id: str, now: str, role: str | None,
                 what: str) -> str | None:
    """Why rows signed by ``key_id`` cannot be taken in now, or None (the
    signature itself is checked apart)."""
    status = line.status(key_id, now)
    if not status.known:
        return (f"{what} is signed by key {key_id}, which is not in this workspace's trust "
                "store (an approver adds it with `workstation trust add`)")
    if status.revoked_at is not None:
        return f"{what} is signed by key {key_id}, revoked here at {status.revoked_at}"
    if role is not None and role not in status.roles:
        return f"{what} is signed by key {key_id}, which is not trusted as {role} here"
    return None


def _local_dataset(ws: Workspace, bundle: Bundle, name: str) -> int:
    wanted = bundle.header.get("dataset") or {}
    candidates = ws.execute("SELECT id, name FROM datasets WHERE kind = ? ORDER BY name <> ?, id",
                            [wanted.get("kind"), wanted.get("name")]).fetchall()
    for did, _ in candidates:
        if content_hash(ws, did) == wanted.get("content_hash"):
            return did
    raise WorkstationError(
        f"{name} is for dataset '{wanted.get('name')}' with content "
        f"{str(wanted.get('content_hash'))[:12]}…, which no dataset here has")


def _check_row(row: dict[str, Any], kind: str, line: trust.Timeline, now: str,
               where: str, verify: bool) -> None:
    """The row's shape, hash and author's standing here; its signature when
    ``verify`` (a row already here was verified when it came)."""
    if row["action"] not in ACTIONS or row["field"] not in review.FIELDS \
            or kind not in review.FIELDS[row["field"]]:
        raise WorkstationError(f"{where}: not a review row of a {kind} dataset")
    if review_rows.row_hash(row) != row["row_hash"]:
        raise WorkstationError(f"{where}: its content does not match its row hash")
    role = "adjudicator" if row["action"] == "adjudicate" else "reviewer"
    key_id = str(row["key_id"])
    problem = _key_problem(line, key_id, now, role, f"the row by {row['analyst']}") or (
        verify and line.check_signature(key_id, now, row["row_hash"], str(row["signature"])))
    if problem:
        raise WorkstationError(f"{where}: {problem}")
