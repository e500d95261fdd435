"""Streaming access to text files: checks, UTF-8 and line boundaries, and block-wise decoding with universal newlines.

Nothing here reads a whole file into memory: files are read in blocks of `block_bytes` (a few MB by default).
"""
import codecs
import os

from .errors import DataError

DEFAULT_BLOCK_BYTES = 4 << 20


def check_file(path):
    """Returns the size in bytes of the regular file `path`; DataError if it is missing, not a file, or empty."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or directory")
    if not os.path.isfile(path):
        raise DataError(f"{path}: not a regular file")
    size = os.path.getsize(path)
    if size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes)")
    return size


def read_at(path, offset, n):
    """Returns up to n bytes of `path` from byte `offset`."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def line_of_offset(path, offset, block_bytes=DEFAULT_BLOCK_BYTES):
    """1-based line number of byte `offset` (counting b'\\n' before it); used in error messages only."""
    lines, pos = 1, 0
    with open(path, "rb") as f:
        while pos < offset:
            raw = f.read(min(block_bytes, offset - pos))
            if not raw:
                break
            lines += raw.count(b"\n")
            pos += len(raw)
    return lines


def next_char_boundary(path, p, size):
    """The first byte offset >= p that starts a UTF-8 character (skips continuation bytes 0b10xxxxxx) and does not
    fall between the '\\r' and '\\n' of a CRLF pair (so both sides of a split translate newlines as the whole file
    would). Returns size if none."""
    if p <= 0 or p >= size:
        return max(0, min(p, size))
    window = read_at(path, p - 1, 8)  # byte p-1 and up to 7 after it
    q = 1
    while q < len(window) and q < 4 and (window[q] & 0xC0) == 0x80:
        q += 1
    if q < len(window) and window[q - 1:q + 1] == b"\r\n":
        q += 1
    return min(p + q - 1, size)


def next_line_start(path, p, size, block_bytes=1 << 16):
    """The first byte offset >= p at which a line starts (offset 0, or just after '\\n', after a '\\r' not followed
    by '\\n'); returns size if no line starts at or after p."""
    if p <= 0:
        return 0
    if p >= size:
        return size
    prev = read_at(path, p - 1, 2)
    if prev[:1] == b"\n" or (prev[:1] == b"\r" and prev[1:2] != b"\n"):
        return p
    pos = p
    with open(path, "rb") as f:
        f.seek(pos)
        while pos < size:
            raw = f.read(block_bytes)
            if not raw:
                break
            hits = [i for i in (raw.find(b"\n"), raw.find(b"\r")) if i >= 0]
            if hits:
                i = min(hits)
                if raw[i] == 0x0A:
                    return pos + i + 1
                nxt = raw[i + 1:i + 2] if i + 1 < len(raw) else read_at(path, pos + i + 1, 1)
                return pos + i + (2 if nxt == b"\n" else 1)
            pos += len(raw)
    return size


class TextBlocks:
    """Iterates over the bytes [start, end) of a UTF-8 file as str blocks of about `block_bytes` bytes each.

    Decoding is strict UTF-8 (a multi-byte character split across two reads is held back, never broken); newlines
    are translated as Python's text mode does by default (universal newlines): '\\r\\n' and a lone '\\r' become
    '\\n', also when a '\\r\\n' pair is split across two reads. A byte that is not valid UTF-8 raises DataError naming
    its file, byte offset and line. A byte order mark is kept as the character U+FEFF (as open(encoding='utf-8')
    does). After iteration: n_chars (characters yielded), n_bytes (UTF-8 bytes of the yielded text, i.e. the raw
    byte count less one per translated '\\r\\n'), n_newlines ('\\n' yielded)."""

    def __init__(self, path, start=0, end=None, block_bytes=DEFAULT_BLOCK_BYTES):
        self.path = os.fspath(path)
        self.start = int(start)
        self.end = os.path.getsize(self.path) if end is None else int(end)
        self.block_bytes = max(16, int(block_bytes))
        self.n_chars = self.n_bytes = self.n_newlines = 0

    def __iter__(self):
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        pending_cr = False
        pos = self.start
        with open(self.path, "rb") as f:
            f.seek(pos)
            while pos < self.end:
                raw = f.read(min(self.block_bytes, self.end - pos))
                if not raw:
                    break
                final = pos + len(raw) >= self.end
                held = len(decoder.getstate()[0])
                try:
                    s = decoder.decode(raw, final)
                except UnicodeDecodeError as e:
                    off = pos - held + e.start
                    bad = bytes(e.object[e.start:e.start + 1])
                    raise DataError(
                        f"{self.path}: not UTF-8 text: {e.reason} at byte offset {off} (byte 0x{bad.hex()}, line "
                        f"{line_of_offset(self.path, off)}); a binary file can only be read with the byte "
                        f"vocabulary") from None
                n_raw = len(raw)
                pos += n_raw
                crlf = 0
                if s:
                    if pending_cr and s.startswith("\n"):
                        s = s[1:]
                        crlf += 1
                    pending_cr = s.endswith("\r")
                if "\r" in s:
                    crlf += s.count("\r\n")
                    s = s.replace("\r\n", "\n").replace("\r", "\n")
                self.n_bytes += n_raw - crlf
                if not s:
                    continue
                self.n_chars += len(s)
                self.n_newlines += s.count("\n")
                yield s
