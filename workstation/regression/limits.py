"""Limits the regression report and the release gate share (a module of its
own, so that the gate never imports the report it reads)."""

# Id lists in a report's JSON are cut here; their totals are always given.
ID_LIST_CAP = 1000
# Scores come from float32 models: a loss this close to the budget is within it.
BUDGET_SLACK = 1e-6
