"""Agreement between analysts, and between each analyst and the model.

The items are a dataset's examples that two or more analysts gave their own
value of one judgement field (label, flipped or category; each analyst's
current value, workstation.review_state). Figures:

- ``percent_agreement``: agreeing pairs of analysts on the same item, over
  all such pairs, in percent (with two analysts: the share of items on which
  they agree);
- ``krippendorff_alpha``: nominal (the ``krippendorff`` package, level
  passed explicitly: its default is interval), over every analyst's value of
  every item;
- ``cohen_kappa`` for each pair of analysts, over the items both labelled;
- the same per category (the category in force), and each analyst's
  agreement with the model's verdict in the newest audit run of the dataset
  (label: the model's safe/unsafe; flipped: whether the model prefers the
  imported rejected reply).

Each figure comes with a bootstrap 95% CI (items resampled with replacement,
percentiles 2.5 and 97.5, a fixed seed). A figure that cannot be computed
(no items, or no variation for a chance-corrected one) is None.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from workstation.conflicts import dataset_id
from workstation.errors import WorkstationError
from workstation.review_state import JUDGEMENTS
from workstation.workspace import Workspace

N_BOOT = 1000
SEED = 0


@dataclass
class Ratings:
    """The label matrix: one row per analyst, one column per item (NaN: not labelled)."""

    keys: list[str]
    names: dict[str, str]
    items: list[int]
    categories: list[str | None]
    codes: np.ndarray             # analysts x items, float, values coded 0..k-1
    values: list[Any]             # code -> value

    def subset(self, columns: np.ndarray) -> "Ratings":
        return Ratings(self.keys, self.names, [self.items[c] for c in columns],
                       [self.categories[c] for c in columns], self.codes[:, columns],
                       self.values)


@dataclass
class Figure:
    value: float | None
    ci: tuple[float, float] | None

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "ci95": None if self.ci is None else list(self.ci)}


@dataclass
class AgreementReport:
    dataset: str
    field: str
    n_items: int
    n_analysts: int
    analysts: list[dict[str, str]]
    percent_agreement: Figure
    krippendorff_alpha: Figure
    cohen_kappa: list[dict[str, Any]]
    per_category: list[dict[str, Any]] = field(default_factory=list)
    model_agreement: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "field": self.field, "n_items": self.n_items,
                "n_analysts": self.n_analysts, "analysts": self.analysts,
                "percent_agreement": self.percent_agreement.to_json(),
                "krippendorff_alpha": self.krippendorff_alpha.to_json(),
                "cohen_kappa": self.cohen_kappa, "per_category": self.per_category,
                "model_agreement": self.model_agreement}


# -- the statistics ------------------------------------------------------------

def percent_agreement(codes: np.ndarray) -> float | None:
    """Agreeing pairs over all pairs of analysts who labelled the same item, in percent."""
    agree = pairs = 0
    for column in codes.T:
        held = column[~np.isnan(column)]
        if len(held) < 2:
            continue
        counts = np.unique(held, return_counts=True)[1]
        agree += int((counts * (counts - 1) // 2).sum())
        pairs += len(held) * (len(held) - 1) // 2
    return None if pairs == 0 else 100.0 * agree / pairs


def krippendorff_alpha(codes: np.ndarray, n_values: int) -> float | None:
    """Nominal Krippendorff's alpha (None when it is undefined: fewer than two
    pairable values, or a single value used throughout)."""
    import krippendorff

    pairable = (~np.isnan(codes)).sum(axis=0) >= 2
    if pairable.sum() == 0 or len(np.unique(codes[:, pairable][~np.isnan(
            codes[:, pairable])])) < 2:
        return None
    value = krippendorff.alpha(reliability_data=codes[:, pairable], level_of_measurement="nominal",
                               value_domain=list(range(max(n_values, 2))))
    return None if not np.isfinite(value) else float(value)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two raters over the items both rated (None if undefined)."""
    both = ~np.isnan(a) & ~np.isnan(b)
    a, b = a[both], b[both]
    if len(a) == 0:
        return None
    observed = float(np.mean(a == b))
    values = np.union1d(a, b)
    expected = float(sum(np.mean(a == v) * np.mean(b == v) for v in values))
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def bootstrap(statistic: Callable[[np.ndarray], float | None], n_items: int,
              n_boot: int = N_BOOT, seed: int = SEED) -> tuple[float, float] | None:
    """Percentile 95% interval of ``statistic(columns)`` over item resamples."""
    if n_items == 0:
        return None
    rng = np.random.default_rng(seed)
    draws = [statistic(rng.integers(0, n_items, n_items)) for _ in range(n_boot)]
    kept = np.array([d for d in draws if d is not None], dtype=float)
    if len(kept) < n_boot // 2:
        return None
    low, high = np.percentile(kept, [2.5, 97.5])
    return (float(low), float(high))


# -- the label matrix ------------------------------------------------------------

def ratings(ws: Workspace, dataset: str, field_name: str = "label") -> Ratings:
    """Every analyst's own value of ``field_name`` on the dataset's examples
    that two or more analysts labelled."""
    if field_name not in JUDGEMENTS:
        raise WorkstationError(f"agreement is measured on {', '.join(JUDGEMENTS)}, "
                               f"not '{field_name}'")
    rows = ws.execute(
        "SELECT a.example_id, a.key_id, a.analyst, a.value, ce.current_category "
        "FROM analyst_labels a JOIN current_examples ce ON ce.id = a.example_id "
        "WHERE ce.dataset_id = ? AND a.field = ? ORDER BY a.example_id, a.key_id",
        [dataset_id(ws, dataset), field_name]).fetchall()
    names = {key: name for _, key, name, _, _ in rows}
    keys = sorted(names, key=lambda k: (names[k], k))
    per_item: dict[int, dict[str, Any]] = {}
    category: dict[int, str | None] = {}
    for example_id, key, _, value, cat in rows:
        per_item.setdefault(example_id, {})[key] = json.loads(value)
        category[example_id] = cat
    items = [i for i, held in per_item.items() if len(held) >= 2]
    values = sorted({json.dumps(v) for i in items for v in per_item[i].values()})
    code = {v: k for k, v in enumerate(values)}
    codes = np.full((len(keys), len(items)), np.nan)
    for c, item in enumerate(items):
        for r, key in enumerate(keys):
            if key in per_item[item]:
                codes[r, c] = code[json.dumps(per_item[item][key])]
    return Ratings(keys, names, items, [category[i] for i in items], codes,
                   [json.loads(v) for v in values])


# -- the report ------------------------------------------------------------------

def agreement(ws: Workspace, dataset: str, field_name: str | None = None, *,
              n_boot: int = N_BOOT, seed: int = SEED) -> AgreementReport:
    """Agreement figures of a dataset's analysts on one judgement field
    (default: ``flipped`` for a pairs dataset, ``label`` for the others)."""
    if field_name is None:
        kind = ws.execute("SELECT kind FROM datasets WHERE id = ?",
                          [dataset_id(ws, dataset)]).fetchall()[0][0]
        field_name = "flipped" if kind == "pairs" else "label"
    r = ratings(ws, dataset, field_name)
    overall = _figures(r, n_boot, seed)
    per_category = []
    for cat in sorted({c for c in r.categories}, key=lambda c: (c is None, c or "")):
        columns = np.array([k for k, c in enumerate(r.categories) if c == cat], dtype=int)
        sub = r.subset(columns)
        per_category.append({"category": cat, "n_items": len(sub.items),
                             **_figures(sub, n_boot, seed)})
    return AgreementReport(
        dataset, field_name, len(r.items), len(r.keys),
        [{"key_id": k, "analyst": r.names[k]} for k in r.keys],
        overall["percent_agreement_fig"], overall["krippendorff_alpha_fig"],
        overall["cohen_kappa"], [_flat(p) for p in per_category],
        model_agreement(ws, dataset, field_name, n_boot=n_boot, seed=seed))


def _figures(r: Ratings, n_boot: int, seed: int) -> dict[str, Any]:
    n = len(r.items)
    k = len(r.values)
    pa = Figure(percent_agreement(r.codes),
                bootstrap(lambda idx: percent_agreement(r.codes[:, idx]), n, n_boot, seed))
    alpha = Figure(krippendorff_alpha(r.codes, k),
                   bootstrap(lambda idx: krippendorff_alpha(r.codes[:, idx], k), n, n_boot,
                             seed))
    kappas = []
    for (i, a), (j, b) in itertools.combinations(enumerate(r.keys), 2):
        x, y = r.codes[i], r.codes[j]
        both = int((~np.isnan(x) & ~np.isnan(y)).sum())
        if both == 0:
            continue
        fig = Figure(cohen_kappa(x, y),
                     bootstrap(lambda idx: cohen_kappa(x[idx], y[idx]), n, n_boot, seed))
        kappas.append({"a": a, "b": b, "analyst_a": r.names[a], "analyst_b": r.names[b],
                       "n_items": both, **fig.to_json()})
    return {"percent_agreement_fig": pa, "krippendorff_alpha_fig": alpha,
            "cohen_kappa": kappas}


def _flat(entry: dict[str, Any]) -> dict[str, Any]:
    return {"category": entry["category"], "n_items": entry["n_items"],
            "percent_agreement": entry["percent_agreement_fig"].to_json(),
            "krippendorff_alpha": entry["krippendorff_alpha_fig"].to_json(),
            "cohen_kappa": entry["cohen_kappa"]}


def model_agreement(ws: Workspace, dataset: str, field_name: str, *, n_boot: int = N_BOOT,
                    seed: int = SEED) -> dict[str, Any] | None:
    """Each analyst's agreement with the verdicts of the dataset's newest audit
    run (None for category, or without a run)."""
    if field_name == "category":
        return None
    run = ws.execute("SELECT id, model_version_id FROM audit_runs WHERE kind = 'audit' AND "
                     "dataset_id = ? ORDER BY id DESC LIMIT 1",
                     [dataset_id(ws, dataset)]).fetchall()
    if not run:
        return None
    run_id = run[0][0]
    rows = ws.execute(
        "SELECT a.key_id, a.analyst, a.value, r.passed = r.label FROM analyst_labels a "
        "JOIN audit_results r ON r.example_id = a.example_id AND r.run_id = ? "
        "WHERE a.field = ? AND r.label IS NOT NULL ORDER BY a.key_id, a.example_id",
        [run_id, field_name]).fetchall()
    per: dict[str, dict[str, Any]] = {}
    for key, name, value, model_keeps in rows:
        # passed == label at audit: the model holds the imported side (pairs) / predicts safe
        model = ("safe" if model_keeps else "unsafe") if field_name == "label" \
            else not model_keeps
        entry = per.setdefault(key, {"key_id": key, "analyst": name, "hits": []})
        entry["hits"].append(json.loads(value) == model)
    analysts = []
    for entry in per.values():
        hits = np.array(entry.pop("hits"), dtype=float)
        fig = Figure(float(hits.mean()) * 100.0,
                     bootstrap(lambda idx: float(hits[idx].mean()) * 100.0, len(hits), n_boot,
                               seed))
        analysts.append({**entry, "n_items": len(hits), "percent_agreement": fig.to_json()})
    return {"run_id": run_id, "model_version_id": run[0][1], "analysts": analysts}
