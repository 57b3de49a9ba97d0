"""Helix's languages.toml and the Kakoune (kakoune-lsp) script: each runs prompt-ls for the
languages it serves, with settings the server accepts.

Neither Helix nor kakoune-lsp is packaged in Debian: the Helix file is checked as data, and the
Kakoune script runs in Debian's Kakoune with kakoune-lsp's ``lsp_servers`` option declared.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

from server.settings import SECTION, ServerSettings, build_settings
from tests.conftest import subprocess_env
from tests.editor_support import EDITORS_DIR, editor

KAKOUNE_WAIT_S = 60  # bounds a hung Kakoune; it needs well under a second


def assert_accepted_by_the_server(settings: dict[str, Any]) -> None:
    validated = build_settings(settings, None)
    assert settings and validated.problems == ()


def test_helix_runs_prompt_ls_for_text_prompt_and_markdown() -> None:
    config = tomllib.loads((EDITORS_DIR / "helix" / "languages.toml").read_text(encoding="utf-8"))
    server = config["language-server"]["prompt-ls"]
    assert server["command"] == "prompt-ls"
    assert_accepted_by_the_server(server["config"])
    languages = {language["name"]: language for language in config["language"]}
    assert set(languages) == {"text", "prompt", "markdown"}
    for name, language in languages.items():
        assert "prompt-ls" in language["language-servers"]
        assert ServerSettings().serves(language.get("language-id", name), None), name
    assert languages["text"]["file-types"] == ["txt"]
    assert languages["prompt"]["file-types"] == ["prompt"]


def test_kakoune_gives_text_and_prompt_files_prompt_ls(tmp_path: Path) -> None:
    kak = editor("kak", "kakoune")
    steps = [
        "declare-option str lsp_servers",
        f"source {EDITORS_DIR / 'kakoune' / 'prompt-autocomplete.kak'}",
    ]
    for suffix in ("txt", "prompt"):
        document = tmp_path / f"scene.{suffix}"
        document.write_text("a portrait of a woman\n", encoding="utf-8")
        steps += [
            f"edit {document}",
            f"echo -to-file {tmp_path / suffix}.filetype %opt{{filetype}}",
            f"echo -to-file {tmp_path / suffix}.servers %opt{{lsp_servers}}",
        ]
    script = tmp_path / "session.kak"
    script.write_text("\n".join([*steps, "quit!"]) + "\n", encoding="utf-8")
    subprocess.run(
        [kak, "-n", "-ui", "dummy", "-e", f"source {script}"],
        env=subprocess_env(HOME=str(tmp_path)),
        stdin=subprocess.DEVNULL,
        timeout=KAKOUNE_WAIT_S,
        check=True,
    )
    for suffix, filetype in (("txt", "text"), ("prompt", "prompt")):
        assert (tmp_path / f"{suffix}.filetype").read_text() == filetype
        assert ServerSettings().serves(filetype, None)  # kakoune-lsp sends it as languageId
        servers = tomllib.loads((tmp_path / f"{suffix}.servers").read_text())
        server = servers["prompt-ls"]
        assert server["settings_section"] == SECTION
        assert_accepted_by_the_server(server["settings"][SECTION])
