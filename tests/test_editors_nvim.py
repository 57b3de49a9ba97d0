"""The Neovim plugin (editors/nvim) in the real Neovim, headless: attach, menu, ghost text,
accepting it by key, alternatives and expansion on a .txt file."""

from __future__ import annotations

from pathlib import Path

from tests.editor_support import EDITORS_DIR, SCRIPTS_DIR, editor, run_editor

TYPED = "a portrait of a wom"


def test_neovim_plugin_on_a_text_file(tmp_path: Path) -> None:
    document = tmp_path / "scene.txt"
    document.write_text("", encoding="utf-8")
    argv = [
        editor("nvim", "neovim"),
        "--headless",
        "-u", "NONE",
        "-i", "NONE",
        "--cmd", f"set rtp^={EDITORS_DIR / 'nvim'}",
        "--cmd", "filetype on",  # as in any user's configuration (-u NONE turns it off)
        "-c", f"luafile {SCRIPTS_DIR / 'nvim_session.lua'}",
    ]  # fmt: skip
    result = run_editor(argv, tmp_path, PROMPT_TEST_FILE=str(document))

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
