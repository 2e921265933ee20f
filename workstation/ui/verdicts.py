"""How a row of an audit run reads: each score stays with the text it scored
(a pair flipped since the audit shows its texts, and so its scores, swapped),
and a verdict computed before an edit of the label says so.
"""

from __future__ import annotations

from typing import Any


def as_shown(row: dict[str, Any]) -> dict[str, Any]:
    """A ``failure_page`` row as the window shows it. Its scores are the
    audit's, of the texts on each side at audit time: a pair flipped since
    then shows its texts swapped, so its scores swap with them. ``edited``
    says the label changed since the audit: the verdict and margin are from
    before the edit."""
    shown = dict(row)
    shown["edited"] = bool(row.get("label_changed")) and row.get("passed") is not None
    if shown["edited"] and "chosen" in row:
        shown["score_chosen"], shown["score_rejected"] = (row.get("score_rejected"),
                                                          row.get("score_chosen"))
    return shown


def fmt(value: Any) -> str:
    """A score as text ("—" when there is none)."""
    return "—" if value is None else f"{value:.3f}"


def pair_summary(row: dict[str, Any]) -> str:
    """The scores line of a pair: each score is of the text shown on its side
    (``browser.as_shown``); after an edit the verdict says it is as audited."""
    margin = row.get("margin")
    if margin is None:
        return "Not scored here: pick an audit run to see scores."
    chosen, rejected = row.get("score_chosen"), row.get("score_rejected")
    scores = f"chosen {fmt(chosen)}   rejected {fmt(rejected)}"
    if not row.get("edited"):
        prefers = "chosen" if margin > 0 else "rejected"
        return f"{scores}   margin {margin:+.3f} (the model prefers {prefers})"
    prefers = ("the scores tie" if chosen == rejected else "the model prefers the text now "
               f"under {'Chosen' if chosen > rejected else 'Rejected'}")
    return f"{scores} ({prefers}) · {stale_verdict(row)}"


def stale_verdict(row: dict[str, Any]) -> str:
    """The audit's verdict, said to be from before an edit when it is."""
    verdict = f"{'pass' if row['passed'] else 'FAIL'} (margin {row['margin']:+.3f})"
    if not row.get("edited"):
        return verdict
    return f"as audited, before your edit: {verdict}"


def stale_tip(row: dict[str, Any]) -> str:
    """What to do about a verdict from before an edit ("" when it is current)."""
    return ("The label changed after this audit: its verdict and margin are of the example as "
            "it was. Audit again to judge it as it is now." if row.get("edited") else "")


def label_facts(example: dict[str, Any], row: dict[str, Any]) -> str:
    """"score 0.812 · label unsafe · category X · FAIL (margin -0.312)"."""
    label = f"label {example.get('label') or 'none'}"
    if row.get("edited") and row.get("label_at_audit") is not None:
        label += f" ({'safe' if row['label_at_audit'] else 'unsafe'} when audited)"
    parts = [f"score {fmt(row.get('score'))}" if row.get("score") is not None else "not scored",
             label, f"category {example.get('category') or 'none'}"]
    if row.get("passed") is not None:
        parts.append(stale_verdict(row))
    return " · ".join(parts)
