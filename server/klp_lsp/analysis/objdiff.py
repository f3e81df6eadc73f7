"""Compare one object compiled before and after a patch, function by function.

Pure: it takes two `ObjectCode` records (binary/objcode.py reads them) and the line maps of the
patched files, and says which functions' code changed, which differ only in `__LINE__` values
the patch moved (kpatch's `kpatch_line_macro_change_only` leaves these out of a patch), which
differ only in calling a clone that was renamed, which clones appeared, went or were renamed,
and which inlining decisions flipped (from both objects' DWARF).
"""

from __future__ import annotations

import bisect
import difflib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from klp_lsp.analysis.clones import parse_clone_name
from klp_lsp.model import (
    CloneChange,
    FunctionDiff,
    FunctionDiffKind,
    InliningFlip,
    ObjectCode,
    ObjectDiff,
    ObjectFunction,
    ObjectInsn,
)

__all__ = ["LineMap", "compare_objects", "insn_text", "line_map"]

# (first old line, last old line, new line - old line) of each run of lines a patch kept.
LineMap = tuple[tuple[int, int, int], ...]
_Key = tuple[str, tuple[int, ...], tuple[str, ...]]


def line_map(old_text: str, new_text: str) -> LineMap:
    """Where each unchanged line of `old_text` is in `new_text` (1-based lines)."""
    a, b = old_text.split("\n"), new_text.split("\n")
    out = []
    for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        if block.size:
            out.append((block.a + 1, block.a + block.size, block.b - block.a))
    return tuple(out)


def _moved_line(maps: Iterable[LineMap], old: int, new: int) -> bool:
    """True when some file's unchanged line `old` is line `new` after the patch."""
    if old == new or old <= 0:
        return False
    for m in maps:
        i = bisect.bisect_right([first for first, _, _ in m], old) - 1
        if i >= 0 and m[i][0] <= old <= m[i][1] and old + m[i][2] == new:
            return True
    return False


def insn_text(insn: ObjectInsn) -> str:
    """The instruction with its immediates and references filled in, for people."""
    values = iter(insn.values)
    refs = iter(insn.refs)
    out = []
    for ch in insn.text:
        if ch == "#":
            v = next(values, None)
            out.append("#" if v is None else hex(v))
        elif ch == "@":
            out.append(next(refs, "@"))
        else:
            out.append(ch)
    rest = list(refs)
    return "".join(out) + (f"  <{', '.join(rest)}>" if rest else "")


def _key(insn: ObjectInsn) -> _Key:
    return (insn.text, insn.values, insn.refs)


def _base(ref: str) -> tuple[str, str]:
    """`foo.isra.0+0x10` -> (`foo.isra.0`, `+0x10`)."""
    for sep in ("+", "-"):
        head, found, tail = ref.rpartition(sep)
        if found and head and tail.startswith("0x"):
            return head, sep + tail
    return ref, ""


def _renamed(old: str, new: str) -> bool:
    """Both references name copies of the same C function under different clone names."""
    (a, off_a), (b, off_b) = _base(old), _base(new)
    if a == b or off_a != off_b or a.startswith('"') or b.startswith('"'):
        return False
    return parse_clone_name(a).origin == parse_clone_name(b).origin


def _renamed_refs(before: ObjectFunction, after: ObjectFunction) -> list[tuple[str, str]]:
    """Targets called under another clone name after the patch, as (before, after) pairs."""
    old = Counter(r for i in before.insns for r in i.refs)
    new = Counter(r for i in after.insns for r in i.refs)
    gone = sorted((old - new).keys())
    came = sorted((new - old).keys())
    pairs = []
    for g in gone:
        for c in came:
            if _renamed(g, c):
                pairs.append((_base(g)[0], _base(c)[0]))
    return list(dict.fromkeys(pairs))


class _Comparison:
    def __init__(self, before: ObjectCode, after: ObjectCode, maps: Sequence[LineMap]) -> None:
        self.before = before
        self.after = after
        self.maps = maps
        self.object = after.path

    def function(self, b: ObjectFunction, a: ObjectFunction) -> FunctionDiff | None:
        """The difference of one function present on both sides (possibly renamed)."""
        renamed = a.name != b.name
        common = {
            "object": self.object,
            "name": a.name,
            "origin": a.origin,
            "old_name": b.name if renamed else None,
            "decl_file": a.decl_file,
            "decl_line": a.decl_line,
            "inlined": tuple(sorted({*a.inlined, *a.inlined_nested})),
            "size_before": b.size,
            "size_after": a.size,
        }
        bk = [_key(i) for i in b.insns]
        ak = [_key(i) for i in a.insns]
        if bk == ak:
            if not renamed:
                return None
            # A new symbol name with the old code: a binary-diff build sees a new function.
            return FunctionDiff(
                kind="changed",
                detail=f"renamed from {b.name}; same code",
                **common,  # type: ignore[arg-type]
            )
        if len(bk) == len(ak) and all(x[0] == y[0] for x, y in zip(bk, ak, strict=True)):
            shifts: list[tuple[int, int]] = []
            calls: list[tuple[str, str]] = []
            other = False
            for x, y in zip(bk, ak, strict=True):
                if x == y:
                    continue
                if len(x[1]) != len(y[1]) or len(x[2]) != len(y[2]):
                    other = True
                    break
                for va, vb in zip(x[1], y[1], strict=True):
                    if va != vb:
                        if _moved_line(self.maps, va, vb):
                            shifts.append((va, vb))
                        else:
                            other = True
                for ra, rb in zip(x[2], y[2], strict=True):
                    if ra != rb:
                        if _renamed(ra, rb):
                            calls.append((_base(ra)[0], _base(rb)[0]))
                        else:
                            other = True
            if not other:
                calls = list(dict.fromkeys(calls))
                shifts = list(dict.fromkeys(shifts))
                if calls:
                    return FunctionDiff(
                        kind="calls-renamed",
                        detail="calls " + ", ".join(f"{n} instead of {o}" for o, n in calls),
                        renamed_calls=tuple(calls),
                        line_shifts=tuple(shifts),
                        **common,  # type: ignore[arg-type]
                    )
                return FunctionDiff(
                    kind="line-only",
                    detail="only __LINE__ values differ: "
                    + ", ".join(f"{o} -> {n}" for o, n in shifts),
                    line_shifts=tuple(shifts),
                    **common,  # type: ignore[arg-type]
                )
        return FunctionDiff(
            kind="changed",
            detail=_describe_change(b, a, bk, ak),
            renamed_calls=tuple(_renamed_refs(b, a)),
            **common,  # type: ignore[arg-type]
        )

    def _one_side(
        self, f: ObjectFunction, kind: FunctionDiffKind, other_inlined: Mapping[str, set[str]]
    ) -> FunctionDiff:
        """A function with an out-of-line copy on one side only, and where the other side
        inlined it."""
        into = sorted(c for c, names in other_inlined.items() if f.origin in names)
        if kind == "removed":
            detail = "no longer compiled out of line"
            where = f"; now inlined into {', '.join(into)}"
        else:
            detail, where = "new out-of-line copy", f"; was inlined into {', '.join(into)}"
        return FunctionDiff(
            self.object, f.name, f.origin, kind, detail=detail + (where if into else ""),
            decl_file=f.decl_file, decl_line=f.decl_line,
            inlined=() if kind == "removed" else tuple(sorted({*f.inlined, *f.inlined_nested})),
            size_before=f.size if kind == "removed" else None,
            size_after=f.size if kind == "added" else None,
        )  # fmt: skip

    def run(self) -> ObjectDiff:
        before_by: dict[tuple[str, int], ObjectFunction] = {}
        after_by: dict[tuple[str, int], ObjectFunction] = {}
        for side, table in ((self.before, before_by), (self.after, after_by)):
            seen: Counter[str] = Counter()
            for f in side.functions:
                table[(f.name, seen[f.name])] = f
                seen[f.name] += 1
        diffs: list[FunctionDiff] = []
        identical = 0
        for key in before_by.keys() & after_by.keys():
            d = self.function(before_by[key], after_by[key])
            if d is None:
                identical += 1
            else:
                diffs.append(d)
        removed = [before_by[k] for k in before_by.keys() - after_by.keys()]
        added = [after_by[k] for k in after_by.keys() - before_by.keys()]
        # A clone renamed (`foo` -> `foo.isra.0`) is compared with its old self.
        by_origin: dict[str, list[ObjectFunction]] = {}
        for f in added:
            by_origin.setdefault(_pair_key(f), []).append(f)
        still_removed = []
        for f in removed:
            candidates = by_origin.get(_pair_key(f))
            if candidates:
                partner = candidates.pop(0)
                d = self.function(f, partner)
                if d is not None:
                    diffs.append(d)
            else:
                still_removed.append(f)
        still_added = [f for fs in by_origin.values() for f in fs]
        anywhere_before = _inlined_anywhere(self.before)
        anywhere_after = _inlined_anywhere(self.after)
        diffs += [self._one_side(f, "removed", anywhere_after) for f in still_removed]
        diffs += [self._one_side(f, "added", anywhere_before) for f in still_added]
        diffs.sort(key=lambda d: (_KIND_ORDER[d.kind], d.name))
        return ObjectDiff(
            object=self.object,
            functions=tuple(diffs),
            clones=tuple(_clone_changes(self.before, self.after)),
            inlining=tuple(_flips(_inlined_by_caller(self.before), _inlined_by_caller(self.after))),
            identical=identical,
            symbols=tuple(
                sorted({f.name for f in (*self.before.functions, *self.after.functions)})
            ),
        )


_KIND_ORDER = {"changed": 0, "calls-renamed": 1, "added": 2, "removed": 3, "line-only": 4}


def _pair_key(f: ObjectFunction) -> str:
    """Functions that may be one renamed clone: same C origin, and both `.cold` or neither."""
    cold = parse_clone_name(f.name).kinds[-1:] == ("cold",)
    return f"{f.origin}{'.cold' if cold else ''}"


def _describe_change(b: ObjectFunction, a: ObjectFunction, bk: list[_Key], ak: list[_Key]) -> str:
    matcher = difflib.SequenceMatcher(None, bk, ak, autojunk=False)
    first = ""
    same = 0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            same += i2 - i1
            continue
        if not first:
            old = insn_text(b.insns[i1]) if i1 < i2 else "-"
            new = insn_text(a.insns[j1]) if j1 < j2 else "-"
            where = a.insns[j1].offset if j1 < len(a.insns) else a.size
            first = f"; first at +{where:#x}: `{old}` -> `{new}`"
    size = f"{b.size} -> {a.size} bytes" if b.size != a.size else f"{a.size} bytes"
    total = max(len(bk), len(ak))
    return f"{total - same} of {total} instructions differ ({size}){first}"


def _inlined_by_caller(code: ObjectCode) -> dict[str, set[str]]:
    """C function -> the C functions GCC inlined directly into it, in any out-of-line copy:
    into the function itself, or into a copy of it inlined elsewhere (`__se_sys_fspick`
    inlines `__do_sys_fspick` inside `__x64_sys_fspick`). A function inlined only inside
    another inlined one follows that one's decision and is not an edge of the outer one."""
    out: dict[str, set[str]] = {}
    for f in code.functions:
        out.setdefault(f.origin, set())
        for caller, callee in f.inline_edges:
            out.setdefault(caller, set()).add(callee)
            out.setdefault(callee, set())  # Its copies exist, with nothing inlined into them.
    return out


def _inlined_anywhere(code: ObjectCode) -> dict[str, set[str]]:
    """C function -> every C function inlined into its out-of-line copies, at any depth."""
    out: dict[str, set[str]] = {}
    for f in code.functions:
        out.setdefault(f.origin, set()).update(f.inlined, f.inlined_nested)
    return out


def _flips(before: Mapping[str, set[str]], after: Mapping[str, set[str]]) -> list[InliningFlip]:
    flips = []
    for caller in sorted(before.keys() & after.keys()):
        for callee in sorted(after[caller] - before[caller]):
            flips.append(InliningFlip(callee, caller, True))
        for callee in sorted(before[caller] - after[caller]):
            flips.append(InliningFlip(callee, caller, False))
    return flips


def _clone_changes(before: ObjectCode, after: ObjectCode) -> list[CloneChange]:
    def copies(code: ObjectCode) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for f in code.functions:
            if parse_clone_name(f.name).kinds[-1:] == ("cold",):
                continue
            out.setdefault(f.origin, []).append(f.name)
        return out

    b, a = copies(before), copies(after)
    changes = []
    for origin in sorted(b.keys() | a.keys()):
        old, new = b.get(origin, []), a.get(origin, [])
        if sorted(old) == sorted(new):
            continue
        gone = [n for n in old if n not in new]
        came = [n for n in new if n not in old]
        if not any(parse_clone_name(n).is_clone for n in (*gone, *came)):
            continue  # An out-of-line copy appearing or going is an inlining change.
        if gone and came:
            message = f"{', '.join(gone)} became {', '.join(came)}"
        elif came:
            message = f"new clone {', '.join(came)} of {origin}"
        else:
            message = f"clone {', '.join(gone)} of {origin} is gone"
        changes.append(CloneChange(origin, tuple(old), tuple(new), message))
    return changes


def compare_objects(
    before: ObjectCode, after: ObjectCode, line_maps: Sequence[LineMap] = ()
) -> ObjectDiff:
    """Compare an object compiled before a patch with the same object compiled after it."""
    return _Comparison(before, after, line_maps).run()
