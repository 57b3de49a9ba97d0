"""Prompt syntax around the cursor: each markup form is recognised and never broken."""

from __future__ import annotations

import pytest

from server.engine.syntax import (
    ASPECT_RATIOS,
    analyse,
    cut_unbalanced,
    normalize_phrase,
    open_brackets,
    phrase_end,
    split_phrases,
)


def at_end(text: str):
    return analyse(text, len(text))


class TestWords:
    def test_partial_word_at_end(self) -> None:
        where = at_end("woman portra")
        assert where.mode == "text"
        assert (where.word_start, where.word_end) == (6, 12)
        assert where.in_word and not where.inside_word

    def test_after_space_is_not_in_a_word(self) -> None:
        where = at_end("woman portrait, ")
        assert not where.in_word
        assert where.word_start == where.cursor == 16

    def test_cursor_inside_a_word_sees_the_rest(self) -> None:
        where = analyse("woman portrait", 10)
        assert (where.word_start, where.word_end) == (6, 14)
        assert where.inside_word


class TestWeightsAndBrackets:
    def test_inside_weight_completes_the_word_only(self) -> None:
        where = at_end("portrait, (masterpi")
        assert where.mode == "text"
        assert where.word_start == 11
        assert where.brackets == "("

    def test_nested_emphasis(self) -> None:
        assert at_end("((best qual").brackets == "(("

    def test_closed_brackets_are_not_open(self) -> None:
        assert open_brackets("(a:1.2), [b], {c|d}") == ""

    def test_escaped_parenthesis_is_literal(self) -> None:
        assert open_brackets(r"\(artist\) name") == ""

    def test_weight_value_offers_weights(self) -> None:
        where = at_end("(masterpiece:1.")
        assert where.mode == "options"
        assert where.option_start == 13
        assert where.options and all(option.startswith("1.") for option in where.options)
        # The weight closes its parenthesis, unless one follows already.
        assert where.options[0] == "1.1)"
        assert analyse("(cat:1.)", len("(cat:1.")).options[0] == "1.1"

    def test_prompt_editing_step_offers_nothing(self) -> None:
        assert at_end("[cat:dog:0.").mode == "none"

    def test_prompt_editing_target_is_text(self) -> None:
        assert at_end("[cat:do").mode == "text"

    def test_alternation_is_text(self) -> None:
        where = at_end("{red|blu")
        assert where.mode == "text" and where.brackets == "{"


class TestTagsAndParameters:
    @pytest.mark.parametrize(
        "text", ["a cat <lora:", "a cat <lora:name", "<lora:name:0.", "<hypernet:x"]
    )
    def test_inside_extra_network_tag_offers_nothing(self, text: str) -> None:
        assert at_end(text).mode == "none"

    def test_after_a_closed_tag_is_text(self) -> None:
        assert at_end("<lora:name:0.8> a ca").mode == "text"

    def test_aspect_ratio_values(self) -> None:
        where = at_end("a cat --ar ")
        assert where.mode == "options"
        assert where.options == ASPECT_RATIOS
        assert where.option_start == where.cursor

    def test_aspect_ratio_prefix_filters(self) -> None:
        where = at_end("a cat --ar 16")
        assert where.options == ("16:9",)
        assert where.option_start == len("a cat --ar ")

    def test_parameter_names(self) -> None:
        where = at_end("a cat --sty")
        assert where.mode == "options"
        assert set(where.options) == {"style", "stylize"}
        assert where.option_start == len("a cat --")

    def test_other_parameter_values_offer_nothing(self) -> None:
        assert at_end("a cat --seed 12").mode == "none"
        assert at_end("a cat --ar 16:9 castle").mode == "none"

    def test_text_before_parameters_is_text(self) -> None:
        text = "a ca --ar 16:9"
        assert analyse(text, 4).mode == "text"


class TestLines:
    def test_negative_prompt_line_is_its_own_segment(self) -> None:
        text = "woman portrait\nNegative prompt: blurr"
        where = at_end(text)
        assert where.mode == "text"
        assert text[where.segment_start :] == "blurr"

    def test_negative_label_itself_offers_nothing(self) -> None:
        assert analyse("Negative prompt: x", 5).mode == "none"

    def test_segment_is_the_cursor_line(self) -> None:
        text = "first line\nsecond li"
        where = at_end(text)
        assert where.segment_start == len("first line\n")

    def test_generation_parameters_line_offers_nothing(self) -> None:
        assert at_end("a cat\nSteps: 20, Sampler: Eul").mode == "none"


class TestPhraseEnd:
    @pytest.mark.parametrize(
        ("generated", "brackets", "finishing", "expected"),
        [
            (" highly detailed, sharp", "", False, 16),
            ("it of a woman, detailed", "", True, 13),  # the word, then the phrase
            ("it, highly detailed, x", "", True, 19),  # a separator right after the word
            ("ece), best quality", "(", True, 3),  # stops before the user's closer
            ("ece:1.2)", "(", True, 3),  # and before a weight
            ("e|green}", "{", True, 1),  # and before an alternative
            (" cat (fluffy:1.2), dog", "", False, 17),  # its own weights are fine
            (" cat) dog", "", False, 4),  # a stray closer ends it
            (" cat <lora:x:1>", "", False, 5),  # trailing space is stripped later
            (" cat BREAK dog", "", False, 5),
            (" cat --ar 16:9", "", False, 4),
            (" cat\nNegative prompt: x", "", False, 4),
            (" unfinished phrase", "", False, None),
        ],
    )
    def test_phrase_end(
        self, generated: str, brackets: str, finishing: bool, expected: int | None
    ) -> None:
        assert phrase_end(generated, brackets, finishing) == expected

    def test_a_leading_separator_starts_the_next_phrase(self) -> None:
        # After "(masterpiece:1.2)" the model may go on with ", best quality".
        assert phrase_end(", best quality, x", "", finishing_word=False) == 14


class TestBalance:
    @pytest.mark.parametrize(
        ("text", "brackets", "allow", "expected"),
        [
            ("cat (fluffy", "", False, "cat"),
            ("cat (fluffy:1.2)", "", False, "cat (fluffy:1.2)"),
            ("cat) dog", "", False, "cat"),
            ("ece), best", "(", True, "ece), best"),
            ("ece), best", "(", False, "ece"),
            ("a)) b", "(", True, "a)"),
            ("a [b {c", "", False, "a"),
        ],
    )
    def test_cut_unbalanced(self, text: str, brackets: str, allow: bool, expected: str) -> None:
        assert cut_unbalanced(text, brackets, allow) == expected


class TestPhrases:
    def test_split_at_every_separator(self) -> None:
        text = "a, b; c|d BREAK e\nf"
        assert [text[s:e].strip() for s, e in split_phrases(text)] == list("abcdef")

    @pytest.mark.parametrize(
        ("raw", "normalized"),
        [
            ("(Best  Quality:1.2)", "best quality"),
            ("((masterpiece))", "masterpiece"),
            ("[blurry]", "blurry"),
            ("<lora:x:0.8> cat", "cat"),
            ("  Highly Detailed. ", "highly detailed"),
        ],
    )
    def test_normalize(self, raw: str, normalized: str) -> None:
        assert normalize_phrase(raw) == normalized
