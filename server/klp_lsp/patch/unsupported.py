"""Changes a live patch cannot carry as function replacements: exports, per-CPU variables,
static keys and tracepoints.

A livepatch module replaces functions; the kernel's data stays the kernel's. So a patch that
adds or changes an `EXPORT_SYMBOL`, a per-CPU variable, a static key or a tracepoint definition
asks for something no replacement function delivers. A changed function that only *uses* a
per-CPU variable, static key or tracepoint that its file defines works (the module reaches the
kernel's object through a livepatch relocation) but the author should know it does.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from klp_lsp.patch.c_items import C_COMMENT, C_LITERAL, Item, references, render, split_items
from klp_lsp.patch.changes import changed_line_runs

UnsupportedKind = Literal["export-symbol", "per-cpu", "static-key", "tracepoint"]
_PER_CPU = "DEFINE_PER_CPU"
_STATIC_KEY = ("DEFINE_STATIC_KEY_", "DEFINE_STATIC_CALL")
_EXPORT = "EXPORT_"
_TRACE_DEFINERS = frozenset(
    {"TRACE_EVENT", "DEFINE_EVENT", "DECLARE_EVENT_CLASS", "TRACE_EVENT_CONDITION",
     "DEFINE_EVENT_PRINT", "DECLARE_TRACE", "TRACE_EVENT_FN"}
)  # fmt: skip


# Names whose presence anywhere in a file means it must be split into items to be judged.
_DEFINERS = ("DEFINE_PER_CPU", "DEFINE_STATIC_KEY_", "DEFINE_STATIC_CALL", "CREATE_TRACE_POINTS",
             *sorted(_TRACE_DEFINERS))  # fmt: skip
# An export the way kernel style writes it: one whole line, `EXPORT_SYMBOL_GPL(name);`.
_EXPORT_WORD = re.compile(r"\bEXPORT_")
_EXPORT_LINE = re.compile(r"[ \t]*EXPORT_\w*[ \t]*\([^()\n;]*\)[ \t]*;[ \t]*")


@dataclass(frozen=True, slots=True)
class Unsupported:
    """One construct of a patch that is not a plain function edit."""

    kind: UnsupportedKind
    severity: Literal["error", "warning"]
    name: str
    message: str
    line: int  # in the post-image (pre-image for removed definitions)
    function: str | None = None


def _macro_key(item: Item) -> tuple[str, str] | None:
    """(macro, rendered arguments) of a file-scope macro call, e.g. ("EXPORT_SYMBOL", "foo")."""
    if item.decl_kind != "macro-call" or not item.name:
        return None
    return item.name, ", ".join(render(a) for a in item.args)


def _defined(items: Iterable[Item], prefix: str | tuple[str, ...]) -> dict[str, Item]:
    """Names defined by file-scope macro calls whose macro starts with `prefix`, by name."""
    out: dict[str, Item] = {}
    for it in items:
        key = _macro_key(it)
        if key is None or not key[0].startswith(prefix):
            continue
        args = [render(a) for a in it.args]
        name = args[1] if key[0].startswith(_PER_CPU) and len(args) > 1 else args[0] if args else ""
        out[name] = it
    return out


def find_unsupported(
    path: str, pre_text: str, post_text: str, changed_functions: Sequence[str]
) -> list[Unsupported]:
    """The unsupported constructs a patch brings into `path` (see the module docstring).

    Splitting a large file into items costs a few hundred milliseconds, so a patch whose
    changes each lie inside a block (`_local_changes`) is judged with less: not at all when
    neither text names a definer; else from the post-image's items near the definers, the
    changes and the changed functions only (`_items_near`).
    """
    local = _local_changes(pre_text, post_text)
    if local is not None:
        if not any(name in text for text in (pre_text, post_text) for name in _DEFINERS):
            return []
        near = _items_near(post_text, local, changed_functions)
        if near is not None:
            # Only the blocks' own items differ between the texts, and a block is no
            # file-scope macro call: nothing is added, changed or removed at file scope.
            return _uses(path, near, changed_functions)
    pre, post = split_items(pre_text), split_items(post_text)
    return _macro_changes(pre, post) + _uses(path, post, changed_functions)


def _macro_changes(pre: Sequence[Item], post: Sequence[Item]) -> list[Unsupported]:
    """Exports, per-CPU variables, static keys and tracepoints the patch adds, changes or
    removes at file scope."""
    out: list[Unsupported] = []
    pre_keys = {k for it in pre if (k := _macro_key(it)) is not None}
    for it in post:
        key = _macro_key(it)
        if key is None or key in pre_keys:
            continue
        macro, args = key
        if macro.startswith(_EXPORT):
            out.append(
                Unsupported(
                    "export-symbol",
                    "error",
                    args,
                    f"the patch adds {macro}({args}): a livepatch module replaces functions, it"
                    " cannot add an export to the running kernel (modules loaded later would"
                    " bind to the livepatch module instead); keep the exports as they are",
                    it.line,
                )
            )
        elif macro.startswith(_PER_CPU):
            out.append(
                Unsupported(
                    "per-cpu",
                    "error",
                    args.rpartition(", ")[2],
                    f"the patch adds or changes {macro}({args}): a per-CPU variable in the module"
                    " is a new copy the running kernel's code never sees; keep the kernel's"
                    " variable, or attach new state with shadow variables (klp_shadow_*)",
                    it.line,
                )
            )
        elif macro.startswith(_STATIC_KEY):
            out.append(
                Unsupported(
                    "static-key",
                    "error",
                    args,
                    f"the patch adds or changes {macro}({args}): the module would hold its own key,"
                    " which nothing in the running kernel switches; keep the kernel's key",
                    it.line,
                )
            )
        elif macro in _TRACE_DEFINERS:
            event = args.split(",")[0]
            out.append(
                Unsupported(
                    "tracepoint",
                    "error",
                    event,
                    f"the patch adds or changes the tracepoint definition {macro}({event}, ...):"
                    " the running kernel's tracepoint keeps its old format and probes; a live"
                    " patch cannot change it",
                    it.line,
                )
            )
    post_exports = {k for it in post if (k := _macro_key(it)) is not None}
    for it in pre:
        key = _macro_key(it)
        if key is not None and key[0].startswith(_EXPORT) and key not in post_exports:
            out.append(
                Unsupported(
                    "export-symbol",
                    "error",
                    key[1],
                    f"the patch removes {key[0]}({key[1]}): a live patch cannot take an export away"
                    " from the running kernel; keep it",
                    it.line,
                )
            )

    return out


def _uses(path: str, post: Sequence[Item], changed_functions: Sequence[str]) -> list[Unsupported]:
    """Uses, in the changed functions, of per-CPU variables, static keys and tracepoints that
    the file defines."""
    out: list[Unsupported] = []
    per_cpu = _defined(post, _PER_CPU)
    keys = _defined(post, _STATIC_KEY)
    creates_tracepoints = any(
        it.kind == "directive" and it.directive == "define" and it.name == "CREATE_TRACE_POINTS"
        for it in post
    )
    wanted = set(changed_functions)
    for it in post:
        if it.kind != "function" or it.name not in wanted:
            continue
        refs = references(it.body_tokens())
        for name in sorted(refs & per_cpu.keys()):
            out.append(
                Unsupported(
                    "per-cpu",
                    "warning",
                    name,
                    f"{it.name} uses {name}, a per-CPU variable defined in {path}: the livepatch"
                    " module reaches the kernel's through a livepatch relocation to its per-CPU"
                    " offset (klp-lsp generate writes it)",
                    it.line,
                    it.name,
                )
            )
        for name in sorted(refs & keys.keys()):
            out.append(
                Unsupported(
                    "static-key",
                    "warning",
                    name,
                    f"{it.name} uses {name}, a static key defined in {path}: the module's jump"
                    " labels must refer to the kernel's key through livepatch relocations, which"
                    " the kernel applies when the module loads for vmlinux, too late for a"
                    " module's key",
                    it.line,
                    it.name,
                )
            )
        if creates_tracepoints:
            for name in sorted(r for r in refs if r.startswith("trace_") and r != "trace_printk"):
                out.append(
                    Unsupported(
                        "tracepoint",
                        "warning",
                        name,
                        f"{it.name} calls {name}, a tracepoint that {path} defines"
                        " (CREATE_TRACE_POINTS): the module must use the kernel's tracepoint, not"
                        " define its own"
                        " (klp-lsp generate drops CREATE_TRACE_POINTS and relocates to the"
                        " kernel's)",
                        it.line,
                        it.name,
                    )
                )
    return out


def _local_changes(pre: str, post: str) -> list[tuple[int, int]] | None:
    """The post-image ranges of what the patch changes, when each changed run of lines lies
    inside a brace-enclosed block in both texts and leaves the same bracket depth behind, with
    no export or comment delimiter in it, and every export of the file is a whole line
    (`EXPORT_SYMBOL_GPL(name);`); None otherwise. Then every item but the blocks' own is the
    same in both texts, offsets and lines apart."""
    if not (_exports_are_lines(pre) and _exports_are_lines(post)):
        return None
    runs = _changed_runs(pre, post)
    depths = _depths_at(pre, [pre_lo for pre_lo, _, _, _ in runs])
    out: list[tuple[int, int]] = []
    for (pre_lo, pre_hi, post_lo, post_hi), depth in zip(runs, depths, strict=True):
        if depth is None or depth < 1:
            return None
        effects = set()
        for changed in (pre[pre_lo:pre_hi], post[post_lo:post_hi]):  # whole lines
            if _EXPORT_WORD.search(changed) or "/*" in changed or "*/" in changed:
                return None
            if changed.endswith("\\\n"):
                return None
            effects.add(_depth_change(changed, 1 - depth))
        # The changed lines of both texts stay inside the block and leave the same depth.
        if len(effects) != 1 or None in effects:
            return None
        out.append((post_lo, post_hi))
    return out


def _exports_are_lines(text: str) -> bool:
    """True when every `EXPORT_` word of the text starts a line that is one whole export."""
    at = text.find("EXPORT_")
    while at >= 0:
        if at == 0 or not (text[at - 1].isalnum() or text[at - 1] == "_"):
            line_start = text.rfind("\n", 0, at) + 1
            line_end = text.find("\n", at)
            line = text[line_start : len(text) if line_end < 0 else line_end]
            if not _EXPORT_LINE.fullmatch(line):
                return False
        at = text.find("EXPORT_", at + 7)
    return True


def _changed_runs(pre: str, post: str) -> list[tuple[int, int, int, int]]:
    """(pre start, pre end, post start, post end) of each run of lines that differs, as offsets
    of whole lines (`changes.changed_line_runs`, the line diff the change mapping uses)."""
    a, b = pre.split("\n"), post.split("\n")
    starts_a = list(itertools.accumulate((len(line) + 1 for line in a), initial=0))
    starts_b = list(itertools.accumulate((len(line) + 1 for line in b), initial=0))
    return [
        (starts_a[i1], min(starts_a[i2], len(pre)), starts_b[j1], min(starts_b[j2], len(post)))
        for i1, i2, j1, j2 in changed_line_runs(a, b)
    ]


def _items_near(
    text: str, regions: Sequence[tuple[int, int]], functions: Sequence[str]
) -> list[Item] | None:
    """The items `_uses` looks at, split from windows of `text` instead of all of it: those
    around each definer and `CREATE_TRACE_POINTS`, around each file-scope mention of the
    `functions` and around the changed `regions`. None when a function is not among them.

    A window runs between two of `_clean_starts`, where the splitter starts afresh, so its
    items are exactly those of the whole text there.
    """
    starts, depth_at = _clean_starts(text)
    spots = [spot for lo, hi in regions for spot in (lo, max(lo, hi - 1))]
    for name in _DEFINERS:
        spots.extend(m.start() for m in re.finditer(re.escape(name), text))
    for name in dict.fromkeys(functions):
        spots.extend(
            m.start()
            for m in re.finditer(rf"\b{re.escape(name)}\b", text)
            if depth_at(m.start()) == 0
        )
    windows: list[tuple[int, int]] = []
    for spot in sorted(spots):
        i = bisect.bisect_right(starts, spot)
        lo, hi = starts[i - 1], starts[i] if i < len(starts) else len(text)
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
        else:
            windows.append((lo, hi))
    items: list[Item] = []
    for lo, hi in windows:
        # Newlines in front keep the text's line numbers; they cost one lexeme.
        items.extend(split_items("\n" * text.count("\n", 0, lo) + text[lo:hi]))
    found = {it.name for it in items if it.kind == "function"}
    return items if all(name in found for name in functions) else None


def _clean_starts(text: str) -> tuple[list[int], Callable[[int], int]]:
    """Offsets where the item splitter starts afresh, and the bracket depth at any offset.

    A `;` at depth 0 ends an item, and so does a function's closing brace: the newline after
    either, when nothing but blanks is between, starts the next item in a clean state (a `#`
    after it starts a directive, as at any line start). The text's start is one too.
    """
    starts = [0]
    positions: list[int] = [0]
    depths: list[int] = [0]
    depth = 0
    for m in _SCAN.finditer("\n" + text):
        kind = m.lastgroup
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth = max(depth - 1, 0)
            # A function's closing brace alone on its line, a blank line after it (kernel
            # style; a struct's `}` carries its `;`), ends the function's item.
            if depth == 0 and m.group() == "}":
                at = m.start() - 1  # in `text`
                if text.startswith("}\n\n", at) and (at == 0 or text[at - 1] == "\n"):
                    starts.append(at + 1)
        elif kind == "semi" and depth == 0:
            after = m.end() - 1  # in `text`
            line_end = text.find("\n", after)
            if line_end > 0 and not text[after:line_end].strip(" \t"):
                starts.append(line_end)
            continue
        else:
            continue
        positions.append(m.end() - 1)
        depths.append(depth)

    def depth_at(offset: int) -> int:
        return depths[bisect.bisect_right(positions, offset) - 1]

    return starts, depth_at


# What moves the item splitter's bracket depth, and what hides brackets from it (comments,
# string and character literals, preprocessor lines), as `c_items._lex` reads them.
_SCAN = re.compile(
    rf"""
    (?P<directive>\n[ \t\r\f\v]*(?:(?:{C_COMMENT})[ \t\r\f\v]*)*\#
        (?:{C_COMMENT}|{C_LITERAL}|\\\n|[^\n])*)
    |(?P<comment>{C_COMMENT})
    |(?P<string>{C_LITERAL})
    |(?P<open>[(\[{{])
    |(?P<close>[)\]}}])
    |(?P<semi>;)
    """,
    re.VERBOSE | re.DOTALL,
)


def _depths_at(text: str, positions: Sequence[int]) -> list[int | None]:
    """The splitter's bracket depth at each of the ascending `positions`; None for one inside a
    comment, literal or preprocessor line."""
    out: list[int | None] = []
    wanted = iter(positions)
    pos = next(wanted, None)
    depth = 0
    # A directive match starts at the newline before it: the text gets one in front, and
    # offsets in it are one more than in `text`.
    for m in _SCAN.finditer("\n" + text):
        while pos is not None and m.start() >= pos + 1:
            out.append(depth)
            pos = next(wanted, None)
        while pos is not None and m.end() > pos + 1:
            out.append(None)
            pos = next(wanted, None)
        if pos is None:
            break
        kind = m.lastgroup
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth = max(depth - 1, 0)
    while pos is not None:
        out.append(depth)
        pos = next(wanted, None)
    return out


def _depth_change(segment: str, floor: int) -> int | None:
    """How much the segment's brackets change the depth; None when it dips below `floor`."""
    depth = 0
    for m in _SCAN.finditer("\n" + segment):
        if m.lastgroup == "open":
            depth += 1
        elif m.lastgroup == "close":
            depth -= 1
            if depth < floor:
                return None
    return depth
