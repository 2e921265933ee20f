"""The real window on a real X server: `workstation --workspace W gui` under
Xvfb with Qt's xcb platform plugin, as on an analyst's desktop (the other GUI
tests run offscreen and never load that plugin or its system libraries), and
the table of system libraries that dev-setup.sh installs from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.x11_display import Window, XClient, Xvfb

REPO = Path(__file__).resolve().parents[1]
SYSTEM_LIBS = REPO / "packaging" / "system-libs.sh"
SCREENSHOTS = REPO / "tests" / "screenshots"
BACKGROUND = (0, 0, 0)  # Xvfb -br: a black root window


def _pyside_dir() -> Path:
    import PySide6

    return Path(PySide6.__file__).parent


def _system_libs(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SYSTEM_LIBS), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_every_library_the_xcb_window_loads_is_in_the_table_and_installed():
    found = _system_libs("linked", _pyside_dir())
    assert found.returncode == 0, found.stderr
    linked = {line.split()[0] for line in found.stdout.splitlines()}
    table = {line.split()[0] for line in _system_libs("table").stdout.splitlines()}
    assert {"libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"} <= linked
    assert linked - table == set(), ("add to packaging/system-libs.sh's table:\n" +
                                     _system_libs("derive", _pyside_dir()).stdout)
    check = _system_libs("check", _pyside_dir())
    assert check.returncode == 0, check.stderr + "\n(bash packaging/dev-setup.sh installs them)"
    assert "are present" in check.stdout


def test_the_check_fails_naming_a_library_it_cannot_find(tmp_path):
    """A plugin that needs a library this machine lacks: the setup must stop."""
    pyside = tmp_path / "PySide6"
    plugin = pyside / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    plugin.parent.mkdir(parents=True)
    (pyside / "Qt" / "lib").symlink_to(_pyside_dir() / "Qt" / "lib")
    data = (_pyside_dir() / "Qt" / "plugins" / "platforms" / "libqxcb.so").read_bytes()
    assert b"libxcb-icccm.so.4\0" in data
    plugin.write_bytes(data.replace(b"libxcb-icccm.so.4\0", b"libxcb-icccm.so.9\0"))
    check = _system_libs("check", tmp_path)
    assert check.returncode == 1
    assert "libxcb-icccm.so.9" in check.stderr and "cannot start" in check.stderr
    assert _system_libs("missing", tmp_path).stdout.strip() == ""  # no package known for it


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        message = f"{tool} is not installed (bash packaging/dev-setup.sh --test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def display(tmp_path):
    for tool in ("Xvfb", "xauth", "import"):
        _need(tool)
    server = Xvfb(tmp_path)
    yield server
    server.stop()


def _wait_until(condition, what: str, last=lambda: "", timeout: float = 120.0):
    """Poll ``condition`` until it returns something else than None; fail after ``timeout``
    (a guard against a hang, not a speed limit), showing ``last()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value is not None:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; last seen: {last()}")


def _app_log(app: subprocess.Popen, log: Path) -> str:
    return f"exit code {app.poll()}; its output:\n{log.read_text()[-4000:]}"


def _crop(screen: np.ndarray, window: Window) -> np.ndarray:
    return screen[max(window.y, 0):window.y + window.height,
                  max(window.x, 0):window.x + window.width]


def _colours(pixels: np.ndarray) -> int:
    return len(np.unique(pixels.reshape(-1, 3), axis=0))


@pytest.mark.slow
def test_main_window_opens_on_a_real_x_server_and_closes_cleanly(display, tmp_path):
    workspace = tmp_path / "review.duckdb"
    imported = subprocess.run(
        [sys.executable, "-m", "workstation", "--workspace", str(workspace), "--json", "import",
         "pairs", str(REPO / "resources" / "demo" / "pairs.jsonl"), "--name", "demo-pairs"],
        capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    rows = json.loads(imported.stdout)["imported"]

    settings = tmp_path / "settings.ini"  # a first start: no geometry saved by other tests
    env = {**os.environ, **display.env, "QT_QPA_PLATFORM": "xcb",
           "WORKSTATION_SETTINGS": str(settings)}
    env.pop("WAYLAND_DISPLAY", None)
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        app = subprocess.Popen([sys.executable, "-m", "workstation", "--workspace",
                                str(workspace), "gui"], env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    client = XClient(display.display, display.auth)
    try:
        seen: list[Window] = []

        def opened() -> Window | None:
            # Mapped, and titled for the workspace once it has opened it.
            if app.poll() is not None:
                pytest.fail("the window never opened: " + _app_log(app, log))
            seen[:] = client.windows_of(app.pid)
            return next((w for w in seen if w.title == "review.duckdb — Workstation"), None)

        window = _wait_until(opened, "the main window with the workspace", lambda: seen)
        assert window.width >= 800 and window.height >= 500, window

        shot = tmp_path / "screen.png"
        frames: list[np.ndarray] = []

        def drawn() -> np.ndarray | None:
            # Painted and settled: the window's pixels are not blank and two
            # screenshots in a row agree.
            frames.append(display.screenshot(shot))
            if len(frames) < 2 or _colours(_crop(frames[-1], window)) < 16:
                return None
            return frames[-1] if np.array_equal(frames[-1], frames[-2]) else None

        screen = _wait_until(drawn, "the window to be drawn")
        SCREENSHOTS.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / "real-window-xcb.png")

        inside = _crop(screen, window)
        outside = np.ones(screen.shape[:2], bool)
        outside[max(window.y, 0):window.y + window.height,
                max(window.x, 0):window.x + window.width] = False
        assert screen.shape[:2] == (display.size[1], display.size[0])
        assert outside.any() and (screen[outside] == BACKGROUND).all(), \
            "the screen outside the window should be the bare root window"
        assert _colours(inside) >= 32, "the window shows too few colours to hold text and widgets"
        differs = (inside != BACKGROUND).any(axis=2).mean()
        assert differs > 0.8, f"only {differs:.0%} of the window differs from the background"

        client.request_close(window)
        code = app.wait(timeout=120)
        assert code == 0, _app_log(app, log)
        assert client.windows_of(app.pid) == []
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        client.close()

    # Closed cleanly: the window saved its place and released the workspace.
    assert "geometry" in settings.read_text()
    listed = subprocess.run([sys.executable, "-m", "workstation", "--workspace", str(workspace),
                             "--json", "datasets"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert [(d["name"], d["examples"]) for d in json.loads(listed.stdout)["datasets"]] \
        == [("demo-pairs", rows)]
