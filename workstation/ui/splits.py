"""Which examples a run's figures cover, as the window says it: held-out (those
the version was not trained on) first, the training set apart and labelled,
and "training membership unknown" for a model registered from outside.

The words come from the run's ``membership`` (``audits.runs``); None there is
a run audited before the workstation recorded training membership.
"""

from __future__ import annotations

from typing import Any

from workstation.ui.wording import metric_name

HELDOUT, TRAINING, ALL = "heldout", "training", "all"
# The plots' split selector, held-out first (what the run's metrics cover).
PLOT_CHOICES = ((HELDOUT, "Held-out"), (TRAINING, "Training set"), (ALL, "All examples"))
# How a row's ``split`` reads in the failure list (None: not trained on it).
ROW_WORDS = {"heldout": "held-out", "training": "training", "validation": "validation"}
NOT_TRAINED = "not trained on"
UNRECORDED = "audited before the workstation recorded which examples a version was trained on"
NOT_TOLD_APART = "held-out and training not told apart (audited before membership was recorded)"


SPLIT_FILTER_TIP = ("Held-out: the examples {version} was not trained on (what the run's "
                    "metrics cover). Training set: those it was trained on (training and "
                    "validation splits). All: both; the Split column says which each is.")


def row_split(value: str | None) -> str:
    """A failure-list row's split in words."""
    return ROW_WORDS.get(value or "", NOT_TRAINED)


def metrics_heading(membership: dict[str, Any] | None) -> tuple[str, str]:
    """(title, what they cover) for a run's ``metrics``: "Held-out" when the
    version's training set is known, else "All examples" and why."""
    if membership is None:
        return "All examples", NOT_TOLD_APART
    if membership.get("status") == "unknown":
        counts = membership.get("counts") or {}
        n = int(counts.get("heldout", 0)) + int(counts.get("not_trained", 0))
        # the reason last: a narrow column elides it (the tooltip has it whole)
        return "All examples", (f"training membership unknown: all {n:,} counted as not "
                                f"trained on ({membership.get('reason')})")
    return "Held-out", str(membership.get("metrics_cover") or "")


def training_heading(membership: dict[str, Any] | None) -> tuple[str, str] | None:
    """(title, what they cover) for a run's ``training_metrics``; None when it has none."""
    cover = (membership or {}).get("training_metrics_cover")
    return ("Training set (apart)", str(cover)) if cover else None


def has_training_split(membership: dict[str, Any] | None) -> bool:
    """Whether a run tells held-out from training examples at all (its version
    was trained on the audited dataset)."""
    return bool(membership) and membership.get("status") == "trained"


def why_no_split(run_id: int, membership: dict[str, Any] | None) -> str:
    """Why a run's examples cannot be told apart by training split, in one line."""
    if membership is None:
        return f"Run {run_id} was {UNRECORDED}: audit again to tell them apart."
    version = membership.get("version") or "this version"
    if membership.get("status") == "unknown":
        return (f"Training membership unknown: {version}'s training data is unknown "
                f"({membership.get('reason')}), so every example counts as held-out.")
    return (f"{version} was not trained on this dataset (it was trained on "
            f"'{membership.get('dataset')}'): every example is held-out.")


def headline(metrics: dict[str, Any] | None, key: str) -> str | None:
    """"pairwise accuracy 0.812" from a metrics JSON (None when it lacks ``key``)."""
    value = (metrics or {}).get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return f"{metric_name(key)} {value:.3f}"


def failures_of(split: str, metrics: dict[str, Any],
                training_metrics: dict[str, Any] | None) -> int | None:
    """How many failures the examples of ``split`` hold, from a run's metrics."""
    held = metrics.get("n_failures")
    trained = (training_metrics or {}).get("n_failures", 0)
    if split == HELDOUT:
        return held
    if split == TRAINING:
        return trained
    return None if held is None else int(held) + int(trained or 0)
