"""The small forms that start flywheel jobs: import, export, register, audit,
probes, retrain. They only collect choices and hand them back with
``values()``; the window runs the core call as a job.
"""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QListWidget,
                               QListWidgetItem, QSpinBox, QWidget)

from workstation.ui.dialogs import Form, PathField, combo

KINDS = (("pairs", "Preference pairs"), ("labels", "Labeled responses"),
         ("demos", "Demonstrations (trajectories)"))


class ImportDialog(Form):
    """File (or folder), kind, name, format."""

    def __init__(self, formats: dict[str, list[str]], parent: QWidget | None = None) -> None:
        super().__init__("Import dataset", "Import", parent)
        self.formats = formats
        self.path = PathField("open", "Dataset file",
                              "Datasets (*.jsonl *.json *.gz *.csv *.parquet *.npz);;All files (*)")
        self.kind = combo([(text, kind) for kind, text in KINDS])
        self.name = QLineEdit()
        self.format = QComboBox()
        self.kind.currentIndexChanged.connect(self._fill_formats)
        self.path.edit.textChanged.connect(self._suggest_name)
        self.form.addRow("File", self.path)
        self.form.addRow("Holds", self.kind)
        self.form.addRow("Format", self.format)
        self.form.addRow("Dataset name", self.name)
        self._fill_formats()

    def _fill_formats(self) -> None:
        self.format.clear()
        self.format.addItem("Detect from the file", None)
        for name in self.formats.get(self.kind.currentData(), []):
            self.format.addItem(name, name)

    def _suggest_name(self, path: str) -> None:
        from pathlib import Path

        if not self.name.isModified():
            stem = Path(path).name.split(".")[0]
            self.name.setText(stem)

    def problem(self) -> str | None:
        if not self.path.text():
            return "Choose the file to import."
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
    """An ONNX file, its name, input kind, optional parent and tokenizer."""

    def __init__(self, input_kinds: Sequence[str], models: Sequence[str],
                 parent: QWidget | None = None) -> None:
        super().__init__("Register model", "Register", parent)
        self.path = PathField("open", "ONNX model", "ONNX models (*.onnx);;All files (*)")
        self.name = QLineEdit()
        self.input_kind = combo([(k, k) for k in input_kinds])
        self.parent_model = combo([("(none)", None)] + [(m, m) for m in models])
        self.tokenizer = PathField("open", "tokenizer.json", "Tokenizers (*.json)")
        self.notes = QLineEdit()
        self.form.addRow("ONNX file", self.path)
        self.form.addRow("Model name", self.name)
        self.form.addRow("Input", self.input_kind)
        self.form.addRow("Parent version", self.parent_model)
        self.form.addRow("Tokenizer (text-tokens)", self.tokenizer)
        self.form.addRow("Notes", self.notes)

    def problem(self) -> str | None:
        if not self.path.text():
            return "Choose the ONNX file."
        return None if self.name.text().strip() else "Give the model a name."

    def values(self) -> dict[str, Any]:
        return {"path": self.path.text(), "name": self.name.text().strip(),
                "input_kind": self.input_kind.currentData(),
                "parent": self.parent_model.currentData(),
                "tokenizer": self.tokenizer.text() or None, "notes": self.notes.text()}


class AuditDialog(Form):
    """Model version, dataset and an optional threshold."""

    def __init__(self, models: Sequence[tuple[str, int]], datasets: Sequence[tuple[str, str]],
                 model: int | None = None, dataset: str | None = None,
                 parent: QWidget | None = None, title: str = "Audit") -> None:
        super().__init__(title, "Start", parent)
        self.model = combo(models, model)
        self.dataset = combo([(f"{name} ({kind})", name) for name, kind in datasets], dataset)
        self.form.addRow("Model version", self.model)
        self.form.addRow("Dataset", self.dataset)
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

    def problem(self) -> str | None:
        if self.model.currentData() is None:
            return "Register a model first (Model ▸ Register model…)."
        return None if self.dataset.currentData() else "Import a dataset first."

    def values(self) -> dict[str, Any]:
        threshold = self.threshold.value() if self.use_threshold.isChecked() else None
        return {"model": self.model.currentData(), "dataset": self.dataset.currentData(),
                "threshold": threshold}


class ProbeDialog(AuditDialog):
    """Model, dataset and which probes to run (all that apply by default)."""

    def __init__(self, models: Sequence[tuple[str, int]], datasets: Sequence[tuple[str, str]],
                 probes: Sequence[tuple[str, str, tuple[str, ...]]], model: int | None = None,
                 dataset: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(models, datasets, model, dataset, parent, title="Run probes")
        self.kinds = dict(datasets)
        self.probes = QListWidget()
        for name, description, kinds in probes:
            item = QListWidgetItem(f"{name}: {description}" if description else name)
            item.setData(Qt.ItemDataRole.UserRole, (name, kinds))
            item.setCheckState(Qt.CheckState.Checked)
            self.probes.addItem(item)
        self.form.addRow("Probes", self.probes)
        self.dataset.currentIndexChanged.connect(self._applicable)
        self._applicable()

    def _applicable(self) -> None:
        kind = self.kinds.get(self.dataset.currentData())
        for i in range(self.probes.count()):
            item = self.probes.item(i)
            _, kinds = item.data(Qt.ItemDataRole.UserRole)
            item.setHidden(kind not in kinds)

    def chosen(self) -> list[str]:
        return [self.probes.item(i).data(Qt.ItemDataRole.UserRole)[0]
                for i in range(self.probes.count())
                if not self.probes.item(i).isHidden()
                and self.probes.item(i).checkState() == Qt.CheckState.Checked]

    def problem(self) -> str | None:
        if self.probes.count() == 0:
            return "No probes are registered in this workstation yet."
        return super().problem() or (None if self.chosen() else
                                     "Tick at least one probe that applies to this dataset.")

    def values(self) -> dict[str, Any]:
        values = super().values()
        values.pop("threshold")
        return {**values, "probes": self.chosen()}


class RetrainDialog(Form):
    """Dataset (as reviewed), model name, parent version, seed."""

    def __init__(self, datasets: Sequence[tuple[str, str]], models: Sequence[tuple[str, int]],
                 dataset: str | None = None, parent_version: int | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__("Retrain", "Train", parent)
        self.dataset = combo([(f"{name} ({kind})", name) for name, kind in datasets], dataset)
        self.parent_version = combo([("(none: a new model)", None)] + list(models),
                                     parent_version)
        self.name = QLineEdit()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.parent_version.currentIndexChanged.connect(self._suggest_name)
        self.form.addRow("Dataset (as reviewed)", self.dataset)
        self.form.addRow("Parent version", self.parent_version)
        self.form.addRow("Model name", self.name)
        self.form.addRow("Seed", self.seed)
        self._suggest_name()

    def _suggest_name(self) -> None:
        text = self.parent_version.currentText()
        if self.parent_version.currentData() is not None and not self.name.isModified():
            self.name.setText(text.split("@")[0])

    def problem(self) -> str | None:
        if not self.dataset.currentData():
            return "Import a dataset first."
        return None if self.name.text().strip() else "Name the model to train."

    def values(self) -> dict[str, Any]:
        return {"dataset": self.dataset.currentData(), "name": self.name.text().strip(),
                "parent": self.parent_version.currentData(), "seed": self.seed.value()}
