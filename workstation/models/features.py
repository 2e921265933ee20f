"""A model's own feature space: the input of its scoring head, computed by the
graph cut there (``score_head``) and cached in the workspace.

Token models' features are cached like embeddings, in the ``embeddings``
table (no schema change): ``encoder_id`` is ``features:<sha256>`` of the
feature-extractor graph together with the model's tokenizer and input
settings (anything that changes what the graph sees), and ``text_sha256`` the
sha256 of the exact model input: the formatted text (a chat template's
rendering, the response alone) or the JSON of the tokenizer pair. Embedding models' features are their input matrix
(cached embeddings) run through the extractor, which is cheap, when the head
does not read the input itself.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from workstation.errors import WorkstationError
from workstation.models.onnx_model import OnnxRunner
from workstation.models.registry import (ModelVersion, load_onnx, load_tokenizer_json)
from workstation.models.score_head import NoHead, ScoreHead, feature_model, find_head, tail_model
from workstation.progress import Progress
from workstation.workspace import Workspace

FEATURES_PREFIX = "features:"
_TOKEN_SLICE = 2048  # texts featurised per score_tokens call
_CACHE_SIZE = 4
_spaces: "OrderedDict[tuple, FeatureSpace]" = OrderedDict()
_spaces_lock = threading.Lock()


@dataclass
class FeatureSpace:
    """A version's head and the two halves of its graph: ``extractor`` (model
    inputs -> features; None when the features are the model's input) and
    ``tail`` (features -> the score output, read as the manifest says)."""

    version: ModelVersion
    head: ScoreHead
    id: str
    extractor: bytes | None
    tail: bytes
    tokenizer_json: str | None

    @property
    def dim(self) -> int:
        return self.head.width

    def score_runner(self) -> OnnxRunner:
        """Scores of feature rows [N, F], exactly as the whole model scores."""
        return tail_runner(self.tail, self.version.manifest, self.dim)


def feature_space(ws: Workspace, version: ModelVersion) -> FeatureSpace:
    """The version's feature space; ``NoHead`` (one line) when it has no head."""
    m = version.manifest
    key = (version.sha256, m.get("tokenizer_sha256"), m["output"], m.get("column"),
           json.dumps(m["input"], sort_keys=True))
    with _spaces_lock:
        if key in _spaces:
            _spaces.move_to_end(key)
            return _spaces[key]
    space = _build(ws, version)
    with _spaces_lock:
        _spaces[key] = space
        while len(_spaces) > _CACHE_SIZE:
            _spaces.popitem(last=False)
    return space


def _build(ws: Workspace, version: ModelVersion) -> FeatureSpace:
    if version.input_kind == "observation":
        raise NoHead(f"{version.ref} takes observations; head retraining is for text models")
    data = load_onnx(ws, version)
    head = find_head(data, version.manifest)
    extractor = None if head.input_is_model_input else feature_model(data, head)
    tail = tail_model(data, head, version.manifest["output"])
    digest = hashlib.sha256(extractor if extractor is not None else data)
    digest.update(json.dumps({"input": version.manifest["input"], "head": head.input,
                              "tokenizer": version.manifest.get("tokenizer_sha256")},
                             sort_keys=True).encode())
    return FeatureSpace(version, head, FEATURES_PREFIX + digest.hexdigest(), extractor, tail,
                        load_tokenizer_json(ws, version))


def tail_runner(tail: bytes, manifest: dict[str, Any], width: int) -> OnnxRunner:
    """A runner of a feature-to-score graph, reading its output as ``manifest`` says."""
    reading = {"input_kind": "observation", "input": {"obs_dim": width},
               "output": manifest["output"], "column": manifest.get("column"),
               "score_type": manifest["score_type"], "zipmap": manifest.get("zipmap")}
    return OnnxRunner(tail, reading, source="<head>")


# -- computing features ------------------------------------------------------------

def text_features(ws: Workspace, space: FeatureSpace, prompts: Sequence[str | None],
                  responses: Sequence[str | None], encoder: Any = None,
                  progress: Progress | None = None) -> np.ndarray:
    """Features [N, F] (float32) of (prompt, response) texts, in input order."""
    if space.version.input_kind == "text-tokens":
        from workstation.encoder import embed_texts

        encoder = _TokenFeatures(space)
        keys = encoder.keys(prompts, responses)
        return embed_texts(ws, keys, encoder=encoder, progress=progress)
    from workstation.models.scoring import text_features as model_inputs

    x = model_inputs(ws, space.version, prompts, responses, encoder, progress)
    if space.extractor is None:
        return np.asarray(x, dtype=np.float32)
    return _run_extractor(space, x)


def _run_extractor(space: FeatureSpace, x: np.ndarray) -> np.ndarray:
    from workstation.models.onnx_model import make_session

    session = make_session(space.extractor, space.version.ref)
    name = session.get_inputs()[0].name
    out = session.run([space.head.input], {name: np.ascontiguousarray(x, np.float32)})[0]
    return _checked(space, np.asarray(out))


def _checked(space: FeatureSpace, out: np.ndarray) -> np.ndarray:
    if out.ndim != 2 or out.shape[1] != space.dim:
        raise NoHead(f"the head's input '{space.head.input}' comes out with shape "
                     f"{list(out.shape)}, not [N, {space.dim}]: the features are not pooled")
    return out.astype(np.float32, copy=False)


class _FeatureRunner(OnnxRunner):
    """The extractor fed the way the model's scorer feeds it (text format,
    tokenizer, truncation, batching and padding: ``OnnxRunner.score_tokens``
    itself), returning feature rows instead of scores.

    ``score_tokens`` orders and batches its inputs as it likes and puts what
    ``_run`` returns back in input order; here ``_run`` keeps each batch's
    feature rows and returns their row numbers, so the numbers come back in
    input order and pick the rows."""

    def __init__(self, space: FeatureSpace) -> None:
        manifest = {**space.version.manifest, "output": space.head.input, "column": None,
                    "zipmap": False}
        super().__init__(space.extractor, manifest, space.tokenizer_json,
                         source=space.version.ref)
        self.space = space
        self._rows: list[np.ndarray] = []

    def features(self, prompts: Sequence[str | None], responses: Sequence[str | None],
                 progress: Progress | None = None) -> np.ndarray:
        self._rows = []
        numbers = self.score_tokens(prompts, responses, progress)
        if not len(numbers):
            return np.zeros((0, self.space.dim), dtype=np.float32)
        rows = np.concatenate(self._rows)
        return rows[np.rint(numbers).astype(np.int64)]

    def _run(self, feeds: dict[str, np.ndarray], n: int,
             progress: Progress | None = None) -> np.ndarray:
        if n == 0:
            return np.zeros(0)
        out = _checked(self.space, np.asarray(self._session_run(feeds, progress)))
        first = sum(len(part) for part in self._rows)
        self._rows.append(out)
        return np.arange(first, first + len(out), dtype=np.float64)


class _TokenFeatures:
    """The feature extractor as an ``embed_texts`` encoder: its "texts" are
    the exact model inputs (the formatted text, or the JSON of a tokenizer
    pair), so equal inputs share one cached row whatever they came from."""

    def __init__(self, space: FeatureSpace) -> None:
        from workstation.models.text_format import TextFormat

        if space.extractor is None:
            raise WorkstationError(f"{space.version.ref} takes tokens but its head reads "
                                   f"the input itself")
        self.space, self.id, self.dim = space, space.id, space.dim
        self.text_format = TextFormat.from_input(space.version.manifest["input"])
        self._sources: dict[str, tuple[str | None, str | None]] = {}
        self._runner: _FeatureRunner | None = None

    def keys(self, prompts: Sequence[str | None],
             responses: Sequence[str | None]) -> list[str]:
        """The model-input keys of (prompt, response) texts (remembered for ``encode``)."""
        items = self.text_format.items(prompts, responses)
        keys = [json.dumps(item, ensure_ascii=False) for item in items]
        self._sources.update(zip(keys, zip(prompts, responses)))
        return keys

    def encode(self, texts: Sequence[str], progress: Progress | None = None,
               batch_size: int = _TOKEN_SLICE) -> np.ndarray:
        self._runner = self._runner or _FeatureRunner(self.space)
        pairs = [self._sources[t] for t in texts]
        out = np.empty((len(pairs), self.dim), dtype=np.float32)
        # score_tokens sorts and batches by length itself; slices bound the memory.
        for start in range(0, len(pairs), batch_size):
            part = pairs[start:start + batch_size]
            out[start:start + len(part)] = self._runner.features(
                [p for p, _ in part], [r for _, r in part], progress)
            if progress is not None:
                progress.step(start + len(part), len(pairs))
        return out
