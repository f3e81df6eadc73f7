"""End-to-end: with the `fleet` setting, diagnostics on a patch say which kernels they apply to.

The fleet: the x86-64 and arm64 fixture kernels, the x86-64 one with a source tree the patch's
first hunk does not apply to (so `demo_account` is not changed there), and a module nobody has
indexed. Indexes are built beforehand, as `klp-lsp fleet` leaves them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lsp_support import FIXTURES, KERNEL_SRC, PATCHES, open_document, options, start
from lsp_support import wait_for_diagnostics as wait
from lsprotocol import types
from pytest_lsp import LanguageClient

from klp_lsp.binary.elf import ElfBinary
from klp_lsp.index.builder import build_index

DEMO_PATCH = PATCHES / "demo.patch"


def _binary(arch: str, name: str = "vmlinux") -> Path:
    return FIXTURES / "build" / arch / name


def _fleet(tmp_path: Path, index_dir: Path) -> Path:
    for arch in ("x86_64", "arm64"):
        for name in ("vmlinux", "demo.ko"):
            build_index(_binary(arch, name), index_dir, jobs=1)
    old = tmp_path / "old-tree"
    shutil.copytree(KERNEL_SRC, old)
    core = old / "kernel" / "demo_core.c"
    core.write_text(core.read_text().replace("\tif (bytes > 4096)\n", "\tif (bytes >= 4096)\n"))
    # demo.ko under another build-id: a valid module with no index.
    data = bytearray(_binary("x86_64", "demo.ko").read_bytes())
    with ElfBinary.open(_binary("x86_64", "demo.ko")) as b:
        build_id = bytes.fromhex(b.build_id)
    at = data.find(build_id)
    data[at : at + len(build_id)] = bytes(x ^ 0xFF for x in build_id)
    other = tmp_path / "other" / "demo.ko"
    other.parent.mkdir()
    other.write_bytes(bytes(data))

    def q(*paths: Path) -> str:
        return json.dumps([str(p) for p in paths])

    fleet = tmp_path / "FLEET.toml"
    fleet.write_text(
        f"source = {json.dumps(str(KERNEL_SRC))}\n"
        f"[[kernel]]\nname = 'x86_64'\n"
        f"binaries = {q(_binary('x86_64'), _binary('x86_64', 'demo.ko'))}\n"
        f"[[kernel]]\nname = 'arm64'\n"
        f"binaries = {q(_binary('arm64'), _binary('arm64', 'demo.ko'))}\n"
        f"[[kernel]]\nname = 'old tree'\nbinaries = {q(_binary('x86_64'))}\n"
        f"source = {json.dumps(str(old))}\n"
        f"[[kernel]]\nname = 'unindexed'\nbinaries = {q(_binary('x86_64'), other)}\n"
    )
    return fleet


async def test_fleet_diagnostics_name_their_kernels(client: LanguageClient, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    fleet = _fleet(tmp_path, index_dir)
    await start(client, options(index_dir, fleet=str(fleet)))
    uri = open_document(client, DEMO_PATCH, "diff")
    diagnostics = await wait(client, uri)
    by_code: dict[str, list[str]] = {}
    for d in diagnostics:
        by_code.setdefault(str(d.code), []).append(d.message)
    # demo_account's hunk does not apply to the old tree: found on two of the three kernels.
    (not_patchable_account,) = [m for m in by_code["not-patchable"] if "demo_account" in m]
    assert not_patchable_account.startswith(
        "not-patchable on 2 of 3 kernels: x86_64, arm64. demo_account cannot be patched"
    )
    (not_patchable_step,) = [m for m in by_code["not-patchable"] if "demo_lib_step" in m]
    assert not_patchable_step.startswith("on all 3 kernels: demo_lib_step cannot be patched")
    (regs,) = by_code["register-dependents"]
    assert regs.startswith("on all 3 kernels: 1 caller(s) keep values in rcx, rdx, r8, r9, r10")
    problems = by_code["input-problem"]
    assert problems == [
        "on 1 of 3 kernels: old tree. hunk does not apply to kernel/demo_core.c in the tree"
    ]
    not_checked = [m.message for m in client.messages if "not checked" in m.message]
    assert len(not_checked) == 1
    assert "1 of 4 kernels not checked: unindexed (not indexed yet)" in not_checked[0]
    assert f"klp-lsp fleet PATCH --kernels {fleet}" in not_checked[0]


async def test_wrong_fleet_setting_is_reported(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path, fleet=str(tmp_path / "FLEET.toml")))
    wrong = [m for m in client.messages if "wrong settings" in m.message]
    assert len(wrong) == 1
    assert f"fleet: {tmp_path / 'FLEET.toml'}: no such fleet file" in wrong[0].message
    assert wrong[0].type == types.MessageType.Warning
