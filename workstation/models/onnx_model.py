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
  formatted as the manifest's ``text_format`` says (``text_format.py``),
  truncated to ``max_length`` tokens and padded per batch
  (``token_batches.py``).
* ``observation``: one float input [N, obs_dim] taking observation vectors.

Registration's checks live in ``workstation.models.inspection``; this module
holds what checking and scoring share: the tensor specs, the session and the
runner that turns a model's output into one score per row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from workstation.errors import Cancelled, InputError, WorkstationError
from workstation.models import token_batches as tb
from workstation.models.text_format import TextFormat
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
    """An onnxruntime session with full graph optimisation, on the CPU, with
    explicit threads: ``threads`` intra-op threads (default: one per core this
    process may use), one inter-op thread and sequential execution (the models
    are chains of operators: parallel branches only add scheduling)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = ORT_LOGGING_FATAL_ONLY
    # A Ray actor gets its share of a node's cores, not all of them.
    options.intra_op_num_threads = int(threads) if threads else core_count()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(source, f"onnxruntime cannot load the model ({one_line(exc)})") from None


def core_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
        self.text_format = TextFormat.from_input(self.input_info)
        if tokenizer_json is not None:
            self.tokenizer = _configured_tokenizer(tokenizer_json, self.input_info["max_length"])
            self.pad_id = int((load_tokenizer(tokenizer_json).padding or {}).get("pad_id", 0))
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

    def score_tokens(self, prompts: Sequence[str | None], responses: Sequence[str | None],
                     progress: Progress | None = None) -> np.ndarray:
        """Scores for (prompt, response) pairs through the model's own tokenizer,
        in the model's text format, in input order (see ``token_batches``)."""
        return self.score_tokens_counted(prompts, responses, progress)[0]

    def score_tokens_counted(self, prompts: Sequence[str | None],
                             responses: Sequence[str | None],
                             progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and, per input, whether it was truncated to the maximum length."""
        if self.tokenizer is None:
            raise WorkstationError("this model takes tokens but has no tokenizer")
        items = self.text_format.items(prompts, responses)
        tok = tb.tokenize_distinct(self.tokenizer, items, self.text_format.add_special_tokens)
        dtype = INT_TYPES[self.input_info["type"]]
        names = self.input_info["names"]
        seq = next((s.shape[1] for s in self.inputs if s.name == "input_ids" and s.shape
                    and len(s.shape) == 2 and isinstance(s.shape[1], int) and s.shape[1] > 0),
                   None)

        def run(rows: np.ndarray) -> np.ndarray:
            feeds = tb.padded_feeds(tok, rows, names, dtype, self.pad_id, seq)
            return self._run(feeds, len(rows), progress)

        check = progress.check if progress is not None else None
        return tb.score_distinct(tok, run, check), tok.truncated[tok.inverse]

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
    """Truncating to the model's maximum, never padding: batches pad themselves."""
    tokenizer = load_tokenizer(text)
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()
    return tokenizer


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]
