"""The patched model as one ONNX graph: the unchanged base graph plus the
suppression kernels as graph operations on the base's input tensor, or on
another float tensor [N, F] inside it (a tokens model's head input).

Outputs of the patched graph (batch N, K kernels):

* ``reward`` [N] float: the patched score (what the registry scores with);
* ``base_score`` [N] float: the base's own score, for evidence;
* ``patch_activation`` [N] float: min(1, Σ_i k_i(x)), how strongly any patch fired;
* ``kernel_activations`` [N, K] float: each k_i(x), columns in the order of
  the manifest's ``patch_layer.columns``;
* the base's other float tensor outputs (e.g. ensemble ``members``, expert
  ``expert_rewards`` / ``gate``), unchanged, so the oracle still sees them.

Squared distances use one MatMul, ||x||² − 2x·Cᵀ + ||c||², not a broadcast
subtraction (which would need an [N, K, width] tensor). Narrow inputs
(observations, up to 256 wide) are computed in double precision because the
expansion cancels badly in float when bandwidths are small; text embeddings
in float, where the MatMul is the patch's whole cost (the caller checks the
float graph against the core and falls back to double if it disagrees).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from workstation.errors import WorkstationError
from workstation.models.score_head import prune
from workstation.patching.kernels import RULES, SuppressionKernel, patch_groups

OUTPUTS = ("reward", "base_score", "patch_activation", "kernel_activations")
DOUBLE_MAX_WIDTH = 256
_P = "suppression_patch/"  # prefix of every tensor the patch adds


def build_patched_model(root_onnx: bytes, root_manifest: dict[str, Any],
                        kernels: Sequence[SuppressionKernel], rule: str,
                        precision: str | None = None, kernel_input: str | None = None) -> bytes:
    """The root (unpatched) model with ``kernels`` applied under ``rule``, as
    ONNX bytes. With no kernels, ``reward`` is the base score itself.
    ``precision`` ("float" or "double") overrides the width rule for the
    kernel arithmetic; ``kernel_input`` names the tensor the kernels read
    (default: the graph's one input)."""
    import onnx

    if rule not in RULES:
        raise WorkstationError(f"unknown patch rule '{rule}'")
    model = onnx.load_model_from_string(root_onnx)
    graph = model.graph
    score_tensor, column = _score_tensor(graph, root_manifest)
    x_name, x_type, batch = _input(graph) if kernel_input is None else \
        _inner_tensor(model, kernel_input)
    score_tensor = _free_reserved_names(graph, score_tensor)
    kept = _kept_outputs(graph, score_tensor, root_manifest["output"])
    builder = _Builder(graph, _opset(model))
    score = builder.score(score_tensor, column)
    if kernels:
        builder.kernels(x_name, x_type, kernels, rule, score, precision)
    else:
        builder.no_kernels(score)
    del graph.output[:]
    graph.output.extend(_output_infos(batch, len(kernels)) + kept)
    prune(graph)
    return _checked(model)


def default_precision(width: int) -> str:
    """"double" for narrow inputs (cheap, and their bandwidths can be small),
    "float" for wide ones (text embeddings), where it is the MatMul's cost."""
    return "double" if width <= DOUBLE_MAX_WIDTH else "float"


# -- reading the base graph --------------------------------------------------

def _score_tensor(graph: Any, manifest: dict[str, Any]) -> tuple[str, int]:
    """The tensor holding the base score and its column. A zipmap output (a
    sequence of maps) is read at the ZipMap node's input, the probability
    tensor [N, C] whose columns are the classes in the maps' key order."""
    name, column = manifest["output"], manifest.get("column")
    if manifest.get("zipmap"):
        node = next((n for n in graph.node if n.op_type == "ZipMap" and name in n.output), None)
        if node is None:
            raise WorkstationError(f"cannot patch: output '{name}' is a sequence of maps "
                                   f"not produced by a ZipMap node")
        name = node.input[0]
    return name, int(column or 0)


def _input(graph: Any) -> tuple[str, int, Any]:
    import onnx

    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise WorkstationError("cannot patch: the model must take exactly one input tensor")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
        raise WorkstationError("cannot patch: the model's input is not a float tensor")
    dim = tensor.shape.dim[0] if len(tensor.shape.dim) else None
    batch = (dim.dim_param or dim.dim_value or "N") if dim is not None else "N"
    return inputs[0].name, tensor.elem_type, batch


def _inner_tensor(model: Any, name: str) -> tuple[str, int, Any]:
    """A float tensor inside the graph, with the batch axis of the graph's first input."""
    import onnx

    graph = model.graph
    if not any(name in n.output for n in graph.node):
        raise WorkstationError(f"cannot patch: no node of the model computes '{name}'")
    elem = onnx.TensorProto.FLOAT
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        elem = next((i.type.tensor_type.elem_type for i in inferred if i.name == name), elem)
    except Exception:
        pass  # float unless inference says otherwise; the built graph is checked anyway
    if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
        raise WorkstationError(f"cannot patch: the tensor '{name}' is not a float tensor")
    dims = graph.input[0].type.tensor_type.shape.dim if graph.input else []
    batch = (dims[0].dim_param or dims[0].dim_value or "N") if len(dims) else "N"
    return name, elem, batch


def _opset(model: Any) -> int:
    """The default domain's opset the base graph is written for."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _free_reserved_names(graph: Any, score_tensor: str) -> str:
    """Rename base tensors that carry one of the patched outputs' names (a base
    whose score output is called ``reward``) to ``base/<name>``."""
    taken = {o for n in graph.node for o in n.output} | {t.name for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    for name in OUTPUTS:
        if name in inputs:
            raise WorkstationError(f"cannot patch: the model's input is named '{name}', "
                                   f"which the patched graph needs for an output")
        if name in taken:
            _rename(graph, name, f"base/{name}")
            score_tensor = f"base/{name}" if score_tensor == name else score_tensor
    return score_tensor


def _rename(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for items in (graph.output, graph.value_info, graph.initializer):
        for item in items:
            if item.name == old:
                item.name = new


def _kept_outputs(graph: Any, score_tensor: str, score_output: str) -> list[Any]:
    """The base's other float tensor outputs (not the score, not a zipmap)."""
    import onnx

    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)
    kept = []
    for out in graph.output:
        if out.name in (score_tensor, score_output) or out.name.startswith("base/"):
            continue
        if out.type.WhichOneof("value") == "tensor_type" and \
                out.type.tensor_type.elem_type in floats:
            kept.append(out)
    return kept


def _output_infos(batch: Any, n_kernels: int) -> list[Any]:
    from onnx import TensorProto, helper

    return [helper.make_tensor_value_info("reward", TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info("base_score", TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info("patch_activation", TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info("kernel_activations", TensorProto.FLOAT,
                                          [batch, n_kernels])]


# -- adding the patch --------------------------------------------------------

class _Builder:
    """Appends the patch's nodes and constants to a graph."""

    def __init__(self, graph: Any, opset: int) -> None:
        self.graph = graph
        self.opset = opset

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        from onnx import helper

        name = output if output in OUTPUTS else _P + output
        self.graph.node.append(helper.make_node(op, inputs, [name], name=_P + output, **attrs))
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(value, _P + name))
        return _P + name

    def score(self, tensor: str, column: int) -> str:
        """The base score as float [N]: reshape to [N, C], take the column."""
        from onnx import TensorProto

        matrix = self.node("Reshape", [tensor, self.const("score_shape",
                                                          np.array([0, -1], np.int64))],
                           "score_matrix")
        picked = self.node("Gather", [matrix, self.const("column", np.array(column, np.int64))],
                           "score_picked", axis=1)
        score = self.node("Cast", [picked], "score", to=TensorProto.FLOAT)
        self.node("Identity", [score], "base_score")
        return score

    def kernels(self, x: str, x_type: int, kernels: Sequence[SuppressionKernel], rule: str,
                score: str, precision: str | None) -> None:
        from onnx import TensorProto

        dtype = np.float64 if (precision or default_precision(len(kernels[0].center))) \
            == "double" else np.float32
        onnx_type = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
        act = self._activations(x, x_type, onnx_type, dtype, kernels)
        if dtype != np.float32:  # a float graph names its activations the output directly
            self.node("Cast", [act], "kernel_activations", to=TensorProto.FLOAT)
        one = self.const("one", np.array(1.0, dtype))
        flat = self.const("flat", np.array([-1], np.int64))
        total = self.node("MatMul", [act, self.const("ones_k", np.ones((len(kernels), 1),
                                                                       dtype))], "total")
        total = self.node("Min", [self.node("Reshape", [total, flat], "total_flat"), one],
                          "total_clipped")
        self.node("Cast", [total], "patch_activation", to=TensorProto.FLOAT)
        drop = self._drop(act, kernels, rule, dtype, one, flat)
        drop = self.node("Cast", [drop], "drop_float", to=TensorProto.FLOAT)
        if rule == "bounded":  # never below 0, never raise a negative score
            drop = self.node("Min", [self.node("Relu", [score], "score_floor"), drop],
                             "drop_bounded")
        self.node("Sub", [score, drop], "reward")

    def _activations(self, x: str, x_type: int, onnx_type: int, dtype: type,
                     kernels: Sequence[SuppressionKernel]) -> str:
        centers = np.stack([np.asarray(k.center, np.float64) for k in kernels])
        if x_type != onnx_type:
            x = self.node("Cast", [x], "x_cast", to=onnx_type)
        cross = self.node("MatMul", [x, self.const("centers_m2", (-2.0 * centers.T).astype(
            dtype))], "cross")
        d2 = self.node("Add", [self.node("Add", [cross, self._squared_norm(x)], "d2_partial"),
                               self.const("c_norm2", (centers ** 2).sum(1).astype(dtype))],
                       "d2")
        d2 = self.node("Relu", [d2], "d2_clipped")  # rounding can make it slightly negative
        widths = np.array([-1.0 / (2.0 * k.bandwidth ** 2) for k in kernels])
        exponent = self.node("Mul", [d2, self.const("neg_inv_2h2", widths.astype(dtype))],
                             "exponent")
        strengths = np.array([k.strength for k in kernels], dtype)
        name = "kernel_activations" if dtype == np.float32 else "activations"
        return self.node("Mul", [self.node("Exp", [exponent], "gauss"),
                                 self.const("strengths", strengths)], name)

    def _squared_norm(self, x: str) -> str:
        """||x||² [N, 1] in one pass (ReduceSumSquare takes its axes as an
        input from opset 18 on, as an attribute before)."""
        if self.opset >= 18:
            return self.node("ReduceSumSquare", [x, self.const("axis_1", np.array([1], np.int64))],
                             "x_norm2", keepdims=1)
        return self.node("ReduceSumSquare", [x], "x_norm2", axes=[1], keepdims=1)

    def _drop(self, act: str, kernels: Sequence[SuppressionKernel], rule: str, dtype: type,
              one: str, flat: str) -> str:
        member, scales = patch_groups(kernels)
        per_patch = self.node("Min", [self.node("MatMul", [act, self.const(
            "membership", member.astype(dtype))], "per_patch_sum"), one], "per_patch")
        weights = np.ones((len(scales), 1)) if rule == "bounded" else scales[:, None]
        summed = self.node("MatMul", [per_patch, self.const("patch_scales",
                                                            weights.astype(dtype))], "drop_sum")
        drop = self.node("Reshape", [summed, flat], "drop")
        return self.node("Min", [drop, one], "drop_clipped") if rule == "bounded" else drop

    def no_kernels(self, score: str) -> None:
        """No kernel left: the base score, zero activation, an [N, 0] matrix."""
        from onnx import TensorProto, helper

        self.node("Identity", [score], "reward")
        shape = self.node("Shape", [score], "batch_shape")
        zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
        self.node("ConstantOfShape", [shape], "patch_activation", value=zero)
        wide = self.node("Concat", [shape, self.const("no_columns", np.array([0], np.int64))],
                         "empty_shape", axis=0)
        self.node("ConstantOfShape", [wide], "kernel_activations", value=zero)


# -- finishing ---------------------------------------------------------------

def _checked(model: Any) -> bytes:
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkstationError(f"the patched graph is not valid ONNX ({first})") from None
    return model.SerializeToString()
