"""`try` for a session: the selected kernel's image, its modules that live patches target."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from klp_lsp.binary.discovery import module_dependencies
from klp_lsp.binary.elf import ElfBinary
from klp_lsp.errors import KlpError, UsageError
from klp_lsp.session import Session, is_module_file
from klp_lsp.vm.image import find_kernel_image, pvh_image
from klp_lsp.vm.runner import AccelChoice, TryResult, try_modules


def try_in_session(
    session: Session,
    modules: Sequence[Path],
    *,
    image: Path | None = None,
    run: str | None = None,
    timeout: float = 120.0,
    transition_timeout: float = 15.0,
    accel: AccelChoice = "auto",
    busybox: Path | None = None,
    guest_files: Sequence[Path] = (),
    pvh: bool = False,
) -> TryResult:
    """Boot the image of the kernel `session` selects with `modules` (see `try_modules`).

    With `pvh`, the vmlinux itself is booted (x86-64 CONFIG_PVH: no firmware, no
    decompression; the same kernel code as its image).
    A live patch of a module (`klp_object.name`) needs that module loaded to patch it: when
    the selection holds that module's `.ko` and the user did not list it, it is loaded first.
    """
    files = session.binary_files()
    vmlinux = next((f for f in files if not is_module_file(f)), None)
    if vmlinux is None:
        raise UsageError("try needs the kernel's vmlinux in the selection (--binary or --kernel)")
    with ElfBinary.open(vmlinux) as binary:
        arch = binary.arch
        raw = binary.get_symbol_bytes("linux_banner")
        banner = None if raw is None else raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        magic = binary.get_symbol_bytes("vermagic")
        release = None if magic is None else magic.split(b" ", 1)[0].decode()
    found = find_kernel_image if not pvh else None
    kernel = pvh_image(vmlinux) if found is None else found(vmlinux, release, banner, arch, image)
    ordered = _with_targets(list(modules), [f for f in files if is_module_file(f)])
    return try_modules(
        ordered,
        image=kernel.path,
        arch=arch,
        run=run,
        timeout=timeout,
        transition_timeout=transition_timeout,
        accel=accel,
        busybox=busybox,
        cache_dir=session.index_dir,
        files=guest_files,
    )


def _with_targets(modules: list[Path], available: Sequence[Path]) -> list[Path]:
    from klp_lsp.binary.livepatch import read_livepatch_module

    names: dict[str, Path] = {}
    for path in available:
        try:
            with ElfBinary.open(path) as binary:
                names.setdefault(binary.object_name, path)
        except KlpError:
            continue
    listed = set()
    for path in modules:
        try:
            with ElfBinary.open(path) as binary:
                listed.add(binary.object_name)
        except KlpError:
            continue
    first: list[Path] = []
    for path in modules:
        try:
            lp = read_livepatch_module(path)
        except KlpError:
            continue
        for f in lp.funcs:
            target = names.get(f.object)
            if f.object != "vmlinux" and f.object not in listed and target is not None:
                listed.add(f.object)
                for dep in module_dependencies(target):
                    if dep not in first:
                        first.append(dep)
                first.append(target)
    return [*first, *modules]
