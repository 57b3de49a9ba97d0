"""Completion logic that knows no LSP: usable from the server, benchmarks and tests alike.

``CompletionEngine`` is imported on first use: it pulls in the model's code and tokenizers,
and the server must answer ``initialize`` before the model thread needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.engine.types import Cancelled, EngineSettings, Suggestion

if TYPE_CHECKING:
    from server.engine.engine import CompletionEngine

__all__ = ["Cancelled", "CompletionEngine", "EngineSettings", "Suggestion"]


def __getattr__(name: str) -> object:
    if name == "CompletionEngine":
        from server.engine.engine import CompletionEngine

        return CompletionEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
