"""A real X session for the tray: Xvfb, the `trayer` XEmbed tray host, real input with
xdotool, screenshots with ImageMagick's `import`.

Used by tests/ui/test_tray_x11.py and by scripts/screenshots (the README's pictures).
Each session takes a random free display number (:100-:899, checked against every X
socket on the machine), so parallel runs and other X servers never collide.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AppProcess", "Geometry", "XSession", "x_session"]

SCREEN = (1280, 800)
PANEL_WIDTH = 200
PANEL_HEIGHT = 32
_WINDOW_LINE = re.compile(
    r'^(?P<indent>\s*)(?P<id>0x[0-9a-f]+) (?P<name>"[^"]*"|\(has no name\)): '
    r'\((?P<cls>[^)]*)\)\s+(?P<w>\d+)x(?P<h>\d+)\+-?\d+\+-?\d+\s+\+(?P<x>-?\d+)\+(?P<y>-?\d+)')


@dataclass(frozen=True)
class Geometry:
    x: int
    y: int
    w: int
    h: int

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.w // 2, self.y + self.h // 2

    def contains(self, other: Geometry) -> bool:
        return (self.x <= other.x and self.y <= other.y and other.x + other.w <= self.x + self.w
                and other.y + other.h <= self.y + self.h)


@dataclass(frozen=True)
class Window:
    id: str
    name: str
    cls: str
    geometry: Geometry
    depth: int


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str,
               interval_s: float = 0.2) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


class AppProcess:
    """The SiteSync tray started as a user would (``python -m app tray``)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen([sys.executable, "-m", "app", *args], env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()


class XSession:
    def __init__(self, display: str, workdir: Path) -> None:
        self.display = display
        self.workdir = workdir

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(DISPLAY=self.display, QT_QPA_PLATFORM="xcb", LANG="C.UTF-8")
        env.pop("WAYLAND_DISPLAY", None)
        return env

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(list(args), env=self.env, capture_output=True, text=True,
                              timeout=30, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    # -- windows -----------------------------------------------------------------------------

    def windows(self) -> list[Window]:
        found = []
        for line in self.run("xwininfo", "-root", "-tree").splitlines():
            match = _WINDOW_LINE.match(line)
            if match:
                found.append(Window(
                    match["id"], match["name"].strip('"'), match["cls"],
                    Geometry(int(match["x"]), int(match["y"]), int(match["w"]), int(match["h"])),
                    len(match["indent"])))
        return found

    def panel(self) -> Geometry | None:
        for window in self.windows():
            if window.name == "panel" and '"trayer"' in window.cls:
                return window.geometry
        return None

    def raise_panel(self) -> None:
        """Put the tray panel above other windows, as a desktop's window manager keeps its
        panels (bare Xvfb has no window manager, so a big window would cover the tray)."""
        for window in self.windows():
            if window.name == "panel" and '"trayer"' in window.cls:
                self.run("xdotool", "windowraise", window.id, check=False)

    def tray_icon(self, name: str = "SiteSync") -> Geometry | None:
        """The app's icon window embedded in the tray panel (XEmbed), if it is there."""
        panel = self.panel()
        if panel is None:
            return None
        for window in self.windows():
            if (window.name == name and window.depth > 0 and window.geometry.w > 4
                    and panel.contains(window.geometry)):
                return window.geometry
        return None

    def top_windows(self, name: str = "SiteSync", min_size: int = 40) -> list[Window]:
        """Top-level windows whose title starts with ``name`` big enough to be a menu, a
        dialog or a window (mapped or not; see :meth:`is_viewable`)."""
        return [w for w in self.windows() if w.depth == 5 and w.name.startswith(name)
                and w.geometry.w >= min_size and w.geometry.h >= min_size
                and w.geometry.x >= 0 and w.geometry.y >= 0]

    def is_viewable(self, window_id: str) -> bool:
        """Mapped and visible (``xwininfo -tree`` also lists hidden windows)."""
        return "IsViewable" in self.run("xwininfo", "-id", window_id, check=False)

    def window_type(self, window_id: str) -> str:
        """The EWMH type Qt gave the window: ..._POPUP_MENU for a menu, ..._TOOLTIP for
        a notification balloon, ..._NORMAL / _DIALOG for windows."""
        text = self.run("xprop", "-id", window_id, "_NET_WM_WINDOW_TYPE", check=False)
        return text.split("=", 1)[1].strip() if "=" in text else ""

    def visible_windows(self, kind: str = "", name: str = "SiteSync") -> list[Window]:
        """Viewable top-level windows of the app; ``kind`` filters on the EWMH type
        (e.g. "POPUP_MENU", "NORMAL", "DIALOG")."""
        return [w for w in self.top_windows(name) if self.is_viewable(w.id)
                and (not kind or f"_NET_WM_WINDOW_TYPE_{kind}" in self.window_type(w.id))]

    # -- input and pictures --------------------------------------------------------------------

    def click(self, x: int, y: int, button: int = 1) -> None:
        self.run("xdotool", "mousemove", str(x), str(y), "click", str(button))

    def key(self, *keys: str) -> None:
        self.run("xdotool", "key", "--delay", "80", *keys)

    def screenshot(self, path: Path, window: str = "root") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.run("import", "-window", window, str(path))
        return path

    def crop(self, source: Path, target: Path, geometry: Geometry, scale: int = 1) -> Path:
        args = ["convert", str(source), "-crop",
                f"{geometry.w}x{geometry.h}+{geometry.x}+{geometry.y}", "+repage"]
        if scale != 1:
            args += ["-filter", "point", "-resize", f"{scale * 100}%"]
        self.run(*args, str(target))
        return target


def _display_in_use(number: int) -> bool:
    """An X server (ours or anyone's, any mount namespace) listens on that display."""
    name = f"/tmp/.X11-unix/X{number}"
    try:
        sockets = Path("/proc/net/unix").read_text()
    except OSError:
        sockets = ""
    return Path(name).exists() or Path(f"/tmp/.X{number}-lock").exists() or name in sockets


def _start_xvfb(workdir: Path, screen: tuple[int, int]) -> tuple[subprocess.Popen, str]:
    """Xvfb on a free, random display number (not :0.. where other sessions start)."""
    rng = random.Random()
    for _ in range(20):
        number = rng.randrange(100, 900)
        if _display_in_use(number):
            continue
        log = open(workdir / "xvfb.log", "ab")  # noqa: SIM115 - lives as long as Xvfb
        proc = subprocess.Popen(
            ["Xvfb", f":{number}", "-screen", "0", f"{screen[0]}x{screen[1]}x24",
             "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=log)
        env = {**os.environ, "DISPLAY": f":{number}"}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if subprocess.run(["xdpyinfo"], env=env, capture_output=True).returncode == 0:
                return proc, f":{number}"
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    raise RuntimeError(f"Xvfb did not start: {(workdir / 'xvfb.log').read_text()}")


@contextmanager
def x_session(workdir: Path, screen: tuple[int, int] = SCREEN) -> Iterator[XSession]:
    """Xvfb + trayer (top right, 200x32, like a desktop panel) until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    xvfb, display = _start_xvfb(workdir, screen)
    trayer = None
    try:
        session = XSession(display, workdir)
        trayer = subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel",
             "--width", str(PANEL_WIDTH), "--height", str(PANEL_HEIGHT), "--transparent", "false",
             "--SetDockType", "true"],
            env=session.env, stdout=subprocess.DEVNULL,
            stderr=open(workdir / "trayer.log", "wb"))  # noqa: SIM115
        wait_until(session.panel, 10, "the trayer panel")
        yield session
    finally:
        for proc in (trayer, xvfb):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
