"""The browser's filters: what an analyst can narrow a table to (verdict,
training split, review state, category, tag, who labelled it, assigned to me,
score and margin ranges, text, probe), as a ``Filters`` value and the bar of
controls that edits it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QDoubleValidator, QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSizePolicy, QVBoxLayout, QWidget)

from workstation.ui.widgets import plain_label, refill, small_combo

ALL = "All"
# The split filter: held-out (not trained on), the training set, or both (None).
# Both by default: the failure list is a triage queue, and the failures on
# training examples (ones the model could not fit while learning from them) are
# the likeliest label errors; the Split column says which each row is.
SPLIT_CHOICES = [(ALL, None), ("Held-out", "heldout"), ("Training set", "training")]
SPLIT_WORDS = {"heldout": "held-out only", "training": "training set only"}


@dataclass
class Filters:
    """The browser's filters; None means "any"."""

    verdict: str | None = None
    category: str | None = None
    tag: str | None = None
    reviewed: bool | None = None
    score_min: float | None = None
    score_max: float | None = None
    margin_min: float | None = None
    margin_max: float | None = None
    text: str | None = None
    probe: str | None = None
    labelled_by: str | None = None   # a key id
    assigned_to: str | None = None   # a key id (the "assigned to me" box: the signer's)
    split: str | None = None  # "heldout" or "training"; None: every example

    def page_filters(self) -> dict[str, Any]:
        """Keyword arguments for ``failure_page``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "probe"}

    def describe(self) -> str:
        """The active filters in words ("" when none)."""
        words = {"verdict": "verdict", "category": "category", "tag": "tag",
                 "score_min": "score ≥", "score_max": "score ≤", "margin_min": "margin ≥",
                 "margin_max": "margin ≤", "text": "text contains", "probe": "probe"}
        parts = [f"{words[k]} {getattr(self, k)!r}" if k in ("text", "category", "tag")
                 else f"{words[k]} {getattr(self, k)}" for k in words
                 if getattr(self, k) is not None]
        if self.reviewed is not None:
            parts.append("reviewed" if self.reviewed else "unreviewed")
        if self.split is not None:
            parts.append(SPLIT_WORDS[self.split])
        if self.labelled_by is not None:
            parts.append(f"labelled by {self.labelled_by}")
        if self.assigned_to is not None:
            parts.append("assigned to me")
        return " · ".join(parts)


class FilterBar(QWidget):
    """Search, verdict, split, review state, category, tag, ranges and probe."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompts and responses…  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.verdict = self._choice([(ALL, None), ("Failed", "failed"), ("Passed", "passed")])
        self.reviewed = self._choice([(ALL, None), ("Unreviewed", False), ("Reviewed", True)])
        self.category = self._choice([(ALL, None)])
        self.tag = self._choice([(ALL, None)])
        self.probe = self._choice([(ALL, None)])
        self.labelled_by = self._choice([(ALL, None)])
        self.labelled_by.setMinimumContentsLength(6)
        self.mine = QCheckBox("Assigned to me")
        self.mine.toggled.connect(lambda _on: self.changed.emit())
        self.me: str | None = None  # the key id "assigned to me" means
        self.split = self._choice(SPLIT_CHOICES)
        self.ranges = {name: self._number(name) for name in
                       ("score_min", "score_max", "margin_min", "margin_max")}
        self.clear_button = QPushButton("Clear filters")
        self.clear_button.clicked.connect(lambda _checked=False: self.clear())
        self._typing = QTimer(self, singleShot=True, interval=300)
        self._typing.timeout.connect(self.changed.emit)
        self.search.textChanged.connect(lambda _t: self._typing.start())
        QShortcut(QKeySequence("Escape"), self.search, activated=self.search.clear,
                  context=Qt.ShortcutContext.WidgetShortcut)
        self._layout()
        self.set_mode("browse", [], [], [])

    def _choice(self, items: list[tuple[str, Any]]) -> QComboBox:
        combo = small_combo()
        for text, data in items:
            combo.addItem(text, data)
        combo.activated.connect(lambda _i: self.changed.emit())
        return combo

    def _number(self, name: str) -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText("min" if name.endswith("min") else "max")
        edit.setValidator(QDoubleValidator())
        edit.setMaximumWidth(64)
        edit.editingFinished.connect(self.changed.emit)
        return edit

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.search, 3)
        self.labels: dict[str, QLabel] = {}
        for text, widget in (("Verdict", self.verdict), ("Split", self.split),
                             ("Review", self.reviewed),
                             ("Category", self.category), ("Tag", self.tag),
                             ("Probe", self.probe)):
            label = self.labels[text] = QLabel(text)
            label.setBuddy(widget)
            top.addWidget(label)
            top.addWidget(widget)
        second = QHBoxLayout()
        second.setContentsMargins(0, 0, 0, 0)
        for text, low, high in (("Score", "score_min", "score_max"),
                                ("Margin", "margin_min", "margin_max")):
            second.addWidget(QLabel(text))
            second.addWidget(self.ranges[low])
            second.addWidget(QLabel("to"))
            second.addWidget(self.ranges[high])
            second.addSpacing(8)
        # Team review: whose labels, and the rows handed to me (a narrow second row keeps
        # the window's minimum width).
        label = self.labels["Labelled by"] = QLabel("Labelled by")
        label.setBuddy(self.labelled_by)
        second.addWidget(label)
        second.addWidget(self.labelled_by)
        second.addWidget(self.mine)
        second.addSpacing(8)
        self.summary = plain_label(wrap=False)
        # A long filter summary is cut at the window's edge, never widens the window.
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.count = plain_label(wrap=False)
        second.addWidget(self.summary, 1)
        second.addWidget(self.count)
        second.addWidget(self.clear_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(top)
        column.addLayout(second)

    # -- state -----------------------------------------------------------------
    def set_mode(self, mode: str, categories: list[str], tags: list[str],
                 probes: list[str]) -> None:
        """Enable what applies: probe runs filter by probe only; browsing has no scores."""
        refill(self.category, [(ALL, None)] + [(c, c) for c in categories])
        refill(self.tag, [(ALL, None)] + [(t, t) for t in tags])
        refill(self.probe, [(ALL, None)] + [(p, p) for p in probes])
        findings = mode == "findings"
        for widget in (self.search, self.reviewed, self.category, self.tag, self.labelled_by,
                       self.mine):
            widget.setEnabled(not findings)
        for widget in (self.verdict, *self.ranges.values()):
            widget.setEnabled(mode == "run")
        self.probe.setEnabled(findings)
        # One of the two is shown: the bar keeps its width (a laptop's 1024 px)
        for widget, shown in ((self.probe, findings), (self.labels["Probe"], findings),
                              (self.split, not findings), (self.labels["Split"], not findings)):
            widget.setVisible(shown)

    def set_split(self, available: bool, tip: str) -> None:
        """Offer the split filter when the run tells held-out from training
        examples; else keep it disabled, ``tip`` saying why."""
        self.split.setEnabled(available)
        for widget in (self.split, self.labels["Split"]):
            widget.setToolTip(tip)

    def filters(self) -> Filters:
        ranges = {k: _float(e.text()) if e.isEnabled() else None for k, e in self.ranges.items()}
        enabled = self.search.isEnabled()
        return Filters(
            verdict=self.verdict.currentData() if self.verdict.isEnabled() else None,
            category=self.category.currentData() if enabled else None,
            tag=self.tag.currentData() if enabled else None,
            reviewed=self.reviewed.currentData() if enabled else None,
            text=(self.search.text().strip() or None) if enabled else None,
            probe=self.probe.currentData() if self.probe.isEnabled() else None,
            labelled_by=self.labelled_by.currentData() if enabled else None,
            assigned_to=self.me if enabled and self.mine.isChecked() and self.me else None,
            split=self.split.currentData() if self.split.isEnabled() else None, **ranges)

    def set_analysts(self, analysts: list[tuple[str, str]], me: str | None) -> None:
        """The "labelled by" choices ((name, key id) of the trusted keys) and
        whose assignments "assigned to me" shows."""
        refill(self.labelled_by, [(ALL, None)] + [(f"{n} ({k[:8]})", k) for n, k in analysts])
        self.me = me
        self.mine.setToolTip("examples assigned to you" if me else
                             "sign in (make an edit) to see the examples assigned to you")

    def restore(self, filters: Filters) -> None:
        """Show ``filters`` again (after the choices were refilled)."""
        for combo, value in ((self.verdict, filters.verdict), (self.category, filters.category),
                             (self.tag, filters.tag), (self.reviewed, filters.reviewed),
                             (self.probe, filters.probe), (self.split, filters.split),
                             (self.labelled_by, filters.labelled_by)):
            combo.setCurrentIndex(max(combo.findData(value), 0))
        self.mine.blockSignals(True)
        self.mine.setChecked(filters.assigned_to is not None)
        self.mine.blockSignals(False)

    def set_verdict(self, verdict: str | None) -> None:
        self.verdict.setCurrentIndex(max(self.verdict.findData(verdict), 0))

    def clear(self, emit: bool = True) -> None:
        """Back to no filter (a run shows its failures)."""
        self._typing.stop()
        for combo in (self.reviewed, self.category, self.tag, self.probe, self.split,
                      self.labelled_by):
            combo.setCurrentIndex(0)
        self.mine.blockSignals(True)
        self.mine.setChecked(False)
        self.mine.blockSignals(False)
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)
        for edit in self.ranges.values():
            edit.clear()
        self.verdict.setCurrentIndex(0)
        if emit:
            self.changed.emit()


def _float(text: str) -> float | None:
    try:
        return float(text.replace(",", ".")) if text.strip() else None
    except ValueError:
        return None
