"""Running the CLI in-process as a test does: one command with ``--json``."""

from __future__ import annotations

import json

from workstation.cli import main


def run(capsys, *args: str, ok: bool = True) -> dict:
    """The command's one JSON object; it must succeed (or, ``ok=False``, fail
    with one line on stderr, no traceback, kept as the payload's ``error``)."""
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    payload = json.loads(captured.out)  # exactly one JSON object on stdout
    assert (code == 0) == ok, captured.err
    if not ok:
        assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
        payload["error"] = captured.err.strip()
    return payload
