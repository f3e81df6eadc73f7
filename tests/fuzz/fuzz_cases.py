"""Mutations of the fixture ELF files and patches, and how one mutated input is run and judged.

Shared by the Hypothesis tests (which drive the same generators through `st.randoms()`) and by
`harness.py`, the long runs over a pool of worker processes. A case runs exactly what
`klp-lsp show` and `klp-lsp check` run (`klp_lsp.cli.main`), in-process, and its outcome is one
of: "error" (exit 2 with one line naming the file), "answer" (exit 0 or 1), "bad-error" (exit 2
but not one clean line), "crash" (an exception escaped, or another exit status), "escape" (a
patch made klp-lsp read a file outside the source tree); the harness adds "hang".
"""

from __future__ import annotations

import contextlib
import io
import json
import lzma
import os
import random
import shutil
import struct
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
BUILD = FIXTURES / "build"
KERNEL_SRC = FIXTURES / "kernel"
CORRUPT = FIXTURES / "corrupt"

Mutation = tuple[
    str, int, bytes
]  # ("flip", offset, mask) | ("write", offset, data) | ("truncate", n, b"")

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SHDR_FIELDS = (  # name, offset in the header, width
    ("sh_name", 0, 4),
    ("sh_type", 4, 4),
    ("sh_flags", 8, 8),
    ("sh_addr", 16, 8),
    ("sh_offset", 24, 8),
    ("sh_size", 32, 8),
    ("sh_link", 40, 4),
    ("sh_info", 44, 4),
    ("sh_addralign", 48, 8),
    ("sh_entsize", 56, 8),
)
_EHDR_FIELDS = (
    ("ei_class", 4, 1),
    ("ei_data", 5, 1),
    ("e_type", 16, 2),
    ("e_machine", 18, 2),
    ("e_shoff", 40, 8),
    ("e_shentsize", 58, 2),
    ("e_shnum", 60, 2),
    ("e_shstrndx", 62, 2),
)
_SYM_FIELDS = (
    ("st_name", 0, 4),
    ("st_info", 4, 1),
    ("st_shndx", 6, 2),
    ("st_value", 8, 8),
    ("st_size", 16, 8),
)
_RELA_FIELDS = (("r_offset", 0, 8), ("r_type", 8, 4), ("r_sym", 12, 4), ("r_addend", 16, 8))


@dataclass(frozen=True, slots=True)
class SectionLayout:
    index: int
    name: str
    type: int
    offset: int
    size: int
    header: int  # file offset of its section header
    entsize: int


@dataclass(frozen=True, slots=True)
class ElfTarget:
    """One pristine fixture file and what `show` asks of it."""

    key: str  # "x86_64/vmlinux"
    path: Path
    function: str
    data: bytes
    sections: tuple[SectionLayout, ...]

    @property
    def file_name(self) -> str:
        return self.path.name

    def section(self, name: str) -> SectionLayout | None:
        return next((s for s in self.sections if s.name == name), None)


def _layout(data: bytes) -> tuple[SectionLayout, ...]:
    """The section headers of a well-formed little-endian ELF64 file (the pristine fixtures)."""
    fields = _EHDR.unpack_from(data, 0)
    shoff, shnum, shstrndx = fields[6], fields[12], fields[13]
    raw = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
    names_at = raw[shstrndx][4]
    out = []
    for i, h in enumerate(raw):
        start = names_at + h[0]
        name = data[start : data.index(b"\0", start)].decode()
        size = 0 if h[1] == 8 else h[5]  # SHT_NOBITS has no file bytes
        out.append(SectionLayout(i, name, h[1], h[4], size, shoff + i * _SHDR.size, h[9]))
    return tuple(out)


# The function each target is asked about: one with clones, inlining and register facts.
_FUNCTIONS = {"vmlinux": "demo_lookup", "demo.ko": "demo_mod_probe"}
ELF_TARGET_KEYS = ("x86_64/vmlinux", "arm64/vmlinux", "x86_64/demo.ko", "arm64/demo.ko")


def load_elf_target(key: str) -> ElfTarget:
    path = BUILD / key
    data = path.read_bytes()
    return ElfTarget(key, path, _FUNCTIONS[path.name], data, _layout(data))


def load_elf_targets() -> dict[str, ElfTarget]:
    return {key: load_elf_target(key) for key in ELF_TARGET_KEYS}


# --- ELF mutations --------------------------------------------------------------------------

ELF_FAMILIES = (
    "bitflip",
    "section-bytes",
    "section-int",
    "dwarf-bytes",
    "dwarf-int",
    "shdr",
    "ehdr",
    "symtab",
    "rela",
    "truncate",
)
# Families that touch only DWARF sections (the "DWARF mutations" of the fast test set).
DWARF_FAMILIES = ("dwarf-bytes", "dwarf-int")


def interesting(rng: random.Random, width: int, original: int | None = None) -> int:
    """A value of `width` bytes that tends to break readers: limits, signs, sizes, neighbours."""
    top = (1 << (8 * width)) - 1
    choices = [0, 1, 2, 0x7F, 0x80, 0xFF, top, top - 1, top >> 1, (top >> 1) + 1]
    if width >= 4:
        choices += [0x1000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    if width == 8:
        choices += [1 << 32, 1 << 40, (1 << 63) - 1, 1 << 63]
    if original is not None:
        choices += [original + 1, original - 1, original * 2, original ^ 0x80, original << 4]
    choices.append(rng.getrandbits(8 * width))
    return rng.choice(choices) & top


def _read(data: bytes, offset: int, width: int) -> int:
    return int.from_bytes(data[offset : offset + width], "little")


def _write_int(offset: int, width: int, value: int) -> Mutation:
    return ("write", offset, value.to_bytes(width, "little"))


def _pick_section(
    rng: random.Random, target: ElfTarget, names: Callable[[str], bool]
) -> SectionLayout | None:
    found = [s for s in target.sections if s.size and names(s.name)]
    return rng.choice(found) if found else None


def _bytes_in(rng: random.Random, s: SectionLayout) -> Mutation:
    at = s.offset + rng.randrange(s.size)
    shape = rng.randrange(4)
    if shape == 0:
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    elif shape == 1:  # a run that never ends a LEB128 or a string
        data = b"\x80" * rng.randint(2, 24)
    elif shape == 2:
        data = b"\xff" * rng.randint(1, 16)
    else:
        data = b"\x00" * rng.randint(1, 16)
    return ("write", at, data[: s.offset + s.size - at])


def _int_in(rng: random.Random, target: ElfTarget, s: SectionLayout) -> Mutation:
    width = rng.choice((1, 2, 4, 4, 8))
    if s.size < width:
        width = 1
    at = s.offset + rng.randrange(s.size - width + 1)
    return _write_int(at, width, interesting(rng, width, _read(target.data, at, width)))


def _table_field(
    rng: random.Random,
    target: ElfTarget,
    table: SectionLayout,
    fields: Sequence[tuple[str, int, int]],
) -> Mutation | None:
    if not table.entsize or table.size < table.entsize:
        return None
    entry = table.offset + rng.randrange(table.size // table.entsize) * table.entsize
    _name, at, width = rng.choice(fields)
    at += entry
    return _write_int(at, width, interesting(rng, width, _read(target.data, at, width)))


def random_elf_mutation(
    rng: random.Random, target: ElfTarget, families: Sequence[str] = ELF_FAMILIES
) -> Mutation:
    """One mutation of a family chosen from `families`."""
    data = target.data
    while True:
        family = rng.choice(families)
        if family == "bitflip":
            return ("flip", rng.randrange(len(data)), bytes([1 << rng.randrange(8)]))
        if family in ("section-bytes", "dwarf-bytes", "section-int", "dwarf-int"):
            dwarf_only = family.startswith("dwarf")
            s = _pick_section(rng, target, lambda n, d=dwarf_only: n.startswith(".debug_") or not d)
            if s is None:
                continue
            return _bytes_in(rng, s) if family.endswith("bytes") else _int_in(rng, target, s)
        if family == "shdr":
            s = rng.choice(target.sections[1:])
            _name, at, width = rng.choice(_SHDR_FIELDS)
            at += s.header
            return _write_int(at, width, interesting(rng, width, _read(data, at, width)))
        if family == "ehdr":
            _name, at, width = rng.choice(_EHDR_FIELDS)
            return _write_int(at, width, interesting(rng, width, _read(data, at, width)))
        if family == "symtab":
            table = target.section(".symtab")
            found = None if table is None else _table_field(rng, target, table, _SYM_FIELDS)
            if found is not None:
                return found
            continue
        if family == "rela":
            s = _pick_section(rng, target, lambda n: n.startswith(".rela"))
            found = None if s is None else _table_field(rng, target, s, _RELA_FIELDS)
            if found is not None:
                return found
            continue
        # truncate: anywhere, or next to a section's end
        if rng.random() < 0.5:
            return ("truncate", rng.randrange(len(data)), b"")
        s = rng.choice(target.sections[1:])
        return ("truncate", max(0, min(len(data) - 1, s.offset + s.size + rng.randint(-8, 8))), b"")


def random_elf_case(
    rng: random.Random, target: ElfTarget, families: Sequence[str] = ELF_FAMILIES
) -> list[Mutation]:
    """One to four mutations (one family each)."""
    count = rng.choice((1, 1, 1, 2, 3, 4))
    return [random_elf_mutation(rng, target, families) for _ in range(count)]


def apply_mutations(data: bytes, mutations: Sequence[Mutation]) -> bytes:
    buf = bytearray(data)
    for op, at, arg in mutations:
        if op == "flip":
            if at < len(buf):
                buf[at] ^= arg[0]
        elif op == "write":
            end = min(len(buf), at + len(arg))
            if at < end:
                buf[at:end] = arg[: end - at]
        elif op == "truncate":
            del buf[at:]
    return bytes(buf)


def mutations_to_json(mutations: Sequence[Mutation]) -> list[list[object]]:
    return [[op, at, arg.hex()] for op, at, arg in mutations]


def mutations_from_json(value: Sequence[Sequence[object]]) -> list[Mutation]:
    return [(str(op), int(str(at)), bytes.fromhex(str(arg))) for op, at, arg in value]


# --- running a case -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # error | answer | bad-error | crash | escape (the harness adds hang)
    detail: str  # the stderr line, or the traceback

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "detail": self.detail}


def run_cli(argv: Sequence[str]) -> tuple[int | None, str, str, str]:
    """`klp_lsp.cli.main(argv)` in this process: (exit status, stdout, stderr, traceback)."""
    from klp_lsp import cli

    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    trace = ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
        except BaseException:
            trace = traceback.format_exc()
    return code, out.getvalue(), err.getvalue(), trace


def judge(code: int | None, out: str, err: str, trace: str, names: Sequence[str]) -> Outcome:
    """Classify one run; a clean error is one stderr line that names one of `names`."""
    if trace:
        return Outcome("crash", trace)
    lines = err.strip().splitlines()
    if code == 2 and not err.strip() and out.strip():
        # `check` found only problems in the patch (no function to report): they are its output.
        try:
            json.loads(out)
        except ValueError:
            return Outcome("bad-error", f"exit 2 without an error message: {out[:200]!r}")
        return Outcome("answer", "problems only")
    if code == 2:
        if (
            len(lines) == 1
            and lines[0].startswith("klp-lsp: ")
            and any(n in lines[0] for n in names)
        ):
            return Outcome("error", lines[0])
        return Outcome("bad-error", err)
    if code in (0, 1):
        try:
            answer = json.loads(out)
        except ValueError:
            return Outcome("bad-error", f"exit {code} without JSON output: {out[:200]!r} {err}")
        # A compile unit lost to an exception no reader check anticipated is a bug too.
        for unit in answer.get("unreadable_units", []) if isinstance(answer, dict) else []:
            if "internal error" in unit.get("reason", ""):
                return Outcome("crash", unit["reason"])
        return Outcome("answer", lines[-1] if lines else "")
    return Outcome("crash", f"exit status {code}: {err}")


@dataclass(frozen=True, slots=True)
class ElfCase:
    target: str  # an ELF_TARGET_KEYS entry
    container: str  # raw | xz | zst
    mutations: tuple[Mutation, ...]
    jobs: int = 1

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "container": self.container,
            "mutations": mutations_to_json(self.mutations),
            "jobs": self.jobs,
        }

    @classmethod
    def from_json(cls, value: dict[str, object]) -> ElfCase:
        muts = value["mutations"]
        assert isinstance(muts, list)
        return cls(
            str(value["target"]),
            str(value.get("container", "raw")),
            tuple(mutations_from_json(muts)),
            int(str(value.get("jobs", 1))),
        )


def random_container(rng: random.Random, target: ElfTarget) -> str:
    if target.file_name.endswith(".ko") and rng.random() < 0.15:
        return rng.choice(("xz", "zst"))
    return "raw"


def elf_case_bytes(case: ElfCase, target: ElfTarget) -> tuple[str, bytes]:
    """The file name and bytes of a case (a `.ko.xz`/`.ko.zst` of the mutant when asked)."""
    data = apply_mutations(target.data, case.mutations)
    if case.container == "xz":
        return target.file_name + ".xz", lzma.compress(data, check=lzma.CHECK_CRC32)
    if case.container == "zst":
        import zstandard

        return target.file_name + ".zst", zstandard.ZstdCompressor().compress(data)
    return target.file_name, data


def run_elf_case(case: ElfCase, target: ElfTarget, workdir: Path) -> Outcome:
    """`klp-lsp show FUNCTION --binary MUTANT --json` on a fresh index directory."""
    name, data = elf_case_bytes(case, target)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        mutant = Path(tmp) / name
        mutant.write_bytes(data)
        argv = ["show", target.function, "--binary", str(mutant), "--json"]
        argv += ["--index-dir", str(Path(tmp) / "index"), "--jobs", str(case.jobs)]
        return judge(*run_cli(argv), names=[str(mutant)])


# --- patches --------------------------------------------------------------------------------

PATCH_BASES = (
    FIXTURES / "patches" / "demo.patch",
    FIXTURES / "patches" / "pitfalls.mbox",
)
_PATH_JUNK = (
    "../../../../etc/passwd",
    "/etc/passwd",
    "a/../../../../../etc/shadow",
    "kernel/../../../../../../proc/self/environ",
    "/dev/zero",
    "/proc/self/fd/0",
    "kernel/demo_core.c/../../../../tmp",
    "",
    "a/" + "x" * 5000,
    "kernel/\x00demo.c",
    "kernel/demo_core.c\t2026-01-01",
    "~/.ssh/id_rsa",
    "include/linux/../../../.git/config",
)
_NUMBERS = ("0", "-1", "1", "999999999", "18446744073709551616", "4294967296", "", "x", "1,", ",1")


def random_patch(rng: random.Random, bases: Sequence[str]) -> str:
    """A patch made from a fixture patch by one to four line-level or header-level mutations."""
    lines = rng.choice(bases).splitlines(keepends=True)
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        if not lines:
            lines = ["\n"]
        i = rng.randrange(len(lines))
        op = rng.randrange(14)
        line = lines[i]
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, line)
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:  # a hunk header with broken numbers
            a, b, c, d = (rng.choice(_NUMBERS) for _ in range(4))
            lines.insert(i, f"@@ -{a},{b} +{c},{d} @@\n")
        elif op == 4:  # a file header pointing elsewhere
            path = rng.choice(_PATH_JUNK)
            lines.insert(
                i, rng.choice(("--- a/", "+++ b/", "diff --git a/", "rename to ")) + path + "\n"
            )
        elif op == 5:
            lines[i] = rng.choice("+- \\@") + line[1:]
        elif op == 6:
            lines = lines[:i]
        elif op == 7:  # a long line
            lines.insert(i, "+" + "x" * rng.choice((100, 5000, 70000)) + "\n")
        elif op == 8:
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
            lines.insert(i, junk.decode("latin-1") + "\n")
        elif op == 9:
            lines[i] = line.replace("\n", "\r\n")
        elif op == 10:
            lines[i] = line[: rng.randrange(len(line) + 1)]
        elif op == 11:
            lines.insert(
                i, "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
            )
        elif op == 12:  # git extended headers
            lines.insert(
                i,
                rng.choice(
                    (
                        "new file mode 100644\n",
                        "deleted file mode 100644\n",
                        "similarity index 90%\n",
                        "Binary files a/x and b/x differ\n",
                        "GIT binary patch\n",
                        "index 0000000..1111111 100644\n",
                    )
                ),
            )
        else:
            lines[i] = line.replace("kernel/demo_core.c", rng.choice(_PATH_JUNK))
    return "".join(lines)


class FileAudit:
    """Records files opened outside the allowed directories while active (an audit hook)."""

    def __init__(self, allowed: Sequence[Path]) -> None:
        self.allowed = [str(p.resolve()) for p in allowed]
        self.active = False
        self.outside: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[object, ...]) -> None:
        if not self.active or event not in ("open", "os.listdir", "os.scandir"):
            return
        target = args[0] if args else None
        if not isinstance(target, (str, bytes, os.PathLike)):
            return
        path = os.fsdecode(target)
        if not path:
            return
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            real = path
        if not any(real == a or real.startswith(a + os.sep) for a in self.allowed):
            self.outside.append(real)

    @contextlib.contextmanager
    def watch(self) -> Iterator[list[str]]:
        self.outside = []
        self.active = True
        try:
            yield self.outside
        finally:
            self.active = False


def default_allowed(extra: Sequence[Path]) -> list[Path]:
    """Where klp-lsp may read while checking a patch: the tree, the index, Python itself."""
    roots = [KERNEL_SRC, BUILD, ROOT / "server", Path(sys.prefix), Path(sys.base_prefix)]
    roots += [Path(p) for p in sys.path if p and Path(p).is_dir()]
    roots += [Path("/dev/null"), Path("/dev/urandom"), Path(tempfile.gettempdir())]
    return roots + list(extra)


def run_patch_case(
    text: str, index_dir: Path, workdir: Path, audit: FileAudit, binary: Path | None = None
) -> Outcome:
    """`klp-lsp check PATCH --format json --no-background` against the fixture vmlinux."""
    binary = binary or BUILD / "x86_64" / "vmlinux"
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        patch = Path(tmp) / "fuzz.patch"
        patch.write_text(text, encoding="utf-8", errors="surrogateescape")
        argv = ["check", str(patch), "--binary", str(binary), "--source", str(KERNEL_SRC)]
        argv += ["--index-dir", str(index_dir), "--format", "json", "--no-background"]
        argv += ["--jobs", "1"]
        with audit.watch() as outside:
            result = judge(*run_cli(argv), names=[str(patch)])
        if outside:
            return Outcome("escape", " ".join(sorted(set(outside))))
        return result


def patch_bases() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in PATCH_BASES]


def prebuilt_index(index_dir: Path, binaries: Sequence[Path]) -> Path:
    """Index the fixture binaries once into `index_dir` (a patch case must not rebuild them)."""
    from klp_lsp.index.builder import build_index

    for b in binaries:
        build_index(b, index_dir, jobs=1)
    return index_dir


def copy_fixture(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst
