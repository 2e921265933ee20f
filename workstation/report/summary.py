"""The report's summary: one paragraph with the outcome (thresholds and the
gate), the key figures with their 95% intervals, and the top risks found,
all drawn from the other sections."""

from __future__ import annotations

from typing import Any

TOP_RISKS = 5
METRIC_WORDS = {"pairwise_accuracy": "pairwise accuracy", "accuracy": "accuracy",
                "auroc": "AUROC", "ece": "ECE", "trajectory_pass_rate": "trajectory pass rate",
                "mean_margin": "mean margin", "mean_reward": "mean reward"}


def words(metric: str) -> str:
    return METRIC_WORDS.get(metric, metric.replace("_", " "))


def figure_text(value: Any, ci: Any = None, n: Any = None) -> str:
    if value is None:
        return "undefined"
    text = f"{value:.3f}"
    if ci:
        text += f" (95% CI {ci[0]:.3f}–{ci[1]:.3f}"
        return text + (f", n = {n})" if n is not None else ")")
    return text + (f" (n = {n})" if n is not None else "")


def key_figures(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline metric of a run, and AUROC beside accuracy for labeled responses."""
    names = [run["headline"]] + (["auroc"] if run["kind"] == "labels" else [])
    overall = run["overall"]
    return [{"run_id": run["run_id"], "dataset": run["dataset"], "metric": m,
             "value": overall.get(m), "ci": overall.get(f"{m}_ci"), "n": overall.get("n")}
            for m in names if m]


def summary(content: dict[str, Any]) -> dict[str, Any]:
    figures = [f for run in content["metrics"] for f in key_figures(run)]
    gate = _gate(content["regression"])
    risks = top_risks(content)
    model = content["scope"]["model"]["ref"]
    parts = [f"{model} was audited on {len(content['metrics'])} dataset"
             f"{'' if len(content['metrics']) == 1 else 's'}"
             f" ({', '.join(_threshold(r) for r in content['metrics'])})."]
    if figures:
        parts.append("Key figures on the examples it was not trained on: " + "; ".join(
            f"{f['dataset']} {words(f['metric'])} {figure_text(f['value'], f['ci'], f['n'])}"
            for f in figures) + ".")
    parts.append(gate["text"])
    parts.append(("Top risks: " + "; ".join(r["text"] for r in risks) + ".") if risks
                 else "No risk stood out in the measured figures (see Limits for what was not "
                      "measured).")
    return {"text": " ".join(parts), "key_figures": figures, "gate": gate, "top_risks": risks}


def _threshold(run: dict[str, Any]) -> str:
    t = run["threshold"]
    rule = "margin > 0" if t is None else f"threshold {t:g} on {run['score_type']} scores"
    return f"{run['dataset']}: {run['n_failures']} failures of {run['n_examples']}, {rule}"


def _gate(regression: dict[str, Any]) -> dict[str, Any]:
    report = regression.get("report") or {}
    verdict = (report.get("gate") or {}).get("pass")
    if regression["status"] == "compared":
        word = "PASS" if verdict else "FAIL"
        text = f"Release gate against the release in force ({regression['release']}): {word}."
    elif regression["status"] == "released" and verdict is not None:
        text = f"It is the release in force; its release gate was {'PASS' if verdict else 'FAIL'}."
    else:
        text = f"Not gated: {regression['text']}."
    return {"pass": verdict, "status": regression["status"], "text": text}


def top_risks(content: dict[str, Any]) -> list[dict[str, Any]]:
    """The most pressing findings, in order: a failed gate, broken examples,
    categories significantly below the rest, high-severity probe findings, a
    model no better than response length."""
    risks: list[dict[str, Any]] = []
    report = content["regression"].get("report") or {}
    for reason in ((report.get("gate") or {}).get("reasons") or [])[:2]:
        risks.append({"kind": "gate", "text": f"gate: {reason}"})
    broken = (report.get("examples") or {}).get("broken")
    if broken:
        risks.append({"kind": "broken", "text": f"{broken} held-out examples broken against "
                                                f"{content['regression']['release']}"})
    for run in content["metrics"]:
        risks += _category_risks(run)
    for probe in content["probes"]:
        for name, p in probe["probes"].items():
            if p["by_severity"]["high"]:
                risks.append({"kind": "probe", "text": f"{p['by_severity']['high']} high-severity "
                              f"{name} findings on {probe['dataset']}"})
    for run in content["metrics"]:
        base = run.get("length_baseline") or {}
        if base.get("model") is not None and base.get("length_only") is not None \
                and base["length_only"] >= base["model"]:
            risks.append({"kind": "length", "text": f"{run['dataset']}: response length alone "
                          f"({base['length_only']:.3f}) does as well as the model "
                          f"({base['model']:.3f}) on {base['metric']}"})
    return risks[:TOP_RISKS]


def _category_risks(run: dict[str, Any]) -> list[dict[str, Any]]:
    tests = run.get("tests") or {}
    metric = tests.get("metric", "")
    out = []
    for name, t in (tests.get("categories") or {}).items():
        if t["holds"] and t["direction"] == "below":
            value = run["per_category"][name].get(metric)
            out.append({"kind": "category", "text": f"{run['dataset']}, category {name}: "
                        f"{words(metric)} {value:.3f} against {run['overall'][metric]:.3f} "
                        f"overall (Holm-adjusted p = {t['p_holm']:.2g})"})
    return out
