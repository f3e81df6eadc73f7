"""A minimal initramfs built on the fly: busybox, an `/init` script and the modules to load.

The archive is the kernel's "newc" cpio format (Documentation/driver-api/early-userspace/
buffer-format.rst), gzip-compressed, written here so no `cpio` program is needed. Every entry
has a fixed mode, owner and mtime, so the same inputs give the same bytes.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable
from dataclasses import dataclass

_TRAILER = "TRAILER!!!"
_DIR = 0o040755
_FILE = 0o100644
_EXEC = 0o100755
_SYMLINK = 0o120777


@dataclass(frozen=True, slots=True)
class Entry:
    """One file, directory or symlink of the archive (`data` is a symlink's target)."""

    path: str  # relative, no leading "/"
    mode: int
    data: bytes = b""


def directory(path: str) -> Entry:
    return Entry(path, _DIR)


def file(path: str, data: bytes, executable: bool = False) -> Entry:
    return Entry(path, _EXEC if executable else _FILE, data)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, _SYMLINK, target.encode())


def _pad4(out: io.BytesIO) -> None:
    out.write(b"\0" * (-out.tell() % 4))


def _header(ino: int, mode: int, size: int, name: bytes) -> bytes:
    fields = (ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % v for v in fields)


def write_newc(entries: Iterable[Entry]) -> bytes:
    """The uncompressed newc archive of `entries`, parents before children as given."""
    out = io.BytesIO()
    for ino, e in enumerate([*entries, Entry(_TRAILER, 0)], start=1):
        name = e.path.encode()
        out.write(_header(ino if e.path != _TRAILER else 0, e.mode, len(e.data), name))
        out.write(name + b"\0")
        _pad4(out)
        out.write(e.data)
        _pad4(out)
    return out.getvalue()


def build_initramfs(entries: Iterable[Entry]) -> bytes:
    """A gzip-compressed newc archive, as `-initrd` takes it."""
    # Level 1: the archive is mostly busybox and modules, and the boot waits for it.
    return gzip.compress(write_newc(entries), compresslevel=1, mtime=0)
