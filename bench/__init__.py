"""Benchmarks: each ``bench_*.py`` runs on its own (``python bench/bench_audit.py``);
``python -m bench`` runs them all and prints one line each plus the scale table."""
