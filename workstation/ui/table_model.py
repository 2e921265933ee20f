"""A lazy table over a paged core query (``failure_page``, ``findings_page``).

Rows come from DuckDB a page at a time, as Qt asks for them: ``data()`` for a
row whose page is not cached asks a background reader (one thread with a
workspace connection of its own) for that page and shows a placeholder until
it arrives. A small LRU keeps the last ``MAX_PAGES`` pages; ``rowCount`` is
the total the query reported. A header click re-runs the query with a new SQL
``ORDER BY``; nothing ever loads a whole dataset.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from PySide6.QtCore import (QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt,
                            Signal)
from PySide6.QtGui import QColor, QFont

from workstation.ui.splits import row_split
from workstation.workspace import Workspace

# fetch(ws, offset, limit, order_by, descending, count) -> (rows, total or None)
PageFetch = Callable[[Workspace, int, int, str | None, bool, bool],
                     tuple[list[dict[str, Any]], int | None]]

PLACEHOLDER = "…"
# Semantic colours, mid-luminance so that they read on light and dark palettes.
PASS_COLOUR = QColor("#2e9d4f")
FAIL_COLOUR = QColor("#d9453b")
RowRole = Qt.ItemDataRole.UserRole + 1
RANK_TIP = "Failures are ranked by how confidently the model disagrees: 1 is the most."
UNRANKED_TIP = "This row passes: only failures are ranked."
STALE_VERDICT = ("As audited, before your edit of the label: audit again to judge the example "
                 "as it is now.")


@dataclass(frozen=True)
class Column:
    """One table column: the row key it shows, its title, and the core's sort
    key (None: the query cannot sort by it)."""

    key: str
    title: str
    order_by: str | None = None
    kind: str = "text"   # text, number, int, rank, verdict, list, bool, label, split
    width: int = 90


@dataclass
class PageRequest:
    generation: int
    page: int
    offset: int
    limit: int
    fetch: PageFetch
    order_by: str | None
    descending: bool
    count: bool


@dataclass
class PageResult:
    request: PageRequest
    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int | None = None
    error: str | None = None


class PageReader(QObject):
    """Loads pages on one background thread; the newest request goes first
    and requests of an older query are dropped."""

    loaded = Signal(object)  # PageResult
    MAX_QUEUE = 2

    def __init__(self, ws: Workspace, parent: QObject | None = None) -> None:
        super().__init__(parent)
        # The reader's own connection, made here on the GUI thread: the
        # parent connection is never touched from the reader thread.
        self._ws = ws.for_thread()
        self._queue: list[PageRequest] = []
        self._generation = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="page-reader", daemon=True)
        self._thread.start()

    def request(self, req: PageRequest) -> None:
        with self._cond:
            self._generation = max(self._generation, req.generation)
            self._queue.append(req)
            del self._queue[:-self.MAX_QUEUE]
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify()
        self._thread.join(timeout=10)

    def _next(self) -> PageRequest | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                self._queue = [r for r in self._queue if r.generation == self._generation]
                if self._queue:
                    return self._queue.pop()
                self._cond.wait()

    def _loop(self) -> None:
        ws = self._ws
        ws.execute("SET enable_progress_bar = false")  # no terminal bars from a window
        try:
            while (req := self._next()) is not None:
                self._emit(_run_request(ws, req))
        finally:
            ws.close()

    def _emit(self, result: PageResult) -> None:
        if self._stopping:
            return
        try:
            self.loaded.emit(result)
        except RuntimeError:  # the model went away meanwhile
            pass


def _run_request(ws: Workspace, req: PageRequest) -> PageResult:
    try:
        rows, total = req.fetch(ws, req.offset, req.limit, req.order_by, req.descending,
                                req.count)
    except Exception as exc:  # shown to the analyst as one line
        return PageResult(req, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
    return PageResult(req, rows, total)


class LazyTableModel(QAbstractTableModel):
    """A table of rows fetched page by page (see the module docstring)."""

    loaded = Signal(int)      # the query's total, once its first page is in
    failed = Signal(str)      # a one-line message
    PAGE_SIZE = 200
    MAX_PAGES = 16

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.columns: list[Column] = []
        self._ws: Workspace | None = None
        self._reader: PageReader | None = None
        self._fetch: PageFetch | None = None
        self.order_by: str | None = None
        self.descending = False
        self._total = 0
        self._generation = 0
        self._pages: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self._pending: set[int] = set()
        self.loading = False

    # -- the query -----------------------------------------------------------
    def set_query(self, ws: Workspace | None, fetch: PageFetch | None, columns: list[Column],
                  order_by: str | None = None, descending: bool = False) -> None:
        """Show a new query; the old rows stay until its first page is in."""
        if ws is not self._ws:
            self.stop()
            self._ws = ws
            self._reader = PageReader(ws, self) if ws is not None else None
            if self._reader is not None:
                self._reader.loaded.connect(self._on_loaded)
        if [c.key for c in columns] != [c.key for c in self.columns]:
            self.beginResetModel()
            self.columns = list(columns)
            self._total = 0
            self._pages.clear()
            self.endResetModel()
        self._fetch, self.order_by, self.descending = fetch, order_by, descending
        self.reload()

    def reload(self) -> None:
        """Re-run the query (new filter, new order, or changed data)."""
        self._generation += 1
        self._pending.clear()
        if self._fetch is None or self._reader is None:
            self._reset(0, {})
            self.loading = False
            self.loaded.emit(0)
            return
        self.loading = True
        self._request(0, count=True)

    def stop(self) -> None:
        """Stop the background reader (before the workspace closes)."""
        if self._reader is not None:
            self._reader.stop()
            self._reader.deleteLater()
            self._reader = None
        self._ws = None

    def _request(self, page: int, count: bool = False) -> None:
        self._pending.add(page)
        self._reader.request(PageRequest(
            self._generation, page, page * self.PAGE_SIZE, self.PAGE_SIZE, self._fetch,
            self.order_by, self.descending, count))

    def _on_loaded(self, result: PageResult) -> None:
        req = result.request
        if req.generation != self._generation:
            return
        self._pending.discard(req.page)
        if result.error is not None:
            self.loading = False
            self.failed.emit(result.error)
            return
        if req.count:
            self._reset(int(result.total or 0), {req.page: result.rows})
            self.loading = False
            self.loaded.emit(self._total)
            return
        self._store(req.page, result.rows)
        self._page_changed(req.page)

    def _reset(self, total: int, pages: dict[int, list[dict[str, Any]]]) -> None:
        self.beginResetModel()
        self._total = total
        self._pages = OrderedDict(pages)
        self.endResetModel()

    def _store(self, page: int, rows: list[dict[str, Any]]) -> None:
        self._pages[page] = rows
        self._pages.move_to_end(page)
        while len(self._pages) > self.MAX_PAGES:
            self._pages.popitem(last=False)

    def _page_changed(self, page: int) -> None:
        first = page * self.PAGE_SIZE
        last = min(first + self.PAGE_SIZE, self._total) - 1
        if last >= first and self.columns:
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(self.columns) - 1))

    # -- rows ----------------------------------------------------------------
    @property
    def total(self) -> int:
        return self._total

    def cached_row(self, row: int) -> dict[str, Any] | None:
        """The row's values if its page is loaded (asks for the page if not)."""
        if not 0 <= row < self._total:
            return None
        page, at = divmod(row, self.PAGE_SIZE)
        rows = self._pages.get(page)
        if rows is None:
            if page not in self._pending and self._reader is not None:
                self._request(page)
            return None
        self._pages.move_to_end(page)
        return rows[at] if at < len(rows) else None

    def row_values(self, row: int) -> dict[str, Any] | None:
        """The row's values, loading its page now (on this thread) if needed."""
        if not 0 <= row < self._total:
            return None
        page, at = divmod(row, self.PAGE_SIZE)
        if page not in self._pages:
            self._load_now(page * self.PAGE_SIZE, self.PAGE_SIZE)
        rows = self._pages.get(page, [])
        return rows[at] if at < len(rows) else None

    def _load_now(self, offset: int, limit: int) -> None:
        if self._fetch is None or self._ws is None:
            return
        rows, _ = self._fetch(self._ws, offset, limit, self.order_by, self.descending, False)
        for start in range(0, len(rows), self.PAGE_SIZE):
            page = (offset + start) // self.PAGE_SIZE
            self._store(page, rows[start:start + self.PAGE_SIZE])
            self._pending.discard(page)
            self._page_changed(page)

    def find_row(self, start: int, wanted: Callable[[dict[str, Any]], bool],
                 max_rows: int = 20_000) -> int | None:
        """The first row at or after ``start`` for which ``wanted`` holds,
        scanning at most ``max_rows`` rows (in large pages); None if none."""
        chunk = self.PAGE_SIZE * 10
        row = max(0, start)
        end = min(self._total, row + max_rows)
        while row < end:
            page = row // self.PAGE_SIZE
            if page not in self._pages:
                self._load_now(page * self.PAGE_SIZE, chunk)
            values = self._pages.get(page)
            if not values:
                return None
            for at in range(row - page * self.PAGE_SIZE, len(values)):
                if wanted(values[at]):
                    return page * self.PAGE_SIZE + at
            row = (page + 1) * self.PAGE_SIZE
        return None

    def replace_row(self, row: int, values: dict[str, Any]) -> None:
        """Show new values for one row (after an edit), nothing else."""
        page, at = divmod(row, self.PAGE_SIZE)
        rows = self._pages.get(page)
        if rows is not None and at < len(rows):
            rows[at] = values
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.columns) - 1))

    def rows_of_example(self, example_id: int) -> list[int]:
        """Cached rows that show ``example_id``."""
        return [page * self.PAGE_SIZE + at for page, rows in self._pages.items()
                for at, values in enumerate(rows) if values.get("example_id") == example_id]

    def count_now(self) -> int | None:
        """The query's current total (e.g. after an edit), without reloading."""
        if self._fetch is None or self._ws is None:
            return None
        return self._fetch(self._ws, 0, 0, self.order_by, self.descending, True)[1]

    # -- Qt ------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._total

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Vertical:
            return str(section + 1) if role == Qt.ItemDataRole.DisplayRole else None
        if not 0 <= section < len(self.columns):
            return None
        column = self.columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return column.title if column.order_by else f"{column.title} (cannot sort by this)"
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        values = self.cached_row(index.row())
        column = self.columns[index.column()]
        if values is None:
            return PLACEHOLDER if role == Qt.ItemDataRole.DisplayRole else None
        stale = column.kind == "verdict" and values.get("edited")
        if role == Qt.ItemDataRole.DisplayRole:
            text = display_text(column, values.get(column.key))
            return f"{text} before edit" if stale else text
        if role == Qt.ItemDataRole.ToolTipRole and stale:
            return STALE_VERDICT
        if role == Qt.ItemDataRole.ToolTipRole and column.kind == "rank":
            return RANK_TIP if values.get(column.key) is not None else UNRANKED_TIP
        if role == Qt.ItemDataRole.ToolTipRole and column.kind == "text":
            return _tooltip(values.get(column.key))
        if role == RowRole:
            return values
        return _style(role, column, values)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.columns) or self.columns[column].order_by is None:
            return
        key = self.columns[column].order_by
        descending = order == Qt.SortOrder.DescendingOrder
        if (key, descending) != (self.order_by, self.descending):
            self.order_by, self.descending = key, descending
            self.reload()


def display_text(column: Column, value: Any) -> str:
    """How a value reads in a cell: one line, numbers to three decimals."""
    if value is None:
        return {"rank": "—", "split": row_split(None)}.get(column.kind, "")
    if column.kind == "number":
        return f"{value:.3f}"
    if column.kind in ("int", "rank"):
        return f"{value:,}" if column.key != "example_id" else str(value)
    if column.kind == "verdict":
        return "pass" if value else "FAIL"
    if column.kind == "bool":
        return "yes" if value else ""
    if column.kind == "label" and isinstance(value, bool):
        return "safe" if value else "unsafe"
    if column.kind == "list":
        return ", ".join(str(v) for v in value)
    if column.kind == "split":
        return row_split(value)
    return " ".join(str(value).split())


def _tooltip(value: Any) -> str | None:
    """Dataset text as a tooltip, shown literally: Qt would render a bare
    "<b>x</b>" as rich text, so the text goes in escaped."""
    if not value:
        return None
    import html

    return f"<p style='white-space:pre-wrap'>{html.escape(str(value))}</p>"


def _style(role: int, column: Column, values: dict[str, Any]) -> Any:
    if role == Qt.ItemDataRole.TextAlignmentRole and column.kind in ("number", "int", "rank"):
        return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if role == Qt.ItemDataRole.ForegroundRole and column.kind == "verdict":
        passed = values.get(column.key)
        return None if passed is None else (PASS_COLOUR if passed else FAIL_COLOUR)
    if role == Qt.ItemDataRole.FontRole and (values.get("excluded") or
                                             values.get("label_changed")):
        font = QFont()
        font.setStrikeOut(bool(values.get("excluded")))
        font.setItalic(bool(values.get("label_changed")))
        return font
    return None
