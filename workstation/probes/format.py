"""Presentation probes: ``position-swap`` and ``format-invariance``.

``position-swap`` (pairs): scoring a pair in the opposite order must flip its
margin exactly: score(prompt, rejected) - score(prompt, chosen), computed with
the sides swapped, equals -margin within ``tolerance`` (default 1e-6, times
max(1, |score|)). For the registry's per-response models this holds by
construction unless the model mixes rows of a batch (e.g. a cumulative op
over the batch axis), which this check exposes: the forward batch is
[chosen..., rejected...] and the swapped one [rejected..., chosen...].

``format-invariance`` (pairs and labels): adding or removing formatting must
not move a response's score by more than a tolerance. Transformations: bold
(``**...**``), bullets, a header, stripping markdown, trailing whitespace, a
polite closing sentence. The tolerance is ``tolerance`` when given, else 0.05
for probabilities and ``relative_tolerance`` (default 0.1) times the standard
deviation of the sampled original scores for logits and rewards. At most
``sample`` responses (default 300; both sides of a pair are candidates) are
probed, drawn with the run's seed.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from workstation.errors import WorkstationError
from workstation.probes.base import Finding, ProbeContext, register_probe
from workstation.probes.sampling import eligible_ids, read_rows, sample
from workstation.probes.severity import score_scale, severity

SWAP_TOLERANCE = 1e-6
PROBABILITY_TOLERANCE = 0.05
RELATIVE_TOLERANCE = 0.1
DEFAULT_SAMPLE = 300
DEFAULT_SWAP_SAMPLE = 2000


# -- position swap -----------------------------------------------------------

def swap_errors(forward_chosen: np.ndarray, forward_rejected: np.ndarray,
                swapped_chosen: np.ndarray, swapped_rejected: np.ndarray) -> np.ndarray:
    """How far the swapped margin is from -margin, per pair."""
    margin = np.asarray(forward_chosen, float) - np.asarray(forward_rejected, float)
    swapped = np.asarray(swapped_rejected, float) - np.asarray(swapped_chosen, float)
    return np.abs(swapped + margin)


def swap_violations(errors: np.ndarray, scores: np.ndarray, tolerance: float) -> np.ndarray:
    """Positions whose error exceeds ``tolerance * max(1, |score|)`` (``scores``:
    the largest absolute score involved in each pair)."""
    return np.flatnonzero(errors > tolerance * np.maximum(1.0, np.abs(scores)))


class PositionSwapProbe:
    """See the module docstring."""

    name, version, kinds = "position-swap", "1", ("pairs",)
    description = "Swapping a pair's order must flip the sign of its margin exactly."

    def __init__(self) -> None:
        self.last_summary: dict[str, Any] = {}

    def run(self, ctx: ProbeContext) -> list[Finding]:
        self.last_summary = {}
        ids = sample(eligible_ids(ctx.ws, ctx.dataset_id), ctx.param("sample", DEFAULT_SWAP_SAMPLE),
                     ctx.seed)
        rows = read_rows(ctx.ws, ids)
        n, prompts = len(rows), rows.prompts + rows.prompts
        forward = ctx.score_texts(prompts, rows.chosen + rows.rejected)
        ctx.progress.check()
        swapped = ctx.score_texts(prompts, rows.rejected + rows.chosen)
        fc, fr, sr, sc = forward[:n], forward[n:], swapped[:n], swapped[n:]
        errors = swap_errors(fc, fr, sc, sr)
        biggest = np.max(np.abs(np.stack([fc, fr, sc, sr])), axis=0) if n else np.zeros(0)
        tolerance = float(ctx.param("tolerance", SWAP_TOLERANCE))
        bad = swap_violations(errors, biggest, tolerance)
        scale = score_scale(forward, ctx.version.manifest["score_type"])
        self.last_summary = {"n_checked": n, "n_violations": len(bad), "tolerance": tolerance,
                             "max_abs_error": float(errors.max()) if n else None}
        return [Finding(self.name, "swapping the pair's order does not flip the margin",
                        float(severity(errors[i], scale)), "model-error",
                        example_id=int(rows.ids[i]), score_before=float(fc[i] - fr[i]),
                        score_after=float(sr[i] - sc[i]),
                        case={"transformation": "swap", "order": ["rejected", "chosen"]},
                        details={"error": float(errors[i])}) for i in bad]


# -- format invariance -------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MARKDOWN = [(re.compile(r"(\*\*|__)(.+?)\1", re.S), r"\2"),
             (re.compile(r"(?m)^\s{0,3}#{1,6}\s+"), ""),
             (re.compile(r"(?m)^\s*(?:[-*+]|\d+[.)])\s+"), ""),
             (re.compile(r"`{1,3}"), ""),
             (re.compile(r"(?<!\w)[*_](\S.*?\S|\S)[*_](?!\w)"), r"\1")]


def _bullets(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) < 2:  # one paragraph: one bullet per sentence
        lines = [s for s in _SENTENCE_END.split(text.strip()) if s]
    return "\n".join(f"- {ln.strip()}" for ln in lines)


def strip_markdown(text: str) -> str:
    """``text`` without bold/italic markers, headers, list bullets and backticks."""
    for pattern, replacement in _MARKDOWN:
        text = pattern.sub(replacement, text)
    return text


TRANSFORMATIONS: dict[str, Callable[[str], str]] = {
    "bold": lambda t: f"**{t.strip()}**",
    "bullets": _bullets,
    "header": lambda t: f"## Answer\n\n{t}",
    "strip-markdown": strip_markdown,
    "trailing-whitespace": lambda t: t + "   \n\n",
    "polite-closing": lambda t: t.rstrip() + " I hope this helps!",
}


def format_variants(text: str | None, names: list[str]) -> list[tuple[str, str]]:
    """(transformation, new text) for each transformation that changes ``text``."""
    if not text or not text.strip():
        return []
    variants = [(name, TRANSFORMATIONS[name](text)) for name in names]
    return [(name, new) for name, new in variants if new != text]


def format_tolerance(original_scores: np.ndarray, score_type: str,
                     relative: float = RELATIVE_TOLERANCE) -> float:
    """The default tolerance (see the module docstring)."""
    if score_type == "probability":
        return PROBABILITY_TOLERANCE
    spread = float(np.std(original_scores)) if len(original_scores) else 0.0
    return relative * spread if spread > 0 else PROBABILITY_TOLERANCE


def _response_pool(ctx: ProbeContext) -> list[tuple[int, str, str | None, str | None]]:
    """(example id, side, prompt, text) of the sampled responses."""
    ids = eligible_ids(ctx.ws, ctx.dataset_id)
    sides = ("chosen", "rejected") if ctx.kind == "pairs" else ("response",)
    slots = np.arange(len(ids) * len(sides))
    picked = sample(slots, ctx.param("sample", DEFAULT_SAMPLE), ctx.seed)
    rows = read_rows(ctx.ws, np.unique(ids[picked // len(sides)]))
    at = {int(i): k for k, i in enumerate(rows.ids)}
    texts = {"chosen": rows.chosen, "rejected": rows.rejected, "response": rows.responses}
    pool = []
    for slot in picked:
        k, side = at[int(ids[slot // len(sides)])], sides[slot % len(sides)]
        pool.append((int(rows.ids[k]), side, rows.prompts[k], texts[side][k]))
    return pool


def _transformation_names(names: list[str] | None) -> list[str]:
    names = list(TRANSFORMATIONS) if names is None else list(names)
    unknown = sorted(set(names) - set(TRANSFORMATIONS))
    if unknown:
        raise WorkstationError(f"unknown format transformation {unknown[0]!r}; known: "
                               f"{', '.join(TRANSFORMATIONS)}")
    return names


def _tolerance(ctx: ProbeContext, before: np.ndarray, score_type: str) -> float:
    given = ctx.param("tolerance", None)
    if given is not None:
        return float(given)
    return format_tolerance(before, score_type,
                            float(ctx.param("relative_tolerance", RELATIVE_TOLERANCE)))


class FormatInvarianceProbe:
    """See the module docstring."""

    name, version, kinds = "format-invariance", "1", ("pairs", "labels")
    description = ("Adding or removing markdown, whitespace or a polite closing must not move a "
                   "response's score beyond a tolerance.")

    def __init__(self) -> None:
        self.last_summary: dict[str, Any] = {}

    def run(self, ctx: ProbeContext) -> list[Finding]:
        self.last_summary = {}
        names = _transformation_names(ctx.param("transformations", None))
        pool = _response_pool(ctx)
        cases = [(k, name, new) for k, p in enumerate(pool)
                 for name, new in format_variants(p[3], names)]
        before = ctx.score_texts([p[2] for p in pool], [p[3] for p in pool])
        ctx.progress.check()
        after = ctx.score_texts([pool[c[0]][2] for c in cases], [c[2] for c in cases])
        start = np.array([before[c[0]] for c in cases], dtype=float)
        score_type = ctx.version.manifest["score_type"]
        tolerance = _tolerance(ctx, before, score_type)
        bad = np.flatnonzero(np.abs(np.asarray(after, float) - start) > tolerance)
        self.last_summary = {
            "n_responses": len(pool), "n_cases": len(cases), "n_violations": len(bad),
            "tolerance": tolerance,
            "violations_per_transformation": {n: sum(cases[i][1] == n for i in bad)
                                              for n in names}}
        scale = score_scale(before, score_type)
        return [self._finding(pool[cases[i][0]], cases[i], start[i], float(after[i]), tolerance,
                              scale) for i in bad]

    def _finding(self, source: tuple, case: tuple, before: float, after: float,
                 tolerance: float, scale: float) -> Finding:
        (example_id, side, _, _), (_, name, text) = source, case
        return Finding(self.name, f"'{name}' moved the score by more than the tolerance",
                       float(severity(abs(after - before), scale)), "model-error",
                       example_id=example_id, case={"transformation": name, "text": text,
                                                    "side": side},
                       score_before=float(before), score_after=after,
                       details={"move": after - float(before), "tolerance": tolerance})


register_probe(PositionSwapProbe())
register_probe(FormatInvarianceProbe())
