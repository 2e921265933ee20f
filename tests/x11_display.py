"""A real X display for tests: Xvfb on a free display number, screenshots of the
whole screen taken from outside the application (ImageMagick's `import`), and
the few X requests a window manager would make (find a client's window, read
its title and place, ask it to close), through libX11 with ctypes."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import select
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IS_VIEWABLE = 2  # XWindowAttributes.map_state
CLIENT_MESSAGE = 33  # the X event type


class Xvfb:
    """Xvfb with a cookie of its own; `env` is what a client needs to reach it."""

    def __init__(self, folder: Path, width: int = 1600, height: int = 1000) -> None:
        self.auth = folder / "Xauthority"
        cookie = secrets.token_hex(16)
        # The server takes every cookie in its -auth file, whatever display it names.
        _run(["xauth", "-f", self.auth, "add", ":0", ".", cookie])
        read_end, write_end = os.pipe()
        self._log = open(folder / "xvfb.log", "wb")
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{width}x{height}x24",
             "-nolisten", "tcp", "-br", "-auth", str(self.auth)],
            pass_fds=(write_end,), stdout=self._log, stderr=subprocess.STDOUT)
        os.close(write_end)
        # Xvfb writes its display number once it accepts clients: no polling.
        number = _read_line(read_end, timeout=60)
        os.close(read_end)
        if not number.isdigit():
            self.stop()
            raise RuntimeError("Xvfb did not start: " + (folder / "xvfb.log").read_text()[-2000:])
        self.display = f":{number}"
        _run(["xauth", "-f", self.auth, "add", self.display, ".", cookie])
        self.env = {"DISPLAY": self.display, "XAUTHORITY": str(self.auth)}
        self.size = (width, height)

    def screenshot(self, path: Path) -> np.ndarray:
        """The whole screen as an (height, width, 3) uint8 array, also written to ``path``
        (a PNG)."""
        _run(["import", "-silent", "-display", self.display, "-window", "root", f"png:{path}"],
             env={**os.environ, **self.env})
        return read_png(path)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def read_png(path: Path) -> np.ndarray:
    from PySide6.QtGui import QImage

    image = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB888)
    assert not image.isNull(), f"not a readable PNG: {path}"
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, :image.width() * 3].reshape(image.height(), image.width(), 3).copy()


@dataclass(frozen=True)
class Window:
    id: int
    title: str
    x: int
    y: int
    width: int
    height: int


class XClient:
    """A connection to the display, for what a window manager would do."""

    def __init__(self, display: str, auth: Path) -> None:
        self.x = _libx11()
        previous = os.environ.get("XAUTHORITY")
        os.environ["XAUTHORITY"] = str(auth)  # libX11 reads the cookie when connecting
        try:
            self.dpy = self.x.XOpenDisplay(display.encode())
        finally:
            if previous is None:
                del os.environ["XAUTHORITY"]
            else:
                os.environ["XAUTHORITY"] = previous
        if not self.dpy:
            raise RuntimeError(f"cannot connect to the X display {display}")
        self.root = self.x.XDefaultRootWindow(self.dpy)

    def close(self) -> None:
        self.x.XCloseDisplay(self.dpy)

    def windows_of(self, pid: int) -> list[Window]:
        """The viewable top-level windows of process ``pid`` (by _NET_WM_PID)."""
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children, count = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        self.x.XQueryTree(self.dpy, self.root, ctypes.byref(root), ctypes.byref(parent),
                          ctypes.byref(children), ctypes.byref(count))
        ids = [children[i] for i in range(count.value)]
        if children:
            self.x.XFree(children)
        found = []
        for wid in ids:
            attrs = _WindowAttributes()
            if not self.x.XGetWindowAttributes(self.dpy, wid, ctypes.byref(attrs)):
                continue  # gone meanwhile
            owner = self._property(wid, "_NET_WM_PID")
            if attrs.map_state != IS_VIEWABLE or not owner:
                continue
            if int.from_bytes(owner[:ctypes.sizeof(ctypes.c_long)], "little") == pid:
                title = self._property(wid, "_NET_WM_NAME").decode("utf-8", "replace")
                found.append(Window(wid, title, attrs.x, attrs.y, attrs.width, attrs.height))
        return found

    def request_close(self, window: Window) -> None:
        """WM_DELETE_WINDOW, as a window manager sends when the user clicks x."""
        event = _Event()
        event.xclient.type = CLIENT_MESSAGE
        event.xclient.window = window.id
        event.xclient.message_type = self._atom("WM_PROTOCOLS")
        event.xclient.format = 32
        event.xclient.data[0] = self._atom("WM_DELETE_WINDOW")
        event.xclient.data[1] = 0  # CurrentTime
        self.x.XSendEvent(self.dpy, window.id, False, 0, ctypes.byref(event))
        self.x.XFlush(self.dpy)

    def _atom(self, name: str) -> int:
        return self.x.XInternAtom(self.dpy, name.encode(), False)

    def _property(self, wid: int, name: str) -> bytes:
        kind, fmt = ctypes.c_ulong(), ctypes.c_int()
        items, after = ctypes.c_ulong(), ctypes.c_ulong()
        data = ctypes.POINTER(ctypes.c_ubyte)()
        status = self.x.XGetWindowProperty(
            self.dpy, wid, self._atom(name), 0, 4096, False, 0, ctypes.byref(kind),
            ctypes.byref(fmt), ctypes.byref(items), ctypes.byref(after), ctypes.byref(data))
        if status != 0 or not data:
            return b""
        # Format 32 comes back as C longs, whatever their size.
        unit = {8: 1, 16: ctypes.sizeof(ctypes.c_short), 32: ctypes.sizeof(ctypes.c_long)}
        value = ctypes.string_at(data, items.value * unit.get(fmt.value, 1))
        self.x.XFree(data)
        return value


class _WindowAttributes(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int),
                ("height", ctypes.c_int), ("border_width", ctypes.c_int),
                ("depth", ctypes.c_int), ("visual", ctypes.c_void_p),
                ("root", ctypes.c_ulong), ("class_", ctypes.c_int),
                ("bit_gravity", ctypes.c_int), ("win_gravity", ctypes.c_int),
                ("backing_store", ctypes.c_int), ("backing_planes", ctypes.c_ulong),
                ("backing_pixel", ctypes.c_ulong), ("save_under", ctypes.c_int),
                ("colormap", ctypes.c_ulong), ("map_installed", ctypes.c_int),
                ("map_state", ctypes.c_int), ("all_event_masks", ctypes.c_long),
                ("your_event_mask", ctypes.c_long), ("do_not_propagate_mask", ctypes.c_long),
                ("override_redirect", ctypes.c_int), ("screen", ctypes.c_void_p)]


class _ClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong),
                ("send_event", ctypes.c_int), ("display", ctypes.c_void_p),
                ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]


class _Event(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
# Xlib's default handler exits the process on an error such as BadWindow (a
# window closed between two requests); this one ignores it instead.
_ignore_errors = _ERROR_HANDLER(lambda display, error: 0)


def _libx11() -> ctypes.CDLL:
    x = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x.XOpenDisplay.restype = ctypes.c_void_p
    x.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x.XDefaultRootWindow.restype = ctypes.c_ulong
    x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x.XCloseDisplay.argtypes = [ctypes.c_void_p]
    x.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong] + [ctypes.c_void_p] * 4
    x.XFree.argtypes = [ctypes.c_void_p]
    x.XGetWindowAttributes.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p]
    x.XInternAtom.restype = ctypes.c_ulong
    x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x.XGetWindowProperty.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong,
                                     ctypes.c_long, ctypes.c_long, ctypes.c_int,
                                     ctypes.c_ulong] + [ctypes.c_void_p] * 5
    x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long,
                             ctypes.c_void_p]
    x.XFlush.argtypes = [ctypes.c_void_p]
    x.XSetErrorHandler.argtypes = [_ERROR_HANDLER]
    x.XSetErrorHandler(_ignore_errors)
    return x


def _read_line(fd: int, timeout: float) -> str:
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        chunk = os.read(fd, 64) if ready else b""
        if not chunk:
            break  # Xvfb exited, or said nothing in time
        data += chunk
    return data.decode().strip()


def _run(cmd: list, env: dict | None = None) -> None:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-2000:]}")
