"""The shared encoder's int8 copy, its parity with fp32, and which of the two a
workspace encodes with.

``encoder.prepare_int8`` quantizes the converted fp32 encoder once per machine into
the same cache folder (content-addressed: the int8 encoder's id carries the
sha256 of its own ONNX file, so its embeddings never mix with fp32 ones in a
workspace's cache). A workspace chooses with ``select_variant`` (stored in its
``meta`` table under ``encoder_variant``; absent = fp32); ``measure_parity``
gives the cosine between the two on the workspace's own texts, shown before
switching. The CLI and the GUI make the workspace's choice the process's
default encoder when they open it (``use_workspace_encoder``). Dynamic int8
scales activations per batch: a text's int8 vector depends a little on the
texts encoded with it (the workspace cache keeps the first one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workstation import encoder as enc
from workstation.errors import WorkstationError
from workstation.progress import Progress
from workstation.workspace import Workspace

VARIANTS = ("fp32", "int8")
META_KEY = "encoder_variant"
PARITY_SAMPLE = 1000


# -- parity ---------------------------------------------------------------------

@dataclass
class EncoderParity:
    """Cosine between int8 and fp32 embeddings of the same texts."""

    n_texts: int
    min_cosine: float
    mean_cosine: float
    p01_cosine: float  # 1% of the texts are below this
    source: str  # where the texts came from
    fp32: str
    int8: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"int8 vs fp32 on {self.n_texts:,} texts of {self.source}: cosine min "
                f"{self.min_cosine:.4f}, 1st percentile {self.p01_cosine:.4f}, mean "
                f"{self.mean_cosine:.5f}")


def sample_texts(ws: Workspace, n: int = PARITY_SAMPLE) -> list[str]:
    """Up to ``n`` distinct non-empty texts of the workspace's datasets (prompts,
    responses and both sides of pairs), a fixed pseudo-random sample."""
    union = " UNION ".join(f"SELECT {c} AS t FROM examples WHERE coalesce({c}, '') <> ''"
                           for c in ("prompt", "response", "chosen", "rejected"))
    rows = ws.execute(f"SELECT t FROM ({union}) ORDER BY sha256(t) LIMIT ?", [n]).fetchall()
    return [r[0] for r in rows]


def measure_parity(texts: list[str], source: str, fp32: Any = None, int8: Any = None,
                   progress: Progress | None = None) -> EncoderParity:
    """Encode ``texts`` with both encoders and compare them row by row."""
    if not texts:
        raise WorkstationError(f"no texts to measure the int8 encoder's parity on ({source})")
    fp32 = fp32 or enc.get_encoder(progress, variant="fp32")
    int8 = int8 or enc.get_encoder(progress, variant="int8")
    if progress is not None:
        progress.stage_start("encoding the parity sample with fp32 and int8", 2 * len(texts))
    a = fp32.encode(texts)
    if progress is not None:
        progress.step(len(texts), 2 * len(texts))
    b = int8.encode(texts)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return EncoderParity(len(texts), float(cos.min()), float(cos.mean()),
                         float(np.quantile(cos, 0.01)), source, fp32.id, int8.id)


def workspace_parity(ws: Workspace, n: int = PARITY_SAMPLE,
                     progress: Progress | None = None) -> EncoderParity:
    """Parity on the workspace's own texts (see ``sample_texts``)."""
    texts = sample_texts(ws, n)
    if not texts:
        raise WorkstationError("the workspace has no texts yet to measure the int8 encoder's "
                               "parity on: import a text dataset first")
    return measure_parity(texts, f"workspace {Path(ws.path).name}", progress=progress)


# -- the workspace's choice -----------------------------------------------------------

def workspace_variant(ws: Workspace) -> str:
    """"fp32" or "int8": the encoder the workspace encodes with."""
    value = ws.meta(META_KEY) or "fp32"
    if value not in VARIANTS:
        raise WorkstationError(f"workspace meta {META_KEY} is {value!r}, not one of "
                               f"{', '.join(VARIANTS)}")
    return value


def use_workspace_encoder(ws: Workspace) -> str:
    """Make the workspace's choice the process's default encoder (what
    ``get_encoder()`` returns); nothing is loaded until it is used."""
    variant = workspace_variant(ws)
    enc.set_default_variant(variant)
    return variant


@dataclass
class EncoderChoice:
    """What ``select_variant`` changed."""

    previous: str
    variant: str
    encoder_id: str
    changed: bool
    # Text-embedding models registered for another encoder: they refuse to score now.
    other_encoder_models: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def models_for_other_encoders(ws: Workspace, encoder_id: str) -> list[str]:
    """NAME@V of the text-embedding models registered for an encoder other than ``encoder_id``."""
    rows = ws.execute(
        "SELECT model || '@' || version FROM model_versions WHERE input_kind = 'text-embedding' "
        "AND json_extract_string(manifest, '$.input.encoder') <> ? ORDER BY model, version",
        [encoder_id]).fetchall()
    return [r[0] for r in rows]


def select_variant(ws: Workspace, variant: str, progress: Progress | None = None) -> EncoderChoice:
    """Store the workspace's encoder choice (the int8 copy is prepared first)."""
    if variant not in VARIANTS:
        raise WorkstationError(f"unknown encoder {variant!r}: choose {' or '.join(VARIANTS)}")
    encoder = enc.get_encoder(progress, variant=variant)
    previous = workspace_variant(ws)
    with ws.transaction() as con:
        con.execute("DELETE FROM meta WHERE key = ?", [META_KEY])
        con.execute("INSERT INTO meta VALUES (?, ?)", [META_KEY, variant])
    enc.set_default_variant(variant)
    return EncoderChoice(previous, variant, encoder.id, previous != variant,
                         models_for_other_encoders(ws, encoder.id))
