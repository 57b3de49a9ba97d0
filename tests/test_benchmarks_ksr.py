"""The KSR simulator on hand-made systems whose keystroke counts are worked out by hand."""

from __future__ import annotations

import pytest

from benchmarks.baselines import NoSystem
from benchmarks.ksr import (
    KsrResult,
    MemoSystem,
    Option,
    best_option,
    evaluate,
    ghost_words,
    options,
    simulate,
)


class Scripted:
    """Answers from a table keyed by the typed text; nothing elsewhere."""

    name = "scripted"

    def __init__(self, answers: dict[str, tuple[str, list[tuple[int, str]]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def suggest(self, typed: str) -> tuple[str, list[tuple[int, str]]]:
        self.calls.append(typed)
        return self.answers.get(typed, ("", []))


def ksr_of(system: Scripted, target: str, use_menu: bool = True) -> KsrResult:
    result = KsrResult()
    simulate(system.suggest, target, result, use_menu)
    return result


def test_word_pieces_follow_ipython_accept_word() -> None:
    assert ghost_words("a b c") == ["a ", "b ", "c"]
    assert ghost_words(" sky  blue") == [" ", "sky  ", "blue"]
    assert ghost_words("end ") == ["end "]
    assert ghost_words("") == []


def test_whole_ghost_costs_one_tab() -> None:
    # "red car" (7 chars): Tab gains 7 for 1 (net 6) beats 2 words (net 5): 1 keystroke.
    # KSR = 1 - 1/7.
    result = ksr_of(Scripted({"": ("red car", [])}), "red car")
    assert result.keystrokes == 1
    assert result.ksr == pytest.approx(6 / 7)
    assert result.acceptances == {"ghost": 1, "ghost-words": 0, "menu": 0}
    assert result.chars_per_acceptance == 7


def test_word_by_word_when_only_the_first_words_are_right() -> None:
    # Target "red cat", ghost "red car": Tab invalid, first word "red " gains 4 for 1.
    # Then c, a, t typed: 1 + 3 = 4 keystrokes. KSR = 1 - 4/7 = 3/7.
    result = ksr_of(Scripted({"": ("red car", [])}), "red cat")
    assert result.keystrokes == 4
    assert result.ksr == pytest.approx(3 / 7)
    assert result.acceptances["ghost-words"] == 1


def test_k_words_cost_k_and_a_leading_space_is_a_piece() -> None:
    # "red" typed (3). Ghost " sky blue" -> pieces " ", "sky ", "blue"; target "red sky is":
    # whole ghost invalid, k=1 nets 0, k=2 " sky " gains 5 for 2 (net 3). Then "is" typed (2).
    # 3 + 2 + 2 = 7 keystrokes for 10 characters: KSR 0.3.
    result = ksr_of(Scripted({"red": (" sky blue", [])}), "red sky is")
    assert result.keystrokes == 7
    assert result.ksr == pytest.approx(0.3)


def test_menu_item_j_costs_j() -> None:
    # Target "blue": item 2 "blue" gains 4 for 2 -> 2 keystrokes, KSR 0.5.
    system = Scripted({"": ("", [(0, "black"), (0, "blue")])})
    assert ksr_of(system, "blue").ksr == pytest.approx(0.5)
    # Ghost only: the menu is ignored, 4 characters typed, KSR 0.
    assert ksr_of(system, "blue", use_menu=False).ksr == 0


def test_option_without_net_gain_is_not_taken() -> None:
    # Item 2 "ab" gains 2 for 2 (net 0): typing is preferred, 2 keystrokes, KSR 0.
    result = ksr_of(Scripted({"": ("", [(0, "x"), (0, "ab")])}), "ab")
    assert result.keystrokes == 2
    assert result.total_acceptances == 0


def test_menu_replaces_the_typed_word_from_its_start() -> None:
    # p, o, r typed (3); at "por" item 1 "portrait " (x[:0] + new text) gains 6 for 1;
    # at "portrait " Tab "of" gains 2 for 1. 5 keystrokes for 11 characters: KSR 6/11.
    system = Scripted({"por": ("", [(0, "portrait ")]), "portrait ": ("of", [])})
    result = ksr_of(system, "portrait of")
    assert result.keystrokes == 5
    assert result.ksr == pytest.approx(6 / 11)


def test_suggestions_that_are_not_a_prefix_are_ignored() -> None:
    # Wrong case ("Blue", "LUE") and overshooting text ("blue skies") never count: all 8
    # characters are typed, KSR 0.
    system = Scripted({"": ("Blue sky", [(0, "blue skies")]), "b": ("LUE sky", [])})
    result = ksr_of(system, "blue sky")
    assert result.keystrokes == len("blue sky")
    assert result.ksr == 0


def test_ties_keep_tab_before_menu() -> None:
    candidates = options("", "cat", [(0, "cat")])
    assert candidates[0] == Option("ghost", "cat", 1)
    assert best_option("cat", "", candidates) == Option("ghost", "cat", 1)


def test_menu_start_outside_the_text_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        options("ab", "", [(3, "x")])


def test_none_system_saves_nothing_and_totals_add_up() -> None:
    result = evaluate(NoSystem(), ["abc", "de"])
    assert (result.characters, result.keystrokes, result.ksr) == (5, 5, 0.0)
    assert result.per_prompt == [(3, 3), (2, 2)]


def test_results_sum_over_prompts() -> None:
    # "red car": 1 keystroke of 7; "blue": 4 of 4 -> KSR = 1 - 5/11.
    system = Scripted({"": ("red car", [])})
    result = evaluate(system, ["red car", "blue"])
    assert result.ksr == pytest.approx(1 - 5 / 11)
    assert result.per_prompt == [(7, 1), (4, 4)]


def test_memo_asks_each_state_once_and_times_real_calls() -> None:
    inner = Scripted({"": ("red car", [])})
    memo = MemoSystem(inner)
    evaluate(memo, ["red car"], use_menu=True)
    evaluate(memo, ["red car"], use_menu=False)
    assert inner.calls == [""]
    assert len(memo.latencies) == 1
