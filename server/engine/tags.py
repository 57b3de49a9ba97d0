"""Tag packs: Danbooru-style tags with categories, post counts and aliases, found by prefix.

A pack is a compressed numpy archive in ``data/tags`` (tag names, categories, posts and adult
flags as columns; the sorted keys that find them), built from a1111-sd-webui-tagcomplete's
``danbooru.csv`` (MIT; its notice ships beside the pack) by
``python -m server.engine.tags SOURCE.csv``. Lookups are pure string work: what the user typed
(case, ``_`` or space, ``\\(`` escapes alike) against tag names and aliases, most posts first.
How tags rank against the model's words is the engine's business (``vocabulary.py``).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from server.engine.types import TAG_PACKS

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
    """A tag as the pack has it (``name`` with underscores, as on Danbooru)."""

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


class _Strings:
    """Strings as one UTF-8 buffer and the offset where each ends: a few bytes a string
    where Python objects took sixty, and a sequence ``bisect`` can search."""

    def __init__(self, buffer: np.ndarray, ends: np.ndarray) -> None:
        self._buffer = buffer.tobytes()
        self._ends = ends
        self._starts = np.concatenate(([0], ends[:-1])).astype(ends.dtype)

    @classmethod
    def of(cls, strings: Iterable[str]) -> _Strings:
        encoded = [text.encode("utf-8") for text in strings]
        ends = np.cumsum([len(text) for text in encoded], dtype=np.int64).astype(np.int32)
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), ends)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.frombuffer(self._buffer, dtype=np.uint8), self._ends

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> bytes:
        return self._buffer[self._starts[index] : self._ends[index]]

    def text(self, index: int) -> str:
        return self[index].decode("utf-8")


class TagPack:
    """Tags as columns, and one sorted index of the normalized forms of their names and
    aliases (141k tags, 171k keys: 2 MB in arrays, against 58 MB as Python objects).

    Keys compare as UTF-8 bytes, which sort as their strings do.
    """

    def __init__(
        self,
        names: _Strings,
        category: np.ndarray,
        posts: np.ndarray,
        adult: np.ndarray,
        keys: _Strings,
        key_tag: np.ndarray,
        key_is_alias: np.ndarray,
    ) -> None:
        """``keys``: sorted; ``key_tag[i]``: the tag whose name or alias (``key_is_alias``)
        ``keys[i]`` is."""
        self._names = names
        self._category = category
        self._posts = posts
        self._adult = adult
        self._keys = keys
        self._key_tag = key_tag
        self._key_is_alias = key_is_alias
        self._top = functools.lru_cache(maxsize=512)(self._lookup)  # retyping, backspacing

    @classmethod
    def from_rows(cls, rows: list[tuple[Tag, list[str]]]) -> TagPack:
        """A pack from tags and their aliases (what ``build_pack`` reads from the CSV)."""
        index: set[tuple[str, int, bool]] = set()
        for number, (tag, aliases) in enumerate(rows):
            index.add((normalize(tag.name), number, False))
            index.update((normalize(alias), number, True) for alias in aliases)
        ordered = sorted(index)
        return cls(
            _Strings.of(tag.name for tag, _ in rows),
            np.array([tag.category for tag, _ in rows], dtype=np.int8),
            np.array([tag.posts for tag, _ in rows], dtype=np.int64),
            np.array([tag.adult for tag, _ in rows], dtype=bool),
            _Strings.of(key for key, _, _ in ordered),
            np.array([number for _, number, _ in ordered], dtype=np.int32),
            np.array([alias for _, _, alias in ordered], dtype=bool),
        )

    @classmethod
    def load(cls, path: Path) -> TagPack:
        with np.load(path) as arrays:
            return cls(
                _Strings(arrays["names"], arrays["name_ends"]),
                arrays["category"],
                arrays["posts"],
                arrays["adult"],
                _Strings(arrays["keys"], arrays["key_ends"]),
                arrays["key_tag"],
                arrays["key_is_alias"],
            )

    def save(self, path: Path) -> None:
        names, name_ends = self._names.arrays()
        keys, key_ends = self._keys.arrays()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            np.savez_compressed(
                file,
                names=names,
                name_ends=name_ends,
                category=self._category,
                posts=self._posts,
                adult=self._adult,
                keys=keys,
                key_ends=key_ends,
                key_tag=self._key_tag,
                key_is_alias=self._key_is_alias,
            )

    def __len__(self) -> int:
        return len(self._names)

    def tag(self, index: int) -> Tag:
        return Tag(
            self._names.text(index),
            int(self._category[index]),
            int(self._posts[index]),
            bool(self._adult[index]),
        )

    def has(self, typed: str) -> bool:
        """Whether ``typed`` is a tag's name or alias."""
        key = normalize(typed).encode("utf-8")
        at = bisect.bisect_left(self._keys, key)
        return at < len(self._keys) and self._keys[at] == key

    def lookup(self, typed: str, safe: bool) -> list[Match]:
        """Tags whose name or an alias starts with ``typed``, most posts first (at most 32);
        in ``safe`` mode without adult tags."""
        query = normalize(typed)
        return list(self._top(query, safe)) if query else []

    def _lookup(self, query: str, safe: bool) -> tuple[Match, ...]:
        prefix = query.encode("utf-8")
        start = bisect.bisect_left(self._keys, prefix)
        end = bisect.bisect_left(self._keys, prefix + b"\xff", lo=start)  # never in UTF-8
        at = np.arange(start, end)
        tags = self._key_tag[start:end]
        if safe:
            kept = ~self._adult[tags]
            at, tags = at[kept], tags[kept]
        if not len(at):
            return ()
        order = np.lexsort((at, self._key_is_alias[at], tags))  # by tag, its name first
        firsts = np.unique(tags[order], return_index=True)[1]
        best = order[firsts]  # a tag's name if it matched, else its first alias
        seen = np.minimum.reduceat(at[order], firsts)  # where the tag first matched
        chosen = best[np.lexsort((seen, -self._posts[tags[best]]))[:TOP]]  # most posts first
        return tuple(
            Match(
                self.tag(int(tags[row])),
                self._keys.text(int(at[row])) if self._key_is_alias[at[row]] else None,
            )
            for row in chosen
        )


def pack_path(name: str) -> Path:
    return Path(str(resources.files("server.engine") / "data" / "tags" / f"{name}.npz"))


@functools.cache
def load_pack(name: str) -> TagPack:
    """A shipped pack by name (``TAG_PACKS``); read once per process."""
    if name not in TAG_PACKS:
        raise ValueError(f"unknown tag pack {name!r}; packs: {', '.join(TAG_PACKS)}")
    return TagPack.load(pack_path(name))


def build_pack(source: Path, target: Path) -> int:
    """Write a pack from a tagcomplete CSV (``tag,category,posts,"alias,..."``); returns the
    number of tags. Adult: a name or alias that is, or has a word that is, an adult term.
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
    TagPack.from_rows(rows).save(target)
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
