"""Domain records shared across layers: what the binary layer reads and what analysis computes.

Every record is a frozen, slotted dataclass of plain values, so the pure layers (`analysis/`,
`patch/`) can be tested without files, and records cross process boundaries by pickling.
Addresses are ints: run-time addresses for vmlinux, and for relocatable modules the address in a
synthetic layout where each allocated section is placed at an aligned offset (see `binary/elf.py`).
Registers are lower-case full-width names (`rdi`, `x0`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Arch = Literal["x86_64", "aarch64"]
Binding = Literal["local", "global", "weak"]


@dataclass(frozen=True, slots=True)
class ElfSymbol:
    """One FUNC symbol of an object, as `readelf -s` shows it."""

    name: str
    address: int
    size: int
    section: str
    binding: Binding


@dataclass(frozen=True, slots=True)
class CloneName:
    """A symbol name split into its C origin and GCC's clone suffixes.

    `foo.constprop.0.isra.0` -> origin `foo`, kinds (`constprop`, `isra`).
    """

    symbol: str
    origin: str
    kinds: tuple[str, ...]

    @property
    def is_clone(self) -> bool:
        return bool(self.kinds)


@dataclass(frozen=True, slots=True)
class CompilerFlags:
    """What `DW_AT_producer` says about the guarantees GCC gives callers in one CU."""

    producer: str
    # "fentry" (-pg -mfentry), "mcount" (-pg), "patchable" (-fpatchable-function-entry), "none".
    ftrace: Literal["fentry", "mcount", "patchable", "none"]
    # True when callers in this CU may rely on a same-CU callee's actual register usage.
    # GCC's toplev.cc clears flag_ipa_ra when profile_flag or patch_area_size is set.
    ipa_ra: bool
    opt_level: str  # "2", "s", "0", ... ("" when the producer does not say)
    live_patching: str | None  # value of -flive-patching=, if any
    patchable_entry: str | None  # value of -fpatchable-function-entry=, if any


@dataclass(frozen=True, slots=True)
class CompileUnit:
    """The top DIE of one DWARF compile unit."""

    offset: int  # offset of the CU header in .debug_info
    name: str  # DW_AT_name, as the compiler saw it (e.g. "fs/xfs/xfs_inode.c")
    comp_dir: str
    producer: str
    language: int | None
    is_asm: bool  # DW_LANG_Mips_Assembler or no C producer


@dataclass(frozen=True, slots=True)
class UnreadableUnit:
    """A compile unit an index lacks because its DWARF or code could not be read."""

    object: str  # "vmlinux" or the module name
    offset: int  # of its header in .debug_info
    name: str  # DW_AT_name, "" when even the top DIE was unreadable
    reason: str  # the one-line error


@dataclass(frozen=True, slots=True)
class Param:
    """One formal parameter and where its value lives when the function is entered."""

    name: str | None
    # A register name, "stack", "optimized-out" (no location at all), or "unknown" (an
    # expression that is not a plain register or frame slot at entry).
    location: str


@dataclass(frozen=True, slots=True)
class Subprogram:
    """One DW_TAG_subprogram DIE, abstract (inline origin), concrete, or declaration."""

    die_offset: int  # absolute offset in .debug_info
    cu_offset: int
    name: str | None  # resolved through abstract_origin/specification
    linkage_name: str | None
    decl_file: str | None  # resolved path, relative to comp_dir when it is inside it
    decl_line: int | None
    external: bool
    declaration: bool
    inline: int | None  # DW_AT_inline (DW_INL_*), None when absent
    calling_convention: int | None  # DW_AT_calling_convention (DW_CC_*), None when absent
    noreturn: bool
    abstract_origin: int | None  # absolute DIE offset, for concrete instances (clones too)
    specification: int | None
    ranges: tuple[tuple[int, int], ...]  # [low, high) code ranges; empty if no code
    params: tuple[Param, ...]
    entry_pc: int | None = None


@dataclass(frozen=True, slots=True)
class InlineSite:
    """One DW_TAG_inlined_subroutine: a copy of `origin` inlined into machine code."""

    die_offset: int
    cu_offset: int
    origin: int  # DIE offset of the abstract DW_TAG_subprogram that was inlined
    call_file: str | None
    call_line: int | None
    ranges: tuple[tuple[int, int], ...]
    # DIE offset of the concrete out-of-line DW_TAG_subprogram whose code holds this copy.
    container: int
    # DIE offset of the enclosing DW_TAG_inlined_subroutine when inlined through another
    # inlined function, else None.
    parent: int | None


@dataclass(frozen=True, slots=True)
class CuFacts:
    """Everything the DWARF scan keeps from one compile unit."""

    unit: CompileUnit
    subprograms: tuple[Subprogram, ...]
    inline_sites: tuple[InlineSite, ...]


# --- register analysis ---------------------------------------------------------------------

CallKind = Literal["call", "tail-call", "indirect-call", "indirect-jump"]


@dataclass(frozen=True, slots=True)
class CallEdge:
    """One call or tail call inside a function's machine code."""

    caller: int  # start address of the calling function
    site: int  # address of the call instruction
    callee: int | None  # start address of the target function; None when indirect/unknown
    kind: CallKind


@dataclass(frozen=True, slots=True)
class RegisterUse:
    """The register facts of one function's machine code."""

    address: int
    clobbers: frozenset[str]  # call-clobbered registers it (or its callees) may write
    callee_saved_clobbers: frozenset[str]  # callee-saved registers written and not restored
    calls: tuple[CallEdge, ...] = field(default=())


DependencyReason = Literal["ipa-ra", "custom-convention"]


@dataclass(frozen=True, slots=True)
class RegisterDependent:
    """A caller that relies on `callee` leaving call-clobbered `registers` untouched."""

    callee: int  # start address of the called function
    caller: int  # start address of the calling function
    site: int  # address of the call instruction
    registers: tuple[str, ...]
    reason: DependencyReason


# --- what the index answers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SymbolFact:
    """One FUNC symbol of an indexed object, with livepatch's view of it."""

    name: str
    object: str
    address: int
    size: int
    section: str
    binding: Binding
    sympos: int
    clone_kinds: tuple[str, ...]
    has_mcount: bool
    patchable: bool
    not_patchable_reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InlinedInto:
    """An out-of-line function whose machine code holds an inlined copy of another."""

    function: str  # symbol name of the containing out-of-line function
    object: str
    address: int
    call_file: str | None
    call_line: int | None
    depth: int  # 1 when inlined directly, 2+ when through other inlined functions


@dataclass(frozen=True, slots=True)
class DependentFact:
    """A caller relying on a callee leaving some call-clobbered registers untouched."""

    callee: str
    caller: str
    object: str
    site: int
    registers: tuple[str, ...]
    reason: DependencyReason
    caller_address: int = 0


@dataclass(frozen=True, slots=True)
class CallFact:
    """One call edge from the binary, named for people."""

    caller: str
    callee: str | None
    object: str
    site: int
    kind: str  # CallKind, or "inlined" for inline sites in call hierarchies
    caller_address: int = 0
    callee_address: int | None = None


@dataclass(frozen=True, slots=True)
class FunctionReport:
    """Everything the index knows about one C function definition in one object."""

    name: str
    object: str
    binary: str
    build_id: str
    arch: Arch
    decl_file: str | None
    decl_line: int | None
    cu_name: str | None
    external: bool
    symbols: tuple[SymbolFact, ...]  # out-of-line copies under the C name itself
    clones: tuple[SymbolFact, ...]  # GCC clones (.isra, .constprop, .part, .cold, ...)
    aliases: tuple[str, ...]  # other FUNC symbols at the address of one of `symbols`
    patchable: bool
    not_patchable_reasons: tuple[str, ...]
    out_of_line: bool
    inlined_into: tuple[InlinedInto, ...]
    compiler: CompilerFlags | None
    calling_convention: str  # "normal", "nocall", "program", ... (DW_CC_*)
    abi_deviation: bool  # a parameter is not where the ABI puts it
    params: tuple[Param, ...]
    clobbers: tuple[str, ...] | None  # None when register facts are not computed yet
    callee_saved_clobbers: tuple[str, ...]
    register_dependents: tuple[DependentFact, ...]
    has_dwarf: bool = True


# --- what a patch check finds ----------------------------------------------------------------

Severity = Literal["error", "warning", "information", "hint"]

# Stable finding kinds; each has a page under docs/findings/<kind>.md.
FINDING_KINDS: tuple[str, ...] = (
    "register-dependents",
    "not-patchable",
    "inlined",
    "has-clones",
    "signature-changed",
    "ambiguous-sympos",
    "header-change",
    "data-change",
    "init-code",
    "static-local",
    "unknown-function",
)


@dataclass(frozen=True, slots=True)
class Related:
    """A place that explains a finding: a caller, a clone, an inline site."""

    role: Literal["caller", "clone", "inline-site", "container", "symbol"]
    name: str
    object: str
    source_file: str | None = None
    source_line: int | None = None
    address: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a live-patch author must know about a change."""

    kind: str  # one of FINDING_KINDS
    severity: Severity
    function: str | None
    object: str | None
    message: str
    patch_file: str | None = None
    patch_line: int | None = None  # 1-based line in the patch file
    source_file: str | None = None
    source_line: int | None = None  # 1-based line in the pre-image source file
    related: tuple[Related, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplaceEntry:
    """One function a live patch must replace: a `klp_func` entry."""

    object: str  # "vmlinux" or a module name
    symbol: str
    sympos: int
    reason: str  # why it is in the set, e.g. "changed", "inlines foo", "relies on rcx of foo"
    patchable: bool = True


@dataclass(frozen=True, slots=True)
class ChangedFunction:
    """A C function whose body a patch changes, as found in the binary."""

    name: str
    source_file: str
    object: str | None  # None when not found in any indexed object
    patch_file: str | None = None
    patch_line: int | None = None
    source_line: int | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with the user's input (a patch line, a missing file); data, not an error."""

    file: str
    line: int | None
    message: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of checking one or more patches (or an edited buffer) against a kernel."""

    changed_functions: tuple[ChangedFunction, ...]
    findings: tuple[Finding, ...]
    replace: tuple[ReplaceEntry, ...]
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()  # e.g. "source tree: /usr/src/linux (from DW_AT_comp_dir)"

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)
