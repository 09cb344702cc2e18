"""One file scheme for every result memtrim saves, and one way to open them.

Every file is a 32-byte header, then the body:

- 16 bytes of magic naming the kind of result: ``MEMTRIM-`` and the kind
  (``CAPTURE``, ``TIMELINE``, ``LINES``, ``CENSUS``), padded with ``\\n``;
- the kind's format version (4 bytes, big-endian);
- flags (4 bytes, big-endian, 0);
- the length of the body (8 bytes, big-endian), which tells a truncated file;
- the body: zlib-compressed data (UTF-8 JSON, or for a timeline the lines of
  its recording text).

:func:`load` opens any of them and returns the result (a
:class:`~memtrim.run.capture.Capture`, a
:class:`~memtrim.timeline.model.Timeline`, a
:class:`~memtrim.lines.model.LineTable` or a
:class:`~memtrim.objects.census.Census`). Older versions are migrated when
read: version 1 captures, and timelines recorded as bare text
(``memtrim-timeline 1`` files). A file that is not memtrim's, is truncated,
corrupt or from a newer memtrim raises :class:`FormatError` (a
:class:`ValueError`) with one line saying so.

Each kind is read and written by its product's module (its "codec"), which
has ``encode_body(result) -> bytes`` and ``decode_body(body, version, name)``;
the codec is imported by name when a file of its kind is opened or saved, so
this module depends on no product.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import struct
import tempfile
import zlib
from typing import Any

HEADER = struct.Struct(">16sIIQ")  # magic, version, flags, body length
_TEXT_TIMELINE = b"memtrim-timeline"  # the first, text-only recording format


class FormatError(ValueError):
    """A file that is not a memtrim result, or is truncated, corrupt or too new."""


class Kind:
    """One kind of saved result: its magic, current version and codec module."""

    __slots__ = ("codec", "label", "magic", "name", "version")

    def __init__(self, name: str, label: str, version: int, codec: str) -> None:
        self.name = name
        self.label = label  # in messages: "not a memtrim <label>"
        self.magic = f"MEMTRIM-{name.upper()}".encode().ljust(HEADER.size // 2, b"\n")
        self.version = version
        self.codec = codec

    def __repr__(self) -> str:
        return f"Kind({self.name!r}, version={self.version})"


KINDS = {
    kind.name: kind
    for kind in (
        Kind("capture", "capture", 3, "memtrim.run.capture"),
        Kind("timeline", "recording", 2, "memtrim.timeline.recording"),
        Kind("lines", "line table", 1, "memtrim.lines.model"),
        Kind("census", "census", 1, "memtrim.objects.census"),
    )
}
_BY_MAGIC = {kind.magic: kind for kind in KINDS.values()}


def pack(kind: str, body: bytes, version: int | None = None) -> bytes:
    """A file of ``kind`` holding ``body`` (compressed here)."""
    spec = KINDS[kind]
    data = zlib.compress(body, 1)
    version = spec.version if version is None else version
    return HEADER.pack(spec.magic, version, 0, len(data)) + data


def unpack(data: bytes, name: str = "file", expect: str | None = None) -> tuple[Kind, int, bytes]:
    """The kind, version and (decompressed) body of a file's bytes.

    With ``expect``, a file of another kind is refused as "not a memtrim
    <that kind>". Text recordings (timeline version 1) come back whole.
    """
    wanted = KINDS[expect] if expect else None
    what = f"a memtrim {wanted.label}" if wanted else "a memtrim file"
    if data.startswith(_TEXT_TIMELINE) and expect in (None, "timeline"):
        return KINDS["timeline"], 1, data
    kind = _BY_MAGIC.get(data[: len(next(iter(_BY_MAGIC)))])
    if kind is None or (wanted is not None and kind is not wanted):
        magics = [wanted.magic] if wanted else list(_BY_MAGIC)
        if len(data) < HEADER.size // 2 and any(m.startswith(data) for m in magics):
            raise FormatError(f"{name} is truncated")
        raise FormatError(f"{name} is not {what}")
    if len(data) < HEADER.size:
        raise FormatError(f"{name} is truncated")
    _, version, _flags, length = HEADER.unpack_from(data)
    if version > kind.version:
        raise FormatError(
            f"{name} has {kind.label} format version {version}; this memtrim reads up to "
            f"version {kind.version}: upgrade memtrim"
        )
    if version < 1:
        raise FormatError(f"{name} is corrupt (format version {version})")
    body = data[HEADER.size :]
    if len(body) < length:
        raise FormatError(f"{name} is truncated ({len(body)} of {length} bytes of data)")
    return kind, version, _inflate(body[:length], name)


# A body inflates at most this many times its compressed size (what memtrim
# writes stays below: JSON of captures compresses 5-30x), or to the floor: a
# crafted file that would inflate to gigabytes is refused before it is, and
# reading one takes at most about 15 times its bound in memory (parsed JSON).
MAX_RATIO = 50
MIN_LIMIT = 32 * 2**20


def _inflate(data: bytes, name: str) -> bytes:
    limit = max(MIN_LIMIT, MAX_RATIO * len(data))
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(data, limit)
    except zlib.error:
        raise FormatError(f"{name} is corrupt") from None
    if inflater.unconsumed_tail:
        raise FormatError(f"{name} is corrupt: its data inflates past {limit} bytes")
    if not inflater.eof:
        raise FormatError(f"{name} is corrupt (its compressed data ends early)")
    return body


def _codec(kind: Kind) -> Any:
    return importlib.import_module(kind.codec)


def kind_of(result: Any) -> Kind:
    """The kind a result is saved as (its class's ``FILE_KIND``)."""
    name = getattr(type(result), "FILE_KIND", None)
    if name not in KINDS:
        raise TypeError(f"{type(result).__name__} objects are not saved in memtrim files")
    return KINDS[name]


def dumps(result: Any) -> bytes:
    """A capture, timeline, line table or census as the bytes of its file."""
    kind = kind_of(result)
    return pack(kind.name, _codec(kind).encode_body(result))


def loads(data: bytes, name: str = "file", expect: str | None = None) -> Any:
    """The result in a file's bytes (``name`` is used in error messages)."""
    kind, version, body = unpack(data, name, expect)
    return _codec(kind).decode_body(body, version, name)


def read_bytes(path: str | os.PathLike[str], what: str = "file") -> bytes:
    """A file's bytes; :class:`FormatError` for one that cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise FormatError(f"no such {what}: {os.fspath(path)}") from None
    except IsADirectoryError:
        raise FormatError(f"{os.fspath(path)} is a directory, not a {what}") from None
    except OSError as exc:
        raise FormatError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None


def load(path: str | os.PathLike[str]) -> Any:
    """Open any saved result: capture, timeline recording, line table or census."""
    return loads(read_bytes(path, "memtrim file"), os.fspath(path))


def dump(result: Any, path: str | os.PathLike[str]) -> None:
    """Save a result to ``path``, whole or not at all (written beside it, then renamed)."""
    write_atomic(os.fspath(path), dumps(result))


# ------------------------------------------------------------- writing files
# Every file memtrim writes (results, reports, tables) goes into place whole:
# written beside its path under a temporary name, then renamed or linked.


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _temporary(path: str, data: str | bytes) -> str:
    """``data`` in a new file beside ``path``, with the usual permissions (0666
    less the umask, not the temporary file's 0600); returns its name."""
    directory = os.path.dirname(os.path.abspath(path))
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=".memtrim-", dir=directory)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
            f.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def write_atomic(path: str, data: str | bytes, *, force: bool = True) -> None:
    """Write to a temporary file beside ``path``, then move it into place.

    Without ``force``, a file that appeared at ``path`` meanwhile is kept:
    ``FileExistsError`` (the new file is linked, which fails where a rename
    would replace).
    """
    tmp = _temporary(path, data)
    try:
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_new(path: str, data: str | bytes) -> str:
    """Write ``data`` to ``path``, or to ``path`` with ``_1``, ``_2``... before its
    suffix if that exists: never over a file. Whole or not at all. Returns the
    path written."""
    stem, suffix = os.path.splitext(path)
    tmp = _temporary(path, data)
    try:
        for number in range(10_000):
            candidate = path if number == 0 else f"{stem}_{number}{suffix}"
            try:
                os.link(tmp, candidate)  # fails if it exists, unlike a rename
            except FileExistsError:
                continue
            return candidate
        raise FileExistsError(f"cannot write {path}: too many files of that name")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
