"""The `klp-lsp` command line: index, show, check, skeleton, generate, verify, try,
prepare-build, fleet, serve.

The command line is a contract that tools and CI script against. Exit status: 0 success, 1 "not
found" (`show`), error findings (`check`, `verify`) or a module that did not load (`try`), 2 bad
usage or unreadable input with a one-line message on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from klp_lsp import __version__
from klp_lsp.errors import KlpError, UsageError

if TYPE_CHECKING:
    from klp_lsp.build.tree import BuildTree
    from klp_lsp.generate.pipeline import GenerateResult
    from klp_lsp.index.builder import BuildResult
    from klp_lsp.index.query import IndexSet
    from klp_lsp.model import CheckResult
    from klp_lsp.patch.check import Checker
    from klp_lsp.progress import TerminalProgress
    from klp_lsp.session import Session

R = TypeVar("R")

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


def _add_vm_options(p: argparse.ArgumentParser, when: str) -> None:
    """The options of a VM run (`try`, `generate --try`)."""
    p.add_argument("--kernel-image", type=Path, metavar="PATH", help=f"{when}the image to boot")
    p.add_argument(
        "--pvh",
        action="store_true",
        help=f"{when}boot the indexed vmlinux itself (x86-64 CONFIG_PVH), no firmware, no"
        " decompression",
    )
    p.add_argument("--run", metavar="CMD", help=f"{when}a shell command to run after loading")
    p.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help=f"{when}for the whole run (120)"
    )
    p.add_argument(
        "--file",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help=f"{when}copy into the guest's /files for --run (repeatable)",
    )


def _add_compile(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compile",
        action="store_true",
        help="also compile the touched objects before and after the patch and compare them",
    )
    p.add_argument(
        "--build-tree",
        type=Path,
        metavar="DIR",
        help="a tree made by prepare-build (default: $KLP_LSP_BUILD_TREE)",
    )
    p.add_argument(
        "--compile-limit",
        type=int,
        default=None,
        metavar="N",
        help="compile at most N objects (a header can be in thousands; default 16)",
    )


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
    _add_compile(p)

    p = sub.add_parser("skeleton", help="write a livepatch module skeleton for a patch")
    p.add_argument("patches", nargs="+", type=Path, metavar="PATCH")
    _add_selection(p, binaries_flag=True)
    p.add_argument("--source", type=Path, metavar="DIR", help="the kernel source tree")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, not stdout")
    p.add_argument(
        "--kbuild", action="store_true", help="also write a Kbuild file beside the -o file"
    )
    p.add_argument(
        "--no-background", action="store_true", help="do not finish a partial index afterwards"
    )

    p = sub.add_parser("generate", help="write (and build) a livepatch module for a patch")
    p.add_argument("patches", nargs="+", type=Path, metavar="PATCH")
    _add_selection(p, binaries_flag=True)
    p.add_argument("--source", type=Path, metavar="DIR", help="the kernel source tree")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR")
    p.add_argument("--name", metavar="NAME", help="module name (default: livepatch_<patch>)")
    p.add_argument("--headers", type=Path, metavar="DIR", help="kbuild tree to build against")
    p.add_argument("--build", action="store_true", help="build, write klp relocations, verify")
    p.add_argument("--try", dest="try_", action="store_true", help="also load it in a VM")
    _add_vm_options(p, "with --try: ")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--no-background", action="store_true", help="do not finish a partial index afterwards"
    )

    p = sub.add_parser("verify", help="check a built livepatch module against the kernel")
    p.add_argument("module", type=Path, metavar="MODULE.ko")
    _add_selection(p, binaries_flag=True)
    p.add_argument(
        "--patch",
        action="append",
        default=[],
        type=Path,
        metavar="PATCH",
        help="the patch the module implements (repeatable): check coverage of its replace set",
    )
    p.add_argument("--source", type=Path, metavar="DIR", help="the kernel source tree")
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")

    p = sub.add_parser("try", help="load modules into a VM of the indexed kernel")
    p.add_argument("modules", nargs="+", type=Path, metavar="MODULE.ko")
    _add_selection(p, binaries_flag=True)
    _add_vm_options(p, "")
    p.add_argument(
        "--transition-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="how long each livepatch transition may take (15)",
    )
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    p.add_argument(
        "--busybox", type=Path, metavar="PATH", help="a static busybox for the guest's arch"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("prepare-build", help="prepare a kernel build tree for check --compile")
    p.add_argument("--source", type=Path, required=True, metavar="SRC", help="kernel source")
    p.add_argument("--config", type=Path, metavar="CONFIG", help="the kernel's .config")
    p.add_argument(
        "--script",
        type=Path,
        metavar="SCRIPT",
        help="a build script with a compile mode instead of kbuild (the fixture kernel)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="the tree")
    _add_selection(p, binaries_flag=True)
    p.add_argument("--cc", metavar="CC", help="the compiler (default: the config's)")
    p.add_argument("--check-cu", metavar="FILE", help="the compile unit compiled to check")

    p = sub.add_parser("fleet", help="check a patch against many kernel builds on Dask")
    p.add_argument("patches", nargs="+", type=Path, metavar="PATCH")
    p.add_argument(
        "--kernels",
        required=True,
        metavar="FLEET",
        help="FLEET.toml, or a directory or glob of corpus kernels",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="local workers (0: one per CPU); with --scheduler, wait for N workers",
    )
    p.add_argument("--format", choices=("text", "json", "html"), default="text")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, not stdout")
    p.add_argument("--index-dir", type=Path, metavar="DIR", help="where indexes are kept")
    p.add_argument("--quiet", action="store_true", help="no progress output")

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


def _check(
    args: argparse.Namespace, then: Callable[[CheckResult, IndexSet], str] | None = None
) -> tuple[CheckResult, str]:
    # The check engine (tree-sitter, the diff parser) loads here, not for `show` and `index`.
    from klp_lsp.patch.check import Checker, cu_names_for_patch

    patches = _read_patches(args.patches)
    session = _session(args, args.binary)
    # Index the CUs the patch touches first: a first answer must not wait for the whole kernel.
    needed: list[str] | None = []
    for _name, text in patches:
        names = cu_names_for_patch(text, args.source)
        if names is None or needed is None:
            needed = None
        else:
            needed.extend(names)
    compile_tree = _build_tree(args) if getattr(args, "compile", False) else None
    if compile_tree is not None:
        # Which CUs include a touched file comes from every CU's line table.
        needed = None
    results = session.ensure_indexes(progress=_progress(False), cu_names=needed)
    extra = ""
    with session.open() as indexes:
        checker = Checker(indexes)
        if args.source is None and compile_tree is not None:
            result = checker.check_patches(patches, compile_tree.source, "the build tree's")
        else:
            result = checker.check_patches(patches, args.source)
        if compile_tree is not None:
            result = _compile_check(args, compile_tree, indexes, checker, result)
        if then is not None:
            extra = then(result, indexes)
    if any(not r.complete for r in results) and not args.no_background:
        _finish_in_background(session, results)
    return result, extra


def _build_tree(args: argparse.Namespace) -> BuildTree:
    from klp_lsp.build.tree import BuildTree

    path = args.build_tree or (
        Path(os.environ["KLP_LSP_BUILD_TREE"]) if os.environ.get("KLP_LSP_BUILD_TREE") else None
    )
    if path is None:
        raise UsageError("--compile needs --build-tree DIR (made by klp-lsp prepare-build)")
    return BuildTree.load(path)


def _compile_check(
    args: argparse.Namespace,
    tree: BuildTree,
    indexes: IndexSet,
    checker: Checker,
    result: CheckResult,
) -> CheckResult:
    from klp_lsp.build.compile_check import DEFAULT_LIMIT, CompileChecker, plan_compile

    if not any(o.index.build_id == tree.build_id for o in indexes.objects):
        raise UsageError(
            f"{tree.path} was prepared for build-id {tree.build_id}, which is not among the"
            " selected binaries"
        )
    limit = DEFAULT_LIMIT if args.compile_limit is None else args.compile_limit
    if limit < 1:
        raise UsageError("--compile-limit must be 1 or more")
    plan = plan_compile(indexes, tree, checker.images, checker.changes, result, limit)
    jobs = args.jobs or max(1, min(os.cpu_count() or 1, 8))
    return CompileChecker(tree, jobs=jobs).run(plan, result)


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


def _emit(
    fmt: str,
    result: R,
    text: Callable[[R], str],
    as_json: Callable[[R], object],
    sarif: Callable[[R], object] | None = None,
) -> None:
    """Print a result as the --format option asks."""
    if fmt == "json":
        print(json.dumps(as_json(result), indent=2))
    elif fmt == "sarif" and sarif is not None:
        print(json.dumps(sarif(result), indent=2))
    else:
        print(text(result))


def cmd_check(args: argparse.Namespace) -> int:
    from klp_lsp.patch.render import result_to_json, result_to_text
    from klp_lsp.patch.sarif import result_to_sarif

    result, _ = _check(args)
    _emit(args.format, result, result_to_text, result_to_json, result_to_sarif)
    if result.has_errors:
        return EXIT_FINDINGS
    if result.problems and not result.changed_functions:
        return EXIT_USAGE
    return EXIT_OK


def cmd_skeleton(args: argparse.Namespace) -> int:
    from klp_lsp.livepatch.skeleton import render_kbuild, skeleton_prototypes
    from klp_lsp.patch.check import Checker
    from klp_lsp.patch.render import render_skeleton

    if args.kbuild and args.output is None:
        raise UsageError("--kbuild needs -o FILE (the Kbuild file is written beside it)")

    def render(result: CheckResult, indexes: IndexSet) -> str:
        root, _note = Checker(indexes).find_source_root(args.source)
        prototypes = skeleton_prototypes(result, indexes, root)
        return render_skeleton(result, [str(p) for p in args.patches], prototypes)

    _result, text = _check(args, render)
    if args.output:
        try:
            args.output.write_text(text)
            if args.kbuild:
                stem = args.output.name.removesuffix(".c")
                (args.output.parent / "Kbuild").write_text(render_kbuild(stem))
        except OSError as e:
            raise UsageError(f"{args.output}: cannot write: {e.strerror or e}") from e
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    from klp_lsp.generate.pipeline import GenerateOptions, Generator
    from klp_lsp.generate.render import result_to_json, result_to_text
    from klp_lsp.patch.check import cu_names_for_patch

    patches = _read_patches(args.patches)
    if args.source is None:
        raise UsageError("generate needs --source DIR, the kernel source tree the patch applies to")
    if not args.source.is_dir():
        raise UsageError(f"{args.source}: no such source directory")
    session = _session(args, args.binary)
    needed: list[str] | None = []
    for _name, text in patches:
        names = cu_names_for_patch(text)
        needed = None if names is None or needed is None else [*needed, *names]
    results = session.ensure_indexes(progress=_progress(args.format == "json"), cu_names=needed)
    options = GenerateOptions(
        outdir=args.output,
        source_root=args.source,
        name=args.name,
        headers=args.headers,
        build=args.build or args.try_,
        jobs=max(args.jobs, 2) if args.jobs else 2,
    )
    with session.open() as indexes:
        gen = Generator(indexes, options)
        try:
            result = gen.generate(patches)
            if options.build and not result.has_errors:
                gen.build(result)
        finally:
            gen.close()
    if result.module is not None:
        _verify_and_try(args, session, result, patches)
    if any(not r.complete for r in results) and not args.no_background:
        _finish_in_background(session, results)
    if args.format == "json":
        print(json.dumps(result_to_json(result), indent=2))
    else:
        print(result_to_text(result))
    return result.exit_code


def _verify_and_try(
    args: argparse.Namespace,
    session: Session,
    result: GenerateResult,
    patches: Sequence[tuple[str, str]],
) -> None:
    """The verify and try steps of `generate --build`/`--try`, on the converted module."""
    from klp_lsp.livepatch.render import result_to_json as verify_json
    from klp_lsp.livepatch.verify import verify_module

    assert result.module is not None
    verified = verify_module(
        result.module, _with_dependencies(session, result.module), patches=patches,
        source_root=args.source,
    )  # fmt: skip
    result.verify = verify_json(verified)
    if verified.has_errors:
        result.steps_failed.append("verify")
    if not args.try_:
        return
    from klp_lsp.vm import try_to_json
    from klp_lsp.vm.kernel import try_in_session

    tried = try_in_session(
        session,
        [result.module],
        image=args.kernel_image,
        run=args.run,
        timeout=args.timeout,
        guest_files=args.file,
        pvh=args.pvh,
    )
    result.try_ = try_to_json(tried)
    if not tried.ok:
        result.steps_failed.append("try")


def cmd_verify(args: argparse.Namespace) -> int:
    from klp_lsp.livepatch.render import result_to_json, result_to_sarif, result_to_text
    from klp_lsp.livepatch.verify import verify_module

    if not args.module.is_file():
        raise UsageError(f"{args.module}: no such file")
    session = _session(args, args.binary)
    result = verify_module(
        args.module,
        session,
        patches=_read_patches(args.patch),
        source_root=args.source,
        progress=_progress(args.format != "text"),
    )
    _emit(args.format, result, result_to_text, result_to_json, result_to_sarif)
    return EXIT_FINDINGS if result.has_errors else EXIT_OK


def cmd_try(args: argparse.Namespace) -> int:
    from klp_lsp.vm import try_to_json, try_to_text
    from klp_lsp.vm.kernel import try_in_session

    for m in args.modules:
        if not m.is_file():
            raise UsageError(f"{m}: no such file")
    if args.timeout <= 0 or args.transition_timeout <= 0:
        raise UsageError("--timeout and --transition-timeout must be positive")
    session = _session(args, args.binary)
    result = try_in_session(
        session,
        args.modules,
        image=args.kernel_image,
        run=args.run,
        timeout=args.timeout,
        transition_timeout=args.transition_timeout,
        accel=args.accel,
        busybox=args.busybox,
        guest_files=args.file,
        pvh=args.pvh,
    )
    _emit(args.format, result, try_to_text, try_to_json)
    return EXIT_OK if result.ok else EXIT_FINDINGS


def _with_dependencies(session: Session, module: Path) -> Session:
    """The session, plus the modules a generated module imports from (its `depends=`), found
    in the module tree of the selected modules, so that verify knows their exports."""
    from klp_lsp.binary.discovery import module_dependencies
    from klp_lsp.session import Session, is_module_file

    selected = session.binary_files()
    extra: list[Path] = []
    for f in selected:
        tree = next((p for p in f.resolve().parents if p.name == "kernel"), None)
        if is_module_file(f) and tree is not None:
            extra += [d for d in module_dependencies(module, tree) if d not in extra]
            break
    if not extra:
        return session
    return Session([*selected, *extra], session.kernel, session.index_dir, session.jobs)


def cmd_prepare_build(args: argparse.Namespace) -> int:
    from klp_lsp.build.prepare import prepare_build

    if args.config is None and args.script is None:
        raise UsageError("prepare-build needs --config CONFIG (kbuild) or --script SCRIPT")
    session = _session(args, args.binary)
    results = session.ensure_indexes(progress=_progress(False))
    with session.open() as indexes:
        # The tree is for the kernel itself: the vmlinux when there is one.
        obj = indexes.get_object("vmlinux") or indexes.objects[0]
        jobs = args.jobs or max(1, min(os.cpu_count() or 1, 8))
        tree = prepare_build(
            obj,
            args.source,
            args.output,
            config=args.config,
            script=args.script,
            cc=args.cc,
            jobs=jobs,
            check_cu=args.check_cu,
        )
    del results
    r = tree.reproducibility
    print(f"build tree: {tree.path} ({tree.kind}, {tree.cc}: {' '.join(tree.compiler)})")
    for change in tree.config_changes[:10]:
        print(f"  olddefconfig changed {change}")
    if r is not None:
        state = "reproduces" if r.ok else "DOES NOT reproduce"
        print(
            f"{r.object} {state} the index: {r.matching} of {r.functions} functions with the"
            f" same name and size (compiled in {r.seconds} s)"
        )
        for d in r.differences[:10]:
            print(f"  {d}")
    return EXIT_OK if r is None or r.ok else EXIT_FINDINGS


def cmd_fleet(args: argparse.Namespace) -> int:
    from klp_lsp.fleet.engine import FleetOptions, require_dask, run_fleet
    from klp_lsp.fleet.render import report_to_html, report_to_json, report_to_text
    from klp_lsp.fleet.spec import load_fleet
    from klp_lsp.index.locate import default_index_dir

    if args.workers < 0:
        raise UsageError("--workers must be 0 (one per CPU) or more")
    require_dask()
    fleet = load_fleet(args.kernels)
    patches = _read_patches(args.patches)
    options = FleetOptions(
        index_dir=args.index_dir or default_index_dir(),
        scheduler=args.scheduler,
        workers=args.workers,
    )

    def notify(line: str) -> None:
        if not args.quiet:
            print(f"klp-lsp: {line}", file=sys.stderr)

    report = run_fleet(fleet, patches, options, _progress(args.quiet), notify)
    if args.format == "json":
        text = json.dumps(report_to_json(report), indent=2)
    elif args.format == "html":
        text = report_to_html(report)
    else:
        color = args.output is None and sys.stdout.isatty()
        text = report_to_text(report, color=color)
    if args.output:
        try:
            args.output.write_text(text if text.endswith("\n") else text + "\n")
        except OSError as e:
            raise UsageError(f"{args.output}: cannot write: {e.strerror or e}") from e
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    if any(k.status != "ok" for k in report.kernels):
        return EXIT_FINDINGS
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from klp_lsp.lsp.server import serve

    return serve(tcp=args.tcp, log_file=args.log_file)


_COMMANDS = {
    "index": cmd_index,
    "show": cmd_show,
    "check": cmd_check,
    "skeleton": cmd_skeleton,
    "generate": cmd_generate,
    "verify": cmd_verify,
    "try": cmd_try,
    "prepare-build": cmd_prepare_build,
    "fleet": cmd_fleet,
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
