"""The space a patch's kernels live in, for one root model.

Embedding and observation models: the model's input vector (the graph's one
input). Text-tokens models: the input of the model's scoring head, its own
feature vector (``workstation.models.features``), so kernels sit on that
tensor inside the graph and cases are featurised through the graph cut
there; a tokens model without a recognisable head cannot be patched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from workstation.errors import WorkstationError
from workstation.models.features import FeatureSpace, feature_space, tail_runner
from workstation.models.onnx_model import OnnxRunner
from workstation.models.registry import ModelVersion, load_runner
from workstation.models.score_head import NoHead, tail_model
from workstation.workspace import Workspace


@dataclass
class KernelSpace:
    """Where kernels sit for ``root``: ``features`` None means its input."""

    root: ModelVersion
    features: FeatureSpace | None

    @property
    def width(self) -> int:
        if self.features is not None:
            return self.features.dim
        info = self.root.manifest["input"]
        return int(info["obs_dim"] if self.root.input_kind == "observation" else info["width"])

    @property
    def tensor(self) -> str | None:
        """The graph tensor the kernels read (None: the graph's input)."""
        return self.features.head.input if self.features is not None else None

    def texts(self, ws: Workspace, prompts: Sequence[str | None],
              responses: Sequence[str | None], encoder: Any) -> np.ndarray:
        """Points of this space for (prompt, response) texts."""
        if self.features is not None:
            from workstation.models.features import text_features

            return text_features(ws, self.features, prompts, responses, encoder)
        from workstation.models.scoring import text_features

        return text_features(ws, self.root, prompts, responses, encoder)

    def root_runner(self, ws: Workspace) -> OnnxRunner:
        """The root's scores of points of this space."""
        if self.features is not None:
            return self.features.score_runner()
        return load_runner(ws, self.root)

    def patched_runner(self, data: bytes, manifest: dict[str, Any]) -> OnnxRunner:
        """A patched graph's scores (read as ``manifest`` says) of points of this space."""
        if self.features is None:
            return OnnxRunner(data, manifest)
        return tail_runner(tail_model(data, self.features.head, manifest["output"]), manifest,
                           self.width)


def kernel_space(ws: Workspace, root: ModelVersion) -> KernelSpace:
    """The kernel space of an (unpatched) root; refuses a tokens model without a head."""
    if root.input_kind != "text-tokens":
        return KernelSpace(root, None)
    try:
        return KernelSpace(root, feature_space(ws, root))
    except NoHead as exc:
        raise WorkstationError(
            f"{root.ref} takes text tokens and no scoring head was found in it ({exc}): a "
            f"suppression patch needs a vector space (its head's input features); patch a "
            f"text-embedding model or retrain") from None
