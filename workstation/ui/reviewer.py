"""What the review keys do: edits of the browser's selected rows through the
review log (signed by the analyst's identity, with the reason set for edits), undo and
redo, and moving between rows. The keys themselves are in ``shortcuts``.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtWidgets import QInputDialog

from workstation.ui.dialogs import NoteDialog, show_error
from workstation.ui.wording import change_words

DEFAULT_REASON = "reviewed in the workstation"


class Reviewer:
    """What the review keys do: edits of the browser's selected rows through
    the review log (``review.apply``, signed by the analyst's identity, with their reason),
    undo and redo, and moving between rows. After an edit only the rows of
    the changed examples are read again, and the count."""

    REASON_KEY = "review/reason"

    def __init__(self, browser: Any, ctx: Any) -> None:
        self.browser = browser
        self.ctx = ctx

    # -- settings ----------------------------------------------------------------
    def reason(self) -> str:
        value = self.ctx.settings().value(self.REASON_KEY, DEFAULT_REASON)
        return str(value or DEFAULT_REASON)

    def set_reason(self, reason: str | None = None) -> None:
        """Change the logged reason (asks for it when not given)."""
        if reason is None:
            reason, ok = QInputDialog.getText(
                self.browser, "Reason for edits",
                "The review log records this reason with every edit you make:",
                text=self.reason())
            if not ok:
                return
        if reason.strip():
            self.ctx.settings().setValue(self.REASON_KEY, reason.strip())
            self.ctx.status.emit(f"edits are now logged with the reason {reason.strip()!r}")

    # -- moving ------------------------------------------------------------------
    def next_row(self) -> None:
        self.browser.select_row(self.browser.current_row() + 1)

    def previous_row(self) -> None:
        self.browser.select_row(max(self.browser.current_row() - 1, 0))

    def next_unreviewed(self) -> None:
        model, browser = self.browser.model, self.browser
        if browser.mode == "findings":
            self.next_row()
            return
        start = browser.current_row() + 1
        unreviewed = lambda values: values.get("reviewed") is False  # noqa: E731
        row = model.find_row(start, unreviewed)
        if row is None and start > 0:
            row = model.find_row(0, unreviewed, max_rows=start)
        if row is None:
            self.ctx.status.emit("no unreviewed row found (filter Review ▸ Unreviewed to "
                                 "see them all)")
            return
        browser.select_row(row)

    # -- editing -----------------------------------------------------------------
    def flip(self) -> None:
        self._edit("flipped", lambda cur: not cur["flipped"])

    def safe(self) -> None:
        self._edit("label", lambda cur: "safe")

    def unsafe(self) -> None:
        self._edit("label", lambda cur: "unsafe")

    def exclude(self) -> None:
        self._edit("excluded", lambda cur: not cur["excluded"])

    def note(self) -> None:
        current = self._current_values()
        if current is None:
            return
        dialog = NoteDialog(current["note"], self.browser)
        if dialog.exec():
            self._edit("note", lambda cur: dialog.note())

    def tags(self) -> None:
        current = self._current_values()
        if current is None:
            return
        text, ok = QInputDialog.getText(self.browser, "Tags", "Tags, separated by commas:",
                                        text=", ".join(current["tags"]))
        if ok:
            tags = sorted({t.strip() for t in text.split(",") if t.strip()})
            self._edit("tags", lambda cur: tags)

    def category(self) -> None:
        from workstation import catalog

        current = self._current_values()
        if current is None or self.browser.selection.dataset is None:
            return
        names = catalog.categories(self.ctx.ws, self.browser.selection.dataset.name)
        at = names.index(current["category"]) if current["category"] in names else 0
        text, ok = QInputDialog.getItem(self.browser, "Category", "Category:", names or [""],
                                        at, True)
        if ok:
            self._edit("category", lambda cur: text.strip() or None)

    def assign(self) -> None:
        """Ask whom to assign the selected examples to (a trusted reviewer, or nobody)."""
        from workstation import trust

        ids = self._example_ids()
        if not ids or self.ctx.ws is None:
            return
        keys = [k for k in trust.list_keys(self.ctx.ws) if k.active and "reviewer" in k.roles]
        items = [f"{k.name} ({k.key_id})" for k in keys] + ["Nobody (unassign)"]
        text, ok = QInputDialog.getItem(self.browser, "Assign",
                                        f"Assign {len(ids)} selected examples to:", items, 0,
                                        False)
        if ok:
            self.assign_to(None if text == items[-1] else keys[items.index(text)].key_id)

    def assign_to(self, key_id: str | None) -> None:
        """Assign the selected examples to ``key_id`` (None: unassign)."""
        from workstation import assignments

        ids = self._example_ids()
        if ids:
            ws = self.ctx.ws
            self._run(lambda: assignments.assign(ws, ids, key_id, self.reason()))

    def undo(self) -> None:
        self._step("undo")

    def redo(self) -> None:
        self._step("redo")

    # -- the work ----------------------------------------------------------------
    def _example_ids(self) -> list[int]:
        ids = []
        for row in self.browser.selected_rows():
            values = self.browser.model.row_values(row)
            if values is not None and values.get("example_id") is not None:
                ids.append(int(values["example_id"]))
        if not ids:
            self.ctx.status.emit("select a row with an example first")
        return list(dict.fromkeys(ids))

    def _current_values(self) -> dict[str, Any] | None:
        from workstation import review

        ids = self._example_ids()
        return review.current_values(self.ctx.ws, ids[0]) if ids else None

    def _edit(self, field: str, value: Callable[[dict[str, Any]], Any]) -> None:
        from workstation import review

        ids = self._example_ids()
        if not ids:
            return
        ws = self.ctx.ws

        def call() -> Any:
            # A judgement toggles the analyst's own value (their flip, not the team's).
            from workstation.identity import session_signer

            key = session_signer().key_id
            edits = [review.Edit(i, field, value({**review.current_values(ws, i),
                                                  **review.own_values(ws, i, key)}),
                                 self.reason()) for i in ids]
            return review.apply(ws, edits)
        self._run(call)

    def _step(self, action: str) -> None:
        from workstation import review

        step = review.undo if action == "undo" else review.redo
        self._run(lambda: step(self.ctx.ws, reason=action), action)

    def _run(self, call: Callable[[], Any], action: str = "edit") -> None:
        from workstation.errors import WorkstationError

        from workstation.ui.identity_dialogs import ensure_signer

        if self.ctx.ws is None:
            return
        if ensure_signer(self.browser) is None:  # edits are signed: unlocked once a session
            self.ctx.status.emit("not signed in: nothing changed")
            return
        try:
            result = call()
        except WorkstationError as exc:  # e.g. a label on a pair: say so, at speed
            self.ctx.status.emit(str(exc))
            return
        except Exception as exc:
            import traceback

            show_error(self.browser, f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return
        changes = result if isinstance(result, list) else [result] if result else []
        if not changes:
            self.ctx.status.emit(f"nothing to {action}" if action != "edit" else
                                 "nothing changed")
            return
        self._refresh({c.example_id for c in changes})
        if {c.field for c in changes} & {"tags", "category"}:
            self.browser.refresh_choices()
        if changes[0].field == "assignee":
            self.ctx.status.emit(_assigned_text(self.ctx.ws, changes))
            return
        self.ctx.status.emit(_change_text(changes, action))

    def _refresh(self, example_ids: set[int]) -> None:
        from workstation import review

        browser = self.browser
        for example_id in example_ids:
            fresh = browser.fresh_values(example_id)
            for row in browser.model.rows_of_example(example_id):
                values = fresh
                if values is None:  # a finding row: update the example's fields
                    current = review.current_values(self.ctx.ws, example_id)
                    values = {**browser.model.row_values(row), "label": current["label"],
                              "flipped": current["flipped"], "category": current["category"]}
                browser.model.replace_row(row, values)
        browser.update_count()
        shown = browser.detail.example
        if shown is not None and shown["id"] in example_ids:
            browser.show_detail_now()
        with browser.quiet():
            self.ctx.data_changed.emit({"review"})


def _change_text(changes: list[Any], action: str) -> str:
    first = changes[0]
    more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
    verb = {"edit": "", "undo": "undid: ", "redo": "redid: "}[action]
    hint = " · Ctrl+Z undoes" if action != "undo" else " · Ctrl+Shift+Z redoes"
    return (f"{verb}example {first.example_id} {change_words(first.field, first.old, first.new)}"
            f"{more} (log row {first.seq}){hint}")


def _assigned_text(ws: Any, changes: list[Any]) -> str:
    from workstation import trust

    key = changes[0].new
    who = getattr(trust.get_key(ws, key), "name", key) if key else None
    n = len(changes)
    return (f"{n} example{'s' if n > 1 else ''} assigned to {who} (log rows {changes[0].seq}–"
            f"{changes[-1].seq}) · \"Assigned to me\" shows {who} theirs" if who else
            f"{n} example{'s' if n > 1 else ''} unassigned")
