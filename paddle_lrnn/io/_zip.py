"""Zip archives of stored (uncompressed) records, as torch.save writes them: a validating index and a writer.

Reader: the central directory is parsed by the standard library's zipfile (which reads only the directory), then
every member is checked against the file before anything is read: stored (method 0) and not encrypted, compressed
size equal to uncompressed size, local header present with the same name, data lying wholly before the central
directory, no two members overlapping, no duplicate names. A member therefore can never claim more bytes than the
file holds (no zip bombs: compressed members are refused outright). Data is read with `read_into` straight into a
caller's buffer and checked against the CRC-32 in the directory (when one was recorded).

Writer: the layout torch's writer (miniz) produces: local headers with flag 0x0808 and sizes in a data descriptor
after the data, an "FB" padding extra field so that each record's data starts at a multiple of 64 bytes, then the
central directory, a zip64 end record and locator, and the classic end record. Past 4 GiB (a size or an offset)
the zip64 fields are placed as miniz places them (checked byte for byte against a 4 GiB torch.save file: the local
zip64 field holds (size, 0) and/or the header's own offset, the data descriptor 8-byte sizes).
"""
import struct
import zipfile
import zlib

__all__ = ["ZipMember", "read_zip_index", "ZipWriter", "ZipProblem"]

_LOCAL = struct.Struct("<IHHHHHIIIHH")       # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_EOCD64 = struct.Struct("<IQHHIIQQQQ")        # 56 bytes
_LOCATOR64 = struct.Struct("<IIQI")           # 20 bytes
_EOCD = struct.Struct("<IHHHHIIH")            # 22 bytes
_U32 = 0xFFFFFFFF          # the "see the zip64 field" marker
_ZIP64_LIMIT = 0xFFFFFFFF  # sizes and offsets from here on need zip64 fields (a variable so tests can lower it)
_CHUNK = 1 << 24


class ZipProblem(Exception):
    """A problem with the archive; the caller turns it into a CheckpointError naming the file."""


class ZipMember:
    __slots__ = ("name", "size", "data_offset", "crc", "header_offset")

    def __init__(self, name, size, data_offset, crc, header_offset):
        self.name = name
        self.size = size
        self.data_offset = data_offset
        self.crc = crc
        self.header_offset = header_offset


def read_zip_index(f, file_size):
    """Validated {name: ZipMember} of the zip archive in the seekable binary file `f` of `file_size` bytes."""
    try:
        zf = zipfile.ZipFile(f)
        infos = zf.infolist()
        dir_start = getattr(zf, "start_dir", file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, struct.error, EOFError, IndexError,
            UnicodeDecodeError, OSError, NotImplementedError) as e:
        raise ZipProblem(f"it is not a readable zip archive (truncated or corrupt?): {e}") from None
    if not 0 <= dir_start <= file_size:
        raise ZipProblem("its zip central directory lies outside the file")
    members = {}
    for info in infos:
        name = info.orig_filename
        if "\x00" in name:
            raise ZipProblem(f"zip member {name!r} has a NUL byte in its name")
        if name in members:
            raise ZipProblem(f"its zip archive holds the member {name!r} twice")
        if info.flag_bits & 0x1:
            raise ZipProblem(f"zip member {name!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ZipProblem(f"zip member {name!r} is compressed (method {info.compress_type}, declaring "
                             f"{info.file_size} bytes); torch.save stores every record uncompressed")
        if info.compress_size != info.file_size:
            raise ZipProblem(f"zip member {name!r} declares {info.file_size} bytes but stores "
                             f"{info.compress_size}")
        if info.header_offset < 0 or info.header_offset + _LOCAL.size > dir_start:
            raise ZipProblem(f"zip member {name!r} has its header outside the archive")
        f.seek(info.header_offset)
        raw = f.read(_LOCAL.size)
        if len(raw) != _LOCAL.size:
            raise ZipProblem(f"zip member {name!r}: truncated local header")
        sig, _, _, _, _, _, _, _, _, name_len, extra_len = _LOCAL.unpack(raw)
        if sig != 0x04034B50:
            raise ZipProblem(f"zip member {name!r}: no local header where the directory points")
        local_name = f.read(name_len)
        expected = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
        if local_name != expected:
            raise ZipProblem(f"zip member {name!r}: the local header names {local_name[:80]!r} instead")
        data_offset = info.header_offset + _LOCAL.size + name_len + extra_len
        if data_offset + info.file_size > dir_start:
            raise ZipProblem(f"zip member {name!r} declares {info.file_size} bytes at offset {data_offset}, "
                             f"past the end of the archive data ({dir_start} bytes; file {file_size} bytes)")
        members[name] = ZipMember(name, info.file_size, data_offset, info.CRC, info.header_offset)
    ordered = sorted(members.values(), key=lambda m: m.header_offset)
    for a, b in zip(ordered, ordered[1:]):
        if a.data_offset + a.size > b.header_offset:
            raise ZipProblem(f"zip members {a.name!r} and {b.name!r} overlap")
    return members


def read_into(f, member, out):
    """Reads member's bytes into the writable buffer `out` (exactly member.size bytes) and checks the CRC."""
    view = memoryview(out).cast("B")
    if len(view) != member.size:
        raise ZipProblem(f"internal: buffer of {len(view)} bytes for member {member.name!r} of {member.size}")
    f.seek(member.data_offset)
    got = 0
    crc = 0
    while got < member.size:
        n = f.readinto(view[got:got + _CHUNK])
        if not n:
            raise ZipProblem(f"zip member {member.name!r} is truncated ({got} of {member.size} bytes)")
        crc = zlib.crc32(view[got:got + n], crc)
        got += n
    if (member.crc != 0 or member.size == 0) and crc != member.crc:
        raise ZipProblem(f"zip member {member.name!r} fails its CRC-32 check (corrupt file)")
    return out


def read_bytes(f, member):
    buf = bytearray(member.size)
    read_into(f, member, buf)
    return bytes(buf)


class ZipWriter:
    """Writes stored records to the binary file `f` (starting at its current position 0) in torch's layout."""

    def __init__(self, f, alignment=64):
        self.f = f
        self.alignment = alignment
        self.offset = 0
        self.entries = []  # (name bytes, crc, size, header offset)

    def _write(self, data):
        self.f.write(data)
        self.offset += len(data)

    def write_record(self, name, data):
        """data: bytes-like (any C-contiguous buffer)."""
        view = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else memoryview(data)
        size = len(view)
        name_b = name.encode("utf-8")
        header_offset = self.offset
        big_size, big_offset = size >= _ZIP64_LIMIT, header_offset >= _ZIP64_LIMIT
        zip64 = big_size or big_offset
        # as miniz: a zip64 field in the local header with the sizes and/or the header's own offset
        # (compressed size 0: it follows in the data descriptor)
        fields = ([size, 0] if big_size else []) + ([header_offset] if big_offset else [])
        extra = struct.pack(f"<HH{len(fields)}Q", 0x0001, 8 * len(fields), *fields) if fields else b""
        pad = -(header_offset + _LOCAL.size + len(name_b) + len(extra)) % self.alignment
        if 0 < pad < 4:
            pad += self.alignment
        if pad:
            extra += b"FB" + struct.pack("<H", pad - 4) + b"Z" * (pad - 4)
        self._write(_LOCAL.pack(0x04034B50, 0, 0x0808, 0, 0, 0, 0, 0, 0, len(name_b), len(extra)))
        self._write(name_b)
        self._write(extra)
        crc = 0
        for start in range(0, size, _CHUNK):
            chunk = view[start:start + _CHUNK]
            crc = zlib.crc32(chunk, crc)
            self._write(chunk)
        if zip64:
            self._write(struct.pack("<IIQQ", 0x08074B50, crc, size, size))
        else:
            self._write(struct.pack("<IIII", 0x08074B50, crc, size, size))
        self.entries.append((name_b, crc, size, header_offset))

    def close(self):
        cd_offset = self.offset
        for name_b, crc, size, header_offset in self.entries:
            big_size, big_offset = size >= _ZIP64_LIMIT, header_offset >= _ZIP64_LIMIT
            fields = ([size, size] if big_size else []) + ([header_offset] if big_offset else [])
            extra = struct.pack(f"<HH{len(fields)}Q", 0x0001, 8 * len(fields), *fields) if fields else b""
            self._write(_CENTRAL.pack(0x02014B50, 0, 0, 0x0808, 0, 0, 0, crc,
                                      _U32 if big_size else size, _U32 if big_size else size,
                                      len(name_b), len(extra), 0, 0, 0, 0,
                                      _U32 if big_offset else header_offset))
            self._write(name_b)
            self._write(extra)
        cd_size = self.offset - cd_offset
        eocd64_offset = self.offset
        n = len(self.entries)
        self._write(_EOCD64.pack(0x06064B50, _EOCD64.size - 12, 0x031E, 45, 0, 0, n, n, cd_size, cd_offset))
        self._write(_LOCATOR64.pack(0x07064B50, 0, eocd64_offset, 1))
        count = n if n < 0xFFFF else 0xFFFF  # each field that does not fit says "see the zip64 record"
        self._write(_EOCD.pack(0x06054B50, 0, 0, count, count, cd_size if cd_size < _ZIP64_LIMIT else _U32,
                               cd_offset if cd_offset < _ZIP64_LIMIT else _U32, 0))
