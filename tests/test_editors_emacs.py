"""The Emacs package (editors/emacs) in the real Emacs with eglot, in batch mode: completion at
point and the ghost-text overlay on a .txt buffer, its keys, expansion and *.prompt files."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.editor_support import (
    EDITORS_DIR,
    SCRIPTS_DIR,
    assert_expanded,
    assert_word_then_rest_accepted,
    editor,
    run_editor,
)

TYPED = "a portrait of a wom"
PACKAGE = EDITORS_DIR / "emacs" / "prompt-autocomplete.el"


def test_the_package_byte_compiles_without_warnings(tmp_path: Path) -> None:
    set_destination = f'(setq byte-compile-dest-file-function (lambda (_) "{tmp_path}/p.elc"))'
    argv = [
        editor("emacs", "emacs-nox elpa-eglot"),
        "--batch",
        "--eval", "(package-initialize)",
        "--eval", "(setq byte-compile-error-on-warn t)",
        "--eval", set_destination,
        "-f", "batch-byte-compile", str(PACKAGE),
    ]  # fmt: skip
    compiled = subprocess.run(argv, capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr


def test_emacs_eglot_on_a_text_file(tmp_path: Path) -> None:
    document = tmp_path / "scene.txt"
    document.write_text("", encoding="utf-8")
    argv = [
        editor("emacs", "emacs-nox elpa-eglot"),
        "--batch",
        "-l",
        str(SCRIPTS_DIR / "emacs_session.el"),
    ]
    result = run_editor(
        argv, tmp_path, PROMPT_TEST_FILE=str(document), PROMPT_TEST_PLUGIN_DIR=str(PACKAGE.parent)
    )

    assert result["major_mode"] == "text-mode" and result["language_id"] == "text"
    assert result["ghost_mode"] is True
    assert result["completion_prefix"] == "wom"
    candidates = result["candidates"]
    assert candidates and all(text.startswith("wom") for text in candidates), candidates
    assert result["phrase"] in result["phrase_candidates"], result["phrase_candidates"]
    assert result["line_after_menu"].rstrip() == f"a portrait of a woman {result['phrase']}"

    ghost = result["ghost"]
    assert result["overlays"] == [ghost]  # shown after point, not inserted
    assert result["line_with_ghost"] == TYPED
    assert result["ghost_next"] != ghost and result["ghost_back"] == ghost

    assert_word_then_rest_accepted(result, TYPED)
    assert result["overlays_after_moving"] == []  # moving away dismisses the ghost

    assert_expanded(result, "a portrait of a woman")

    assert result["prompt_file_mode"] == "prompt-mode" and result["prompt_file_managed"] is True
