"""The scale benchmark's pieces: the synthetic corpus and the measured counting children."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import counting_scale
from tests.test_ngram_sharded import _generated_prompts


def test_synthetic_corpus_is_distinct_recombined_and_factor_times_larger() -> None:
    prompts = list(dict.fromkeys(_generated_prompts(60)))
    made = list(counting_scale.synthetic_prompts(prompts, 3, seed=1))
    assert made[: len(prompts)] == prompts
    assert len(made) == len(set(made)) == 3 * len(prompts)
    phrases = {phrase for prompt in prompts for phrase in prompt.split(", ")}
    assert all(set(p.split(", ")) <= phrases for p in made)


def test_sharded_and_in_memory_children_build_the_same_arrays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(counting_scale, "SAMPLE_SECONDS", 0.01)  # these children are quick
    corpus = tmp_path / "prompts.txt"
    assert counting_scale.write_lines(iter(_generated_prompts(200)), corpus) == 205
    common = [str(corpus), "--scratch", str(tmp_path)]
    memory = counting_scale.measure([*common, "--method", "memory"], tmp_path / "a.json")
    sharded = counting_scale.measure(
        [*common, "--method", "sharded", "--workers", "2", "--shard-prompts", "30"],
        tmp_path / "b.json",
    )
    assert sharded["digest"] == memory["digest"]
    assert sharded["ngrams"] == memory["ngrams"] and memory["ngrams"][0] > 60
    assert memory["peak_tree_pss_mb"] > 0 and sharded["largest_process_rss_mb"] > 0
    fewer = tmp_path / "fewer.txt"
    counting_scale.write_lines(iter(_generated_prompts(200)[:-1]), fewer)
    other = counting_scale.measure([str(fewer), "--method", "memory"], tmp_path / "c.json")
    assert other["digest"] != memory["digest"]  # the comparison can tell corpora apart
