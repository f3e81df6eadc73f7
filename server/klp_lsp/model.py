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
    # A register name, "stack", "optimized-out" (no location at all), "removed" (GCC took it
    # out of this copy's arguments: its location is DW_OP_GNU_parameter_ref, the value the
    # caller's DW_TAG_call_site_parameter gives), "constant" (a known value, DW_AT_const_value
    # or a constant DW_OP_stack_value at entry), or "unknown" (any other expression).
    location: str
    # What its C type is: "pointer", "aggregate" (struct, union), "scalar" (integer, enum),
    # None when unknown. IPA-SRA splits only pointers and aggregates into other arguments.
    type_kind: str | None = None


TypeKind = Literal["void", "integer", "pointer", "float", "aggregate", "unknown"]


@dataclass(frozen=True, slots=True)
class TypeShape:
    """What a calling convention sees of a C type: its class and size, and a name for people."""

    kind: TypeKind
    size: int
    name: str


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
    # In C order: a concrete copy's parameters follow its abstract origin's, and a parameter
    # the copy has no DIE for is "optimized-out".
    params: tuple[Param, ...]
    entry_pc: int | None = None
    # Size in bytes of the return type: 0 for void, None when unknown (a type the scanner
    # cannot size, or a declaration in another unit).
    return_size: int | None = None


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
    # The files of the unit's line table, normalised like decl_file: its source and every
    # header GCC recorded a type, declaration or line of code from (not macro-only headers).
    files: tuple[str, ...] = ()


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
    # Argument registers (and the indirect result register) its code reads before writing
    # them: what it really receives. None when not computed (only GCC clones get it).
    arguments: frozenset[str] | None = None


DependencyReason = Literal["ipa-ra", "custom-convention"]


@dataclass(frozen=True, slots=True)
class RegisterDependent:
    """A caller that relies on `callee` leaving call-clobbered `registers` untouched."""

    callee: int  # start address of the called function
    caller: int  # start address of the calling function
    site: int  # address of the call instruction
    registers: tuple[str, ...]
    reason: DependencyReason
    # Start addresses of the functions between the call and `callee`, the called one first,
    # each reaching the next by a call or a tail call; () when the site calls `callee` itself.
    via: tuple[int, ...] = ()


# --- compiled objects (check --compile) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectInsn:
    """One instruction of a function in a relocatable object, normalised for comparison.

    `text` is the instruction with its immediates masked as `#` and each reference to another
    symbol (a relocation, or a direct branch out of the function) as `@`; `values` and `refs`
    hold what they stand for, so that two compilations of the same code give equal records
    wherever the object's layout put things.
    """

    offset: int  # from the function's start
    text: str
    values: tuple[int, ...]  # the immediates, in operand order
    refs: tuple[str, ...]  # `name`, `name+0x10`, a string literal `"..."`, or `section+?`


@dataclass(frozen=True, slots=True)
class ObjectFunction:
    """One FUNC symbol of a relocatable object, its normalised code and its DWARF facts."""

    name: str
    section: str
    size: int
    binding: Binding
    insns: tuple[ObjectInsn, ...]
    origin: str  # the C function it is a copy of (its DWARF name; the clone-parsed name else)
    decl_file: str | None
    decl_line: int | None
    inlined: tuple[str, ...]  # C functions GCC inlined into it directly, sorted
    inlined_nested: tuple[str, ...] = ()  # inlined through other inlined functions
    # (caller, callee) of every inlining decision in its code: the caller is this function's
    # C name, or the inlined function whose copy holds the callee's copy.
    inline_edges: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ObjectCode:
    """What `check --compile` compares of one compiled object (`kernel/workqueue.o`)."""

    path: str  # the object's path in the build tree
    arch: Arch
    functions: tuple[ObjectFunction, ...]  # in symbol-table order
    # (decl_file, decl_line) of every C function of the CU, code or not, by name.
    definitions: tuple[tuple[str, str | None, int | None], ...] = ()


FunctionDiffKind = Literal["changed", "line-only", "calls-renamed", "added", "removed"]


@dataclass(frozen=True, slots=True)
class FunctionDiff:
    """A function whose compiled code differs between the original and the patched object.

    `changed`: its code differs; `line-only`: only immediates that are `__LINE__` values moved
    by the patch (kpatch ignores these too); `calls-renamed`: it differs only in calling a
    renamed clone (`foo` became `foo.isra.0`); `added`/`removed`: the symbol exists on one side.
    """

    object: str  # the build-tree object (`kernel/workqueue.o`)
    name: str  # its symbol in the patched object (the original's, when removed)
    origin: str  # the C function it is a copy of
    kind: FunctionDiffKind
    old_name: str | None = None  # the original's symbol, when a clone change renamed it
    detail: str = ""
    renamed_calls: tuple[tuple[str, str], ...] = ()  # (called before, called after)
    line_shifts: tuple[tuple[int, int], ...] = ()  # (__LINE__ before, after)
    decl_file: str | None = None
    decl_line: int | None = None
    inlined: tuple[str, ...] = ()  # C functions inlined into it at any depth (patched side)
    size_before: int | None = None
    size_after: int | None = None


@dataclass(frozen=True, slots=True)
class CloneChange:
    """The out-of-line copies of one C function differ: a clone appeared, went or was renamed."""

    origin: str
    before: tuple[str, ...]  # its symbols (without `.cold` parts) in the original object
    after: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class InliningFlip:
    """GCC changed its mind about inlining `callee` into `caller` (both C function names)."""

    callee: str
    caller: str
    inlined_after: bool  # True: inlined in the patched object only; False: in the original only


@dataclass(frozen=True, slots=True)
class ObjectDiff:
    """The comparison of one object compiled before and after a patch."""

    object: str
    functions: tuple[FunctionDiff, ...]  # the functions that differ
    clones: tuple[CloneChange, ...]
    inlining: tuple[InliningFlip, ...]
    identical: int  # functions compiled to the same code
    symbols: tuple[str, ...] = ()  # every function symbol of either side


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
    # Code no symbol covers, which never runs and no live patch can name: `function` is then
    # its DWARF subprogram's name, and `reason` says why it has no symbol (an overridden
    # `__weak` copy the linker kept without one).
    dead: bool = False
    reason: str | None = None
    # Other symbols at the same address (`function` is the one of its DWARF definition).
    aliases: tuple[str, ...] = ()


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
    # The functions between the call and `callee`, the called one first (each calls or
    # tail-calls the next): () when the caller calls `callee` itself.
    via: tuple[str, ...] = ()


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


PassingStatus = Literal[
    "register", "stack", "unused", "dropped", "replaced", "removed", "constant", "unknown"
]


@dataclass(frozen=True, slots=True)
class PassedParam:
    """How one C parameter reaches an out-of-line copy of its function.

    `status`: "register" (in `register`), "stack"; "unused" (a copy that keeps the C ABI and
    never reads it: callers still pass it in `abi_register`); for GCC clones, which callers call
    with GCC's own convention: "dropped" (not passed: unused, or fixed by IPA-CP), "replaced"
    (not passed; the copy receives values derived from it in `CompiledSignature.extra_registers`,
    IPA-SRA), "removed" (not passed, one of several, some of which were replaced), "constant"
    (DWARF gives it a constant value); "unknown" (a location DWARF does not make plain).
    """

    name: str | None
    index: int  # position in the C prototype, from 0
    status: PassingStatus
    register: str | None = None  # status "register"
    abi_register: str | None = None  # where the C prototype puts it (None: on the stack)


@dataclass(frozen=True, slots=True)
class CompiledSignature:
    """The calling convention one symbol's machine code has, against its C prototype.

    A GCC clone's callers are compiled against this, not the prototype: a live patch replacing
    `foo.isra.0` must take its arguments and return its result where these say.
    """

    symbol: str
    object: str
    address: int
    clone_kinds: tuple[str, ...]
    params: tuple[PassedParam, ...]  # every C parameter, in C order
    # Argument registers (and the indirect result register) the code reads before writing
    # them that carry no C parameter: the values IPA-SRA passes instead of removed ones. None
    # when the machine code's arguments are not known (register facts not indexed).
    extra_registers: tuple[str, ...] | None
    # Registers the result comes back in: () for none (void, or dropped by IPA-SRA); None when
    # the return type is not known.
    returns: tuple[str, ...] | None
    # The result is written to memory at the address passed in `Abi.indirect_result`.
    returns_in_memory: bool
    result_dropped: bool  # the C function returns a value that this copy never produces
    # Every parameter where the C prototype puts it, nothing extra, the same result.
    matches_prototype: bool


@dataclass(frozen=True, slots=True)
class InstanceFacts:
    """One out-of-line copy of a C function (the function itself or a clone) at its address."""

    die: int  # the concrete DW_TAG_subprogram
    function_die: int  # the C definition (abstract origin)
    name: str | None  # the C name
    decl_file: str | None
    decl_line: int | None
    params: tuple[Param, ...]  # where this copy finds each C parameter at its entry


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
    # The compiled signature of each clone but `.cold` parts, in the order of `clones`.
    clone_signatures: tuple[CompiledSignature, ...] = ()
    # The symbol the user asked about when it is not the C name (a clone, a `.cold` part, an
    # alias, or `name,sympos`): the report is its C definition's.
    queried_symbol: SymbolFact | None = None
    # Out-of-line copies no symbol covers (address, why): code that never runs, such as an
    # overridden `__weak` function's body, which the linker keeps without its symbol.
    dead_copies: tuple[tuple[int, str], ...] = ()


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
    "export-symbol",
    "per-cpu",
    "static-key",
    "tracepoint",
    "compiler-only-change",
    "kpatch-preview",
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


Evidence = Literal["source", "compiler", "both"]


@dataclass(frozen=True, slots=True)
class ChangedFunction:
    """A C function a patch changes: in its source, in its compiled code (`check --compile`), or
    both."""

    name: str
    source_file: str
    object: str | None  # None when not found in any indexed object
    patch_file: str | None = None
    patch_line: int | None = None
    source_line: int | None = None
    evidence: Evidence = "source"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with the user's input (a patch line, a missing file); data, not an error."""

    file: str
    line: int | None
    message: str


# --- what each hunk of a patch changes (for editors: lenses, outline, hovers) -----------------

ImpactStatus = Literal["changed", "added", "removed", "not-built", "not-found"]


@dataclass(frozen=True, slots=True)
class FunctionImpact:
    """One changed C function in one object, and what a live patch must do about it."""

    name: str
    source_file: str
    # "added": new code that comes with the patch module; "not-built": its file is not built
    # into the indexed binaries; "not-found": built, but no such function was found.
    status: ImpactStatus
    patch_lines: tuple[int, ...] = ()  # the patch lines that change it (1-based)
    object: str | None = None
    symbols: tuple[SymbolFact, ...] = ()  # its own out-of-line copies (no .cold parts)
    clones: tuple[SymbolFact, ...] = ()  # GCC clones holding a copy of it (no .cold parts)
    inlined_into: tuple[str, ...] = ()  # out-of-line functions holding an inlined copy
    inline_sites: int = 0  # how many inlined copies
    out_of_line: bool = True
    patchable: bool = True
    not_patchable_reasons: tuple[str, ...] = ()
    register_callers: tuple[str, ...] = ()  # callers relying on registers it leaves untouched
    # Every klp_func entry it brings into the replace set: its own copies, the functions holding
    # it, callers relying on its registers, and the patchable callers of unpatchable ones.
    replace: tuple[ReplaceEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class HunkImpact:
    """What one `@@` hunk of a patch changes in C terms."""

    line: int  # its `@@` line in the patch file (1-based)
    end_line: int  # its last line
    section: str  # what follows the second `@@` (git's function-name heuristic)
    functions: tuple[FunctionImpact, ...] = ()
    header: str = ""  # `@@ -141,7 +141,7 @@`
    data: tuple[str, ...] = ()  # changed data definitions, e.g. "struct nameidata"
    macros: tuple[str, ...] = ()  # changed macros
    macro_users: int = 0  # functions found to expand those macros
    # Why it changes no function: "comment-only", "outside-definitions", "not-c", "new-file"...
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # why it could not be mapped (it does not apply, ...)


@dataclass(frozen=True, slots=True)
class CompileUnitRef:
    """A compile unit that a patched file is built as, in one indexed object."""

    object: str
    name: str  # DW_AT_name, as the compiler saw it
    compiler: CompilerFlags | None
    analysed: bool  # its facts are in the index (a partial index may not have them yet)
    # The file is #included into this CU rather than compiled on its own (kernel/sched/rt.c in
    # kernel/sched/build_policy.c).
    included: bool = False
    error: str | None = None  # why the CU could not be read (it will never be analysed)


@dataclass(frozen=True, slots=True)
class FileImpact:
    """One file of a patch: where it is built and what each of its hunks changes."""

    patch_file: str
    path: str  # tree path (the pre-image path; the new path for a new file)
    status: str  # "modified", "added", "deleted", "renamed", "binary"
    line: int  # its `diff` (or `---`) line in the patch file
    end_line: int
    hunks: tuple[HunkImpact, ...]
    units: tuple[CompileUnitRef, ...] = ()  # empty: a header, or not built into these objects
    problems: tuple[str, ...] = ()  # why its hunks could not be mapped (no pre-image, ...)
    patch_subject: str | None = None  # the subject of the mbox message holding it
    patch_start: int = 1  # the first line of that message


@dataclass(frozen=True, slots=True)
class PreviewEntry:
    """One function a binary-diff build (kpatch-build, klp-build) would put in the patch."""

    object: str  # livepatch object: "vmlinux" or a module
    symbol: str
    kind: FunctionDiffKind
    origin: str
    reason: str
    predicted: bool  # in the replace set the source mapping predicted (itself or its old name)
    old_symbol: str | None = None  # its name in the original, when a clone change renamed it


@dataclass(frozen=True, slots=True)
class Comparison:
    """One function of the predicted replace set or of the compiler's changes, side by side."""

    object: str
    symbol: str
    predicted: str | None  # why the replace set has it; None when it does not
    # `changed`, `calls-renamed`, `added`, `removed` (with `, renamed to X` after a clone
    # change), `same code`, or `not compiled`.
    compiler: str


@dataclass(frozen=True, slots=True)
class CompileReport:
    """What compiling the touched objects before and after the patch showed."""

    build_tree: str
    objects: tuple[ObjectDiff, ...]
    kpatch_preview: tuple[PreviewEntry, ...]
    failures: tuple[tuple[str, str], ...] = ()  # (object, compiler message): patch does not build
    not_compiled: tuple[tuple[str, str], ...] = ()  # (object, why)
    cached: tuple[str, ...] = ()  # objects answered from the result cache
    seconds: float = 0.0
    comparison: tuple[Comparison, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of checking one or more patches (or an edited buffer) against a kernel."""

    changed_functions: tuple[ChangedFunction, ...]
    findings: tuple[Finding, ...]
    replace: tuple[ReplaceEntry, ...]
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()  # e.g. "source tree: /usr/src/linux (from DW_AT_comp_dir)"
    files: tuple[FileImpact, ...] = ()  # per file and hunk of the patches (empty for a buffer)
    compile: CompileReport | None = None  # with `check --compile`

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)


# --- livepatch modules -----------------------------------------------------------------------

# How a module describes what it replaces: static `klp_patch`/`klp_object`/`klp_func` arrays
# (kbuild, samples/livepatch, klp-convert, the klp-lsp skeleton), kpatch-build's `.kpatch.funcs`
# records, or klp-build's `klp_object_ext`/`klp_func_ext` sections.
KlpFormat = Literal["klp_patch", "kpatch", "klp-build"]


@dataclass(frozen=True, slots=True)
class KlpFunc:
    """One function a livepatch module replaces: what its `klp_func` entry says."""

    object: str  # "vmlinux" or the patched module's name (`klp_object.name`)
    old_name: str
    old_sympos: int
    new_func: str | None  # the replacement's symbol in the module; None when it has none
    new_func_address: int | None  # in the module's synthetic layout (see binary/elf.py)
    where: str  # where the entry sits, e.g. "funcs[1] at .data+0x298"


@dataclass(frozen=True, slots=True)
class KlpRelocation:
    """One entry of a `.klp.rela.<obj>.<section>` section and the `.klp.sym` symbol it uses.

    Documentation/livepatch/module-elf-format.rst: the section name says which object's load
    applies it; the symbol name `.klp.sym.<objname>.<symbol>,<sympos>` says what it resolves to.
    """

    section: str  # ".klp.rela.vmlinux..text"
    object: str | None  # the object of the section name ("vmlinux", a module), None if malformed
    target_section: str  # the section it patches (sh_info)
    offset: int
    type: int
    symbol: str  # the full symbol name
    sym_object: str | None  # parsed from the symbol name; None when malformed
    sym_name: str | None
    sympos: int | None
    livepatch_symbol: bool  # st_shndx == SHN_LIVEPATCH, as klp_resolve_symbols requires
    problem: str | None  # what makes the kernel refuse it at load time, if anything


@dataclass(frozen=True, slots=True)
class LivepatchModule:
    """What a livepatch `.ko` says about itself, read from its ELF bytes."""

    path: str
    name: str  # the module name (`.modinfo` name=, else the file name)
    arch: Arch
    build_id: str
    format: KlpFormat | None  # None: no replace records found (see `problems`)
    modinfo: tuple[tuple[str, str], ...]  # every key=value of `.modinfo`, in order
    funcs: tuple[KlpFunc, ...]
    relocations: tuple[KlpRelocation, ...]
    imports: tuple[str, ...]  # undefined symbols, resolved against exports at load time
    versions: tuple[tuple[str, int], ...]  # `__versions`: (symbol, CRC) as modpost wrote them
    replace: bool | None  # `klp_patch.replace` (an atomic-replace patch), None if unknown
    has_dwarf: bool
    problems: tuple[str, ...] = ()  # structural problems that make the kernel refuse it

    def get_modinfo(self, key: str) -> str | None:
        """The first value of `key` in `.modinfo`, or None."""
        for k, v in self.modinfo:
            if k == key:
                return v
        return None


@dataclass(frozen=True, slots=True)
class KernelModuleAbi:
    """What the kernel checks a module against at load time, read from its vmlinux."""

    vermagic: str | None  # kernel/module/main.c `vermagic[]`
    release: str | None  # the first word of the vermagic (UTS_RELEASE)
    crcs: dict[str, int]  # CONFIG_MODVERSIONS: `__crc_<symbol>` values
    exports: dict[str, bool]  # exported symbol -> GPL-only (`__ksymtab_gpl`)
    livepatch: bool  # CONFIG_LIVEPATCH: `klp_enable_patch` exists
