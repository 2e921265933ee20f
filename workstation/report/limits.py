"""What the report does not measure, computed from its own content: probes not
run, categories under ``MIN_CATEGORY`` examples, intervals wider than
``MAX_CI_WIDTH``, a single analyst, labels edited since an audit, training
membership unknown, datasets not audited, no release to compare with,
undefined metrics and thinned plots. Each limit names what it concerns;
nothing here is fixed text that would appear whatever the data."""

from __future__ import annotations

from typing import Any

from workstation.report.summary import words

MIN_CATEGORY = 30
MAX_CI_WIDTH = 0.1


def limits(content: dict[str, Any]) -> list[dict[str, Any]]:
    """The limits of ``content`` (every section but ``limits`` filled in)."""
    found: list[dict[str, Any]] = []
    for run in content["metrics"]:
        found += _run_limits(run, content["review"]["review_head"])
    found += _coverage_limits(content["coverage"])
    found += _review_limits(content["review"])
    found += _regression_limits(content["regression"])
    return found


def _limit(kind: str, text: str, **where: Any) -> dict[str, Any]:
    return {"kind": kind, "text": text, **where}


def _run_limits(run: dict[str, Any], head: str) -> list[dict[str, Any]]:
    name, rid = run["dataset"], run["run_id"]
    out = []
    small = {c: f["n"] for c, f in run["per_category"].items() if (f.get("n") or 0) < MIN_CATEGORY}
    if small:
        listed = ", ".join(f"{c} ({n})" for c, n in sorted(small.items()))
        out.append(_limit("small-categories", f"{name}: {len(small)} categor"
                          f"{'y has' if len(small) == 1 else 'ies have'} fewer than "
                          f"{MIN_CATEGORY} examples, too few for a stable figure: {listed}",
                          dataset=name, run_id=rid, categories=sorted(small)))
    wide = _wide_intervals(run)
    if wide:
        listed = ", ".join(f"{scope} {words(metric)} ±{width / 2:.3f}"
                           for scope, metric, width in wide[:8])
        more = f" and {len(wide) - 8} more" if len(wide) > 8 else ""
        out.append(_limit("wide-intervals", f"{name}: {len(wide)} 95% interval"
                          f"{'s are' if len(wide) > 1 else ' is'} wider than {MAX_CI_WIDTH:g}: "
                          f"{listed}{more}", dataset=name, run_id=rid,
                          intervals=[{"scope": s, "metric": m, "width": w} for s, m, w in wide]))
    if run["review_head"] != head:
        out.append(_limit("labels-changed", f"{name}: labels were edited after audit run {rid} "
                          f"(review log head then {run['review_head'][:12] or 'empty'}, now "
                          f"{head[:12] or 'empty'}); its figures judge the labels of then",
                          dataset=name, run_id=rid))
    membership = run.get("membership") or {}
    if membership.get("status") in (None, "unknown"):
        why = membership.get("description") or "not recorded when the run was made"
        out.append(_limit("membership-unknown", f"{name}: which examples the model was trained "
                          f"on is unknown ({why}); held-out figures may include training "
                          f"examples", dataset=name, run_id=rid))
    overall = run["overall"]
    if overall.get("auroc") is None and run["kind"] == "labels":
        out.append(_limit("undefined-metric", f"{name}: AUROC is undefined: "
                          f"{run['overall'].get('auroc_reason') or 'one class only'}",
                          dataset=name, run_id=rid))
    if overall.get("n_unlabeled"):
        out.append(_limit("unlabeled", f"{name}: {overall['n_unlabeled']} unlabeled examples "
                          f"were not judged", dataset=name, run_id=rid))
    roc = run.get("roc") or {}
    if roc.get("n_points", 0) > len(roc.get("fpr") or []):
        out.append(_limit("thinned-plot", f"{name}: the ROC curve is drawn through "
                          f"{len(roc['fpr'])} of its {roc['n_points']} points (its AUROC is "
                          f"the stored one)", dataset=name, run_id=rid))
    return out


def _wide_intervals(run: dict[str, Any]) -> list[tuple[str, str, float]]:
    scopes = [("overall", run["overall"])] + [(c, f) for c, f in run["per_category"].items()]
    wide = []
    for scope, figures in scopes:
        for metric in run["interval_metrics"]:
            ci = figures.get(f"{metric}_ci")
            if ci and ci[1] - ci[0] > MAX_CI_WIDTH and metric != "mean_margin" \
                    and metric != "mean_reward":
                wide.append((scope, metric, ci[1] - ci[0]))
    return wide


def _coverage_limits(coverage: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for d in coverage["datasets"]:
        if d["audit_run"] is None:
            out.append(_limit("not-audited", f"{d['dataset']} ({d['kind']}, {d['n_examples']} "
                              f"examples) was not audited in this report", dataset=d["dataset"]))
        if d["probes_not_run"]:
            out.append(_limit("probes-not-run", f"{d['dataset']}: probes not run: "
                              f"{', '.join(d['probes_not_run'])}", dataset=d["dataset"],
                              probes=d["probes_not_run"]))
    return out


def _review_limits(review: dict[str, Any]) -> list[dict[str, Any]]:
    agreement = review["agreement"]
    if agreement["n_analysts"] >= 2:
        return []
    who = "no analyst" if agreement["n_analysts"] == 0 else "one analyst"
    return [_limit("single-analyst", f"{who} edited labels on these datasets: no second "
                   f"analyst checked the labels, so no agreement can be measured")]


def _regression_limits(regression: dict[str, Any]) -> list[dict[str, Any]]:
    if regression["status"] in ("no-release", "not-run"):
        return [_limit("no-regression", f"no regression check: {regression['text']}")]
    report = regression.get("report") or {}
    skipped = report.get("skipped_datasets") or {}
    return [_limit("regression-skipped", f"regression check skipped {name}: {why}",
                   dataset=name) for name, why in sorted(skipped.items())]
