"""Shared fixtures: real data from ../shared/data, and fresh workspaces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("WORKSTATION_ANALYST", "test-analyst")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WORKSTATION_SHARED_DATA", REPO.parent / "shared" / "data"))
HH_RLHF = SHARED_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"
JAILBREAKBENCH = SHARED_DATA / "jailbreakbench"
CARTPOLE = SHARED_DATA / "imitation-rollouts" / "cartpole_final.npz"


def require_data(path: Path) -> Path:
    """Return ``path``; in CI a missing file fails the test, elsewhere it skips."""
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real data missing in CI: {path}")
        pytest.skip(f"real data not found: {path}")
    return path


@pytest.fixture(autouse=True, scope="session")
def session_settings(tmp_path_factory) -> Path:
    """The window's QSettings (recent workspaces, geometry, analyst name) go to
    a file of this test session, never the developer's own; subprocesses
    started by tests inherit it through the environment."""
    path = tmp_path_factory.mktemp("settings") / "workstation.ini"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKSTATION_SETTINGS", str(path))
        yield path


@pytest.fixture
def hh_rlhf_path() -> Path:
    return require_data(HH_RLHF)


@pytest.fixture
def jailbreakbench_dir() -> Path:
    return require_data(JAILBREAKBENCH)


@pytest.fixture
def cartpole_path() -> Path:
    return require_data(CARTPOLE)


@pytest.fixture
def ws(tmp_path):
    """A fresh, empty workspace, closed after the test."""
    from workstation.workspace import Workspace

    workspace = Workspace.open(tmp_path / "ws.duckdb")
    yield workspace
    workspace.close()

