"""Finding the bootable image of an indexed kernel, and checking that it is the same build.

The image is looked for as the debug binaries are (binary/discovery.py): `--kernel-image`, then
`/boot/vmlinuz-R` and `/lib/modules/R/vmlinuz`, then beside the debug vmlinux: a Debian `-dbg`
package unpacked next to the image package (`X/dbg/usr/lib/debug/boot/vmlinux-R` and
`X/image/boot/vmlinuz-R`), or a kernel build tree (`arch/<arch>/boot/bzImage` or `Image`).
A found image must carry the same version string as the vmlinux's `linux_banner`. The vmlinux
itself can be given as the image on x86-64: qemu boots an ELF kernel with a PVH note
(CONFIG_PVH) directly, which skips the firmware and the decompression (0.7-1.7 s under TCG,
bench/vm_try.py).
"""

from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.binary.elf import ElfBinary
from klp_lsp.errors import KlpError, UsageError
from klp_lsp.model import Arch

_BANNER = re.compile(rb"Linux version (\S+) \(.*?\) (#.*?)\n")


@dataclass(frozen=True, slots=True)
class KernelImage:
    """A bootable kernel image and the version it says it is."""

    path: Path
    release: str | None
    build: str | None  # "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"


def parse_banner(banner: str) -> tuple[str | None, str | None]:
    """(release, "#..." build string) of a `linux_banner` ("Linux version R (...) (...) #...")."""
    m = re.match(r"Linux version (\S+) .*?(#\S*\s.*)$", banner.strip(), re.S)
    if m is None:
        return None, None
    return m.group(1), m.group(2).strip()


def read_image_version(path: Path) -> KernelImage:
    """The release and build string an image carries (bzImage header, or the banner inside)."""
    try:
        head = path.open("rb").read(0x1000)
    except OSError as e:
        raise UsageError(f"{path}: cannot read kernel image: {e.strerror or e}") from e
    if head[:4] == b"\x7fELF":
        # An uncompressed vmlinux: qemu boots it through its PVH entry (x86 CONFIG_PVH) with no
        # firmware and no decompression.
        with ElfBinary.open(path) as binary:
            raw = binary.get_symbol_bytes("linux_banner")
        if raw is None:
            return KernelImage(path, None, None)
        release, build = parse_banner(raw.split(b"\0", 1)[0].decode("utf-8", "replace"))
        return KernelImage(path, release, build)
    if len(head) >= 0x210 and head[0x202:0x206] == b"HdrS":
        # x86 boot protocol (Documentation/x86/boot.rst): kernel_version at 0x20e points to a
        # NUL-terminated "R (builder) #build" string, 0x200 bytes before its value.
        (pointer,) = struct.unpack_from("<H", head, 0x20E)
        data = path.read_bytes()[pointer + 0x200 : pointer + 0x200 + 512]
        text = data.split(b"\0", 1)[0].decode("utf-8", "replace")
        release, _, rest = text.partition(" ")
        build = rest[rest.find("#") :] if "#" in rest else None
        return KernelImage(path, release or None, build)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise UsageError(f"{path}: cannot decompress kernel image: {e}") from e
    m = _BANNER.search(data)
    if m is None:
        return KernelImage(path, None, None)
    return KernelImage(path, m.group(1).decode(), m.group(2).decode("utf-8", "replace"))


# include/xen/interface/elfnote.h XEN_ELFNOTE_PHYS32_ENTRY: the PVH entry point qemu boots.
_XEN_ELFNOTE_PHYS32_ENTRY = 18


def pvh_image(vmlinux: Path) -> KernelImage:
    """The vmlinux itself as a bootable image (x86-64 with CONFIG_PVH), or `UsageError`."""
    with ElfBinary.open(vmlinux) as binary:
        if binary.arch != "x86_64" or not any(
            name == b"Xen" and ntype == _XEN_ELFNOTE_PHYS32_ENTRY
            for name, ntype, _desc in binary.iter_notes()
        ):
            raise UsageError(
                f"{vmlinux}: no PVH entry note (an x86-64 kernel built with CONFIG_PVH boots"
                " directly); boot its image instead"
            )
    return read_image_version(vmlinux)


def _candidates(vmlinux: Path | None, release: str, arch: Arch) -> Iterator[Path]:
    yield Path(f"/boot/vmlinuz-{release}")
    yield Path(f"/lib/modules/{release}/vmlinuz")
    if vmlinux is None:
        return
    boot_image = "bzImage" if arch == "x86_64" else "Image"
    arch_dir = "x86" if arch == "x86_64" else "arm64"
    for start in dict.fromkeys((vmlinux.absolute().parent, vmlinux.resolve().parent)):
        yield start / "arch" / arch_dir / "boot" / boot_image
        for up in [start, *list(start.parents)[:6]]:
            yield up / "boot" / f"vmlinuz-{release}"
            try:
                children = sorted(p for p in up.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                yield child / "boot" / f"vmlinuz-{release}"


def find_kernel_image(
    vmlinux: Path | None,
    release: str | None,
    banner: str | None,
    arch: Arch,
    explicit: Path | None = None,
) -> KernelImage:
    """The image to boot for the indexed kernel; `UsageError` naming where it looked."""
    want_release, want_build = parse_banner(banner) if banner else (release, None)
    want_release = want_release or release
    if explicit is not None:
        image = read_image_version(explicit)
        _check_same(image, want_release, want_build)
        return image
    if want_release is None:
        raise UsageError(
            "the indexed kernel's release is not known (no vermagic or linux_banner in its"
            " vmlinux); pass --kernel-image"
        )
    looked: list[str] = []
    for path in dict.fromkeys(_candidates(vmlinux, want_release, arch)):
        looked.append(str(path))
        if not path.is_file():
            continue
        try:
            image = read_image_version(path)
        except KlpError:
            continue
        if image.release == want_release and (
            want_build is None or image.build is None or _same_build(image.build, want_build)
        ):
            return image
    shown = ", ".join(looked[:4]) + (f" and {len(looked) - 4} more" if len(looked) > 4 else "")
    raise UsageError(
        f"no bootable image of kernel {want_release} found (looked at {shown}); install"
        f" linux-image-{want_release} or pass --kernel-image"
    )


def _same_build(a: str, b: str) -> bool:
    # Debian's vmlinux banner can lack the build number ("# SMP" where the image has "#1 SMP").
    return re.sub(r"^#\d*\s*", "", a) == re.sub(r"^#\d*\s*", "", b)


def _check_same(image: KernelImage, release: str | None, build: str | None) -> None:
    if release is not None and image.release is not None and image.release != release:
        raise UsageError(
            f"{image.path}: kernel image of {image.release}, but the indexed kernel is {release}"
        )
    if build and image.build and not _same_build(image.build, build):
        raise UsageError(
            f"{image.path}: kernel image '{image.build}' is another build than the indexed"
            f" vmlinux ('{build}')"
        )
