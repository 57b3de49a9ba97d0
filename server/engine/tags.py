"""Tag packs: Danbooru-style tags with categories, post counts and aliases, found by prefix.

A pack is a gzip'd TSV in ``data/tags`` (``name, category, posts, adult, aliases``), built from
a1111-sd-webui-tagcomplete's ``danbooru.csv`` (MIT; its notice ships beside the pack) by
``python -m server.engine.tags SOURCE.csv``. Lookups are pure string work: what the user typed
(case, ``_`` or space, ``\\(`` escapes alike) against tag names and aliases, most posts first.
How tags rank against the model's words is the engine's business (``vocabulary.py``).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import functools
import gzip
import heapq
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

PACKS = ("danbooru",)
CATEGORIES = {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta"}
TOP = 32  # matches kept per lookup
# Danbooru's adult vocabulary beyond the engine's safe-mode terms (server/engine/safety.py):
# a tag is adult when a word of its name or an alias is one of these or a safe-mode term.
# fmt: off
ADULT_TERMS = (
    "anus", "anal", "fellatio", "paizuri", "cunnilingus", "handjob", "footjob", "titjob",
    "penetration", "ejaculation", "erection", "clitoris", "vulva", "futanari", "yaoi", "rape",
    "gangbang", "bukkake", "dildo", "vibrator", "condom", "cameltoe", "groping", "pubic",
    "areolae", "pussy juice", "after sex", "group sex", "sex toy", "pantyshot", "panties",
    "underwear", "bra", "ass", "butt crack", "thong", "spread legs", "spread pussy", "nude",
    "completely nude", "breast grab", "breast press", "large breasts", "huge breasts",
    "medium breasts", "small breasts", "flat chest", "sideboob", "underboob", "nipple slip",
    "cum", "used condom", "oral", "doggystyle", "missionary", "cowgirl position", "straddling",
    "tentacle sex", "restrained", "molestation", "exhibitionism", "see-through", "wet clothes",
    "covered nipples", "partially visible vulva", "censored", "uncensored", "mosaic censoring",
    "bar censor", "heart censor", "nsfw", "nippleless", "rating:explicit", "rating:questionable",
)
# fmt: on


class Tag(NamedTuple):
    """A tag as the pack has it (``name`` with underscores, as on Danbooru).

    A named tuple: a pack makes 140k of them while the server loads.
    """

    name: str
    category: int
    posts: int
    adult: bool

    @property
    def category_name(self) -> str:
        return CATEGORIES.get(self.category, "tag")


@dataclass(frozen=True)
class Match:
    """A tag found by what was typed; ``alias`` is the alias that matched, if not the name."""

    tag: Tag
    alias: str | None


def normalize(typed: str) -> str:
    """How tags are compared: lower case, ``_`` as a space, no escapes, spaces folded."""
    return " ".join(typed.replace("\\", "").replace("_", " ").casefold().split())


def render(name: str, keep_underscores: bool = False) -> str:
    """The tag as it goes into a prompt: spaces for underscores (unless kept), and A1111's
    escaped parentheses, which would otherwise read as emphasis (``kafka \\(honkai\\)``)."""
    text = name if keep_underscores else name.replace("_", " ")
    return text.replace("(", "\\(").replace(")", "\\)")


class TagPack:
    """Tags, and one sorted index of the normalized forms of their names and aliases."""

    def __init__(self, tags: list[Tag], index: list[tuple[str, int, bool]]) -> None:
        """``index``: (normalized name or alias, tag index, is an alias), sorted."""
        self.tags = tags
        self._keys = [key for key, _, _ in index]
        self._entries = [(tag, key if alias else "") for key, tag, alias in index]
        self._top = functools.lru_cache(maxsize=4096)(self._lookup)

    @classmethod
    def from_rows(cls, rows: list[tuple[Tag, list[str]]]) -> TagPack:
        """A pack from tags and their aliases (what ``build_pack`` writes)."""
        index = []
        for number, (tag, aliases) in enumerate(rows):
            index.append((normalize(tag.name), number, False))
            index += [(normalize(alias), number, True) for alias in aliases]
        return cls([tag for tag, _ in rows], sorted(set(index)))

    def index(self) -> list[tuple[str, tuple[int, str]]]:
        return list(zip(self._keys, self._entries, strict=True))

    def has(self, typed: str) -> bool:
        """Whether ``typed`` is a tag's name or alias."""
        key = normalize(typed)
        at = bisect.bisect_left(self._keys, key)
        return at < len(self._keys) and self._keys[at] == key

    def lookup(self, typed: str, safe: bool) -> list[Match]:
        """Tags whose name or an alias starts with ``typed``, most posts first (at most 32);
        in ``safe`` mode without adult tags."""
        query = normalize(typed)
        return list(self._top(query, safe)) if query else []

    def _lookup(self, query: str, safe: bool) -> tuple[Match, ...]:
        start = bisect.bisect_left(self._keys, query)
        end = bisect.bisect_left(self._keys, query + "\U0010ffff", lo=start)
        best: dict[int, str] = {}  # tag index -> the alias that matched ("" for the name)
        for index, alias in self._entries[start:end]:
            if safe and self.tags[index].adult:
                continue
            if index not in best or not alias:  # the name beats an alias of the same tag
                best[index] = alias
        chosen = heapq.nlargest(TOP, best, key=lambda index: self.tags[index].posts)
        return tuple(Match(self.tags[index], best[index] or None) for index in chosen)


def pack_path(name: str) -> Path:
    return Path(str(resources.files("server.engine") / "data" / "tags" / f"{name}.tsv.gz"))


@functools.cache
def load_pack(name: str) -> TagPack:
    """A shipped pack by name (``PACKS``); read once per process."""
    if name not in PACKS:
        raise ValueError(f"unknown tag pack {name!r}; packs: {', '.join(PACKS)}")
    tags: list[Tag] = []
    index: list[tuple[str, int, bool]] = []
    with gzip.open(pack_path(name), "rt", encoding="utf-8") as lines:
        for line in lines:
            if line == "\n":
                break
            tag_name, category, posts, adult = line.rstrip("\n").split("\t")
            tags.append(Tag(tag_name, int(category), int(posts), adult == "1"))
        for line in lines:
            key, number, alias = line.rstrip("\n").split("\t")
            index.append((key, int(number), alias == "1"))
    return TagPack(tags, index)


def build_pack(source: Path, target: Path) -> int:
    """Write a pack from a tagcomplete CSV (``tag,category,posts,"alias,..."``); returns the
    number of tags. Adult: a name or alias that is, or has a word that is, an adult term.

    The pack holds the tags, a blank line, then the sorted lookup index, so that loading it
    is reading lines (the server loads it beside the model).
    """
    from server.engine.safety import PATTERNS, SAFE_MODE_TERMS  # build time only

    adult_terms = frozenset(normalize(term) for term in (*SAFE_MODE_TERMS, *ADULT_TERMS))
    adult_patterns = re.compile("|".join(PATTERNS), re.IGNORECASE)
    rows: list[tuple[Tag, list[str]]] = []
    with source.open(encoding="utf-8", newline="") as csv_file:
        for name, category, posts, alias_list in csv.reader(csv_file):
            if any(char in name for char in "\t\n"):
                continue
            aliases = [alias for alias in alias_list.split(",") if alias and alias.isprintable()]
            forms = [normalize(form) for form in (name, *aliases)]
            words = {word for form in forms for word in form.split()} | set(forms)
            adult = not words.isdisjoint(adult_terms) or any(
                adult_patterns.search(form) for form in forms
            )
            rows.append((Tag(name, int(category), int(posts), adult), aliases))
    pack = TagPack.from_rows(rows)
    lines = [f"{tag.name}\t{tag.category}\t{tag.posts}\t{int(tag.adult)}\n" for tag in pack.tags]
    lines.append("\n")
    lines += [f"{key}\t{number}\t{int(bool(alias))}\n" for key, (number, alias) in pack.index()]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress("".join(lines).encode("utf-8"), mtime=0))
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m server.engine.tags", description="Build the Danbooru tag pack."
    )
    parser.add_argument("source", type=Path, help="tagcomplete's tags/danbooru.csv")
    parser.add_argument("--out", type=Path, default=pack_path("danbooru"))
    args = parser.parse_args(argv)
    print(f"{build_pack(args.source, args.out)} tags -> {args.out}")


if __name__ == "__main__":
    main()
