"""The report's plots, drawn headless with matplotlib's Agg backend from the
report's content (so a plot shows exactly the numbers the JSON carries), as
PNG bytes with an alt text that states what the plot shows. The palette is
Okabe-Ito, which stays distinguishable with the common colour-vision
deficiencies; series also differ by line style or hatch, not colour alone."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg", force=True)
from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)

from workstation.report.summary import words  # noqa: E402

OKABE_ITO = {"orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "black": "#000000"}
SERIES = [OKABE_ITO[c] for c in ("blue", "orange", "green", "vermillion", "purple", "sky")]
WIDTH, HEIGHT, DPI = 6.4, 3.1, 110


@dataclass(frozen=True)
class Plot:
    """One drawn plot of a run."""

    key: str        # unique in the report, used as the HTML anchor
    run_id: int
    title: str
    alt: str
    png: bytes


def run_plots(run: dict[str, Any]) -> list[Plot]:
    """Every plot of one audit run's metrics section that has data."""
    out = []
    for name, draw in _DRAWERS:
        made = draw(run)
        if made is not None:
            title, alt, fig = made
            out.append(Plot(f"plot-{run['run_id']}-{name}", run["run_id"], title, alt,
                            _png(fig)))
    return out


def _figure(height: float = HEIGHT, left: float = 0.75) -> tuple[Figure, Any]:
    """A figure with fixed margins in inches (a layout engine would draw each
    plot twice to measure it: most of a report's plotting time)."""
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    fig.subplots_adjust(left=left / WIDTH, right=1 - 0.75 / WIDTH, bottom=0.55 / height,
                        top=1 - 0.15 / height)
    ax = fig.add_subplot()
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    return fig, ax


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # light compression: zlib level 6 took a third of the plotting time
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None},
                pil_kwargs={"compress_level": 2})
    return buf.getvalue()


# -- the plots -------------------------------------------------------------------------

def categories(run: dict[str, Any]) -> tuple[str, str, Figure] | None:
    metric, per = run["headline"], run["per_category"]
    names = [c for c in per if per[c].get(metric) is not None]
    if not names:
        return None
    tests = (run.get("tests") or {}).get("categories") or {}
    labels = [f"{c}{' *' if m else ''} (n={per[c]['n']})"
              for c, m in zip(names, [tests.get(c, {}).get("holds") for c in names])]
    # room for the longest category label at 8 pt (about 0.075 in per character)
    left = min(0.3 + 0.075 * max(len(t) for t in labels), WIDTH / 2)
    fig, ax = _figure(max(HEIGHT, 0.9 + 0.28 * len(names)), left)
    values = [per[c][metric] for c in names]
    lows = [v - (per[c].get(f"{metric}_ci") or [v, v])[0] for c, v in zip(names, values)]
    highs = [(per[c].get(f"{metric}_ci") or [v, v])[1] - v for c, v in zip(names, values)]
    marked = [tests.get(c, {}).get("holds") for c in names]
    colours = [OKABE_ITO["vermillion"] if m else OKABE_ITO["blue"] for m in marked]
    y = list(range(len(names)))[::-1]
    ax.barh(y, values, color=colours, height=0.6)
    ax.errorbar(values, y, xerr=[lows, highs], fmt="none", ecolor="black", capsize=3, lw=1)
    overall = run["overall"].get(metric)
    if overall is not None:
        ax.axvline(overall, color=OKABE_ITO["black"], linestyle="--", lw=1, label="overall")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(f"{words(metric)} (bars: 95% bootstrap interval; * holds after Holm)")
    ax.set_xlim(0, 1.02)
    worst = min(zip(values, names))
    alt = (f"Bar chart of {words(metric)} per category with 95% intervals for "
           f"{run['dataset']}: {len(names)} categories, lowest {worst[1]} at {worst[0]:.3f}, "
           f"overall {overall:.3f}; {sum(bool(m) for m in marked)} marked as differing after "
           f"Holm correction." if overall is not None else
           f"Bar chart of {words(metric)} per category for {run['dataset']}.")
    return f"{words(metric).capitalize()} per category", alt, fig


def calibration(run: dict[str, Any]) -> tuple[str, str, Figure] | None:
    c = run.get("calibration")
    if not c or c.get("reason"):
        return None
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="#777777", linestyle=":", lw=1, label="perfect calibration")
    points = [(m, o, n) for m, o, n in zip(c["mean_probability"], c["observed"], c["counts"])
              if m is not None and o is not None]
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=SERIES[0],
            label="observed share safe")
    width = 1 / max(len(c["counts"]), 1)
    ax2 = ax.twinx()
    ax2.bar([lo + width / 2 for lo in c["lower"]], c["counts"], width=width * 0.9,
            color=OKABE_ITO["sky"], alpha=0.35, hatch="//", label="examples per bin")
    ax2.set_ylabel("examples", fontsize=8)
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.03, 1.03)  # a bin observed all safe (or none) stays in view
    ax.set_xlabel("mean predicted probability of safe")
    ax.set_ylabel("observed share safe")
    ax.legend(loc="upper left", fontsize=8)
    alt = (f"Reliability diagram for {run['dataset']}: observed share of safe against mean "
           f"predicted probability in {len(c['counts'])} bins ({len(points)} non-empty); "
           f"ECE {c['ece']:.3f}.")
    return "Calibration (reliability diagram)", alt, fig


def roc(run: dict[str, Any]) -> tuple[str, str, Figure] | None:
    r = run.get("roc")
    if not r or r.get("reason"):
        return None
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="#777777", linestyle=":", lw=1, label="chance")
    ax.plot(r["fpr"], r["tpr"], color=SERIES[0], lw=1.6, label=f"AUROC {r['auroc_curve']:.3f}")
    if r.get("operating_point"):
        x, y = r["operating_point"]
        ax.plot([x], [y], marker="D", color=OKABE_ITO["vermillion"], linestyle="none",
                label="at the audit threshold")
    ax.set_xlabel(f"false positive rate (not {r['positive']})")
    ax.set_ylabel(f"true positive rate ({r['positive']})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal", adjustable="box")
    ax.legend(loc="lower right", fontsize=8)
    alt = (f"ROC curve for {run['dataset']}, {r['positive']} as positive "
           f"({r['n_positive']} positive, {r['n_negative']} negative): area {r['auroc_curve']:.3f}.")
    return "ROC curve", alt, fig


def distributions(run: dict[str, Any]) -> tuple[str, str, Figure] | None:
    d = run.get("distributions")
    if not d or d.get("reason") or not d["series"]:
        return None
    fig, ax = _figure()
    edges = d["edges"]
    styles = ["-", "--", ":", "-."]
    for k, (name, counts) in enumerate(d["series"].items()):
        ax.stairs(counts, edges, color=SERIES[k % len(SERIES)], linestyle=styles[k % 4], lw=1.6,
                  label=f"{name} (n={sum(counts)})")
    if run["threshold"] is not None:
        ax.axvline(run["threshold"], color="#555555", lw=1, label="threshold")
    ax.set_xlabel(d["x_label"])
    ax.set_ylabel("examples")
    ax.legend(fontsize=8)
    parts = ", ".join(f"{name} {sum(c)}" for name, c in d["series"].items())
    alt = (f"Histograms of scores for {run['dataset']} on {len(edges) - 1} shared bins from "
           f"{edges[0]:.3g} to {edges[-1]:.3g}: {parts}.")
    return "Score distributions", alt, fig


def rewards(run: dict[str, Any]) -> tuple[str, str, Figure] | None:
    h = run.get("reward_histogram")
    if not h or not h.get("counts"):
        return None
    fig, ax = _figure()
    ax.stairs(h["counts"], h["edges"], fill=True, color=OKABE_ITO["sky"], alpha=0.6,
              hatch="//", edgecolor=SERIES[0])
    ax.axvline(run["threshold"], color=OKABE_ITO["vermillion"], linestyle="--", lw=1,
               label="threshold")
    ax.set_xlabel("reward per demonstration state")
    ax.set_ylabel("states")
    ax.legend(fontsize=8)
    o = run["overall"]
    alt = (f"Histogram of the reward over {o.get('n_states')} demonstration states of "
           f"{run['dataset']}: median {o.get('p50'):.3f}, 5th percentile {o.get('p05'):.3f}, "
           f"threshold {run['threshold']:g}.")
    return "Reward over demonstration states", alt, fig


_DRAWERS: list[tuple[str, Callable[[dict[str, Any]], tuple[str, str, Figure] | None]]] = [
    ("categories", categories), ("calibration", calibration), ("roc", roc),
    ("distributions", distributions), ("rewards", rewards)]
