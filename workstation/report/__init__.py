"""The audit report: a signed, self-contained hand-over of an audit as HTML,
PDF or JSON, built headless from the workspace.

``build_report`` gathers the content (``content``), renders it (``html``,
``pdf``, or the JSON form), signs the bytes with the analyst's identity
(``sign``) and writes the file; ``verify_report`` checks a file offline.
Modules: ``content`` (which runs, the whole structure), ``provenance``,
``figures`` (metrics and plot data), ``holm``, ``findings`` (probes),
``review_summary``, ``regression_section``, ``coverage_section``, ``limits``,
``reproduce``, ``summary``, ``document`` (the shared layout), ``plots``,
``html``, ``pdf``, ``sign``.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workstation.errors import WorkstationError
from workstation.progress import Progress
from workstation.report.sign import ReportCheck, signed_file, verify_report

FORMATS = ("html", "pdf", "json")

__all__ = ["FORMATS", "ReportCheck", "ReportWritten", "build_report", "format_of", "render",
           "verify_report"]


@dataclass(frozen=True)
class ReportWritten:
    """What ``build_report`` wrote."""

    path: str
    format: str
    model: str
    runs: list[int]
    bytes: int
    key_id: str
    signer: str
    content_sha256: str
    seconds: float
    limits: int
    summary: str
    pages: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def format_of(path: str | os.PathLike, given: str | None = None) -> str:
    """The report format: ``given``, else the file's extension."""
    fmt = (given or Path(path).suffix.lstrip(".")).lower()
    if fmt == "htm":
        fmt = "html"
    if fmt not in FORMATS:
        raise WorkstationError(f"cannot tell the report format from '{Path(path).name}': name "
                               f"it .html, .pdf or .json, or pass --format html|pdf|json")
    return fmt


def render(content: dict[str, Any], fmt: str) -> bytes:
    """The unsigned bytes of ``content`` as ``fmt`` (JSON: empty; sign writes it)."""
    if fmt == "html":
        from workstation.report.html import render_html

        return render_html(content)
    if fmt == "pdf":
        from workstation.report.pdf import render_pdf

        return render_pdf(content)
    return b""


def build_report(ws: Any, model_ref: str, out: str | os.PathLike, *, fmt: str | None = None,
                 datasets: list[str] | None = None, run_ids: list[int] | None = None,
                 signer: Any = None, progress: Progress | None = None, encoder: Any = None,
                 regression: bool = True, overwrite: bool = True) -> ReportWritten:
    """Gather, render, sign and write the report of ``model_ref`` to ``out``."""
    from workstation import identity
    from workstation.report.content import gather
    from workstation.report.sign import content_sha256

    started = time.perf_counter()
    progress = progress or Progress()
    fmt = format_of(out, fmt)
    signer = identity.require_signer(signer)
    path = Path(out)
    if path.exists() and not overwrite:
        raise WorkstationError(f"{path} already exists; choose another path")
    content = gather(ws, model_ref, datasets=datasets, run_ids=run_ids, progress=progress,
                     encoder=encoder, regression=regression, out_name=path.name,
                     prepared_by={"name": signer.name, "key_id": signer.key_id})
    progress.stage_start(f"writing the {fmt.upper()} report")
    progress.check()
    body = render(content, fmt)
    progress.check()
    data = signed_file(fmt, body, content, signer)
    _write(path, data)
    return ReportWritten(str(path), fmt, content["scope"]["model"]["ref"],
                         content["runs"]["audit"] + content["runs"]["probe"], len(data),
                         signer.key_id, signer.name, content_sha256(content),
                         round(time.perf_counter() - started, 3), len(content["limits"]),
                         content["summary"]["text"], _pages(data) if fmt == "pdf" else None)


def _write(path: Path, data: bytes) -> None:
    """Write through a temporary file, so a failed write leaves no half report."""
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WorkstationError(f"cannot write {path}: {exc.strerror or exc}") from None


def _pages(data: bytes) -> int:
    """Pages of a PDF we wrote (counted from its page objects)."""
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))
