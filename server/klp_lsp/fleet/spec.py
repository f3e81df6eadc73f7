"""The fleet file: which kernel builds a patch is checked against.

`FLEET.toml` lists `[[kernel]]` tables (`name`, `binaries`, `source`, optional `image` and
`headers`; a top-level `source` is the default). A directory or a glob of corpus kernels
(`get-debian-kernel`'s layout: `<root>/debian-<version>/<flavour-arch>/vmlinux`, `src/` beside)
works too. Paths are checked when the fleet runs: a missing file fails its kernel, not the fleet.
"""

from __future__ import annotations

import glob
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.errors import UsageError

_KERNEL_KEYS = frozenset({"name", "binaries", "source", "image", "headers"})
_TOP_KEYS = frozenset({"source", "kernel"})
# Debian's kernel release: ABI, then flavour and arch (`6.1.0-56-cloud-amd64`, `6.1.0-56-amd64`).
_RELEASE = re.compile(r"^(\d+\.\d+\.\d+-\d+)-(.+)$")


@dataclass(frozen=True, slots=True)
class KernelSpec:
    """One kernel build of the fleet."""

    name: str
    binaries: tuple[Path, ...]  # vmlinux, .ko files and directories searched for modules
    source: Path | None  # the source tree it was built from; None: from DW_AT_comp_dir
    image: Path | None = None  # the bootable image, for reports
    headers: Path | None = None  # the kbuild tree, for reports


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """The kernels of a fleet, in the order the user gave them."""

    origin: str  # the fleet file, directory or glob it was read from
    kernels: tuple[KernelSpec, ...]


def load_fleet(where: str) -> FleetSpec:
    """Read a fleet from FLEET.toml, a directory of corpus kernels, or a glob of them."""
    path = Path(os.path.expanduser(where))
    if path.is_file():
        return parse_fleet_file(path)
    if path.is_dir():
        kernels = corpus_kernels([path])
        if not kernels:
            raise UsageError(f"{where}: no kernel directory (one holding a vmlinux) found here")
        return FleetSpec(where, tuple(kernels))
    if where.endswith(".toml"):
        raise UsageError(f"{where}: no such fleet file")
    matches = sorted(glob.glob(os.path.expanduser(where)))
    if not matches:
        raise UsageError(f"{where}: no such file, directory or glob match")
    kernels = corpus_kernels([Path(m) for m in matches])
    if not kernels:
        raise UsageError(f"{where}: no kernel (a vmlinux or a directory holding one) matches")
    return FleetSpec(where, tuple(kernels))


def parse_fleet_file(path: Path) -> FleetSpec:
    """Parse and validate FLEET.toml; relative paths are relative to its directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read fleet file: {e}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from e
    return FleetSpec(str(path), tuple(fleet_from_mapping(data, path.parent, str(path))))


def fleet_from_mapping(data: Mapping[str, object], base: Path, where: str) -> list[KernelSpec]:
    """The kernels of a parsed fleet file (`where` names it in messages)."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        keys = ", ".join(unknown)
        raise UsageError(f"{where}: unknown key(s) {keys}; expected source and [[kernel]]")
    default_source = _optional_path(data.get("source"), base, f"{where}: source")
    tables = data.get("kernel")
    if not isinstance(tables, list) or not tables:
        raise UsageError(f"{where}: no [[kernel]] tables")
    kernels: list[KernelSpec] = []
    seen: set[str] = set()
    for i, table in enumerate(tables, 1):
        label = f"{where}: kernel {i}"
        if not isinstance(table, Mapping):
            raise UsageError(f"{label}: must be a [[kernel]] table")
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise UsageError(f"{label}: needs a name (a non-empty string)")
        label = f"{where}: kernel {name!r}"
        bad = sorted(set(table) - _KERNEL_KEYS)
        if bad:
            allowed = ", ".join(sorted(_KERNEL_KEYS))
            raise UsageError(f"{label}: unknown key(s) {', '.join(bad)}; expected {allowed}")
        if name in seen:
            raise UsageError(f"{label}: the name is used twice")
        seen.add(name)
        binaries = table.get("binaries")
        if isinstance(binaries, str):
            binaries = [binaries]
        if not isinstance(binaries, list) or not binaries:
            raise UsageError(f"{label}: binaries must be a non-empty list of paths")
        paths = [_optional_path(b, base, f"{label}: binaries") for b in binaries]
        source = _optional_path(table.get("source"), base, f"{label}: source")
        kernels.append(
            KernelSpec(
                name=name,
                binaries=tuple(p for p in paths if p is not None),
                source=source if source is not None else default_source,
                image=_optional_path(table.get("image"), base, f"{label}: image"),
                headers=_optional_path(table.get("headers"), base, f"{label}: headers"),
            )
        )
    return kernels


def _optional_path(value: object, base: Path, label: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"{label} must be a path (a non-empty string)")
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    return path if path.is_absolute() else base / path


def corpus_kernels(paths: Iterable[Path]) -> list[KernelSpec]:
    """Kernels in corpus directories: each path is a vmlinux, a kernel directory, or holds some.

    A kernel directory is one with a `vmlinux`; it contributes that vmlinux only (list modules
    in a fleet file), its `image/boot/vmlinuz-*`, the `src/` tree beside it and the installed
    `/usr/src/linux-headers-<release>` when they exist.
    """
    found: list[tuple[Path, Path]] = []
    for p in paths:
        if p.is_file():
            found.append((p.parent, p))
        elif (p / "vmlinux").exists():
            found.append((p, p / "vmlinux"))
        elif p.is_dir():
            # A version directory (debian-6.1.192-2/) or the corpus root above them.
            for sub in sorted(p.iterdir()):
                if (sub / "vmlinux").exists():
                    found.append((sub, sub / "vmlinux"))
                elif sub.is_dir() and sub.name != "src":
                    kdirs = [d for d in sorted(sub.iterdir()) if (d / "vmlinux").exists()]
                    found.extend((d, d / "vmlinux") for d in kdirs)
    kernels: list[KernelSpec] = []
    names: dict[str, int] = {}
    for kdir, vmlinux in dict.fromkeys(found):
        release = _release_of(vmlinux)
        name = _kernel_name(kdir, release)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name} ({names[name]})"
        src = kdir.parent / "src"
        images = sorted((kdir / "image" / "boot").glob("vmlinuz-*"))
        headers = Path("/usr/src") / f"linux-headers-{release}" if release else None
        kernels.append(
            KernelSpec(
                name=name,
                binaries=(vmlinux,),
                source=src if src.is_dir() else None,
                image=images[0] if images else None,
                headers=headers if headers is not None and headers.is_dir() else None,
            )
        )
    return kernels


def _release_of(vmlinux: Path) -> str | None:
    # The corpus links vmlinux to the -dbg package's /usr/lib/debug/boot/vmlinux-<release>:
    # follow the links one at a time until a name says the release.
    path = vmlinux
    for _ in range(8):
        if path.name.startswith("vmlinux-"):
            return path.name.removeprefix("vmlinux-")
        if not path.is_symlink():
            break
        path = path.parent / os.readlink(path)
    return None


def _kernel_name(kdir: Path, release: str | None) -> str:
    """`cloud-amd64 6.1.0-56` from Debian's release; Debian's generic flavour has no prefix."""
    m = _RELEASE.match(release or "")
    if m is None:
        return kdir.name
    abi, flavour_arch = m.groups()
    if "-" not in flavour_arch:
        flavour_arch = f"generic-{flavour_arch}"
    return f"{flavour_arch} {abi}"
