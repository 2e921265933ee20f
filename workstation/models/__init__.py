"""Reward models: the registry of versioned ONNX artifacts and scoring.

See ``onnx_model`` for the conventions every model follows (higher score =
safer; which output and column is the score) and the runner, ``inspection``
for what registration checks, ``registry`` for registration and lookup,
``scoring`` for scoring a dataset.

Names are imported on first use, so that ``onnx_model`` (which needs only
onnxruntime and numpy) can be used without the workspace's database, e.g. by
a safety-oracle bundle.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "INPUT_KINDS": "onnx_model", "OnnxRunner": "onnx_model",
    "ModelVersion": "registry", "add_model": "registry", "add_model_bytes": "registry",
    "get_version": "registry", "list_models": "registry", "load_onnx": "registry",
    "load_runner": "registry", "resolve": "registry",
    "ScoreResult": "scoring", "score_dataset": "scoring", "score_observations": "scoring",
    "score_texts": "scoring", "text_features": "scoring",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'workstation.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"workstation.models.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
