"""The model's vocabulary as raw bytes, so typed text can constrain decoding exactly.

Token healing needs "which tokens agree with the characters the user already typed". Byte-level
BPE tokens can be partial UTF-8 characters, so the comparison is done on bytes: a token agrees
with the remaining typed bytes ``R`` when it is a prefix of ``R`` or starts with ``R``.
"""

from __future__ import annotations

import bisect
import json
import unicodedata
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from prompt_words import WORD_JOINERS, is_word_char, is_word_part


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: the printable stand-in character -> the byte."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    stand_ins = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            stand_ins.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, stand_ins, strict=True)}


def load_tokenizer(path: Path) -> tuple[Tokenizer, int]:
    """A checkpoint's fast tokenizer (``tokenizer.json``) and its end-of-text id.

    Read with ``tokenizers`` alone: importing transformers' tokenizer classes costs the
    server about a second of its start.
    """
    file = path / "tokenizer.json"
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json (a fast tokenizer is required)")
    tokenizer = Tokenizer.from_file(str(file))
    eos_id: int | None = None
    settings = path / "tokenizer_config.json"
    if settings.is_file():
        eos = json.loads(settings.read_text(encoding="utf-8")).get("eos_token")
        eos = eos.get("content") if isinstance(eos, dict) else eos
        eos_id = tokenizer.token_to_id(eos) if isinstance(eos, str) else None
    if eos_id is None and (path / "config.json").is_file():
        eos_id = json.loads((path / "config.json").read_text(encoding="utf-8")).get("eos_token_id")
    if not isinstance(eos_id, int):
        raise ValueError(f"{path}: the tokenizer declares no end-of-text token")
    return tokenizer, eos_id


def token_bytes_table(tokenizer: Tokenizer, vocab_size: int) -> list[bytes | None]:
    """Each token id's bytes; None for special tokens and ids the tokenizer does not know."""
    special = {i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
    id_to_token = {index: token for token, index in tokenizer.get_vocab().items()}
    decoder = tokenizer.decoder
    byte_level = type(decoder).__name__ == "ByteLevel"
    stand_ins = _byte_level_decoder()
    table: list[bytes | None] = []
    for index in range(vocab_size):
        token = id_to_token.get(index)
        if token is None or index in special:
            table.append(None)
        elif byte_level and all(char in stand_ins for char in token):
            table.append(bytes(stand_ins[char] for char in token))
        else:
            text = decoder.decode([token]) if decoder is not None else token
            table.append(text.encode("utf-8") if text else None)
    return table


def _is_word_piece(data: bytes) -> bool:
    """True when the token can continue a word: word characters, joiners or a partial character."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data[0] >= 0x80  # part of a multi-byte character; checked when the word is complete
    return bool(text) and is_word_part(text)


def _continues_word(data: bytes) -> bool:
    """True for b"" and for bytes that can only extend a word (letters, joiners, partial chars)."""
    return not data or _is_word_piece(data)


def _starts_new_word(data: bytes) -> bool:
    """True when the token begins with whitespace or punctuation, i.e. it ends the current word."""
    first = data[:1].decode("ascii", errors="ignore")
    if not first:
        return False  # non-ASCII lead byte: most likely a letter continuing the word
    return not (is_word_char(first) or first in WORD_JOINERS)


class Vocabulary:
    """Token bytes plus the lookups and masks the decoders need, computed once per model."""

    def __init__(self, tokenizer: Tokenizer, eos_id: int, vocab_size: int) -> None:
        self.size = vocab_size
        self.eos_id = eos_id
        self.token_bytes = token_bytes_table(tokenizer, vocab_size)
        self.token_text: list[str | None] = []
        for data in self.token_bytes:
            try:
                self.token_text.append(data.decode("utf-8") if data is not None else None)
            except UnicodeDecodeError:
                self.token_text.append(None)
        self.by_bytes: dict[bytes, int] = {}
        for index, data in enumerate(self.token_bytes):
            if data:
                self.by_bytes.setdefault(data, index)
        ordered = sorted((data, index) for index, data in enumerate(self.token_bytes) if data)
        self._sorted_bytes = [data for data, _ in ordered]
        self._sorted_ids = [index for _, index in ordered]

        # Filled as lists and converted once.
        word_piece = [False] * vocab_size
        content = [False] * vocab_size
        boundary = [False] * vocab_size
        unusable = [False] * vocab_size
        for index, data in enumerate(self.token_bytes):
            if not data:
                unusable[index] = index != self.eos_id
                boundary[index] = index == self.eos_id
                continue
            word_piece[index] = _is_word_piece(data)
            boundary[index] = _starts_new_word(data)
            content[index] = any(char.isalnum() for char in self.token_text[index] or "")
        self.word_piece_mask = np.array(word_piece, dtype=bool)
        self.boundary_mask = np.array(boundary, dtype=bool)
        self.unusable_mask = np.array(unusable, dtype=bool)  # specials but EOS: never generated
        self.content_mask = np.array(content, dtype=bool)  # has a letter or digit
        self.byte_lengths = np.array([len(data or b"") for data in self.token_bytes])
        self._consistent_cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._word_cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def consistent(self, remaining: bytes) -> np.ndarray:
        """Ids of tokens that agree with ``remaining``: a prefix of it, or starting with it."""
        cached = self._consistent_cache.get(remaining)
        if cached is not None:
            self._consistent_cache.move_to_end(remaining)
            return cached
        ids = [
            self.by_bytes[remaining[:length]]
            for length in range(1, len(remaining))
            if remaining[:length] in self.by_bytes
        ]
        position = bisect.bisect_left(self._sorted_bytes, remaining)
        while position < len(self._sorted_bytes) and self._sorted_bytes[position].startswith(
            remaining
        ):
            ids.append(self._sorted_ids[position])
            position += 1
        result = np.array(sorted(set(ids)), dtype=np.int64)
        self._consistent_cache[remaining] = result
        if len(self._consistent_cache) > 512:
            self._consistent_cache.popitem(last=False)
        return result

    def allowed(self, ids: np.ndarray, remaining: bytes, banned: np.ndarray) -> np.ndarray:
        """``ids`` without banned tokens, except those that only re-type the user's text.

        A banned word the user typed must still be reproducible by token healing; what is
        banned is the model *adding* it.
        """
        adds = self.byte_lengths[ids] > len(remaining)
        return ids[~(banned[ids] & adds)]

    def word_consistent(self, remaining: bytes) -> np.ndarray:
        """Tokens that agree with ``remaining`` and, past its end, only continue the word."""
        cached = self._word_cache.get(remaining)
        if cached is not None:
            self._word_cache.move_to_end(remaining)
            return cached
        ids = [
            token
            for token in self.consistent(remaining).tolist()
            if _continues_word((self.token_bytes[token] or b"")[len(remaining) :])
        ]
        result = np.array(ids, dtype=np.int64)
        self._word_cache[remaining] = result
        if len(self._word_cache) > 512:
            self._word_cache.popitem(last=False)
        return result

    def word_terms(self) -> dict[str, list[int]]:
        """Lower-cased token text without surrounding spaces -> ids (for banning whole words)."""
        terms: dict[str, list[int]] = {}
        for index, text in enumerate(self.token_text):
            if text and text.strip():
                terms.setdefault(unicodedata.normalize("NFC", text.strip()).casefold(), []).append(
                    index
                )
        return terms
