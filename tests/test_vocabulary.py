"""Tags, LoRAs, embeddings and wildcards in the engine's menu (a scripted model)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from transformers import AutoTokenizer

from server.engine import CompletionEngine, EngineSettings, Suggestion
from server.engine.tags import TagPack, build_pack, load_pack, normalize, render
from server.engine.user_models import read_trigger_words, scan
from server.settings import build_settings
from tests.test_engine_behaviour import ScriptedRunner

SCRIPTS = (
    "portrait of a girl, blue eyes",
    "masterpiece, 1girl, blue eyes",
    "1girl, long hair, smile",
)


@pytest.fixture(scope="module")
def tokenizer(default_model_dir: Path):
    return AutoTokenizer.from_pretrained(default_model_dir, local_files_only=True)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA folder (one with training tags, one without metadata), embeddings, wildcards."""
    root = tmp_path_factory.mktemp("models")
    (root / "lora" / "styles").mkdir(parents=True)
    frequencies = {"10_kafka": {"kafka": 40, "purple hair": 25, "sunglasses": 7}}
    save_file(
        {"lora_up.weight": np.zeros((2, 2), dtype=np.float32)},
        str(root / "lora" / "kafkaHSR_v2.safetensors"),
        metadata={"ss_tag_frequency": json.dumps(frequencies)},
    )
    save_file(
        {"w": np.zeros(1, dtype=np.float32)}, str(root / "lora" / "styles" / "ink.safetensors")
    )
    (root / "embeddings").mkdir()
    (root / "embeddings" / "easynegative.safetensors").write_bytes(b"")
    (root / "wildcards" / "colors").mkdir(parents=True)
    (root / "wildcards" / "hair.txt").write_text("long hair\nshort hair\n")
    (root / "wildcards" / "colors" / "warm.txt").write_text("red\norange\n")
    return root


def engine_for(tokenizer, **settings: object) -> CompletionEngine:
    runner = ScriptedRunner(tokenizer, SCRIPTS, vocab_size=len(tokenizer))
    return CompletionEngine(
        runner, tokenizer.backend_tokenizer, tokenizer.eos_token_id, EngineSettings(**settings)
    )


@pytest.fixture(scope="module")
def engine(tokenizer, folders: Path) -> CompletionEngine:
    built = engine_for(
        tokenizer,
        lora_dirs=(str(folders / "lora"),),
        embedding_dirs=(str(folders / "embeddings"),),
        wildcard_dirs=(str(folders / "wildcards"),),
    )
    assert built.vocabulary.user_models.wait()
    return built


def menu(engine: CompletionEngine, text: str) -> list[Suggestion]:
    return engine.complete(text, len(text), limit=8)


def results(engine: CompletionEngine, text: str) -> list[str]:
    return [text[: item.start] + item.new_text for item in menu(engine, text)]


# -- tags -------------------------------------------------------------------------------------


def test_an_alias_offers_its_tag(engine: CompletionEngine) -> None:
    (item, *_) = menu(engine, "masterpiece, 1girls")
    assert item.new_text == "1girl, "
    assert item.label == "1girls → 1girl"
    assert "general tag" in item.detail
    assert results(engine, "longhair")[0] == "long hair, "


def test_a_tag_the_context_predicts_comes_first(engine: CompletionEngine) -> None:
    found = results(engine, "masterpiece, 1girl, b")
    # "blush" has more posts than "blue eyes", but the model expects "blue" here.
    assert found[0] == "masterpiece, 1girl, blue eyes, "
    assert found.index("masterpiece, 1girl, blush, ") > 0


def test_in_prose_a_longer_tag_does_not_outrank_the_models_word(engine: CompletionEngine) -> None:
    found = results(engine, "portrait of a girl, b")
    assert found[0] == "portrait of a girl, blue"
    assert "portrait of a girl, blue eyes, " in found


def test_a_tag_may_start_words_back(engine: CompletionEngine) -> None:
    assert results(engine, "1girl, long h")[0] == "1girl, long hair, "


def test_underscores_become_spaces_unless_kept(tokenizer) -> None:
    assert "long hair, " in results(engine_for(tokenizer), "long_ha")
    kept = engine_for(tokenizer, tag_underscores=True)
    assert "long_hair, " in results(kept, "long_ha")
    # A tag is not offered where it would change what was typed (here the capital).
    assert all(item.label != "long_hair" for item in menu(kept, "Long ha"))


def test_parentheses_in_tags_are_escaped(engine: CompletionEngine) -> None:
    assert results(engine, "1girl, hu tao")[0] == "1girl, hu tao \\(genshin impact\\), "
    assert render("hu_tao_(genshin_impact)") == "hu tao \\(genshin impact\\)"
    assert normalize("Hu_Tao \\(genshin") == "hu tao (genshin"


def test_inside_brackets_no_separator_is_added(engine: CompletionEngine) -> None:
    assert "1girl, (blue eyes" in results(engine, "1girl, (blue e")


def test_safe_mode_keeps_adult_tags_out(tokenizer) -> None:
    adult = {match.tag.name for match in load_pack("danbooru").lookup("nipple", safe=False)}
    assert "nipples" in adult
    assert not any("nipples" in text for text in results(engine_for(tokenizer), "nipple"))
    unsafe = engine_for(tokenizer, safe_mode=False)
    found = menu(unsafe, "nipple")
    assert any(item.new_text.startswith("nipples") and "tag" in item.detail for item in found)


# name, category, posts, aliases: as tagcomplete's danbooru.csv has them.
SMALL_TAGS_CSV = """long_hair,0,900,"longhair,long_hairs"
long_sleeves,0,500,
blue_eyes,0,700,"blue_eye"
loli_(style),0,800,
hu_tao_(genshin_impact),4,300,"hutao"
lonely,0,500,"long_hairs"
nude,0,950,
"""


def test_a_built_pack_is_found_by_name_and_alias(tmp_path: Path) -> None:
    source = tmp_path / "tags.csv"
    source.write_text(SMALL_TAGS_CSV, encoding="utf-8")
    assert build_pack(source, tmp_path / "small.npz") == 7
    pack = TagPack.load(tmp_path / "small.npz")

    def found(typed: str, safe: bool = False) -> list[tuple[str, str | None]]:
        return [(match.tag.name, match.alias) for match in pack.lookup(typed, safe)]

    # Most posts first; equal posts in key order; a name that matched beats its alias.
    assert found("lon") == [("long_hair", None), ("lonely", None), ("long_sleeves", None)]
    assert found("long hairs") == [("long_hair", "long hairs"), ("lonely", "long hairs")]
    assert found("LongHair") == [("long_hair", "longhair")]
    assert found("hu_tao \\(gen") == [("hu_tao_(genshin_impact)", None)]
    assert pack.lookup("hutao", False)[0].tag.category_name == "character"
    assert found("n") == [("nude", None)] and found("n", safe=True) == []
    assert found("zebra") == [] and found("   ") == []
    assert pack.has("Blue_Eye") and not pack.has("blue")
    assert len(pack) == 7


def test_tag_packs_can_be_turned_off(tokenizer) -> None:
    assert not any(item.detail for item in menu(engine_for(tokenizer, tag_packs=()), "1girls"))


def test_tag_settings_are_validated() -> None:
    validated = build_settings({"tagPacks": ["e621"], "tagUnderscores": "yes"})
    assert len(validated.problems) == 2
    assert validated.settings.engine.tag_packs == ("danbooru",)
    assert build_settings({"tagPacks": []}).settings.engine.tag_packs == ()


# -- LoRAs, embeddings, wildcards -------------------------------------------------------------


def test_lora_names_complete_with_the_weight_syntax(engine: CompletionEngine) -> None:
    assert results(engine, "1girl, <lora:") == [
        "1girl, <lora:kafkaHSR_v2:1>",
        "1girl, <lora:styles/ink:1>",
    ]
    assert results(engine, "<lora:sty") == ["<lora:styles/ink:1>"]
    assert results(engine, "<lora:kafkaHSR_v2:0.")[0] == "<lora:kafkaHSR_v2:0.8>"


def test_trigger_words_come_first_right_after_a_lora(
    engine: CompletionEngine, folders: Path
) -> None:
    assert read_trigger_words(folders / "lora" / "kafkaHSR_v2.safetensors") == [
        "kafka",
        "purple hair",
        "sunglasses",
    ]
    found = menu(engine, "<lora:kafkaHSR_v2:0.8>, ")
    assert [item.new_text for item in found[:3]] == ["kafka, ", "purple hair, ", "sunglasses, "]
    assert found[0].detail == "trigger word of kafkaHSR_v2"
    assert results(engine, "<lora:kafkaHSR_v2:0.8> pu")[0] == "<lora:kafkaHSR_v2:0.8> purple hair, "
    assert read_trigger_words(folders / "lora" / "styles" / "ink.safetensors") == []


def test_embeddings_are_offered_as_words(engine: CompletionEngine) -> None:
    (item, *_) = menu(engine, "ugly, easyn")
    assert (item.new_text, item.detail) == ("easynegative", "embedding")


def test_wildcards_from_files_and_sub_folders(engine: CompletionEngine) -> None:
    assert results(engine, "a __") == ["a __colors/warm__", "a __hair__"]
    assert results(engine, "a __ha") == ["a __hair__"]


def test_folders_are_rescanned_when_they_change(tokenizer, tmp_path: Path) -> None:
    (tmp_path / "lora").mkdir()
    built = engine_for(tokenizer, lora_dirs=(str(tmp_path / "lora"),))
    assert built.vocabulary.user_models.wait()
    assert results(built, "<lora:") == []
    (tmp_path / "lora" / "new.safetensors").write_bytes(b"")
    deadline = time.monotonic() + 30
    while results(built, "<lora:") != ["<lora:new:1>"]:
        assert time.monotonic() < deadline, "the new LoRA never appeared"
        time.sleep(0.1)


def test_a_scan_finds_names_without_reading_files(folders: Path) -> None:
    found = scan([str(folders / "lora")], [], [str(folders / "missing")])
    assert found.loras.starting("", 10) == ["kafkaHSR_v2", "styles/ink"]
    assert found.loras.starting("KAF", 10) == ["kafkaHSR_v2"]
    assert found.wildcards.starting("", 10) == []
