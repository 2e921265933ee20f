"""Team review across laptops: two identities, two copies of one workspace,
overlapping edits that partly disagree, bundles exported and merged both ways;
conflicts, adjudication, agreement checked against the krippendorff package
and scikit-learn; refused bundles leave the workspace unchanged."""

from __future__ import annotations

import json
import shutil

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from tests.test_crash_safety import assert_nothing_half_made
from workstation import (agreement, assignments, conflicts, policy, review, review_bundles,
                         trust)
from workstation.datasets import import_dataset
from workstation.errors import WorkstationError
from workstation.review import Edit
from workstation.verify import content_hash, verify_workspace
from workstation.workspace import Workspace

pytestmark = pytest.mark.slow  # two laptops, dozens of signed edits each

N = 40
CATEGORIES = ("Privacy", "Violence", "Fraud")


def _records(tag: str = "") -> list[dict]:
    return [{"prompt": f"question {tag}{i}", "response": f"reply {tag}{i}",
             "label": "safe" if i % 3 else "unsafe", "category": CATEGORIES[i % 3]}
            for i in range(N)]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# Labels the two analysts give (example index -> label); overlapping on 0..29,
# disagreeing on a few of those.
ANN = {i: ("safe" if i % 4 else "unsafe") for i in range(0, 30)}
BOB = {i: ("safe" if i % 4 else "unsafe") for i in range(10, 40)}
for _i in (12, 17, 21, 26):
    BOB[_i] = "unsafe" if ANN[_i] == "safe" else "safe"


@pytest.fixture
def laptops(tmp_path, make_identity):
    """Ann's and Bob's copies of one workspace: Ann owns it, Bob is a reviewer,
    Carl an adjudicator; a labels dataset 'chat' and a pairs dataset 'prefs'."""
    ann, bob, carl = (make_identity(n) for n in ("ann", "bob", "carl"))
    a_path = tmp_path / "ann.duckdb"
    with Workspace.open(a_path) as ws:
        import_dataset(ws, "labels", _write(tmp_path / "chat.jsonl", _records()), "chat")
        import_dataset(ws, "pairs", _write(tmp_path / "prefs.jsonl", [
            {"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
            for i in range(10)]), "prefs")
        trust.add(ws, bob.public_pem, "bob", "reviewer", signer=ann)
        trust.add(ws, carl.public_pem, "carl", "reviewer,adjudicator", signer=ann)
    b_path = tmp_path / "bob.duckdb"
    shutil.copyfile(a_path, b_path)
    return {"ann": ann, "bob": bob, "carl": carl, "a": a_path, "b": b_path, "tmp": tmp_path}


def _ids(ws, dataset="chat") -> list[int]:
    return [r[0] for r in ws.execute(
        "SELECT e.id FROM examples e JOIN datasets d ON d.id = e.dataset_id WHERE d.name = ? "
        "ORDER BY e.source_index", [dataset]).fetchall()]


def _label(path, signer, labels: dict[int, str]) -> None:
    with Workspace.open(path) as ws:
        ids = _ids(ws)
        review.apply(ws, [Edit(ids[i], "label", v, "second look") for i, v in labels.items()],
                     signer=signer)


def _state(path) -> dict:
    """The review state as an analyst sees it: values in force, each analyst's own
    values, conflicts and adjudications, assignments; and the set of row hashes."""
    with Workspace.open(path, read_only=True) as ws:
        return {
            "in_force": ws.execute(
                "SELECT source_index, dataset_id, flipped, current_label, current_category, tags, "
                "note, excluded, reviewed FROM current_examples ORDER BY ALL").fetchall(),
            "analysts": ws.execute(
                "SELECT e.source_index, e.dataset_id, field, key_id, analyst, value, time, "
                "row_hash FROM analyst_labels a JOIN examples e ON e.id = a.example_id "
                "ORDER BY ALL").fetchall(),
            "decisions": ws.execute(
                "SELECT e.source_index, e.dataset_id, field, n_analysts, open_conflict, "
                "adjudicated, adjudicator_key, settled FROM label_decisions d JOIN examples e "
                "ON e.id = d.example_id ORDER BY ALL").fetchall(),
            "assignments": ws.execute(
                "SELECT e.source_index, key_id, assigned_by FROM assignments a JOIN examples e "
                "ON e.id = a.example_id ORDER BY ALL").fetchall(),
            "rows": sorted(r[0] for r in ws.execute(
                "SELECT row_hash FROM review_log").fetchall()),
        }


def _export(path, signer, out, dataset="chat"):
    with Workspace.open(path, read_only=True) as ws:
        return review_bundles.export(ws, dataset, out, signer=signer)


def _merge(path, *bundles):
    with Workspace.open(path) as ws:
        report = review_bundles.merge(ws, bundles)
        assert verify_workspace(ws).ok, verify_workspace(ws).failures
        return report


def _exchange(lap):
    """Both analyst's label; bundles go both ways."""
    _label(lap["a"], lap["ann"], ANN)
    _label(lap["b"], lap["bob"], BOB)
    a_out, b_out = lap["tmp"] / "ann.bundle", lap["tmp"] / "bob.bundle"
    _export(lap["a"], lap["ann"], a_out)
    _export(lap["b"], lap["bob"], b_out)
    return _merge(lap["a"], b_out), _merge(lap["b"], a_out), a_out, b_out


# -- the two-laptop flow ---------------------------------------------------------

def test_merging_both_ways_gives_both_laptops_the_same_review_state(laptops):
    into_a, into_b, a_out, b_out = _exchange(laptops)
    assert (into_a.added, into_b.added) == (len(BOB), len(ANN))
    assert _state(laptops["a"]) == _state(laptops["b"])
    assert len(_state(laptops["a"])["rows"]) == len(ANN) + len(BOB)
    # merging again (either bundle, either side) changes nothing
    for path, bundle in ((laptops["a"], b_out), (laptops["a"], a_out), (laptops["b"], a_out)):
        with Workspace.open(path, read_only=True) as ws:
            before = content_hash(ws)
        again = _merge(path, bundle)
        assert again.added == 0 and again.already_here == again.bundles[0].rows
        with Workspace.open(path, read_only=True) as ws:
            assert content_hash(ws) == before


def test_conflicts_list_exactly_the_disagreements_and_no_label_is_lost(laptops):
    _exchange(laptops)
    ann, bob = laptops["ann"], laptops["bob"]
    with Workspace.open(laptops["a"], read_only=True) as ws:
        ids = _ids(ws)
        found = conflicts.conflicts(ws, "chat")
        expected = {ids[i] for i in ANN if i in BOB and ANN[i] != BOB[i]}
        assert {c.example_id for c in found} == expected and {c.field for c in found} == {"label"}
        for c in found:
            i = ids.index(c.example_id)
            assert {v["key_id"]: v["value"] for v in c.values} == \
                {ann.key_id: ANN[i], bob.key_id: BOB[i]}
            # adjudicated policy: the imported label stays in force while they disagree
            assert c.value_in_force == _records()[i]["label"]
        for i in range(N):  # every analyst's label is kept
            own = {k: review.own_values(ws, ids[i], k).get("label")
                   for k in (ann.key_id, bob.key_id)}
            assert own == {ann.key_id: ANN.get(i), bob.key_id: BOB.get(i)}
        agreed = [i for i in ANN if i in BOB and ANN[i] == BOB[i]]
        only_one = [i for i in ANN if i not in BOB] + [i for i in BOB if i not in ANN]
        for i in agreed + only_one:
            assert review.current_values(ws, ids[i])["label"] == ANN.get(i, BOB.get(i))


def test_agreement_equals_the_packages_on_a_matrix_built_here(laptops):
    _exchange(laptops)
    both = sorted(i for i in ANN if i in BOB)
    code = {"safe": 1, "unsafe": 0}
    matrix = np.array([[code[ANN[i]] for i in both], [code[BOB[i]] for i in both]], dtype=float)
    with Workspace.open(laptops["a"], read_only=True) as ws:
        got = agreement.agreement(ws, "chat", "label", n_boot=200)
    assert got.n_items == len(both) == 20 and got.n_analysts == 2
    assert got.krippendorff_alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))
    [kappa] = got.cohen_kappa
    assert kappa["value"] == pytest.approx(cohen_kappa_score(matrix[0], matrix[1]))
    assert got.percent_agreement.value == pytest.approx(100 * np.mean(matrix[0] == matrix[1]))
    low, high = got.krippendorff_alpha.ci
    assert low <= got.krippendorff_alpha.value <= high
    for entry in got.per_category:
        cols = [k for k, i in enumerate(both) if CATEGORIES[i % 3] == entry["category"]]
        sub = matrix[:, cols]
        assert entry["n_items"] == len(cols)
        assert entry["percent_agreement"]["value"] == pytest.approx(
            100 * np.mean(sub[0] == sub[1]))
        if entry["cohen_kappa"] and entry["cohen_kappa"][0]["value"] is not None:
            assert entry["cohen_kappa"][0]["value"] == pytest.approx(
                cohen_kappa_score(sub[0], sub[1]))


def test_adjudication_settles_by_key_and_follows_separation(laptops):
    _exchange(laptops)
    ann, bob, carl = laptops["ann"], laptops["bob"], laptops["carl"]
    with Workspace.open(laptops["a"]) as ws:
        ids = _ids(ws)
        example = ids[12]
        with pytest.raises(WorkstationError, match="not an adjudicator"):
            conflicts.adjudicate(ws, example, choose=bob.key_id, reason="r", signer=bob)
        # Ann owns the workspace (every role) but is part of this disagreement
        with pytest.raises(WorkstationError, match="part of this disagreement"):
            conflicts.adjudicate(ws, example, choose=bob.key_id, reason="r", signer=ann)
        change = conflicts.adjudicate(ws, example, choose=bob.key_id, reason="bob is right",
                                      signer=carl)
        assert change.action == "adjudicate" and change.new == BOB[12]
        assert change.old["analysts"] == {ann.key_id: ANN[12], bob.key_id: BOB[12]}
        assert review.current_values(ws, example)["label"] == BOB[12]
        assert example not in {c.example_id for c in conflicts.conflicts(ws, "chat")}
        policy.set(ws, "release.separation", "off", signer=ann)
        conflicts.adjudicate(ws, ids[17], choose=ann.key_id, reason="mine", signer=ann)
        assert review.current_values(ws, ids[17])["label"] == ANN[17]
        assert verify_workspace(ws).ok
    # the adjudications travel like any row
    out = laptops["tmp"] / "adj.bundle"
    with Workspace.open(laptops["a"], read_only=True) as ws:
        review_bundles.export(ws, "chat", out, signer=carl, every_author=True)
    _merge(laptops["b"], out)
    state_a, state_b = _state(laptops["a"]), _state(laptops["b"])
    assert state_a["decisions"] == state_b["decisions"]
    assert state_a["in_force"] == state_b["in_force"]


def test_majority_policy_and_a_reopened_conflict(laptops):
    ann, bob, carl = laptops["ann"], laptops["bob"], laptops["carl"]
    with Workspace.open(laptops["a"]) as ws:
        x = _ids(ws)[0]  # imported unsafe
        review.apply(ws, [Edit(x, "label", "safe", "r")], signer=ann)
        review.apply(ws, [Edit(x, "label", "unsafe", "r")], signer=bob)
        assert review.current_values(ws, x)["label"] == "unsafe"  # import, adjudicated policy
        review.apply(ws, [Edit(x, "label", "safe", "r")], signer=carl)
        assert review.current_values(ws, x)["label"] == "unsafe"
        policy.set(ws, "review.label_policy", "majority", signer=ann)
        assert review.current_values(ws, x)["label"] == "safe"  # two against one
        assert verify_workspace(ws).ok
        policy.set(ws, "review.label_policy", "adjudicated", signer=ann)
        assert review.current_values(ws, x)["label"] == "unsafe"
        # Carl is part of it; with separation off he may settle it all the same
        policy.set(ws, "release.separation", "off", signer=ann)
        conflicts.adjudicate(ws, x, value="safe", field="label", reason="policy text",
                             signer=carl)
        assert review.current_values(ws, x)["label"] == "safe"
        assert conflicts.conflicts(ws, "chat") == []
        # a later edit by an analyst reopens the question; the adjudication stays in force
        review.apply(ws, [Edit(x, "label", "safe", "changed my mind")], signer=bob)
        review.apply(ws, [Edit(x, "label", "unsafe", "changed my mind")], signer=ann)
        [reopened] = conflicts.conflicts(ws, "chat")
        assert reopened.example_id == x and reopened.adjudicated == "safe"
        assert review.current_values(ws, x)["label"] == "safe"
        assert verify_workspace(ws).ok


def test_undo_is_per_analyst_and_withdraws_the_judgement(laptops):
    ann, bob = laptops["ann"], laptops["bob"]
    with Workspace.open(laptops["a"]) as ws:
        x, y = _ids(ws)[:2]
        review.apply(ws, [Edit(x, "label", "safe", "r")], signer=ann)
        review.apply(ws, [Edit(y, "note", "bob's note", "r")], signer=bob)
        review.apply(ws, [Edit(x, "label", "unsafe", "r")], signer=bob)
        undone = review.undo(ws, signer=ann)  # Ann's newest edit, not Bob's newer ones
        assert (undone.example_id, undone.field, undone.action) == (x, "label", "undo")
        assert review.own_values(ws, x, ann.key_id) == {}  # withdrawn, not "unsafe"
        assert review.current_values(ws, x)["label"] == "unsafe"  # Bob's alone now
        assert review.undo(ws, signer=ann) is None
        redone = review.redo(ws, signer=ann)
        assert redone.new == "safe" and review.own_values(ws, x, ann.key_id) == {"label": "safe"}
        assert review.undo(ws, signer=bob).field == "label"
        assert review.undo(ws, signer=bob).field == "note"
        assert review.current_values(ws, y)["note"] is None
        assert verify_workspace(ws).ok


def test_tags_added_on_two_laptops_are_both_kept(laptops):
    ann, bob = laptops["ann"], laptops["bob"]
    for path, who, tag in ((laptops["a"], ann, "from-ann"), (laptops["b"], bob, "from-bob")):
        with Workspace.open(path) as ws:
            review.apply(ws, [Edit(_ids(ws)[5], "tags", [tag], "flag")], signer=who)
    _merge(laptops["a"], _export(laptops["b"], bob, laptops["tmp"] / "b.bundle").path)
    _merge(laptops["b"], _export(laptops["a"], ann, laptops["tmp"] / "a.bundle").path)
    for path in (laptops["a"], laptops["b"]):
        with Workspace.open(path, read_only=True) as ws:
            assert review.current_values(ws, _ids(ws)[5])["tags"] == ["from-ann", "from-bob"]


def test_assignments_travel_and_filter_the_failure_list(laptops):
    ann, bob = laptops["ann"], laptops["bob"]
    with Workspace.open(laptops["a"]) as ws:
        ids = _ids(ws)
        changes = assignments.assign(ws, ids[:5], "bob", "yours", signer=ann)
        assert len(changes) == 5 and assignments.assigned_to(ws, bob.key_id) == ids[:5]
        assert not any(review.current_values(ws, i)["excluded"] for i in ids[:5])
        from workstation.audits.runs import failure_page

        rows, total = failure_page(ws, None, dataset="chat", assigned_to=bob.key_id)
        assert total == 5 and {r["example_id"] for r in rows} == set(ids[:5])
        rows, total = failure_page(ws, None, dataset="chat", reviewed=False,
                                   assigned_to=bob.key_id)
        assert total == 5  # an assignment is not a review
        with pytest.raises(WorkstationError, match="no trusted reviewer"):
            assignments.assign(ws, ids[:1], "nobody", "r", signer=ann)
    out = _export(laptops["a"], ann, laptops["tmp"] / "assign.bundle").path
    _merge(laptops["b"], out)
    with Workspace.open(laptops["b"], read_only=True) as ws:
        assert assignments.assigned_to(ws, bob.key_id, "chat") == _ids(ws)[:5]


# -- refusals ---------------------------------------------------------------------

def _refused(path, bundle, match):
    with Workspace.open(path) as ws:
        before = content_hash(ws)
        with pytest.raises(WorkstationError, match=match) as caught:
            review_bundles.merge(ws, [bundle])
        assert "\n" not in str(caught.value)
        assert content_hash(ws) == before
    return str(caught.value)


def test_a_bundle_with_one_changed_byte_is_refused(laptops):
    _label(laptops["b"], laptops["bob"], BOB)
    out = _export(laptops["b"], laptops["bob"], laptops["tmp"] / "bob.bundle").path
    data = bytearray(open(out, "rb").read())
    signature = data.rindex(b'"signature":"') + len(b'"signature":"') + 5
    for offset, why in ((len(data) // 2, "changed after it was signed|does not parse"),
                        (data.index(b"unsafe") + 2, "changed after it was signed"),
                        (signature, "signature does not verify")):
        changed = bytearray(data)
        changed[offset] ^= 0x01
        bad = laptops["tmp"] / f"changed-{offset}.bundle"
        bad.write_bytes(bytes(changed))
        _refused(laptops["a"], bad, why)


def test_a_bundle_by_an_unknown_or_revoked_key_is_refused(laptops, make_identity):
    ann, bob = laptops["ann"], laptops["bob"]
    dora = make_identity("dora")
    c_path = laptops["tmp"] / "dora.duckdb"
    shutil.copyfile(laptops["a"], c_path)
    with Workspace.open(c_path) as ws:
        trust.add(ws, dora.public_pem, "dora", "reviewer", signer=ann)
    _label(c_path, dora, {1: "unsafe"})
    unknown = _export(c_path, dora, laptops["tmp"] / "dora.bundle").path
    _refused(laptops["a"], unknown, "not in this workspace's trust store")

    _label(laptops["b"], bob, BOB)
    bobs = _export(laptops["b"], bob, laptops["tmp"] / "bob.bundle").path
    with Workspace.open(laptops["a"]) as ws:
        trust.revoke(ws, bob.key_id, "left the team", signer=ann)
    _refused(laptops["a"], bobs, "revoked here")
    # a bundle exported by a trusted analyst that carries a revoked author's rows
    with Workspace.open(laptops["b"]) as ws:
        review.apply(ws, [Edit(_ids(ws)[2], "note", "n", "r")], signer=ann)
    forwarded = laptops["tmp"] / "forwarded.bundle"
    with Workspace.open(laptops["b"], read_only=True) as ws:
        review_bundles.export(ws, "chat", forwarded, signer=ann, every_author=True)
    assert "bob" in _refused(laptops["a"], forwarded, "revoked here")


def test_a_bundle_for_other_dataset_content_is_refused(laptops, tmp_path):
    other = tmp_path / "other.duckdb"
    shutil.copyfile(laptops["a"], other)
    with Workspace.open(other) as ws:
        import_dataset(ws, "labels", _write(tmp_path / "chat2.jsonl", _records("x")), "chat2")
        review.apply(ws, [Edit(_ids(ws, "chat2")[0], "label", "unsafe", "r")],
                     signer=laptops["ann"])
        review_bundles.export(ws, "chat2", tmp_path / "chat2.bundle", signer=laptops["ann"])
    _refused(laptops["a"], tmp_path / "chat2.bundle", "which no dataset here has")


def test_merge_keeps_the_workspace_whole(laptops):
    _exchange(laptops)
    for path in (laptops["a"], laptops["b"]):
        with Workspace.open(path, read_only=True) as ws:
            assert_nothing_half_made(ws)
