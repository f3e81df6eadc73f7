"""Running qemu for one guest: the command line per architecture, KVM or TCG, the serial log.

The guest's serial console is qemu's stdout; `run_guest` reads it line by line until the guest
powers off, the deadline passes, or (for the KVM probe) the first line does not come in time.
KVM is used only where it works: `/dev/kvm` existing is not enough (nested virtualisation often
rejects `-cpu host` at once, or hangs), so the first boot with KVM is a probe whose verdict is
kept in a small file beside the indexes, keyed by the host kernel and the qemu binary.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from klp_lsp.errors import ToolMissing, UsageError
from klp_lsp.model import Arch

Accel = Literal["kvm", "tcg"]

# The Debian package of each program (`apt-get install ...`).
_PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
}


@dataclass(frozen=True, slots=True)
class Guest:
    """What to boot: an image, an initramfs, a kernel command line, for one architecture."""

    arch: Arch
    kernel: Path
    initrd: Path
    append: str
    memory_mb: int = 512


@dataclass(frozen=True, slots=True)
class GuestRun:
    """What one qemu run printed and how it ended."""

    lines: tuple[str, ...]
    accel: Accel
    exit_status: int | None  # None when killed at the deadline
    timed_out: bool
    seconds: float
    stderr: str


def qemu_program(arch: Arch) -> str:
    """The qemu binary for `arch`; `ToolMissing` naming the Debian package when absent."""
    name = "qemu-system-x86_64" if arch == "x86_64" else "qemu-system-aarch64"
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} not found: install the Debian package {_PACKAGES[name]}")
    return found


def console_device(arch: Arch) -> str:
    """The kernel console of the guest's first serial port."""
    return "ttyS0" if arch == "x86_64" else "ttyAMA0"


def command_line(guest: Guest, accel: Accel) -> list[str]:
    """The qemu command that boots `guest` with its serial console on stdout."""
    cmd = [qemu_program(guest.arch)]
    if guest.arch == "x86_64":
        cmd += ["-accel", accel, "-cpu", "host" if accel == "kvm" else "max"]
    else:
        cmd += ["-M", "virt", "-accel", accel, "-cpu", "host" if accel == "kvm" else "max"]
    # No default devices (no NIC and its option ROM, no VGA): less to emulate, faster boot.
    cmd += [
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-smp",
        "1",
        "-m",
        str(guest.memory_mb),
        "-kernel",
        str(guest.kernel),
        "-initrd",
        str(guest.initrd),
        "-append",
        guest.append,
    ]
    return cmd


def kvm_possible(arch: Arch) -> bool:
    """KVM can only run a guest of the host's architecture, through a usable /dev/kvm."""
    host = os.uname().machine
    same = (arch == "x86_64" and host == "x86_64") or (arch == "aarch64" and host == "aarch64")
    return same and os.access("/dev/kvm", os.R_OK | os.W_OK)


class AccelCache:
    """Whether KVM worked here before, in `<dir>/vm-accel.json` (host kernel + qemu build)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "vm-accel.json"

    def _key(self, arch: Arch) -> str:
        program = qemu_program(arch)
        try:
            stamp = int(Path(program).stat().st_mtime)
        except OSError:
            stamp = 0
        return f"{os.uname().release}|{arch}|{program}|{stamp}"

    def get(self, arch: Arch) -> Accel | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        value = data.get(self._key(arch)) if isinstance(data, dict) else None
        return value if value in ("kvm", "tcg") else None

    def put(self, arch: Arch, accel: Accel) -> None:
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[self._key(arch)] = accel
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(data, indent=1))
        except OSError:
            pass  # only a cache


def run_guest(
    guest: Guest,
    accel: Accel,
    deadline: float,
    *,
    first_line_within: float | None = None,
    on_line: Callable[[str], None] | None = None,
    is_first: Callable[[str], bool] = lambda _line: True,
) -> GuestRun:
    """Boot `guest` and collect its serial lines until it powers off or `deadline` passes.

    With `first_line_within`, give up (and report `timed_out`) when no line that `is_first`
    accepts arrives in that many seconds: how a KVM that hangs is told from one that boots.
    """
    cmd = command_line(guest, accel)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        raise UsageError(f"{cmd[0]}: cannot run: {e.strerror or e}") from e
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    buffer = b""
    seen_first = False
    timed_out = False
    stdout_fd = proc.stdout.fileno()
    try:
        while True:
            now = time.monotonic()
            limit = deadline - now
            if first_line_within is not None and not seen_first:
                limit = min(limit, started + first_line_within - now)
            if limit <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([stdout_fd], [], [], min(limit, 0.5))
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(stdout_fd, 65536)
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                lines.append(line)
                if not seen_first and is_first(line):
                    seen_first = True
                if on_line is not None:
                    on_line(line)
        if buffer:
            lines.append(buffer.decode("utf-8", "replace").rstrip("\r"))
    finally:
        if proc.poll() is None:
            _stop(proc)
        stderr = proc.stderr.read().decode("utf-8", "replace")
        proc.stdout.close()
        proc.stderr.close()
    return GuestRun(
        tuple(lines),
        accel,
        None if timed_out else proc.returncode,
        timed_out,
        time.monotonic() - started,
        stderr.strip(),
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the qemu process this module started (its own session), firmly if need be."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def first_error(stderr: str) -> str:
    """The first line of qemu's stderr that says what went wrong."""
    for line in stderr.splitlines():
        if line.strip():
            return line.strip()
    return "no message"


def describe_command(cmd: Sequence[str]) -> str:
    return " ".join(cmd)
