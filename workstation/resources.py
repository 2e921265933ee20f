"""Where the files the workstation ships live (demo data, icons).

In a source checkout they are the repository's ``resources/`` folder; an
installed wheel puts the same files under ``<prefix>/share/workstation``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1] / "resources"
_INSTALLED = Path(sys.prefix) / "share" / "workstation"


def resource_path(*parts: str) -> Path:
    """The path of a shipped file, e.g. ``resource_path("demo", "pairs.jsonl")``."""
    base = _CHECKOUT if _CHECKOUT.is_dir() else _INSTALLED
    return base.joinpath(*parts)
