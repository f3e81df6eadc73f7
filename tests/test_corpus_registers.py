"""Register analysis through `index/regfacts.py` on the real Debian kernel (opt-in).

Set KLP_CORPUS_DIR to the corpus (`.../debian-6.1.192-2`). Every expectation was checked by
hand in `objdump -d` / `aarch64-linux-gnu-objdump -d`; docs/register-analysis.md has the
listings. Each test analyses one or two CUs as the index builder does, not the whole kernel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from klp_lsp.binary.dwarf import DwarfData
from klp_lsp.binary.elf import ElfBinary
from klp_lsp.index.builder import _list_units
from klp_lsp.index.regfacts import KnownCallee, RegisterAnalyser
from klp_lsp.model import RegisterDependent

CORPUS = os.environ.get("KLP_CORPUS_DIR")
pytestmark = pytest.mark.skipif(
    CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus"
)


class Kernel:
    """One corpus vmlinux with its CU list and a register analyser, as a worker has them."""

    def __init__(self, path: Path) -> None:
        self.binary = ElfBinary.open(path)
        self.dwarf = DwarfData(self.binary.get_dwarf_sections(), self.binary.arch)
        self.units = _list_units(self.dwarf)
        self.analyser = RegisterAnalyser(self.binary, self.units)

    def addr(self, name: str) -> int:
        return self.analyser.names[name]

    def clobbers(self, name: str) -> frozenset[str]:
        """The clobber set callers of an asm function see."""
        return self.analyser._default_clobbers(self.addr(name))

    def dependents_in_cu_of(self, function: str) -> list[RegisterDependent]:
        cu = self.analyser.funcs[self.addr(function)].cu
        assert cu is not None
        return self.analyser.analyse([self.dwarf.scan_unit(cu)])[1]


@pytest.fixture(scope="module")
def amd64() -> Iterator[Kernel]:
    assert CORPUS is not None
    kernel = Kernel(Path(CORPUS) / "amd64" / "vmlinux")
    yield kernel
    kernel.binary.close()


@pytest.fixture(scope="module")
def arm64() -> Iterator[Kernel]:
    assert CORPUS is not None
    kernel = Kernel(Path(CORPUS) / "arm64" / "vmlinux")
    yield kernel
    kernel.binary.close()


def sites(deps: list[RegisterDependent], callee: int) -> dict[int, tuple[str, ...]]:
    return {d.site: d.registers for d in deps if d.callee == callee}


def test_asm_helpers_with_their_fixup_labels(amd64: Kernel) -> None:
    # __put_user_4 jumps to `.Lbad_put_user_clac` (no symbol, between FUNC symbols) and
    # __get_user_4 to `bad_get_user` (NOTYPE, size 0): only the code that runs counts.
    assert amd64.clobbers("__put_user_4") == {"rcx"}  # ecx: the error code
    assert amd64.clobbers("__get_user_4") == {"rax", "rdx"}  # eax: error, edx: the value
    assert amd64.clobbers("__sw_hweight64") == {"rax"}
    assert amd64.clobbers("clear_page_orig") == {"rax", "rcx", "rdi"}


def test_thunks_preserve_everything(amd64: Kernel) -> None:
    # preempt_schedule_thunk restores in the NOTYPE stub __thunk_restore; xen_hypercall_hvm
    # pops everything in the block before its two tail calls.
    assert amd64.clobbers("preempt_schedule_thunk") == frozenset()
    assert amd64.clobbers("__SCT__preempt_schedule") == frozenset()
    assert amd64.clobbers("xen_hypercall_hvm") == frozenset()


def test_put_user_callers(amd64: Kernel) -> None:
    deps = amd64.dependents_in_cu_of("mtrr_ioctl")
    put = sites(deps, amd64.addr("__put_user_4"))
    # `or %ecx,%edx` after each call: edx accumulates the error codes (rcx is the output).
    assert put[0xFFFFFFFF8104EADB] == ("rdx",)
    assert all(d.reason == "custom-convention" for d in deps)
    # copy_process keeps the pidfd in eax across `call __put_user_4` (its input, kept).
    deps = amd64.dependents_in_cu_of("copy_process")
    assert sites(deps, amd64.addr("__put_user_4"))[0xFFFFFFFF81093528] == ("rax",)


def test_sg_miter_ipa_ra(amd64: Kernel) -> None:
    deps = amd64.dependents_in_cu_of("sg_miter_skip")
    stop = sites(deps, amd64.addr("sg_miter_stop"))
    assert stop[0xFFFFFFFF815989F6] == ("rsi", "rdi", "r9", "r10")
    assert {d.reason for d in deps if d.callee == amd64.addr("sg_miter_stop")} == {"ipa-ra"}


def test_static_call_results_are_not_kept(amd64: Kernel) -> None:
    # __SCT__x86_pmu_update is retargeted at run time: the rax read after it is the result.
    deps = amd64.dependents_in_cu_of("x86_pmu_stop")
    assert not [
        d for d in deps if "rax" in d.registers and d.callee == amd64.addr("__SCT__x86_pmu_update")
    ]


def test_module_calls_into_vmlinux_asm(amd64: Kernel) -> None:
    assert CORPUS is not None
    known = {
        n: KnownCallee(n, amd64.addr(n), amd64.clobbers(n))
        for n in ("__sw_hweight64", "__sw_hweight32", "__fentry__")
    }
    with ElfBinary.open(Path(CORPUS) / "amd64" / "modules/net/openvswitch/openvswitch.ko") as ko:
        dwarf = DwarfData(ko.get_dwarf_sections(), ko.arch)
        units = _list_units(dwarf)
        facts = [dwarf.scan_unit(u.unit.offset) for u in units]
        alone = RegisterAnalyser(ko, units).analyse(facts)[1]
        with_vmlinux = RegisterAnalyser(ko, units, known_callees=known).analyse(facts)[1]
    assert alone == []
    assert {(d.callee, d.reason) for d in with_vmlinux} == {
        (amd64.addr("__sw_hweight64"), "custom-convention")
    }


def test_arm64_noreturn_under_symbol_prefix(arm64: Kernel) -> None:
    # kvm_host_psci_cpu_entry ends in `__host_enter(host_ctxt)`, declared __noreturn; the
    # nVHE objects' symbols carry the `__kvm_nvhe_` prefix.
    deps = arm64.dependents_in_cu_of("__kvm_nvhe_kvm_host_psci_cpu_entry")
    assert not sites(deps, arm64.addr("__kvm_nvhe___host_enter"))


def test_arm64_mast_fill_bnode(arm64: Kernel) -> None:
    deps = arm64.dependents_in_cu_of("mast_fill_bnode")
    found = sites(deps, arm64.addr("mas_leaf_max_gap"))
    assert "x13" in found[0xFFFF800008B82AE4]
