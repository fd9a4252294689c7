"""Reading and writing files without hanging, exhausting memory or losing anyone's work.

Reads are bounded: only regular files are read (a FIFO, a device such as /dev/zero, a socket or
a directory is refused before a byte is read, and opening one never waits for a writer), and never
more than the caller's limit plus one byte. Writes are all or nothing: every file of one build is
first written to a temporary file beside its target and flushed; only when all of them are on
disk are they renamed over their targets, so a failed or interrupted build leaves the previous
files intact. The checks a build runs before writing anything (``directory_problem``,
``target_problem``) live here too.
"""
from __future__ import annotations

import os
import signal
import stat
import sys
import tempfile
from contextlib import contextmanager

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """What a file is, as a message says it: 'a directory', 'a named pipe (FIFO)', ..."""
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


class NotAFile(OSError):
    """The path exists but is not a regular file; ``kind`` says what it is."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


class TooLarge(OSError):
    """The file holds more than the limit; ``size`` is its size, or ``limit + 1`` when it grew."""

    def __init__(self, size: int):
        super().__init__(f"{size} bytes")
        self.size = size


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def read_bounded(path: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Raises NotAFile (not a regular file: checked before opening, and again on the open file in case
    it was swapped), TooLarge (over the limit: the size on disk, or more than ``limit`` bytes read
    from a file whose size says less, as /proc files do), or the OSError of the system call.
    ``O_NONBLOCK`` keeps the open of a FIFO from waiting for a writer.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotAFile(kind_of(mode))
    fd = os.open(path, _READ_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotAFile(kind_of(st.st_mode))
        if st.st_size > limit:
            raise TooLarge(st.st_size)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(limit + 1 - total, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > limit:
        raise TooLarge(total)
    return b"".join(chunks)


# --- writing ---------------------------------------------------------------------------------------

@contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM during the renames so that a build is either old or new, never half."""
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


def _made_directories(directory: str) -> list:
    """Create ``directory`` and its missing parents; the ones created, deepest first."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    if missing:
        os.makedirs(missing[0], exist_ok=True)
    return missing


def _stage(path: str, text: str) -> str:
    """``text`` in a temporary file beside ``path``, flushed to disk, with the target's mode."""
    fd, tmp = tempfile.mkstemp(prefix=".archspec-", suffix=".tmp", dir=os.path.dirname(os.path.abspath(path)))
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; keep the file's mode, else the umask's
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_all(files: list) -> None:
    """Write every ``(path, text)`` or none: all are staged in temporary files first, then renamed.

    A failure while staging (a full disk, a permission) removes the temporary files and the
    directories made for them, and raises the OSError with the targets untouched.
    """
    made: list = []
    staged: list = []
    try:
        for path, text in files:
            try:
                made += _made_directories(os.path.dirname(os.path.abspath(path)))
                staged.append((_stage(path, text), path))
            except OSError as exc:  # name the file being written, not a temporary or a directory
                raise OSError(exc.errno, exc.strerror, path) from exc
        with _signals_deferred():
            for tmp, path in staged:
                os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)  # a renamed one is gone already
        for directory in made:
            try:
                os.rmdir(directory)
            except OSError:
                pass
        raise


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    write_all([(path, text)])


# --- before writing: can every output be written? ---------------------------------------------------

def directory_problem(directory: str, probe: bool = True) -> str | None:
    """Why files cannot be written into ``directory`` (created if missing), or None.

    Checks what exists of the path (a dangling symbolic link, a file where a directory goes) and,
    with ``probe``, whether the nearest existing directory takes a new file, by making one and
    removing it: the only test that sees permissions, read-only mounts and root's exemptions as
    the writes will.
    """
    directory = directory or "."
    base = directory
    while not os.path.lexists(base):
        base = os.path.dirname(base) or "."
    if os.path.islink(base) and not os.path.exists(base):
        return f"{base} is a symbolic link to {os.readlink(base)}, which does not exist"
    if not os.path.isdir(base):
        if base == directory:
            return f"output path {directory} exists and is not a directory"
        return f"cannot create directory {directory}: {base} is not a directory"
    if not probe:
        return None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".archspec-", suffix=".tmp", dir=base)
    except OSError as exc:
        return f"cannot write into {base}: {exc.strerror}"
    os.close(fd)
    os.unlink(tmp)
    return None


def target_problem(path: str) -> str | None:
    """Why ``path`` cannot be replaced by a file, or None: a directory or a device is in its place
    (a symbolic link is replaced itself, never what it points to)."""
    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return None
    return f"{path} is {kind_of(mode)}, not a file; archspec does not replace it"


def _limits(directory: str) -> tuple:
    """(longest file name, longest path) in bytes, for files in ``directory``'s nearest existing ancestor."""
    while directory and not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    try:
        return os.pathconf(directory or ".", "PC_NAME_MAX"), os.pathconf(directory or ".", "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # not POSIX, or the system does not say
        return 255, 4096


def length_problem(path: str) -> str | None:
    """Why ``path`` is too long for its file system (a name in it, or the whole absolute path), or None."""
    name_max, path_max = _limits(os.path.dirname(os.path.abspath(path)))
    for part in reversed(os.path.normpath(path).split(os.sep)):
        if len(os.fsencode(part)) > name_max:
            return f"the file name {_clip(part)} is {len(os.fsencode(part))} bytes long; the file system allows {name_max}"
    full = len(os.fsencode(os.path.abspath(path)))
    if full >= path_max:  # PATH_MAX counts the terminating NUL
        return f"{_clip(path)} is {full} bytes long as an absolute path; the system allows {path_max - 1}"
    return None


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else f"{text[:width // 2]}...{text[-width // 2:]}"
