"""``model quantize``: an int8 copy of a registered model as a new version, with
a parity report against its parent stored in its manifest.

The new version keeps the parent's input kind, tokenizer, input settings,
output, column and score type; its manifest gains ``lineage`` (``method``
"quantize-int8", ``parent``; a trained parent's training record is kept, so
that held-out figures use the same split) and ``quantization``: the recipe,
both sizes, and ``parity`` measured on one dataset at the current review
head: the parent's and the new version's audits (the parent's latest audit
there is reused when it is at this head, else the parent is audited too),
Spearman's rho between their scores, the largest score difference, and each
headline metric of both audits with its delta (held-out figures, as audits
report them).

Any input kind may be quantized when its graph holds float MatMul, Gemm or
Attention weights: a small head over embeddings gains little, and the parity
report says what it costs. Refused in one line: an already quantized graph,
a graph without such weights, and a patched version (its kernels would be
quantized with it and no longer match their patch records).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from workstation.errors import WorkstationError
from workstation.models import int8
from workstation.models.registry import (ModelVersion, add_model_bytes, load_onnx,
                                         load_tokenizer_json, resolve)
from workstation.progress import Progress
from workstation.workspace import Workspace

METHOD = "quantize-int8"
# Headline metrics whose change the parity report gives (those the audits have).
COMPARED = ("auroc", "pairwise_accuracy", "accuracy", "trajectory_pass_rate")


@dataclass
class QuantizeResult:
    """What ``quantize_model`` made: the new version and its parity report."""

    version: ModelVersion
    parent: ModelVersion
    quantization: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.version.model, "version": self.version.version,
                "ref": self.version.ref, "parent": self.parent.ref,
                "sha256": self.version.sha256, "quantization": self.quantization}


def quantize_model(ws: Workspace, ref: str | int | ModelVersion, *, dataset: str | None = None,
                   notes: str = "", analyst: str | None = None, encoder: Any = None,
                   progress: Progress | None = None) -> QuantizeResult:
    """Register an int8 copy of ``ref`` as the next version of its model and
    measure its parity on ``dataset`` (default: the dataset of the parent's
    latest audit). Nothing is stored when any step fails or is cancelled."""
    progress = progress or Progress()
    parent = resolve(ws, ref)
    _check_not_patched(parent)
    source = load_onnx(ws, parent)
    int8.check_quantizable(onnx.load_from_string(source), parent.ref)
    dataset_name = dataset or _latest_audited_dataset(ws, parent)
    progress.stage_start("quantizing to int8")
    data = int8.quantize_bytes(source)
    progress.check()
    with ws.transaction():
        version = _register(ws, parent, data, notes, analyst, encoder)
        # The parent's input settings as they are (text format, chat template,
        # maximum length, pooling): the int8 graph takes the same inputs.
        version = _update_manifest(ws, version, input=parent.manifest["input"])
        parity = measure_parity(ws, parent, version, dataset_name, encoder, progress)
        quantization = {"method": METHOD, "recipe": int8.RECIPE,
                        "size_bytes": len(data), "parent_size_bytes": len(source),
                        "onnxruntime": _ort_version(), "parity": parity}
        version = _update_manifest(ws, version, quantization=quantization)
    return QuantizeResult(version, parent, quantization)


def _check_not_patched(parent: ModelVersion) -> None:
    if parent.manifest.get("patches"):
        raise WorkstationError(
            f"{parent.ref} carries patches ({', '.join(parent.manifest['patches'])}); quantize "
            f"its unpatched version {parent.manifest.get('patch_root')} and patch the int8 one")


def _latest_audited_dataset(ws: Workspace, parent: ModelVersion) -> str:
    rows = ws.execute("SELECT d.name FROM audit_runs r JOIN datasets d ON d.id = r.dataset_id "
                      "WHERE r.kind = 'audit' AND r.model_version_id = ? ORDER BY r.id DESC "
                      "LIMIT 1", [parent.id]).fetchall()
    if not rows:
        raise WorkstationError(f"{parent.ref} has no audit to compare the int8 version with: "
                               f"give --dataset NAME to measure its parity on")
    return rows[0][0]


def _register(ws: Workspace, parent: ModelVersion, data: bytes, notes: str,
              analyst: str | None, encoder: Any) -> ModelVersion:
    m = parent.manifest
    lineage = dict(m.get("lineage") or {}) if isinstance(m.get("lineage"), dict) else {}
    lineage.update(method=METHOD, parent=parent.ref)
    extras = {"lineage": lineage}
    if parent.input_kind == "text-embedding":
        encoder = encoder if encoder is not None else _encoder_named(m["input"].get("encoder"))
    return add_model_bytes(
        ws, data, parent.model, parent.input_kind, source=f"{parent.ref} quantized to int8",
        output=m["output"], column=m.get("column"), parent=parent,
        notes=notes or f"int8 dynamic quantization of {parent.ref}", analyst=analyst,
        tokenizer=load_tokenizer_json(ws, parent), encoder=encoder,
        score_type=m["score_type"], extras=extras)


def _encoder_named(encoder_id: str | None) -> Any:
    """The shared encoder the parent was registered for (fp32 or int8)."""
    from workstation.encoder import get_encoder

    for variant in ("fp32", "int8"):
        found = get_encoder(variant=variant)
        if encoder_id is None or found.id == encoder_id:
            return found
    raise WorkstationError(f"the parent was registered for encoder {encoder_id}, which this "
                           f"machine does not have")


def _update_manifest(ws: Workspace, version: ModelVersion, **keys: Any) -> ModelVersion:
    """Set manifest keys of the version registered moments ago, in the same
    transaction: no one can read the version without them."""
    import json

    manifest = {**version.manifest, **keys}
    ws.execute("UPDATE model_versions SET manifest = ? WHERE id = ?",
               [json.dumps(manifest, ensure_ascii=False), version.id])
    return resolve(ws, version.id)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


# -- parity ------------------------------------------------------------------------

def measure_parity(ws: Workspace, parent: ModelVersion, version: ModelVersion, dataset: str,
                   encoder: Any, progress: Progress) -> dict[str, Any]:
    """Audit both versions on ``dataset`` at the current review head and compare."""
    from workstation.audits import run_audit
    from workstation.review import head_hash

    base = _parent_run(ws, parent, dataset, head_hash(ws))
    if base is None:
        base = run_audit(ws, parent, dataset, encoder=_run_encoder(parent, encoder),
                         progress=progress)
    threshold = base.threshold if base.dataset_kind != "pairs" else None
    run = run_audit(ws, version, dataset, threshold=threshold,
                    encoder=_run_encoder(version, encoder), progress=progress)
    joined = _joined_scores(ws, base.id, run.id)
    a, b = _aligned_scores(joined)
    return {"dataset": dataset, "dataset_kind": run.dataset_kind, "review_head": run.review_head,
            "parent_audit_run": base.id, "audit_run": run.id, "n_scores": int(len(a)),
            "spearman": _spearman(a, b),
            "max_abs_score_diff": float(np.max(np.abs(a - b))) if len(a) else 0.0,
            "mean_abs_score_diff": float(np.mean(np.abs(a - b))) if len(a) else 0.0,
            "metrics": _metric_deltas(base.metrics, run.metrics),
            "metrics_cover": (run.membership or {}).get("metrics_cover"),
            **({"pairs_changed": _pairs_changed(joined)}
               if run.dataset_kind == "pairs" else {})}


def _pairs_changed(joined: np.ndarray) -> dict[str, Any]:
    """The pairs whose order the new version changed: now right (chosen above
    rejected where the parent had it not), now wrong, and the standard error
    of the pairwise-accuracy delta they make (paired: only changed pairs
    move it). A near-chance model flips many pairs of tiny margin, and its
    delta is mostly that noise. Counted over every scored pair of the
    dataset; for a version trained here the metric deltas cover its
    held-out pairs only (``metrics_cover``), so the two can differ."""
    scored = ~(np.isnan(joined[:, 1]) | np.isnan(joined[:, 4]))
    before = joined[scored, 1] > joined[scored, 2]
    after = joined[scored, 4] > joined[scored, 5]
    n = len(before)
    right, wrong = int((after & ~before).sum()), int((before & ~after).sum())
    delta = (right - wrong) / n if n else 0.0
    variance = ((right + wrong) / n - delta ** 2) / n if n else 0.0
    return {"over": "every scored pair", "n_pairs": n, "now_right": right, "now_wrong": wrong,
            "delta_standard_error": float(np.sqrt(max(variance, 0.0)))}


def _run_encoder(version: ModelVersion, encoder: Any) -> Any:
    if version.input_kind != "text-embedding":
        return None
    return encoder if encoder is not None else _encoder_named(
        version.manifest["input"].get("encoder"))


def _parent_run(ws: Workspace, parent: ModelVersion, dataset: str, head: str) -> Any:
    """The parent's latest audit on ``dataset`` if it was made at review head ``head``."""
    from workstation.audits import get_run

    rows = ws.execute("SELECT r.id, r.review_head FROM audit_runs r JOIN datasets d "
                      "ON d.id = r.dataset_id WHERE r.kind = 'audit' AND r.model_version_id = ? "
                      "AND d.name = ? ORDER BY r.id DESC LIMIT 1", [parent.id, dataset]).fetchall()
    if not rows or rows[0][1] != head:
        return None
    return get_run(ws, int(rows[0][0]))


def _joined_scores(ws: Workspace, run_a: int, run_b: int) -> np.ndarray:
    """[N, 6]: both runs' score, score_chosen and score_rejected of each
    example in both runs (NaN where a column is null), in example order."""
    rows = ws.execute(
        "SELECT a.score, a.score_chosen, a.score_rejected, b.score, b.score_chosen, "
        "b.score_rejected FROM audit_results a JOIN audit_results b "
        "ON b.example_id = a.example_id AND b.run_id = ? WHERE a.run_id = ? "
        "ORDER BY a.example_id", [run_b, run_a]).fetchall()
    return np.array([[np.nan if v is None else v for v in r] for r in rows],
                    dtype=np.float64).reshape(-1, 6)


def _aligned_scores(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both runs' scores of the same examples (both sides of pairs), in one order."""
    a, b = values[:, :3].T.ravel(), values[:, 3:].T.ravel()
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _metric_deltas(parent: dict[str, Any], quantized: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name in COMPARED:
        p, q = parent.get(name), quantized.get(name)
        if isinstance(p, (int, float)) and isinstance(q, (int, float)):
            out[name] = {"parent": float(p), "quantized": float(q), "delta": float(q) - float(p)}
    return out
