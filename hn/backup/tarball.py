"""A deterministic ustar writer and a refusing ustar reader.

The writer emits only regular files and directories with uid/gid 0, empty user and group
names, mtime 0 and a normalised mode, so the same files give the same bytes. Paths that
do not fit the 100-byte name field (or sizes past 8 GiB) get a pax ``x`` record, which
GNU tar and bsdtar read. The reader accepts exactly that subset and refuses everything
else (links, devices, FIFOs, GNU long names, global pax headers, setuid bits, unsafe
paths) before a byte of the member reaches the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from hn.errors import MalformedDocument, TooLarge, VerificationError
from hn.proto.backup import check_path
from hn.proto.chunked import read_exact

BLOCK = 512
END = b"\x00" * (2 * BLOCK)
MAX_OCTAL_SIZE = 8**11 - 1
MAX_PAX = 64 * 1024
FILE_TYPES = (b"0", b"\x00")
DIR_TYPE = b"5"
PAX_TYPE = b"x"


class ArchiveError(VerificationError):
    """The archive inside the backup is malformed or hostile."""

    code = "archive"


def _octal(value: int, width: int) -> bytes:
    return (b"%0*o" % (width - 1, value)) + b"\x00"


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body)
    while True:
        record = str(length).encode() + body
        if len(record) == length:
            return record
        length = len(record)


def _header(name: bytes, size: int, mode: int, typeflag: bytes) -> bytes:
    head = bytearray(BLOCK)
    head[0:len(name)] = name
    head[100:108] = _octal(mode, 8)
    head[108:116] = _octal(0, 8)
    head[116:124] = _octal(0, 8)
    head[124:136] = _octal(size, 12)
    head[136:148] = _octal(0, 12)
    head[148:156] = b" " * 8
    head[156:157] = typeflag
    head[257:265] = b"ustar\x0000"
    head[329:337] = _octal(0, 8)
    head[337:345] = _octal(0, 8)
    checksum = sum(head)
    head[148:156] = b"%06o\x00 " % checksum
    return bytes(head)


class _Template:
    """The fixed parts of a header for one (mode, type), for the common short-name case.

    A header is then the name, the size field and the checksum spliced between constant
    bytes: the same bytes ``_header`` gives, at a fraction of the cost per file.
    """

    def __init__(self, mode: int, typeflag: bytes) -> None:
        blank = _header(b"", 0, mode, typeflag)
        self.middle = blank[100:124]
        self.between = blank[136:148]
        self.tail = blank[156:]
        # Checksum of the header with an empty name and an all-zero size field.
        self.base = sum(blank[:148]) + 8 * 32 + sum(blank[156:]) - sum(_octal(0, 12))


_TEMPLATES: dict[tuple[int, bytes], _Template] = {}


def _fast_header(name: bytes, size: int, mode: int, typeflag: bytes) -> bytes:
    template = _TEMPLATES.get((mode, typeflag))
    if template is None:
        template = _TEMPLATES[(mode, typeflag)] = _Template(mode, typeflag)
    size_field = b"%011o\x00" % size
    checksum = template.base + sum(name) + sum(size_field)
    return b"".join((name, bytes(100 - len(name)), template.middle, size_field, template.between,
                     b"%06o\x00 " % checksum, template.tail))


PADDING = tuple(b"\x00" * n for n in range(BLOCK))  # PADDING[-size % BLOCK] follows a member of ``size``


def padding(size: int) -> bytes:
    return PADDING[-size % BLOCK]


def member_header(path: str, size: int, mode: int, directory: bool = False) -> bytes:
    """Header block(s) of one member; a pax record first when ustar cannot hold it."""
    name = (path + "/" if directory else path).encode("utf-8")
    typeflag = DIR_TYPE if directory else b"0"
    if len(name) <= 100 and size <= MAX_OCTAL_SIZE and name.isascii():
        return _fast_header(name, size, mode, typeflag)
    records = _pax_record("path", name.decode("utf-8"))
    if size > MAX_OCTAL_SIZE:
        records += _pax_record("size", str(size))
    # The pax record's own name is fixed, so the archive stays deterministic.
    pax = _header(b"././@PaxHeader", len(records), 0o644, PAX_TYPE) + records + padding(len(records))
    short = name[:100] if name.isascii() else b"././@LongName"
    return pax + _header(short, size if size <= MAX_OCTAL_SIZE else 0, mode, typeflag)


# -- reading ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    path: str
    size: int
    mode: int
    directory: bool


def _parse_octal(field: bytes, what: str) -> int:
    text = field.rstrip(b"\x00 ").lstrip(b" ")
    if not text:
        return 0
    if text.translate(None, b"01234567"):
        raise ArchiveError(f"archive header field {what} is not octal")
    return int(text, 8)


class Buffered:
    """A stream read in large blocks, handed out in pieces of exactly the size asked for.

    The archive reader asks for one 512-byte header, then one member's data, then its
    padding: three calls per file, each a slice of a block here instead of a trip
    through the decompressor. ``read(n)`` returns fewer than ``n`` bytes only at the end.
    """

    def __init__(self, src: Any, block: int = 1 << 20) -> None:
        self.src = src
        self.block = block
        self.buf = b""
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        pos = self.pos
        end = pos + n
        if 0 <= n and end <= len(self.buf):
            self.pos = end
            return self.buf[pos:end]
        parts = [self.buf[pos:]]
        have = len(parts[0])
        self.buf, self.pos = b"", 0
        while n < 0 or have < n:
            # A large request passes through in one read instead of block by block.
            block = self.src.read(self.block if n < 0 else max(self.block, n - have))
            if not block:
                break
            need = n - have
            if 0 <= n < have + len(block):
                parts.append(block[:need])
                self.buf, self.pos = block, need
                break
            parts.append(block)
            have += len(block)
        return b"".join(parts)


def _parse_pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise ArchiveError("malformed pax record")
        try:
            length = int(data[pos:space])
        except ValueError as exc:
            raise ArchiveError("malformed pax record length") from exc
        if length <= space - pos or pos + length > len(data):
            raise ArchiveError("malformed pax record length")
        record = data[space + 1:pos + length]
        if not record.endswith(b"\n") or b"=" not in record:
            raise ArchiveError("malformed pax record")
        key, _, value = record[:-1].partition(b"=")
        try:
            text_key, text_value = key.decode("utf-8"), value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArchiveError("pax record is not UTF-8") from exc
        if text_key in ("linkpath", "GNU.sparse.map", "GNU.sparse.size", "GNU.sparse.major"):
            raise ArchiveError(f"pax record {text_key!r} is not allowed")
        out[text_key] = text_value
        pos += length
    return out


def iter_members(src: BinaryIO, max_members: int,
                 expect: Callable[[], Member | None] | None = None) -> Iterator[Member]:
    """Yield members; the caller must consume exactly ``member.size`` bytes (plus padding)
    via ``read_data`` before asking for the next one.

    ``expect`` names the file member the caller wants next, if it knows: a header that
    equals, byte for byte, the one this module writes for that member is taken without
    being parsed (the common case, and a fifth of a restore's per-file cost otherwise).
    Anything else goes through every check below.
    """
    count = 0
    pax: dict[str, str] = {}
    while True:
        head = read_exact(src, BLOCK)
        if len(head) < BLOCK:
            raise ArchiveError("archive is truncated (no end-of-archive marker)")
        guess = expect() if expect is not None and not pax else None
        if guess is not None and head == member_header(guess.path, guess.size, guess.mode):
            count += 1
            if count > max_members:
                raise TooLarge(f"archive has more members than the manifest allows ({max_members})")
            yield guess
            continue
        if head == b"\x00" * BLOCK:
            if pax:
                raise ArchiveError("pax header without a member")
            return
        stored = _parse_octal(head[148:156], "checksum")
        if stored != sum(head[:148]) + 256 + sum(head[156:]):
            raise ArchiveError("archive header checksum mismatch")
        typeflag = head[156:157]
        size = _parse_octal(head[124:136], "size")
        if typeflag == PAX_TYPE:
            if pax or size > MAX_PAX:
                raise ArchiveError("pax header too large or repeated")
            data = read_exact(src, size + (-size % BLOCK))
            if len(data) < size:
                raise ArchiveError("archive is truncated inside a pax header")
            pax = _parse_pax(data[:size])
            continue
        count += 1
        if count > max_members:
            raise TooLarge(f"archive has more members than the manifest allows ({max_members})")
        if typeflag not in FILE_TYPES and typeflag != DIR_TYPE:
            raise ArchiveError(f"archive member of type {typeflag!r} refused: only files and folders are restored")
        if head[257:263] != b"ustar\x00":
            raise ArchiveError("archive member is not ustar")
        mode = _parse_octal(head[100:108], "mode")
        if mode & 0o7000:
            raise ArchiveError("archive member with setuid, setgid or sticky bit refused")
        if "path" in pax:
            raw_name = pax["path"]
        else:
            name = head[0:100].split(b"\x00", 1)[0]
            prefix = head[345:500].split(b"\x00", 1)[0]
            try:
                raw_name = ((prefix + b"/" + name) if prefix else name).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ArchiveError("archive member name is not UTF-8") from exc
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError as exc:
                raise ArchiveError("pax size is not a number") from exc
        pax = {}
        directory = typeflag == DIR_TYPE
        if directory:
            raw_name = raw_name.rstrip("/")
            if size:
                raise ArchiveError("a folder member has data")
        try:
            path = check_path(raw_name)
        except MalformedDocument as exc:
            raise ArchiveError(f"unsafe member path {raw_name!r} refused") from exc
        yield Member(path, size, mode & 0o777, directory)


def skip_padding(src: BinaryIO, size: int) -> None:
    pad = -size % BLOCK
    if pad and len(read_exact(src, pad)) < pad:
        raise ArchiveError("archive is truncated inside member padding")
