"""A pickle reader that never imports, looks up or calls anything named by the data, and a minimal pickle writer.

Reader (`SafeUnpickler`): a small stack machine for the pickle opcodes of protocols 0-5 that a torch checkpoint
can contain. It builds only plain values (None, bool, int, float, str, bytes, bytearray, tuple, list, dict, set,
frozenset). A global reference (GLOBAL / STACK_GLOBAL) is handed to the caller's `resolve_global(module, name)`,
which returns one of the caller's own allow-listed objects or refuses; the names are never imported. REDUCE may only
call a `SafeCall` the caller returned; BUILD is passed to the caller's `build` hook; BINPERSID to its
`persistent_load`. Opcodes that construct arbitrary objects (INST, OBJ, NEWOBJ, NEWOBJ_EX), the extension registry
(EXT1/2/4), out-of-band buffers and text persistent ids are refused. Mutating opcodes (APPEND(S), SETITEM(S),
ADDITEMS) only act on list / dict / set objects the machine built itself (exact types), never on caller objects.
Stack, memo and mark depth are bounded by the length of the data; nothing recurses. Dict keys and set
elements are limited to strings, numbers and short flat tuples of them (`KeyCheck`): hashing them neither
recurses nor can be made to collide in bulk.

Writer (`PickleWriter`): protocol 2 output made of the opcodes torch's weights-only unpickler accepts.
"""
import codecs
import struct
from collections import OrderedDict

__all__ = ["SafeCall", "Refused", "Truncated", "SafeUnpickler", "PickleWriter", "brief", "KeyCheck"]


class Refused(Exception):
    """Raised inside the machine; the caller turns it into a CheckpointError naming the file."""


class Truncated(Refused):
    """The pickle runs past the end of the data it was given."""


class SafeCall:
    """An allow-listed callable: REDUCE may call it. `qualname` is the module.name the pickle used."""

    __slots__ = ("qualname", "func")

    def __init__(self, qualname, func):
        self.qualname = qualname
        self.func = func

    def __repr__(self):
        return f"<allow-listed {self.qualname}>"


def brief(value, limit=60, _inner=False):
    """A short description of an untrusted value for an error message (looks one level into short tuples and
    lists, never walks further, never long)."""
    if type(value) in (tuple, list) and len(value) <= 4 and not _inner:
        inner = ", ".join(brief(v, 20, True) for v in value)
        text = f"({inner})" if type(value) is tuple else f"[{inner}]"
    elif type(value) in (str, bytes, bytearray):
        text = repr(value[:limit]) + ("..." if len(value) > limit else "")
    elif type(value) in (int, float, bool) or value is None:
        text = repr(value) if type(value) is not int or value.bit_length() < 200 else f"<{value.bit_length()}-bit int>"
    elif type(value) in (tuple, list, dict, set, frozenset):
        text = f"{type(value).__name__} of {len(value)} items"
    else:
        text = type(value).__name__ if not isinstance(value, SafeCall) else value.qualname
    return text[:limit + 20]


class KeyCheck:
    """Admits the dict keys and set elements of one pickle: None, bool, float, str, bytes, ints of at most 60 bits,
    and tuples of up to 16 of these (not nested), at most 4096 such tuples per pickle. Why: hashing a tuple recurses
    into its items (a deeply nested one overflows the C stack; one built from shared sub-tuples takes exponential
    time), and tuples or wide ints can be crafted to share one hash, so that each insertion compares with every
    earlier key (quadratic time). Calling it returns the value or raises Refused."""

    MAX_TUPLE_ITEMS = 16
    MAX_TUPLES = 4096

    def __init__(self):
        self.tuples = 0

    def __call__(self, value, what="a dict key"):
        if type(value) is tuple and len(value) <= self.MAX_TUPLE_ITEMS and all(map(_scalar_key, value)):
            self.tuples += 1
            if self.tuples > self.MAX_TUPLES:
                raise Refused(f"its pickle uses more than {self.MAX_TUPLES} tuples as dict keys or set elements")
            return value
        if _scalar_key(value):
            return value
        raise Refused(f"its pickle uses a {type(value).__name__} {brief(value, 40)} as {what}; a checkpoint's keys "
                      f"are strings, numbers or short tuples of them")


def _scalar_key(value):
    t = type(value)
    return (value is None or t in (bool, float, bytes) or isinstance(value, str)
            or (t is int and -_MAX_KEY_INT < value < _MAX_KEY_INT))


_MAX_KEY_INT = 1 << 60  # below 2**61 - 1, the modulus of int hashes: distinct ints keep distinct hashes
_MAX_LONG_BYTES = 1024  # ints wider than 8192 bits have no place in a checkpoint
_MAX_PROTOCOL = 5
_REFUSED_OPCODES = {
    b"i"[0]: ("INST", "constructs an object of a named class"),
    b"o"[0]: ("OBJ", "constructs an object of a class on the stack"),
    0x81: ("NEWOBJ", "constructs an object with cls.__new__"),
    0x92: ("NEWOBJ_EX", "constructs an object with cls.__new__"),
    0x82: ("EXT1", "looks up the copyreg extension registry"),
    0x83: ("EXT2", "looks up the copyreg extension registry"),
    0x84: ("EXT4", "looks up the copyreg extension registry"),
    0x97: ("NEXT_BUFFER", "needs out-of-band buffers"),
    0x98: ("READONLY_BUFFER", "needs out-of-band buffers"),
    b"P"[0]: ("PERSID", "is a text persistent id, which torch never writes"),
}


def _decode_str8(raw):
    # Python-2 8-bit strings: torch.load decodes them as UTF-8.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("an 8-bit string in the pickle is not valid UTF-8") from None


class SafeUnpickler:
    """Runs one pickle from `data[start:end]`. `load()` returns (value, position after STOP)."""

    def __init__(self, data, *, resolve_global, persistent_load=None, build=None, start=0, end=None):
        self.data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self.pos = start
        self.end = len(data) if end is None else end
        self.resolve_global = resolve_global
        self.persistent_load = persistent_load
        self.build = build

    # -- reading helpers -------------------------------------------------------------------------------------
    def _read(self, n):
        if n < 0:
            raise Refused(f"its pickle has a negative length {n} at byte {self.pos}")
        if self.pos + n > self.end:
            raise Truncated(f"its pickle is truncated (needs {n} more bytes at byte {self.pos}, "
                          f"has {self.end - self.pos})")
        b = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return b

    def _readline(self):
        limit = min(self.end, self.pos + 65536)
        chunk = bytes(self.data[self.pos:limit])
        i = chunk.find(b"\n")
        if i < 0:
            if limit == self.end:
                raise Truncated(f"its pickle is truncated inside a text line at byte {self.pos}")
            raise Refused(f"its pickle has an over-long text line at byte {self.pos}")
        self.pos += i + 1
        return chunk[:i]

    def _u8(self):
        return self._read(1)[0]

    def _pop_mark(self):
        if not self.metastack:
            raise Refused("its pickle pops a MARK that was never set")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def _pop(self):
        if not self.stack:
            raise Refused("its pickle pops from an empty stack")
        return self.stack.pop()

    def _top(self):
        if not self.stack:
            raise Refused("its pickle reads from an empty stack")
        return self.stack[-1]

    def _int_line(self, line, what):
        try:
            text = line.decode("ascii")
            if text.endswith("L"):
                text = text[:-1]
            if len(text) > 400:
                raise ValueError("too many digits")
            return int(text, 0) if text[:2].lower() in ("0x", "0o", "0b") else int(text)
        except (UnicodeDecodeError, ValueError):
            raise Refused(f"its pickle has an invalid {what} {line[:40]!r}") from None

    # -- the machine -------------------------------------------------------------------------------------
    def load(self):
        self.stack = []
        self.metastack = []
        self.memo = {}
        self.key = KeyCheck()
        while True:
            op_pos = self.pos
            if self.pos >= self.end:
                raise Truncated("its pickle ends without a STOP opcode (truncated?)")
            op = self.data[self.pos]
            self.pos += 1
            if op == 0x2E:  # STOP
                if self.metastack or len(self.stack) != 1:
                    raise Refused(f"its pickle stops with {len(self.stack)} values and "
                                  f"{len(self.metastack)} open marks on its stack")
                return self.stack[0], self.pos
            try:
                handler = _DISPATCH.get(op)
                if handler is None:
                    if op in _REFUSED_OPCODES:
                        name, why = _REFUSED_OPCODES[op]
                        if name == "INST":
                            module = self._readline().decode("utf-8", "replace")
                            qual = self._readline().decode("utf-8", "replace")
                            raise Refused(f"it references {module}.{qual} (through INST), which is not a tensor, "
                                          f"storage or plain container")
                        raise Refused(f"its pickle uses the {name} opcode (at byte {op_pos}), which {why}; "
                                      f"a torch checkpoint does not need it")
                    raise Refused(f"its pickle has an unknown opcode 0x{op:02x} at byte {op_pos}")
                handler(self)
            except Refused:
                raise
            except RecursionError:
                raise Refused(f"its pickle nests too deeply (at byte {op_pos})") from None
            except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
                    UnicodeDecodeError, struct.error) as e:
                raise Refused(f"its pickle is malformed at byte {op_pos} "
                              f"(opcode {chr(op) if 32 < op < 127 else hex(op)}): {type(e).__name__}: "
                              f"{str(e)[:200]}") from None

    # -- opcodes ------------------------------------------------------------------------------------------
    def op_proto(self):
        v = self._u8()
        if v > _MAX_PROTOCOL:
            raise Refused(f"its pickle uses protocol {v}, newer than 5")

    def op_frame(self):
        n = struct.unpack("<Q", self._read(8))[0]
        if n > self.end - self.pos:
            raise Refused(f"its pickle frame claims {n} bytes but only {self.end - self.pos} remain")

    def op_mark(self):
        self.metastack.append(self.stack)
        self.stack = []

    def op_pop(self):
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def op_pop_mark(self):
        self._pop_mark()

    def op_dup(self):
        self.stack.append(self._top())

    def op_none(self):
        self.stack.append(None)

    def op_true(self):
        self.stack.append(True)

    def op_false(self):
        self.stack.append(False)

    def op_int(self):
        line = self._readline()
        if line == b"00":
            self.stack.append(False)
        elif line == b"01":
            self.stack.append(True)
        else:
            self.stack.append(self._int_line(line, "INT"))

    def op_binint(self):
        self.stack.append(struct.unpack("<i", self._read(4))[0])

    def op_binint1(self):
        self.stack.append(self._u8())

    def op_binint2(self):
        self.stack.append(struct.unpack("<H", self._read(2))[0])

    def op_long(self):
        self.stack.append(self._int_line(self._readline(), "LONG"))

    def _long_n(self, n):
        if n < 0 or n > _MAX_LONG_BYTES:
            raise Refused(f"its pickle holds a {n}-byte integer, too large for a checkpoint")
        self.stack.append(int.from_bytes(self._read(n), "little", signed=True))

    def op_long1(self):
        self._long_n(self._u8())

    def op_long4(self):
        self._long_n(struct.unpack("<i", self._read(4))[0])

    def op_float(self):
        line = self._readline()
        try:
            self.stack.append(float(line.decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            raise Refused(f"its pickle has an invalid FLOAT {line[:40]!r}") from None

    def op_binfloat(self):
        self.stack.append(struct.unpack(">d", self._read(8))[0])

    def op_string(self):
        line = self._readline().rstrip()
        if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b'"', b"'"):
            raise Refused("its pickle has an invalid STRING (not quoted)")
        self.stack.append(_decode_str8(codecs.escape_decode(line[1:-1])[0]))

    def op_binstring(self):
        n = struct.unpack("<i", self._read(4))[0]
        self.stack.append(_decode_str8(self._read(n)))

    def op_short_binstring(self):
        self.stack.append(_decode_str8(self._read(self._u8())))

    def op_unicode(self):
        self.stack.append(self._readline().decode("raw-unicode-escape"))

    def _utf8(self, n):
        self.stack.append(self._read(n).decode("utf-8", "surrogatepass"))

    def op_binunicode(self):
        self._utf8(struct.unpack("<I", self._read(4))[0])

    def op_short_binunicode(self):
        self._utf8(self._u8())

    def op_binunicode8(self):
        self._utf8(struct.unpack("<Q", self._read(8))[0])

    def op_binbytes(self):
        self.stack.append(self._read(struct.unpack("<I", self._read(4))[0]))

    def op_short_binbytes(self):
        self.stack.append(self._read(self._u8()))

    def op_binbytes8(self):
        self.stack.append(self._read(struct.unpack("<Q", self._read(8))[0]))

    def op_bytearray8(self):
        self.stack.append(bytearray(self._read(struct.unpack("<Q", self._read(8))[0])))

    def op_empty_tuple(self):
        self.stack.append(())

    def op_tuple(self):
        items = self._pop_mark()  # (first: _pop_mark replaces self.stack)
        self.stack.append(tuple(items))

    def op_tuple1(self):
        self.stack.append((self._pop(),))

    def op_tuple2(self):
        b = self._pop()
        a = self._pop()
        self.stack.append((a, b))

    def op_tuple3(self):
        c = self._pop()
        b = self._pop()
        a = self._pop()
        self.stack.append((a, b, c))

    def op_empty_list(self):
        self.stack.append([])

    def op_list(self):
        items = self._pop_mark()
        self.stack.append(items)

    def _target(self, kinds, opname):
        target = self._top()
        if type(target) not in kinds:
            raise Refused(f"its pickle applies {opname} to a {type(target).__name__}, "
                          f"not to a container it built")
        return target

    def op_append(self):
        value = self._pop()
        self._target((list,), "APPEND").append(value)

    def op_appends(self):
        items = self._pop_mark()
        self._target((list,), "APPENDS").extend(items)

    def op_empty_dict(self):
        self.stack.append({})

    def op_dict(self):
        items = self._pop_mark()
        if len(items) % 2:
            raise Refused("its pickle builds a DICT from an odd number of items")
        self.stack.append({self.key(items[i]): items[i + 1] for i in range(0, len(items), 2)})

    def op_setitem(self):
        value = self._pop()
        key = self._pop()
        self._target((dict, OrderedDict), "SETITEM")[self.key(key)] = value

    def op_setitems(self):
        items = self._pop_mark()
        if len(items) % 2:
            raise Refused("its pickle uses SETITEMS with an odd number of items")
        target = self._target((dict, OrderedDict), "SETITEMS")
        for i in range(0, len(items), 2):
            target[self.key(items[i])] = items[i + 1]

    def op_empty_set(self):
        self.stack.append(set())

    def op_additems(self):
        items = self._pop_mark()
        self._target((set,), "ADDITEMS").update(self.key(v, "a set element") for v in items)

    def op_frozenset(self):
        items = self._pop_mark()
        self.stack.append(frozenset(self.key(v, "a set element") for v in items))

    def _memo_get(self, idx):
        if idx not in self.memo:
            raise Refused(f"its pickle reads memo slot {idx}, which was never written")
        self.stack.append(self.memo[idx])

    def _memo_put(self, idx):
        if idx < 0:
            raise Refused("its pickle writes a negative memo slot")
        self.memo[idx] = self._top()

    def op_get(self):
        self._memo_get(self._int_line(self._readline(), "GET index"))

    def op_binget(self):
        self._memo_get(self._u8())

    def op_long_binget(self):
        self._memo_get(struct.unpack("<I", self._read(4))[0])

    def op_put(self):
        self._memo_put(self._int_line(self._readline(), "PUT index"))

    def op_binput(self):
        self._memo_put(self._u8())

    def op_long_binput(self):
        self._memo_put(struct.unpack("<I", self._read(4))[0])

    def op_memoize(self):
        self._memo_put(len(self.memo))

    def _global(self, module, name):
        self.stack.append(self.resolve_global(module, name))

    def op_global(self):
        module = self._readline().decode("utf-8")
        name = self._readline().decode("utf-8")
        self._global(module, name)

    def op_stack_global(self):
        name = self._pop()
        module = self._pop()
        if type(module) is not str or type(name) is not str:
            raise Refused("its pickle uses STACK_GLOBAL with names that are not strings")
        self._global(module, name)

    def op_reduce(self):
        args = self._pop()
        func = self._pop()
        if type(func) is not SafeCall:
            raise Refused(f"its pickle calls a {type(func).__name__} value ({brief(func)}) as a function; "
                          f"only allow-listed rebuild functions may be called")
        if type(args) is not tuple:
            raise Refused(f"its pickle calls {func.qualname} with {type(args).__name__} arguments, not a tuple")
        self.stack.append(func.func(*args))

    def op_build(self):
        state = self._pop()
        inst = self._top()
        if self.build is None:
            raise Refused("its pickle uses BUILD, which this file format does not need")
        self.build(inst, state)

    def op_binpersid(self):
        pid = self._pop()
        if self.persistent_load is None:
            raise Refused("its pickle refers to external data (persistent id) where none is expected")
        self.stack.append(self.persistent_load(pid))


_OPCODES = {
    0x80: SafeUnpickler.op_proto, 0x95: SafeUnpickler.op_frame,
    b"("[0]: SafeUnpickler.op_mark, b"0"[0]: SafeUnpickler.op_pop, b"1"[0]: SafeUnpickler.op_pop_mark,
    b"2"[0]: SafeUnpickler.op_dup,
    b"N"[0]: SafeUnpickler.op_none, 0x88: SafeUnpickler.op_true, 0x89: SafeUnpickler.op_false,
    b"I"[0]: SafeUnpickler.op_int, b"J"[0]: SafeUnpickler.op_binint, b"K"[0]: SafeUnpickler.op_binint1,
    b"M"[0]: SafeUnpickler.op_binint2, b"L"[0]: SafeUnpickler.op_long, 0x8A: SafeUnpickler.op_long1,
    0x8B: SafeUnpickler.op_long4,
    b"F"[0]: SafeUnpickler.op_float, b"G"[0]: SafeUnpickler.op_binfloat,
    b"S"[0]: SafeUnpickler.op_string, b"T"[0]: SafeUnpickler.op_binstring,
    b"U"[0]: SafeUnpickler.op_short_binstring, b"V"[0]: SafeUnpickler.op_unicode,
    b"X"[0]: SafeUnpickler.op_binunicode, 0x8C: SafeUnpickler.op_short_binunicode,
    0x8D: SafeUnpickler.op_binunicode8,
    b"B"[0]: SafeUnpickler.op_binbytes, b"C"[0]: SafeUnpickler.op_short_binbytes,
    0x8E: SafeUnpickler.op_binbytes8, 0x96: SafeUnpickler.op_bytearray8,
    b")"[0]: SafeUnpickler.op_empty_tuple, b"t"[0]: SafeUnpickler.op_tuple, 0x85: SafeUnpickler.op_tuple1,
    0x86: SafeUnpickler.op_tuple2, 0x87: SafeUnpickler.op_tuple3,
    b"]"[0]: SafeUnpickler.op_empty_list, b"l"[0]: SafeUnpickler.op_list, b"a"[0]: SafeUnpickler.op_append,
    b"e"[0]: SafeUnpickler.op_appends,
    b"}"[0]: SafeUnpickler.op_empty_dict, b"d"[0]: SafeUnpickler.op_dict, b"s"[0]: SafeUnpickler.op_setitem,
    b"u"[0]: SafeUnpickler.op_setitems,
    0x8F: SafeUnpickler.op_empty_set, 0x90: SafeUnpickler.op_additems, 0x91: SafeUnpickler.op_frozenset,
    b"g"[0]: SafeUnpickler.op_get, b"h"[0]: SafeUnpickler.op_binget, b"j"[0]: SafeUnpickler.op_long_binget,
    b"p"[0]: SafeUnpickler.op_put, b"q"[0]: SafeUnpickler.op_binput, b"r"[0]: SafeUnpickler.op_long_binput,
    0x94: SafeUnpickler.op_memoize,
    b"c"[0]: SafeUnpickler.op_global, 0x93: SafeUnpickler.op_stack_global,
    b"R"[0]: SafeUnpickler.op_reduce, b"b"[0]: SafeUnpickler.op_build, b"Q"[0]: SafeUnpickler.op_binpersid,
}
_DISPATCH = _OPCODES


# ------------------------------------------------------------------------------------------------------------
class PickleWriter:
    """Builds a protocol-2 pickle opcode by opcode (only opcodes torch's weights-only unpickler accepts)."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self._globals = {}

    def _memo_put(self):
        idx = len(self._globals)
        self.out += b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx)
        return idx

    def _memo_get(self, idx):
        self.out += b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx)

    def global_(self, module, name):
        key = (module, name)
        if key in self._globals:
            self._memo_get(self._globals[key])
        else:
            self.out += b"c" + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n"
            self._globals[key] = self._memo_put()

    def mark(self):
        self.out += b"("

    def none(self):
        self.out += b"N"

    def bool_(self, v):
        self.out += b"\x88" if v else b"\x89"

    def int_(self, v):
        if 0 <= v < 256:
            self.out += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.out += b"M" + struct.pack("<H", v)
        elif -(2 ** 31) <= v < 2 ** 31:
            self.out += b"J" + struct.pack("<i", v)
        else:
            n = (v.bit_length() + 8) // 8  # room for the sign bit
            raw = v.to_bytes(n, "little", signed=True)
            if n > 255:
                raise OverflowError("integer too large to write")
            self.out += b"\x8a" + bytes([n]) + raw

    def float_(self, v):
        self.out += b"G" + struct.pack(">d", v)

    def str_(self, v):
        raw = v.encode("utf-8", "surrogatepass")
        self.out += b"X" + struct.pack("<I", len(raw)) + raw

    def empty_tuple(self):
        self.out += b")"

    def tuple_(self, n):
        """Pops n items written since the matching mark() for n > 3; use tuple_n for 1-3 without a mark."""
        self.out += b"t"

    def tuple_n(self, n):
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[n]

    def empty_list(self):
        self.out += b"]"

    def appends(self):
        self.out += b"e"

    def empty_dict(self):
        self.out += b"}"

    def setitems(self):
        self.out += b"u"

    def reduce(self):
        self.out += b"R"

    def binpersid(self):
        self.out += b"Q"

    def stop(self):
        self.out += b"."
        return bytes(self.out)
