"""Atomic file replacement: a reader sees either the old file or the complete new one, never a partial write.

    with atomic_write("model.safetensors") as f:
        f.write(data)

How: the data goes to a temporary file in the same directory as ``path`` (so the final rename stays inside one
file system), which is flushed and fsynced, given the permissions a newly created file would get (0o666 minus the
umask; or the existing file's permissions when ``path`` already exists), then renamed over ``path`` with
``os.replace`` and the directory is fsynced so the rename itself survives a crash. If the ``with`` block raises
(or the process dies before the rename), ``path`` is left exactly as it was and the temporary file is removed
(after a hard crash a ``.<name>.*.tmp`` file may remain; it is never mistaken for the target).

If ``path`` is a symbolic link, the link itself is replaced by a regular file (its target is not written through).

    with atomic_directory("models/converted") as staging:
        ...write files into staging...

does the same for a directory: it is filled beside ``path`` and renamed into place when the block succeeds.
"""
import contextlib
import os
import shutil
import stat
import tempfile

__all__ = ["atomic_directory", "atomic_write"]

_TEXT_MODES = ("w", "wt")
_BINARY_MODES = ("wb",)


def _current_umask():
    # Reading /proc avoids the os.umask(0) / os.umask(old) dance, which briefly changes the umask for all threads.
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync_directory(directory):
    if os.name != "posix":  # directories cannot be opened for fsync on Windows; rename durability is the OS's
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode="wb", **open_kwargs):
    """Context manager yielding a file object whose contents replace ``path`` atomically when the block exits.

    ``mode`` is ``"wb"`` (default) or ``"w"``/``"wt"`` (text; ``encoding``, ``newline`` etc. go through
    ``open_kwargs``). Raises IsADirectoryError if ``path`` is an existing directory. On an exception inside the
    block the temporary file is deleted, ``path`` is untouched, and the exception propagates.
    """
    if mode not in _TEXT_MODES + _BINARY_MODES:
        raise ValueError(f"atomic_write: mode must be 'wb', 'w' or 'wt', not {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    if not base:
        raise IsADirectoryError(f"atomic_write: {path!r} names a directory, not a file")
    try:
        st = os.stat(path)  # follows links: the permissions of what the reader saw at this name
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"atomic_write: {path!r} is a directory")
    perms = stat.S_IMODE(st.st_mode) if st is not None else (0o666 & ~_current_umask())

    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    f = None
    try:
        f = os.fdopen(fd, mode, **open_kwargs)
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.chmod(tmp, perms)
        os.replace(tmp, path)
        tmp = None
        _fsync_directory(directory)
    finally:
        if tmp is not None:  # the block (or the commit) failed: drop the temporary file, keep `path` as it was
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
            else:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_directory(path):
    """Context manager yielding a new empty directory beside ``path``; when the block exits normally it replaces
    ``path`` (an existing directory or file there is removed first), so the directory appears complete or not at
    all. On an exception inside the block ``path`` is untouched and the staging directory is removed."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        os.chmod(staging, 0o777 & ~_current_umask())  # mkdtemp's 0o700 would outlive the rename
        yield staging
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        os.rename(staging, path)
        _fsync_directory(parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
