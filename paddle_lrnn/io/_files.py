"""Opening a file to read, refusing anything that is not a regular file (directories, FIFOs, devices)."""
import os
import stat

from .errors import CheckpointError


def open_regular(path):
    """Opens `path` for binary reading; returns (file object, size). FileNotFoundError if it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CheckpointError(path, f"cannot stat it: {e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(path, "it is a directory, not a checkpoint file (for a sharded checkpoint use "
                                    "load_sharded_checkpoint with its index file)")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(path, "it is not a regular file")
    # O_NONBLOCK: if the path was swapped for a FIFO after the stat, opening must not hang.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(path, "it is not a regular file")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return f, st.st_size
