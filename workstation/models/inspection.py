"""What registration checks before a model enters the workspace.

``inspect_model`` refuses what does not fit the declared input kind (see
``workstation.models.onnx_model`` for the kinds and the score conventions)
with a one-line message saying what it expected and what it found, and runs
the model once on a zero input to prove it loads. Before that run it refuses
any tensor whose fixed shape (declared, or inferred through the graph) needs
more than ``MAX_DECLARED_BYTES``, and the run itself is stopped after
``TEST_RUN_SECONDS`` (a Loop can run for ever).
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import numpy as np

from workstation.errors import InputError, WorkstationError
from workstation.models.onnx_model import (DEFAULT_MAX_LENGTH, FLOAT_TYPES, INPUT_KINDS,
                                           INT_TYPES, ORT_LOGGING_FATAL_ONLY, SCORE_TYPES,
                                           TOKEN_INPUTS, OutputChoice, TensorSpec, load_tokenizer,
                                           make_session, one_line, session_specs, to_scores)
from workstation.models.text_format import TextFormat

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
        raise InputError(source, f"not a valid ONNX model ({one_line(exc)})") from None
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


# -- checking inputs ---------------------------------------------------------

def check_inputs(kind: str, inputs: Sequence[TensorSpec], *, encoder_dim: int | None = None,
                 tokenizer_json: str | None = None, source: str = "<model>",
                 max_length: int | None = None) -> dict[str, Any]:
    """Check the graph inputs fit ``kind``; return the manifest's "input" part."""
    if kind not in INPUT_KINDS:
        raise WorkstationError(f"unknown input kind '{kind}': expected one of "
                               f"{', '.join(INPUT_KINDS)}")
    if kind == "text-tokens":
        return _check_token_inputs(inputs, tokenizer_json, source, max_length)
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
    if spec.type not in FLOAT_TYPES:
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
                        source: str, max_length: int | None = None) -> dict[str, Any]:
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
        if spec.type not in INT_TYPES:
            raise InputError(source, f"expected an integer input '{spec.name}', found {spec.type}")
        if spec.shape is None or len(spec.shape) != 2:
            raise InputError(source, f"expected input '{spec.name}' of shape [batch, sequence], "
                                     f"found {_shape_text(spec.shape)}")
    if tokenizer_json is None:
        raise InputError(source, "a text-tokens model needs its tokenizer.json (none found "
                                 "beside the file; pass --tokenizer)")
    seq = next(i for i in inputs if i.name == "input_ids").shape[1]
    tokenizer = load_tokenizer(tokenizer_json, source)
    return {"names": names, "type": inputs[0].type,
            "max_length": _checked_max_length(max_length, seq, tokenizer, source)}


def _checked_max_length(asked: int | None, seq_dim: Any, tokenizer: Any, source: str) -> int:
    """``--max-length`` if given (at most a fixed sequence length), else the default."""
    if asked is None:
        return _max_length(seq_dim, tokenizer)
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
        raise WorkstationError(f"--max-length must be a positive number of tokens, got {asked!r}")
    if isinstance(seq_dim, int) and 0 < seq_dim < asked:
        raise InputError(source, f"--max-length {asked} is longer than the graph's fixed "
                                 f"sequence length {seq_dim}")
    return asked


def _max_length(seq_dim: Any, tokenizer: Any) -> int:
    if isinstance(seq_dim, int) and seq_dim > 0:
        return seq_dim  # the graph fixes the sequence length
    truncation = tokenizer.truncation
    if truncation and truncation.get("max_length"):
        return int(truncation["max_length"])
    return DEFAULT_MAX_LENGTH


# Which token a sequence classifier of a Hugging Face model type scores
# (decoders: the last non-pad token; encoders: the first, [CLS] or <s>).
_LAST_TOKEN_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2",
                     "gemma3", "phi", "phi3", "gpt2", "gpt_neox", "gptj", "falcon", "olmo"}
_FIRST_TOKEN_TYPES = {"bert", "roberta", "xlm-roberta", "deberta", "deberta-v2", "distilbert",
                      "electra", "albert", "mpnet", "modernbert"}


def token_pooling(meta: dict[str, Any], config_json: str | None) -> str | None:
    """The pooling a tokens model uses: the ONNX file's ``pooling`` metadata,
    else what its ``config.json``'s model type implies; None when unknown."""
    said = (meta.get("metadata_props") or {}).get("pooling")
    if said:
        return str(said)
    try:
        model_type = str(json.loads(config_json or "{}").get("model_type", "")).lower()
    except (ValueError, AttributeError):
        return None
    if model_type in _LAST_TOKEN_TYPES:
        return "last-token"
    if model_type in _FIRST_TOKEN_TYPES:
        return "first-token"
    return None


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
    floats = [o for o in outputs if o.type in FLOAT_TYPES]
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
        dtype = FLOAT_TYPES.get(spec.type) or INT_TYPES.get(spec.type) or np.float32
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
    options.log_severity_level = ORT_LOGGING_FATAL_ONLY
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
                                 f"({one_line(exc)})") from None
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


# -- the whole check ---------------------------------------------------------

def inspect_model(data: bytes, kind: str, *, source: str = "<model>",
                  encoder_dim: int | None = None, tokenizer_json: str | None = None,
                  output: str | None = None, column: int | None = None,
                  score_type: str | None = None, text_format: TextFormat | None = None,
                  max_length: int | None = None,
                  config_json: str | None = None) -> dict[str, Any]:
    """Everything registration checks; returns the manifest fields it proves:
    ``onnx`` (metadata), ``input``, ``output``, ``column``, ``score_type``, ``zipmap``.
    ``text_format``, ``max_length`` and ``config_json`` (the model's config.json,
    for its pooling) apply to text-tokens models only."""
    if kind not in INPUT_KINDS:
        raise WorkstationError(f"unknown input kind '{kind}': expected one of "
                               f"{', '.join(INPUT_KINDS)}")
    if kind != "text-tokens" and (text_format is not None or max_length is not None):
        raise WorkstationError("--text-format and --max-length apply to text-tokens models "
                               f"only, not {kind}")
    meta = describe_onnx(data, source)
    session = make_session(data, source)
    inputs, outputs = session_specs(session)
    input_info = check_inputs(kind, inputs, encoder_dim=encoder_dim,
                              tokenizer_json=tokenizer_json, source=source,
                              max_length=max_length)
    if kind == "text-tokens":
        input_info.update((text_format or TextFormat()).to_input())
        pooling = token_pooling(meta, config_json)
        if pooling:
            input_info["pooling"] = pooling
    choice = choose_output(outputs, output, column, score_type, source)
    choice = test_run(session, inputs, choice, source)
    return {"onnx": meta, "input": input_info, "output": choice.output,
            "column": choice.column, "score_type": choice.score_type, "zipmap": choice.zipmap}


def _shape_text(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "an unknown shape"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
