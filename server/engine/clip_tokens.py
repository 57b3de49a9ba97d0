"""CLIP token counts as Stable Diffusion reads a prompt: the 75-token chunks of A1111.

SD 1.x/2.x/SDXL text encoders read CLIP's BPE tokens, 75 per chunk (77 with the start and end
tokens); whatever runs past a chunk starts another one, which users rarely mean. This module
counts exactly what A1111 counts (``modules/sd_hijack_clip.py``): ``<lora:...>`` and other extra
networks are dropped, attention markup ``(word:1.2)``, ``[word]`` is parsed away (runs of equal
weight are merged before tokenizing, as A1111 does), ``BREAK`` starts a new chunk, and a chunk
that would end less than 20 tokens after a comma moves the text after that comma to the next
chunk. ``AND`` splits a prompt into sub-prompts (composable diffusion); the longest counts.

Tokens are CLIP's own: ftfy and HTML clean-up, whitespace folded, lower case, CLIP's
pre-tokenizing regex, then byte-level BPE over the merges shipped in ``data/clip`` (MIT, from
OpenAI's CLIP) run by the ``tokenizers`` library. No torch. Prompt editing ``[a:b:0.5]`` is
counted as written (A1111 counts the longer of its schedules): a known over-count.
"""

from __future__ import annotations

import functools
import gzip
import html
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import ftfy
import regex
from tokenizers import Tokenizer, models, pre_tokenizers

from server.engine.syntax import NEGATIVE_LABEL, PARAMETERS_LINE

CHUNK_LENGTH = 75  # tokens a chunk holds besides its start and end tokens
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default
MERGES_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGE_COUNT = 49152 - 256 - 2  # the merges CLIP uses; the file holds a few more
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")

# CLIP's pre-tokenizer (``simple_tokenizer.py``); ``regex`` for its Unicode classes.
_PRE_TOKEN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")
_LONE_SURROGATE = regex.compile("[\ud800-\udfff]")
# A1111's prompt parsing (``modules/prompt_parser.py``, ``modules/extra_networks.py``).
_ATTENTION = re.compile(
    r"""\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:""", re.X
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
_AND = re.compile(r"\bAND\b")
_SUBPROMPT_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
_ROUND_MULTIPLIER = 1.1
_SQUARE_MULTIPLIER = 1 / 1.1
_BREAK_WEIGHT = -1.0


@functools.cache
def clip_tokenizer() -> Tokenizer:
    """CLIP's BPE as a ``tokenizers`` model; words go in already cleaned and split."""
    merges_path = resources.files("server.engine") / "data" / "clip" / MERGES_FILE
    lines = gzip.decompress(merges_path.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]
    # The stand-in for each byte, printable bytes first (themselves), the rest from U+0100 on.
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet(), key=ord)
    vocab = symbols + [symbol + "</w>" for symbol in symbols]
    vocab += ["".join(merge) for merge in merges]
    vocab += list(SPECIAL_TOKENS)
    tokenizer = Tokenizer(
        models.BPE(
            {token: index for index, token in enumerate(vocab)},
            [(first, second) for first, second in merges],
            end_of_word_suffix="</w>",
        )
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


@functools.cache
def comma_token() -> int:
    token = clip_tokenizer().token_to_id(",</w>")
    assert token is not None, "CLIP's vocabulary has a comma"
    return token


def clean(text: str) -> str:
    """CLIP's text clean-up: ftfy, HTML entities twice, whitespace folded, lower case.

    A lone surrogate (invalid UTF-16 from a client) becomes U+FFFD: it has no UTF-8 bytes.
    """
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    text = _WHITESPACE.sub(" ", _LONE_SURROGATE.sub("\ufffd", text)).strip()
    return text.lower()


def _is_plain(text: str) -> bool:
    """Text that CLIP's clean-up only lower-cases and folds: its offsets survive cleaning."""
    return text.isascii() and "&" not in text and all(c.isprintable() or c in " \t" for c in text)


def _words(text: str) -> tuple[str, list[tuple[int, int]]]:
    """CLIP's pre-tokens of ``text`` as a cleaned string and their spans in ``text``.

    Plain ASCII keeps exact spans; text that the clean-up changes gets spans scaled to it
    (only where a chunk starts is shown from them, never a count).
    """
    if _is_plain(text):
        cleaned = text.lower()
        return cleaned, [match.span() for match in _PRE_TOKEN.finditer(cleaned)]
    cleaned = clean(text)
    scale = len(text) / max(1, len(cleaned))
    spans = []
    for match in _PRE_TOKEN.finditer(cleaned):
        start = min(len(text) - 1, int(match.start() * scale))
        spans.append((start, max(start + 1, min(len(text), round(match.end() * scale)))))
    return cleaned, spans


def encode(text: str) -> list[int]:
    """CLIP token ids of ``text`` without start and end tokens (``SimpleTokenizer.encode``)."""
    ids, _ = _encode_with_spans(text)
    return ids


def _encode_with_spans(text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and, for each, the span in ``text`` of the word it belongs to."""
    cleaned, spans = _words(text)
    if not spans:
        return [], []
    words = [cleaned[start:end] for start, end in spans] if _is_plain(text) else None
    if words is None:
        words = [match.group() for match in _PRE_TOKEN.finditer(cleaned)]
    encoding = clip_tokenizer().encode(words, is_pretokenized=True, add_special_tokens=False)
    word_ids = encoding.word_ids
    return list(encoding.ids), [spans[word] if word is not None else (0, 0) for word in word_ids]


@dataclass(frozen=True)
class Chunk:
    """One chunk the text encoder reads: its text tokens and where they lie in the prompt.

    ``start``/``end`` are string offsets in the text given to ``budget`` (``start == end``
    for a chunk without text, as ``BREAK`` at the start makes).
    """

    tokens: int
    start: int
    end: int
    token_starts: tuple[int, ...]  # where each token's word starts


@dataclass(frozen=True)
class Budget:
    """A prompt's CLIP tokens as A1111's counter shows them, and its chunks.

    ``tokens`` counts every chunk but the last as full (A1111 pads them to 75), so it is what
    the web UI shows in its ``63/75`` counter; ``chunks`` holds the text tokens of each.
    """

    tokens: int
    chunks: tuple[Chunk, ...]

    @property
    def chunk_tokens(self) -> list[int]:
        return [chunk.tokens for chunk in self.chunks]


@dataclass
class _Piece:
    """Text of one attention weight, with each character's offset in the prompt."""

    text: str
    origins: list[int]
    weight: float


def _without_extra_networks(text: str) -> tuple[str, list[int]]:
    """``text`` with ``<lora:...>``-style tags removed, and each kept character's offset."""
    kept: list[str] = []
    origins: list[int] = []
    last = 0
    for match in _EXTRA_NETWORK.finditer(text):
        kept.append(text[last : match.start()])
        origins.extend(range(last, match.start()))
        last = match.end()
    kept.append(text[last:])
    origins.extend(range(last, len(text)))
    return "".join(kept), origins


def _parse_attention(text: str, origins: list[int]) -> list[_Piece]:
    """A1111's ``parse_prompt_attention`` keeping offsets: pieces of text and their weights.

    A ``BREAK`` piece has weight -1 (unless brackets around it scaled it, as in A1111).
    """
    pieces: list[_Piece] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, multiplier: float) -> None:
        for piece in pieces[start:]:
            piece.weight *= multiplier

    for match in _ATTENTION.finditer(text):
        part, weight = match.group(0), match.group(1)
        at = match.start()
        if part.startswith("\\"):
            pieces.append(_Piece(part[1:], origins[at + 1 : at + len(part)], 1.0))
        elif part == "(":
            round_open.append(len(pieces))
        elif part == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open and _is_number(weight):
            multiply(round_open.pop(), float(weight))
        elif part == ")" and round_open:
            multiply(round_open.pop(), _ROUND_MULTIPLIER)
        elif part == "]" and square_open:
            multiply(square_open.pop(), _SQUARE_MULTIPLIER)
        else:
            last = 0
            for separator in _BREAK.finditer(part):
                pieces.append(_Piece(part[last : separator.start()], origins[at + last :], 1.0))
                word = at + part.index("BREAK", separator.start())
                pieces.append(_Piece("BREAK", origins[word : word + 5], _BREAK_WEIGHT))
                last = separator.end()
            pieces.append(_Piece(part[last:], origins[at + last : at + len(part)], 1.0))
    for start in round_open:
        multiply(start, _ROUND_MULTIPLIER)
    for start in square_open:
        multiply(start, _SQUARE_MULTIPLIER)
    merged: list[_Piece] = []
    for piece in pieces:
        piece.origins = piece.origins[: len(piece.text)]
        if merged and merged[-1].weight == piece.weight:
            merged[-1].text += piece.text
            merged[-1].origins += piece.origins
        else:
            merged.append(piece)
    return merged


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _chunked(text: str, origins: list[int]) -> Budget:
    """A1111's ``tokenize_line``: text tokens per chunk, with the comma back-off and BREAK."""
    chunks: list[Chunk] = []
    tokens: list[tuple[int, int, int]] = []  # (id, start, end) in the current chunk
    total = 0
    last_comma = -1

    def close(last: bool = False) -> None:
        nonlocal total, last_comma
        total += len(tokens) if last else CHUNK_LENGTH
        start = tokens[0][1] if tokens else (chunks[-1].end if chunks else 0)
        end = tokens[-1][2] if tokens else start
        starts = tuple(token_start for _, token_start, _ in tokens)
        chunks.append(Chunk(len(tokens), start, end, starts))
        tokens.clear()
        last_comma = -1

    for piece in _parse_attention(text, origins):
        if piece.text == "BREAK" and piece.weight == _BREAK_WEIGHT:
            close()
            continue
        ids, spans = _encode_with_spans(piece.text)
        for token, (start, end) in zip(ids, spans, strict=True):
            if token == comma_token():
                last_comma = len(tokens)
            elif (
                len(tokens) == CHUNK_LENGTH
                and last_comma != -1
                and len(tokens) - last_comma <= COMMA_BACKTRACK
            ):
                moved = tokens[last_comma + 1 :]
                del tokens[last_comma + 1 :]
                close()
                tokens.extend(moved)
            if len(tokens) == CHUNK_LENGTH:
                close()
            tokens.append((token, piece.origins[start], piece.origins[end - 1] + 1))
    if tokens or not chunks:
        close(last=True)
    return Budget(total, tuple(chunks))


def subprompts(text: str) -> list[tuple[int, int]]:
    """Spans of the ``AND``-separated sub-prompts, each without its trailing ``:weight``."""
    spans = []
    start = 0
    for end in [match.start() for match in _AND.finditer(text)] + [len(text)]:
        match = _SUBPROMPT_WEIGHT.match(text[start:end])
        spans.append((start, start + match.end(1) if match is not None else end))
        start = end + len("AND")
    return spans


@functools.lru_cache(maxsize=8192)
def budgets(text: str) -> tuple[Budget, ...]:
    """The budget of each ``AND`` sub-prompt of one prompt; offsets are in ``text``.

    Cached: a document's diagnostics are recounted at every edit, mostly of unchanged lines.
    """
    found = []
    for start, end in subprompts(text):
        kept, origins = _without_extra_networks(text[start:end])
        found.append(_chunked(kept, [start + origin for origin in origins]))
    return tuple(found)


def budget(text: str) -> Budget:
    """What A1111's token counter shows for a prompt: its longest sub-prompt."""
    return max(budgets(text), key=lambda found: found.tokens)


Severity = Literal["information", "warning"]


@dataclass(frozen=True)
class Note:
    """Something to tell the user about ``text[start:end]`` of a document."""

    start: int
    end: int
    severity: Severity
    message: str


def prompt_spans(text: str) -> list[tuple[int, int]]:
    """Each line's prompt text: a ``Negative prompt:`` label and A1111's ``Steps:`` line
    are not read by the text encoder."""
    spans = []
    start = 0
    for line in text.split("\n"):
        end = start + len(line)
        stripped = len(line) - len(line.lstrip())
        if line[stripped:].casefold().startswith(NEGATIVE_LABEL):
            spans.append((start + stripped + len(NEGATIVE_LABEL), end))
        elif line.strip() and not PARAMETERS_LINE.match(line):
            spans.append((start, end))
        start = end + 1
    return spans


def notes(text: str, limit: int) -> list[Note]:
    """Where each chunk past the first starts, and the text past ``limit`` tokens (0: none).

    Positions count as A1111's counter does: every chunk before the last counts 75.
    """
    found = []
    for start, end in prompt_spans(text):
        for prompt in budgets(text[start:end]):
            found += _budget_notes(prompt, limit, start)
    return found


def _budget_notes(prompt: Budget, limit: int, offset: int) -> list[Note]:
    found = []
    for index, chunk in enumerate(prompt.chunks):
        first = index * CHUNK_LENGTH + 1  # the position of the chunk's first token
        last = index * CHUNK_LENGTH + chunk.tokens
        past = bool(limit) and first > limit
        if index > 0 and chunk.tokens:
            message = (
                f"CLIP chunk {index + 1} starts here (tokens {first}-{last} of {prompt.tokens}): "
                "the text encoder reads it apart from the text before it"
            )
            if past:
                message += f"; past the {limit}-token limit"
            severity: Severity = "warning" if past else "information"
            found.append(Note(offset + chunk.start, offset + chunk.end, severity, message))
        if limit and first <= limit < last:
            cut = chunk.token_starts[limit - first + 1]
            message = (
                f"{prompt.tokens} CLIP tokens: the text from here is past the {limit}-token limit"
            )
            found.append(Note(offset + cut, offset + chunk.end, "warning", message))
    return found
