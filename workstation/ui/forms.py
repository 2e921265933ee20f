"""The small forms that start flywheel jobs: import, export, register, audit,
probes, retrain, patch. They only collect choices and hand them back with
``values()``; the window runs the core call as a job.
"""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QLineEdit, QSpinBox,
                               QVBoxLayout, QWidget)

from workstation.ui.dialogs import Form, PathField, combo
from workstation.ui.wording import TEXT_FORMAT_WORDS, count

KINDS = (("pairs", "Preference pairs"), ("labels", "Labeled responses"),
         ("demos", "Demonstrations (trajectories)"))


class ImportDialog(Form):
    """File (or folder), kind (guessed from the file), name, format. Opened
    again with the same ``values`` and the ``error`` when an import failed."""

    def __init__(self, formats: dict[str, list[str]], parent: QWidget | None = None,
                 values: dict[str, Any] | None = None, error: str | None = None) -> None:
        super().__init__("Import dataset", "Import", parent)
        self.formats = formats
        self.path = PathField("open", "Dataset file",
                              "Datasets (*.jsonl *.json *.gz *.csv *.parquet *.npz);;All files (*)")
        self.kind = combo([(text, kind) for kind, text in KINDS])
        self.guessed: str | None = None
        self.guess = QLabel()
        self.guess.setTextFormat(Qt.TextFormat.PlainText)
        self.name = QLineEdit()
        self.format = QComboBox()
        self.kind.currentIndexChanged.connect(self._fill_formats)
        self.path.edit.textChanged.connect(self._path_changed)
        self.form.addRow("File", self.path)
        self.form.addRow("Holds", self.kind)
        self.form.addRow("", self.guess)
        self.form.addRow("Format", self.format)
        self.form.addRow("Dataset name", self.name)
        self._fill_formats()
        if values:
            self._restore(values)
        if error:
            self.hint.setText(f"The import failed: {error}")
            self.hint.show()

    def _restore(self, values: dict[str, Any]) -> None:
        self.path.edit.setText(values.get("path") or "")
        self.kind.setCurrentIndex(max(self.kind.findData(values.get("kind")), 0))
        self.format.setCurrentIndex(max(self.format.findData(values.get("format")), 0))
        self.name.setText(values.get("name") or "")
        self.name.setModified(True)  # the analyst's, not a suggestion

    def _fill_formats(self) -> None:
        self.format.clear()
        self.format.addItem("Detect from the file", None)
        for name in self.formats.get(self.kind.currentData(), []):
            self.format.addItem(name, name)

    def _path_changed(self, path: str) -> None:
        from pathlib import Path

        from workstation.datasets.guess import guess_kind

        if not self.name.isModified():
            self.name.setText(Path(path).name.split(".")[0])
        self.guessed = guess_kind(path) if path.strip() else None
        if self.guessed is not None:
            self.kind.setCurrentIndex(self.kind.findData(self.guessed))
        known = dict(KINDS)
        self.guess.setText(f"Detected from the file: {known[self.guessed].lower()}."
                           if self.guessed else "")

    def problem(self) -> str | None:
        if not self.path.text():
            return "Choose the file to import."
        kind = self.kind.currentData()
        if self.guessed not in (None, kind) and self.format.currentData() is None:
            known = dict(KINDS)
            return (f"This file looks like {known[self.guessed].lower()}, not "
                    f"{known[kind].lower()}: choose “{known[self.guessed]}” above (or name "
                    f"a format to read it as {known[kind].lower()} anyway).")
        return None if self.name.text().strip() else "Give the dataset a name."

    def values(self) -> dict[str, Any]:
        return {"path": self.path.text(), "kind": self.kind.currentData(),
                "name": self.name.text().strip(), "format": self.format.currentData()}


class ExportDialog(Form):
    """Dataset, format, output file, what to include."""

    def __init__(self, datasets: Sequence[tuple[str, str]], formats: Sequence[str],
                 current: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Export dataset", "Export", parent)
        self.dataset = combo([(f"{name} ({kind})", name) for name, kind in datasets], current)
        self.format = combo([(f, f) for f in formats])
        self.path = PathField("save", "Export to")
        self.reviewed_only = QCheckBox("Only examples the review log has touched")
        self.include_excluded = QCheckBox("Include excluded examples (with a column saying so)")
        self.form.addRow("Dataset", self.dataset)
        self.form.addRow("Format", self.format)
        self.form.addRow("File", self.path)
        self.form.addRow("", self.reviewed_only)
        self.form.addRow("", self.include_excluded)

    def problem(self) -> str | None:
        if self.dataset.currentData() is None:
            return "There is no dataset to export yet."
        return None if self.path.text() else "Choose where to write the file."

    def values(self) -> dict[str, Any]:
        return {"dataset": self.dataset.currentData(), "fmt": self.format.currentData(),
                "out": self.path.text(), "reviewed_only": self.reviewed_only.isChecked(),
                "include_excluded": self.include_excluded.isChecked()}


class RegisterModelDialog(Form):
    """An ONNX file, its name, input kind, optional parent; for a text-tokens
    model also its tokenizer, text format, maximum length and chat template."""

    def __init__(self, input_kinds: Sequence[str], models: Sequence[str],
                 parent: QWidget | None = None) -> None:
        super().__init__("Register model", "Register", parent)
        self.path = PathField("open", "ONNX model", "ONNX models (*.onnx);;All files (*)")
        self.name = QLineEdit()
        self.input_kind = combo([(k, k) for k in input_kinds])
        self.parent_model = combo([("(none)", None)] + [(m, m) for m in models])
        self.notes = QLineEdit()
        self.form.addRow("ONNX file", self.path)
        self.form.addRow("Model name", self.name)
        self.form.addRow("Input", self.input_kind)
        self.form.addRow("Parent version", self.parent_model)
        self._add_text_fields()
        self.form.addRow("Notes", self.notes)
        self.input_kind.currentIndexChanged.connect(self._enable_text_fields)
        self._enable_text_fields()

    def _add_text_fields(self) -> None:
        """The fields that say how texts reach a text-tokens model."""
        self.tokenizer = PathField("open", "tokenizer.json", "Tokenizers (*.json)")
        self.text_format = combo([(words[0].upper() + words[1:], kind)
                                  for kind, words in TEXT_FORMAT_WORDS.items()], "pair")
        self.max_length = QSpinBox()
        self.max_length.setRange(0, 1_000_000)
        self.max_length.setSpecialValueText("the tokenizer's own default")
        self.tokenizer_config = PathField("open", "tokenizer_config.json",
                                          "Tokenizer configs (*.json);;All files (*)")
        self.tokenizer_config.edit.setPlaceholderText("beside the ONNX file")
        self.form.addRow("Tokenizer (text-tokens)", self.tokenizer)
        self.form.addRow("Text format", self.text_format)
        self.form.addRow("Max length (tokens)", self.max_length)
        self.form.addRow("Chat template config", self.tokenizer_config)

    def _tokens(self) -> bool:
        return self.input_kind.currentData() == "text-tokens"

    def _enable_text_fields(self) -> None:
        for field in (self.tokenizer, self.text_format, self.max_length, self.tokenizer_config):
            field.setEnabled(self._tokens())

    def problem(self) -> str | None:
        if not self.path.text():
            return "Choose the ONNX file."
        if not self.name.text().strip():
            return "Give the model a name."
        return self._chat_template_problem()

    def _chat_template_problem(self) -> str | None:
        from workstation.models.text_format import chat_template_config

        if not self._tokens() or self.text_format.currentData() != "chat-template":
            return None
        config = chat_template_config(self.path.text(), self.tokenizer_config.text() or None)
        if config.is_file():
            return None
        return ("The chat template format needs the model's tokenizer_config.json: there is "
                f"none at {config}; choose it under “Chat template config”.")

    def values(self) -> dict[str, Any]:
        tokens = self._tokens()
        return {"path": self.path.text(), "name": self.name.text().strip(),
                "input_kind": self.input_kind.currentData(),
                "parent": self.parent_model.currentData(),
                "tokenizer": (self.tokenizer.text() or None) if tokens else None,
                "text_format": self.text_format.currentData() if tokens else None,
                "max_length": (self.max_length.value() or None) if tokens else None,
                "tokenizer_config": (self.tokenizer_config.text() or None) if tokens else None,
                "notes": self.notes.text()}


# A model version as the forms offer it: (ref, version id, the dataset kinds it scores).
ModelChoice = tuple[str, int, tuple[str, ...]]
KIND_WORDS = {"pairs": "preference pairs", "labels": "labeled responses",
              "demos": "demonstrations"}


def model_choices(ws: Any) -> list[ModelChoice]:
    """Every model version, newest first, with the dataset kinds it scores."""
    from workstation import catalog
    from workstation.models.scoring import scorable_kinds

    return [(v.ref, v.id, scorable_kinds(v.input_kind))
            for v in reversed(catalog.model_versions(ws))]


def dataset_choices(ws: Any) -> list[tuple[str, str]]:
    """Every dataset as (name, kind), oldest first."""
    from workstation import catalog

    return [(d.name, d.kind) for d in catalog.datasets(ws)]


def fitting_model(models: Sequence[ModelChoice], model: int | None,
                  dataset_kind: str | None) -> int | None:
    """``model`` when it is offered (the analyst chose it); else the newest
    version that scores ``dataset_kind``; else the newest version."""
    if model in {m[1] for m in models}:
        return model
    fits = [m[1] for m in models if dataset_kind in m[2]]
    return fits[0] if fits else (models[0][1] if models else None)


def _kinds_text(kinds: Sequence[str]) -> str:
    return " or ".join(KIND_WORDS.get(k, k) for k in kinds) or "nothing"


class DatasetForModel:
    """A dataset combo box that offers only what the chosen model can score."""

    def __init__(self, box: QComboBox, datasets: Sequence[tuple[str, str]],
                 wanted: str | None) -> None:
        self.box, self.datasets, self.wanted = box, list(datasets), wanted

    def fill(self, kinds: Sequence[str] | None) -> None:
        """Offer the datasets of ``kinds`` (None: every dataset), keeping the
        one chosen (or wanted) when it is among them."""
        keep = self.box.currentData() or self.wanted
        self.box.clear()
        for name, kind in self.datasets:
            if kinds is None or kind in kinds:
                self.box.addItem(f"{name} ({KIND_WORDS.get(kind, kind)})", name)
        self.box.setCurrentIndex(max(self.box.findData(keep), 0))
        self.box.setEnabled(self.box.count() > 0)


class AuditDialog(Form):
    """Model version, dataset (those the model can score) and an optional threshold."""

    def __init__(self, models: Sequence[ModelChoice], datasets: Sequence[tuple[str, str]],
                 model: int | None = None, dataset: str | None = None,
                 parent: QWidget | None = None, title: str = "Audit") -> None:
        super().__init__(title, "Start", parent)
        self.models, self.kinds = list(models), dict(datasets)
        self.scores = {m[1]: m[2] for m in models}
        model = fitting_model(models, model, self.kinds.get(dataset))
        self.model = combo([(m[0], m[1]) for m in models], model)
        self.dataset = QComboBox()
        self.dataset_for_model = DatasetForModel(self.dataset, datasets, dataset)
        self.form.addRow("Model version", self.model)
        self.form.addRow("Dataset", self.dataset)
        self.model.currentIndexChanged.connect(self._fill_datasets)
        self._fill_datasets()
        self.use_threshold = QCheckBox("Own threshold (labels and demonstrations)")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(-1000, 1000)
        self.threshold.setDecimals(3)
        self.threshold.setValue(0.5)
        self.threshold.setEnabled(False)
        self.use_threshold.toggled.connect(self.threshold.setEnabled)
        if title == "Audit":
            self.form.addRow("", self.use_threshold)
            self.form.addRow("Threshold", self.threshold)

    def _fill_datasets(self) -> None:
        self.dataset_for_model.fill(self.scores.get(self.model.currentData(), ()))
        problem = self._nothing_fits()
        self.hint.setText(problem or "")
        self.hint.setVisible(bool(problem))

    def _nothing_fits(self) -> str | None:
        if self.model.currentData() is None or not self.kinds or self.dataset.count():
            return None
        kinds = self.scores.get(self.model.currentData(), ())
        return (f"{self.model.currentText()} scores {_kinds_text(kinds)}, and no such dataset "
                "is imported: pick another model, or import one.")

    def problem(self) -> str | None:
        if self.model.currentData() is None:
            return "Register a model first (Model ▸ Register model…)."
        if not self.kinds:
            return "Import a dataset first."
        return self._nothing_fits()

    def values(self) -> dict[str, Any]:
        threshold = self.threshold.value() if self.use_threshold.isChecked() else None
        return {"model": self.model.currentData(), "dataset": self.dataset.currentData(),
                "threshold": threshold}


class ProbeDialog(AuditDialog):
    """Model, dataset and which probes to run (all that apply by default), each
    with its description in full."""

    def __init__(self, models: Sequence[ModelChoice], datasets: Sequence[tuple[str, str]],
                 probes: Sequence[tuple[str, str, tuple[str, ...]]], model: int | None = None,
                 dataset: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(models, datasets, model, dataset, parent, title="Run probes")
        self.probes: list[tuple[str, tuple[str, ...], QCheckBox, QLabel]] = []
        column = QVBoxLayout()
        column.setSpacing(2)
        for name, description, kinds in probes:
            box = QCheckBox(name)
            box.setChecked(True)
            text = QLabel(description)
            text.setTextFormat(Qt.TextFormat.PlainText)
            text.setWordWrap(True)
            text.setIndent(24)  # under the name, past the check box
            text.setForegroundRole(QPalette.ColorRole.PlaceholderText)
            column.addWidget(box)
            column.addWidget(text)
            self.probes.append((name, tuple(kinds), box, text))
        self.form.addRow("Probes", column)
        self.setMinimumWidth(560)
        self.dataset.currentIndexChanged.connect(self._applicable)
        self._applicable()

    def _applicable(self) -> None:
        kind = self.kinds.get(self.dataset.currentData())
        for _, kinds, box, text in self.probes:
            box.setVisible(kind in kinds)
            text.setVisible(kind in kinds)

    def chosen(self) -> list[str]:
        kind = self.kinds.get(self.dataset.currentData())
        return [name for name, kinds, box, _ in self.probes if kind in kinds and box.isChecked()]

    def problem(self) -> str | None:
        if not self.probes:
            return "No probes are registered in this workstation yet."
        return super().problem() or (None if self.chosen() else
                                     "Tick at least one probe that applies to this dataset.")

    def values(self) -> dict[str, Any]:
        values = super().values()
        values.pop("threshold")
        return {**values, "probes": self.chosen()}


class RetrainDialog(Form):
    """Parent version, dataset (as reviewed; those the parent can learn from),
    model name, seed."""

    def __init__(self, datasets: Sequence[tuple[str, str]], models: Sequence[ModelChoice],
                 dataset: str | None = None, parent_version: int | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__("Retrain" if parent_version else "Train a model", "Train", parent)
        self.scores = {m[1]: m[2] for m in models}
        self.parent_version = combo([("(none: a new model)", None)] +
                                    [(m[0], m[1]) for m in models], parent_version)
        self.dataset = QComboBox()
        self.dataset_for_model = DatasetForModel(self.dataset, datasets, dataset)
        self.name = QLineEdit()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.form.addRow("Parent version", self.parent_version)
        self.form.addRow("Dataset (as reviewed)", self.dataset)
        self.form.addRow("Model name", self.name)
        self.form.addRow("Seed", self.seed)
        self.parent_version.currentIndexChanged.connect(self._parent_changed)
        self.dataset.currentIndexChanged.connect(self._suggest_name)
        self._parent_changed()

    def _parent_changed(self) -> None:
        chosen = self.parent_version.currentData()
        self.dataset_for_model.fill(None if chosen is None else self.scores.get(chosen, ()))
        self._suggest_name()

    def _suggest_name(self) -> None:
        if self.name.isModified():
            return
        if self.parent_version.currentData() is not None:
            self.name.setText(self.parent_version.currentText().split("@")[0])
        elif self.dataset.currentData():
            self.name.setText(f"{self.dataset.currentData()}-rm")

    def problem(self) -> str | None:
        if not self.dataset.currentData():
            if self.parent_version.currentData() is None or not self.dataset_for_model.datasets:
                return "Import a dataset first."
            kinds = self.scores.get(self.parent_version.currentData(), ())
            return (f"{self.parent_version.currentText()} learns from {_kinds_text(kinds)}, "
                    "and no such dataset is imported.")
        return None if self.name.text().strip() else "Name the model to train."

    def values(self) -> dict[str, Any]:
        return {"dataset": self.dataset.currentData(), "name": self.name.text().strip(),
                "parent": self.parent_version.currentData(), "seed": self.seed.value()}


class PatchDialog(Form):
    """What a patch will do, and its options: the protected-score budget, the
    kernels' strength, a note. Accepting it is the confirmation."""

    def __init__(self, model: str, cases: int, what: str, parent: QWidget | None = None) -> None:
        super().__init__(f"Patch {model}", "Create patched version", parent)
        name = model.split("@")[0]
        self.summary = text = QLabel(
            f"Suppress {count(cases, what)} of {model} with Gaussian kernels, and register the "
            f"result as a new version of {name} whose parent is {model}. {model} itself does "
            "not change; the patch can be removed later, and compared before any release.")
        text.setWordWrap(True)
        text.setTextFormat(Qt.TextFormat.PlainText)
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0.001, 1.0)
        self.budget.setDecimals(3)
        self.budget.setSingleStep(0.01)
        self.budget.setValue(0.10)
        self.budget.setToolTip("The most any protected example's score may drop (in score "
                               "units); kernels that would cost more are narrowed or refused.")
        self.own_strength = QCheckBox("Own strength (default: the full suppression)")
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.01, 100.0)
        self.strength.setDecimals(2)
        self.strength.setValue(1.0)
        self.strength.setEnabled(False)
        self.own_strength.toggled.connect(self.strength.setEnabled)
        self.notes = QLineEdit()
        self.notes.setPlaceholderText("why this patch (kept in the version's manifest)")
        self.form.addRow(text)
        self.form.addRow("Protected budget", self.budget)
        self.form.addRow("", self.own_strength)
        self.form.addRow("Strength", self.strength)
        self.form.addRow("Note", self.notes)

    def values(self) -> dict[str, Any]:
        return {"budget": round(self.budget.value(), 3),
                "strength": self.strength.value() if self.own_strength.isChecked() else None,
                "notes": self.notes.text().strip()}
