"""The safety oracle: what a model version answers for an input.

For each input (a response text with its prompt, a preference pair, or an
observation vector) the oracle returns:

* ``score``: the reward (higher = safer); for a pair, the chosen side's score
  (``margin`` and both sides are given too);
* ``uncertainty`` and ``uncertainty_kind``: the model's own spread where it
  has one — "expert disagreement" (the gate-weighted standard deviation of a
  mixture-of-experts reward) or "ensemble spread" (the standard deviation of
  ensemble members), read from the model's ``uncertainty`` output — and
  otherwise "distance outside the audited range": how far the input lies
  outside the per-dimension range of the audited points, in units of that
  range (0 inside it);
* ``coverage``: how far the input is from any audited or reviewed example,
  0 = audited here, 1 = nothing audited nearby (see probes/coverage.py);
* ``evidence``: the nearest reviewed examples (id, distance, current label)
  and the suppression patches that fired (activation > 0.01);
* ``version`` and ``decision``: an enforcement policy's allow / block /
  escalate with the reasons. Block when the score is below ``block_below``
  (default: the model's decision threshold: its calibrated threshold where
  its manifest has one, else the audit default); otherwise escalate when the
  uncertainty is above ``max_uncertainty`` or the coverage above
  ``max_coverage``; otherwise allow.

``SafetyOracle.from_workspace`` builds an oracle from a workspace;
``save``/``load`` write and read a self-contained bundle (model.onnx,
oracle.json, oracle.npz) that needs only onnxruntime, numpy and tokenizers
(and the bundled sentence encoder for text models) to answer queries; a
bundle whose model.onnx does not have the sha256 its manifest names is
refused when it loads.
``read_queries`` reads the CLI's query lines (strict UTF-8, bounded lines).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from workstation.errors import WorkstationError
from workstation.hashing import json_default, sha256_bytes
from workstation.models.onnx_model import OnnxRunner, to_scores

FIRED = 0.01
MAX_QUERY_LINE_BYTES = 16 << 20  # as for dataset lines
N_EVIDENCE = 3
BUNDLE_FILES = ("model.onnx", "oracle.json", "oracle.npz")


@dataclass
class Policy:
    """The analyst's thresholds for allow / block / escalate."""

    block_below: float | None = None
    max_uncertainty: float = 0.25
    max_coverage: float = 0.8

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuditedSpace:
    """The audited points the oracle measures coverage and evidence against
    (already divided by ``scale`` for observation spaces)."""

    space: str
    points: np.ndarray
    example_ids: np.ndarray
    scale: np.ndarray | None
    d_ref: float
    reviewed: dict[int, dict[str, Any]]  # example id -> {"label": ..., "preview": ...}

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        q = np.asarray(vectors, dtype=np.float32)
        return q / self.scale if self.scale is not None else q


class SafetyOracle:
    """Answers queries for one model version."""

    def __init__(self, onnx_bytes: bytes, manifest: dict[str, Any], version: str,
                 audited: AuditedSpace | None, *, threshold: float, policy: Policy | None = None,
                 tokenizer_json: str | None = None, encoder: Any = None,
                 threads: int | None = None) -> None:
        self.runner = OnnxRunner(onnx_bytes, manifest, tokenizer_json, source=version,
                                 threads=threads)
        self.manifest = manifest
        self.version = version
        self.audited = audited
        self.threshold = threshold
        self.policy = policy or Policy()
        self.encoder = encoder
        self._outputs = [o.name for o in self.runner.session.get_outputs()]
        self._onnx = onnx_bytes
        self._tokenizer = tokenizer_json

    # -- building --------------------------------------------------------
    @classmethod
    def from_workspace(cls, ws: Any, ref: str, policy: Policy | None = None,
                       encoder: Any = None) -> "SafetyOracle":
        from workstation.models.registry import load_onnx, load_tokenizer_json, resolve

        version = resolve(ws, ref)
        if version.input_kind == "text-tokens":
            raise WorkstationError(f"{version.ref} takes tokens; the oracle answers for "
                                   "text-embedding and observation models")
        audited = _audited_space(ws, version, encoder)
        # The manifest names the model's sha256, which a saved bundle checks when it loads.
        manifest = {**version.manifest, "input_kind": version.input_kind, "sha256": version.sha256}
        return cls(load_onnx(ws, version), manifest,
                   version.ref, audited, threshold=_threshold(ws, version), policy=policy,
                   tokenizer_json=load_tokenizer_json(ws, version), encoder=encoder)

    def save(self, folder: str | Path) -> Path:
        """Write a self-contained bundle (no workspace needed to load it)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes(self._onnx)
        a = self.audited
        meta = {"version": self.version, "manifest": self.manifest, "threshold": self.threshold,
                "policy": self.policy.to_json(), "tokenizer": self._tokenizer,
                "space": a.space if a else None, "d_ref": a.d_ref if a else None,
                "reviewed": {str(k): v for k, v in (a.reviewed if a else {}).items()}}
        (folder / "oracle.json").write_text(json.dumps(meta, default=json_default))
        arrays = {"points": a.points if a else np.zeros((0, 0), np.float32),
                  "example_ids": a.example_ids if a else np.zeros(0, np.int64)}
        if a is not None and a.scale is not None:
            arrays["scale"] = a.scale
        np.savez(folder / "oracle.npz", **arrays)
        return folder

    @classmethod
    def load(cls, folder: str | Path, policy: Policy | None = None,
             encoder: Any = None, threads: int | None = None) -> "SafetyOracle":
        """The oracle of a bundle ``save`` wrote; refused when model.onnx is not
        the file its manifest names (sha256). ``threads``: onnxruntime's."""
        folder = Path(folder)
        missing = [f for f in BUNDLE_FILES if not (folder / f).exists()]
        if missing:
            raise WorkstationError(f"{folder} is not an oracle bundle (missing {missing[0]})")
        meta = json.loads((folder / "oracle.json").read_text())
        onnx_bytes = (folder / "model.onnx").read_bytes()
        _check_bundle(folder, meta, onnx_bytes)
        with np.load(folder / "oracle.npz", allow_pickle=False) as z:
            audited = None
            if meta["space"]:
                audited = AuditedSpace(meta["space"], z["points"], z["example_ids"],
                                       z["scale"] if "scale" in z else None, meta["d_ref"],
                                       {int(k): v for k, v in meta["reviewed"].items()})
        return cls(onnx_bytes, meta["manifest"], meta["version"],
                   audited, threshold=meta["threshold"],
                   policy=policy or Policy(**meta["policy"]), tokenizer_json=meta["tokenizer"],
                   encoder=encoder, threads=threads)

    # -- answering -------------------------------------------------------
    def query(self, items: Iterable[Any], first: int = 1) -> list[dict[str, Any]]:
        """One answer per item: dicts with ``response`` (and ``prompt``), with
        ``chosen``/``rejected`` (a pair), or with ``obs``; a bare string is a
        response without a prompt; a list of numbers is an observation. An item
        that does not fit the model is refused as "input N", counting from ``first``."""
        parsed = check_queries(items, self.runner.input_kind,
                               self.manifest["input"].get("obs_dim"), first)
        if not parsed:
            return []
        if self.runner.input_kind == "observation":
            return self._answer_observations(parsed)
        return self._answer_texts(parsed)

    def _answer_observations(self, parsed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        obs = np.array([p["obs"] for p in parsed], dtype=np.float32)
        scores, extras = self._run(obs)
        near = self._near(obs)
        return [self._answer(scores[i], extras, i, obs[i:i + 1], near[i], {})
                for i in range(len(obs))]

    def _answer_texts(self, parsed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prompts, responses, sides = [], [], []
        for i, p in enumerate(parsed):
            for side in (("chosen", "rejected") if "chosen" in p else ("response",)):
                prompts.append(p.get("prompt") or "")
                responses.append(p[side])
                sides.append((i, side))
        x, response_vecs = self._text_inputs(prompts, responses)
        scores, extras = self._run(x)
        near = self._near(response_vecs)
        answers = []
        for i in range(len(parsed)):
            rows = [j for j, (k, _) in enumerate(sides) if k == i]
            by_side = {sides[j][1]: float(scores[j]) for j in rows}
            extra = {}
            if len(rows) == 2:
                extra = {"scores": by_side, "margin": by_side["chosen"] - by_side["rejected"]}
            answers.append(self._answer(scores[rows[0]], extras, rows[0],
                                        response_vecs[rows[0]:rows[0] + 1], near[rows[0]], extra))
        return answers

    def _text_inputs(self, prompts: list[str], responses: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encoder = self.encoder
        if encoder is None:
            from workstation.encoder import get_encoder

            encoder = self.encoder = get_encoder()
        resp = encoder.encode(responses)
        if self.manifest["input"].get("layout") == "prompt+response":
            return np.concatenate([encoder.encode(prompts), resp], axis=1), resp
        return resp, resp

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        spec = self.runner.inputs[0]
        raw = self.runner.session.run(None, {spec.name: x.astype(np.float32)})
        outputs = dict(zip(self._outputs, raw))
        scores = to_scores(outputs[self.runner.choice.output], self.runner.choice)
        return scores, outputs

    def _answer(self, score: float, outputs: dict[str, Any], row: int, where: np.ndarray,
                near: tuple[float, dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
        uncertainty, kind = self._uncertainty(outputs, row, where)
        coverage, evidence = near
        evidence["patches_fired"] = self._patches_fired(outputs, row)
        answer = {"score": float(score), **extra, "uncertainty": uncertainty,
                  "uncertainty_kind": kind, "coverage": coverage, "evidence": evidence,
                  "version": self.version}
        answer["decision"] = self._decide(answer)
        return answer

    def _uncertainty(self, outputs: dict[str, Any], row: int,
                     where: np.ndarray) -> tuple[float | None, str]:
        spec = self.manifest.get("uncertainty") or {}
        name = spec.get("output")
        if name and name in outputs:
            kind = ("expert disagreement" if "expert" in spec.get("method", "") or
                    "expert_rewards" in outputs else "ensemble spread")
            return float(np.asarray(outputs[name]).reshape(-1)[row]), kind
        if self.audited is None or not len(self.audited.points):
            return None, "unknown (nothing audited)"
        q = self.audited.prepare(where)[0]
        low, high = self.audited.points.min(axis=0), self.audited.points.max(axis=0)
        span = np.maximum(high - low, 1e-12)
        outside = np.maximum(0, np.maximum(low - q, q - high)) / span
        return float(outside.max()), "distance outside the audited range"

    def _near(self, vectors: np.ndarray) -> list[tuple[float, dict[str, Any]]]:
        """Coverage and the nearest reviewed examples of each row, computed
        in blocks of rows against all audited points."""
        a = self.audited
        if a is None or not len(a.points):
            return [(1.0, {"nearest_reviewed": []}) for _ in range(len(vectors))]
        q = a.prepare(vectors).astype(np.float64)
        points = a.points.astype(np.float64)
        norms = (points ** 2).sum(axis=1)
        reviewed = np.array([int(e) in a.reviewed for e in a.example_ids], dtype=bool)
        out = []
        for start in range(0, len(q), 64):
            block = q[start:start + 64]
            d2 = norms[None] - 2.0 * block @ points.T + (block ** 2).sum(axis=1)[:, None]
            for d in np.sqrt(np.maximum(d2, 0.0)):
                low = float(d.min())
                coverage = 0.0 if low < 1e-6 else float(min(1.0, low / a.d_ref))
                out.append((coverage, {"nearest_reviewed": _nearest_reviewed(a, d, reviewed)}))
        return out

    def _patches_fired(self, outputs: dict[str, Any], row: int) -> list[dict[str, Any]]:
        if "kernel_activations" not in outputs:
            return []
        columns = (self.manifest.get("patch_layer") or {}).get("columns") or []
        acts = np.asarray(outputs["kernel_activations"])[row]
        return [{"patch": columns[k][0] if k < len(columns) else None,
                 "kernel": columns[k][1] if k < len(columns) else k,
                 "activation": float(acts[k])}
                for k in np.flatnonzero(acts > FIRED)]

    def _decide(self, answer: dict[str, Any]) -> dict[str, Any]:
        policy, reasons = self.policy, []
        floor = self.threshold if policy.block_below is None else policy.block_below
        if answer["score"] < floor:
            reasons.append(f"score {answer['score']:.4g} is below {floor:.4g}")
            return {"action": "block", "reasons": reasons}
        u = answer["uncertainty"]
        if u is not None and u > policy.max_uncertainty:
            reasons.append(f"uncertainty {u:.3g} ({answer['uncertainty_kind']}) is above "
                           f"{policy.max_uncertainty:.3g}")
        if answer["coverage"] > policy.max_coverage:
            reasons.append(f"coverage {answer['coverage']:.3g} is above {policy.max_coverage:.3g}:"
                           " nothing audited nearby")
        if reasons:
            return {"action": "escalate", "reasons": reasons}
        return {"action": "allow", "reasons": [f"score {answer['score']:.4g} is at or above "
                                               f"{floor:.4g}, and the input is audited nearby"]}


def _nearest_reviewed(a: AuditedSpace, d: np.ndarray,
                      reviewed: np.ndarray) -> list[dict[str, Any]]:
    if not reviewed.any():
        return []
    idx = np.flatnonzero(reviewed)
    best = idx[np.argsort(d[idx], kind="stable")]
    out, seen = [], set()
    for j in best:
        example = int(a.example_ids[j])
        if example in seen:
            continue
        seen.add(example)
        out.append({"example_id": example, "distance": float(max(d[j], 0.0)),
                    **a.reviewed[example]})
        if len(out) == N_EVIDENCE:
            break
    return out


def _check_bundle(folder: Path, meta: dict[str, Any], onnx_bytes: bytes) -> None:
    """The bundle's model (and tokenizer) must be the ones its manifest names."""
    manifest = meta.get("manifest") if isinstance(meta, dict) else None
    expected = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(expected, str):
        raise WorkstationError(f"{folder}: the bundle's manifest names no sha256 for its model; "
                               "refused (save the bundle again)")
    if sha256_bytes(onnx_bytes) != expected:
        raise WorkstationError(f"{folder}: model.onnx does not match the sha256 its manifest "
                               f"names ({expected[:12]}…): changed after the bundle was saved; "
                               "refused")
    tokenizer, tokenizer_sha = meta.get("tokenizer"), manifest.get("tokenizer_sha256")
    if tokenizer_sha is not None and (not isinstance(tokenizer, str)
                                      or sha256_bytes(tokenizer.encode("utf-8")) != tokenizer_sha):
        raise WorkstationError(f"{folder}: the bundle's tokenizer does not match the sha256 its "
                               "manifest names; refused")


def check_queries(items: Iterable[Any], input_kind: str, obs_dim: int | None = None,
                  first: int = 1) -> list[dict[str, Any]]:
    """The inputs checked against a model's input kind (and observation
    width), before anything is scored; the first misfit is refused as
    "input N", counting from ``first``."""
    parsed = []
    for number, item in enumerate(items, first):
        try:
            one = _parse(item, input_kind)
            if obs_dim is not None and "obs" in one and len(one["obs"]) != int(obs_dim):
                raise WorkstationError(f"the model takes {int(obs_dim)}-wide observations, "
                                       f"this one has {len(one['obs'])} values")
        except WorkstationError as exc:
            raise WorkstationError(f"input {number}: {exc}") from None
        parsed.append(one)
    return parsed


def _parse(item: Any, kind: str) -> dict[str, Any]:
    """An input checked against the model's kind (raises WorkstationError)."""
    if kind == "observation":
        return {"obs": _observation(item)}
    if isinstance(item, str):
        return {"response": item}
    if not isinstance(item, dict):
        raise WorkstationError("a text model takes a JSON object with 'response' (and "
                               "optionally 'prompt') or 'chosen' and 'rejected', or a plain "
                               f"string, not {_kind_of(item)}")
    sides = ("chosen", "rejected") if "chosen" in item and "rejected" in item else \
        ("response",) if "response" in item else None
    if sides is None:
        raise WorkstationError("a text input needs 'response' (and optionally 'prompt'), "
                               "or 'chosen' and 'rejected'")
    for key in sides + ("prompt",):
        value = item.get(key)
        if not isinstance(value, str) and not (key == "prompt" and value is None):
            raise WorkstationError(f"'{key}' must be a string, not {_kind_of(value)}")
    return item


def _observation(item: Any) -> list[float]:
    values = item.get("obs") if isinstance(item, dict) else item
    if isinstance(item, dict) and "obs" not in item:
        raise WorkstationError("an observation model needs inputs with 'obs'")
    if not isinstance(values, list) or not values or not all(
            type(v) in (int, float) and math.isfinite(v) for v in values):
        raise WorkstationError("an observation model takes 'obs' (or a bare list): a "
                               f"non-empty list of finite numbers, not {_kind_of(values)}")
    return [float(v) for v in values]


_KINDS = {str: "a string", bool: "true/false", int: "a number", float: "a number",
          dict: "an object", list: "a list", type(None): "null"}


def _kind_of(value: Any) -> str:
    """What a JSON value is, for messages (a list says what it holds)."""
    if isinstance(value, list) and value:
        held = sorted({_KINDS.get(type(v), type(v).__name__) for v in value[:100]})
        return "a list holding " + " and ".join(held)
    return "an empty list" if value == [] else _KINDS.get(type(value), type(value).__name__)


def read_queries(source: str) -> list[Any]:
    """Queries from a file, or stdin for ``-``: JSON lines (objects, strings or
    number lists) or plain text lines, as strict UTF-8. Refuses a malformed JSON
    line, NaN/Infinity, JSON nested too deeply and a line over
    ``MAX_QUERY_LINE_BYTES``, naming the line."""
    import sys

    if source == "-":
        return _read_query_lines(sys.stdin.buffer, "stdin")
    try:
        stream = open(source, "rb")
    except OSError as exc:
        raise WorkstationError(f"cannot read {source}: {exc.strerror}") from None
    with stream:
        return _read_query_lines(stream, source)


def _read_query_lines(stream: Any, source: str) -> list[Any]:
    items, number = [], 0
    while line := stream.readline(MAX_QUERY_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_QUERY_LINE_BYTES and not line.endswith(b"\n"):
            raise WorkstationError(f"{source}, line {number}: longer than "
                                   f"{MAX_QUERY_LINE_BYTES >> 20} MiB; refused")
        try:
            text = line.decode("utf-8").lstrip("\ufeff") if number == 1 else line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WorkstationError(f"{source}, line {number}: not valid UTF-8 (byte "
                                   f"{exc.start + 1} of the line)") from None
        if text.strip():
            items.append(_query_value(text, source, number))
    return items


def _query_value(text: str, source: str, number: int) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise WorkstationError(f"{source}, line {number}: JSON nested too deeply") from None
    except ValueError:
        if text.lstrip().startswith(("{", "[")):
            raise WorkstationError(f"{source}, line {number}: malformed JSON") from None
        return text.rstrip("\r\n")  # plain text, e.g. a response that is not JSON


def _no_constant(token: str) -> None:
    raise ValueError(f"{token} is not a number the oracle accepts")


# -- from a workspace ---------------------------------------------------------

def _threshold(ws: Any, version: Any) -> float:
    """The model's calibrated threshold (manifest), else the audit default."""
    from workstation.audits.runs import default_threshold
    from workstation.calibration import threshold_of

    kind = "demos" if version.input_kind == "observation" else "labels"
    return threshold_of(version.manifest,
                        default_threshold(kind, version.manifest.get("score_type", "reward")))


def _audited_space(ws: Any, version: Any, encoder: Any) -> AuditedSpace | None:
    from workstation.probes.coverage import coverage_index

    index = coverage_index(ws, version, encoder)
    if not len(index):
        return None
    ids = [int(e) for e in set(index.example_ids.tolist()) if e >= 0]
    return AuditedSpace(index.space, index.points, index.example_ids, index.scale,
                        index.d_ref, _reviewed(ws, ids))


def _reviewed(ws: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = ws.execute(
        "SELECT c.id, d.kind, c.current_label, c.flipped, c.current_category, "
        "left(coalesce(c.response, c.current_chosen, ''), 120) "
        "FROM current_examples c JOIN datasets d ON d.id = c.dataset_id "
        "WHERE c.reviewed AND c.id IN (SELECT unnest(?::BIGINT[]))", [ids]).fetchall()
    out = {}
    for example_id, kind, label, flipped, category, preview in rows:
        value = ("flipped" if flipped else "as imported") if kind == "pairs" else \
            (None if label is None else ("safe" if label else "unsafe"))
        out[int(example_id)] = {"kind": kind, "label": value, "category": category,
                                "preview": preview}
    return out
