"""`klp-lsp try`: boot the indexed kernel's own image, load modules, wait for each livepatch
transition, run a command, and report what the kernel said.

The guest is the kernel image and an initramfs holding a static busybox, the modules and an
`/init` script. The script reports on the serial console in lines that start with a per-run
token (`@@KLP-<hex> EVENT ...`), so the host can tell them from kernel messages: the status of
each `insmod`, the livepatch sysfs state (/sys/kernel/livepatch/<patch>/{enabled,transition},
Documentation/ABI/testing/sysfs-kernel-livepatch) once the transition is over or the wait ends,
the kernel log lines each module produced (`dmesg -c` around it), and the command's output.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from klp_lsp.binary.elf import ElfBinary
from klp_lsp.errors import KlpError, ToolMissing, UsageError
from klp_lsp.model import Arch
from klp_lsp.vm.initramfs import Entry, build_initramfs, directory, file, symlink
from klp_lsp.vm.qemu import (
    Accel,
    AccelCache,
    Guest,
    GuestRun,
    console_device,
    first_error,
    kvm_possible,
    qemu_program,
    run_guest,
)

Transition = Literal["complete", "stuck", "failed"]
AccelChoice = Literal["auto", "kvm", "tcg"]

# The kernel's last words at `poweroff -f` (kernel/reboot.c), not worth reporting.
_POWER_OFF = frozenset({"reboot: Power down", "reboot: System halted"})

# How long a KVM boot may take to reach /init before KVM is taken as not working here.
_KVM_PROBE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ModuleLoad:
    """What happened to one module in the guest."""

    name: str  # the module name (the livepatch's sysfs directory for a live patch)
    path: str
    livepatch: bool
    loaded: bool
    enabled: bool | None  # /sys/kernel/livepatch/<name>/enabled; None: not a live patch
    transition: Transition | None  # None: not a live patch, or never reached
    insmod_status: int | None  # None: the guest never got to it
    errors: tuple[str, ...]  # what insmod printed
    kernel_log: tuple[str, ...]  # the kernel's messages while it loaded (timestamps dropped)


@dataclass(frozen=True, slots=True)
class RunResult:
    """The command run in the guest after the modules."""

    cmd: str
    output: str
    status: int | None  # None: it never finished


@dataclass(frozen=True, slots=True)
class TryResult:
    """One boot of the kernel with the modules."""

    booted: bool
    kernel_image: str
    release: str | None  # what the guest's /proc/sys/kernel/osrelease said
    accel: Accel
    modules: tuple[ModuleLoad, ...]
    run: RunResult | None
    console: tuple[str, ...]  # kernel messages on the console: oopses, panics, warnings
    seconds: float  # wall time of the qemu run, start to power-off
    timed_out: bool
    notes: tuple[str, ...] = field(default=())
    boot_seconds: float | None = None  # the guest's uptime when /init started

    @property
    def ok(self) -> bool:
        """Every module loaded, every live patch completed its transition, the command passed."""
        if not self.booted or self.timed_out:
            return False
        for m in self.modules:
            if not m.loaded or (m.livepatch and m.transition != "complete"):
                return False
        return self.run is None or self.run.status == 0


@dataclass(frozen=True, slots=True)
class _Module:
    path: Path
    name: str
    livepatch: bool


def _module_facts(path: Path, arch: Arch) -> _Module:
    try:
        with ElfBinary.open(path) as binary:
            if binary.kind != "module":
                raise UsageError(f"{path}: not a kernel module (no .modinfo)")
            if binary.arch != arch:
                raise UsageError(f"{path}: a {binary.arch} module, but the kernel is {arch}")
            info = binary.get_modinfo()
            return _Module(path, binary.object_name, "livepatch" in info)
    except KlpError as e:
        if isinstance(e, UsageError):
            raise
        raise UsageError(str(e)) from e


def find_busybox(arch: Arch, explicit: Path | None = None) -> Path:
    """A statically linked busybox for the guest; `ToolMissing` names the package."""
    candidates = [explicit] if explicit is not None else []
    if explicit is None:
        found = shutil.which("busybox")
        candidates += [Path(p) for p in (found, "/bin/busybox", "/usr/bin/busybox") if p]
    for path in dict.fromkeys(candidates):
        if path is None or not path.is_file():
            continue
        try:
            with ElfBinary.open(path) as binary:
                static = binary.get_section(".interp") is None
                if binary.arch == arch and static:
                    return path
        except KlpError:
            continue
    if explicit is not None:
        raise UsageError(f"{explicit}: not a statically linked {arch} busybox")
    if arch == "x86_64":
        raise ToolMissing(
            "no statically linked busybox found: install the Debian package busybox-static"
        )
    raise ToolMissing(
        "no statically linked aarch64 busybox: apt-get download busybox-static:arm64, unpack it"
        " with dpkg-deb -x, and pass --busybox DIR/bin/busybox"
    )


def _init_script(token: str, modules: Sequence[_Module], run: str | None, wait: float) -> str:
    steps = max(1, int(wait * 10))
    lines = [
        "#!/bin/busybox sh",
        "/bin/busybox --install -s /bin",
        "export PATH=/bin",
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "mount -t devtmpfs devtmpfs /dev",
        f"T='@@KLP-{token}'",
        'say() { echo "$T $*"; }',
        'tag() { sed "s/^/$T $1 /"; }',
        "say BOOTED $(cat /proc/sys/kernel/osrelease) $(cut -d' ' -f1 /proc/uptime)",
        "dmesg -c >/dev/null",
        "load() {",
        "  say MODULE $1 $3",
        "  insmod $2 2>/tmp/insmod.err; rc=$?",
        '  tag "ERR $1" </tmp/insmod.err',
        "  say INSMOD $1 $rc",
        '  if [ "$rc" = 0 ] && [ "$4" = 1 ]; then',
        "    d=/sys/kernel/livepatch/$3; n=0",
        f"    while [ $n -lt {steps} ]; do",
        '      [ -d "$d" ] && [ "$(cat $d/transition)" = 0 ] && break',
        "      sleep 0.1; n=$((n+1))",
        "    done",
        '    if [ -d "$d" ]; then',
        "      say LIVEPATCH $1 1 $(cat $d/enabled) $(cat $d/transition)",
        "    else",
        "      say LIVEPATCH $1 0 - -",
        "    fi",
        "  fi",
        '  dmesg -c | tag "LOG $1"',
        "}",
    ]
    for i, m in enumerate(modules):
        lines.append(f"load {i} /modules/{i}.ko {m.name} {int(m.livepatch)}")
    if run is not None:
        lines += [
            "say RUN",
            "sh /run.sh >/tmp/run.out 2>&1; rc=$?",
            "tag OUT </tmp/run.out",
            "say RUN-STATUS $rc",
            'dmesg -c | tag "LOG run"',
        ]
    lines += ["say DONE", "poweroff -f"]
    return "\n".join(lines) + "\n"


def _initramfs(
    busybox: Path,
    token: str,
    modules: Sequence[_Module],
    run: str | None,
    wait: float,
    files: Sequence[Path] = (),
) -> bytes:
    entries: list[Entry] = [directory(d) for d in ("bin", "dev", "proc", "sys", "tmp", "modules")]
    entries.append(file("bin/busybox", busybox.read_bytes(), executable=True))
    entries.append(symlink("bin/sh", "busybox"))
    entries.append(file("init", _init_script(token, modules, run, wait).encode(), executable=True))
    for i, m in enumerate(modules):
        entries.append(file(f"modules/{i}.ko", m.path.read_bytes()))
    if run is not None:
        entries.append(file("run.sh", (run + "\n").encode()))
    if files:
        # Programs and data for `run` (a test program the fix changes the result of).
        entries.append(directory("files"))
        for f in files:
            entries.append(file(f"files/{f.name}", f.read_bytes(), executable=True))
    return build_initramfs(entries)


def _strip_timestamp(line: str) -> str:
    if line.startswith("[") and "]" in line:
        return line[line.index("]") + 1 :].lstrip()
    return line


def _parse(
    token: str,
    modules: Sequence[_Module],
    run: str | None,
    guest: GuestRun,
    image: Path,
) -> TryResult:
    prefix = f"@@KLP-{token} "
    booted = False
    release = None
    boot_seconds: float | None = None
    status: dict[int, int] = {}
    errors: dict[int, list[str]] = {}
    logs: dict[str, list[str]] = {}
    patch_state: dict[int, tuple[bool, str, str]] = {}
    output: list[str] = []
    run_status: int | None = None
    console: list[str] = []
    for line in guest.lines:
        at = line.find(prefix)
        if at < 0:
            text = _strip_timestamp(line.strip())
            if text and booted and text not in _POWER_OFF:
                console.append(text)
            continue
        event, _, rest = line[at + len(prefix) :].partition(" ")
        if event == "BOOTED":
            words = rest.split()
            booted, release = True, (words[0] if words else None)
            if len(words) > 1:
                try:
                    boot_seconds = float(words[1])
                except ValueError:
                    boot_seconds = None
        elif event == "INSMOD":
            index, _, rc = rest.partition(" ")
            status[int(index)] = int(rc or 1)
        elif event == "ERR":
            index, _, text = rest.partition(" ")
            errors.setdefault(int(index), []).append(text)
        elif event == "LIVEPATCH":
            index, shown, on, tr = [*rest.split(), "-", "-", "-"][:4]
            patch_state[int(index)] = (shown == "1", on, tr)
        elif event == "LOG":
            who, _, text = rest.partition(" ")
            logs.setdefault(who, []).append(_strip_timestamp(text))
        elif event == "OUT":
            output.append(rest)
        elif event == "RUN-STATUS":
            run_status = int(rest.strip() or 1)
    loads = []
    for i, m in enumerate(modules):
        insmod = status.get(i)
        loaded = insmod == 0
        enabled: bool | None = None
        transition: Transition | None = None
        if m.livepatch:
            state = patch_state.get(i)
            if insmod is not None and not loaded:
                transition = "failed"
            elif state is not None:
                present, flag, phase = state
                enabled = flag == "1" if present else False
                if not present or flag == "0":
                    transition = "failed"
                else:
                    transition = "complete" if phase == "0" else "stuck"
        loads.append(
            ModuleLoad(
                name=m.name,
                path=str(m.path),
                livepatch=m.livepatch,
                loaded=loaded,
                enabled=enabled,
                transition=transition,
                insmod_status=insmod,
                errors=tuple(errors.get(i, ())),
                kernel_log=tuple(logs.get(str(i), ())),
            )
        )
    # With `quiet` the console still shows errors, which the modules' logs already hold.
    logged = {line for m in loads for line in m.kernel_log}
    console = [line for line in console if line not in logged]
    run_result = None
    if run is not None:
        run_result = RunResult(run, "\n".join(output), run_status)
    notes = []
    if guest.timed_out:
        notes.append("the guest did not finish before the timeout; qemu was stopped")
    if not booted:
        notes.append(
            f"the guest never reached /init (qemu: {first_error(guest.stderr)})"
            if guest.stderr
            else "the guest never reached /init"
        )
    return TryResult(
        booted=booted,
        kernel_image=str(image),
        release=release,
        accel=guest.accel,
        modules=tuple(loads),
        run=run_result,
        console=tuple(console),
        seconds=round(guest.seconds, 2),
        timed_out=guest.timed_out,
        notes=tuple(notes),
        boot_seconds=boot_seconds,
    )


def try_modules(
    modules: Sequence[Path],
    *,
    image: Path,
    arch: Arch,
    run: str | None = None,
    timeout: float = 120.0,
    transition_timeout: float = 15.0,
    accel: AccelChoice = "auto",
    busybox: Path | None = None,
    cache_dir: Path | None = None,
    append: str = "",
    files: Sequence[Path] = (),
) -> TryResult:
    """Boot `image` with `modules` loaded in order and report what happened.

    Modules that are live patches (`livepatch=Y` in `.modinfo`) get their transition waited
    for (`transition_timeout` each); others (a patched module itself, loaded first) are just
    loaded. `timeout` bounds the whole run; `accel` "auto" uses KVM where it works.
    """
    if not modules:
        raise UsageError("no modules to load")
    facts = [_module_facts(Path(p), arch) for p in modules]
    qemu_program(arch)  # a missing qemu is reported before anything is built
    box = find_busybox(arch, busybox)
    token = secrets.token_hex(6)
    cmdline = (
        f"console={console_device(arch)} panic=-1 nokaslr quiet oops=panic rdinit=/init {append}"
    ).strip()
    cache = AccelCache(cache_dir) if cache_dir is not None else None
    with tempfile.TemporaryDirectory(prefix="klp-try-") as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(_initramfs(box, token, facts, run, transition_timeout, files))
        guest = Guest(arch, image, initrd, cmdline)
        deadline = time.monotonic() + timeout
        marker = f"@@KLP-{token} BOOTED"
        order: list[Accel] = ["tcg"]
        if accel == "kvm" or (accel == "auto" and kvm_possible(arch)):
            cached = cache.get(arch) if cache is not None else None
            if accel == "kvm" or cached != "tcg":
                order = ["kvm", "tcg"] if accel == "auto" else ["kvm"]
        result: GuestRun | None = None
        for choice in order:
            probing = choice == "kvm" and accel == "auto"
            result = run_guest(
                guest,
                choice,
                deadline,
                first_line_within=_KVM_PROBE_SECONDS if probing else None,
                is_first=lambda line: marker in line,
            )
            reached = any(marker in line for line in result.lines)
            if choice == "kvm" and cache is not None and accel == "auto":
                cache.put(arch, "kvm" if reached else "tcg")
            if reached or not probing:
                break
        assert result is not None
        if result.exit_status not in (0, None) and not any(marker in x for x in result.lines):
            raise UsageError(f"qemu failed: {first_error(result.stderr)}")
        return _parse(token, facts, run, result, image)


def try_to_json(result: TryResult) -> dict[str, object]:
    """The `try --format json` document."""
    return {
        "booted": result.booted,
        "modules": [
            {
                "name": m.name,
                "path": m.path,
                "livepatch": m.livepatch,
                "loaded": m.loaded,
                "enabled": m.enabled,
                "transition": m.transition,
                "insmod_status": m.insmod_status,
                "errors": list(m.errors),
                "kernel_log": list(m.kernel_log),
            }
            for m in result.modules
        ],
        "run": None
        if result.run is None
        else {"cmd": result.run.cmd, "output": result.run.output, "status": result.run.status},
        "kernel_image": result.kernel_image,
        "release": result.release,
        "accel": result.accel,
        "console": list(result.console),
        "seconds": result.seconds,
        "boot_seconds": result.boot_seconds,
        "timed_out": result.timed_out,
        "notes": list(result.notes),
        "ok": result.ok,
    }


def try_to_text(result: TryResult) -> str:
    """A short report for people: one block per module, then the command."""
    lines = [
        f"{result.kernel_image}: {'booted' if result.booted else 'did not boot'}"
        f" {result.release or ''} ({result.accel}, {result.seconds:.1f} s)".rstrip()
    ]
    for m in result.modules:
        state = "loaded" if m.loaded else "NOT loaded"
        if m.insmod_status is None:
            state = "never reached"
        if m.livepatch:
            state += f", transition {m.transition or '?'}"
            if m.enabled is not None:
                state += f", enabled={int(m.enabled)}"
        lines.append(f"{m.name}: {state}")
        for e in m.errors:
            lines.append(f"  insmod: {e}")
        for k in m.kernel_log:
            lines.append(f"  kernel: {k}")
    if result.run is not None:
        lines.append(f"$ {result.run.cmd}  (exit {result.run.status})")
        lines.extend(f"  {x}" for x in result.run.output.splitlines())
    for c in result.console:
        lines.append(f"console: {c}")
    lines.extend(f"note: {n}" for n in result.notes)
    lines.append("ok" if result.ok else "FAILED")
    return "\n".join(lines)


def default_cache_dir() -> Path:
    """Where the KVM verdict is kept when the caller gives no index directory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "klp-lsp"
