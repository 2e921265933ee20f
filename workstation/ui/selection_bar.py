"""The browser's pickers: which dataset, model version and run the table shows."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from workstation.ui.context import AppContext
from workstation.ui.widgets import refill, small_combo
from workstation.ui.wording import count, plural


class SelectionBar(QWidget):
    """Dataset, model version and run pickers."""

    changed = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.dataset_box = small_combo(160)
        self.model_box = small_combo(120)
        self.run_box = small_combo(320)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for text, box in (("Dataset", self.dataset_box), ("Model", self.model_box),
                          ("Run", self.run_box)):
            row.addWidget(QLabel(text))
            row.addWidget(box)
        row.addStretch(1)
        self.datasets: dict[str, Any] = {}
        self.runs: dict[int, Any] = {}
        self._filling = False
        self.dataset_box.activated.connect(lambda _i: self._dataset_chosen())
        self.model_box.activated.connect(lambda _i: self._model_chosen())
        self.run_box.activated.connect(lambda _i: self._emit())

    # -- reading the choice ----------------------------------------------------
    @property
    def dataset(self) -> Any:
        return self.datasets.get(self.dataset_box.currentData())

    @property
    def run(self) -> Any:
        return self.runs.get(self.run_box.currentData())

    @property
    def model_version_id(self) -> int | None:
        return self.model_box.currentData()

    # -- filling ---------------------------------------------------------------
    def refresh(self, select_run: int | None = None, dataset: str | None = None) -> None:
        """Re-read datasets, models and runs, keeping the choices that remain
        (or showing run ``select_run``, or dataset ``dataset``)."""
        from workstation import catalog

        ws = self.ctx.ws
        self._filling = True
        try:
            infos = catalog.datasets(ws) if ws is not None else []
            self.datasets = {d.name: d for d in infos}
            refill(self.dataset_box, [(f"{d.name}  ({d.kind}, {d.n_examples:,})", d.name)
                                       for d in infos])
            if select_run is not None:
                dataset = catalog.run(ws, select_run).dataset
            if dataset in self.datasets:
                self.dataset_box.setCurrentIndex(self.dataset_box.findData(dataset))
            versions = catalog.model_versions(ws) if ws is not None else []
            refill(self.model_box, [("Any model", None)] + [(v.ref, v.id) for v in versions])
            if select_run is not None:  # the run's own model may be filtered out
                self.model_box.setCurrentIndex(0)
            self._fill_runs(select_run)
        finally:
            self._filling = False
        self._emit()

    def _fill_runs(self, select_run: int | None = None) -> None:
        from workstation import catalog

        dataset = self.dataset
        runs = catalog.runs(self.ctx.ws, dataset.name, self.model_version_id) if dataset else []
        self.runs = {r.id: r for r in runs}
        keep = select_run if select_run in self.runs else self.run_box.currentData()
        items = [(run_text(r), r.id) for r in runs]
        self.run_box.clear()
        self.run_box.addItem("Browse all examples (no run)", None)
        for text, run_id in items:
            self.run_box.addItem(text, run_id)
        if keep in self.runs:
            self.run_box.setCurrentIndex(self.run_box.findData(keep))
        else:  # the newest audit, else browsing
            audits = [r.id for r in runs if r.kind == "audit"]
            self.run_box.setCurrentIndex(self.run_box.findData(audits[0]) if audits else 0)

    def _dataset_chosen(self) -> None:
        self._fill_runs()
        self._emit()

    def _model_chosen(self) -> None:
        self._fill_runs()
        self._emit()

    def _emit(self) -> None:
        if not self._filling:
            self.changed.emit()

    def select_dataset(self, name: str) -> None:
        """Show dataset ``name`` (browsing it, or its newest audit)."""
        self.dataset_box.setCurrentIndex(max(self.dataset_box.findData(name), 0))
        self._dataset_chosen()

    def select_run(self, run_id: int) -> None:
        """Show run ``run_id`` (switching dataset if needed)."""
        self.refresh(select_run=run_id)


def run_text(run: Any) -> str:
    """How a run reads in the picker."""
    when = run.created_at[:16].replace("T", " ")
    if run.kind == "probe":
        return f"Run {run.id} · probes · {run.model} · {when} · {count(run.n_failures, 'finding')}"
    return (f"Run {run.id} · audit · {run.model} · {when}{_where_text(run)} · "
            f"{run.n_failures:,} {plural('failure', run.n_failures)} of {run.n_examples:,}")


def _where_text(run: Any) -> str:
    """Where a run brought home from a cluster was scored, and what of it came home."""
    params = getattr(run, "params", None) or {}  # an AuditRun; the catalog's RunInfo has both
    ran_on = getattr(run, "ran_on", None) or params.get("ran_on")
    if not ran_on:
        return ""
    selection = (getattr(run, "selection", None)
                 or (params.get("scale") or {}).get("selection") or {})
    part = (f", {run.n_examples:,} of {selection['rows']:,} rows brought home"
            if selection.get("kind") == "failures-only" else "")
    trusted = getattr(run, "bundle_trusted", None)
    if trusted is None:
        trusted = (params.get("scale") or {}).get("bundle_trusted")
    if trusted is False:  # imported with --allow-untrusted
        part += ", UNTRUSTED bundle key"
    return f" · scored on {str(ran_on.get('engine', 'a cluster')).title()}{part}"
