"""Registering a version derived from another (a new head, a patch): it must
take the same input, read the same way (encoder, tokenizer, text format and
length), so these say what registration needs from the parent and check
that the new version kept it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from workstation.errors import WorkstationError
from workstation.models.registry import ModelVersion, load_tokenizer_json
from workstation.workspace import Workspace


_POOLING_TYPES = {"first-token": "bert", "last-token": "llama"}


@dataclass(frozen=True)
class EncoderIdentity:
    """Registration needs only the encoder's id and width, not the encoder."""

    id: str
    dim: int


def input_kwargs(ws: Workspace, parent: ModelVersion) -> dict[str, Any]:
    """``add_model_bytes`` arguments that make a child read its input as ``parent`` does."""
    info = parent.manifest["input"]
    if parent.input_kind == "text-embedding":
        return {"encoder": EncoderIdentity(info.get("encoder") or "", int(info["dim"]))}
    if parent.input_kind == "text-tokens":
        from workstation.models.text_format import TextFormat

        # The pooling came from the graph's metadata (kept in a child) or from
        # a config.json beside the parent: a model type implying the same one.
        model_type = _POOLING_TYPES.get(info.get("pooling") or "")
        return {"tokenizer": load_tokenizer_json(ws, parent),
                "text_format": TextFormat.from_input(info), "max_length": info["max_length"],
                "config_json": json.dumps({"model_type": model_type}) if model_type else None}
    return {}


def check_same_input(child: ModelVersion, parent: ModelVersion) -> None:
    """Refuse (inside the registering transaction) a child that reads its input
    differently from its parent."""
    if child.manifest["input"] != parent.manifest["input"]:
        changed = sorted(k for k in set(child.manifest["input"]) | set(parent.manifest["input"])
                         if child.manifest["input"].get(k) != parent.manifest["input"].get(k))
        raise WorkstationError(f"{child.ref} would read its input differently from "
                               f"{parent.ref} ({', '.join(changed)}); nothing registered")
