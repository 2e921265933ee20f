"""The review log: edits, derived labels, undo/redo, and the hash chain."""

from __future__ import annotations

import pytest

from workstation import review
from workstation.errors import WorkstationError
from workstation.review import Edit


def _add_dataset(ws, kind: str, rows: list[dict]) -> int:
    dataset_id = ws.next_id("datasets")
    ws.execute("INSERT INTO datasets VALUES (?, ?, ?, 'test', 'abc', NULL, '2026-01-01', ?, NULL)",
               [dataset_id, f"{kind}-{dataset_id}", kind, len(rows)])
    first = ws.next_id("examples")
    for i, row in enumerate(rows):
        ws.execute(
            "INSERT INTO examples (id, dataset_id, source_sha256, source_index, prompt, chosen, "
            "rejected, response, label, category) VALUES (?, ?, 'abc', ?, ?, ?, ?, ?, ?, ?)",
            [first + i, dataset_id, i, row.get("prompt"), row.get("chosen"), row.get("rejected"),
             row.get("response"), row.get("label"), row.get("category")])
    return first


@pytest.fixture
def pairs(ws):
    first = _add_dataset(ws, "pairs", [
        {"prompt": "p1", "chosen": "good1", "rejected": "bad1"},
        {"prompt": "p2", "chosen": "good2", "rejected": "bad2"}])
    return ws, first


@pytest.fixture
def labels(ws):
    first = _add_dataset(ws, "labels", [
        {"prompt": "q", "response": "r1", "label": True, "category": "Privacy"},
        {"prompt": "q", "response": "r2", "label": False, "category": "Privacy"}])
    return ws, first


def _current(ws, example_id):
    return ws.execute("SELECT current_chosen, current_label, current_category, excluded, "
                      "tags, note FROM current_examples WHERE id = ?", [example_id]).fetchone()


def test_flip_changes_the_current_preference_and_is_logged(pairs, make_identity):
    ws, first = pairs
    ann = make_identity("ann")
    [change] = review.apply(ws, [Edit(first, "flipped", True, "annotator error")], signer=ann)
    assert _current(ws, first)[0] == "bad1"
    assert _current(ws, first + 1)[0] == "good2"
    [entry] = review.entries(ws)
    assert entry["example_id"] == first and entry["field"] == "flipped"
    assert (entry["old"], entry["new"]) == (False, True)
    assert entry["reason"] == "annotator error" and entry["analyst"] == "ann"
    assert entry["key_id"] == change.key_id == ann.key_id and entry["signature"]
    assert entry["hash"] == change.hash == review.head_hash(ws)


def test_label_category_tag_note_exclude(labels):
    ws, first = labels
    review.apply(ws, [Edit(first, "label", "unsafe", "judge missed it"),
                      Edit(first, "category", "Malware/Hacking", "wrong bucket"),
                      Edit(first, "tags", ["needs-second-look"], "flag"),
                      Edit(first, "note", "refers to real CVE", "context"),
                      Edit(first + 1, "excluded", True, "duplicate")])
    _, label, category, excluded, tags, note = _current(ws, first)
    assert (label, category, excluded, tags, note) == (
        False, "Malware/Hacking", False, ["needs-second-look"], "refers to real CVE")
    assert _current(ws, first + 1)[3] is True
    assert len(review.entries(ws)) == 5
    assert [e["field"] for e in review.entries(ws, example_id=first)] == [
        "label", "category", "tags", "note"]


def test_edit_that_changes_nothing_is_not_logged(labels):
    ws, first = labels
    assert review.apply(ws, [Edit(first, "label", "safe", "confirm")]) == []
    assert review.entries(ws) == []


def test_undo_and_redo_are_logged_changes_not_deletions(pairs):
    ws, first = pairs
    review.apply(ws, [Edit(first, "flipped", True, "r")])
    review.apply(ws, [Edit(first + 1, "excluded", True, "r")])
    undone = review.undo(ws)
    assert (undone.example_id, undone.field, undone.new) == (first + 1, "excluded", False)
    assert _current(ws, first + 1)[3] is False
    review.undo(ws)
    assert _current(ws, first)[0] == "good1"
    assert review.undo(ws) is None
    redone = review.redo(ws)
    assert (redone.example_id, redone.new, redone.target_seq) == (first, True, 1)
    assert _current(ws, first)[0] == "bad1"
    assert [e["action"] for e in review.entries(ws)] == ["edit", "edit", "undo", "undo", "redo"]
    assert review.verify_chain(ws) is None and review.verify_state(ws) is None


def test_a_new_edit_clears_the_redo_stack(pairs):
    ws, first = pairs
    review.apply(ws, [Edit(first, "flipped", True, "r")])
    review.undo(ws)
    assert review.can_redo(ws)
    review.apply(ws, [Edit(first + 1, "note", "n", "r")])
    assert not review.can_redo(ws) and review.redo(ws) is None


def test_failed_batch_leaves_log_and_state_unchanged(pairs):
    ws, first = pairs
    review.apply(ws, [Edit(first, "flipped", True, "r")])
    before = review.entries(ws)
    with pytest.raises(WorkstationError, match="applies to labels only"):
        review.apply(ws, [Edit(first + 1, "flipped", True, "r"), Edit(first, "label", "safe", "r")])
    assert review.entries(ws) == before
    assert _current(ws, first + 1)[0] == "good2"


@pytest.mark.parametrize("edit, message", [
    (lambda f: Edit(f, "label", "maybe", "r"), "label must be safe or unsafe"),
    (lambda f: Edit(f, "label", "safe", "  "), "needs a reason"),
    (lambda f: Edit(f + 99, "label", "safe", "r"), "no example with id"),
    (lambda f: Edit(f, "colour", "red", "r"), "unknown field"),
])
def test_bad_edits_are_refused_with_a_clear_message(labels, edit, message):
    ws, first = labels
    with pytest.raises(WorkstationError, match=message):
        review.apply(ws, [edit(first)])
    assert review.entries(ws) == []


def test_tampering_with_any_row_is_found_and_named(pairs):
    ws, first = pairs
    for i in range(5):
        review.apply(ws, [Edit(first, "note", f"note {i}", "r")])
    assert review.verify_chain(ws) is None
    ws.execute("UPDATE review_log SET reason = 'forged' WHERE seq = 3")
    assert "row 3" in review.verify_chain(ws)


def test_deleting_a_row_is_found(pairs):
    ws, first = pairs
    for i in range(3):
        review.apply(ws, [Edit(first, "note", f"note {i}", "r")])
    ws.execute("DELETE FROM review_log WHERE seq = 2")
    assert "row 2 is missing" in review.verify_chain(ws)


def test_state_that_disagrees_with_the_log_is_found(pairs):
    ws, first = pairs
    review.apply(ws, [Edit(first, "flipped", True, "r")])
    ws.execute("UPDATE example_state SET flipped = false")
    assert f"example {first}" in review.verify_state(ws)
