"""The scoring head of an ONNX reward model: find it, cut the graph at its
input (the model's own feature vector), and splice new head weights back.

A head is the last linear map before the score output: a MatMul with a
constant weight (and its Add of a constant bias), a Gemm, or the
``ai.onnx.ml`` LinearClassifier / LinearRegressor of skl2onnx linear models.
Between the head and the score output only value-preserving or
column-selecting ops may stand (Identity, Cast, Reshape/Squeeze/Unsqueeze/
Flatten of a one-column head, Gather of one column, an L1 Normalizer after a
logistic classifier), plus one Sigmoid or Softmax, recorded as the score's
transform. The head's input must be a rank-2 tensor [N, F].

Whatever the head's columns, the score is ``transform(s(x))`` with
``s(x) = x·v + c`` linear in the features: ``v``/``c`` are the score column
(Sigmoid or no transform), or the score column minus the other one (a
two-class Softmax, or a logistic classifier's two rows). ``splice`` writes a
new (v, c) back into a copy of the graph, changing nothing but the head's
weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workstation.errors import WorkstationError

_PASS = {"Identity", "Cast"}
_RESHAPES = {"Reshape", "Squeeze", "Unsqueeze", "Flatten"}
_TRANSFORMS = {"Sigmoid": "sigmoid", "Softmax": "softmax"}
_ML_HEADS = {"LinearClassifier", "LinearRegressor"}
_POST = {"NONE": "none", "LOGISTIC": "sigmoid", "SOFTMAX": "softmax"}
_QUANTIZED = {"MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulNBits",
              "QGemm", "DequantizeLinear"}


class NoHead(WorkstationError):
    """The graph has no head the workstation can retrain (the message says why)."""


@dataclass
class ScoreHead:
    """Where a model's head is and what it computes (see the module docstring).

    ``weight`` is [F, C] and ``bias`` [C] as applied (x @ weight + bias);
    ``column`` is the score's column among the C, ``transform`` "none",
    "sigmoid" or "softmax"; ``input`` the feature tensor, ``width`` F;
    ``input_is_model_input`` when the features are the graph's own input."""

    op: str
    nodes: list[str]
    input: str
    width: int
    weight: np.ndarray
    bias: np.ndarray
    column: int
    transform: str
    input_is_model_input: bool
    weight_source: str
    bias_source: str | None
    symmetric: bool = False  # a logistic classifier whose two rows are negatives
    _gemm: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def outputs(self) -> int:
        return int(self.weight.shape[1])

    def linear(self) -> tuple[np.ndarray, float]:
        """(v, c) of the score's logit s(x) = x·v + c."""
        w, b, k = self.weight, self.bias, self.column
        if self.transform == "softmax":
            other = 1 - k
            return w[:, k] - w[:, other], float(b[k] - b[other])
        return w[:, k].copy(), float(b[k])

    def with_linear(self, v: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
        """The head's (weight, bias) whose score logit is x·v + c."""
        w, b, k = self.weight.copy(), self.bias.copy(), self.column
        if self.symmetric:  # keep the two logistic columns summing to one
            w[:, k], b[k] = v, c
            w[:, 1 - k], b[1 - k] = -v, -c
        elif self.transform == "softmax":
            w[:, k], b[k] = w[:, 1 - k] + v, b[1 - k] + c
        else:
            w[:, k], b[k] = v, c
        return w, b

    def score_of(self, logit: np.ndarray) -> np.ndarray:
        """The score the graph outputs for a logit s(x)."""
        if self.transform == "none":
            return logit
        return 1.0 / (1.0 + np.exp(-logit))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "nodes": list(self.nodes), "input": self.input,
                "width": self.width, "outputs": self.outputs, "column": self.column,
                "transform": self.transform, "weight": self.weight_source,
                "bias": self.bias_source, "features_are_model_input": self.input_is_model_input}


# -- finding -------------------------------------------------------------------

def find_head(data: bytes, manifest: dict[str, Any]) -> ScoreHead:
    """The head producing the manifest's score output; ``NoHead`` says why not."""
    import onnx

    model = onnx.load_model_from_string(data)
    try:
        return _Graph(model).head(manifest)
    except NoHead as exc:
        quantized = sorted({n.op_type for n in model.graph.node} & _QUANTIZED)
        if quantized:
            raise NoHead(f"{exc}; the model is quantized ({quantized[0]}): retrain the float "
                         f"model's head, then quantize it") from None
        raise


class _Graph:
    """Lookups over one graph: producers, constants and inferred ranks."""

    def __init__(self, model: Any) -> None:
        import onnx
        from onnx import numpy_helper

        self.model = model
        graph = model.graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and \
                    node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        initializers = {t.name for t in graph.initializer}
        self.inputs = [i.name for i in graph.input if i.name not in initializers]
        self.ranks: dict[str, int] = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
            for info in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
                tensor = info.type.tensor_type
                if info.type.WhichOneof("value") == "tensor_type" and tensor.HasField("shape"):
                    self.ranks[info.name] = len(tensor.shape.dim)
        except Exception:
            pass  # ranks stay unknown; the features' rank is checked when they are computed

    def head(self, manifest: dict[str, Any]) -> ScoreHead:
        tensor = self._score_tensor(manifest)
        column = manifest.get("column")
        transform, normalized, reshaped = "none", False, False
        while True:
            node = self.producer.get(tensor)
            if node is None:
                raise NoHead(f"the score output '{manifest['output']}' is not computed by a "
                             f"linear layer (it is a graph input or constant)")
            op = node.op_type
            if op in ("MatMul", "Gemm", "Add") or op in _ML_HEADS:
                head = self._head_at(node, tensor, column, transform)
                if reshaped and head.outputs != 1:
                    raise NoHead("the score reshapes a head with several columns")
                if normalized and not head.symmetric:
                    raise NoHead("the score is normalised across a classifier's columns "
                                 "that are not one logistic score")
                return head
            if op in _TRANSFORMS:
                if transform != "none":
                    raise NoHead(f"the score passes two transforms ({op} after {transform})")
                transform = _TRANSFORMS[op]
                if op == "Softmax":
                    self._check_softmax_axis(node)
            elif op == "Gather":
                column = self._gathered_column(node, column)
            elif op == "Normalizer":
                normalized = self._check_normalizer(node)
            elif op in _RESHAPES:
                reshaped = True  # value-preserving only for a one-column head
            elif op not in _PASS:
                raise NoHead(f"the score is computed by a non-linear '{op}' node "
                             f"('{node.name or node.output[0]}'), not by a linear head")
            tensor = node.input[0]

    # -- the walk ------------------------------------------------------------

    def _score_tensor(self, manifest: dict[str, Any]) -> str:
        name = manifest["output"]
        if manifest.get("zipmap"):
            zipmap = self.producer.get(name)
            if zipmap is None or zipmap.op_type != "ZipMap":
                raise NoHead(f"output '{name}' is a sequence of maps not made by a ZipMap")
            return zipmap.input[0]
        return name

    def _check_softmax_axis(self, node: Any) -> None:
        axis = _attr(node, "axis", -1)
        if axis not in (-1, 1):
            raise NoHead(f"the score's Softmax runs over axis {axis}, not the classes")

    def _gathered_column(self, node: Any, column: int | None) -> int:
        index = self.constants.get(node.input[1])
        axis = _attr(node, "axis", 0)
        rank = self.ranks.get(node.input[0], 2)
        if index is None or index.size != 1 or axis not in (1, -1) or rank != 2:
            raise NoHead(f"the score is taken by a Gather ('{node.name}') that is not one "
                         f"constant column of a [N, C] tensor")
        if column not in (None, 0):
            raise NoHead("the score's column is chosen twice")
        return int(index.reshape(-1)[0])

    def _check_normalizer(self, node: Any) -> bool:
        norm = _attr(node, "norm", b"MAX")
        if (norm.decode() if isinstance(norm, bytes) else norm) != "L1":
            raise NoHead(f"the score passes a '{norm}' Normalizer")
        return True

    def _head_at(self, node: Any, tensor: str, column: int | None,
                 transform: str) -> ScoreHead:
        if node.op_type in _ML_HEADS:
            head = self._ml_head(node, tensor, column, transform)
        elif node.op_type == "Gemm":
            head = self._gemm_head(node, column, transform, [node.name])
        else:
            head = self._matmul_head(node, column, transform)
        return self._finished(head)

    def _matmul_head(self, node: Any, column: int | None, transform: str) -> ScoreHead:
        bias_source, bias, names = None, None, []
        if node.op_type == "Add":
            data, const = self._split_const(node)
            if const is None:
                raise NoHead(f"the score comes from an Add ('{node.name}') of two computed "
                             f"tensors, not a bias")
            bias_source, bias, names = const, self.constants[const], [node.name]
            node = self.producer.get(data)
            if node is None or node.op_type not in ("MatMul", "Gemm"):
                op = node.op_type if node is not None else "a graph input"
                raise NoHead(f"the score's bias is added to {op}, not a linear layer")
            if node.op_type == "Gemm":
                return self._gemm_head(node, column, transform, [node.name] + names,
                                       (bias_source, bias))
        data, const = self._split_const(node, second=True)
        if const is None:
            raise NoHead(f"the last MatMul ('{node.name}') multiplies two computed tensors; "
                         f"its weight is not a constant")
        w = self.constants[const].astype(np.float64)
        w = w.reshape(-1, 1) if w.ndim == 1 else w
        if w.ndim != 2:
            raise NoHead(f"the head's weight has shape {list(w.shape)}, not [F, C]")
        b = np.zeros(w.shape[1]) if bias is None else _bias(bias, w.shape[1], node.name)
        return ScoreHead("MatMul", [node.name] + names, data, int(w.shape[0]), w, b,
                         _column(column, w.shape[1]), transform, False, const, bias_source)

    def _gemm_head(self, node: Any, column: int | None, transform: str, names: list[str],
                   extra_bias: tuple[str, np.ndarray] | None = None) -> ScoreHead:
        if _attr(node, "transA", 0):
            raise NoHead(f"the head Gemm ('{node.name}') transposes its input")
        const = node.input[1] if node.input[1] in self.constants else None
        if const is None:
            raise NoHead(f"the head Gemm ('{node.name}') has no constant weight")
        trans_b, alpha, beta = _attr(node, "transB", 0), _attr(node, "alpha", 1.0), \
            _attr(node, "beta", 1.0)
        raw = self.constants[const].astype(np.float64)
        w = alpha * (raw.T if trans_b else raw)
        c_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if extra_bias is not None and c_name is not None:
            raise NoHead(f"the head Gemm ('{node.name}') has two biases")
        if c_name is not None and c_name not in self.constants:
            raise NoHead(f"the head Gemm ('{node.name}') has a computed bias")
        if extra_bias is not None:
            c_name, b, beta = extra_bias[0], _bias(extra_bias[1], w.shape[1], node.name), 1.0
        else:
            b = beta * _bias(self.constants[c_name], w.shape[1], node.name) if c_name \
                else np.zeros(w.shape[1])
        head = ScoreHead("Gemm", names, node.input[0], int(w.shape[0]), w, b,
                         _column(column, w.shape[1]), transform, False, const, c_name)
        head._gemm = {"transB": int(trans_b), "alpha": float(alpha), "beta": float(beta)}
        return head

    def _ml_head(self, node: Any, tensor: str, column: int | None,
                 transform: str) -> ScoreHead:
        if transform != "none":
            raise NoHead(f"the score passes a {transform} after the {node.op_type}")
        post = _attr(node, "post_transform", b"NONE")
        post = post.decode() if isinstance(post, bytes) else post
        if post not in _POST:
            raise NoHead(f"the {node.op_type} uses post_transform {post}")
        if node.op_type == "LinearClassifier" and tensor != node.output[1]:
            raise NoHead("the score is the LinearClassifier's label, not its scores")
        coefficients = np.asarray(_attr(node, "coefficients", []), dtype=np.float64)
        intercepts = np.asarray(_attr(node, "intercepts", []) or [], dtype=np.float64)
        rows = max(len(intercepts), int(_attr(node, "targets", 1)) if node.op_type ==
                   "LinearRegressor" else len(intercepts))
        if rows == 0 or coefficients.size % rows:
            raise NoHead(f"the {node.op_type}'s coefficients do not form a matrix")
        w = coefficients.reshape(rows, -1).T
        b = intercepts if len(intercepts) else np.zeros(rows)
        if node.op_type == "LinearClassifier" and rows == 1:
            raise NoHead("the LinearClassifier has one coefficient row (a binary layout "
                         "the workstation does not splice)")
        symmetric = bool(rows == 2 and post == "LOGISTIC" and np.allclose(w[:, 0], -w[:, 1])
                         and np.allclose(b[0], -b[1]))
        return ScoreHead(node.op_type, [node.name or node.op_type], node.input[0],
                         int(w.shape[0]), w, b, _column(column, rows), _POST[post], False,
                         "coefficients", "intercepts", symmetric=symmetric)

    def _finished(self, head: ScoreHead) -> ScoreHead:
        if head.transform == "softmax" and head.outputs != 2:
            raise NoHead(f"the score is a softmax over {head.outputs} classes; the "
                         f"workstation retrains one- and two-column heads")
        rank = self.ranks.get(head.input)
        if rank is not None and rank != 2:
            raise NoHead(f"the head's input '{head.input}' has rank {rank}, not [N, F]: "
                         f"the features are not pooled before the head")
        head.input_is_model_input = head.input in self.inputs
        return head

    def _split_const(self, node: Any, second: bool = False) -> tuple[str, str | None]:
        """(the data input, the constant input) of a binary node."""
        a, b = node.input[0], node.input[1]
        if b in self.constants and a not in self.constants:
            return a, b
        if not second and a in self.constants and b not in self.constants:
            return b, a
        return a, None


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _bias(value: np.ndarray, width: int, name: str) -> np.ndarray:
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    if flat.size == 1:
        return np.full(width, float(flat[0]))
    if flat.size != width:
        raise NoHead(f"the bias of '{name}' has {flat.size} values for {width} columns")
    return flat


def _column(column: int | None, width: int) -> int:
    k = int(column or 0)
    if not 0 <= k < width:
        raise NoHead(f"the score column {k} is outside the head's {width} columns")
    return k


# -- cutting and splicing --------------------------------------------------------

def feature_model(data: bytes, head: ScoreHead) -> bytes:
    """The graph cut at the head's input: the same inputs, one output, the features."""
    import onnx
    from onnx import helper

    model = onnx.load_model_from_string(data)
    graph = model.graph
    elem = _elem_type(model, head.input)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(head.input, elem, ["batch", head.width]))
    prune(graph)  # the inputs stay: the scorer's feeds still fit
    return model.SerializeToString()


def tail_model(data: bytes, head: ScoreHead, output: str) -> bytes:
    """The graph from the features to ``output`` alone: input ``head.input`` [N, F]."""
    import onnx
    from onnx import helper

    model = onnx.load_model_from_string(data)
    graph = model.graph
    elem = _elem_type(model, head.input)
    kept = [o for o in graph.output if o.name == output]
    del graph.output[:]
    graph.output.extend(kept)
    prune(graph, stop={head.input})
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(head.input, elem, ["batch", head.width]))
    available = {head.input} | {t.name for t in graph.initializer} | \
        {o for n in graph.node for o in n.output}
    missing = sorted({i for n in graph.node for i in n.input if i and i not in available})
    if missing:
        raise NoHead(f"the path from the head to the score also reads '{missing[0]}'")
    return model.SerializeToString()


def splice(data: bytes, head: ScoreHead, weight: np.ndarray, bias: np.ndarray) -> bytes:
    """A copy of the graph with the head's weights replaced; nothing else changes."""
    import onnx

    model = onnx.load_model_from_string(data)
    if head.op in _ML_HEADS:
        _splice_ml(model, head, weight, bias)
    else:
        _splice_tensors(model, head, weight, bias)
    return model.SerializeToString()


def _splice_ml(model: Any, head: ScoreHead, weight: np.ndarray, bias: np.ndarray) -> None:
    node = next(n for n in model.graph.node if (n.name or n.op_type) == head.nodes[0])
    for attribute in node.attribute:
        if attribute.name == "coefficients":
            del attribute.floats[:]
            attribute.floats.extend(weight.T.reshape(-1).astype(np.float32).tolist())
        elif attribute.name == "intercepts":
            del attribute.floats[:]
            attribute.floats.extend(bias.astype(np.float32).tolist())


def _splice_tensors(model: Any, head: ScoreHead, weight: np.ndarray, bias: np.ndarray) -> None:
    gemm = head._gemm
    w = weight / gemm.get("alpha", 1.0)
    if gemm.get("transB"):
        w = w.T
    _replace_constant(model, head.weight_source, w)
    if head.bias_source is not None:
        _replace_constant(model, head.bias_source, bias / gemm.get("beta", 1.0)
                          if head.op == "Gemm" and len(head.nodes) == 1 else bias)


def _replace_constant(model: Any, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        if tensor.name == name:
            old = numpy_helper.to_array(tensor)
            tensor.CopyFrom(numpy_helper.from_array(_like(value, old), name))
            return
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            old = numpy_helper.to_array(node.attribute[0].t)
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(_like(value, old), name))
            return
    raise WorkstationError(f"the head's constant '{name}' vanished from the graph")


def _like(value: np.ndarray, old: np.ndarray) -> np.ndarray:
    """``value`` in the old constant's dtype and shape (a bias may be [C] or [1, C])."""
    value = np.asarray(value, dtype=np.float64)
    if value.size == 1 and old.size == 1:
        return value.reshape(old.shape).astype(old.dtype)
    return value.reshape(old.shape).astype(old.dtype)


def _elem_type(model: Any, name: str) -> int:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
        for info in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
            if info.name == name and info.type.tensor_type.elem_type:
                return int(info.type.tensor_type.elem_type)
    except Exception:
        pass
    return onnx.TensorProto.FLOAT


def prune(graph: Any, stop: set[str] = frozenset()) -> None:
    """Keep only the nodes (and constants) the outputs need, not looking past ``stop``."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output) and not set(node.output) <= stop:
            keep.append(node)
            needed.update(i for i in node.input if i not in stop)
    nodes = list(reversed(keep))
    del graph.node[:]
    graph.node.extend(nodes)
    used = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used)
