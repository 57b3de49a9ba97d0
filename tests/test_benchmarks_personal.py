"""The personal layer's benchmark plumbing (the measurements themselves run by hand)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import personal, report


def test_the_test_sample_is_in_the_unlearned_tail_and_tuning_never_touches_it() -> None:
    lines = [f"prompt {i}" for i in range(6676)]
    sample = personal.test_sample(lines)
    assert len(sample) == personal.TEST_PROMPTS == len(set(sample))
    assert set(sample) <= set(lines[-personal.TEST_POOL :])
    assert personal.test_sample(lines, 10) == sample[:10]
    tuning = personal.tuning_sample(lines, 20)
    assert len(tuning) == 20
    first, last = personal.TUNE_POOL
    assert set(tuning) <= set(lines[first:last])  # after what tuning learns, before the test
    assert last <= len(lines) - personal.TEST_POOL and max(personal.TUNE_LEARNED) <= first


def test_a_private_store_shares_everything_but_the_personal_prompts(
    store_home: Path,
) -> None:
    (store_home / "wordstats").mkdir(parents=True)
    (store_home / "personal").mkdir()
    with personal.private_store() as home:
        assert (home / "wordstats").resolve() == (store_home / "wordstats").resolve()
        assert not (home / "personal").exists()


def test_the_report_shows_the_curve_and_the_ablation(tmp_path: Path) -> None:
    row = {"command": "python -m benchmarks.run --sections personal", "prompts": 100}
    found = {
        "test_pool": 1676,
        "weight": 0.6,
        "curve": [
            {**row, "learned": n, "ksr": k, "latency_ms": {"p50": 12.0}}
            for n, k in ((0, 0.36), (5000, 0.52))
        ],
        "dev_2022": [{**row, "learned": 5000, "ksr": 0.69}],
        "tuning": [{**row, "learned": 5000, "weight": 0.6, "ksr": 0.5}],
    }
    (tmp_path / "assets").mkdir()
    text = report.render({"personal": found}, tmp_path / "assets", tmp_path)
    assert "## Personal layer" in text
    assert "| 5000 | 100 | 0.52 | 12 |" in text
    assert "--sections personal" in text
    assert "| 5000 | modern | **0.6** | 0.5 |" in text
    assert (tmp_path / "assets" / "personal.png").is_file()
