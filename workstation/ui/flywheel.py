"""The window's flywheel actions (import, export, register, train a new
model, audit, probes, retrain, patch): a dialog collects the choices, then
the core call runs as a background job (``ctx.run_job``); on success the
browser shows what changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QWidget

from workstation.ui import dialogs, forms
from workstation.ui.browser import BrowserPanel
from workstation.ui.context import AppContext
from workstation.ui.jobs import Job
from workstation.ui.wording import count, plural


class Flywheel:
    """The window's flywheel actions: a dialog for the choices, then the core
    call as a background job; on success the browser shows what changed."""

    def __init__(self, window: QWidget, ctx: AppContext, browser: BrowserPanel) -> None:
        self.window = window  # the parent of its dialogs
        self.ctx = ctx
        self.browser = browser

    # -- shared ------------------------------------------------------------------
    def _ready(self) -> bool:
        if self.ctx.ws is None:
            dialogs.show_info(self.window, "Open or create a workspace first (File menu).")
            return False
        return True

    def _datasets(self) -> list[tuple[str, str]]:
        return forms.dataset_choices(self.ctx.ws)

    def _models(self) -> list[forms.ModelChoice]:
        return forms.model_choices(self.ctx.ws)

    def _current(self) -> tuple[int | None, str | None]:
        """The model version and dataset chosen last: a version picked in the
        Models list or the browser's run, and the browser's dataset."""
        sel = self.browser.selection
        run = sel.run
        model = self.ctx.model_version_id or (run.model_version_id if run
                                              else sel.model_version_id)
        return model, sel.dataset.name if sel.dataset else None

    def _announce(self, changes: set[str], message: str, select_run: int | None = None,
                  dataset: str | None = None) -> None:
        self.browser.refresh(select_run, dataset)
        with self.browser.quiet():
            self.ctx.data_changed.emit(changes)
        self.ctx.status.emit(message)

    # -- import and export -------------------------------------------------------
    def import_dataset(self, values: dict[str, Any] | None = None,
                       error: str | None = None) -> None:
        """The import form (filled with ``values`` and showing ``error`` when
        an import of them failed), then the import as a job."""
        if not self._ready():
            return
        from workstation.datasets import IMPORTERS

        formats: dict[str, list[str]] = {}
        for importer in IMPORTERS.values():
            formats.setdefault(importer.kind, []).append(importer.name)
        dialog = forms.ImportDialog(formats, self.window, values, error)
        if dialog.exec():
            self.start_import(**dialog.values())

    def start_import(self, path: str, kind: str, name: str, format: str | None = None) -> Job:
        """Import as a job; when it fails, the form opens again as it was,
        with the error in it."""
        def work(ws: Any, progress: Any) -> Any:
            from workstation.datasets import import_dataset

            return import_dataset(ws, kind, path, name, format=format, progress=progress)

        def done(report: Any) -> None:
            self._announce({"datasets"}, f"imported {count(report.imported, 'example')} into "
                           f"{report.dataset!r} (skipped {report.skipped:,})",
                           dataset=report.dataset)
        values = {"path": path, "kind": kind, "name": name, "format": format}
        return self.ctx.run_job(f"Importing {Path(path).name}", work, done,
                                on_failed=lambda message: self.import_dataset(values, message))

    def export_dataset(self) -> None:
        if not self._ready():
            return
        from workstation.datasets import EXPORT_FORMATS

        dialog = forms.ExportDialog(self._datasets(), list(EXPORT_FORMATS),
                                      self._current()[1], self.window)
        if dialog.exec():
            self.start_export(**dialog.values())

    def start_export(self, dataset: str, fmt: str, out: str, reviewed_only: bool = False,
                     include_excluded: bool = False) -> Job:
        def work(ws: Any, progress: Any) -> Any:
            from workstation.datasets import export_dataset

            return export_dataset(ws, dataset, fmt, out, reviewed_only=reviewed_only,
                                  include_excluded=include_excluded, progress=progress)
        return self.ctx.run_job(f"Exporting {dataset}", work, lambda report: self.ctx.status.emit(
            f"exported {count(report.rows, 'example')} to {report.path}"))

    # -- models ------------------------------------------------------------------
    def register_model(self) -> None:
        if not self._ready():
            return
        from workstation import catalog
        from workstation.models import INPUT_KINDS

        names = sorted({v.ref for v in catalog.model_versions(self.ctx.ws)})
        dialog = forms.RegisterModelDialog(list(INPUT_KINDS), names, self.window)
        if dialog.exec():
            self.start_register(**dialog.values())

    def start_register(self, path: str, name: str, input_kind: str, parent: str | None = None,
                       tokenizer: str | None = None, notes: str = "",
                       text_format: str | None = None, max_length: int | None = None,
                       tokenizer_config: str | None = None) -> Job:
        encoder, analyst = self.ctx.encoder, self.ctx.analyst()

        def work(ws: Any, progress: Any) -> Any:
            from workstation.models import add_model

            return add_model(ws, path, name, input_kind, parent=parent, notes=notes,
                             analyst=analyst, tokenizer=tokenizer, encoder=encoder,
                             text_format=text_format, max_length=max_length,
                             tokenizer_config=tokenizer_config)
        return self.ctx.run_job(f"Registering {name}", work, lambda v: self._announce(
            {"models"}, f"registered {v.ref} ({v.input_kind})"))

    def audit(self) -> None:
        if not self._ready():
            return
        model, dataset = self._current()
        dialog = forms.AuditDialog(self._models(), self._datasets(), model, dataset,
                                     self.window)
        if dialog.exec():
            self.start_audit(**dialog.values())

    def start_audit(self, model: int | str, dataset: str, threshold: float | None = None) -> Job:
        encoder, analyst = self.ctx.encoder, self.ctx.analyst()

        def work(ws: Any, progress: Any) -> Any:
            from workstation.audits import run_audit

            return run_audit(ws, model, dataset, threshold=threshold, analyst=analyst,
                             encoder=encoder, progress=progress)
        return self.ctx.run_job(f"Auditing {dataset}", work, lambda run: self._announce(
            {"runs"}, f"audit run {run.id}: {run.n_failures:,} "
            f"{plural('failure', run.n_failures)} of {run.n_examples:,}", select_run=run.id))

    def run_probes(self) -> None:
        if not self._ready():
            return
        from workstation.probes import PROBES  # importing the package registers the built-ins

        probes = [(p.name, getattr(p, "description", ""), tuple(p.kinds))
                  for p in PROBES.values()]
        model, dataset = self._current()
        dialog = forms.ProbeDialog(self._models(), self._datasets(), probes, model, dataset,
                                     self.window)
        if dialog.exec():
            self.start_probes(**dialog.values())

    def start_probes(self, model: int | str, dataset: str, probes: list[str] | None = None) -> Job:
        encoder, analyst = self.ctx.encoder, self.ctx.analyst()

        def work(ws: Any, progress: Any) -> Any:
            from workstation.probes import run_probes

            return run_probes(ws, model, dataset, probes=probes, progress=progress,
                              analyst=analyst, encoder=encoder)
        return self.ctx.run_job(f"Probing {dataset}", work, lambda run: self._announce(
            {"runs", "findings"},
            f"probe run {run.id}: {count(sum(run.counts.values()), 'finding')}",
            select_run=run.id))

    def retrain(self) -> None:
        """The next version of the chosen model, on what it learns from."""
        if not self._ready():
            return
        model, dataset = self._current()
        self._train(dataset, model)

    def train_new(self) -> None:
        """A first model (or a new one), on the dataset the browser shows."""
        if not self._ready():
            return
        self._train(self._current()[1], None)

    def _train(self, dataset: str | None, parent: int | None) -> None:
        if not self._datasets():
            dialogs.show_info(self.window, "Import a dataset first (File ▸ Import dataset…): "
                                           "a model learns from one.")
            return
        dialog = forms.RetrainDialog(self._datasets(), self._models(), dataset, parent,
                                     self.window)
        if dialog.exec():
            self.start_retrain(**dialog.values())

    def start_retrain(self, dataset: str, name: str, parent: int | str | None = None,
                      seed: int = 0) -> Job:
        encoder, analyst = self.ctx.encoder, self.ctx.analyst()

        def work(ws: Any, progress: Any) -> Any:
            from workstation.ui.version_jobs import train_version

            return train_version(ws, dataset, name, parent, seed, progress, encoder, analyst)
        return self.ctx.run_job(f"Training {name} on {dataset}", work,
                                lambda result: self._announce(
                                    {"models"}, f"trained {_version_ref(result)}"))

    def patch_selected(self) -> None:
        if not self._ready():
            return
        run = self.browser.selection.run
        rows = [self.browser.model.row_values(r) for r in self.browser.selected_rows()]
        rows = [r for r in rows if r]
        if run is None or not rows:
            dialogs.show_info(self.window, "Select failure cases of an audit or probe run in "
                                           "the browser, then patch them.")
            return
        what = "finding" if run.kind == "probe" else "selected case"
        dialog = forms.PatchDialog(run.model, len(rows), what, self.window)
        if dialog.exec():
            self.start_patch(run, rows, **dialog.values())

    def start_patch(self, run: Any, rows: list[dict[str, Any]], budget: float = 0.10,
                    strength: float | None = None, notes: str = "") -> Job:
        encoder, analyst = self.ctx.encoder, self.ctx.analyst()
        if run.kind == "probe":
            target = {"finding_run": run.id, "finding_ids": [r["finding_id"] for r in rows]}
        else:
            target = {"example_ids": [r["example_id"] for r in rows]}

        def work(ws: Any, progress: Any) -> Any:
            from workstation.patching import create_patch

            return create_patch(ws, run.model_version_id, analyst=analyst, progress=progress,
                                encoder=encoder, budget=budget, strength=strength, notes=notes,
                                **target)
        return self.ctx.run_job(f"Patching {run.model}", work, lambda result: self._announce(
            {"models"}, patch_text(run.model, result.version.ref, result.metrics)))


def patch_text(base: str, new: str, m: dict[str, Any]) -> str:
    """What a patch did, in one line with one precision for scores."""
    refused = f"; {count(m['kernels_refused'], 'case')} refused" if m["kernels_refused"] else ""
    return (f"patched {base} as {new}: {m['flaws_suppressed']:,} of "
            f"{count(m['flaws'], 'failure case')} suppressed by "
            f"{count(m['kernels_kept'], 'kernel')}{refused}; protected examples lose at most "
            f"{m['protected_loss_max']:.3f} (budget {m['budget']:.3f})")


def _version_ref(result: Any) -> str:
    version = getattr(result, "version", None)
    return getattr(version, "ref", None) or str(result)
