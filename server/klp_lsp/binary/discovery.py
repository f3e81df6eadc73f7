"""Find the debug vmlinux and debug modules of an installed kernel release, and list modules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.binary.elf import ElfBinary, parse_gnu_build_id
from klp_lsp.errors import DebugInfoMissing, KlpError

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst")


@dataclass(frozen=True, slots=True)
class KernelDebugFiles:
    """The debug files of one kernel release."""

    vmlinux: Path
    modules_dir: Path | None
    release: str


def _running_build_id(root: Path) -> str | None:
    """The running kernel's build-id from `/sys/kernel/notes` under `root`, or None."""
    try:
        return parse_gnu_build_id((root / "sys/kernel/notes").read_bytes())
    except OSError:
        return None


def _candidates(release: str, root: Path, running: bool) -> Iterator[Path]:
    yield root / f"usr/lib/debug/boot/vmlinux-{release}"
    yield root / f"usr/lib/debug/lib/modules/{release}/vmlinux"
    yield root / f"lib/modules/{release}/build/vmlinux"
    yield root / f"boot/vmlinux-{release}"
    if running:
        build_id = _running_build_id(root)
        if build_id and len(build_id) > 2:
            yield root / f"usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug"


def _os_release(root: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (root / name).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip("\"'")
        break
    return values


def install_hint(release: str, root: Path = Path("/")) -> str:
    """The command that installs the debug info of `release` on the distribution under `root`."""
    info = _os_release(root)
    ids = {info.get("ID", "")} | set(info.get("ID_LIKE", "").split())
    if "ubuntu" in ids:
        return f"apt-get install linux-image-{release}-dbgsym"
    if "debian" in ids:
        return f"apt-get install linux-image-{release}-dbg"
    if ids & {"fedora", "rhel", "centos", "rocky", "almalinux"}:
        return f"debuginfo-install kernel-{release}"
    if ids & {"suse", "opensuse", "sles"}:
        return "zypper install kernel-default-debuginfo"
    return f"install the debug-info package of kernel {release} (it provides a vmlinux with DWARF)"


def find_kernel_debug(release: str | None = None, root: Path = Path("/")) -> KernelDebugFiles:
    """Find the vmlinux with DWARF of `release` (default: the running kernel) under `root`."""
    running_release = os.uname().release
    release = release or running_release
    without_dwarf: list[Path] = []
    for path in _candidates(release, root, release == running_release):
        if not path.is_file():
            continue
        try:
            with ElfBinary.open(path) as binary:
                usable = binary.has_dwarf
        except KlpError:
            usable = False
        if usable:
            modules = root / f"usr/lib/debug/lib/modules/{release}"
            return KernelDebugFiles(path, modules if modules.is_dir() else None, release)
        without_dwarf.append(path)
    seen = f" ({', '.join(map(str, without_dwarf))} has no DWARF)" if without_dwarf else ""
    raise DebugInfoMissing(
        f"no debug vmlinux for kernel {release}{seen}; run: {install_hint(release, root)}"
    )


def iter_module_files(directory: Path) -> Iterator[Path]:
    """Every `.ko`, `.ko.xz` and `.ko.zst` file below `directory`, sorted by path."""
    found = [
        p for p in directory.rglob("*.ko*") if p.name.endswith(MODULE_SUFFIXES) and p.is_file()
    ]
    yield from sorted(found)


def module_dependencies(module: Path, tree: Path | None = None) -> list[Path]:
    """The modules `module` needs loaded first (its `depends=` modinfo, recursively), in load
    order, found in `tree` or else in the module tree it belongs to (the `kernel/` directory
    above it, as in /lib/modules/R/kernel and Debian's -dbg packages)."""
    if tree is None:
        tree = next((p for p in module.resolve().parents if p.name == "kernel"), None)
    if tree is None:
        return []
    files: dict[str, Path] | None = None
    out: list[Path] = []

    def visit(path: Path, depth: int) -> None:
        nonlocal files
        try:
            with ElfBinary.open(path) as binary:
                depends = binary.get_modinfo().get("depends", "")
        except KlpError:
            return
        for name in filter(None, depends.split(",")):
            if files is None:
                files = {}
                for f in iter_module_files(tree):
                    files.setdefault(f.name.split(".ko")[0].replace("-", "_"), f)
            dep = files.get(name.replace("-", "_"))
            if dep is not None and dep not in out and depth < 16:
                visit(dep, depth + 1)
                if dep not in out:
                    out.append(dep)

    visit(module, 0)
    return out
