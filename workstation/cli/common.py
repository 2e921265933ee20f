"""What every command group of the CLI shares: the parser that fails in one
line, the output (text or one JSON object, and the progress bar), opening
the workspace, and small argument parsers."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from workstation.errors import WorkstationError

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(WorkstationError):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line, not usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


class Commands:
    """Where a command group registers its sub-commands (see ``register`` in
    each module of this package)."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser) -> None:
        self.sub = sub
        self.common = common

    def add(self, name: str, func: Callable, help: str, parent: Any = None
            ) -> argparse.ArgumentParser:
        """A sub-command ``name`` that runs ``func(args, out)``."""
        p = (parent or self.sub).add_parser(name, help=help, parents=[self.common],
                                            description=help)
        p.set_defaults(func=func)
        return p

    def group(self, name: str, help: str) -> Any:
        """A command with actions of its own (``workstation NAME ACTION``)."""
        p = self.sub.add_parser(name, help=help, parents=[self.common])
        return p.add_subparsers(dest=f"{name.replace('-', '_')}_command", metavar="ACTION",
                                parser_class=Parser, required=True)


# -- output ----------------------------------------------------------------

class Output:
    """Prints results for humans or as one JSON object, and owns the progress bar."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.bar = None

    def progress(self):
        from workstation.progress import Progress, TerminalBar

        if self.as_json or not sys.stderr.isatty():
            return Progress()
        self.bar = TerminalBar()
        return Progress(self.bar)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def result(self, payload: dict[str, Any], text: str | Callable[[], str]) -> None:
        self.done()
        if self.as_json:
            print(json.dumps(payload, ensure_ascii=False, default=str))
        else:
            print(text() if callable(text) else text)


def refuse_passphrase_values(argv: list[str]) -> None:
    """A passphrase is never a command-line value: refuse ``--passphrase X``,
    ``--password=X`` and the like (argparse would take an abbreviation for
    --passphrase-file, or echo the value in its error) without echoing it."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name.startswith("--pass") and name != "--passphrase-file":
            raise UsageError("a passphrase is never given on the command line: use "
                             "--passphrase-file FILE or set WORKSTATION_PASSPHRASE_FILE")


def acting_signer(args: argparse.Namespace) -> Any:
    """The identity this command acts as (``--identity`` or the current one),
    unlocked once as the process's session signer; a one-line error saying
    how to create or unlock one otherwise."""
    from workstation import identity

    return identity.unlock_session(None, args.passphrase_file)


def exit_failed(message: str) -> None:
    """A check that ran and found a problem: its report is on stdout; one line on stderr."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_ERROR)


def fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# -- workspace -------------------------------------------------------------

def workspace_path(args: argparse.Namespace) -> str | None:
    """The workspace named by --workspace or $WORKSTATION_WORKSPACE, if any."""
    return args.workspace or os.environ.get("WORKSTATION_WORKSPACE")


@contextmanager
def open_workspace(args: argparse.Namespace, read_only: bool = False) -> Iterator[Any]:
    from workstation.workspace import NeedsUpgrade, Workspace

    path = workspace_path(args)
    if not path:
        raise UsageError("no workspace given: pass --workspace PATH (or set WORKSTATION_WORKSPACE)")
    try:
        ws = Workspace.open(path, read_only=read_only or args.read_only)
    except NeedsUpgrade:
        if args.read_only:
            raise
        # Read-only by our choice, not the analyst's: upgrade it (with a backup) instead.
        ws = Workspace.open(path)
    try:
        _say_if_upgraded(ws)
        from workstation.encoder_variants import use_workspace_encoder

        use_workspace_encoder(ws)  # the encoder this workspace chose (fp32 or int8)
        yield ws
    finally:
        ws.close()


def _say_if_upgraded(ws: Any) -> None:
    """One line on stderr when opening migrated the file: where the old one
    went; and one more when backups still hold the old workspace private key."""
    backup = getattr(ws, "migration_backup", None)
    if backup is None:
        return
    old = next((v for v in range(ws.schema_version) if ws.backup_path(v) == backup), "?")
    print(f"upgraded workspace schema v{old} -> v{ws.schema_version}; "
          f"the old file is backed up at {backup}", file=sys.stderr)
    if ws.key_backups:
        print(f"the workspace no longer holds its old private signing key (releases are now "
              f"signed by identities), but earlier backups still do: "
              f"{', '.join(str(b) for b in ws.key_backups)}; delete them once you no longer "
              f"need them", file=sys.stderr)


# -- small argument parsers -----------------------------------------------

def param(text: str) -> tuple[str, Any]:
    """NAME=VALUE, the value read as JSON when it is JSON (``--param``)."""
    if "=" not in text:
        raise UsageError(f"--param takes NAME=VALUE, not '{text}'")
    name, value = text.split("=", 1)
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def ids(text: str | None) -> list[int] | None:
    """Comma-separated example ids, or None."""
    if not text:
        return None
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UsageError(f"expected comma-separated example ids, not '{text}'") from None
