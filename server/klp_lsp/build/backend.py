"""Compiling objects of a prepared tree: the original with kbuild, the patched from an overlay.

kbuild: the original objects are built by `make O=TREE obj.o ...` (kbuild decides what is out of
date, so a second check costs only make's own start). The patched ones are built by running
the very command kbuild recorded for the object (`TREE/dir/.obj.o.cmd`: the compiler and
objtool with all their flags) with every path into the source tree redirected to the overlay
and the outputs to a scratch directory, so the tree's objects and the user's source stay as they
are. Script trees (the fixture kernel's `build.sh`) compile both sides with the script.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.build.tree import BuildTree, build_env
from klp_lsp.errors import BuildError

_ERROR_LINE = re.compile(r"\b(?:error|fatal error):")
_MAX_ERROR_LINES = 4


@dataclass(frozen=True, slots=True)
class CompileFailure:
    """The patched source of an object does not compile."""

    object: str
    message: str  # the compiler's first error lines, paths relative to the tree


def _first_errors(text: str, overlay: Path | None) -> str:
    lines = [line for line in text.splitlines() if _ERROR_LINE.search(line)] or [
        line for line in text.splitlines() if line.strip()
    ][-_MAX_ERROR_LINES:]
    out = "; ".join(lines[:_MAX_ERROR_LINES]).strip()
    if overlay is not None:
        out = out.replace(f"{overlay}/", "")
    return out or "the compiler failed without a message"


def _unescape_make_cmd(value: str) -> str:
    # scripts/Kbuild.include `make-cmd` escapes `$` as `$$` and `#` as `$(pound)`.
    return value.replace("$(pound)", "#").replace("$$", "$")


def read_saved_command(tree: Path, obj: str) -> str:
    """The command kbuild last ran to build `obj`, from `TREE/dir/.obj.o.cmd`."""
    directory, base = posixpath.split(obj)
    path = tree / directory / f".{base}.cmd"
    try:
        first = path.read_text(errors="surrogateescape").split("\n", 1)[0]
    except OSError as e:
        raise BuildError(f"{path}: kbuild left no command for {obj}: {e.strerror or e}") from e
    name, sep, value = first.partition(" := ")
    if not sep or not name.startswith(("cmd_", "savedcmd_")):
        raise BuildError(f"{path}: not a kbuild command file")
    return _unescape_make_cmd(value)


def commands_from_dry_run(output: str, objects: Sequence[str]) -> dict[str, str]:
    """The commands `make -n` would run for `objects`, from the text it printed.

    scripts/Kbuild.include `cmd_and_fixdep` passes the command to fixdep in single quotes
    (`scripts/basic/fixdep DEP OBJ '<make-cmd>' > .OBJ.cmd`), escaped as `.cmd` files hold it
    and with `'` written `'\\''` for the shell.
    """
    out: dict[str, str] = {}
    for obj in objects:
        directory, base = posixpath.split(obj)
        dep = posixpath.join(directory, f".{base}.d")
        marker = f"fixdep {dep} {obj} '"
        at = output.find(marker)
        if at < 0:
            continue
        pos = at + len(marker)
        chunks = []
        while True:
            end = output.find("'", pos)
            if end < 0:
                break
            chunks.append(output[pos:end])
            if output.startswith("'\\''", end):
                chunks.append("'")
                pos = end + 4
                continue
            out[obj] = _unescape_make_cmd("".join(chunks))
            break
    return out


def patched_command(command: str, source: Path, overlay: Path, obj: str, output: Path) -> str:
    """`command` compiling from `overlay` into `output` instead of `source` into the tree."""
    src = str(source).rstrip("/")
    out = re.sub(rf"{re.escape(src)}(?=/|\s|$)", str(overlay), command)
    directory, base = posixpath.split(obj)
    dep = posixpath.join(directory, f".{base}.d")
    out = re.sub(rf"(?<=[\s,=]){re.escape(dep)}(?=\s|$)", str(output.parent / f".{base}.d"), out)
    out = re.sub(rf"(?<=\s){re.escape(obj)}(?=\s|;|$)", str(output), out)
    # DWARF paths as if compiled from the source tree itself.
    compiler, sep, rest = out.partition(" ")
    return f"{compiler} -fdebug-prefix-map={overlay}={src}{sep}{rest}"


class Backend(ABC):
    """Compiles objects of one prepared tree."""

    def __init__(self, tree: BuildTree) -> None:
        self.tree = tree

    @abstractmethod
    def build_original(self, objects: Sequence[str], jobs: int) -> dict[str, Path]:
        """Build the objects from the original source; a failure is a `BuildError`."""

    @abstractmethod
    def build_both(
        self, objects: Sequence[str], overlay: Path, out: Path, jobs: int
    ) -> tuple[dict[str, Path], dict[str, Path | CompileFailure]]:
        """Build the objects from the original source (a failure is a `BuildError`) and from
        `overlay` into `out` (a failure is data), the two sides at the same time."""


def _parallel(
    jobs: int, items: Sequence[str], work: Callable[[str], Path | CompileFailure]
) -> dict[str, Path | CompileFailure]:
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(items) or 1))) as pool:
        return dict(zip(items, pool.map(work, items), strict=True))


class KbuildBackend(Backend):
    """A Linux source tree and its `make O=` output directory."""

    def build_original(self, objects: Sequence[str], jobs: int) -> dict[str, Path]:
        cmd = self.tree.make_command(jobs, *objects)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=build_env())
        except OSError as e:
            raise BuildError(f"cannot run make: {e}") from e
        if proc.returncode != 0:
            raise BuildError(
                f"compiling the original {', '.join(objects)} in {self.tree.path} failed:"
                f" {_first_errors(proc.stderr or proc.stdout, None)}"
            )
        return {o: self.tree.path / o for o in objects}

    def _known_commands(self, objects: Sequence[str]) -> dict[str, str]:
        """kbuild's command of each object: saved by an earlier build, else from `make -n`."""
        known: dict[str, str] = {}
        for obj in objects:
            with contextlib.suppress(BuildError):
                known[obj] = read_saved_command(self.tree.path, obj)
        missing = [o for o in objects if o not in known]
        if missing:
            cmd = [*self.tree.make_command(1, *missing), "-n"]
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, check=False, env=build_env()
                )
            except OSError as e:
                raise BuildError(f"cannot run make: {e}") from e
            known.update(commands_from_dry_run(proc.stdout, missing))
        return known

    def _patched(self, command: str, obj: str, overlay: Path, out: Path) -> Path | CompileFailure:
        output = out / obj
        output.parent.mkdir(parents=True, exist_ok=True)
        output.unlink(missing_ok=True)
        cmd = patched_command(command, self.tree.source, overlay, obj, output)
        proc = subprocess.run(
            ["sh", "-c", cmd],
            cwd=self.tree.path,
            capture_output=True,
            text=True,
            check=False,
            env=build_env(),
        )
        if proc.returncode != 0 or not output.exists():
            return CompileFailure(obj, _first_errors(proc.stderr or proc.stdout, overlay))
        return output

    def build_both(
        self, objects: Sequence[str], overlay: Path, out: Path, jobs: int
    ) -> tuple[dict[str, Path], dict[str, Path | CompileFailure]]:
        # The patched objects compile while make brings the original ones up to date: on a
        # first check of a file both sides take a full compile.
        commands = self._known_commands(objects)
        with ThreadPoolExecutor(max_workers=max(1, jobs) + 1) as pool:
            original = pool.submit(self.build_original, objects, jobs)
            patched = {
                o: pool.submit(self._patched, commands[o], o, overlay, out) for o in commands
            }
            originals = original.result()
            results = {o: f.result() for o, f in patched.items()}
        for obj in objects:
            # Compile the patched side again with the command make just used when the flags
            # changed since it was read (a changed config) or there was none, and when it
            # failed: it may have run before make generated a header the object includes
            # (`crypto/ecrdsa_params.asn1.h` from `ecrdsa_params.asn1`).
            saved = read_saved_command(self.tree.path, obj)
            if commands.get(obj) != saved or isinstance(results.get(obj), CompileFailure):
                results[obj] = self._patched(saved, obj, overlay, out)
        return originals, results


class ScriptBackend(Backend):
    """A build script with a compile mode: `SCRIPT compile ARCH SRC OUT CU...`."""

    def _compile(self, source: Path, out: Path, obj: str) -> Path | CompileFailure:
        assert self.tree.script is not None
        cu = obj[:-2] + ".c"
        cmd = ["bash", str(self.tree.script), "compile", self.tree.make_arch, str(source)]
        cmd += [str(out), cu]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=build_env())
        except OSError as e:
            raise BuildError(f"cannot run {self.tree.script}: {e}") from e
        output = out / obj
        if proc.returncode != 0 or not output.exists():
            return CompileFailure(obj, _first_errors(proc.stderr or proc.stdout, source))
        return output

    def build_original(self, objects: Sequence[str], jobs: int) -> dict[str, Path]:
        out = self.tree.work_dir / "original"
        built = _parallel(jobs, list(objects), lambda o: self._compile(self.tree.source, out, o))
        paths: dict[str, Path] = {}
        for obj, got in built.items():
            if isinstance(got, CompileFailure):
                raise BuildError(f"compiling the original {obj} failed: {got.message}")
            paths[obj] = got
        return paths

    def build_both(
        self, objects: Sequence[str], overlay: Path, out: Path, jobs: int
    ) -> tuple[dict[str, Path], dict[str, Path | CompileFailure]]:
        keys = [f"o:{o}" for o in objects] + [f"p:{o}" for o in objects]
        orig_out = self.tree.work_dir / "original"

        def work(key: str) -> Path | CompileFailure:
            side, obj = key.split(":", 1)
            return self._compile(
                self.tree.source if side == "o" else overlay, orig_out if side == "o" else out, obj
            )

        built = _parallel(jobs, keys, work)
        originals: dict[str, Path] = {}
        for obj in objects:
            got = built[f"o:{obj}"]
            if isinstance(got, CompileFailure):
                raise BuildError(f"compiling the original {obj} failed: {got.message}")
            originals[obj] = got
        return originals, {o: built[f"p:{o}"] for o in objects}


def backend_for(tree: BuildTree) -> Backend:
    """The backend that compiles objects of `tree`."""
    return ScriptBackend(tree) if tree.kind == "script" else KbuildBackend(tree)
