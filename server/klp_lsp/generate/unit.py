"""The source of one livepatch compile unit: patched functions and what they need from their file.

A unit is one compile unit of the kernel (a DW_AT_name such as kernel/sched/build_policy.c, with
the `.c` files it includes spliced in) reduced to what the replacement functions need, in the
file's own order so that every declaration still precedes its use:

- every preprocessor line (so `#include`s, macros and `#ifdef CONFIG_*` stay as they were),
  except `#define CREATE_TRACE_POINTS`, so trace headers declare the kernel's tracepoints
  instead of defining new ones;
- every type definition (structs, unions, enums, typedefs: they hold no state);
- the replacement functions under their new names, and static helpers the running kernel has no
  callable copy of (fully inlined, `static inline`, or only a GCC clone with a private ABI);
- `extern` declarations, never definitions, of the variables the code names, and prototypes of
  the functions it calls in the kernel: those become livepatch relocations after the build, so
  the module works on the kernel's own state. Static locals of the copied functions are declared
  the same way, at block scope, under a placeholder name the relocation rewrite resolves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal, Protocol

from klp_lsp.generate.definitions import ObjectKind, macro_objects
from klp_lsp.model import Severity
from klp_lsp.patch.c_items import (
    ATTRIBUTE_CALLS,
    ATTRIBUTE_WORDS,
    Declarator,
    Item,
    Token,
    define_body,
    parse_declaration,
    references,
    render,
    split_items,
    strip_attributes,
)

RefKind = Literal["function", "variable", "static-local"] | ObjectKind
_SPECIFIERS_TO_DROP = frozenset(
    ("static", "extern", "inline", "__inline", "__inline__", "__always_inline", "register")
)
_MAX_INCLUDE_DEPTH = 8
# Placeholder symbol of a static local, resolved by the relocation rewrite (`klp_symbols.py`).
LOCAL_PREFIX = "klp_lsp__"


@dataclass(frozen=True, slots=True)
class Placed:
    """A top-level item and the file it comes from."""

    item: Item
    file: str  # path relative to the source tree
    text: str  # the text of that file (item offsets index it)


@dataclass(frozen=True, slots=True)
class Wanted:
    """A function of the unit to emit under a new name."""

    name: str  # the C name (for SYSCALL_DEFINEn(x, ...), "x")
    new_name: str


@dataclass(frozen=True, slots=True)
class ExternRef:
    """A name the generated code uses that must resolve to the running kernel's object."""

    c_name: str  # the symbol the compiled module references (a placeholder for static locals)
    symbol: str  # the name to look up in the kernel object
    kind: RefKind
    local: bool  # static in its file: look among the compile unit's own symbols
    file: str
    line: int
    function: str | None = None  # the function holding a static local


@dataclass(frozen=True, slots=True)
class UnitProblem:
    """Something the generator cannot do, or does in a way the author must know."""

    severity: Severity
    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    function: str | None = None


@dataclass(frozen=True, slots=True)
class GeneratedFunction:
    """A replacement function in the generated source."""

    name: str
    new_name: str
    file: str
    line: int
    macro: str | None


@dataclass(frozen=True, slots=True)
class GeneratedUnit:
    """The generated source of one compile unit."""

    text: str
    functions: tuple[GeneratedFunction, ...]
    externs: tuple[ExternRef, ...]
    copied: tuple[str, ...]  # static helpers compiled into the module
    problems: tuple[UnitProblem, ...]
    files: tuple[str, ...]  # the source files the unit's items come from


class SymbolView(Protocol):
    """What the kernel object holds for the symbols of one compile unit."""

    def callable(self, name: str) -> bool:
        """An out-of-line copy of static function `name` with the C calling convention."""
        ...

    def has_data(self, name: str) -> bool:
        """A data symbol `name` of this compile unit."""
        ...

    def data_size(self, name: str) -> int | None:
        """The size of data symbol `name` of this compile unit, if known."""
        ...


def flatten(cu: str, read: Callable[[str], str | None]) -> tuple[list[Placed], list[UnitProblem]]:
    """The items of compile unit `cu`, with each `#include "x.c"` replaced by x.c's items.

    Linux 6.1 builds kernel/sched/ as build_policy.c and build_utility.c, which include rt.c,
    deadline.c and the others: the functions of rt.c are compiled in build_policy.c's CU.
    """
    problems: list[UnitProblem] = []
    out: list[Placed] = []

    def visit(path: str, depth: int) -> None:
        text = read(path)
        if text is None:
            problems.append(
                UnitProblem("error", "missing-source", f"{path}: not in the source tree")
            )
            return
        for item in split_items(text):
            included = _included_c_file(item, path)
            if included is not None and depth < _MAX_INCLUDE_DEPTH:
                visit(included, depth + 1)
                continue
            out.append(Placed(item, path, text))

    visit(cu, 0)
    return out, problems


def _included_c_file(item: Item, path: str) -> str | None:
    """The tree path of a quoted `.c` include, relative to the including file."""
    if item.kind != "directive" or item.directive != "include" or not item.tokens:
        return None
    tok = item.tokens[0]
    if tok.kind != "string" or not tok.text.endswith('.c"'):
        return None
    joined = PurePosixPath(path).parent / tok.text.strip('"')
    parts: list[str] = []
    for p in joined.parts:
        if p == "..":
            if parts:
                parts.pop()
        elif p != ".":
            parts.append(p)
    return "/".join(parts)


@dataclass(slots=True)
class _Plan:
    functions: dict[str, str] = field(default_factory=dict)  # name -> copy | extern | wanted
    variables: dict[str, str] = field(default_factory=dict)  # name -> extern | copy | verbatim
    macro_objects: set[str] = field(default_factory=set)
    address_taken: set[str] = field(default_factory=set)  # wanted functions used by address
    macros_seen: set[str] = field(default_factory=set)


class _Index:
    """Where each name is defined among the unit's items."""

    def __init__(self, placed: Sequence[Placed]) -> None:
        self.functions: dict[str, list[int]] = {}
        self.definitions: dict[str, list[int]] = {}  # functions, also those macros define
        self.prototypes: dict[str, list[int]] = {}
        self.variables: dict[str, list[tuple[int, Declarator]]] = {}
        self.macros: dict[str, list[int]] = {}
        self.macro_objects: dict[str, list[tuple[int, str, ObjectKind]]] = {}
        self.macro_args: dict[str, list[int]] = {}
        for i, p in enumerate(placed):
            it = p.item
            if it.kind == "directive":
                if it.directive == "define" and it.name:
                    self.macros.setdefault(it.name, []).append(i)
            elif it.kind == "function" and it.name:
                self.definitions.setdefault(it.name, []).append(i)
                # `SYSCALL_DEFINE4(migrate_pages, ...)` defines __do_sys_migrate_pages and the
                # entries, not `migrate_pages` (a function of mm/migrate.c): code cannot name it.
                if it.macro is None:
                    self.functions.setdefault(it.name, []).append(i)
            elif it.decl_kind == "prototype":
                for d in it.declarators:
                    self.prototypes.setdefault(d.name, []).append(i)
            elif it.decl_kind == "variable":
                for d in it.declarators:
                    if d.is_function:
                        self.prototypes.setdefault(d.name, []).append(i)
                    else:
                        self.variables.setdefault(d.name, []).append((i, d))
            elif it.decl_kind == "macro-call" and it.name:
                args = [render(a) for a in it.args]
                objs = macro_objects(it.name, args)
                for name, decl, kind in objs:
                    self.macro_objects.setdefault(name, []).append((i, decl, kind))
                if not objs and it.name.startswith(("DEFINE_", "DECLARE_")):
                    for a in it.args:
                        for t in a:
                            if t.kind == "ident":
                                self.macro_args.setdefault(t.text, []).append(i)


class _Generator:
    def __init__(
        self,
        placed: Sequence[Placed],
        wanted: Sequence[Wanted],
        symbols: SymbolView,
        new_static_locals: Mapping[str, Sequence[str]],
        label_prefix: str,
    ) -> None:
        self.label_prefix = label_prefix
        self.placed = placed
        self.wanted = {w.name: w for w in wanted}
        self.symbols = symbols
        self.new_static_locals = new_static_locals
        self.index = _Index(placed)
        self.plan = _Plan()
        self.problems: list[UnitProblem] = []
        self.externs: dict[str, ExternRef] = {}
        self.pending: list[str] = []

    # --- closure --------------------------------------------------------------------------

    def close(self) -> None:
        # Wanted functions code can call by name (not `SYSCALL_DEFINEn(x, ...)`'s `x`).
        self.callable_wanted = {n for n in self.wanted if n in self.index.functions}
        for name in self.wanted:
            if name not in self.index.definitions:
                self.problems.append(
                    UnitProblem(
                        "error",
                        "cannot-generate",
                        f"{name}: no definition of it in the compile unit's source",
                        function=name,
                    )
                )
                continue
            self.plan.functions[name] = "wanted"
            for i in self.index.definitions[name]:
                self._queue_function(i)
        while self.pending:
            self._resolve(self.pending.pop())

    def _queue_function(self, i: int) -> None:
        toks = self.placed[i].item.tokens
        for k, t in enumerate(toks):
            if t.kind != "ident" or (k and toks[k - 1].text in (".", "->")):
                continue
            called = k + 1 < len(toks) and toks[k + 1].text == "("
            in_body = k > (self.placed[i].item.body or (0,))[0]
            if t.text in self.callable_wanted and not called and in_body:
                self.plan.address_taken.add(t.text)
        self.pending.extend(references(toks))

    def _resolve(self, name: str) -> None:
        idx = self.index
        if name in idx.macros and name not in self.plan.macros_seen:
            self.plan.macros_seen.add(name)
            for i in idx.macros[name]:
                self.pending.extend(references(define_body(self.placed[i].item)))
        if name in self.plan.functions or name in self.plan.variables:
            return
        if name in self.plan.macro_objects:
            return
        if name in idx.functions:
            items = [self.placed[i].item for i in idx.functions[name]]
            if not any(it.is_static for it in items):
                self.plan.functions[name] = "extern"
            elif any(it.is_inline for it in items) or not self.symbols.callable(name):
                self.plan.functions[name] = "copy"
                for i in idx.functions[name]:
                    self._queue_function(i)
            else:
                self.plan.functions[name] = "extern"
            return
        if name in idx.prototypes:
            self.plan.functions[name] = "extern"
            return
        if name in idx.variables:
            i, d = idx.variables[name][0]
            it = self.placed[i].item
            if any(t.text == "extern" for t in it.specifiers):
                self.plan.variables[name] = "verbatim"
            elif _is_const_object(it.specifiers, d) and not self.symbols.has_data(name):
                # GCC folded it away: a constant holds no state, a copy is the same value.
                self.plan.variables[name] = "copy"
                for _i, dd in idx.variables[name]:
                    self.pending.extend(references(dd.initializer))
            else:
                self.plan.variables[name] = "extern"
            return
        if name in idx.macro_objects:
            self.plan.macro_objects.add(name)
            return
        if name in idx.macro_args:
            p = self.placed[idx.macro_args[name][0]]
            self.problems.append(
                UnitProblem(
                    "error",
                    "cannot-declare",
                    f"{name} is defined by {p.item.name}(...) at {p.file}:{p.item.line}, a macro"
                    " klp-lsp cannot declare; write its extern declaration by hand",
                    p.file,
                    p.item.line,
                )
            )
            self.plan.variables[name] = "unknown"

    # --- emission -------------------------------------------------------------------------

    def emit(self) -> tuple[str, list[GeneratedFunction], list[str]]:
        out: list[str] = []
        declared: set[str] = set()
        functions: list[GeneratedFunction] = []
        copied: list[str] = []
        syscall_override = False
        for p in self.placed:
            it = p.item
            if out and out[-1] != "" and self._blank_before(p):
                out.append("")
            if it.kind == "directive":
                if it.directive == "define" and it.name == "CREATE_TRACE_POINTS":
                    out.append(
                        f"/* {p.file}:{it.line}: #define CREATE_TRACE_POINTS dropped: the"
                        " module uses the kernel's tracepoints, it must not define them */"
                    )
                    continue
                out.append(p.text[it.start : it.end])
                continue
            if it.kind == "function":
                name = it.name or ""
                disp = self.plan.functions.get(name)
                if disp == "wanted":
                    if name in self.plan.address_taken and name not in declared:
                        # Its address stays the kernel's own (callers compare pointers).
                        out.append(self._prototype(p, name, self._label(name, it.is_static)))
                        declared.add(name)
                        self._extern(name, "function", it.is_static, p, it.line)
                    syscall = it.macro and it.macro.startswith(("SYSCALL_DEFINE", "COMPAT_SYSCALL"))
                    if syscall and not syscall_override:
                        out.append(_SYSCALL_METADATA_OFF)
                        syscall_override = True
                    w = self.wanted[name]
                    out.append(f"/* {p.file}:{it.line}: {name}, patched */")
                    out.append(self._function_text(p, rename=w.new_name))
                    functions.append(GeneratedFunction(name, w.new_name, p.file, it.line, it.macro))
                elif disp == "copy":
                    out.append(f"/* {p.file}:{it.line}: {name}, compiled into the module */")
                    out.append(self._function_text(p, rename=None))
                    if name not in copied:
                        copied.append(name)
                elif disp == "extern" and name not in declared:
                    out.append(self._prototype(p, name, self._label(name, it.is_static)))
                    declared.add(name)
                    self._extern(name, "function", it.is_static, p, it.line)
                continue
            kind = it.decl_kind
            if kind == "type":
                out.append(p.text[it.start : it.end])
            elif kind == "prototype" or (
                kind == "variable" and any(d.is_function for d in it.declarators)
            ):
                for d in it.declarators:
                    if d.is_function:
                        self._emit_prototype_decl(p, d, out, declared)
                if kind == "variable":
                    self._emit_variables(p, out, declared)
            elif kind == "variable":
                if it.types:
                    out.append(_type_only(it) + ";")
                self._emit_variables(p, out, declared)
            elif kind == "macro-call" and it.name:
                self._emit_macro_objects(p, out, declared)
        return "\n".join(out) + "\n", functions, copied

    def _blank_before(self, p: Placed) -> bool:
        """Whether the source has an empty line before the item (kept for readability)."""
        return p.text.endswith("\n\n", 0, p.item.start) or p.item.start == 0

    def _emit_prototype_decl(
        self, p: Placed, d: Declarator, out: list[str], declared: set[str]
    ) -> None:
        it = p.item
        disp = self.plan.functions.get(d.name)
        if disp == "wanted":
            w = self.wanted[d.name]
            out.append(_declaration_text(it.specifiers, d.tokens, rename=(d.name, w.new_name)))
            if d.name in self.plan.address_taken and d.name not in declared:
                label = self._label(d.name, it.is_static)
                out.append(_declaration_text(it.specifiers, d.tokens, label=label))
                declared.add(d.name)
                self._extern(d.name, "function", it.is_static, p, it.line)
        elif disp == "copy":
            out.append(_declaration_text(it.specifiers, d.tokens, keep_static=True))
        elif disp == "extern" and d.name not in declared:
            label = self._label(d.name, it.is_static and d.name in self.index.functions)
            out.append(_declaration_text(it.specifiers, d.tokens, label=label))
            declared.add(d.name)
            if d.name in self.index.functions:
                # Defined in this unit: the kernel's copy is this CU's. A prototype alone
                # declares a function of another file, looked up like a header's.
                self._extern(d.name, "function", it.is_static, p, it.line)

    def _emit_variables(self, p: Placed, out: list[str], declared: set[str]) -> None:
        it = p.item
        for d in it.declarators:
            if d.is_function or d.name in declared:
                continue
            disp = self.plan.variables.get(d.name)
            if disp is None or disp == "unknown":
                continue
            declared.add(d.name)
            if disp == "verbatim":
                out.append(p.text[it.start : it.end])
            elif disp == "copy":
                out.append(f"/* {p.file}:{it.line}: {d.name}, a constant the kernel folded */")
                out.append(_definition_text(it.specifiers, d))
            else:
                out.append(self._extern_variable(p, d))
                self._extern(d.name, "variable", it.is_static, p, it.line)

    def _extern_variable(self, p: Placed, d: Declarator) -> str:
        it = p.item
        label = self._label(d.name, it.is_static)
        text = _declaration_text(it.specifiers, d.tokens, label=label)
        if _has_empty_bound(d.tokens):
            size = self.symbols.data_size(d.name) if it.is_static else None
            if size is not None:
                # `extern T x[];` is incomplete, so ARRAY_SIZE(x) would not compile: complete it
                # from the kernel symbol's size.
                first = _first_element(d.tokens)
                bounded = _complete_bound(d.tokens, size, first)
                completed = _declaration_text(it.specifiers, bounded, label=label)
                return text + "\n" + completed
        return text

    def _emit_macro_objects(self, p: Placed, out: list[str], declared: set[str]) -> None:
        it = p.item
        assert it.name is not None
        args = [render(a) for a in it.args]
        for name, decl, kind in macro_objects(it.name, args):
            if name not in self.plan.macro_objects or name in declared:
                continue
            declared.add(name)
            label = self._label(name, it.is_static and kind != "static-call")
            if kind in ("per-cpu", "static-call"):
                out.append(f"{decl}{label};")
            else:
                out.append(f"extern {decl}{label};")
            self._extern(name, kind, it.is_static, p, it.line)
            if kind == "per-cpu":
                self.problems.append(
                    UnitProblem(
                        "warning",
                        "per-cpu",
                        f"{name} is a per-CPU variable of {p.file}: the module reaches the"
                        " kernel's through a livepatch relocation to its per-CPU offset",
                        p.file,
                        it.line,
                    )
                )
            elif kind == "static-key":
                self.problems.append(
                    UnitProblem(
                        "warning",
                        "static-key",
                        f"{name} is a static key defined in {p.file}: the module's jump labels"
                        " use the kernel's key through livepatch relocations, applied when the"
                        " module loads (vmlinux) or when its object loads",
                        p.file,
                        it.line,
                    )
                )
            elif kind == "static-call":
                self.problems.append(
                    UnitProblem(
                        "warning",
                        "static-call",
                        f"{name} is a static call defined in {p.file}: the module's call sites"
                        " use the kernel's static call key through livepatch relocations",
                        p.file,
                        it.line,
                    )
                )

    def _label(self, name: str, local: bool) -> str:
        """An asm label giving a static of this unit a name of its own in the module.

        Static functions and variables of different files share names (`demo_hash` in two
        files), and the linker merges undefined symbols by name, so each unit's statics are
        renamed `<unit prefix><name>` and the relocation rewrite maps them back.
        """
        return f' __asm__("{self.label_prefix}{name}")' if local and self.label_prefix else ""

    def _extern(self, name: str, kind: RefKind, local: bool, p: Placed, line: int) -> None:
        c_name = f"{self.label_prefix}{name}" if local and self.label_prefix else name
        self.externs.setdefault(c_name, ExternRef(c_name, name, kind, local, p.file, line))

    def _prototype(self, p: Placed, name: str, label: str) -> str:
        sig = list(p.item.signature_tokens())
        return render(_drop_specifiers(strip_attributes(sig))) + label + ";"

    def _function_text(self, p: Placed, rename: str | None) -> str:
        """A function item's text with edits: the new name, calls to replaced functions, static
        locals declared as the kernel's."""
        it = p.item
        assert it.body is not None and it.name is not None
        edits: list[tuple[int, int, str]] = []  # (start, end, replacement) offsets in p.text
        sig = it.signature_tokens()
        if rename is not None:
            for t in sig:
                if t.text in _SPECIFIERS_TO_DROP:
                    edits.append((t.start, _after_space(p.text, t.end), ""))
            for t in sig:
                if t.kind == "ident" and t.text == it.name:
                    edits.append((t.start, t.end, rename))
                    break
        body = it.body_tokens()
        for k, t in enumerate(body):
            if (
                t.kind == "ident"
                and t.text in self.callable_wanted
                and k + 1 < len(body)
                and body[k + 1].text == "("
                and not (k and body[k - 1].text in (".", "->"))
            ):
                edits.append((t.start, t.end, self.wanted[t.text].new_name))
        edits.extend(self._static_locals(p, it.name, body))
        edits.sort()
        text = p.text
        pieces: list[str] = []
        at = it.start
        for start, end, new in edits:
            if start < at:
                continue
            pieces.append(text[at:start])
            pieces.append(new)
            at = end
        pieces.append(text[at : it.end])
        return "".join(pieces)

    def _static_locals(
        self, p: Placed, function: str, body: Sequence[Token]
    ) -> list[tuple[int, int, str]]:
        edits = []
        new = set(self.new_static_locals.get(function, ()))
        k = 0
        while k < len(body):
            if body[k].text != "static":
                k += 1
                continue
            end = _statement_end(body, k)
            decl = tuple(body[k : end + 1])
            kind, name, declarators, specifiers, _types, args = parse_declaration(decl)
            objects: list[tuple[str, str]] = []  # (name, declaration without extern)
            if kind == "variable":
                for d in declarators:
                    if _is_const_object(specifiers, d):
                        continue
                    objects.append((d.name, _declaration_body(specifiers, d.tokens)))
            elif kind == "macro-call" and name:
                for oname, odecl, _okind in macro_objects(name, [render(a) for a in args]):
                    objects.append((oname, odecl))
            line = p.text.count("\n", 0, body[k].start) + 1
            for oname, _decl in objects:
                if oname in new:
                    self.problems.append(
                        UnitProblem(
                            "error",
                            "static-local",
                            f"the patch adds the static local {oname} to {function}: the"
                            " running kernel has no such variable to share, and a copy in the"
                            " module would start from zero; use a shadow variable"
                            " (klp_shadow_get_or_alloc)",
                            p.file,
                            line,
                            function,
                        )
                    )
            keep = [o for o in objects if o[0] not in new]
            if keep:
                decls = []
                for oname, odecl in keep:
                    placeholder = f"{self.label_prefix or LOCAL_PREFIX}local__{function}__{oname}"
                    decls.append(f'extern {odecl} __asm__("{placeholder}");')
                    self.externs.setdefault(
                        placeholder,
                        ExternRef(placeholder, oname, "static-local", True, p.file, line, function),
                    )
                edits.append((body[k].start, body[end].end, " ".join(decls)))
            k = end + 1
        return edits


_SYSCALL_METADATA_OFF = """\
/* The syscall's metadata and trace events belong to the kernel's own entry points. */
#ifdef SYSCALL_METADATA
#undef SYSCALL_METADATA
#define SYSCALL_METADATA(sname, nb, ...)
#endif"""


def generate_unit(
    placed: Sequence[Placed],
    wanted: Sequence[Wanted],
    symbols: SymbolView,
    *,
    preamble: str = "",
    new_static_locals: Mapping[str, Sequence[str]] | None = None,
    label_prefix: str = "",
) -> GeneratedUnit:
    """The source of one compile unit of the module (see the module docstring).

    `label_prefix` (e.g. "klp_lsp__vmlinux__fs_namei__") renames the unit's statics in the
    module's symbol table, so units of a module cannot mix up same-named statics."""
    gen = _Generator(placed, wanted, symbols, new_static_locals or {}, label_prefix)
    gen.close()
    text, functions, copied = gen.emit()
    files = tuple(dict.fromkeys(p.file for p in placed))
    return GeneratedUnit(
        preamble + text,
        tuple(functions),
        tuple(gen.externs.values()),
        tuple(copied),
        tuple(gen.problems),
        files,
    )


# --- token helpers --------------------------------------------------------------------------


def _statement_end(body: Sequence[Token], k: int) -> int:
    depth = 0
    for i in range(k, len(body)):
        t = body[i].text
        if t in ("(", "[", "{"):
            depth += 1
        elif t in (")", "]", "}"):
            depth -= 1
            if depth < 0:
                return i - 1
        elif t == ";" and depth == 0:
            return i
    return len(body) - 1


def _after_space(text: str, end: int) -> int:
    while end < len(text) and text[end] in " \t":
        end += 1
    return end


def _is_const_object(specifiers: Sequence[Token], d: Declarator) -> bool:
    """Whether the declared object itself is const (not a pointer to const data)."""
    toks = [t.text for t in d.tokens]
    if "*" in toks:
        last_star = len(toks) - 1 - toks[::-1].index("*")
        return last_star + 1 < len(toks) and toks[last_star + 1] == "const"
    return any(t.text in ("const", "__const") for t in specifiers)


def _drop_specifiers(tokens: Iterable[Token], keep_static: bool = False) -> list[Token]:
    drop = _SPECIFIERS_TO_DROP - ({"static"} if keep_static else set())
    return [t for t in tokens if t.text not in drop]


def _renamed(tokens: Sequence[Token], old: str, new: str) -> list[Token]:
    out = []
    done = False
    for t in tokens:
        if not done and t.kind == "ident" and t.text == old:
            out.append(Token(new, "ident", t.start, t.end))
            done = True
        else:
            out.append(t)
    return out


def _declaration_text(
    specifiers: Sequence[Token],
    declarator: Sequence[Token],
    *,
    rename: tuple[str, str] | None = None,
    keep_static: bool = False,
    label: str = "",
) -> str:
    """`extern <specifiers> <declarator>;` without attributes (a prototype: no `extern`)."""
    spec = _drop_specifiers(strip_attributes(list(specifiers)), keep_static=keep_static)
    decl = strip_attributes(list(declarator))
    if rename is not None:
        decl = _renamed(decl, *rename)
    is_function = any(t.text == "(" for t in decl) and not _is_pointer_group(decl)
    head = "" if is_function or keep_static else "extern "
    return f"{head}{render(spec)} {render(decl)}{label};"


def _declaration_body(specifiers: Sequence[Token], declarator: Sequence[Token]) -> str:
    """`<specifiers> <declarator>` without storage class and attributes."""
    spec = _drop_specifiers(strip_attributes(list(specifiers)))
    return f"{render(spec)} {render(strip_attributes(list(declarator)))}"


def _definition_text(specifiers: Sequence[Token], d: Declarator) -> str:
    spec = strip_attributes(list(specifiers))
    if not any(t.text == "static" for t in spec):
        spec = [Token("static", "ident", -1, -1), *spec]
    init = f" = {render(d.initializer)}" if d.initializer else ""
    return f"{render(spec)} {render(strip_attributes(list(d.tokens)))}{init};"


def _is_pointer_group(decl: Sequence[Token]) -> bool:
    """`(*fp)(int)`: a pointer to a function, which is a variable."""
    for i, t in enumerate(decl):
        if t.text == "(":
            return i + 1 < len(decl) and decl[i + 1].text == "*"
        if t.kind == "ident":
            return False
    return False


def _has_empty_bound(tokens: Sequence[Token]) -> bool:
    return any(tokens[i].text == "[" and tokens[i + 1].text == "]" for i in range(len(tokens) - 1))


def _first_element(tokens: Sequence[Token]) -> str:
    names = [t.text for t in tokens if t.kind == "ident" and t.text not in ATTRIBUTE_WORDS]
    return f"{names[0]}[0]" if names else "0"


def _complete_bound(tokens: Sequence[Token], size: int, first: str) -> list[Token]:
    out: list[Token] = []
    done = False
    for i, t in enumerate(tokens):
        out.append(t)
        if not done and t.text == "[" and i + 1 < len(tokens) and tokens[i + 1].text == "]":
            out.append(Token(f"{size} / sizeof({first})", "number", t.end, t.end))
            done = True
    return out


def _type_only(it: Item) -> str:
    """The struct/union/enum definition inside a declaration that also declares objects."""
    spec = [t for t in it.specifiers if t.text not in _SPECIFIERS_TO_DROP]
    spec = [t for t in spec if t.text not in ATTRIBUTE_WORDS and t.text not in ATTRIBUTE_CALLS]
    return render(spec)
