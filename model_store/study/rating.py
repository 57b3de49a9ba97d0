"""Blind human rating of two models' prompt expansions, saved to CSV and summarised.

The study had no human evaluation; perplexity says little about whether an expansion is a
prompt a person would use. ``prompt-models rate`` shows, for each short idea, the expansions
of two models as A and B in a random (seeded) order, asks for 1-5 scores or a preference,
appends one CSV row per judgement (with the models behind the blinding) and summarises each
model with a mean and a 95% bootstrap confidence interval.

This module knows nothing about how expansions are made: the caller injects one expander
per model (``Callable[[str], str]``), so tests use fakes and the CLI builds real ones.
"""

from __future__ import annotations

import csv
import random
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

Expander = Callable[[str], str]
InputFunction = Callable[[str], str]
CRITERIA = ("coherence", "relevance", "fluency", "overall")
MODES = ("scores", "preference")
FIELDS = [
    "timestamp",
    "session",
    "rater",
    "mode",
    "idea",
    "model_a",
    "model_b",
    "expansion_a",
    "expansion_b",
    *(f"a_{criterion}" for criterion in CRITERIA),
    *(f"b_{criterion}" for criterion in CRITERIA),
    "preference",
    "preferred_model",
]
_SCORES = re.compile(r"^\s*([1-5])[\s,]*([1-5])[\s,]*([1-5])[\s,]*([1-5])\s*$")


class RatingError(ValueError):
    """Bad ideas, models or ratings file; the message says what to change."""


def default_ideas(prompts: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """The first 2-4 words of ``n`` prompts drawn with ``seed``: what a person might start with."""
    if n < 1:
        raise RatingError("ask for at least one idea")
    rng = random.Random(seed)
    usable = [p for p in prompts if len(p.split()) >= 2]
    ideas: list[str] = []
    for prompt in rng.sample(usable, min(n, len(usable))):
        words = prompt.split()[: rng.randint(2, 4)]
        ideas.append(" ".join(words).rstrip(",.;:"))
    if not ideas:
        raise RatingError("no prompt with two words or more to take ideas from")
    return ideas


def read_ideas(path: Path) -> list[str]:
    """One idea per line; blank lines and lines starting with # are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RatingError(f"{path}: cannot read ideas ({exc.strerror})") from exc
    ideas = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not ideas:
        raise RatingError(f"{path}: no ideas (one per line)")
    return ideas


@dataclass(frozen=True)
class Pairing:
    """One idea with the model shown as A and the model shown as B."""

    idea: str
    model_a: str
    model_b: str


def plan(ideas: Sequence[str], models: Sequence[str], seed: int) -> list[Pairing]:
    """Ideas in a seeded random order, each with a seeded coin deciding which model is A."""
    if len(models) != 2 or models[0] == models[1]:
        raise RatingError("rate exactly two different models")
    rng = random.Random(seed)
    order = list(ideas)
    rng.shuffle(order)
    pairs = []
    for idea in order:
        first, second = (models[0], models[1]) if rng.random() < 0.5 else (models[1], models[0])
        pairs.append(Pairing(idea, first, second))
    return pairs


def parse_scores(answer: str) -> tuple[int, int, int, int] | None:
    """Four 1-5 scores written "4 3 5 4", "4,3,5,4" or "4354"; None when malformed."""
    match = _SCORES.match(answer)
    if match is None:
        return None
    a, b, c, d = (int(group) for group in match.groups())
    return a, b, c, d


class _Quit(Exception):
    """The rater asked to stop (q, or end of input)."""


class _Skip(Exception):
    """The rater skipped this pair."""


def _ask(prompt: str, input_fn: InputFunction, output: TextIO, valid: Callable[[str], bool]) -> str:
    while True:
        try:
            answer = input_fn(prompt).strip()
        except EOFError:
            raise _Quit from None
        if answer.lower() in {"q", "quit"}:
            raise _Quit
        if answer.lower() in {"s", "skip"}:
            raise _Skip
        if valid(answer):
            return answer
        print("  not understood; q stops, s skips this idea", file=output)


def run_session(
    pairs: Sequence[Pairing],
    expanders: Mapping[str, Expander],
    out_csv: Path,
    *,
    mode: str = "scores",
    rater: str = "anonymous",
    input_fn: InputFunction = input,
    output: TextIO | None = None,
) -> list[dict[str, str]]:
    """Ask for a judgement on every pair; each one is appended to ``out_csv`` at once.

    Returns the rows written. Stops early on ``q`` or at the end of input, keeping what was
    rated; ``s`` skips a pair without writing anything. ``output`` defaults to stdout.
    """
    if mode not in MODES:
        raise RatingError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    output = output or sys.stdout  # looked up now: callers and tests may have replaced it
    _check_header(out_csv)
    session = uuid.uuid4().hex[:8]
    rows: list[dict[str, str]] = []
    hint = "q stops, s skips" + (
        "; scores are coherence relevance fluency overall, 1-5 each (e.g. 4 3 5 4)"
        if mode == "scores"
        else ""
    )
    print(f"{len(pairs)} ideas, two expansions each, shown blind as A and B ({hint})", file=output)
    for number, pair in enumerate(pairs, 1):
        expansion_a = expanders[pair.model_a](pair.idea)
        expansion_b = expanders[pair.model_b](pair.idea)
        print(f"\n[{number}/{len(pairs)}] idea: {pair.idea}", file=output)
        print(f"  A: {expansion_a or '(empty)'}", file=output)
        print(f"  B: {expansion_b or '(empty)'}", file=output)
        row = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "session": session,
            "rater": rater,
            "mode": mode,
            "idea": pair.idea,
            "model_a": pair.model_a,
            "model_b": pair.model_b,
            "expansion_a": expansion_a,
            "expansion_b": expansion_b,
        }
        try:
            if mode == "scores":
                for side in ("a", "b"):
                    answer = _ask(
                        f"{side.upper()} scores: ",
                        input_fn,
                        output,
                        lambda text: parse_scores(text) is not None,
                    )
                    scores = parse_scores(answer) or ()
                    for criterion, score in zip(CRITERIA, scores, strict=True):
                        row[f"{side}_{criterion}"] = str(score)
            else:
                answer = _ask(
                    "better [A/B/t for a tie]: ",
                    input_fn,
                    output,
                    lambda text: text.lower() in {"a", "b", "t", "tie"},
                ).lower()
                choice = {"a": "A", "b": "B"}.get(answer, "tie")
                row["preference"] = choice
                row["preferred_model"] = {"A": pair.model_a, "B": pair.model_b}.get(choice, "tie")
        except _Skip:
            continue
        except _Quit:
            break
        _append(out_csv, row)
        rows.append(row)
    return rows


def _check_header(path: Path) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
    if header != FIELDS:
        raise RatingError(f"{path}: not a ratings file of this version; choose another --out")


def _append(path: Path, row: Mapping[str, str]) -> None:
    """Append one row (and the header to a new file), flushed: a crash loses nothing rated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({field: row.get(field, "") for field in FIELDS})


def read_ratings(path: Path) -> list[dict[str, str]]:
    _check_header(path)
    if not path.is_file():
        raise RatingError(f"{path}: no ratings yet")
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% bootstrap interval (None when fewer than two judgements)."""

    n: int
    mean: float
    low: float | None
    high: float | None


def bootstrap_interval(
    values: Sequence[float], seed: int = 0, resamples: int = 2000
) -> tuple[float | None, float | None]:
    """Percentile bootstrap 95% interval of the mean: no normality assumed for 1-5 scores."""
    if len(values) < 2:
        return None, None
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def summarize(rows: Sequence[Mapping[str, str]], seed: int = 0) -> dict[str, dict[str, Estimate]]:
    """Per model: each criterion's mean score, and ``win_rate`` (a tie counts one half)."""
    values: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        for side in ("a", "b"):
            model = row[f"model_{side}"]
            per_model = values.setdefault(model, {})
            for criterion in CRITERIA:
                score = row.get(f"{side}_{criterion}", "")
                if score:
                    per_model.setdefault(criterion, []).append(float(score))
            if row.get("preferred_model"):
                won = {model: 1.0, "tie": 0.5}.get(row["preferred_model"], 0.0)
                per_model.setdefault("win_rate", []).append(won)
    summary: dict[str, dict[str, Estimate]] = {}
    for model, measures in sorted(values.items()):
        summary[model] = {}
        for measure, observed in measures.items():
            low, high = bootstrap_interval(observed, seed)
            summary[model][measure] = Estimate(len(observed), statistics.fmean(observed), low, high)
    return summary


def format_summary(summary: Mapping[str, Mapping[str, Estimate]]) -> str:
    """A plain-text table: model, measure, n, mean and the 95% interval."""
    if not summary:
        return "no judgements yet"
    lines = [f"{'MODEL':<24} {'MEASURE':<10} {'N':>4} {'MEAN':>6}  95% CI (bootstrap)"]
    for model, measures in summary.items():
        for measure in (*CRITERIA, "win_rate"):
            if measure not in measures:
                continue
            estimate = measures[measure]
            interval = (
                f"[{estimate.low:.2f}, {estimate.high:.2f}]"
                if estimate.low is not None and estimate.high is not None
                else "(needs 2+)"
            )
            lines.append(
                f"{model:<24} {measure:<10} {estimate.n:>4} {estimate.mean:>6.2f}  {interval}"
            )
    return "\n".join(lines)
