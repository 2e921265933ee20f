"""Words on screen: counts with their noun in the right number ("1 failure",
"2 failures") and the article it takes ("an observation")."""

from __future__ import annotations

_IRREGULAR = {"category": "categories", "this": "these", "was": "were", "is": "are"}


def plural(noun: str, n: int) -> str:
    """``noun`` in the number ``n`` asks for."""
    if n == 1:
        return noun
    return _IRREGULAR.get(noun, noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s"))


def count(n: int, noun: str) -> str:
    """"1 failure", "1,234 failures"."""
    return f"{n:,} {plural(noun, n)}"


def article(word: str) -> str:
    """"an observation", "a label"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
