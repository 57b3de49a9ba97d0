"""The VS Code extension's settings mirror the server's: every key, with the server's defaults.

(The extension itself is built, unit-tested and packaged by .ci/run with npm.)
"""

from __future__ import annotations

import json
from typing import Any

from server.settings import _ENGINE_KEYS, _SERVER_KEYS, SECTION, build_settings
from tests.editor_support import EDITORS_DIR

EXTENSION_ONLY = {"serverCommand"}


def contributed_defaults() -> dict[str, Any]:
    manifest = json.loads((EDITORS_DIR / "vscode" / "package.json").read_text(encoding="utf-8"))
    properties = manifest["contributes"]["configuration"]["properties"]
    return {name.removeprefix(f"{SECTION}."): spec["default"] for name, spec in properties.items()}


def test_every_server_setting_is_contributed() -> None:
    assert set(contributed_defaults()) - EXTENSION_ONLY == set(_SERVER_KEYS) | set(_ENGINE_KEYS)


def test_contributed_defaults_are_the_servers() -> None:
    defaults = {
        key: value for key, value in contributed_defaults().items() if key not in EXTENSION_ONLY
    }
    validated = build_settings(defaults, None, ghost_text=True)  # VS Code shows ghost text
    assert validated.problems == ()
    assert validated.settings == build_settings(None, None, ghost_text=True).settings
