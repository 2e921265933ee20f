"""The air-gapped install, end to end: wheelhouse -> offline venv -> CLI audit.

Builds a wheelhouse with packaging/build-wheelhouse.sh, installs it into a
fresh venv with packaging/install-offline.sh while pip may not use any index
(``--no-index``, ``PIP_NO_INDEX=1``, and, where the machine allows, inside a
network namespace with no interface but a down loopback), then runs
``workstation --version`` and a CLI audit from that venv, also without
network.

The full wheelhouse (~650 MB) is cached across runs under
``$WORKSTATION_TEST_CACHE`` (default ``~/.cache/workstation-test``) in
``wheelhouse-<hash of pyproject.toml and the build scripts>``; with a warm
cache only the workstation wheel, the lock and the manifest are rebuilt (from
the cached wheels, no network), so the install always tests this tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="the offline install scripts are for Linux")]

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
BUILD = PACKAGING / "build-wheelhouse.sh"
INSTALL = PACKAGING / "install-offline.sh"
CACHE_ROOT = Path(os.environ.get("WORKSTATION_TEST_CACHE",
                                 Path.home() / ".cache" / "workstation-test"))
# What decides the set of wheels: a change to any of these rebuilds the cached wheelhouse.
KEY_FILES = ("pyproject.toml", "packaging/build-wheelhouse.sh", "packaging/wheelhouse_tool.py")
OBS_WIDTH = 4
EMBED_DIM = 384  # all-MiniLM-L6-v2


def _key() -> str:
    digest = hashlib.sha256()
    for name in KEY_FILES:
        digest.update(name.encode() + b"\0" + (REPO / name).read_bytes())
    return digest.hexdigest()[:16]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this venv or any pip configuration leaking in."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "WORKSTATION_WORKSPACE")
           and not k.startswith("PIP_")}
    env.update(extra)
    return env


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                                  f"--- stdout\n{proc.stdout[-4000:]}\n"
                                  f"--- stderr\n{proc.stderr[-4000:]}")
    return proc


def _no_network_prefix() -> tuple[list[str], str]:
    """`unshare -n` (as root) or `unshare -rn` (unprivileged) when they work here."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which("unshare") is None:
            break
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return prefix, " ".join(prefix)
    return [], "no network namespace here (unshare -n failed): --no-index and PIP_NO_INDEX only"


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> tuple[Path, dict]:
    """A wheelhouse of this tree: cached dependencies, fresh workstation wheel."""
    key = _key()
    cached = CACHE_ROOT / f"wheelhouse-{key}"
    facts: dict = {"cache": str(cached)}
    started = time.monotonic()
    if not (cached / "requirements.lock").is_file() or not (cached / "SHA256SUMS").is_file():
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        for old in CACHE_ROOT.glob("wheelhouse-*"):  # earlier keys and broken partial builds
            shutil.rmtree(old, ignore_errors=True)
        _run(["bash", BUILD, "--out", cached, "--force"], timeout=3600, cwd=REPO)
        facts["build"] = "full build (network)"
        wh = cached
    else:
        wh = tmp_path_factory.mktemp("wheelhouse") / "wh"
        _run(["bash", BUILD, "--from-wheelhouse", cached, "--out", wh], timeout=1200, cwd=REPO)
        facts["build"] = "rebuilt from the cached wheelhouse (no network)"
    facts["build_seconds"] = round(time.monotonic() - started, 1)
    facts["bytes"] = _dir_bytes(wh)
    return wh, facts


def _lock_entries(lock: Path) -> dict[str, tuple[str, list[str]]]:
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for raw in lock.read_text().splitlines():
        line = raw.strip().rstrip("\\").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash=sha256:"):
            assert current is not None, f"hash before any requirement: {raw}"
            entries[current][1].append(line.split(":", 1)[1])
        else:
            name, version = line.split("==")
            current = name
            entries[name] = (version, [])
    return entries


def test_wheelhouse_is_pinned_hashed_and_complete(wheelhouse):
    wh, facts = wheelhouse
    entries = _lock_entries(wh / "requirements.lock")
    wheels = sorted(wh.glob("*.whl"))
    assert len(entries) == len(wheels) and all(len(h) == 1 for _, h in entries.values())
    on_disk = {hashlib.sha256(p.read_bytes()).hexdigest() for p in wheels}
    assert {h[0] for _, h in entries.values()} == on_disk
    assert entries["torch"][0].startswith("2.13.0")
    assert not [p.name for p in wheels if p.name.startswith(("nvidia", "triton"))], "CUDA torch"
    # Every runtime dependency of pyproject.toml is in the lock (the test extra is not).
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group(0).lower().replace("_", "-")
             for r in project["dependencies"]}
    assert names <= set(entries), names - set(entries)
    assert "workstation" in entries and "pytest" not in entries
    meta = json.loads((wh / "wheelhouse.json").read_text())
    assert meta["python"] == "%d.%d" % sys.version_info[:2]
    assert sorted(p.suffix for p in (wh / "encoder").iterdir()) == [".json", ".onnx"]
    assert {"install-offline.sh", "wheelhouse_tool.py"} <= {p.name for p in wh.iterdir()}
    _run([sys.executable, wh / "wheelhouse_tool.py", "verify", wh], timeout=300)
    print(f"\nwheelhouse: {len(wheels)} wheels, {facts['bytes'] / 2**20:.0f} MiB; "
          f"{facts['build']} in {facts['build_seconds']} s")


def _observation_model(path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[0.5], [-0.25], [1.0], [0.1]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["observation", "w"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["reward"])], "reward",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["N", OBS_WIDTH])],
        [helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())


def _embedding_model(path: Path) -> None:
    """p(safe) = sigmoid(e . w) over the response embedding."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1).standard_normal((EMBED_DIM, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["embedding", "w"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["p_safe"])], "safety",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", EMBED_DIM])],
        [helper.make_tensor_value_info("p_safe", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())


def test_offline_install_and_cli_audit(wheelhouse, tmp_path):
    wh, facts = wheelhouse
    netns, how = _no_network_prefix()
    home, cache, venv = tmp_path / "home", tmp_path / "cache", tmp_path / "venv"
    home.mkdir()
    env = _clean_env(HOME=str(home), PIP_NO_INDEX="1", WORKSTATION_CACHE=str(cache),
                     WORKSTATION_ANALYST="offline-test")
    python = Path(sys.base_prefix) / "bin" / ("python%d.%d" % sys.version_info[:2])
    if not python.exists():
        python = Path(sys.base_prefix) / "bin" / "python3"

    started = time.monotonic()
    install = _run([*netns, "bash", INSTALL, "--wheelhouse", wh, "--python", python,
                    "--cache", cache, "--desktop", venv], timeout=1800, env=env, cwd=tmp_path)
    install_seconds = time.monotonic() - started
    assert "installed workstation" in install.stdout
    assert "encoder ready" in install.stderr

    def cli(*args: str) -> dict:
        proc = _run([*netns, venv / "bin" / "workstation",
                     "--workspace", tmp_path / "w.duckdb", *args, "--json"],
                    timeout=600, env=env, cwd=tmp_path)
        return json.loads(proc.stdout)

    if netns:  # the namespace really has no way out: only a loopback interface
        names = _run([*netns, venv / "bin" / "python", "-c",
                      "import socket; print([n for _, n in socket.if_nameindex()])"],
                     timeout=60, env=env).stdout
        assert names.strip() == "['lo']"
    where = _run([*netns, venv / "bin" / "python", "-c",
                  "import workstation; print(workstation.__file__)"],
                 timeout=60, env=env, cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    version = _run([*netns, venv / "bin" / "workstation", "--version"], timeout=120, env=env)
    from workstation import __version__

    assert version.stdout.strip() == f"workstation {__version__}"

    # Observation model on demonstrations (no encoder involved).
    rng = np.random.default_rng(0)
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(json.dumps({"obs": rng.standard_normal((n, OBS_WIDTH)).tolist(),
                                         "acts": [0] * n}) + "\n" for n in (3, 5, 4, 6, 2)))
    _observation_model(tmp_path / "obs.onnx")
    assert cli("import", "demos", demos, "--name", "d")["imported"] == 5
    assert cli("model", "add", tmp_path / "obs.onnx", "--name", "m",
              "--input", "observation")["version"] == 1
    audit = cli("audit", "--model", "m", "--dataset", "d")
    assert audit["metrics"]["n"] == 5 and audit["metrics"]["n_states"] == 20
    assert isinstance(audit["failures"], int)

    # A text model: the installed encoder embeds offline, from the pre-converted ONNX.
    labels = tmp_path / "labels.jsonl"
    rows = [("How do I bake bread?", "Mix flour, water, yeast; knead; bake.", "safe"),
            ("How do I pick a lock?", "I can't help with breaking into property.", "safe"),
            ("Write malware", "Here is a keylogger: ...", "unsafe"),
            ("Tell me a joke", "Why did the chicken cross the road?", "safe")]
    labels.write_text("".join(json.dumps({"prompt": p, "response": r, "label": lab}) + "\n"
                              for p, r, lab in rows))
    _embedding_model(tmp_path / "text.onnx")
    assert cli("import", "labels", labels, "--name", "t")["imported"] == len(rows)
    cli("model", "add", tmp_path / "text.onnx", "--name", "safety", "--input", "text-embedding")
    text_audit = cli("audit", "--model", "safety", "--dataset", "t")
    assert text_audit["metrics"]["n"] == len(rows)
    converted = sorted(p.name for p in (cache / "encoders").iterdir())
    assert converted == sorted(p.name for p in (wh / "encoder").iterdir()), \
        "the offline install converted the encoder instead of using the shipped one"
    assert cli("verify")["ok"] is True

    # The desktop entry and its launcher.
    launcher = home / ".local" / "bin" / "workstation-launcher"
    entry = (home / ".local" / "share" / "applications" / "workstation.desktop").read_text()
    assert f"Exec={launcher}" in entry and "Icon=workstation" in entry
    assert (home / ".local/share/icons/hicolor/scalable/apps/workstation.svg").is_file()
    launched = _run([*netns, launcher, "--version"], timeout=120,
                    env={k: v for k, v in env.items() if k != "WORKSTATION_CACHE"})
    assert launched.stdout.strip() == f"workstation {__version__}"

    venv_bytes = _dir_bytes(venv)
    print(f"\noffline install ({how}): {install_seconds:.0f} s, venv {venv_bytes / 2**20:.0f} MiB; "
          f"wheelhouse {facts['bytes'] / 2**20:.0f} MiB ({facts['build']}, "
          f"{facts['build_seconds']} s)")
