"""Which `.c` files are compiled inside others: the kernel #includes some `.c` files into one
compile unit, and DWARF then names only the including file as the CU.

Light on purpose (no parser): the language server asks it at start-up for the files to index
first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def with_including_files(names: Sequence[str], source_root: Path | None) -> list[str]:
    """`names` (tree-relative `.c` files) and, after them, the files that #include them."""
    out = list(dict.fromkeys(names))
    if source_root is not None:
        for name in list(out):
            out.extend(n for n in including_files(source_root, name) if n not in out)
    return out


def including_files(source_root: Path, rel: str) -> list[str]:
    """The `.c` files beside `rel` that `#include "<its name>"`.

    The kernel compiles some `.c` files only inside others: since Linux 5.18
    kernel/sched/build_policy.c includes rt.c, deadline.c, idle.c..., and build_utility.c
    includes more; fs/compat_binfmt_elf.c includes binfmt_elf.c. DWARF then names only the
    including file as the CU.
    """
    path = source_root / rel
    # A path such as `../../x.c` must not make klp-lsp read outside the tree.
    if not rel.endswith(".c") or not path.resolve().is_relative_to(source_root.resolve()):
        return []
    if not path.parent.is_dir():
        return []
    line = f'#include "{path.name}"'
    out = []
    for other in sorted(path.parent.glob("*.c")):
        if other.name == path.name:
            continue
        try:
            text = other.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if line in text:
            out.append(other.relative_to(source_root).as_posix())
    return out
