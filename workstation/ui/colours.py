"""Colours that carry meaning (fixed, broken, safe, unsafe, ...), readable on
the system palette: each comes in a shade for light and one for dark
backgrounds, from the Okabe-Ito hues (colour-blind safe).
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

# Okabe-Ito hues (colour-blind safe), a darker shade for light backgrounds and
# a lighter one for dark backgrounds.
_SEMANTIC = {
    "fixed": ("#007a55", "#3ddc97"), "broken": ("#c0392b", "#ff7b6b"),
    "safe": ("#0072b2", "#56b4e9"), "unsafe": ("#d55e00", "#f0a35e"),
    "chosen": ("#0072b2", "#56b4e9"), "rejected": ("#d55e00", "#f0a35e"),
    "accent": ("#7b3fa0", "#c79be0"),
}


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def semantic_colour(name: str, palette: QPalette) -> QColor:
    """A semantic colour (fixed, broken, safe, unsafe, ...) readable on ``palette``."""
    light, dark = _SEMANTIC[name]
    return QColor(dark if is_dark(palette) else light)


def with_alpha(colour: QColor, alpha: int) -> QColor:
    """``colour`` with opacity ``alpha`` (0-255)."""
    c = QColor(colour)
    c.setAlpha(alpha)
    return c
