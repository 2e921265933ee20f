"""Words on screen: plurals, review edits and metric names as a reader says them."""

from __future__ import annotations

from workstation.ui.wording import change_words, count, metric_name, plural


def test_counts_take_the_number_their_noun_asks_for():
    assert [count(n, "failure") for n in (0, 1, 2, 1234)] == \
        ["0 failures", "1 failure", "2 failures", "1,234 failures"]
    assert (plural("category", 2), plural("kernel", 1), plural("match", 3)) == \
        ("categories", "kernel", "matches")


def test_review_edits_read_as_words_not_python():
    assert change_words("excluded", False, True) == "excluded: no → yes"
    assert change_words("tags", [], ["later", "urgent"]) == "tags: none → later, urgent"
    assert change_words("note", None, "check  with\nthe team") == \
        "note: none → check with the team"
    assert change_words("label", "unsafe", "safe") == "label: unsafe → safe"
    assert change_words("label", "safe", "safe") == "label: safe (confirmed)"  # an analyst's
    assert change_words("flipped", True, True) == "flipped: yes (confirmed)"
    long = change_words("note", "x" * 100, None)
    assert long.startswith("note: " + "x" * 59 + "…") and long.endswith(" → none")


def test_metric_keys_read_as_words():
    assert metric_name("n_heldout") == "held-out examples"
    assert metric_name("e_min") == "reconstruction error, low end"
    assert metric_name("heldout.accuracy") == "held-out: accuracy"
    assert metric_name("heldout_recon_error_p95") == \
        "held-out reconstruction error 95th percentile"
    assert metric_name("n_train_trajectories") == "number of training trajectories"
    assert [metric_name(k) for k in ("p05", "p50", "p95")] == \
        ["5th percentile", "50th percentile", "95th percentile"]
    assert metric_name("auroc_ci") == "AUROC (95% interval)"
    assert "_" not in metric_name("some_new_metric")
