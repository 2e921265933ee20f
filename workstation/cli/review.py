"""The review log from the command line: label, undo, redo, log (team review: cli.team)."""

from __future__ import annotations

from typing import Any

from workstation.cli.common import Commands, Output, acting_signer, open_workspace
from workstation.errors import WorkstationError


def cmd_label(args, out: Output) -> None:
    from workstation import review

    field, value = _label_change(args)
    acting_signer(args)
    with open_workspace(args) as ws:
        if field == "tags":
            current = review.current_values(ws, args.example_id)["tags"]
            value = sorted(set(current) | {value}) if args.tag else [t for t in current if t != value]
        changes = review.apply(ws, [review.Edit(args.example_id, field, value, args.reason)])
    payload = {"changes": [c.to_json() for c in changes]}
    out.result(payload, "\n".join(f"example {c.example_id}: {_change_words(c.field, c.old, c.new)} "
                                  f"(log row {c.seq})" for c in changes) or "nothing changed")


def _change_words(field: str, old: Any, new: Any, action: str = "edit") -> str:
    """A logged change as a line says it: an unchanged value is a confirmation,
    an adjudication names what it settled."""
    if action == "adjudicate" and isinstance(old, dict):
        held = ", ".join(f"{k[:8]} {v!r}" for k, v in sorted((old.get("analysts") or {}).items()))
        return f"{field} settled to {new!r} (analysts: {held}; in force was {old.get('in_force')!r})"
    if old == new and action == "edit":
        return f"{field} {new!r} confirmed"
    return f"{field} {old!r} -> {new!r}"


def _label_change(args) -> tuple[str, Any]:
    if args.flip or args.no_flip:
        return "flipped", bool(args.flip)  # your judgement: which reply is better
    for attr, field in (("set_label", "label"), ("category", "category"), ("note", "note")):
        if getattr(args, attr) is not None:
            return field, getattr(args, attr)
    if args.tag is not None or args.untag is not None:
        return "tags", args.tag if args.tag is not None else args.untag
    return "excluded", bool(args.exclude)


def cmd_undo_redo(args, out: Output) -> None:
    from workstation import review

    step = review.undo if args.command == "undo" else review.redo
    acting_signer(args)
    with open_workspace(args) as ws:
        change = step(ws)
    if change is None:
        raise WorkstationError(f"nothing to {args.command}")
    out.result({"change": change.to_json()},
               f"{args.command}: example {change.example_id} {change.field} "
               f"{change.old!r} -> {change.new!r} (log row {change.seq})")


def cmd_log(args, out: Output) -> None:
    from workstation import review

    with open_workspace(args, read_only=True) as ws:
        items = review.entries(ws, example_id=args.example, limit=args.limit)
    text = "\n".join(f"{e['seq']:>5} {e['time'][:19]} {e['analyst']}"
                     f"{' [' + e['key_id'] + ']' if e['key_id'] else ''}: example {e['example_id']} "
                     f"{_change_words(e['field'], e['old'], e['new'], e['action'])} "
                     f"[{e['action']}] {e['reason']}"
                     for e in items) or "the review log is empty"
    out.result({"entries": items}, text)


def register(cli: Commands) -> None:
    add = cli.add
    p = add("label", cmd_label, "change an example's label, category, tags, note or exclusion")
    p.add_argument("example_id", type=int)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--flip", action="store_true",
                      help="the rejected reply is better: swap chosen and rejected (pairs)")
    what.add_argument("--no-flip", action="store_true",
                      help="the chosen reply is better, as imported (pairs; confirms or "
                           "takes back a flip)")
    what.add_argument("--set-label", metavar="L", help="safe or unsafe (labeled responses)")
    what.add_argument("--category", metavar="C")
    what.add_argument("--tag", metavar="T", help="add a tag")
    what.add_argument("--untag", metavar="T", help="remove a tag")
    what.add_argument("--note", metavar="N")
    what.add_argument("--exclude", action="store_true", help="leave out of audits, training, export")
    what.add_argument("--restore", action="store_true", help="undo an exclusion")
    p.add_argument("--reason", required=True, help="why (kept in the review log)")

    add("undo", cmd_undo_redo, "undo your newest review change (logged, never deleted)")
    add("redo", cmd_undo_redo, "redo your newest undone review change")

    p = add("log", cmd_log, "show the review log")
    p.add_argument("--example", type=int, help="only this example's history")
    p.add_argument("--limit", type=int, help="only the newest N entries")
