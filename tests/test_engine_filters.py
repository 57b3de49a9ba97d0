"""Candidate filters, each on its own: content, loops, repeats, duplicates, blocklist, safe mode."""

from __future__ import annotations

import numpy as np
import pytest

from server.engine.filters import (
    TermFilter,
    clean_expansion,
    dedupe_key,
    has_content,
    has_loop,
    known_phrases,
    loop_start,
    parse_blocklist,
    repeats_known,
    unique,
)

NO_TERMS = TermFilter((), safe_mode=False)


class TestContent:
    @pytest.mark.parametrize("text", ["", " ", ", ,", "...", "()", " ,;|\n"])
    def test_punctuation_and_whitespace_only(self, text: str) -> None:
        assert not has_content(text)

    @pytest.mark.parametrize("text", ["a", ", 8k", "猫", " 🐱", "(masterpiece)"])
    def test_words_digits_and_pictographs(self, text: str) -> None:
        assert has_content(text)


class TestLoops:
    @pytest.mark.parametrize(
        "text",
        [
            "very very very detailed",
            "a cat on a mat, a cat on a mat",
            "highly detailed, sharp focus, highly detailed, sharp focus",
            "!!!!!!!!",
            "((((((((",
            "abababababababab",
        ],
    )
    def test_loops_are_found(self, text: str) -> None:
        assert has_loop(text)

    @pytest.mark.parametrize(
        "text",
        [
            "portrait of a woman, highly detailed face, highly detailed eyes",
            "a cat and a dog",
            "very very detailed",
            "((masterpiece))",
            "by greg rutkowski and alphonse mucha",
        ],
    )
    def test_ordinary_prompts_are_not_loops(self, text: str) -> None:
        assert not has_loop(text)

    def test_loop_start_is_the_first_repeat(self) -> None:
        text = "red car, blue sky, red car, blue sky"
        assert text[loop_start(text) :].startswith("red car, blue sky")
        assert loop_start(text) > 0


class TestDuplicates:
    def test_case_spacing_and_punctuation_do_not_make_a_new_candidate(self) -> None:
        assert dedupe_key("Highly  Detailed,") == dedupe_key("highly detailed")

    def test_unique_keeps_the_first(self) -> None:
        assert unique(["Sharp focus", "sharp  focus", "8k", "8K."]) == ["Sharp focus", "8k"]


class TestRepeats:
    def test_phrase_already_in_the_prompt(self) -> None:
        known = known_phrases("(highly detailed:1.2), woman, portr", cursor=33)
        assert known == {"highly detailed", "woman"}
        assert repeats_known(" highly detailed", known)
        assert repeats_known("Woman", known)
        assert not repeats_known(" sharp focus", known)

    def test_the_phrase_being_written_does_not_count(self) -> None:
        assert known_phrases("woman portrait", cursor=14) == set()


class TestBlocklist:
    def test_plain_words_match_whole_words_case_insensitively(self) -> None:
        terms = TermFilter(["cat", "red hair"], safe_mode=False)
        assert terms.search("a Cat sitting") is not None
        assert terms.search("long RED HAIR") is not None
        assert terms.search("a catapult, scattered") is None

    def test_regex_entries(self) -> None:
        terms = TermFilter(["/blood\\w*/", "/^ugly/"], safe_mode=False)
        assert terms.search("bloody knife") is not None
        assert terms.search("Ugly duckling") is not None
        assert terms.search("not ugly") is None

    def test_only_matches_after_the_typed_text_count(self) -> None:
        terms = TermFilter(["cat"], safe_mode=False)
        assert terms.search("cat, fluffy", after=3) is None  # the user typed "cat" themselves
        assert terms.search("ca" + "t, fluffy", after=2) is not None  # a suggestion finished it

    def test_invalid_regex_is_a_clear_error(self) -> None:
        with pytest.raises(ValueError, match="not a valid regex"):
            TermFilter(["/([a-z/"], safe_mode=False)

    def test_empty_regex_and_non_strings_are_errors(self) -> None:
        with pytest.raises(ValueError):
            parse_blocklist(["//"])
        with pytest.raises(ValueError):
            parse_blocklist([3])  # type: ignore[list-item]

    def test_blank_entries_are_ignored(self) -> None:
        assert parse_blocklist(["", "  ", "dog"]) == (["dog"], [])


class TestSafeMode:
    @pytest.mark.parametrize("text", ["a nude woman", "NSFW art", "erotic", "masturbating"])
    def test_sexual_terms_are_caught(self, text: str) -> None:
        assert TermFilter((), safe_mode=True).search(text) is not None

    def test_hateful_terms_are_caught(self) -> None:
        assert TermFilter((), safe_mode=True).search("a swastika flag") is not None

    def test_off_means_off(self) -> None:
        assert TermFilter((), safe_mode=False).search("a nude woman") is None

    def test_innocent_words_pass(self) -> None:
        terms = TermFilter((), safe_mode=True)
        for text in ["breastplate armor", "sussex countryside", "essex", "scunthorpe", "cocktail"]:
            assert terms.search(text) is None, text


class _Vocab:
    """The two things TermFilter.banned_tokens reads from a vocabulary."""

    size = 6

    @staticmethod
    def word_terms() -> dict[str, list[int]]:
        return {"nude": [1, 2], "cat": [3], "bloody": [4], "b": [5]}


class TestBannedTokens:
    def test_safe_mode_and_blocklist_ban_whole_word_tokens(self) -> None:
        mask = TermFilter(["cat", "/blood\\w*/", "/b/"], safe_mode=True).banned_tokens(_Vocab())
        # One-letter tokens are never banned by a regex: they are pieces of many words.
        assert mask.tolist() == [False, True, True, True, True, False]

    def test_nothing_banned_without_terms(self) -> None:
        assert not NO_TERMS.banned_tokens(_Vocab()).any()
        assert NO_TERMS.banned_tokens(_Vocab()).dtype == np.bool_


class TestCleanExpansion:
    def test_keeps_new_phrases(self) -> None:
        assert clean_expansion("woman", " portrait, highly detailed", "", NO_TERMS) == (
            " portrait, highly detailed"
        )

    def test_drops_phrases_the_prompt_has_with_their_separator(self) -> None:
        result = clean_expansion("sharp focus, woman", ", sharp focus, 8k", "", NO_TERMS)
        assert result == ", 8k"

    def test_drops_repeats_within_itself(self) -> None:
        result = clean_expansion("woman", ", 8k, red hair, 8k, blue eyes", "", NO_TERMS)
        assert result == ", 8k, red hair, blue eyes"

    def test_drops_blocked_phrases(self) -> None:
        terms = TermFilter(["cat"], safe_mode=False)
        assert clean_expansion("woman", ", a cat, 8k", "", terms) == ", 8k"

    def test_a_blocked_word_finishing_the_users_word_drops_all(self) -> None:
        terms = TermFilter(["cat"], safe_mode=False)
        assert clean_expansion("a ca", "t, 8k", "", terms) is None

    def test_dropping_the_first_new_phrase_keeps_spacing(self) -> None:
        result = clean_expansion("woman, ", "woman, 8k, sharp", "", NO_TERMS)
        assert result == "8k, sharp"

    def test_cuts_loops_at_a_phrase_boundary(self) -> None:
        result = clean_expansion("x", ", red car, blue sky, red car, blue sky, red", "", NO_TERMS)
        assert result == ", red car, blue sky"

    def test_may_close_the_users_bracket_but_adds_none_open(self) -> None:
        assert clean_expansion("(masterpi", "ece:1.2), (best", "(", NO_TERMS) == "ece:1.2)"

    def test_nothing_useful_is_none(self) -> None:
        assert clean_expansion("woman", ", , ,", "", NO_TERMS) is None
        assert clean_expansion("woman, 8k", ", 8k", "", NO_TERMS) is None
