"""The report laid out once, as a list of blocks (headings, paragraphs, tables,
figures, lists, code) that the HTML and the PDF renderers both draw, so the
two show the same content in the same order, taken from the content the JSON
form carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workstation.report.plots import Plot, run_plots
from workstation.report.summary import words


@dataclass
class Block:
    kind: str                      # h1 h2 h3 p table figure list code
    text: str = ""
    anchor: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    plot: Plot | None = None


TITLES = {"summary": "1. Summary", "scope": "2. Scope and provenance", "metrics": "3. Metrics",
          "probes": "4. Probes", "review": "5. Review", "regression": "6. Regression",
          "coverage": "7. Coverage", "limits": "8. Limits", "reproduce": "9. Reproduce"}


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def is_number(text: str) -> bool:
    """A cell that holds one number (right-aligned in tables)."""
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def ci(value: Any) -> str:
    return f"{value[0]:.4f} – {value[1]:.4f}" if value else "–"


def layout(content: dict[str, Any]) -> list[Block]:
    """Every block of the report, in reading order."""
    blocks: list[Block] = []
    for name, build in (("summary", _summary), ("scope", _scope), ("metrics", _metrics),
                        ("probes", _probes), ("review", _review), ("regression", _regression),
                        ("coverage", _coverage), ("limits", _limits), ("reproduce", _reproduce)):
        blocks.append(Block("h2", TITLES[name], anchor=name))
        blocks += build(content)
    return blocks


def _table(caption: str, headers: list[str], rows: list[list[Any]]) -> Block:
    return Block("table", caption, headers=headers, rows=[[num(c) for c in r] for r in rows])


def _kv(caption: str, pairs: list[tuple[str, Any]]) -> Block:
    return _table(caption, ["Field", "Value"], [[k, v] for k, v in pairs])


# -- 1 summary ---------------------------------------------------------------------------

def _summary(c: dict[str, Any]) -> list[Block]:
    s = c["summary"]
    out = [Block("p", s["text"])]
    out.append(_table("Key figures (held-out examples)", ["Dataset", "Metric", "Value", "95% CI",
                                                           "n", "Run"],
                      [[f["dataset"], words(f["metric"]), f["value"], ci(f["ci"]), f["n"],
                        f["run_id"]] for f in s["key_figures"]]))
    if s["top_risks"]:
        out.append(Block("list", "Top risks", items=[r["text"] for r in s["top_risks"]]))
    return out


# -- 2 scope -------------------------------------------------------------------------------

def _scope(c: dict[str, Any]) -> list[Block]:
    s, m = c["scope"], c["scope"]["model"]
    enc = s["encoder"] or {}
    out = [_kv("Model version", [("Model", m["ref"]), ("SHA-256", m["sha256"]),
                                  ("Input", m["input_kind"]), ("Score type", m["score_type"]),
                                  ("Registered", f"{m['created_at']} by {m['created_by']}"),
                                  ("Source", m["source"]),
                                  ("Encoder", enc.get("id") or "none (observations)"),
                                  ("Encoder hash", enc.get("hash") or "–"),
                                  ("Patches", len(s["patches"]))])]
    out.append(_table("Lineage (newest first)", ["Version", "SHA-256", "Parent", "Trained on",
                                                 "Objective", "Seed", "Hyperparameters"],
                      [[v["ref"], v["sha256"][:16] + "…", v["parent"] or "–",
                        (v["training"] or {}).get("dataset", "–"),
                        (v["training"] or {}).get("objective", "–"),
                        (v["training"] or {}).get("seed", "–"),
                        _params((v["training"] or {}).get("hyperparameters"))]
                       for v in s["lineage"]]))
    if s["patches"]:
        out.append(_table("Patches", ["Patch", "Details"],
                          [[p.get("kind") or p.get("name") or f"patch {i + 1}",
                            _params({k: v for k, v in p.items() if not isinstance(v, (list, dict))})]
                           for i, p in enumerate(s["patches"])]))
    out.append(_table("Datasets", ["Dataset", "Kind", "Format", "Examples", "Excluded",
                                   "Skipped at import", "Source file", "Source SHA-256"],
                      [[d["name"], d["kind"], d["format"], d["n_examples"], d["n_excluded"],
                        d["skipped_records"], "; ".join(str(x["path"]) for x in d["sources"]),
                        "; ".join(str(x["sha256"]) for x in d["sources"])]
                       for d in s["datasets"]]))
    w = s["workstation"]
    out.append(_kv("Built with", [("Workstation", w["version"]), ("Python", w["python"]),
                                  ("Platform", w["platform"]), ("Workspace id", s["workspace_id"]),
                                  ("Created", c["created_at"]),
                                  ("Prepared by", _who(c.get("prepared_by"))),
                                  ("Review-log head", s["review_log_head"] or "(empty log)")]))
    out.append(_table("Analysts in the review log", ["Name", "Key id", "Log rows"],
                      [[a["name"], a["key_id"] or "(unsigned)", a["log_rows"]]
                       for a in s["analysts"]]))
    return out


def _who(p: dict[str, Any] | None) -> str:
    return f"{p['name']} (key {p['key_id']})" if p else "–"


def _params(p: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (p or {}).items()) or "–"


# -- 3 metrics ---------------------------------------------------------------------------------

def _metrics(c: dict[str, Any]) -> list[Block]:
    out: list[Block] = []
    for run in c["metrics"]:
        out.append(Block("h3", f"{run['dataset']} ({run['kind']}), audit run {run['run_id']}",
                         anchor=f"run-{run['run_id']}"))
        rule = "margin > 0" if run["threshold"] is None else f"score > {run['threshold']:g}"
        out.append(Block("p", f"Figures over {run['covers']}. Verdict: {rule}; "
                              f"{run['n_failures']:,} failures among {run['n_examples']:,} "
                              f"judged examples. Audited {run['created_at'][:19]} by "
                              f"{run['created_by']}."))
        out.append(_overall(run))
        out += _categories(run)
        if run["training"]:
            t = run["training"]
            out.append(_table(f"Training-set figures, apart: {run['membership'].get('training_metrics_cover')}"
                              if run.get("membership") else "Training-set figures, apart",
                              ["Metric", "Value", "95% CI", "n"],
                              [[words(m), t.get(m), ci(t.get(f"{m}_ci")), t.get("n")]
                               for m in run["interval_metrics"] if m in t]))
        out += _baseline(run)
        out += [Block("figure", p.title, anchor=p.key, plot=p) for p in run_plots(run)]
    return out


def _overall(run: dict[str, Any]) -> Block:
    o = run["overall"]
    rows = [[words(m), o.get(m), ci(o.get(f"{m}_ci")), o.get("n")] for m in run["interval_metrics"]]
    extra = [k for k in ("n_safe", "n_unsafe", "n_ties", "n_states", "mean_score", "p05", "p50",
                         "p95", "n_failures", "n_unlabeled") if k in o]
    rows += [[k.replace("_", " "), o[k], "–", "–"] for k in extra]
    return _table("Overall", ["Metric", "Value", "95% CI", "n"], rows)


def _categories(run: dict[str, Any]) -> list[Block]:
    per, tests = run["per_category"], run.get("tests") or {}
    if not per:
        return [Block("p", "The examples have no categories: no per-category figures.")]
    metrics = run["interval_metrics"]
    holm = tests.get("categories") or {}
    rows = []
    for name, f in per.items():
        t = holm.get(name) or {}
        mark = f"yes ({t['direction']})" if t.get("holds") else "no"
        p = "–" if t.get("p_holm") is None else f"{t['p_holm']:.3g}"
        rows.append([name, f.get("n")] + [f"{num(f.get(m))} [{ci(f.get(f'{m}_ci'))}]"
                                          for m in metrics] + [p, mark])
    text = (f"The table shows {tests.get('n_comparisons', 0)} comparisons of "
            f"{words(tests.get('metric', run['headline']))} (each category against the run's "
            f"other examples); 'holds' marks a difference that survives the Holm correction at "
            f"family-wise alpha {tests.get('alpha', 0.05):g}. Method: {tests.get('method', '–')}.")
    return [Block("p", text),
            _table("Per category (value [95% CI])", ["Category", "n"] + [words(m) for m in metrics]
                   + ["Holm p", "Holds"], rows)]


def _baseline(run: dict[str, Any]) -> list[Block]:
    b = run.get("length_baseline")
    if not b:
        return []
    rows = [["model", b["metric"], b["model"]], ["length only", b["metric"], b["length_only"]]]
    if b.get("longer_wins_rate") is not None:
        rows.append(["longer side wins", "share of decided pairs", b["longer_wins_rate"]])
    rows.append(["score vs length", "Spearman correlation", b.get("spearman")])
    return [_table(f"Length-only baseline beside the model (rule: {b['rule']}; n = {b['n']:,})",
                   ["Predictor", "Figure", "Value"], rows)]


# -- 4 probes ------------------------------------------------------------------------------------

def _probes(c: dict[str, Any]) -> list[Block]:
    if not c["probes"]:
        return [Block("p", "No probe run is part of this report.")]
    out: list[Block] = []
    for run in c["probes"]:
        out.append(Block("h3", f"{run['dataset']}, probe run {run['run_id']}",
                         anchor=f"run-{run['run_id']}"))
        out.append(Block("p", f"{run['n_findings']:,} findings from {len(run['probes_run'])} "
                              f"probes; seed {run['seed']}; run {run['created_at'][:19]} by "
                              f"{run['created_by']}."))
        out.append(_table("Findings per probe", ["Probe", "Findings", "High", "Medium", "Low",
                                                 "Label error", "Model error", "Ambiguous"],
                          [[name, p["n"], p["by_severity"]["high"], p["by_severity"]["medium"],
                            p["by_severity"]["low"], p["by_triage"].get("label-error", 0),
                            p["by_triage"].get("model-error", 0),
                            p["by_triage"].get("ambiguous", 0)]
                           for name, p in run["probes"].items()]))
        top = [[name, f["finding_id"], f["example_id"], f["severity"], f["triage"], f["rule"],
                f["text"] or "–"] for name, p in run["probes"].items() for f in p["top"]]
        if top:
            out.append(_table("Most severe findings per probe (text truncated)",
                              ["Probe", "Finding", "Example", "Severity", "Triage", "Rule",
                               "Text"], top))
        for name, p in run["probes"].items():
            if p["redteam"]:
                out.append(_table(f"{name}: success per attack", ["Attack", "Succeeded", "Tried",
                                                                  "Success rate"],
                                  [[r["attack"], r["succeeded"], r["tried"], r["success_rate"]]
                                   for r in p["redteam"]]))
    return out


# -- 5 review ------------------------------------------------------------------------------------

def _review(c: dict[str, Any]) -> list[Block]:
    r = c["review"]
    a = r["agreement"]
    out = [Block("p", f"{r['n_log_rows']:,} review-log rows on these datasets "
                      f"({_counts(r['by_action'])}); {r['excluded']['n']:,} examples excluded. "
                      f"Review-log head {r['review_head'] or '(empty log)'}.")]
    fields = sorted({f for per in r["edits_by_analyst"].values() for f in per})
    if fields:
        out.append(_table("Edits by analyst and field", ["Analyst"] + fields + ["Total"],
                          [[who] + [per.get(f, 0) for f in fields] + [sum(per.values())]
                           for who, per in r["edits_by_analyst"].items()]))
    if r["excluded"]["per_dataset"]:
        out.append(_table("Excluded examples", ["Dataset", "Excluded"],
                          [[k, v] for k, v in r["excluded"]["per_dataset"].items()]))
    if a["n_shared"]:
        out.append(Block("p", f"{a['n_shared']:,} example fields were edited by several "
                              f"analysts: {a['n_agree']:,} agree, {a['n_conflicts']:,} open "
                              f"conflicts (agreement {num(a['agreement'], 3)}; {a['source']})."))
        if a.get("figures"):
            out.append(_table("Agreement between analysts (bootstrap 95% intervals)",
                              ["Dataset", "Field", "Items", "Analysts", "Percent agreement",
                               "95% CI", "Krippendorff's alpha (nominal)", "95% CI"],
                              [[f["dataset"], f["field"], f["n_items"], f["n_analysts"],
                                f["percent_agreement"]["value"],
                                ci(f["percent_agreement"]["ci95"]),
                                f["krippendorff_alpha"]["value"],
                                ci(f["krippendorff_alpha"]["ci95"])] for f in a["figures"]]))
        if a["conflicts"]:
            out.append(_table("Open conflicts", ["Example", "Field", "Values"],
                              [[k["example_id"], k["field"], "; ".join(
                                  f"{w}: {v}" for w, v in k["values"].items())]
                               for k in a["conflicts"]]))
    else:
        who = {0: "No analyst", 1: "One analyst"}.get(a["n_analysts"],
                                                       f"{a['n_analysts']} analysts")
        out.append(Block("p", f"{who} edited these datasets; no example was labelled by more "
                              f"than one, so there is no agreement to measure."))
    return out


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v:,} {k}" for k, v in counts.items()) or "none"


# -- 6 regression ------------------------------------------------------------------------------

def _regression(c: dict[str, Any]) -> list[Block]:
    g = c["regression"]
    out = [Block("p", g["text"] + ".")]
    report = g.get("report")
    if not report:
        return out
    gate = report["gate"]
    out.append(Block("p", f"{report['counts_text']}. Gate: "
                          f"{'PASS' if gate['pass'] else 'FAIL'} (tolerance "
                          f"{num(gate['tolerance'], 3)}, budget {num(gate['budget'], 3)})."))
    out.append(_table("Gate rules", ["Rule", "Outcome"],
                      [[r["rule"], "pass" if r["pass"] else "FAIL"] for r in gate["rules"]]))
    if gate["reasons"]:
        out.append(Block("list", "Why the gate failed", items=gate["reasons"]))
    out.append(_table("Per dataset (held-out examples)", ["Dataset", "Examples", "Fixed", "Broken",
                                                          "Unchanged", "Training (apart)",
                                                          "Protected: max loss"],
                      [[name, d["n"], d["fixed"], d["broken"], d["unchanged"],
                        (d["training_examples"] or {}).get("n"),
                        (d["protected"] or {}).get("max_loss")]
                       for name, d in report["per_dataset"].items()]))
    rows = [[name, cat, words(m), v["baseline"], v["candidate"], v["delta"], ci(v["ci"]), v["n"]]
            for name, d in report["per_dataset"].items()
            for cat, metrics in d["categories"].items() for m, v in metrics.items()]
    if rows:
        out.append(_table("Per-category deltas (candidate − baseline)",
                          ["Dataset", "Category", "Metric", "Baseline", "Candidate", "Delta",
                           "95% CI", "n"], rows))
    return out


# -- 7 coverage, 8 limits, 9 reproduce ----------------------------------------------------------

def _coverage(c: dict[str, Any]) -> list[Block]:
    cov = c["coverage"]
    rows = [[d["dataset"], d["kind"], d["n_examples"], d["audit_run"] or "not audited",
             d.get("n_heldout", "–"), d.get("n_training", "–"), d.get("n_unlabeled", "–"),
             d["n_excluded"], ", ".join(d["probes_run"]) or "none",
             ", ".join(d["probes_not_run"]) or "none"] for d in cov["datasets"]]
    out = [_table("Datasets the model can read", ["Dataset", "Kind", "Examples", "Audit run",
                                                  "Held-out judged", "Training judged",
                                                  "Unlabeled", "Excluded", "Probes run",
                                                  "Probes not run"], rows)]
    space = cov.get("space")
    if space:
        out.append(Block("p", f"The safety oracle's coverage space {space['space']} holds "
                              f"{space['n_points']:,} audited points from {space['n_runs']} "
                              f"recorded runs."))
    return out


def _limits(c: dict[str, Any]) -> list[Block]:
    if not c["limits"]:
        return [Block("p", "No limit was found in the data of this report.")]
    return [Block("list", "What this report does not measure",
                  items=[limit["text"] for limit in c["limits"]])]


def _reproduce(c: dict[str, Any]) -> list[Block]:
    out = [Block("p", "Each command recreates figures of this report from the workspace:")]
    for item in c["reproduce"]:
        out.append(Block("code", item["command"], items=[item["what"]]))
    return out
