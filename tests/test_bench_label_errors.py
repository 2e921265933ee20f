"""The label-error benchmark's planted flips go through the review log as a
trusted analyst's signed edits (the benchmark broke silently when signing
started to require trust; nothing ran it but ``python -m bench``)."""

from __future__ import annotations

import numpy as np

from bench import bench_label_errors as b
from workstation import review
from workstation.datasets import import_dataset


def test_planted_flips_are_signed_edits_of_a_trusted_key(ws, jailbreakbench_dir):
    import_dataset(ws, "labels", jailbreakbench_dir, "jbb")
    before = dict(ws.execute("SELECT id, current_label FROM current_examples").fetchall())
    signer = b.trusted_signer(ws)
    flipped = b.plant_flips(ws, "jbb", "labels", 0.1, 0, signer)
    labeled = sum(v is not None for v in before.values())
    assert len(flipped) == round(0.1 * labeled)
    after = dict(ws.execute("SELECT id, current_label FROM current_examples").fetchall())
    assert all(after[i] == (not before[i]) for i in flipped.tolist())
    unchanged = [i for i in before if i not in set(flipped.tolist())]
    assert all(after[i] == before[i] for i in unchanged)
    log = review.entries(ws)
    assert len(log) == len(flipped)
    assert {e["key_id"] for e in log} == {signer.key_id}
    assert review.verify_chain(ws) is None
    assert np.unique(flipped).size == flipped.size
