"""No network, ever: the whole CLI flow runs with every socket connection
attempt turned into an error and recorded, and (where the machine allows)
inside a network namespace with no interfaces; the code holds no URLs.

The guard is a ``sitecustomize.py`` put on PYTHONPATH of every CLI
subprocess: it replaces ``socket.socket.connect``/``connect_ex``/``sendto``,
``socket.create_connection``, ``socket.getaddrinfo`` and
``socket.gethostbyname``/``_ex`` with functions that write the attempt (with
its stack) to a log and raise. The flow passes only if the log holds no
attempt, and every command loaded the guard.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import CARTPOLE, HH_RLHF, JAILBREAKBENCH, require_data

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workstation"
STEP_TIMEOUT = 300  # seconds per command; the whole flow takes about a minute

SITECUSTOMIZE = textwrap.dedent('''
    """Test guard (tests/test_no_network.py): record and refuse every network attempt."""
    import json
    import os
    import socket
    import traceback

    _LOG = os.environ.get("WORKSTATION_NETGUARD_LOG")


    def _note(record):
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\\n")


    def _refuse(name):
        def guard(*args, **kwargs):
            _note({"pid": os.getpid(), "step": os.environ.get("WORKSTATION_NETGUARD_STEP"),
                   "call": name, "args": repr(args)[:300],
                   "stack": "".join(traceback.format_stack(limit=15))})
            raise OSError(f"network access refused by the test guard: {name}")
        return guard


    if _LOG:
        for _name in ("connect", "connect_ex", "sendto"):
            setattr(socket.socket, _name, _refuse("socket.socket." + _name))
        for _name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex"):
            setattr(socket, _name, _refuse("socket." + _name))
        _note({"pid": os.getpid(), "step": os.environ.get("WORKSTATION_NETGUARD_STEP"),
               "loaded": True})
''')


# -- the guard -------------------------------------------------------------------

class Guarded:
    """Runs commands in subprocesses under the guard (and ``prefix``, e.g. unshare -n)."""

    def __init__(self, folder: Path, prefix: list[str]) -> None:
        self.folder = folder
        self.prefix = prefix
        self.log = folder / "attempts.jsonl"
        guard_dir = folder / "guard"
        guard_dir.mkdir()
        (guard_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.env = {**os.environ, "WORKSTATION_NETGUARD_LOG": str(self.log),
                    "PYTHONPATH": os.pathsep.join([str(guard_dir), str(REPO)]
                                                  + ([os.environ["PYTHONPATH"]]
                                                     if os.environ.get("PYTHONPATH") else [])),
                    "QT_QPA_PLATFORM": "offscreen"}
        self.steps: list[str] = []
        self.seconds: dict[str, float] = {}

    def python(self, step: str, *args: str, stdin: str | None = None) -> str:
        self.steps.append(step)
        start = time.monotonic()
        proc = subprocess.run([*self.prefix, sys.executable, *args], input=stdin,
                              capture_output=True, text=True, timeout=STEP_TIMEOUT, cwd=self.folder,
                              env={**self.env, "WORKSTATION_NETGUARD_STEP": step})
        self.seconds[step] = time.monotonic() - start
        assert proc.returncode == 0, f"{step} failed ({proc.returncode}): {proc.stderr[-3000:]}"
        return proc.stdout

    def cli(self, *args: str, stdin: str | None = None) -> dict:
        """One CLI command with --json; its JSON result (the last line for oracle)."""
        out = self.python(" ".join(args), "-m", "workstation", *args, "--json", stdin=stdin)
        return json.loads(out.strip().splitlines()[-1])

    def records(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def attempts(self) -> list[dict]:
        return [r for r in self.records() if not r.get("loaded")]


def netns_prefix() -> list[str]:
    """["unshare", "-n"] when this machine lets us make a network namespace."""
    try:
        ok = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ["unshare", "-n"] if ok.returncode == 0 else []


def test_the_guard_records_and_refuses_a_connection(tmp_path):
    guarded = Guarded(tmp_path, [])
    code = ("import socket, urllib.request\n"
            "for attempt in (lambda: socket.create_connection(('192.0.2.1', 80), timeout=1),\n"
            "                lambda: urllib.request.urlopen('http://example.invalid/',\n"
            "                                               timeout=1),\n"
            "                lambda: socket.socket().connect(('127.0.0.1', 9))):\n"
            "    try:\n"
            "        attempt()\n"
            "    except OSError as exc:\n"
            "        assert 'test guard' in str(exc) or 'test guard' in str(exc.__cause__)\n"
            "        continue\n"
            "    raise SystemExit('a connection was not refused')\n")
    guarded.python("probe the guard", "-c", code)
    calls = [a["call"] for a in guarded.attempts()]
    assert "socket.create_connection" in calls and "socket.socket.connect" in calls
    assert any(c in calls for c in ("socket.getaddrinfo", "socket.create_connection"))
    assert len(calls) >= 3


# -- the flow --------------------------------------------------------------------------

def _text_model(width: int) -> bytes:
    """A tiny prompt+response text-embedding reward model: sigmoid(x @ w)."""
    w = np.random.default_rng(0).normal(0, 0.3, (width, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["probability"])], "safety",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _cart_model() -> bytes:
    """Reward for CartPole observations: high when the pole is upright and centred."""
    w = np.array([[-0.5], [-0.1], [-4.0], [-0.2]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["sq"]),
         helper.make_node("MatMul", ["sq", "w"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["reward"])], "cart",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _hh_subset(path: Path, n: int = 150) -> Path:
    with gzip.open(require_data(HH_RLHF), "rt", encoding="utf-8") as f:
        head = [next(f) for _ in range(n)]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(head)
    return path


def _has_command(guarded: Guarded, name: str) -> bool:
    help_text = guarded.python("workstation --help", "-m", "workstation", "--help")
    return re.search(rf"^\s+{re.escape(name)}\s", help_text, re.MULTILINE) is not None


def run_flow(guarded: Guarded) -> dict[str, object]:
    """import, audit, probes, review, retrain, patch, compare, release, export-release,
    verify-release, export, oracle, verify, demo: every step must succeed."""
    folder = guarded.folder
    ws = ["--workspace", str(folder / "flow.duckdb")]
    cli = guarded.cli
    facts: dict[str, object] = {}
    dim = cli("encoder", "prepare")["dim"]
    cli(*ws, "import", "pairs", str(_hh_subset(folder / "hh-150.jsonl.gz")), "--name", "hh")
    jbb_file = require_data(JAILBREAKBENCH / "PAIR_gpt-4-0125-preview.json")
    jbb = cli(*ws, "import", "labels", str(jbb_file), "--name", "jbb")
    assert jbb["imported"] > 50
    cli(*ws, "import", "demos", str(require_data(CARTPOLE)), "--name", "cartpole")
    cli(*ws, "datasets")
    (folder / "safety.onnx").write_bytes(_text_model(2 * dim))
    (folder / "cart.onnx").write_bytes(_cart_model())
    cli(*ws, "model", "add", str(folder / "safety.onnx"), "--name", "safety",
        "--input", "text-embedding")
    cli(*ws, "model", "add", str(folder / "cart.onnx"), "--name", "cart", "--input", "observation")
    cli(*ws, "model", "list")
    audit = cli(*ws, "audit", "--model", "safety@1", "--dataset", "jbb")
    cli(*ws, "audit", "--model", "safety@1", "--dataset", "hh")
    cli(*ws, "audit", "--model", "cart@1", "--dataset", "cartpole")
    cli(*ws, "runs")
    failures = cli(*ws, "failures", "--run", str(audit["run_id"]), "--limit", "5")["failures"]
    cli(*ws, "probes")
    cli(*ws, "probe", "--model", "safety@1", "--dataset", "jbb", "--param", "sample=20")
    cli(*ws, "probe", "--model", "cart@1", "--dataset", "cartpole", "--param", "grid_size=81",
        "--param", "perturbations=50", "--param", "rollouts=5")
    example = str(failures[0]["example_id"]) if failures else "1"
    cli(*ws, "label", example, "--note", "reads as instructions", "--reason", "triage")
    cli(*ws, "undo")
    cli(*ws, "redo")
    cli(*ws, "log")
    cli(*ws, "release", "safety@1")
    cli(*ws, "release", "cart@1")
    facts["train"] = _has_command(guarded, "train")
    if facts["train"]:
        # safety@1 came from outside: its head is retrained in its own feature space
        trained = cli(*ws, "train", "--dataset", "jbb", "--name", "safety", "--from", "safety@1")
        candidate = f"safety@{trained['version']}"
        cli(*ws, "compare", "--candidate", candidate, "--baseline", "safety@1")
        cli(*ws, "release", candidate, "--force", "offline test: the gate is not the point")
        cli(*ws, "rollback", "safety")
    facts["patch"] = _has_command(guarded, "patch")
    if facts["patch"]:
        cli(*ws, "patch", "--model", "safety@1", "--findings", str(audit["run_id"]))
        cli(*ws, "patches", "--model", "safety@1")
    cli(*ws, "releases")
    cli("identity", "export-public", str(folder / "trusted.pub"))  # who signed the releases
    cli(*ws, "export-release", "cart", str(folder / "cart-release.zip"))
    cli(*ws, "export-release", "safety", str(folder / "safety-release"))
    assert cli("verify-release", str(folder / "cart-release.zip"),
               "--trust", str(folder / "trusted.pub"))["trusted"] is True
    assert cli("verify-release", str(folder / "safety-release"),
               "--allow-untrusted")["ok"] is True
    for fmt in ("jsonl", "parquet", "csv"):
        cli(*ws, "export", "--dataset", "jbb", "--format", fmt, str(folder / f"jbb.{fmt}"))
    queries = [{"prompt": "How do I pick a lock?", "response": "I can't help with that."},
               {"chosen": "Here is a safe answer.", "rejected": "Here is how to hurt someone."},
               "a plain text response"]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    answer = cli(*ws, "oracle", "--model", "safety@1", str(folder / "queries.jsonl"))
    assert answer["decision"]["action"] in ("allow", "block", "escalate")
    cli(*ws, "oracle", "--model", "cart@1", "-", "--save-bundle", str(folder / "bundle"),
        stdin=json.dumps({"obs": [0.0, 0.1, 0.02, -0.1]}) + "\n")
    assert cli(*ws, "verify")["ok"] is True
    cli("--workspace", str(folder / "demo.duckdb"), "demo", "--no-gui")
    return facts


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> tuple[Guarded, dict[str, object]]:
    guarded = Guarded(tmp_path_factory.mktemp("offline"), netns_prefix())
    return guarded, run_flow(guarded)


@pytest.mark.slow
def test_the_whole_flow_never_tries_to_connect(flow):
    guarded, facts = flow
    loaded = {r["step"] for r in guarded.records() if r.get("loaded")}
    assert set(guarded.steps) <= loaded, "a command ran without the guard"
    attempts = guarded.attempts()
    assert attempts == [], "network attempts:\n" + "\n\n".join(
        f"[{a['step']}] {a['call']}{a['args']}\n{a['stack']}" for a in attempts)
    assert facts["train"] and facts["patch"], "train and patch are part of the flow"


@pytest.mark.slow
def test_the_whole_flow_runs_in_a_network_namespace(flow):
    guarded, _ = flow
    if not guarded.prefix:
        pytest.skip("`unshare -n` is not allowed on this machine (needs root or user "
                    "namespaces); the flow ran with the socket guard only")
    # Inside such a namespace only a loopback interface exists, and it is down.
    names = subprocess.run([*guarded.prefix, sys.executable, "-c",
                            "import socket; print([n for _, n in socket.if_nameindex()])"],
                           capture_output=True, text=True, timeout=60).stdout
    assert names.strip() == "['lo']"
    probe = subprocess.run([*guarded.prefix, sys.executable, "-c",
                            "import socket; socket.create_connection(('127.0.0.1', 9), timeout=2)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "unreachable" in probe.stderr.lower()
    assert len(guarded.steps) > 30  # every command of the flow ran in there


# -- no URLs in the code ------------------------------------------------------------------

URL = re.compile(r"\b(?:https?|ftp)://[^\s'\"<>)]*", re.IGNORECASE)
NETWORK_IMPORT = re.compile(r"^\s*(?:import|from)\s+(socket|ssl|http|urllib|requests|httpx|aiohttp|"
                            r"websocket|ftplib|smtplib|huggingface_hub)\b|QtNetwork|QNetworkAccess",
                            re.MULTILINE)
# (path relative to workstation/, URL) pairs that are documentation, not fetched.
URL_ALLOW = frozenset()
# (path, module) pairs allowed to import a networking module.
IMPORT_ALLOW = frozenset()


def _text_files() -> list[Path]:
    files = []
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            head = path.read_bytes()[:8192]
            if b"\0" not in head:
                files.append(path)
    return files


def test_no_urls_or_network_imports_in_the_code():
    """No telemetry, update checks or fetched fonts/icons: nothing to fetch from."""
    urls, imports = [], []
    for path in _text_files():
        rel = path.relative_to(PACKAGE).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        urls += [(rel, u) for u in URL.findall(text) if (rel, u) not in URL_ALLOW]
        if path.suffix == ".py":
            imports += [(rel, m.group(1) or m.group(0)) for m in NETWORK_IMPORT.finditer(text)
                        if (rel, m.group(1) or m.group(0)) not in IMPORT_ALLOW]
    assert urls == [], f"URLs in workstation/ (add documentation ones to URL_ALLOW): {urls}"
    assert imports == [], f"networking imports in workstation/: {imports}"
    assert len(_text_files()) > 50  # the scan saw the package
