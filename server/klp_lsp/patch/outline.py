"""Per file and per hunk: what a patch changes, as editors show it (lenses, outline, hovers).

Pure: it joins the parsed patches, the changes mapped from them and the evaluated functions by
patch line, so every hunk says which functions it changes, or why it changes none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from klp_lsp.model import CompileUnitRef, FileImpact, FunctionImpact, HunkImpact
from klp_lsp.patch.changes import Change, DataChange, FileNote, MacroChange
from klp_lsp.patch.diff import FileDiff, Hunk, Patch, Problem

# Notes that hold for every hunk of their file.
_FILE_NOTES = ("not-c", "binary", "renamed", "new-file", "deleted-file")


def outline_patches(
    patches: Sequence[Patch],
    changes: Sequence[Change],
    impacts: Sequence[FunctionImpact],
    problems: Sequence[Problem],
    units_of: Callable[[str], tuple[CompileUnitRef, ...]],
    *,
    mapped: bool = True,
) -> tuple[FileImpact, ...]:
    """One `FileImpact` per file of every patch, in patch order, with one `HunkImpact` per hunk.

    `impacts` are the evaluated changed functions; those with no patch lines (the users of a
    changed macro) belong to no hunk. `units_of(path)` names the compile units a file is built
    as. A hunk that maps to no definition and has no problem changes only comments or white
    space, or code whose tokens stay the same. With `mapped=False` (files and hunks of a patch
    not mapped to C yet) no hunk is said to change only comments.
    """
    blocking = [p for p in problems if p.blocking]
    # Changes and functions by the patch lines they cover: a hunk looks up only its own lines.
    by_line: dict[int, list[Change | FunctionImpact]] = {}
    for item in (*changes, *impacts):
        if isinstance(item, DataChange | MacroChange | FunctionImpact) or (
            isinstance(item, FileNote) and item.kind == "outside-definitions"
        ):
            for line in item.patch_lines:
                by_line.setdefault(line, []).append(item)
    out: list[FileImpact] = []
    for patch in patches:
        for fd in patch.files:
            file_problems = tuple(p.message for p in blocking if p.line == fd.patch_line)
            end = max(fd.end_line, fd.patch_line)
            file_notes = tuple(
                dict.fromkeys(
                    c.kind
                    for c in changes
                    if isinstance(c, FileNote)
                    and c.kind in _FILE_NOTES
                    and c.source_file == fd.path
                    and fd.patch_line <= c.patch_line <= end
                )
            )
            hunks = tuple(
                _hunk(h, fd, by_line, blocking, file_notes, bool(file_problems) or not mapped)
                for h in fd.hunks
            )
            units = units_of(fd.path) if fd.path.endswith((".c", ".S")) else ()
            out.append(
                FileImpact(
                    patch_file=patch.patch_file,
                    path=fd.path,
                    status=fd.status,
                    line=fd.patch_line,
                    end_line=end,
                    hunks=hunks,
                    units=units,
                    problems=file_problems,
                    patch_subject=patch.subject,
                    patch_start=patch.patch_line,
                )
            )
    return tuple(out)


def _hunk(
    h: Hunk,
    fd: FileDiff,
    by_line: dict[int, list[Change | FunctionImpact]],
    problems: Sequence[Problem],
    file_notes: tuple[str, ...],
    file_unmapped: bool,
) -> HunkImpact:
    # Everything the hunk's changed lines touch, each once, in the order of those lines.
    touched: dict[int, Change | FunctionImpact] = {}
    for line in sorted(c.patch_line for c in h.changes):
        for item in by_line.get(line, ()):
            touched.setdefault(id(item), item)
    functions: list[FunctionImpact] = []
    data: list[str] = []
    macros: list[str] = []
    users: set[str] = set()
    notes = list(file_notes)
    for item in touched.values():
        if isinstance(item, FunctionImpact):
            functions.append(item)
        elif isinstance(item, DataChange):
            data.append(f"{item.kind} {item.name}")
        elif isinstance(item, MacroChange):
            macros.append(item.name)
            users.update(u.function for u in item.users)
        elif isinstance(item, FileNote):
            notes.append(item.kind)
    hunk_problems = tuple(p.message for p in problems if h.patch_line <= p.line <= h.end_line)
    mapped = not file_unmapped and not hunk_problems and fd.path.endswith((".c", ".h"))
    if mapped and not (functions or data or macros or notes):
        notes.append("comment-only")
    return HunkImpact(
        line=h.patch_line,
        end_line=h.end_line,
        section=h.section,
        header=f"@@ -{h.old_start},{h.old_count} +{h.new_start},{h.new_count} @@",
        functions=tuple(functions),
        data=tuple(dict.fromkeys(data)),
        macros=tuple(dict.fromkeys(macros)),
        macro_users=len(users),
        notes=tuple(dict.fromkeys(notes)),
        problems=hunk_problems,
    )
