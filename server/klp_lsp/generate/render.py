"""`generate`'s output: the JSON document the issue specifies and a text summary."""

from __future__ import annotations

from typing import Any

from klp_lsp.generate.pipeline import GenerateResult


def result_to_json(result: GenerateResult) -> dict[str, Any]:
    """`{"outdir", "module", "functions", "problems", "verify", "try"}` plus build details."""
    build = result.build
    return {
        "outdir": str(result.outdir),
        "module": str(result.module) if result.module else None,
        "functions": [
            {
                "object": f.object,
                "old_name": f.old_name,
                "old_sympos": f.old_sympos,
                "new_func": f.new_func,
                "source": f.source,
                "reason": f.reason,
            }
            for f in result.functions
        ],
        "problems": [
            {
                "severity": p.severity,
                "kind": p.kind,
                "message": p.message,
                "function": p.function,
                "file": p.file,
                "line": p.line,
            }
            for p in result.problems
        ],
        "verify": result.verify,
        "try": result.try_,
        "not_replaced": [
            {"object": e.object, "symbol": e.symbol, "sympos": e.sympos, "reason": e.reason}
            for e in result.left
        ],
        "copied": {k: list(v) for k, v in result.copied.items()},
        "files": [str(p) for p in result.files],
        "build": None
        if build is None
        else {
            "ok": build.ok,
            "seconds": round(build.seconds, 2),
            "command": list(build.command),
            "headers": str(result.headers) if result.headers else None,
        },
        "klp_relocations": None
        if result.relocations is None
        else {
            "symbols": {old: new for old, new in result.relocations.symbols},
            "sections": {s.name: s.relocations for s in result.relocations.sections},
        },
    }


def result_to_text(result: GenerateResult) -> str:
    """A summary for people: what was written, what replaces what, problems, steps."""
    lines = [f"{result.outdir}: livepatch module {result.name}"]
    for f in result.functions:
        pos = f" (sympos {f.old_sympos})" if f.old_sympos else ""
        lines.append(f"  {f.object}: {f.old_name}{pos} -> {f.new_func}  [{f.source}: {f.reason}]")
    for e in result.left:
        lines.append(f"  {e.object}: {e.symbol} left in place: {e.reason}")
    for name, helpers in result.copied.items():
        lines.append(f"  {name}: compiles its own copy of {', '.join(helpers)}")
    for p in result.problems:
        where = f"{p.file}:{p.line}: " if p.file else ""
        lines.append(f"{where}{p.severity}: [{p.kind}] {p.message}")
    if result.build is not None:
        state = "ok" if result.build.ok else "FAILED"
        lines.append(f"build: {state} in {result.build.seconds:.1f} s against {result.headers}")
    if result.relocations is not None:
        n = sum(s.relocations for s in result.relocations.sections)
        lines.append(
            f"klp relocations: {n} in {len(result.relocations.sections)} section(s) against"
            f" {len(result.relocations.symbols)} kernel symbol(s)"
        )
    if result.module is not None:
        lines.append(f"module: {result.module}")
    if result.verify is not None:
        summary = result.verify.get("summary", {})
        state = "ok" if summary.get("ok") else "FAILED"
        lines.append(
            f"verify: {state}: {summary.get('functions', 0)} function(s),"
            f" {summary.get('errors', 0)} error(s), {summary.get('findings', 0)} finding(s)"
        )
        for f in result.verify.get("findings", []):
            lines.append(f"  {f['severity']}: [{f['kind']}] {f['message']}")
    if result.try_ is not None:
        t = result.try_
        lines.append(f"try: booted {t.get('kernel_image')} ({t.get('accel')}): {t.get('booted')}")
        for m in t.get("modules", []):
            state = "loaded" if m.get("loaded") else "NOT loaded"
            transition = f", transition {m['transition']}" if m.get("transition") else ""
            lines.append(f"  {m.get('name')}: {state}{transition}")
        run = t.get("run")
        if run:
            lines.append(f"  $ {run.get('cmd')}  (exit {run.get('status')})")
            lines.extend(f"  {x}" for x in str(run.get("output", "")).splitlines())
    for step in result.steps_failed:
        lines.append(f"step failed: {step}")
    return "\n".join(lines)
