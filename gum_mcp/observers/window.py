"""The focused window's title and application, and the other visible windows, per platform.

X11 (ctypes against libX11, no extra dependency):

- the focused window is `_NET_ACTIVE_WINDOW` on the root window (set by EWMH window managers);
  without one (no window manager, or one that does not set it) it is the input focus
  (`XGetInputFocus`), and with focus on PointerRoot the top-level window under the pointer;
  a focus on an inner widget window is walked up to the client window that carries WM_CLASS;
- the title is `_NET_WM_NAME` (UTF-8), falling back to `WM_NAME` (xterm, for one, sets no
  `_NET_WM_NAME`); the application is the class part of `WM_CLASS` ("XTerm");
- visible windows come from `_NET_CLIENT_LIST_STACKING` (or the root's children), keeping the
  viewable ones that are not hidden (minimised).

Xlib's default error handlers end the process (a window that vanished between two requests, or an
X server that went away): we install handlers that record the error and return, and a reader
whose connection broke is never used again.

macOS (Quartz / AppKit through pyobjc, when importable) and Windows (ctypes user32) are best
effort. Anything that fails gives a `WindowInfo` whose title is unknown; nothing here raises past
`open_window_reader`, which raises `WindowError` only when no reader can be opened at all.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
from dataclasses import dataclass

log = logging.getLogger("gum_mcp.observers")

MAX_TITLE_LONGS = 2048  # 8 KiB of title is plenty
MAX_VISIBLE = 64


class WindowError(RuntimeError):
    """No window information can be read at all (the message names the cause)."""


@dataclass(frozen=True)
class WindowInfo:
    """One window as far as we could read it.

    `title` None with `readable` True means there is no focused window (the bare desktop);
    `readable` False means a window may be there but its title could not be read.
    """

    title: str | None
    app: str | None = None
    instance: str | None = None
    window_id: int | None = None
    source: str = "none"  # ewmh | focus | pointer | quartz | win32 | none
    readable: bool = True

    @property
    def label(self) -> str:
        """`App — Title` for people (and the transcript)."""
        parts = [part for part in (self.app, self.title) if part]
        return " — ".join(parts) if parts else "(no window)"


UNKNOWN = WindowInfo(title=None, readable=False)


class WindowReader:
    """Reads the focused and visible windows. One reader belongs to one thread."""

    platform = "none"
    problem: str | None = None  # why titles cannot be read, for health

    @property
    def broken(self) -> bool:
        """The connection is gone for good: open a new reader."""
        return False

    def focused(self) -> WindowInfo:
        return UNKNOWN

    def visible(self) -> list[WindowInfo]:
        return []

    def close(self) -> None:
        pass


def open_window_reader(display: str | None = None) -> WindowReader:
    """The reader for this platform. On Linux, `display` overrides $DISPLAY.

    Raises `WindowError` when the platform has a reader but it cannot start (e.g. no X display).
    Platforms without one get a reader that reports every title as unknown.
    """
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        name = display if display is not None else os.environ.get("DISPLAY")
        if not name:
            if os.environ.get("WAYLAND_DISPLAY"):
                raise WindowError("Wayland session without X11 (DISPLAY is not set): window titles unknown")
            raise WindowError("no X display: DISPLAY is not set")
        return X11Windows(name)
    if sys.platform == "darwin":
        try:
            return MacWindows()
        except Exception as exc:
            reader = WindowReader()
            reader.problem = f"window titles unavailable on macOS: {exc} (install pyobjc-framework-Quartz)"
            return reader
    if sys.platform == "win32":
        try:
            return Win32Windows()
        except Exception as exc:
            reader = WindowReader()
            reader.problem = f"window titles unavailable on Windows: {exc}"
            return reader
    reader = WindowReader()
    reader.problem = f"window titles are not supported on {sys.platform}"
    return reader


# -------------------------------------------------------------------------------------------- X11

_c_ulong = ctypes.c_ulong
Window = _c_ulong
Atom = _c_ulong
_DisplayP = ctypes.c_void_p

ANY_PROPERTY_TYPE = 0
IS_VIEWABLE = 2
POINTER_ROOT = 1


class _XErrorEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("display", _DisplayP),
        ("resourceid", _c_ulong),
        ("serial", _c_ulong),
        ("error_code", ctypes.c_ubyte),
        ("request_code", ctypes.c_ubyte),
        ("minor_code", ctypes.c_ubyte),
    ]


class _XWindowAttributes(ctypes.Structure):
    _fields_ = [
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("border_width", ctypes.c_int),
        ("depth", ctypes.c_int),
        ("visual", ctypes.c_void_p),
        ("root", Window),
        ("class_", ctypes.c_int),
        ("bit_gravity", ctypes.c_int),
        ("win_gravity", ctypes.c_int),
        ("backing_store", ctypes.c_int),
        ("backing_planes", _c_ulong),
        ("backing_pixel", _c_ulong),
        ("save_under", ctypes.c_int),
        ("colormap", _c_ulong),
        ("map_installed", ctypes.c_int),
        ("map_state", ctypes.c_int),
        ("all_event_masks", ctypes.c_long),
        ("your_event_mask", ctypes.c_long),
        ("do_not_propagate_mask", ctypes.c_long),
        ("override_redirect", ctypes.c_int),
        ("screen", ctypes.c_void_p),
    ]


_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, _DisplayP, ctypes.POINTER(_XErrorEvent))
_IO_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, _DisplayP)
_IO_EXIT_HANDLER = ctypes.CFUNCTYPE(None, _DisplayP, ctypes.c_void_p)

_xlib: ctypes.CDLL | None = None
_xlib_lock = threading.Lock()
_broken_displays: set[int] = set()  # connections that hit an I/O error: never used again
_handlers: list[object] = []  # keep the C callbacks alive


def _on_x_error(_display: int, _event: object) -> int:
    return 0  # a vanished window: the request returns a failure status, which we check


def _on_io_error(display: int) -> int:
    _broken_displays.add(int(display or 0))
    return 0


def _on_io_exit(display: int, _data: object) -> None:
    _broken_displays.add(int(display or 0))


def _load_xlib() -> ctypes.CDLL:
    global _xlib
    with _xlib_lock:
        if _xlib is not None:
            return _xlib
        path = ctypes.util.find_library("X11") or "libX11.so.6"
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise WindowError(f"libX11 is not available ({exc})") from None
        lib.XInitThreads.restype = ctypes.c_int
        lib.XInitThreads()
        lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
        lib.XOpenDisplay.restype = _DisplayP
        lib.XCloseDisplay.argtypes = [_DisplayP]
        lib.XDefaultRootWindow.argtypes = [_DisplayP]
        lib.XDefaultRootWindow.restype = Window
        lib.XInternAtom.argtypes = [_DisplayP, ctypes.c_char_p, ctypes.c_int]
        lib.XInternAtom.restype = Atom
        lib.XGetWindowProperty.argtypes = [
            _DisplayP, Window, Atom, ctypes.c_long, ctypes.c_long, ctypes.c_int, Atom,
            ctypes.POINTER(Atom), ctypes.POINTER(ctypes.c_int), ctypes.POINTER(_c_ulong),
            ctypes.POINTER(_c_ulong), ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)),
        ]
        lib.XGetWindowProperty.restype = ctypes.c_int
        lib.XFree.argtypes = [ctypes.c_void_p]
        lib.XGetInputFocus.argtypes = [_DisplayP, ctypes.POINTER(Window), ctypes.POINTER(ctypes.c_int)]
        lib.XQueryTree.argtypes = [
            _DisplayP, Window, ctypes.POINTER(Window), ctypes.POINTER(Window),
            ctypes.POINTER(ctypes.POINTER(Window)), ctypes.POINTER(ctypes.c_uint),
        ]
        lib.XQueryTree.restype = ctypes.c_int
        lib.XQueryPointer.argtypes = [
            _DisplayP, Window, ctypes.POINTER(Window), ctypes.POINTER(Window),
            ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_uint),
        ]
        lib.XQueryPointer.restype = ctypes.c_int
        lib.XGetWindowAttributes.argtypes = [_DisplayP, Window, ctypes.POINTER(_XWindowAttributes)]
        lib.XGetWindowAttributes.restype = ctypes.c_int
        lib.XSetErrorHandler.argtypes = [_ERROR_HANDLER]
        lib.XSetErrorHandler.restype = ctypes.c_void_p
        lib.XSetIOErrorHandler.argtypes = [_IO_ERROR_HANDLER]
        lib.XSetIOErrorHandler.restype = ctypes.c_void_p
        error_handler = _ERROR_HANDLER(_on_x_error)
        io_handler = _IO_ERROR_HANDLER(_on_io_error)
        _handlers.extend([error_handler, io_handler])
        lib.XSetErrorHandler(error_handler)
        lib.XSetIOErrorHandler(io_handler)
        if hasattr(lib, "XSetIOErrorExitHandler"):  # libX11 >= 1.7: the default handler exits
            lib.XSetIOErrorExitHandler.argtypes = [_DisplayP, _IO_EXIT_HANDLER, ctypes.c_void_p]
            lib.XSetIOErrorExitHandler.restype = None
            exit_handler = _IO_EXIT_HANDLER(_on_io_exit)
            _handlers.append(exit_handler)
        _xlib = lib
        return lib


def _decode(raw: bytes, utf8: bool) -> str:
    raw = raw.split(b"\0")[0] if not utf8 else raw.rstrip(b"\0")
    if utf8:
        return raw.decode("utf-8", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class X11Windows(WindowReader):
    platform = "x11"

    def __init__(self, display: str) -> None:
        self.display_name = display
        lib = _load_xlib()
        self._x = lib
        dpy = lib.XOpenDisplay(display.encode())
        if not dpy:
            raise WindowError(f"cannot open X display {display!r} (no X server there, or access denied)")
        self._dpy: int | None = dpy
        if hasattr(lib, "XSetIOErrorExitHandler"):
            lib.XSetIOErrorExitHandler(dpy, _handlers[-1], None)
        self._root = lib.XDefaultRootWindow(dpy)
        atom = self._atom
        self.A_NET_ACTIVE_WINDOW = atom("_NET_ACTIVE_WINDOW")
        self.A_NET_WM_NAME = atom("_NET_WM_NAME")
        self.A_UTF8_STRING = atom("UTF8_STRING")
        self.A_WM_NAME = atom("WM_NAME")
        self.A_WM_CLASS = atom("WM_CLASS")
        self.A_WM_STATE = atom("WM_STATE")
        self.A_NET_CLIENT_LIST_STACKING = atom("_NET_CLIENT_LIST_STACKING")
        self.A_NET_CLIENT_LIST = atom("_NET_CLIENT_LIST")
        self.A_NET_WM_STATE = atom("_NET_WM_STATE")
        self.A_NET_WM_STATE_HIDDEN = atom("_NET_WM_STATE_HIDDEN")

    # -- plumbing

    @property
    def broken(self) -> bool:
        return self._dpy is None or int(self._dpy) in _broken_displays

    def _atom(self, name: str) -> int:
        return int(self._x.XInternAtom(self._dpy, name.encode(), 0))

    def _check(self) -> int:
        if self.broken:
            self.problem = f"lost the connection to X display {self.display_name!r}"
            raise WindowError(self.problem)
        assert self._dpy is not None
        return self._dpy

    def _property(
        self, window: int, atom: int, *, long_length: int = MAX_TITLE_LONGS
    ) -> tuple[int, int, bytes, list[int]] | None:
        """(type, format, bytes for format 8, values for format 32), or None when absent or failed."""
        dpy = self._check()
        actual_type = Atom()
        actual_format = ctypes.c_int()
        nitems = _c_ulong()
        after = _c_ulong()
        data = ctypes.POINTER(ctypes.c_ubyte)()
        status = self._x.XGetWindowProperty(
            dpy, window, atom, 0, long_length, 0, ANY_PROPERTY_TYPE,
            ctypes.byref(actual_type), ctypes.byref(actual_format), ctypes.byref(nitems),
            ctypes.byref(after), ctypes.byref(data),
        )
        try:
            if status != 0 or not actual_type.value or self.broken:
                return None
            count = nitems.value
            if actual_format.value == 8:
                return actual_type.value, 8, ctypes.string_at(data, count) if count else b"", []
            if actual_format.value == 32:
                longs = ctypes.cast(data, ctypes.POINTER(_c_ulong))
                return actual_type.value, 32, b"", [int(longs[i]) for i in range(count)]
            return actual_type.value, actual_format.value, b"", []
        finally:
            if data:
                self._x.XFree(data)

    def _window_prop(self, window: int, atom: int) -> int | None:
        prop = self._property(window, atom, long_length=1)
        if prop is None or prop[1] != 32 or not prop[3]:
            return None
        return prop[3][0]

    def _title(self, window: int) -> str | None:
        prop = self._property(window, self.A_NET_WM_NAME)
        if prop is not None and prop[1] == 8:
            return _decode(prop[2], utf8=prop[0] == self.A_UTF8_STRING)
        prop = self._property(window, self.A_WM_NAME)
        if prop is not None and prop[1] == 8:
            return _decode(prop[2], utf8=prop[0] == self.A_UTF8_STRING)
        return None

    def _class(self, window: int) -> tuple[str | None, str | None]:
        prop = self._property(window, self.A_WM_CLASS, long_length=64)
        if prop is None or prop[1] != 8:
            return None, None
        parts = [_decode(part, utf8=False) for part in prop[2].split(b"\0")]
        instance = parts[0] if parts and parts[0] else None
        klass = parts[1] if len(parts) > 1 and parts[1] else None
        return instance, klass

    def _is_client(self, window: int) -> bool:
        return any(
            self._property(window, atom, long_length=1) is not None
            for atom in (self.A_WM_STATE, self.A_WM_CLASS, self.A_WM_NAME)
        )

    def _tree(self, window: int) -> tuple[int, list[int]] | None:
        dpy = self._check()
        root = Window()
        parent = Window()
        children = ctypes.POINTER(Window)()
        count = ctypes.c_uint()
        ok = self._x.XQueryTree(dpy, window, ctypes.byref(root), ctypes.byref(parent), ctypes.byref(children),
                                ctypes.byref(count))
        if not ok or self.broken:
            return None
        try:
            return int(parent.value), [int(children[i]) for i in range(count.value)]
        finally:
            if children:
                self._x.XFree(children)

    def _client_of(self, window: int) -> int | None:
        """The client window (with WM_CLASS / WM_NAME) at or above `window`, else the first below it."""
        current = window
        for _ in range(32):
            if current in (0, self._root):
                break
            if self._is_client(current):
                return current
            tree = self._tree(current)
            if tree is None:
                break
            current = tree[0]
        return self._client_below(window)

    def _client_below(self, window: int, depth: int = 4) -> int | None:
        if window in (0, self._root) or depth < 0:
            return None
        if self._is_client(window):
            return window
        tree = self._tree(window)
        if tree is None:
            return None
        for child in tree[1]:
            found = self._client_below(child, depth - 1)
            if found is not None:
                return found
        return None

    def _info(self, window: int, source: str) -> WindowInfo:
        title = self._title(window)
        instance, klass = self._class(window)
        return WindowInfo(
            title=title, app=klass or instance, instance=instance, window_id=window, source=source,
            readable=title is not None,
        )

    def _viewable(self, window: int) -> bool:
        attrs = _XWindowAttributes()
        dpy = self._check()
        if not self._x.XGetWindowAttributes(dpy, window, ctypes.byref(attrs)) or self.broken:
            return False
        return attrs.map_state == IS_VIEWABLE

    # -- the reader

    def focused(self) -> WindowInfo:
        try:
            return self._focused()
        except WindowError:
            return UNKNOWN

    def _focused(self) -> WindowInfo:
        active = self._window_prop(self._root, self.A_NET_ACTIVE_WINDOW)
        if active:
            return self._info(active, "ewmh")
        dpy = self._check()
        focus = Window()
        revert = ctypes.c_int()
        self._x.XGetInputFocus(dpy, ctypes.byref(focus), ctypes.byref(revert))
        if self.broken:
            raise WindowError(self.problem or "X connection lost")
        window = int(focus.value)
        source = "focus"
        if window in (0, POINTER_ROOT, self._root):
            window = self._under_pointer()
            source = "pointer"
            if not window:
                return WindowInfo(title=None, source=source, readable=True)  # the bare desktop
        client = self._client_of(window)
        if client is None:
            return WindowInfo(title=None, window_id=window, source=source, readable=False)
        return self._info(client, source)

    def _under_pointer(self) -> int:
        dpy = self._check()
        root, child = Window(), Window()
        ints = [ctypes.c_int() for _ in range(4)]
        mask = ctypes.c_uint()
        self._x.XQueryPointer(dpy, self._root, ctypes.byref(root), ctypes.byref(child),
                              *(ctypes.byref(i) for i in ints), ctypes.byref(mask))
        return int(child.value)

    def visible(self) -> list[WindowInfo]:
        try:
            return self._visible()
        except WindowError:
            return []

    def _visible(self) -> list[WindowInfo]:
        listed = self._property(self._root, self.A_NET_CLIENT_LIST_STACKING, long_length=1024)
        if listed is None or listed[1] != 32:
            listed = self._property(self._root, self.A_NET_CLIENT_LIST, long_length=1024)
        clients: list[int]
        if listed is not None and listed[1] == 32:
            clients = listed[3]
        else:
            tree = self._tree(self._root)
            tops = tree[1] if tree else []
            clients = [c for c in (self._client_below(top, 2) for top in tops if self._viewable(top)) if c]
        result = []
        for window in reversed(clients[-MAX_VISIBLE:]):  # topmost first
            if not self._viewable(window):
                continue
            state = self._property(window, self.A_NET_WM_STATE, long_length=32)
            if state is not None and self.A_NET_WM_STATE_HIDDEN in state[3]:
                continue
            result.append(self._info(window, "visible"))
        return result

    def close(self) -> None:
        dpy, self._dpy = self._dpy, None
        if dpy and int(dpy) not in _broken_displays:
            self._x.XCloseDisplay(dpy)


# ------------------------------------------------------------------------------------------ macOS


class MacWindows(WindowReader):  # pragma: no cover - exercised on macOS only
    """Front application from AppKit; window titles from Quartz (needs Screen Recording permission)."""

    platform = "macos"

    def __init__(self) -> None:
        from AppKit import NSWorkspace  # type: ignore[import-not-found]
        from Quartz import (  # type: ignore[import-not-found]
            CGWindowListCopyWindowInfo,
            kCGNullWindowID,
            kCGWindowListExcludeDesktopElements,
            kCGWindowListOptionOnScreenOnly,
        )

        self._workspace = NSWorkspace.sharedWorkspace()
        self._list = lambda: CGWindowListCopyWindowInfo(
            kCGWindowListOptionOnScreenOnly | kCGWindowListExcludeDesktopElements, kCGNullWindowID
        ) or []

    def _windows(self) -> list[WindowInfo]:
        result = []
        for item in self._list():
            if item.get("kCGWindowLayer", 0) != 0:
                continue
            title = item.get("kCGWindowName")
            result.append(WindowInfo(
                title=str(title) if title else None, app=str(item.get("kCGWindowOwnerName") or "") or None,
                window_id=int(item.get("kCGWindowNumber", 0)) or None, source="quartz",
                readable=bool(title),
            ))
        return result

    def focused(self) -> WindowInfo:
        try:
            app = self._workspace.frontmostApplication()
            name = str(app.localizedName()) if app is not None else None
            pid = int(app.processIdentifier()) if app is not None else None
            for item in self._list():
                if item.get("kCGWindowLayer", 0) == 0 and item.get("kCGWindowOwnerPID") == pid:
                    title = item.get("kCGWindowName")
                    if not title:
                        self.problem = "window titles need the Screen Recording permission (System Settings)"
                    return WindowInfo(title=str(title) if title else None, app=name, source="quartz",
                                      readable=bool(title))
            return WindowInfo(title=None, app=name, source="quartz", readable=name is None)
        except Exception as exc:
            self.problem = f"cannot read the front window: {exc}"
            return UNKNOWN

    def visible(self) -> list[WindowInfo]:
        try:
            return self._windows()[:MAX_VISIBLE]
        except Exception:
            return []


# ---------------------------------------------------------------------------------------- Windows


class Win32Windows(WindowReader):  # pragma: no cover - exercised on Windows only
    platform = "win32"

    def __init__(self) -> None:
        from ctypes import wintypes

        self._wt = wintypes
        self._user32 = ctypes.windll.user32  # type: ignore[attr-defined]
        self._kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        self._user32.GetForegroundWindow.restype = wintypes.HWND

    def _title(self, hwnd: int) -> str | None:
        length = self._user32.GetWindowTextLengthW(hwnd)
        buffer = ctypes.create_unicode_buffer(length + 1)
        self._user32.GetWindowTextW(hwnd, buffer, length + 1)
        return buffer.value or None

    def _app(self, hwnd: int) -> str | None:
        pid = self._wt.DWORD()
        self._user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
        handle = self._kernel32.OpenProcess(0x1000, False, pid.value)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return None
        try:
            size = self._wt.DWORD(1024)
            buffer = ctypes.create_unicode_buffer(size.value)
            if not self._kernel32.QueryFullProcessImageNameW(handle, 0, buffer, ctypes.byref(size)):
                return None
            name = os.path.basename(buffer.value)
            return name[:-4] if name.lower().endswith(".exe") else name
        finally:
            self._kernel32.CloseHandle(handle)

    def _info(self, hwnd: int, source: str) -> WindowInfo:
        title = self._title(hwnd)
        return WindowInfo(title=title, app=self._app(hwnd), window_id=int(hwnd), source=source,
                          readable=title is not None)

    def focused(self) -> WindowInfo:
        try:
            hwnd = self._user32.GetForegroundWindow()
            if not hwnd:
                return WindowInfo(title=None, source="win32")
            return self._info(hwnd, "win32")
        except Exception as exc:
            self.problem = f"cannot read the foreground window: {exc}"
            return UNKNOWN

    def visible(self) -> list[WindowInfo]:
        found: list[WindowInfo] = []
        try:
            proc = ctypes.WINFUNCTYPE(ctypes.c_bool, self._wt.HWND, self._wt.LPARAM)  # type: ignore[attr-defined]

            def each(hwnd: int, _param: int) -> bool:
                if self._user32.IsWindowVisible(hwnd) and not self._user32.IsIconic(hwnd):
                    info = self._info(hwnd, "visible")
                    if info.title:
                        found.append(info)
                return len(found) < MAX_VISIBLE

            self._user32.EnumWindows(proc(each), 0)
        except Exception:
            return found
        return found
