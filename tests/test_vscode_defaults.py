"""The VS Code extension mirrors the server settings: same names, same defaults, valid schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from klp_lsp import settings

PACKAGE_JSON = Path(__file__).resolve().parent.parent / "client-vscode" / "package.json"

# Settings that only the extension reads (how to start the server, tracing): no server default.
CLIENT_ONLY = {"trace.server", "server.command", "server.python"}


def _properties() -> dict[str, dict[str, Any]]:
    package = json.loads(PACKAGE_JSON.read_text(encoding="utf-8"))
    props: dict[str, dict[str, Any]] = package["contributes"]["configuration"]["properties"]
    prefix = f"{settings.SECTION}."
    assert all(key.startswith(prefix) for key in props), sorted(props)
    return {key.removeprefix(prefix): value for key, value in props.items()}


def test_every_server_setting_is_contributed() -> None:
    missing = set(settings.defaults()) - set(_properties())
    assert not missing, f"package.json lacks klp-lsp.{sorted(missing)}"


def test_no_unknown_settings() -> None:
    unknown = set(_properties()) - set(settings.defaults()) - CLIENT_ONLY
    assert not unknown, f"package.json has settings the server does not know: {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(settings.SETTINGS))
def test_default_equals_server_default(name: str) -> None:
    prop = _properties()[name]
    assert "default" in prop, f"klp-lsp.{name} has no default"
    assert prop["default"] == settings.defaults()[name]


@pytest.mark.parametrize("name", sorted(settings.SETTINGS) + sorted(CLIENT_ONLY))
def test_default_matches_its_schema(name: str) -> None:
    prop = _properties()[name]
    schema = {key: value for key, value in prop.items() if "escription" not in key}
    jsonschema.validate(prop["default"], schema)


def test_client_only_defaults() -> None:
    props = _properties()
    assert props["trace.server"]["default"] == "off"
    assert props["trace.server"]["enum"] == ["off", "messages", "verbose"]
    assert props["server.command"]["default"] == []
    assert props["server.python"]["default"] == "python3"


@pytest.mark.parametrize("name", sorted(settings.SETTINGS))
def test_description_is_present(name: str) -> None:
    prop = _properties()[name]
    assert prop.get("markdownDescription") or prop.get("description")
