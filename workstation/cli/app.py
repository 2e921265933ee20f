"""The safety oracle, the window and the demo."""

from __future__ import annotations

import json
import sys

from workstation.cli.common import (Commands, Output, open_workspace, workspace_path)


def cmd_oracle(args, out: Output) -> None:
    from workstation.models.registry import resolve
    from workstation.oracle import Policy, SafetyOracle, check_queries, read_queries

    policy = Policy(block_below=args.block_below, max_uncertainty=args.max_uncertainty,
                    max_coverage=args.max_coverage)
    items = read_queries(args.input)
    with open_workspace(args) as ws:
        # Every input is checked before the oracle is built, which records
        # pending coverage runs in the workspace: a refused query writes nothing.
        version = resolve(ws, args.model)
        check_queries(items, version.input_kind, version.manifest["input"].get("obs_dim"))
        oracle = SafetyOracle.from_workspace(ws, args.model, policy=policy)
    if args.save_bundle:
        oracle.save(args.save_bundle)
    out.done()
    for start in range(0, len(items), 256):  # answers stream out in batches
        for answer in oracle.query(items[start:start + 256], first=start + 1):
            print(json.dumps(answer, ensure_ascii=False))
        sys.stdout.flush()


def cmd_gui(args, out: Output) -> None:
    from workstation.ui.app import run_gui

    path = workspace_path(args)
    raise SystemExit(run_gui(path))


def cmd_demo(args, out: Output) -> None:
    from workstation.demo import build_demo, default_demo_path

    path = workspace_path(args) or default_demo_path()
    report = build_demo(path, progress=out.progress(), overwrite=args.overwrite)
    out.result(report.to_json(), "demo workspace ready at " + str(report.path) + ": " +
               ", ".join(report.models) + (("; " + "; ".join(report.notes)) if report.notes else ""))
    if not args.no_gui:
        from workstation.ui.app import run_gui

        raise SystemExit(run_gui(str(report.path)))


def register(cli: Commands) -> None:
    add = cli.add
    p = add("oracle", cmd_oracle, "answer safety-oracle queries (JSON lines in, JSON lines out)")
    p.add_argument("--model", required=True, metavar="MODEL@V")
    p.add_argument("input", nargs="?", default="-", metavar="FILE|-",
                   help="JSON lines ({\"prompt\", \"response\"}, {\"chosen\", \"rejected\"} or "
                        "{\"obs\": [...]}) or plain text lines; - or nothing for stdin")
    p.add_argument("--block-below", type=float,
                   help="block below this score (default: the model's threshold)")
    p.add_argument("--max-uncertainty", type=float, default=0.25,
                   help="escalate above this uncertainty (default 0.25)")
    p.add_argument("--max-coverage", type=float, default=0.8,
                   help="escalate above this coverage value, i.e. too little audited nearby "
                        "(default 0.8)")
    p.add_argument("--save-bundle", metavar="FOLDER",
                   help="also write a self-contained oracle bundle (no workspace needed)")

    add("gui", cmd_gui, "open the desktop workstation (the default with no command)")

    p = add("demo", cmd_demo, "build a demo workspace (shipped data, a first model, audits) "
                              "and open it")
    p.add_argument("--no-gui", action="store_true", help="build it, do not open the window")
    p.add_argument("--overwrite", action="store_true", help="replace the file if it exists")
