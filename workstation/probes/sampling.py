"""What the built-in text probes read: a dataset's examples as currently
reviewed (excluded ones left out), sampled reproducibly, in id order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workstation.workspace import Workspace

_COLUMNS = ("id", "prompt", "current_chosen", "current_rejected", "response", "current_label",
            "current_category")


@dataclass
class TextRows:
    """Text examples in id order. Pairs fill ``chosen``/``rejected`` (the
    current sides, flips applied); labeled responses fill ``responses`` and
    ``labels`` (True = safe, None = unlabeled)."""

    ids: np.ndarray
    prompts: list[str | None]
    chosen: list[str | None]
    rejected: list[str | None]
    responses: list[str | None]
    labels: list[bool | None]
    categories: list[str | None]

    def __len__(self) -> int:
        return len(self.ids)


def eligible_ids(ws: Workspace, dataset_id: int, where: str = "") -> np.ndarray:
    """Ids of the dataset's non-excluded examples (optionally filtered by an
    SQL condition on ``current_examples``), ascending."""
    extra = f" AND ({where})" if where else ""
    rows = ws.execute(f"SELECT id FROM current_examples WHERE dataset_id = ? AND NOT excluded"
                      f"{extra} ORDER BY id", [dataset_id]).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


def sample(values: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` of ``values`` (all when ``limit`` is 0 or None), drawn
    without replacement with ``seed`` and returned in their original order."""
    if not limit or len(values) <= limit:
        return values
    picked = np.random.default_rng(seed).choice(len(values), size=int(limit), replace=False)
    return values[np.sort(picked)]


def read_rows(ws: Workspace, ids: np.ndarray) -> TextRows:
    """The texts, labels and categories of ``ids`` (as currently reviewed)."""
    rows = ws.execute(f"SELECT {', '.join(_COLUMNS)} FROM current_examples "
                      f"WHERE id IN (SELECT unnest(?::BIGINT[])) ORDER BY id",
                      [[int(i) for i in ids]]).fetchall() if len(ids) else []
    columns = list(zip(*rows)) if rows else [()] * len(_COLUMNS)
    return TextRows(np.array(columns[0], dtype=np.int64), *(list(c) for c in columns[1:]))

