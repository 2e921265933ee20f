"""Creating, removing and listing suppression patches.

``create_patch`` turns selected failure cases into Gaussian suppression
kernels (see ``kernels`` for the rule, ``cases`` for what a case's input is,
``protected`` for what must be spared, ``bandwidths`` for the budget), builds
one ONNX graph (``graph``) and registers it as the next version of the same
model with the patched version as parent. ``remove_patch`` registers a new
version without one patch's kernels ("unlearning" a correction); versions
are never deleted. Both run in one transaction and append a ledger row, so
a refused patch leaves nothing behind.

Which rule a model gets (decided at the first patch on an unpatched root and
kept for every patch stacked on it):

* "bounded" when the score is a probability, or a reward whose manifest
  declares ``score_range`` within [0, 1], or a reward without that key whose
  scores on the protected set and on the flaws all lie in [0, 1];
* "unbounded" otherwise (logits, rewards outside [0, 1]).

Strength: under the bounded rule ``strength`` is each kernel's s in (0, 1]
(default 1: the flaw's reward drops to 0). Under the unbounded rule it is
the patch's scale in score units; by default the scale moves the
worst flaw to its threshold (or below its pair's chosen side) minus a
margin, margin = max(budget, 0.1 · (p95 − p5 of the protected scores)), and
every kernel has s = 1. The budget is in score units too.

The kernel distance is taken on the model's whole input vector: the
observation, the response embedding (layout "response") or the prompt
embedding followed by the response embedding (layout "prompt+response"), so
a text kernel fires only where both prompt and response are near the flaw.
A text-tokens model's kernels sit on its scoring head's input instead, the
model's own feature vector for the (prompt, response) pair (``space``).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from workstation import ledger
from workstation.errors import WorkstationError
from workstation.models.derived import check_same_input, input_kwargs
from workstation.models.registry import ModelVersion, add_model_bytes, load_onnx, resolve
from workstation.patching.bandwidths import fit_bandwidths
from workstation.patching.cases import Flaw, Selection, featurize, select_cases, to_flaws
from workstation.patching.graph import build_patched_model, default_precision
from workstation.patching.kernels import (SuppressionKernel, apply_activations,
                                          kernel_activations, patched_scores)
from workstation.patching.layers import (PatchLayer, current_layer, manifest_extras, plain,
                                         summary)
from workstation.patching.protected import Protected, ProtectedSet, protected_set
from workstation.patching.space import KernelSpace, kernel_space
from workstation.progress import Progress
from workstation.workspace import Workspace, default_analyst, now_iso

# The exported graph must reproduce the core's patched scores this closely.
CHECK_TOLERANCE = 1e-5
_CHECK_PROTECTED = 2000


@dataclass
class PatchResult:
    """What a patch or unpatch call registered: the new version, the patch
    concerned, the kernels kept, the refusals and the metrics."""

    version: ModelVersion
    patch_id: str
    metrics: dict[str, Any]
    kernels: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """What ``patch`` / ``unpatch --json`` print."""
        return {"model": self.version.model, "version": self.version.version,
                "metrics": self.metrics}


# -- creating ------------------------------------------------------------------

def create_patch(ws: Workspace, base_ref: str | int | ModelVersion, *,
                 example_ids: Sequence[int] | None = None, finding_run: int | None = None,
                 finding_ids: Sequence[int] | None = None, budget: float = 0.10,
                 protected: Protected = None, strength: float | None = None,
                 analyst: str | None = None, notes: str = "", progress: Progress | None = None,
                 encoder: Any = None) -> PatchResult:
    """Suppress the selected failure cases of ``base_ref`` with a new patch and
    register the patched model as its child (see the module docstring).

    Raises ``WorkstationError`` naming every reason when no kernel can be
    kept; nothing is registered then."""
    progress = progress or Progress()
    _check_budget(budget)
    version = resolve(ws, base_ref)
    analyst = analyst or default_analyst()
    with ws.transaction():
        layer = current_layer(ws, version)
        space = kernel_space(ws, layer.root)  # refuses a tokens model without a head
        scorer = _Scorer(ws, layer, space)
        progress.stage_start("patch: failure cases")
        selection = select_cases(ws, layer.root, example_ids=example_ids,
                                 finding_run=finding_run, finding_ids=finding_ids)
        featurize(ws, layer.root, selection.cases, encoder)
        flaws = to_flaws(selection.cases, scorer.parent, selection)
        _require(flaws, selection.refused)
        progress.stage_start("patch: protected set")
        guard = protected_set(ws, layer.root, {f.dataset_id for f in flaws
                                               if f.dataset_id is not None}, protected, encoder)
        draft = _draft(layer, scorer, flaws, guard, budget, strength, progress)
        _require(draft.kept, selection.refused + draft.refused)
        progress.stage_start("patch: ONNX graph")
        data = _build_checked(ws, space, layer.kernels() + draft.kernels(), draft.rule,
                              _probe_inputs(layer.kernels() + draft.kernels(), guard))
        record = _record(version, layer, draft, selection, guard, budget, analyst, notes)
        new = _register(ws, version, layer.root, data, layer.records + [record], draft.rule,
                        {"patch": record}, analyst, notes or f"patch {draft.patch_id}")
        ledger.append(ws, "patch-created", _ledger_payload(new, version, record), analyst)
    return PatchResult(new, draft.patch_id, _create_metrics(new, version, layer, record, draft),
                       record["kernels"], record["refused"])


class _Scorer:
    """Scores of model inputs by the root and by the version being patched."""

    def __init__(self, ws: Workspace, layer: PatchLayer, space: KernelSpace) -> None:
        self.runner = space.root_runner(ws)
        self.old = layer.kernels()
        self.rule = layer.rule or "bounded"

    def root(self, x: np.ndarray) -> np.ndarray:
        return self.runner.score_matrix(np.asarray(x, dtype=np.float32))

    def parent(self, x: np.ndarray) -> np.ndarray:
        scores = self.root(x)
        if not self.old:
            return scores
        return apply_activations(scores, kernel_activations(x, self.old), self.old, self.rule)


@dataclass
class _Draft:
    """A patch being made: its rule, scale, kept kernels (with their flaws)
    and refusals, and the measured outcome."""

    patch_id: str
    rule: str
    rule_reason: str
    scale: float
    kept: list[tuple[SuppressionKernel, Flaw]]
    refused: list[dict[str, Any]]
    protected_loss: np.ndarray
    flaw_after: np.ndarray
    suppressed: np.ndarray
    flaws: list[Flaw]

    def kernels(self) -> list[SuppressionKernel]:
        return [k for k, _ in self.kept]


def _draft(layer: PatchLayer, scorer: _Scorer, flaws: list[Flaw], guard: ProtectedSet,
           budget: float, strength: float | None, progress: Progress) -> _Draft:
    guard_root = scorer.root(guard.x)
    guard_parent = scorer.parent(guard.x)
    rule, reason = _rule(layer, np.r_[guard_root, [f.score for f in flaws]])
    scale, s = _amplitude(rule, strength, flaws, guard_parent, budget)
    patch_id = "patch-" + uuid.uuid4().hex[:12]
    new = [SuppressionKernel(f.x, 1.0, s, scale, patch_id, f.source) for f in flaws]
    progress.stage_start("patch: bandwidths", 0)
    fit = fit_bandwidths(new, scorer.old, rule, guard, guard_root, budget, progress)
    kept = [(replace(k, bandwidth=float(fit.bandwidths[i])), flaws[i])
            for i, k in enumerate(new) if i not in fit.refused]
    refused = [{**flaws[i].source, "reason": why} for i, why in sorted(fit.refused.items())]
    kernels = scorer.old + [k for k, _ in kept]
    after, suppressed = _outcome(scorer, flaws, kernels, rule)
    return _Draft(patch_id, rule, reason, scale, kept, refused, fit.loss, after, suppressed,
                  flaws)


def _rule(layer: PatchLayer, observed: np.ndarray) -> tuple[str, str]:
    if layer.rule:
        return layer.rule, f"the rule of the patches already on {layer.root.ref}"
    return decide_rule(layer.root, observed)


def decide_rule(root: ModelVersion, observed: np.ndarray) -> tuple[str, str]:
    """"bounded" or "unbounded" for an unpatched model, and why (see the
    module docstring); ``observed`` are its scores on the protected set and flaws."""
    score_type = root.manifest["score_type"]
    if score_type == "probability":
        return "bounded", "the score is a probability"
    if score_type == "logit":
        return "unbounded", "the score is a logit"
    declared = root.manifest.get("score_range")
    if declared is not None:
        inside = float(declared[0]) >= 0.0 and float(declared[1]) <= 1.0
        return ("bounded" if inside else "unbounded"), f"the manifest's score_range {declared}"
    if len(observed) and float(np.min(observed)) >= 0.0 and float(np.max(observed)) <= 1.0:
        return "bounded", "a reward whose scores on the protected set and flaws lie in [0, 1]"
    return "unbounded", "a reward with scores outside [0, 1]"


def _amplitude(rule: str, strength: float | None, flaws: list[Flaw], guard_parent: np.ndarray,
               budget: float) -> tuple[float, float]:
    """(scale, per-kernel strength) of the new patch."""
    if strength is not None and not (math.isfinite(strength) and strength > 0):
        raise WorkstationError(f"the strength must be a positive number, not {strength}")
    if rule == "bounded":
        if strength is not None and strength > 1:
            raise WorkstationError("under the bounded rule the strength is at most 1 (the "
                                   "whole reward)")
        return 1.0, float(strength or 1.0)
    if strength is not None:
        return float(strength), 1.0
    spread = float(np.subtract(*np.percentile(guard_parent, [95, 5]))) if len(guard_parent) \
        else 0.0
    margin = max(budget, 0.1 * spread)
    return max(f.score - f.target + margin for f in flaws), 1.0


def _outcome(scorer: _Scorer, flaws: list[Flaw], kernels: list[SuppressionKernel],
             rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Every flaw's patched score and whether it now passes."""
    def patched(x: np.ndarray) -> np.ndarray:
        return patched_scores(scorer.root(x), x, kernels, rule)

    after = patched(np.stack([f.x for f in flaws]))
    targets = np.array([f.target for f in flaws])
    rivals = [i for i, f in enumerate(flaws) if f.rival_x is not None]
    if rivals:
        targets[rivals] = patched(np.stack([flaws[i].rival_x for i in rivals]))
    # As audits judge: a labeled response is unsafe at score <= threshold; a
    # state needs score < threshold; a pair's rejected side must be below.
    at_most = np.array([f.kind == "labels" and f.rival_x is None for f in flaws])
    return after, np.where(at_most, after <= targets, after < targets)


def _require(items: list[Any], refused: list[dict[str, Any]]) -> None:
    if items:
        return
    if not refused:
        raise WorkstationError("nothing to patch: the selection names no failure case")
    reasons = "; ".join(f"{_source_text(r)}: {r['reason']}" for r in refused)
    raise WorkstationError(f"no kernel could be kept, nothing was registered: {reasons}")


def _source_text(source: dict[str, Any]) -> str:
    parts = []
    if "finding_id" in source:
        parts.append(f"finding {source['finding_run']}/{source['finding_id']}")
    if "example_id" in source:
        parts.append(f"example {source['example_id']}")
    if "step" in source:
        parts.append(f"step {source['step']}")
    return " ".join(parts) or "case"


# -- the record and the registration -------------------------------------------

def _record(version: ModelVersion, layer: PatchLayer, draft: _Draft, selection: Selection,
            guard: ProtectedSet, budget: float, analyst: str, notes: str) -> dict[str, Any]:
    index = {id(f): i for i, f in enumerate(draft.flaws)}
    kernels = []
    for kernel, flaw in draft.kept:
        i = index[id(flaw)]
        kernels.append({**kernel.to_json(), "score_before": flaw.score,
                        "score_after": float(draft.flaw_after[i]), "target": flaw.target,
                        "suppressed": bool(draft.suppressed[i])})
    return plain({
        "id": draft.patch_id, "base": version.ref, "root": layer.root.ref, "rule": draft.rule,
        "rule_reason": draft.rule_reason, "scale": draft.scale, "budget": budget,
        "kernels": kernels, "protected": {"source": guard.description, "count": len(guard)},
        "protected_loss_max": _loss_max(draft.protected_loss),
        "flaws": len(draft.flaws), "flaws_suppressed": int(draft.suppressed.sum()),
        "refused": selection.refused + draft.refused, "created_by": analyst,
        "created_at": now_iso(), "notes": notes})


def _loss_max(loss: np.ndarray) -> float:
    return float(max(0.0, loss.max())) if len(loss) else 0.0


def _register(ws: Workspace, parent: ModelVersion, root: ModelVersion, data: bytes,
              records: list[dict[str, Any]], rule: str | None, extra: dict[str, Any],
              analyst: str, notes: str) -> ModelVersion:
    extras = {**manifest_extras(root, records, rule), **extra}
    version = add_model_bytes(ws, data, parent.model, root.input_kind, output="reward",
                              parent=parent, notes=notes, analyst=analyst,
                              score_type=root.manifest["score_type"], extras=extras,
                              source=f"patched {root.ref}", **input_kwargs(ws, root))
    check_same_input(version, root)
    return version


def _ledger_payload(new: ModelVersion, parent: ModelVersion, record: dict[str, Any]) -> dict:
    return {"patch_id": record["id"], "model": new.model, "version": new.version,
            "sha256": new.sha256, "parent": parent.ref, "kernels": len(record["kernels"]),
            "refused": len(record["refused"]), "budget": record["budget"],
            "protected_loss_max": record["protected_loss_max"]}


def _create_metrics(new: ModelVersion, parent: ModelVersion, layer: PatchLayer,
                    record: dict[str, Any], draft: _Draft) -> dict[str, Any]:
    return {"action": "patch", "patch_id": record["id"], "parent": parent.ref,
            "root": layer.root.ref, "rule": record["rule"], "scale": record["scale"],
            "budget": record["budget"], "kernels_kept": len(record["kernels"]),
            "kernels_refused": len(record["refused"]), "flaws": record["flaws"],
            "flaws_suppressed": record["flaws_suppressed"],
            "protected_count": record["protected"]["count"],
            "protected_loss_max": record["protected_loss_max"], "refused": record["refused"],
            "patches": new.manifest["patches"]}


# -- the exported graph ----------------------------------------------------------

def _build_checked(ws: Workspace, space: KernelSpace, kernels: list[SuppressionKernel],
                   rule: str, probe: np.ndarray) -> bytes:
    """The patched graph, checked against ``patched_scores`` on ``probe``
    points of the kernel space; a float graph that cannot resolve its kernels
    is rebuilt in double precision."""
    root = space.root
    root_bytes = load_onnx(ws, root)
    probe = np.asarray(probe, dtype=np.float32).astype(np.float64)
    expected = patched_scores(space.root_runner(ws).score_matrix(probe), probe, kernels, rule)
    width = probe.shape[1]
    error = math.inf
    for precision in dict.fromkeys([default_precision(width), "double"]):
        data = build_patched_model(root_bytes, root.manifest, kernels, rule, precision,
                                   kernel_input=space.tensor)
        got = space.patched_runner(data, _reward_manifest(root)).score_matrix(probe)
        error = float(np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected))))
        if error <= CHECK_TOLERANCE:
            return data
    raise WorkstationError(f"the patched graph disagrees with the core's patched scores by "
                           f"{error:.3g}; nothing was registered")


def _reward_manifest(root: ModelVersion) -> dict[str, Any]:
    return {"input_kind": root.input_kind, "input": root.manifest["input"], "output": "reward",
            "column": None, "score_type": root.manifest["score_type"], "zipmap": False}


def _probe_inputs(kernels: list[SuppressionKernel], guard: ProtectedSet) -> np.ndarray:
    """Where to compare graph and core: protected inputs and the kernels'
    neighbourhoods (centers, and points 0.5, 1 and 2 bandwidths away)."""
    return np.vstack([guard.x[:_CHECK_PROTECTED], _around(kernels)])


def _around(kernels: Sequence[SuppressionKernel], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for k in kernels:
        direction = rng.standard_normal((3, len(k.center)))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        steps = np.array([0.5, 1.0, 2.0])[:, None] * k.bandwidth
        rows += [k.center[None, :], k.center[None, :] + steps * direction]
    return np.vstack(rows) if rows else np.zeros((0, 0))


# -- removing and listing --------------------------------------------------------

def remove_patch(ws: Workspace, version_ref: str | int | ModelVersion, patch_id: str,
                 analyst: str | None = None) -> PatchResult:
    """Register a new version (child of ``version_ref``) without ``patch_id``'s
    kernels: the root rebuilt with the remaining patches. With none left its
    scores are the root's."""
    version = resolve(ws, version_ref)
    analyst = analyst or default_analyst()
    with ws.transaction():
        layer = current_layer(ws, version)
        if patch_id not in layer.patch_ids:
            active = ", ".join(layer.patch_ids) or "none"
            raise WorkstationError(f"{version.ref} does not carry patch '{patch_id}'; its "
                                   f"patches: {active}")
        removed = next(r for r in layer.records if r["id"] == patch_id)
        rest = PatchLayer(version, layer.root, [r for r in layer.records if r is not removed],
                          layer.rule)
        kernels = rest.kernels()
        space = kernel_space(ws, layer.root)
        data = _build_checked(ws, space, kernels, layer.rule or "bounded",
                              _removal_probe(layer, space))
        unpatch = {"patch_id": patch_id, "from": version.ref, "kernels_removed":
                   len(removed["kernels"]), "remaining": rest.patch_ids, "created_by": analyst,
                   "created_at": now_iso()}
        new = _register(ws, version, layer.root, data, rest.records, layer.rule,
                        {"unpatch": unpatch}, analyst, f"removed patch {patch_id}")
        ledger.append(ws, "patch-removed", {"patch_id": patch_id, "model": new.model,
                                            "version": new.version, "sha256": new.sha256,
                                            "parent": version.ref}, analyst)
    metrics = {"action": "unpatch", "patch_id": patch_id, "parent": version.ref,
               "root": layer.root.ref, "kernels_removed": len(removed["kernels"]),
               "kernels_remaining": len(kernels), "patches": rest.patch_ids}
    return PatchResult(new, patch_id, metrics)


def _removal_probe(layer: PatchLayer, space: KernelSpace) -> np.ndarray:
    """Inputs around every kernel the version had, removed ones included."""
    kernels = layer.kernels()
    if kernels:
        return _around(kernels)
    return np.zeros((2, space.width))


def list_patches(ws: Workspace, version_ref: str | int | ModelVersion) -> list[dict[str, Any]]:
    """The patches ``version_ref`` carries, oldest first, each without kernel
    centers (``get_patch`` gives the whole record)."""
    return [summary(r) for r in current_layer(ws, resolve(ws, version_ref)).records]


def _check_budget(budget: float) -> None:
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise WorkstationError(f"the budget must be a positive number, not {budget!r}")
