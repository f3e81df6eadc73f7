"""`klp-lsp verify` on the committed fixture live patches (tests/fixtures/kernel/samples/livepatch,
built by build.sh for both architectures): each module fails the check it is written to fail.

Facts checked by hand on the committed builds: `readelf -rW build/x86_64/livepatch/lp_reloc.ko`
shows `.klp.rela.vmlinux..text` with 4 entries at 0x14, 0x22, 0x2a, 0x41 against
`.klp.sym.vmlinux.demo_hash,0`, `...demo_hash,2`, `...demo_verbose,0`, `...demo_missing,0`,
symbols in section 0xff20 (SHN_LIVEPATCH); `readelf -sW lp_ok.ko` shows `funcs` 456 bytes
(3 × 152: two entries and the terminator) and `objs` 504 (3 × 168).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from klp_fixtures import ARCHES, FIXTURES, fixture_binary

from klp_lsp.binary.livepatch import read_livepatch_module
from klp_lsp.errors import BinaryFormatError, NotLivepatchModule
from klp_lsp.livepatch.render import (
    result_to_json,
    result_to_markdown,
    result_to_sarif,
    result_to_text,
)
from klp_lsp.livepatch.verify import VERIFY_FINDING_KINDS, VerifyResult, verify_module
from klp_lsp.session import Session

ROOT = Path(__file__).resolve().parent.parent
PATCHES = FIXTURES / "patches"
SOURCE = FIXTURES / "kernel"


def module(arch: str, name: str) -> Path:
    return fixture_binary(arch, f"livepatch/{name}.ko")


def verify(arch: str, name: str, index_dir: Path, patches: tuple[str, ...] = ()) -> VerifyResult:
    session = Session(
        [fixture_binary(arch), fixture_binary(arch, "demo.ko")], None, index_dir, jobs=1
    )
    texts = [(p, (PATCHES / p).read_text()) for p in patches]
    return verify_module(module(arch, name), session, patches=texts, source_root=SOURCE)


def kinds(result: VerifyResult) -> list[tuple[str, str, str | None]]:
    return [(f.kind, f.severity, f.function) for f in result.all_findings]


# --- reading modules -------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_read_klp_patch_arrays(arch: str) -> None:
    m = read_livepatch_module(module(arch, "lp_ok"))
    assert m.format == "klp_patch" and m.name == "lp_ok" and m.replace is False
    got = [(f.object, f.old_name, f.old_sympos, f.new_func) for f in m.funcs]
    assert got == [
        ("vmlinux", "demo_fill", 0, "livepatch_demo_fill"),
        ("vmlinux", "demo_hash", 2, "livepatch_demo_hash"),
        ("demo", "demo_util_count", 0, "livepatch_demo_util_count"),
    ]
    assert m.funcs[1].where.startswith("objs[0].funcs[1] at .data+")
    assert m.get_modinfo("livepatch") == "Y"
    assert m.get_modinfo(
        "vermagic",
    ) == "6.1.0-klp-demo SMP mod_unload modversions " + ("aarch64" if arch == "arm64" else "")
    assert "klp_enable_patch" in m.imports and m.relocations == () and m.problems == ()


@pytest.mark.parametrize("arch", ARCHES)
def test_read_kpatch_and_klp_build_records(arch: str) -> None:
    kp = read_livepatch_module(module(arch, "kp_demo"))
    assert kp.format == "kpatch"
    assert [(f.object, f.old_name, f.old_sympos, f.new_func) for f in kp.funcs] == [
        ("vmlinux", "demo_fill", 0, "livepatch_demo_fill"),
        ("vmlinux", "demo_hash", 2, "livepatch_demo_hash"),
    ]
    kb = read_livepatch_module(module(arch, "kb_demo"))
    assert kb.format == "klp-build"
    assert sorted((f.object, f.old_name, f.new_func) for f in kb.funcs) == [
        ("demo", "demo_util_count", "livepatch_demo_util_count"),
        ("vmlinux", "demo_fill", "livepatch_demo_fill"),
    ]


def test_read_klp_relocations_as_readelf_shows_them() -> None:
    m = read_livepatch_module(module("x86_64", "lp_reloc"))
    got = [(r.section, r.target_section, r.offset, r.sym_object, r.sym_name, r.sympos)
           for r in m.relocations]  # fmt: skip
    assert got == [
        (".klp.rela.vmlinux..text", ".text", 0x14, "vmlinux", "demo_hash", 0),
        (".klp.rela.vmlinux..text", ".text", 0x22, "vmlinux", "demo_hash", 2),
        (".klp.rela.vmlinux..text", ".text", 0x2A, "vmlinux", "demo_verbose", 0),
        (".klp.rela.vmlinux..text", ".text", 0x41, "vmlinux", "demo_missing", 0),
    ]
    assert all(r.livepatch_symbol and r.problem is None for r in m.relocations)
    readelf = subprocess.run(
        ["readelf", "-rW", str(module("x86_64", "lp_reloc"))], capture_output=True, text=True
    )
    assert "Relocation section '.klp.rela.vmlinux..text'" in readelf.stdout
    assert ".klp.sym.vmlinux.demo_missing,0 - 4" in readelf.stdout


@pytest.mark.parametrize("arch", ARCHES)
def test_not_a_livepatch_module(arch: str, tmp_path: Path) -> None:
    with pytest.raises(NotLivepatchModule, match=r"demo\.ko: not a livepatch module"):
        read_livepatch_module(fixture_binary(arch, "demo.ko"))
    with pytest.raises(NotLivepatchModule, match="not a kernel module"):
        read_livepatch_module(fixture_binary(arch))
    cut = tmp_path / "cut.ko"
    cut.write_bytes(module(arch, "lp_ok").read_bytes()[:3000])
    with pytest.raises(BinaryFormatError, match=r"cut\.ko: truncated"):
        read_livepatch_module(cut)


# --- one module per finding kind ---------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_clean_module(arch: str, fixture_index_dir: Path) -> None:
    r = verify(arch, "lp_ok", fixture_index_dir)
    assert r.all_findings == () and not r.has_errors
    assert [v.status for v in r.functions] == ["ok", "ok", "ok"]
    sched = r.functions[1].target
    assert sched is not None and sched.sympos == 2
    # System.map: the demo_hash of kernel/demo_sched.c.
    assert sched.address == (0xFFFFFFFF81000670 if arch == "x86_64" else 0xFFFF800008000720)
    assert r.kernel_vermagic is not None and r.kernel_vermagic.startswith("6.1.0-klp-demo ")


@pytest.mark.parametrize("arch", ARCHES)
def test_unresolved_symbols(arch: str, fixture_index_dir: Path) -> None:
    r = verify(arch, "lp_sympos", fixture_index_dir)
    assert kinds(r) == [("unresolved-symbol", "error", n)
                        for n in ("demo_hash", "demo_hash", "demo_account")]  # fmt: skip
    messages = [f.message for f in r.all_findings]
    assert "'unresolvable ambiguity for symbol 'demo_hash' in object '(null)''" in messages[0]
    assert "old_sympos = 2 for the one at" in messages[0] and "kernel/demo_sched.c" in messages[0]
    assert "'symbol position 3 for symbol 'demo_hash' in object 'vmlinux' not found'" in messages[1]
    assert "fully inlined" in messages[2]
    assert "demo_submit, demo_complete, demo_reset" in messages[2]
    assert all(v.status == "error" and v.target is None for v in r.functions)


@pytest.mark.parametrize("arch", ARCHES)
def test_unpatchable_targets(arch: str, fixture_index_dir: Path) -> None:
    r = verify(arch, "lp_ftrace", fixture_index_dir)
    names = ["demo_notrace_count", "demo_noinstr_enter", "demo_setup"]
    if arch == "x86_64":
        names.append("demo_bug.cold")
    assert kinds(r) == [("unpatchable-target", "error", n) for n in names]
    init = r.all_findings[2].message
    assert "in .init.text" in init and "freed after boot" in init
    if arch == "x86_64":
        assert "replace demo_bug, which the .cold part belongs to" in r.all_findings[3].message


@pytest.mark.parametrize("arch", ARCHES)
def test_abi_of_clone_and_swapped_parameters(arch: str, fixture_index_dir: Path) -> None:
    r = verify(arch, "lp_abi", fixture_index_dir)
    assert kinds(r) == [("abi-mismatch", "error", "demo_req_cost.isra.0"),
                        ("abi-mismatch", "error", "demo_fill")]  # fmt: skip
    first, swap = (f.message for f in r.all_findings)
    reg0, reg1 = ("rdi", "rsi") if arch == "x86_64" else ("x0", "x1")
    # objdump -d: demo_req_cost.isra.0 computes from edi/w0 (req->len), never dereferences it.
    assert "req: GCC replaced it" in first and f"reads it from {reg0}" in first
    assert f"argument registers it reads at entry: {reg0}" in first
    assert f"len: demo_fill takes it in {reg1}, the replacement reads it from {reg0}" in swap
    assert f"buf: demo_fill takes it in {reg0}, the replacement reads it from {reg1}" in swap


@pytest.mark.parametrize("arch", ARCHES)
def test_register_clobber(arch: str, fixture_index_dir: Path) -> None:
    r = verify(arch, "lp_regs", fixture_index_dir)
    assert kinds(r) == [("unpatchable-target", "error", "demo_lib_step"),
                        ("register-clobber", "error", "demo_lib_step")]  # fmt: skip
    clobber = r.all_findings[1]
    # tests/fixtures/README.md "Call sites": what demo_lib_sum keeps across the call.
    regs = "rcx, rdx, r8, r9, r10" if arch == "x86_64" else "x2, x3, x4, x5, x6, x7"
    assert f"writes {regs}" in clobber.message
    assert [rel.name for rel in clobber.related] == ["demo_lib_sum"]


@pytest.mark.parametrize("arch", ARCHES)
def test_coverage_against_the_patch(arch: str, fixture_index_dir: Path) -> None:
    r = verify(arch, "lp_coverage", fixture_index_dir, ("demo.patch",))
    missing = sorted(f.function or "" for f in r.findings if f.severity == "error")
    assert missing == ["demo_complete", "demo_lookup", "demo_lookup.part.0", "demo_reset"]
    extra = [f.function for f in r.findings if f.severity == "information"]
    assert extra == ["demo_kick"]
    assert {f.kind for f in r.findings} == {"coverage"}
    assert r.patches == ("demo.patch",)
    # Without the patch, nothing to compare with.
    assert verify(arch, "lp_coverage", fixture_index_dir).all_findings == ()


@pytest.mark.parametrize("arch", ARCHES)
def test_klp_relocations(arch: str, fixture_index_dir: Path) -> None:
    r = verify(arch, "lp_reloc", fixture_index_dir)
    assert kinds(r) == [("klp-relocation", "error", None)] * 2
    ambiguous, missing = (f.message for f in r.all_findings)
    assert "(.klp.sym.vmlinux.demo_hash,0)" in ambiguous and "unresolvable ambiguity" in ambiguous
    assert "demo_hash,2 at" in ambiguous
    assert "'symbol 'demo_missing' not found in symbol table'" in missing


@pytest.mark.parametrize("arch", ARCHES)
def test_vermagic_and_livepatch_modinfo(arch: str, fixture_index_dir: Path) -> None:
    r = verify(arch, "lp_vermagic", fixture_index_dir)
    assert kinds(r) == [("vermagic", "error", None)] * 2
    marked, magic = (f.message for f in r.all_findings)
    assert "not marked as a livepatch module" in marked
    assert "version magic '6.1.0-other SMP mod_unload modversions ' should be" in magic


def test_every_kind_has_a_page() -> None:
    for kind in VERIFY_FINDING_KINDS:
        assert (ROOT / "docs" / "findings" / f"{kind}.md").is_file(), kind


# --- output ------------------------------------------------------------------------------------


def test_json_text_markdown_sarif(fixture_index_dir: Path) -> None:
    r = verify("x86_64", "lp_abi", fixture_index_dir)
    doc = result_to_json(r)
    assert set(doc) >= {"module", "patch", "functions", "findings"}
    f = doc["functions"][0]
    assert set(f) >= {"object", "old_name", "old_sympos", "new_func", "status", "findings"}
    assert f["status"] == "error" and f["findings"][0]["kind"] == "abi-mismatch"
    assert doc["patch"] is None and doc["summary"]["errors"] == 2
    json.dumps(doc)
    text = result_to_text(r)
    assert "vmlinux: demo_fill sympos 0 <- livepatch_demo_fill -> demo_fill at" in text
    assert "| vmlinux | `demo_fill` | 0 | `livepatch_demo_fill` |" in result_to_markdown(r)
    sarif = result_to_sarif(r)
    rules = sarif["runs"][0]["tool"]["driver"]["rules"]
    assert [x["id"] for x in rules] == list(VERIFY_FINDING_KINDS)
    assert sarif["runs"][0]["results"][0]["ruleId"] == "abi-mismatch"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "klp_lsp", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_exit_status(tmp_path: Path) -> None:
    sel = ["--binary", str(fixture_binary("x86_64")), "--binary",
           str(fixture_binary("x86_64", "demo.ko")), "--index-dir", str(tmp_path)]  # fmt: skip
    ok = _cli("verify", str(module("x86_64", "lp_ok")), *sel, "--format", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["summary"]["ok"] is True
    bad = _cli("verify", str(module("x86_64", "lp_abi")), *sel)
    assert bad.returncode == 1 and "[abi-mismatch]" in bad.stdout
    cov = _cli("verify", str(module("x86_64", "lp_coverage")), *sel, "--patch",
               str(PATCHES / "demo.patch"), "--source", str(SOURCE))  # fmt: skip
    assert cov.returncode == 1 and "[coverage]" in cov.stdout
    for target in (fixture_binary("x86_64", "demo.ko"), tmp_path / "none.ko"):
        done = _cli("verify", str(target), *sel)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        line = done.stderr.strip()
        assert line.startswith("klp-lsp: ") and "\n" not in line and target.name in line


def test_module_without_dwarf(fixture_index_dir: Path, tmp_path: Path) -> None:
    stripped = tmp_path / "lp_abi.ko"
    subprocess.run(
        ["strip", "--strip-debug", "-o", str(stripped), str(module("x86_64", "lp_abi"))],
        check=True,
    )
    session = Session(
        [fixture_binary("x86_64"), fixture_binary("x86_64", "demo.ko")], None, fixture_index_dir
    )
    r = verify_module(stripped, session)
    # The entries still resolve; the ABI and register checks need the module's DWARF.
    assert [v.status for v in r.functions] == ["ok", "ok"] and r.all_findings == ()
    assert any("has no DWARF" in n for n in r.notes)


@pytest.mark.parametrize("arch", ARCHES)
def test_klp_struct_sizes_from_dwarf(arch: str) -> None:
    """The fallback for arrays without a symbol size: DW_AT_byte_size of the structs (the same
    152/168/200 bytes as the `funcs`/`objs`/`patch` symbols, `readelf -sW`)."""
    from klp_lsp.binary.dwarf import DwarfData
    from klp_lsp.binary.elf import ElfBinary

    with ElfBinary.open(module(arch, "lp_ok")) as binary:
        dwarf = DwarfData(binary.get_dwarf_sections(), binary.arch)
        sizes = [dwarf.find_struct_size(n) for n in ("klp_func", "klp_object", "klp_patch")]
        assert dwarf.find_struct_size("no_such_struct") is None
    assert sizes == [152, 168, 200]
