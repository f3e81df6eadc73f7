"""Finding a kernel's debug files in a fake root built from the real fixture kernels."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from klp_lsp.binary.discovery import find_kernel_debug, install_hint, iter_module_files
from klp_lsp.binary.elf import SHT_NOTE, ElfBinary
from klp_lsp.errors import DebugInfoMissing

FIXTURES = Path(__file__).parent / "fixtures" / "build"
VMLINUX = FIXTURES / "x86_64" / "vmlinux"
RELEASE = "6.1.0-99-test-amd64"


def place(root: Path, relative: str, source: Path = VMLINUX) -> Path:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def os_release(root: Path, text: str) -> None:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text(text)


@pytest.mark.parametrize(
    "relative",
    [
        f"usr/lib/debug/boot/vmlinux-{RELEASE}",
        f"usr/lib/debug/lib/modules/{RELEASE}/vmlinux",
        f"lib/modules/{RELEASE}/build/vmlinux",
        f"boot/vmlinux-{RELEASE}",
    ],
)
def test_each_search_path(tmp_path: Path, relative: str) -> None:
    expected = place(tmp_path, relative)
    found = find_kernel_debug(RELEASE, root=tmp_path)
    assert (found.vmlinux, found.release) == (expected, RELEASE)


def test_debug_package_path_wins_and_modules_dir_is_reported(tmp_path: Path) -> None:
    place(tmp_path, f"boot/vmlinux-{RELEASE}")
    first = place(tmp_path, f"usr/lib/debug/boot/vmlinux-{RELEASE}")
    place(
        tmp_path,
        f"usr/lib/debug/lib/modules/{RELEASE}/kernel/drivers/demo.ko",
        FIXTURES / "x86_64" / "demo.ko",
    )
    found = find_kernel_debug(RELEASE, root=tmp_path)
    assert found.vmlinux == first
    assert found.modules_dir == tmp_path / f"usr/lib/debug/lib/modules/{RELEASE}"
    assert list(iter_module_files(found.modules_dir)) == [
        found.modules_dir / "kernel/drivers/demo.ko"
    ]


@pytest.mark.skipif(shutil.which("objcopy") is None, reason="needs objcopy")
def test_vmlinux_without_dwarf_is_skipped_and_named(tmp_path: Path) -> None:
    stripped = place(tmp_path, f"boot/vmlinux-{RELEASE}")
    subprocess.run(["objcopy", "--strip-debug", str(stripped)], check=True)
    os_release(tmp_path, 'ID=debian\nVERSION_ID="12"\n')
    with pytest.raises(DebugInfoMissing) as error:
        find_kernel_debug(RELEASE, root=tmp_path)
    message = str(error.value)
    assert f"{stripped} has no DWARF" in message
    assert f"apt-get install linux-image-{RELEASE}-dbg" in message


def test_running_kernel_through_its_build_id(tmp_path: Path) -> None:
    source = next(
        p for p in (FIXTURES / "arm64" / "vmlinux", VMLINUX) if ElfBinary.open(p).get_gnu_build_id()
    )
    with ElfBinary.open(source) as binary:
        build_id = binary.get_gnu_build_id()
        assert build_id is not None
        notes = b"".join(
            bytes(binary.get_section_data(s.name) or b"")
            for s in binary.sections
            if s.type == SHT_NOTE
        )
    (tmp_path / "sys/kernel").mkdir(parents=True)
    (tmp_path / "sys/kernel/notes").write_bytes(notes)
    expected = place(
        tmp_path, f"usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug", source
    )
    found = find_kernel_debug(None, root=tmp_path)
    assert (found.vmlinux, found.release) == (expected, os.uname().release)
    # Another release never looks at the running kernel's build-id.
    with pytest.raises(DebugInfoMissing):
        find_kernel_debug(RELEASE, root=tmp_path)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ('ID=debian\nVERSION_ID="12"\n', f"apt-get install linux-image-{RELEASE}-dbg"),
        ("ID=ubuntu\nID_LIKE=debian\n", f"apt-get install linux-image-{RELEASE}-dbgsym"),
        ('ID="fedora"\n', f"debuginfo-install kernel-{RELEASE}"),
        ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', f"debuginfo-install kernel-{RELEASE}"),
        (
            'ID="opensuse-leap"\nID_LIKE="suse opensuse"\n',
            "zypper install kernel-default-debuginfo",
        ),
        ("ID=arch\n", f"install the debug-info package of kernel {RELEASE}"),
    ],
)
def test_install_hint(tmp_path: Path, text: str, hint: str) -> None:
    os_release(tmp_path, text)
    assert install_hint(RELEASE, tmp_path).startswith(hint)
    with pytest.raises(
        DebugInfoMissing, match=f"no debug vmlinux for kernel {RELEASE}.*{hint[:20]}"
    ):
        find_kernel_debug(RELEASE, root=tmp_path)


def test_install_hint_without_os_release(tmp_path: Path) -> None:
    assert "debug-info package" in install_hint(RELEASE, tmp_path)


def test_iter_module_files(tmp_path: Path) -> None:
    for name in (
        "b/z.ko.zst",
        "a/y.ko.xz",
        "a/x.ko",
        "a/readme.txt",
        "a/x.ko.sig",
        "c/w.mod.ko.gz",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_module_files(tmp_path)]
    assert found == ["a/x.ko", "a/y.ko.xz", "b/z.ko.zst"]
