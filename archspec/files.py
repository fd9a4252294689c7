"""Writing files without losing anyone's work: atomically, keeping the file's mode.

Each write goes to a temporary file in the same directory, is flushed to disk and then renamed
over the target, so an interrupted write leaves the previous file intact.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
from contextlib import contextmanager


@contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM during the rename so that a file is either old or new, never half."""
    received = []
    handlers = {}
    if sys.platform != "win32":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[sig] = signal.signal(sig, lambda s, f: received.append(s))
            except ValueError:  # not the main thread
                pass
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt


def _mode_for(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".archspec-", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; keep the file's mode, else the umask's
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        with _signals_deferred():
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
