"""The top-level items of a C text: directives, function definitions, declarations.

A livepatch module is written from pieces of a kernel source file, so generation needs every
top-level item in order with what it defines and what it names: the preprocessor lines, the
function definitions, and the declarations (types, variables, prototypes, and kernel macros
such as `static DEFINE_MUTEX(lock);` that define variables). The split is lexical, as kernel
style makes it reliable: a definition ends at its closing brace at depth 0, a declaration at a
`;` at depth 0, a directive at the end of its (continued) line. Unknown macros therefore cannot
derail it the way they derail a grammar.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

ItemKind = Literal["directive", "function", "declaration"]
DeclKind = Literal["type", "variable", "prototype", "macro-call", "asm", "other"]
TokenKind = Literal["ident", "number", "string", "punct"]

# Comments and string or character literals, as C reads them (a backslash-newline continues a
# `//` comment); `patch/unsupported.py` skips them with the same patterns.
C_COMMENT = r"/\*(?:[^*]|\*(?!/))*\*/|//(?:[^\n\\]|\\.)*"
C_LITERAL = r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'"

# The lexemes but white space within a line (`_lex` skips it); each run of newlines and blank
# lines is one lexeme, a backslash-newline a "space" one.
_LEX = re.compile(
    rf"""
    (?P<comment>{C_COMMENT})
    |(?P<string>{C_LITERAL})
    |(?P<newline>\n(?:[ \t\r\f\v]*\n)*)
    |(?P<space>\\\n)
    |(?P<ident>[A-Za-z_]\w*)
    |(?P<number>\.?\d(?:[\w.]|[eEpP][+-])*)
    |(?P<punct>->|\+\+|--|<<=?|>>=?|[<>=!+\-*/%&|^]=|&&|\|\||\#\#|\.\.\.|\S)
    """,
    re.VERBOSE | re.DOTALL,
)


def _words(text: str) -> frozenset[str]:
    """A set of names written as a block of text."""
    return frozenset(text.split())


C_KEYWORDS = _words(
    """
    auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while _Bool _Complex _Alignas _Alignof _Atomic _Generic
    _Noreturn _Static_assert _Thread_local asm __asm __asm__ typeof __typeof __typeof__
    __inline __inline__ __volatile__ __volatile __restrict __restrict__ __const __const__
    __signed __signed__ __attribute __attribute__ __extension__ __builtin_offsetof
    __builtin_types_compatible_p __builtin_va_arg __label__ __auto_type __alignof__
    __alignof __int128 _Float16 __real__ __imag__ __builtin_choose_expr
    """
)
_QUALIFIERS = _words("const volatile restrict __restrict __restrict__ __const __volatile__ _Atomic")
# Attribute-like kernel macros without arguments (include/linux/compiler*.h, init.h, cache.h,
# percpu-defs.h). Their placement and section effects belong to a definition, not to a
# declaration of something the running kernel already holds.
ATTRIBUTE_WORDS = _words(
    """
    __init __exit __initdata __exitdata __initconst __ref __refdata __meminit __meminitdata
    __init_memblock __init_or_module __net_init __net_exit __cpuinit notrace noinline
    __always_inline __noinline __must_check asmlinkage __visible __cold __hot __weak __sched
    __kprobes nokprobe_inline __noreturn __maybe_unused __used __always_unused
    __latent_entropy noinstr __flatten __pure __malloc __read_mostly __ro_after_init
    __attribute_const__ __no_sanitize_address __no_kcsan __naked __irq_entry __softirq_entry
    __nocfi __cficanonical __randomize_layout __packed __deprecated __exception_irq_entry
    __cacheline_aligned __cacheline_aligned_in_smp ____cacheline_aligned
    ____cacheline_aligned_in_smp __page_aligned_data __page_aligned_bss __noinstr_section
    __no_stack_protector __no_profile __nostackprotector __lsm_ro_after_init __gnu_inline
    __bpf_kfunc __noclone noinline_for_stack __head __user __iomem __rcu __percpu __force
    __bitwise __nocast __safe __kernel __ksym __initdata_or_meminfo __nosavedata
    __section_aligned __aligned_largest __mustcheck __no_kasan_or_inline __no_sanitize_or_inline
    """
)
# Attribute-like macros that take an argument list.
ATTRIBUTE_CALLS = _words(
    """
    __attribute__ __attribute __printf __scanf __acquires __releases __must_hold __section
    __aligned __alloc_size __cond_lock __diag_ignore __nonstring __counted_by
    __assume_aligned __realloc_size __nonnull __designated_init __malloc_like __guarded_by
    __pt_guarded_by __attribute_used__ __alias __copy __fix_address __weak_alias __cleanup
    __diag_push __diag_pop __no_randomize_layout __ro_after_init_section
    """
)
_DIRECTIVE = re.compile(r"#\s*(\w+)")
_DEFINE = re.compile(r"#\s*define\s+(\w+)(\()?")


@dataclass(frozen=True, slots=True)
class Token:
    """One C token with its offsets in the text."""

    text: str
    kind: TokenKind
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Declarator:
    """One declarator of a declaration: `*names[]` in `static const char *names[] = {...};`."""

    name: str
    tokens: tuple[Token, ...]  # the declarator without its initializer
    initializer: tuple[Token, ...]  # after `=`, empty when there is none
    is_function: bool  # declares a function (a prototype), not a variable


@dataclass(frozen=True, slots=True)
class Item:
    """One top-level item of a C text; lines are 1-based, `start`/`end` offsets in the text."""

    kind: ItemKind
    start: int  # includes comments directly above the code
    code_start: int
    end: int
    line: int  # the line of `code_start`
    end_line: int
    tokens: tuple[Token, ...]  # code tokens (a directive's own tokens for a directive)
    # Directives.
    directive: str | None = None  # "include", "define", "if", ...
    # Functions and declarations.
    name: str | None = None  # the function, macro, or called macro
    macro: str | None = None  # a function defined through a macro: "SYSCALL_DEFINE3"
    body: tuple[int, int] | None = None  # token index range of a function body, braces included
    decl_kind: DeclKind | None = None
    declarators: tuple[Declarator, ...] = ()
    specifiers: tuple[Token, ...] = ()  # tokens before the first declarator
    types: tuple[str, ...] = ()  # struct/union/enum tags, typedef names and enumerators defined
    args: tuple[tuple[Token, ...], ...] = ()  # a macro call's arguments

    @property
    def is_static(self) -> bool:
        return any(t.text == "static" for t in self._head())

    @property
    def is_inline(self) -> bool:
        return any(
            t.text in ("inline", "__inline", "__inline__", "__always_inline") for t in self._head()
        )

    def _head(self) -> tuple[Token, ...]:
        if self.kind == "function" and self.body is not None:
            return self.tokens[: self.body[0]]
        return self.specifiers or self.tokens

    def body_tokens(self) -> tuple[Token, ...]:
        """The tokens of a function's body, braces included."""
        if self.body is None:
            return ()
        return self.tokens[self.body[0] : self.body[1]]

    def signature_tokens(self) -> tuple[Token, ...]:
        """A function's tokens before its body."""
        if self.body is None:
            return self.tokens
        return self.tokens[: self.body[0]]

    @property
    def defined_names(self) -> tuple[str, ...]:
        """Names of functions, variables and macros this item defines or declares."""
        if self.kind == "directive":
            return (self.name,) if self.directive == "define" and self.name else ()
        if self.kind == "function":
            return (self.name,) if self.name else ()
        return tuple(d.name for d in self.declarators)


def tokenize(text: str, start: int = 0, end: int | None = None) -> list[Token]:
    """C tokens of `text[start:end]`, without comments, white space and directives."""
    out: list[Token] = []
    for kind, value, s, e in _lex(text, start, len(text) if end is None else end):
        if kind in ("ident", "number", "string", "punct"):
            out.append(Token(value, kind, s, e))  # type: ignore[arg-type]
    return out


def _lex(text: str, pos: int, end: int) -> Iterator[tuple[str, str, int, int]]:
    """(kind, text, start, end) of every lexeme but white space within a line; a directive is
    one "directive" lexeme, a run of newlines (blank lines included) one "newline" lexeme."""
    at_line_start = True
    matches = _LEX.finditer(text, pos, end)
    while True:
        for m in matches:
            kind = m.lastgroup or ""
            if kind == "punct":
                if at_line_start and m.group() == "#":
                    start = m.start()
                    stop = _directive_end(text, start, end)
                    yield "directive", text[start:stop], start, stop
                    at_line_start = False
                    matches = _LEX.finditer(text, stop, end)
                    break
                at_line_start = False
            elif kind == "newline":
                at_line_start = True
            elif kind != "comment" and kind != "space":
                at_line_start = False
            yield kind, m.group(), m.start(), m.end()
        else:
            return


def _directive_end(text: str, pos: int, end: int) -> int:
    """The offset of the newline that ends the directive starting at `pos` (or `end`)."""
    for m in _LEX.finditer(text, pos, end):
        if m.lastgroup == "newline":
            return m.start()
    return end


def split_items(text: str) -> list[Item]:
    """Every top-level item of a C text, in order."""
    items: list[Item] = []
    pending_comment: int | None = None  # offset of the first comment since the last item
    cur: list[Token] = []
    depth = 0
    function_brace = False  # the current item's depth-0 brace opened a function body
    body_start = 0
    seen_newline = False  # a newline since the last token of the current item
    lexemes = list(_lex(text, 0, len(text)))

    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(offset: int) -> int:
        return bisect_left(newlines, offset) + 1

    def finish(end: int, body: tuple[int, int] | None) -> None:
        nonlocal cur, pending_comment, depth, function_brace
        start = pending_comment if pending_comment is not None else cur[0].start
        items.append(_make_item(text, tuple(cur), start, end, line_of, body))
        cur = []
        pending_comment = None
        depth = 0
        function_brace = False

    for kind, value, s, e in lexemes:
        if kind == "directive":
            if cur:
                continue  # a directive inside an item stays part of its text
            start = pending_comment if pending_comment is not None else s
            items.append(_directive(text, value, start, s, e, line_of))
            pending_comment = None
            continue
        if kind == "comment":
            if not cur and pending_comment is None:
                pending_comment = s
            continue
        if kind == "newline":
            seen_newline = True
            blank = not cur and pending_comment is not None
            if blank and (value.count("\n") > 1 or _blank_line_before(text, s)):
                # A comment separated from the next code by a blank line stands alone.
                pending_comment = None
            continue
        if kind == "space":
            continue
        tok = Token(value, kind, s, e)  # type: ignore[arg-type]
        if cur and depth == 0 and seen_newline and _ends_macro_call(cur, tok):
            finish(cur[-1].end, None)
        seen_newline = False
        cur.append(tok)
        if value in ("(", "["):
            depth += 1
        elif value in (")", "]"):
            depth = max(depth - 1, 0)
        elif value == "{":
            if depth == 0 and not function_brace and _is_function_brace(cur):
                function_brace = True
                body_start = len(cur) - 1
            depth += 1
        elif value == "}":
            depth = max(depth - 1, 0)
            if depth == 0 and function_brace:
                finish(e, (body_start, len(cur)))
        elif value == ";" and depth == 0 and not function_brace:
            finish(e, None)
    if cur:
        finish(cur[-1].end, None)
    return items


def _blank_line_before(text: str, newline_at: int) -> bool:
    """True when the line ending at `newline_at` is empty (only white space)."""
    line_start = text.rfind("\n", 0, newline_at) + 1
    return not text[line_start:newline_at].strip()


def _ends_macro_call(cur: list[Token], nxt: Token) -> bool:
    """A top-level macro call without `;` (`EXPORT_SYMBOL(x)` on its own line) ends here."""
    if cur[-1].text != ")" or nxt.text in ("{", ";", "=", ",", "(", "__attribute__"):
        return False
    if nxt.kind == "ident" and nxt.text in ATTRIBUTE_CALLS | ATTRIBUTE_WORDS:
        return False
    toks = [t for t in cur if t.text != "static"]
    if len(toks) < 3 or toks[0].kind != "ident" or toks[1].text != "(":
        return False
    return matching(toks, 1) == len(toks) - 1


def matching(tokens: Sequence[Token], open_at: int) -> int:
    """The index of the bracket closing the one at `open_at` (or the last index)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    opening = tokens[open_at].text
    closing = pairs[opening]
    depth = 0
    for i in range(open_at, len(tokens)):
        t = tokens[i].text
        if t == opening:
            depth += 1
        elif t == closing:
            depth -= 1
            if depth == 0:
                return i
    return len(tokens) - 1


def _is_function_brace(cur: list[Token]) -> bool:
    """Whether the `{` just appended at depth 0 opens a function body."""
    before = cur[:-1]
    if not before:
        return False
    depth = 0
    for t in before:
        if t.text in ("(", "["):
            depth += 1
        elif t.text in (")", "]"):
            depth -= 1
        elif depth == 0 and t.text == "=":
            return False  # an initializer
    last = before[-1]
    if last.text in ("struct", "union", "enum"):
        return False
    if len(before) >= 2 and before[-2].text in ("struct", "union", "enum"):
        return False
    if last.text == ")":
        return True
    # `int f(void) __acquires(x) notrace {`: attribute words after the parameter list.
    i = len(before) - 1
    while i >= 0 and before[i].kind == "ident" and before[i].text in ATTRIBUTE_WORDS:
        i -= 1
    return i >= 0 and before[i].text == ")"


def _directive(
    text: str, value: str, start: int, code_start: int, end: int, line_of: object
) -> Item:
    m = _DIRECTIVE.match(value)
    directive = m.group(1) if m else ""
    name = None
    if directive == "define":
        d = _DEFINE.match(value)
        name = d.group(1) if d else None
    elif directive in ("undef", "ifdef", "ifndef"):
        parts = value.split()
        name = parts[1] if len(parts) > 1 and parts[0] == "#" + directive else None
        if name is None:
            words = re.findall(r"\w+", value)
            name = words[1] if len(words) > 1 else None
    tokens = tuple(tokenize(text, code_start + value.find(directive) + len(directive), end))
    assert callable(line_of)
    return Item(
        "directive",
        start,
        code_start,
        end,
        line_of(code_start),
        line_of(end),
        tokens,
        directive=directive,
        name=name,
    )


def _make_item(
    text: str,
    tokens: tuple[Token, ...],
    start: int,
    end: int,
    line_of: object,
    body: tuple[int, int] | None,
) -> Item:
    assert callable(line_of)
    line, end_line = line_of(tokens[0].start), line_of(end)
    if body is not None:
        name, macro = _function_name(tokens[: body[0]])
        return Item("function", start, tokens[0].start, end, line, end_line, tokens,
                    name=name, macro=macro, body=body)  # fmt: skip
    kind, name, declarators, specifiers, types, args = parse_declaration(tokens)
    return Item(
        "declaration",
        start,
        tokens[0].start,
        end,
        line,
        end_line,
        tokens,
        name=name,
        decl_kind=kind,
        declarators=declarators,
        specifiers=specifiers,
        types=types,
        args=args,
    )


def _groups(tokens: Sequence[Token]) -> list[tuple[int, int]]:
    """(open, close) indexes of the depth-0 parenthesis groups."""
    out = []
    i = 0
    while i < len(tokens):
        if tokens[i].text == "(":
            j = matching(tokens, i)
            out.append((i, j))
            i = j + 1
        elif tokens[i].text in ("[", "{"):
            i = matching(tokens, i) + 1
        else:
            i += 1
    return out


def is_macro_name(name: str) -> bool:
    """Kernel style spells macros that define things in capitals: `SYSCALL_DEFINE3`, `LIST_HEAD`."""
    return name.upper() == name and any(c.isalpha() for c in name)


def _function_name(sig: Sequence[Token]) -> tuple[str | None, str | None]:
    """The name a function definition defines, and the macro that defines it, if any."""
    for open_at, close_at in _groups(sig):
        if open_at == 0 or sig[open_at - 1].kind != "ident":
            continue
        ident = sig[open_at - 1].text
        if ident in ATTRIBUTE_CALLS or ident.startswith("__attribute"):
            continue
        if ident in C_KEYWORDS:
            continue
        if is_macro_name(ident):
            inner = sig[open_at + 1 : close_at]
            if inner and inner[0].kind == "ident":
                return inner[0].text, ident
            return ident, None
        return ident, None
    # `int (*f(void))(int)`: the name sits inside the first group.
    for open_at, close_at in _groups(sig):
        names = [t.text for t in sig[open_at + 1 : close_at] if t.kind == "ident"]
        if names:
            return names[-1], None
    return None, None


def strip_attributes(tokens: Sequence[Token]) -> list[Token]:
    """`tokens` without attribute words and attribute calls with their argument lists."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind == "ident" and t.text in ATTRIBUTE_WORDS:
            i += 1
            continue
        if (
            t.kind == "ident"
            and t.text in ATTRIBUTE_CALLS
            and i + 1 < len(tokens)
            and tokens[i + 1].text == "("
        ):
            i = matching(tokens, i + 1) + 1
            continue
        out.append(t)
        i += 1
    return out


def _split_top(tokens: Sequence[Token], sep: str) -> list[list[Token]]:
    """Split at `sep` tokens outside brackets."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for t in tokens:
        if t.text in ("(", "[", "{"):
            depth += 1
        elif t.text in (")", "]", "}"):
            depth -= 1
        if depth == 0 and t.text == sep:
            parts.append([])
        else:
            parts[-1].append(t)
    return parts


def parse_declaration(
    tokens: tuple[Token, ...],
) -> tuple[
    DeclKind,
    str | None,
    tuple[Declarator, ...],
    tuple[Token, ...],
    tuple[str, ...],
    tuple[tuple[Token, ...], ...],
]:
    """(kind, name, declarators, specifiers, defined types, macro arguments) of a declaration."""
    toks = list(tokens)
    if toks and toks[-1].text == ";":
        toks.pop()
    types = tuple(_defined_types(toks))
    if not toks:
        return "other", None, (), (), types, ()
    first = toks[0].text
    if first in ("asm", "__asm__", "__asm"):
        return "asm", None, (), (), types, ()
    if first in ("_Static_assert", "static_assert"):
        return "other", first, (), (), types, ()
    if first == "typedef":
        return "type", None, (), tuple(toks), types, ()
    plain = strip_attributes([t for t in toks if t.text != "static"])
    # `[static] MACRO(args);`: a kernel macro that defines or registers something.
    if (
        len(plain) >= 3
        and plain[0].kind == "ident"
        and plain[0].text not in C_KEYWORDS
        and plain[1].text == "("
        and matching(plain, 1) == len(plain) - 1
    ):
        args = tuple(tuple(a) for a in _split_top(plain[2:-1], ","))
        return "macro-call", plain[0].text, (), tuple(toks), types, args
    parts = _split_top(toks, ",")
    declarators: list[Declarator] = []
    specifiers: tuple[Token, ...] = ()
    for n, part in enumerate(parts):
        decl_part, init = _split_init(part)
        found = _declarator(decl_part, first_part=n == 0)
        if found is None:
            break
        spec_end, name, is_function = found
        if n == 0:
            specifiers = tuple(decl_part[:spec_end])
        declarators.append(Declarator(name, tuple(decl_part[spec_end:]), tuple(init), is_function))
    if not declarators:
        return ("type" if types else "other"), None, (), tuple(toks), types, ()
    if all(d.is_function for d in declarators):
        return "prototype", declarators[0].name, tuple(declarators), specifiers, types, ()
    return "variable", declarators[0].name, tuple(declarators), specifiers, types, ()


def _split_init(part: list[Token]) -> tuple[list[Token], list[Token]]:
    depth = 0
    for i, t in enumerate(part):
        if t.text in ("(", "[", "{"):
            depth += 1
        elif t.text in (")", "]", "}"):
            depth -= 1
        elif depth == 0 and t.text == "=":
            return part[:i], part[i + 1 :]
    return part, []


def _declarator(part: list[Token], *, first_part: bool) -> tuple[int, str, bool] | None:
    """(index where the declarator starts, its name, declares a function) or None.

    Handles `name`, `name[N]`, `name(params)`, `(*name)(params)`, `(*name[N])(params)` and
    `(*name)[N]`, with trailing attributes (`int x __read_mostly`) dropped first.
    """
    end = len(part)
    while end > 0:
        t = part[end - 1]
        if t.kind == "ident" and t.text in ATTRIBUTE_WORDS:
            end -= 1
            continue
        if t.text == ")":
            open_at = _open_of(part, end - 1)
            before = part[open_at - 1] if open_at > 0 else None
            if before is not None and before.kind == "ident" and before.text in ATTRIBUTE_CALLS:
                end = open_at - 1
                continue
        break
    body = part[:end]
    found = _find_name(body)
    if found is None:
        return None
    anchor, name_at, is_function = found
    if first_part and name_at > 0 and body[name_at - 1].text in ("struct", "union", "enum"):
        return None  # `struct foo;` declares a tag, not an object
    if first_part and anchor == 0:
        return None  # no type before the name
    return (_decl_start(body, anchor) if first_part else 0), body[name_at].text, is_function


def _find_name(body: Sequence[Token]) -> tuple[int, int, bool] | None:
    """(anchor index, name index, is a function) of a declarator at the end of `body`."""
    i = len(body) - 1
    while i >= 0 and body[i].text == "]":
        i = _open_of(body, i) - 1
    if i < 0:
        return None
    t = body[i]
    if t.kind == "ident":
        return (i, i, False) if t.text not in C_KEYWORDS else None
    if t.text != ")":
        return None
    open_at = _open_of(body, i)
    inner = body[open_at + 1 : i]
    if inner and inner[0].text in ("*", "^"):
        # `(*name)` or `(*name)[N]`: a pointer declarator group.
        got = _find_name(inner[1:])
        if got is None:
            return None
        return open_at, open_at + 2 + got[1], got[2]
    if open_at > 0 and body[open_at - 1].text == ")":
        # `(*name)(params)`: parameters after a pointer group; `(*f(void))(int)` is a function.
        prev_close = open_at - 1
        prev_open = _open_of(body, prev_close)
        group = body[prev_open + 1 : prev_close]
        if not group or group[0].text not in ("*", "^"):
            return None
        got = _find_name(group[1:])
        if got is None:
            return None
        return prev_open, prev_open + 2 + got[1], got[2]
    if open_at > 0 and body[open_at - 1].kind == "ident":
        name = body[open_at - 1].text
        if name in C_KEYWORDS or name in ATTRIBUTE_CALLS:
            return None
        return open_at - 1, open_at - 1, True
    return None


def _open_of(tokens: Sequence[Token], close_at: int) -> int:
    pairs = {")": "(", "]": "[", "}": "{"}
    closing = tokens[close_at].text
    opening = pairs[closing]
    depth = 0
    for i in range(close_at, -1, -1):
        t = tokens[i].text
        if t == closing:
            depth += 1
        elif t == opening:
            depth -= 1
            if depth == 0:
                return i
    return 0


def _decl_start(body: Sequence[Token], anchor: int) -> int:
    """Where the declarator begins: the pointer stars (and their qualifiers) before `anchor`."""
    i = anchor
    start = anchor
    while i > 0 and (body[i - 1].text == "*" or body[i - 1].text in _QUALIFIERS):
        i -= 1
        if body[i].text == "*":
            start = i
    return start


def _defined_types(tokens: Sequence[Token]) -> Iterator[str]:
    """Tags, typedef names and enumerators a declaration defines."""
    n = len(tokens)
    for i, t in enumerate(tokens):
        if t.text in ("struct", "union", "enum"):
            j = i + 1
            while j < n and (
                tokens[j].text in ATTRIBUTE_WORDS or tokens[j].text in ATTRIBUTE_CALLS
            ):
                j = matching(tokens, j + 1) + 1 if tokens[j].text in ATTRIBUTE_CALLS else j + 1
            tag = tokens[j].text if j < n and tokens[j].kind == "ident" else None
            brace = j + 1 if tag else j
            if brace < n and tokens[brace].text == "{":
                if tag:
                    yield tag
                if t.text == "enum":
                    close = matching(tokens, brace)
                    for part in _split_top(list(tokens[brace + 1 : close]), ","):
                        if part and part[0].kind == "ident":
                            yield part[0].text
    if tokens and tokens[0].text == "typedef":
        found = _declarator(strip_attributes(list(tokens[1:])), first_part=True)
        if found is not None:
            yield found[1]


def references(tokens: Iterable[Token]) -> set[str]:
    """Identifiers a piece of code names, without member names and keywords."""
    out: set[str] = set()
    prev = ""
    for t in tokens:
        if t.kind == "ident" and prev not in (".", "->") and t.text not in C_KEYWORDS:
            out.add(t.text)
        prev = t.text
    return out


def render(tokens: Sequence[Token]) -> str:
    """Tokens as C text: no space between tokens that touched in the source, one otherwise."""
    out: list[str] = []
    prev: Token | None = None
    for t in tokens:
        if prev is not None and t.start != prev.end:
            out.append(" ")
        out.append(t.text)
        prev = t
    return "".join(out)


def define_body(item: Item) -> tuple[Token, ...]:
    """The replacement-list tokens of a `#define` directive."""
    toks = item.tokens
    if not toks:
        return ()
    # `define NAME(params) body` or `define NAME body`; the directive's tokens start at NAME.
    i = 1
    if len(toks) > 1 and toks[1].text == "(" and toks[1].start == toks[0].end:
        i = matching(toks, 1) + 1
    return toks[i:]
