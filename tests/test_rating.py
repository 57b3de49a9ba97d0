"""`prompt-models rate`: ideas, blinding, scripted judgements, the CSV and the summary."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_store import cli
from model_store.study import rating
from model_store.study.rating import (
    FIELDS,
    Estimate,
    Pairing,
    RatingError,
    bootstrap_interval,
    default_ideas,
    format_summary,
    parse_scores,
    plan,
    read_ideas,
    read_ratings,
    run_session,
    summarize,
)
from server.engine.study import rate_command

IDEAS = ["a castle", "a red fox", "portrait of", "city at night"]


def fake_expanders() -> dict[str, rating.Expander]:
    return {
        "alpha": lambda idea: f"{idea}, golden hour",
        "beta": lambda idea: f"{idea}, in fog",
    }


def scripted(*answers: str) -> rating.InputFunction:
    """input() that answers from a script and then hits the end of input."""
    pending: Iterator[str] = iter(answers)

    def answer(prompt: str) -> str:
        try:
            return next(pending)
        except StopIteration:
            raise EOFError from None

    return answer


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_default_ideas_are_the_first_two_to_four_words_of_seeded_prompts() -> None:
    prompts = [f"word{i} second{i} third{i} fourth{i} fifth{i}, more" for i in range(50)]
    ideas = default_ideas([*prompts, "single"], 10, seed=3)
    assert len(ideas) == 10 and len(set(ideas)) == 10
    assert all(2 <= len(idea.split()) <= 4 for idea in ideas)
    assert all(any(p.startswith(idea) for p in prompts) for idea in ideas)
    assert default_ideas(prompts, 10, seed=3) == ideas
    assert default_ideas(prompts, 10, seed=4) != ideas
    with pytest.raises(RatingError, match="two words"):
        default_ideas(["single"], 3)


def test_read_ideas_skips_blanks_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "ideas.txt"
    path.write_text("# my ideas\n a castle \n\nportrait of\n")
    assert read_ideas(path) == ["a castle", "portrait of"]
    path.write_text("# nothing\n\n")
    with pytest.raises(RatingError, match="no ideas"):
        read_ideas(path)
    with pytest.raises(RatingError, match="cannot read"):
        read_ideas(tmp_path / "missing.txt")


def test_plan_shuffles_ideas_and_blinds_each_pair_with_a_seed() -> None:
    ideas = [f"idea {i}" for i in range(40)]
    pairs = plan(ideas, ["alpha", "beta"], seed=7)
    assert sorted(p.idea for p in pairs) == sorted(ideas) and [p.idea for p in pairs] != ideas
    assert {p.model_a for p in pairs} == {"alpha", "beta"}  # both models appear as A
    assert all({p.model_a, p.model_b} == {"alpha", "beta"} for p in pairs)
    assert plan(ideas, ["alpha", "beta"], seed=7) == pairs
    for models in (["alpha"], ["alpha", "alpha"], ["a", "b", "c"]):
        with pytest.raises(RatingError, match="two different models"):
            plan(ideas, models, seed=0)


@pytest.mark.parametrize(
    ("answer", "scores"),
    [("4 3 5 4", (4, 3, 5, 4)), ("4,3,5,4", (4, 3, 5, 4)), ("4354", (4, 3, 5, 4))],
)
def test_parse_scores_accepts_four_scores(answer: str, scores: tuple[int, ...]) -> None:
    assert parse_scores(answer) == scores


@pytest.mark.parametrize("answer", ["", "4 3 5", "4 3 5 6", "0 1 2 3", "a b c d", "4 3 5 4 4"])
def test_parse_scores_refuses_anything_else(answer: str) -> None:
    assert parse_scores(answer) is None


def test_scores_session_writes_one_row_per_judgement_with_the_models_unblinded(
    tmp_path: Path,
) -> None:
    out = tmp_path / "ratings.csv"
    pairs = [Pairing("a castle", "beta", "alpha"), Pairing("a red fox", "alpha", "beta")]
    shown = io.StringIO()
    answers = scripted("5 4 4 5", "oops", "1 2 2 1", "3333", "2222")
    rows = run_session(pairs, fake_expanders(), out, input_fn=answers, output=shown, rater="kim")
    assert len(rows) == 2
    saved = read_rows(out)
    assert list(saved[0]) == FIELDS
    first, second = saved
    assert (first["model_a"], first["model_b"]) == ("beta", "alpha")
    assert first["expansion_a"] == "a castle, in fog"  # what A showed was beta's
    assert (first["a_coherence"], first["a_overall"], first["b_overall"]) == ("5", "5", "1")
    assert (second["a_fluency"], second["b_fluency"]) == ("3", "2")
    assert first["rater"] == "kim" and first["mode"] == "scores" and first["preference"] == ""
    text = shown.getvalue()
    assert "not understood" in text
    assert "alpha" not in text and "beta" not in text  # blind: no model names shown
    assert "A: a castle, in fog" in text


def test_preference_session_records_the_preferred_model(tmp_path: Path) -> None:
    out = tmp_path / "ratings.csv"
    pairs = plan(IDEAS[:3], ["alpha", "beta"], seed=1)
    run_session(pairs, fake_expanders(), out, mode="preference", input_fn=scripted("a", "B", "t"))
    saved = read_rows(out)
    assert [row["preference"] for row in saved] == ["A", "B", "tie"]
    assert saved[0]["preferred_model"] == pairs[0].model_a
    assert saved[1]["preferred_model"] == pairs[1].model_b
    assert saved[2]["preferred_model"] == "tie"


def test_quit_skip_and_end_of_input_keep_what_was_rated(tmp_path: Path) -> None:
    out = tmp_path / "ratings.csv"
    pairs = plan(IDEAS, ["alpha", "beta"], seed=2)
    rows = run_session(pairs, fake_expanders(), out, input_fn=scripted("1111", "s", "2222", "q"))
    assert rows == []  # skipped in the middle of the first pair, quit during the second
    rows = run_session(pairs, fake_expanders(), out, input_fn=scripted("1111", "5555", "s"))
    assert len(rows) == 1
    rows = run_session(pairs, fake_expanders(), out, input_fn=scripted("3333"))  # then EOF
    assert rows == []
    assert len(read_rows(out)) == 1  # appended, header written once
    assert read_rows(out)[0]["idea"] == pairs[0].idea


def test_a_foreign_csv_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "ratings.csv"
    out.write_text("something,else\n1,2\n")
    with pytest.raises(RatingError, match="another --out"):
        run_session(plan(IDEAS, ["alpha", "beta"], 0), fake_expanders(), out, input_fn=scripted())


def test_bootstrap_interval_brackets_the_mean() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 3.0, 4.0, 2.0]
    low, high = bootstrap_interval(values, seed=0)
    assert low is not None and high is not None
    assert low < sum(values) / len(values) < high and low >= 1 and high <= 5
    assert bootstrap_interval([4.0, 4.0, 4.0]) == (4.0, 4.0)
    assert bootstrap_interval([3.0]) == (None, None)


def test_summary_per_model_means_and_win_rates(tmp_path: Path) -> None:
    rows = [
        {"model_a": "alpha", "model_b": "beta", "a_overall": "5", "b_overall": "1"},
        {"model_a": "beta", "model_b": "alpha", "a_overall": "2", "b_overall": "4"},
        {"model_a": "alpha", "model_b": "beta", "preferred_model": "alpha"},
        {"model_a": "beta", "model_b": "alpha", "preferred_model": "tie"},
    ]
    summary = summarize(rows)
    assert summary["alpha"]["overall"].mean == 4.5 and summary["alpha"]["overall"].n == 2
    assert summary["beta"]["overall"].mean == 1.5
    assert summary["alpha"]["win_rate"].mean == 0.75 and summary["beta"]["win_rate"].mean == 0.25
    assert "coherence" not in summary["alpha"]
    table = format_summary(summary)
    assert "alpha" in table and "win_rate" in table and "95% CI" in table
    assert format_summary({"m": {"overall": Estimate(1, 3.0, None, None)}}).endswith("(needs 2+)")
    assert format_summary({}) == "no judgements yet"


def test_cli_rate_with_scripted_stdin_then_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command itself, with fake expanders in place of models and answers on stdin."""
    expanders = fake_expanders()
    monkeypatch.setattr(rate_command, "_rating_expander", lambda store, ref, seed: expanders[ref])
    prompts = tmp_path / "dev.txt"
    prompts.write_text("\n".join(f"a castle number {i} on a hill, oil painting" for i in range(9)))
    out = tmp_path / "ratings.csv"
    monkeypatch.setattr("sys.stdin", io.StringIO("a\nb\nt\n"))
    command = ["rate", "--models", "alpha", "beta", "--data", str(prompts), "--n", "3"]
    assert cli.main([*command, "--mode", "preference", "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "3 judgements appended" in shown and "win_rate" in shown
    assert len(read_ratings(out)) == 3
    assert cli.main(["rate", "--summary", "--out", str(out)]) == 0
    assert "win_rate" in capsys.readouterr().out
    assert cli.main(["rate", "--models", "alpha", "alpha", "--ideas", str(prompts)]) == 1
    assert "two different models" in capsys.readouterr().err
    assert cli.main(["rate", "--out", str(out)]) == 1
    assert "--models A B" in capsys.readouterr().err
