"""Agreement statistics on label matrices built here (three analysts, items
some of them skipped), checked against the krippendorff package and
scikit-learn; each analyst's agreement with the model's audit verdicts on a
run whose verdicts the test writes itself (labels and pairs)."""

from __future__ import annotations

import json
from itertools import combinations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from workstation import agreement, review, trust
from workstation.datasets import import_dataset
from workstation.review import Edit


def _matrix(seed: int, analysts: int = 3, items: int = 40, values: int = 3) -> np.ndarray:
    """Analysts x items codes, mostly agreeing, about a fifth missing."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, values, items)
    codes = np.where(rng.random((analysts, items)) < 0.75, truth,
                     rng.integers(0, values, (analysts, items))).astype(float)
    codes[rng.random((analysts, items)) < 0.2] = np.nan
    return codes


@pytest.mark.parametrize("seed", range(6))
def test_the_statistics_equal_the_packages_with_missing_values(seed):
    codes = _matrix(seed)
    assert agreement.krippendorff_alpha(codes, 3) == pytest.approx(
        krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal"))
    for a, b in combinations(range(3), 2):
        both = ~np.isnan(codes[a]) & ~np.isnan(codes[b])
        assert agreement.cohen_kappa(codes[a], codes[b]) == pytest.approx(
            cohen_kappa_score(codes[a][both], codes[b][both]))
    # percent agreement: agreeing pairs over pairs, counted by hand
    agree = pairs = 0
    for column in codes.T:
        held = [v for v in column if not np.isnan(v)]
        for x, y in combinations(held, 2):
            pairs += 1
            agree += x == y
    assert agreement.percent_agreement(codes) == pytest.approx(100 * agree / pairs)


def test_undefined_figures_are_none_and_intervals_hold_the_value():
    same = np.array([[1, 1, 1], [1, 1, 1]], dtype=float)
    assert agreement.krippendorff_alpha(same, 2) is None       # one value throughout
    assert agreement.cohen_kappa(same[0], same[1]) is None
    assert agreement.percent_agreement(same) == 100.0
    alone = np.array([[0, np.nan], [np.nan, 1]])
    assert agreement.percent_agreement(alone) is None          # no item labelled twice
    codes = _matrix(7, analysts=2, items=60, values=2)
    value = agreement.cohen_kappa(codes[0], codes[1])
    ci = agreement.bootstrap(lambda idx: agreement.cohen_kappa(codes[0][idx], codes[1][idx]), 60)
    assert ci[0] < value < ci[1] and ci == agreement.bootstrap(
        lambda idx: agreement.cohen_kappa(codes[0][idx], codes[1][idx]), 60)  # a fixed seed


def _audit_run(ws, dataset_id: int, verdicts: dict[int, tuple[bool, bool]]) -> int:
    """An audit run of the dataset whose results are ``verdicts`` (example id ->
    (label at audit, passed)), written as the audit writes them."""
    ws.execute("INSERT INTO blobs VALUES ('x', 1, 'x') ON CONFLICT DO NOTHING")
    ws.execute("INSERT INTO model_versions VALUES (1, 'rm', 1, 'x', 'features', NULL, 'eng', "
               "'2026-01-01T00:00:00+00:00', '{}')")
    ws.execute("INSERT INTO audit_runs (id, kind, model_version_id, dataset_id, created_at, "
               "created_by, review_head, n_examples, n_failures) VALUES (1, 'audit', 1, ?, "
               "'2026-01-01', 'eng', '', ?, 0)", [dataset_id, len(verdicts)])
    for example_id, (label, passed) in verdicts.items():
        ws.execute("INSERT INTO audit_results (run_id, example_id, label, passed) "
                   "VALUES (1, ?, ?, ?)", [example_id, label, passed])
    return 1


def test_each_analyst_is_compared_with_the_model(ws, tmp_path, make_identity):
    ann, bob = make_identity("ann"), make_identity("bob")
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"r{i}",
                                        "label": "safe" if i % 2 else "unsafe"}) + "\n"
                            for i in range(8)))
    import_dataset(ws, "labels", path, "chat")
    trust.add(ws, ann.public_pem, "ann", "reviewer")
    trust.add(ws, bob.public_pem, "bob", "reviewer")
    ids = [r[0] for r in ws.execute("SELECT id FROM examples ORDER BY source_index").fetchall()]
    # the model: safe on even examples, unsafe on odd ones (the opposite of the import)
    model = {x: "safe" if i % 2 == 0 else "unsafe" for i, x in enumerate(ids)}
    imported = {x: "safe" if i % 2 else "unsafe" for i, x in enumerate(ids)}
    _audit_run(ws, 1, {x: (imported[x] == "safe", model[x] == imported[x]) for x in ids})
    ann_labels = {x: model[x] for x in ids[:6]}                    # agrees with the model
    bob_labels = {x: imported[x] for x in ids[2:]}                 # keeps the imported labels
    bob_labels[ids[7]] = model[ids[7]]
    review.apply(ws, [Edit(x, "label", v, "r") for x, v in ann_labels.items()], signer=ann)
    review.apply(ws, [Edit(x, "label", v, "r") for x, v in bob_labels.items()], signer=bob)

    got = agreement.agreement(ws, "chat", "label", n_boot=100)
    assert got.n_items == 4 and got.n_analysts == 2               # ids[2:6] labelled by both
    per = {a["analyst"]: a for a in got.model_agreement["analysts"]}
    assert (per["ann"]["n_items"], per["ann"]["percent_agreement"]["value"]) == (6, 100.0)
    assert (per["bob"]["n_items"], per["bob"]["percent_agreement"]["value"]) == \
        (6, pytest.approx(100 / 6))
    assert got.model_agreement["run_id"] == 1
    assert got.percent_agreement.value == 0.0 and got.cohen_kappa[0]["n_items"] == 4
