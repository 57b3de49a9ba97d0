"""CLIP token-budget diagnostics: the engine's notes on each line, as LSP diagnostics.

CLIP's tokenizer takes about half a second of CPU to import and build (ftfy, 49k merges):
``load_counter`` does it off the event loop, and the server publishes no diagnostics until it
has, so neither ``initialize`` nor the first completions wait for it.
"""

from __future__ import annotations

import threading

from lsprotocol import types
from pygls.workspace import TextDocument

from server.documents import client_units, document_lines

SOURCE = "CLIP tokens"
# Diagnostics are counted on the event loop at every edit (a few lines change, the rest come
# from the cache): a line longer than this is no prompt, and lines past this many are not read.
MAX_LINE_CHARS = 4000
MAX_LINES = 5000
_SEVERITIES = {
    "information": types.DiagnosticSeverity.Information,
    "warning": types.DiagnosticSeverity.Warning,
}
_LOADED = threading.Event()


def load_counter() -> None:
    """Import and build CLIP's tokenizer, with what encoding first imports (numpy)."""
    from server.engine import clip_tokens

    clip_tokens.budget("a")
    _LOADED.set()


def counter_loaded() -> bool:
    """Whether ``load_counter`` has run: counting then takes milliseconds."""
    return _LOADED.is_set()


def token_diagnostics(document: TextDocument, limit: int) -> list[types.Diagnostic]:
    """Where each 75-token chunk past the first starts, and the text past ``limit`` tokens."""
    from server.engine import clip_tokens

    codec = document.position_codec
    found = []
    for number, line in enumerate(document_lines(document)[:MAX_LINES]):
        if len(line) > MAX_LINE_CHARS:
            continue
        for note in clip_tokens.notes(line, limit):
            start = types.Position(number, client_units(codec, line[: note.start]))
            end = types.Position(number, client_units(codec, line[: note.end]))
            found.append(
                types.Diagnostic(
                    range=types.Range(start, end),
                    message=note.message,
                    severity=_SEVERITIES[note.severity],
                    source=SOURCE,
                )
            )
    return found
