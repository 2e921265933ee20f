"""Dynamic int8 quantization of an ONNX graph (onnxruntime.quantization), shared
by ``model quantize`` and the shared encoder's int8 copy.

Weights of MatMul/Gemm/Attention become int8, one scale per output channel
(per-tensor scales cost MiniLM a worst-case cosine of 0.82 against fp32 on
HH-RLHF texts, per-channel 0.96); activations are quantized on the fly.
Embedding tables (Gather) are stored int8 too: most of the size gain.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx

from workstation.errors import WorkstationError

RECIPE = {"weight_type": "int8", "per_channel": True, "reduce_range": False,
          "op_types": ["MatMul", "Gemm", "Attention", "Gather", "EmbedLayerNormalization"]}
# Operators that only a quantized graph holds.
_QUANTIZED_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul",
                  "QLinearConv", "DynamicQuantizeMatMul", "QAttention", "MatMulIntegerToFloat",
                  "QuantizeLinear", "DequantizeLinear", "QGemm", "MatMulNBits"}
_QUANTIZABLE_OPS = {"MatMul", "Gemm", "Attention"}  # Gather alone gains no speed


def quantized_ops(model: onnx.ModelProto) -> list[str]:
    """The quantized operators the graph already holds (none for a float model)."""
    return sorted({n.op_type for n in model.graph.node if n.op_type in _QUANTIZED_OPS})


def quantizable_weights(model: onnx.ModelProto) -> int:
    """How many float weight matrices the recipe would turn into int8."""
    floats = {t.name for t in model.graph.initializer
              if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2}
    return sum(1 for n in model.graph.node if n.op_type in _QUANTIZABLE_OPS
               for name in n.input if name in floats)


def check_quantizable(model: onnx.ModelProto, what: str) -> None:
    """Refuse, in one line, a graph the recipe cannot make smaller or faster."""
    done = quantized_ops(model)
    if done:
        raise WorkstationError(f"{what} is already quantized (it holds {', '.join(done)}); "
                               f"nothing to do")
    if quantizable_weights(model) == 0:
        ops = sorted({n.op_type for n in model.graph.node})
        raise WorkstationError(f"{what} has no float MatMul, Gemm or Attention weights to "
                               f"quantize (its operators: {', '.join(ops[:8])})")


def quantize_file(source: Path, target: Path) -> None:
    """Write the int8 version of the ONNX file ``source`` to ``target``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs a pre-processing suggestion at WARNING on every call.
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         per_channel=RECIPE["per_channel"], reduce_range=RECIPE["reduce_range"],
                         op_types_to_quantize=list(RECIPE["op_types"]),
                         # Fused contrib ops (Attention, SkipLayerNormalization) defeat
                         # shape inference; their outputs are float.
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logger.setLevel(level)


def quantize_bytes(data: bytes) -> bytes:
    """The int8 version of an ONNX model given as bytes."""
    with tempfile.TemporaryDirectory(prefix="workstation-int8-") as tmp:
        source, target = Path(tmp) / "model.onnx", Path(tmp) / "model-int8.onnx"
        source.write_bytes(data)
        quantize_file(source, target)
        return target.read_bytes()
