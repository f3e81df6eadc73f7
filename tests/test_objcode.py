"""Reading relocatable objects for `check --compile` (binary/objcode.py), on the fixture objects.

The facts are those of `objdump -dr` on `build/ARCH/obj/kernel/demo_policy.o` (tests/fixtures/
README.md): x86 `call 0 <demo_rt_charge>` (e8 79 fe ff ff) and arm64 `bl 0 <demo_rt_charge>`
carry no relocation; `demo_rt_wait` passes line 28 (`mov $0x1c,%esi` / `mov w1, #0x1c`) and the
file name from `.rodata.str1.1+0x7` (x86, R_X86_64_32S) or `.rodata.str1.8+0x8` (arm64,
ADR_PREL_PG_HI21 + ADD_ABS_LO12_NC).
"""

from __future__ import annotations

import pytest
from klp_fixtures import ARCHES, fixture_binary

from klp_lsp.analysis.objdiff import compare_objects
from klp_lsp.binary.objcode import normalise_data_name, read_object_code
from klp_lsp.errors import BinaryFormatError
from klp_lsp.model import ObjectCode, ObjectFunction


def policy(arch: str) -> ObjectCode:
    path = fixture_binary(arch, "obj/kernel/demo_policy.o")
    return read_object_code(path, "kernel/demo_policy.o", ["/usr/src/linux-klp-demo"])


def function(code: ObjectCode, name: str) -> ObjectFunction:
    (f,) = [f for f in code.functions if f.name == name]
    return f


@pytest.mark.parametrize("arch", ARCHES)
def test_symbols_sizes_and_declarations(arch: str) -> None:
    code = policy(arch)
    sizes = {f.name: f.size for f in code.functions}
    expected = {
        "x86_64": {"demo_rt_charge": 26, "demo_rt_wait": 34, "demo_rt_tick": 49},
        "arm64": {"demo_rt_charge": 40, "demo_rt_wait": 64, "demo_rt_tick": 80},
    }[arch]
    assert {k: sizes[k] for k in expected} == expected
    wait = function(code, "demo_rt_wait")
    assert (wait.origin, wait.decl_file, wait.decl_line, wait.binding) == (
        "demo_rt_wait",
        "kernel/demo_rt.c",
        26,
        "global",
    )
    assert function(code, "demo_rt_charge").binding == "local"
    # Every C function of the CU, with or without code of its own.
    assert ("demo_rt_pick", "kernel/demo_rt.c", 66) in code.definitions


@pytest.mark.parametrize("arch", ARCHES)
def test_line_argument_string_and_call(arch: str) -> None:
    wait = function(policy(arch), "demo_rt_wait")
    line = [i for i in wait.insns if 28 in i.values]
    assert len(line) == 1 and line[0].refs == ()
    assert any('"kernel/demo_rt.c"' in i.refs for i in wait.insns)
    assert [i.refs for i in wait.insns if i.text in ("call @", "bl @")] == [
        *([("__fentry__",)] if arch == "x86_64" else []),
        ("demo_might_sleep",),
    ]


@pytest.mark.parametrize("arch", ARCHES)
def test_call_without_relocation_is_named(arch: str) -> None:
    tick = function(policy(arch), "demo_rt_tick")
    calls = [i.refs for i in tick.insns if i.text in ("call @", "bl @")]
    charge = [r for r in calls if r != ("__fentry__",)]
    assert charge == [("demo_rt_charge",), ("demo_rt_charge",)]


@pytest.mark.parametrize("arch", ARCHES)
def test_inlined_functions_direct_and_nested(arch: str) -> None:
    schedule = function(policy(arch), "demo_rt_schedule")
    assert (schedule.inlined, schedule.inlined_nested) == (("demo_rt_pick",), ())
    # demo_account reaches demo_submit only inside demo_account_twice (README: inline sites).
    core = read_object_code(fixture_binary(arch, "obj/kernel/demo_core.o"))
    submit = function(core, "demo_submit")
    assert submit.inlined == ("demo_account_twice", "demo_lookup")
    assert submit.inlined_nested == ("demo_account",)


@pytest.mark.parametrize("arch", ARCHES)
def test_an_object_equals_itself(arch: str) -> None:
    d = compare_objects(policy(arch), policy(arch))
    assert d.functions == () and d.identical == 9


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("__already_done.12", "__already_done"),
        ("__func__.3", "__func__"),
        ("__key.4.5", "__key"),
        ("__UNIQUE_ID_ddebug431", "__UNIQUE_ID_ddebug"),
        ("jiffies", "jiffies"),
        (".1", ".1"),
    ],
)
def test_normalise_data_name(name: str, expected: str) -> None:
    assert normalise_data_name(name) == expected


def test_a_linked_binary_is_refused() -> None:
    with pytest.raises(BinaryFormatError, match="not a relocatable object"):
        read_object_code(fixture_binary("x86_64"))
