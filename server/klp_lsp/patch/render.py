"""Renders a `CheckResult`: text for people, JSON for tools, Markdown, and a livepatch skeleton."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from klp_lsp.model import CheckResult, CompileReport, FileImpact, Finding, ReplaceEntry

# docs/findings/ of the checkout this package runs from (an editable install, as the README
# sets up); the pages are plain Markdown that editors open from a file URI.
DOCS_DIR = Path(__file__).resolve().parents[3] / "docs" / "findings"


def finding_doc_url(kind: str) -> str:
    """Where a finding kind is explained (docs/findings/<kind>.md), as a URI."""
    return (DOCS_DIR / f"{kind}.md").as_uri()


def finding_to_json(f: Finding) -> dict[str, Any]:
    """One finding as `check` and `verify` print it in JSON."""
    return {
        "kind": f.kind,
        "severity": f.severity,
        "function": f.function,
        "object": f.object,
        "message": f.message,
        "patch_file": f.patch_file,
        "patch_line": f.patch_line,
        "source_file": f.source_file,
        "source_line": f.source_line,
        "related": [
            {
                "role": r.role,
                "name": r.name,
                "object": r.object,
                "source_file": r.source_file,
                "source_line": r.source_line,
                "address": None if r.address is None else f"{r.address:#x}",
                "message": r.message,
            }
            for r in f.related
        ],
    }


def result_to_json(result: CheckResult) -> dict[str, Any]:
    """The `check --format json` document."""
    return {
        "changed_functions": [
            {
                "name": c.name,
                "source_file": c.source_file,
                "object": c.object,
                "patch_file": c.patch_file,
                "patch_line": c.patch_line,
                "source_line": c.source_line,
                "evidence": c.evidence,
            }
            for c in result.changed_functions
        ],
        "findings": [finding_to_json(f) for f in result.findings],
        "replace": [
            {
                "object": e.object,
                "symbol": e.symbol,
                "sympos": e.sympos,
                "reason": e.reason,
                "patchable": e.patchable,
            }
            for e in result.replace
        ],
        "problems": [
            {"file": p.file, "line": p.line, "message": p.message} for p in result.problems
        ],
        "notes": list(result.notes),
        "files": [file_to_json(f) for f in result.files],
        "compile": None if result.compile is None else compile_to_json(result.compile),
    }


def file_to_json(file: FileImpact) -> dict[str, Any]:
    """One file of the patches: the compile units it is built as and what each hunk changes
    (what the editor's hover on a `diff --git` line and its hunk lenses say)."""
    return {
        "patch_file": file.patch_file,
        "patch_line": file.line,
        "path": file.path,
        "status": file.status,
        "units": [
            {
                "object": u.object,
                "cu": u.name,
                "included": u.included,
                "analysed": u.analysed,
                "error": u.error,
                "ftrace": None if u.compiler is None else u.compiler.ftrace,
                "ipa_ra": None if u.compiler is None else u.compiler.ipa_ra,
            }
            for u in file.units
        ],
        "problems": list(file.problems),
        "hunks": [
            {
                "patch_line": h.line,
                "end_line": h.end_line,
                "header": h.header,
                "section": h.section,
                "functions": [
                    {"name": f.name, "object": f.object, "status": f.status} for f in h.functions
                ],
                "data": list(h.data),
                "macros": list(h.macros),
                "macro_users": h.macro_users,
                "notes": list(h.notes),
                "problems": list(h.problems),
            }
            for h in file.hunks
        ],
    }


def compile_to_json(report: CompileReport) -> dict[str, Any]:
    """The `compile` member of `check --compile --format json`."""
    return {
        "build_tree": report.build_tree,
        "seconds": report.seconds,
        "cached": list(report.cached),
        "failures": [{"object": o, "message": m} for o, m in report.failures],
        "not_compiled": [{"object": o, "why": w} for o, w in report.not_compiled],
        "objects": [
            {
                "object": od.object,
                "identical": od.identical,
                "functions": [
                    {
                        "name": d.name,
                        "old_name": d.old_name,
                        "origin": d.origin,
                        "kind": d.kind,
                        "detail": d.detail,
                        "renamed_calls": [list(p) for p in d.renamed_calls],
                        "line_shifts": [list(p) for p in d.line_shifts],
                        "source_file": d.decl_file,
                        "source_line": d.decl_line,
                        "size_before": d.size_before,
                        "size_after": d.size_after,
                    }
                    for d in od.functions
                ],
                "clones": [asdict(c) for c in od.clones],
                "inlining": [asdict(f) for f in od.inlining],
            }
            for od in report.objects
        ],
        "comparison": [asdict(c) for c in report.comparison],
        "kpatch_preview": [asdict(p) for p in report.kpatch_preview],
    }


def compile_to_text(result: CheckResult) -> list[str]:
    """The compiler's side of `check --compile`, next to the prediction."""
    report = result.compile
    if report is None:
        return []
    lines = [f"compiled before and after the patch in {report.build_tree} ({report.seconds} s):"]
    for obj, message in report.failures:
        lines.append(f"  {obj}: the patched source does not compile: {message}")
    for od in report.objects:
        cached = " (cached)" if od.object in report.cached else ""
        lines.append(
            f"  {od.object}{cached}: {len(od.functions)} function(s) differ,"
            f" {od.identical} identical"
        )
        for d in od.functions:
            name = f"{d.old_name} -> {d.name}" if d.old_name else d.name
            lines.append(f"    {d.kind}: {name}: {d.detail}")
        for c in od.clones:
            lines.append(f"    clones: {c.message}")
        for f in od.inlining:
            verb = "now inlined into" if f.inlined_after else "no longer inlined into"
            lines.append(f"    inlining: {f.callee} {verb} {f.caller}")
    for obj, why in report.not_compiled:
        lines.append(f"  {obj}: not compiled: {why}")
    if report.comparison:
        lines.append("  prediction vs compiler:")
        for row in report.comparison:
            predicted = "-" if row.predicted is None else f"replace: {row.predicted}"
            lines.append(f"    {row.object}: {row.symbol}: {predicted} | compiler: {row.compiler}")
    return lines


def _where(f: Finding) -> str:
    if f.patch_file:
        return f"{f.patch_file}:{f.patch_line}"
    if f.source_file:
        return f"{f.source_file}:{f.source_line}"
    return ""


def result_to_text(result: CheckResult) -> str:
    """One block per changed function, verdict first; then other findings and the replace set."""
    lines: list[str] = []
    for p in result.problems:
        lines.append(f"{p.file}:{p.line or 0}: problem: {p.message}")
    by_function: dict[tuple[str | None, str | None], list[Finding]] = {}
    for f in result.findings:
        by_function.setdefault((f.function, f.object), []).append(f)
    for c in result.changed_functions:
        findings = by_function.pop((c.name, c.object), [])
        errors = [f for f in findings if f.severity == "error"]
        verdict = "NEEDS CARE" if errors else "ok to replace" if c.object else "not found"
        if c.evidence == "compiler":
            verdict = "changed in its compiled code only"
        evidence = "" if result.compile is None else f" (evidence: {c.evidence})"
        lines.append("")
        lines.append(f"{c.name} ({c.source_file}) [{c.object or '?'}]: {verdict}{evidence}")
        for f in sorted(findings, key=lambda f: f.severity != "error"):
            lines.append(f"  {f.severity}: [{f.kind}] {f.message}")
    rest = [f for fs in by_function.values() for f in fs]
    if rest:
        lines.append("")
        lines.append("other changes:")
        for f in rest:
            where = _where(f)
            lines.append(f"  {where + ': ' if where else ''}{f.severity}: [{f.kind}] {f.message}")
    if result.replace:
        lines.append("")
        lines.append("replace set (klp_func entries):")
        for e in result.replace:
            mark = "" if e.patchable else "  (not patchable)"
            lines.append(f"  {e.object}: {e.symbol} sympos {e.sympos}: {e.reason}{mark}")
    if result.compile is not None:
        lines.append("")
        lines.extend(compile_to_text(result))
    if result.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in result.notes)
    n_errors = sum(f.severity == "error" for f in result.findings)
    lines.append("")
    lines.append(
        f"{len(result.changed_functions)} changed function(s), {len(result.findings)} finding(s),"
        f" {n_errors} error(s), {len(result.replace)} function(s) to replace"
    )
    return "\n".join(lines).lstrip("\n")


def render_replace_set(result: CheckResult) -> str:
    """The replace set as a Markdown table."""
    if not result.replace:
        return "The patch changes no function of the indexed binaries: nothing to replace."
    rows = ["| object | symbol | sympos | why | patchable |", "|---|---|---|---|---|"]
    for e in result.replace:
        patchable = "yes" if e.patchable else "no"
        rows.append(f"| {e.object} | `{e.symbol}` | {e.sympos} | {e.reason} | {patchable} |")
    return "\n".join(rows)


def _c_ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def skeleton_function_name(symbol: str) -> str:
    """The name of the skeleton's replacement for `symbol`: `foo.isra.0` -> livepatch_foo_isra_0."""
    return f"livepatch_{_c_ident(symbol)}"


@dataclass(frozen=True, slots=True)
class Prototype:
    """A replacement's declaration (without `static`) and a comment on its ABI, if any."""

    declaration: str
    comment: str | None = None


def forward_declarations(declarations: Sequence[str]) -> list[str]:
    """`struct x;` for every struct or union a declaration names, so the skeleton compiles with
    only the livepatch headers included."""
    found = dict.fromkeys(
        m.group(0) for d in declarations for m in re.finditer(r"\b(?:struct|union) \w+", d)
    )
    return [f"{tag};" for tag in found]


def render_skeleton(
    result: CheckResult,
    patch_names: Sequence[str] = (),
    prototypes: Mapping[tuple[str, str, int], Prototype] | None = None,
) -> str:
    """A livepatch module in the style of samples/livepatch/livepatch-sample.c.

    With `prototypes` (livepatch/skeleton.py), each replacement is declared like the function it
    replaces (for a clone: like the clone's ABI); without, as `void f(void)`.
    """
    prototypes = prototypes or {}
    entries = [e for e in result.replace if e.patchable]
    skipped = [e for e in result.replace if not e.patchable]
    objects: dict[str, list[ReplaceEntry]] = {}
    for e in entries:
        objects.setdefault(e.object, []).append(e)
    source = ", ".join(patch_names) or "the checked change"
    out = [
        "// SPDX-License-Identifier: GPL-2.0-or-later",
        "/*",
        f" * Livepatch module skeleton generated by klp-lsp from {source}.",
        " *",
        " * Each replacement below must get the patched body of the function it replaces,",
        " * with the same calling convention as the compiled original (see the klp-lsp",
        " * findings: clones take GCC-private arguments, and callers listed as register",
        " * dependents expect registers to survive).",
        " */",
        "",
        '#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt',
        "",
        "#include <linux/kernel.h>",
        "#include <linux/module.h>",
        "#include <linux/livepatch.h>",
        "",
    ]
    for e in skipped:
        out.append(f"/* Not patchable, not listed: {e.object} {e.symbol}: {e.reason} */")
    if skipped:
        out.append("")
    declared = forward_declarations([p.declaration for p in prototypes.values()])
    if declared:
        out.extend([*declared, ""])
    for obj, group in objects.items():
        for e in group:
            out.append(f"/* {obj}: {e.symbol} (sympos {e.sympos}): {e.reason} */")
            proto = prototypes.get((e.object, e.symbol, e.sympos))
            if proto is None:
                out.append(f"static void {skeleton_function_name(e.symbol)}(void)")
            else:
                if proto.comment:
                    out.append(f"/* {proto.comment} */")
                out.append(f"static {proto.declaration}")
            out.append("{")
            out.append(f"\t/* TODO: copy the patched body of {e.symbol} */")
            out.append("}")
            out.append("")
    entries_by_object = {
        obj: [KlpFuncSource(e.symbol, skeleton_function_name(e.symbol), e.sympos) for e in group]
        for obj, group in objects.items()
    }
    out.extend(klp_patch_source(entries_by_object))
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class KlpFuncSource:
    """One `klp_func` initializer of a generated livepatch module."""

    old_name: str
    new_func: str
    old_sympos: int
    comment: str = ""


def klp_patch_source(
    objects: Mapping[str, Sequence[KlpFuncSource]], description: str | None = None
) -> list[str]:
    """The `klp_func` arrays, `klp_object`s, `klp_patch` and module init of a livepatch module
    (samples/livepatch/livepatch-sample.c), one object per key ("vmlinux" or a module)."""
    out: list[str] = []
    for obj, group in objects.items():
        out.append(f"static struct klp_func funcs_{_c_ident(obj)}[] = {{")
        for f in group:
            out.append("\t{")
            if f.comment:
                out.append(f"\t\t/* {f.comment} */")
            out.append(f'\t\t.old_name = "{f.old_name}",')
            out.append(f"\t\t.new_func = {f.new_func},")
            if f.old_sympos:
                out.append(f"\t\t.old_sympos = {f.old_sympos},")
            out.append("\t},")
        out.extend(["\t{ }", "};", ""])
    out.append("static struct klp_object objs[] = {")
    for obj in objects:
        out.append("\t{")
        if obj == "vmlinux":
            out.append("\t\t/* name being NULL means vmlinux */")
        else:
            out.append(f'\t\t.name = "{obj}",')
        out.append(f"\t\t.funcs = funcs_{_c_ident(obj)},")
        out.append("\t},")
    out.extend(
        [
            "\t{ }",
            "};",
            "",
            "static struct klp_patch patch = {",
            "\t.mod = THIS_MODULE,",
            "\t.objs = objs,",
            "};",
            "",
            "static int livepatch_init(void)",
            "{",
            "\treturn klp_enable_patch(&patch);",
            "}",
            "",
            "static void livepatch_exit(void)",
            "{",
            "}",
            "",
            "module_init(livepatch_init);",
            "module_exit(livepatch_exit);",
            'MODULE_LICENSE("GPL");',
            'MODULE_INFO(livepatch, "Y");',
        ]
    )
    if description is not None:
        out.append(f'MODULE_DESCRIPTION("{description}");')
    out.append("")
    return out
