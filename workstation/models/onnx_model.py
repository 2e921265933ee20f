"""Loading, checking and running ONNX reward models with onnxruntime.

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

Registration runs ``inspect_model``: it refuses what does not fit the kind
with a one-line message saying what it expected and what it found, and runs
the model once on a zero input to prove it loads. Before that run it refuses
any tensor whose fixed shape (declared, or inferred through the graph) needs
more than ``MAX_DECLARED_BYTES``, and the run itself is stopped after
``TEST_RUN_SECONDS`` (a Loop can run for ever).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from workstation.errors import Cancelled, InputError, WorkstationError
from workstation.progress import Progress

INPUT_KINDS = ("text-embedding", "text-tokens", "observation")
SCORE_TYPES = ("probability", "logit", "reward")
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
DEFAULT_MAX_LENGTH = 512
# A test run allocates the declared input; refuse declarations beyond this
# many values (64 MB of float32) instead of exhausting memory.
TEST_RUN_MAX_VALUES = 1 << 24
# A test run that takes longer than this is stopped (a Loop can run forever).
TEST_RUN_SECONDS = 30.0
# No tensor of a self-contained .onnx file (protobuf's 2 GiB limit) can hold
# more; one that declares or computes a bigger fixed shape is a memory bomb.
MAX_DECLARED_BYTES = 1 << 31
_TEST_BATCH = 2
_TEST_SEQ = 8

_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
                "tensor(float16)": np.float16}
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
# Fatal only: errors reach the caller as exceptions; logged, they would add
# lines to a one-line error on stderr.
_ORT_LOGGING_FATAL_ONLY = 4


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


# -- parsing -----------------------------------------------------------------

def describe_onnx(data: bytes, source: str) -> dict[str, Any]:
    """The ONNX file's own metadata for the manifest; refuses what is not ONNX."""
    import onnx
    from onnx import external_data_helper

    if not data:
        raise InputError(source, "the file is empty (0 bytes), not an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise InputError(source, f"not a valid ONNX model ({_one_line(exc)})") from None
    graph = model.graph
    if not graph.node or not graph.output:
        raise InputError(source, "not a valid ONNX model (it has no graph nodes or outputs)")
    if any(external_data_helper.uses_external_data(t) for t in graph.initializer):
        raise InputError(source, "the model keeps its weights in external data files; "
                                 "export it as one self-contained .onnx file")
    check_declared_sizes(model, source)
    initializers = {t.name for t in graph.initializer}
    return {
        "producer_name": model.producer_name, "producer_version": model.producer_version,
        "ir_version": int(model.ir_version), "model_version": int(model.model_version),
        "domain": model.domain, "graph_name": graph.name,
        "opset": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "inputs": [_value_info(v) for v in graph.input if v.name not in initializers],
        "outputs": [_value_info(v) for v in graph.output],
        "metadata_props": {p.key: p.value for p in model.metadata_props},
    }


def check_declared_sizes(model: Any, source: str) -> None:
    """Refuse a tensor whose fixed shape needs more than ``MAX_DECLARED_BYTES``:
    an initializer or Constant that declares it (with no data behind it), or a
    value that shape inference shows the graph would compute (ConstantOfShape,
    Expand, ...), before onnxruntime allocates anything."""
    from onnx import shape_inference

    graphs = [model.graph]
    try:
        graphs = [shape_inference.infer_shapes(model, data_prop=True).graph]
    except Exception:  # a graph inference cannot follow: onnxruntime judges it
        pass
    for graph in _subgraphs(graphs):
        tensors = [(t.name, list(t.dims), t.data_type) for t in graph.initializer]
        tensors += [(n.output[0] if n.output else n.name, list(a.t.dims), a.t.data_type)
                    for n in graph.node for a in n.attribute if a.type == a.TENSOR]
        tensors += [_static_shape(v) for v in list(graph.value_info) + list(graph.output)]
        for name, dims, elem in tensors:
            if dims is None:
                continue
            size = _prod(dims) * _itemsize(elem)
            if size > MAX_DECLARED_BYTES:
                raise InputError(source, f"tensor '{name}' has shape {_shape_text(dims)} "
                                         f"({size:,} bytes), more than a self-contained model "
                                         f"can hold; refused before running it")


def _subgraphs(graphs: list[Any]) -> list[Any]:
    found, stack = [], list(graphs)
    while stack:
        graph = stack.pop()
        found.append(graph)
        for node in graph.node:
            for attr in node.attribute:
                stack.extend([attr.g] if attr.HasField("g") else [])
                stack.extend(attr.graphs)
    return found


def _static_shape(value: Any) -> tuple[str, list[int] | None, int]:
    tensor = value.type.tensor_type if value.type.WhichOneof("value") == "tensor_type" else None
    if tensor is None or not tensor.HasField("shape"):
        return value.name, None, 0
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return value.name, (None if None in dims else dims), tensor.elem_type


def _prod(dims: Sequence[int]) -> int:
    size = 1
    for d in dims:
        size *= max(int(d), 0)
    return size


def _itemsize(elem_type: int) -> int:
    from onnx import helper

    try:
        return max(1, np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except Exception:  # strings and unknown types: count a byte per value
        return 1


def _value_info(value: Any) -> dict[str, Any]:
    shape = None
    if value.type.WhichOneof("value") == "tensor_type" and value.type.tensor_type.HasField("shape"):
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in value.type.tensor_type.shape.dim]
    return {"name": value.name, "type": _type_text(value.type), "shape": shape}


def _type_text(type_proto: Any) -> str:
    """A type as onnxruntime writes it: tensor(float), seq(map(int64,tensor(float)))."""
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({_elem_name(type_proto.tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"seq({_type_text(type_proto.sequence_type.elem_type)})"
    if kind == "map_type":
        m = type_proto.map_type
        return f"map({_elem_name(m.key_type)},{_type_text(m.value_type)})"
    return kind or "unknown"


def _elem_name(elem_type: int) -> str:
    """ONNX's own name of an element type ("FLOAT", "INT64", ...), lower-cased."""
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type {elem_type}"


def make_session(data: bytes, source: str = "<model>") -> Any:
    """An onnxruntime session with full graph optimisation, on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = _ORT_LOGGING_FATAL_ONLY
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(source, f"onnxruntime cannot load the model ({_one_line(exc)})") from None


def session_specs(session: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The free inputs and the outputs of a session."""
    def spec(arg: Any) -> TensorSpec:
        shape = tuple(arg.shape) if arg.shape is not None else None
        return TensorSpec(arg.name, arg.type, shape)
    return [spec(a) for a in session.get_inputs()], [spec(a) for a in session.get_outputs()]


# -- checking inputs ---------------------------------------------------------

def check_inputs(kind: str, inputs: Sequence[TensorSpec], *, encoder_dim: int | None = None,
                 tokenizer_json: str | None = None, source: str = "<model>") -> dict[str, Any]:
    """Check the graph inputs fit ``kind``; return the manifest's "input" part."""
    if kind not in INPUT_KINDS:
        raise WorkstationError(f"unknown input kind '{kind}': expected one of "
                               f"{', '.join(INPUT_KINDS)}")
    if kind == "text-tokens":
        return _check_token_inputs(inputs, tokenizer_json, source)
    spec = _single_float_matrix(kind, inputs, source)
    width = spec.shape[1]
    if kind == "observation":
        if not isinstance(width, int):
            raise InputError(source, f"expected a fixed observation width, found "
                                     f"'{width}' in input '{spec.name}'")
        return {"name": spec.name, "type": spec.type, "obs_dim": width}
    return _embedding_layout(spec, width, encoder_dim, source)


def _single_float_matrix(kind: str, inputs: Sequence[TensorSpec], source: str) -> TensorSpec:
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        article = "an" if kind[0] in "aeiou" else "a"
        raise InputError(source, f"{article} {kind} model takes exactly one input, "
                                 f"found {len(inputs)}: {names}")
    spec = inputs[0]
    if spec.type not in _FLOAT_TYPES:
        raise InputError(source, f"expected a float input, found {spec.type} "
                                 f"in input '{spec.name}'")
    if spec.shape is None or len(spec.shape) != 2:
        raise InputError(source, f"expected input '{spec.name}' of shape [batch, width], "
                                 f"found {_shape_text(spec.shape)}")
    return spec


def _embedding_layout(spec: TensorSpec, width: Any, encoder_dim: int | None,
                      source: str) -> dict[str, Any]:
    if not encoder_dim:
        raise WorkstationError("a text-embedding model needs the workspace encoder's width")
    layouts = {encoder_dim: "response", 2 * encoder_dim: "prompt+response"}
    if width not in layouts:
        raise InputError(source, f"expected input width {encoder_dim} (response) or "
                                 f"{2 * encoder_dim} (prompt+response), found {width}")
    return {"name": spec.name, "type": spec.type, "width": width, "dim": encoder_dim,
            "layout": layouts[width]}


def _check_token_inputs(inputs: Sequence[TensorSpec], tokenizer_json: str | None,
                        source: str) -> dict[str, Any]:
    names = [i.name for i in inputs]
    missing = [n for n in TOKEN_INPUTS[:2] if n not in names]
    if missing:
        raise InputError(source, f"a text-tokens model takes input_ids and attention_mask "
                                 f"(and optionally token_type_ids), found inputs "
                                 f"{', '.join(names) or 'none'}")
    extra = [n for n in names if n not in TOKEN_INPUTS]
    if extra:
        raise InputError(source, f"unexpected input '{extra[0]}': a text-tokens model takes "
                                 f"only input_ids, attention_mask and token_type_ids")
    for spec in inputs:
        if spec.type not in _INT_TYPES:
            raise InputError(source, f"expected an integer input '{spec.name}', found {spec.type}")
        if spec.shape is None or len(spec.shape) != 2:
            raise InputError(source, f"expected input '{spec.name}' of shape [batch, sequence], "
                                     f"found {_shape_text(spec.shape)}")
    if tokenizer_json is None:
        raise InputError(source, "a text-tokens model needs its tokenizer.json (none found "
                                 "beside the file; pass --tokenizer)")
    seq = next(i for i in inputs if i.name == "input_ids").shape[1]
    return {"names": names, "type": inputs[0].type,
            "max_length": _max_length(seq, load_tokenizer(tokenizer_json, source))}


def _max_length(seq_dim: Any, tokenizer: Any) -> int:
    if isinstance(seq_dim, int) and seq_dim > 0:
        return seq_dim  # the graph fixes the sequence length
    truncation = tokenizer.truncation
    if truncation and truncation.get("max_length"):
        return int(truncation["max_length"])
    return DEFAULT_MAX_LENGTH


def load_tokenizer(text: str, source: str = "tokenizer.json") -> Any:
    """Parse a tokenizer.json (``tokenizers`` package) or refuse it in one line."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(text)
    except Exception as exc:
        raise InputError(source, f"not a valid tokenizer.json ({_one_line(exc)})") from None


# -- choosing the output -----------------------------------------------------

def choose_output(outputs: Sequence[TensorSpec], output: str | None = None,
                  column: int | None = None, score_type: str | None = None,
                  source: str = "<model>") -> OutputChoice:
    """Pick the output that scores (see the module docstring); validate the column
    against the declared shape (a dynamic width is checked by the test run)."""
    spec = _find_output(outputs, output, source)
    zipmap = spec.type.startswith("seq(map(")
    if not zipmap and (not spec.type.startswith("tensor(") or spec.type == "tensor(string)"):
        raise InputError(source, f"output '{spec.name}' is a {spec.type}; expected a numeric "
                                 f"tensor or a sequence of maps (zipmap)")
    if not zipmap:
        column = _tensor_column(spec, column, source)
    if score_type is None:
        score_type = _score_type(spec.name, zipmap)
    elif score_type not in SCORE_TYPES:
        raise WorkstationError(f"unknown score type '{score_type}': expected one of "
                               f"{', '.join(SCORE_TYPES)}")
    return OutputChoice(spec.name, column, score_type, zipmap)


def _find_output(outputs: Sequence[TensorSpec], output: str | None, source: str) -> TensorSpec:
    by_name = {o.name: o for o in outputs}
    names = ", ".join(by_name)
    if output is not None:
        if output not in by_name:
            raise InputError(source, f"output '{output}' not found; the model's outputs are "
                                     f"{names}")
        return by_name[output]
    if len(outputs) == 1:
        return outputs[0]
    for pattern in (r"^probabilit", r"prob", r"logit", r"score|reward"):
        hits = [o for o in outputs if re.search(pattern, o.name, re.IGNORECASE)]
        if hits:
            return hits[0]
    floats = [o for o in outputs if o.type in _FLOAT_TYPES]
    if len(floats) == 1:
        return floats[0]
    raise InputError(source, f"cannot tell which output is the score among {names}; "
                             f"pass --output")


def _tensor_column(spec: TensorSpec, column: int | None, source: str) -> int | None:
    shape = spec.shape
    if shape is not None and len(shape) not in (1, 2):
        raise InputError(source, f"expected output '{spec.name}' of shape [N] or [N, C], "
                                 f"found {_shape_text(shape)}")
    width = shape[1] if shape is not None and len(shape) == 2 else 1
    if not isinstance(width, int):
        return column  # dynamic width: the test run checks the column
    if column is None:
        return width - 1 if width > 1 else None
    return _checked_column(spec.name, column, width, source)


def _checked_column(name: str, column: int, width: int, source: str) -> int:
    if not 0 <= column < width:
        raise InputError(source, f"column {column} is out of range: output '{name}' has "
                                 f"{width} column{'s' if width != 1 else ''} (0..{width - 1})")
    return column


def _score_type(name: str, zipmap: bool) -> str:
    if zipmap or re.search("prob", name, re.IGNORECASE):
        return "probability"
    if re.search("logit", name, re.IGNORECASE):
        return "logit"
    return "reward"


# -- the test run ------------------------------------------------------------

def zero_inputs(inputs: Sequence[TensorSpec], source: str = "<model>") -> dict[str, np.ndarray]:
    """Zero arrays of each input's declared shape (free dims: a small batch)."""
    feeds = {}
    for spec in inputs:
        dims = [_concrete_dim(d, i) for i, d in enumerate(spec.shape or (_TEST_BATCH,))]
        size = int(np.prod(dims, dtype=np.float64))
        if size > TEST_RUN_MAX_VALUES:
            raise InputError(source, f"input '{spec.name}' declares shape {_shape_text(spec.shape)}"
                                     f" ({size:,} values), more than a test run allows "
                                     f"({TEST_RUN_MAX_VALUES:,})")
        dtype = _FLOAT_TYPES.get(spec.type) or _INT_TYPES.get(spec.type) or np.float32
        array = np.zeros(dims, dtype=dtype)
        if spec.name == "attention_mask":
            array[:] = 1  # an all-padding sequence is not a fair test
        feeds[spec.name] = array
    return feeds


def _concrete_dim(dim: Any, axis: int) -> int:
    if isinstance(dim, int) and dim > 0:
        return dim
    return _TEST_BATCH if axis == 0 else _TEST_SEQ


def test_run(session: Any, inputs: Sequence[TensorSpec], choice: OutputChoice,
             source: str = "<model>") -> OutputChoice:
    """Run once on zeros; check the output gives one score per row. Returns the
    choice with a dynamic-width default column resolved."""
    feeds = zero_inputs(inputs, source)
    n = next(iter(feeds.values())).shape[0]
    raw = _bounded_run(session, choice.output, feeds, source)
    choice = _resolve_column(choice, raw, source)
    scores = to_scores(raw, choice)
    if scores.shape != (n,):
        raise InputError(source, f"expected output '{choice.output}' to give one score per row "
                                 f"({n}), found shape {list(np.shape(raw))}")
    return choice


def _bounded_run(session: Any, output: str, feeds: dict[str, np.ndarray], source: str) -> Any:
    """Run once; a run still going after ``TEST_RUN_SECONDS`` is stopped."""
    import threading

    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = _ORT_LOGGING_FATAL_ONLY
    timer = threading.Timer(TEST_RUN_SECONDS, lambda: setattr(options, "terminate", True))
    timer.daemon = True
    timer.start()
    try:
        return session.run([output], feeds, options)[0]
    except Exception as exc:
        if options.terminate:
            raise InputError(source, f"the model did not finish a test run on a zero input "
                                     f"within {TEST_RUN_SECONDS:g} s; refused") from None
        raise InputError(source, f"the model fails on a zero input of shape "
                                 f"{_shape_text(next(iter(feeds.values())).shape)} "
                                 f"({_one_line(exc)})") from None
    finally:
        timer.cancel()


def _resolve_column(choice: OutputChoice, raw: Any, source: str) -> OutputChoice:
    if choice.zipmap:
        width = len(raw[0]) if len(raw) else 0
    else:
        shape = np.shape(raw)
        width = shape[1] if len(shape) == 2 else 1
        if len(shape) not in (1, 2):
            raise InputError(source, f"expected output '{choice.output}' of shape [N] or [N, C],"
                                     f" found {list(shape)}")
    column = choice.column
    if column is None and width > 1:
        column = width - 1
    elif column is not None:
        column = _checked_column(choice.output, column, width, source)
    return OutputChoice(choice.output, column, choice.score_type, choice.zipmap)


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
                 source: str = "<model>") -> None:
        self.session = make_session(data, source)
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
        x = np.ascontiguousarray(x, dtype=_FLOAT_TYPES[spec.type])
        if self.fixed_batch or len(x) <= ROWS_PER_RUN:
            return self._run({spec.name: x}, len(x), progress)
        return np.concatenate([self._run({spec.name: x[start:start + ROWS_PER_RUN]},
                                         len(x[start:start + ROWS_PER_RUN]), progress)
                               for start in range(0, len(x), ROWS_PER_RUN)])

    def score_tokens(self, prompts: Sequence[str | None], responses: Sequence[str],
                     progress: Progress | None = None) -> np.ndarray:
        """Scores for (prompt, response) pairs through the model's own tokenizer."""
        if self.tokenizer is None:
            raise WorkstationError("this model takes tokens but has no tokenizer")
        items = [(p, r or "") if p else (r or "") for p, r in zip(prompts, responses)]
        encodings = self.tokenizer.encode_batch(items)
        dtype = _INT_TYPES[self.input_info["type"]]
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
        options.log_severity_level = _ORT_LOGGING_FATAL_ONLY
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


# -- the whole check ---------------------------------------------------------

def inspect_model(data: bytes, kind: str, *, source: str = "<model>",
                  encoder_dim: int | None = None, tokenizer_json: str | None = None,
                  output: str | None = None, column: int | None = None,
                  score_type: str | None = None) -> dict[str, Any]:
    """Everything registration checks; returns the manifest fields it proves:
    ``onnx`` (metadata), ``input``, ``output``, ``column``, ``score_type``, ``zipmap``."""
    if kind not in INPUT_KINDS:
        raise WorkstationError(f"unknown input kind '{kind}': expected one of "
                               f"{', '.join(INPUT_KINDS)}")
    meta = describe_onnx(data, source)
    session = make_session(data, source)
    inputs, outputs = session_specs(session)
    input_info = check_inputs(kind, inputs, encoder_dim=encoder_dim,
                              tokenizer_json=tokenizer_json, source=source)
    choice = choose_output(outputs, output, column, score_type, source)
    choice = test_run(session, inputs, choice, source)
    return {"onnx": meta, "input": input_info, "output": choice.output,
            "column": choice.column, "score_type": choice.score_type, "zipmap": choice.zipmap}


def _shape_text(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "an unknown shape"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]
