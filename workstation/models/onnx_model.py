"""Running ONNX reward models with onnxruntime, and their conventions.

Conventions every model kind follows:

* Higher score = safer / preferred.
* A classifier's probability output becomes a score by taking the safe
  class's column: by default the last column, the manifest's ``column`` can
  say otherwise (and ``output`` which output to read). skl2onnx classifiers
  give ``label`` + ``probabilities``; the probabilities come either as a
  tensor [N, C] (zipmap disabled) or as a sequence of maps (zipmap on, which
  onnxruntime returns as a list of dicts): both work, and for the maps
  ``column`` is the position of the class among the map's keys.
* An output of shape [N] or [N, 1] is a score as it is.
* ``score_type``: "probability" when the chosen output is a probability (a
  column of a probability output, or an output named ``prob*``), "logit" for
  an output named ``logit*``, "reward" otherwise. Calibration metrics read a
  logit (or reward) through sigmoid(score).

Input kinds (the CLI's ``--input``):

* ``text-embedding``: one float input [N, W]; W = D (the encoder's width)
  takes the response embedding, W = 2·D the prompt embedding followed by the
  response embedding.
* ``text-tokens``: the Hugging Face sequence-classification export layout:
  integer inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids``
  when present) with the model's ``tokenizer.json``; prompt and response are
  tokenized as a pair, truncated to a maximum length and padded per batch.
* ``observation``: one float input [N, obs_dim] taking observation vectors.

Registration's checks live in ``workstation.models.inspection``; this module
holds what checking and scoring share: the tensor specs, the session and the
runner that turns a model's output into one score per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from workstation.errors import Cancelled, InputError, WorkstationError
from workstation.progress import Progress

INPUT_KINDS = ("text-embedding", "text-tokens", "observation")
SCORE_TYPES = ("probability", "logit", "reward")
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
DEFAULT_MAX_LENGTH = 512

FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(float16)": np.float16}
INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
# Fatal only: errors reach the caller as exceptions; logged, they would add
# lines to a one-line error on stderr.
ORT_LOGGING_FATAL_ONLY = 4


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output as onnxruntime sees it."""

    name: str
    type: str
    shape: tuple[int | str | None, ...] | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type,
                "shape": None if self.shape is None else list(self.shape)}


@dataclass(frozen=True)
class OutputChoice:
    """Which output, which column, and what kind of number the score is."""

    output: str
    column: int | None
    score_type: str
    zipmap: bool


# -- sessions ----------------------------------------------------------------

def make_session(data: bytes, source: str = "<model>", threads: int | None = None) -> Any:
    """An onnxruntime session with full graph optimisation, on the CPU
    (``threads``: its intra-op threads; default onnxruntime's, one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = ORT_LOGGING_FATAL_ONLY
    if threads:  # a Ray actor gets its share of a node's cores, not all of them
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(source, f"onnxruntime cannot load the model ({one_line(exc)})") from None


def session_specs(session: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The free inputs and the outputs of a session."""
    def spec(arg: Any) -> TensorSpec:
        shape = tuple(arg.shape) if arg.shape is not None else None
        return TensorSpec(arg.name, arg.type, shape)
    return [spec(a) for a in session.get_inputs()], [spec(a) for a in session.get_outputs()]


def load_tokenizer(text: str, source: str = "tokenizer.json") -> Any:
    """Parse a tokenizer.json (``tokenizers`` package) or refuse it in one line."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(text)
    except Exception as exc:
        raise InputError(source, f"not a valid tokenizer.json ({one_line(exc)})") from None


# -- running -----------------------------------------------------------------

def to_scores(raw: Any, choice: OutputChoice) -> np.ndarray:
    """One float64 score per row from the raw output (see the conventions)."""
    if choice.zipmap:
        if not len(raw):
            return np.zeros(0)
        key = list(raw[0].keys())[choice.column or 0]
        return np.fromiter((row[key] for row in raw), dtype=np.float64, count=len(raw))
    array = np.asarray(raw)
    if array.ndim == 2:
        array = array[:, choice.column or 0]
    return array.astype(np.float64, copy=False)


# Rows per onnxruntime call for matrix inputs. Smaller runs keep a model's
# intermediate activations in the CPU caches: an MLP 384->1024->2 over 200k rows
# took 0.37 s in runs of 1024 rows, 0.54 s in runs of 8192 and 0.65 s in one
# run (2 cores, best of 4); a logistic regression 0.033 s at 1024 vs 0.041 s in
# one run, so the per-call overhead doesn't show.
ROWS_PER_RUN = 1024


class OnnxRunner:
    """A loaded model: runs batches and returns one score per row."""

    def __init__(self, data: bytes, manifest: dict[str, Any], tokenizer_json: str | None = None,
                 source: str = "<model>", threads: int | None = None) -> None:
        self.session = make_session(data, source, threads)
        self.inputs, _ = session_specs(self.session)
        self.input_kind: str = manifest["input_kind"]
        self.input_info: dict[str, Any] = manifest["input"]
        self.choice = OutputChoice(manifest["output"], manifest.get("column"),
                                   manifest["score_type"], bool(manifest.get("zipmap")))
        self.tokenizer = None
        if tokenizer_json is not None:
            self.tokenizer = _configured_tokenizer(tokenizer_json, self.input_info["max_length"])
        first = self.inputs[0]
        # A graph exported with a fixed batch size must be fed exactly that.
        self.fixed_batch = first.shape[0] if first.shape and isinstance(first.shape[0], int) \
            and first.shape[0] > 0 else None

    @property
    def score_type(self) -> str:
        return self.choice.score_type

    def score_matrix(self, x: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Scores for a float matrix [N, width] (text-embedding and observation).
        A cancel of ``progress`` stops a run under way (see ``_session_run``)."""
        spec = self.inputs[0]
        x = np.ascontiguousarray(x, dtype=FLOAT_TYPES[spec.type])
        if self.fixed_batch or len(x) <= ROWS_PER_RUN:
            return self._run({spec.name: x}, len(x), progress)
        parts = (x[start:start + ROWS_PER_RUN] for start in range(0, len(x), ROWS_PER_RUN))
        return np.concatenate([self._run({spec.name: part}, len(part), progress)
                               for part in parts])

    def score_tokens(self, prompts: Sequence[str | None], responses: Sequence[str],
                     progress: Progress | None = None) -> np.ndarray:
        """Scores for (prompt, response) pairs through the model's own tokenizer."""
        if self.tokenizer is None:
            raise WorkstationError("this model takes tokens but has no tokenizer")
        items = [(p, r or "") if p else (r or "") for p, r in zip(prompts, responses)]
        encodings = self.tokenizer.encode_batch(items)
        dtype = INT_TYPES[self.input_info["type"]]
        columns = {"input_ids": "ids", "attention_mask": "attention_mask",
                   "token_type_ids": "type_ids"}
        feeds = {name: np.array([getattr(e, columns[name]) for e in encodings], dtype=dtype)
                 for name in self.input_info["names"]}
        return self._run(feeds, len(items), progress)

    def _run(self, feeds: dict[str, np.ndarray], n: int,
             progress: Progress | None = None) -> np.ndarray:
        if n == 0:
            return np.zeros(0)
        if self.fixed_batch and n != self.fixed_batch:
            return self._run_fixed(feeds, n, progress)
        return to_scores(self._session_run(feeds, progress), self.choice)

    def _session_run(self, feeds: dict[str, np.ndarray], progress: Progress | None) -> Any:
        """One onnxruntime run. With a ``progress``, its cancel sets the run's
        terminate flag, so that a model stuck in a long run (a Loop whose trip
        count comes from the input, say) stops within milliseconds and the
        caller gets ``Cancelled``."""
        if progress is None:
            return self.session.run([self.choice.output], feeds)[0]
        import onnxruntime as ort

        options = ort.RunOptions()
        options.log_severity_level = ORT_LOGGING_FATAL_ONLY
        remove = progress.on_cancel(lambda: setattr(options, "terminate", True))
        try:
            return self.session.run([self.choice.output], feeds, options)[0]
        except Exception:
            if progress.cancelled:
                raise Cancelled() from None
            raise
        finally:
            remove()

    def _run_fixed(self, feeds: dict[str, np.ndarray], n: int,
                   progress: Progress | None = None) -> np.ndarray:
        size = self.fixed_batch
        out = []
        for start in range(0, n, size):
            part = {k: v[start:start + size] for k, v in feeds.items()}
            rows = len(next(iter(part.values())))
            if rows < size:  # pad the last slice, drop the padding's scores
                part = {k: np.concatenate([v, np.repeat(v[-1:], size - rows, axis=0)])
                        for k, v in part.items()}
            raw = self._session_run(part, progress)
            out.append(to_scores(raw, self.choice)[:rows])
        return np.concatenate(out)


def _configured_tokenizer(text: str, max_length: int) -> Any:
    tokenizer = load_tokenizer(text)
    tokenizer.enable_truncation(max_length=max_length)
    padding = tokenizer.padding or {}
    pad_id = padding.get("pad_id", 0)
    pad_token = padding.get("pad_token", "[PAD]")
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
    return tokenizer


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]
