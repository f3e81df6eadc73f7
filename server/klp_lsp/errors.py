"""The error hierarchy: every failure a user can cause is one of these, with a one-line message."""

from __future__ import annotations


class KlpError(Exception):
    """Base of every error klp-lsp reports to a user; `str()` is a one-line message."""


class BinaryFormatError(KlpError):
    """An input file is not a readable ELF object (truncated, corrupt, wrong kind)."""


class DebugInfoMissing(KlpError):
    """A binary has no DWARF, or the debug files of a kernel release cannot be found."""


class UnsupportedArchitecture(KlpError):
    """The binary is for an architecture klp-lsp does not analyse."""


class PatchParseError(KlpError):
    """A patch cannot be read at all (as opposed to problems inside it, which are data)."""


class IndexError_(KlpError):
    """The index is missing, corrupt, or of another schema version.

    The trailing underscore keeps the builtin `IndexError` usable next to it.
    """


class UsageError(KlpError):
    """The command line or a setting asks for something that cannot be done."""


class NotLivepatchModule(KlpError):
    """A module given to `verify` or `try` as a live patch has no livepatch structures."""


class ToolMissing(KlpError):
    """A program klp-lsp runs (qemu, busybox) is not installed; the message names the package."""


class BuildError(KlpError):
    """A kernel build step (configure, `make prepare`, compiling the original source) failed."""
