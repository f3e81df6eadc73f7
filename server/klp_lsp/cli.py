"""The `klp-lsp` command line: index, show, check, skeleton, serve.

The command line is a contract that tools and CI script against. Exit status: 0 success, 1 "not
found" (`show`) or error findings (`check`), 2 bad usage or unreadable input with a one-line
message on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from klp_lsp import __version__
from klp_lsp.errors import KlpError, UsageError
from klp_lsp.index.locate import default_index_dir
from klp_lsp.progress import TerminalProgress
from klp_lsp.report import report_to_json, report_to_text
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

    p = sub.add_parser("skeleton", help="write a livepatch module skeleton for a patch")
    p.add_argument("patches", nargs="+", type=Path, metavar="PATCH")
    _add_selection(p, binaries_flag=True)
    p.add_argument("--source", type=Path, metavar="DIR", help="the kernel source tree")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, not stdout")

    p = sub.add_parser("serve", help="run the language server (stdio by default)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead, for debugging")
    p.add_argument("--log-file", type=Path, metavar="FILE", help="also log to this file")
    return parser


def _session(args: argparse.Namespace, paths: Sequence[Path]) -> Session:
    index_dir = args.index_dir or default_index_dir()
    return Session(
        binaries=list(paths),
        kernel=args.kernel,
        index_dir=index_dir,
        jobs=args.jobs,
    )


def _progress(quiet: bool) -> TerminalProgress | None:
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
    session = _session(args, args.binary)
    session.ensure_indexes(progress=_progress(args.json))
    with session.open() as indexes:
        reports = indexes.reports(args.function)
    if args.json:
        out = {"query": args.function, "matches": [report_to_json(r) for r in reports]}
        print(json.dumps(out, indent=2))
    else:
        if not reports:
            print(f"klp-lsp: {args.function}: no such function in the index", file=sys.stderr)
        print("\n\n".join(report_to_text(r) for r in reports))
    return EXIT_OK if reports else EXIT_NOT_FOUND


def cmd_check(args: argparse.Namespace) -> int:
    from klp_lsp.patch.check import run_check_command

    session = _session(args, args.binary)
    return run_check_command(session, args.patches, args.source, args.format, sys.stdout)


def cmd_skeleton(args: argparse.Namespace) -> int:
    from klp_lsp.patch.check import run_skeleton_command

    session = _session(args, args.binary)
    return run_skeleton_command(session, args.patches, args.source, args.output, sys.stdout)


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
