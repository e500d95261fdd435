"""Opening files to read: regular files only (directories, FIFOs and devices are refused), and JSON files with one
clear error for each way they can be unusable."""
import json
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


def read_json(path, error, limit=64 << 20):
    """The JSON object held by the file `path`. For a file that is missing, not a regular file, larger than
    `limit` bytes, not UTF-8 JSON, or not an object, raises error(problem) where problem reads after the file's
    name, e.g. "is not valid JSON: Expecting value: line 1 column 1 (char 0)"; the caller's `error` adds the name
    and picks the exception class."""
    try:
        f, size = open_regular(path)
    except FileNotFoundError:
        raise error("does not exist") from None
    except CheckpointError as err:
        raise error(err.problem.replace("it is", "is", 1)) from None
    with f:
        if size > limit:
            raise error(f"is {size} bytes, more than the {limit} such a JSON file can need")
        raw = f.read()
    return parse_json(raw, error)


def parse_json(raw, error):
    """The JSON object in `raw` (UTF-8 bytes, or text already decoded), with read_json's errors."""
    try:
        data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise error(f"is not valid JSON: {str(err)[:200]}") from None
    if not isinstance(data, dict):
        raise error("must hold a JSON object")
    return data
