"""Calibrated demonstration rewards: 0.5 at a low percentile of held-out expert
steps, the record in the manifest, the threshold read back from it, and the
record shown in the model's detail view."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.calibration import THRESHOLD, fit_calibration, threshold_of


def test_the_percentile_scores_one_half_and_the_median_nine_tenths():
    raw = np.random.default_rng(0).normal(3.0, 2.0, 5000)
    calibration = fit_calibration(raw, 5.0, "held-out")
    reward = calibration.reward(raw)
    assert np.mean(reward >= THRESHOLD) == pytest.approx(0.95, abs=0.002)
    assert np.median(reward) == pytest.approx(0.9, abs=1e-6)
    assert calibration.reward(np.array([raw.min() - 50.0]))[0] < 1e-6  # far below: near 0
    record = calibration.to_json(reward)
    assert record["threshold"] == 0.5 and record["fitted_on"] == "held-out"
    assert record["reward_percentiles"]["p5"] == pytest.approx(0.5, abs=0.01)
    assert record["n_steps"] == 5000 and "p5 of held-out" in record["rule"]


def test_a_constant_raw_score_still_calibrates():
    calibration = fit_calibration(np.full(10, 2.0), 5.0, "training")
    assert calibration.scale > 0
    assert calibration.reward(np.array([2.0]))[0] == pytest.approx(0.5)


def test_the_threshold_comes_from_the_manifest_or_the_fallback():
    assert threshold_of({"calibration": {"threshold": 0.5}}, 0.0) == 0.5
    assert threshold_of({}, 0.3) == 0.3
    assert threshold_of({"calibration": "garbled"}, 0.3) == 0.3


def test_the_detail_view_shows_the_calibration(qtbot):
    from workstation.models.lineage import VersionNode
    from workstation.ui.models_panel import VersionDetails

    record = fit_calibration(np.arange(100.0), 5.0, "held-out").to_json()
    node = VersionNode(1, "reward", 1, None, "2026-01-01", "analyst",
                       {"calibration": record, "lineage": {"training_metrics": {"x": 1.0}}})
    details = VersionDetails()
    qtbot.addWidget(details)
    details.show_version(node, [])
    tops = [details.metrics.topLevelItem(i) for i in range(details.metrics.topLevelItemCount())]
    names = [t.text(0) for t in tops]
    assert names.index("Calibration") == names.index("Training") + 1
    section = tops[names.index("Calibration")]
    rows = {section.child(i).toolTip(0): section.child(i).text(1)  # the tooltip is the key
            for i in range(section.childCount())}
    assert rows["threshold"] == "0.5" and rows["fitted_on"] == "held-out"
    assert rows["rule"].startswith("reward 0.5 at the p5 of held-out")
    details.show_version(VersionNode(2, "plain", 1, None, "", "", {}), [])
    assert "Calibration" not in [details.metrics.topLevelItem(i).text(0)  # uncalibrated: none
                                 for i in range(details.metrics.topLevelItemCount())]
