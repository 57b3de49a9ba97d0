"""model_store: corpus loading and cleaning, splits, checkpoints, the store and its CLI."""

from __future__ import annotations

import errno
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from model_store import checkpoint, cli
from model_store.checkpoint import CheckpointError, read_manifest, verify, write_manifest
from model_store.corpus import (
    CorpusError,
    clean_prompt,
    clean_prompts,
    family_bucket,
    load_corpus,
    split_prompts,
)
from model_store.evaluation import perplexity
from model_store.loading import load_causal_lm
from model_store.store import ModelStore, StoreError, validate_name
from tests.conftest import subprocess_env
from tests.study_prompts import write_prompts

MY_PROMPTS = [
    "portrait of a woman, highly detailed, 8 k",
    "a castle on a hill at dawn, matte painting",
    "portrait of a woman, highly detailed, 8 k",
    "x",
    "   ",
    "cyberpunk city street at night, neon lights, rain",
]


# -- cleaning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("a  cat\t on\na mat", "a cat on a mat"),
        ("city, 8 k, uhd", "city, 8k, uhd"),
        ("fashion of the 1 9 8 0 s", "fashion of the 1980s"),
        ("shot on 3 5 mm film", "shot on 35mm film"),
        ("3 d render", "3d render"),
        ("a dog -S 12345 -n 4 -W 512 -H 768 -C 7.5 -A k_lms", "a dog"),
        ("((masterpiece)), (cat:1.2) 🐱", "((masterpiece)), (cat:1.2) 🐱"),
        ("2 dogs and 3 cats", "2 dogs and 3 cats"),
        ("self-portrait -- ar", "self-portrait -- ar"),
    ],
)
def test_clean_prompt(raw: str, cleaned: str) -> None:
    assert clean_prompt(raw) == cleaned


@pytest.mark.parametrize("raw", ["", " ", "a", "\t\n", None, 42])
def test_clean_prompt_drops_empty_short_and_non_text(raw: object) -> None:
    assert clean_prompt(raw) is None  # type: ignore[arg-type]


def test_clean_prompts_deduplicates_keeping_first_occurrence_order() -> None:
    assert list(clean_prompts(MY_PROMPTS)) == [
        "portrait of a woman, highly detailed, 8k",
        "a castle on a hill at dawn, matte painting",
        "cyberpunk city street at night, neon lights, rain",
    ]


def test_split_keeps_prompt_families_together() -> None:
    family = [f"a portrait of a woman, variation {i}" for i in range(50)]
    others = [f"prompt number {i} about dragons" for i in range(400)]
    train, valid = split_prompts(family + others, valid_percent=10)
    assert valid, "a 10% split of 450 prompts should hold something out"
    assert set(family) <= set(train) or set(family) <= set(valid)
    assert len(train) + len(valid) == 450


def test_family_bucket_matches_the_corpus_split_rule(dev_corpus: Path) -> None:
    """SOURCES.md: the dev split is exactly bucket 0 of sha1(first five words)."""
    with dev_corpus.open(encoding="utf-8") as handle:
        sample = [line.rstrip("\n") for _, line in zip(range(200), handle, strict=False)]
    assert all(family_bucket(prompt) == 0 for prompt in sample)


# -- loading ----------------------------------------------------------------------------------


def test_load_text_gzip_csv_jsonl_and_directory(tmp_path: Path, store_home: Path) -> None:
    (tmp_path / "a.txt").write_text("\n".join(MY_PROMPTS), encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("gzipped prompt one\ngzipped prompt two\n")
    (tmp_path / "c.csv").write_text('prompt,seed\n"a fox, watercolor",1\n', encoding="utf-8")
    (tmp_path / "d.jsonl").write_text('{"prompt": "a robot, octane render"}\n', encoding="utf-8")

    assert len(load_corpus(tmp_path / "a.txt").prompts) == 3
    assert load_corpus(tmp_path / "b.txt.gz").prompts == [
        "gzipped prompt one",
        "gzipped prompt two",
    ]
    assert load_corpus(tmp_path / "c.csv").prompts == ["a fox, watercolor"]
    assert load_corpus(tmp_path / "d.jsonl").prompts == ["a robot, octane render"]
    everything = load_corpus(tmp_path)
    assert len(everything.prompts) == 7
    assert len(everything.sha256) == 64


def test_cleaned_corpus_is_cached_and_reused(tmp_path: Path, store_home: Path) -> None:
    source = tmp_path / "p.txt"
    source.write_text("one prompt\nanother prompt\n", encoding="utf-8")
    first = load_corpus(source)
    cached = list((store_home / "cache" / "corpus").iterdir())
    assert len(cached) == 1
    assert load_corpus(source).prompts == first.prompts


def test_missing_corpus_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMPT_AUTOCOMPLETE_DATA", raising=False)
    with pytest.raises(CorpusError, match="--data"):
        load_corpus(None)
    with pytest.raises(CorpusError, match="no such corpus"):
        load_corpus(tmp_path / "nope.txt")
    (tmp_path / "t.csv").write_text("text\nhello there\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no column 'prompt'"):
        load_corpus(tmp_path / "t.csv")


def test_corpus_location_from_environment(tmp_path: Path, monkeypatch, store_home: Path) -> None:
    (tmp_path / "env.txt").write_text("from the environment\n", encoding="utf-8")
    monkeypatch.setenv("PROMPT_AUTOCOMPLETE_DATA", str(tmp_path / "env.txt"))
    assert load_corpus(None).prompts == ["from the environment"]


# -- checkpoints and the store ----------------------------------------------------------------


@pytest.fixture()
def checkpoint_copy(tmp_path: Path, default_model_dir: Path, store_home: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(default_model_dir, copy)
    return copy


def test_default_model_verifies(store_home: Path) -> None:
    checkpoint = ModelStore().resolve("default")
    assert checkpoint.kind == "causal-lm"
    assert "model.safetensors" in checkpoint.manifest["files"]


def test_one_flipped_byte_is_refused_naming_file_and_repair(checkpoint_copy: Path) -> None:
    verify(checkpoint_copy, "copy", "repair me")
    weights = checkpoint_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as error:
        ModelStore().resolve(str(checkpoint_copy))
    assert "model.safetensors" in str(error.value)
    assert "corrupt" in str(error.value)


def test_truncated_or_missing_files_are_refused(checkpoint_copy: Path) -> None:
    tokenizer = checkpoint_copy / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: size 100 bytes"):
        verify(checkpoint_copy, "copy", "repair me")
    tokenizer.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        verify(checkpoint_copy, "copy", "repair me")


def test_directory_without_manifest_needs_explicit_trust(checkpoint_copy: Path) -> None:
    (checkpoint_copy / "manifest.json").unlink()
    with pytest.raises(StoreError, match="--write-manifest"):
        ModelStore().resolve(str(checkpoint_copy))
    assert cli.main(["verify", str(checkpoint_copy), "--write-manifest"]) == 0
    assert ModelStore().resolve(str(checkpoint_copy)).path == checkpoint_copy


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", ".hidden", "", "x" * 65])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(StoreError, match="invalid model name"):
        validate_name(name)


def test_resolve_refuses_unknown_names_and_escapes(store_home: Path) -> None:
    store = ModelStore()
    with pytest.raises(StoreError, match="no model 'nonesuch'"):
        store.resolve("nonesuch")
    with pytest.raises(StoreError, match="no such model directory"):
        store.resolve("../x")
    with pytest.raises(StoreError, match="invalid Hugging Face repository"):
        store.resolve("hf:../../etc")
    with pytest.raises(StoreError, match="cannot be removed"):
        store.remove("default")


def test_interrupted_publish_leaves_nothing_that_loads(
    checkpoint_copy: Path, store_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore()

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("model_store.store.write_manifest", full_disk)
    with pytest.raises(StoreError, match="No space left"):
        store._publish(checkpoint_copy, "broken", {}, lambda m, f: None)
    assert list((store_home / "models").iterdir()) == []


def test_published_model_is_listed_and_removable(checkpoint_copy: Path, store_home: Path) -> None:
    store = ModelStore()
    store._publish(checkpoint_copy, "mine", {"kind": "causal-lm"}, lambda m, f: None)
    assert "mine" in {row["name"] for row in store.list()}
    assert store.resolve("mine").name == "mine"
    store.remove("mine")
    assert "mine" not in {row["name"] for row in store.list()}


def test_listing_shows_the_default_models_perplexity(store_home: Path) -> None:
    default = next(row for row in ModelStore().list() if row["name"] == "default")
    assert isinstance(default["token_perplexity"], float) and default["token_perplexity"] > 1


def test_manifest_metrics_must_be_flat(checkpoint_copy: Path) -> None:
    nested = {"dev": {"data": "dev.txt", "token_perplexity": 58.9}}
    with pytest.raises(ValueError, match="flat mapping"):
        write_manifest(checkpoint_copy, "copy", metrics=nested)
    flat = write_manifest(checkpoint_copy, "copy", metrics=nested["dev"])
    assert flat["metrics"]["token_perplexity"] == 58.9


def test_manifest_records_every_file_digest(checkpoint_copy: Path) -> None:
    manifest = write_manifest(checkpoint_copy, "copy", corpus={"name": "c", "sha256": "0" * 64})
    on_disk = json.loads((checkpoint_copy / "manifest.json").read_text())
    assert on_disk == manifest
    assert set(manifest["files"]) == {
        p.name for p in checkpoint_copy.iterdir() if p.name != "manifest.json"
    }
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())


# -- CLI --------------------------------------------------------------------------------------


def test_cli_list_verify_and_errors(store_home: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "default" in listing and "small" in listing
    assert "pack" in listing.splitlines()[1]  # the default model is served with the pack
    assert cli.main(["verify", "default"]) == 0
    verified = capsys.readouterr().out
    assert "default statistics:" in verified  # the pack is checked with the model
    assert cli.main(["info", "default"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "default" and info["statistics"] == "pack"
    assert cli.main(["rm", "nothing-here"]) == 1
    assert "no model 'nothing-here'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "enormous"])
    assert exited.value.code == 2


def test_cli_eval_prints_token_and_word_perplexity(
    store_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "few.txt"
    data.write_text("portrait of a woman, highly detailed\na red car in the rain\n")
    assert cli.main(["eval", "default", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "ppl/token" in out and "ppl/word" in out


def test_explore_writes_report_with_plots(tmp_path: Path, store_home: Path) -> None:
    data = tmp_path / "p.txt"
    data.write_text("\n".join(f"a cat number {i}, digital art, trending" for i in range(40)))
    assert cli.main(["explore", str(data), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "| words | 40 |" in report and "digital art" in report
    for plot in ("characters.png", "words.png", "tokens.png"):
        assert (tmp_path / "report" / plot).stat().st_size > 1000


# -- evaluation -------------------------------------------------------------------------------


def test_perplexity_of_a_cut_prompt_counts_only_the_words_it_scored(
    default_model_dir: Path,
) -> None:
    model, tokenizer = load_causal_lm(default_model_dir)
    long_prompt = ", ".join(["portrait of a woman in a red dress"] * 6)
    ids = tokenizer(long_prompt, add_special_tokens=False)["input_ids"]
    assert len(ids) > 40
    cut = perplexity(model, tokenizer, [long_prompt], max_tokens=20)
    assert cut["tokens"] == 19  # EOS then 19 tokens; no final EOS, the prompt goes on
    assert cut["words"] == len(tokenizer.decode(ids[:19]).split()) < len(long_prompt.split())
    # both perplexities divide the same total NLL
    assert math.isclose(
        cut["tokens"] * math.log(cut["token_perplexity"]),
        cut["words"] * math.log(cut["word_perplexity"]),
    )


def test_perplexity_of_a_whole_prompt_predicts_its_end(default_model_dir: Path) -> None:
    model, tokenizer = load_causal_lm(default_model_dir)
    prompt = "portrait of a woman, highly detailed"
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    whole = perplexity(model, tokenizer, [prompt], max_tokens=len(ids) + 2)
    assert whole["tokens"] == len(ids) + 1 and whole["words"] == len(prompt.split())


# -- training end to end: resume after SIGKILL, and two processes at once ---------------------

# Generated prompts, not the dev split: what these tests check (resuming, locking, the
# manifest) does not depend on the data, and the whole dev file made them most of the suite.
# The trainers get one torch thread (OMP_NUM_THREADS): on two shared cores, OpenMP's
# barriers made training many times slower.
PROMPTS_TO_TRAIN = 1000
# tiny saves every 40 steps: the killed run leaves checkpoint-40 and its resumption has one
# step left instead of the preset's 80, which resumes from a checkpoint all the same.
STEPS_TO_RESUME = ["--max-steps", "41"]


# prompt-models, pausing for PAUSE_S seconds after each checkpoint it saves, with tiny's
# preset cut to MAX_STEPS. On a small corpus a run outpaces any test that watches it: the
# pause is where the test kills it (as a crash after a checkpoint would) or where a second
# process arrives while it holds the lock.
PAUSING_CLI = """
import dataclasses, sys, time
from transformers.trainer_callback import CallbackHandler
from model_store.cli import main
from model_store.presets import PRESETS

PRESETS["tiny"] = dataclasses.replace(PRESETS["tiny"], max_steps=MAX_STEPS)

saved = CallbackHandler.on_save


def on_save(self, *args, **kwargs):
    control = saved(self, *args, **kwargs)
    time.sleep(PAUSE_S)
    return control


CallbackHandler.on_save = on_save
sys.exit(main(sys.argv[1:]))
"""


def _pausing_cli(tmp_path: Path, pause_s: float, max_steps: int = 120) -> list[str]:
    script = tmp_path / "pausing_cli.py"
    source = PAUSING_CLI.replace("PAUSE_S", repr(pause_s)).replace("MAX_STEPS", str(max_steps))
    script.write_text(source, encoding="utf-8")
    return [sys.executable, str(script)]


def _train_command(data: Path) -> list[str]:
    return [sys.executable, "-m", "model_store", "train", "tiny", "--data", str(data)]


def test_tiny_training_resumes_after_sigkill(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.txt", PROMPTS_TO_TRAIN)
    env = subprocess_env(PROMPT_AUTOCOMPLETE_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    run_dir = tmp_path / "home" / "runs" / "tiny"
    first = subprocess.Popen(
        [*_pausing_cli(tmp_path, 600), "train", "tiny", "--data", str(prompts), *STEPS_TO_RESUME],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 240
    while not list(run_dir.glob("checkpoint-*/trainer_state.json")):
        assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
        assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
        time.sleep(0.2)
    first.kill()
    first.wait()
    assert not (tmp_path / "home" / "models" / "tiny").exists()

    second = subprocess.run(
        [*_train_command(prompts), *STEPS_TO_RESUME],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr
    assert "resuming from checkpoint-" in second.stderr
    manifest = json.loads((tmp_path / "home" / "models" / "tiny" / "manifest.json").read_text())
    assert manifest["corpus"]["name"] == "prompts.txt"
    assert manifest["preset"]["name"] == "tiny"
    assert manifest["metrics"]["token_perplexity"] > 1
    assert manifest["metrics"]["data"] == "held-out prompt families of prompts.txt"
    assert (run_dir / "export" / "loss.png").is_file()


def test_two_processes_share_one_training_run(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.txt", PROMPTS_TO_TRAIN)
    env = subprocess_env(PROMPT_AUTOCOMPLETE_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    # One checkpoint (step 40) is all the second process needs to find the run in progress.
    command = [*_pausing_cli(tmp_path, 3, max_steps=41), "pull", "tiny", "--data", str(prompts)]
    runs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    assert results[0][0] == results[1][0]
    logs = [err for _, err in results]
    assert sum("training a 1024-token BPE tokenizer" in log for log in logs) == 1
    assert sum("waiting for another process preparing tiny" in log for log in logs) == 1


def flip_a_byte_keeping_mtime(file: Path) -> None:
    """Bit rot: the content changes, the size and mtime do not."""
    before = file.stat()
    data = bytearray(file.read_bytes())
    data[len(data) // 3] ^= 0x10
    file.write_bytes(bytes(data))
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_bit_rot_with_an_unchanged_mtime_fails_verify_and_load(checkpoint_copy: Path) -> None:
    ModelStore().resolve(str(checkpoint_copy))  # verified once: a cache would now trust it
    flip_a_byte_keeping_mtime(checkpoint_copy / "model.safetensors")
    assert cli.main(["verify", str(checkpoint_copy)]) == 1
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        ModelStore().resolve(str(checkpoint_copy))


def test_verify_hashes_even_what_this_process_verified(
    checkpoint_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verify(checkpoint_copy, "copy", "repair me")
    hashed: list[Path] = []
    real = checkpoint.sha256_file
    monkeypatch.setattr(checkpoint, "sha256_file", lambda path: hashed.append(path) or real(path))
    verify(checkpoint_copy, "copy", "repair me")
    assert hashed == []  # the same file, seen by this process: trusted
    verify(checkpoint_copy, "copy", "repair me", rehash=True)
    assert len(hashed) == len(read_manifest(checkpoint_copy)["files"])


def test_hashing_ahead_does_verifys_hashing_on_its_own_thread(
    checkpoint_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server hashes the packaged files while it answers its first messages."""
    hashed_on: list[str] = []
    real = checkpoint.sha256_file
    monkeypatch.setattr(
        checkpoint,
        "sha256_file",
        lambda path: hashed_on.append(threading.current_thread().name) or real(path),
    )
    checkpoint.hash_ahead(checkpoint_copy)
    verify(checkpoint_copy, "copy", "repair me")
    assert len(hashed_on) == len(read_manifest(checkpoint_copy)["files"])
    assert threading.current_thread().name not in hashed_on


def test_a_file_hashed_ahead_is_still_refused_when_corrupt(checkpoint_copy: Path) -> None:
    flip_a_byte_keeping_mtime(checkpoint_copy / "model.safetensors")
    checkpoint.hash_ahead(checkpoint_copy)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 does not match"):
        verify(checkpoint_copy, "copy", "repair me")


def test_a_file_changed_after_it_was_hashed_ahead_is_hashed_again(checkpoint_copy: Path) -> None:
    checkpoint.hash_ahead(checkpoint_copy)
    verify(checkpoint_copy, "copy", "repair me")
    weights = checkpoint_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[7] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 does not match"):
        verify(checkpoint_copy, "copy", "repair me")


def rewrite_manifest(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = read_manifest(directory)
    change(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize("escape", ["../outside.txt", "/etc/passwd", "a/../../outside.txt"])
def test_manifest_paths_that_leave_the_directory_are_refused(
    checkpoint_copy: Path, escape: str
) -> None:
    (checkpoint_copy.parent / "outside.txt").write_text("secret", encoding="utf-8")
    entry = {"sha256": "0" * 64, "size": 6}
    rewrite_manifest(checkpoint_copy, lambda manifest: manifest["files"].update({escape: entry}))
    with pytest.raises(CheckpointError, match="leaves the model directory"):
        verify(checkpoint_copy, "copy", "repair me")


def test_a_link_out_of_the_directory_is_refused(checkpoint_copy: Path) -> None:
    (checkpoint_copy.parent / "outside.txt").write_text("secret", encoding="utf-8")
    (checkpoint_copy / "notes.txt").symlink_to(checkpoint_copy.parent / "outside.txt")
    write_manifest(checkpoint_copy, "copy")
    with pytest.raises(CheckpointError, match="links outside"):
        verify(checkpoint_copy, "copy", "repair me")


def test_an_empty_or_incomplete_file_list_is_refused(checkpoint_copy: Path) -> None:
    rewrite_manifest(checkpoint_copy, lambda manifest: manifest["files"].pop("config.json"))
    with pytest.raises(CheckpointError, match=r"config\.json: not in the manifest"):
        verify(checkpoint_copy, "copy", "repair me")
    rewrite_manifest(checkpoint_copy, lambda manifest: manifest.update(files={}))
    with pytest.raises(CheckpointError, match="lists no files"):
        ModelStore().resolve(str(checkpoint_copy))


def test_a_read_only_store_is_one_line_naming_the_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # /sys refuses new directories even to root, as a read-only store would
    monkeypatch.setenv("PROMPT_AUTOCOMPLETE_HOME", "/sys/prompt-store")
    assert cli.main(["pull", "tiny", "--data", "unused.txt"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert "/sys/prompt-store" in error and "PROMPT_AUTOCOMPLETE_HOME" in error


def test_a_full_disk_is_one_line_and_leaves_no_half_manifest(
    checkpoint_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (checkpoint_copy / "manifest.json").unlink()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", disk_full)
    assert cli.main(["verify", str(checkpoint_copy), "--write-manifest"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "free some disk space" in error
    assert sorted(p.name for p in checkpoint_copy.iterdir() if "manifest" in p.name) == []


def test_leftovers_of_killed_writers_are_removed_at_the_next_start(store_home: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftovers = [
        store_home / "models" / f".tmp-tiny-{dead.pid}",
        store_home / "wordstats" / f"0123456789abcdef-v3.{dead.pid}.tmp",
    ]
    alive = store_home / "models" / f".tmp-small-{os.getpid()}"
    for directory in [*leftovers, alive]:
        directory.mkdir(parents=True)
        (directory / "model.safetensors").write_bytes(b"half")
    ModelStore().resolve("default")
    assert [path.exists() for path in leftovers] == [False, False]
    assert alive.exists()  # its writer is still running
