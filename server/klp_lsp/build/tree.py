"""Prepared build trees: a kernel source tree and an output directory ready to compile one object.

`prepare_build` makes one for an indexed kernel (`make O=DIR olddefconfig prepare` with its
`.config`), after checking that the compiler is the one `DW_AT_producer` names, and then checks
once that compiling one compile unit reproduces the index's function names and sizes. The tree
is described by `DIR/klp-build-tree.json`, which `BuildTree.load` reads back.

A tree is either `kbuild` (a Linux source tree driven by make) or `script`: a build script with
a compile mode (`SCRIPT compile ARCH SRC OUT CU...`), which is how the fixture kernel's
`tests/fixtures/build.sh` serves as a build tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from klp_lsp.analysis.producer import compiler_identity
from klp_lsp.errors import BuildError, UsageError
from klp_lsp.index.query import ObjectIndex
from klp_lsp.index.store import CuRow, source_name

MANIFEST = "klp-build-tree.json"
MANIFEST_VERSION = 1
TreeKind = Literal["kbuild", "script"]
# kbuild's ARCH and the usual cross-compiler prefix of each architecture klp-lsp reads.
MAKE_ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}
_CROSS_COMPILE = {"x86_64": "x86_64-linux-gnu-", "aarch64": "aarch64-linux-gnu-"}
_HOST_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
# Config symbols olddefconfig rewrites from the compiler it finds; a change there is expected.
_TOOLCHAIN_SYMBOLS = frozenset(
    (
        "CONFIG_CC_VERSION_TEXT", "CONFIG_GCC_VERSION", "CONFIG_CLANG_VERSION",
        "CONFIG_LD_VERSION", "CONFIG_AS_VERSION", "CONFIG_LLD_VERSION", "CONFIG_PAHOLE_VERSION",
        "CONFIG_CC_IS_GCC", "CONFIG_CC_IS_CLANG", "CONFIG_AS_IS_GNU", "CONFIG_LD_IS_BFD",
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reproducibility:
    """The one-time check that the tree compiles to what the index describes."""

    cu: str
    object: str
    functions: int  # FUNC symbols the index has for the CU
    matching: int  # of those, found in the compiled object with the same size
    differences: tuple[str, ...]  # "name: size 120 in the index, 128 compiled", "name: missing"
    seconds: float

    @property
    def ok(self) -> bool:
        return self.functions > 0 and self.matching == self.functions


@dataclass(frozen=True, slots=True)
class BuildTree:
    """A prepared build tree, as `klp-build-tree.json` records it."""

    path: Path  # the tree directory (kbuild: the O= output directory)
    kind: TreeKind
    source: Path  # the kernel source it compiles (never written to)
    arch: str  # "x86_64" / "aarch64", as the index names it
    cc: str
    compiler: tuple[str, str]  # ("GCC", "12.2.0")
    build_id: str  # of the indexed binary the tree was prepared for
    object: str  # its livepatch object name ("vmlinux")
    script: Path | None = None  # kind "script": the build script
    make_arch: str = ""
    cross_compile: str = ""
    config_changes: tuple[str, ...] = ()  # CONFIG_ lines olddefconfig changed
    reproducibility: Reproducibility | None = None
    variables: dict[str, str] = field(default_factory=dict)  # extra make variables

    @property
    def work_dir(self) -> Path:
        """klp-lsp's own files in the tree: overlays, patched objects, the result cache."""
        return self.path / ".klp-lsp"

    def make_command(self, jobs: int, *targets: str) -> list[str]:
        """`make` of the kernel source into this tree, for `targets`."""
        cmd = ["make", "-s", "-C", str(self.source), f"O={self.path}", f"-j{max(jobs, 1)}"]
        cmd += [f"ARCH={self.make_arch}", f"CC={self.cc}"]
        if self.cross_compile:
            cmd.append(f"CROSS_COMPILE={self.cross_compile}")
        cmd += [f"{k}={v}" for k, v in sorted(self.variables.items())]
        return [*cmd, *targets]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "kind": self.kind,
            "source": str(self.source),
            "arch": self.arch,
            "cc": self.cc,
            "compiler": list(self.compiler),
            "build_id": self.build_id,
            "object": self.object,
            "script": None if self.script is None else str(self.script),
            "make_arch": self.make_arch,
            "cross_compile": self.cross_compile,
            "config_changes": list(self.config_changes),
            "reproducibility": None
            if self.reproducibility is None
            else asdict(self.reproducibility),
            "variables": self.variables,
        }

    def save(self) -> None:
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, self.path / MANIFEST)

    @classmethod
    def load(cls, path: Path) -> BuildTree:
        """Read a prepared tree; a missing or foreign directory is a one-line `UsageError`."""
        manifest = path / MANIFEST
        try:
            data = json.loads(manifest.read_text())
        except FileNotFoundError:
            raise UsageError(
                f"{path}: not a prepared build tree (no {MANIFEST}); run klp-lsp prepare-build"
            ) from None
        except (OSError, ValueError) as e:
            raise UsageError(f"{manifest}: unreadable: {e}") from e
        if data.get("version") != MANIFEST_VERSION:
            raise UsageError(f"{manifest}: version {data.get('version')}; prepare it again")
        try:
            repro = data.get("reproducibility")
            tree = cls(
                path=path.resolve(),
                kind=data["kind"],
                source=Path(data["source"]),
                arch=data["arch"],
                cc=data["cc"],
                compiler=(data["compiler"][0], data["compiler"][1]),
                build_id=data["build_id"],
                object=data["object"],
                script=Path(data["script"]) if data.get("script") else None,
                make_arch=data.get("make_arch", ""),
                cross_compile=data.get("cross_compile", ""),
                config_changes=tuple(data.get("config_changes", ())),
                reproducibility=None
                if repro is None
                else Reproducibility(
                    repro["cu"],
                    repro["object"],
                    repro["functions"],
                    repro["matching"],
                    tuple(repro["differences"]),
                    repro["seconds"],
                ),
                variables=dict(data.get("variables", {})),
            )
        except (KeyError, IndexError, TypeError) as e:
            raise UsageError(f"{manifest}: malformed ({e!r}); prepare it again") from e
        if not tree.source.is_dir():
            raise UsageError(f"{manifest}: its source tree {tree.source} is gone")
        return tree


def object_of_cu(cu_name: str) -> str | None:
    """The kbuild object a C compile unit becomes (`kernel/fork.c` -> `kernel/fork.o`)."""
    if cu_name.endswith(".c") and not cu_name.endswith(".mod.c") and not cu_name.startswith("/"):
        return cu_name[:-2] + ".o"
    return None


def indexed_compiler(obj: ObjectIndex) -> tuple[tuple[str, str], str]:
    """The compiler that built most C compile units of an indexed object, and one producer."""
    seen: Counter[tuple[str, str]] = Counter()
    example: dict[tuple[str, str], str] = {}
    for cu in obj.cus().values():
        if cu.unit.is_asm:
            continue
        ident = compiler_identity(cu.unit.producer)
        if ident is not None:
            seen[ident] += 1
            example.setdefault(ident, cu.unit.producer)
    if not seen:
        raise UsageError(f"{obj.object}: no C compile unit names its compiler (DW_AT_producer)")
    ident = seen.most_common(1)[0][0]
    return ident, example[ident]


def run_compiler_version(cc: str) -> tuple[tuple[str, str], str]:
    """(identity, first line of `cc --version`) of a compiler command."""
    try:
        proc = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UsageError(f"{cc}: cannot run the compiler: {e}") from e
    first = (proc.stdout or proc.stderr).splitlines()[:1]
    ident = compiler_identity(first[0]) if first else None
    if proc.returncode != 0 or ident is None:
        raise UsageError(f"{cc}: `{cc} --version` does not name a GCC or clang version")
    return ident, first[0]


def check_compiler(cc: str, obj: ObjectIndex) -> tuple[str, str]:
    """Refuse a compiler whose version differs from the one that built the indexed object."""
    wanted, producer = indexed_compiler(obj)
    have, text = run_compiler_version(cc)
    if have != wanted:
        raise UsageError(
            f"{cc} is {have[0]} {have[1]} ({text}), but {obj.object} was built by"
            f" {wanted[0]} {wanted[1]} (DW_AT_producer: {producer.split(' -', 1)[0]}): another"
            " compiler version inlines, clones and lays out code differently, so its objects"
            " would differ from the kernel's even without the patch; pass --cc with"
            f" {wanted[0]} {wanted[1]}"
        )
    return have


def default_cc(config: Path | None, arch: str) -> str:
    """The compiler the config was made with (`CONFIG_CC_VERSION_TEXT`), if installed."""
    cross = "" if _HOST_ARCH.get(os.uname().machine) == arch else _CROSS_COMPILE.get(arch, "")
    if config is not None:
        try:
            for line in config.read_text(errors="replace").splitlines():
                if line.startswith("CONFIG_CC_VERSION_TEXT="):
                    first = line.split("=", 1)[1].strip('"').split(" ", 1)[0]
                    if first and shutil.which(first):
                        return first
        except OSError:
            pass
    return f"{cross}gcc"


def _config_symbols(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            out[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:].split(" ", 1)[0]] = "n"
    return out


def config_changes(before: str, after: str) -> list[str]:
    """CONFIG_ symbols whose value olddefconfig changed, toolchain versions aside."""
    a, b = _config_symbols(before), _config_symbols(after)
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key in _TOOLCHAIN_SYMBOLS or a.get(key, "n") == b.get(key, "n"):
            continue
        out.append(f"{key}: {a.get(key, 'n')} -> {b.get(key, 'n')}")
    return out


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


def run_make(cmd: Sequence[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    except OSError as e:
        raise BuildError(f"{what}: cannot run make: {e}") from e
    if proc.returncode != 0:
        raise BuildError(f"{what} failed: {_tail(proc.stderr or proc.stdout)}")


def build_env() -> dict[str, str]:
    """The environment of every build step: the C locale, so compiler messages are stable."""
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    return env


def choose_check_cu(obj: ObjectIndex, wanted: str | None) -> CuRow:
    """The compile unit compiled once to check reproducibility."""
    cus = [c for c in obj.cus().values() if not c.unit.is_asm]
    by_name = {source_name(c.unit.name, c.unit.comp_dir): c for c in cus}
    if wanted is not None:
        found = by_name.get(source_name(wanted, ""))
        if found is None:
            raise UsageError(f"--check-cu {wanted}: no such compile unit in {obj.object}")
        return found
    # A mid-sized CU of the core kernel: quick to compile, present in every configuration.
    sized = []
    for name, c in sorted(by_name.items()):
        if object_of_cu(name) is None:
            continue
        n = len(obj.symbol_sizes_of_cu(c.unit.offset))
        if n:
            sized.append((not name.startswith("kernel/"), abs(n - 100), name, c))
    if not sized:
        raise UsageError(f"{obj.object}: no C compile unit with functions to compile")
    return min(sized, key=lambda t: t[:3])[3]


def compare_symbols(
    indexed: Iterable[tuple[str, int]], compiled: Iterable[tuple[str, int]]
) -> tuple[int, int, list[str]]:
    """(functions, matching, differences) between the index's FUNC symbols of a CU and an
    object's. Symbols only in the object (weak stubs the link overrode, static-call
    trampolines placed elsewhere) are not differences."""
    have: dict[str, list[int]] = {}
    for name, size in compiled:
        have.setdefault(name, []).append(size)
    functions = matching = 0
    differences = []
    for name, size in sorted(indexed):
        functions += 1
        sizes = have.get(name)
        if not sizes:
            differences.append(f"{name}: not in the compiled object")
        elif size in sizes:
            matching += 1
            sizes.remove(size)
        else:
            differences.append(f"{name}: {size} bytes in the index, {sizes[0]} compiled")
    return functions, matching, differences
