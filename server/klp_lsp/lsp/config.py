"""Validates the settings a client sends (`klp_lsp.settings`) into one `Config`.

A wrong setting is reported in one message and replaced by its default; the server goes on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from klp_lsp import settings
from klp_lsp.errors import KlpError
from klp_lsp.fleet.spec import FleetSpec, load_fleet
from klp_lsp.index.locate import default_index_dir
from klp_lsp.model import FINDING_KINDS, Severity

SEVERITY_VALUES: tuple[str, ...] = ("error", "warning", "information", "hint", "off")

# Keys under the section that only clients read (how to start the server, tracing).
_CLIENT_ONLY = frozenset({"trace", "server"})


@dataclass(frozen=True, slots=True)
class Config:
    """The server's settings after validation; empty settings are `None` or `()`."""

    binaries: tuple[Path, ...] = ()
    kernel_release: str | None = None
    source_root: Path | None = None
    index_dir: Path = field(default_factory=default_index_dir)
    severity_overrides: tuple[tuple[str, str], ...] = ()
    inlay_hints: bool = True
    compile_check: bool = False
    build_tree: Path | None = None
    fleet: FleetSpec | None = None

    def severity(self, kind: str, default: Severity) -> Severity | None:
        """The severity of a finding kind after `severityOverrides`; None when turned off."""
        for k, value in self.severity_overrides:
            if k == kind:
                return None if value == "off" else value  # type: ignore[return-value]
        return default

    def selection_key(self) -> tuple[object, ...]:
        """What decides which indexes are needed: a change means re-indexing."""
        return (self.binaries, self.kernel_release, self.index_dir)


def settings_section(raw: object) -> object:
    """The `klp-lsp` section of a settings object, whether it is nested or already the section."""
    if isinstance(raw, Mapping) and isinstance(raw.get(settings.SECTION), Mapping):
        return raw[settings.SECTION]
    return raw


def _expand(value: str, root: Path | None) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    if not path.is_absolute() and root is not None:
        path = root / path
    return path


def _directory(
    values: Mapping[str, Any], key: str, root: Path | None, errors: list[str]
) -> Path | None:
    """An optional setting naming an existing directory (empty: None)."""
    value = values[key]
    if not isinstance(value, str):
        errors.append(f"{key} must be a path")
        return None
    if not value:
        return None
    path = _expand(value, root)
    if not path.is_dir():
        errors.append(f"{key}: {path}: not a directory")
        return None
    return path


def parse_settings(raw: object, root: Path | None = None) -> tuple[Config, list[str]]:
    """Validate client settings; return the config and one line per wrong setting.

    `raw` is the `klp-lsp` section (or an object holding it) from `initializationOptions`,
    `workspace/configuration` or `workspace/didChangeConfiguration`; `None` means all defaults.
    Relative paths are taken relative to `root` (the workspace folder).
    """
    raw = settings_section(raw)
    errors: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return Config(), [f"settings must be an object, not {type(raw).__name__}"]
    values: dict[str, Any] = settings.defaults()
    for key, value in raw.items():
        if key in _CLIENT_ONLY:
            continue
        if key not in values:
            errors.append(f"unknown setting {key!r}")
            continue
        if value is not None:
            values[key] = value

    binaries: list[Path] = []
    if isinstance(values["binaries"], str):
        values["binaries"] = [values["binaries"]] if values["binaries"] else []
    if not isinstance(values["binaries"], list) or not all(
        isinstance(b, str) for b in values["binaries"]
    ):
        errors.append("binaries must be a list of paths")
    else:
        for b in values["binaries"]:
            path = _expand(b, root)
            if path.exists():
                binaries.append(path)
            else:
                errors.append(f"binaries: {path}: no such file or directory")

    kernel = values["kernelRelease"]
    if not isinstance(kernel, str):
        errors.append("kernelRelease must be a string")
        kernel = ""
    elif kernel and ("/" in kernel or kernel != kernel.strip()):
        errors.append(f"kernelRelease {kernel!r} is not a release name like 6.1.0-26-amd64")
        kernel = ""

    source_root = _directory(values, "sourceRoot", root, errors)

    index_dir = default_index_dir()
    idx = values["indexDir"]
    if not isinstance(idx, str):
        errors.append("indexDir must be a path")
    elif idx:
        path = _expand(idx, root)
        if path.exists() and not path.is_dir():
            errors.append(f"indexDir: {path}: not a directory")
        else:
            index_dir = path

    compile_check = values["compileCheck"]
    if not isinstance(compile_check, bool):
        errors.append("compileCheck must be true or false")
        compile_check = False
    build_tree = _directory(values, "buildTree", root, errors)
    if compile_check and build_tree is None and not errors:
        errors.append("compileCheck needs buildTree (a tree made by klp-lsp prepare-build)")
        compile_check = False

    overrides: list[tuple[str, str]] = []
    sev = values["severityOverrides"]
    if not isinstance(sev, Mapping):
        errors.append("severityOverrides must be an object of finding kind -> severity")
    else:
        for kind, level in sev.items():
            if kind not in FINDING_KINDS:
                errors.append(f"severityOverrides: unknown finding kind {kind!r}")
            elif level not in SEVERITY_VALUES:
                allowed = ", ".join(SEVERITY_VALUES)
                errors.append(f"severityOverrides.{kind}: {level!r} is not one of {allowed}")
            else:
                overrides.append((kind, level))

    inlay_hints = values["inlayHints"]
    if not isinstance(inlay_hints, bool):
        errors.append("inlayHints must be true or false")
        inlay_hints = True
    fleet: FleetSpec | None = None
    where = values["fleet"]
    if not isinstance(where, str):
        errors.append("fleet must be a path to FLEET.toml, a directory or a glob")
    elif where:
        try:
            fleet = load_fleet(str(_expand(where, root)))
        except KlpError as e:
            errors.append(f"fleet: {e}")

    config = Config(
        binaries=tuple(binaries),
        kernel_release=kernel or None,
        source_root=source_root,
        index_dir=index_dir,
        severity_overrides=tuple(overrides),
        inlay_hints=inlay_hints,
        compile_check=compile_check,
        build_tree=build_tree,
        fleet=fleet,
    )
    return config, errors


def describe_errors(errors: list[str]) -> str:
    """The one message shown for wrong settings."""
    return f"klp-lsp: wrong settings, using defaults for them: {'; '.join(errors)}"
