"""`verify`: recompute every hash the workspace depends on.

Checks the review log's hash chain, that the cached review state follows from
the log, the ledger's hash chain and every release signature, and that every
stored artifact (ONNX models, tokenizers) still has the sha256 it is filed
under. Names the first row or artifact that does not match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workstation import releases, review
from workstation.hashing import sha256_bytes
from workstation.workspace import Workspace


@dataclass
class VerifyReport:
    ok: bool
    failures: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"ok": self.ok, "failures": self.failures, "checked": self.checked}


def verify_workspace(ws: Workspace) -> VerifyReport:
    failures: list[str] = []
    for check in (review.verify_chain, review.verify_state, verify_blobs, verify_model_refs,
                  releases.verify_releases):
        problem = check(ws)
        if problem:
            failures.append(problem)
    checked = {
        "review_log_rows": ws.execute("SELECT count(*) FROM review_log").fetchone()[0],
        "artifacts": ws.execute("SELECT count(*) FROM blobs").fetchone()[0],
        "model_versions": ws.execute("SELECT count(*) FROM model_versions").fetchone()[0],
        "ledger_rows": ws.execute("SELECT count(*) FROM ledger").fetchone()[0],
        "releases": ws.execute("SELECT count(*) FROM releases").fetchone()[0],
    }
    return VerifyReport(not failures, failures, checked)


def verify_blobs(ws: Workspace) -> str | None:
    """Each stored artifact must hash to the name it is stored under."""
    cur = ws.cursor()
    cur.execute("SELECT sha256, data FROM blobs ORDER BY sha256")
    while row := cur.fetchone():
        if sha256_bytes(row[1]) != row[0]:
            return f"artifact {row[0][:12]}… does not match its sha256 (changed after it was stored)"
    return None


def verify_model_refs(ws: Workspace) -> str | None:
    """Every model version must point at a stored artifact."""
    row = ws.execute(
        "SELECT model, version, sha256 FROM model_versions "
        "WHERE sha256 NOT IN (SELECT sha256 FROM blobs) ORDER BY id LIMIT 1").fetchone()
    if row:
        return f"model {row[0]}@{row[1]}: its ONNX artifact {row[2][:12]}… is missing"
    return None
