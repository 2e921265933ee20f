"""The `workstation` command: wiring only.

Every sub-command opens the workspace, calls one core function and prints
its result, as text or (with --json) as exactly one JSON object on stdout.
Errors print one line on stderr and exit non-zero; --debug shows the
traceback. Core modules are imported inside the commands so that start-up
stays fast and never imports torch. Each command group lives in a module of
this package and registers its sub-commands in ``register``.
"""

from __future__ import annotations

import argparse
import json
import sys

from workstation import __version__
from workstation.cli import (app, audits, data, identity, models, releases, report, review,
                             scale, team, trust)
from workstation.cli.common import (EXIT_ERROR, EXIT_USAGE, Commands, Output, Parser,
                                    UsageError, refuse_passphrase_values, workspace_path)
from workstation.errors import WorkstationError

# The command groups, in the order `workstation --help` lists them.
GROUPS = (data, models, audits, review, team, releases, report, identity, trust, scale, app)


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--workspace", "-w", metavar="PATH", default=argparse.SUPPRESS,
                        help="the workspace file (default: $WORKSTATION_WORKSPACE)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print exactly one JSON object on stdout")
    common.add_argument("--read-only", action="store_true", default=argparse.SUPPRESS,
                        help="open the workspace read-only")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    common.add_argument("--identity", metavar="NAME", default=argparse.SUPPRESS,
                        help="act as this identity (default: the one `identity use` chose)")
    common.add_argument("--passphrase-file", metavar="FILE", default=argparse.SUPPRESS,
                        help="read the identity's passphrase from FILE (default: "
                             "$WORKSTATION_PASSPHRASE_FILE, else ask on the terminal)")

    parser = Parser(prog="workstation", parents=[common],
                    description="Audit, repair and release reward models, offline.")
    parser.add_argument("--version", action="version", version=f"workstation {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands = Commands(sub, common)
    for group in GROUPS:
        group.register(commands)
    return parser


DEFAULTS = {"workspace": None, "json": False, "read_only": False, "debug": False,
            "identity": None, "passphrase_file": None}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_json = "--json" in argv
    debug = "--debug" in argv
    from workstation import identity as identities

    # One command acts as one identity, unlocked at most once (common.acting_signer);
    # the process's previous session (a test's, an embedding program's) comes back after.
    session = identities.session_signer()
    try:
        refuse_passphrase_values(argv)
        args = build_parser().parse_args(argv)
        for key, value in DEFAULTS.items():
            if not hasattr(args, key):
                setattr(args, key, value)
        identities.select(args.identity)
        if getattr(args, "command", None) is None:
            from workstation.ui.app import run_gui

            return run_gui(workspace_path(args))
        out = Output(args.json)
        try:
            args.func(args, out)
        finally:
            out.done()
        return 0
    except UsageError as exc:
        return _fail(exc, EXIT_USAGE, debug, as_json)
    except WorkstationError as exc:
        return _fail(exc, EXIT_ERROR, debug, as_json)
    except KeyboardInterrupt:
        print("\ninterrupted; nothing was changed", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # an unexpected fault: still one line unless --debug
        if debug:
            raise
        return _fail(WorkstationError(f"internal error: {type(exc).__name__}: {exc}"),
                     EXIT_ERROR, debug, as_json)
    finally:
        identities.select(None)
        identities.set_session_signer(session)


def _fail(exc: Exception, code: int, debug: bool, as_json: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"ok": False, "error": message}, ensure_ascii=False))
    return code
