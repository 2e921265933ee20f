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
    review.apply(ws, [Edit(first, "note", "n", "r")])
    assert review.apply(ws, [Edit(first, "note", "n", "again")]) == []
    assert review.apply(ws, [Edit(first, "excluded", False, "as it is")]) == []
    assert len(review.entries(ws)) == 1


def test_a_confirmed_label_is_logged_once(labels):
    """Setting the label in force records the analyst's own judgement (agreement
    needs confirmations, not only disagreements); setting it again does nothing."""
    ws, first = labels
    [confirm] = review.apply(ws, [Edit(first, "label", "safe", "confirm")])
    assert (confirm.old, confirm.new) == ("safe", "safe")
    assert review.own_values(ws, first, confirm.key_id) == {"label": "safe"}
    assert review.apply(ws, [Edit(first, "label", "safe", "again")]) == []
    assert _current(ws, first)[1] is True and len(review.entries(ws)) == 1


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


def test_the_review_state_is_a_function_of_the_set_of_rows():
    """Two laptops hold the same rows in different orders: the same state."""
    import random

    from workstation import review_state

    def row(seq, key, field, new, time, action="edit", target=None, old=None):
        return {"seq": seq, "example_id": 7, "field": field, "old": old, "new": new,
                "analyst": key, "key_id": key, "time": time, "action": action,
                "row_hash": f"h{seq}", "target_hash": target}
    rows = [row(1, "ann", "label", "unsafe", "t1"), row(2, "bob", "label", "safe", "t2"),
            row(3, "ann", "tags", ["a"], "t3", old=[]), row(4, "bob", "tags", ["b"], "t3", old=[]),
            row(5, "bob", "label", "unsafe", "t4"), row(6, "bob", "label", None, "t5", "undo",
                                                         target="h5"),
            row(7, "cat", "category", "Fraud", "t6"), row(8, "ann", "note", "n", "t7")]
    base = review_state.baseline(True, "Privacy")
    first = review_state.fold(7, rows, base, "adjudicated")
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        again = review_state.fold(7, shuffled, base, "adjudicated")
        assert review_state.cache_rows(again) == review_state.cache_rows(first)
    assert first.values["label"] == "safe"  # ann unsafe, bob safe after his undo: the import
    assert first.decisions["label"].open_conflict
    assert first.values["tags"] == ["a", "b"] and first.values["category"] == "Fraud"
    assert review_state.fold(7, rows, base, "majority").values["label"] == "safe"  # a tie


def test_two_threads_editing_at_once_never_take_the_same_row(pairs):
    """Each thread edits through a connection of its own (as GUI jobs do): no
    clash on the next seq, and the chain and state hold."""
    import threading

    ws, first = pairs
    review.apply(ws, [Edit(first, "note", "start", "r")])
    errors: list[Exception] = []
    go = threading.Barrier(2)

    def work(k: int) -> None:
        local = ws.for_thread()
        try:
            go.wait()
            for i in range(8):
                review.apply(local, [Edit(first + k, "note", f"{k}-{i}", "r")])
        except Exception as exc:  # noqa: BLE001 (the test reports any)
            errors.append(exc)
        finally:
            local.close()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(review.entries(ws)) == 17
    assert review.verify_chain(ws) is None and review.verify_state(ws) is None
