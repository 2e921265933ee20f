"""Reward models: the registry of versioned ONNX artifacts and scoring.

See ``onnx_model`` for the conventions every model follows (higher score =
safer; which output and column is the score), ``registry`` for registration
and lookup, ``scoring`` for scoring a dataset.
"""

from workstation.models.onnx_model import INPUT_KINDS, OnnxRunner
from workstation.models.registry import (ModelVersion, add_model, add_model_bytes, get_version,
                                         list_models, load_onnx, load_runner, resolve)
from workstation.models.scoring import (ScoreResult, score_dataset, score_observations,
                                        score_texts, text_features)

__all__ = ["INPUT_KINDS", "ModelVersion", "OnnxRunner", "ScoreResult", "add_model",
           "add_model_bytes", "get_version", "list_models", "load_onnx", "load_runner",
           "resolve", "score_dataset", "score_observations", "score_texts", "text_features"]
