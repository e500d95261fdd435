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

    with atomic_directory("out/model") as staging:
        ...write files into staging...

does the same for a whole directory (see `atomic_directory`), and

    with atomic_files("out/run") as staging:
        ...write config.json, model.safetensors... into staging

replaces several files of a directory together: none of them unless all were written (see `atomic_files`).
"""
import contextlib
import os
import shutil
import stat
import tempfile

__all__ = ["atomic_directory", "atomic_files", "atomic_write"]

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
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
            f.close()
        except OSError as err:
            if err.filename is None and err.errno is not None:  # a failed write names no file: name the one written
                raise type(err)(err.errno, err.strerror, path) from None
            raise
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
    """Context manager yielding an empty staging directory beside ``path`` that takes the place of ``path`` when the
    block exits normally; if the block raises, the staging directory is removed and ``path`` is left as it was.

    An existing ``path`` (directory or file) is first renamed aside, the staging directory renamed in, and only then
    the old one deleted: a failure in between puts the old one back. Raises OSError naming ``path`` if its parent
    directory cannot be created or written."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except FileExistsError as err:  # a file where a directory of the path belongs
        raise NotADirectoryError(f"cannot create {path}: {err.filename} is not a directory") from None
    except OSError as err:
        raise type(err)(f"cannot create {path}: cannot create {parent} ({err.strerror})") from None
    try:
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise type(err)(f"cannot create {path}: cannot write into {parent} ({err.strerror})") from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_current_umask())  # as os.mkdir would have made it (mkdtemp's is 0o700)
        old = None
        if os.path.lexists(path):
            old = staging + ".old"
            os.rename(path, old)
        try:
            os.rename(staging, path)
        except BaseException:
            if old is not None:
                os.rename(old, path)
            raise
        staging = None
        _fsync_directory(parent)
        if old is not None:
            if os.path.isdir(old) and not os.path.islink(old):
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.unlink(old)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def atomic_files(directory):
    """Context manager yielding an empty staging directory inside ``directory`` (created if needed). When the block
    exits normally, every file written into the staging directory replaces its namesake in ``directory`` (one
    rename each, after all of them are complete); if the block raises, the staging directory is removed and no file
    of ``directory`` has changed. For files that belong together, such as a model's config and weights."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", suffix=".tmp", dir=directory)
    try:
        yield staging
        for name in sorted(os.listdir(staging)):
            os.replace(os.path.join(staging, name), os.path.join(directory, name))
        _fsync_directory(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
