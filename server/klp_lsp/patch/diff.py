"""Unified diffs read into plain records: patches of an mbox, files, hunks and changed lines.

Parsing never fails on bad content: a malformed hunk becomes a `Problem` naming its line in the
patch file, and the rest of the patch is still read. Only an unreadable file raises.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unidiff.errors import UnidiffParseError
from unidiff.patch import Hunk as UnidiffHunk
from unidiff.patch import PatchSet

from klp_lsp.errors import PatchParseError
from klp_lsp.limits import MAX_LINE_CHARS, MAX_PATCH_BYTES

# `git format-patch` starts every message with this line; the date is a fixed magic value.
_MBOX_FROM = re.compile(r"^From ([0-9a-f]{7,40}) Mon Sep 17 00:00:00 2001$")
_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
_BINARY = re.compile(r"^(Binary files .* differ|GIT binary patch)$")

FileStatus = Literal["modified", "added", "deleted", "renamed", "binary"]
LineKind = Literal["added", "removed"]


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong or doubtful in the input, located by a 1-based line of the patch file.

    `line` is 0 when the problem is about the whole file.
    """

    patch_file: str
    line: int
    message: str
    # False when the input was still understood (a hunk found at an offset).
    blocking: bool = True


@dataclass(frozen=True, slots=True)
class LineChange:
    """One added or removed line of a hunk.

    For a removed line `old_line` is its pre-image line. For an added line it is the pre-image
    line the addition follows (0 at the top of the file), so an insertion between pre-image lines
    k and k+1 has `old_line == k`.
    """

    kind: LineKind
    old_line: int
    new_line: int | None  # post-image line of an added line, None for a removed line
    patch_line: int
    text: str


@dataclass(frozen=True, slots=True)
class Hunk:
    """One `@@` hunk; `old_lines`/`new_lines` are its pre- and post-image texts (no newlines)."""

    patch_line: int  # the line of the `@@` header in the patch file
    end_line: int  # the last line of its body in the patch file
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    section: str  # what follows the second `@@` (git's function-name heuristic)
    changes: tuple[LineChange, ...]
    old_lines: tuple[str, ...]
    new_lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FileDiff:
    """The changes to one file. Paths are tree-relative (`a/`, `b/` prefixes stripped)."""

    old_path: str | None  # None for a new file
    new_path: str | None  # None for a deleted file
    status: FileStatus
    patch_line: int  # first line of this file's header in the patch file
    hunks: tuple[Hunk, ...]
    end_line: int = 0  # last line of its section (its last hunk's last line), 0 if unknown

    @property
    def path(self) -> str:
        """The tree path the change applies to: the pre-image path, or the new one for new files."""
        return self.old_path or self.new_path or ""


@dataclass(frozen=True, slots=True)
class Patch:
    """One patch: a whole plain diff, or one message of a `git format-patch` mbox."""

    patch_file: str
    subject: str | None
    commit: str | None  # the sha of the mbox `From` line
    patch_line: int  # first line of the message (or 1)
    files: tuple[FileDiff, ...]


def read_patch_text(path: Path) -> str:
    """The text of one patch file; `PatchParseError` when it cannot be read or is too large.

    At most `MAX_PATCH_BYTES` + 1 bytes are read, so a device or a pipe without end costs
    nothing either.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PATCH_BYTES + 1)
    except OSError as e:
        raise PatchParseError(f"{path}: cannot read patch: {e.strerror or e}") from e
    if len(raw) > MAX_PATCH_BYTES:
        raise PatchParseError(f"{path}: {_too_large(MAX_PATCH_BYTES + 1)}")
    # Patches may carry text in any 8-bit encoding; surrogateescape keeps line counts and bytes.
    text = raw.decode("utf-8", errors="surrogateescape")
    problem = _limit_problem(text, text.splitlines(), str(path))
    if problem is not None:
        raise PatchParseError(f"{path}: line {problem.line}: {problem.message}")
    return text


def read_patch(path: Path) -> tuple[tuple[Patch, ...], tuple[Problem, ...]]:
    """Read and parse one patch file; raises `PatchParseError` only if it cannot be read."""
    return parse_patch_text(read_patch_text(path), str(path))


def _too_large(size: int) -> str:
    more = "more than " if size > MAX_PATCH_BYTES else ""
    return (
        f"the patch is {more}{size / (1 << 20):.1f} MiB; klp-lsp reads patches of up to"
        f" {MAX_PATCH_BYTES >> 20} MiB"
    )


def _limit_problem(text: str, lines: list[str], patch_file: str) -> Problem | None:
    """A problem when `text` exceeds `MAX_PATCH_BYTES` or has a line over `MAX_LINE_CHARS`.

    Such a patch is not parsed at all: no real patch looks like that, and its cost (the diff
    parser, tree-sitter over the pre-image) would grow with it.
    """
    if len(text) > MAX_PATCH_BYTES // 4:
        size = len(text.encode("utf-8", errors="replace"))
        if size > MAX_PATCH_BYTES:
            return Problem(patch_file, 0, _too_large(size))
    number = next((i for i, line in enumerate(lines, 1) if len(line) > MAX_LINE_CHARS), None)
    if number is not None:
        return Problem(
            patch_file,
            number,
            f"the line is {len(lines[number - 1])} characters long; klp-lsp reads patch lines"
            f" of up to {MAX_LINE_CHARS}",
        )
    return None


def parse_patch_text(text: str, patch_file: str) -> tuple[tuple[Patch, ...], tuple[Problem, ...]]:
    """Parse a plain diff or an mbox of `git format-patch` messages into patches and problems."""
    lines = text.splitlines()
    too_large = _limit_problem(text, lines, patch_file)
    if too_large is not None:
        return (), (too_large,)
    problems: list[Problem] = []
    patches: list[Patch] = []
    for start, end in _split_messages(lines):
        subject, commit = _message_header(lines, start, end)
        files = []
        for sec_start, sec_end in _split_files(lines, start, end, patch_file, problems):
            fd = _parse_file(lines, sec_start, sec_end, patch_file, problems)
            if fd is not None:
                files.append(fd)
        if not files and commit is None and subject is None:
            continue
        if not files:
            problems.append(Problem(patch_file, start + 1, "patch changes no file"))
        patches.append(Patch(patch_file, subject, commit, start + 1, tuple(files)))
    if not patches:
        problems.append(Problem(patch_file, 0, "no diff found in the file"))
    return tuple(patches), tuple(problems)


def _split_messages(lines: list[str]) -> Iterator[tuple[int, int]]:
    """Yield [start, end) line ranges of mbox messages (the whole text when it is no mbox)."""
    starts = [i for i, line in enumerate(lines) if _MBOX_FROM.match(line)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    starts.append(len(lines))
    yield from itertools.pairwise(starts)


def _message_header(lines: list[str], start: int, end: int) -> tuple[str | None, str | None]:
    """The subject and commit sha of an mbox message, from its header block."""
    m = _MBOX_FROM.match(lines[start]) if start < end else None
    if m is None:
        return None, None
    subject: str | None = None
    i = start + 1
    while i < end and lines[i].strip():
        if lines[i].lower().startswith("subject:"):
            parts = [lines[i][len("subject:") :].strip()]
            # RFC 5322 folding: continuation lines start with white space.
            while i + 1 < end and lines[i + 1][:1] in (" ", "\t"):
                i += 1
                parts.append(lines[i].strip())
            subject = " ".join(parts)
        i += 1
    return subject, m.group(1)


def _is_file_start(lines: list[str], i: int, end: int) -> bool:
    line = lines[i]
    if line.startswith("diff "):
        return True
    return line.startswith("--- ") and i + 1 < end and lines[i + 1].startswith("+++ ")


def _split_files(
    lines: list[str], start: int, end: int, patch_file: str, problems: list[Problem]
) -> Iterator[tuple[int, int]]:
    """Yield [start, end) ranges of file sections, checking every hunk's line counts."""
    sec_start: int | None = None
    in_header = False  # between a `diff` line and its `---` line
    i = start
    while i < end:
        line = lines[i]
        if _is_file_start(lines, i, end) and not (in_header and line.startswith("--- ")):
            if sec_start is not None:
                yield sec_start, i
            sec_start = i
            in_header = line.startswith("diff ")
            i += 2 if line.startswith("--- ") else 1
            continue
        if line.startswith("--- ") and in_header:
            in_header = False
            i += 2
            continue
        m = _HUNK_HEADER.match(line)
        if m is not None and sec_start is not None:
            in_header = False
            i = _check_hunk(lines, i, end, m, patch_file, problems)
            continue
        if line.startswith("@@"):
            problems.append(Problem(patch_file, i + 1, f"malformed hunk header: {line[:60]!r}"))
        i += 1
    if sec_start is not None:
        yield sec_start, end


def _check_hunk(
    lines: list[str], i: int, end: int, m: re.Match[str], patch_file: str, problems: list[Problem]
) -> int:
    """Check the hunk whose header is at index `i`; return the index after its body."""
    old_left = int(m.group(2) or "1")
    new_left = int(m.group(4) or "1")
    header = i
    i += 1
    while i < end and (old_left > 0 or new_left > 0):
        line = lines[i]
        tag = line[:1]
        if tag in (" ", "") and not line.startswith("diff "):
            old_left -= 1
            new_left -= 1
        elif tag == "-" and old_left > 0:
            old_left -= 1
        elif tag == "+" and new_left > 0:
            new_left -= 1
        elif tag == "\\":
            pass
        else:
            break
        if old_left < 0 or new_left < 0:
            break
        i += 1
    if old_left != 0 or new_left != 0:
        found = repr(lines[i][:60]) if i < end else "the end of the patch"
        problems.append(
            Problem(
                patch_file,
                header + 1,
                f"hunk header {lines[header].split(' @@')[0]}@@ does not match its body: "
                f"{max(old_left, 0)} old and {max(new_left, 0)} new lines missing "
                f"before {found} at line {i + 1}",
            )
        )
        # Mark the hunk as broken so the file section skips it: blank its header.
        lines[header] = "@@ broken @@"
        while (
            i < end and lines[i][:1] in (" ", "-", "+", "\\") and not _is_file_start(lines, i, end)
        ):
            i += 1
    return i


def _strip(path: str, other: str | None) -> str | None:
    if path == "/dev/null":
        return None
    path = path.split("\t")[0]
    if path.startswith(("a/", "b/")):
        return path[2:]
    # `diff -ur linux.orig/fs/x.c linux/fs/x.c`: the first components differ, strip them (-p1).
    if other and other != "/dev/null" and "/" in path and "/" in other:
        head, _, rest = path.partition("/")
        ohead = other.split("\t")[0].partition("/")[0]
        if head != ohead:
            return rest
    return path


def _parse_file(
    lines: list[str], start: int, end: int, patch_file: str, problems: list[Problem]
) -> FileDiff | None:
    """Parse one file section with unidiff, dropping hunks `_check_hunk` marked as broken."""
    kept: list[str] = []
    line_map: list[int] = []  # kept index -> index in `lines`
    i = start
    while i < end:
        if lines[i] == "@@ broken @@":
            i += 1
            while i < end and not lines[i].startswith("@@") and not _is_file_start(lines, i, end):
                i += 1
            continue
        kept.append(lines[i])
        line_map.append(i)
        i += 1
    binary = any(_BINARY.match(x) for x in kept)
    try:
        ps = PatchSet("\n".join(kept) + "\n")
    except UnidiffParseError as e:
        problems.append(Problem(patch_file, start + 1, f"cannot parse this file's diff: {e}"))
        return None
    if len(ps) == 0:
        return None
    pf = ps[0]
    src = pf.source_file or ""
    tgt = pf.target_file or ""
    old_path = _strip(src, tgt) if src else None
    new_path = _strip(tgt, src) if tgt else None
    if pf.is_added_file:
        old_path = None
    if pf.is_removed_file:
        new_path = None
    status: FileStatus
    if binary or pf.is_binary_file:
        status = "binary"
    elif old_path is None:
        status = "added"
    elif new_path is None:
        status = "deleted"
    elif old_path != new_path:
        status = "renamed"
    else:
        status = "modified"
    hunks = tuple(_hunk(h, line_map) for h in pf)
    end_line = hunks[-1].end_line if hunks else line_map[-1] + 1
    return FileDiff(old_path, new_path, status, start + 1, hunks, end_line)


def _hunk(h: UnidiffHunk, line_map: list[int]) -> Hunk:
    changes: list[LineChange] = []
    old_lines: list[str] = []
    new_lines: list[str] = []
    # `-k,0` means an insertion after pre-image line k; otherwise the hunk starts at line k.
    last_old = h.source_start if h.source_length == 0 else h.source_start - 1
    new_no = h.target_start if h.target_length == 0 else h.target_start - 1
    header_line = 0
    patch_line = 0
    for ln in h:
        patch_line = line_map[(ln.diff_line_no or 1) - 1] + 1
        if not header_line:
            header_line = patch_line - 1
        text = ln.value.rstrip("\n")
        if ln.is_context:
            last_old += 1
            new_no += 1
            old_lines.append(text)
            new_lines.append(text)
        elif ln.is_removed:
            last_old += 1
            old_lines.append(text)
            changes.append(LineChange("removed", last_old, None, patch_line, text))
        elif ln.is_added:
            new_no += 1
            new_lines.append(text)
            changes.append(LineChange("added", last_old, new_no, patch_line, text))
    return Hunk(
        patch_line=header_line,
        end_line=max(patch_line, header_line),
        old_start=h.source_start,
        old_count=h.source_length,
        new_start=h.target_start,
        new_count=h.target_length,
        section=h.section_header,
        changes=tuple(changes),
        old_lines=tuple(old_lines),
        new_lines=tuple(new_lines),
    )
