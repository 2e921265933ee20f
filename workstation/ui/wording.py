"""Words on screen: counts with their noun in the right number ("1 failure",
"2 failures"), review edits ("excluded: no → yes") and metric names
("held-out examples") as a reader says them, not as the code stores them."""

from __future__ import annotations

import re

_IRREGULAR = {"category": "categories", "this": "these", "was": "were", "is": "are"}


def plural(noun: str, n: int) -> str:
    """``noun`` in the number ``n`` asks for."""
    if n == 1:
        return noun
    return _IRREGULAR.get(noun, noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s"))


def count(n: int, noun: str) -> str:
    """"1 failure", "1,234 failures"."""
    return f"{n:,} {plural(noun, n)}"


# How a tokens model's texts reach its tokenizer (the manifest's text_format),
# said the same way where a model is registered and where its version is shown.
TEXT_FORMAT_WORDS = {"pair": "prompt and response as a tokenizer pair",
                     "response": "the response alone (prompt ignored)",
                     "chat-template": "the model's chat template (prompt = user turn, "
                                      "response = assistant turn)"}


# -- review edits -------------------------------------------------------------

def value_words(value: object, limit: int = 60) -> str:
    """A reviewed field's value as a reader says it: yes/no, none, a list
    joined by commas, text shortened to ``limit`` characters."""
    if value is None or value == []:
        return "none"
    if isinstance(value, dict) and "analysts" in value:  # what an adjudication settled
        return f"{value_words(value.get('in_force'))} (analysts: " + ", ".join(
            value_words(v) for v in value["analysts"].values()) + ")"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def change_words(field: str, old: object, new: object) -> str:
    """"excluded: no → yes", "tags: none → later, urgent"; an analyst's
    judgement set to the value it had is their confirmation: "label: unsafe
    (confirmed)"."""
    if old == new and field in ("label", "flipped", "category"):
        return f"{field}: {value_words(new)} (confirmed)"
    return f"{field}: {value_words(old)} → {value_words(new)}"


# -- metric names ---------------------------------------------------------------

_METRIC_WORDS = {
    "n": "examples", "n_failures": "failures", "n_train": "training examples",
    "n_heldout": "held-out examples", "n_unlabeled": "unlabeled examples",
    "auroc": "AUROC", "ece": "calibration error (ECE)", "accuracy": "accuracy",
    "pairwise_accuracy": "pairwise accuracy", "mean_margin": "mean margin",
    "loss": "loss", "e_min": "reconstruction error, low end",
    "e_max": "reconstruction error, high end", "e_range": "reconstruction error range",
    "k": "reward steepness (k)", "epochs": "epochs trained", "best_epoch": "best epoch",
    "threshold": "threshold",
}
_PREFIXES = (("heldout_", "held-out "), ("train_", "training "), ("validation_", "validation "),
             ("n_", "number of "))
_WORDS = {"recon": "reconstruction", "auroc": "AUROC",
          "ece": "ECE", "min": "lowest", "max": "highest", "heldout": "held-out",
          "train": "training", "ci": "(95% interval)"}


def metric_name(key: str) -> str:
    """A metric key as words: "n_heldout" -> "held-out examples",
    "heldout_recon_error_p95" -> "held-out reconstruction error 95th percentile";
    a dotted key names each part ("heldout.accuracy" -> "held-out: accuracy")."""
    if "." in key:
        head, _, rest = key.partition(".")
        return f"{metric_name(head)}: {metric_name(rest)}"
    if key in _METRIC_WORDS:
        return _METRIC_WORDS[key]
    for prefix, words in _PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            rest = key[len(prefix):]
            return words + (_METRIC_WORDS.get(rest) or _words(rest))
    return _words(key)


def _words(key: str) -> str:
    return " ".join(_word(part) for part in key.split("_") if part)


def _word(part: str) -> str:
    if re.fullmatch(r"p\d{1,2}", part):  # p05, p95: percentiles
        n = int(part[1:])
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"{n}{suffix} percentile"
    return _WORDS.get(part, part)
