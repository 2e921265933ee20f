"""Feeding a tokens model fast: tokenize once, score each distinct input once,
batch by token budget.

Texts are tokenized once without padding; identical formatted inputs (a
prompt and response seen before) are scored once; the distinct inputs are
sorted by token length and cut into batches whose padded size (rows x the
batch's longest sequence) stays under a token budget, so short texts go in
big batches and long ones in small; each batch is padded only to its own
longest. Scores come back in input order. A text longer than the model's
maximum is truncated, and which inputs were is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

# Padded tokens per onnxruntime run. Measured with bert-cls (MiniLM, 6 layers)
# on 1,500 HH-RLHF responses (45 tokens on average), 2 cores, best of two
# rounds, texts/s fp32 / int8: 8,192 tokens and 256 rows 164 / 257; 4,096 and
# 32 213 / 388; 2,048 and 32 222 / 409; 1,024 and 8 228 / 408. Small runs keep
# the activations in the CPU caches; the plateau spans 1,024 to 3,072 tokens.
TOKEN_BUDGET = 2048
MAX_ROWS = 32  # rows per run, however short the texts


@dataclass
class Tokenized:
    """Distinct inputs, tokenized without padding."""

    inverse: np.ndarray      # input row -> distinct index
    ids: list[list[int]]
    type_ids: list[list[int]]
    lengths: np.ndarray
    truncated: np.ndarray    # per distinct input

    def __len__(self) -> int:
        return len(self.ids)


def tokenize_distinct(tokenizer: Any, items: Sequence[Any],
                      add_special_tokens: bool = True) -> Tokenized:
    """Tokenize each distinct item once (``tokenizer`` truncates, does not pad)."""
    index: dict[Any, int] = {}
    inverse = np.fromiter((index.setdefault(item, len(index)) for item in items),
                          dtype=np.int64, count=len(items))
    encodings = tokenizer.encode_batch(list(index), add_special_tokens=add_special_tokens) \
        if index else []
    return Tokenized(inverse, [e.ids for e in encodings], [e.type_ids for e in encodings],
                     np.fromiter((len(e.ids) for e in encodings), dtype=np.int64,
                                 count=len(encodings)),
                     np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool,
                                 count=len(encodings)))


def token_batches(lengths: np.ndarray, budget: int = TOKEN_BUDGET,
                  max_rows: int = MAX_ROWS) -> Iterator[np.ndarray]:
    """Indices of ``lengths`` in batches by ascending length, each batch's
    rows x longest within ``budget`` (a single over-long row goes alone)."""
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < max_rows \
                and (end - start + 1) * max(int(lengths[order[end]]), 1) <= budget:
            end += 1
        yield order[start:end]
        start = end


def padded_feeds(tok: Tokenized, rows: np.ndarray, names: Sequence[str], dtype: Any,
                 pad_id: int, length: int | None = None) -> dict[str, np.ndarray]:
    """The batch ``rows`` padded (right) to their longest, or to ``length``
    when the graph fixes it."""
    lengths = tok.lengths[rows]
    width = length or max(int(lengths.max()), 1)
    ids = np.full((len(rows), width), pad_id, dtype=dtype)
    types = np.zeros((len(rows), width), dtype=dtype)
    for i, r in enumerate(rows):
        n = int(lengths[i])
        ids[i, :n] = tok.ids[r]
        types[i, :n] = tok.type_ids[r]
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(dtype)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {name: feeds[name] for name in names}


def score_distinct(tok: Tokenized, run: Callable[[np.ndarray], np.ndarray],
                   check: Callable[[], None] | None = None) -> np.ndarray:
    """Scores of every input row: ``run(batch_rows)`` scores a batch of distinct
    inputs; ``check`` is called between batches (a cancel point)."""
    distinct = np.empty(len(tok))
    for rows in token_batches(tok.lengths):
        if check is not None:
            check()
        distinct[rows] = run(rows)
    return distinct[tok.inverse]
