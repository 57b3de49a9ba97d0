"""Today's prompt vocabulary beside the model's words: tags, LoRAs, embeddings, wildcards.

The engine asks twice per menu request: ``special`` first, for places the model has nothing
to say (after ``<lora:`` or the ``<`` that starts one, after ``__``), then ``words`` to merge
tags, a LoRA's trigger words and embedding names into its ranked word items. Tags rank by the
line's context where the model's words predict them (a tag that finishes the word the context
expects takes that word's score) and by their share of posts among the tags that match
otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace

from server.engine.personal_words import WrittenLora
from server.engine.syntax import CursorContext, normalize_phrase
from server.engine.tags import Match, TagPack, load_pack, normalize, render
from server.engine.types import EngineSettings, Suggestion
from server.engine.user_models import UserModels

LORA_WEIGHTS = ("1", "0.8", "0.6", "0.5", "0.7", "0.9")
DEFAULT_LORA_WEIGHT = LORA_WEIGHTS[0]
NAMES_SHOWN = 100  # LoRA, embedding and wildcard names offered at most (the most a menu takes)
MAX_TAG_WORDS = 4  # words back from the cursor a tag may start ("long h" -> "long hair")
# A tag the model's words do not predict scores its share of the matching tags' posts times
# this prior: high when the line so far is a tag list, low in prose.
TAG_LIST_PRIOR = math.log(0.5)
PROSE_PRIOR = math.log(0.05)
TAG_LIST_SHARE = 0.5  # a line whose earlier phrases are tags this often is a tag list
# Shares are of at least this many posts: one rare tag that alone matches is still rare.
MIN_TOTAL_POSTS = 100_000
PREDICTED_BONUS = 0.01  # a predicted tag goes just above the word it finishes
# In prose, a tag that goes on past the predicted word ("of" -> "portrait of exotic girls")
# loses this much per further word.
PROSE_WORD_PENALTY = 2.0
_LORA_NAME = re.compile(r"<lora:([^:>]*)$")
# "<", "<l" ... "<lora" where a tag may start: "<lora:" and the LoRAs the user wrote or has.
_LORA_OPENING = re.compile(r"(?:^|(?<=[\s,(\[{]))<(?:l(?:o(?:r(?:a)?)?)?)?$")
_LORA_WEIGHT = re.compile(r"<lora:([^:>]+):([\d.]*)$")
_AFTER_LORA = re.compile(r"<lora:([^:>]+)(?::[^>]*)?>[\s,]*$")
_WILDCARD = re.compile(r"(?<![\w_])__([\w/.-]*)$")
_PHRASE_START = re.compile(r"[,;|()\[\]{}<>]")

Allowed = Callable[[str], bool]


class PromptVocabulary:
    """Tag packs and the user's folders, configured from the engine's settings."""

    def __init__(self, written_loras: Callable[[], list[WrittenLora]] | None = None) -> None:
        """``written_loras``: the LoRAs in the user's prompts (the personal layer's), if any."""
        self.user_models = UserModels()
        self._written_loras = written_loras
        self._packs: list[TagPack] = []
        self._settings = EngineSettings()

    def update_settings(self, settings: EngineSettings) -> None:
        """Load the tag packs (once per process) and watch the user's folders."""
        self._packs = [load_pack(name) for name in settings.tag_packs]
        self._settings = settings
        self.user_models.configure(
            settings.lora_dirs, settings.embedding_dirs, settings.wildcard_dirs
        )

    # -- places the model has nothing to say --------------------------------------------------

    def special(self, text: str, cursor: int, allowed: Allowed) -> list[Suggestion] | None:
        """Items after ``<lora:`` (names, then weights), after the ``<`` that may start one
        (``<lora:`` and the names) or ``__`` (wildcards); None elsewhere. ``allowed`` filters the
        names that come from the user's prompts (the blocklist and safe mode)."""
        line_start = text.rfind("\n", 0, cursor) + 1
        before = text[line_start:cursor]
        closed = text.startswith(">", cursor)
        end = "" if closed else ">"
        if (match := _LORA_WEIGHT.search(before)) is not None:
            typed = match.group(2)
            start = cursor - len(typed)
            mine = {lora.name: lora.weights for lora in self._loras_written()}.get(match.group(1))
            weights = dict.fromkeys([*(mine or ()), *LORA_WEIGHTS])  # the user's first
            return [
                Suggestion("tag", start, cursor, weight + end, -0.01 * rank)
                for rank, weight in enumerate(weights)
                if weight.startswith(typed) and weight != typed
            ]
        if (match := _LORA_NAME.search(before)) is not None:
            typed = match.group(1)
            start = cursor - len(typed)
            return [
                Suggestion("tag", start, cursor, tail, -0.01 * rank, name, detail)
                for rank, (name, tail, detail) in enumerate(
                    self._lora_names(typed, closed, allowed)
                )
            ]
        if (match := _LORA_OPENING.search(before)) is not None:
            # The tag's opening first, then the LoRAs the user wrote or has.
            start = line_start + match.start()
            items = [Suggestion("tag", start, cursor, "<lora:", 0.0, "<lora:", "LoRA")]
            items += [
                Suggestion(
                    "tag", start, cursor, f"<lora:{tail}", -0.01 * rank, f"<lora:{tail}", detail
                )
                for rank, (_, tail, detail) in enumerate(
                    self._lora_names("", closed, allowed), start=1
                )
            ]
            return items
        if (match := _WILDCARD.search(before)) is not None and self._settings.wildcard_dirs:
            typed = match.group(1)
            names = self.user_models.found.wildcards.starting(typed, NAMES_SHOWN)
            closing = "" if text.startswith("__", cursor) else "__"
            return [
                Suggestion(
                    "tag",
                    cursor - len(typed) - 2,
                    cursor,
                    f"__{name}{closing}",
                    -0.01 * rank,
                    f"__{name}__",
                    "wildcard",
                )
                for rank, name in enumerate(names)
            ]
        return None

    def _loras_written(self) -> list[WrittenLora]:
        return self._written_loras() if self._written_loras is not None else []

    def _lora_names(self, typed: str, closed: bool, allowed: Allowed) -> list[tuple[str, str, str]]:
        """(name, what to insert from the name on, detail) of the LoRAs that start with
        ``typed`` (any case): those the user wrote, most used first, then the rest of their
        folders. A written one stops at the weight's ``:``, where the weight menu offers the
        weights the user gave it first (they vary: one filled in was more often wrong than
        right); a file's gets the default weight and the ``>`` (none before a ``>``)."""
        key = typed.casefold()
        found = [
            (lora.name, f"{lora.name}:", f"LoRA · {lora.uses} times in your prompts")
            for lora in self._loras_written()
            if lora.name.casefold().startswith(key) and allowed(lora.name)
        ][:NAMES_SHOWN]
        written = {name for name, _, _ in found}
        tail = "" if closed else f":{DEFAULT_LORA_WEIGHT}>"
        for name in self.user_models.found.loras.starting(typed, NAMES_SHOWN):
            if name not in written and len(found) < NAMES_SHOWN:
                found.append((name, name + tail, "LoRA"))
        return found

    # -- words --------------------------------------------------------------------------------

    def words(
        self, text: str, where: CursorContext, items: list[Suggestion], allowed: Allowed
    ) -> list[Suggestion]:
        """The model's word items with trigger words first, then tags and embeddings merged."""
        if where.inside_word:
            return items  # the cursor is in the middle of a word: nothing to finish there
        before = text[where.segment_start : where.cursor]
        partial = text[where.word_start : where.cursor] if where.in_word else ""
        found = self._trigger_words(text, where, before, partial)
        if partial:
            found += self._embeddings(where, partial)
            items = self._with_tags(text, where, before, items, allowed)
        return _deduplicated([*found, *items])

    def _trigger_words(
        self, text: str, where: CursorContext, before: str, partial: str
    ) -> list[Suggestion]:
        """Right after ``<lora:name:w>``, its trigger words (those that start what was typed)."""
        match = _AFTER_LORA.search(before[: len(before) - len(partial)])
        if match is None:
            return []
        words = self.user_models.trigger_words(match.group(1))
        suffix = _tag_suffix(text, where)
        return [
            Suggestion(
                "tag",
                where.word_start,
                where.cursor,
                word + suffix,
                1.0 - 0.01 * rank,
                word,
                f"trigger word of {match.group(1)}",
            )
            for rank, word in enumerate(words)
            if normalize(word).startswith(normalize(partial)) and word != partial
        ]

    def _embeddings(self, where: CursorContext, partial: str) -> list[Suggestion]:
        return [
            Suggestion(
                "tag", where.word_start, where.cursor, name, 0.5 - 0.01 * rank, name, "embedding"
            )
            for rank, name in enumerate(
                self.user_models.found.embeddings.starting(partial, NAMES_SHOWN)
            )
            if name != partial
        ]

    def _with_tags(
        self,
        text: str,
        where: CursorContext,
        before: str,
        items: list[Suggestion],
        allowed: Allowed,
    ) -> list[Suggestion]:
        """Word items merged with the tags that match the end of the current phrase."""
        if not self._packs:
            return items
        safe = self._settings.safe_mode
        scores = {
            _word_key(item.new_text): item.score for item in items if item.start == where.word_start
        }
        tag_list = self._is_tag_list(before)
        matches: dict[str, tuple[int, Match]] = {}  # rendered tag -> (start, match)
        for start in _tag_starts(before, where.cursor - where.segment_start):
            typed = before[start:]
            for pack in self._packs:
                for match in pack.lookup(typed, safe):
                    name = render(match.tag.name, self._settings.tag_underscores)
                    if normalize(name) == normalize(typed):
                        continue  # typed in full already
                    if match.alias:
                        if not tag_list and normalize(match.alias) != normalize(typed):
                            continue  # in prose "painting" must not become "picture frame"
                    elif not _loosely(name).startswith(_loosely(typed)):
                        continue  # it would change what was typed ("a\tb" -> "a big brother")
                    if name not in matches and allowed(name):
                        matches[name] = (where.segment_start + start, match)
            if matches:
                break  # "long h" matched: "h" alone would offer "long hair ornament"
        if not matches:
            return items
        total = max(MIN_TOTAL_POSTS, sum(match.tag.posts for _, match in matches.values()))
        partial_word = text[where.word_start : where.cursor]
        prior = TAG_LIST_PRIOR if tag_list else PROSE_PRIOR
        suffix = _tag_suffix(text, where)
        ranked = list(items)
        tags: list[Suggestion] = []
        for name, (start, match) in matches.items():
            typed_words = text[start : where.cursor].count(" ")
            words = name.split(" ")
            current = min(typed_words, len(words) - 1)
            predicted = scores.get(normalize(words[current]))
            score = prior + math.log(match.tag.posts / total)
            if predicted is not None:
                further = len(words) - 1 - current
                penalty = 0.0 if tag_list else PROSE_WORD_PENALTY * further
                score = max(score, predicted + PREDICTED_BONUS - penalty)
            label = f"{match.alias} → {name}" if match.alias else name
            detail = f"{match.tag.category_name} tag · {match.tag.posts:,} posts"
            same = [
                index
                for index, item in enumerate(ranked)
                if item.kind == "word" and _word_key(item.new_text) == normalize(name)
            ]
            if same and start == where.word_start:
                # The model offers the same word ("cat ", "cat,"): its items get the tag's detail.
                for index in same:
                    item = ranked[index]
                    better = max(item.score, score) if tag_list else item.score
                    ranked[index] = replace(item, score=better, label=label, detail=detail)
                continue
            # Words typed as the tag has them stay; the item finishes the tag from there. An
            # alias, or other case or underscores, is replaced by the tag.
            kept = text[start : where.word_start]
            if name.startswith(kept) and name[len(kept) :].startswith(partial_word):
                start = where.word_start
            replaced = name[len(kept) :] if start == where.word_start else name
            tags.append(
                Suggestion("tag", start, where.cursor, replaced + suffix, score, label, detail)
            )
        tags.sort(key=lambda item: item.score, reverse=True)
        if not tag_list:
            # In prose the model's words keep their places and tags come after them, but for
            # an alias typed in full ("longhair"). Interleaved, tags cost 2022-style prompts
            # 0.016 KSR (docs/BENCHMARKS.md).
            aliases = [item for item in tags if " → " in item.label]  # typed in full here
            return aliases + ranked + [item for item in tags if item not in aliases]
        ranked += tags
        ranked.sort(key=lambda item: item.score, reverse=True)
        return ranked

    def _is_tag_list(self, before: str) -> bool:
        """Whether the phrases before the current one are mostly tags of the packs."""
        phrases = [normalize_phrase(text) for text in before.split(",")[:-1]]
        phrases = [phrase for phrase in phrases if phrase]
        if not phrases:
            return False
        tags = sum(any(pack.has(phrase) for pack in self._packs) for phrase in phrases)
        return tags >= TAG_LIST_SHARE * len(phrases)


def _loosely(text: str) -> str:
    """Text as compared with a tag: underscores and spaces alike, nothing else changed."""
    return text.replace("_", " ")


def _word_key(new_text: str) -> str:
    return normalize(new_text.strip().rstrip(","))


def _tag_starts(before: str, cursor: int) -> list[int]:
    """Where a tag ending at the cursor may start: the current phrase's last few word starts,
    earliest first (the longest typed text with matches wins: "long h" -> "long hair")."""
    phrase = max((match.end() for match in _PHRASE_START.finditer(before)), default=0)
    while phrase < cursor and before[phrase].isspace():
        phrase += 1
    starts = [phrase] + [i + 1 for i in range(phrase, cursor - 1) if before[i] == " "]
    starts = [start for start in starts if start < cursor and not before[start].isspace()]
    return starts[-MAX_TAG_WORDS:]


def _tag_suffix(text: str, where: CursorContext) -> str:
    """ ", " after a tag at the end of a line outside brackets, as tag lists are written."""
    rest = text[where.cursor : where.segment_end]
    return ", " if not where.brackets and not rest.strip() else ""


def _deduplicated(items: list[Suggestion]) -> list[Suggestion]:
    seen: set[tuple[int, str]] = set()
    kept = []
    for item in items:
        key = (item.start, item.new_text)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept
