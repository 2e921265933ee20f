"""The quantize benchmark measures int8's accuracy delta on JailbreakBench
responses bert-cls's head was not fitted on: none of the head's examples may
leak into that file, and every other response must be in it."""

from __future__ import annotations

import json

from bench import bench_quant
from tests.hf_models import HEAD_EXAMPLES, jailbreakbench_examples
from workstation.datasets import import_dataset


def test_heldout_labels_are_exactly_the_responses_the_head_never_saw(
        ws, jailbreakbench_dir, tmp_path):
    prompts, responses, safe = jailbreakbench_examples(n=10 ** 9, folder=jailbreakbench_dir)
    path, n = bench_quant.write_heldout_labels(tmp_path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert n == len(rows) == len(responses) - HEAD_EXAMPLES > 1000
    # The head was fitted on the first HEAD_EXAMPLES in this order; the file is the rest.
    held = [(r["prompt"], r["response"]) for r in rows]
    assert held == list(zip(prompts, responses))[HEAD_EXAMPLES:]
    # Both classes, with the labels JailbreakBench gives (jailbroken = unsafe).
    labels = [r["label"] for r in rows]
    assert labels == ["safe" if s else "unsafe" for s in safe[HEAD_EXAMPLES:]]
    assert {"safe", "unsafe"} == set(labels)
    info = import_dataset(ws, "labels", path, "jbb-heldout", format="labels-jsonl")
    assert (info.imported, info.skipped) == (n, 0)
