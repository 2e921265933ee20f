"""The desktop GUI (PySide6 + pyqtgraph): a thin layer over the core.

Nothing here re-implements core logic; widgets show core state and call
core functions, long ones as background jobs.
"""
