"""The `klp-lsp` command line: index, show, check, skeleton, serve.

The command line is a contract that tools and CI script against. Exit status: 0 success, 1 "not
found" (`show`) or error findings (`check`), 2 bad usage or unreadable input with a one-line
message on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from klp_lsp import __version__
from klp_lsp.errors import KlpError, UsageError

if TYPE_CHECKING:
    from klp_lsp.index.builder import BuildResult
    from klp_lsp.model import CheckResult
    from klp_lsp.progress import TerminalProgress
    from klp_lsp.session import Session

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_FINDINGS = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints usage and exits 2 already; keep it to one line for scripts.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_selection(p: argparse.ArgumentParser, *, binaries_flag: bool) -> None:
    if binaries_flag:
        p.add_argument(
            "--binary",
            action="append",
            default=[],
            type=Path,
            metavar="PATH",
            help="vmlinux, .ko, or directory of modules (repeatable); default: running kernel",
        )
    p.add_argument("--kernel", metavar="RELEASE", help="use the debug files of this release")
    p.add_argument("--index-dir", type=Path, metavar="DIR", help="where indexes are kept")
    p.add_argument("--jobs", type=int, default=0, metavar="N", help="worker processes (0: auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="klp-lsp",
        description="Compiled ABI facts of a built Linux kernel, for live-patch authors.",
    )
    parser.add_argument("--version", action="version", version=f"klp-lsp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("index", help="index a vmlinux, modules, or the running kernel")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    _add_selection(p, binaries_flag=False)
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("show", help="show what the binary says about one C function")
    p.add_argument("function", metavar="FUNCTION")
    _add_selection(p, binaries_flag=True)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("check", help="check a patch against the built kernel")
    p.add_argument("patches", nargs="+", type=Path, metavar="PATCH")
    _add_selection(p, binaries_flag=True)
    p.add_argument("--source", type=Path, metavar="DIR", help="the kernel source tree")
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    p.add_argument(
        "--no-background", action="store_true", help="do not finish a partial index afterwards"
    )

    p = sub.add_parser("skeleton", help="write a livepatch module skeleton for a patch")
    p.add_argument("patches", nargs="+", type=Path, metavar="PATCH")
    _add_selection(p, binaries_flag=True)
    p.add_argument("--source", type=Path, metavar="DIR", help="the kernel source tree")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, not stdout")
    p.add_argument(
        "--no-background", action="store_true", help="do not finish a partial index afterwards"
    )

    p = sub.add_parser("serve", help="run the language server (stdio by default)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead, for debugging")
    p.add_argument("--log-file", type=Path, metavar="FILE", help="also log to this file")
    return parser


def _session(args: argparse.Namespace, paths: Sequence[Path]) -> Session:
    # Imported per command: `serve` loads these on its indexing thread, after answering
    # `initialize` (docs/performance.md, "Language server start").
    from klp_lsp.index.locate import default_index_dir
    from klp_lsp.session import Session

    index_dir = args.index_dir or default_index_dir()
    return Session(
        binaries=list(paths),
        kernel=args.kernel,
        index_dir=index_dir,
        jobs=args.jobs,
    )


def _progress(quiet: bool) -> TerminalProgress | None:
    from klp_lsp.progress import TerminalProgress

    if quiet or not sys.stderr.isatty():
        return None
    return TerminalProgress(sys.stderr)


def cmd_index(args: argparse.Namespace) -> int:
    session = _session(args, args.paths)
    results = session.ensure_indexes(progress=_progress(args.quiet))
    if not args.quiet:
        for r in results:
            state = "already indexed" if r.reused else f"indexed in {r.seconds:.1f} s"
            print(f"{r.object}: {state} -> {r.index_path}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from klp_lsp.report import (
        report_to_json,
        report_to_text,
        unreadable_to_json,
        unreadable_to_text,
    )

    session = _session(args, args.binary)
    session.ensure_indexes(progress=_progress(args.json))
    with session.open() as indexes:
        reports = indexes.reports(args.function)
        unreadable = indexes.unreadable_units()
    if args.json:
        out = {
            "query": args.function,
            "matches": [report_to_json(r) for r in reports],
            "unreadable_units": [unreadable_to_json(u) for u in unreadable],
        }
        print(json.dumps(out, indent=2))
    else:
        for u in unreadable:
            print(f"klp-lsp: warning: {unreadable_to_text(u)}", file=sys.stderr)
        if not reports:
            print(f"klp-lsp: {args.function}: no such function in the index", file=sys.stderr)
        print("\n\n".join(report_to_text(r) for r in reports))
    return EXIT_OK if reports else EXIT_NOT_FOUND


def _read_patches(paths: Sequence[Path]) -> list[tuple[str, str]]:
    from klp_lsp.patch.diff import read_patch_text

    return [(str(p), read_patch_text(p)) for p in paths]


def _check(args: argparse.Namespace) -> CheckResult:
    # The check engine (tree-sitter, the diff parser) loads here, not for `show` and `index`.
    from klp_lsp.patch.check import Checker, cu_names_for_patch

    patches = _read_patches(args.patches)
    session = _session(args, args.binary)
    # Index the CUs the patch touches first: a first answer must not wait for the whole kernel.
    needed: list[str] | None = []
    for _name, text in patches:
        names = cu_names_for_patch(text)
        if names is None or needed is None:
            needed = None
        else:
            needed.extend(names)
    results = session.ensure_indexes(progress=_progress(False), cu_names=needed)
    with session.open() as indexes:
        result = Checker(indexes).check_patches(patches, args.source)
    if any(not r.complete for r in results) and not args.no_background:
        _finish_in_background(session, results)
    return result


def _finish_in_background(session: Session, results: Sequence[BuildResult]) -> None:
    """Index the rest of each partially indexed binary in a detached process."""
    cmd = [
        sys.executable,
        "-m",
        "klp_lsp",
        "index",
        "--quiet",
        "--index-dir",
        str(session.index_dir),
    ]
    cmd += [str(r.binary) for r in results if not r.complete]
    subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    print("klp-lsp: indexing the rest of the kernel in the background", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    from klp_lsp.patch.render import result_to_json, result_to_text
    from klp_lsp.patch.sarif import result_to_sarif

    result = _check(args)
    if args.format == "json":
        print(json.dumps(result_to_json(result), indent=2))
    elif args.format == "sarif":
        print(json.dumps(result_to_sarif(result), indent=2))
    else:
        print(result_to_text(result))
    if result.has_errors:
        return EXIT_FINDINGS
    if result.problems and not result.changed_functions:
        return EXIT_USAGE
    return EXIT_OK


def cmd_skeleton(args: argparse.Namespace) -> int:
    from klp_lsp.patch.render import render_skeleton

    result = _check(args)
    text = render_skeleton(result, [str(p) for p in args.patches])
    if args.output:
        try:
            args.output.write_text(text)
        except OSError as e:
            raise UsageError(f"{args.output}: cannot write: {e.strerror or e}") from e
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from klp_lsp.lsp.server import serve

    return serve(tcp=args.tcp, log_file=args.log_file)


_COMMANDS = {
    "index": cmd_index,
    "show": cmd_show,
    "check": cmd_check,
    "skeleton": cmd_skeleton,
    "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `klp-lsp` console script."""
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "jobs", 0) < 0:
            raise UsageError("--jobs must be 0 (auto) or more")
        return _COMMANDS[args.command](args)
    except KlpError as e:
        print(f"klp-lsp: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("klp-lsp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
