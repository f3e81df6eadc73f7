"""`klp-lsp try`'s pieces: the initramfs writer, image discovery, qemu command lines, the
guest's report; and, opt-in, a real boot of Debian's 6.1 image with live patches built against
its headers (KLP_VM_IMAGE, or the corpus image, plus linux-headers-6.1.0-56-cloud-amd64;
.ci/run provides both).
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from klp_fixtures import ROOT, corpus_dir, fixture_binary

from klp_lsp.errors import ToolMissing, UsageError
from klp_lsp.vm import try_modules, try_to_json
from klp_lsp.vm.image import find_kernel_image, parse_banner, read_image_version
from klp_lsp.vm.initramfs import build_initramfs, directory, file, symlink, write_newc
from klp_lsp.vm.qemu import Guest, GuestRun, command_line
from klp_lsp.vm.runner import _init_script, _Module, _parse, find_busybox

RELEASE = "6.1.0-56-cloud-amd64"
BUILD = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"
BANNER = f"Linux version {RELEASE} (debian-kernel@lists.debian.org) (gcc-12 12.2.0) {BUILD}\n"


def _read_newc(data: bytes) -> list[tuple[str, int, bytes]]:
    out, pos = [], 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        pos += 110
        name = data[pos : pos + namesize - 1].decode()
        pos = (pos + namesize + 3) // 4 * 4
        body = data[pos : pos + size]
        pos = (pos + size + 3) // 4 * 4
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, body))


def test_newc_archive_round_trip() -> None:
    entries = [directory("bin"), file("bin/x", b"abc", executable=True), symlink("bin/sh", "x")]
    archive = write_newc(entries)
    assert _read_newc(archive) == [
        ("bin", 0o040755, b""), ("bin/x", 0o100755, b"abc"), ("bin/sh", 0o120777, b"x")
    ]  # fmt: skip
    assert build_initramfs(entries) == build_initramfs(entries)  # deterministic
    assert gzip.decompress(build_initramfs(entries)) == archive
    busybox = shutil.which("busybox")
    if busybox:
        listed = subprocess.run(
            [busybox, "cpio", "-t"], input=archive, capture_output=True, check=True
        )
        assert listed.stdout.decode().split() == ["bin", "bin/x", "bin/sh"]


def _bzimage(path: Path, version: str) -> Path:
    data = bytearray(0x1000)
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x20E, 0x800 - 0x200)
    data[0x800 : 0x800 + len(version)] = version.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def test_image_versions(tmp_path: Path) -> None:
    assert parse_banner(BANNER) == (RELEASE, BUILD)
    bz = _bzimage(tmp_path / "bz", f"{RELEASE} (debian-kernel@lists.debian.org) {BUILD}")
    image = read_image_version(bz)
    assert (image.release, image.build) == (RELEASE, BUILD)
    arm = tmp_path / "Image.gz"
    arm.write_bytes(gzip.compress(b"\0" * 64 + BANNER.encode() + b"\0" * 64))
    assert read_image_version(arm).release == RELEASE


def test_find_image_beside_the_dbg_package(tmp_path: Path) -> None:
    # The Debian corpus layout: the -dbg package and the image package unpacked side by side.
    vmlinux = tmp_path / "amd64/dbg/usr/lib/debug/boot" / f"vmlinux-{RELEASE}"
    vmlinux.parent.mkdir(parents=True)
    vmlinux.write_bytes(b"")
    want = _bzimage(tmp_path / f"amd64/image/boot/vmlinuz-{RELEASE}",
                    f"{RELEASE} (debian-kernel@lists.debian.org) {BUILD}")  # fmt: skip
    assert find_kernel_image(vmlinux, RELEASE, BANNER, "x86_64").path == want
    other = _bzimage(tmp_path / "other", f"6.1.0-50-cloud-amd64 (x) {BUILD}")
    with pytest.raises(UsageError, match=r"kernel image of 6\.1\.0-50-cloud-amd64"):
        find_kernel_image(vmlinux, RELEASE, BANNER, "x86_64", explicit=other)
    with pytest.raises(UsageError, match=r"no bootable image of kernel 6\.1\.0-9-none"):
        find_kernel_image(vmlinux, "6.1.0-9-none", None, "x86_64")


def test_qemu_command_lines(tmp_path: Path) -> None:
    if shutil.which("qemu-system-x86_64") and shutil.which("qemu-system-aarch64"):
        g = Guest("x86_64", tmp_path / "k", tmp_path / "i", "console=ttyS0")
        cmd = command_line(g, "tcg")
        assert cmd[1:5] == ["-accel", "tcg", "-cpu", "max"] and "-nodefaults" in cmd
        arm = command_line(Guest("aarch64", tmp_path / "k", tmp_path / "i", ""), "tcg")
        assert arm[1:7] == ["-M", "virt", "-accel", "tcg", "-cpu", "max"]


def test_missing_tools_name_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissing, match=r"install the Debian package qemu-system-x86$"):
        try_modules([fixture_binary("x86_64", "livepatch/lp_ok.ko")], image=Path("/x"),
                    arch="x86_64")  # fmt: skip
    monkeypatch.setattr(Path, "is_file", lambda self: False)
    with pytest.raises(ToolMissing, match="busybox-static"):
        find_busybox("x86_64")


def test_guest_report_parsing() -> None:
    mods = [_Module(Path("/m/a.ko"), "a", True), _Module(Path("/m/b.ko"), "b", True),
            _Module(Path("/m/c.ko"), "c", False), _Module(Path("/m/d.ko"), "d", True)]  # fmt: skip
    script = _init_script("t0k", mods, "cat /proc/cmdline", 5.0)
    assert "load 0 /modules/0.ko a 1" in script and "load 2 /modules/2.ko c 0" in script
    assert "while [ $n -lt 50 ]" in script and script.rstrip().endswith("poweroff -f")
    t = "@@KLP-t0k"
    lines = (
        "Booting...", f"{t} BOOTED {RELEASE} 1.42", f"{t} MODULE 0 a", f"{t} INSMOD 0 0",
        f"{t} LIVEPATCH 0 1 1 0", f"{t} LOG 0 [    7.40] livepatch: 'a': patching complete",
        f"{t} MODULE 1 b", f"{t} ERR 1 insmod: can't insert '/modules/1.ko': Invalid argument",
        f"{t} INSMOD 1 1", f"{t} LOG 1 [    7.50] livepatch: symbol 'x' not found in symbol table",
        "[    7.50] livepatch: symbol 'x' not found in symbol table",
        f"{t} INSMOD 2 0", f"{t} INSMOD 3 0", f"{t} LIVEPATCH 3 1 1 1",
        f"{t} RUN", f"{t} OUT hello", f"{t} RUN-STATUS 0", f"{t} DONE",
        "[    9.00] reboot: Power down",
    )  # fmt: skip
    result = _parse("t0k", mods, "cat /proc/cmdline", GuestRun(lines, "tcg", 0, False, 3.2, ""),
                    Path("/boot/vmlinuz"))  # fmt: skip
    a, b, c, d = result.modules
    assert result.booted and result.release == RELEASE and result.console == ()
    assert result.boot_seconds == 1.42
    assert (a.loaded, a.enabled, a.transition) == (True, True, "complete")
    assert a.kernel_log == ("livepatch: 'a': patching complete",)
    assert (b.loaded, b.transition, b.insmod_status) == (False, "failed", 1)
    assert b.errors == ("insmod: can't insert '/modules/1.ko': Invalid argument",)
    assert (c.loaded, c.transition, c.enabled) == (True, None, None)
    assert d.transition == "stuck" and not result.ok
    assert result.run is not None and (result.run.output, result.run.status) == ("hello", 0)
    doc = try_to_json(result)
    assert set(doc) >= {"booted", "modules", "run"}
    assert set(doc["modules"][0]) >= {"name", "loaded", "enabled", "transition", "kernel_log"}


# --- a real boot ---------------------------------------------------------------------------


def _vm_image() -> Path | None:
    value = os.environ.get("KLP_VM_IMAGE")
    if value:
        return Path(value)
    corpus = corpus_dir()
    candidates = [Path(f"/boot/vmlinuz-{RELEASE}")]
    if corpus is not None:
        candidates.insert(0, corpus / "amd64" / "image" / "boot" / f"vmlinuz-{RELEASE}")
    return next((c for c in candidates if c.is_file()), None)


HEADERS = Path(os.environ.get("KLP_KERNEL_HEADERS", f"/usr/src/linux-headers-{RELEASE}"))


@pytest.mark.skipif(
    _vm_image() is None
    or not (HEADERS / "Makefile").exists()
    or shutil.which("qemu-system-x86_64") is None
    or shutil.which("busybox") is None,
    reason=f"needs the {RELEASE} image (KLP_VM_IMAGE), its headers, qemu and busybox-static",
)
def test_boot_debian_kernel_and_load_live_patches(tmp_path: Path) -> None:
    image = _vm_image()
    assert image is not None
    sources = ROOT / "tests" / "corpus" / "livepatch"
    for name in ("lp_cmdline.c", "lp_sympos.c", "lp_common.h"):
        shutil.copy(sources / name, tmp_path / name)
    (tmp_path / "Kbuild").write_text("obj-m += lp_cmdline.o lp_sympos.o\n")
    done = subprocess.run(["make", "-C", str(HEADERS), f"M={tmp_path}", "modules"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = try_modules(
        [tmp_path / "lp_cmdline.ko", tmp_path / "lp_sympos.ko"],
        image=image,
        arch="x86_64",
        run="cat /proc/cmdline",
        timeout=180,
        cache_dir=tmp_path,
    )
    good, bad = result.modules
    assert result.booted and result.release == RELEASE, result.notes
    assert (good.loaded, good.enabled, good.transition) == (True, True, "complete")
    assert "livepatch: 'lp_cmdline': patching complete" in good.kernel_log
    assert (bad.loaded, bad.transition) == (False, "failed")
    assert any("unresolvable ambiguity for symbol 'active_show'" in x for x in bad.kernel_log)
    assert result.run is not None and result.run.output == "this has been live patched"


@pytest.mark.skipif(
    corpus_dir() is None
    or not os.environ.get("KLP_BUSYBOX_ARM64")
    or shutil.which("qemu-system-aarch64") is None,
    reason="needs KLP_CORPUS_DIR, KLP_BUSYBOX_ARM64 (a static aarch64 busybox) and qemu-system-arm",
)
def test_boot_debian_arm64_kernel(tmp_path: Path) -> None:
    """qemu-system-aarch64 -M virt -cpu max: the arm64 image boots, loads Debian's own dummy.ko,
    and refuses a module of another build with the kernel's vermagic message."""
    corpus = corpus_dir()
    assert corpus is not None
    arm = corpus / "arm64"
    image = arm / "image" / "boot" / "vmlinuz-6.1.0-56-cloud-arm64"
    result = try_modules(
        [arm / "modules" / "drivers" / "net" / "dummy.ko",
         fixture_binary("arm64", "livepatch/lp_ok.ko")],
        image=image, arch="aarch64", run="uname -m", timeout=300, cache_dir=tmp_path,
        busybox=Path(os.environ["KLP_BUSYBOX_ARM64"]),
    )  # fmt: skip
    dummy, lp = result.modules
    assert result.booted and result.release == "6.1.0-56-cloud-arm64"
    assert dummy.loaded and dummy.transition is None
    assert not lp.loaded and lp.transition == "failed"
    assert any("version magic '6.1.0-klp-demo" in x for x in lp.kernel_log)
    assert result.run is not None and result.run.output == "aarch64"


def test_pvh_needs_the_note() -> None:
    # The fixture vmlinux has no Xen PVH note (readelf -n shows only GNU and Linux notes).
    from klp_lsp.vm.image import pvh_image

    with pytest.raises(UsageError, match="no PVH entry note"):
        pvh_image(fixture_binary("x86_64"))
    corpus = corpus_dir()
    if corpus is not None:
        image = pvh_image(corpus / "amd64" / "vmlinux")
        assert (image.release, image.build) == (RELEASE, BUILD)
