"""Renders a `FleetReport`: a text table, JSON, and a static HTML report that works offline."""

from __future__ import annotations

import html
from typing import Any

from klp_lsp.fleet.results import (
    FleetReport,
    KernelOutcome,
    Matrix,
    build_matrix,
    describe_difference,
    differences,
)
from klp_lsp.patch.render import result_to_json, result_to_text

_BOLD_REVERSE, _RESET = "\x1b[1;7m", "\x1b[0m"


def _header(column: str) -> str:
    # A changed function's column is headed by its C name; the file is in the legend.
    return column.split(" (", 1)[0]


def _summary(report: FleetReport) -> str:
    where = "shared with the workers" if report.shared_index_dir else "indexes returned by workers"
    return (
        f"fleet {report.origin}: {len(report.kernels)} kernel(s); {report.cluster};"
        f" index dir {report.index_dir} ({where}); {report.wall_seconds:.1f} s"
    )


def report_to_text(report: FleetReport, *, color: bool = False) -> str:
    """The matrix as a table, cells off the majority marked `*` (and highlighted in colour)."""
    matrix = build_matrix(report.kernels)
    headers = ["kernel", *(_header(c) for c in matrix.columns)]
    rows: list[list[tuple[str, bool]]] = []
    for name in matrix.kernels:
        row = [(name, False)]
        for column in matrix.columns:
            value = matrix.cells[column].get(name, "-")
            row.append((value, matrix.differs(column, name)))
        rows.append(row)
    widths = [
        max(len(headers[i]), *(len(r[i][0]) + r[i][1] for r in rows)) for i in range(len(headers))
    ]
    lines = [_summary(report), ""]
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        cells = []
        for (value, off), width in zip(row, widths, strict=True):
            text = (value + "*" if off else value).ljust(width)
            cells.append(f"{_BOLD_REVERSE}{text}{_RESET}" if off and color else text)
        lines.append("  ".join(cells).rstrip())
    functions = [c for c in matrix.columns if " (" in c]
    if functions:
        lines.append("")
        lines.append("columns: " + "; ".join(functions))
    if any(matrix.differs(c, n) for c in matrix.columns for n in matrix.kernels):
        lines.append("* differs from the majority of the kernels")
    failed = [k for k in report.kernels if k.error]
    if failed:
        lines.append("")
        lines.append("errors:")
        lines.extend(f"  {k.spec.name}: {k.error}" for k in failed)
    warned = [k for k in report.kernels if k.warnings]
    if warned:
        lines.append("")
        lines.append("warnings:")
        lines.extend(f"  {k.spec.name}: {w}" for k in warned for w in k.warnings)
    diffs = differences(report.kernels)
    lines.append("")
    if diffs:
        lines.append("differences:")
        lines.extend(f"  {describe_difference(d)}" for d in diffs)
    else:
        lines.append("no differences between the kernels checked")
    return "\n".join(lines)


def kernel_to_json(k: KernelOutcome) -> dict[str, Any]:
    """One kernel's row: its files, indexes, status and `check --format json` result."""
    spec = k.spec
    return {
        "name": spec.name,
        "status": k.status,
        "error": k.error,
        "warnings": list(k.warnings),
        "source": None if spec.source is None else str(spec.source),
        "image": None if spec.image is None else str(spec.image),
        "headers": None if spec.headers is None else str(spec.headers),
        "binaries": [
            {
                "path": b.path,
                "object": b.object,
                "build_id": b.build_id,
                "index": b.index,
                "reused": b.reused,
                "index_seconds": round(b.seconds, 3),
                "host": b.host,
            }
            for b in k.binaries
        ],
        "check_seconds": round(k.check_seconds, 3),
        "host": k.host,
        "result": None if k.result is None else result_to_json(k.result),
    }


def _matrix_to_json(matrix: Matrix) -> dict[str, Any]:
    return {
        "columns": list(matrix.columns),
        "rows": {
            n: {c: matrix.cells[c][n] for c in matrix.columns if n in matrix.cells[c]}
            for n in matrix.kernels
        },
        "majority": matrix.majority,
    }


def report_to_json(report: FleetReport) -> dict[str, Any]:
    """The `fleet --format json` document."""
    return {
        "fleet": report.origin,
        "patches": list(report.patches),
        "cluster": report.cluster,
        "index_dir": report.index_dir,
        "shared_index_dir": report.shared_index_dir,
        "wall_seconds": round(report.wall_seconds, 3),
        "kernels": [kernel_to_json(k) for k in report.kernels],
        "matrix": _matrix_to_json(build_matrix(report.kernels)),
        "differences": differences(report.kernels),
    }


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.differs { background: #ffd54f; font-weight: bold; }
td.failed, td.does-not-apply { color: #b00020; }
td.needs-care { color: #8a4b00; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; white-space: pre-wrap; }
details { margin: 0.6em 0; border: 1px solid #ddd; padding: 0.4em 0.8em; }
summary { cursor: pointer; font-weight: bold; }
.legend { color: #555; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _anchor(i: int) -> str:
    return f"kernel-{i}"


def report_to_html(report: FleetReport) -> str:
    """A single self-contained HTML page: the matrix, the differences, one section per kernel."""
    matrix = build_matrix(report.kernels)
    names = ", ".join(p.rsplit("/", 1)[-1] for p in report.patches)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>klp-lsp fleet: {_e(names)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>klp-lsp fleet: {_e(names)}</h1>",
        f"<p>patches: {_e(', '.join(report.patches))}</p>",
        f"<p>{_e(_summary(report))}</p>",
        "<table><thead><tr><th>kernel</th>",
    ]
    out.extend(f'<th title="{_e(c)}">{_e(_header(c))}</th>' for c in matrix.columns)
    out.append("</tr></thead><tbody>")
    for i, name in enumerate(matrix.kernels):
        out.append(f'<tr><td><a href="#{_anchor(i)}">{_e(name)}</a></td>')
        for column in matrix.columns:
            value = matrix.cells[column].get(name, "-")
            classes = []
            if matrix.differs(column, name):
                classes.append("differs")
            if column == "status":
                classes.append(value)
            attr = f' class="{" ".join(classes)}"' if classes else ""
            title = f' title="majority: {_e(matrix.majority.get(column, ""))}"' if classes else ""
            out.append(f"<td{attr}{title}>{_e(value)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append(
        '<p class="legend">Highlighted cells differ from the majority of the kernels (on a tie,'
        " the value met first)."
        " Cell codes: CARE = error findings; absent = the patch changes nothing of that"
        " function in this kernel.</p>"
    )
    diffs = differences(report.kernels)
    out.append("<h2>Differences</h2>")
    if diffs:
        out.append("<ul>")
        out.extend(f"<li>{_e(describe_difference(d))}</li>" for d in diffs)
        out.append("</ul>")
    else:
        out.append("<p>No differences between the kernels checked.</p>")
    out.append("<h2>Kernels</h2>")
    for i, k in enumerate(report.kernels):
        out.append(_kernel_section(i, k))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _kernel_section(i: int, k: KernelOutcome) -> str:
    spec = k.spec
    parts = [
        f'<details id="{_anchor(i)}" open><summary>{_e(spec.name)}: {_e(k.status)}</summary>',
        "<table>",
    ]
    facts = [
        ("source", spec.source),
        ("image", spec.image),
        ("headers", spec.headers),
        ("checked on", k.host or None),
    ]
    parts.extend(f"<tr><th>{_e(a)}</th><td>{_e(b)}</td></tr>" for a, b in facts if b is not None)
    parts.append("</table>")
    if k.error:
        parts.append(f"<p><strong>error:</strong> {_e(k.error)}</p>")
    for w in k.warnings:
        parts.append(f"<p><strong>warning:</strong> {_e(w)}</p>")
    if k.binaries:
        parts.append(
            "<table><tr><th>binary</th><th>object</th><th>build-id</th><th>index</th></tr>"
        )
        for b in k.binaries:
            state = (
                "not built"
                if b.index is None
                else "reused"
                if b.reused
                else f"built in {b.seconds:.1f} s on {b.host}"
            )
            parts.append(
                f"<tr><td>{_e(b.path)}</td><td>{_e(b.object)}</td><td><code>{_e(b.build_id)}"
                f"</code></td><td>{_e(state)}</td></tr>"
            )
        parts.append("</table>")
    if k.result is not None:
        parts.append(f"<pre>{_e(result_to_text(k.result))}</pre>")
    parts.append("</details>")
    return "\n".join(parts)
