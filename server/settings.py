"""User settings: raw JSON from the client validated into engine and server settings.

Layers, lowest first: defaults < ``initializationOptions`` < ``workspace/configuration``
(section ``promptAutocomplete``). Each layer is validated key by key: a bad value is reported
and dropped, so the layer below it (ultimately the default) stays in force and the server keeps
working. Pure logic: no LSP types, no I/O.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from server.engine.types import TAG_PACKS, EngineSettings

SECTION = "promptAutocomplete"
MAX_ITEMS_LIMIT = 100
MAX_EXPANSION_TOKENS_LIMIT = 1024
MAX_THREADS = 256
MAX_TIME_BUDGET_MS = 600_000
MAX_TOKEN_LIMIT = 75 * 100


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server acts on; ``engine`` is handed to the completion engine as is."""

    model: str = "default"
    threads: int | None = None  # None: let the engine choose
    # Plain-text ids as editors send them: VS Code "plaintext", Neovim/Emacs/Helix "text".
    language_ids: tuple[str, ...] = ("plaintext", "text", "txt", "markdown", "prompt")
    file_patterns: tuple[str, ...] = ("*.prompt",)
    token_limit: int = 75  # CLIP tokens before a warning; 0: chunks are only noted
    learn: bool = True  # learn the user's prompts (the learn command, saved and closed files)
    engine: EngineSettings = field(default_factory=EngineSettings)

    def serves(self, language_id: str | None, path: str | None) -> bool:
        """Whether a document of this language, or at this path, gets completions."""
        if language_id is not None and language_id in self.language_ids:
            return True
        if not path:
            return False
        name = PurePath(path).name
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.file_patterns)


@dataclass(frozen=True)
class Validated:
    """Settings built from the layers, and one line per problem found on the way."""

    settings: ServerSettings
    problems: tuple[str, ...]


class _Invalid(ValueError):
    """A value that cannot be used; the message says what is expected."""


def _int_in(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Invalid(f"expected a whole number from {low} to {high}")
        return value

    return check


def _positive_float_up_to(high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        expected = f"expected a number above 0 and at most {high}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(expected)
        number = float(value)
        if not math.isfinite(number) or not 0 < number <= high:
            raise _Invalid(expected)
        return number

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("expected true or false")
    return value


def _model_ref(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid('expected a model reference such as "default", a directory or hf:<repo>')
    return value.strip()


def _threads(value: Any) -> int | None:
    """0 or null mean "let the engine choose"."""
    if value is None or (type(value) is int and value == 0):
        return None
    return _int_in(1, MAX_THREADS)(value)


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Invalid("expected a list of strings")
    return tuple(value)


def _blocklist(value: Any) -> tuple[str, ...]:
    """Words, or regular expressions written as ``/.../``; a broken regex is refused here."""
    entries = _strings(value)
    for entry in entries:
        if not entry.strip():
            raise _Invalid("entries must not be empty")
        if len(entry) >= 2 and entry.startswith("/") and entry.endswith("/"):
            try:
                re.compile(entry[1:-1])
            except re.error as exc:
                raise _Invalid(f"bad regular expression {entry!r}: {exc}") from None
    return entries


def _tag_packs(value: Any) -> tuple[str, ...]:
    """Names of shipped tag packs; [] turns tags off."""
    names = _strings(value)
    unknown = [name for name in names if name not in TAG_PACKS]
    if unknown:
        raise _Invalid(f"unknown tag packs {unknown}; packs: {list(TAG_PACKS)}")
    return names


def _folders(value: Any) -> tuple[str, ...]:
    """Folder paths; ``~`` is the user's home. A missing folder is watched until it appears."""
    return tuple(os.path.expanduser(folder) for folder in _strings(value))


# camelCase key as the client sends it -> (ServerSettings or EngineSettings field, validator)
_SERVER_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "model": ("model", _model_ref),
    "threads": ("threads", _threads),
    "languageIds": ("language_ids", _strings),
    "filePatterns": ("file_patterns", _strings),
    "tokenLimit": ("token_limit", _int_in(0, MAX_TOKEN_LIMIT)),
    "learn": ("learn", _bool),
}
_ENGINE_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "maxItems": ("max_items", _int_in(1, MAX_ITEMS_LIMIT)),
    "temperature": ("temperature", _positive_float_up_to(2.0)),
    "maxExpansionTokens": ("max_expansion_tokens", _int_in(1, MAX_EXPANSION_TOKENS_LIMIT)),
    "blocklist": ("blocklist", _blocklist),
    "safeMode": ("safe_mode", _bool),
    "timeBudgetMs": ("time_budget_ms", _int_in(10, MAX_TIME_BUDGET_MS)),
    "corpusStatistics": ("corpus_statistics", _bool),
    "menuSkipsGhost": ("menu_skips_ghost", _bool),
    "tagPacks": ("tag_packs", _tag_packs),
    "tagUnderscores": ("tag_underscores", _bool),
    "loraDirs": ("lora_dirs", _folders),
    "embeddingDirs": ("embedding_dirs", _folders),
    "wildcardDirs": ("wildcard_dirs", _folders),
}


def section_of(raw: Any) -> Any:
    """Accept both ``{"promptAutocomplete": {...}}`` and the bare section."""
    if isinstance(raw, Mapping) and isinstance(raw.get(SECTION), Mapping):
        return raw[SECTION]
    return raw


def _validate_layer(raw: Any, source: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Valid server fields, valid engine fields and problems of one layer."""
    if raw is None:
        return {}, {}, []
    if not isinstance(raw, Mapping):
        return {}, {}, [f"{source}: expected an object of settings, got {type(raw).__name__}"]
    server_fields: dict[str, Any] = {}
    engine_fields: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        if key in _SERVER_KEYS:
            name, check = _SERVER_KEYS[key]
            target = server_fields
        elif key in _ENGINE_KEYS:
            name, check = _ENGINE_KEYS[key]
            target = engine_fields
        else:
            problems.append(f"{source}: unknown setting {key!r} ignored")
            continue
        try:
            target[name] = check(value)
        except _Invalid as exc:
            problems.append(f"{source}: {key}={value!r} ignored ({exc})")
    return server_fields, engine_fields, problems


def build_settings(
    initialization_options: Any = None, configuration: Any = None, ghost_text: bool = False
) -> Validated:
    """Merge the layers over the defaults, keeping the lower layer wherever a value is bad.

    ``ghost_text``: the client shows inline completions, so by default its menu offers
    alternatives to the ghost text rather than repeating its next word.
    """
    server_fields: dict[str, Any] = {}
    engine_fields: dict[str, Any] = {}
    problems: list[str] = []
    layers = (
        ("initializationOptions", section_of(initialization_options)),
        (f"settings {SECTION}", section_of(configuration)),
    )
    for source, raw in layers:
        layer_server, layer_engine, layer_problems = _validate_layer(raw, source)
        server_fields.update(layer_server)
        engine_fields.update(layer_engine)
        problems.extend(layer_problems)
    engine = dataclasses.replace(EngineSettings(menu_skips_ghost=ghost_text), **engine_fields)
    settings = ServerSettings(**server_fields, engine=engine)
    return Validated(settings=settings, problems=tuple(problems))
