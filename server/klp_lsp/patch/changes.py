"""What a patch, or an edited buffer, changes in C terms: functions, data, macros, or nothing.

Hunks are mapped through the pre-image file (the source tree the kernel was built from), because
the binary and its DWARF describe that file. Every change keeps the patch line that caused it.
"""

from __future__ import annotations

import difflib
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from klp_lsp.patch.diff import FileDiff, Hunk, Patch, Problem
from klp_lsp.patch.source_map import (
    DataDefinition,
    DataKind,
    FunctionExtent,
    MacroDefinition,
    SourceMap,
    SourceParser,
    SourceText,
    code_tokens,
    code_tokens_by_line,
)

Status = Literal["changed", "added", "removed"]
NoteKind = Literal[
    "comment-only", "not-c", "new-file", "deleted-file", "binary", "renamed", "outside-definitions"
]
_C_SUFFIXES = (".c", ".h")
K = TypeVar("K")
T = TypeVar("T")
# How far from its stated line a hunk may apply, like patch(1)'s offset search.
_MAX_OFFSET = 2000
# A 30-file patch parses 60 texts (pre- and post-image); keep them all while the user types.
_PARSE_CACHE_SIZE = 96


@dataclass(frozen=True, slots=True)
class FunctionChange:
    """A function whose body, signature or attributes a change touches.

    Lines are those of the pre-image (of the post-image for an added function). `patch_line` is
    the first changed line inside the function: in the patch file for a patch, in the new
    buffer for `changes_between`.
    """

    name: str
    binary_names: tuple[str, ...]
    source_file: str
    start_line: int
    end_line: int
    name_line: int
    patch_file: str
    patch_line: int
    status: Status  # "added": new code, nothing to replace; "removed": the definition is gone
    is_header: bool
    is_init: bool
    is_static: bool
    is_inline: bool
    attributes: tuple[str, ...]
    macro: str | None  # "SYSCALL_DEFINE3" and the like
    signature_changed: bool  # the tokens before the body's brace differ
    static_locals_added: tuple[str, ...]
    static_locals_removed: tuple[str, ...]
    # Every changed line inside the function (patch lines, or buffer lines for an edit).
    patch_lines: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DataChange:
    """A changed struct/union/enum/typedef or global variable definition."""

    name: str
    kind: DataKind
    source_file: str
    start_line: int
    end_line: int
    patch_file: str
    patch_line: int
    status: Status
    is_header: bool
    patch_lines: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MacroUser:
    """A function whose body names a macro."""

    function: str
    source_file: str
    line: int  # the first line of the function that names the macro


@dataclass(frozen=True, slots=True)
class MacroChange:
    """A changed `#define`, with the functions found to use it."""

    name: str
    source_file: str
    start_line: int
    end_line: int
    patch_file: str
    patch_line: int
    status: Status
    is_header: bool
    users: tuple[MacroUser, ...]
    patch_lines: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class FileNote:
    """A change that touches no definition: comments only, not C, a new file, and so on."""

    kind: NoteKind
    source_file: str
    patch_file: str
    patch_line: int
    message: str
    # The changed lines it is about; empty when it is about the whole file.
    patch_lines: tuple[int, ...] = ()


Change = FunctionChange | DataChange | MacroChange | FileNote


@dataclass(slots=True)
class _Edits:
    """Changed lines of one file, with positions on both sides.

    `removed`: (pre line, post anchor, patch line); `added`: (post line, pre anchor, patch line).
    An anchor k means "between lines k and k+1" of the other side.
    """

    removed: list[tuple[int, int, int]] = field(default_factory=list)
    added: list[tuple[int, int, int]] = field(default_factory=list)


def changed_line_runs(
    old_lines: Sequence[str], new_lines: Sequence[str]
) -> list[tuple[int, int, int, int]]:
    """(old start, old end, new start, new end), 0-based line indices, of each run of lines
    that differs between the two texts.

    An edit is usually local: only what lies between the common head and tail is matched, as
    difflib is quadratic in the number of repeated lines (`}`, blank) it has to consider.
    """
    head = 0
    limit = min(len(old_lines), len(new_lines))
    while head < limit and old_lines[head] == new_lines[head]:
        head += 1
    tail = 0
    while (
        tail < limit - head
        and old_lines[len(old_lines) - 1 - tail] == new_lines[len(new_lines) - 1 - tail]
    ):
        tail += 1
    old_mid = old_lines[head : len(old_lines) - tail]
    new_mid = new_lines[head : len(new_lines) - tail]
    matcher = difflib.SequenceMatcher(None, old_mid, new_mid, autojunk=False)
    return [
        (i1 + head, i2 + head, j1 + head, j2 + head)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


class ChangeMapper:
    """Maps patches and buffer edits to changes; holds one parser for all files.

    Only the top-level chunks of a file that a change touches are parsed (see `_region_maps`),
    which gives the changes a whole-file parse gives; `whole_files=True` parses whole files,
    the reference the tests and the benchmark compare with.
    """

    def __init__(self, *, whole_files: bool = False) -> None:
        self._parser = SourceParser()
        self.whole_files = whole_files
        # The language server maps edits of one buffer against the same file on disk again and
        # again: keep the last few texts, keyed by the text itself, with the chunks parsed.
        self._texts: dict[str, SourceText] = {}
        self._parsed: dict[str, SourceMap] = {}
        # Each file the last mapping touched: (text before, text after), None for a file that
        # does not exist on that side. `check --compile` builds the patched tree from these.
        self.images: dict[str, tuple[str | None, str | None]] = {}

    def _source(self, text: str) -> SourceText:
        src = self._texts.get(text)
        if src is None:
            src = self._parser.prepare(text)
            if len(self._texts) >= _PARSE_CACHE_SIZE:
                del self._texts[next(iter(self._texts))]
            self._texts[text] = src
        return src

    def _parse(self, text: str) -> SourceMap:
        smap = self._parsed.get(text)
        if smap is None:
            src = self._source(text)
            smap = self._parser.parse_chunks(src, range(len(src.chunks)))
            if len(self._parsed) >= _PARSE_CACHE_SIZE:
                del self._parsed[next(iter(self._parsed))]
            self._parsed[text] = smap
        return smap

    def _maps(
        self, pre_text: str, post_text: str, edits: _Edits
    ) -> tuple[SourceMap, SourceMap, SourceText | None]:
        """Maps of both sides holding at least what the mapping needs, and the pre-image text.

        The text is None when the maps are whole-file parses.
        """
        if not self.whole_files and pre_text and post_text:
            pre, post = self._source(pre_text), self._source(post_text)
            got = _region_maps(self._parser, pre, post, edits)
            if got is not None:
                return got[0], got[1], pre
        return self._parse(pre_text), self._parse(post_text), None

    def changes_from_patch(
        self,
        patches: Sequence[Patch],
        source_root: Path | None,
        macro_search: Sequence[Path] = (),
    ) -> tuple[list[Change], tuple[Problem, ...]]:
        """The changes of a patch series against the pre-image files in `source_root`.

        Later patches of a series apply on top of earlier ones, so their pre-image is the
        earlier patches' post-image. `macro_search` lists files (relative to `source_root`, or
        absolute) searched for users of macros that a header change touches.
        """
        changes: list[Change] = []
        problems: list[Problem] = []
        self.images = {}
        texts: dict[str, str | None] = {}  # path -> current text, None once deleted
        added_by_series: set[tuple[str, str]] = set()
        for patch in patches:
            for fd in patch.files:
                self._file_from_patch(
                    patch.patch_file, fd, source_root, macro_search, texts, changes, problems
                )
        # A function added earlier in the series and changed later is still new code.
        merged: list[Change] = []
        for c in changes:
            if isinstance(c, FunctionChange):
                key = (c.source_file, c.name)
                if c.status == "added":
                    if key in added_by_series:
                        continue
                    added_by_series.add(key)
                elif key in added_by_series:
                    continue
            merged.append(c)
        return merged, tuple(problems)

    def changes_between(
        self, path: str, old_text: str, new_text: str, macro_search: Sequence[Path] = ()
    ) -> list[Change]:
        """The changes from `old_text` (the file on disk) to `new_text` (an edited buffer).

        `patch_file` of each change is `path` and `patch_line` a 1-based line of `new_text`.
        """
        self.images = {path: (old_text, new_text)}
        old_lines = old_text.split("\n")
        new_lines = new_text.split("\n")
        edits = _Edits()
        for i1, i2, j1, j2 in changed_line_runs(old_lines, new_lines):
            for i in range(i1, i2):
                edits.removed.append((i + 1, j1, j1 + 1))
            for j in range(j1, j2):
                edits.added.append((j + 1, i1, j + 1))
        if not edits.removed and not edits.added:
            return []
        if not path.endswith(_C_SUFFIXES):
            return [FileNote("not-c", path, path, 1, f"{path} is not C source")]
        return self._file_changes(path, old_text, new_text, edits, path, None, macro_search)

    # --- one file of a patch ------------------------------------------------------------------

    def _file_from_patch(
        self,
        patch_file: str,
        fd: FileDiff,
        source_root: Path | None,
        macro_search: Sequence[Path],
        texts: dict[str, str | None],
        changes: list[Change],
        problems: list[Problem],
    ) -> None:
        path = fd.path
        line = fd.hunks[0].changes[0].patch_line if fd.hunks and fd.hunks[0].changes else 0
        line = line or fd.patch_line
        if fd.status == "binary":
            changes.append(FileNote("binary", path, patch_file, fd.patch_line, f"{path}: binary"))
            return
        if fd.status == "renamed" and not fd.hunks:
            msg = f"{fd.old_path} renamed to {fd.new_path}; no content change"
            changes.append(FileNote("renamed", path, patch_file, fd.patch_line, msg))
            return
        if not path.endswith(_C_SUFFIXES):
            msg = f"{path} is not C source; it changes no function"
            changes.append(FileNote("not-c", path, patch_file, line, msg))
            return
        if fd.status == "added":
            pre_text = ""
            changes.append(
                FileNote("new-file", path, patch_file, fd.patch_line, f"{path} is a new file")
            )
        else:
            got = self._pre_image(path, source_root, texts, patch_file, fd.patch_line, problems)
            if got is None:
                return
            pre_text = got
        post_text, edits = _apply(pre_text, fd.hunks, path, patch_file, problems)
        new_path = fd.new_path or path
        texts[path] = post_text if fd.status != "deleted" else None
        first = self.images[path][0] if path in self.images else pre_text or None
        self.images[path] = (first, None if fd.status in ("deleted", "renamed") else post_text)
        if fd.status == "renamed":
            texts[new_path] = post_text
            self.images[new_path] = (self.images.get(new_path, (None, None))[0], post_text)
        if fd.status == "deleted":
            changes.append(
                FileNote("deleted-file", path, patch_file, fd.patch_line, f"{path} is deleted")
            )
        changes.extend(
            self._file_changes(
                path, pre_text, post_text, edits, patch_file, source_root, macro_search
            )
        )

    def _pre_image(
        self,
        path: str,
        source_root: Path | None,
        texts: dict[str, str | None],
        patch_file: str,
        patch_line: int,
        problems: list[Problem],
    ) -> str | None:
        if path in texts:
            text = texts[path]
            if text is None:
                problems.append(Problem(patch_file, patch_line, f"{path} was deleted earlier"))
            return text
        if source_root is None:
            problems.append(
                Problem(patch_file, patch_line, f"{path}: no source tree given to map hunks")
            )
            return None
        file = source_root / path
        # A path such as `../../etc/passwd` must not make klp-lsp read outside the tree.
        if not file.resolve().is_relative_to(source_root.resolve()):
            problems.append(
                Problem(patch_file, patch_line, f"{path}: outside the source tree {source_root}")
            )
            return None
        try:
            return file.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            problems.append(
                Problem(patch_file, patch_line, f"{path}: pre-image not found in {source_root}")
            )
            return None

    # --- the mapping ------------------------------------------------------------------------

    def _file_changes(
        self,
        path: str,
        pre_text: str,
        post_text: str,
        edits: _Edits,
        patch_file: str,
        source_root: Path | None,
        macro_search: Sequence[Path],
    ) -> list[Change]:
        if not edits.removed and not edits.added:
            return []
        first_line = min(p for *_, p in (*edits.removed, *edits.added))
        pre, post, pre_src = self._maps(pre_text, post_text, edits)
        pre_lines = pre_text.split("\n")
        post_lines = post_text.split("\n")
        is_header = path.endswith(".h")
        out: list[Change] = []
        covered: set[int] = set()  # patch lines inside some definition
        sides = _Sides(edits, pre_lines, post_lines, covered)

        fns = _pair([(f.name, f) for f in pre.functions], [(f.name, f) for f in post.functions])
        for old, new, lines in sides.changed(fns):
            out.append(_function_change(path, patch_file, lines, old, new, is_header))

        data_pairs = _pair(
            [((d.kind, d.name), d) for d in pre.data], [((d.kind, d.name), d) for d in post.data]
        )
        for old_d, new_d, lines in sides.changed(data_pairs):
            d = old_d or new_d
            assert d is not None
            status = _status(old_d, new_d)
            out.append(
                DataChange(
                    d.name, d.kind, path, d.start_line, d.end_line, patch_file, lines[0], status,
                    is_header, lines,
                )
            )  # fmt: skip

        macro_pairs = _pair([(m.name, m) for m in pre.macros], [(m.name, m) for m in post.macros])
        for old_m, new_m, lines in sides.changed(macro_pairs):
            m = old_m or new_m
            assert m is not None
            # Only functions in chunks that name the macro can use it.
            users_map = (
                pre
                if pre_src is None
                else self._parser.parse_chunks(pre_src, pre_src.find_chunks(m.name, blanked=False))
            )
            users = list(_macro_users(m.name, path, pre_text, users_map))
            if is_header and source_root is not None:
                users += self._search_users(m.name, source_root, macro_search)
            out.append(
                MacroChange(
                    m.name, path, m.start_line, m.end_line, patch_file, lines[0],
                    _status(old_m, new_m), is_header, tuple(users), lines,
                )
            )  # fmt: skip

        rest_removed = [(line, p) for line, _, p in edits.removed if p not in covered]
        rest_added = [(line, p) for line, _, p in edits.added if p not in covered]
        outside = (
            _outside_changes(
                pre_lines, sides.pre_spans, post_lines, sides.post_spans, rest_removed, rest_added
            )
            if rest_removed or rest_added
            else ()
        )
        if outside:
            msg = f"{path}: a change outside any function, data or macro definition"
            out.append(FileNote("outside-definitions", path, patch_file, outside[0], msg, outside))
        if not out:
            msg = f"{path}: only comments or white space change; no function changes"
            out.append(FileNote("comment-only", path, patch_file, first_line, msg))
        return out

    def _search_users(self, macro: str, root: Path, files: Iterable[Path]) -> list[MacroUser]:
        users: list[MacroUser] = []
        word = re.compile(rf"\b{re.escape(macro)}\b")
        for f in files:
            full = f if f.is_absolute() else root / f
            try:
                text = full.read_text(encoding="utf-8", errors="surrogateescape")
            except OSError:
                continue
            # `in` finds a string many times faster than a regex starting with `\b` does.
            if macro not in text or not word.search(text):
                continue
            rel = str(full.relative_to(root)) if full.is_relative_to(root) else str(full)
            if self.whole_files:
                smap = self._parse(text)
            else:
                src = self._source(text)
                smap = self._parser.parse_chunks(src, src.find_chunks(macro, blanked=False))
            users.extend(_macro_users(macro, rel, text, smap))
        return users


def changes_from_patch(
    patches: Sequence[Patch], source_root: Path | None, macro_search: Sequence[Path] = ()
) -> tuple[list[Change], tuple[Problem, ...]]:
    """The changes of a patch series against `source_root` (see `ChangeMapper`)."""
    return ChangeMapper().changes_from_patch(patches, source_root, macro_search)


def changes_between(path: str, old_text: str, new_text: str) -> list[Change]:
    """The changes from a file on disk to an edited buffer (see `ChangeMapper`)."""
    return ChangeMapper().changes_between(path, old_text, new_text)


# --- helpers -------------------------------------------------------------------------------


Definition = TypeVar("Definition", FunctionExtent, DataDefinition, MacroDefinition)


def _region_maps(
    parser: SourceParser, pre: SourceText, post: SourceText, edits: _Edits
) -> tuple[SourceMap, SourceMap] | None:
    """Maps of the chunks the edits touch on each side, enough to pair the definitions they hit.

    Edits fall in runs of touched chunks ("windows"); outside them both sides have the same
    chunks, which hold the same definitions, so only windows need parsing. Definitions are
    paired by key and rank (`_pair`): when a window holds more definitions of a key on one side
    than on the other, every chunk naming the key is parsed on both sides too, so ranks stay
    those of a whole-file parse. None when the sides do not line up (a blanked span that
    crosses a window); the caller then parses whole files.
    """
    n_pre, n_post = len(pre.lines), len(post.lines)
    touched: set[int] = set()
    for line, _, _ in edits.removed:
        touched.add(pre.chunk_of[line - 1])
    for _, k, _ in edits.added:
        # An anchor k is between lines k and k+1; a line added there may join either chunk.
        if k >= 1:
            touched.add(pre.chunk_of[k - 1])
        if k < n_pre:
            touched.add(pre.chunk_of[k])
    anchors = sorted(k for _, k, _ in edits.added)
    removed = sorted(line for line, _, _ in edits.removed)

    def post_line(line: int) -> int:
        """The post-image line of an unchanged pre-image line (0 and n_pre + 1 map too)."""
        if line > n_pre:
            return n_post + 1
        return line + bisect_left(anchors, line) - bisect_left(removed, line)

    # A window must end at a chunk end on the post side too (its closing `}` may be removed);
    # widen it by the next chunk until it does.
    while True:
        windows = _runs(sorted(touched))
        widened = False
        for _, last in windows:
            end = post_line(pre.chunks[last][1] + 2) - 1
            if end >= 1 and end != n_post and not post.blank[end - 1].startswith("}"):
                touched.add(last + 1)
                widened = True
        if not widened:
            break

    pre_windows: list[list[int]] = []
    post_windows: list[list[int]] = []
    pre_gap_start = post_gap_start = 0  # 0-based first lines of the text after a window
    gaps: list[tuple[int, int, int]] = []  # (pre start, post start, length) of unchanged text
    for first, last in windows:
        pre_a, pre_b = pre.chunks[first][0], pre.chunks[last][1]  # 0-based
        post_a = post_line(pre_a) if pre_a else 0  # 0-based: the line after post_line(pre_a)
        post_b = post_line(pre_b + 2) - 2  # 0-based last line, post_a - 1 when empty
        if post_a - post_gap_start != pre_a - pre_gap_start:
            return None
        gaps.append((pre_gap_start, post_gap_start, pre_a - pre_gap_start))
        pre_windows.append(list(range(first, last + 1)))
        post_windows.append(
            sorted({post.chunk_of[i] for i in range(post_a, post_b + 1)})
            if post_b >= post_a
            else []
        )
        pre_gap_start, post_gap_start = pre_b + 1, post_b + 1
    gaps.append((pre_gap_start, post_gap_start, n_pre - pre_gap_start))
    # Outside the windows both sides must read and blank the same, line for line.
    for pre_at, post_at, length in gaps:
        if (
            post_at + length > n_post
            or pre.blank[pre_at : pre_at + length] != post.blank[post_at : post_at + length]
            or pre.lines[pre_at : pre_at + length] != post.lines[post_at : post_at + length]
            or _syscalls(pre, pre_at, length) != _syscalls(post, post_at, length)
        ):
            return None
    if gaps[-1][1] + gaps[-1][2] != n_post:
        return None
    pre_chunks = [c for w in pre_windows for c in w]
    post_chunks = [c for w in post_windows for c in w]
    in_pre, in_post = set(pre_chunks), set(post_chunks)
    outside_pre = [c for c in range(len(pre.chunks)) if c not in in_pre]
    outside_post = [c for c in range(len(post.chunks)) if c not in in_post]
    if len(outside_pre) != len(outside_post):
        return None
    to_post = dict(zip(outside_pre, outside_post, strict=True))

    # Names whose count differs inside some window: their ranks depend on the whole file.
    names: set[str] = set()
    for pre_w, post_w in zip(pre_windows, post_windows, strict=True):
        old, new = _keys(parser.parse_chunks(pre, pre_w)), _keys(parser.parse_chunks(post, post_w))
        names.update(name for _, name in (old - new) + (new - old))
    for name in sorted(names):
        for c in pre.find_chunks(name, blanked=True):
            if c in to_post:
                pre_chunks.append(c)
                post_chunks.append(to_post[c])
    return parser.parse_chunks(pre, pre_chunks), parser.parse_chunks(post, post_chunks)


def _syscalls(src: SourceText, at: int, length: int) -> dict[int, str]:
    """The `SYSCALL_DEFINEn` names of `length` lines from 0-based line `at`, by offset."""
    return {k - at: v for k, v in src.syscall_lines.items() if at < k <= at + length}


def _runs(items: list[int]) -> list[tuple[int, int]]:
    """Runs of consecutive integers in a sorted list, as (first, last)."""
    runs: list[tuple[int, int]] = []
    for i in items:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _keys(smap: SourceMap) -> Counter[tuple[str, str]]:
    """How many definitions of each pairing key a map holds."""
    keys: Counter[tuple[str, str]] = Counter()
    keys.update(("function", f.name) for f in smap.functions)
    keys.update((d.kind, d.name) for d in smap.data)
    keys.update(("macro", m.name) for m in smap.macros)
    return keys


@dataclass(slots=True)
class _Sides:
    """The edits of one file seen from definitions on either side."""

    edits: _Edits
    pre_lines: list[str]
    post_lines: list[str]
    covered: set[int]  # patch lines found inside some definition
    # Line spans of the touched definitions on each side, to compare what lies outside them.
    pre_spans: list[tuple[int, int]] = field(default_factory=list)
    post_spans: list[tuple[int, int]] = field(default_factory=list)

    def hits(self, d: FunctionExtent | DataDefinition | MacroDefinition, pre: bool) -> list[int]:
        """Patch lines of the edits inside `d`, a definition of the pre- or post-image."""
        own, other = (
            (self.edits.removed, self.edits.added)
            if pre
            else (self.edits.added, self.edits.removed)
        )
        found = [p for line, _, p in own if d.start_line <= line <= d.end_line]
        # An anchor k is a change between lines k and k+1, inside `d` only if both are.
        found += [p for _, k, p in other if d.start_line <= k < d.end_line]
        return found

    def changed(
        self, pairs: list[tuple[Definition | None, Definition | None]]
    ) -> Iterable[tuple[Definition | None, Definition | None, tuple[int, ...]]]:
        """The pairs whose code tokens differ, with the patch lines that touch them, in order."""
        for old, new in pairs:
            found = (self.hits(old, True) if old else []) + (self.hits(new, False) if new else [])
            if not found:
                continue
            self.covered.update(found)
            if old:
                self.pre_spans.append((old.start_line, old.end_line))
            if new:
                self.post_spans.append((new.start_line, new.end_line))
            if (
                old
                and new
                and _span_tokens(self.pre_lines, old) == _span_tokens(self.post_lines, new)
            ):
                continue
            yield old, new, tuple(sorted(set(found)))


def _apply(
    pre_text: str, hunks: Sequence[Hunk], path: str, patch_file: str, problems: list[Problem]
) -> tuple[str, _Edits]:
    """Apply hunks to the pre-image, finding each at an offset if needed, like patch(1)."""
    pre = pre_text.split("\n") if pre_text else []
    out: list[str] = []
    edits = _Edits()
    pos = 0  # next pre-image index to copy
    for h in hunks:
        want = (h.old_start - 1) if h.old_count else h.old_start
        at = _find(pre, list(h.old_lines), want, pos)
        if at is None:
            problems.append(
                Problem(patch_file, h.patch_line, f"hunk does not apply to {path} in the tree")
            )
            continue
        if at != want:
            problems.append(
                Problem(
                    patch_file,
                    h.patch_line,
                    f"hunk applies to {path} at offset {at - want:+d}",
                    blocking=False,
                )
            )
        out.extend(pre[pos:at])
        pos = at
        # Hunk numbering: a removed line's `old_line` is its pre-image line as the patch saw it,
        # an added line's `old_line` the pre-image line it follows; `shift` moves both to `at`.
        shift = at - want
        removed = {c.old_line + shift: c for c in h.changes if c.kind == "removed"}
        added = [c for c in h.changes if c.kind == "added"]
        k = 0
        for text in h.old_lines:
            while k < len(added) and added[k].old_line + shift <= pos:
                out.append(added[k].text)
                edits.added.append((len(out), pos, added[k].patch_line))
                k += 1
            gone = removed.get(pos + 1)
            if gone is not None:
                edits.removed.append((pos + 1, len(out), gone.patch_line))
            else:
                out.append(text)
            pos += 1
        for c in added[k:]:
            out.append(c.text)
            edits.added.append((len(out), pos, c.patch_line))
    out.extend(pre[pos:])
    return "\n".join(out), edits


def _find(pre: list[str], old: list[str], want: int, lowest: int) -> int | None:
    """The index where `old` occurs in `pre`, nearest to `want`, not before `lowest`."""
    if not old:
        return max(min(want, len(pre)), lowest)
    n = len(old)
    for delta in range(_MAX_OFFSET):
        for at in (want + delta, want - delta) if delta else (want,):
            if lowest <= at <= len(pre) - n and pre[at : at + n] == old:
                return at
    return None


def _pair(old: list[tuple[K, T]], new: list[tuple[K, T]]) -> list[tuple[T | None, T | None]]:
    """Pair definitions by key, the n-th old one with the n-th new one of the same key."""
    pairs: list[tuple[T | None, T | None]] = []
    pending: dict[K, list[T]] = {}
    for key, item in new:
        pending.setdefault(key, []).append(item)
    for key, item in old:
        match = pending.get(key)
        pairs.append((item, match.pop(0) if match else None))
    for items in pending.values():
        pairs.extend((None, item) for item in items)
    return pairs


def _outside_tokens(lines: list[str], spans: list[tuple[int, int]]) -> list[tuple[str, int]]:
    """The code tokens of a text without the lines of the given definitions, with their lines.

    Tokenising the whole text, not the changed lines, keeps a comment line from looking like
    code when it is read without its `/*`.
    """
    inside: set[int] = set()
    for start, end in spans:
        inside.update(range(start, end + 1))
    kept = [i for i in range(1, len(lines) + 1) if i not in inside]
    text = "\n".join(lines[i - 1] for i in kept)
    return [(token, kept[line - 1]) for token, line in code_tokens_by_line(text)]


def _outside_changes(
    pre_lines: list[str],
    pre_spans: list[tuple[int, int]],
    post_lines: list[str],
    post_spans: list[tuple[int, int]],
    removed: list[tuple[int, int]],
    added: list[tuple[int, int]],
) -> tuple[int, ...]:
    """The patch lines of `removed`/`added` (line, patch line) outside every touched definition
    whose code tokens change; empty when only comments and white space change there."""
    old, new = _outside_tokens(pre_lines, pre_spans), _outside_tokens(post_lines, post_spans)
    a, b = [t for t, _ in old], [t for t, _ in new]
    if a == b:
        return ()
    # Only what lies between the common head and tail can differ (see `changes_between`).
    head = 0
    limit = min(len(a), len(b))
    while head < limit and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < limit - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    old_changed: set[int] = set()
    new_changed: set[int] = set()
    matcher = difflib.SequenceMatcher(
        None, a[head : len(a) - tail], b[head : len(b) - tail], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            old_changed.update(old[head + i][1] for i in range(i1, i2))
            new_changed.update(new[head + j][1] for j in range(j1, j2))
    lines = {p for line, p in removed if line in old_changed}
    lines |= {p for line, p in added if line in new_changed}
    # Tokens matched against an unchanged line: the change is there, but not on one line.
    return tuple(sorted(lines or {p for _, p in (*removed, *added)}))


def _status(old: object | None, new: object | None) -> Status:
    if old is None:
        return "added"
    if new is None:
        return "removed"
    return "changed"


def _span_tokens(
    lines: list[str], d: FunctionExtent | DataDefinition | MacroDefinition
) -> tuple[str, ...]:
    return code_tokens("\n".join(lines[d.start_line - 1 : d.end_line]))


def _function_change(
    path: str,
    patch_file: str,
    patch_lines: tuple[int, ...],
    old: FunctionExtent | None,
    new: FunctionExtent | None,
    is_header: bool,
) -> FunctionChange:
    f = old or new
    assert f is not None
    old_locals = set(old.static_locals) if old else set()
    new_locals = set(new.static_locals) if new else set()
    both = old is not None and new is not None
    return FunctionChange(
        name=f.name,
        binary_names=f.binary_names,
        source_file=path,
        start_line=f.start_line,
        end_line=f.end_line,
        name_line=f.name_line,
        patch_file=patch_file,
        patch_line=patch_lines[0],
        status=_status(old, new),
        is_header=is_header,
        # A function that is `__init` before or after the patch is init code either way.
        is_init=any(x is not None and x.is_init for x in (old, new)),
        is_static=f.is_static,
        is_inline=f.is_inline,
        attributes=f.attributes,
        macro=f.macro,
        signature_changed=old is not None and new is not None and old.signature != new.signature,
        static_locals_added=tuple(sorted(new_locals - old_locals)) if both else (),
        static_locals_removed=tuple(sorted(old_locals - new_locals)) if both else (),
        patch_lines=patch_lines,
    )


def _macro_users(macro: str, path: str, text: str, smap: SourceMap) -> Iterable[MacroUser]:
    word = re.compile(rf"\b{re.escape(macro)}\b")
    lines = text.split("\n")
    for f in smap.functions:
        for i in range(f.start_line - 1, f.end_line):
            if word.search(lines[i]):
                yield MacroUser(f.name, path, i + 1)
                break


def post_images(
    patches: Sequence[Patch], source_root: Path
) -> tuple[dict[str, str | None], tuple[Problem, ...]]:
    """The text of every file a patch series touches, after the series (None: deleted).

    Hunks apply as in `ChangeMapper.changes_from_patch` (offsets found like patch(1)); a
    livepatch module is written from these texts.
    """
    texts: dict[str, str | None] = {}
    problems: list[Problem] = []
    root = source_root.resolve()
    for patch in patches:
        for fd in patch.files:
            path = fd.path
            if fd.status == "binary":
                continue
            if fd.status == "added":
                pre = ""
            elif path in texts:
                got = texts[path]
                if got is None:
                    problems.append(
                        Problem(patch.patch_file, fd.patch_line, f"{path} was deleted earlier")
                    )
                    continue
                pre = got
            else:
                file = source_root / path
                if not file.resolve().is_relative_to(root):
                    problems.append(
                        Problem(
                            patch.patch_file,
                            fd.patch_line,
                            f"{path}: outside the source tree {source_root}",
                        )
                    )
                    continue
                try:
                    pre = file.read_text(encoding="utf-8", errors="surrogateescape")
                except OSError:
                    problems.append(
                        Problem(
                            patch.patch_file,
                            fd.patch_line,
                            f"{path}: pre-image not found in {source_root}",
                        )
                    )
                    continue
            post, _edits = _apply(pre, fd.hunks, path, patch.patch_file, problems)
            texts[path] = None if fd.status == "deleted" else post
            if fd.status == "renamed" and fd.new_path:
                texts[fd.new_path] = post
    return texts, tuple(problems)
