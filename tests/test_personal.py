"""The personal layer's store, statistics, prompt-file importers and CLI (model_store)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from model_store import personal, personal_counts
from model_store.cli import main
from model_store.personal import PersonalLayer, PersonalStore, Prompts, split_lines, store_path
from model_store.personal_counts import NgramCounts, count
from model_store.prompt_files import comfy_prompts, read_prompts
from tests.conftest import subprocess_env

A1111 = (
    "masterpiece, best quality, 1girl, silver hair,\n(detailed eyes:1.2)\n"
    "Negative prompt: lowres, bad anatomy,\nblurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768"
)
COMFY = {
    "3": {
        "class_type": "KSampler",
        "inputs": {"positive": ["6", 0], "negative": ["7", 0], "seed": 1},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle on a hill, sunset"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark, text"}},
    "8": {"class_type": "CLIPTextEncode", "inputs": {"text": ["12", 0]}},  # a link, no text
}


def png(path: Path, **chunks: str) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    return path


@pytest.fixture
def store(tmp_path: Path) -> PersonalStore:
    found = PersonalStore(tmp_path / "personal" / "prompts.sqlite3")
    yield found
    found.close()


# ------------------------------------------------------------------------------ parsing
def test_lines_keep_negative_prompts_apart_and_skip_parameters() -> None:
    text = "a cat,  on a mat\n\nNegative prompt: blurry, lowres\nSteps: 20, Sampler: Euler\nfox"
    assert split_lines(text) == Prompts(("a cat, on a mat", "fox"), ("blurry, lowres",))


def test_a1111_parameters_span_lines_until_the_steps_line() -> None:
    found = personal.split_parameters(A1111)
    assert found.positive == ("masterpiece, best quality, 1girl, silver hair, (detailed eyes:1.2)",)
    assert found.negative == ("lowres, bad anatomy, blurry",)


def test_comfy_graph_texts_are_negative_where_a_sampler_takes_them_as_negative() -> None:
    found = comfy_prompts(json.dumps(COMFY))
    assert found == Prompts(("a castle on a hill, sunset",), ("watermark, text",))


# ------------------------------------------------------------------------------ store
def test_store_is_owner_only(store: PersonalStore) -> None:
    store.add(Prompts(("a cat",)))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    for sibling in store.path.parent.iterdir():  # SQLite's journal files too
        assert stat.S_IMODE(sibling.stat().st_mode) & 0o077 == 0, sibling


def test_each_distinct_prompt_is_learned_once(store: PersonalStore) -> None:
    first = store.add(Prompts(("a cat", "a dog", "a cat"), ("blurry",)))
    assert (first.learned, first.duplicates) == (3, 1)
    again = store.add(Prompts(("a dog",), ("blurry", "lowres")))
    assert (again.learned, again.duplicates) == (1, 2)
    assert store.prompts(negative=False) == ["a cat", "a dog"]
    assert store.prompts(negative=True) == ["blurry", "lowres"]


def test_past_the_bound_the_rarest_then_oldest_prompts_go(tmp_path: Path) -> None:
    store = PersonalStore(tmp_path / "p.sqlite3", max_prompts=3)
    store.add(Prompts(("often",)), now=1.0)
    store.add(Prompts(("often", "old")), now=2.0)
    store.add(Prompts(("middle",)), now=3.0)
    learned = store.add(Prompts(("new",)), now=4.0)
    assert learned.pruned == 1
    assert store.prompts(negative=False) == ["often", "middle", "new"]  # "old": rare and oldest
    store.close()


def test_forget_all_or_what_matches(store: PersonalStore) -> None:
    store.add(Prompts(("a red_car", "100% cotton", "a blue car"), ("red_car, blurry",)))
    assert store.forget("RED_") == 2  # case-insensitive; "_" and "%" are literal
    assert store.forget("0%") == 1
    assert store.prompts(negative=False) == ["a blue car"]
    assert store.forget() == 1
    assert store.counts() == (0, 0)


def test_completion_never_waits_for_a_learn_in_progress(store: PersonalStore) -> None:
    assert store.version(wait=False) is not None
    with store._transaction():  # as a long import holds it
        assert store.version(wait=False) is None


def test_a_big_import_leaves_no_write_ahead_log_behind(store: PersonalStore) -> None:
    store.add(Prompts(tuple(f"prompt {i}" for i in range(personal.CHECKPOINT_AFTER + 1))))
    wal = store.path.with_name(store.path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_too_long_prompts_are_refused(store: PersonalStore) -> None:
    learned = store.add(Prompts(("x" * (personal.MAX_PROMPT_CHARS + 1), "short")))
    assert (learned.learned, learned.refused) == (1, 1)


# ------------------------------------------------------------------------------ statistics
def test_the_first_prompt_already_teaches_its_next_words() -> None:
    stats = count(["(masterpiece:1.2), 1girl, silver hair"])
    ranked = stats.ranked(stats.history(["(masterpiece:1.2),", "1girl,"]), "")
    assert stats.vocab[ranked[0][0]] == "silver"
    assert ranked[0][1] > 0.3


def modern_like(seed: int, prompts: int) -> list[str]:
    """Prompts over a small vocabulary, so that n-grams recur and types come and go."""
    rng = random.Random(seed)
    words = ["masterpiece,", "1girl,", "silver", "hair,", "(smile:1.2),", "sky", "a", "b"]
    return [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(prompts)]


def test_counts_learned_one_by_one_equal_a_count_from_scratch() -> None:
    prompts = modern_like(1, 400)
    learned = NgramCounts()
    for i, prompt in enumerate(prompts):
        learned.add(prompt)
        if i % 97 == 0:  # some types merged into the arrays, others still pending
            learned.merge()
    assert learned.pending() > 0
    scratch = count(prompts)
    assert learned.as_dict() == scratch.as_dict()
    learned.merge()
    assert learned.as_dict() == scratch.as_dict()
    history = learned.history(["masterpiece,", "1girl,", "silver"])
    everything = np.append(np.arange(1, len(learned.vocab)), -1)  # -1: the unknown word
    rows = np.array([history] * len(everything))
    assert learned.probability(rows, everything) == pytest.approx(
        scratch.probability(rows, everything)
    )
    assert learned.probability(rows, everything).sum() == pytest.approx(1.0, abs=1e-3)
    assert learned.ranked(history, "") == scratch.ranked(history, "")


def test_uncounting_prompts_equals_never_having_counted_them() -> None:
    prompts = modern_like(2, 300)
    counts = count(prompts)
    for prompt in prompts[:120]:
        counts.remove(prompt)
    assert counts.as_dict() == count(prompts[120:]).as_dict()
    counts.merge()  # n-grams counted down to 0 leave the arrays
    assert counts.as_dict() == count(prompts[120:]).as_dict()


def test_the_layer_keeps_counts_of_what_is_stored_past_the_bound(tmp_path: Path) -> None:
    layer = PersonalLayer(PersonalStore(tmp_path / "p.sqlite3", max_prompts=50))
    try:
        prompts = modern_like(3, 120)
        for prompt in prompts:  # one learn each, as the REPL's Enter
            layer.learn(Prompts((prompt,)))
        assert layer.wait_counted(60)
        stored = layer.store.prompts(negative=False)
        assert len(stored) == 50
        mine = layer.counts(negative=False)
        assert mine is not None and mine.as_dict() == count(stored).as_dict()
    finally:
        layer.close()


def test_negative_prompts_are_counted_apart(tmp_path: Path) -> None:
    layer = PersonalLayer(PersonalStore(tmp_path / "p.sqlite3"))
    try:
        layer.learn(split_lines("1girl, silver hair\nNegative prompt: lowres, blurry"))
        assert layer.wait_counted(30)
        positive, negative = layer.counts(negative=False), layer.counts(negative=True)
        assert positive is not None and negative is not None
        assert positive.id_of("lowres,") == -1 and negative.id_of("1girl,") == -1
        assert negative.id_of("lowres,") >= 0
    finally:
        layer.close()


def test_layer_counts_in_the_background_and_sees_other_processes(tmp_path: Path) -> None:
    layer = PersonalLayer(PersonalStore(tmp_path / "p.sqlite3"))
    layer.CHECK_INTERVAL_S = 0.0
    try:
        layer.learn(split_lines("a cat on a mat\nNegative prompt: blurry"))
        assert layer.wait_counted(30)
        assert layer.counted() == (1, 1)
        assert layer.counts(negative=True) is not None
        other = PersonalStore(tmp_path / "p.sqlite3")  # as `prompt-models learn` would
        other.add(Prompts(("a dog",)))
        other.close()
        layer.counts(negative=False)  # notices the change
        assert layer.wait_counted(30)
        assert layer.counted() == (2, 1)
        layer.forget("CAT")
        assert layer.wait_counted(30)
        assert layer.counted() == (1, 1)
        forgotten = layer.counts(negative=False)
        assert forgotten is not None and forgotten.as_dict() == count(["a dog"]).as_dict()
        layer.forget()
        assert layer.wait_counted(30)
        assert layer.counted() == (0, 0)
        assert layer.counts(negative=False) is None
    finally:
        layer.close()


# ------------------------------------------------------------------------------ importers and CLI
@pytest.fixture
def prompt_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    (folder / "prompts.txt").write_text("a fox in snow\na fox in snow\nan owl\n", "utf-8")
    png(folder / "a1111.png", parameters=A1111)
    png(folder / "nested" / "comfy.png", prompt=json.dumps(COMFY), workflow="{}")
    (folder / "nested" / "styles.csv").write_text(
        'name,prompt,negative_prompt\nanime,"{prompt}, anime style, cel shading",jpeg artifacts\n',
        "utf-8",
    )
    png(folder / "plain.png")  # no generation parameters
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    return folder


def test_each_format_is_imported_and_bad_files_are_refused_with_a_reason(
    prompt_folder: Path, store_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["learn", str(prompt_folder), str(prompt_folder / "missing.txt")]) == 0
    out = capsys.readouterr().out
    assert "4 files read, 8 prompts learned, 1 duplicates skipped, 4 files refused" in out
    assert "broken.png: not a readable PNG" in out
    assert "plain.png: no generation parameters" in out
    assert "latin1.txt: not UTF-8 text" in out
    assert "missing.txt: cannot read it" in out
    assert "Traceback" not in out
    store = PersonalStore(store_path(store_home))
    assert set(store.prompts(negative=False)) == {
        "a fox in snow",
        "an owl",
        "masterpiece, best quality, 1girl, silver hair, (detailed eyes:1.2)",
        "a castle on a hill, sunset",
        "anime style, cel shading",
    }
    assert set(store.prompts(negative=True)) == {
        "lowres, bad anatomy, blurry",
        "watermark, text",
        "jpeg artifacts",
    }
    store.close()
    assert read_prompts(prompt_folder / "prompts.txt").positive[0] == "a fox in snow"


def test_personal_shows_and_forget_clears(
    prompt_folder: Path, store_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["learn", str(prompt_folder / "prompts.txt"), str(prompt_folder / "a1111.png")])
    capsys.readouterr()
    assert main(["personal"]) == 0
    out = capsys.readouterr().out
    assert "3 prompts, 1 negative prompts" in out
    assert "a fox in snow" in out and "lowres" in out
    assert main(["forget", "FOX"]) == 0
    assert "1 prompts forgotten" in capsys.readouterr().out
    assert main(["forget"]) == 1  # neither --all nor a text: refused, not everything gone
    assert "either --all or a TEXT" in capsys.readouterr().err
    assert main(["forget", "--all"]) == 0
    assert "3 prompts forgotten" in capsys.readouterr().out


KILLED_LEARN = """
import sqlite3, sys, time
real = sqlite3.connect
def connect(*args, **kwargs):
    db = real(*args, **kwargs)
    inserts = [0]
    def trace(statement):
        if statement.startswith("INSERT"):
            inserts[0] += 1
            if inserts[0] == 3:  # mid-transaction: two prompts of the batch written
                print("inside", flush=True)
                time.sleep(120)
    db.set_trace_callback(trace)
    return db
sqlite3.connect = connect
from model_store.cli import main
main(["learn", sys.argv[1]])
"""


def test_a_kill_during_learn_leaves_the_previous_prompts_intact(
    tmp_path: Path, store_home: Path
) -> None:
    store = PersonalStore(store_path(store_home))
    store.add(Prompts(("the prompt from before",)))
    store.close()
    batch = tmp_path / "batch.txt"
    batch.write_text("\n".join(f"new prompt {i}" for i in range(50)), "utf-8")
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_LEARN, str(batch)],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(PROMPT_AUTOCOMPLETE_HOME=str(store_home)),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "inside"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    store = PersonalStore(store_path(store_home))
    assert store.prompts(negative=False) == ["the prompt from before"]
    store.close()


def test_a_store_made_before_the_prompt_key_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE prompts (text TEXT NOT NULL, negative INTEGER NOT NULL,"
        " uses INTEGER NOT NULL, last_used REAL NOT NULL, UNIQUE (text, negative))"
    )
    old.executemany("INSERT INTO prompts VALUES (?, ?, 1, 0)", [("a cat", 0), ("blurry", 1)])
    old.commit()
    old.close()
    store = PersonalStore(path)
    assert store.add(Prompts(("a cat", "a dog"))).learned == 1
    assert store.prompts(negative=False) == ["a cat", "a dog"]
    assert store.prompts(negative=True) == ["blurry"]
    store.close()


def test_prompts_past_the_word_id_limit_are_stored_but_not_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(personal_counts, "WIDTH", 16)  # 14 words beside <s> and </s>
    prompts = ["a b c", "d e f", "g h i", "j k l", "m n o", "a b p q", "a b c d", "r"]
    counted = [p for p in prompts if p not in ("m n o", "r")]  # no room for their new words
    learned = NgramCounts()
    for prompt in prompts:
        learned.add(prompt)
    assert learned.as_dict() == count(prompts).as_dict() == count(counted).as_dict()
    assert learned.prompts == len(counted)
    assert len(learned.vocab) == 16
    assert "personal vocabulary full" in caplog.text
    for prompt in ("m n o", "a b c"):  # one never counted: nothing to uncount
        learned.remove(prompt)
    assert learned.as_dict() == count([p for p in counted if p != "a b c"]).as_dict()


def test_a_count_past_16_bits_widens_its_order() -> None:
    counts = count(["hi there"] * 2)
    assert counts.adjusted[5].dtype == np.uint16
    for _ in range(3):
        counts.add("hi there")
    counts.adjusted[5] = counts.adjusted[5].copy()
    at = counts.adjusted[5].argmax()
    counts.adjusted[5][at] = np.iinfo(np.uint16).max
    counts.add("hi there")
    assert counts.adjusted[5].dtype == np.uint32
    assert counts.adjusted[5][at] == np.iinfo(np.uint16).max + 1


def test_a_batch_past_the_bound_counts_only_what_stays(tmp_path: Path) -> None:
    layer = PersonalLayer(PersonalStore(tmp_path / "p.sqlite3", max_prompts=3))
    try:
        layer.learn(Prompts(("a b", "c d")))
        learned = layer.learn(Prompts(("e f", "g h", "i j")))
        assert learned.pruned == 2
        layer.learn(Prompts(("k l", "m n", "o p", "q r")))  # some pruned in their own batch
        assert layer.wait_counted(30)
        stored = layer.store.prompts(negative=False)
        mine = layer.counts(negative=False)
        assert mine is not None and mine.as_dict() == count(stored).as_dict()
    finally:
        layer.close()
