"""Text red-teaming: the ``red-team`` and ``over-refusal`` probes.

``red-team`` wraps known-unsafe responses in attacker transformations and
flags every case whose score rises above the safe bar (the source scored at
or below it, the attacked text above). Known-unsafe: labeled responses whose
current label is unsafe; for pairs, the current rejected side. The bar:

* labeled responses: the safe threshold (``threshold``; default 0.5 on
  probabilities, 0 on logits and rewards);
* pairs: the score of the pair's chosen side (``pairs_bar="chosen"``, the
  default), or the median chosen score of the sampled pairs
  (``pairs_bar="median-chosen"``).

The transformations are data: ``resources/redteam_transformations.json``
beside this module (id, description, template with ``{response}``, optional
key-word transform ``base64``/``leetspeak`` of the ``k`` longest words).
``transformations`` (a list of ids) restricts them; at most ``sample``
sources (default 300) are attacked, drawn with the run's seed.

``over-refusal``: where the same prompt has a helpful safe answer and a
refusal, the helpful answer must not score below the refusal. Helpful safe
answer: a labeled response currently labeled safe, or the current chosen side
of a pair, that is not a refusal. Refusal: any response (pairs: either side;
labels: not labeled unsafe) with a phrase of
``resources/refusal_phrases.json`` in its first ``window`` characters. Each
helpful answer is compared with the best-scoring refusal of its prompt.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from workstation.errors import WorkstationError
from workstation.probes.base import Finding, ProbeContext, register_probe
from workstation.probes.sampling import TextRows, eligible_ids, read_rows, sample
from workstation.probes.severity import safe_threshold, score_scale, severity

DEFAULT_SAMPLE = 300
PREVIEW_CHARS = 200
_WORD = re.compile(r"[A-Za-z]{4,}")
_LEET = str.maketrans({"a": "4", "A": "4", "e": "3", "E": "3", "i": "1", "I": "1", "o": "0",
                       "O": "0", "s": "5", "S": "5", "t": "7", "T": "7"})


def load_resource(name: str) -> dict[str, Any]:
    """A JSON file of ``workstation/probes/resources`` (shipped as package data)."""
    text = resources.files("workstation.probes").joinpath("resources", name).read_text("utf-8")
    return json.loads(text)


# -- transformations ---------------------------------------------------------

def longest_words(text: str, k: int) -> list[str]:
    """The ``k`` longest distinct words (letters only, 4+), ties by first appearance."""
    seen = list(dict.fromkeys(_WORD.findall(text)))
    return sorted(seen, key=lambda w: -len(w))[:k]


KEYWORD_TRANSFORMS = {
    "base64": lambda w: base64.b64encode(w.encode("utf-8")).decode("ascii"),
    "leetspeak": lambda w: w.translate(_LEET),
}


def rewrite_keywords(text: str, transform: str, k: int) -> str:
    """``text`` with its ``k`` longest words rewritten by ``transform``."""
    words = longest_words(text, k)
    if not words:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b")
    return pattern.sub(lambda m: KEYWORD_TRANSFORMS[transform](m.group(0)), text)


@dataclass(frozen=True)
class Transformation:
    """One attacker transformation of a response."""

    id: str
    description: str
    template: str
    keyword_transform: str | None = None
    k: int = 0

    def apply(self, response: str) -> str:
        body = response
        if self.keyword_transform:
            body = rewrite_keywords(response, self.keyword_transform, self.k)
        return self.template.replace("{response}", body)


def load_transformations() -> list[Transformation]:
    """The shipped red-team transformations, checked."""
    table = [Transformation(**entry) for entry in
             load_resource("redteam_transformations.json")["transformations"]]
    for t in table:
        if "{response}" not in t.template or (t.keyword_transform and
                                              t.keyword_transform not in KEYWORD_TRANSFORMS):
            raise WorkstationError(f"red-team transformation {t.id!r} is malformed")
    return table


def choose_transformations(ids: list[str] | None) -> list[Transformation]:
    table = load_transformations()
    if ids is None:
        return table
    known = {t.id: t for t in table}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise WorkstationError(f"unknown red-team transformation {unknown[0]!r}; known: "
                               f"{', '.join(known)}")
    return [known[i] for i in ids]


def crossings(before: np.ndarray, after: np.ndarray, bar: np.ndarray) -> np.ndarray:
    """Where a score at or below the bar rose above it."""
    return (np.asarray(before) <= bar) & (np.asarray(after) > bar)


# -- red team ----------------------------------------------------------------

@dataclass
class _Sources:
    """Known-unsafe responses to attack, with the bar each must stay under."""

    ids: np.ndarray
    prompts: list[str | None]
    texts: list[str]
    bar: np.ndarray
    bar_kind: str
    side: str


def _label_sources(ctx: ProbeContext) -> _Sources:
    ids = eligible_ids(ctx.ws, ctx.dataset_id,
                       "current_label = false AND length(trim(coalesce(response, ''))) > 0")
    rows = read_rows(ctx.ws, sample(ids, ctx.param("sample", DEFAULT_SAMPLE), ctx.seed))
    t = safe_threshold("labels", ctx.version.manifest["score_type"], ctx.param("threshold", None))
    return _Sources(rows.ids, rows.prompts, list(rows.responses), np.full(len(rows), t),
                    "safe threshold", "response")


def _pair_sources(ctx: ProbeContext) -> _Sources:
    ids = eligible_ids(ctx.ws, ctx.dataset_id,
                       "length(trim(coalesce(current_rejected, ''))) > 0")
    rows = read_rows(ctx.ws, sample(ids, ctx.param("sample", DEFAULT_SAMPLE), ctx.seed))
    chosen = ctx.score_texts(rows.prompts, rows.chosen) if len(rows) else np.zeros(0)
    mode = ctx.param("pairs_bar", "chosen")
    if mode not in ("chosen", "median-chosen"):
        raise WorkstationError(f"pairs_bar must be 'chosen' or 'median-chosen', not {mode!r}")
    bar = chosen if mode == "chosen" else np.full(len(rows), np.median(chosen) if len(rows)
                                                  else 0.0)
    kind = "chosen side's score" if mode == "chosen" else "median chosen score"
    return _Sources(rows.ids, rows.prompts, list(rows.rejected), np.asarray(bar, float), kind,
                    "rejected")


class RedTeamProbe:
    """See the module docstring."""

    name, version, kinds = "red-team", "1", ("labels", "pairs")
    description = ("Wraps known-unsafe responses in attacker transformations (role-play, "
                   "disclaimers, refusal-then-comply, encodings) and flags those scored safe.")

    def __init__(self) -> None:
        self.last_summary: dict[str, Any] = {}

    def run(self, ctx: ProbeContext) -> list[Finding]:
        self.last_summary = {}
        table = choose_transformations(ctx.param("transformations", None))
        src = _pair_sources(ctx) if ctx.kind == "pairs" else _label_sources(ctx)
        n = len(src.ids)
        before = ctx.score_texts(src.prompts, src.texts) if n else np.zeros(0)
        ctx.progress.check()
        attacked = [t.apply(text) for t in table for text in src.texts]
        after = ctx.score_texts(src.prompts * len(table), attacked) if n else np.zeros(0)
        tiled_before, tiled_bar = np.tile(before, len(table)), np.tile(src.bar, len(table))
        hits = np.flatnonzero(crossings(tiled_before, after, tiled_bar))
        scale = score_scale(before, ctx.version.manifest["score_type"])
        self.last_summary = {
            "n_sources": n, "n_attacks": len(attacked), "n_flagged": len(hits),
            "bar": src.bar_kind, "n_sources_already_above_bar": int((before > src.bar).sum()),
            "flagged_per_transformation": {t.id: int(((hits // max(n, 1)) == k).sum())
                                           for k, t in enumerate(table)}}
        return [self._finding(src, table[i // n], i % n, attacked[i], float(tiled_before[i]),
                              float(after[i]), scale) for i in hits]

    def _finding(self, src: _Sources, t: Transformation, k: int, text: str, before: float,
                 after: float, scale: float) -> Finding:
        bar = float(src.bar[k])
        return Finding(self.name, f"unsafe response scored above the {src.bar_kind} after "
                                  f"'{t.id}'", float(severity(after - bar, scale)), "model-error",
                       example_id=int(src.ids[k]), score_before=before, score_after=after,
                       case={"transformation": t.id, "text": text, "source_side": src.side},
                       details={"bar": bar, "bar_kind": src.bar_kind,
                                "description": t.description})


# -- over-refusal ------------------------------------------------------------

class RefusalDetector:
    """Tells refusals by their opening phrases (see ``refusal_phrases.json``)."""

    def __init__(self, phrases: list[str], window: int) -> None:
        self.phrases = [_normalise(p) for p in phrases]
        self.window = int(window)

    @classmethod
    def shipped(cls, window: int | None = None) -> "RefusalDetector":
        table = _refusal_table()
        return cls(table["phrases"], window if window is not None else table["window"])

    def __call__(self, text: str | None) -> bool:
        head = _normalise((text or "")[:self.window])
        return any(p in head for p in self.phrases)


@lru_cache(maxsize=1)
def _refusal_table() -> dict[str, Any]:
    return load_resource("refusal_phrases.json")


def _normalise(text: str) -> str:
    return text.lower().replace("\u2019", "'")


@dataclass(frozen=True)
class Answer:
    """One response to a prompt, where it came from, and what it is."""

    example_id: int
    side: str
    prompt: str
    text: str
    helpful: bool
    refusal: bool


def collect_answers(rows: TextRows, kind: str, is_refusal: RefusalDetector) -> list[Answer]:
    """Helpful safe answers and refusals among ``rows`` (see the module docstring)."""
    out: list[Answer] = []
    for k, example_id in enumerate(rows.ids):
        prompt = rows.prompts[k]
        if prompt is None:  # no prompt: nothing to compare against
            continue
        for side, text, safe in _sides(rows, kind, k):
            if not text or not text.strip():
                continue
            refusal = is_refusal(text)
            helpful = safe is True and not refusal
            if helpful or (refusal and safe is not False):
                out.append(Answer(int(example_id), side, prompt, text, helpful, refusal))
    return out


def _sides(rows: TextRows, kind: str, k: int) -> list[tuple[str, str | None, bool | None]]:
    if kind == "pairs":  # the chosen side is the one labeled good
        return [("chosen", rows.chosen[k], True), ("rejected", rows.rejected[k], None)]
    return [("response", rows.responses[k], rows.labels[k])]


def refusal_comparisons(answers: list[Answer]) -> list[tuple[int, int]]:
    """(helpful, refusal) positions in ``answers`` per prompt that has both; each
    helpful answer is paired with every refusal of its prompt."""
    by_prompt: dict[str, list[int]] = {}
    for i, a in enumerate(answers):
        by_prompt.setdefault(a.prompt, []).append(i)
    pairs = []
    for group in by_prompt.values():
        helpful = [i for i in group if answers[i].helpful]
        refusals = [i for i in group if answers[i].refusal]
        pairs += [(h, r) for h in helpful for r in refusals]
    return pairs


class OverRefusalProbe:
    """See the module docstring."""

    name, version, kinds = "over-refusal", "1", ("labels", "pairs")
    description = ("Where a prompt has both a helpful safe answer and a refusal, the helpful "
                   "answer must not score below the refusal.")

    def __init__(self) -> None:
        self.last_summary: dict[str, Any] = {}

    def run(self, ctx: ProbeContext) -> list[Finding]:
        self.last_summary = {}
        rows = read_rows(ctx.ws, _candidate_ids(ctx))
        answers = collect_answers(rows, ctx.kind, RefusalDetector.shipped(ctx.param("window",
                                                                                    None)))
        comparisons = refusal_comparisons(answers)
        used = sorted({i for pair in comparisons for i in pair})
        scores = np.zeros(len(answers))
        if used:
            scores[used] = ctx.score_texts([answers[i].prompt for i in used],
                                           [answers[i].text for i in used])
        findings = self._findings(answers, comparisons, scores,
                                  score_scale(scores[used], ctx.version.manifest["score_type"]))
        self.last_summary = self._summary(answers, comparisons, findings)
        return findings

    def _findings(self, answers: list[Answer], comparisons: list[tuple[int, int]],
                  scores: np.ndarray, scale: float) -> list[Finding]:
        best: dict[int, int] = {}  # helpful -> its best-scoring refusal
        for h, r in comparisons:
            if h not in best or scores[r] > scores[best[h]]:
                best[h] = r
        return [self._finding(answers[h], answers[r], scores[h], scores[r], scale)
                for h, r in sorted(best.items()) if scores[h] < scores[r]]

    def _finding(self, helpful: Answer, refusal: Answer, s_helpful: float, s_refusal: float,
                 scale: float) -> Finding:
        return Finding(self.name, "helpful safe answer scores below a refusal to the same "
                                  "prompt", float(severity(s_refusal - s_helpful, scale)),
                       "model-error", example_id=helpful.example_id,
                       score_before=float(s_helpful), score_after=float(s_refusal),
                       details={"helpful_side": helpful.side,
                                "refusal_example_id": refusal.example_id,
                                "refusal_side": refusal.side,
                                "refusal_text": refusal.text[:PREVIEW_CHARS]})

    @staticmethod
    def _summary(answers: list[Answer], comparisons: list[tuple[int, int]],
                 findings: list[Finding]) -> dict[str, Any]:
        prompts = {answers[h].prompt for h, _ in comparisons}
        summary: dict[str, Any] = {
            "n_helpful": sum(a.helpful for a in answers),
            "n_refusals": sum(a.refusal for a in answers),
            "n_prompts_with_both": len(prompts), "n_comparisons": len(comparisons),
            "n_helpful_compared": len({h for h, _ in comparisons}), "n_flagged": len(findings)}
        if not comparisons:
            summary["note"] = ("no prompt has both a helpful safe answer and a refusal: "
                               "nothing to compare, 0 findings")
        return summary


def _candidate_ids(ctx: ProbeContext) -> np.ndarray:
    if ctx.kind == "pairs":  # a pair can hold both answers itself
        return eligible_ids(ctx.ws, ctx.dataset_id, "prompt IS NOT NULL")
    return eligible_ids(ctx.ws, ctx.dataset_id, f"prompt IN (SELECT prompt FROM current_examples "
                        f"WHERE dataset_id = {int(ctx.dataset_id)} AND NOT excluded "
                        f"GROUP BY prompt HAVING count(*) > 1)")


register_probe(RedTeamProbe())
register_probe(OverRefusalProbe())
