"""`klp-lsp prepare-build`: make a build tree for an indexed kernel and check it once.

A kbuild tree is `make -C SRC O=DIR olddefconfig prepare` with the kernel's `.config`; a script
tree only records the script. Both are then checked the same way: one compile unit is compiled
and its FUNC symbols' names and sizes are compared with the index, which is what tells whether
objects from this tree can be compared with the kernel at all.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from klp_lsp.binary.elf import ElfBinary
from klp_lsp.build.backend import backend_for
from klp_lsp.build.tree import (
    MAKE_ARCH,
    BuildTree,
    Reproducibility,
    build_env,
    check_compiler,
    choose_check_cu,
    compare_symbols,
    config_changes,
    default_cc,
    object_of_cu,
    run_make,
)
from klp_lsp.errors import UsageError
from klp_lsp.index.query import ObjectIndex
from klp_lsp.index.store import source_name


def _cross_prefix(cc: str) -> str:
    """`aarch64-linux-gnu-` of `aarch64-linux-gnu-gcc-12`: kbuild's CROSS_COMPILE."""
    name = Path(cc).name
    head, sep, _ = name.rpartition("gcc")
    return head if sep and head.endswith("-") else ""


def prepare_build(
    obj: ObjectIndex,
    source: Path,
    output: Path,
    *,
    config: Path | None = None,
    script: Path | None = None,
    cc: str | None = None,
    jobs: int = 1,
    check_cu: str | None = None,
) -> BuildTree:
    """Prepare `output` to compile objects of the kernel `obj` indexes from `source`."""
    source = source.resolve()
    output = output.resolve()
    if not source.is_dir():
        raise UsageError(f"{source}: no such source tree")
    if output == source or output.parent == source:
        # kbuild then names the source tree `.` or `..`, and the patched commands could not
        # be pointed at an overlay.
        raise UsageError(f"{output}: put the build tree outside the source tree {source}")
    arch = obj.index.arch
    if arch not in MAKE_ARCH:
        raise UsageError(f"{obj.object}: architecture {arch} is not supported")
    if script is None:
        if not (source / "Makefile").is_file() or not (source / "Kconfig").is_file():
            raise UsageError(f"{source}: not a kernel source tree (no Makefile and Kconfig)")
        if config is None:
            raise UsageError("prepare-build needs --config (the .config) for a kernel tree")
        if (source / ".config").exists() or (source / "include" / "config").exists():
            raise UsageError(
                f"{source}: the source tree was configured in place (.config); kbuild builds"
                " into another directory only from a clean tree (make mrproper)"
            )
    elif not script.is_file():
        raise UsageError(f"{script}: no such build script")
    cc = cc or default_cc(config, arch)
    compiler = check_compiler(cc, obj)
    output.mkdir(parents=True, exist_ok=True)
    tree = BuildTree(
        path=output,
        kind="script" if script is not None else "kbuild",
        source=source,
        arch=arch,
        cc=cc,
        compiler=compiler,
        build_id=obj.index.build_id,
        object=obj.object,
        script=None if script is None else script.resolve(),
        make_arch=MAKE_ARCH[arch],
        cross_compile=_cross_prefix(cc),
    )
    if script is None:
        assert config is not None
        try:
            given = config.read_text(errors="replace")
        except OSError as e:
            raise UsageError(f"{config}: cannot read the config: {e.strerror or e}") from e
        (output / ".config").write_text(given)
        run_make(
            tree.make_command(jobs, "olddefconfig", "prepare"),
            f"make O={output} olddefconfig prepare",
            build_env(),
        )
        changes = config_changes(given, (output / ".config").read_text(errors="replace"))
        tree = replace(tree, config_changes=tuple(changes))
    tree = replace(tree, reproducibility=check_reproducibility(tree, obj, jobs, check_cu))
    tree.save()
    return tree


def check_reproducibility(
    tree: BuildTree, obj: ObjectIndex, jobs: int, check_cu: str | None = None
) -> Reproducibility:
    """Compile one CU and compare its FUNC symbols' names and sizes with the index."""
    cu = choose_check_cu(obj, check_cu)
    name = source_name(cu.unit.name, cu.unit.comp_dir)
    target = object_of_cu(name)
    if target is None:
        raise UsageError(f"{name}: not a C compile unit kbuild can build on its own")
    started = time.monotonic()
    built = backend_for(tree).build_original([target], jobs)[target]
    with ElfBinary.open(built) as compiled:
        symbols = [(s.name, s.size) for s in compiled.iter_function_symbols()]
    functions, matching, differences = compare_symbols(
        obj.symbol_sizes_of_cu(cu.unit.offset), symbols
    )
    return Reproducibility(
        cu=name,
        object=target,
        functions=functions,
        matching=matching,
        differences=tuple(differences[:20]),
        seconds=round(time.monotonic() - started, 1),
    )
