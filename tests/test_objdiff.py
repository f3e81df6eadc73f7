"""The object comparison of `check --compile` (analysis/objdiff.py) over plain records."""

from __future__ import annotations

import pytest

from klp_lsp.analysis.objdiff import compare_objects, insn_text, line_map
from klp_lsp.model import ObjectCode, ObjectFunction, ObjectInsn


def insn(text: str, *values: int, refs: tuple[str, ...] = (), at: int = 0) -> ObjectInsn:
    return ObjectInsn(at, text, values, refs)


def fn(
    name: str,
    *insns: ObjectInsn,
    origin: str | None = None,
    inlined: tuple[str, ...] = (),
    nested: tuple[tuple[str, str], ...] = (),
) -> ObjectFunction:
    """`nested`: (inlined function, what is inlined into its copy)."""
    return ObjectFunction(
        name=name,
        section=".text",
        size=5 * len(insns),
        binding="global",
        insns=insns,
        origin=origin or name.split(".")[0],
        decl_file="kernel/x.c",
        decl_line=1,
        inlined=inlined,
        inlined_nested=tuple(callee for _, callee in nested),
        inline_edges=tuple(sorted({*((name.split(".")[0], c) for c in inlined), *nested})),
    )


def obj(*functions: ObjectFunction) -> ObjectCode:
    return ObjectCode("kernel/x.o", "x86_64", functions)


FENTRY = insn("call @", refs=("__fentry__",))
RET = insn("jmp @", refs=("__x86_return_thunk",))


def kinds(before: ObjectCode, after: ObjectCode, maps=()) -> dict[str, str]:
    return {d.name: d.kind for d in compare_objects(before, after, maps).functions}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("a\nb\nc", "a\nb\nc", ((1, 3, 0),)),
        # A line inserted after line 1: lines 2-3 move down by one.
        ("a\nb\nc", "a\nx\nb\nc", ((1, 1, 0), (2, 3, 1))),
        # Line 2 removed: line 3 moves up.
        ("a\nb\nc", "a\nc", ((1, 1, 0), (3, 3, -1))),
    ],
)
def test_line_map(old: str, new: str, expected: tuple[tuple[int, int, int], ...]) -> None:
    assert line_map(old, new) == expected


def test_identical_functions_are_not_reported() -> None:
    f = fn("f", FENTRY, insn("mov esi, #", 5), RET)
    d = compare_objects(obj(f), obj(f))
    assert d.functions == () and d.identical == 1


def test_line_number_only() -> None:
    """The kpatch `__LINE__` case: only an immediate that the patch's line shift explains."""
    old = fn("wait", FENTRY, insn("mov esi, #", 28), insn("call @", refs=("might_sleep",)), RET)
    new = fn("wait", FENTRY, insn("mov esi, #", 29), insn("call @", refs=("might_sleep",)), RET)
    shift = line_map("a\nb\nc\n" + "x\n" * 30, "a\nNEW\nb\nc\n" + "x\n" * 30)
    (d,) = compare_objects(obj(old), obj(new), [shift]).functions
    assert (d.kind, d.line_shifts) == ("line-only", ((28, 29),))
    # Without a line shift that explains it, the same difference is a change.
    assert kinds(obj(old), obj(new)) == {"wait": "changed"}
    # Nor does a shift in the other direction explain it.
    back = line_map("a\nNEW\nb\n" + "x\n" * 30, "a\nb\n" + "x\n" * 30)
    assert kinds(obj(old), obj(new), [back]) == {"wait": "changed"}


def test_calls_renamed_clone() -> None:
    old = fn("tick", FENTRY, insn("call @", refs=("charge",)), RET)
    new = fn("tick", FENTRY, insn("call @", refs=("charge.isra.0",)), RET)
    (d,) = compare_objects(obj(old), obj(new)).functions
    assert d.kind == "calls-renamed"
    assert d.renamed_calls == (("charge", "charge.isra.0"),)
    # A call to another function altogether is a change.
    other = fn("tick", FENTRY, insn("call @", refs=("refill",)), RET)
    assert kinds(obj(old), obj(other)) == {"tick": "changed"}


def test_changed_function_names_the_first_difference_and_renamed_calls() -> None:
    old = fn("tick", FENTRY, insn("mov rdi, r12"), insn("call @", refs=("charge",)), RET)
    new = fn(
        "tick",
        FENTRY,
        insn("mov edi, r12d"),
        insn("mov rsi, r13"),
        insn("call @", refs=("charge.isra.0",)),
        RET,
    )
    (d,) = compare_objects(obj(old), obj(new)).functions
    assert d.kind == "changed"
    assert "`mov rdi, r12` -> `mov edi, r12d`" in d.detail
    assert d.renamed_calls == (("charge", "charge.isra.0"),)


def test_renamed_clone_is_compared_with_its_old_self() -> None:
    old = obj(fn("charge", FENTRY, insn("add qword ptr [rdi + 8], rsi"), RET))
    new = obj(fn("charge.isra.0", FENTRY, insn("lea rax, [rdx + rsi]"), RET))
    d = compare_objects(old, new)
    (f,) = d.functions
    assert (f.kind, f.name, f.old_name) == ("changed", "charge.isra.0", "charge")
    (c,) = d.clones
    assert (c.before, c.after, c.message) == (
        ("charge",),
        ("charge.isra.0",),
        "charge became charge.isra.0",
    )


def test_inlining_flip_and_new_out_of_line_copy() -> None:
    """The workqueue case: a function stops being inlined, or starts."""
    old = obj(fn("schedule", FENTRY, RET, inlined=("pick",), nested=(("pick", "mix"),)))
    pick = fn("pick", FENTRY, insn("mov eax, #", 1), RET, inlined=("mix",))
    new = obj(fn("schedule", FENTRY, insn("call @", refs=("pick",)), RET), pick)
    d = compare_objects(old, new)
    assert {f.name: (f.kind, f.detail) for f in d.functions} == {
        "schedule": ("changed", d.functions[0].detail),
        "pick": ("added", "new out-of-line copy; was inlined into schedule"),
    }
    # Only decisions that changed flip: `mix` is inlined into `pick` on both sides.
    assert [(f.callee, f.caller, f.inlined_after) for f in d.inlining] == [
        ("pick", "schedule", False)
    ]
    # The other way: now inlined, its out-of-line copy gone; not a clone change.
    back = compare_objects(new, old)
    removed = [f for f in back.functions if f.kind == "removed"]
    assert [(f.name, f.detail) for f in removed] == [
        ("pick", "no longer compiled out of line; now inlined into schedule")
    ]
    assert back.clones == ()


def test_flip_inside_an_inlined_copy() -> None:
    """`__do_sys_fspick` stops being inlined into `__se_sys_fspick`, itself still inlined into
    the syscall stub: the stub's direct inlines do not change, the edge inside them does."""
    edges = (("__se_sys_fspick", "__do_sys_fspick"),)
    old = obj(fn("__x64_sys_fspick", FENTRY, RET, inlined=("__se_sys_fspick",), nested=edges))
    new = obj(
        fn("__x64_sys_fspick", FENTRY, insn("call @", refs=("__do_sys_fspick",)), RET,
           inlined=("__se_sys_fspick",)),
        fn("__do_sys_fspick", FENTRY, RET),
    )  # fmt: skip
    d = compare_objects(old, new)
    assert [(f.callee, f.caller, f.inlined_after) for f in d.inlining] == [
        ("__do_sys_fspick", "__se_sys_fspick", False)
    ]
    added = next(f for f in d.functions if f.kind == "added")
    assert added.detail == "new out-of-line copy; was inlined into __x64_sys_fspick"


def test_part_clone_gone() -> None:
    old = obj(
        fn("check", FENTRY, insn("call @", refs=("check.part.0",)), RET),
        fn("check.part.0", FENTRY, RET),
    )
    new = obj(fn("check", FENTRY, insn("mov eax, #", 0), RET))
    d = compare_objects(old, new)
    assert [c.message for c in d.clones] == ["clone check.part.0 of check is gone"]
    assert {f.name: f.kind for f in d.functions} == {"check": "changed", "check.part.0": "removed"}


def test_same_named_local_functions_pair_in_order() -> None:
    a1 = fn("hash", FENTRY, insn("mov eax, #", 1), RET)
    a2 = fn("hash", FENTRY, insn("mov eax, #", 2), RET)
    b2 = fn("hash", FENTRY, insn("mov eax, #", 3), RET)
    d = compare_objects(obj(a1, a2), obj(a1, b2))
    assert d.identical == 1 and [f.kind for f in d.functions] == ["changed"]


def test_insn_text_fills_values_and_refs() -> None:
    with_string = insn("mov rdi, #", 0, refs=('"kernel/x.c"',))
    assert insn_text(with_string) == 'mov rdi, 0x0  <"kernel/x.c">'
    assert insn_text(insn("call @", refs=("f",))) == "call f"
    assert insn_text(insn("cmp dword ptr [rbx + 0x10], #", 7)) == "cmp dword ptr [rbx + 0x10], 0x7"
