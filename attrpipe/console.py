"""What a command shows on the terminal, and where everything else goes.

A command runs inside :func:`session`. Without ``--verbose`` the process's stdout and stderr (file descriptors 1 and
2) point at a log file for the whole command: everything Ray forwards from its workers (``log_to_driver``), what the
trainers, DeepSpeed, transformers and Python's warnings print, lands there, once. The terminal gets only what the
command says through :func:`echo` (stage lines and summaries) and one :class:`Progress` line per long stage, redrawn
in place on a terminal and written once when the stage ends otherwise (a CI log, a pipe). Ray Data's own progress bars
are switched off (``DataContext.enable_progress_bars``): the stage's line says the same thing once.

With ``--verbose`` nothing is redirected: the full logs reach the terminal as the libraries print them, and
:func:`echo` is ``print``. Outside a session (the library used from Python, the tests) the same holds.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["session", "command_session", "echo", "is_quiet", "Progress", "format_progress", "log_path"]


class _State:
    term: TextIO | None = None  # the terminal while a quiet session redirects fds 1 and 2; None otherwise
    log: TextIO | None = None  # the log file (quiet session only)
    tty: bool = False


_state = _State()
_lock = threading.Lock()


def echo(text: str = "") -> None:
    """Say something to the user: on the terminal (and in the log) in a quiet session, else on stdout."""
    with _lock:
        if _state.term is None:
            print(text, flush=True)
            return
        _state.term.write(text + "\n")
        _state.term.flush()
        _state.log.write(text + "\n")
        _state.log.flush()


def is_quiet() -> bool:
    """Whether a quiet session is on: the libraries' output goes to the command's log, not the terminal."""
    return _state.term is not None


def _redraw(text: str) -> None:
    """Redraw the current progress line in place (a terminal in a quiet session only)."""
    with _lock:
        if _state.term is not None and _state.tty:
            _state.term.write("\r\x1b[2K" + text)
            _state.term.flush()


def log_path(out_dir: str | None, command: str) -> str | None:
    """The log file of a command that writes into ``out_dir``: ``<out_dir>/attrpipe-<command>.log``, appended on
    resume. A remote output (``s3://...``) keeps its log locally, under ``runs/logs/``."""
    if not out_dir:
        return None
    name = f"attrpipe-{command.replace(' ', '-')}.log"
    if "://" in str(out_dir):
        tail = str(out_dir).split("://", 1)[1].strip("/").replace("/", "_")
        return str(Path("runs", "logs", f"{tail}-{name}"))
    return str(Path(out_dir, name))


@contextlib.contextmanager
def session(log_file: str | None, *, verbose: bool = False, shutdown_ray: bool = False) -> Iterator[str | None]:
    """Run a command's body with the terminal kept for :func:`echo` and :class:`Progress` and everything else sent to
    ``log_file`` (appended). ``verbose`` or no ``log_file``: nothing changes. ``shutdown_ray``: stop the Ray this
    process started before the terminal is given back, so that Ray's own last words go to the log too (the CLI)."""
    if verbose or log_file is None or _state.term is not None:
        yield None
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor (pytest's capsys): write to it
        fd = None
    term = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace") if fd is not None else sys.stdout
    tty = bool(fd is not None and os.isatty(fd))
    log = open(log_file, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed below)
    saved = (os.dup(1), os.dup(2))
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    old_streams = (sys.stdout, sys.stderr)
    if fd is None:  # capsys-like streams are Python objects, not fds: send the libraries' prints to the log as well
        sys.stdout = sys.stderr = log
    data_ctx = _quiet_ray_data()
    _state.term, _state.log, _state.tty = term, log, tty
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} attrpipe {' '.join(sys.argv[1:])}\n")
    try:
        yield log_file
    finally:
        if shutdown_ray:
            with contextlib.suppress(Exception):
                import ray

                if ray.is_initialized():
                    ray.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = old_streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        with _lock:
            _state.term = _state.log = None
            _state.tty = False
        if data_ctx is not None:
            data_ctx[0].enable_progress_bars = data_ctx[1]
        log.close()
        if term is not old_streams[0]:
            term.close()


@contextlib.contextmanager
def command_session(out_dir: str | None, command: str, *, verbose: bool = False,
                    shutdown_ray: bool = False) -> Iterator[str | None]:
    """A command's :func:`session`, logging to :func:`log_path` of its output directory; a command that finishes
    names its log file last."""
    with session(log_path(out_dir, command), verbose=verbose, shutdown_ray=shutdown_ray) as log:
        yield log
        if log:
            echo(f"log: {log}")


def _quiet_ray_data():
    """Ray Data's progress bars off for the session (their redraws would fill the log); restored after."""
    if "ray.data" not in sys.modules and "ray" not in sys.modules:
        with contextlib.suppress(ImportError):
            import ray.data  # noqa: F401  (cheap when Ray is installed; every pipeline command imports it anyway)
    with contextlib.suppress(Exception):
        from ray.data import DataContext

        ctx = DataContext.get_current()
        before = ctx.enable_progress_bars
        ctx.enable_progress_bars = False
        return ctx, before
    return None


def format_progress(label: str, done: float, total: float | None, elapsed: float, unit: str = "",
                    extra: str = "") -> str:
    """One progress line: ``label  done/total unit  rate/s  ETA  extra``; pure, tested."""
    parts = [f"{label:<22}"]
    if total:
        parts.append(f"{done:g}/{total:g} {unit}".rstrip())
        parts.append(f"{100.0 * done / total:3.0f}%")
    else:
        parts.append(f"{done:g} {unit}".rstrip())
    if extra:
        parts.append(extra)
    if elapsed > 0:
        parts.append(f"{_clock(elapsed)}")
        if total and 0 < done < total:
            parts.append(f"ETA {_clock(elapsed * (total - done) / done)}")
    return "  ".join(parts)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """One line for a long, blocking stage. ``poll()`` returns ``(done, total, extra)`` and is called from a thread
    every ``interval`` seconds while the stage runs (only on a terminal in a quiet session; its exceptions are
    ignored: progress is never a reason to fail). The final line is written once when the block ends, whatever the
    output is, from one last poll."""

    def __init__(self, label: str, poll: Callable[[], tuple[float, float | None, str]], *, unit: str = "",
                 interval: float = 1.0):
        self.label, self.poll, self.unit, self.interval = label, poll, unit, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _line(self) -> str | None:
        try:
            done, total, extra = self.poll()
        except Exception:  # noqa: BLE001 (a progress read that fails says nothing; the stage goes on)
            return None
        return format_progress(self.label, done, total, time.perf_counter() - self._t0, self.unit, extra)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            line = self._line()
            if line is not None:
                _redraw(line)

    def __enter__(self) -> Progress:
        self._t0 = time.perf_counter()
        if _state.term is not None and _state.tty:
            self._thread = threading.Thread(target=self._run, name=f"progress-{self.label}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            _redraw("")
        line = self._line()
        if line is not None:
            echo(line + ("" if exc_type is None else "  (stopped)"))
