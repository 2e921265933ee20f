"""ONNX export of a trained scorer, and the parity check before registering.

The legacy (TorchScript) exporter writes one self-contained file (no external
data), opset 17, with a dynamic batch axis on the input and every output; it
is deterministic, so the same weights give the same bytes (and sha256). The
file carries no timestamps: when and from what it was trained lives in the
registry manifest instead.

Parity: onnxruntime (with the same session settings scoring uses) and torch
run the same rows; the largest absolute difference of each output is
recorded, and a ``reward`` difference above ``PARITY_TOLERANCE`` refuses the
export: a registered score must be the score that was trained.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from workstation.errors import WorkstationError

OPSET = 17
PARITY_TOLERANCE = 1e-4
PRODUCER = "workstation.training"


@dataclass
class TrainedHead:
    """A fitted scorer, ready to export: the module and its outputs (``reward``
    first), what it takes, what its score is, and its figures."""

    module: torch.nn.Module
    output_names: tuple[str, ...]
    input_name: str
    width: int
    score_type: str
    objective: str
    metrics: dict[str, Any]
    check_inputs: np.ndarray  # rows the export is compared with torch on
    uncertainty: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # how the reward was calibrated (manifest)


def to_onnx(module: torch.nn.Module, width: int, input_name: str,
            output_names: Sequence[str], metadata: dict[str, str] | None = None) -> bytes:
    """The module as one ONNX file: input ``input_name`` [batch, width]."""
    import onnx

    example = torch.zeros(2, width, dtype=torch.float32)
    axes = {name: {0: "batch"} for name in (input_name, *output_names)}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter chatter; parity is what counts
        torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[input_name], output_names=list(output_names),
                          dynamic_axes=axes, do_constant_folding=True)
    model = onnx.load_model_from_string(buffer.getvalue())
    model.producer_name = PRODUCER
    model.producer_version = torch.__version__
    for key, value in sorted((metadata or {}).items()):
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def parity(data: bytes, module: torch.nn.Module, inputs: np.ndarray,
           output_names: Sequence[str]) -> dict[str, float]:
    """Largest |onnxruntime - torch| per output on ``inputs``."""
    from workstation.models.onnx_model import make_session

    session = make_session(data, "<trained model>")
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(inputs, dtype=np.float32)}
    ours = session.run(list(output_names), feed)
    with torch.no_grad():
        reference = module(torch.from_numpy(feed[next(iter(feed))]))
    worst = {}
    for name, got, want in zip(output_names, ours, reference):
        want = want.double().numpy()
        if not np.all(np.isfinite(want)):
            raise WorkstationError(f"training diverged: the model's '{name}' output is not "
                                   f"finite; nothing registered (try a smaller lr)")
        worst[name] = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    return worst


def check_parity(worst: dict[str, Any]) -> None:
    """Refuse a model whose ONNX reward strays from torch's."""
    diff = worst["reward"]
    if not diff <= PARITY_TOLERANCE:
        raise WorkstationError(f"the exported ONNX model's reward differs from torch's by "
                               f"{diff:.3g} (> {PARITY_TOLERANCE:g}); nothing registered")
