"""Where things are in a C source text: function extents, data and macro definitions.

Kernel code wraps declarations in attribute macros (`__init`, `__always_inline`, `__releases(x)`)
that tree-sitter-c cannot know. Before parsing they are blanked with spaces of the same length,
so every byte offset and line number of the parsed text is the one of the real file.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Literal

import tree_sitter_c
from tree_sitter import Language, Node, Parser


def _words(text: str) -> frozenset[str]:
    """A set of names written as a block of text, which reads better than a list of strings."""
    return frozenset(text.split())


# Attribute-like kernel macros without arguments (include/linux/compiler*.h, init.h, linkage.h).
_ATTRIBUTES = _words(
    """
    __init __exit __initdata __exitdata __initconst __ref __refdata __meminit __meminitdata
    __init_memblock __init_or_module __net_init __net_exit __devinit __devexit __cpuinit
    notrace noinline __always_inline __noinline __must_check asmlinkage __visible __cold __hot
    __weak __sched __kprobes nokprobe_inline __noreturn __maybe_unused __used __always_unused
    __latent_entropy noinstr __flatten __pure __malloc __read_mostly __ro_after_init
    __attribute_const__ __no_sanitize_address __no_kcsan __naked __irq_entry __softirq_entry
    __nocfi __cficanonical __randomize_layout __packed __deprecated __exception_irq_entry
    __user __iomem __rcu __percpu __force __bitwise __nocast __safe __kernel __lockfunc
    __cacheline_aligned __cacheline_aligned_in_smp ____cacheline_aligned
    ____cacheline_aligned_in_smp __page_aligned_data __page_aligned_bss __initdata_or_meminfo
    __noinstr_section __fix_address __no_stack_protector __no_profile __nostackprotector
    __kprobes_text __lsm_ro_after_init __weak_alias __gnu_inline __inline __inline__
    __always_inline__ __printf_like __init_refok __ksym __bpf_kfunc __noclone
    noinline_for_stack __sysfb_init __head __ro_after_init_data __task_pid_nr_ns
    __trace_event_flags
    """
)
# Attribute-like macros with an argument list, blanked together with their parentheses.
_ARG_ATTRIBUTES = _words(
    """
    __printf __scanf __acquires __releases __must_hold __section __aligned __alloc_size
    __attribute__ __attribute __cond_lock __diag_ignore __nonstring __counted_by
    __no_sanitize_or_inline __assume_aligned __realloc_size __nonnull __designated_init
    __malloc_like ____cacheline_aligned_in __guarded_by __pt_guarded_by __attribute_used__
    """
)
# Sparse address-space and type annotations (include/linux/compiler_types.h): blanked, but they
# qualify types, not the function, so they are not reported as its attributes.
_SPARSE = frozenset(
    {"__user", "__iomem", "__rcu", "__percpu", "__force", "__bitwise", "__nocast", "__safe"}
    | {"__kernel"}
)
# Attributes that put a function in `.init.text` / `.exit.text` (include/linux/init.h).
INIT_ATTRIBUTES = frozenset(
    {"__init", "__exit", "__meminit", "__init_memblock", "__net_init", "__net_exit", "__head"}
)
# Section attributes of include/linux/init.h and friends: `__meminitdata`, `__net_exit`, ...
_INIT_LIKE = re.compile(r"^__(mem|cpu|dev|net_|acpi_)?(init|exit)(data|const|rodata|_memblock)?$")
_WORD = re.compile(r"\b[A-Za-z_]\w*\b")
# The words `_blank` may blank all start with one of these two letters (`_INIT_LIKE` with `__`);
# scanning only such words, not every word, halves the time `_blank` takes on a large file.
_BLANK_CANDIDATE = re.compile(
    r"(?<!\w)(?:"
    + "|".join(sorted({w[:2] for w in _ATTRIBUTES | _ARG_ATTRIBUTES} | {"__"}))
    + r")\w*"
)
_SYSCALL = re.compile(r"^(COMPAT_)?SYSCALL_DEFINE([0-6])\(\s*(\w+)\s*(,|\))", re.MULTILINE)
_REGISTRATIONS = _words(
    """
    __setup early_param core_param module_init module_exit pure_initcall core_initcall
    core_initcall_sync postcore_initcall postcore_initcall_sync arch_initcall
    arch_initcall_sync subsys_initcall subsys_initcall_sync fs_initcall fs_initcall_sync
    rootfs_initcall device_initcall device_initcall_sync late_initcall late_initcall_sync
    console_initcall security_initcall early_initcall __initcall EXPORT_SYMBOL
    EXPORT_SYMBOL_GPL EXPORT_SYMBOL_NS EXPORT_SYMBOL_NS_GPL NOKPROBE_SYMBOL
    ALLOW_ERROR_INJECTION
    """
)

DataKind = Literal["struct", "union", "enum", "typedef", "variable"]


@dataclass(frozen=True, slots=True)
class FunctionExtent:
    """One function definition. Lines are 1-based and inclusive.

    `start_line` includes attribute lines above the declaration; `binary_names` lists the names
    the compiled function may have, most specific first. For `SYSCALL_DEFINEn(x, ...)` the C body
    is `__do_sys_x`, inlined into `__se_sys_x`, which is inlined into each arch entry
    (`__x64_sys_x` and `__ia32_sys_x` on x86-64, `__arm64_sys_x` on arm64); a patch must replace
    every entry that exists in the binary.
    """

    name: str
    start_line: int
    end_line: int
    name_line: int
    body_line: int  # the line of the opening brace
    is_static: bool
    is_inline: bool
    attributes: tuple[str, ...]  # kernel attribute macros and `__attribute__` names, in order
    macro: str | None  # e.g. "SYSCALL_DEFINE3" when a macro defines the function
    binary_names: tuple[str, ...]
    static_locals: tuple[str, ...]
    signature: tuple[str, ...]  # code tokens from the start of the definition to the brace

    @property
    def is_init(self) -> bool:
        """True when the function goes to `.init.text`/`.exit.text` and is freed after boot."""
        return any(a in INIT_ATTRIBUTES for a in self.attributes)


@dataclass(frozen=True, slots=True)
class DataDefinition:
    """A top-level struct/union/enum/typedef or global variable definition."""

    name: str
    kind: DataKind
    start_line: int
    end_line: int
    is_static: bool


@dataclass(frozen=True, slots=True)
class MacroDefinition:
    """A `#define`, with the lines its continuation backslashes span."""

    name: str
    start_line: int
    end_line: int
    params: tuple[str, ...] | None  # None for an object-like macro


@dataclass(frozen=True, slots=True)
class Registration:
    """A macro that registers or exports a function: `__setup("x=", fn)`, `module_init(fn)`."""

    macro: str
    function: str
    line: int


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Everything `parse_source` found in one C text."""

    functions: tuple[FunctionExtent, ...]
    data: tuple[DataDefinition, ...]
    macros: tuple[MacroDefinition, ...]
    registrations: tuple[Registration, ...]

    def find_function(self, line: int) -> FunctionExtent | None:
        """The function whose extent contains `line`, or None."""
        for f in self.functions:
            if f.start_line <= line <= f.end_line:
                return f
        return None

    def iter_functions(self, name: str) -> Iterator[FunctionExtent]:
        """Every definition of `name` (several under different `#ifdef` branches)."""
        return (f for f in self.functions if f.name == name)


_Definitions = tuple[list[FunctionExtent], list[DataDefinition], list[MacroDefinition]]


@dataclass(slots=True)
class SourceText:
    """A C text prepared for parsing: blanked, split in lines and in top-level chunks.

    Kernel style closes every top-level block with a `}` in column 0 (coding-style.rst,
    section 3), which makes a good chunk boundary: each chunk is parsed on its own, so one
    unknown macro (`for_each_cpu(i) x;` lacks a `;` to tree-sitter) cannot make a function
    swallow the rest of the file, and a caller can parse only the chunks it needs.
    """

    text: str
    blanked: str  # `text` with attribute macros blanked, of the same length and lines
    lines: list[str]
    blank: list[str]  # `blanked` split in lines
    syscall_lines: dict[int, str]  # 1-based line of a `SYSCALL_DEFINEn` name -> the macro
    chunks: list[tuple[int, int]]  # 0-based first and last line of each chunk
    chunk_of: list[int]  # the chunk of each 0-based line
    # The definitions found in each chunk parsed so far, by chunk index.
    parsed: dict[int, _Definitions] = field(default_factory=dict)
    _line_starts: list[int] = field(default_factory=list)

    def find_chunks(self, word: str, *, blanked: bool) -> list[int]:
        """The chunks whose text (or blanked text) contains `word`, in order."""
        if not self._line_starts:
            self._line_starts = [0, *accumulate(len(x) + 1 for x in self.lines)]
        found: list[int] = []
        text = self.blanked if blanked else self.text
        at = text.find(word)
        while at >= 0:
            c = self.chunk_of[bisect_right(self._line_starts, at) - 1]
            if not found or found[-1] != c:
                found.append(c)
            # Go on after this chunk: one hit is enough to parse it.
            at = text.find(word, self._line_starts[self.chunks[c][1] + 1])
        return found


@dataclass(frozen=True, slots=True)
class CPrototype:
    """A function definition's prototype, as written (attribute macros and storage class out)."""

    name: str
    return_type: str  # "struct task_struct *", "int", "void"
    params: tuple[tuple[str, str | None], ...]  # (declaration text, parameter name)
    variadic: bool

    def render(self, name: str, params: Sequence[str] | None = None) -> str:
        """`return_type name(params)`, the parameters as written unless given."""
        args = list(self.params_text() if params is None else params)
        if self.variadic and params is None:
            args.append("...")
        sep = "" if self.return_type.endswith("*") else " "
        return f"{self.return_type}{sep}{name}({', '.join(args) or 'void'})"

    def params_text(self) -> list[str]:
        return [text for text, _name in self.params]


class SourceParser:
    """A tree-sitter-c parser; create one and reuse it for many files."""

    def __init__(self) -> None:
        self._parser = Parser(Language(tree_sitter_c.language()))

    def parse(self, text: str) -> SourceMap:
        """List the definitions in a C source text."""
        src = self.prepare(text)
        smap = self.parse_chunks(src, range(len(src.chunks)))
        return SourceMap(smap.functions, smap.data, smap.macros, tuple(_registrations(text)))

    def prototypes(self, text: str) -> dict[str, CPrototype]:
        """The prototype of every function defined in `text` (the first definition of a name)."""
        blanked, _macros = _blank(text)
        raw = blanked.encode("utf-8", errors="surrogateescape")
        out: dict[str, CPrototype] = {}

        def words(node: Node) -> str:
            return " ".join(raw[node.start_byte : node.end_byte].decode(errors="replace").split())

        for node in self._parser.parse(raw).root_node.children:
            if node.type != "function_definition":
                continue
            declarator = node.child_by_field_name("declarator")
            name_node = _declarator_name(declarator)
            if name_node is None or words(name_node) in out:
                continue
            head = [
                words(c)
                for c in node.children
                if c.end_byte <= (declarator.start_byte if declarator else 0)
                and c.type
                not in ("storage_class_specifier", "attribute_specifier", "ms_declspec_modifier")
                and words(c) not in ("inline", "__inline", "__inline__")
            ]
            stars = ""
            d = declarator
            while d is not None and d.type != "function_declarator":
                if d.type == "pointer_declarator":
                    stars += "*"
                d = d.child_by_field_name("declarator")
            if d is None:
                continue
            params: list[tuple[str, str | None]] = []
            variadic = False
            plist = d.child_by_field_name("parameters")
            for p in plist.named_children if plist is not None else ():
                if p.type == "variadic_parameter":
                    variadic = True
                elif p.type == "parameter_declaration":
                    pname = _declarator_name(p.child_by_field_name("declarator"))
                    text_p = words(p)
                    if text_p != "void":
                        params.append((text_p, None if pname is None else words(pname)))
            ret = " ".join(h for h in head if h)
            out[words(name_node)] = CPrototype(
                words(name_node),
                f"{ret} {stars}".strip() if stars else ret,
                tuple(params),
                variadic,
            )
        return out

    def prepare(self, text: str) -> SourceText:
        """Blank a text and split it in chunks, without parsing anything yet."""
        blanked, macros_at = _blank(text)
        blank = blanked.split("\n")
        last = len(blank) - 1
        ends = [i for i, line in enumerate(blank) if line.startswith("}")]
        if not ends or ends[-1] != last:
            ends.append(last)
        chunks: list[tuple[int, int]] = []
        chunk_of: list[int] = []
        start = 0
        for i in ends:
            chunk_of.extend([len(chunks)] * (i + 1 - start))
            chunks.append((start, i))
            start = i + 1
        syscall_lines = {text.count("\n", 0, k) + 1: v for k, v in macros_at.items()}
        return SourceText(text, blanked, text.split("\n"), blank, syscall_lines, chunks, chunk_of)

    def parse_chunks(self, src: SourceText, chunks: Iterable[int]) -> SourceMap:
        """The definitions in some chunks of a prepared text (no registrations).

        The result is the part of `parse(src.text)` that lies in those chunks, in the same
        order; parsed chunks are kept on `src`, so asking again costs nothing.
        """
        functions: list[FunctionExtent] = []
        data: list[DataDefinition] = []
        macros: list[MacroDefinition] = []
        walker: _Walker | None = None
        for c in sorted(set(chunks)):
            found = src.parsed.get(c)
            if found is None:
                walker = walker or _Walker(src)
                first, last = src.chunks[c]
                walker.src = "\n".join(src.blank[first : last + 1]).encode(
                    "utf-8", errors="surrogateescape"
                )
                walker.row = first
                walker.functions, walker.data_defs, walker.macros = [], [], []
                walker.visit(self._parser.parse(walker.src).root_node)
                found = src.parsed[c] = (walker.functions, walker.data_defs, walker.macros)
            functions.extend(found[0])
            data.extend(found[1])
            macros.extend(found[2])
        functions.sort(key=lambda f: f.start_line)
        return SourceMap(tuple(functions), tuple(data), tuple(macros), ())


def parse_source(text: str) -> SourceMap:
    """List the definitions in a C source text (a convenience for one-off use)."""
    return SourceParser().parse(text)


# --- code tokens ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<comment>/\*.*?\*/|//[^\n]*)
    |(?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
    |(?P<splice>\\\n)
    |(?P<space>\s+)
    |(?P<token>[A-Za-z_]\w*|\d[\w.]*|->|\+\+|--|<<=?|>>=?|[<>=!+\-*/%&|^]=|&&|\|\||\#\#|\.\.\.|\S)
    """,
    re.VERBOSE | re.DOTALL,
)


def code_tokens_by_line(text: str) -> list[tuple[str, int]]:
    """The C tokens of a text, as `code_tokens` finds them, each with its 1-based line."""
    out: list[tuple[str, int]] = []
    line, pos = 1, 0
    for m in _TOKEN.finditer(text):
        if m.lastgroup in ("token", "string"):
            line += text.count("\n", pos, m.start())
            pos = m.start()
            out.append((m.group(), line))
    return out


def code_tokens(text: str) -> tuple[str, ...]:
    """The C tokens of a text, without comments, white space and line splices."""
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind in ("token", "string"):
            out.append(m.group())
        elif kind == "comment" and m.group().startswith("/*"):
            # A comment is white space, but it still separates tokens, which `out` already does.
            continue
    return tuple(out)


# --- preprocessing -------------------------------------------------------------------------


def _blank_span(chars: list[str], start: int, end: int) -> None:
    for i in range(start, end):
        if chars[i] != "\n":
            chars[i] = " "


def _matching_paren(text: str, open_at: int) -> int:
    """The index after the parenthesis matching the one at `open_at` (or len(text))."""
    depth = 0
    for i in range(open_at, len(text)):
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def _blank(text: str) -> tuple[str, dict[int, str]]:
    """Blank attribute macros and rewrite `SYSCALL_DEFINEn(name, ...)` as `long name(...)`.

    Returns the new text (same length and lines) and, by byte-free character offset of each
    rewritten syscall name, the macro that defined it.
    """
    spans = _attribute_spans(text)
    syscall_matches = list(_SYSCALL.finditer(text))
    if not syscall_matches:
        # Most files: copy the text between the spans and blank each span in one go.
        parts: list[str] = []
        done = 0
        for start, end in _union(spans):
            parts.append(text[done:start])
            parts.append(_NOT_NEWLINE.sub(" ", text[start:end]))
            done = end
        parts.append(text[done:])
        return "".join(parts), {}
    chars = list(text)
    syscalls: dict[int, str] = {}
    for m in syscall_matches:
        macro = f"{m.group(1) or ''}SYSCALL_DEFINE{m.group(2)}"
        name_at = m.start(3)
        close = _matching_paren(text, m.start() + len(macro))
        # `SYSCALL_DEFINE3(open, int, fd, ...)` -> `long            open(             )`.
        _blank_span(chars, m.start(), name_at)
        chars[m.start() : m.start() + 4] = list("long")
        _blank_span(chars, m.end(3), close - 1)
        chars[m.end(3)] = "("
        chars[close - 1] = ")"
        syscalls[name_at] = macro
    # Attributes are blanked after the rewrite, over it where they overlap.
    for start, end in spans:
        _blank_span(chars, start, end)
    return "".join(chars), syscalls


_NOT_NEWLINE = re.compile(r"[^\n]")


def _attribute_spans(text: str) -> list[tuple[int, int]]:
    """The spans of attribute macros, with the argument list of those that take one."""
    spans: list[tuple[int, int]] = []
    for m in _BLANK_CANDIDATE.finditer(text):
        word = m.group()
        if word in _ATTRIBUTES or _INIT_LIKE.match(word):
            spans.append((m.start(), m.end()))
        elif word in _ARG_ATTRIBUTES:
            j = m.end()
            while j < len(text) and text[j] in " \t":
                j += 1
            if j < len(text) and text[j] == "(":
                spans.append((m.start(), _matching_paren(text, j)))
    return spans


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans sorted by start, overlapping ones merged (an argument list holds other words)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _registrations(text: str) -> Iterator[Registration]:
    for m in re.finditer(r"^\s*(\w+)\s*\(([^;]*?)\)\s*;", text, re.MULTILINE):
        macro = m.group(1)
        if macro not in _REGISTRATIONS:
            continue
        args = [a.strip() for a in m.group(2).split(",")]
        fn = args[-1] if macro in ("__setup", "early_param", "core_param") else args[0]
        if macro == "core_param" and len(args) >= 2:
            fn = args[1]
        if re.fullmatch(r"[A-Za-z_]\w*", fn):
            yield Registration(macro, fn, text.count("\n", 0, m.start(1)) + 1)


# --- tree walk -----------------------------------------------------------------------------

_CONTAINERS = frozenset(
    {
        "translation_unit",
        "preproc_if",
        "preproc_ifdef",
        "preproc_else",
        "preproc_elif",
        "preproc_elifdef",
        "linkage_specification",
        "declaration_list",
        "ERROR",
    }
)
_DECLARATORS = frozenset(
    {
        "function_declarator",
        "pointer_declarator",
        "array_declarator",
        "init_declarator",
        "parenthesized_declarator",
        "attributed_declarator",
    }
)


def _declarator_name(node: Node | None) -> Node | None:
    """The identifier a declarator declares, looking through pointers, arrays and parentheses."""
    while node is not None:
        if node.type in ("identifier", "field_identifier", "type_identifier"):
            return node
        if node.type not in _DECLARATORS:
            return None
        inner = node.child_by_field_name("declarator")
        if inner is None:
            inner = next((c for c in node.named_children if c.type != "attribute_specifier"), None)
        node = inner
    return None


class _Walker:
    def __init__(self, text: SourceText) -> None:
        self.src = b""  # the chunk being walked
        self.row = 0  # the file row of the chunk's first row
        self.syscall_lines = text.syscall_lines
        self.lines = text.lines
        self.blank = text.blank
        self.functions: list[FunctionExtent] = []
        self.data_defs: list[DataDefinition] = []
        self.macros: list[MacroDefinition] = []

    def line(self, node: Node) -> int:
        """The 1-based file line where `node` starts."""
        return node.start_point.row + self.row + 1

    def end_line(self, node: Node) -> int:
        """The 1-based file line where `node` ends; a node ending with its newline ends before."""
        end = node.end_point
        row = end.row if end.column == 0 and end.row > node.start_point.row else end.row + 1
        return row + self.row

    def text(self, node: Node) -> str:
        return self.src[node.start_byte : node.end_byte].decode("utf-8", "surrogateescape")

    def visit(self, node: Node) -> None:
        for child in node.children:
            t = child.type
            if t == "function_definition":
                self.function(child)
            elif t in _CONTAINERS:
                self.visit(child)
            elif t in ("preproc_def", "preproc_function_def"):
                self.macro(child)
            elif t == "declaration":
                self.declaration(child)
            elif t == "type_definition":
                self.typedef(child)
            elif t in ("struct_specifier", "union_specifier", "enum_specifier"):
                self.tagged(child, self.line(child), self.end_line(child), False)

    # Functions ------------------------------------------------------------------------------

    def function(self, node: Node) -> None:
        name_node = _declarator_name(node.child_by_field_name("declarator"))
        body = node.child_by_field_name("body")
        if name_node is None or body is None:
            return
        name = self.text(name_node)
        start = self.line(node)
        # Attribute-only lines above (blanked to white space) belong to the definition.
        while start > 1 and self.lines[start - 2].strip() and not self.blank[start - 2].strip():
            start -= 1
        brace_row = body.start_point.row + self.row
        prefix_lines = self.lines[start - 1 : brace_row]
        prefix = "\n".join([*prefix_lines, self.lines[brace_row][: body.start_point.column]])
        attributes = self.attributes(prefix)
        words = set(_WORD.findall(prefix))
        macro = self.syscall_lines.get(self.line(name_node))
        self.functions.append(
            FunctionExtent(
                name=name,
                start_line=start,
                end_line=self.end_line(node),
                name_line=self.line(name_node),
                body_line=self.line(body),
                is_static="static" in words,
                is_inline=bool(words & {"inline", "__inline", "__inline__", "__always_inline"}),
                attributes=attributes,
                macro=macro,
                binary_names=_binary_names(name, macro),
                static_locals=tuple(self.static_locals(body)),
                signature=code_tokens(prefix),
            )
        )

    @staticmethod
    def attributes(prefix: str) -> tuple[str, ...]:
        found: list[str] = []
        for m in _WORD.finditer(prefix):
            w = m.group()
            if w in _SPARSE:
                continue
            if (w in _ATTRIBUTES or _INIT_LIKE.match(w)) and w not in found:
                found.append(w)
        for m in re.finditer(r"__attribute__\s*\(\(\s*(\w+)", prefix):
            if m.group(1) not in found:
                found.append(m.group(1))
        return tuple(found)

    def static_locals(self, body: Node) -> Iterator[str]:
        stack = [body]
        while stack:
            node = stack.pop()
            for child in reversed(node.children):
                if child.type == "declaration":
                    if any(
                        c.type == "storage_class_specifier" and self.text(c) == "static"
                        for c in child.children
                    ):
                        yield from self.declared_names(child)
                elif child.named_child_count:
                    stack.append(child)

    def declared_names(self, decl: Node) -> Iterator[str]:
        for n in self.declared(decl):
            yield self.text(n)

    def declared(self, decl: Node) -> Iterator[Node]:
        """The names a declaration defines, including `DEFINE_MUTEX(name)`-style macros."""
        type_node = decl.child_by_field_name("type")
        if type_node is not None and type_node.type == "macro_type_specifier":
            # `static DEFINE_RATELIMIT_STATE(rs, 1, 1);` parses as a macro type around `rs`.
            inner = type_node.child_by_field_name("type")
            name = (
                _declarator_name(inner.named_children[0])
                if inner and inner.named_children
                else None
            )
            if name is not None:
                yield name
        for d in decl.children_by_field_name("declarator"):
            n = _declarator_name(d)
            if n is not None and not n.is_missing and n.end_byte > n.start_byte:
                yield n

    # Data and macros ------------------------------------------------------------------------

    def declaration(self, node: Node) -> None:
        words = [c for c in node.children if c.type == "storage_class_specifier"]
        storage = {self.text(c) for c in words}
        is_static = "static" in storage
        type_node = node.child_by_field_name("type")
        if type_node is not None and type_node.type in (
            "struct_specifier",
            "union_specifier",
            "enum_specifier",
        ):
            self.tagged(type_node, self.line(node), self.end_line(node), is_static)
        if "extern" in storage:
            return
        for n in self.declared(node):
            # A prototype declares a function; it defines no data.
            if n.parent is not None and n.parent.type == "function_declarator":
                continue
            line, end = self.line(node), self.end_line(node)
            self.data_defs.append(DataDefinition(self.text(n), "variable", line, end, is_static))

    def tagged(self, node: Node, start: int, end: int, is_static: bool) -> None:
        name = node.child_by_field_name("name")
        if name is None or node.child_by_field_name("body") is None:
            return
        kind: DataKind = node.type.removesuffix("_specifier")  # type: ignore[assignment]
        self.data_defs.append(DataDefinition(self.text(name), kind, start, end, is_static))

    def typedef(self, node: Node) -> None:
        type_node = node.child_by_field_name("type")
        if type_node is not None and type_node.type in (
            "struct_specifier",
            "union_specifier",
            "enum_specifier",
        ):
            self.tagged(type_node, self.line(node), self.end_line(node), False)
        for d in node.children_by_field_name("declarator"):
            n = _declarator_name(d)
            if n is not None:
                line, end = self.line(node), self.end_line(node)
                self.data_defs.append(DataDefinition(self.text(n), "typedef", line, end, False))

    def macro(self, node: Node) -> None:
        name = node.child_by_field_name("name")
        if name is None:
            return
        params_node = node.child_by_field_name("parameters")
        params = (
            tuple(self.text(c) for c in params_node.named_children)
            if params_node is not None
            else None
        )
        line, end = self.line(node), self.end_line(node)
        self.macros.append(MacroDefinition(self.text(name), line, end, params))


def _binary_names(name: str, macro: str | None) -> tuple[str, ...]:
    """The symbol names a function may have in the binary, most specific first.

    `SYSCALL_DEFINEn` (include/linux/syscalls.h, arch/x86/include/asm/syscall_wrapper.h,
    arch/arm64/include/asm/syscall_wrapper.h) defines `__do_sys_<name>` (the body), inlined into
    `__se_sys_<name>`, inlined into the arch entries. `SYSCALL_DEFINE0` has no `__se_` step.
    """
    if macro is None:
        return (name,)
    if macro.startswith("COMPAT_"):
        return (
            f"__do_compat_sys_{name}",
            f"__se_compat_sys_{name}",
            f"__ia32_compat_sys_{name}",
            f"__x64_compat_sys_{name}",
            f"__arm64_compat_sys_{name}",
        )
    if macro == "SYSCALL_DEFINE0":
        return (
            f"__do_sys_{name}",
            f"__x64_sys_{name}",
            f"__ia32_sys_{name}",
            f"__arm64_sys_{name}",
        )
    return (
        f"__do_sys_{name}",
        f"__se_sys_{name}",
        f"__x64_sys_{name}",
        f"__ia32_sys_{name}",
        f"__arm64_sys_{name}",
    )
