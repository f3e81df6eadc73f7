"""Changes a live patch cannot carry as function replacements: exports, per-CPU variables,
static keys and tracepoints.

A livepatch module replaces functions; the kernel's data stays the kernel's. So a patch that
adds or changes an `EXPORT_SYMBOL`, a per-CPU variable, a static key or a tracepoint definition
asks for something no replacement function delivers. A changed function that only *uses* a
per-CPU variable, static key or tracepoint that its file defines works (the module reaches the
kernel's object through a livepatch relocation) but the author should know it does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from klp_lsp.patch.c_items import Item, references, render, split_items

UnsupportedKind = Literal["export-symbol", "per-cpu", "static-key", "tracepoint"]
_PER_CPU = "DEFINE_PER_CPU"
_STATIC_KEY = ("DEFINE_STATIC_KEY_", "DEFINE_STATIC_CALL")
_EXPORT = "EXPORT_"
_TRACE_DEFINERS = frozenset(
    {"TRACE_EVENT", "DEFINE_EVENT", "DECLARE_EVENT_CLASS", "TRACE_EVENT_CONDITION",
     "DEFINE_EVENT_PRINT", "DECLARE_TRACE", "TRACE_EVENT_FN"}
)  # fmt: skip


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
    """The unsupported constructs a patch brings into `path` (see the module docstring)."""
    pre, post = split_items(pre_text), split_items(post_text)
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

    # Uses, in the changed functions, of per-CPU variables, static keys and tracepoints that
    # this file defines.
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
