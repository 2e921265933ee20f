"""The core stays headless and light: no Qt, and no torch at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workstation"
# Only training code may import torch (the encoder's one-time conversion
# imports it inside a function, never at module import).
TORCH_ALLOWED = ("workstation.training",)
# Only the cluster path's Ray module may import ray (the optional `cluster` extra).
RAY_MODULE = "workstation.cluster.ray_run"


def _core_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if "ui" in parts or parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _imported_after(code: str) -> set[str]:
    probe = (code + "\nimport sys, json\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_core_modules_import_no_qt_and_no_torch_and_no_ray():
    modules = [m for m in _core_modules() if not m.startswith(TORCH_ALLOWED)
               and m != RAY_MODULE]
    assert "workstation.workspace" in modules and "workstation.review" in modules
    assert "workstation.cluster.homecoming" in modules
    loaded = _imported_after("\n".join(f"import {m}" for m in modules))
    assert not loaded & {"PySide6", "pyqtgraph", "pytestqt", "shiboken6"}, loaded
    assert "torch" not in loaded
    assert "ray" not in loaded


def test_only_the_cluster_run_module_imports_ray():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ray", "from ray")) and module != RAY_MODULE:
                offenders.append(f"{path.relative_to(REPO)}: {stripped}")
    assert offenders == []
    source = (PACKAGE / "cluster" / "ray_run.py").read_text()
    assert "\nimport ray" in source  # the rule above is about a module that exists


def test_identities_need_neither_the_workspace_nor_duckdb(tmp_path):
    """The identity folder is the analyst's, apart from any workspace."""
    loaded = _imported_after(
        "import os\n"
        f"os.environ['WORKSTATION_HOME'] = r'{tmp_path}'\n"
        "from workstation import identity\n"
        "made = identity.create('arch', 'a long passphrase')\n"
        "identity.unlock(made, 'a long passphrase').sign(b'x')")
    assert not loaded & {"duckdb", "PySide6", "torch", "pyarrow"}, loaded


def test_no_qt_import_statement_outside_ui():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "ui" in path.relative_to(PACKAGE).parts:
            continue
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import PySide6", "from PySide6", "import pyqtgraph",
                                    "from pyqtgraph")):
                offenders.append(f"{path.relative_to(REPO)}: {stripped}")
    assert offenders == []


def test_cli_start_and_a_command_do_not_import_torch(tmp_path):
    ws = tmp_path / "w.duckdb"
    loaded = _imported_after(
        "from workstation.cli import main\n"
        f"assert main(['--workspace', r'{ws}', 'undo', '--json']) == 1\n"
        f"assert main(['--workspace', r'{ws}', 'datasets', '--json']) == 0\n"
        f"assert main(['--workspace', r'{ws}', 'verify', '--json']) == 0")
    assert "torch" not in loaded
    assert "PySide6" not in loaded
    assert "ray" not in loaded


def test_the_window_makes_its_qsettings_in_one_place():
    # AppContext.settings() honours $WORKSTATION_SETTINGS, which keeps tests
    # away from the analyst's own settings; a QSettings made elsewhere would not.
    makers = sorted(str(path.relative_to(REPO)) for path in (PACKAGE / "ui").rglob("*.py")
                    if "QSettings(" in path.read_text())
    assert makers == ["workstation/ui/context.py"]
