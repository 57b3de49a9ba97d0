"""CLIP token counts and A1111's chunking (server/engine/clip_tokens.py)."""

from __future__ import annotations

import functools
import itertools
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.vocabulary import reference_encoder
from server.engine import clip_tokens
from server.engine.clip_tokens import CHUNK_LENGTH, budget, encode, notes
from tests.conftest import CORPUS_DIR, subprocess_env

MODERN_DEV = CORPUS_DIR.parent / "modern" / "modern_dev.txt"
SAMPLE = 500  # prompts from each file: 1,000 in all


@functools.cache
def _reference() -> Callable[[str], list[int]]:
    """OpenAI's ``simple_tokenizer`` (clip-anytorch, a test-only install: ``.ci/run``)."""
    encode = reference_encoder()
    if encode is None:
        pytest.fail("the reference tokenizer is missing: pip install --no-deps clip-anytorch")
    return encode


def _prompts(path: Path) -> list[str]:
    if not path.is_file():
        pytest.fail(f"shared corpus missing: {path}")
    with path.open(encoding="utf-8") as lines:
        return [line.rstrip("\n") for line in itertools.islice(lines, SAMPLE)]


@pytest.mark.corpus
def test_tokens_equal_the_reference_on_a_thousand_prompts(dev_corpus: Path) -> None:
    reference = _reference()
    prompts = _prompts(dev_corpus) + _prompts(MODERN_DEV)
    assert len(prompts) == 2 * SAMPLE
    differing = [prompt for prompt in prompts if encode(prompt) != reference(prompt)]
    assert differing == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Hello,  WORLD!!",
        "&amp;quot; caf\u00e9 \u03a9\u03bc\u03ad\u03b3\u03b1",
        "don't 1999s",
        "<|endoftext|> x",
        "\u201ccurly\u201d \u00c3\u00a9 mojibake",
        "\U0001f600 emoji\tTAB",
    ],
)
def test_odd_text_matches_the_reference(text: str) -> None:
    assert encode(text) == _reference()(text)


def test_a1111_parsing_drops_weights_brackets_and_extra_networks() -> None:
    plain = budget("masterpiece, 1girl, blue sky")
    marked = budget("(masterpiece:1.2), [1girl], <lora:add_detail:0.8> ((blue sky))")
    assert marked.tokens == plain.tokens == 7  # "1girl" is "1" "girl"
    assert budget(r"\(escaped\)").tokens == 3  # literal parentheses count


def test_the_command_counts_without_start_and_end_tokens() -> None:
    assert budget("").tokens == 0
    assert budget("").chunk_tokens == [0]
    assert budget("cat").chunk_tokens == [1]


def test_long_prompts_fill_chunks_of_75() -> None:
    counted = budget(" ".join(["cat"] * 100))
    assert counted.chunk_tokens == [75, 25]
    assert counted.tokens == 100


def test_break_starts_a_chunk_and_earlier_chunks_count_in_full() -> None:
    counted = budget("red cat BREAK blue dog")
    assert counted.chunk_tokens == [2, 2]
    assert counted.tokens == CHUNK_LENGTH + 2  # A1111 pads the first chunk to 75
    assert budget("red BREAKFAST").chunk_tokens == [2]  # only the whole word
    # BREAK inside brackets is scaled with them and is then plain text, as in A1111.
    assert budget("(red BREAK cat)").chunk_tokens == [3]


def test_a_comma_within_20_tokens_of_the_boundary_moves_the_rest_on() -> None:
    # 70 tokens, a comma (71), then 10 more: the boundary at 75 falls 4 tokens after the
    # comma, so the 4 words after it start chunk 2.
    text = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    counted = budget(text)
    assert counted.chunk_tokens == [71, 10]
    assert text[counted.chunks[1].start :].startswith("dog")
    # A comma further back than 20 tokens is not used.
    text = " ".join(["cat"] * 50) + ", " + " ".join(["dog"] * 30)
    assert budget(text).chunk_tokens == [75, 6]


def test_and_counts_the_longest_sub_prompt() -> None:
    assert budget("a cat AND a big red dog:1.2").tokens == 4


def test_chunks_know_where_their_text_is() -> None:
    text = "(masterpiece:1.2), " + "cat " * 80
    counted = budget(text)
    second = counted.chunks[1]
    assert text[second.start : second.end].split() == ["cat"] * (second.tokens)


def test_notes_mark_each_chunk_after_the_first() -> None:
    text = "red cat BREAK blue dog BREAK green"
    found = notes(text, limit=0)
    assert [(text[n.start : n.end], n.severity) for n in found] == [
        ("blue dog", "information"),
        ("green", "information"),
    ]
    assert "chunk 2" in found[0].message


def test_notes_warn_past_the_limit() -> None:
    text = "red cat BREAK blue dog BREAK green"
    severities = [note.severity for note in notes(text, limit=150)]
    assert severities == ["information", "warning"]
    # A limit inside a chunk: the text from the first token past it is marked.
    text = " ".join(f"w{i}" for i in range(20))
    limit = budget(text).tokens - 3
    (warning,) = notes(text, limit=limit)
    assert warning.severity == "warning"
    assert warning.end == len(text)
    assert warning.start > 0


def test_notes_follow_prompt_lines() -> None:
    text = "Negative prompt: " + "ugly " * 80
    (note,) = notes(text, limit=0)
    assert text[note.start : note.end].split() == ["ugly"] * 5
    assert notes("Steps: 20, Sampler: Euler a, " + "x " * 90, limit=75) == []


def test_lone_surrogates_do_not_break_counting() -> None:
    assert budget("a \ud800 b").tokens == 3


def test_the_tokenizer_is_built_once() -> None:
    assert clip_tokens.clip_tokenizer() is clip_tokens.clip_tokenizer()


def test_counting_never_imports_torch(python: str) -> None:
    code = (
        "import sys; from server.engine import clip_tokens; clip_tokens.budget('a cat');"
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([python, "-c", code], env=subprocess_env(), check=False).returncode == 0
